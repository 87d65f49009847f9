//! Banded LSH over MinHash signatures, queried incrementally.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::minhash::{estimate, splitmix, MinHashParams, MinHasher, Signature};
use super::DedupError;

/// A stored document found similar to a query.
#[derive(Clone, Debug, PartialEq)]
pub struct NearDup<Id> {
    pub id: Id,
    /// Estimated Jaccard similarity of the two shingle sets.
    pub similarity: f64,
}

/// Bucket keys are already xxh3 hashes: use them as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const END: u32 = u32::MAX;

/// The near-duplicate index: every signature inserted so far, bucketed by band.
///
/// `query` costs one hash lookup per band and one signature comparison per distinct candidate,
/// so inserting and querying `n` documents is O(n) overall (buckets are capped at
/// `max_bucket`). Rebuild it from stored signatures by inserting them again.
pub struct LshIndex<Id> {
    params: MinHashParams,
    /// For each layout, the signature positions in band order (layout 0: 0, 1, 2, …).
    order: Vec<Vec<usize>>,
    /// Band key → (first entry, entries in the bucket).
    buckets: HashMap<u64, (u32, u32), BuildHasherDefault<KeyHasher>>,
    /// Per entry: (document, next entry of the same bucket).
    entries: Vec<(u32, u32)>,
    ids: Vec<Id>,
    /// All signatures, `num_perm` values per document.
    values: Vec<u32>,
}

impl<Id: Clone> LshIndex<Id> {
    pub fn new(params: MinHashParams) -> Result<Self, DedupError> {
        Self::with_capacity(params, 0)
    }

    /// An index with room for `docs` documents (the store knows how many it will load).
    pub fn with_capacity(params: MinHashParams, docs: usize) -> Result<Self, DedupError> {
        params.validate()?;
        let keys = params.layouts * params.bands;
        let mut state = params.seed ^ 0x4c53_485f_4c41_594f;
        let order = (0..params.layouts)
            .map(|layout| {
                let mut positions: Vec<usize> = (0..params.num_perm).collect();
                if layout > 0 {
                    // Fisher–Yates with a fixed seed: the same layouts on every run.
                    for i in (1..positions.len()).rev() {
                        let j = (splitmix(&mut state) % (i as u64 + 1)) as usize;
                        positions.swap(i, j);
                    }
                }
                positions
            })
            .collect();
        Ok(LshIndex {
            order,
            buckets: HashMap::with_capacity_and_hasher(docs * keys, Default::default()),
            entries: Vec::with_capacity(docs * keys),
            ids: Vec::with_capacity(docs),
            values: Vec::with_capacity(docs * params.num_perm),
            params,
        })
    }

    /// Rebuilds the index from stored signatures (`id`, bytes from [`Signature::to_bytes`]),
    /// with `hasher`'s settings; a signature made with other settings is an error
    /// ([`DedupError::ParamsMismatch`]: recompute them).
    pub fn rebuild<B: AsRef<[u8]>>(hasher: &MinHasher, stored: impl IntoIterator<Item = (Id, B)>) -> Result<Self, DedupError> {
        let stored = stored.into_iter();
        let mut index = Self::with_capacity(hasher.params().clone(), stored.size_hint().0)?;
        for (id, bytes) in stored {
            index.insert(id, &hasher.decode(bytes.as_ref())?);
        }
        Ok(index)
    }

    pub fn params(&self) -> &MinHashParams {
        &self.params
    }

    /// Documents inserted.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds a document. Signatures of texts without words are kept out of the buckets (nothing
    /// is a near duplicate of an empty text).
    pub fn insert(&mut self, id: Id, signature: &Signature) {
        assert_eq!(signature.0.len(), self.params.num_perm, "signature length differs from the index's num_perm");
        let doc = self.ids.len() as u32;
        self.ids.push(id);
        self.values.extend_from_slice(&signature.0);
        if signature.is_empty() {
            return;
        }
        let keys: Vec<u64> = self.band_keys(&signature.0).collect();
        for key in keys {
            let next_entry = self.entries.len() as u32;
            let bucket = self.buckets.entry(key).or_insert((END, 0));
            if bucket.1 as usize >= self.params.max_bucket {
                continue;
            }
            self.entries.push((doc, bucket.0));
            *bucket = (next_entry, bucket.1 + 1);
        }
    }

    /// Stored near duplicates of `signature`, most similar first. A stored document is one when
    /// it shares a band of layout 0 with the query — classic banded-LSH semantics, what
    /// datasketch's `MinHashLSH` answers at the same bands × rows — or when it shares a band of
    /// another layout and its estimated similarity is at least `threshold`. The extra layouts
    /// catch pairs near the threshold that the classic banding misses; each result carries its
    /// estimated similarity for callers that want a stricter cut.
    pub fn query(&self, signature: &Signature) -> Vec<NearDup<Id>> {
        let mut found: Vec<(u32, f64)> = Vec::new();
        if signature.is_empty() {
            return Vec::new();
        }
        let classic = self.params.bands;
        let mut docs: Vec<(u32, bool)> = Vec::new();
        for (k, key) in self.band_keys(&signature.0).enumerate() {
            self.bucket_docs(key, |d| docs.push((d, k < classic)));
        }
        // Per document, classic first.
        docs.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        docs.dedup_by_key(|d| d.0);
        for (doc, in_classic_band) in docs {
            let similarity = self.similarity(doc, signature);
            if in_classic_band || similarity >= self.params.threshold {
                found.push((doc, similarity));
            }
        }
        found.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        found.into_iter().map(|(d, similarity)| NearDup { id: self.ids[d as usize].clone(), similarity }).collect()
    }

    /// Every stored document sharing a band with `signature` in layout 0, unverified: classic LSH
    /// candidates (what datasketch's `MinHashLSH.query` returns at the same bands × rows), with
    /// their estimated similarity.
    pub fn classic_candidates(&self, signature: &Signature) -> Vec<NearDup<Id>> {
        let mut docs = Vec::new();
        if !signature.is_empty() {
            for key in self.band_keys(&signature.0).take(self.params.bands) {
                self.bucket_docs(key, |d| docs.push(d));
            }
        }
        docs.sort_unstable();
        docs.dedup();
        docs.into_iter().map(|d| NearDup { id: self.ids[d as usize].clone(), similarity: self.similarity(d, signature) }).collect()
    }

    /// `query`, then `insert`: the incremental step of deduplicating a stream against everything
    /// seen so far.
    pub fn query_insert(&mut self, id: Id, signature: &Signature) -> Vec<NearDup<Id>> {
        let found = self.query(signature);
        self.insert(id, signature);
        found
    }

    fn similarity(&self, doc: u32, signature: &Signature) -> f64 {
        let n = self.params.num_perm;
        let start = doc as usize * n;
        estimate(&self.values[start..start + n], &signature.0)
    }

    fn bucket_docs(&self, key: u64, mut f: impl FnMut(u32)) {
        if let Some(&(mut entry, _)) = self.buckets.get(&key) {
            while entry != END {
                let (doc, next) = self.entries[entry as usize];
                f(doc);
                entry = next;
            }
        }
    }

    /// The band keys of a signature, layout by layout, band by band.
    fn band_keys<'a>(&'a self, values: &'a [u32]) -> impl Iterator<Item = u64> + 'a {
        let (bands, rows) = (self.params.bands, self.params.rows);
        self.order.iter().enumerate().flat_map(move |(layout, positions)| {
            (0..bands).map(move |band| {
                let mut bytes = [0u8; 4 * 64];
                let take = rows.min(64);
                for (k, &p) in positions[band * rows..band * rows + take].iter().enumerate() {
                    bytes[4 * k..4 * k + 4].copy_from_slice(&values[p].to_le_bytes());
                }
                xxh3_64_with_seed(&bytes[..4 * take], (layout * bands + band) as u64)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_copies_and_ignores_empty() {
        let p = MinHashParams::default();
        let h = MinHasher::new(p.clone()).unwrap();
        let mut index = LshIndex::new(p).unwrap();
        let a = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau";
        assert!(index.query_insert("a", &h.signature(a)).is_empty());
        let found = index.query_insert("a2", &h.signature(a));
        assert_eq!(found, vec![NearDup { id: "a", similarity: 1.0 }]);
        assert!(index.query_insert("e", &h.signature("")).is_empty());
        assert!(index.query(&h.signature("")).is_empty());
        assert_eq!(index.len(), 3);
        assert_eq!(index.classic_candidates(&h.signature(a)).len(), 2);
    }

    #[test]
    fn buckets_are_capped() {
        let p = MinHashParams { max_bucket: 3, ..Default::default() };
        let h = MinHasher::new(p.clone()).unwrap();
        let mut index = LshIndex::new(p).unwrap();
        let s = h.signature("one two three four five six seven eight nine ten");
        for i in 0..10 {
            index.insert(i, &s);
        }
        assert_eq!(index.query(&s).len(), 3);
    }
}
