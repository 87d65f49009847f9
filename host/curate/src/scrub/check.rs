//! Per-rule validation of a matched secret, beyond regex and entropy.

/// What else a match must satisfy to count as a secret (`check = "…"` in a rules file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Check {
    #[default]
    None,
    /// A private key block whose body holds real key material (32+ base64 characters in a row).
    KeyBlock,
    /// Random-looking: a digit, or both upper- and lower-case letters.
    TokenLike,
    /// A random value near a keyword: letters and digits both, not an identifier or dotted path.
    Random,
    /// A base64 value in the `data:` map of a Kubernetes `kind: Secret` manifest.
    K8sSecret,
    /// A `password=` value: quoted, or else not a code reference nor a plain number, with a digit
    /// or a symbol.
    Password,
    /// A generic `*_key = value`: letters and digits, high entropy (≥ 3.0 for hex, ≥ 3.5 otherwise).
    Generic,
    /// The password of `scheme://user:pass@host`, unless it is a template (`${X}`, `<pass>`, `%s`).
    UrlPassword,
    /// An email address outside reserved example domains (and not a URL's `user@host`).
    Email,
    /// A user name in a home directory path, except generic ones (`user`, `runner`, …).
    HomeUser,
}

/// Shannon entropy of `s` in bits per byte.
pub fn shannon_entropy(s: &str) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s.as_bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

impl Check {
    /// `text[start..end]` is the candidate secret.
    pub(crate) fn passes(self, text: &str, start: usize, end: usize) -> bool {
        let s = &text[start..end];
        match self {
            Check::None => true,
            Check::KeyBlock => key_block_has_body(s),
            Check::TokenLike => token_like(s),
            Check::Random => {
                s.bytes().any(|b| b.is_ascii_digit()) && s.bytes().any(|b| b.is_ascii_alphabetic()) && !is_code_reference(s)
            }
            Check::K8sSecret => in_k8s_secret_data(text, start),
            Check::Password => {
                if continues_as_call_or_template(text, end) || is_path_or_url(s) || has_long_run(s) {
                    false
                } else if is_quoted(text, start, end) {
                    true
                } else {
                    // Identifiers name a secret; plain numbers are counts, ports and ids.
                    !is_code_reference(s)
                        && !s.bytes().all(|b| b.is_ascii_digit())
                        && s.bytes().any(|b| b.is_ascii_digit() || !(b.is_ascii_alphanumeric() || b == b'_'))
                }
            }
            Check::Generic => {
                let has_digit = s.bytes().any(|b| b.is_ascii_digit());
                let has_alpha = s.bytes().any(|b| b.is_ascii_alphabetic());
                let min = if s.bytes().all(|b| b.is_ascii_hexdigit()) { 3.0 } else { 3.5 };
                has_digit && has_alpha && !is_code_reference(s) && !continues_as_call_or_template(text, end) && !has_long_run(s) && shannon_entropy(s) >= min
            }
            Check::UrlPassword => {
                let first = s.as_bytes()[0];
                // Documentation writes `user:password@host`, `USER:PASSWORD@HOST`, `user:token@`.
                let word = ["password", "pass", "passwd", "pwd", "pw", "secret", "token", "apikey", "api_key", "key", "pat"];
                !matches!(first, b'$' | b'{' | b'<' | b'%')
                    && !s.bytes().all(|b| b == b'*' || b == b'x' || b == b'X')
                    && !s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                    && !word.contains(&s.to_ascii_lowercase().as_str())
            }
            Check::Email => {
                // `https://user@host` is a URL's user name, not an address.
                if text[..start].ends_with("://") {
                    return false;
                }
                let domain = s.rsplit('@').next().unwrap_or("").to_ascii_lowercase();
                let reserved = ["example.com", "example.org", "example.net", "localhost"];
                !(reserved.contains(&domain.as_str())
                    || domain.ends_with(".example")
                    || domain.ends_with(".test")
                    || domain.ends_with(".invalid")
                    || domain.ends_with(".local"))
            }
            Check::HomeUser => {
                let generic = ["user", "username", "you", "me", "runner", "name", "someone", "me", "shared", "linuxbrew"];
                !generic.contains(&s.to_ascii_lowercase().as_str())
            }
        }
    }
}

/// The value at `start` sits in the `data:` map of a YAML document (between `---` lines) that
/// declares `kind: Secret`. The manifest may be indented as a whole (quoted in a tool's output,
/// a markdown list): what counts is the nearest line above the value that is indented less.
fn in_k8s_secret_data(text: &str, start: usize) -> bool {
    let doc_start = text[..start].rfind("\n---").map_or(0, |i| i + 4);
    let doc_end = text[start..].find("\n---").map_or(text.len(), |i| start + i);
    if !text[doc_start..doc_end].lines().any(|l| l.trim() == "kind: Secret") {
        return false;
    }
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut above = text[doc_start..start].lines().rev();
    let Some(value_line) = above.next() else { return false };
    let own = indent(value_line);
    above.find(|l| !l.trim().is_empty() && indent(l) < own).is_some_and(|l| l.trim() == "data:")
}

fn token_like(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit()) || (s.bytes().any(|b| b.is_ascii_uppercase()) && s.bytes().any(|b| b.is_ascii_lowercase()))
}

/// The value is a function being called (`HeaderName::from_static(`) or the fixed start of a
/// template (`xkeysib-<your-key>`, `prefix-${VAR}`).
fn continues_as_call_or_template(text: &str, end: usize) -> bool {
    matches!(text.as_bytes().get(end), Some(b'(' | b'<' | b'{' | b'$'))
}

/// `prod/db/credentials`, `https://oauth2.googleapis.com/token`: a path or URL names where a
/// secret is, it is not one (URLs with credentials have their own rule).
fn is_path_or_url(s: &str) -> bool {
    s.contains("://")
        || (s.contains('/') && s.split('/').all(|seg| seg.bytes().all(|b| b.is_ascii_lowercase() || matches!(b, b'-' | b'_' | b'.'))))
}

/// Four or more of the same character in a row: filler (`aaaabbbb`, `0000`), not a secret.
fn has_long_run(s: &str) -> bool {
    s.as_bytes().windows(4).any(|w| w[0] == w[1] && w[1] == w[2] && w[2] == w[3])
}

fn is_quoted(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    start > 0 && end < b.len() && matches!(b[start - 1], b'"' | b'\'' | b'`') && b[end] == b[start - 1]
}

/// `os.environ`, `config.db.password`, `get_password`: identifiers and dotted paths of them,
/// which name a secret rather than hold one.
fn is_code_reference(s: &str) -> bool {
    let segments_ok = s.split('.').all(|seg| {
        let mut bytes = seg.bytes();
        matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b'$')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    segments_ok && (s.contains('.') || !s.bytes().any(|b| b.is_ascii_digit()))
}

fn key_block_has_body(block: &str) -> bool {
    // PEM and OpenSSH bodies are lines of 64-70 base64 characters; headers and placeholders
    // (`...`, `<key here>`) never hold 32 in a row.
    let mut run = 0;
    block.bytes().any(|b| {
        run = if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' { run + 1 } else { 0 };
        run >= 32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_known_strings() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
        assert!((shannon_entropy("aabb") - 1.0).abs() < 1e-9);
    }

    #[test]
    fn code_references() {
        assert!(is_code_reference("os.environ"));
        assert!(is_code_reference("get_password"));
        assert!(is_code_reference("self.config.password2"));
        assert!(!is_code_reference("hunter2x9"));
        assert!(!is_code_reference("s3cr3t!pw"));
    }
}
