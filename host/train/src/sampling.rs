//! Choosing the next token from logits on the host: greedy, or temperature with top-k, top-p
//! (nucleus) and min-p; repetition penalty (mlx-lm's rule); and detection of looping output.
//! Everything is deterministic for a seed (the crate's own PRNG, not MLX's).

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// How to pick tokens. `temp == 0` is greedy (the other knobs except the penalty are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingOptions {
    pub temp: f32,
    /// Keep the smallest set of tokens whose probability adds up to `top_p` (1: off).
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens (0: off).
    pub top_k: usize,
    /// Drop tokens less likely than `min_p` × the most likely one (0: off).
    pub min_p: f32,
    /// Penalize tokens seen in the last `repetition_context_size` tokens (1 or None: off):
    /// positive logits are divided by it, negative ones multiplied.
    pub repetition_penalty: Option<f32>,
    pub repetition_context_size: usize,
    pub seed: u64,
    /// Added to the logits of these tokens before anything else (OpenAI's `logit_bias`;
    /// -100 bans a token).
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        SamplingOptions { temp: 0.0, top_p: 1.0, top_k: 0, min_p: 0.0, repetition_penalty: None, repetition_context_size: 20, seed: 0, logit_bias: Vec::new() }
    }
}

/// Applies [`SamplingOptions`] step after step (holds the random state).
pub struct Sampler {
    opts: SamplingOptions,
    rng: Rng,
}

impl Sampler {
    pub fn new(opts: &SamplingOptions) -> Self {
        Sampler { opts: opts.clone(), rng: Rng::new(opts.seed) }
    }

    /// The next token given the logits of the last position and the tokens so far (prompt and
    /// generated; the penalty looks at the last `repetition_context_size` of them).
    pub fn next(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        for &(id, bias) in &self.opts.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += bias;
            }
        }
        if let Some(p) = self.opts.repetition_penalty {
            let ctx = &history[history.len().saturating_sub(self.opts.repetition_context_size)..];
            apply_repetition_penalty(logits, ctx, p);
        }
        if self.opts.temp <= 0.0 {
            return argmax(logits);
        }
        let probs = candidates(logits, &self.opts);
        let u = self.rng.uniform() as f32;
        let mut acc = 0f32;
        for &(id, p) in &probs {
            acc += p;
            if u < acc {
                return id;
            }
        }
        probs.last().map_or_else(|| argmax(logits), |c| c.0)
    }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// mlx-lm's repetition penalty: for each distinct token in `context`, a positive logit is
/// divided by `penalty`, a negative one multiplied by it.
pub fn apply_repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen: Vec<u32> = context.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for t in seen {
        if let Some(l) = logits.get_mut(t as usize) {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// The tokens left after top-k, top-p and min-p with their renormalized probabilities at
/// temperature `temp`, most likely first.
pub fn candidates(logits: &[f32], o: &SamplingOptions) -> Vec<(u32, f32)> {
    let t = o.temp.max(1e-6);
    let mut ids: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize].is_finite()).collect();
    if ids.is_empty() {
        return vec![(argmax(logits), 1.0)];
    }
    let by_logit_desc = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    if o.top_k > 0 && o.top_k < ids.len() {
        ids.select_nth_unstable_by(o.top_k - 1, by_logit_desc);
        ids.truncate(o.top_k);
    }
    ids.sort_unstable_by(by_logit_desc);
    let max = logits[ids[0] as usize] / t;
    let mut probs: Vec<f32> = ids.iter().map(|&i| (logits[i as usize] / t - max).exp()).collect();
    let z: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= z);
    let mut keep = probs.len();
    if o.top_p > 0.0 && o.top_p < 1.0 {
        let mut acc = 0f32;
        for (k, p) in probs.iter().enumerate() {
            acc += p;
            if acc >= o.top_p {
                keep = k + 1;
                break;
            }
        }
    }
    if o.min_p > 0.0 {
        let floor = probs[0] * o.min_p;
        keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
    }
    ids.truncate(keep);
    probs.truncate(keep);
    let z: f32 = probs.iter().sum();
    ids.into_iter().zip(probs.into_iter().map(|p| p / z)).collect()
}

/// Limits of [`LoopDetector::detect`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoopDetector {
    /// Longest repeated unit looked for, in tokens.
    pub max_period: usize,
    /// Copies of the unit, back to back at the end, that count as a loop.
    pub min_repeats: usize,
    /// ... and they must span at least this many tokens (so short legitimate repeats such as
    /// "| | |" or a blank line pass).
    pub min_span: usize,
}

impl Default for LoopDetector {
    fn default() -> Self {
        LoopDetector { max_period: 64, min_repeats: 3, min_span: 24 }
    }
}

impl LoopDetector {
    /// If `tokens` ends in a loop — a unit of `p ≤ max_period` tokens repeated `r ≥ min_repeats`
    /// times back to back, `p·r ≥ min_span` — the length to truncate to: everything before the
    /// loop plus one copy of the unit.
    pub fn detect(&self, tokens: &[u32]) -> Option<usize> {
        let n = tokens.len();
        for p in 1..=self.max_period.min(n / self.min_repeats.max(2)) {
            let unit = &tokens[n - p..];
            let mut r = 1;
            while (r + 1) * p <= n && &tokens[n - (r + 1) * p..n - r * p] == unit {
                r += 1;
            }
            if r >= self.min_repeats && r * p >= self.min_span {
                return Some(n - (r - 1) * p);
            }
        }
        None
    }
}

/// Share of repeated n-grams in `words`: among its n-grams, those that already occurred earlier
/// in the same sequence (0 when it has no n-gram). Returns (repeated, total).
pub fn repeated_ngrams<T: std::hash::Hash + Eq>(words: &[T], n: usize) -> (usize, usize) {
    if n == 0 || words.len() < n {
        return (0, 0);
    }
    let mut seen = std::collections::HashSet::new();
    let mut repeated = 0;
    let total = words.len() - n + 1;
    for w in words.windows(n) {
        if !seen.insert(w) {
            repeated += 1;
        }
    }
    (repeated, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_penalty() {
        let mut l = vec![0.5, 2.0, -1.0, 1.9];
        assert_eq!(argmax(&l), 1);
        apply_repetition_penalty(&mut l, &[1, 2, 1], 2.0);
        assert_eq!(l, vec![0.5, 1.0, -2.0, 1.9]);
        assert_eq!(argmax(&l), 3);
    }

    #[test]
    fn top_k_top_p_min_p() {
        let logits = vec![3.0f32, 2.0, 1.0, 0.0, -1.0];
        let o = SamplingOptions { temp: 1.0, top_k: 3, ..Default::default() };
        let c = candidates(&logits, &o);
        assert_eq!(c.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!((c.iter().map(|c| c.1).sum::<f32>() - 1.0).abs() < 1e-6);
        let o = SamplingOptions { temp: 1.0, top_p: 0.6, ..Default::default() };
        assert_eq!(candidates(&logits, &o).len(), 1); // p(0) ≈ 0.636
        let o = SamplingOptions { temp: 1.0, min_p: 0.3, ..Default::default() };
        assert_eq!(candidates(&logits, &o).len(), 2); // e^-1 ≈ 0.37 ≥ 0.3, e^-2 < 0.3
    }

    #[test]
    fn sampling_is_seeded() {
        let logits = vec![1.0f32; 50];
        let o = SamplingOptions { temp: 1.0, seed: 7, ..Default::default() };
        let run = || {
            let mut s = Sampler::new(&o);
            (0..20).map(|_| s.next(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        assert!(run().iter().collect::<std::collections::HashSet<_>>().len() > 5);
    }

    #[test]
    fn loops() {
        let d = LoopDetector { max_period: 8, min_repeats: 3, min_span: 6 };
        let mut t = vec![9, 8, 7];
        t.extend([1, 2, 3].repeat(3));
        assert_eq!(d.detect(&t), Some(6));
        assert_eq!(d.detect(&[1, 2, 3, 1, 2, 3]), None);
        assert_eq!(d.detect(&[5, 5, 5, 5]), None); // span 4 < 6
        assert_eq!(d.detect(&[4, 5, 5, 5, 5, 5, 5]), Some(2));
        assert_eq!(repeated_ngrams(&["a", "b", "a", "b", "a"], 2), (2, 4));
    }
}
