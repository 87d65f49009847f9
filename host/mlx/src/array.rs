//! The `Array` handle, dtypes and host transfers.

use std::cell::RefCell;
use std::ffi::{c_int, c_void, CStr};
use std::fmt;
use std::ptr::NonNull;

use crate::error::{Error, Result};
use crate::sys::{self, b, Arr, Bridge};

/// Element types of MLX arrays (codes match MLX's `Dtype::Val` order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Dtype {
    Bool = 0,
    Uint8 = 1,
    Uint16 = 2,
    Uint32 = 3,
    Uint64 = 4,
    Int8 = 5,
    Int16 = 6,
    Int32 = 7,
    Int64 = 8,
    Float16 = 9,
    Float32 = 10,
    Float64 = 11,
    Bfloat16 = 12,
    Complex64 = 13,
}

impl Dtype {
    pub(crate) fn from_code(c: c_int) -> Dtype {
        use Dtype::*;
        [
            Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Float16, Float32,
            Float64, Bfloat16, Complex64,
        ][c as usize]
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        use Dtype::*;
        match self {
            Bool | Uint8 | Int8 => 1,
            Uint16 | Int16 | Float16 | Bfloat16 => 2,
            Uint32 | Int32 | Float32 => 4,
            Uint64 | Int64 | Float64 | Complex64 => 8,
        }
    }

    /// Floating-point (f16, bf16, f32, f64).
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float32 | Dtype::Float64)
    }

    /// The safetensors / NumPy-style name ("F32", "BF16", …).
    pub fn safetensors_name(self) -> &'static str {
        use Dtype::*;
        match self {
            Bool => "BOOL",
            Uint8 => "U8",
            Uint16 => "U16",
            Uint32 => "U32",
            Uint64 => "U64",
            Int8 => "I8",
            Int16 => "I16",
            Int32 => "I32",
            Int64 => "I64",
            Float16 => "F16",
            Float32 => "F32",
            Float64 => "F64",
            Bfloat16 => "BF16",
            Complex64 => "C64",
        }
    }
}

/// Host element types that map one-to-one onto an MLX dtype.
pub trait ArrayElement: Copy + Default + 'static {
    const DTYPE: Dtype;
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => { $( impl ArrayElement for $t { const DTYPE: Dtype = Dtype::$d; } )* };
}
element!(bool => Bool, u8 => Uint8, u16 => Uint16, u32 => Uint32, u64 => Uint64, i8 => Int8,
         i16 => Int16, i32 => Int32, i64 => Int64, f32 => Float32, f64 => Float64,
         half::f16 => Float16, half::bf16 => Bfloat16);

thread_local! {
    /// The error of the Rust callback that made the bridge return status 2.
    pub(crate) static CALLBACK_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
}

/// Turns a bridge status into a `Result`, with MLX's message.
#[inline]
pub(crate) fn check(bridge: &Bridge, rc: c_int) -> Result<()> {
    match rc {
        0 => Ok(()),
        2 => Err(CALLBACK_ERROR
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| Error::Callback(sys::last_error(bridge)))),
        _ => Err(Error::Exception(sys::last_error(bridge))),
    }
}

/// Runs a bridge call producing one array.
#[inline]
pub(crate) fn out(f: impl FnOnce(&Bridge, *mut Arr) -> c_int) -> Result<Array> {
    let bridge = sys::bridge()?;
    let mut p: Arr = std::ptr::null_mut();
    check(bridge, f(bridge, &mut p))?;
    Ok(unsafe { Array::from_raw(p) })
}

/// A nullable handle for optional array arguments.
#[inline]
pub(crate) fn opt(a: Option<&Array>) -> Arr {
    a.map_or(std::ptr::null_mut(), |a| a.raw())
}

/// An MLX array: a reference-counted handle to a lazily computed tensor.
///
/// `Clone` copies the handle (both refer to the same data/graph node). Operations build a
/// graph; data is computed on [`Array::eval`], [`crate::eval`] or when read back to the host.
pub struct Array {
    ptr: NonNull<c_void>,
}

// MLX array handles are atomically reference-counted; an Array may move between threads.
unsafe impl Send for Array {}

impl Drop for Array {
    fn drop(&mut self) {
        unsafe { (b().array_free)(self.ptr.as_ptr()) }
    }
}

impl Clone for Array {
    fn clone(&self) -> Self {
        let bridge = b();
        let mut p: Arr = std::ptr::null_mut();
        let rc = unsafe { (bridge.array_clone)(self.raw(), &mut p) };
        check(bridge, rc).expect("copying an MLX array handle");
        unsafe { Array::from_raw(p) }
    }
}

impl Array {
    /// Takes ownership of a bridge handle.
    pub(crate) unsafe fn from_raw(p: Arr) -> Array {
        Array { ptr: NonNull::new(p).expect("MLX bridge returned a null array") }
    }

    pub(crate) fn raw(&self) -> Arr {
        self.ptr.as_ptr()
    }

    /// An array of `shape` holding a copy of `data` (row-major).
    pub fn from_slice<T: ArrayElement>(data: &[T], shape: &[i32]) -> Result<Array> {
        let n: i64 = shape.iter().map(|&d| d as i64).product();
        if shape.iter().any(|&d| d < 0) || n as usize != data.len() {
            return Err(Error::InvalidArgument(format!(
                "{} elements do not fill shape {shape:?}",
                data.len()
            )));
        }
        let bytes = unsafe {
            std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data))
        };
        Self::from_bytes(bytes, shape, T::DTYPE)
    }

    /// An array of `shape` and `dtype` from raw little-endian bytes (e.g. a safetensors
    /// tensor's data).
    pub fn from_bytes(bytes: &[u8], shape: &[i32], dtype: Dtype) -> Result<Array> {
        let n: i64 = shape.iter().map(|&d| d as i64).product();
        if shape.iter().any(|&d| d < 0) || (n as usize) * dtype.size() != bytes.len() {
            return Err(Error::InvalidArgument(format!(
                "{} bytes do not fill shape {shape:?} of {dtype:?}",
                bytes.len()
            )));
        }
        out(|bridge, o| unsafe {
            (bridge.array_from_data)(
                bytes.as_ptr() as *const c_void,
                shape.as_ptr(),
                shape.len() as c_int,
                dtype as c_int,
                o,
            )
        })
    }

    /// A 0-dimensional array.
    pub fn scalar<T: ArrayElement>(v: T) -> Result<Array> {
        Self::from_slice(&[v], &[])
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        unsafe { (b().array_ndim)(self.raw()) as usize }
    }

    /// The shape.
    pub fn shape(&self) -> Vec<i32> {
        let mut s = vec![0; self.ndim()];
        unsafe { (b().array_shape)(self.raw(), s.as_mut_ptr()) };
        s
    }

    /// Size of dimension `axis` (negative counts from the end). Panics when out of range.
    pub fn dim(&self, axis: i32) -> i32 {
        let s = self.shape();
        let a = if axis < 0 { s.len() as i32 + axis } else { axis };
        s[a as usize]
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        Dtype::from_code(unsafe { (b().array_dtype)(self.raw()) })
    }

    /// Number of elements.
    pub fn size(&self) -> usize {
        unsafe { (b().array_size)(self.raw()) }
    }

    /// Bytes of the elements.
    pub fn nbytes(&self) -> usize {
        unsafe { (b().array_nbytes)(self.raw()) }
    }

    /// Computes this array.
    pub fn eval(&self) -> Result<()> {
        crate::eval([self])
    }

    /// The elements, row-major, as `T` (which must be the array's dtype; cast with
    /// [`Array::as_type`] first otherwise). Evaluates the array.
    pub fn to_vec<T: ArrayElement>(&self) -> Result<Vec<T>> {
        if self.dtype() != T::DTYPE {
            return Err(Error::InvalidArgument(format!(
                "to_vec::<{:?}> on an array of {:?}; use as_type first",
                T::DTYPE,
                self.dtype()
            )));
        }
        let mut v = vec![T::default(); self.size()];
        let bridge = b();
        let rc = unsafe {
            (bridge.array_to_host)(
                self.raw(),
                v.as_mut_ptr() as *mut c_void,
                std::mem::size_of_val(v.as_slice()),
            )
        };
        check(bridge, rc)?;
        Ok(v)
    }

    /// The elements as raw bytes (row-major, the array's dtype). Evaluates the array.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut v = vec![0u8; self.nbytes()];
        let bridge = b();
        let rc = unsafe {
            (bridge.array_to_host)(self.raw(), v.as_mut_ptr() as *mut c_void, v.len())
        };
        check(bridge, rc)?;
        Ok(v)
    }

    /// The single element of a one-element array.
    pub fn item<T: ArrayElement>(&self) -> Result<T> {
        if self.size() != 1 {
            return Err(Error::InvalidArgument(format!(
                "item() on an array of shape {:?}",
                self.shape()
            )));
        }
        Ok(self.to_vec::<T>()?[0])
    }

    /// Converts to another dtype.
    pub fn as_type(&self, dtype: Dtype) -> Result<Array> {
        out(|bridge, o| unsafe { (bridge.astype)(self.raw(), dtype as c_int, o) })
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array(shape={:?}, dtype={:?})", self.shape(), self.dtype())
    }
}

impl fmt::Display for Array {
    /// MLX's own printout of the values (evaluates the array).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bridge = b();
        let mut s: *mut std::ffi::c_char = std::ptr::null_mut();
        let rc = unsafe { (bridge.array_to_string)(self.raw(), &mut s) };
        if check(bridge, rc).is_err() || s.is_null() {
            return write!(f, "{self:?}");
        }
        let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
        unsafe { (bridge.string_free)(s) };
        f.write_str(&text)
    }
}

/// The second operand of binary ops: `&Array`, `Array`, or a Rust number. A number becomes a
/// scalar of the other operand's dtype when that is floating (like Python MLX's weak scalars),
/// so `x.mul(0.5)` keeps a bf16 `x` in bf16.
pub trait Operand {
    fn to_operand(self, like: &Array) -> Result<Array>;
}

impl Operand for &Array {
    fn to_operand(self, _: &Array) -> Result<Array> {
        Ok(self.clone())
    }
}
impl Operand for Array {
    fn to_operand(self, _: &Array) -> Result<Array> {
        Ok(self)
    }
}
impl Operand for f32 {
    fn to_operand(self, like: &Array) -> Result<Array> {
        let d = like.dtype();
        if d.is_float() {
            crate::ops::full(&[], self as f64, d)
        } else {
            Array::scalar(self)
        }
    }
}
impl Operand for f64 {
    fn to_operand(self, like: &Array) -> Result<Array> {
        (self as f32).to_operand(like)
    }
}
impl Operand for i32 {
    fn to_operand(self, like: &Array) -> Result<Array> {
        let d = like.dtype();
        if d == Dtype::Bool {
            Array::scalar(self)
        } else {
            crate::ops::full(&[], self as f64, d)
        }
    }
}
impl Operand for bool {
    fn to_operand(self, _: &Array) -> Result<Array> {
        Array::scalar(self)
    }
}
