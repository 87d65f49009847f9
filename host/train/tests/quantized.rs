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

    // Training below loads through `Model::load`, which on the CPU would dequantize (see
    // models/dense.rs); this test is about QLoRA, so keep the weights quantized (this binary
    // holds only this test, so the variable reaches nothing else).
    std::env::set_var("BRAIN_KEEP_QUANTIZED", "1");
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
