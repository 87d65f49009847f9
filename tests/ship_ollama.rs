//! `brain export ollama NAME`: the Modelfile's TEMPLATE, SYSTEM and stop tokens reproduce the
//! chat template training used — checked by rendering conversations three ways: the Modelfile as
//! Ollama's chat endpoint would, the model's tokenizer_config.json chat_template (Jinja), and
//! brain-train's training renderer. Fused (default) and adapter layouts; `ollama create` runs
//! when an `ollama` is on PATH.

mod common;
mod ship_support;

use std::path::{Path, PathBuf};

use brain::ship::{family, gotmpl, ollama, template};
use brain::store::Store;
use common::Env;
use ship_support::{random_adapter, tiny_base, tiny_llama3, LLAMA31_TEMPLATE, LLAMA3_TEMPLATE};

/// Conversations beyond the export's own probes.
fn conversations() -> Vec<Vec<(String, String)>> {
    let c = |v: &[(&str, &str)]| v.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect::<Vec<_>>();
    let mut all = template::probe_conversations();
    all.push(c(&[("system", "Terse."), ("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"), ("user", "e")]));
    all.push(c(&[("user", "  spaces  \n\n and blank lines \n")]));
    all
}

/// What a family's rendering looks like to the assertions, written from the fixtures' facts.
struct Layout {
    /// The bos Ollama's tokenizer puts before the TEMPLATE's text (the tokenizer adds it).
    auto_bos: &'static str,
    open_assistant: &'static str,
    end_of_turn: &'static str,
}

const CHATML: Layout = Layout { auto_bos: "", open_assistant: "<|im_start|>assistant\n", end_of_turn: "<|im_end|>" };
const LLAMA3: Layout =
    Layout { auto_bos: "<|begin_of_text|>", open_assistant: "<|start_header_id|>assistant<|end_header_id|>\n\n", end_of_turn: "<|eot_id|>" };

/// Renders every conversation through the Modelfile (as Ollama: its tokenizer's bos, then the
/// TEMPLATE), the model's chat template and training's renderer, and asserts all three agree;
/// checks the stop strings. `trims`: the template trims content, which Ollama cannot (such
/// conversations are left out here and tested on their own).
fn assert_modelfile_matches_training(modelfile: &Path, model_dir: &Path, layout: &Layout, trims: bool) {
    let text = std::fs::read_to_string(modelfile).unwrap();
    let mf = ollama::parse_modelfile(&text);
    let tmpl = mf.template.as_deref().expect("TEMPLATE");
    let hf = template::chat_template(model_dir).expect("the model has a chat_template");
    let tk = brain_train::tokenizer::Tokenizer::load(model_dir).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model_dir.join("tokenizer_config.json")).unwrap()).unwrap();
    let eos = cfg["eos_token"].as_str().unwrap();
    let bos = cfg["bos_token"].as_str();
    let mut compared = 0;
    for conv in conversations() {
        if trims && conv.iter().any(|(_, c)| c.trim() != c) {
            continue;
        }
        compared += 1;
        let via_ollama = format!("{}{}", layout.auto_bos, gotmpl::render_chat(tmpl, mf.system.as_deref(), &conv).unwrap());
        // What Ollama sends for a conversation without a system message carries SYSTEM.
        let mut effective = conv.clone();
        if let Some(s) = &mf.system {
            if effective[0].0 != "system" {
                effective.insert(0, ("system".into(), s.clone()));
            }
        }
        let via_hf = template::render_hf(&hf, &effective, bos, Some(eos)).unwrap();
        let via_training = template::render_training(&tk, &effective).unwrap();
        assert_eq!(via_ollama, via_training, "Modelfile vs training on {conv:?}");
        assert_eq!(via_hf, via_training, "chat_template vs training on {conv:?}");
        assert!(via_ollama.ends_with(layout.open_assistant));
    }
    assert!(compared >= 5, "multi-turn conversations with and without a system prompt were compared");
    // Training teaches the model to end its turn with the end-of-turn token; generation must
    // stop there, and at eos.
    assert!(mf.stop.iter().any(|s| s == layout.end_of_turn), "{:?}", mf.stop);
    assert!(mf.stop.iter().any(|s| s == eos), "{:?}", mf.stop);
    let tokens = tk.encode(&mf.stop.join("")).unwrap();
    assert_eq!(tokens.len(), mf.stop.len(), "every stop string is one special token: {:?}", mf.stop);
}

/// A `brain.toml` naming the Ollama model, and a registered active version.
fn setup(env: &Env) -> (PathBuf, PathBuf) {
    let base = env.path().join("base");
    let adapter = env.path().join("adapters");
    tiny_base(&base, true);
    random_adapter(&base, &adapter, 4, 2.0, 5);
    env.write_config("[pipeline]\nollama_model = \"sam-test\"\n");
    let store = Store::open(&env.db_path()).unwrap();
    brain::registry::models::register(&store, None, &adapter, Some(&base), &serde_json::json!({"test_loss": 1.0})).unwrap();
    brain::registry::models::promote(&store, "v1", None).unwrap();
    (base, adapter)
}

#[test]
fn fused_export_of_the_active_version() {
    let env = Env::new();
    let (base, _adapter) = setup(&env);
    let r = env.command(["export", "ollama", "--no-create", "--json"]).env("PATH", "/usr/bin:/bin").output().unwrap();
    let r = common::Run::from(r);
    r.assert_ok();
    let v = r.json();
    let out = env.path().join("ollama").join("sam-test");
    let modelfile = out.join("Modelfile");
    assert_eq!(v["modelfile"], modelfile.to_str().unwrap());
    assert_eq!(v["layout"], "fused");
    assert_eq!(v["created"], false);
    assert_eq!(v["template"]["matches_training"], true, "{v}");
    assert_eq!(v["template"]["matches_chat_template"], true, "{v}");
    assert_eq!(v["command"], format!("ollama create sam-test -f {}", modelfile.display()));
    let text = std::fs::read_to_string(&modelfile).unwrap();
    assert!(text.starts_with(&format!("FROM {}\n", out.join("fused").display())), "{text}");
    assert!(!text.contains("ADAPTER"));
    assert!(!text.contains("SYSTEM"), "the tiny template has no default system prompt:\n{text}");
    assert!(out.join("fused/model.safetensors").is_file());
    assert_modelfile_matches_training(&modelfile, &out.join("fused"), &CHATML, false);
    assert_modelfile_matches_training(&modelfile, &base, &CHATML, false);

    // Text output prints the exact command when Ollama is absent.
    let r = common::Run::from(env.command(["export", "ollama", "sam-two", "--system", "You are SAM.", "--temperature", "0.3"]).env("PATH", "/usr/bin:/bin").output().unwrap());
    r.assert_ok();
    let mf2 = env.path().join("ollama/sam-two/Modelfile");
    assert!(r.stdout.contains(&format!("ollama create sam-two -f {}", mf2.display())), "{}", r.stdout);
    let text = std::fs::read_to_string(&mf2).unwrap();
    assert!(text.contains("SYSTEM \"\"\"You are SAM.\"\"\""), "{text}");
    assert!(text.lines().any(|l| l == "PARAMETER temperature 0.3"), "{text}");
    assert_modelfile_matches_training(&mf2, &base, &CHATML, false);
}

#[test]
fn ollama_create_runs_when_installed() {
    let env = Env::new();
    setup(&env);
    let bin = env.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = env.path().join("ollama.log");
    let script = format!("#!/bin/sh\necho \"$@\" >> {}\nexit 0\n", log.display());
    std::fs::write(bin.join("ollama"), script).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("ollama"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let r = common::Run::from(env.command(["export", "ollama", "sam-test", "--quantize", "q4_K_M"]).env("PATH", &path).output().unwrap());
    r.assert_ok();
    assert!(r.stdout.contains("created Ollama model sam-test"), "{}", r.stdout);
    let calls = std::fs::read_to_string(&log).unwrap();
    let modelfile = env.path().join("ollama/sam-test/Modelfile");
    assert!(calls.contains("--version"), "{calls}");
    assert!(calls.contains(&format!("create sam-test --quantize q4_K_M -f {}", modelfile.display())), "{calls}");

    // The GGUF route: `ollama create NAME -f Modelfile` with the file beside it (Ollama resolves
    // `FROM ./…` relative to the Modelfile).
    std::fs::write(&log, "").unwrap();
    let r = common::Run::from(env.command(["export", "ollama", "sam-gguf", "--gguf"]).env("PATH", &path).output().unwrap());
    r.assert_ok();
    assert!(r.stdout.contains("created Ollama model sam-gguf"), "{}", r.stdout);
    let modelfile = env.path().join("ollama/sam-gguf/Modelfile");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.lines().any(|l| l == format!("create sam-gguf -f {}", modelfile.display())), "{calls}");
    let from = ollama::parse_modelfile(&std::fs::read_to_string(&modelfile).unwrap()).from.unwrap();
    assert!(modelfile.parent().unwrap().join(&from).is_file(), "{from}");
}

/// A Qwen2.5-style template: a default system turn when the conversation has none.
const QWEN25_STYLE: &str = "{%- if messages[0]['role'] == 'system' %}\n    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n{%- else %}\n    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

#[test]
fn adapter_layout_and_a_default_system_prompt() {
    let env = Env::new();
    env.write_config("");
    let base = env.path().join("base25");
    let adapter = env.path().join("adapters");
    tiny_base(&base, true);
    let cfg_path = base.join("tokenizer_config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["chat_template"] = QWEN25_STYLE.into();
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    random_adapter(&base, &adapter, 8, 4.0, 9);

    let out = env.path().join("ship");
    let r = env.run(["export", "ollama", "sam25", "--adapter", adapter.to_str().unwrap(), "--base", base.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-create", "--json"]);
    r.assert_ok();
    let v = r.json();
    assert_eq!(v["layout"], "adapter");
    assert_eq!(v["template"]["default_system"], "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
    assert!(r.stderr.contains("llama and gemma2"), "Ollama's importer limits are reported:\n{}", r.stderr);
    let text = std::fs::read_to_string(out.join("Modelfile")).unwrap();
    assert!(text.starts_with(&format!("FROM {}\nADAPTER {}\n", base.display(), out.join("adapter").display())), "{text}");
    assert!(text.contains("SYSTEM \"\"\"You are Qwen, created by Alibaba Cloud. You are a helpful assistant.\"\"\""), "{text}");
    assert_modelfile_matches_training(&out.join("Modelfile"), &base, &CHATML, false);

    // The PEFT adapter applies the training scale: lora_alpha / r = scale.
    let peft: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(peft["r"], 8);
    assert_eq!(peft["lora_alpha"].as_f64(), Some(32.0));
    assert!(out.join("adapter/adapter_model.safetensors").is_file());
}

#[test]
fn a_template_that_renders_differently_is_caught() {
    let env = Env::new();
    let base = env.path().join("base");
    tiny_base(&base, true);
    let spec = ollama::ModelfileSpec {
        weights: ollama::Weights::Fused(base.clone()),
        template: family::chatml_template(""),
        system_prompt: Some("S".into()),
        temperature: None,
        stop: vec!["<|im_end|>".into(), "<|endoftext|>".into()],
    };
    let good = ollama::modelfile(&spec);
    let check = template::check(&base, &good).unwrap();
    assert!(check.ok() && check.matches_chat_template == Some(true), "{check:?}");

    // The system turn rendered from .System and again from .Messages: twice.
    let doubled = "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n";
    let bad = good.replace(&family::chatml_template(""), doubled);
    let check = template::check(&base, &bad).unwrap();
    assert!(!check.matches_training && !check.ok());
    assert!(check.mismatches[0].modelfile.matches("<|im_start|>system").count() == 2, "{:?}", check.mismatches[0]);

    // A missing end-of-turn stop.
    let no_stop = good.replace("PARAMETER stop \"<|im_end|>\"\n", "");
    let check = template::check(&base, &no_stop).unwrap();
    assert_eq!(check.missing_stop, ["<|im_end|>"]);
    assert!(!check.ok());
}

#[test]
fn export_keeps_the_snapshot_export_and_help() {
    let env = Env::new();
    env.write_config("");
    let r = env.run(["export", "--help"]);
    r.assert_ok();
    assert!(r.stdout.contains("ollama") && r.stdout.contains("--out"), "{}", r.stdout);
    let r = env.run(["export", "ollama", "--help"]);
    r.assert_ok();
    assert!(r.stdout.contains("--fused") && r.stdout.contains("--adapter") && r.stdout.contains("--base"), "{}", r.stdout);
    // No name and no [pipeline] ollama_model.
    let r = env.run(["export", "ollama"]);
    r.assert_failed();
    assert!(r.stderr.contains("ollama_model"), "{}", r.stderr);
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn generate(env: &Env, model: &Path) -> String {
    let r = env.run(["generate", "--model", model.to_str().unwrap(), "--prompt", "Hello there", "--max-tokens", "12", "--json"]);
    r.assert_ok();
    r.json()["text"].as_str().unwrap().to_string()
}

/// `--gguf`: the fused weights become one GGUF file beside the Modelfile (`FROM ./file`), which
/// brain reads back as a model and generates the same text from as the fused directory; a fused
/// directory holding a GGUF file is built from that file, unless `--safetensors`.
#[test]
fn gguf_export_writes_from_a_file_beside_the_modelfile() {
    let env = Env::new();
    setup(&env);
    let r = env.command(["export", "ollama", "--gguf", "--no-create", "--json"]).env("PATH", "/usr/bin:/bin").output().unwrap();
    let r = common::Run::from(r);
    r.assert_ok();
    let v = r.json();
    let out = env.path().join("ollama").join("sam-test");
    let gguf = out.join("ggml-model-f16.gguf");
    assert_eq!(v["layout"], "gguf", "{v}");
    assert_eq!(v["family"], "chatml");
    assert_eq!(v["gguf"], gguf.to_str().unwrap());
    assert_eq!(v["gguf_export"]["gguf_type"], "f16");
    let modelfile = out.join("Modelfile");
    let text = std::fs::read_to_string(&modelfile).unwrap();
    assert!(text.starts_with("FROM ./ggml-model-f16.gguf\nTEMPLATE \"\"\""), "{text}");
    assert!(gguf.is_file());
    assert_modelfile_matches_training(&modelfile, &out.join("fused"), &CHATML, false);

    // The file is a model brain reads: the fused model, its template inside.
    let info = env.run(["model", "info", gguf.to_str().unwrap(), "--json"]);
    info.assert_ok();
    let info = info.json();
    assert_eq!(info["format"], "gguf", "{info}");
    assert_eq!(info["architecture"], "qwen2", "{info}");
    assert!(info["chat_template"].as_str().unwrap().contains("GGUF"), "{info}");
    let file = brain_train::gguf::GgufFile::open(&gguf).unwrap();
    assert_eq!(file.get_str("tokenizer.chat_template").unwrap(), template::chat_template(&out.join("fused")).as_deref());
    assert_eq!(file.get_bool("tokenizer.ggml.add_bos_token").unwrap(), Some(false), "ChatML adds no bos: the TEMPLATE renders all");
    assert_eq!(generate(&env, &gguf), generate(&env, &out.join("fused")));

    // A fused directory with a GGUF file in it (`brain fuse --export-gguf`) ships that file.
    let fused = out.join("fused");
    std::fs::copy(&gguf, fused.join("ggml-model-f16.gguf")).unwrap();
    let again = env.path().join("again");
    let r = env.run(["export", "ollama", "sam-again", "--fused", fused.to_str().unwrap(), "--out", again.to_str().unwrap(), "--no-create", "--json"]);
    r.assert_ok();
    assert_eq!(r.json()["layout"], "gguf");
    assert!(r.json()["gguf_export"].is_null(), "the existing file is reused");
    assert_eq!(std::fs::read(again.join("ggml-model-f16.gguf")).unwrap(), std::fs::read(&gguf).unwrap());
    assert!(std::fs::read_to_string(again.join("Modelfile")).unwrap().starts_with("FROM ./ggml-model-f16.gguf\n"));
    // --safetensors keeps Ollama's own conversion of the directory.
    let st = env.path().join("st");
    let r = env.run(["export", "ollama", "sam-st", "--fused", fused.to_str().unwrap(), "--safetensors", "--out", st.to_str().unwrap(), "--no-create", "--json"]);
    r.assert_ok();
    assert_eq!(r.json()["layout"], "fused");
    assert!(std::fs::read_to_string(st.join("Modelfile")).unwrap().starts_with(&format!("FROM {}\n", fused.display())));
    // Two GGUF files: which one is the user's choice.
    std::fs::copy(&gguf, fused.join("other.gguf")).unwrap();
    let r = env.run(["export", "ollama", "sam-x", "--fused", fused.to_str().unwrap(), "--out", st.to_str().unwrap(), "--no-create"]);
    r.assert_failed();
    assert!(r.stderr.contains("several GGUF files") && r.stderr.contains("--gguf TYPE"), "{}", r.stderr);
    // A type brain cannot write is refused before anything is fused.
    let r = env.run(["export", "ollama", "sam-y", "--gguf", "q3_k", "--no-create"]);
    r.assert_failed();
    assert!(r.stderr.contains("q3_k") && r.stderr.contains("f16, q8_0, q4_0"), "{}", r.stderr);
}

/// A Llama-3-style model: the TEMPLATE is derived as Llama 3's header layout without
/// `<|begin_of_text|>` (Ollama's tokenizer adds it: the GGUF says add_bos_token), stops at
/// `<|eot_id|>`, and renders multi-turn conversations with a system prompt exactly as training.
#[test]
fn llama3_template_and_stops_match_training() {
    let env = Env::new();
    env.write_config("");
    let base = env.path().join("llama3");
    tiny_llama3(&base, LLAMA3_TEMPLATE);
    let out = env.path().join("ship");
    let r = env.run(["export", "ollama", "l3", "--fused", base.to_str().unwrap(), "--gguf", "q8_0", "--system", "You are SAM.", "--out", out.to_str().unwrap(), "--no-create", "--json"]);
    r.assert_ok();
    let v = r.json();
    assert_eq!(v["family"], "llama3", "{v}");
    assert_eq!(v["layout"], "gguf");
    assert_eq!(v["template"]["matches_training"], true, "{v}");
    assert_eq!(v["template"]["matches_chat_template"], true, "{v}");
    assert!(r.stderr.contains("trims message content"), "Ollama's untrimmed content is reported:\n{}", r.stderr);
    let modelfile = out.join("Modelfile");
    let text = std::fs::read_to_string(&modelfile).unwrap();
    assert!(text.starts_with("FROM ./ggml-model-q8_0.gguf\n"), "{text}");
    let mf = ollama::parse_modelfile(&text);
    let tmpl = mf.template.clone().unwrap();
    assert!(!tmpl.contains("<|begin_of_text|>") && tmpl.contains("<|start_header_id|>"), "{tmpl}");
    assert_eq!(mf.stop[0], "<|eot_id|>");
    let file = brain_train::gguf::GgufFile::open(out.join("ggml-model-q8_0.gguf")).unwrap();
    assert_eq!(file.get_bool("tokenizer.ggml.add_bos_token").unwrap(), Some(true));
    assert_eq!(file.get_str("tokenizer.chat_template").unwrap(), Some(LLAMA3_TEMPLATE));
    assert_modelfile_matches_training(&modelfile, &base, &LLAMA3, true);
    let system_first = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are SAM.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>";
    let one = gotmpl::render_chat(&tmpl, mf.system.as_deref(), &[("user".into(), "hi".into())]).unwrap();
    assert!(format!("<|begin_of_text|>{one}").starts_with(system_first), "{one}");
    // The limitation the warning names: Ollama keeps the whitespace training trimmed.
    let tk = brain_train::tokenizer::Tokenizer::load(&base).unwrap();
    let padded = vec![("system".to_string(), "S".to_string()), ("user".to_string(), " x ".to_string())];
    assert_ne!(template::render_ollama(&tk, &tmpl, None, &padded).unwrap(), template::render_training(&tk, &padded).unwrap());

    // The check is against training, not the TEMPLATE itself: a bos written into the TEMPLATE
    // (Ollama would add a second), or the ChatML layout, are both caught.
    let doubled_bos = text.replace(&tmpl, &format!("<|begin_of_text|>{tmpl}"));
    let check = template::check(&base, &doubled_bos).unwrap();
    assert!(!check.matches_training, "{check:?}");
    assert!(check.mismatches[0].modelfile.starts_with("<|begin_of_text|><|begin_of_text|>"), "{:?}", check.mismatches[0]);
    let chatml = text.replace(&tmpl, &family::chatml_template(""));
    assert!(!template::check(&base, &chatml).unwrap().matches_training);
    let no_eot = text.replace("PARAMETER stop \"<|eot_id|>\"\n", "");
    assert_eq!(template::check(&base, &no_eot).unwrap().missing_stop, ["<|eot_id|>"]);
}

/// Llama 3.1's system turn (always written, with the cut-off and date lines) is reproduced by
/// the TEMPLATE, with and without a system prompt; the safetensors route is kept.
#[test]
fn llama31_system_preamble_is_rendered_as_training() {
    let env = Env::new();
    env.write_config("");
    let base = env.path().join("llama31");
    tiny_llama3(&base, LLAMA31_TEMPLATE);
    let out = env.path().join("ship");
    let r = env.run(["export", "ollama", "l31", "--fused", base.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-create", "--json"]);
    r.assert_ok();
    let v = r.json();
    assert_eq!((v["family"].as_str(), v["layout"].as_str()), (Some("llama3"), Some("fused")), "{v}");
    let modelfile = out.join("Modelfile");
    let text = std::fs::read_to_string(&modelfile).unwrap();
    assert!(text.starts_with(&format!("FROM {}\n", base.display())), "{text}");
    assert!(text.contains("Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"), "{text}");
    assert!(!text.contains("SYSTEM"), "{text}");
    assert_modelfile_matches_training(&modelfile, &base, &LLAMA3, true);
    // With a SYSTEM line too.
    let r = env.run(["export", "ollama", "l31s", "--fused", base.to_str().unwrap(), "--system", "Be brief.", "--out", out.to_str().unwrap(), "--no-create"]);
    r.assert_ok();
    assert_modelfile_matches_training(&modelfile, &base, &LLAMA3, true);

    // Llama 3.2 writes today's date (strftime_now): the Modelfile holds the day of export, and says so.
    let dated = LLAMA31_TEMPLATE.replace("Today Date: 26 Jul 2024\n\n' + sys", "Today Date: ' + strftime_now('%d %b %Y') + '\n\n' + sys");
    assert_ne!(dated, LLAMA31_TEMPLATE);
    let base32 = env.path().join("llama32");
    tiny_llama3(&base32, &dated);
    let r = env.run(["export", "ollama", "l32", "--fused", base32.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-create", "--json"]);
    r.assert_ok();
    assert!(r.stderr.contains("strftime_now") && r.stderr.contains("day of export"), "{}", r.stderr);
    assert!(!std::fs::read_to_string(&modelfile).unwrap().contains("26 Jul 2024"));
    assert_modelfile_matches_training(&modelfile, &base32, &LLAMA3, true);
}

/// A Qwen3-style template (ChatML; earlier replies lose their `<think>` reasoning; an empty
/// think block only when thinking is switched off): plain chats render as training, and the
/// reasoning difference is reported.
#[test]
fn qwen3_style_template_is_chatml_for_plain_chats() {
    let env = Env::new();
    env.write_config("");
    let base = env.path().join("qwen3");
    tiny_base(&base, true);
    let cfg_path = base.join("tokenizer_config.json");
    let mut cfg = read_json(&cfg_path);
    cfg["chat_template"] = QWEN3_STYLE.into();
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let out = env.path().join("ship");
    let r = env.run(["export", "ollama", "q3", "--fused", base.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-create", "--json"]);
    r.assert_ok();
    let v = r.json();
    assert_eq!(v["family"], "chatml", "{v}");
    assert_eq!(v["template"]["matches_training"], true, "{v}");
    assert!(r.stderr.contains("<think>"), "{}", r.stderr);
    assert_modelfile_matches_training(&out.join("Modelfile"), &base, &CHATML, false);
}

/// Qwen3's documented behaviour, written by hand.
const QWEN3_STYLE: &str = "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}{%- endif %}{%- for m in messages %}{%- if m.role == 'user' or (m.role == 'system' and not loop.first) %}{{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{%- elif m.role == 'assistant' %}{%- set content = m.content %}{%- if '</think>' in content %}{%- set content = content.split('</think>')[-1].lstrip('\n') %}{%- endif %}{{- '<|im_start|>assistant\n' + content + '<|im_end|>\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- endif %}{%- endif %}";

/// Llama 3's layout on a vocabulary without its special tokens: the markers are plain text, and
/// generation still stops at `<|eot_id|>` (Ollama's stops match text).
#[test]
fn the_end_of_turn_marker_stops_even_when_it_is_not_one_token() {
    let env = Env::new();
    env.write_config("");
    let base = env.path().join("plain");
    tiny_base(&base, true);
    let cfg_path = base.join("tokenizer_config.json");
    let mut cfg = read_json(&cfg_path);
    cfg["chat_template"] = LLAMA3_TEMPLATE.into();
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let out = env.path().join("ship");
    let r = env.run(["export", "ollama", "plain", "--fused", base.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-create", "--json"]);
    r.assert_ok();
    assert_eq!(r.json()["family"], "llama3");
    assert_eq!(r.json()["template"]["matches_training"], true);
    let mf = ollama::parse_modelfile(&std::fs::read_to_string(out.join("Modelfile")).unwrap());
    assert_eq!(mf.stop.first().map(String::as_str), Some("<|eot_id|>"), "{:?}", mf.stop);
    assert!(mf.stop.iter().any(|s| s == cfg["eos_token"].as_str().unwrap()), "{:?}", mf.stop);
}

/// A chat template of another layout is refused with its name, not shipped with a TEMPLATE
/// that renders something else.
#[test]
fn an_unknown_chat_layout_is_refused_by_name() {
    let env = Env::new();
    env.write_config("");
    let base = env.path().join("other");
    tiny_base(&base, true);
    let cfg_path = base.join("tokenizer_config.json");
    let mut cfg = read_json(&cfg_path);
    cfg["chat_template"] =
        "{%- for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{%- endfor %}{%- if add_generation_prompt %}<start_of_turn>model\n{%- endif %}".into();
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let out = env.path().join("ship");
    let r = env.run(["export", "ollama", "other", "--fused", base.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-create"]);
    r.assert_failed();
    assert!(r.stderr.contains("none of the layouts") && r.stderr.contains("tokenizer_config.json"), "{}", r.stderr);
    assert!(r.stderr.contains("<start_of_turn>user"), "the rendering is shown: {}", r.stderr);
    assert!(!out.join("Modelfile").exists());
}
