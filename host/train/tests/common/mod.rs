#![allow(dead_code)]
//! Shared test helpers: tiny models in temporary directories, the plain-Rust reference.

pub mod reference;

use std::path::{Path, PathBuf};

use brain_train::tiny::{init_tiny, TinySpec};

/// A tiny model written into a fresh temp dir (kept alive by the returned guard).
pub fn tiny(spec: TinySpec) -> (tempfile::TempDir, PathBuf) {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("model");
    init_tiny(&dir, &spec, None).unwrap();
    (td, dir)
}

/// Give every trainable (LoRA) parameter values ~ N(0, 0.1), seeded by its index: a nonzero
/// B, so gradients reach A and the layers below.
pub fn randomize_trainable(model: &mut brain_train::models::Model) {
    let vals: Vec<mlx::Array> = model
        .trainable_params()
        .iter()
        .enumerate()
        .map(|(i, (_, a))| mlx::random::normal(&a.shape(), mlx::Dtype::Float32, 0.0, 0.1, Some(&mlx::random::key(i as u64).unwrap())).unwrap())
        .collect();
    model.set_trainable(vals);
}

pub fn small_spec() -> TinySpec {
    TinySpec { hidden: 32, layers: 2, heads: 4, kv_heads: 2, intermediate: 64, tokenizer_vocab: 320, init_std: 0.05, seed: 7, ..Default::default() }
}

/// Write JSONL lines into DIR/NAME.jsonl.
pub fn write_jsonl(dir: &Path, name: &str, lines: &[serde_json::Value]) {
    std::fs::create_dir_all(dir).unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join(format!("{name}.jsonl")), text).unwrap();
}

/// The pinned reference Python (mlx-lm, transformers, gguf) that parity tests compare with:
/// `tests/reference-env.sh` creates it in the user's cache folder on first use and reuses it
/// afterwards. A parity test never skips: if the environment cannot be had, it fails here with
/// what to do.
pub fn reference_python() -> PathBuf {
    static PY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference-env.sh");
        let out = std::process::Command::new("bash").arg(&script).output().unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let py = stdout.lines().last().unwrap_or("").trim().to_string();
        assert!(
            out.status.success() && !py.is_empty(),
            "the reference environment (mlx-lm, transformers, gguf) is missing and could not be made by {}: {}\n\
             run that script by hand (it needs python3 with venv and pip, and PyPI)",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(py)
    })
    .clone()
}

/// Run `code` with the reference Python and `args`; its stdout (panics with its stderr on failure).
pub fn run_reference(code: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(reference_python()).arg("-c").arg(code).args(args).output().expect("reference python");
    assert!(out.status.success(), "reference python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 from the reference")
}

pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt();
    (num / den.max(1e-30)) as f32
}

/// A run stopped by a NaN/inf loss: `e` is [`brain_train::Error::NonFinite`], and the run's
/// metrics.jsonl ends with a `done` line at the last good step (the one before the failure)
/// carrying the error and the last good checkpoint, which exists. Returns that line.
pub fn assert_non_finite_stop(run: &Path, e: &brain_train::Error) -> serde_json::Value {
    let brain_train::Error::NonFinite { step, loss, last_good } = e else { panic!("not a NaN/inf stop: {e}") };
    assert!(!loss.is_finite() && *step >= 2, "{e}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "done", "{last}");
    assert_eq!(last["step"], step - 1, "{last}");
    assert_eq!(last["error"], e.to_string(), "{last}");
    assert!(e.to_string().contains("last good checkpoint"), "{e}");
    assert_eq!(last["path"].as_str(), Some(last_good.as_str()), "{last}");
    assert!(Path::new(last_good).join("state.json").is_file(), "{last_good} is not a checkpoint");
    last
}
