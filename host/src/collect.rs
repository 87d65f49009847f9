//! `brain collect`: pull batches from the source plugins and store them.
//!
//! Each selected source runs on a worker thread (at most one per core) that opens its plugin
//! session and pulls batches of [`BATCH_SIZE`]; batches travel over a bounded channel to the one
//! thread that owns the store, which curates them ([`Curate`]) and stores each batch together
//! with the source's checkpoint, all or nothing (batches are committed in write groups, see
//! `GROUP_EXAMPLES`). A source that fails — its plugin traps, times
//! out, returns garbage, or cannot be loaded — is stopped and reported with its name and cause;
//! the others go on, and every batch stored before the failure stays stored. So does a source
//! that reaches its [`Budget`] (examples, output bytes, wall time, model calls and tokens per
//! collect).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::capability::llm::{LlmBudget, LlmMeter, LlmUsage};
use crate::config::{Config, PluginEntry};
use crate::plugin::{PluginHost, PluginRef, SourceBatch};
use crate::store::{Record, Store, StoreError};

/// Examples asked of a plugin per call.
pub const BATCH_SIZE: u32 = 256;

/// Distinct discard reasons kept per source and run; later ones are counted under
/// [`OTHER_REASONS`] (a plugin cannot grow the report without bound).
pub const MAX_DISCARD_REASONS: usize = 256;
pub const OTHER_REASONS: &str = "(other reasons)";

/// Batches waiting to be stored, per collect run (bounds memory when the store is slower).
const QUEUE: usize = 8;

/// Batches are stored in write groups ([`Store::begin_group`]): one transaction for up to this
/// many examples or [`GROUP_TIME`], whichever comes first. Each batch and its checkpoint stay
/// all or nothing; grouping only changes how often SQLite commits. Measured on bench/collect.sh
/// (10,000 git commits): per-batch commits wrote each random-key index page (content ids in
/// examples, minhash, reviews) to the WAL once per 256 examples.
const GROUP_EXAMPLES: u64 = 4096;
/// A kill loses at most this much stored work (the next collect fetches it again), and other
/// writers (a `brain review` beside the collect) wait at most this long for the write lock.
const GROUP_TIME: std::time::Duration = std::time::Duration::from_millis(500);

/// The curation stage between a plugin and the store: scrub secrets, run filter plugins, find
/// near duplicates, decide. It may change, annotate or drop records; whatever it leaves is
/// stored. It runs on the store's thread, so it may read the store (e.g. MinHash bands).
pub trait Curate {
    fn curate(&mut self, store: &Store, source: &PluginEntry, records: &mut Vec<Record>, counters: &mut SourceCounters) -> anyhow::Result<()>;
}

/// Stores examples as the plugins made them.
pub struct NoCuration;

impl Curate for NoCuration {
    fn curate(&mut self, _: &Store, _: &PluginEntry, _: &mut Vec<Record>, _: &mut SourceCounters) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What one collect may take from one source: `[plugins]` `max_examples`, `max_mb`,
/// `max_seconds`, `max_llm_calls` and `max_llm_tokens`, each overridden by the source's own
/// `budget = { … }`. The llm budget is enforced by the `llm` capability as calls are made. A source that would go
/// over stops with an error saying which; what it stored before stays, and its checkpoint lets
/// the next collect go on from there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    pub examples: u64,
    pub bytes: u64,
    pub time: std::time::Duration,
    pub llm: LlmBudget,
}

impl Budget {
    pub fn for_source(config: &Config, entry: &PluginEntry) -> Budget {
        let (p, b) = (&config.plugins, &entry.budget);
        Budget {
            examples: b.examples.unwrap_or(p.max_examples),
            bytes: b.mb.unwrap_or(p.max_mb).saturating_mul(1 << 20),
            time: std::time::Duration::from_secs(b.seconds.unwrap_or(p.max_seconds)),
            llm: LlmBudget { calls: b.llm_calls.unwrap_or(p.max_llm_calls), tokens: b.llm_tokens.unwrap_or(p.max_llm_tokens) },
        }
    }
}

/// How much of its [`Budget`] a source has used in this collect.
struct Spent {
    examples: u64,
    bytes: u64,
    started: Instant,
}

impl Spent {
    /// Examples to ask for next: at most a batch, at most what is left (but at least one, to
    /// learn whether the source has more).
    fn ask(&self, budget: &Budget) -> u32 {
        budget.examples.saturating_sub(self.examples).clamp(1, u64::from(BATCH_SIZE)) as u32
    }

    /// Takes `batch` into account, or says which budget it would exceed (it is then not stored).
    fn charge(&mut self, budget: &Budget, batch: &SourceBatch) -> Result<(), String> {
        let (n, bytes) = (batch.examples.len() as u64, batch.bytes());
        if self.examples + n > budget.examples {
            return Err(over_budget(format!("{} examples", budget.examples), "examples", "max_examples", self));
        }
        if self.bytes + bytes > budget.bytes {
            return Err(over_budget(format!("{} MiB of output", budget.bytes >> 20), "mb", "max_mb", self));
        }
        self.examples += n;
        self.bytes += bytes;
        Ok(())
    }

    fn check_time(&self, budget: &Budget) -> Result<(), String> {
        if self.started.elapsed() >= budget.time {
            return Err(over_budget(format!("{} s", budget.time.as_secs()), "seconds", "max_seconds", self));
        }
        Ok(())
    }
}

fn over_budget(limit: String, key: &str, default_key: &str, spent: &Spent) -> String {
    format!(
        "stopped at its budget of {limit} per collect, after {} examples ({} KiB); what it produced before is stored and the next \
         collect goes on from there (raise it with `budget = {{ {key} = … }}` on the source, or [plugins] {default_key})",
        spent.examples,
        spent.bytes >> 10
    )
}

#[derive(Clone, Debug, Default)]
pub struct CollectOptions {
    /// Collect only this source (even when it is disabled).
    pub source: Option<String>,
    /// Draw progress bars on stderr.
    pub progress: bool,
}

/// Per-source counters, printed after a collect (and as JSON with `--json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SourceCounters {
    pub name: String,
    pub plugin: String,
    /// Examples the plugin emitted.
    pub received: u64,
    /// New examples written to the store.
    pub stored: u64,
    /// Examples already in the store.
    pub duplicate: u64,
    /// Examples the plugin chose not to emit, by its reason.
    pub discarded: BTreeMap<String, u64>,
    /// Counters the curation stage keeps (secrets redacted, filtered, near duplicates, …).
    pub curation: BTreeMap<String, u64>,
    pub batches: u64,
    /// Model calls and tokens the source spent through the `llm` capability.
    pub llm: LlmUsage,
    pub errors: u64,
    /// Why the source stopped early.
    pub error: Option<String>,
    pub seconds: f64,
}

impl SourceCounters {
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CollectReport {
    pub sources: Vec<SourceCounters>,
    pub stored: u64,
    pub failed: Vec<String>,
    pub seconds: f64,
}

impl CollectReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Errors that stop the whole collect (a single source's failure does not).
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("no source named {name:?} in {config}; configured sources: {known}")]
    UnknownSource { name: String, config: String, known: String },
    /// Writing to the store failed (committing a write group, most likely on a full disk).
    #[error("{0}: the collect stopped; the batches it committed before are kept, the rest is collected again next time (is the disk full or read-only?)")]
    Store(#[from] StoreError),
    /// Storing one source's batch failed (a full or read-only disk, most likely); that batch was
    /// rolled back, what was committed before stays.
    #[error("storing a batch of source {name:?} failed ({error}); the collect stopped, what it committed before is kept (is the disk full or read-only?)")]
    StoreBatch { name: String, error: StoreError },
}

enum Msg {
    Estimate(usize, u64),
    Batch(usize, SourceBatch),
    /// The source finished (or failed) after this many seconds, having used this much of the
    /// `llm` capability.
    Done(usize, Result<(), String>, f64, LlmUsage),
}

/// Runs the selected sources and stores what they emit.
pub fn collect(
    config: &Config,
    host: &PluginHost,
    store: &mut Store,
    curate: &mut dyn Curate,
    opts: &CollectOptions,
) -> Result<CollectReport, CollectError> {
    let started = Instant::now();
    let sources = select(config, opts.source.as_deref())?;
    let mut counters: Vec<SourceCounters> = sources
        .iter()
        .map(|s| SourceCounters { name: s.name.clone(), plugin: s.plugin_text.clone(), ..Default::default() })
        .collect();
    // A plugin that is not there fails its source before anything starts.
    let mut runnable = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        match check_plugin(s) {
            Ok(()) => runnable.push(i),
            Err(e) => fail(&mut counters[i], e),
        }
    }
    let checkpoints = sources.iter().map(|s| store.checkpoint(&s.name)).collect::<Result<Vec<_>, _>>()?;

    let multi = MultiProgress::with_draw_target(if opts.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    let bars: Vec<ProgressBar> = sources.iter().map(|s| new_bar(&multi, &s.name, opts.progress)).collect();
    let cancel: Vec<AtomicBool> = sources.iter().map(|_| AtomicBool::new(false)).collect();
    let next = AtomicUsize::new(0);
    let workers = runnable.len().min(std::thread::available_parallelism().map_or(1, |n| n.get()));

    let result = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE);
        for _ in 0..workers {
            let tx = tx.clone();
            let (runnable, sources, checkpoints, cancel, next) = (&runnable, &sources, &checkpoints, &cancel, &next);
            scope.spawn(move || {
                while let Some(&i) = runnable.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let t = Instant::now();
                    let budget = Budget::for_source(config, sources[i]);
                    let meter = std::sync::Arc::new(LlmMeter::default());
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        run_source(host, sources[i], &budget, &meter, checkpoints[i].as_deref(), i, &tx, &cancel[i])
                    }))
                    .unwrap_or_else(|_| Err("the host panicked while running this source (a bug: please report it)".into()));
                    if tx.send(Msg::Done(i, result, t.elapsed().as_secs_f64(), meter.usage())).is_err() {
                        return; // the store side stopped
                    }
                }
            });
        }
        drop(tx);
        // Everything below runs on this thread, which owns the store. Returning early drops
        // `rx`, which stops the workers at their next send.
        let mut group = Group::default();
        loop {
            let msg = match rx.recv_timeout(group.time_left()) {
                Ok(msg) => msg,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    group.commit(store)?;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            match msg {
                Msg::Estimate(i, n) => set_estimate(&bars[i], n),
                Msg::Batch(i, batch) => {
                    let c = &mut counters[i];
                    if c.failed() {
                        continue; // curation failed earlier; the worker is being cancelled
                    }
                    let n = batch.examples.len() as u64;
                    group.begin(store)?;
                    if let Err(e) = store_batch(store, curate, sources[i], batch, c) {
                        match e {
                            BatchError::Store(e) => {
                                // Keep the batches stored before this one (its own savepoint
                                // was rolled back).
                                let _ = store.commit_group();
                                return Err(CollectError::StoreBatch { name: sources[i].name.clone(), error: e });
                            }
                            BatchError::Curate(e) => {
                                cancel[i].store(true, Ordering::Relaxed);
                                fail(c, format!("curation failed: {e:#}"));
                            }
                        }
                    }
                    group.stored(store, n)?;
                    bars[i].set_position(c.received);
                    bars[i].set_message(format!("{} new, {} known", c.stored, c.duplicate));
                }
                Msg::Done(i, result, seconds, llm) => {
                    let c = &mut counters[i];
                    c.seconds = seconds;
                    c.llm = llm;
                    if let Err(e) = result {
                        if !c.failed() {
                            fail(c, e);
                        }
                    }
                    bars[i].finish_with_message(if c.failed() {
                        "failed".to_string()
                    } else {
                        format!("{} new, {} known", c.stored, c.duplicate)
                    });
                }
            }
        }
        group.commit(store)?;
        Ok(())
    });
    for (bar, s) in bars.iter().zip(&sources) {
        if !bar.is_finished() {
            bar.abandon_with_message(format!("{}: not run", s.name));
        }
    }
    multi.clear().ok();
    result?;

    let failed = counters.iter().filter(|c| c.failed()).map(|c| c.name.clone()).collect();
    Ok(CollectReport {
        stored: counters.iter().map(|c| c.stored).sum(),
        sources: counters,
        failed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn fail(c: &mut SourceCounters, error: String) {
    c.errors += 1;
    c.error = Some(error);
}

/// The sources a collect runs: the named one, or every enabled one.
fn select<'a>(config: &'a Config, name: Option<&str>) -> Result<Vec<&'a PluginEntry>, CollectError> {
    match name {
        None => Ok(config.sources.iter().filter(|s| s.enabled).collect()),
        Some(name) => match config.source(name) {
            Some(s) => Ok(vec![s]),
            None => Err(CollectError::UnknownSource {
                name: name.to_string(),
                config: config.path.display().to_string(),
                known: if config.sources.is_empty() {
                    "none (add a [[source]])".to_string()
                } else {
                    config.sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                },
            }),
        },
    }
}

/// A clear message for a plugin that cannot be found, pointing at the config line.
pub fn check_plugin(entry: &PluginEntry) -> Result<(), String> {
    match &entry.plugin {
        PluginRef::Path(p) if !p.is_file() => Err(format!(
            "{}: plugin file {} does not exist: fix the path, or name a bundled plugin ({})",
            entry.at,
            p.display(),
            PluginHost::bundled_names().join(", ")
        )),
        PluginRef::Bundled(name) if !PluginHost::bundled_names().contains(&name.as_str()) => Err(format!(
            "{}: no bundled plugin named {name:?} (bundled: {}); to load your own, give a path to its .wasm file",
            entry.at,
            PluginHost::bundled_names().join(", ")
        )),
        _ => Ok(()),
    }
}

/// A worker: opens the source's session and sends its batches until it is done. `meter` counts
/// the source's model calls; once the `llm` capability refuses one for the budget, the source
/// stops with that message (after storing the batch it returned, if any).
#[allow(clippy::too_many_arguments)]
fn run_source(
    host: &PluginHost,
    entry: &PluginEntry,
    budget: &Budget,
    meter: &std::sync::Arc<LlmMeter>,
    checkpoint: Option<&str>,
    i: usize,
    tx: &mpsc::SyncSender<Msg>,
    cancel: &AtomicBool,
) -> Result<(), String> {
    let _span = tracing::info_span!("source", name = %entry.name).entered();
    let mut spent = Spent { examples: 0, bytes: 0, started: Instant::now() };
    let mut grants = entry.grants.clone();
    grants.llm.budget = budget.llm;
    grants.llm.meter = meter.clone();
    // A refusal for the llm budget explains the stop better than what the plugin made of it.
    let why = |e: crate::plugin::PluginError| meter.stopped().unwrap_or_else(|| e.to_string());
    let mut session = host.open_source(&entry.name, &entry.plugin, &grants, &entry.config_json, checkpoint).map_err(why)?;
    if let Some(n) = session.estimate() {
        tx.send(Msg::Estimate(i, n)).ok();
    }
    while !cancel.load(Ordering::Relaxed) {
        spent.check_time(budget)?;
        match session.next(spent.ask(budget)).map_err(why)? {
            Some(batch) => {
                spent.charge(budget, &batch)?;
                if tx.send(Msg::Batch(i, batch)).is_err() {
                    break;
                }
            }
            None => break,
        }
        if let Some(stop) = meter.stopped() {
            return Err(stop);
        }
    }
    Ok(())
}

/// The open write group of a collect: when it started and how many examples it holds.
#[derive(Default)]
struct Group {
    open: Option<(Instant, u64)>,
}

impl Group {
    fn begin(&mut self, store: &mut Store) -> Result<(), CollectError> {
        if self.open.is_none() {
            store.begin_group()?;
            self.open = Some((Instant::now(), 0));
        }
        Ok(())
    }

    /// Counts a stored batch; commits when the group is full or old enough.
    fn stored(&mut self, store: &mut Store, examples: u64) -> Result<(), CollectError> {
        if let Some((started, n)) = &mut self.open {
            *n += examples;
            if *n >= GROUP_EXAMPLES || started.elapsed() >= GROUP_TIME {
                self.commit(store)?;
            }
        }
        Ok(())
    }

    fn commit(&mut self, store: &mut Store) -> Result<(), CollectError> {
        if self.open.take().is_some() {
            store.commit_group()?;
        }
        Ok(())
    }

    /// How long to wait for the next batch before committing what the group holds.
    fn time_left(&self) -> std::time::Duration {
        match self.open {
            Some((started, _)) => GROUP_TIME.saturating_sub(started.elapsed()),
            None => std::time::Duration::from_secs(3600),
        }
    }
}

enum BatchError {
    Store(StoreError),
    Curate(anyhow::Error),
}

fn store_batch(store: &mut Store, curate: &mut dyn Curate, entry: &PluginEntry, batch: SourceBatch, c: &mut SourceCounters) -> Result<(), BatchError> {
    c.batches += 1;
    c.received += batch.examples.len() as u64;
    for (reason, n) in batch.discarded {
        count_discard(c, reason, n);
    }
    let mut records: Vec<Record> = batch.examples.into_iter().map(Record::new).collect();
    curate.curate(store, entry, &mut records, c).map_err(BatchError::Curate)?;
    let plugin = entry.plugin_text.as_str();
    let out = store
        .store_batch(&entry.name, plugin, &records, batch.checkpoint.as_deref())
        .map_err(BatchError::Store)?;
    c.stored += out.stored;
    c.duplicate += out.duplicate;
    Ok(())
}

/// Counts `n` discards for `reason`; past [`MAX_DISCARD_REASONS`] distinct reasons, new ones
/// are counted under [`OTHER_REASONS`].
fn count_discard(c: &mut SourceCounters, reason: String, n: u32) {
    let key = if c.discarded.len() < MAX_DISCARD_REASONS || c.discarded.contains_key(&reason) { reason } else { OTHER_REASONS.to_string() };
    let count = c.discarded.entry(key).or_default();
    *count = count.saturating_add(u64::from(n));
}

fn new_bar(multi: &MultiProgress, name: &str, visible: bool) -> ProgressBar {
    let bar = multi.add(ProgressBar::no_length());
    bar.set_style(bar_style("{spinner:.cyan} {human_pos:>9} examples {elapsed:>4}  {msg}"));
    bar.set_prefix(name.to_string());
    if visible {
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    bar
}

/// Once a plugin says how much is left, the spinner becomes a bar.
fn set_estimate(bar: &ProgressBar, n: u64) {
    bar.set_length(n);
    bar.set_style(bar_style("{bar:30.cyan/blue} {human_pos:>9}/{human_len:<9} eta {eta:<4} {msg}"));
}

fn bar_style(rest: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!("{{prefix:>16.bold}} {rest}")).unwrap_or_else(|_| ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::{Example, Kind, Message, Role};

    fn batch(examples: usize, text: usize) -> SourceBatch {
        let ex = Example {
            kind: Kind::Chat,
            task: "t".into(),
            messages: vec![Message { role: Role::User, content: "x".repeat(text) }],
            rejected: None,
            provenance: "p".into(),
            metadata: serde_json::json!({}),
        };
        SourceBatch { examples: vec![ex; examples], discarded: vec![("why".into(), 1)], checkpoint: Some("12".into()) }
    }

    fn budget(examples: u64, bytes: u64, secs: u64) -> Budget {
        Budget { examples, bytes, time: std::time::Duration::from_secs(secs), llm: LlmBudget { calls: 1000, tokens: 2_000_000 } }
    }

    #[test]
    fn a_batch_costs_its_text() {
        // 3 × (task 1 + provenance 1 + message 10) + reason 3 + checkpoint 2.
        assert_eq!(batch(3, 10).bytes(), 41);
    }

    #[test]
    fn the_examples_budget_asks_for_no_more_than_is_left() {
        let b = budget(300, u64::MAX, 60);
        let mut s = Spent { examples: 0, bytes: 0, started: Instant::now() };
        assert_eq!(s.ask(&b), BATCH_SIZE);
        s.charge(&b, &batch(256, 1)).unwrap();
        assert_eq!(s.ask(&b), 44);
        s.charge(&b, &batch(44, 1)).unwrap();
        // Spent: one more is asked for, to learn whether the source is done; if it has one, it
        // is over budget and not counted.
        assert_eq!(s.ask(&b), 1);
        let err = s.charge(&b, &batch(1, 1)).unwrap_err();
        assert!(err.contains("budget of 300 examples") && err.contains("after 300 examples"), "{err}");
        assert_eq!(s.examples, 300);
        // A batch of discards only still fits.
        s.charge(&b, &batch(0, 1)).unwrap();
    }

    #[test]
    fn the_bytes_and_time_budgets_stop_a_source() {
        let b = budget(u64::MAX, 60, 60);
        let mut s = Spent { examples: 0, bytes: 0, started: Instant::now() };
        s.charge(&b, &batch(3, 10)).unwrap();
        let err = s.charge(&b, &batch(3, 10)).unwrap_err();
        assert!(err.contains("MiB of output") && err.contains("budget = { mb"), "{err}");
        assert_eq!(s.bytes, 41, "the batch over budget is not counted");
        assert!(s.check_time(&b).is_ok());
        let err = s.check_time(&budget(1, 1, 0)).unwrap_err();
        assert!(err.contains("budget of 0 s") && err.contains("max_seconds"), "{err}");
    }

    #[test]
    fn budgets_come_from_plugins_unless_the_source_sets_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("brain.toml");
        std::fs::write(
            &path,
            "[[source]]\nname = \"a\"\nplugin = \"git\"\nbudget = { examples = 5, seconds = 9, llm_calls = 4 }\n\n[[source]]\nname = \"b\"\nplugin = \"git\"\n\n[plugins]\nmax_examples = 7\nmax_mb = 3\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let a = Budget::for_source(&config, &config.sources[0]);
        assert_eq!(a, Budget { llm: LlmBudget { calls: 4, tokens: 2_000_000 }, ..budget(5, 3 << 20, 9) });
        let b = Budget::for_source(&config, &config.sources[1]);
        assert_eq!(b, budget(7, 3 << 20, 4 * 3600));
    }

    #[test]
    fn distinct_discard_reasons_are_capped_without_losing_counts() {
        let mut c = SourceCounters::default();
        for b in 0..3 {
            let batch = SourceBatch {
                examples: vec![],
                discarded: (0..200).map(|i| (format!("r{b}-{i}"), 2)).collect(),
                checkpoint: None,
            };
            // Only the counting part of `store_batch` (no store needed).
            for (reason, n) in batch.discarded {
                count_discard(&mut c, reason, n);
            }
        }
        assert_eq!(c.discarded.len(), MAX_DISCARD_REASONS + 1);
        assert_eq!(c.discarded.values().sum::<u64>(), 3 * 200 * 2);
        assert_eq!(c.discarded[OTHER_REASONS], (600 - MAX_DISCARD_REASONS as u64) * 2);
    }
}
