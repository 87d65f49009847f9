//! Writing GGUF v3 files: metadata of every value type (arrays included) and tensors in F32, F16,
//! BF16, Q8_0 and Q4_0, or already-encoded bytes of any type. Used to export models and, in tests,
//! to build GGUF models whose weights are known.
//!
//! The file is written next to its destination and renamed into place, so a reader never sees a
//! half-written model.

use std::io::{BufWriter, Write};
use std::path::Path;

use super::quant::{quantize_q4_0, quantize_q8_0};
use super::{GgmlType, Value, ValueType, DEFAULT_ALIGNMENT, MAGIC};
use crate::error::{io, Error, Result};

impl Value {
    /// An array of strings (`tokenizer.ggml.tokens`, `merges`).
    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::Array(ValueType::String, items.into_iter().map(|s| Value::String(s.into())).collect())
    }

    /// An array of i32 (`tokenizer.ggml.token_type`: llama.cpp wants i32 there).
    pub fn i32s(items: impl IntoIterator<Item = i32>) -> Value {
        Value::Array(ValueType::I32, items.into_iter().map(Value::I32).collect())
    }

    /// An array of f32 (`tokenizer.ggml.scores`).
    pub fn f32s(items: impl IntoIterator<Item = f32>) -> Value {
        Value::Array(ValueType::F32, items.into_iter().map(Value::F32).collect())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::U32(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::I32(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::U64(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::F32(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

struct Tensor {
    name: String,
    /// MLX order (outermost first).
    shape: Vec<u64>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

/// A GGUF file being assembled in memory, written by [`GgufWriter::write`].
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<Tensor>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set metadata `key` (replacing an earlier value of the same key).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    fn alignment(&self) -> Result<u64> {
        match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => Ok(DEFAULT_ALIGNMENT),
            Some((_, Value::U32(a))) if a.is_power_of_two() => Ok(*a as u64),
            Some((_, v)) => Err(Error::Args(format!("general.alignment must be a power of two as u32, not {v:?}"))),
        }
    }

    /// Add a tensor of shape `shape` (MLX order, outermost first) from f32 `values`, stored as
    /// `ggml_type`: F32, F16, BF16, Q8_0 or Q4_0 (the last two need rows that are whole blocks of
    /// 32).
    pub fn add_f32(&mut self, name: &str, shape: &[usize], values: &[f32], ggml_type: GgmlType) -> Result<&mut Self> {
        let n: usize = shape.iter().product();
        if n != values.len() {
            return Err(Error::Args(format!("tensor {name}: {} values for shape {shape:?}", values.len())));
        }
        let data = match ggml_type {
            GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            GgmlType::F16 => values.iter().flat_map(|v| mlx::f16::from_f32(*v).to_bits().to_le_bytes()).collect(),
            GgmlType::BF16 => values
                .iter()
                .flat_map(|v| mlx::bf16::from_f32(*v).to_bits().to_le_bytes())
                .collect(),
            GgmlType::Q8_0 | GgmlType::Q4_0 => {
                if shape.last().is_none_or(|c| c % 32 != 0) {
                    return Err(Error::Args(format!(
                        "tensor {name}: {ggml_type} needs rows of a multiple of 32 values, shape is {shape:?}"
                    )));
                }
                if ggml_type == GgmlType::Q8_0 {
                    quantize_q8_0(values)
                } else {
                    quantize_q4_0(values)
                }
            }
            t => {
                return Err(Error::Args(format!(
                    "tensor {name}: writing {t} from f32 is not supported (F32, F16, BF16, Q8_0, Q4_0 are)"
                )))
            }
        };
        self.add_encoded(name, shape, ggml_type, data)
    }

    /// Add a tensor whose data is already encoded as `ggml_type` (its size is checked when the
    /// type's block size is known).
    pub fn add_encoded(&mut self, name: &str, shape: &[usize], ggml_type: GgmlType, data: Vec<u8>) -> Result<&mut Self> {
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(Error::Args(format!("tensor {name} added twice")));
        }
        if let Some((per_block, bytes)) = ggml_type.block() {
            let n: u64 = shape.iter().map(|&d| d as u64).product();
            let row = shape.last().copied().unwrap_or(1) as u64;
            if !row.is_multiple_of(per_block) || n / per_block * bytes != data.len() as u64 {
                return Err(Error::Args(format!(
                    "tensor {name}: {} bytes do not encode shape {shape:?} as {ggml_type}",
                    data.len()
                )));
            }
        }
        self.tensors.push(Tensor {
            name: name.to_string(),
            shape: shape.iter().map(|&d| d as u64).collect(),
            ggml_type,
            data,
        });
        Ok(self)
    }

    /// Write the file (atomically: a temporary file in the same folder, renamed into place).
    pub fn write(&self, path: &Path) -> Result<()> {
        let alignment = self.alignment()?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let r = (|| -> std::io::Result<()> {
            let f = std::fs::File::create(&tmp)?;
            let mut w = Counting {
                w: BufWriter::new(&f),
                pos: 0,
            };
            self.write_to(&mut w, alignment)?;
            w.w.flush()?;
            drop(w);
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r.map_err(io(path))
    }

    fn write_to<W: Write>(&self, w: &mut Counting<W>, alignment: u64) -> std::io::Result<()> {
        w.put(&MAGIC)?;
        w.put(&3u32.to_le_bytes())?;
        w.put(&(self.tensors.len() as u64).to_le_bytes())?;
        w.put(&(self.metadata.len() as u64).to_le_bytes())?;
        for (k, v) in &self.metadata {
            let mut b = Vec::new();
            put_string(&mut b, k);
            b.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut b, v).map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("metadata {k}: {m}")))?;
            w.put(&b)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            let mut b = Vec::new();
            put_string(&mut b, &t.name);
            b.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in t.shape.iter().rev() {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.ggml_type.code().to_le_bytes());
            b.extend_from_slice(&offset.to_le_bytes());
            w.put(&b)?;
            offset = (offset + t.data.len() as u64).div_ceil(alignment) * alignment;
        }
        w.pad(alignment)?;
        for t in &self.tensors {
            w.put(&t.data)?;
            w.pad(alignment)?;
        }
        Ok(())
    }
}

/// A writer that knows how many bytes it has written (for the alignment padding).
struct Counting<W: Write> {
    w: W,
    pos: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.pos += b.len() as u64;
        self.w.write_all(b)
    }

    /// Zeros up to the next multiple of `alignment`.
    fn pad(&mut self, alignment: u64) -> std::io::Result<()> {
        let n = (self.pos.div_ceil(alignment) * alignment - self.pos) as usize;
        self.put(&vec![0u8; n])
    }
}

fn put_string(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, v: &Value) -> std::result::Result<(), String> {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.push(*x as u8),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(*x as u8),
        Value::String(s) => put_string(b, s),
        Value::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Array(t, items) => {
            b.extend_from_slice(&(*t as u32).to_le_bytes());
            b.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                if item.value_type() != *t {
                    return Err(format!("an array of {t:?} holds a {:?}", item.value_type()));
                }
                put_value(b, item)?;
            }
        }
    }
    Ok(())
}
