//! The interactive review: pending examples one at a time, oldest first.
//!
//! Keys: `a` approve, `r` reject (asks for a reason), `e` edit the response in `$EDITOR` (then
//! approve), `s` skip, `u` undo the last decision, `q` quit. On a terminal one key is enough;
//! otherwise commands are read from stdin one per line — `a [note]`, `r [reason]`, `e`, `s`,
//! `u`, `q` — so a review can be scripted, and end of input ends the session (nothing waits for
//! a person who is not there).
//!
//! The session remembers where it stopped (a cursor in the store): the next one starts after the
//! last example handled, then comes back round to the ones skipped. Undo takes back this
//! session's decisions newest first, then earlier sessions' (the latest decision by a person).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context as _};

use super::show;
use crate::example::{Kind, Role};
use crate::store::review_state::DecisionRow;
use crate::store::verdicts::Selector;
use crate::store::{DecidedBy, Decision, ReviewStatus, Store};

/// The cursor's name in the store.
const CURSOR: &str = "interactive";

/// One command of the session.
#[derive(Clone, Debug, PartialEq)]
pub enum Cmd {
    Approve(Option<String>),
    Reject(Option<String>),
    Edit,
    Skip,
    Undo,
    Quit,
    Help,
}

impl Cmd {
    /// `a`, `approve`, `r too vague`, … (case-insensitive command word).
    pub fn parse(line: &str) -> Option<Cmd> {
        let line = line.trim();
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((w, r)) => (w, Some(r.trim().to_string()).filter(|r| !r.is_empty())),
            None => (line, None),
        };
        Some(match word.to_ascii_lowercase().as_str() {
            "a" | "approve" => Cmd::Approve(rest),
            "r" | "reject" => Cmd::Reject(rest),
            "e" | "edit" => Cmd::Edit,
            "s" | "skip" | "n" | "next" => Cmd::Skip,
            "u" | "undo" => Cmd::Undo,
            "q" | "quit" | "exit" => Cmd::Quit,
            "?" | "h" | "help" => Cmd::Help,
            _ => return None,
        })
    }
}

/// Where commands come from.
pub trait Input {
    /// The next command; `None` at the end of input.
    fn command(&mut self, out: &mut dyn Write) -> anyhow::Result<Option<Cmd>>;
    /// A line of text (a reject reason); `None` at the end of input.
    fn line(&mut self, prompt: &str, out: &mut dyn Write) -> anyhow::Result<Option<String>>;
    /// Whether a person is at a terminal (the editor gets the terminal; reasons are asked for).
    fn interactive(&self) -> bool;
}

/// Commands one per line (stdin not a terminal, or tests).
pub struct Lines<R: BufRead> {
    pub reader: R,
    /// Echo each command read (so a transcript shows what was decided).
    pub echo: bool,
}

impl<R: BufRead> Input for Lines<R> {
    fn command(&mut self, out: &mut dyn Write) -> anyhow::Result<Option<Cmd>> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            if self.echo {
                writeln!(out, "> {}", line.trim())?;
            }
            match Cmd::parse(&line) {
                Some(c) => return Ok(Some(c)),
                None => writeln!(out, "unknown command {:?}: a [note], r [reason], e, s, u, q", line.trim())?,
            }
        }
    }

    fn line(&mut self, _prompt: &str, _out: &mut dyn Write) -> anyhow::Result<Option<String>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim().to_string()))
    }

    fn interactive(&self) -> bool {
        false
    }
}

/// Single keys on a terminal.
pub struct Keys {
    term: console::Term,
}

impl Keys {
    pub fn new() -> Keys {
        Keys { term: console::Term::stdout() }
    }
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new()
    }
}

impl Input for Keys {
    fn command(&mut self, out: &mut dyn Write) -> anyhow::Result<Option<Cmd>> {
        loop {
            write!(out, "[a]pprove [r]eject [e]dit [s]kip [u]ndo [q]uit > ")?;
            out.flush()?;
            let key = match self.term.read_key() {
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e).context("reading a key from the terminal"),
            };
            let c = match key {
                console::Key::Char(c) => c,
                console::Key::Enter => continue,
                console::Key::Escape | console::Key::CtrlC => 'q',
                _ => continue,
            };
            writeln!(out, "{c}")?;
            match Cmd::parse(&c.to_string()) {
                Some(cmd) => return Ok(Some(cmd)),
                None => writeln!(out, "keys: a approve, r reject, e edit, s skip, u undo, q quit, ? help")?,
            }
        }
    }

    fn line(&mut self, prompt: &str, out: &mut dyn Write) -> anyhow::Result<Option<String>> {
        write!(out, "{prompt}")?;
        out.flush()?;
        match self.term.read_line() {
            Ok(l) => Ok(Some(l.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e).context("reading a line from the terminal"),
        }
    }

    fn interactive(&self) -> bool {
        true
    }
}

/// Which examples a session reviews.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub source: Option<String>,
    pub kind: Option<Kind>,
    /// The editor command (`$EDITOR`); `None` = `vi` on a terminal, an error otherwise.
    pub editor: Option<String>,
    /// Messages longer than this are clipped on screen.
    pub clip: Option<usize>,
}

/// What a session did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Outcome {
    pub shown: u64,
    pub approved: u64,
    pub rejected: u64,
    pub edited: u64,
    pub skipped: u64,
    pub undone: u64,
    /// Pending examples still waiting when it ended.
    pub remaining: u64,
    /// Ended by `q` (rather than the end of the queue or of input).
    pub quit: bool,
}

/// Something this session decided, for undo.
struct Done {
    row: DecisionRow,
    /// Position in the queue.
    pos: usize,
    what: Did,
}

#[derive(Clone, Copy, PartialEq)]
enum Did {
    Approved,
    Rejected,
    Edited,
}

/// Runs a review session. `scrub` cleans edited text (secrets typed into an edit are redacted
/// like everything else) and returns the counts per rule.
pub fn run(
    store: &mut Store,
    opts: &Options,
    input: &mut dyn Input,
    out: &mut dyn Write,
    scrub: &dyn Fn(&mut String) -> BTreeMap<String, u32>,
) -> anyhow::Result<Outcome> {
    let sel = Selector { statuses: vec![ReviewStatus::Pending], source: opts.source.clone(), kind: opts.kind, ..Default::default() };
    let pending = store.summaries(&sel)?;
    // Resume: start after the example the last session handled, then wrap round.
    let start = match store.review_cursor(CURSOR)? {
        Some((created_at, id)) => {
            pending.iter().position(|s| (s.created_at.as_str(), s.id.as_str()) > (created_at.as_str(), id.as_str())).unwrap_or(pending.len())
        }
        None => 0,
    };
    let mut queue: Vec<String> = pending[start..].iter().chain(&pending[..start]).map(|s| s.id.clone()).collect();
    let mut outcome = Outcome::default();
    if queue.is_empty() {
        writeln!(out, "nothing to review: no pending examples{}", scope(opts))?;
    } else if start > 0 {
        writeln!(out, "resuming where the last review stopped ({} pending{})", queue.len(), scope(opts))?;
    } else {
        writeln!(out, "{} pending example(s){}", queue.len(), scope(opts))?;
    }
    if queue.is_empty() && input.interactive() {
        return Ok(outcome);
    }
    let mut done: Vec<Done> = Vec::new();
    let mut i = 0;
    let mut announced = false;
    loop {
        // At the end of the queue commands are still read: `u` can take a decision back.
        if i >= queue.len() && !announced && !queue.is_empty() {
            writeln!(out, "\nend of the queue: u undoes the last decision, q quits")?;
            announced = true;
        }
        if i < queue.len() {
            announced = false;
        }
        let current = queue.get(i).cloned();
        if let Some(id) = &current {
            if store.review_status(id)? != ReviewStatus::Pending {
                i += 1; // decided elsewhere meanwhile
                continue;
            }
            let d = show::detail(store, id)?;
            writeln!(out, "\n── {}/{} ─────────────────────────────────────────────", i + 1, queue.len())?;
            write!(out, "{}", show::render(&d, opts.clip))?;
            outcome.shown += 1;
        }
        let Some(cmd) = input.command(out)? else { break };
        match (cmd, current) {
            (Cmd::Quit, _) => {
                outcome.quit = true;
                break;
            }
            (Cmd::Help, _) => {
                writeln!(out, "a [note] approve · r [reason] reject · e edit the response in $EDITOR, then approve · s skip · u undo · q quit")?;
            }
            (Cmd::Undo, _) => match done.pop() {
                Some(last) => {
                    if let Some((id, status)) = store.undo_decision(last.row.row)? {
                        outcome.undone += 1;
                        match last.what {
                            Did::Approved => outcome.approved -= 1,
                            Did::Rejected => outcome.rejected -= 1,
                            Did::Edited => {
                                outcome.approved -= 1;
                                outcome.edited -= 1;
                            }
                        }
                        writeln!(out, "undone: {} is {} again", short(&id), status.as_str())?;
                        i = last.pos;
                        set_cursor_before(store, &queue, i)?;
                    }
                }
                None => match store.last_human_decision()? {
                    Some(row) => {
                        if let Some((id, status)) = store.undo_decision(row.row)? {
                            outcome.undone += 1;
                            writeln!(out, "undone an earlier decision: {} is {} again", short(&id), status.as_str())?;
                            if status == ReviewStatus::Pending {
                                match queue.iter().position(|q| q == &id) {
                                    Some(p) => i = p,
                                    None => queue.insert(i.min(queue.len()), id),
                                }
                                set_cursor_before(store, &queue, i)?;
                            }
                        }
                    }
                    None => writeln!(out, "nothing to undo")?,
                },
            },
            (_, None) => writeln!(out, "no example left: u undoes the last decision, q quits")?,
            (Cmd::Skip, Some(id)) => {
                outcome.skipped += 1;
                store.set_review_cursor(CURSOR, Some(&id))?;
                i += 1;
            }
            (Cmd::Approve(note), Some(id)) => {
                let row = store.decide(&id, &human(ReviewStatus::Approved, "approved by reviewer", note))?;
                outcome.approved += 1;
                done.push(Done { row, pos: i, what: Did::Approved });
                store.set_review_cursor(CURSOR, Some(&id))?;
                writeln!(out, "approved {}", short(&id))?;
                i += 1;
            }
            (Cmd::Reject(reason), Some(id)) => {
                let reason = match reason {
                    Some(r) => Some(r),
                    None if input.interactive() => input.line("reason: ", out)?.filter(|r| !r.is_empty()),
                    None => None,
                };
                let row = store.decide(&id, &human(ReviewStatus::Rejected, reason.as_deref().unwrap_or("rejected by reviewer"), None))?;
                outcome.rejected += 1;
                done.push(Done { row, pos: i, what: Did::Rejected });
                store.set_review_cursor(CURSOR, Some(&id))?;
                writeln!(out, "rejected {}", short(&id))?;
                i += 1;
            }
            (Cmd::Edit, Some(id)) => match edit(store, &id, opts, input.interactive(), scrub) {
                Ok(Some(row)) => {
                    outcome.edited += 1;
                    outcome.approved += 1;
                    done.push(Done { row, pos: i, what: Did::Edited });
                    store.set_review_cursor(CURSOR, Some(&id))?;
                    writeln!(out, "edited and approved {}", short(&id))?;
                    i += 1;
                }
                Ok(None) => writeln!(out, "unchanged: nothing saved")?,
                Err(e) => writeln!(out, "edit failed: {e:#}")?,
            },
        }
    }
    outcome.remaining = store.summaries(&sel)?.len() as u64;
    writeln!(
        out,
        "\nreviewed: {} approved ({} edited), {} rejected, {} skipped, {} undone; {} pending",
        outcome.approved, outcome.edited, outcome.rejected, outcome.skipped, outcome.undone, outcome.remaining
    )?;
    Ok(outcome)
}

fn scope(opts: &Options) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &opts.source {
        parts.push(format!("source {s}"));
    }
    if let Some(k) = opts.kind {
        parts.push(format!("kind {k}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn human(status: ReviewStatus, reason: &str, note: Option<String>) -> Decision {
    Decision { status, reason: Some(reason.to_string()), note, decided_by: DecidedBy::Human }
}

/// The cursor goes to the example before position `i`, so the next session starts at `i`.
fn set_cursor_before(store: &Store, queue: &[String], i: usize) -> anyhow::Result<()> {
    match i.checked_sub(1).and_then(|p| queue.get(p)) {
        Some(prev) => store.set_review_cursor(CURSOR, Some(prev))?,
        None => store.set_review_cursor(CURSOR, None)?,
    }
    Ok(())
}

/// Opens the example's response (its last assistant message) in the editor. A changed text is
/// scrubbed, saved and approved; `None` when it did not change.
fn edit(
    store: &mut Store,
    id: &str,
    opts: &Options,
    terminal: bool,
    scrub: &dyn Fn(&mut String) -> BTreeMap<String, u32>,
) -> anyhow::Result<Option<DecisionRow>> {
    let ex = store.example(id)?;
    let mut messages = ex.example.messages.clone();
    let Some(at) = messages.iter().rposition(|m| m.role == Role::Assistant) else {
        bail!("this example has no assistant response to edit");
    };
    let editor = match (&opts.editor, terminal) {
        (Some(e), _) => e.clone(),
        (None, true) => "vi".to_string(),
        (None, false) => bail!("set $EDITOR to edit without a terminal (e.g. EDITOR=\"sed -i s/old/new/\")"),
    };
    let original = messages[at].content.clone();
    let path = temp_path(id);
    std::fs::write(&path, &original).with_context(|| format!("writing {}", path.display()))?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .stdin(if terminal { std::process::Stdio::inherit() } else { std::process::Stdio::null() })
        .status()
        .with_context(|| format!("running the editor {editor:?}"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading back {}", path.display()));
    let _ = std::fs::remove_file(&path);
    let status = status?;
    if !status.success() {
        bail!("the editor {editor:?} exited with {status}; nothing saved");
    }
    let mut text = text?;
    // Editors add a final newline the original may not have had.
    if text.ends_with('\n') && !original.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text == original {
        return Ok(None);
    }
    if text.trim().is_empty() {
        bail!("the edited response is empty; nothing saved (reject the example instead)");
    }
    let counts = scrub(&mut text);
    messages[at].content = text;
    let decision = human(ReviewStatus::Approved, "edited", Some("response edited by reviewer".into()));
    Ok(Some(store.edit_example(id, &messages, &counts, &decision)?))
}

fn temp_path(id: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("brain-review-{}-{}-{nanos}.md", &id[..id.len().min(12)], std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(Cmd::parse("a"), Some(Cmd::Approve(None)));
        assert_eq!(Cmd::parse("A looks right "), Some(Cmd::Approve(Some("looks right".into()))));
        assert_eq!(Cmd::parse("r too vague"), Some(Cmd::Reject(Some("too vague".into()))));
        assert_eq!(Cmd::parse("reject"), Some(Cmd::Reject(None)));
        assert_eq!(Cmd::parse(" e"), Some(Cmd::Edit));
        assert_eq!(Cmd::parse("s"), Some(Cmd::Skip));
        assert_eq!(Cmd::parse("u"), Some(Cmd::Undo));
        assert_eq!(Cmd::parse("q"), Some(Cmd::Quit));
        assert_eq!(Cmd::parse("x"), None);
    }
}
