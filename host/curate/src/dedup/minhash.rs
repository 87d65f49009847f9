//! MinHash signatures over word n-gram shingles.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::DedupError;

/// MinHash and LSH settings. Changing `num_perm`, `ngram` or `seed` invalidates stored signatures
/// ([`MinHasher::decode`] says so); `bands`, `rows`, `layouts` and `threshold` only affect the
/// index, which is rebuilt from signatures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinHashParams {
    /// Signature length (number of hash permutations).
    pub num_perm: usize,
    /// Words per shingle.
    pub ngram: usize,
    /// LSH bands per layout; `bands * rows <= num_perm`.
    pub bands: usize,
    /// Signature values per band.
    pub rows: usize,
    /// How many band layouts are indexed. Layout 0 is the classic contiguous banding (datasketch's
    /// with the same bands × rows); each further layout re-bands the same signature in another
    /// fixed shuffled order, which raises recall near the threshold for a little more memory.
    pub layouts: usize,
    /// Estimated Jaccard similarity at or above which a document sharing a band of an extra
    /// layout is a near duplicate (one sharing a band of layout 0 always is: `bands` × `rows`
    /// place the classic S-curve, whose steepest point is near (1/bands)^(1/rows) ≈ 0.72).
    pub threshold: f64,
    /// Seed of the permutations.
    pub seed: u64,
    /// Bucket size cap: a bucket already holding this many documents takes no more (they are
    /// near duplicates of each other; one of them is enough to find the next). Keeps the work per
    /// query bounded, so total time stays linear even with many copies of one text.
    pub max_bucket: usize,
}

impl Default for MinHashParams {
    fn default() -> Self {
        MinHashParams { num_perm: 112, ngram: 5, bands: 14, rows: 8, layouts: 2, threshold: 0.7, seed: 1, max_bucket: 64 }
    }
}

impl MinHashParams {
    pub fn validate(&self) -> Result<(), DedupError> {
        let bad = |m: String| Err(DedupError::BadParams(m));
        if self.num_perm == 0 || self.num_perm > 1024 {
            return bad(format!("num_perm = {} (1..=1024)", self.num_perm));
        }
        if self.ngram == 0 || self.ngram > 32 {
            return bad(format!("ngram = {} (1..=32)", self.ngram));
        }
        if self.bands == 0 || self.rows == 0 || self.bands * self.rows > self.num_perm {
            return bad(format!("bands × rows = {} × {} must be ≥ 1 and ≤ num_perm = {}", self.bands, self.rows, self.num_perm));
        }
        if self.layouts == 0 || self.layouts > 8 {
            return bad(format!("layouts = {} (1..=8)", self.layouts));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return bad(format!("threshold = {} (0..=1)", self.threshold));
        }
        if self.max_bucket == 0 {
            return bad("max_bucket must be ≥ 1".into());
        }
        Ok(())
    }
}

/// A MinHash signature: `num_perm` minima of 32-bit hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature(pub(crate) Box<[u32]>);

const MAGIC: &[u8; 2] = b"MH";
const VERSION: u8 = 1;
const HEADER: usize = 14;

impl Signature {
    pub fn values(&self) -> &[u32] {
        &self.0
    }

    /// True for the signature of a text without words.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&v| v == u32::MAX)
    }

    /// Estimated Jaccard similarity: the fraction of equal positions.
    pub fn jaccard(&self, other: &Signature) -> f64 {
        estimate(&self.0, &other.0)
    }

    /// `MH`, version, ngram, num_perm (u16 LE), seed (u64 LE), then the values (u32 LE).
    pub fn to_bytes(&self, params: &MinHashParams) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 4 * self.0.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(params.ngram as u8);
        out.extend_from_slice(&(self.0.len() as u16).to_le_bytes());
        out.extend_from_slice(&params.seed.to_le_bytes());
        for v in self.0.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }
}

pub(crate) fn estimate(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return 0.0;
    }
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count();
    equal as f64 / a.len() as f64
}

/// Computes signatures. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug)]
pub struct MinHasher {
    params: MinHashParams,
    /// Permutation `i` maps a 64-bit shingle hash `x` to `(a[i]·x + b[i]) >> 32` (mod 2^64),
    /// with `a[i]` odd: multiply-add-shift universal hashing.
    a: Vec<u64>,
    b: Vec<u64>,
}

/// SplitMix64: expands a seed into well-mixed 64-bit values.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MinHasher {
    pub fn new(params: MinHashParams) -> Result<Self, DedupError> {
        params.validate()?;
        let mut state = params.seed;
        let a = (0..params.num_perm).map(|_| splitmix(&mut state) | 1).collect();
        let b = (0..params.num_perm).map(|_| splitmix(&mut state)).collect();
        Ok(MinHasher { params, a, b })
    }

    pub fn params(&self) -> &MinHashParams {
        &self.params
    }

    /// The signature of `text`: its words (maximal runs of alphanumeric characters, lower-cased)
    /// in shingles of `ngram` consecutive words; a text with fewer words is one shingle.
    pub fn signature(&self, text: &str) -> Signature {
        let mut mins = vec![u32::MAX; self.params.num_perm];
        let n = self.params.ngram;
        // The last `n` word hashes, as a ring.
        let mut window = [0u64; 32];
        let mut words = 0usize;
        let mut shingle = [0u8; 8 * 32];
        let mut add = |window: &[u64; 32], words: usize, len: usize, mins: &mut [u32]| {
            for k in 0..len {
                let w = window[(words - len + k) % 32];
                shingle[8 * k..8 * k + 8].copy_from_slice(&w.to_le_bytes());
            }
            let x = xxh3_64_with_seed(&shingle[..8 * len], 0x0053_4849_4e47_4c45);
            for ((m, &a), &b) in mins.iter_mut().zip(&self.a).zip(&self.b) {
                let h = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
                *m = (*m).min(h);
            }
        };
        for_each_word(text, |word| {
            window[words % 32] = xxh3_64_with_seed(word, 0);
            words += 1;
            if words >= n {
                add(&window, words, n, &mut mins);
            }
        });
        if words > 0 && words < n {
            add(&window, words, words, &mut mins);
        }
        Signature(mins.into_boxed_slice())
    }

    /// Reads a signature written by [`Signature::to_bytes`], checking it was made with this
    /// hasher's `num_perm`, `ngram` and `seed`.
    pub fn decode(&self, bytes: &[u8]) -> Result<Signature, DedupError> {
        if bytes.len() < HEADER || &bytes[..2] != MAGIC {
            return Err(DedupError::BadSignature(format!("{} bytes without the MH header", bytes.len())));
        }
        if bytes[2] != VERSION {
            return Err(DedupError::BadSignature(format!("version {} (this build reads {VERSION})", bytes[2])));
        }
        let ngram = bytes[3] as usize;
        let num_perm = u16::from_le_bytes([bytes[4], bytes[5]]) as usize;
        let seed = u64::from_le_bytes(bytes[6..14].try_into().expect("8 bytes"));
        if (ngram, num_perm, seed) != (self.params.ngram, self.params.num_perm, self.params.seed) {
            return Err(DedupError::ParamsMismatch {
                stored: format!("ngram {ngram}, num_perm {num_perm}, seed {seed}"),
                current: format!("ngram {}, num_perm {}, seed {}", self.params.ngram, self.params.num_perm, self.params.seed),
            });
        }
        let body = &bytes[HEADER..];
        if body.len() != 4 * num_perm {
            return Err(DedupError::BadSignature(format!("{} value bytes for {num_perm} values", body.len())));
        }
        let values = body.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        Ok(Signature(values))
    }
}

/// Calls `f` with each word of `text` lower-cased (ASCII fast path; other letters through
/// `char::to_lowercase`).
fn for_each_word(text: &str, mut f: impl FnMut(&[u8])) {
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            buf.push(c.to_ascii_lowercase() as u8);
        } else if !c.is_ascii() && c.is_alphanumeric() {
            let mut tmp = [0u8; 4];
            for l in c.to_lowercase() {
                buf.extend_from_slice(l.encode_utf8(&mut tmp).as_bytes());
            }
        } else if !buf.is_empty() {
            f(&buf);
            buf.clear();
        }
    }
    if !buf.is_empty() {
        f(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut out = vec![];
        for_each_word(text, |w| out.push(String::from_utf8(w.to_vec()).unwrap()));
        out
    }

    #[test]
    fn words_are_lowercased_alphanumeric_runs() {
        assert_eq!(words("Hello, wörld! x_y 42ÉTÉ"), ["hello", "wörld", "x", "y", "42été"]);
        assert!(words(" ,. ").is_empty());
    }

    #[test]
    fn identical_texts_identical_signatures_and_case_punctuation_ignored() {
        let h = MinHasher::new(MinHashParams::default()).unwrap();
        let a = h.signature("The quick brown fox jumps over the lazy dog again and again");
        let b = h.signature("the QUICK brown fox, jumps over the lazy dog; again and again!");
        assert_eq!(a, b);
        assert_eq!(a.jaccard(&b), 1.0);
        assert!(h.signature("").is_empty());
        assert!(!h.signature("two words").is_empty());
    }

    #[test]
    fn bytes_round_trip_and_mismatch_is_reported() {
        let p = MinHashParams::default();
        let h = MinHasher::new(p.clone()).unwrap();
        let s = h.signature("some text to sign with more than five words");
        let bytes = s.to_bytes(&p);
        assert_eq!(bytes.len(), 14 + 4 * 112);
        assert_eq!(h.decode(&bytes).unwrap(), s);
        let other = MinHasher::new(MinHashParams { ngram: 3, ..p }).unwrap();
        assert!(matches!(other.decode(&bytes), Err(DedupError::ParamsMismatch { .. })));
        assert!(matches!(h.decode(&bytes[..20]), Err(DedupError::BadSignature(_))));
        assert!(matches!(h.decode(b"nope"), Err(DedupError::BadSignature(_))));
    }

    #[test]
    fn bad_params_are_rejected() {
        let bad = |p: MinHashParams| MinHasher::new(p).is_err();
        assert!(bad(MinHashParams { bands: 15, ..Default::default() }));
        assert!(bad(MinHashParams { ngram: 0, ..Default::default() }));
        assert!(bad(MinHashParams { threshold: 1.5, ..Default::default() }));
        assert!(bad(MinHashParams { layouts: 0, ..Default::default() }));
    }
}
