//! The question a section answers, from the document title and heading path, in a natural form
//! chosen by the heading's wording. Deterministic: the same headings give the same question.

/// The question and its task label (`how-to` or `explain-doc`).
#[derive(Debug, PartialEq)]
pub struct Question {
    pub text: String,
    pub task: &'static str,
}

/// Verbs a how-to heading starts with ("Install from source", "Running tests").
const VERBS: &[&str] = &[
    "add",
    "build",
    "change",
    "check",
    "clean",
    "collect",
    "compile",
    "configure",
    "connect",
    "contribute",
    "create",
    "customize",
    "debug",
    "define",
    "delete",
    "deploy",
    "disable",
    "enable",
    "export",
    "extend",
    "fetch",
    "find",
    "fix",
    "generate",
    "get",
    "handle",
    "import",
    "install",
    "integrate",
    "launch",
    "load",
    "log",
    "manage",
    "migrate",
    "monitor",
    "package",
    "publish",
    "read",
    "release",
    "remove",
    "rename",
    "reset",
    "restore",
    "review",
    "run",
    "save",
    "schedule",
    "set",
    "setup",
    "ship",
    "start",
    "stop",
    "test",
    "train",
    "troubleshoot",
    "uninstall",
    "update",
    "upgrade",
    "use",
    "validate",
    "write",
];

/// Nouns that name an action ("Installation" → install).
const ACTION_NOUNS: &[(&str, &str)] = &[
    ("installation", "install"),
    ("configuration", "configure"),
    ("setup", "set up"),
    ("usage", "use"),
    ("deployment", "deploy"),
    ("getting started", "get started with"),
    ("quick start", "get started with"),
    ("quickstart", "get started with"),
    ("troubleshooting", "troubleshoot problems with"),
    ("upgrading", "upgrade"),
    ("migration", "migrate"),
    ("development", "develop"),
    ("contributing", "contribute to"),
    ("testing", "test"),
    ("building", "build"),
    ("options", "configure"),
    ("config", "configure"),
    ("settings", "configure"),
];

const OVERVIEW: &[&str] = &["overview", "introduction", "intro", "about", "summary", "background", "what is this", "description"];
const DESIGN: &[&str] = &["architecture", "design", "internals", "implementation", "data model", "how it works"];
const LIMITS: &[&str] = &["limitations", "known issues", "caveats", "known limitations", "gotchas"];
const QUESTION_WORDS: &[&str] =
    &["what", "why", "how", "when", "where", "which", "who", "can", "should", "does", "do", "is", "are", "will"];
const GENERIC_TITLES: &[&str] = &["readme", "index", "docs", "doc", "documentation", "overview", "introduction", "home", "guide", "notes"];

/// `title` is the document's title, `path` the headings below it (empty for the text under
/// the title), `project` the name the docs belong to.
pub fn question(project: &str, title: &str, path: &[String]) -> Question {
    // "claude-logs — Claude Code transcripts as training data" → "claude-logs".
    let informative = !GENERIC_TITLES.contains(&title.to_lowercase().as_str()) && !title.eq_ignore_ascii_case(project);
    let title = [" — ", " – ", " - ", ": "].iter().find_map(|sep| title.split_once(sep)).map_or(title, |(short, _)| short.trim());
    // What the docs are about: "SAM Brain's Git plugin", or just the project.
    let subject = if informative { format!("{project}'s {title}") } else { project.to_string() };
    let Some(heading) = path.last() else {
        // The text under the title: about the document's subject itself.
        return match special(title, project, project) {
            Some(q) if informative => q,
            _ => explain(format!("What is {subject}?")),
        };
    };
    // A heading that repeats the title adds nothing: treat it as the intro.
    if heading.eq_ignore_ascii_case(title) && path.len() == 1 {
        return question(project, title, &[]);
    }
    let Some(parent) = path.len().checked_sub(2).map(|i| path[i].as_str()) else {
        return classify(heading, &subject, &subject);
    };
    // Under an action heading ("Installation" › "From source"): the same action, qualified.
    let action = classify(parent, &subject, &subject);
    if action.task == "how-to" && !parent.to_lowercase().starts_with("how") {
        let base = action.text.trim_end_matches('?');
        return how_to(format!("{base} ({})?", phrase(heading)));
    }
    let parent_subject = if is_keyword(parent) {
        subject.clone()
    } else if informative {
        format!("{subject} ({parent})")
    } else {
        format!("{project}'s {}", phrase(parent))
    };
    classify(heading, &parent_subject, &subject)
}

/// Picks the form by the heading's wording. `subject` is what the heading belongs to; `area`
/// is the wider context used after a plain noun heading.
fn classify(heading: &str, subject: &str, area: &str) -> Question {
    special(heading, subject, area).unwrap_or_else(|| {
        let h = heading.trim().trim_end_matches(':');
        let lower = h.to_lowercase();
        let noun = phrase(h);
        if h.split_whitespace().count() > 4 {
            explain(format!("Explain {noun} in {subject}."))
        } else if lower.ends_with('s') && !lower.ends_with("ss") && !lower.ends_with("us") {
            explain(format!("What are {noun} in {subject}?"))
        } else {
            explain(format!("What is {noun} in {subject}?"))
        }
    })
}

/// The form for a heading with a telling wording (a question, an action, a known section name);
/// `None` for a plain noun phrase.
fn special(heading: &str, subject: &str, area: &str) -> Option<Question> {
    let h = heading.trim().trim_end_matches(':');
    let lower = h.to_lowercase();
    let first = lower.split_whitespace().next().unwrap_or("");

    // "What it reads", "How it stores data": a statement about the subject, not a question.
    if QUESTION_WORDS.contains(&first) && !h.ends_with('?') && lower != "how it works" {
        if let Some(i) = h.find(" it ") {
            return Some(explain(format!("Explain {}{subject}{}.", phrase(&h[..i + 1]), &h[i + 3..])));
        }
    }
    if h.ends_with('?') || QUESTION_WORDS.contains(&first) && !lower.starts_with("how to ") && lower != "how it works" {
        let q = h.trim_end_matches('?');
        let task = if lower.starts_with("how ") { "how-to" } else { "explain-doc" };
        let text = if mentions(q, area) { format!("{q}?") } else { format!("{q} (in {area})?") };
        return Some(Question { text, task });
    }
    if let Some(rest) = lower.strip_prefix("how to ") {
        let what = keep_case(h, h.len() - rest.len());
        return Some(how_to(format!("How do I {what}{}?", in_area(&what, area))));
    }
    if lower == "how it works" {
        return Some(explain(format!("How does {subject} work?")));
    }
    if let Some((_, verb)) = ACTION_NOUNS.iter().find(|(n, _)| lower == *n) {
        return Some(how_to(format!("How do I {verb} {subject}?")));
    }
    if OVERVIEW.contains(&lower.as_str()) {
        return Some(explain(format!("What is {subject}?")));
    }
    if lower == "motivation" || lower == "why" {
        return Some(explain(format!("Why does {subject} exist?")));
    }
    if DESIGN.contains(&lower.as_str()) {
        return Some(explain(format!("Explain the {lower} of {subject}.")));
    }
    if LIMITS.contains(&lower.as_str()) {
        return Some(explain(format!("What are the {lower} of {subject}?")));
    }
    if lower == "faq" || lower == "frequently asked questions" {
        return Some(explain(format!("What are common questions about {subject}, and their answers?")));
    }
    if matches!(lower.as_str(), "example" | "examples") {
        return Some(explain(format!("Show an example of using {subject}.")));
    }
    if matches!(lower.as_str(), "requirements" | "prerequisites" | "dependencies") {
        return Some(explain(format!("What does {subject} require?")));
    }
    if let Some(verb) = verb_of(first) {
        let rest = h[h.find(char::is_whitespace).unwrap_or(h.len())..].trim();
        return Some(if rest.is_empty() {
            how_to(format!("How do I {verb} {subject}?"))
        } else {
            how_to(format!("How do I {verb} {}{}?", phrase(rest), in_area(rest, area)))
        });
    }
    None
}

/// Whether `text` already names the area (its last, most specific part: the project or title).
fn mentions(text: &str, area: &str) -> bool {
    let name = area.rsplit("'s ").next().unwrap_or(area).to_lowercase();
    let first = area.split("'s ").next().unwrap_or(area).to_lowercase();
    let t = text.to_lowercase();
    t.contains(&name) || t.contains(&first)
}

/// ` in {area}`, unless `text` already names it.
fn in_area(text: &str, area: &str) -> String {
    if mentions(text, area) {
        String::new()
    } else {
        format!(" in {area}")
    }
}

fn how_to(text: String) -> Question {
    Question { text, task: "how-to" }
}

fn explain(text: String) -> Question {
    Question { text, task: "explain-doc" }
}

fn is_keyword(heading: &str) -> bool {
    let l = heading.to_lowercase();
    OVERVIEW.contains(&l.as_str()) || ACTION_NOUNS.iter().any(|(n, _)| *n == l) || l == "faq"
}

/// The base verb of a heading's first word: `install`, `installing` → install; `running` → run.
fn verb_of(word: &str) -> Option<String> {
    if VERBS.contains(&word) {
        return Some(if word == "setup" { "set up".into() } else { word.to_string() });
    }
    let stem = word.strip_suffix("ing")?;
    let candidates = [stem.to_string(), format!("{stem}e"), stem.get(..stem.len().saturating_sub(1)).unwrap_or("").to_string()];
    candidates.into_iter().find(|c| VERBS.contains(&c.as_str()))
}

/// A heading as part of a sentence: first letter lowercased unless the word looks like a name
/// (`SQLite`, `README`, `` `code` ``).
fn phrase(h: &str) -> String {
    let first = h.split_whitespace().next().unwrap_or("");
    let name_like = first.starts_with('`') || first.chars().skip(1).any(|c| c.is_uppercase());
    if name_like {
        return h.to_string();
    }
    let mut c = h.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `h` from byte `at` on, as a phrase.
fn keep_case(h: &str, at: usize) -> String {
    phrase(h.get(at..).unwrap_or(h).trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(title: &str, path: &[&str]) -> (String, &'static str) {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let q = question("SAM Brain", title, &path);
        (q.text, q.task)
    }

    #[test]
    fn forms_follow_the_heading_wording() {
        assert_eq!(q("README", &[]), ("What is SAM Brain?".into(), "explain-doc"));
        assert_eq!(q("Git plugin", &[]), ("What is SAM Brain's Git plugin?".into(), "explain-doc"));
        assert_eq!(q("README", &["Installation"]), ("How do I install SAM Brain?".into(), "how-to"));
        assert_eq!(q("Git plugin", &["Configuration"]), ("How do I configure SAM Brain's Git plugin?".into(), "how-to"));
        assert_eq!(q("README", &["Running the tests"]), ("How do I run the tests in SAM Brain?".into(), "how-to"));
        assert_eq!(q("README", &["How to add a plugin"]), ("How do I add a plugin in SAM Brain?".into(), "how-to"));
        assert_eq!(q("README", &["Why is collect incremental?"]), ("Why is collect incremental (in SAM Brain)?".into(), "explain-doc"));
        assert_eq!(q("Store", &["Architecture"]), ("Explain the architecture of SAM Brain's Store.".into(), "explain-doc"));
        assert_eq!(q("README", &["Checkpoints"]), ("What are checkpoints in SAM Brain?".into(), "explain-doc"));
        assert_eq!(
            q("README", &["Store", "Near-duplicate detection"]),
            ("What is near-duplicate detection in SAM Brain's store?".into(), "explain-doc")
        );
        assert_eq!(q("README", &["SQLite schema"]), ("What is SQLite schema in SAM Brain?".into(), "explain-doc"));
        assert_eq!(q("README", &["Installation", "From source"]), ("How do I install SAM Brain (from source)?".into(), "how-to"));
        assert_eq!(q("Curation", &["Store", "Dedup"]), ("What is dedup in SAM Brain's Curation (Store)?".into(), "explain-doc"));
        assert_eq!(q("README", &["Limitations"]), ("What are the limitations of SAM Brain?".into(), "explain-doc"));
        assert_eq!(q("Setup", &["Setup"]), ("How do I set up SAM Brain?".into(), "how-to"));
        assert_eq!(q("Installing SAM Brain", &[]), ("How do I install SAM Brain?".into(), "how-to"));
        assert_eq!(q("README", &["How to update SAM Brain"]), ("How do I update SAM Brain?".into(), "how-to"));
        assert_eq!(q("README", &["Does SAM Brain need a GPU?"]), ("Does SAM Brain need a GPU?".into(), "explain-doc"));
        assert_eq!(q("git — commits as examples", &[]), ("What is SAM Brain's git?".into(), "explain-doc"));
        assert_eq!(q("docs — markdown as questions", &[]), ("What is SAM Brain's docs?".into(), "explain-doc"));
        assert_eq!(q("git — commits as examples", &["What it reads"]), ("Explain what SAM Brain's git reads.".into(), "explain-doc"));
        assert_eq!(q("git: commits as examples", &["Config"]), ("How do I configure SAM Brain's git?".into(), "how-to"));
    }

    #[test]
    fn never_the_bare_title() {
        for title in ["README", "Git plugin", "Configuration", "Store"] {
            for path in [vec![], vec!["Overview"], vec!["Store"], vec!["Examples"]] {
                let (text, _) = q(title, &path);
                assert_ne!(text, title);
                assert!(text.ends_with('?') || text.ends_with('.'), "{text}");
            }
        }
    }
}
