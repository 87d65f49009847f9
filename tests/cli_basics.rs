//! The CLI's edges: `init`, config errors with line and column, `plugins`, missing files.

mod common;

use common::*;

#[test]
fn init_writes_a_config_that_loads_and_refuses_to_overwrite() {
    let env = Env::new();
    let r = env.run(["init"]);
    r.assert_ok();
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(text.contains("[[source]]") && text.contains("approve_above = 0.7"), "{text}");
    env.run(["status"]).assert_ok();

    let again = env.run(["init"]);
    again.assert_failed();
    assert!(again.stderr.contains("already exists") && again.stderr.contains("--force"), "{}", again.stderr);
    env.run(["init", "--force"]).assert_ok();

    // A directory argument gets brain.toml inside it.
    let sub = env.path().join("elsewhere");
    std::fs::create_dir(&sub).unwrap();
    env.run(["init", sub.to_str().unwrap()]).assert_ok();
    assert!(sub.join("brain.toml").is_file());
}

#[test]
fn init_in_a_git_repository_sets_up_its_commits_as_a_source() {
    let env = Env::new();
    let repo = env.path().join("project");
    init_repo(&repo);
    commit(&repo, &[("a.rs", b"fn a() {}\n")], b"Add a");
    commit(&repo, &[("b.rs", b"fn b() {}\n")], b"Add b");
    let cfg = repo.join("brain.toml");
    let r = env.run(["init", repo.to_str().unwrap()]);
    r.assert_ok();
    let run = env.run(["--config", cfg.to_str().unwrap(), "collect", "--json"]);
    run.assert_ok();
    assert_eq!(run.json()["stored"], 2);
}

#[test]
fn malformed_toml_is_reported_with_line_and_column() {
    let env = Env::new();
    std::fs::write(env.config_path(), "[store]\npath = \"brain.db\"\n\n[review]\napprove_above = 0.7 0.8\n").unwrap();
    for cmd in ["status", "collect"] {
        let r = env.run([cmd]);
        r.assert_failed();
        assert!(r.stderr.contains("brain.toml:5:21"), "{cmd}: {}", r.stderr);
        assert!(r.stderr.contains("approve_above = 0.7 0.8"), "{cmd}: the line is shown: {}", r.stderr);
    }
}

#[test]
fn unknown_keys_are_reported_with_line_and_column() {
    let env = Env::new();
    std::fs::write(
        env.config_path(),
        "[[source]]\nname = \"x\"\nplugin = \"git\"\ngrants = { git = [\"/tmp\"], network = true }\n",
    )
    .unwrap();
    let r = env.run(["status"]);
    r.assert_failed();
    assert!(r.stderr.contains("brain.toml:4:28"), "{}", r.stderr);
    assert!(r.stderr.contains("unknown field `network`"), "{}", r.stderr);
    assert!(r.stderr.contains("expected one of `git`, `sqlite`, `read`"), "{}", r.stderr);

    std::fs::write(env.config_path(), "[store]\npath = \"brain.db\"\n\n[trian]\niters = 3\n").unwrap();
    let r = env.run(["status"]);
    r.assert_failed();
    assert!(r.stderr.contains("brain.toml:4:2") && r.stderr.contains("trian"), "{}", r.stderr);
}

#[test]
fn a_missing_config_says_how_to_make_one() {
    let env = Env::new();
    let r = env.run(["status"]);
    r.assert_failed();
    assert!(r.stderr.contains("brain init") && r.stderr.contains("--config"), "{}", r.stderr);
    let r = env.run(["--config", "other.toml", "collect"]);
    r.assert_failed();
    assert!(r.stderr.contains("other.toml"), "{}", r.stderr);
}

#[test]
fn plugins_list_and_info_describe_the_bundled_plugins() {
    let env = Env::new();
    env.write_config("[[source]]\nname = \"mine\"\nplugin = \"git\"\n");
    let r = env.run(["plugins", "list", "--json"]);
    r.assert_ok();
    let list = r.json();
    let git = list.as_array().unwrap().iter().find(|p| p["name"] == "git").expect("git is bundled");
    assert_eq!(git["world"], "source");
    assert_eq!(git["bundled"], true);
    assert_eq!(git["used_by"], serde_json::json!(["mine"]));
    assert!(git["imports"].as_array().unwrap().iter().any(|i| i.as_str().unwrap().contains("git")), "{git}");

    let r = env.run(["plugins", "info", "git"]);
    r.assert_ok();
    assert!(r.stdout.contains("world    source") && r.stdout.contains("0.2"), "{}", r.stdout);
    // `mine` imports git but was granted none: the info says so.
    assert!(r.stdout.contains("granted none"), "{}", r.stdout);
    let by_entry = env.run(["plugins", "info", "mine", "--json"]);
    by_entry.assert_ok();
    assert_eq!(by_entry.json()["name"], "git");

    let r = env.run(["plugins", "info", "nothing-like-this"]);
    r.assert_failed();
    assert!(r.stderr.contains("no plugin \"nothing-like-this\""), "{}", r.stderr);
}

#[test]
fn plugins_list_works_without_a_config() {
    let env = Env::new();
    let r = env.run(["plugins", "list"]);
    r.assert_ok();
    assert!(r.stdout.lines().any(|l| l.starts_with("git ")), "{}", r.stdout);
}

#[test]
fn tokenize_prints_ids_and_the_loss_mask_of_each_line() {
    let env = Env::new();
    let model = env.path().join("tiny");
    let m = model.to_str().unwrap();
    env.run(["model", "init-tiny", m, "--hidden", "32", "--layers", "1", "--heads", "2", "--kv-heads", "1", "--intermediate", "64", "--tokenizer-vocab", "320"]).assert_ok();
    let data = env.path().join("chat.jsonl");
    let lines = [
        r#"{"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]}"#,
        r#"{"prompt": "2+2?", "completion": "4, é"}"#,
    ];
    std::fs::write(&data, format!("{}\n\n{}\n", lines[0], lines[1])).unwrap();
    let r = env.run(["tokenize", "--model", m, "--data", data.to_str().unwrap(), "--json"]);
    r.assert_ok();
    let tok = brain_train::tokenizer::Tokenizer::load(&model).unwrap();
    let out: Vec<serde_json::Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(out.len(), 2, "one object per non-blank line:\n{}", r.stdout);
    for (line, got) in lines.iter().zip(&out) {
        let (_, t) = brain_train::data::tokenize_line(line, &tok).unwrap();
        assert_eq!(got["ids"], serde_json::json!(t.tokens));
        assert_eq!(got["mask"], serde_json::json!(t.mask.iter().map(|m| u8::from(*m)).collect::<Vec<_>>()));
    }
    let trained: Vec<u32> = out[0]["ids"].as_array().unwrap().iter().zip(out[0]["mask"].as_array().unwrap()).filter(|(_, m)| **m == 1).map(|(i, _)| i.as_u64().unwrap() as u32).collect();
    assert_eq!(tok.decode(&trained, false).unwrap(), "hi<|im_end|>\n");

    let r = env.run(["tokenize", "--model", m, "--data", data.to_str().unwrap()]);
    r.assert_ok();
    assert!(r.stdout.contains("line 1 (Chat)") && r.stdout.contains("line 3 (Completions)"), "{}", r.stdout);
    assert!(r.stdout.contains("<|im_start|>assistant\n«hi<|im_end|>\n»"), "trained tokens are marked:\n{}", r.stdout);

    std::fs::write(&data, format!("{}\n{{\"messages\": [{{\"content\": \"x\"}}]}}\n", lines[0])).unwrap();
    let r = env.run(["tokenize", "--model", m, "--data", data.to_str().unwrap(), "--json"]);
    r.assert_failed();
    assert!(r.stderr.contains("chat.jsonl:2") && r.stderr.contains("role"), "{}", r.stderr);
}

#[test]
fn version_verbosity_and_quiet_are_global_flags() {
    let env = Env::new();
    let v = env.run(["--version"]);
    v.assert_ok();
    assert_eq!(v.stdout.trim(), format!("brain {}", env!("CARGO_PKG_VERSION")));
    // A cache folder others can write to is not used (a warning), so every run compiles the
    // bundled plugins (a debug line per plugin).
    let shared = env.path().join("shared-cache");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    env.write_config("[plugins]\ncache_dir = \"shared-cache\"\n");
    let stderr = |flags: &[&str]| {
        let mut args = flags.to_vec();
        args.extend(["plugins", "list"]);
        let r = env.run(&args);
        r.assert_ok();
        assert!(!r.stderr.contains('\x1b'), "no colour codes when stderr is not a terminal: {:?}", r.stderr);
        r.stderr
    };
    let warned = |s: &str| s.contains("WARN") && s.contains("not used");
    let compiled = |s: &str| s.matches("compiled plugin component").count();
    let plain = stderr(&[]);
    assert!(warned(&plain) && compiled(&plain) == 0, "{plain}");
    for flag in ["-q", "--quiet"] {
        let quiet = stderr(&[flag]);
        assert!(!warned(&quiet), "{flag}: only errors: {quiet}");
    }
    let info = stderr(&["-v"]);
    assert!(warned(&info) && compiled(&info) == 0, "-v is info, not debug: {info}");
    for flags in [&["-vv"][..], &["--verbose", "--verbose"]] {
        let debug = stderr(flags);
        assert!(compiled(&debug) >= 3, "{flags:?} shows debug lines: {debug}");
    }
}

#[test]
fn init_tiny_trains_its_tokenizer_on_a_given_corpus_and_sizes_the_embedding() {
    let env = Env::new();
    let words = ["kernelization", "matrixology", "tensorcraft", "gradientwise"];
    let corpus: String = (0..400).map(|i| format!("{} {} {}\n", words[i % 4], words[(i / 4) % 4], words[(i / 16) % 4])).collect();
    std::fs::write(env.path().join("corpus.txt"), corpus).unwrap();
    let r = env.run(["model", "init-tiny", "t", "--corpus", "corpus.txt", "--tokenizer-vocab", "300", "--vocab", "384"]);
    r.assert_ok();
    let info = env.run(["--json", "model", "info", "t"]).json();
    assert_eq!((info["tokenizer_size"].as_u64(), info["vocab_size"].as_u64()), (Some(300), Some(384)), "{info}");
    // The corpus's words became whole tokens; the built-in corpus does not make them.
    let vocab = |dir: &str| std::fs::read_to_string(env.path().join(dir).join("tokenizer.json")).unwrap();
    env.run(["model", "init-tiny", "d", "--tokenizer-vocab", "300"]).assert_ok();
    for w in words {
        assert!(vocab("t").contains(&format!("\"Ġ{w}\"")) || vocab("t").contains(&format!("\"{w}\"")), "{w} is a token");
        assert!(!vocab("d").contains(&format!("\"Ġ{w}\"")), "{w} is not a token of the default corpus");
    }
    let r = env.run(["model", "init-tiny", "x", "--corpus", "missing.txt"]);
    r.assert_failed();
    assert!(r.stderr.contains("missing.txt"), "{}", r.stderr);
}
