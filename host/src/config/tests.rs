use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("/cfg/dir/brain.toml"))
}

fn err(text: &str) -> ConfigError {
    parse(text).expect_err("should be refused")
}

#[test]
fn the_init_template_parses_and_matches_the_defaults() {
    let c = parse(TEMPLATE).unwrap();
    assert_eq!(c.store_path, Path::new("/cfg/dir/brain.db"));
    assert!(c.sources.is_empty() && c.filters.is_empty());
    assert_eq!(c.review, Review { approve_above: 0.7, reject_below: 0.3 });
    // Every value the template writes is the built-in default.
    let d = parse("").unwrap();
    assert_eq!(format!("{:?}", c.train), format!("{:?}", d.train));
    assert_eq!(format!("{:?}", c.dpo), format!("{:?}", d.dpo));
    assert_eq!(format!("{:?}", c.eval), format!("{:?}", d.eval));
    assert_eq!(format!("{:?}", c.export), format!("{:?}", d.export));
    assert_eq!(format!("{:?}", c.dedup), format!("{:?}", d.dedup));
    assert_eq!(format!("{:?}", c.pipeline), format!("{:?}", d.pipeline));
    assert_eq!(format!("{:?}", c.plugins), format!("{:?}", d.plugins));
    assert_eq!(format!("{:?}", c.serve), format!("{:?}", d.serve));
}

#[test]
fn the_template_commented_examples_parse_when_uncommented() {
    // Uncomment the examples: "# key = …" and "# [[table]]" lines.
    let uncommented: String = TEMPLATE
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with("[[") || (rest.starts_with(|c: char| c.is_ascii_lowercase()) && rest.contains(" = ")) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = parse(&uncommented).unwrap();
    assert_eq!(c.sources.len(), 4);
    assert_eq!(c.filters.len(), 2);
    let teacher = &c.sources[2];
    assert_eq!(teacher.grants.llm.endpoints, ["http://127.0.0.1:8080/v1"]);
    assert_eq!(c.sources[3].grants.llm.key_env.as_deref(), Some("ANTHROPIC_API_KEY"));
    assert_eq!(teacher.budget.llm_calls, Some(250));
    assert_eq!(c.scrub.rules.len(), 1);
    assert!(c.train.base_model.is_some());
    assert_eq!(c.serve.escalate_key_env.as_deref(), Some("ANTHROPIC_API_KEY"));
}

#[test]
fn sources_resolve_plugins_grants_and_config() {
    let home = PathBuf::from(std::env::var("HOME").expect("HOME is set in tests"));
    let c = parse(
        r#"
[store]
path = "../db/brain.db"

[[source]]
name = "commits"
plugin = "git"
grants = { git = ["~/code/sam", "rel/repo"], read = ["/abs"] }
config = { repos = ["~/code/sam"], max_diff_bytes = 4000, nested = { when = 1979-05-27, ok = true, x = 1.5 } }

[[source]]
name = "mine"
plugin = "plugins/mine.wasm"
enabled = false
"#,
    )
    .unwrap();
    assert_eq!(c.store_path, Path::new("/cfg/dir/../db/brain.db"));
    let s = &c.sources[0];
    assert_eq!(s.name, "commits");
    assert!(matches!(&s.plugin, PluginRef::Bundled(n) if n == "git"));
    assert_eq!(s.grants.git, vec![home.join("code/sam"), PathBuf::from("/cfg/dir/rel/repo")]);
    assert_eq!(s.grants.read, vec![PathBuf::from("/abs")]);
    assert!(s.grants.sqlite.is_empty());
    assert!(s.enabled);
    let json: serde_json::Value = serde_json::from_str(&s.config_json).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"repos": [home.join("code/sam")], "max_diff_bytes": 4000,
                           "nested": {"when": "1979-05-27", "ok": true, "x": 1.5}})
    );
    assert_eq!((s.at.line, s.at.column), (7, 10));
    let m = &c.sources[1];
    assert!(matches!(&m.plugin, PluginRef::Path(p) if p == Path::new("/cfg/dir/plugins/mine.wasm")));
    assert!(!m.enabled);
    assert_eq!(m.config_json, "{}");
    assert!(c.source("mine").is_some() && c.source("nope").is_none());
}

#[test]
fn malformed_toml_reports_line_and_column() {
    let e = err("[store]\npath = \"a.db\"\n\n[review]\napprove_above = = 0.5\n");
    let at = e.location().expect("located");
    assert_eq!((at.line, at.column), (5, 17), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with("/cfg/dir/brain.toml:5:17: "), "{msg}");
    assert!(msg.contains("approve_above = = 0.5"), "excerpt shown: {msg}");
}

#[test]
fn unknown_keys_are_refused_everywhere_with_their_position() {
    for (text, line, col, key) in [
        ("colour = 1\n", 1, 1, "colour"),
        ("[store]\npath = \"x\"\nsize = 3\n", 3, 1, "size"),
        ("[[source]]\nname = \"a\"\nplugin = \"git\"\ngrant = {}\n", 4, 1, "grant"),
        ("[[source]]\nname = \"a\"\nplugin = \"git\"\ngrants = { network = [] }\n", 4, 12, "network"),
        ("[train]\nlora = { rank = 4, alpha = 16 }\n", 2, 20, "alpha"),
        ("[train.lora]\nrank = 4\nalpha = 16\n", 3, 1, "alpha"),
        ("[export.ratios]\ntrain = 0.9\ndev = 0.1\n", 3, 1, "dev"),
        ("[plugins]\nmemory = 3\n", 2, 1, "memory"),
        ("[[scrub.rules]]\nid = \"x\"\nregex = \"y\"\nflags = 1\n", 4, 1, "flags"),
    ] {
        let e = err(text);
        let at = e.location().unwrap_or_else(|| panic!("no location for {text:?}: {e}"));
        assert_eq!((at.line, at.column), (line, col), "{text:?}: {e}");
        let msg = e.to_string();
        assert!(msg.contains("unknown field") && msg.contains(key), "{msg}");
    }
}

#[test]
fn wrong_types_and_missing_keys_are_located() {
    let e = err("[[source]]\nname = \"a\"\nplugin = 7\n");
    assert_eq!(e.location().map(|l| l.line), Some(3), "{e}");
    let e = err("[[source]]\nname = \"a\"\n");
    assert!(e.to_string().contains("plugin"), "{e}");
    assert_eq!(e.location().map(|l| l.line), Some(1), "{e}");
}

#[test]
fn duplicate_names_and_bad_thresholds_are_explained() {
    let e = err("[[source]]\nname = \"a\"\nplugin = \"git\"\n\n[[source]]\nname = \"a\"\nplugin = \"docs\"\n");
    assert_eq!(e.location().map(|l| (l.line, l.column)), Some((6, 8)), "{e}");
    assert!(e.to_string().contains("used twice"), "{e}");
    // A filter may share a source's name.
    parse("[[source]]\nname = \"a\"\nplugin = \"git\"\n[[filter]]\nname = \"a\"\nplugin = \"quality\"\n").unwrap();

    let e = err("[review]\napprove_above = 1.5\n");
    assert_eq!(e.location().map(|l| (l.line, l.column)), Some((2, 17)), "{e}");
    let e = err("[review]\napprove_above = 0.2\nreject_below = 0.4\n");
    assert_eq!(e.location().map(|l| l.line), Some(3), "{e}");
    assert!(e.to_string().contains("hint:"), "{e}");
    let e = err("[[source]]\nname = \" \"\nplugin = \"git\"\n");
    assert!(e.to_string().contains("empty source name"), "{e}");
}

#[test]
fn load_reports_a_missing_file_with_what_to_do() {
    let e = Config::load(Path::new("/definitely/not/here/brain.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Missing { .. }));
    assert!(e.to_string().contains("brain init"), "{e}");
}

#[test]
fn load_resolves_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brain.toml");
    std::fs::write(&path, "[plugins]\ncache_dir = \"cache\"\n[export]\nout = \"out\"\n").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.dir, dir.path());
    assert_eq!(c.store_path, dir.path().join("brain.db"));
    assert_eq!(c.cache_dir, dir.path().join("cache"));
    assert_eq!(c.export.out, dir.path().join("out"));
    assert_eq!(c.limits().memory_bytes, 256 << 20);
}

#[test]
fn plugin_values_that_are_names_or_paths() {
    for (text, bundled) in [("git", true), ("my-plugin", true), ("./x.wasm", false), ("x.wasm", false), ("~/p.wasm", false), ("a/b", false)] {
        assert_eq!(looks_like_path(text), !bundled, "{text}");
    }
}
