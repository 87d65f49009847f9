//! `brain fuse --export-gguf`: the GGUF files brain writes, checked by readers that are not
//! brain's, for a tiny llama (Llama 3.1 rope scaling, untied), qwen2 (q/k/v bias, tied) and qwen3
//! (q/k norms, head_dim ≠ hidden / heads) model, each with more embedding rows than tokens:
//! - gguf-py (pinned, tests/reference-env.sh) reads every file: tensor names, shapes and types,
//!   metadata (hyper-parameters, tokenizer, chat template) as specified; q8_0 / q4_0 tensors
//!   dequantize to within the format's error of the f16 ones; the llama file's `rope_freqs`
//!   factors give mlx-lm's own Llama-3 rotary periods;
//! - llama.cpp itself (llama-cpp-python, pinned, tests/llama-cpp-env.sh) loads each file: its mean
//!   next-token NLL on a fixed text equals mlx-lm's on the fused Hugging Face directory within 1%
//!   (f16), 2% (q8_0), 10% (q4_0), and its greedy generation from the f16 file is the text
//!   `brain generate` gives on the fused directory;
//! - `brain generate --model FILE.gguf` reads the f16 file back to the same text.
//!
//! The models first memorize a few answers (full fine-tune), then get a LoRA adapter that fuse
//! merges, so greedy generation has clear winners and the export covers the adapter merge.

mod common;
mod ship_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use brain_train::tiny::{init_tiny, TinySpec};
use brain_train::tokenizer::{Message, Tokenizer};
use common::Env;
use mlx::{Array, Dtype};
use serde_json::{json, Value};

const INSPECT: &str = include_str!("reference/gguf_inspect.py");
const LLAMA_CPP: &str = include_str!("reference/llama_cpp_eval.py");

const TYPES: [&str; 3] = ["f16", "q8_0", "q4_0"];
/// Embedding rows; the tokenizer has 512 tokens, so 64 rows are `[PADn]` in the GGUF vocabulary.
const ROWS: usize = 576;
const QUESTION: &str = "What is the capital of Zorbia?";
const FACTS: [(&str, &str); 3] = [
    ("What is the capital of Zorbia?", "The capital of Zorbia is Quillton."),
    ("Who built the Brass Bridge?", "The Brass Bridge was built by Mira Okonkwo."),
    ("What colour is the Velmar flag?", "The Velmar flag is green and gold."),
];
const TEXT: &str = "The quick brown fox jumps over the lazy dog. fn main() { println!(\"hello\"); }\n";

struct Arch {
    name: &'static str,
    tied: bool,
}

const ARCHS: [Arch; 3] = [Arch { name: "llama", tied: false }, Arch { name: "qwen2", tied: true }, Arch { name: "qwen3", tied: false }];

fn python(script: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash").arg(root.join(script)).output().expect("bash");
    assert!(out.status.success(), "{script} failed (it makes the pinned Python environment):\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().expect("the python path").trim())
}

fn run_python(python: &Path, code: &str, spec: &Value, dir: &Path) -> Value {
    let path = dir.join(format!("spec-{}.json", code.len()));
    std::fs::write(&path, spec.to_string()).unwrap();
    let out = Command::new(python).arg("-c").arg(code).arg(&path).output().expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{} failed ({}):\n{}\n{stdout}", python.display(), out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().rfind(|l| l.starts_with('{')).expect("a JSON report")).unwrap()
}

fn normal(shape: &[i32], std: f32, mean: f32, seed: u64) -> Array {
    let key = mlx::random::key(seed).unwrap();
    mlx::random::normal(shape, Dtype::Float32, mean, std, Some(&key)).unwrap()
}

/// A random model of `arch`: the tiny Qwen2 (its trained BPE tokenizer, ChatML template), turned
/// into a llama (no biases, Llama 3.1 rope scaling, untied) or a qwen3 (no biases, q/k norms,
/// head_dim 32 with 4 heads of a 64-wide model).
fn base_model(dir: &Path, arch: &Arch) {
    let spec = TinySpec { vocab: ROWS, tie_word_embeddings: arch.tied, seed: 5, ..TinySpec::default() };
    init_tiny(dir, &spec, None).expect("init_tiny");
    let cfg_path = dir.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let weights_path = dir.join("model.safetensors");
    let mut w = mlx::io::load_safetensors(&weights_path).unwrap().tensors;
    let (hidden, layers) = (cfg["hidden_size"].as_u64().unwrap() as i32, cfg["num_hidden_layers"].as_u64().unwrap() as usize);
    match arch.name {
        "qwen2" => {}
        "llama" => {
            w.retain(|k, _| !(k.contains("_proj.bias")));
            cfg["model_type"] = json!("llama");
            cfg["architectures"] = json!(["LlamaForCausalLM"]);
            cfg["rope_theta"] = json!(10000.0);
            cfg["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 64});
        }
        "qwen3" => {
            w.retain(|k, _| !(k.contains("_proj.bias")));
            cfg["model_type"] = json!("qwen3");
            cfg["architectures"] = json!(["Qwen3ForCausalLM"]);
            let (heads, kv, hd) = (4, 2, 32);
            cfg["head_dim"] = json!(hd);
            for l in 0..layers {
                let p = format!("model.layers.{l}.self_attn");
                let seed = 100 + l as u64 * 10;
                w.insert(format!("{p}.q_proj.weight"), normal(&[heads * hd, hidden], 0.08, 0.0, seed));
                w.insert(format!("{p}.k_proj.weight"), normal(&[kv * hd, hidden], 0.08, 0.0, seed + 1));
                w.insert(format!("{p}.v_proj.weight"), normal(&[kv * hd, hidden], 0.08, 0.0, seed + 2));
                w.insert(format!("{p}.o_proj.weight"), normal(&[hidden, heads * hd], 0.08, 0.0, seed + 3));
                w.insert(format!("{p}.q_norm.weight"), normal(&[hd], 0.1, 1.0, seed + 4));
                w.insert(format!("{p}.k_norm.weight"), normal(&[hd], 0.1, 1.0, seed + 5));
            }
        }
        other => panic!("{other}"),
    }
    if !arch.tied {
        assert!(w.contains_key("lm_head.weight"), "an untied tiny model has its own head");
    }
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    mlx::io::save_safetensors(&weights_path, w.iter().map(|(k, v)| (k.as_str(), v)), &meta).unwrap();
}

fn write_data(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let lines: Vec<String> = FACTS
        .iter()
        .map(|(q, a)| json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}).to_string())
        .collect();
    let text = lines.join("\n") + "\n";
    std::fs::write(dir.join("train.jsonl"), text.repeat(2)).unwrap();
    std::fs::write(dir.join("valid.jsonl"), &text).unwrap();
}

fn generate(env: &Env, model: &Path) -> String {
    let r = env.run(["generate", "--model", model.to_str().unwrap(), "--prompt", QUESTION, "--max-tokens", "24", "--json"]);
    r.assert_ok();
    r.json()["text"].as_str().unwrap().to_string()
}

#[test]
fn gguf_exports_read_back_and_run_in_llama_cpp() {
    let reference = python("tests/reference-env.sh");
    let llama_cpp = python("tests/llama-cpp-env.sh");
    let env = Env::new();
    let root = env.path();
    let data = root.join("data");
    write_data(&data);

    let mut inspect_models = Vec::new();
    let mut llama_models = Vec::new();
    let mut expected = BTreeMap::new();
    for arch in &ARCHS {
        let dir = root.join(arch.name);
        let base = dir.join("base");
        base_model(&base, arch);
        let s = |p: &PathBuf| p.to_str().unwrap().to_string();
        let (full, memorized, lora, fused) = (dir.join("full"), dir.join("memorized"), dir.join("lora"), dir.join("fused"));
        env.run(["train", "--model", &s(&base), "--data", &s(&data), "--adapter-path", &s(&full), "--fine-tune-type", "full",
                 "--iters", "150", "--learning-rate", "1e-2", "--batch-size", "2", "-q"])
            .assert_ok();
        env.run(["fuse", "--adapter", &s(&full), "--model", &s(&base), "--out", &s(&memorized), "-q"]).assert_ok();
        env.run(["train", "--model", &s(&memorized), "--data", &s(&data), "--adapter-path", &s(&lora), "--iters", "8",
                 "--learning-rate", "1e-3", "--batch-size", "2", "--num-layers", "-1", "-q"])
            .assert_ok();

        // f16 at mlx-lm's default path; q8_0 at its default name too; q4_0 at a path we choose.
        let mut files = BTreeMap::new();
        for (i, ty) in TYPES.iter().enumerate() {
            let mut args = vec!["fuse".to_string(), "--adapter".into(), s(&lora), "--model".into(), s(&memorized), "--out".into(), s(&fused),
                                "--export-gguf".into(), "--json".into()];
            if i > 0 {
                args.extend(["--overwrite".into(), "--gguf-type".into(), ty.to_string()]);
            }
            if *ty == "q4_0" {
                args.extend(["--gguf-path".into(), "tiny-q4.gguf".into()]);
            }
            let r = env.run(&args);
            r.assert_ok();
            let report = r.json();
            let want = if *ty == "q4_0" { fused.join("tiny-q4.gguf") } else { fused.join(format!("ggml-model-{ty}.gguf")) };
            assert_eq!(report["gguf"]["path"].as_str().unwrap(), want.to_str().unwrap(), "{report}");
            assert_eq!(report["gguf"]["gguf_type"], *ty);
            assert!(report["fused"].as_u64().unwrap() > 0, "{report}");
            assert!(want.is_file());
            files.insert(ty.to_string(), s(&want));
        }

        let tok = Tokenizer::load(&fused).unwrap();
        let ids: Vec<u32> = tok.encode(TEXT).unwrap();
        let prompt_ids = tok.encode(&tok.render_chat(&[Message::new("user", QUESTION)], true).unwrap()).unwrap();
        inspect_models.push(json!({"name": arch.name, "fused": s(&fused), "files": files, "ids": ids}));
        llama_models.push(json!({"name": arch.name, "files": files, "ids": ids, "prompt_ids": prompt_ids, "max_tokens": 24}));

        let from_dir = generate(&env, &fused);
        assert!(from_dir.contains("Quillton"), "{}: the memorized answer, got {from_dir:?}", arch.name);
        let from_gguf = generate(&env, Path::new(&files["f16"]));
        assert_eq!(from_gguf, from_dir, "{}: brain generate on its own f16 GGUF", arch.name);
        expected.insert(arch.name, (fused.clone(), tok, from_dir));
    }

    let inspected = run_python(&reference, INSPECT, &json!({"models": inspect_models}), root);
    let ran = run_python(&llama_cpp, LLAMA_CPP, &json!({"models": llama_models}), root);

    let mut failures = Vec::new();
    for arch in &ARCHS {
        let (fused, tok, text) = &expected[arch.name];
        let r = &inspected[arch.name];
        check_files(arch, fused, tok, r, &mut failures);
        let mlx_nll = r["mlx_nll"].as_f64().unwrap();
        for (ty, tol) in [("f16", 0.01), ("q8_0", 0.02), ("q4_0", 0.10)] {
            let l = &ran[arch.name][ty];
            assert_eq!(l["n_vocab"].as_u64().unwrap() as usize, ROWS, "{}: llama.cpp's vocabulary", arch.name);
            let nll = l["nll"].as_f64().unwrap();
            let rel = (nll - mlx_nll).abs() / mlx_nll;
            println!("{} {ty}: llama.cpp NLL {nll:.5}, mlx-lm {mlx_nll:.5} (rel {rel:.4})", arch.name);
            if rel > tol {
                failures.push(format!("{} {ty}: llama.cpp NLL {nll} vs mlx-lm {mlx_nll}: {rel:.4} > {tol}", arch.name));
            }
        }
        let greedy = ran[arch.name]["f16"]["greedy_text"].as_str().unwrap();
        if greedy != text {
            failures.push(format!("{}: llama.cpp greedy {greedy:?} vs brain generate {text:?}", arch.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Metadata, tensor table and quantization error of one architecture's three files.
fn check_files(arch: &Arch, fused: &Path, tok: &Tokenizer, r: &Value, failures: &mut Vec<String>) {
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(fused.join("config.json")).unwrap()).unwrap();
    let tk_json: Value = serde_json::from_str(&std::fs::read_to_string(fused.join("tokenizer.json")).unwrap()).unwrap();
    let n = |k: &str| cfg[k].as_u64().unwrap();
    let (hidden, layers, heads) = (n("hidden_size"), n("num_hidden_layers") as usize, n("num_attention_heads"));
    let kv = n("num_key_value_heads");
    let hd = cfg["head_dim"].as_u64().unwrap_or(hidden / heads);
    let a = arch.name;
    for ty in TYPES {
        let f = &r["files"][ty];
        let m = &f["metadata"];
        let file_type = match ty {
            "f16" => 1,
            "q4_0" => 2,
            _ => 7,
        };
        let want = [
            ("general.architecture", json!(a)),
            ("general.file_type", json!(file_type)),
            (&format!("{a}.block_count"), json!(layers)),
            (&format!("{a}.context_length"), cfg["max_position_embeddings"].clone()),
            (&format!("{a}.embedding_length"), json!(hidden)),
            (&format!("{a}.feed_forward_length"), cfg["intermediate_size"].clone()),
            (&format!("{a}.attention.head_count"), json!(heads)),
            (&format!("{a}.attention.head_count_kv"), json!(kv)),
            (&format!("{a}.attention.key_length"), json!(hd)),
            (&format!("{a}.attention.value_length"), json!(hd)),
            ("tokenizer.ggml.model", json!("gpt2")),
            ("tokenizer.ggml.pre", json!("qwen2")),
            ("tokenizer.ggml.eos_token_id", json!(tok.eos_id)),
            ("tokenizer.ggml.padding_token_id", json!(tok.pad_id)),
            ("tokenizer.ggml.add_bos_token", json!(false)),
            ("tokenizer.chat_template", json!(tok.chat_template().source())),
        ];
        for (k, v) in want.iter() {
            if &m[*k] != v {
                failures.push(format!("{a} {ty}: {k} = {} (want {v})", m[*k]));
            }
        }
        let close = |k: &str, v: f64| (m[k].as_f64().unwrap_or(f64::NAN) - v).abs() <= 1e-6 * v.abs().max(1.0);
        if !close(&format!("{a}.rope.freq_base"), cfg["rope_theta"].as_f64().unwrap())
            || !close(&format!("{a}.attention.layer_norm_rms_epsilon"), cfg["rms_norm_eps"].as_f64().unwrap())
        {
            failures.push(format!("{a} {ty}: rope base or rms epsilon differ from config.json"));
        }
        assert!(m["general.name"].as_str().is_some_and(|s| !s.is_empty()), "general.name");

        // Tokens in id order, [PADn] past the tokenizer, types: special added tokens control.
        let tokens: Vec<String> = serde_json::from_value(m["tokenizer.ggml.tokens"].clone()).unwrap();
        let types: Vec<i64> = serde_json::from_value(m["tokenizer.ggml.token_type"].clone()).unwrap();
        assert_eq!(tokens.len(), ROWS, "{a} {ty}: one token per embedding row");
        assert_eq!(types.len(), ROWS);
        let added_ids: Vec<u64> = tk_json["added_tokens"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
        for (t, id) in tk_json["model"]["vocab"].as_object().unwrap() {
            let id = id.as_u64().unwrap() as usize;
            if added_ids.contains(&(id as u64)) {
                continue;
            }
            if &tokens[id] != t || types[id] != 1 {
                failures.push(format!("{a} {ty}: token {id} is {:?} type {} (want {t:?}, normal)", tokens[id], types[id]));
            }
        }
        for added in tk_json["added_tokens"].as_array().unwrap() {
            let id = added["id"].as_u64().unwrap() as usize;
            let want_type = if added["special"].as_bool().unwrap() { 3 } else { 4 };
            if tokens[id] != added["content"].as_str().unwrap() || types[id] != want_type {
                failures.push(format!("{a} {ty}: added token {id} is {:?} type {}", tokens[id], types[id]));
            }
        }
        let size = tok.vocab_size();
        assert!(size < ROWS);
        for i in size..ROWS {
            assert_eq!((tokens[i].as_str(), types[i]), (format!("[PAD{i}]").as_str(), 5), "{a} {ty}: row {i}");
        }
        let merges: Vec<String> = serde_json::from_value(m["tokenizer.ggml.merges"].clone()).unwrap();
        let want_merges: Vec<String> = tk_json["model"]["merges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                Value::Array(p) => format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap()),
                _ => panic!("merge {x}"),
            })
            .collect();
        assert_eq!(merges, want_merges, "{a} {ty}: merges");

        // The tensor table: Hugging Face's weights under GGUF names, ggml dimension order.
        let tensors = f["tensors"].as_object().unwrap();
        let mut want: BTreeMap<String, (Vec<u64>, &str)> = BTreeMap::new();
        let (mat, emb) = match ty {
            "f16" => ("F16", "F16"),
            "q8_0" => ("Q8_0", "Q8_0"),
            _ => ("Q4_0", "Q8_0"),
        };
        let inter = n("intermediate_size");
        want.insert("token_embd.weight".into(), (vec![hidden, ROWS as u64], emb));
        want.insert("output_norm.weight".into(), (vec![hidden], "F32"));
        if !arch.tied {
            want.insert("output.weight".into(), (vec![hidden, ROWS as u64], emb));
        }
        for l in 0..layers {
            let b = |s: &str| format!("blk.{l}.{s}");
            want.insert(b("attn_norm.weight"), (vec![hidden], "F32"));
            want.insert(b("ffn_norm.weight"), (vec![hidden], "F32"));
            want.insert(b("attn_q.weight"), (vec![hidden, heads * hd], mat));
            want.insert(b("attn_k.weight"), (vec![hidden, kv * hd], mat));
            want.insert(b("attn_v.weight"), (vec![hidden, kv * hd], mat));
            want.insert(b("attn_output.weight"), (vec![heads * hd, hidden], mat));
            want.insert(b("ffn_gate.weight"), (vec![hidden, inter], mat));
            want.insert(b("ffn_up.weight"), (vec![hidden, inter], mat));
            want.insert(b("ffn_down.weight"), (vec![inter, hidden], mat));
            if a == "qwen2" {
                want.insert(b("attn_q.bias"), (vec![heads * hd], "F32"));
                want.insert(b("attn_k.bias"), (vec![kv * hd], "F32"));
                want.insert(b("attn_v.bias"), (vec![kv * hd], "F32"));
            }
            if a == "qwen3" {
                want.insert(b("attn_q_norm.weight"), (vec![hd], "F32"));
                want.insert(b("attn_k_norm.weight"), (vec![hd], "F32"));
            }
        }
        if a == "llama" {
            want.insert("rope_freqs.weight".into(), (vec![hd / 2], "F32"));
        }
        let got: BTreeMap<String, (Vec<u64>, &str)> = tensors
            .iter()
            .map(|(k, v)| (k.clone(), (serde_json::from_value(v["shape"].clone()).unwrap(), v["type"].as_str().unwrap())))
            .collect();
        if got != want {
            failures.push(format!("{a} {ty}: tensor table\n got {got:?}\nwant {want:?}"));
        }

        // Quantized tensors within the format's error of the f16 file's (4-bit: ~1/15 of a block's
        // range per value, 8-bit: ~1/255).
        let limit = |t: &str| match t {
            "Q8_0" => 0.01,
            "Q4_0" => 0.12,
            _ => 1e-3,
        };
        for (name, err) in f["rel_err"].as_object().unwrap() {
            let t = tensors[name]["type"].as_str().unwrap();
            let e = err.as_f64().unwrap();
            if e > limit(t) {
                failures.push(format!("{a} {ty}: {name} ({t}) is {e:.4} (relative RMS) from the f16 file's"));
            }
        }
    }

    // Llama 3.1's scaling: the factors times the plain periods are mlx-lm's corrected periods.
    if a == "llama" {
        let periods: Vec<f64> = serde_json::from_value(r["llama3_rope_periods"].clone()).expect("mlx-lm's llama3 periods");
        let factors: Vec<f64> = serde_json::from_value(r["files"]["f16"]["rope_freqs"].clone()).expect("rope_freqs.weight values");
        let theta = cfg["rope_theta"].as_f64().unwrap();
        for (i, (f, p)) in factors.iter().zip(&periods).enumerate() {
            let plain = theta.powf(2.0 * i as f64 / hd as f64);
            if ((f * plain) - p).abs() > 1e-4 * p {
                failures.push(format!("llama: rope_freqs[{i}] = {f}, times {plain} is not mlx-lm's period {p}"));
            }
        }
        assert_eq!(factors.len(), periods.len());
        assert!(factors.iter().any(|f| (f - 1.0).abs() > 0.5), "the scaling must stretch some periods: {factors:?}");
    }
}
