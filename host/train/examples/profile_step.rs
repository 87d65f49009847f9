//! Time the parts of one LoRA step (forward, forward+backward, optimizer) on a model and a
//! synthetic (4, 91) batch: `cargo run --release -p brain-train --example profile_step -- MODEL [REPS] [auto|composed|both] [compiled]`
//! (both cross-entropy paths unless one is named; `compiled`: forward+backward and the optimizer
//! through MLX's compile, as `brain train --compile` runs them). Also prints MLX's active memory
//! after loading and its peak in each part of the first step.

mod common;

use std::time::Instant;

use brain_train::loss::{nll_sum, DeviceBatch};
use brain_train::models::{Mode, Model};
use brain_train::optim::AdamW;
use mlx::loss::CePath;
use mlx::Array;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let reps: usize = args.get(2).map_or(5, |s| s.parse().unwrap());
    let mut model = Model::load(&dir, None)?;
    let keys: Vec<String> = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"].map(String::from).to_vec();
    model.apply_lora(-1, &keys, 8, 20.0, 0.0, 0)?;
    let db = DeviceBatch::new(&common::synthetic_batch(model.config.vocab_size))?;
    let gb = |b: usize| b as f64 / 1e9;
    println!("memory: after load {:.3} GB active", gb(mlx::memory::active_memory()?));
    let mut opt = AdamW::new(0.0);
    let compiled = args.get(4).is_some_and(|a| a == "compiled");
    let fb_compiled = mlx::Compiled::new();
    if compiled {
        opt.compiled = Some(mlx::Compiled::new());
        // The compiled graph captures the frozen weights and the batch: with values.
        mlx::eval(model.params.values.iter().chain([&db.inputs, &db.targets, &db.weights]))?;
    }
    let paths = match args.get(3).map(String::as_str) {
        Some("auto") => vec![CePath::Auto],
        Some("composed") => vec![CePath::Composed],
        Some("both") | None => vec![CePath::Auto, CePath::Composed],
        Some(other) => anyhow::bail!("cross-entropy path {other:?}: expected auto, composed or both"),
    };
    for path in paths {
        let (mut tf, mut tb, mut to) = (0.0, 0.0, 0.0);
        let (mut cf, mut cb) = (0.0, 0.0);
        for r in 0..reps + 1 {
            let c0 = common::cpu_seconds();
            let t = Instant::now();
            let l = nll_sum(&model, &model.params.values, &db, Mode::default(), path)?;
            l.eval()?;
            let f = t.elapsed().as_secs_f64();
            if r == 0 {
                println!("memory: forward peak {:.3} GB, active after {:.3} GB", gb(mlx::memory::peak_memory()?), gb(mlx::memory::active_memory()?));
                mlx::memory::reset_peak_memory()?;
            }
            let c1 = common::cpu_seconds();
            let t = Instant::now();
            let base: Vec<Array> = model.trainable_params().iter().map(|(_, a)| (*a).clone()).collect();
            let refs: Vec<&Array> = base.iter().collect();
            let argnums: Vec<i32> = (0..refs.len() as i32).collect();
            let m = &model;
            let loss = |xs: &[Array]| Ok(vec![nll_sum(m, &m.with_trainable(xs), &db, Mode::default(), path)?.div(364.0f32)?]);
            let (vals, grads) = if compiled {
                let mut out = fb_compiled.call(
                    |xs: &[Array]| {
                        let refs: Vec<&Array> = xs.iter().collect();
                        let (v, g) = mlx::value_and_grad(loss, &refs, &argnums)?;
                        Ok(v.into_iter().chain(g).collect())
                    },
                    &refs,
                )?;
                let g = out.split_off(1);
                (out, g)
            } else {
                mlx::value_and_grad(loss, &refs, &argnums)?
            };
            mlx::eval(vals.iter().chain(grads.iter()))?;
            let fb = t.elapsed().as_secs_f64();
            if r == 0 {
                println!("memory: forward+backward peak {:.3} GB, active after {:.3} GB", gb(mlx::memory::peak_memory()?), gb(mlx::memory::active_memory()?));
            }
            let c2 = common::cpu_seconds();
            if r > 0 {
                cf += c1 - c0;
                cb += c2 - c1;
            }
            let t = Instant::now();
            let new = opt.update(&base, &grads, 1e-5)?;
            mlx::eval(new.iter().chain(opt.state()))?;
            let o = t.elapsed().as_secs_f64();
            if r > 0 {
                tf += f;
                tb += fb;
                to += o;
            }
        }
        let n = reps as f64;
        println!(
            "{path:?}{}: forward {:.1} ms (cpu {:.1}), forward+backward {:.1} ms (cpu {:.1}), optimizer {:.1} ms",
            if compiled { " compiled" } else { "" },
            1e3 * tf / n,
            1e3 * cf / n,
            1e3 * tb / n,
            1e3 * cb / n,
            1e3 * to / n
        );
    }
    Ok(())
}
