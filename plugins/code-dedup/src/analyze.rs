//! What can be said about a code snippet from its own text: its doc comment or docstring, and
//! its first function (name, signature, whole text). Hand-written per language, tolerant of
//! partial snippets.

use regex_lite::Regex;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Python,
    Rust,
    JavaScript,
    TypeScript,
    Vue,
    Swift,
    Bash,
}

impl Lang {
    /// A language name as stored in a code-dedup database (aliases accepted).
    pub fn parse(name: &str) -> Option<Lang> {
        Some(match name.trim().to_lowercase().as_str() {
            "python" | "py" => Lang::Python,
            "rust" | "rs" => Lang::Rust,
            "javascript" | "js" | "jsx" | "mjs" => Lang::JavaScript,
            "typescript" | "ts" | "tsx" => Lang::TypeScript,
            "vue" => Lang::Vue,
            "swift" => Lang::Swift,
            "bash" | "sh" | "shell" | "zsh" => Lang::Bash,
            _ => return None,
        })
    }

    /// Names a database may use for this language.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Lang::Python => &["python", "py"],
            Lang::Rust => &["rust", "rs"],
            Lang::JavaScript => &["javascript", "js", "jsx", "mjs"],
            Lang::TypeScript => &["typescript", "ts", "tsx"],
            Lang::Vue => &["vue"],
            Lang::Swift => &["swift"],
            Lang::Bash => &["bash", "sh", "shell", "zsh"],
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Lang::Python => "Python",
            Lang::Rust => "Rust",
            Lang::JavaScript => "JavaScript",
            Lang::TypeScript => "TypeScript",
            Lang::Vue => "Vue",
            Lang::Swift => "Swift",
            Lang::Bash => "Bash",
        }
    }

    /// The markdown fence tag.
    pub fn fence(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Rust => "rust",
            Lang::JavaScript => "javascript",
            Lang::TypeScript => "typescript",
            Lang::Vue => "vue",
            Lang::Swift => "swift",
            Lang::Bash => "bash",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    /// The header up to the body (`def f(x: int) -> str`, `pub fn f(x: u8) -> bool`).
    pub signature: String,
    /// The function's whole text: doc comment, header and body.
    pub text: String,
    /// Lines of the body that carry code (not braces, `pass`, `...`).
    pub body_lines: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Analysis {
    /// The doc comment / docstring that explains the snippet or its first function, cleaned.
    pub doc: Option<String>,
    /// The snippet without that doc comment.
    pub code_without_doc: String,
    pub function: Option<Function>,
}

fn header_re(lang: Lang) -> &'static Regex {
    static RES: OnceLock<Vec<Regex>> = OnceLock::new();
    let res = RES.get_or_init(|| {
        [
            r"^\s*(?:async\s+)?def\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(",
            r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?(?:extern\s+\S+\s+)?fn\s+([A-Za-z_][A-Za-z0-9_]*)",
            r#"^\s*(?:export\s+(?:default\s+)?)?(?:async\s+)?function\s*\*?\s*([A-Za-z_$][A-Za-z0-9_$]*)\s*[<(]|^\s*(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][A-Za-z0-9_$]*)\s*(?::[^=]+)?=\s*(?:async\s+)?(?:function\b|\([^)]*\)\s*(?::[^=]+)?=>|[A-Za-z_$][A-Za-z0-9_$]*\s*=>)"#,
            r"^\s*(?:(?:public|private|internal|fileprivate|open|static|override|final|@\w+|mutating)\s+)*func\s+([A-Za-z_][A-Za-z0-9_]*)",
            r"^\s*(?:function\s+([A-Za-z_][A-Za-z0-9_:-]*)\s*(?:\(\s*\))?\s*\{?|([A-Za-z_][A-Za-z0-9_:-]*)\s*\(\s*\)\s*\{?)\s*$",
        ]
        .iter()
        .map(|r| Regex::new(r).expect("valid regex"))
        .collect()
    });
    match lang {
        Lang::Python => &res[0],
        Lang::Rust => &res[1],
        Lang::JavaScript | Lang::TypeScript | Lang::Vue => &res[2],
        Lang::Swift => &res[3],
        Lang::Bash => &res[4],
    }
}

/// Analyzes one snippet.
pub fn analyze(lang: Lang, content: &str) -> Analysis {
    let content = if lang == Lang::Vue { vue_script(content) } else { content };
    let lines: Vec<&str> = content.lines().collect();
    let re = header_re(lang);
    let header = lines.iter().position(|l| re.is_match(l));
    let function = header.and_then(|h| function_at(lang, &lines, h, re));

    // The doc: the comment block above the function, or the function's docstring, or the
    // snippet's leading comment / module docstring.
    let (doc, doc_range) = match header {
        Some(h) => match comment_above(lang, &lines, h) {
            Some(found) => (Some(found.0), Some(found.1)),
            None if lang == Lang::Python => match docstring(&lines, h + 1 + header_extra(&lines, h)) {
                Some(found) => (Some(found.0), Some(found.1)),
                None => (None, None),
            },
            None => (None, None),
        },
        None => match leading_comment(lang, &lines) {
            Some(found) => (Some(found.0), Some(found.1)),
            None => (None, None),
        },
    };
    let code_without_doc = match &doc_range {
        Some(r) => lines.iter().enumerate().filter(|(i, _)| !r.contains(i)).map(|(_, l)| *l).collect::<Vec<_>>().join("\n"),
        None => lines.join("\n"),
    };
    let doc = doc.filter(|d| !is_boilerplate(d));
    Analysis { doc, code_without_doc: dedent(code_without_doc.trim_matches('\n')), function }
}

/// Lines a Python header spans beyond its first (parameters on several lines).
fn header_extra(lines: &[&str], h: usize) -> usize {
    let mut depth: i32 = 0;
    for (k, l) in lines[h..].iter().enumerate() {
        for c in l.chars() {
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                _ => {}
            }
        }
        if depth <= 0 && l.trim_end().ends_with(':') {
            return k;
        }
    }
    0
}

fn function_at(lang: Lang, lines: &[&str], h: usize, re: &Regex) -> Option<Function> {
    let caps = re.captures(lines[h])?;
    let name = caps.iter().skip(1).flatten().next()?.as_str().to_string();
    let start = comment_above(lang, lines, h).map(|(_, r)| r.start).unwrap_or(h);
    let (signature, end, body_lines) = if lang == Lang::Python {
        let extra = header_extra(lines, h);
        let sig = lines[h..=h + extra].iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
        let sig = sig.trim_end_matches(':').to_string();
        let indent = indent_of(lines[h]);
        let mut end = h + extra;
        let mut body = 0;
        let mut in_doc = false;
        for (k, l) in lines.iter().enumerate().skip(h + extra + 1) {
            if l.trim().is_empty() {
                continue;
            }
            if indent_of(l) <= indent {
                break;
            }
            end = k;
            let t = l.trim();
            let quotes = t.matches("\"\"\"").count() + t.matches("'''").count();
            if in_doc || quotes > 0 {
                if quotes % 2 == 1 {
                    in_doc = !in_doc;
                }
                continue;
            }
            if !matches!(t, "pass" | "..." | "return") && !t.starts_with('#') {
                body += 1;
            }
        }
        (sig, end, body)
    } else if lang == Lang::Bash {
        let (end, body) = brace_body(lines, h)?;
        (format!("{name}()"), end, body)
    } else {
        let (end, body) = brace_body(lines, h)?;
        let joined = lines[h..=end].join("\n");
        let sig_end = joined.find('{').unwrap_or(joined.len());
        let sig = joined[..sig_end].split_whitespace().collect::<Vec<_>>().join(" ");
        (sig.trim_end_matches("=>").trim().to_string(), end, body)
    };
    let text = dedent(&lines[start..=end].join("\n"));
    Some(Function { name, signature, text, body_lines })
}

/// The line that closes the first `{` at or after line `h`, and the body's code lines.
/// Strings, chars and comments are skipped well enough for real code.
fn brace_body(lines: &[&str], h: usize) -> Option<(usize, usize)> {
    let mut depth = 0i32;
    let mut opened = false;
    let mut in_block_comment = false;
    let mut body = 0;
    for (k, line) in lines.iter().enumerate().skip(h) {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut quote: Option<char> = None;
        let depth_at_start = depth;
        while i < chars.len() {
            let c = chars[i];
            if in_block_comment {
                if c == '*' && chars.get(i + 1) == Some(&'/') {
                    in_block_comment = false;
                    i += 1;
                }
            } else if let Some(q) = quote {
                if c == '\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            } else if c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            } else if c == '/' && chars.get(i + 1) == Some(&'*') {
                in_block_comment = true;
                i += 1;
            } else if c == '"' || c == '`' {
                quote = Some(c);
            } else if c == '\'' {
                // A char literal closes within a few characters; a lifetime (`'a`) does not.
                if chars.get(i + 2) == Some(&'\'') || (chars.get(i + 1) == Some(&'\\') && chars[i + 2..].iter().take(8).any(|&x| x == '\''))
                {
                    quote = Some('\'');
                }
            } else if c == '{' {
                depth += 1;
                opened = true;
            } else if c == '}' {
                depth -= 1;
            }
            i += 1;
        }
        let t = line.trim();
        if opened && depth_at_start > 0 && !t.is_empty() && !matches!(t, "}" | "{" | "};" | "})" | "});") && !t.starts_with("//") {
            body += 1;
        }
        if opened && depth <= 0 {
            return Some((k, body));
        }
    }
    None
}

/// The comment block right above line `h` (attributes and decorators in between are skipped):
/// its cleaned text and its line range.
fn comment_above(lang: Lang, lines: &[&str], h: usize) -> Option<(String, std::ops::Range<usize>)> {
    let mut k = h;
    while k > 0 && is_attribute(lang, lines[k - 1].trim()) {
        k -= 1;
    }
    let end = k;
    let t = |i: usize| lines[i].trim();
    // A `/** … */` block ending right above.
    if k > 0 && t(k - 1).ends_with("*/") && lang != Lang::Python && lang != Lang::Bash {
        let mut s = k - 1;
        while s > 0 && !t(s).starts_with("/*") {
            s -= 1;
        }
        if t(s).starts_with("/*") {
            return Some((clean_comment(&lines[s..end]), s..end));
        }
    }
    let marker: &[&str] = match lang {
        Lang::Python | Lang::Bash => &["#"],
        Lang::Rust | Lang::Swift => &["///", "//"],
        _ => &["//"],
    };
    let mut s = end;
    while s > 0 && marker.iter().any(|m| t(s - 1).starts_with(m)) && !t(s - 1).starts_with("#!") {
        s -= 1;
    }
    (s < end).then(|| (clean_comment(&lines[s..end]), s..end))
}

fn is_attribute(lang: Lang, t: &str) -> bool {
    match lang {
        Lang::Rust => t.starts_with("#[") || t.starts_with("#!["),
        Lang::Python => t.starts_with('@'),
        Lang::Swift => t.starts_with('@'),
        Lang::JavaScript | Lang::TypeScript | Lang::Vue => t.starts_with('@'),
        Lang::Bash => false,
    }
}

/// A Python docstring starting at line `from` (the first statement of a body or module).
fn docstring(lines: &[&str], from: usize) -> Option<(String, std::ops::Range<usize>)> {
    let first = (from..lines.len()).find(|&i| !lines[i].trim().is_empty())?;
    let t = lines[first].trim();
    let t = t.trim_start_matches(['r', 'u', 'R', 'U']);
    let q = if t.starts_with("\"\"\"") {
        "\"\"\""
    } else if t.starts_with("'''") {
        "'''"
    } else {
        return None;
    };
    let after = &t[3..];
    if let Some(end) = after.find(q) {
        return Some((after[..end].trim().to_string(), first..first + 1));
    }
    // PEP 257: the first line as is, the rest dedented.
    let mut rest = vec![];
    for (i, l) in lines.iter().enumerate().skip(first + 1) {
        if let Some(end) = l.find(q) {
            rest.push(&l[..end]);
            let text = format!("{}\n{}", after.trim(), dedent(&rest.join("\n")));
            return Some((text.trim().to_string(), first..i + 1));
        }
        rest.push(l);
    }
    None
}

/// The snippet's leading comment (or module docstring) when it has no function.
fn leading_comment(lang: Lang, lines: &[&str]) -> Option<(String, std::ops::Range<usize>)> {
    let mut start = 0;
    while start < lines.len() && (lines[start].trim().is_empty() || lines[start].starts_with("#!")) {
        start += 1;
    }
    if lang == Lang::Python {
        if let Some(d) = docstring(lines, start) {
            return Some(d);
        }
    }
    // The comment block that opens the snippet: pretend a header follows it.
    let mut end = start;
    let is_comment = |t: &str| match lang {
        Lang::Python | Lang::Bash => t.starts_with('#'),
        _ => t.starts_with("//") || t.starts_with("/*") || t.starts_with('*'),
    };
    while end < lines.len() && is_comment(lines[end].trim()) {
        end += 1;
    }
    (end > start && end < lines.len()).then(|| (clean_comment(&lines[start..end]), start..end))
}

/// Comment lines → prose: markers removed, blank edges trimmed.
fn clean_comment(lines: &[&str]) -> String {
    let cleaned: Vec<String> = lines
        .iter()
        .map(|l| {
            let t = l.trim();
            let t = t.trim_start_matches("/**").trim_start_matches("/*").trim_end_matches("*/");
            let t = t.strip_prefix("///").or_else(|| t.strip_prefix("//!")).or_else(|| t.strip_prefix("//")).unwrap_or(t);
            let t = t.strip_prefix('#').unwrap_or(t);
            let t = t.trim_start();
            let t = t.strip_prefix("* ").or_else(|| t.strip_prefix('*')).unwrap_or(t);
            t.trim_end().to_string()
        })
        .collect();
    cleaned.join("\n").trim().to_string()
}

/// Comments that explain nothing.
fn is_boilerplate(doc: &str) -> bool {
    let l = doc.to_lowercase();
    let words = doc.split_whitespace().count();
    words < 4
        || ["eslint-disable", "noqa", "type: ignore", "copyright", "spdx-license", "@ts-ignore", "prettier-ignore", "swiftlint:"]
            .iter()
            .any(|m| l.contains(m))
        || l.starts_with("todo")
        || l.starts_with("fixme")
        || l.starts_with("hack")
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

/// Removes the indentation common to all non-blank lines.
pub fn dedent(s: &str) -> String {
    let min = s.lines().filter(|l| !l.trim().is_empty()).map(indent_of).min().unwrap_or(0);
    s.lines().map(|l| if l.len() >= min { &l[min..] } else { l.trim_start() }).collect::<Vec<_>>().join("\n")
}

/// The `<script>` part of a Vue single-file component, or the whole text.
fn vue_script(content: &str) -> &str {
    let Some(open) = content.find("<script") else { return content };
    let Some(body_start) = content[open..].find('>').map(|i| open + i + 1) else { return content };
    let end = content[body_start..].find("</script>").map(|i| body_start + i).unwrap_or(content.len());
    &content[body_start..end]
}

/// The first sentence of a doc (its first paragraph's), for "a function for this purpose: …".
pub fn summary(doc: &str) -> String {
    let para = doc.split("\n\n").next().unwrap_or(doc).replace('\n', " ");
    let end = para.char_indices().find(|&(i, c)| c == '.' && para[i + 1..].starts_with(|n: char| n.is_whitespace())).map(|(i, _)| i);
    let s = match end {
        Some(i) => &para[..i],
        None => para.trim_end_matches('.'),
    };
    format!("{}.", s.trim())
}

/// `parse_config_file`, `parseConfigFile` → ["parse", "config", "file"].
pub fn name_words(name: &str) -> Vec<String> {
    let mut words = vec![];
    let mut cur = String::new();
    for c in name.chars() {
        if c == '_' || c == '-' || c == '$' {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
        } else if c.is_uppercase() && cur.chars().last().is_some_and(|p| p.is_lowercase()) {
            words.push(std::mem::take(&mut cur));
            cur.extend(c.to_lowercase());
        } else {
            cur.extend(c.to_lowercase());
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_docstring_and_function() {
        let src = "import os\n\n@cache\ndef load_config(path: str,\n                verbose: bool = False) -> dict:\n    \"\"\"Load the TOML config at `path`.\n\n    Missing files give an empty dict.\n    \"\"\"\n    if not os.path.exists(path):\n        return {}\n    return toml.load(path)\n\nprint('after')\n";
        let a = analyze(Lang::Python, src);
        assert_eq!(a.doc.as_deref(), Some("Load the TOML config at `path`.\n\nMissing files give an empty dict."));
        let f = a.function.unwrap();
        assert_eq!(f.name, "load_config");
        assert_eq!(f.signature, "def load_config(path: str, verbose: bool = False) -> dict");
        assert_eq!(f.body_lines, 3);
        assert!(f.text.ends_with("return toml.load(path)"));
        assert!(!a.code_without_doc.contains("Missing files"));
        assert_eq!(summary(a.doc.as_deref().unwrap()), "Load the TOML config at `path`.");
    }

    #[test]
    fn rust_doc_comment_attributes_and_braces() {
        let src = "/// Returns the number of lines in `s` that are not blank.\n#[inline]\npub fn count_lines(s: &str) -> usize {\n    let x = '{';\n    s.lines().filter(|l| !l.trim().is_empty()).count() // }\n}\nfn other() {}\n";
        let a = analyze(Lang::Rust, src);
        assert_eq!(a.doc.as_deref(), Some("Returns the number of lines in `s` that are not blank."));
        let f = a.function.unwrap();
        assert_eq!(f.name, "count_lines");
        assert_eq!(f.signature, "pub fn count_lines(s: &str) -> usize");
        assert_eq!(f.body_lines, 2);
        assert!(f.text.starts_with("/// Returns") && f.text.ends_with("count() // }\n}"));
    }

    #[test]
    fn javascript_typescript_vue_swift_bash() {
        let js = "/**\n * Debounce `fn` so that it runs once per quiet period.\n * @param {number} ms quiet period\n */\nexport function debounce(fn, ms) {\n  let t;\n  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };\n}\n";
        let a = analyze(Lang::JavaScript, js);
        assert_eq!(a.doc.as_deref(), Some("Debounce `fn` so that it runs once per quiet period.\n@param {number} ms quiet period"));
        assert_eq!(a.function.as_ref().unwrap().signature, "export function debounce(fn, ms)");

        let ts = "// Formats a byte count for humans, like 1.5 KB.\nconst formatBytes = (n: number): string => {\n  const k = 1024;\n  return `${(n / k).toFixed(1)} KB`;\n};\n";
        let a = analyze(Lang::TypeScript, ts);
        assert_eq!(a.function.as_ref().unwrap().name, "formatBytes");
        assert_eq!(a.doc.as_deref(), Some("Formats a byte count for humans, like 1.5 KB."));

        let vue = "<template><div/></template>\n<script>\n// Checks whether the user may edit this document.\nfunction canEdit(user, doc) {\n  return user.id === doc.owner || user.admin;\n}\n</script>\n";
        assert_eq!(analyze(Lang::Vue, vue).function.unwrap().name, "canEdit");

        let swift = "/// Clamps the value into the closed range given.\nfunc clamp(_ v: Int, to r: ClosedRange<Int>) -> Int {\n    return min(max(v, r.lowerBound), r.upperBound)\n}\n";
        let a = analyze(Lang::Swift, swift);
        assert_eq!(a.function.unwrap().signature, "func clamp(_ v: Int, to r: ClosedRange<Int>) -> Int");

        let bash = "#!/bin/bash\n# Print a message in red to stderr and exit.\ndie() {\n  echo \"$*\" >&2\n  exit 1\n}\n";
        let a = analyze(Lang::Bash, bash);
        assert_eq!(a.doc.as_deref(), Some("Print a message in red to stderr and exit."));
        let f = a.function.unwrap();
        assert_eq!((f.name.as_str(), f.signature.as_str(), f.body_lines), ("die", "die()", 2));
    }

    #[test]
    fn nothing_to_say_and_odd_input() {
        let a = analyze(Lang::Python, "x = 1\ny = 2\n");
        assert_eq!(a.doc, None);
        assert_eq!(a.function, None);
        assert_eq!(analyze(Lang::Rust, "// TODO fix this later please\nfn a() {\n}\n").doc, None);
        assert_eq!(analyze(Lang::Rust, "fn broken( {\n").function, None);
        assert_eq!(analyze(Lang::Python, "").function, None);
        let a = analyze(Lang::Bash, "# Remove build outputs and caches from the tree.\nrm -rf build .cache\n");
        assert_eq!(a.doc.as_deref(), Some("Remove build outputs and caches from the tree."));
        assert_eq!(a.code_without_doc, "rm -rf build .cache");
        assert_eq!(name_words("parseConfigFile"), vec!["parse", "config", "file"]);
        assert_eq!(name_words("load_config"), vec!["load", "config"]);
        assert_eq!(Lang::parse("PY"), Some(Lang::Python));
        assert_eq!(Lang::parse("cobol"), None);
    }
}
