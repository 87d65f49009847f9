//! Curation: what happens to every collected batch before it is stored.
//!
//! normalize → scrub secrets (brain-curate) → drop exact duplicates → filter plugins
//! (`[[filter]]`) → near duplicates against the whole store → automatic review decision.
//!
//! - Nothing leaves this stage unscrubbed: messages, the rejected answer, task, provenance and
//!   every metadata key and string are scrubbed; only counts per rule are kept (per example, in
//!   the store; per source, in the collect counters).
//! - Exact duplicates (same id = hash of the normalized content, after scrubbing) of stored
//!   examples or of earlier ones in the batch are dropped here and counted as `duplicate`.
//! - Filter verdicts are stored as given (scores apart from decisions, see `brain review recut`).
//! - Near duplicates: see [`dedup`] (the worse-scored copy is kept, rejected as `duplicate`).
//! - Decision: [`crate::review::auto_decision`]; while a filter is failing, nothing is approved
//!   automatically (the missing verdict could have rejected it).
//!
//! [`Curation`] plugs into `collect` as its [`Curate`] stage; call [`Curation::finish`] after
//! the collect so the last batch's supersessions are written.

pub mod clean;
pub mod dedup;
pub mod filters;

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context as _;
use brain_curate::Scrubber;

use crate::collect::{Curate, SourceCounters};
use crate::config::{Config, PluginEntry, Review};
use crate::plugin::PluginHost;
use crate::review::{auto_decision, DUPLICATE, NOT_SCORED};
use crate::store::{example_id, DecidedBy, Decision, MinHash, Record, ReviewStatus, Store};

/// The curation stage of a collect.
pub struct Curation<'h> {
    host: &'h PluginHost,
    scrubber: Scrubber,
    filters: filters::Filters,
    review: Review,
    dedup_params: brain_curate::MinHashParams,
    near: Option<dedup::NearDups>,
    /// Totals over the run (also added per source to the collect counters).
    pub totals: BTreeMap<String, u64>,
    /// Filters that failed, with their last error.
    pub filter_errors: BTreeMap<String, String>,
}

impl<'h> Curation<'h> {
    /// The stage for `config` (scrub rules, filters, dedup settings, review thresholds).
    pub fn new(config: &Config, host: &'h PluginHost) -> anyhow::Result<Curation<'h>> {
        let scrubber = clean::scrubber(&config.scrub).with_context(|| format!("{}: [scrub]", config.path.display()))?;
        let dedup_params = dedup::params(&config.dedup);
        dedup_params.validate().with_context(|| format!("{}: [dedup]", config.path.display()))?;
        Ok(Curation {
            host,
            scrubber,
            filters: filters::Filters::new(&config.filters),
            review: config.review,
            dedup_params,
            near: None,
            totals: BTreeMap::new(),
            filter_errors: BTreeMap::new(),
        })
    }

    /// Writes what is still waiting for the last stored batch (stored examples superseded by
    /// better-scored new copies). Call once the collect is over.
    pub fn finish(&mut self, store: &Store) -> anyhow::Result<()> {
        self.apply_supersessions(store)
    }

    fn apply_supersessions(&mut self, store: &Store) -> anyhow::Result<()> {
        let Some(near) = &mut self.near else { return Ok(()) };
        near.end_batch();
        for s in near.take_supersessions() {
            if store.supersede(&s.old, &s.new, s.similarity)? == crate::store::dedup::Superseded::Done {
                *self.totals.entry("superseded".into()).or_default() += 1;
            }
        }
        Ok(())
    }

    fn count(&mut self, c: &mut SourceCounters, key: &str, n: u64) {
        if n > 0 {
            *c.curation.entry(key.to_string()).or_default() += n;
            *self.totals.entry(key.to_string()).or_default() += n;
        }
    }

    fn curate_batch(&mut self, store: &Store, records: &mut Vec<Record>, c: &mut SourceCounters) -> anyhow::Result<()> {
        if self.near.is_none() {
            self.near = Some(dedup::NearDups::load(store, self.dedup_params.clone())?);
        }
        // normalize → scrub → content id → MinHash signature, on every core.
        let (mut sigs, redacted, scrubbed_examples) = prepare(&self.scrubber, self.near.as_ref().expect("loaded"), records);
        self.count(c, "secrets_redacted", redacted);
        self.count(c, "examples_scrubbed", scrubbed_examples);

        // Exact duplicates: already stored, or earlier in this batch.
        let mut seen = HashSet::new();
        let mut keep = Vec::with_capacity(records.len());
        for rec in records.iter() {
            let id = rec.id.as_deref().expect("prepared");
            keep.push(!seen.contains(id) && !store.has_example(id)?);
            seen.insert(id);
        }
        let exact = keep.iter().filter(|k| !**k).count() as u64;
        c.duplicate += exact;
        let mut flags = keep.iter();
        records.retain(|_| *flags.next().unwrap_or(&false));
        let mut flags = keep.iter();
        sigs.retain(|_| *flags.next().unwrap_or(&false));
        if records.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = records.iter().map(|r| r.id.clone().expect("prepared")).collect();

        // Filters.
        let examples: Vec<_> = records.iter().map(|r| r.example.clone()).collect();
        let (verdicts, failures) = self.filters.evaluate(self.host, examples);
        let failing: Vec<String> = failures.iter().map(|f| f.filter.clone()).collect();
        for f in failures {
            let n = records.len() as u64;
            self.count(c, &format!("filter_failed:{}", f.filter), n);
            // A filter left out keeps the error that made it so.
            if f.given_up {
                self.filter_errors.entry(f.filter).or_insert(f.error);
            } else {
                self.filter_errors.insert(f.filter, f.error);
            }
        }
        for (rec, vs) in records.iter_mut().zip(verdicts) {
            rec.verdicts = vs;
        }

        // Near duplicates, then the decision.
        let near = self.near.as_mut().expect("loaded");
        let mut superseded_by: HashMap<String, (String, f64)> = HashMap::new();
        let mut decisions: Vec<Decision> = Vec::with_capacity(records.len());
        for (pos, rec) in records.iter_mut().enumerate() {
            let id = &ids[pos];
            let mut d = auto_decision(&rec.verdicts, &self.review);
            if d.status == ReviewStatus::Approved && !failing.is_empty() {
                d = Decision {
                    status: ReviewStatus::Pending,
                    reason: Some(format!("{NOT_SCORED} {} (it failed); not approved automatically", failing.join(", "))),
                    note: None,
                    decided_by: DecidedBy::Auto,
                };
            }
            let sig = &sigs[pos];
            // Everything but a filter's reject takes part (a low score alone does not stop an
            // example from keeping its place against worse copies).
            if crate::review::filter_reject(&rec.verdicts).is_none() {
                let score = crate::review::combined_score(rec.verdicts.iter().map(|(_, v)| v));
                match near.check(id, rec.example.kind.as_str(), pos, score, sig) {
                    dedup::Outcome::Unique => {}
                    dedup::Outcome::DuplicateOf { of, similarity } => {
                        rec.duplicate_of = Some((of.clone(), similarity));
                        d = duplicate_decision(&of, similarity);
                    }
                    dedup::Outcome::Supersedes { batch_members } => {
                        for (p, sim) in batch_members {
                            superseded_by.insert(ids[p].clone(), (id.clone(), sim));
                        }
                    }
                }
            }
            decisions.push(d);
        }
        // Batch members superseded later in the batch become duplicates of their final keeper
        // (and so do their own duplicates).
        let hops = records.len();
        let resolve = |id: &str| -> Option<(String, f64)> {
            let (mut keeper, sim) = superseded_by.get(id).cloned()?;
            for _ in 0..hops {
                match superseded_by.get(&keeper) {
                    Some((next, _)) => keeper = next.clone(),
                    None => break,
                }
            }
            Some((keeper, sim))
        };
        for (pos, rec) in records.iter_mut().enumerate() {
            let target = match resolve(&ids[pos]) {
                Some(k) => Some(k),
                None => rec.duplicate_of.as_ref().and_then(|(of, sim)| resolve(of).map(|(k, _)| (k, *sim))),
            };
            if let Some((keeper, sim)) = target {
                decisions[pos] = duplicate_decision(&keeper, sim);
                rec.duplicate_of = Some((keeper, sim));
            }
        }
        let mut tally: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (rec, d) in records.iter_mut().zip(decisions) {
            let key = match (d.status, rec.duplicate_of.is_some()) {
                (_, true) => "near_duplicates",
                (ReviewStatus::Approved, _) => "auto_approved",
                (ReviewStatus::Rejected, _) => "auto_rejected",
                (ReviewStatus::Pending, _) => "pending",
            };
            *tally.entry(key).or_default() += 1;
            if rec.verdicts.iter().any(|(_, v)| v.reject_reason.is_some()) {
                *tally.entry("filter_rejected").or_default() += 1;
            }
            // A pending decision is written only when it says something a person should see.
            let worth_a_row = d.status != ReviewStatus::Pending || d.reason.as_deref().is_some_and(|r| r.starts_with(NOT_SCORED));
            rec.decision = worth_a_row.then_some(d);
        }
        for (k, n) in tally {
            self.count(c, k, n);
        }
        // Keepers before their duplicates (the duplicate link needs its target stored first).
        records.sort_by_key(|r| r.duplicate_of.is_some());
        Ok(())
    }
}

/// Normalizes and scrubs every record, sets its content id and MinHash signature (returned too,
/// for the near-duplicate check), spread over the cores: examples are independent, and this is
/// the host's own share of the work. Returns the signatures, secrets redacted, examples scrubbed.
fn prepare(scrubber: &Scrubber, near: &dedup::NearDups, records: &mut [Record]) -> (Vec<brain_curate::Signature>, u64, u64) {
    let one = |rec: &mut Record| {
        clean::normalize(&mut rec.example);
        let counts = clean::scrub(scrubber, &mut rec.example);
        let redacted: u64 = counts.values().map(|&n| u64::from(n)).sum();
        for (rule, n) in counts {
            *rec.scrub_counts.entry(rule).or_default() += n;
        }
        rec.id = Some(example_id(&rec.example));
        let sig = near.signature(&clean::dedup_text(&rec.example));
        rec.minhash = Some(MinHash { signature: sig.to_bytes(near.params()), bands: Vec::new() });
        (sig, redacted)
    };
    // Small batches are not worth a thread.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(records.len() / 64).max(1);
    let per = records.len().div_ceil(workers).max(1);
    let parts: Vec<Vec<(brain_curate::Signature, u64)>> = std::thread::scope(|scope| {
        let mut chunks = records.chunks_mut(per);
        let first = chunks.next();
        let handles: Vec<_> = chunks.map(|part| scope.spawn(move || part.iter_mut().map(one).collect::<Vec<_>>())).collect();
        let mut parts = vec![first.map_or_else(Vec::new, |part| part.iter_mut().map(one).collect())];
        parts.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
        parts
    });
    let (mut sigs, mut redacted, mut scrubbed) = (Vec::with_capacity(records.len()), 0, 0);
    for (sig, n) in parts.into_iter().flatten() {
        sigs.push(sig);
        redacted += n;
        scrubbed += u64::from(n > 0);
    }
    (sigs, redacted, scrubbed)
}

fn duplicate_decision(of: &str, similarity: f64) -> Decision {
    Decision {
        status: ReviewStatus::Rejected,
        reason: Some(DUPLICATE.to_string()),
        note: Some(format!("near-duplicate of {of} (similarity {similarity:.2})")),
        decided_by: DecidedBy::Auto,
    }
}

impl Curate for Curation<'_> {
    fn curate(&mut self, store: &Store, _source: &PluginEntry, records: &mut Vec<Record>, c: &mut SourceCounters) -> anyhow::Result<()> {
        // The previous batch is stored by now: write what waited for it.
        self.apply_supersessions(store)?;
        let result = self.curate_batch(store, records, c);
        if result.is_err() {
            if let Some(near) = &mut self.near {
                near.forget_batch();
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::{Example, Kind, Message, Role};

    fn ex(q: &str, a: &str) -> Example {
        Example {
            kind: Kind::Chat,
            task: "t".into(),
            messages: vec![Message { role: Role::User, content: q.into() }, Message { role: Role::Assistant, content: a.into() }],
            rejected: None,
            provenance: "p".into(),
            metadata: serde_json::json!({ "note": "token ghp_R4nd0mT0k3nW1thTh1rtySixCh4rsXyZ01234" }),
        }
    }

    #[test]
    fn a_batch_is_scrubbed_deduplicated_and_stored_keepers_first() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_str("", &dir.path().join("brain.toml")).unwrap();
        let host = PluginHost::new(&dir.path().join("cache"), Default::default()).unwrap();
        let mut cur = Curation::new(&config, &host).unwrap();
        let mut store = Store::open_in_memory().unwrap();
        let long = "The parser reads the token stream from the lexer and builds a syntax tree for every statement \
                    in the file; each node keeps its span so that errors can point at the exact place in the source.";
        let mut records = vec![
            Record::new(ex("Explain the parser.", long)),
            Record::new(ex("Explain  the parser.", &format!("{long}\n"))), // the same after normalization
            Record::new(ex("Explain the parser.", &long.replace("exact place", "precise place"))),
            Record::new(ex("Something else", "An answer about gardening and tomatoes in the summer heat.")),
        ];
        let mut c = SourceCounters::default();
        let entry = crate::config::PluginEntry {
            name: "s".into(),
            plugin: crate::plugin::PluginRef::Bundled("git".into()),
            plugin_text: "git".into(),
            grants: Default::default(),
            config_json: "{}".into(),
            enabled: true,
            at: crate::config::Location { file: dir.path().join("brain.toml"), line: 1, column: 1 },
            budget: Default::default(),
        };
        cur.curate(&store, &entry, &mut records, &mut c).unwrap();
        assert_eq!(records.len(), 3, "the exact copy is dropped");
        assert_eq!(c.duplicate, 1);
        assert_eq!(c.curation["secrets_redacted"], 4);
        assert_eq!(c.curation["near_duplicates"], 1);
        assert!(records.last().unwrap().duplicate_of.is_some(), "duplicates come after their keepers");
        assert!(records.iter().all(|r| !serde_json::to_string(&r.example).unwrap().contains("ghp_")));
        let out = store.store_batch("s", "git", &records, None).unwrap();
        assert_eq!(out.stored, 3);
        cur.finish(&store).unwrap();
        let st = store.status().unwrap();
        assert_eq!((st.near_duplicates, st.by_status["rejected"], st.by_status["pending"]), (1, 1, 2));
    }
}
