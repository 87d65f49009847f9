//! Adapter files: mlx-lm's key names and shapes; ours load in mlx-lm and give the same loss;
//! mlx-lm's (written by `mlx_lm lora`) load in ours and give the same loss.

mod common;

use std::path::Path;
use std::process::Command;

use brain_train::adapters::{load_adapters, AdapterConfig};
use brain_train::models::Model;
use brain_train::tiny::write_synthetic_chat;
use brain_train::trainer::{evaluate_test, TestArgs};
use brain_train::{train, LoraArgs, TrainArgs};
use common::{reference_python, small_spec, tiny, write_jsonl};
use mlx::Dtype;
use serde_json::json;

fn train_ours(td: &Path, model: &Path, keys: &[&str], num_layers: i32) -> TrainArgs {
    let args = TrainArgs {
        model: model.to_path_buf(),
        data: td.join("data"),
        adapter_path: td.join("ours"),
        iters: 5,
        batch_size: 2,
        learning_rate: 1e-2,
        num_layers,
        lora: LoraArgs { rank: 4, scale: 10.0, dropout: 0.0, keys: keys.iter().map(|s| s.to_string()).collect() },
        steps_per_eval: 100,
        ..Default::default()
    };
    train(&args, &mut |_| {}).unwrap();
    args
}

#[test]
fn adapter_keys_shapes_and_config_follow_mlx_lm() {
    let (td, dir) = tiny(small_spec());
    write_synthetic_chat(&td.path().join("data"), 8, 2, 2, 1).unwrap();
    train_ours(td.path(), &dir, &["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"], 1);
    let st = mlx::io::load_safetensors(td.path().join("ours/adapters.safetensors")).unwrap();
    let mut got: Vec<(String, Vec<i32>)> = st.tensors.iter().map(|(k, v)| (k.clone(), v.shape())).collect();
    got.sort();
    // small_spec: hidden 32, 4 heads of 8, 2 kv heads → q 32, v 16; intermediate 64; rank 4.
    let want = vec![
        ("model.layers.1.mlp.down_proj.lora_a".to_string(), vec![64, 4]),
        ("model.layers.1.mlp.down_proj.lora_b".to_string(), vec![4, 32]),
        ("model.layers.1.self_attn.q_proj.lora_a".to_string(), vec![32, 4]),
        ("model.layers.1.self_attn.q_proj.lora_b".to_string(), vec![4, 32]),
        ("model.layers.1.self_attn.v_proj.lora_a".to_string(), vec![32, 4]),
        ("model.layers.1.self_attn.v_proj.lora_b".to_string(), vec![4, 16]),
    ];
    assert_eq!(got, want);
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(td.path().join("ours/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["fine_tune_type"], "lora");
    assert_eq!(cfg["num_layers"], 1);
    assert_eq!(cfg["lora_parameters"], json!({"rank": 4, "scale": 10.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"]}));
    // Ours loads back onto a fresh model.
    let mut m = Model::load(&dir, Some(Dtype::Float32)).unwrap();
    let c = load_adapters(&mut m, &td.path().join("ours")).unwrap();
    assert_eq!(c.keys().len(), 3);
    // A config without keys means every linear layer (mlx-lm's default).
    let bare: AdapterConfig = serde_json::from_value(json!({"num_layers": 2, "lora_parameters": {"rank": 8, "scale": 20.0, "dropout": 0.0}})).unwrap();
    assert_eq!(bare.keys().len(), 7);
    assert_eq!(bare.fine_tune_type, "lora");
}

/// Mean NLL of DATA/test.jsonl (text format) under the model (+ adapter) according to mlx-lm,
/// with the padding target excluded (mlx-lm 0.32's own `--test` counts one padding target per
/// row; see ml-explore/mlx-lm#1697).
const PY_LOSS: &str = r#"
import sys, json
import mlx.core as mx, mlx.nn as nn
from mlx_lm import load
from mlx_lm.tuner.utils import load_adapters
out = []
for adapter in sys.argv[3:]:
    model, tok = load(sys.argv[1])
    if adapter != "-":
        load_adapters(model, adapter)
    total, n = 0.0, 0
    for line in open(sys.argv[2] + "/test.jsonl"):
        ids = tok.encode(json.loads(line)["text"])
        if ids[-1] != tok.eos_token_id:
            ids.append(tok.eos_token_id)
        x = mx.array([ids])
        ce = nn.losses.cross_entropy(model(x[:, :-1]).astype(mx.float32), x[:, 1:])
        total += ce.sum().item(); n += len(ids) - 1
    out.append([total / n, n])
print(json.dumps(out))
"#;

/// (loss, tokens) per adapter (None: the bare model), computed by mlx-lm in one python process.
fn mlx_lm_losses(model: &Path, data: &Path, adapters: &[Option<&Path>]) -> Vec<(f64, usize)> {
    let mut cmd = Command::new(reference_python());
    cmd.args(["-c", PY_LOSS, &model.display().to_string(), &data.display().to_string()]);
    for a in adapters {
        cmd.arg(a.map_or("-".to_string(), |p| p.display().to_string()));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = out.stdout.split(|b| *b == b'\n').find(|l| l.starts_with(b"[")).unwrap().to_vec();
    let v: Vec<(f64, usize)> = serde_json::from_slice(&line).unwrap();
    v
}

fn our_loss(model: &Path, data: &Path, adapter: Option<&Path>) -> (f64, usize) {
    let r = evaluate_test(&TestArgs {
        model: model.to_path_buf(),
        data: data.to_path_buf(),
        adapter_path: adapter.map(Path::to_path_buf),
        batch_size: 2,
        max_seq_length: 2048,
        test_batches: 0,
        dtype: None,
        loss: "auto".into(),
    })
    .unwrap();
    (r.test_loss as f64, r.tokens)
}

#[test]
fn adapters_interchange_with_mlx_lm() {
    let (td, dir) = tiny(small_spec());
    let data = td.path().join("data");
    write_synthetic_chat(&data, 8, 4, 0, 1).unwrap();
    let texts = ["The quick brown fox jumps over the lazy dog.", "fn main() { println!(\"hi\"); }", "What is 2 + 2? It is 4.", "Hello"];
    write_jsonl(&data, "test", &texts.iter().map(|t| json!({"text": t})).collect::<Vec<_>>());

    // Our adapter; mlx-lm's adapter (trained by `mlx_lm lora`, all linear layers by default).
    train_ours(td.path(), &dir, &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj"], -1);
    let ours = td.path().join("ours");
    let theirs = td.path().join("theirs");
    let out = Command::new(reference_python())
        .args(["-m", "mlx_lm", "lora", "--model", &dir.display().to_string(), "--train", "--data", &data.display().to_string()])
        .args(["--iters", "3", "--batch-size", "2", "--num-layers", "-1", "--learning-rate", "1e-2", "--adapter-path", &theirs.display().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "mlx_lm lora failed: {}", String::from_utf8_lossy(&out.stderr));
    let cases: [(&str, Option<&Path>); 3] = [("bare model", None), ("our adapter", Some(&ours)), ("mlx-lm's adapter", Some(&theirs))];
    let theirs_losses = mlx_lm_losses(&dir, &data, &cases.map(|c| c.1));
    for ((name, adapter), (b, nb)) in cases.iter().zip(theirs_losses) {
        let (a, na) = our_loss(&dir, &data, *adapter);
        assert_eq!(na, nb, "{name}: token counts");
        assert!((a - b).abs() < 1e-4 * b, "{name}: ours {a}, mlx-lm {b}");
        if adapter.is_some() {
            assert!((a - our_loss(&dir, &data, None).0).abs() > 1e-3, "{name} changes the loss");
        }
    }
}
