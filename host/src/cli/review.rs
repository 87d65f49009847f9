//! `brain review`: the interactive review, and batch decisions.
//!
//! ```text
//! brain review [--source S] [--kind K]           interactive (keys on a terminal; commands on stdin otherwise)
//! brain review approve [IDS..] [--min-score X] [--source S] [--kind K] [--status S] [--note N] [--dry-run]
//! brain review reject  [IDS..] [--max-score Y] [--source S] [--kind K] [--status S] [--reason R] [--dry-run]
//! brain review show ID
//! brain review list [--status S] [--source S] [--kind K] [--limit N]
//! brain review recut [--dry-run]                 apply the current [review] thresholds to stored scores
//! brain review undo [ID]                         take back the latest decision by a person (on ID)
//! ```

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context as _};

use super::Ctx;
use crate::example::Kind;
use crate::review::{self, session, show, Batch};
use crate::store::verdicts::{Selector, Summary};
use crate::store::{ReviewStatus, Store};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Review only this source's examples.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Review only this kind (chat, completion, preference, correction, reasoning, routing, principle).
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<Kind>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Approve examples: by id, or every one matching the filters (pending ones by default).
    Approve {
        /// Example ids (or unique prefixes).
        ids: Vec<String>,
        /// Combined score at or above this.
        #[arg(long, value_name = "X")]
        min_score: Option<f64>,
        #[command(flatten)]
        scope: Scope,
        /// A note kept with each decision.
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject examples: by id, or every one matching the filters (pending ones by default).
    Reject {
        ids: Vec<String>,
        /// Combined score at or below this.
        #[arg(long, value_name = "Y")]
        max_score: Option<f64>,
        #[command(flatten)]
        scope: Scope,
        /// Why (kept with each decision).
        #[arg(long, default_value = "rejected by reviewer")]
        reason: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// One example in full: messages, scores, flags, rules fired, provenance, scrub counts, history.
    Show { id: String },
    /// Examples with their status and score.
    List {
        /// pending, approved or rejected (repeatable; default all).
        #[arg(long, value_parser = parse_status)]
        status: Vec<ReviewStatus>,
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        #[arg(long, value_parser = parse_kind)]
        kind: Option<Kind>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Re-decide automatically decided examples from their stored scores under the current
    /// [review] thresholds (no plugin runs; decisions by a person stay).
    Recut {
        /// Show what would change without writing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Take back the latest decision made by a person (on ID, any decision).
    Undo { id: Option<String> },
}

#[derive(Debug, Clone, clap::Args)]
pub struct Scope {
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<Kind>,
    /// Which current statuses to change (repeatable; default pending).
    #[arg(long, value_parser = parse_status)]
    pub status: Vec<ReviewStatus>,
    /// Show what would change without writing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| format!("unknown kind {s:?}; one of {}", Kind::ALL.map(|k| k.as_str()).join(", ")))
}

fn parse_status(s: &str) -> Result<ReviewStatus, String> {
    ReviewStatus::parse(s).ok_or_else(|| format!("unknown status {s:?}; one of pending, approved, rejected"))
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let mut store = ctx.open_store(&config)?;
    match args.command {
        None => interactive(ctx, &config, &mut store, args.source, args.kind),
        Some(Command::Approve { ids, min_score, scope, note }) => {
            let sel = selector(&store, ids, scope.clone(), min_score, None)?;
            let reason = batch_reason("approved", &sel);
            decide(ctx, &mut store, Batch { selector: sel, status: ReviewStatus::Approved, reason, note, dry_run: scope.dry_run })
        }
        Some(Command::Reject { ids, max_score, scope, reason, note }) => {
            let sel = selector(&store, ids, scope.clone(), None, max_score)?;
            decide(ctx, &mut store, Batch { selector: sel, status: ReviewStatus::Rejected, reason, note, dry_run: scope.dry_run })
        }
        Some(Command::Show { id }) => {
            let id = store.resolve_id(&id)?;
            let d = show::detail(&store, &id)?;
            if ctx.json {
                super::print_json(&d)?;
            } else {
                print!("{}", show::render(&d, None));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::List { status, source, kind, limit }) => {
            let rows = store.summaries(&Selector { statuses: status, source, kind, limit, ..Default::default() })?;
            if ctx.json {
                super::print_json(&rows)?;
            } else {
                print_list(&rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Recut { dry_run }) => {
            let report = review::recut(&mut store, &config.review, dry_run)?;
            if ctx.json {
                super::print_json(&report)?;
            } else {
                let verb = if dry_run { "would change" } else { "changed" };
                println!(
                    "recut with approve_above {:.2}, reject_below {:.2}: {} examples considered, {verb} {}",
                    report.thresholds.approve_above, report.thresholds.reject_below, report.considered, report.changed
                );
                for (t, n) in &report.transitions {
                    println!("  {t:<22} {n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Undo { id }) => {
            let row = match id {
                Some(id) => {
                    let id = store.resolve_id(&id)?;
                    let row: Option<i64> = store
                        .conn()
                        .query_row("SELECT max(id) FROM reviews WHERE example_id = ?1", [&id], |r| r.get(0))
                        .context("reading the example's decisions")?;
                    row.map(|row| crate::store::review_state::DecisionRow { row, example_id: id })
                }
                None => store.last_human_decision()?,
            };
            let Some(row) = row else {
                eprintln!("nothing to undo");
                return Ok(ExitCode::FAILURE);
            };
            match store.undo_decision(row.row)? {
                Some((id, status)) => {
                    if ctx.json {
                        super::print_json(&serde_json::json!({ "id": id, "status": status }))?;
                    } else {
                        println!("undone: {id} is {} again", status.as_str());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("nothing to undo");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn selector(store: &Store, ids: Vec<String>, scope: Scope, min_score: Option<f64>, max_score: Option<f64>) -> anyhow::Result<Selector> {
    for x in [min_score, max_score].into_iter().flatten() {
        if !(0.0..=1.0).contains(&x) {
            bail!("score {x} is outside [0, 1]");
        }
    }
    let ids = ids.iter().map(|i| store.resolve_id(i)).collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() && min_score.is_none() && max_score.is_none() && scope.source.is_none() && scope.kind.is_none() {
        bail!("say which examples: ids, or --min-score / --max-score, --source, --kind");
    }
    // Named examples change whatever their status; a filter changes pending ones by default.
    let statuses = if !scope.status.is_empty() {
        scope.status
    } else if ids.is_empty() {
        vec![ReviewStatus::Pending]
    } else {
        Vec::new()
    };
    Ok(Selector { ids, statuses, source: scope.source, kind: scope.kind, min_score, max_score, limit: None })
}

fn batch_reason(verb: &str, sel: &Selector) -> String {
    let mut parts = Vec::new();
    if let Some(x) = sel.min_score {
        parts.push(format!("score >= {x}"));
    }
    if let Some(x) = sel.max_score {
        parts.push(format!("score <= {x}"));
    }
    if let Some(s) = &sel.source {
        parts.push(format!("source {s}"));
    }
    if let Some(k) = sel.kind {
        parts.push(format!("kind {k}"));
    }
    if parts.is_empty() {
        format!("{verb} by reviewer")
    } else {
        format!("{verb} in batch ({})", parts.join(", "))
    }
}

fn decide(ctx: &Ctx, store: &mut Store, b: Batch) -> anyhow::Result<ExitCode> {
    let report = review::batch(store, &b)?;
    if ctx.json {
        super::print_json(&report)?;
    } else if !ctx.quiet {
        let verb = if b.dry_run { "would mark" } else { "marked" };
        println!("{} matched; {verb} {} {}; {} already {}", report.matched, report.decided, report.status, report.unchanged, report.status);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(rows: &[Summary]) {
    if rows.is_empty() {
        println!("no examples");
        return;
    }
    println!("{:<12}  {:<8}  {:>5}  {:<11}  {:<16}  {:<18}  reason", "id", "status", "score", "kind", "source", "task");
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for s in rows {
        *counts.entry(s.status.as_str()).or_default() += 1;
        let score = s.score.map_or("-".to_string(), |x| format!("{x:.2}"));
        let reason = s.reason.as_deref().unwrap_or("");
        println!(
            "{:<12}  {:<8}  {:>5}  {:<11}  {:<16}  {:<18}  {}",
            &s.id[..12.min(s.id.len())],
            s.status.as_str(),
            score,
            s.kind,
            clip(&s.source, 16),
            clip(&s.task, 18),
            clip(reason, 60)
        );
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("{} examples: {}", rows.len(), parts.join(", "));
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn interactive(ctx: &Ctx, config: &crate::config::Config, store: &mut Store, source: Option<String>, kind: Option<Kind>) -> anyhow::Result<ExitCode> {
    let scrubber = crate::curation::clean::scrubber(&config.scrub).with_context(|| format!("{}: [scrub]", config.path.display()))?;
    let scrub = |text: &mut String| crate::curation::clean::scrub_text(&scrubber, text);
    let editor = std::env::var("EDITOR").ok().or_else(|| std::env::var("VISUAL").ok()).filter(|e| !e.trim().is_empty());
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    // With --json the transcript goes to stderr and only the outcome to stdout.
    let mut out: Box<dyn Write> = if ctx.json { Box::new(std::io::stderr().lock()) } else { Box::new(std::io::stdout().lock()) };
    let out = &mut *out;
    let outcome = if terminal {
        let opts = session::Options { source, kind, editor, clip: Some(show::CLIP) };
        session::run(store, &opts, &mut session::Keys::new(), out, &scrub)?
    } else {
        let opts = session::Options { source, kind, editor, clip: None };
        let stdin = std::io::stdin().lock();
        let mut input = session::Lines { reader: stdin, echo: true };
        let outcome = session::run(store, &opts, &mut input, out, &scrub)?;
        if outcome.shown > 0 && outcome.approved + outcome.rejected + outcome.skipped + outcome.undone == 0 && !outcome.quit {
            eprintln!(
                "no terminal and no commands on stdin: nothing reviewed. Pipe commands (a [note], r [reason], e, s, u, q; one per line) \
                 or decide in batches with `brain review approve/reject`"
            );
        }
        outcome
    };
    out.flush()?;
    if ctx.json {
        super::print_json(&outcome)?;
    }
    Ok(ExitCode::SUCCESS)
}
