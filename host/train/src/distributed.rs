//! Data-parallel training over MLX's distributed group.
//!
//! Every rank reads the same global batches in the same order (same data, seed and position)
//! and keeps its own rows of each ([`World::shard`]); a rank's loss is its rows' share of the
//! global update's loss, so the gradients summed over ranks ([`World::all_sum`]) are exactly
//! the one-process gradients, up to the order of the floating-point sum. Only rank 0 writes
//! (checkpoints, metrics, adapters, the run record); every rank prints and returns the same
//! global numbers.
//!
//! The group comes from MLX's own environment conventions — `MLX_RANK` and `MLX_HOSTFILE` (a
//! JSON list, per rank, of `"ip:port"` addresses) for the ring backend, as `mlx.launch` sets
//! them, and `brain launch` too. Without them the world is one process and nothing changes.

use std::sync::OnceLock;
use std::time::Duration;

use mlx::Array;

use crate::error::{Error, Result};

/// The most bytes one all-reduce carries (mlx-lm's `average_gradients` groups alike).
const ALL_SUM_BYTES: usize = 64 << 20;

/// How long joining the group may take before it is an error (a peer that never comes up).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

/// This process's place among the ranks of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
}

static WORLD: OnceLock<std::result::Result<World, String>> = OnceLock::new();

/// The process's world, joined on first use: a group of one unless MLX's distributed
/// environment is set. Joining waits for every peer, at most `BRAIN_DIST_TIMEOUT_S` seconds
/// (default 120).
pub fn world() -> Result<World> {
    WORLD.get_or_init(join).clone().map_err(Error::Args)
}

fn join() -> std::result::Result<World, String> {
    let (Ok(rank), Ok(hostfile)) = (std::env::var("MLX_RANK"), std::env::var("MLX_HOSTFILE")) else {
        return Ok(World::single());
    };
    let timeout = std::env::var("BRAIN_DIST_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    // MLX's ring init blocks until every peer has connected; a peer that never comes must not
    // hang the run, so the join waits on another thread (which the process leaves behind).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(mlx::distributed::init(true, "ring"));
    });
    let group = match rx.recv_timeout(timeout) {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => return Err(format!("rank {rank} could not join the ring of {hostfile}: {e}")),
        Err(_) => {
            return Err(format!(
                "rank {rank} could not reach every peer of {hostfile} within {} s (is every rank started, \
                 and are the addresses reachable?); BRAIN_DIST_TIMEOUT_S sets the wait",
                timeout.as_secs()
            ))
        }
    };
    tracing::info!("rank {} of a world of {}", group.rank, group.size);
    Ok(World { rank: group.rank, size: group.size })
}

impl World {
    pub fn single() -> World {
        World { rank: 0, size: 1 }
    }

    /// Rank 0: the one that writes.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// This rank's items of a global batch: every `size`-th, starting at `rank`.
    pub fn shard<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items.iter().skip(self.rank).step_by(self.size).cloned().collect()
    }

    /// Refuses a global batch too small to give every rank an item.
    pub fn check_batch_size(&self, batch_size: usize) -> Result<()> {
        if batch_size < self.size {
            return Err(Error::Args(format!(
                "batch size {batch_size} cannot be split over {} ranks: use a batch size of at least {} (a multiple of it balances the ranks)",
                self.size, self.size
            )));
        }
        Ok(())
    }

    /// The element-wise sums over all ranks (the arrays themselves in a world of one).
    ///
    /// Arrays of one dtype go flattened into buffers of up to [`ALL_SUM_BYTES`], one all-reduce
    /// each: every all-reduce has a fixed cost (a ring round trip per step), which a model's
    /// hundreds of small adapter tensors would pay one by one (bench/distributed.sh: 224 tensors
    /// of a 1.5B model's rank-8 adapter, 24.7 ms one by one vs 16.8 ms flattened on loopback;
    /// far more on a loaded machine, where every round trip waits for a core).
    pub fn all_sum(&self, xs: Vec<Array>) -> Result<Vec<Array>> {
        if self.size == 1 {
            return Ok(xs);
        }
        let mut out: Vec<Option<Array>> = vec![None; xs.len()];
        let mut group: Vec<usize> = Vec::new();
        let mut bytes = 0;
        let flush = |group: &mut Vec<usize>, out: &mut Vec<Option<Array>>| -> Result<()> {
            if group.is_empty() {
                return Ok(());
            }
            let flat: Vec<Array> = group.iter().map(|&i| xs[i].reshape(&[-1])).collect::<mlx::Result<_>>()?;
            let refs: Vec<&Array> = flat.iter().collect();
            let summed = mlx::distributed::all_sum(&mlx::concatenate(&refs, 0)?)?;
            let mut at = 0;
            let cuts: Vec<i32> = flat[..flat.len() - 1].iter().map(|f| {
                at += f.size() as i32;
                at
            }).collect();
            for (&i, part) in group.iter().zip(summed.split_at(&cuts, 0)?) {
                out[i] = Some(part.reshape(&xs[i].shape())?);
            }
            group.clear();
            Ok(())
        };
        for (i, x) in xs.iter().enumerate() {
            let same_dtype = group.first().is_none_or(|&g| xs[g].dtype() == x.dtype());
            if !same_dtype || bytes + x.nbytes() > ALL_SUM_BYTES {
                flush(&mut group, &mut out)?;
                bytes = 0;
            }
            group.push(i);
            bytes += x.nbytes();
        }
        flush(&mut group, &mut out)?;
        Ok(out.into_iter().map(|a| a.expect("every array is in a group")).collect())
    }

    /// `n` summed over all ranks.
    pub fn sum_count(&self, n: usize) -> Result<usize> {
        if self.size == 1 {
            return Ok(n);
        }
        let s = mlx::distributed::all_sum(&Array::from_slice(&[n as f32], &[1])?)?;
        Ok(s.item::<f32>()?.round() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_interleave_and_cover_the_batch() {
        let items: Vec<usize> = (0..7).collect();
        let parts: Vec<Vec<usize>> = (0..3).map(|rank| World { rank, size: 3 }.shard(&items)).collect();
        assert_eq!(parts, [vec![0, 3, 6], vec![1, 4], vec![2, 5]]);
        assert_eq!(World::single().shard(&items), items);
        assert!(World { rank: 0, size: 4 }.check_batch_size(2).is_err());
    }
}
