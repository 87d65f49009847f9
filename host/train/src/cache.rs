//! The key/value cache for incremental decoding: per block, the keys and values of every
//! position seen so far, in buffers that grow in steps of [`STEP`] positions (like mlx-lm's
//! `KVCache`) so one decoding step writes one slice instead of copying the whole history.

use mlx::{Array, Dtype};

/// Positions the buffers grow by.
pub const STEP: i32 = 256;

/// Keys and values of one block: buffers (B, kv_heads, capacity, head_dim), the first `offset`
/// positions filled.
#[derive(Clone, Default)]
pub struct LayerKv {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

impl LayerKv {
    /// Positions already in the cache (the RoPE offset of the next token).
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Append `k`, `v` (B, kv_heads, L, head_dim) and return all keys and values so far
    /// (B, kv_heads, offset + L, head_dim).
    pub fn update(&mut self, k: &Array, v: &Array) -> mlx::Result<(Array, Array)> {
        let sh = k.shape();
        let (b, h, l, d) = (sh[0], sh[1], sh[2], sh[3]);
        let vd = v.dim(3);
        let end = self.offset + l;
        let cap = self.keys.as_ref().map_or(0, |a| a.dim(2));
        if end > cap {
            let grow = (end - cap + STEP - 1) / STEP * STEP;
            let (kz, vz) = (mlx::zeros(&[b, h, grow, d], k.dtype())?, mlx::zeros(&[b, h, grow, vd], v.dtype())?);
            self.keys = Some(match self.keys.take() {
                Some(old) => mlx::concatenate(&[&old.slice_axis(2, 0, self.offset)?, &kz], 2)?,
                None => kz,
            });
            self.values = Some(match self.values.take() {
                Some(old) => mlx::concatenate(&[&old.slice_axis(2, 0, self.offset)?, &vz], 2)?,
                None => vz,
            });
        }
        let (keys, values) = (self.keys.as_ref().expect("allocated"), self.values.as_ref().expect("allocated"));
        let keys = keys.slice_update(k, &[0, 0, self.offset, 0], &[b, h, end, d], &[1, 1, 1, 1])?;
        let values = values.slice_update(v, &[0, 0, self.offset, 0], &[b, h, end, vd], &[1, 1, 1, 1])?;
        self.offset = end;
        let out = (keys.slice_axis(2, 0, end)?, values.slice_axis(2, 0, end)?);
        self.keys = Some(keys);
        self.values = Some(values);
        Ok(out)
    }

    /// The cache's arrays (to evaluate them together with a step's output).
    pub fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.keys.iter().chain(self.values.iter())
    }
}

/// One [`LayerKv`] per block of a model.
#[derive(Clone, Default)]
pub struct KvCache {
    pub layers: Vec<LayerKv>,
}

impl KvCache {
    /// An empty cache for a model with `layers` blocks.
    pub fn new(layers: usize) -> Self {
        KvCache { layers: vec![LayerKv::default(); layers] }
    }

    /// Positions cached so far.
    pub fn offset(&self) -> usize {
        self.layers.first().map_or(0, |l| l.offset as usize)
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            *l = LayerKv::default();
        }
    }

    /// Keep only the first `len` positions (e.g. the shared prefix of a chat's next turn).
    pub fn truncate(&mut self, len: usize) {
        for l in &mut self.layers {
            l.offset = l.offset.min(len as i32);
        }
    }

    /// Bytes held by the buffers.
    pub fn nbytes(&self) -> usize {
        self.layers.iter().flat_map(|l| l.arrays()).map(|a| a.nbytes()).sum()
    }

    /// Compute the cache's pending arrays.
    pub fn eval(&self) -> mlx::Result<()> {
        mlx::eval(self.layers.iter().flat_map(|l| l.arrays()))
    }

    /// Dtype of the cached keys (None while empty).
    pub fn dtype(&self) -> Option<Dtype> {
        self.layers.first().and_then(|l| l.keys.as_ref()).map(|a| a.dtype())
    }
}
