//! Random numbers (MLX's counter-based PRNG: explicit keys, or the global seeded key).

use std::ffi::c_int;

use crate::array::{check, opt, out, Array, Dtype};
use crate::error::Result;
use crate::sys;

/// Seeds the global generator used when no key is given.
pub fn seed(seed: u64) -> Result<()> {
    let b = sys::bridge()?;
    check(b, unsafe { (b.random_seed)(seed) })
}

/// A PRNG key from a seed.
pub fn key(seed: u64) -> Result<Array> {
    out(|b, o| unsafe { (b.random_key)(seed, o) })
}

/// Splits a key into `num` new keys (shape (num, 2)).
pub fn split(key: &Array, num: i32) -> Result<Array> {
    out(|b, o| unsafe { (b.random_split)(key.raw(), num, o) })
}

/// Normal samples `loc + scale * N(0, 1)`.
pub fn normal(shape: &[i32], dtype: Dtype, loc: f32, scale: f32, key: Option<&Array>) -> Result<Array> {
    out(|b, o| unsafe { (b.random_normal)(shape.as_ptr(), shape.len() as c_int, dtype as c_int, loc, scale, opt(key), o) })
}

/// Uniform samples in `[low, high)`.
pub fn uniform(low: f32, high: f32, shape: &[i32], dtype: Dtype, key: Option<&Array>) -> Result<Array> {
    let lo = Array::scalar(low)?;
    let hi = Array::scalar(high)?;
    out(|b, o| unsafe { (b.random_uniform)(lo.raw(), hi.raw(), shape.as_ptr(), shape.len() as c_int, dtype as c_int, opt(key), o) })
}

/// Booleans that are true with probability `p` (a scalar or broadcastable array).
pub fn bernoulli(p: &Array, shape: &[i32], key: Option<&Array>) -> Result<Array> {
    out(|b, o| unsafe { (b.random_bernoulli)(p.raw(), shape.as_ptr(), shape.len() as c_int, opt(key), o) })
}

/// Samples indices from unnormalized log-probabilities along `axis` (`num_samples` per
/// distribution; `None`: one, with `axis` removed).
pub fn categorical(logits: &Array, axis: i32, num_samples: Option<i32>, key: Option<&Array>) -> Result<Array> {
    out(|b, o| unsafe { (b.random_categorical)(logits.raw(), axis, num_samples.unwrap_or(0), opt(key), o) })
}

/// Integers in `[low, high)`.
pub fn randint(low: i32, high: i32, shape: &[i32], dtype: Dtype, key: Option<&Array>) -> Result<Array> {
    let lo = Array::scalar(low)?;
    let hi = Array::scalar(high)?;
    out(|b, o| unsafe { (b.random_randint)(lo.raw(), hi.raw(), shape.as_ptr(), shape.len() as c_int, dtype as c_int, opt(key), o) })
}
