//! GGUF, llama.cpp's model file format (version 3; 2 is read too): [`read`] parses the header,
//! the typed metadata and the tensor table without touching tensor data (so `brain model info`
//! and tokenizer loading stay fast on multi-GB files); [`tensors`] decodes tensor data into MLX
//! arrays; [`write`] writes GGUF files; [`export`] writes a whole model as one; [`quant`] holds the
//! block formats both directions share.
//!
//! Layout (little-endian): `"GGUF"`, version u32, tensor count u64, metadata count u64; then the
//! metadata (key string, value type u32, value); then per tensor: name, number of dimensions u32,
//! the dimensions u64 (innermost first, the reverse of MLX/NumPy order), ggml type u32, data offset
//! u64 (relative to the data section); then padding to `general.alignment` (default 32) and the
//! data section, each tensor at an aligned offset. Strings are a u64 length and UTF-8 bytes.

pub mod export;
pub mod quant;
pub mod read;
pub mod tensors;
pub mod write;

pub use read::{GgufFile, TensorInfo};
pub use write::GgufWriter;

/// The data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The GGUF magic, "GGUF" as bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// A metadata value. Arrays hold values of one type (nested arrays are allowed by the format).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// Element type code and the elements (all of that type).
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// Metadata value type codes (the u32 written before each value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_code(code: u32) -> Option<Self> {
        use ValueType::*;
        Some(match code {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer type as i128 (files disagree on which integer type a key uses: token ids are
    /// u32 in most files, i32 in some).
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v as i128,
            Value::I8(v) => v as i128,
            Value::U16(v) => v as i128,
            Value::I16(v) => v as i128,
            Value::U32(v) => v as i128,
            Value::I32(v) => v as i128,
            Value::U64(v) => v as i128,
            Value::I64(v) => v as i128,
            _ => return None,
        })
    }

    /// Any number as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_int().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, v) => Some(v),
            _ => None,
        }
    }

    /// A short description for messages ("string", "array of 49152 string", …).
    pub fn describe(&self) -> String {
        match self {
            Value::Array(t, v) => format!("array of {} {t:?}", v.len()),
            v => format!("{:?}", v.value_type()),
        }
    }
}

/// ggml tensor types (the u32 in a tensor's info). Only the ones this crate names; others are
/// kept as [`GgmlType::Other`] so a file can still be listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    Other(u32),
}

impl GgmlType {
    pub fn from_code(code: u32) -> Self {
        use GgmlType::*;
        match code {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            c => Other(c),
        }
    }

    pub fn code(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2K => 10,
            Q3K => 11,
            Q4K => 12,
            Q5K => 13,
            Q6K => 14,
            Q8K => 15,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            BF16 => 30,
            Other(c) => c,
        }
    }

    /// (elements per block, bytes per block); None for types this crate does not size.
    pub fn block(self) -> Option<(u64, u64)> {
        use GgmlType::*;
        Some(match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 40),
            Q2K => (256, 84),
            Q3K => (256, 110),
            Q4K => (256, 144),
            Q5K => (256, 176),
            Q6K => (256, 210),
            Q8K => (256, 292),
            Other(_) => return None,
        })
    }

    /// llama.cpp's name of the type ("Q4_K", "BF16", …).
    pub fn name(self) -> String {
        use GgmlType::*;
        match self {
            Q2K => "Q2_K".into(),
            Q3K => "Q3_K".into(),
            Q4K => "Q4_K".into(),
            Q5K => "Q5_K".into(),
            Q6K => "Q6_K".into(),
            Q8K => "Q8_K".into(),
            // The i-quants (lattice codebooks) are named so a refusal says which one.
            Other(16) => "IQ2_XXS".into(),
            Other(17) => "IQ2_XS".into(),
            Other(18) => "IQ3_XXS".into(),
            Other(19) => "IQ1_S".into(),
            Other(20) => "IQ4_NL".into(),
            Other(21) => "IQ3_S".into(),
            Other(22) => "IQ2_S".into(),
            Other(23) => "IQ4_XS".into(),
            Other(29) => "IQ1_M".into(),
            Other(c) => format!("type {c}"),
            t => format!("{t:?}"),
        }
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}
