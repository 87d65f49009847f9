//! Generated test material shared by the tests and the benchmarks (`examples/curate_bench.rs`,
//! the host's `examples/curation_bench.rs`): well-formed fake secrets of every rule in diffs,
//! tool outputs and prose; look-alikes that must survive; topic-based documents, ~1 KB documents
//! in the shapes examples have, and lightly edited copies of them.
#![allow(dead_code)]

use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

const B62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const PASSWORD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#%*+-_";

/// Random characters from `alphabet`, re-drawn until they hold a digit (real tokens nearly
/// always do; it keeps the generated ones clear of placeholder stopwords too).
pub fn chars(rng: &mut impl Rng, alphabet: &[u8], n: usize) -> String {
    loop {
        let s: String = (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect();
        let lower = s.to_lowercase();
        let placeholder = ["example", "xxxx", "your", "dummy", "sample", "lorem", "redacted", "changeme"].iter().any(|w| lower.contains(w));
        if !placeholder && (s.bytes().any(|b| b.is_ascii_digit()) || !alphabet.iter().any(|b| b.is_ascii_digit())) {
            return s;
        }
    }
}

/// One planted secret: the rule expected to catch it, the secret text that must disappear, and
/// the line (or block) that carries it.
#[derive(Clone, Debug)]
pub struct Plant {
    pub rule: &'static str,
    pub secret: String,
    pub text: String,
}

fn pem_body(rng: &mut impl Rng, lines: usize, prefix: &str, newline: &str) -> String {
    (0..lines).map(|_| format!("{prefix}{}{newline}", chars(rng, B64, 64))).collect()
}

/// A fresh secret for `rule` with the text around it, in one of several contexts chosen by `variant`.
pub fn plant(rng: &mut impl Rng, rule: &'static str, variant: usize) -> Plant {
    let (secret, text) = match rule {
        "aws-access-key-id" => {
            let prefix = ["AKIA", "ASIA"][variant % 2];
            let s = format!("{prefix}{}", chars(rng, UPPER_DIGITS, 16));
            let t = [
                format!("+aws_access_key_id = {s}"),
                format!("  \"AccessKeyId\": \"{s}\","),
                format!("I used the access key {s} to upload the build."),
            ][variant % 3]
                .clone();
            (s, t)
        }
        "aws-secret-access-key" => {
            let s = chars(rng, B64, 40);
            let t = [
                format!("+aws_secret_access_key = {s}"),
                format!("export AWS_SECRET_ACCESS_KEY=\"{s}\""),
                format!("  \"aws_secret_key\": \"{s}\","),
            ][variant % 3]
                .clone();
            (s, t)
        }
        "github-token" => {
            let prefix = ["ghp", "gho", "ghu", "ghs", "ghr"][variant % 5];
            let s = format!("{prefix}_{}", chars(rng, B62, 36));
            (s.clone(), prose_or_assignment(variant, "GITHUB_TOKEN", &s))
        }
        "github-fine-grained-pat" => {
            let s = format!("github_pat_{}_{}", chars(rng, B62, 22), chars(rng, B62, 59));
            (s.clone(), prose_or_assignment(variant, "GH_PAT", &s))
        }
        "gitlab-token" => {
            let s = format!("glpat-{}", chars(rng, B64URL, 20));
            (s.clone(), prose_or_assignment(variant, "GITLAB_TOKEN", &s))
        }
        "slack-token" => {
            let kind = ["xoxb", "xoxp", "xoxa", "xoxr"][variant % 4];
            let s = format!(
                "{kind}-{}-{}-{}",
                chars(rng, b"0123456789", 12),
                chars(rng, b"0123456789", 13),
                chars(rng, B62, 24)
            );
            (s.clone(), prose_or_assignment(variant, "SLACK_BOT_TOKEN", &s))
        }
        "slack-webhook" => {
            let s = format!("services/T{}/B{}/{}", chars(rng, UPPER_DIGITS, 8), chars(rng, UPPER_DIGITS, 10), chars(rng, B62, 24));
            let t = [
                format!("curl -X POST https://hooks.slack.com/{s} -d '{{\"text\":\"deployed\"}}'"),
                format!("+SLACK_WEBHOOK_URL=https://hooks.slack.com/{s}"),
            ][variant % 2]
                .clone();
            (s, t)
        }
        "anthropic-api-key" => {
            let s = format!("sk-ant-api03-{}AA", chars(rng, B64URL, 93));
            (s.clone(), prose_or_assignment(variant, "ANTHROPIC_API_KEY", &s))
        }
        "openai-api-key" => {
            let s = if variant.is_multiple_of(2) {
                format!("sk-proj-{}", chars(rng, B64URL, 156))
            } else {
                format!("sk-{}T3BlbkFJ{}", chars(rng, B62, 20), chars(rng, B62, 20))
            };
            (s.clone(), prose_or_assignment(variant, "OPENAI_API_KEY", &s))
        }
        "google-api-key" => {
            let s = format!("AIza{}", chars(rng, B64URL, 35));
            (s.clone(), prose_or_assignment(variant, "GOOGLE_API_KEY", &s))
        }
        "stripe-secret-key" => {
            let prefix = ["sk_live", "rk_live"][variant % 2];
            let s = format!("{prefix}_{}", chars(rng, B62, 24 + variant % 70));
            (s.clone(), prose_or_assignment(variant, "STRIPE_KEY", &s))
        }
        "npm-token" => {
            let s = format!("npm_{}", chars(rng, B62, 36));
            let t = [format!("//registry.npmjs.org/:_authToken={s}"), format!("The publish token {s} leaked in CI.")][variant % 2].clone();
            (s, t)
        }
        "private-key" => {
            let (label, newline, prefix) = [("RSA PRIVATE KEY", "\n", ""), ("OPENSSH PRIVATE KEY", "\n", "+"), ("PRIVATE KEY", "\\n", "")][variant % 3];
            let body = pem_body(rng, 6, prefix, newline);
            let s = format!("-----BEGIN {label}-----{newline}{body}{prefix}-----END {label}-----");
            let block = if variant % 3 == 1 { format!("+{s}") } else { s.clone() };
            let t = [format!("{block}\n"), format!("diff --git a/id_ed25519 b/id_ed25519\n{block}\n"), format!("  \"private_key\": \"{block}\",")]
                [variant % 3]
                .clone();
            (s, t)
        }
        "jwt" => {
            let s = format!("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{}.{}", chars(rng, B64URL, 60), chars(rng, B64URL, 43));
            let t = [format!("Authorization: JWT {s}"), format!("  \"id_token\": \"{s}\","), format!("the session cookie was {s}")][variant % 3].clone();
            (s, t)
        }
        "url-password" => {
            let s = chars(rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-!.~", 16);
            let t = [
                format!("DATABASE_URL=postgres://app:{s}@db.internal:5432/app"),
                format!("git clone https://deploy:{s}@git.internal.net/team/repo.git"),
                format!("Connecting to redis://default:{s}@cache:6379/0 ..."),
            ][variant % 3]
                .clone();
            (s, t)
        }
        "authorization-header" => {
            let s = chars(rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._", 40);
            let t = [format!("curl -H \"Authorization: Bearer {s}\" https://api.internal/v1"), format!("> Authorization: bearer {s}")][variant % 2].clone();
            (s, t)
        }
        "password-assignment" => {
            let s = chars(rng, PASSWORD, 14 + variant % 6);
            let t = [
                format!("+DB_PASSWORD={s}"),
                format!("    password = \"{s}\""),
                format!("  \"passwd\": \"{s}\","),
                format!("client_secret: {s}"),
                format!("smtp_pass := \"{s}\""),
            ][variant % 5]
                .clone();
            (s, t)
        }
        "generic-api-key" => {
            let s = if variant.is_multiple_of(2) { chars(rng, HEX, 32) } else { chars(rng, B62, 32) };
            let t = [format!("+SIGNING_KEY={s}"), format!("  \"session_cookie\": \"{s}\","), format!("webhook_signature: {s}")][variant % 3].clone();
            (s, t)
        }
        "email" => {
            let s = format!("{}.{}@corp-mail.net", chars(rng, b"abcdefghijklmnopqrstuvwxyz", 6), chars(rng, b"abcdefghijklmnopqrstuvwxyz", 7));
            (s.clone(), format!("Author: {s}"))
        }
        "home-path" => {
            let s = chars(rng, b"abcdefghijklmnopqrstuvwxyz", 7);
            (s.clone(), format!("error: could not read /home/{s}/code/app/src/main.rs"))
        }
        other => panic!("no generator for rule {other}"),
    };
    Plant { rule, secret, text }
}

fn prose_or_assignment(variant: usize, var: &str, s: &str) -> String {
    [
        format!("+{var}={s}"),
        format!("I pasted {s} into the config by mistake."),
        format!("  \"{}\": \"{s}\",", var.to_lowercase()),
        format!("export {var}='{s}'"),
    ][variant % 4]
        .clone()
}

/// Every rule on by default.
pub const DEFAULT_RULES: &[&str] = &[
    "private-key",
    "aws-access-key-id",
    "aws-secret-access-key",
    "github-token",
    "github-fine-grained-pat",
    "gitlab-token",
    "slack-token",
    "slack-webhook",
    "anthropic-api-key",
    "openai-api-key",
    "google-api-key",
    "stripe-secret-key",
    "npm-token",
    "jwt",
    "url-password",
    "authorization-header",
    "password-assignment",
    "generic-api-key",
];

/// Text that looks like a secret and is not one: it must come out of scrubbing unchanged.
pub const LOOK_ALIKES: &[&str] = &[
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "export GITHUB_TOKEN=<your-token>",
    "token = \"<your-token>\"",
    "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "OPENAI_API_KEY=sk-your-openai-api-key-goes-here",
    "SLACK_BOT_TOKEN=xoxb-your-bot-token-here",
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "api_key = \"YOUR_API_KEY_HERE\"",
    "password = \"${DB_PASSWORD}\"",
    "password: ${{ secrets.DB_PASSWORD }}",
    "password = os.environ[\"DB_PASSWORD\"]",
    "password = get_password()",
    "password=self.config.db_password",
    "def login(username: str, password: str) -> Token:",
    "password = \"********\"",
    "secret: xxxxxxxxxxxxxxxxxxxx",
    "Set the password in your keychain, never in the repo.",
    "The secret to fast code is measuring first.",
    "The key point: tokens are counted per request.",
    "max_tokens: 4096",
    "token_count = 1234567890",
    "Use Bearer token authentication for the API.",
    "commit 3f2a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a",
    "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "checksum = \"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\"",
    "id: 550e8400-e29b-41d4-a716-446655440000",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n-----END CERTIFICATE-----",
    "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
    "https://github.com/owner/repo/pull/42",
    "git clone https://deploy@github.com/owner/repo.git",
    "postgres://app:${PGPASSWORD}@db:5432/app",
    "redis://:<password>@cache:6379",
    "The header is eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9 alone.",
    "We use scikit-learn and the sk-learn-compatible estimator API.",
    "risk-management-framework-for-teams-2024",
    "See docs at https://example.com/path?token=abc",
    "contact: alice@example.com",
    "cd /home/user/project && make",
];

/// Function words shared by every topic.
const COMMON: &[&str] = &[
    "the", "a", "to", "of", "and", "in", "is", "for", "that", "with", "on", "it", "as", "be", "this", "we", "by", "from", "or",
    "at", "an", "are", "if", "not", "but", "when", "then", "so", "can", "should", "will", "each", "all", "new", "one", "more",
];

const SYLLABLES: &[&str] = &[
    "ba", "ker", "lo", "mi", "sta", "tor", "ven", "qui", "dra", "pel", "son", "ra", "ti", "gen", "mar", "cu", "fle", "nor", "pi",
    "sel", "tra", "vo", "zen", "ca", "del", "fi", "gor", "hal", "ju", "lin", "mo", "pra", "ri", "sun", "to", "ul", "wen", "xa",
];

/// A topic: its own vocabulary of pseudo-words.
pub fn topic_vocab(topic: u64, size: usize) -> Vec<String> {
    let mut r = rng(0x7091c ^ topic.wrapping_mul(0x9E37_79B9));
    (0..size)
        .map(|_| {
            let n = r.random_range(1..=3);
            (0..n).map(|_| SYLLABLES[r.random_range(0..SYLLABLES.len())]).collect::<String>()
        })
        .collect()
}

/// About `words` words on a topic: prose sentences from the topic's vocabulary and common words.
pub fn topic_doc(r: &mut impl Rng, vocab: &[String], words: usize) -> String {
    let mut out = String::with_capacity(words * 7);
    let mut in_sentence = 0;
    for i in 0..words {
        let w: &str = if r.random_bool(0.35) { COMMON[r.random_range(0..COMMON.len())] } else { &vocab[r.random_range(0..vocab.len())] };
        if in_sentence == 0 {
            let mut c = w.chars();
            if let Some(first) = c.next() {
                out.extend(first.to_uppercase());
                out.push_str(c.as_str());
            }
        } else {
            out.push_str(w);
        }
        in_sentence += 1;
        if in_sentence > 8 && r.random_bool(0.15) || i + 1 == words {
            out.push_str(". ");
            in_sentence = 0;
        } else {
            out.push(' ');
        }
    }
    out.trim_end().to_string()
}

/// `doc` with `n` distinct words replaced by words from `vocab`.
pub fn edit_words(r: &mut impl Rng, doc: &str, n: usize, vocab: &[String]) -> String {
    let mut words: Vec<String> = doc.split(' ').map(str::to_string).collect();
    let mut positions: Vec<usize> = (0..words.len()).collect();
    for i in 0..n.min(words.len()) {
        let j = r.random_range(i..positions.len());
        positions.swap(i, j);
        let p = positions[i];
        let mut w = vocab[r.random_range(0..vocab.len())].clone();
        while w.eq_ignore_ascii_case(words[p].trim_end_matches('.')) {
            w = vocab[r.random_range(0..vocab.len())].clone();
        }
        words[p] = w + if words[p].ends_with('.') { "." } else { "" };
    }
    words.join(" ")
}

/// ~1 KB of text in the shapes examples have: wrapped prose, some code, some diffs.
pub fn base_doc(r: &mut impl Rng, vocab: &[String]) -> String {
    let prose = topic_doc(r, vocab, 150);
    let mut out = String::with_capacity(1200);
    for (i, word) in prose.split(' ').enumerate() {
        out.push_str(word);
        out.push(if i % 9 == 8 { '\n' } else { ' ' });
    }
    let w = |r: &mut dyn rand::RngCore| vocab[r.random_range(0..vocab.len())].clone();
    match r.random_range(0..3) {
        0 => {
            let (a, b, c) = (w(r), w(r), w(r));
            let _ = write!(
                out,
                "\n```rust\nfn {a}_{b}(key: &str, cache: &Cache) -> Result<u32> {{\n    let token = cache.get(key)?;\n    Ok(token.{c}_count + 1)\n}}\n```\n"
            );
        }
        1 => {
            let (a, b) = (w(r), w(r));
            let _ = write!(out, "\ndiff --git a/src/{a}.rs b/src/{a}.rs\n@@ -10,7 +10,7 @@\n-    let {b} = load(path)?;\n+    let {b} = load_with_retry(path, 3)?;\n     Ok({b})\n");
        }
        _ => {
            let (a, b) = (w(r), w(r));
            let _ = write!(out, "\n$ cargo test {a}\nrunning 12 tests\ntest {a}::{b} ... ok\ntest result: ok. 12 passed; 0 failed\n");
        }
    }
    out
}
