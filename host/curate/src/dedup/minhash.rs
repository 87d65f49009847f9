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
    /// The vector instructions this CPU has (checked once, in [`MinHasher::new`]).
    simd: Simd,
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
        Ok(MinHasher { params, a, b, simd: Simd::detect() })
    }

    pub fn params(&self) -> &MinHashParams {
        &self.params
    }

    /// The signature of `text`: its words (maximal runs of alphanumeric characters, lower-cased)
    /// in shingles of `ngram` consecutive words; a text with fewer words is one shingle.
    ///
    /// Value `i` is the minimum over shingle hashes `x` of `(a[i]·x + b[i]) >> 32`. The shingles
    /// are hashed first, then [`fold_mins`] takes the minima of the full 64-bit `a[i]·x + b[i]`
    /// and shifts once at the end (`v >> 32` is monotonic, so the minimum of the shifted values
    /// is the shifted minimum): the same values, bit for bit, in a loop the compiler vectorizes.
    pub fn signature(&self, text: &str) -> Signature {
        let shingles = self.shingle_hashes(text);
        let mut mins = vec![u64::MAX; self.params.num_perm];
        fold_mins(self.simd, &self.a, &self.b, &shingles, &mut mins);
        Signature(mins.iter().map(|&m| (m >> 32) as u32).collect())
    }

    /// The 64-bit hash of each shingle of `text` (see [`MinHasher::signature`]).
    fn shingle_hashes(&self, text: &str) -> Vec<u64> {
        let n = self.params.ngram;
        let mut out = Vec::with_capacity(text.len() / 6 + 1);
        // The last `n` word hashes, as a ring.
        let mut window = [0u64; 32];
        let mut words = 0usize;
        let mut shingle = [0u8; 8 * 32];
        let mut hash = |window: &[u64; 32], words: usize, len: usize| {
            for k in 0..len {
                let w = window[(words - len + k) % 32];
                shingle[8 * k..8 * k + 8].copy_from_slice(&w.to_le_bytes());
            }
            xxh3_64_with_seed(&shingle[..8 * len], 0x0053_4849_4e47_4c45)
        };
        for_each_word(text, |word| {
            window[words % 32] = xxh3_64_with_seed(word, 0);
            words += 1;
            if words >= n {
                out.push(hash(&window, words, n));
            }
        });
        if words > 0 && words < n {
            out.push(hash(&window, words, words));
        }
        out
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

/// Which compiled copy of [`fold_mins`] runs: the same Rust code, built for the vector
/// instructions the CPU has (64-bit lane multiplies and minima are native in AVX-512, emulated
/// in AVX2, scalar elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Simd {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Simd {
    fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Simd::Avx2;
            }
        }
        Simd::Scalar
    }
}

/// `mins[i] = min(mins[i], min over x of a[i]·x + b[i])` (wrapping, 64-bit).
fn fold_mins(simd: Simd, a: &[u64], b: &[u64], xs: &[u64], mins: &mut [u64]) {
    match simd {
        // SAFETY: `Simd::detect` chose these only when the CPU has the features they enable.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { fold_mins_avx512(a, b, xs, mins) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { fold_mins_avx2(a, b, xs, mins) },
        Simd::Scalar => fold_mins_blocked::<8>(a, b, xs, mins),
    }
}

/// Eight 64-bit lanes per register: multiply-low, add and unsigned minimum are one instruction
/// each. Four registers of permutations per pass over the shingles, then one at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn fold_mins_avx512(a: &[u64], b: &[u64], xs: &[u64], mins: &mut [u64]) {
    use std::arch::x86_64::*;
    let n = mins.len().min(a.len()).min(b.len());
    let load = |s: &[u64], i: usize| _mm512_loadu_si512(s[i..i + 8].as_ptr().cast());
    let mut i = 0;
    while i + 32 <= n {
        let (a0, a1, a2, a3) = (load(a, i), load(a, i + 8), load(a, i + 16), load(a, i + 24));
        let (b0, b1, b2, b3) = (load(b, i), load(b, i + 8), load(b, i + 16), load(b, i + 24));
        let (mut m0, mut m1, mut m2, mut m3) = (load(mins, i), load(mins, i + 8), load(mins, i + 16), load(mins, i + 24));
        for &x in xs {
            let x = _mm512_set1_epi64(x as i64);
            m0 = _mm512_min_epu64(m0, _mm512_add_epi64(_mm512_mullo_epi64(a0, x), b0));
            m1 = _mm512_min_epu64(m1, _mm512_add_epi64(_mm512_mullo_epi64(a1, x), b1));
            m2 = _mm512_min_epu64(m2, _mm512_add_epi64(_mm512_mullo_epi64(a2, x), b2));
            m3 = _mm512_min_epu64(m3, _mm512_add_epi64(_mm512_mullo_epi64(a3, x), b3));
        }
        for (k, m) in [m0, m1, m2, m3].into_iter().enumerate() {
            _mm512_storeu_si512(mins[i + 8 * k..i + 8 * k + 8].as_mut_ptr().cast(), m);
        }
        i += 32;
    }
    while i + 8 <= n {
        let (a0, b0, mut m0) = (load(a, i), load(b, i), load(mins, i));
        for &x in xs {
            m0 = _mm512_min_epu64(m0, _mm512_add_epi64(_mm512_mullo_epi64(a0, _mm512_set1_epi64(x as i64)), b0));
        }
        _mm512_storeu_si512(mins[i..i + 8].as_mut_ptr().cast(), m0);
        i += 8;
    }
    fold_mins_blocked::<1>(&a[i..n], &b[i..n], xs, &mut mins[i..n]);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fold_mins_avx2(a: &[u64], b: &[u64], xs: &[u64], mins: &mut [u64]) {
    fold_mins_blocked::<16>(a, b, xs, mins)
}

/// Permutations in blocks of `L`: a block's minima stay in registers while every shingle
/// passes, and the `L` lanes are independent (what vector units want).
#[inline(always)]
fn fold_mins_blocked<const L: usize>(a: &[u64], b: &[u64], xs: &[u64], mins: &mut [u64]) {
    let n = mins.len().min(a.len()).min(b.len());
    let mut i = 0;
    while i + L <= n {
        let ca: &[u64; L] = a[i..i + L].try_into().expect("L values");
        let cb: &[u64; L] = b[i..i + L].try_into().expect("L values");
        let mut m: [u64; L] = mins[i..i + L].try_into().expect("L values");
        for &x in xs {
            for l in 0..L {
                m[l] = m[l].min(ca[l].wrapping_mul(x).wrapping_add(cb[l]));
            }
        }
        mins[i..i + L].copy_from_slice(&m);
        i += L;
    }
    for j in i..n {
        for &x in xs {
            mins[j] = mins[j].min(a[j].wrapping_mul(x).wrapping_add(b[j]));
        }
    }
}

/// Calls `f` with each word of `text` lower-cased. ASCII bytes take a byte loop (a word that
/// is already lower case is passed as a slice of `text`, without a copy); other characters go
/// through `char::is_alphanumeric` and `char::to_lowercase`.
fn for_each_word(text: &str, mut f: impl FnMut(&[u8])) {
    let bytes = text.as_bytes();
    // The word being read: `bytes[start..i]` while it is ASCII lower case and digits, else `buf`.
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    let mut start = 0usize;
    let mut copied = false;
    let mut i = 0usize;
    let flush = |f: &mut dyn FnMut(&[u8]), buf: &mut Vec<u8>, copied: &mut bool, word: &[u8]| {
        if *copied {
            f(buf);
            buf.clear();
            *copied = false;
        } else if !word.is_empty() {
            f(word);
        }
    };
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            if copied {
                buf.push(b);
            }
            i += 1;
        } else if b.is_ascii_uppercase() {
            if !copied {
                buf.extend_from_slice(&bytes[start..i]);
                copied = true;
            }
            buf.push(b.to_ascii_lowercase());
            i += 1;
        } else if b.is_ascii() {
            flush(&mut f, &mut buf, &mut copied, &bytes[start..i]);
            i += 1;
            start = i;
        } else {
            let c = text[i..].chars().next().expect("a char starts at a non-ASCII byte of a str");
            if c.is_alphanumeric() {
                if !copied {
                    buf.extend_from_slice(&bytes[start..i]);
                    copied = true;
                }
                let mut tmp = [0u8; 4];
                for l in c.to_lowercase() {
                    buf.extend_from_slice(l.encode_utf8(&mut tmp).as_bytes());
                }
                i += c.len_utf8();
            } else {
                flush(&mut f, &mut buf, &mut copied, &bytes[start..i]);
                i += c.len_utf8();
                start = i;
            }
        }
    }
    flush(&mut f, &mut buf, &mut copied, &bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first values of the default signature of "the quick brown fox jumps over the lazy
    /// dog", as computed since signatures were first stored.
    const PINNED: &[u32] = &[1798758902, 922742706, 134217297, 517818609];

    fn words(text: &str) -> Vec<String> {
        let mut out = vec![];
        for_each_word(text, |w| out.push(String::from_utf8(w.to_vec()).unwrap()));
        out
    }

    /// The definition of a word (what signatures were first computed with).
    fn reference_words(text: &str) -> Vec<String> {
        let mut out = vec![];
        let mut buf = String::new();
        for c in text.chars() {
            if c.is_alphanumeric() {
                buf.extend(c.to_lowercase());
            } else if !buf.is_empty() {
                out.push(std::mem::take(&mut buf));
            }
        }
        if !buf.is_empty() {
            out.push(buf);
        }
        out
    }

    #[test]
    fn fast_word_split_equals_the_definition() {
        let texts = ["", "a", "A", "ab CD eF", "x_y-z", "İstanbul ÉTÉ été", "caf\u{e9}\u{a0}x", "Ǆemal ǅ ǆ", "a1B2 ", " Ωmega ΣΑΣ", "日本語 テキスト", "tail Été"];
        for t in texts {
            assert_eq!(words(t), reference_words(t), "{t:?}");
        }
        let mut state = 3u64;
        let alphabet = ['a', 'Z', '0', ' ', '_', '\n', 'é', 'É', '\u{a0}', 'ß', 'İ', '日', '-', 'q'];
        for _ in 0..500 {
            let t: String = (0..(splitmix(&mut state) % 40)).map(|_| alphabet[(splitmix(&mut state) % alphabet.len() as u64) as usize]).collect();
            assert_eq!(words(&t), reference_words(&t), "{t:?}");
        }
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

    /// The definition, as signatures were computed when they were first stored: each shingle
    /// through every permutation, minima of the shifted 32-bit values.
    pub(super) fn reference_signature(h: &MinHasher, text: &str) -> Vec<u32> {
        let mut mins = vec![u32::MAX; h.params.num_perm];
        for x in h.shingle_hashes(text) {
            for ((m, &a), &b) in mins.iter_mut().zip(&h.a).zip(&h.b) {
                *m = (*m).min((a.wrapping_mul(x).wrapping_add(b) >> 32) as u32);
            }
        }
        mins
    }

    #[test]
    fn every_simd_path_matches_the_definition_bit_for_bit() {
        let mut text = String::new();
        let mut state = 7u64;
        for i in 0..600 {
            text.push_str(["fn", "let", "value", "compute", "Été", "x_1", "parser", "état"][(splitmix(&mut state) % 8) as usize]);
            text.push_str(if i % 13 == 0 { ".\n" } else { " " });
        }
        let texts = ["", "one", "two words", "a b c d e", "a b c d e f g", "Hello, wörld! x_y 42ÉTÉ and more words here", &text];
        let mut paths = vec![Simd::Scalar];
        if Simd::detect() != Simd::Scalar {
            paths.push(Simd::detect());
        }
        // 112 is the default; 100 and 7 leave a tail after the blocks of 8 and 16.
        for num_perm in [112, 100, 7] {
            let mut h = MinHasher::new(MinHashParams { num_perm, bands: 1, rows: 7, ..Default::default() }).unwrap();
            for &simd in &paths {
                h.simd = simd;
                for t in texts {
                    assert_eq!(h.signature(t).values(), reference_signature(&h, t), "{simd:?}, num_perm {num_perm}, {t:?}");
                }
            }
        }
        // Pinned values of the default hasher (stored signatures are compared across runs).
        let h = MinHasher::new(MinHashParams::default()).unwrap();
        let s = h.signature("the quick brown fox jumps over the lazy dog");
        assert_eq!(&s.values()[..4], PINNED);
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
