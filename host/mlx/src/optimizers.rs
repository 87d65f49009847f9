//! Optimizer updates as one CPU primitive (bridge_adamw.cpp): the composed form costs ~15 array
//! ops per parameter, which for LoRA's many small matrices is more scheduling than arithmetic.

use crate::ops::{make_vec, vec_out};
use crate::{Array, Result};

/// The scalars of one AdamW step: `p' = p·decay − lr_hat·m' / (√v'·v_scale + eps)`, with
/// `m' = b1·m + (1 − b1)·g` and `v' = b2·v + (1 − b2)·g²`.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    pub lr_hat: f32,
    pub v_scale: f32,
    pub b1: f32,
    pub b2: f32,
    pub eps: f32,
    pub decay: f32,
}

/// New parameters, first and second moments for every parameter, on the CPU, in one op.
/// Parameters and moments must be float32 (gradients may be any float dtype) and match in shape.
pub fn adamw_cpu(params: &[Array], grads: &[Array], m: &[Array], v: &[Array], s: AdamWStep) -> Result<(Vec<Array>, Vec<Array>, Vec<Array>)> {
    let b = crate::sys::bridge()?;
    let mut lists = Vec::with_capacity(4);
    for list in [params, grads, m, v] {
        match make_vec(&list.iter().collect::<Vec<&Array>>()) {
            Ok(l) => lists.push(l),
            Err(e) => {
                lists.into_iter().for_each(|l| unsafe { (b.vec_free)(l) });
                return Err(e);
            }
        }
    }
    let res = vec_out(|b, o| unsafe {
        (b.adamw_cpu)(lists[0], lists[1], lists[2], lists[3], s.lr_hat, s.v_scale, s.b1, s.b2, s.eps, s.decay, o)
    });
    lists.into_iter().for_each(|l| unsafe { (b.vec_free)(l) });
    let mut all = res?;
    let n = params.len();
    let vs = all.split_off(2 * n);
    let ms = all.split_off(n);
    Ok((all, ms, vs))
}
