//! Generates a synthetic git history as a `git fast-import` stream: `commits` linear commits on
//! `main`, each editing one to three of a few dozen source files and carrying a unique,
//! realistic-looking message. Deterministic (seeded), standard library only, so it serves both
//! the end-to-end tests (as a module) and bench/collect.sh (compiled on its own with rustc):
//!
//!     rustc -O --edition 2021 tests/common/gen_repo.rs -o gen_repo
//!     git init -q -b main repo && ./gen_repo 10000 | git -C repo fast-import --quiet
#![allow(dead_code)]

use std::io::{self, Write};

const VERBS: &[&str] = &["Fix", "Add", "Refactor", "Remove", "Speed up", "Document", "Test", "Rename", "Simplify", "Handle"];
const THINGS: &[&str] = &[
    "parser state", "cache eviction", "retry loop", "config loading", "error message", "unicode handling",
    "progress output", "batch size", "lock ordering", "timeout", "empty input", "path resolution",
];
const AUTHORS: &[(&str, &str)] = &[("Ada Lovelace", "ada@example.com"), ("Alan Turing", "alan@example.com"), ("Grace Hopper", "grace@example.com")];

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn data(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    writeln!(out, "data {}", bytes.len())?;
    out.write_all(bytes)?;
    writeln!(out)
}

/// Writes the fast-import stream of `commits` commits to `out`.
pub fn write_history(out: &mut impl Write, commits: usize, seed: u64) -> io::Result<()> {
    let mut rng = Rng(seed | 1);
    let nfiles = 40;
    // Each file: a list of lines that commits edit and extend.
    let mut files: Vec<Vec<String>> = (0..nfiles)
        .map(|f| (0..30).map(|l| format!("    let value_{f}_{l} = compute({l}, \"{f}\");")).collect())
        .collect();
    let start_time: u64 = 1_600_000_000;
    for c in 0..commits {
        let (name, email) = AUTHORS[rng.below(AUTHORS.len())];
        let time = start_time + c as u64 * 97;
        let verb = VERBS[rng.below(VERBS.len())];
        let thing = THINGS[rng.below(THINGS.len())];
        let message = format!(
            "{verb} {thing} in module {}\n\nChange {c}: the {thing} code path now covers case {}.\n",
            rng.below(nfiles),
            rng.next() % 100_000
        );
        writeln!(out, "commit refs/heads/main")?;
        writeln!(out, "mark :{}", c + 1)?;
        writeln!(out, "author {name} <{email}> {time} +0000")?;
        writeln!(out, "committer {name} <{email}> {time} +0000")?;
        data(out, message.as_bytes())?;
        if c > 0 {
            writeln!(out, "from :{c}")?;
        }
        let touched = 1 + rng.below(3);
        for _ in 0..touched {
            let f = rng.below(nfiles);
            let lines = &mut files[f];
            let at = rng.below(lines.len());
            lines[at] = format!("    let value_{f}_{at} = compute_v{c}({at}, \"{thing}\");");
            let note = format!("    // {verb} {thing} (change {c})");
            if lines.len() < 80 {
                lines.push(note);
            } else {
                let at = rng.below(lines.len());
                lines[at] = note;
            }
            let mut content = format!("// src/module_{f}.rs\nfn module_{f}() {{\n");
            for l in lines.iter() {
                content.push_str(l);
                content.push('\n');
            }
            content.push_str("}\n");
            writeln!(out, "M 100644 inline src/module_{f}.rs")?;
            data(out, content.as_bytes())?;
        }
        writeln!(out)?;
    }
    writeln!(out, "done")
}

/// `gen_repo COMMITS [SEED]`: the stream on stdout (for `git fast-import`).
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let commits = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let seed = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(42);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    write_history(&mut out, commits, seed).expect("writing the stream");
    out.flush().expect("flushing the stream");
}
