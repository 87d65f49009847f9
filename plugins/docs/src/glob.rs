//! Glob patterns over `/`-separated relative paths: `*` (any characters but `/`), `?` (one
//! character but `/`), `**` (any number of whole folders), `{a,b}` (alternatives). A pattern
//! without `/` is matched against the file name alone, wherever the file is.

pub fn matches(pattern: &str, path: &str) -> bool {
    if let Some(alts) = expand_braces(pattern) {
        return alts.iter().any(|p| matches(p, path));
    }
    if !pattern.contains('/') {
        let name = path.rsplit('/').next().unwrap_or(path);
        return segment(pattern.as_bytes(), name.as_bytes());
    }
    let pat: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    segments(&pat, &segs)
}

fn segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.first() {
        None => segs.is_empty(),
        Some(&"**") => (0..=segs.len()).any(|skip| segments(&pat[1..], &segs[skip..])),
        Some(p) => !segs.is_empty() && segment(p.as_bytes(), segs[0].as_bytes()) && segments(&pat[1..], &segs[1..]),
    }
}

/// One path segment against one pattern segment (`*`, `?`, literal bytes), iteratively.
fn segment(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// `a{b,c}d` → [`abd`, `acd`] (first brace group; recursion handles the rest).
fn expand_braces(pattern: &str) -> Option<Vec<String>> {
    let open = pattern.find('{')?;
    let close = open + pattern[open..].find('}')?;
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    Some(pattern[open + 1..close].split(',').map(|alt| format!("{head}{alt}{tail}")).collect())
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches("**/*.md", "a/b/c.md"));
        assert!(matches("**/*.md", "c.md"));
        assert!(!matches("**/*.md", "c.mdx"));
        assert!(matches("*.{md,markdown}", "deep/x.markdown"));
        assert!(matches("CHANGELOG*", "sub/CHANGELOG.md"));
        assert!(matches("docs/*.md", "docs/a.md"));
        assert!(!matches("docs/*.md", "docs/x/a.md"));
        assert!(matches("**/node_modules/**", "web/node_modules/pkg/README.md"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a*c", "ab/c"));
    }
}
