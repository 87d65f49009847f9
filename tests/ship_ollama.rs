//! `brain export ollama NAME`: the Modelfile's TEMPLATE, SYSTEM and stop tokens reproduce the
//! chat template training used — checked by rendering conversations three ways: the Modelfile as
//! Ollama's chat endpoint would, the model's tokenizer_config.json chat_template (Jinja), and
//! brain-train's training renderer. Fused (default) and adapter layouts; `ollama create` runs
//! when an `ollama` is on PATH.

mod common;
mod ship_support;

use std::path::{Path, PathBuf};

use brain::ship::{gotmpl, ollama, template};
use brain::store::Store;
use common::Env;
use ship_support::{random_adapter, tiny_base};

/// Conversations beyond the export's own probes.
fn conversations() -> Vec<Vec<(String, String)>> {
    let c = |v: &[(&str, &str)]| v.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect::<Vec<_>>();
    let mut all = template::probe_conversations();
    all.push(c(&[("system", "Terse."), ("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"), ("user", "e")]));
    all.push(c(&[("user", "  spaces  \n\n and blank lines \n")]));
    all
}

/// Renders every conversation through the Modelfile (as Ollama), the model's chat template and
/// training's renderer, and asserts all three agree; checks the stop strings.
fn assert_modelfile_matches_training(modelfile: &Path, model_dir: &Path) {
    let text = std::fs::read_to_string(modelfile).unwrap();
    let mf = ollama::parse_modelfile(&text);
    let tmpl = mf.template.as_deref().expect("TEMPLATE");
    let hf = template::chat_template(model_dir).expect("the model has a chat_template");
    let tk = brain_train::tokenizer::Tokenizer::load(model_dir).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model_dir.join("tokenizer_config.json")).unwrap()).unwrap();
    let eos = cfg["eos_token"].as_str().unwrap();
    for conv in conversations() {
        let via_ollama = gotmpl::render_chat(tmpl, mf.system.as_deref(), &conv).unwrap();
        // What Ollama sends for a conversation without a system message carries SYSTEM.
        let mut effective = conv.clone();
        if let Some(s) = &mf.system {
            if effective[0].0 != "system" {
                effective.insert(0, ("system".into(), s.clone()));
            }
        }
        let via_hf = template::render_hf(&hf, &effective, None, Some(eos)).unwrap();
        let via_training = template::render_training(&tk, &effective).unwrap();
        assert_eq!(via_ollama, via_training, "Modelfile vs training on {conv:?}");
        assert_eq!(via_hf, via_training, "chat_template vs training on {conv:?}");
        assert!(via_ollama.ends_with("<|im_start|>assistant\n"));
    }
    // Training teaches the model to end its turn with <|im_end|> (the eos of tokenizer_config);
    // generation must stop there.
    assert!(mf.stop.iter().any(|s| s == "<|im_end|>"), "{:?}", mf.stop);
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
    assert_modelfile_matches_training(&modelfile, &out.join("fused"));
    assert_modelfile_matches_training(&modelfile, &base);

    // Text output prints the exact command when Ollama is absent.
    let r = common::Run::from(env.command(["export", "ollama", "sam-two", "--system", "You are SAM."]).env("PATH", "/usr/bin:/bin").output().unwrap());
    r.assert_ok();
    let mf2 = env.path().join("ollama/sam-two/Modelfile");
    assert!(r.stdout.contains(&format!("ollama create sam-two -f {}", mf2.display())), "{}", r.stdout);
    let text = std::fs::read_to_string(&mf2).unwrap();
    assert!(text.contains("SYSTEM \"\"\"You are SAM.\"\"\""), "{text}");
    assert_modelfile_matches_training(&mf2, &base);
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
    assert_modelfile_matches_training(&out.join("Modelfile"), &base);

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
    let spec = ollama::ModelfileSpec { weights: ollama::Weights::Fused(base.clone()), system_prompt: Some("S".into()), temperature: None, stop: vec![] };
    let good = ollama::modelfile(&spec);
    let check = template::check(&base, &good).unwrap();
    assert!(check.ok() && check.matches_chat_template == Some(true), "{check:?}");

    // The system turn rendered from .System and again from .Messages: twice.
    let doubled = "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n";
    let bad = good.replace(&ollama::chatml_template(), doubled);
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
