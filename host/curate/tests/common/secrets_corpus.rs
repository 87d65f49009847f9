// Reads the secrets corpus (host/curate/tests/secrets-corpus/): shared by the corpus test, the
// end-to-end test of the `brain` binary and the benchmark.
#[allow(unused_imports)]
use std::path::{Path, PathBuf};

/// One planted secret: its family, the rule expected to catch it, the secret text that must
/// disappear, the text it stands in, and the line of the case in positives.txt.
#[derive(Clone, Debug)]
#[allow(dead_code)]
pub struct Positive {
    pub family: String,
    pub rule: String,
    pub secret: String,
    pub text: String,
    pub line: usize,
}

/// A harmless look-alike that scrubbing must leave alone.
#[derive(Clone, Debug)]
#[allow(dead_code)]
pub struct Negative {
    pub kind: String,
    pub text: String,
    pub line: usize,
}

#[allow(dead_code)]
pub fn corpus_dir() -> PathBuf {
    // From brain-curate (host/curate) or from the brain crate (host).
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [manifest.join("tests/secrets-corpus"), manifest.join("curate/tests/secrets-corpus")]
        .into_iter()
        .find(|d| d.is_dir())
        .unwrap_or_else(|| panic!("no tests/secrets-corpus under {}", manifest.display()))
}

/// `(header words, text, line)` of each `### …` case.
fn cases(file: &str) -> Vec<(Vec<String>, String, usize)> {
    let path = corpus_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out: Vec<(Vec<String>, String, usize)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(header) = line.strip_prefix("### ") {
            out.push((header.split(' ').map(str::to_string).collect(), String::new(), i + 1));
        } else if let Some((_, body, _)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    for (_, body, _) in &mut out {
        let trimmed = body.trim_end_matches('\n').to_string();
        *body = trimmed;
    }
    out
}

#[allow(dead_code)]
pub fn positives() -> Vec<Positive> {
    cases("positives.txt")
        .into_iter()
        .map(|(h, text, line)| {
            assert_eq!(h.len(), 3, "positives.txt line {line}: `### family rule secret`");
            assert!(text.contains(&h[2]), "positives.txt line {line}: the secret is not in the text");
            Positive { family: h[0].clone(), rule: h[1].clone(), secret: h[2].clone(), text, line }
        })
        .collect()
}

#[allow(dead_code)]
pub fn negatives() -> Vec<Negative> {
    cases("negatives.txt")
        .into_iter()
        .map(|(h, text, line)| {
            assert!(h.len() == 2 && h[0] == "negative", "negatives.txt line {line}: `### negative kind`");
            Negative { kind: h[1].clone(), text, line }
        })
        .collect()
}
