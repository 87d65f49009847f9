//! Reading a GGUF file's header, metadata and tensor table — never the tensor data, so opening a
//! multi-GB model to show its config or build its tokenizer reads only the first few MB.
//!
//! Every length in the file is checked against the file's size before anything is allocated: a
//! truncated or corrupt file is an error naming the file and the byte offset, never a panic or a
//! huge allocation.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::{GgmlType, Value, ValueType, DEFAULT_ALIGNMENT, MAGIC};
use crate::error::{io, model_err, Result};

/// Deepest nesting of metadata arrays accepted (real files use 1).
const MAX_ARRAY_DEPTH: usize = 4;

/// One tensor of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions as GGUF stores them: innermost (contiguous) first — the reverse of MLX order.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
}

impl TensorInfo {
    /// Shape in MLX/NumPy order (outermost first).
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Size of the data in bytes, if the type's block size is known and the rows are whole blocks.
    pub fn nbytes(&self) -> Option<u64> {
        let (per_block, bytes) = self.ggml_type.block()?;
        let row = *self.dims.first().unwrap_or(&1);
        if !row.is_multiple_of(per_block) {
            return None;
        }
        Some(self.elements() / per_block * bytes)
    }
}

/// A parsed GGUF file: metadata and tensor table.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    /// Metadata in file order (keys are unique in valid files; a repeated key keeps the last).
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    pub file_len: u64,
}

/// A reader that knows where it is and how much file is left.
struct Cursor<R> {
    r: R,
    pos: u64,
    len: u64,
    path: PathBuf,
}

impl<R: Read> Cursor<R> {
    fn err(&self, msg: impl std::fmt::Display) -> crate::Error {
        model_err(&self.path, format!("not a valid GGUF file: {msg} (at byte {})", self.pos))
    }

    fn bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        if n > self.len.saturating_sub(self.pos) {
            return Err(self.err(format!(
                "{n} bytes announced but only {} left; the file is truncated or corrupt",
                self.len - self.pos.min(self.len)
            )));
        }
        let mut buf = vec![0u8; n as usize];
        self.r.read_exact(&mut buf).map_err(io(&self.path))?;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        if N as u64 > self.len.saturating_sub(self.pos) {
            return Err(self.err("it ends early; the file is truncated or corrupt"));
        }
        self.r.read_exact(&mut buf).map_err(io(&self.path))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        let b = self.bytes(n)?;
        String::from_utf8(b).map_err(|_| self.err("a string is not UTF-8"))
    }

    fn value(&mut self, t: ValueType, depth: usize) -> Result<Value> {
        Ok(match t {
            ValueType::U8 => Value::U8(self.array::<1>()?[0]),
            ValueType::I8 => Value::I8(self.array::<1>()?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Bool => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("bool value {b}"))),
            },
            ValueType::String => Value::String(self.string()?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}")));
                }
                let code = self.u32()?;
                let et = ValueType::from_code(code).ok_or_else(|| self.err(format!("unknown array element type {code}")))?;
                let n = self.u64()?;
                // Every element takes at least one byte: a count beyond the rest of the file is corrupt.
                if n > self.len.saturating_sub(self.pos) {
                    return Err(self.err(format!("an array of {n} elements does not fit in the file")));
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(et, depth + 1)?);
                }
                Value::Array(et, v)
            }
        })
    }
}

impl GgufFile {
    /// Parse the header, metadata and tensor table of `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let f = File::open(path).map_err(io(path))?;
        let len = f.metadata().map_err(io(path))?.len();
        let mut c = Cursor {
            r: BufReader::with_capacity(1 << 20, f),
            pos: 0,
            len,
            path: path.to_path_buf(),
        };
        let magic: [u8; 4] = c
            .array()
            .map_err(|_| model_err(path, "not a GGUF file (shorter than its header)"))?;
        if magic != MAGIC {
            return Err(model_err(
                path,
                format!("not a GGUF file (it starts with {magic:02x?}, not \"GGUF\")"),
            ));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(model_err(path, format!("GGUF version {version} is not supported (2 and 3 are)")));
        }
        let n_tensors = c.u64()?;
        let n_kv = c.u64()?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let code = c.u32()?;
            let t = ValueType::from_code(code).ok_or_else(|| c.err(format!("metadata {key} has unknown type {code}")))?;
            let v = c.value(t, 0)?;
            metadata.insert(key, v);
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_int() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() => a as u64,
                _ => return Err(model_err(path, format!("general.alignment is {v:?}; it must be a power of two"))),
            },
        };
        // Each tensor info takes at least 24 bytes.
        if n_tensors > len.saturating_sub(c.pos) / 24 {
            return Err(c.err(format!("{n_tensors} tensors announced; the file is too small")));
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let nd = c.u32()?;
            if nd > 8 {
                return Err(c.err(format!("tensor {name} has {nd} dimensions")));
            }
            let dims = (0..nd).map(|_| c.u64()).collect::<Result<Vec<_>>>()?;
            let ggml_type = GgmlType::from_code(c.u32()?);
            let offset = c.u64()?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let data_offset = c.pos.div_ceil(alignment) * alignment;
        for t in &mut tensors {
            t.offset = data_offset
                .checked_add(t.offset)
                .ok_or_else(|| model_err(path, format!("tensor {} has offset overflow", t.name)))?;
            if let Some(n) = t.nbytes() {
                if t.offset.checked_add(n).is_none_or(|end| end > len) {
                    return Err(model_err(
                        path,
                        format!(
                            "tensor {} ({}, {:?}) ends past the end of the file ({len} bytes): truncated download?",
                            t.name,
                            t.ggml_type,
                            t.shape()
                        ),
                    ));
                }
            }
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            file_len: len,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    fn wrong(&self, key: &str, v: &Value, want: &str) -> crate::Error {
        model_err(&self.path, format!("metadata {key} is {}, expected {want}", v.describe()))
    }

    /// A string value; an error if the key holds another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key)
            .map(|v| v.as_str().ok_or_else(|| self.wrong(key, v, "a string")))
            .transpose()
    }

    /// A non-negative integer of any integer type.
    pub fn get_uint(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                v.as_int()
                    .filter(|i| *i >= 0 && *i <= u64::MAX as i128)
                    .map(|i| i as u64)
                    .ok_or_else(|| self.wrong(key, v, "a non-negative integer"))
            })
            .transpose()
    }

    /// Any number as f64.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| self.wrong(key, v, "a number")))
            .transpose()
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| self.wrong(key, v, "a bool")))
            .transpose()
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&[Value]>> {
        self.get(key)
            .map(|v| v.as_array().ok_or_else(|| self.wrong(key, v, "an array")))
            .transpose()
    }

    /// An array of strings (tokens, merges).
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(a) = self.get_array(key)? else { return Ok(None) };
        a.iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.wrong(key, &self.metadata[key], "an array of strings"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An array of integers (token types) as i64.
    pub fn get_int_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(a) = self.get_array(key)? else { return Ok(None) };
        a.iter()
            .map(|v| {
                v.as_int()
                    .map(|i| i as i64)
                    .ok_or_else(|| self.wrong(key, &self.metadata[key], "an array of integers"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// `general.architecture`, required by every model file.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")?
            .ok_or_else(|| model_err(&self.path, "metadata general.architecture is missing; is this a model file?"))
    }
}
