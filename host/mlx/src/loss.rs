//! Cross-entropy over a large vocabulary, fused with the output projection.
//!
//! `nll[i] = logsumexp_v(h[i] . W[v]) - h[i] . W[t_i]` for hidden states `h` (..., H), the
//! output projection `W` (V, H) (the LM head, or the tied embedding) and targets `t` (...).
//! On the CPU this runs as the bridge's custom MLX primitive: vocabulary chunks, online
//! log-sum-exp, rows spread over threads, BLAS for the chunk matmuls; the (N, V) logits never
//! exist whole, and the backward pass (d hidden, and d weight only when differentiated)
//! recomputes them chunk by chunk. On a GPU the same function composes MLX ops.

use std::ffi::c_int;

use crate::array::{check, Array, Dtype};
use crate::device::default_device;
use crate::error::{Error, Result};
use crate::sys;

/// Which implementation [`cross_entropy`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CePath {
    /// Fused on the CPU, composed on a GPU.
    #[default]
    Auto,
    /// The fused CPU primitive (errors on a GPU default device are avoided by running on the
    /// CPU stream).
    Fused,
    /// Plain MLX ops: `logsumexp(h @ W.T) - take_along_axis(...)`.
    Composed,
}

/// Options of [`cross_entropy`].
#[derive(Debug, Clone, Copy)]
pub struct CeOptions<'a> {
    /// Per-token weights (same shape as targets), e.g. the loss mask: the NLL is multiplied by
    /// them.
    pub weights: Option<&'a Array>,
    /// With `weights`: compute only the rows whose weight is non-zero (the weights are read to
    /// the host for that; they must not depend on differentiated inputs). Those rows' NLL and
    /// logsumexp are 0. Default true.
    pub compact: bool,
    /// Vocabulary chunk of the fused kernel (default 4096 or `BRAIN_MLX_CE_CHUNK`).
    pub chunk: Option<i32>,
    pub path: CePath,
}

impl Default for CeOptions<'_> {
    fn default() -> Self {
        CeOptions { weights: None, compact: true, chunk: None, path: CePath::Auto }
    }
}

/// Per-token NLL (shape of `targets`, f32) of `targets` under `softmax(hidden @ weight.T)`.
/// Differentiable w.r.t. `hidden` and `weight`.
pub fn cross_entropy(hidden: &Array, weight: &Array, targets: &Array, opts: CeOptions<'_>) -> Result<Array> {
    let (nll, _) = cross_entropy_with_lse(hidden, weight, targets, opts)?;
    Ok(nll)
}

/// Per-token log-probabilities of `targets` (= `-nll`), e.g. for DPO's sequence log-probs.
pub fn target_log_probs(hidden: &Array, weight: &Array, targets: &Array, opts: CeOptions<'_>) -> Result<Array> {
    cross_entropy(hidden, weight, targets, opts)?.neg()
}

/// [`cross_entropy`] plus each token's `logsumexp` over the vocabulary (both f32, shape of
/// `targets`; weights, when given, apply to the NLL only).
pub fn cross_entropy_with_lse(hidden: &Array, weight: &Array, targets: &Array, opts: CeOptions<'_>) -> Result<(Array, Array)> {
    let hs = hidden.shape();
    let ts = targets.shape();
    if hs.is_empty() || hs[..hs.len() - 1] != ts[..] || weight.ndim() != 2 {
        return Err(Error::InvalidArgument(format!(
            "cross_entropy: hidden {hs:?}, weight {:?}, targets {ts:?}: expected (..., H), (V, H), (...)",
            weight.shape()
        )));
    }
    let h_dim = *hs.last().unwrap();
    let h2 = hidden.reshape(&[-1, h_dim])?;
    let t1 = targets.reshape(&[-1])?;
    let fused = match opts.path {
        CePath::Fused => true,
        CePath::Composed => false,
        CePath::Auto => !default_device()?.is_gpu(),
    };
    let run = |h: &Array, t: &Array| {
        if fused {
            fused_raw(h, weight, t, opts.chunk.unwrap_or(0))
        } else {
            composed_raw(h, weight, t)
        }
    };
    let kept = match opts.weights {
        Some(w) if opts.compact => {
            let wv = w.as_type(Dtype::Float32)?.reshape(&[-1])?.to_vec::<f32>()?;
            if wv.len() != t1.size() {
                return Err(Error::InvalidArgument(format!(
                    "cross_entropy: weights {:?} do not match targets {ts:?}",
                    w.shape()
                )));
            }
            let keep: Vec<i32> = (0..wv.len() as i32).filter(|&i| wv[i as usize] != 0.0).collect();
            (keep.len() < wv.len()).then_some(keep)
        }
        _ => None,
    };
    let (nll, lse) = match kept {
        None => run(&h2, &t1)?,
        Some(keep) => {
            let n = t1.size() as i32;
            let zeros = crate::ops::zeros(&[n], Dtype::Float32)?;
            if keep.is_empty() {
                // Keep the graph connected so gradients are zeros, not missing.
                let z = h2.sum_all()?.mul(0.0f32)?.as_type(Dtype::Float32)?;
                (zeros.add(&z)?, zeros)
            } else {
                let idx = Array::from_slice(&keep, &[keep.len() as i32])?;
                let (nll_k, lse_k) = run(&h2.take(&idx, 0)?, &t1.take(&idx, 0)?)?;
                (zeros.put_along_axis(&idx, &nll_k, 0)?, zeros.put_along_axis(&idx, &lse_k, 0)?)
            }
        }
    };
    let nll = nll.reshape(&ts)?;
    let lse = lse.reshape(&ts)?;
    let nll = match opts.weights {
        Some(w) => nll.mul(&w.as_type(Dtype::Float32)?)?,
        None => nll,
    };
    Ok((nll, lse))
}

fn fused_raw(h: &Array, w: &Array, t: &Array, chunk: i32) -> Result<(Array, Array)> {
    let b = sys::bridge()?;
    let mut nll: sys::Arr = std::ptr::null_mut();
    let mut lse: sys::Arr = std::ptr::null_mut();
    check(b, unsafe { (b.fused_cross_entropy)(h.raw(), w.raw(), t.raw(), chunk as c_int, &mut nll, &mut lse) })?;
    Ok(unsafe { (Array::from_raw(nll), Array::from_raw(lse)) })
}

fn composed_raw(h: &Array, w: &Array, t: &Array) -> Result<(Array, Array)> {
    let logits = h.matmul(&w.swapaxes(0, 1)?)?.as_type(Dtype::Float32)?;
    let lse = logits.logsumexp(&[-1], false)?;
    // The target's logit as a row dot product: N·H work, and its gradient needs no (N, V)
    // scatter (a second full-vocabulary f32 array in the backward pass).
    let wt = w.take(&t.as_type(Dtype::Int32)?, 0)?.as_type(Dtype::Float32)?;
    let tl = h.as_type(Dtype::Float32)?.mul(&wt)?.sum(&[-1], false)?;
    Ok((lse.sub(&tl)?, lse))
}

/// Whether the fused kernel's chunk matmuls use a BLAS library (false: plain loops, slow).
pub fn fused_kernel_has_blas() -> Result<bool> {
    Ok(unsafe { (sys::bridge()?.has_sgemm)() } == 1)
}
