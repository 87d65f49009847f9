//! Write the graph of one LoRA step's loss and gradients, unevaluated, as Graphviz DOT (and as
//! MLX's print_graph text with shapes and dtypes, beside it as .txt), for bench/step_graph.sh to
//! count its ops beside mlx-lm's:
//! `cargo run --release -p brain-train --example step_graph -- MODEL LAYERS OUT.dot [composed|auto]`
//! The model in bfloat16 (a GPU's compute dtype), LoRA rank 8 on q/k/v/o of the top LAYERS
//! blocks, a synthetic (4, 91) batch. The `BRAIN_MLX_COMPOSED_*` switches pick the ops a GPU
//! runs instead of the bridge's CPU kernels.

mod common;

use brain_train::loss::{nll_sum, DeviceBatch};
use brain_train::models::{Mode, Model};
use mlx::loss::CePath;
use mlx::{Array, Dtype, GraphFormat};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 4, "usage: step_graph MODEL LAYERS OUT.dot [composed|auto]");
    let layers: i32 = args[2].parse()?;
    let path = if args.get(4).map(String::as_str) == Some("auto") { CePath::Auto } else { CePath::Composed };
    let mut model = Model::load(std::path::Path::new(&args[1]), Some(Dtype::Bfloat16))?;
    let keys = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"].map(String::from);
    model.apply_lora(layers, &keys, 8, 20.0, 0.0, 0)?;
    let db = DeviceBatch::new(&common::synthetic_batch(model.config.vocab_size))?;
    let base: Vec<Array> = model.trainable_params().iter().map(|(_, a)| (*a).clone()).collect();
    let refs: Vec<&Array> = base.iter().collect();
    let argnums: Vec<i32> = (0..refs.len() as i32).collect();
    let m = &model;
    let (vals, grads) = mlx::value_and_grad(
        |xs: &[Array]| Ok(vec![nll_sum(m, &m.with_trainable(xs), &db, Mode::default(), path)?.div(364.0f32)?]),
        &refs,
        &argnums,
    )?;
    let out = std::path::Path::new(&args[3]);
    mlx::export_graph(out, vals.iter().chain(grads.iter()), GraphFormat::Dot)?;
    mlx::export_graph(&out.with_extension("txt"), vals.iter().chain(grads.iter()), GraphFormat::Text)?;
    println!("{}: {} gradients (with shapes and dtypes: {})", out.display(), grads.len(), out.with_extension("txt").display());
    Ok(())
}
