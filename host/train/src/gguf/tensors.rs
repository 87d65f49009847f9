//! GGUF tensor data → MLX arrays, under the file's own tensor names.
//!
//! Why not MLX's `load_gguf` (exposed as `mlx::io::load_gguf`)? Measured on MLX 0.32.4 it
//! dequantizes Q4_K — the bulk of the common Q4_K_M files — to wrong values, refuses Q5_0/Q5_1/
//! Q5_K, turns BF16 into f16, and opens the file read-write (a model file this process may only
//! read fails). This module reads the file read-only and:
//! - keeps F32, F16, BF16 (and I8/I16/I32/I64) as they are stored;
//! - re-packs Q4_0, Q4_1, Q8_0 and Q4_K into MLX's affine layout, group size 32: `X.weight`
//!   (uint32), `X.scales`, `X.biases` (f16) — the names MLX's own reader gives them, and what an
//!   mlx-community checkpoint holds — so they stay quantized in memory;
//! - dequantizes Q5_0, Q5_1, Q5_K, Q6_K to f16 (MLX has no matching layout);
//! - refuses every other type, naming the tensor and its type.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use mlx::{f16, Array, Dtype};

use super::quant::{self, affine_bits, to_affine};
use super::{GgmlType, GgufFile, TensorInfo};
use crate::error::{io, model_err, Result};

/// The tensor types [`load`] accepts, for messages.
pub const SUPPORTED: &str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K (kept quantized), Q2_K, Q3_K, Q5_0, Q5_1, Q5_K, Q6_K (dequantized to f16)";

/// What [`load`] produced.
#[derive(Default)]
pub struct Loaded {
    /// Arrays by GGUF name; quantized tensors as `X.weight` / `X.scales` / `X.biases`.
    pub arrays: BTreeMap<String, Array>,
    /// How many tensors of each type were dequantized to f16.
    pub dequantized: BTreeMap<GgmlType, usize>,
}

/// How a tensor of type `t` is brought into MLX: `Some(bits)` re-packed as affine, `None` dense.
/// An error for types [`load`] does not handle.
pub fn plan(file: &GgufFile, t: &TensorInfo) -> Result<Option<i32>> {
    use GgmlType::*;
    match t.ggml_type {
        F32 | F16 | BF16 | I8 | I16 | I32 | I64 | F64 => Ok(None),
        ty if affine_bits(ty).is_some() && t.name.ends_with(".weight") => Ok(affine_bits(ty)),
        ty if quant::can_dequantize(ty) || affine_bits(ty).is_some() => Ok(None),
        ty => Err(model_err(
            &file.path,
            format!(
                "tensor {} is {ty}, which brain cannot load (it loads {SUPPORTED}); use a file quantized to one of those \
                 (e.g. Q4_K_M or Q8_0) or the Hugging Face model",
                t.name
            ),
        )),
    }
}

fn mlx_shape(file: &GgufFile, t: &TensorInfo) -> Result<Vec<i32>> {
    t.shape()
        .iter()
        .map(|&d| i32::try_from(d).map_err(|_| model_err(&file.path, format!("tensor {} has a dimension of {d}, too large", t.name))))
        .collect()
}

/// Load every tensor `keep` accepts (by GGUF name).
pub fn load(file: &GgufFile, keep: impl Fn(&TensorInfo) -> bool) -> Result<Loaded> {
    let mut f = File::open(&file.path).map_err(io(&file.path))?;
    let mut out = Loaded::default();
    for t in file.tensors.iter().filter(|t| keep(t)) {
        for (name, a) in load_one(file, &mut f, t, &mut out.dequantized)? {
            if out.arrays.insert(name.clone(), a).is_some() {
                return Err(model_err(&file.path, format!("two tensors give the array {name}")));
            }
        }
    }
    Ok(out)
}

fn load_one(file: &GgufFile, f: &mut File, t: &TensorInfo, dequantized: &mut BTreeMap<GgmlType, usize>) -> Result<Vec<(String, Array)>> {
    let bits = plan(file, t)?;
    let shape = mlx_shape(file, t)?;
    let n = t.nbytes().ok_or_else(|| {
        model_err(
            &file.path,
            format!(
                "tensor {} ({}, shape {:?}): rows are not whole {} blocks",
                t.name,
                t.ggml_type,
                t.shape(),
                t.ggml_type
            ),
        )
    })?;
    let mut data = vec![0u8; n as usize];
    f.seek(SeekFrom::Start(t.offset))
        .and_then(|_| f.read_exact(&mut data))
        .map_err(io(&file.path))?;
    let bad = |e: mlx::Error| model_err(&file.path, format!("tensor {}: {e}", t.name));
    use GgmlType::*;
    let dense = |dt: Dtype| Array::from_bytes(&data, &shape, dt).map_err(bad);
    let one = |a: Array| Ok(vec![(t.name.clone(), a)]);
    match t.ggml_type {
        F32 => return one(dense(Dtype::Float32)?),
        F16 => return one(dense(Dtype::Float16)?),
        BF16 => return one(dense(Dtype::Bfloat16)?),
        I8 => return one(dense(Dtype::Int8)?),
        I16 => return one(dense(Dtype::Int16)?),
        I32 => return one(dense(Dtype::Int32)?),
        I64 => return one(dense(Dtype::Int64)?),
        F64 => return one(dense(Dtype::Float64)?.as_type(Dtype::Float32).map_err(bad)?),
        _ => {}
    }
    if let Some(bits) = bits {
        let a = to_affine(t.ggml_type, &data)
            .ok_or_else(|| model_err(&file.path, format!("tensor {}: cannot re-pack {}", t.name, t.ggml_type)))?;
        let cols = *shape.last().unwrap_or(&1);
        let mut wshape = shape.clone();
        let mut gshape = shape.clone();
        if let (Some(w), Some(g)) = (wshape.last_mut(), gshape.last_mut()) {
            *w = cols / 32 * bits;
            *g = cols / quant::QK as i32;
        }
        let prefix = &t.name[..t.name.len() - ".weight".len()];
        return Ok(vec![
            (t.name.clone(), Array::from_slice(&a.words, &wshape).map_err(bad)?),
            (format!("{prefix}.scales"), Array::from_slice(&a.scales, &gshape).map_err(bad)?),
            (format!("{prefix}.biases"), Array::from_slice(&a.biases, &gshape).map_err(bad)?),
        ]);
    }
    let mut values = Vec::with_capacity(t.elements() as usize);
    quant::dequantize(t.ggml_type, &data, &mut values)
        .ok_or_else(|| model_err(&file.path, format!("tensor {}: cannot decode {}", t.name, t.ggml_type)))?;
    *dequantized.entry(t.ggml_type).or_default() += 1;
    let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
    one(Array::from_slice(&halves, &shape).map_err(bad)?)
}
