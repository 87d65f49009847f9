//! MLX's distributed layer: one process-wide group of ranks (ring over TCP, MPI, JACCL, NCCL —
//! MLX's own backends, chosen by its environment conventions, e.g. `MLX_RANK` and
//! `MLX_HOSTFILE` for the ring) and the collectives training needs. Arrays in and out are
//! lazy like every other op: the communication happens when the result is evaluated.

use std::ffi::{c_int, CString};

use crate::array::{check, out, Array};
use crate::error::{Error, Result};
use crate::sys;

/// This process's place in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    pub rank: usize,
    pub size: usize,
}

/// Whether MLX was built with `backend` (`ring`, `mpi`, `jaccl`, `nccl`, or `any`).
pub fn is_available(backend: &str) -> Result<bool> {
    let b = sys::bridge()?;
    let name = CString::new(backend).map_err(|_| Error::Exception("backend name with a NUL byte".into()))?;
    Ok(unsafe { (b.dist_is_available)(name.as_ptr()) } != 0)
}

/// Joins the group `backend` describes in the environment. With `strict`, a missing or broken
/// configuration is an error; otherwise it is a group of one (collectives are no-ops). Blocks
/// until every rank has connected.
pub fn init(strict: bool, backend: &str) -> Result<Group> {
    let b = sys::bridge()?;
    let name = CString::new(backend).map_err(|_| Error::Exception("backend name with a NUL byte".into()))?;
    let (mut rank, mut size): (c_int, c_int) = (0, 1);
    check(b, unsafe { (b.dist_init)(c_int::from(strict), name.as_ptr(), &mut rank, &mut size) })?;
    Ok(Group { rank: rank as usize, size: size as usize })
}

/// The element-wise sum of `a` over all ranks (every rank gets it). Needs [`init`] first.
pub fn all_sum(a: &Array) -> Result<Array> {
    out(|b, o| unsafe { (b.dist_all_sum)(a.raw(), o) })
}

/// Every rank's `a` concatenated along the first axis, in rank order. Needs [`init`] first.
pub fn all_gather(a: &Array) -> Result<Array> {
    out(|b, o| unsafe { (b.dist_all_gather)(a.raw(), o) })
}
