//! QLoRA: a tiny model quantized through the bridge (mlx-community layout) loads, its
//! dequantized weights match the originals within quantization error, its logits match the
//! dense model built from the dequantized weights, and LoRA trains on top of it.

mod common;

use std::collections::BTreeMap;

use brain_train::convert::quantize_model;
use brain_train::models::Model;
use brain_train::tiny::{write_synthetic_chat, TinySpec};
use brain_train::trainer::Event;
use brain_train::{train, LoraArgs, TrainArgs};
use common::{rel_err, tiny};
use mlx::{Array, Dtype};

#[test]
fn four_bit_model_loads_matches_and_trains() {
    let spec = TinySpec { hidden: 64, layers: 2, heads: 4, kv_heads: 2, intermediate: 128, tokenizer_vocab: 320, seed: 2, ..Default::default() };
    let (td, dense_dir) = tiny(spec);
    let qdir = td.path().join("q4");
    quantize_model(&dense_dir, &qdir, 32, 4).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(qdir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["quantization"], serde_json::json!({"group_size": 32, "bits": 4}));

    // On the CPU 4-bit weights stay packed (the bridge's kernel; models/dense.rs).
    let q = Model::load(&qdir, Some(Dtype::Float32)).unwrap();
    assert!(q.is_quantized());
    let dense = mlx::io::load_safetensors(dense_dir.join("model.safetensors")).unwrap().tensors;
    let qst = mlx::io::load_safetensors(qdir.join("model.safetensors")).unwrap().tensors;
    let mut deq: BTreeMap<String, Array> = BTreeMap::new();
    let mut checked = 0;
    for (name, w) in &dense {
        let prefix = name.trim_end_matches(".weight");
        let Some(scales) = qst.get(&format!("{prefix}.scales")) else {
            deq.insert(name.clone(), w.clone());
            continue;
        };
        assert_eq!(qst[name].dtype(), Dtype::Uint32, "{name} is packed");
        let d = mlx::quantized::dequantize(&qst[name], scales, Some(&qst[&format!("{prefix}.biases")]), 32, 4).unwrap();
        assert_eq!(d.shape(), w.shape());
        // Affine 4-bit: rounding to the grid costs at most half a step; MLX also snaps the grid
        // so zero is exact, which can clip the far end of a group by up to one step. So: every
        // value within 1.5 steps, and the RMS error near a uniform rounding error's (step/√12).
        let (wv, dv) = (w.to_vec::<f32>().unwrap(), d.to_vec::<f32>().unwrap());
        let sv = scales.to_vec::<f32>().unwrap();
        let (mut se, mut ss) = (0f64, 0f64);
        for (i, (a, b)) in wv.iter().zip(&dv).enumerate() {
            let s = sv[i / 32].abs();
            assert!((a - b).abs() <= 1.5 * s + 1e-6, "{name}[{i}]: {a} vs {b} (scale {s})");
            se += ((a - b) as f64).powi(2);
            ss += (s as f64).powi(2);
        }
        let ratio = (se / ss).sqrt();
        assert!(ratio < 0.4, "{name}: RMS error {ratio} steps");
        checked += 1;
        deq.insert(name.clone(), d);
    }
    assert_eq!(checked, 1 + 2 * 7, "embedding and every linear layer are quantized");

    // The quantized model computes what the dense model over the dequantized weights computes.
    let cfgm = brain_train::config::ModelConfig::load(&dense_dir).unwrap();
    let ref_model = Model::from_weights(&dense_dir, cfgm, deq, Dtype::Float32).unwrap();
    let ids = Array::from_slice(&[3i32, 17, 42, 99, 5, 250, 7], &[1, 7]).unwrap();
    let lq = q.logits(&ids).unwrap().to_vec::<f32>().unwrap();
    let lr = ref_model.logits(&ids).unwrap().to_vec::<f32>().unwrap();
    let e = rel_err(&lq, &lr);
    assert!(e < 1e-4, "quantized vs dequantized-dense logits: rel err {e}");

    // QLoRA trains.
    write_synthetic_chat(&td.path().join("data"), 16, 4, 4, 1).unwrap();
    let args = TrainArgs {
        model: qdir,
        data: td.path().join("data"),
        adapter_path: td.path().join("run"),
        iters: 30,
        batch_size: 4,
        learning_rate: 3e-3,
        num_layers: -1,
        lora: LoraArgs { rank: 8, scale: 20.0, ..Default::default() },
        steps_per_report: 1,
        steps_per_eval: 30,
        ..Default::default()
    };
    let mut vals = Vec::new();
    let r = train(&args, &mut |p| {
        if p.event == Event::Val {
            vals.push(p.val_loss.unwrap());
        }
    })
    .unwrap();
    assert_eq!(r.run.steps, 30);
    assert!(vals.iter().all(|v| v.is_finite()));
    assert!(vals.last().unwrap() < &(vals[0] - 0.5), "validation loss did not drop: {vals:?}");
}

/// The dense model over MLX's dequantization of `qdir`'s packed weights (group 64, 4 bits).
fn dequantized_dense(qdir: &std::path::Path, dense_dir: &std::path::Path) -> Model {
    let qst = mlx::io::load_safetensors(qdir.join("model.safetensors")).unwrap().tensors;
    let mut deq: BTreeMap<String, Array> = BTreeMap::new();
    for (name, w) in &qst {
        let prefix = name.trim_end_matches(".weight");
        if name.ends_with(".scales") || name.ends_with(".biases") {
            continue;
        }
        let d = match qst.get(&format!("{prefix}.scales")) {
            Some(s) => mlx::quantized::dequantize(w, s, Some(&qst[&format!("{prefix}.biases")]), 64, 4).unwrap(),
            None => w.clone(),
        };
        deq.insert(name.clone(), d);
    }
    let cfg = brain_train::config::ModelConfig::load(dense_dir).unwrap();
    Model::from_weights(dense_dir, cfg, deq, Dtype::Float32).unwrap()
}

/// Loss and LoRA gradients (q, v, down; rank 4; randomized) of one fixed batch; with `bf16`,
/// after `multiply_in_bf16` (which must take `bf16_count` matrices).
fn lora_grads(model: &mut Model, bf16_count: Option<usize>) -> (f32, Vec<f32>) {
    use brain_train::loss::{nll_sum, DeviceBatch};
    use brain_train::models::Mode;
    use mlx::loss::CePath;
    let keys: Vec<String> = ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"].map(String::from).to_vec();
    let ids: Vec<i32> = (0..2 * 24).map(|i| (i * 37 + 5) % 300).collect();
    let batch = brain_train::data::Batch {
        batch: 2,
        len: 23,
        inputs: (0..2).flat_map(|r| ids[r * 24..r * 24 + 23].to_vec()).collect(),
        targets: (0..2).flat_map(|r| ids[r * 24 + 1..r * 24 + 24].to_vec()).collect(),
        weights: vec![1.0; 2 * 23],
        tokens: 2 * 23,
    };
    let db = DeviceBatch::new(&batch).unwrap();
    model.apply_lora(-1, &keys, 4, 20.0, 0.0, 3).unwrap();
    if let Some(n) = bf16_count {
        assert_eq!(model.multiply_in_bf16().unwrap(), n);
        assert_eq!(model.bf16_matrices(), n);
    }
    common::randomize_trainable(model);
    let base: Vec<Array> = model.trainable_params().iter().map(|(_, a)| (*a).clone()).collect();
    let refs: Vec<&Array> = base.iter().collect();
    let argnums: Vec<i32> = (0..refs.len() as i32).collect();
    let m: &Model = model;
    let (v, g) = mlx::value_and_grad(|xs: &[Array]| Ok(vec![nll_sum(m, &m.with_trainable(xs), &db, Mode::default(), CePath::Auto)?]), &refs, &argnums).unwrap();
    (v[0].item::<f32>().unwrap(), g.iter().flat_map(|g| g.to_vec::<f32>().unwrap()).collect::<Vec<f32>>())
}

/// LoRA gradients through the packed weights (the bridge's CPU kernel, backward included), with
/// and without per-block checkpointing, equal those of the dense model over the same
/// dequantized weights.
#[test]
fn lora_gradients_through_packed_weights_equal_the_dense_model() {
    let spec = TinySpec { hidden: 64, layers: 2, heads: 4, kv_heads: 2, intermediate: 128, tokenizer_vocab: 320, seed: 6, ..Default::default() };
    let (td, dense_dir) = tiny(spec);
    let qdir = td.path().join("q4");
    quantize_model(&dense_dir, &qdir, 64, 4).unwrap();
    let mut packed = Model::load_quantized(&qdir, Some(Dtype::Float32)).unwrap();
    let mut dense = dequantized_dense(&qdir, &dense_dir);
    assert!(packed.is_quantized() && !dense.is_quantized());
    let (ld, gd) = lora_grads(&mut dense, None);
    let (lq, gq) = lora_grads(&mut packed, None);
    assert!((ld - lq).abs() <= 1e-4 * ld.abs(), "loss: dense {ld} vs packed {lq}");
    let e = rel_err(&gq, &gd);
    assert!(e < 1e-4, "LoRA gradients, packed vs dense: rel err {e}");
    assert!(gq.iter().map(|x| x.abs()).sum::<f32>() > 0.0);
    let mut fresh = Model::load_quantized(&qdir, Some(Dtype::Float32)).unwrap();
    fresh.grad_checkpoint = true;
    let (lc, gc) = lora_grads(&mut fresh, None);
    assert!((lc - lq).abs() <= 1e-6 * lq.abs(), "checkpointed loss {lc} vs {lq}");
    let e = rel_err(&gc, &gq);
    assert!(e < 1e-5, "checkpointed gradients: rel err {e}");
}

/// bf16 products (`multiply_in_bf16`) through the packed weights: the kernel's dequantized tiles
/// and the dense model's bf16 matrices hold the same rounded values, and with untied embeddings
/// (looked up in f32 by both) the two models compute nearly the same products, so their LoRA
/// gradients agree far closer than either agrees with the f32 products.
#[test]
fn lora_gradients_in_bf16_through_packed_weights_equal_the_dense_model() {
    if !mlx::bf16mm::is_available().unwrap() {
        return; // refusal without AVX-512 BF16: host/mlx/tests/bf16mm_cpu.rs
    }
    let spec = TinySpec { hidden: 64, layers: 2, heads: 4, kv_heads: 2, intermediate: 128, tokenizer_vocab: 320, seed: 7, tie_word_embeddings: false, ..Default::default() };
    let (td, dense_dir) = tiny(spec);
    let qdir = td.path().join("q4");
    quantize_model(&dense_dir, &qdir, 64, 4).unwrap();
    // 14 linear layers and the output matrix (dense, or dequantized once for the loss).
    let (lq32, gq32) = lora_grads(&mut Model::load_quantized(&qdir, Some(Dtype::Float32)).unwrap(), None);
    let mut packed = Model::load_quantized(&qdir, Some(Dtype::Float32)).unwrap();
    packed.grad_checkpoint = true;
    let (lq, gq) = lora_grads(&mut packed, Some(15));
    let (ld, gd) = lora_grads(&mut dequantized_dense(&qdir, &dense_dir), Some(15));
    let same = rel_err(&gq, &gd);
    let apart = rel_err(&gq, &gq32);
    assert!((ld - lq).abs() <= 1e-4 * ld.abs(), "bf16 loss: dense {ld} vs packed {lq}");
    // Measured: same 2.2e-4 (the kernel widens its tiles with an FMA, MLX's dequantize without:
    // a few weights round to the neighbouring bf16), apart 4.7e-3.
    assert!(same < 1e-3, "bf16 LoRA gradients, packed vs dense: rel err {same}");
    assert!(apart > 5.0 * same && apart < 1e-2 && (lq - lq32).abs() > 1e-6 * lq.abs(), "bf16 vs f32, packed: rel err {apart}, loss {lq} vs {lq32}");
}
