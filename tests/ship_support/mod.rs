//! Tiny models and adapters for the fuse and Ollama export tests (brain-train's init_tiny, a
//! LoRA adapter with random non-zero matrices so fusing has something to add).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use brain_train::adapters::{self, AdapterConfig, LoraParameters};
use brain_train::models::Model;
use brain_train::tiny::{init_tiny, TinySpec};
use mlx::{Array, Dtype};

pub const KEYS: [&str; 5] = ["self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj"];

/// A random 2-layer Qwen2 with a trained BPE tokenizer and the ChatML template.
pub fn tiny_base(dir: &Path, tie: bool) {
    let spec = TinySpec { hidden: 64, layers: 2, heads: 4, kv_heads: 2, intermediate: 128, tie_word_embeddings: tie, seed: 7, ..TinySpec::default() };
    init_tiny(dir, &spec, None).expect("init_tiny");
}

/// A LoRA adapter for `base` in mlx-lm's layout with uniform(-0.2, 0.2) A and B matrices.
pub fn random_adapter(base: &Path, out: &Path, rank: usize, scale: f32, seed: u64) {
    let mut m = Model::load(base, Some(Dtype::Float32)).expect("load base");
    let keys: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
    m.apply_lora(-1, &keys, rank, scale, 0.0, seed).expect("apply_lora");
    let mut values = Vec::new();
    for (i, (_, a)) in m.trainable_params().iter().enumerate() {
        let key = mlx::random::key(seed * 1000 + i as u64).unwrap();
        values.push(mlx::random::uniform(-0.2, 0.2, &a.shape(), Dtype::Float32, Some(&key)).unwrap());
    }
    mlx::eval(values.iter()).unwrap();
    m.set_trainable(values);
    adapters::save_weights(&m, &out.join(adapters::ADAPTER_FILE)).expect("save adapter");
    AdapterConfig {
        fine_tune_type: "lora".into(),
        num_layers: m.num_layers() as i32,
        lora_parameters: Some(LoraParameters { rank, scale, dropout: 0.0, keys: Some(keys) }),
        extra: BTreeMap::new(),
    }
    .write(out)
    .expect("write adapter config");
}

/// Logits (flattened) of `model_dir` (+ `adapter`) on a fixed token sequence.
pub fn logits(model_dir: &Path, adapter: Option<&Path>) -> Vec<f32> {
    let mut m = Model::load(model_dir, Some(Dtype::Float32)).expect("load model");
    if let Some(a) = adapter {
        adapters::load_adapters(&mut m, a).expect("load adapter");
    }
    let ids = Array::from_slice(&[3i32, 17, 42, 5, 99, 12, 8, 64, 1, 30], &[1, 10]).unwrap();
    m.logits(&ids).expect("logits").to_vec::<f32>().expect("to host")
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
