//! README.md's usage block and `brain --help` agree: every command and subcommand the binary
//! has appears in the block, every command the block names exists, and every flag the block
//! shows is one its command accepts (read from that command's `--help`, as a user would).

mod common;

use std::collections::BTreeSet;

use common::Env;

/// The command lines of README's "Using it" block (the fenced block after that heading).
fn usage_block() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let start = readme.find("## Using it").expect("README has a `## Using it` section");
    let rest = &readme[start..];
    let open = rest.find("```\n").expect("a fenced block") + 4;
    let close = rest[open..].find("```").expect("the block ends") + open;
    rest[open..close].lines().map(str::to_string).collect()
}

/// `brain ARGS --help`'s text.
fn help(env: &Env, path: &[String]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let r = env.run(&args);
    r.assert_ok();
    r.stdout
}

/// The subcommands a help text lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let Some(start) = help.find("Commands:\n") else { return Vec::new() };
    help[start + 10..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// Every command path of the binary: `["train"]`, `["models", "promote"]`, …
fn command_paths(env: &Env, path: Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    let text = help(env, &path);
    for sub in subcommands(&text) {
        let mut p = path.clone();
        p.push(sub);
        out.insert(p.clone());
        command_paths(env, p, out);
    }
}

/// One usage: the words before the comment, split at ` / ` into commands (`brain runs / runs
/// show ID` is two); each resolved to the longest command path its leading words name, with the
/// `--flags` it shows.
fn usages(env: &Env, line: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let code = line.split(" # ").next().unwrap_or("").trim();
    let code = code.strip_prefix("brain ").unwrap_or_else(|| panic!("a usage line that does not start with `brain `: {line:?}"));
    let mut out = Vec::new();
    for segment in code.split(" / ") {
        let words: Vec<&str> = segment.split_whitespace().collect();
        let mut path: Vec<String> = Vec::new();
        for w in &words {
            if subcommands(&help(env, &path)).iter().any(|c| c == w) {
                path.push(w.to_string());
            } else {
                break;
            }
        }
        assert!(!path.is_empty(), "README usage {segment:?} does not start with a brain command");
        let flags = words
            .iter()
            .map(|w| w.trim_matches(|c| c == '[' || c == ']'))
            .filter(|w| w.starts_with("--"))
            .map(|w| w.split('=').next().unwrap().to_string())
            .collect();
        out.push((path, flags));
    }
    out
}

#[test]
fn readme_usage_block_and_help_agree() {
    let env = Env::new();
    let mut documented: BTreeSet<Vec<String>> = BTreeSet::new();
    for line in usage_block().iter().filter(|l| !l.trim().is_empty()) {
        for (path, flags) in usages(&env, line) {
            let text = help(&env, &path);
            for flag in flags {
                assert!(
                    text.split(|c: char| c.is_whitespace() || c == ',').any(|w| w == flag),
                    "README shows `brain {} {flag}` but `brain {} --help` has no {flag}:\n{text}",
                    path.join(" "),
                    path.join(" ")
                );
            }
            for n in 1..=path.len() {
                documented.insert(path[..n].to_vec());
            }
        }
    }
    let mut commands = BTreeSet::new();
    command_paths(&env, Vec::new(), &mut commands);
    assert!(commands.len() > 20, "the binary has its commands: {commands:?}");
    let missing: Vec<String> = commands.difference(&documented).map(|p| p.join(" ")).collect();
    assert!(missing.is_empty(), "commands of `brain --help` missing from README's usage block: {missing:?}");
    // The global flags the README names under the block are the binary's.
    let root = help(&env, &[]);
    for flag in ["--config", "--json", "-v", "-q"] {
        assert!(root.contains(flag), "`brain --help` lacks {flag}");
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(readme.contains("Every command takes `--config PATH` (default `brain.toml`), `--json`, `-v`/`-q`."), "README names the global flags");
}

/// The long flags a help text lists (`--model`, `--dry-run`, …), without `--help`.
fn long_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        // The option column ends where its description starts (two spaces).
        .flat_map(|l| l.split("  ").next().unwrap_or("").split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')))
        .filter(|w| w.starts_with("--") && *w != "--help")
        .map(String::from)
        .collect()
}

/// Every flag of every `--help` page is passed to the binary by some end-to-end test: a new
/// flag without a test that uses it fails here, naming the command.
#[test]
fn every_flag_of_every_help_page_is_used_by_a_test() {
    let env = Env::new();
    let mut sources = String::new();
    let tests_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests");
    for entry in std::fs::read_dir(&tests_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") && path.file_name().unwrap() != "cli_help.rs" {
            sources.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    let mut commands = BTreeSet::new();
    command_paths(&env, Vec::new(), &mut commands);
    commands.insert(Vec::new());
    let mut flags_seen = 0;
    let mut missing = Vec::new();
    for path in &commands {
        for flag in long_flags(&help(&env, path)) {
            flags_seen += 1;
            if !sources.contains(&format!("\"{flag}\"")) && !sources.contains(&format!("\"{flag}=")) {
                missing.push(["brain", &path.join(" "), &flag].iter().filter(|w| !w.is_empty()).copied().collect::<Vec<_>>().join(" "));
            }
        }
    }
    assert!(flags_seen > 100, "the help pages were read: {flags_seen} flags");
    assert!(missing.is_empty(), "flags no test in tests/ passes to the binary: {missing:#?}");
}
