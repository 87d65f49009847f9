//! Near duplicates against the whole store, across runs.
//!
//! The LSH index (brain-curate) is built on the first batch of a collect from the signatures in
//! the store's `minhash` table — signatures missing there (examples stored before curation, or
//! made with other `[dedup]` settings) are computed from the stored text and written back — and
//! then grows with every new example. Only "keepers" are indexed: examples that are not near
//! duplicates themselves and that no filter rejected.
//!
//! Examples are only compared with examples of the same kind: a correction and the preference
//! pair made from the same exchange share most of their text and are both wanted.
//!
//! A new example similar (estimated Jaccard ≥ `threshold`) to keepers is compared with the
//! best-scored of them. The better-scored one stays; the other is **kept in the store, rejected
//! with reason `duplicate`** and linked to the one that stays (`duplicates` table). Keeping it
//! (rather than dropping it) leaves a trace a person can look at and overrule, keeps the
//! collect counters honest (it was stored), and makes a re-collect of the same content an exact
//! duplicate instead of a new near duplicate. A keeper a person decided on is never replaced;
//! without scores on both sides the older one stays.

use std::collections::{HashMap, HashSet};

use brain_curate::{LshIndex, MinHashParams, MinHasher};

use crate::config::DedupSection;
use crate::store::Store;

/// The MinHash settings of a `[dedup]` section.
pub fn params(section: &DedupSection) -> MinHashParams {
    MinHashParams {
        num_perm: (section.bands as usize) * (section.rows as usize),
        ngram: section.shingle as usize,
        bands: section.bands as usize,
        rows: section.rows as usize,
        threshold: section.threshold,
        ..MinHashParams::default()
    }
}

struct Entry {
    id: String,
    score: Option<f64>,
    human: bool,
    /// Position in the batch being curated (cleared once the batch is stored).
    in_batch: Option<usize>,
}

/// A stored example that must become a duplicate of a new, better-scored one once the batch
/// holding the new one is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Supersede {
    pub old: String,
    pub new: String,
    pub similarity: f64,
}

/// What dedup decided for one new example.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// No near duplicate among the keepers: it is one now.
    Unique,
    /// A near duplicate of the keeper `of`, which stays.
    DuplicateOf { of: String, similarity: f64 },
    /// It replaces these keepers (better score): stored ones become its duplicates after the
    /// batch is stored ([`NearDups::take_supersessions`]); batch members are returned here so
    /// the caller can mark their records.
    Supersedes { batch_members: Vec<(usize, f64)> },
}

pub struct NearDups {
    hasher: MinHasher,
    /// One index per kind.
    index: HashMap<String, LshIndex<u32>>,
    params: MinHashParams,
    entries: Vec<Entry>,
    dead: HashSet<u32>,
    batch_entries: Vec<u32>,
    pending: Vec<Supersede>,
    threshold: f64,
}

impl NearDups {
    /// Loads the keepers of `store` into a new index.
    pub fn load(store: &Store, params: MinHashParams) -> anyhow::Result<NearDups> {
        let hasher = MinHasher::new(params.clone())?;
        let keepers = store.keepers()?;
        let mut index: HashMap<String, LshIndex<u32>> = HashMap::new();
        let mut entries = Vec::with_capacity(keepers.len());
        let mut rewrite = Vec::new();
        for k in keepers {
            let sig = match k.signature.as_deref().map(|b| hasher.decode(b)) {
                Some(Ok(sig)) => sig,
                _ => {
                    // Missing, or made with other settings: compute it from the stored text.
                    let ex = store.example(&k.id)?;
                    let sig = hasher.signature(&super::clean::dedup_text(&ex.example));
                    rewrite.push((k.id.clone(), sig.to_bytes(&params)));
                    sig
                }
            };
            let kind_index = match index.entry(k.kind.clone()) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(LshIndex::new(params.clone())?),
            };
            kind_index.insert(entries.len() as u32, &sig);
            entries.push(Entry { id: k.id, score: k.score, human: k.human, in_batch: None });
        }
        if !rewrite.is_empty() {
            tracing::info!("computed {} missing MinHash signatures", rewrite.len());
            store.put_signatures(&rewrite)?;
        }
        Ok(NearDups {
            hasher,
            index,
            params: params.clone(),
            entries,
            dead: HashSet::new(),
            batch_entries: Vec::new(),
            pending: Vec::new(),
            threshold: params.threshold,
        })
    }

    pub fn params(&self) -> &MinHashParams {
        self.hasher.params()
    }

    /// The signature bytes of a text.
    pub fn signature(&self, text: &str) -> brain_curate::Signature {
        self.hasher.signature(text)
    }

    /// Decides for the new example `id` (at position `pos` of the batch, with its combined
    /// score) and updates the index.
    pub fn check(&mut self, id: &str, kind: &str, pos: usize, score: Option<f64>, sig: &brain_curate::Signature) -> Outcome {
        let found: Vec<(u32, f64)> = self
            .index
            .get(kind)
            .map(|ix| ix.query(sig))
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.similarity >= self.threshold && !self.dead.contains(&n.id) && self.entries[n.id as usize].id != id)
            .map(|n| (n.id, n.similarity))
            .collect();
        if found.is_empty() {
            self.insert(id, kind, pos, score, sig);
            return Outcome::Unique;
        }
        let rank = |s: Option<f64>| s.unwrap_or(f64::NEG_INFINITY);
        // The best keeper: highest score, then most similar, then the oldest.
        let &(best, best_sim) = found
            .iter()
            .max_by(|a, b| {
                rank(self.entries[a.0 as usize].score)
                    .total_cmp(&rank(self.entries[b.0 as usize].score))
                    .then(a.1.total_cmp(&b.1))
                    .then(b.0.cmp(&a.0))
            })
            .expect("not empty");
        let protected = found.iter().any(|(d, _)| self.entries[*d as usize].human);
        let better = match (score, self.entries[best as usize].score) {
            (Some(new), Some(old)) => new > old,
            _ => false,
        };
        if protected || !better {
            return Outcome::DuplicateOf { of: self.entries[best as usize].id.clone(), similarity: best_sim };
        }
        let mut batch_members = Vec::new();
        for &(d, sim) in &found {
            self.dead.insert(d);
            let e = &self.entries[d as usize];
            match e.in_batch {
                Some(p) => batch_members.push((p, sim)),
                None => self.pending.push(Supersede { old: e.id.clone(), new: id.to_string(), similarity: sim }),
            }
            // Whatever was superseded by the old keeper now points at the new one.
            let old_id = e.id.clone();
            for s in &mut self.pending {
                if s.new == old_id {
                    s.new = id.to_string();
                }
            }
        }
        self.insert(id, kind, pos, score, sig);
        Outcome::Supersedes { batch_members }
    }

    fn insert(&mut self, id: &str, kind: &str, pos: usize, score: Option<f64>, sig: &brain_curate::Signature) {
        let n = self.entries.len() as u32;
        let params = &self.params;
        self.index
            .entry(kind.to_string())
            .or_insert_with(|| LshIndex::new(params.clone()).expect("parameters validated when loading"))
            .insert(n, sig);
        self.entries.push(Entry { id: id.to_string(), score, human: false, in_batch: Some(pos) });
        self.batch_entries.push(n);
    }

    /// The batch is stored (or dropped): its members are plain keepers from now on.
    pub fn end_batch(&mut self) {
        for n in self.batch_entries.drain(..) {
            self.entries[n as usize].in_batch = None;
        }
    }

    /// Forgets the batch's members (the batch was not stored).
    pub fn forget_batch(&mut self) {
        for n in self.batch_entries.drain(..) {
            self.dead.insert(n);
        }
        self.pending.clear();
    }

    /// Supersessions waiting for their batch to be stored.
    pub fn take_supersessions(&mut self) -> Vec<Supersede> {
        std::mem::take(&mut self.pending)
    }

    /// Number of indexed keepers (including superseded ones still in the index).
    pub fn len(&self) -> usize {
        self.entries.len() - self.dead.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::{Example, Kind, Message, Role, Verdict};
    use crate::store::dedup::Superseded;
    use crate::store::{example_id, DecidedBy, Decision, Record, ReviewStatus};

    const TEXT: &str = "The parser reads the token stream from the lexer and builds a syntax tree for every \
        statement in the file; each node keeps its span so that errors can point at the exact place in \
        the source where the problem was found, and the checker walks the tree afterwards to resolve \
        names, infer types and report unused variables before code generation starts.";

    fn ex(text: &str) -> Example {
        Example {
            kind: Kind::Chat,
            task: "t".into(),
            messages: vec![
                Message { role: Role::User, content: "Explain the front end.".into() },
                Message { role: Role::Assistant, content: text.into() },
            ],
            rejected: None,
            provenance: "p".into(),
            metadata: serde_json::json!({}),
        }
    }

    fn scored(e: Example, score: f32) -> Record {
        let mut r = Record::new(e);
        r.verdicts.push(("q".into(), Verdict { score, flags: vec![], complexity: 3, reject_reason: None, rule: "r".into(), fired: vec![] }));
        r
    }

    #[test]
    fn worse_copies_are_duplicates_better_ones_supersede_and_people_win() {
        let mut store = Store::open_in_memory().unwrap();
        let a = ex(TEXT);
        let a_id = example_id(&a);
        // Stored without a signature: loading computes and writes it.
        store.store_batch("s", "p", &[scored(a.clone(), 0.5)], None).unwrap();
        let mut near = NearDups::load(&store, MinHashParams::default()).unwrap();
        let n: i64 = store.conn().query_row("SELECT count(*) FROM minhash", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);

        // A worse-scored light edit: a duplicate of the keeper.
        let b = ex(&TEXT.replace("exact place", "precise place"));
        let sig = near.signature(&crate::curation::clean::dedup_text(&b));
        match near.check(&example_id(&b), "chat", 0, Some(0.4), &sig) {
            Outcome::DuplicateOf { of, similarity } => {
                assert_eq!(of, a_id);
                assert!(similarity >= 0.7, "{similarity}");
            }
            o => panic!("{o:?}"),
        }
        // The same text as another kind: not compared.
        let mut k = b.clone();
        k.kind = Kind::Correction;
        assert_eq!(near.check(&example_id(&k), "correction", 1, Some(0.4), &sig), Outcome::Unique);
        // Unrelated text: unique.
        let u = ex("Completely different words about gardening, tomatoes, soil acidity and the watering schedule in a dry summer.");
        assert_eq!(near.check(&example_id(&u), "chat", 1, Some(0.9), &near.signature(&crate::curation::clean::dedup_text(&u))), Outcome::Unique);

        // A better-scored edit replaces the stored keeper once its batch is stored.
        let c = ex(&TEXT.replace("unused variables", "unused imports"));
        let c_id = example_id(&c);
        let sig = near.signature(&crate::curation::clean::dedup_text(&c));
        assert_eq!(near.check(&c_id, "chat", 2, Some(0.9), &sig), Outcome::Supersedes { batch_members: vec![] });
        store.store_batch("s", "p", &[scored(c.clone(), 0.9)], None).unwrap();
        near.end_batch();
        let pending = near.take_supersessions();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].old.as_str(), pending[0].new.as_str()), (a_id.as_str(), c_id.as_str()));
        assert_eq!(store.supersede(&pending[0].old, &pending[0].new, pending[0].similarity).unwrap(), Superseded::Done);
        assert_eq!(store.review_status(&a_id).unwrap(), ReviewStatus::Rejected);
        let s = store.summary(&a_id).unwrap();
        assert_eq!((s.reason.as_deref(), s.duplicate_of.as_deref()), (Some("duplicate"), Some(c_id.as_str())));

        // A new copy now meets c (a is out of the index); a person approves c: nothing replaces it.
        store.decide(&c_id, &Decision { status: ReviewStatus::Approved, reason: None, note: None, decided_by: DecidedBy::Human }).unwrap();
        let mut near = NearDups::load(&store, MinHashParams::default()).unwrap();
        assert_eq!(near.len(), 1, "a is a duplicate now, c the keeper");
        let d = ex(&TEXT.replace("unused variables", "unused functions"));
        let sig = near.signature(&crate::curation::clean::dedup_text(&d));
        match near.check(&example_id(&d), "chat", 0, Some(1.0), &sig) {
            Outcome::DuplicateOf { of, .. } => assert_eq!(of, c_id),
            o => panic!("{o:?}"),
        }
        assert_eq!(store.supersede(&c_id, &a_id, 0.9).unwrap(), Superseded::Protected);
    }

    #[test]
    fn batch_members_are_superseded_within_the_batch() {
        let store = Store::open_in_memory().unwrap();
        let mut near = NearDups::load(&store, MinHashParams::default()).unwrap();
        assert!(near.is_empty());
        let a = ex(TEXT);
        let b = ex(&TEXT.replace("exact place", "precise place"));
        let sa = near.signature(&crate::curation::clean::dedup_text(&a));
        let sb = near.signature(&crate::curation::clean::dedup_text(&b));
        assert_eq!(near.check(&example_id(&a), "chat", 0, Some(0.5), &sa), Outcome::Unique);
        match near.check(&example_id(&b), "chat", 1, Some(0.8), &sb) {
            Outcome::Supersedes { batch_members } => assert_eq!(batch_members.iter().map(|m| m.0).collect::<Vec<_>>(), vec![0]),
            o => panic!("{o:?}"),
        }
        assert!(near.take_supersessions().is_empty(), "nothing stored to supersede");
    }
}
