//! Unit tests of the scrubber: config, user rules, extra rule files, markers, priorities.
use super::*;

fn scrub(text: &str) -> (String, ScrubCounts) {
    let s = Scrubber::default().scrub(text);
    (s.text.into_owned(), s.counts)
}

#[test]
fn builtin_rules_compile_with_optional_ones() {
    let s = Scrubber::new(&ScrubConfig { emails: true, home_paths: true, ..Default::default() }).unwrap();
    assert!(s.rule_ids().any(|r| r == "email"));
    assert!(s.rule_ids().any(|r| r == "home-path"));
    assert!(!Scrubber::default().rule_ids().any(|r| r == "email"));
}

#[test]
fn clean_text_is_borrowed() {
    let text = "Nothing secret here: the key point is that tokens are counted.";
    let out = Scrubber::default().scrub(text);
    assert!(matches!(out.text, Cow::Borrowed(_)));
    assert!(out.counts.is_empty());
}

#[test]
fn markers_never_rematch() {
    for rule in Scrubber::default().rule_ids().collect::<Vec<_>>() {
        let m = marker(rule);
        for text in [
            format!("password={m}"),
            format!("api_key: \"{m}\""),
            format!("postgres://admin:{m}@db.internal:5432/app"),
            format!("Authorization: Bearer {m}"),
            m.clone(),
        ] {
            let (out, counts) = scrub(&text);
            assert_eq!(out, text, "rule {rule}");
            assert!(counts.is_empty());
        }
    }
}

#[test]
fn overlapping_rules_prefer_specific_ones() {
    let key = "sk-ant-api03-Zq8vN2kLmP4xR7tY1wB5cD9eF3gH6jK0aS2dF4gH8jK1lZ3xC5vB7nM9qW2eR4tY6u";
    let (out, counts) = scrub(&format!("ANTHROPIC_API_KEY=\"{key}\""));
    assert_eq!(out, "ANTHROPIC_API_KEY=\"[REDACTED:anthropic-api-key]\"");
    assert_eq!(counts.total(), 1);
}

#[test]
fn user_rules_allowlist_and_errors() {
    let config = ScrubConfig {
        rules: vec![UserRule {
            id: "acme-key".into(),
            regex: r"acme_(?P<secret>[0-9a-f]{24})".into(),
            keywords: vec!["acme_".into()],
            entropy: 2.0,
        }],
        allow_values: vec!["ghp_000000000000000000000000000000000000".into()],
        allow: vec!["^AKIA.*TESTONLY$".into()],
        ..Default::default()
    };
    let s = Scrubber::new(&config).unwrap();
    let out = s.scrub("id acme_3f9a0c1b2d4e5f60718293a4 and AKIAZZZZTESTONLY");
    assert_eq!(out.text, "id acme_[REDACTED:acme-key] and AKIAZZZZTESTONLY");
    assert_eq!(out.counts.get("acme-key"), 1);

    let bad = |c: ScrubConfig| Scrubber::new(&c).err().unwrap();
    let rule = |id: &str, regex: &str| UserRule { id: id.into(), regex: regex.into(), keywords: vec![], entropy: 0.0 };
    assert!(matches!(bad(ScrubConfig { rules: vec![rule("Bad Id", "x")], ..Default::default() }), ScrubError::BadId(_)));
    assert!(matches!(bad(ScrubConfig { rules: vec![rule("jwt", "x")], ..Default::default() }), ScrubError::DuplicateRule(_)));
    assert!(matches!(bad(ScrubConfig { rules: vec![rule("x", "(")], ..Default::default() }), ScrubError::BadRegex { .. }));
    assert!(matches!(bad(ScrubConfig { allow: vec!["[".into()], ..Default::default() }), ScrubError::BadAllow { .. }));
    let e = bad(ScrubConfig { disable: vec!["nope".into()], ..Default::default() });
    assert!(e.to_string().contains("nope") && e.to_string().contains("github-token"));
}

#[test]
fn extra_rules_file_adds_rules_and_names_itself_in_errors() {
    let dir = std::env::temp_dir().join(format!("brain-scrub-extra-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.toml");
    let with = |p: &std::path::Path| Scrubber::new(&ScrubConfig { extra_rules: Some(p.to_path_buf()), ..Default::default() });
    std::fs::write(
        &path,
        r#"[[rule]]
id = "acme-internal"
description = "Acme internal token"
keywords = ["acmetk_"]
anchored = true
regex = '''(acmetk_[a-z0-9]{20}){end}'''
entropy = 3.0
allow = ["^acmetk_test"]
"#,
    )
    .unwrap();
    let out = with(&path).unwrap().scrub("id acmetk_9f3k2m8q1z7x4c6v5b0n and acmetk_testq1z7x4c6v5b0n9f3k");
    assert_eq!(out.text, "id [REDACTED:acme-internal] and acmetk_testq1z7x4c6v5b0n9f3k");

    std::fs::write(&path, "[[rule]]\nid = \"acme\"\nregex = \"(\"\n").unwrap();
    let e = with(&path).err().unwrap();
    assert!(matches!(e, ScrubError::BadRegex { ref rule, .. } if rule == "acme"), "{e}");
    std::fs::write(&path, "[[rule]]\nid = \"acme\"\nregexp = \"x\"\n").unwrap();
    let e = with(&path).err().unwrap().to_string();
    assert!(e.contains("rules.toml") && e.contains("line 3") && e.contains("regexp"), "{e}");
    std::fs::write(&path, "[[rule]]\nid = \"jwt\"\nregex = \"x\"\n").unwrap();
    assert_eq!(with(&path).err().unwrap(), ScrubError::DuplicateRule("jwt".into()));
    let e = with(&dir.join("missing.toml")).err().unwrap().to_string();
    assert!(e.contains("missing.toml") && e.contains("cannot read"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn disable_turns_rules_off() {
    let s = Scrubber::new(&ScrubConfig { disable: vec!["jwt".into()], ..Default::default() }).unwrap();
    assert!(!s.rule_ids().any(|r| r == "jwt"));
}

#[test]
fn config_parses_from_toml_shaped_json() {
    let c: ScrubConfig = serde_json::from_str(r#"{"emails": true, "allow_values": ["abc"]}"#).unwrap();
    assert!(c.emails && !c.home_paths);
    assert!(serde_json::from_str::<ScrubConfig>(r#"{"emails": true, "typo": 1}"#).is_err());
}

#[test]
fn counts_serialize_as_a_map() {
    let (_, counts) = scrub("a ghp_R4nd0mT0k3nW1thTh1rtySixCh4rsXyZ01234 b npm_Ab3dEf6hIj9lMn2pQr5tUv8xYz1bCd4fGh7j");
    assert_eq!(serde_json::to_string(&counts).unwrap(), r#"{"github-token":1,"npm-token":1}"#);
}

#[test]
fn near_values_sit_on_the_keyword_line_or_the_next() {
    let key = "keyQ8vN2kLmP4xR7tY";
    let (out, _) = scrub(&format!("# Airtable API key\n{key}\n"));
    assert_eq!(out, "# Airtable API key\n[REDACTED:saas-token-near]\n");
    let (out, _) = scrub(&format!("+# Airtable\n+AIRTABLE_KEY={key}"));
    assert_eq!(out, "+# Airtable\n+AIRTABLE_KEY=[REDACTED:saas-token-near]");
    // Two lines further down it is no longer near.
    let far = format!("# Airtable API key\n\nsome other line\n{key}\n");
    assert!(scrub(&far).0.contains(key));
}
