//! Array operations: creation, elementwise, reductions, shapes, indexing, linear algebra.
//!
//! Most are methods on [`Array`] (`x.matmul(&w)?`); ops over several arrays are free functions
//! (`concatenate`, `stack`, `where_`). All return `Result`: MLX's shape and dtype errors
//! become [`crate::Error::Exception`] with MLX's message.

use std::ffi::c_int;

use crate::array::{check, opt, out, Array, Dtype, Operand};
use crate::error::Result;
use crate::sys;

fn raws(arrays: &[&Array]) -> Vec<sys::Arr> {
    arrays.iter().map(|a| a.raw()).collect()
}

// ---- creation -------------------------------------------------------------------------------

/// An array of `shape` filled with `value` converted to `dtype`.
pub fn full(shape: &[i32], value: f64, dtype: Dtype) -> Result<Array> {
    out(|b, o| unsafe { (b.full)(shape.as_ptr(), shape.len() as c_int, value, dtype as c_int, o) })
}

/// Zeros of `shape` and `dtype`.
pub fn zeros(shape: &[i32], dtype: Dtype) -> Result<Array> {
    full(shape, 0.0, dtype)
}

/// Ones of `shape` and `dtype`.
pub fn ones(shape: &[i32], dtype: Dtype) -> Result<Array> {
    full(shape, 1.0, dtype)
}

/// `[start, stop)` in steps of `step`.
pub fn arange(start: f64, stop: f64, step: f64, dtype: Dtype) -> Result<Array> {
    out(|b, o| unsafe { (b.arange)(start, stop, step, dtype as c_int, o) })
}

/// An (n, m) matrix with ones at and below the k-th diagonal.
pub fn tri(n: i32, m: i32, k: i32, dtype: Dtype) -> Result<Array> {
    out(|b, o| unsafe { (b.tri)(n, m, k, dtype as c_int, o) })
}

/// Elementwise `if cond { x } else { y }` with broadcasting.
pub fn where_(cond: &Array, x: &Array, y: &Array) -> Result<Array> {
    out(|b, o| unsafe { (b.select)(cond.raw(), x.raw(), y.raw(), o) })
}

/// Joins arrays along an existing axis.
pub fn concatenate(arrays: &[&Array], axis: i32) -> Result<Array> {
    let r = raws(arrays);
    out(|b, o| unsafe { (b.concatenate)(r.as_ptr(), r.len() as c_int, axis, o) })
}

/// Joins arrays along a new axis.
pub fn stack(arrays: &[&Array], axis: i32) -> Result<Array> {
    let r = raws(arrays);
    out(|b, o| unsafe { (b.stack)(r.as_ptr(), r.len() as c_int, axis, o) })
}

/// `alpha * (a @ b) + beta * c`.
///
/// With a batched `a` (leading axes) and one matrix `b`, MLX 0.32's AddMM runs one GEMM per
/// leading index (for LoRA on a (4, 166, 576) batch: four 166-row products instead of one of
/// 664); its `matmul` folds such axes into rows. So does this, when `c` is either a row
/// broadcast over them (a bias) or of the output's shape.
pub fn addmm(c: &Array, a: &Array, b_: &Array, alpha: f32, beta: f32) -> Result<Array> {
    let raw = |c: &Array, a: &Array| out(|b, o| unsafe { (b.addmm)(c.raw(), a.raw(), b_.raw(), alpha, beta, o) });
    if a.ndim() <= 2 || b_.ndim() != 2 {
        return raw(c, a);
    }
    let mut shape = a.shape();
    *shape.last_mut().unwrap() = b_.dim(-1);
    let rows = a.flatten(0, -2)?;
    let folded = if c.shape() == shape {
        raw(&c.reshape(&[-1, b_.dim(-1)])?, &rows)?
    } else if c.ndim() <= 1 || (c.ndim() == 2 && c.dim(0) == 1) {
        raw(c, &rows)?
    } else {
        return raw(c, a);
    };
    folded.reshape(&shape)
}

/// Reads a bridge vector of arrays into owned arrays and frees it.
pub(crate) fn take_vec(v: sys::Vec_) -> Result<Vec<Array>> {
    let b = sys::b();
    let n = unsafe { (b.vec_len)(v) };
    let mut res = Vec::with_capacity(n);
    for i in 0..n {
        let mut p: sys::Arr = std::ptr::null_mut();
        let rc = unsafe { (b.vec_get)(v, i, &mut p) };
        if let Err(e) = check(b, rc) {
            unsafe { (b.vec_free)(v) };
            return Err(e);
        }
        res.push(unsafe { Array::from_raw(p) });
    }
    unsafe { (b.vec_free)(v) };
    Ok(res)
}

/// A bridge vector holding copies of the handles.
pub(crate) fn make_vec(arrays: &[&Array]) -> Result<sys::Vec_> {
    let b = sys::bridge()?;
    let v = unsafe { (b.vec_new)() };
    for a in arrays {
        let rc = unsafe { (b.vec_push)(v, a.raw()) };
        if let Err(e) = check(b, rc) {
            unsafe { (b.vec_free)(v) };
            return Err(e);
        }
    }
    Ok(v)
}

pub(crate) fn vec_out(f: impl FnOnce(&sys::Bridge, *mut sys::Vec_) -> c_int) -> Result<Vec<Array>> {
    let b = sys::bridge()?;
    let mut v: sys::Vec_ = std::ptr::null_mut();
    check(b, f(b, &mut v))?;
    take_vec(v)
}

// ---- op codes (bridge.cpp) ------------------------------------------------------------------

macro_rules! unary_ops {
    ($($(#[$m:meta])* $name:ident = $code:expr;)*) => {
        impl Array {
            $( $(#[$m])* pub fn $name(&self) -> Result<Array> {
                out(|b, o| unsafe { (b.unary)($code, self.raw(), o) })
            } )*
        }
    };
}

unary_ops! {
    /// `-x`
    neg = 0;
    /// `e^x`
    exp = 1;
    /// Natural logarithm.
    log = 2;
    sqrt = 3;
    /// `1 / sqrt(x)`
    rsqrt = 4;
    square = 5;
    abs = 6;
    /// `1 / (1 + e^-x)`
    sigmoid = 7;
    tanh = 8;
    sin = 9;
    cos = 10;
    logical_not = 11;
    isnan = 12;
    isinf = 13;
    /// The same values with no gradient flowing back.
    stop_gradient = 14;
    floor = 15;
    ceil = 16;
    round = 17;
    reciprocal = 18;
    sign = 19;
    log1p = 20;
    erf = 21;
    /// A copy (a new graph node).
    copy = 22;
    /// The same values laid out row-major contiguous.
    contiguous = 23;
    isfinite = 24;
    /// Reverses all axes.
    t = 25;
    /// Flattens to 1-D.
    flatten_all = 26;
    expm1 = 27;
    /// `x * sigmoid(x)`
    silu = 28;
    zeros_like = 29;
    ones_like = 30;
    log2 = 31;
}

macro_rules! binary_ops {
    ($($(#[$m:meta])* $name:ident = $code:expr;)*) => {
        impl Array {
            $( $(#[$m])* pub fn $name(&self, other: impl Operand) -> Result<Array> {
                let o2 = other.to_operand(self)?;
                out(|b, o| unsafe { (b.binary)($code, self.raw(), o2.raw(), o) })
            } )*
        }
    };
}

binary_ops! {
    /// `self + other` (broadcasting).
    add = 0;
    /// `self - other`
    sub = 1;
    /// `self * other`
    mul = 2;
    /// `self / other`
    div = 3;
    maximum = 4;
    minimum = 5;
    /// `self ^ other`
    power = 6;
    eq = 7;
    ne = 8;
    lt = 9;
    le = 10;
    gt = 11;
    ge = 12;
    logical_and = 13;
    logical_or = 14;
    /// Matrix product (batched over leading axes).
    matmul = 15;
    remainder = 16;
    floor_divide = 17;
    logaddexp = 18;
    outer = 19;
}

/// Axes argument of reductions: `None` = all axes.
fn axes_arg(axes: Option<&[i32]>) -> (*const c_int, c_int) {
    match axes {
        Some(a) => (a.as_ptr(), a.len() as c_int),
        None => (std::ptr::null(), -1),
    }
}

macro_rules! reductions {
    ($($(#[$m:meta])* $name:ident, $all:ident = $code:expr;)*) => {
        impl Array {
            $(
                $(#[$m])* pub fn $name(&self, axes: &[i32], keepdims: bool) -> Result<Array> {
                    self.reduce($code, Some(axes), keepdims)
                }
                /// Over all axes, to a scalar.
                pub fn $all(&self) -> Result<Array> {
                    self.reduce($code, None, false)
                }
            )*
        }
    };
}

reductions! {
    /// Sum over `axes`.
    sum, sum_all = 0;
    /// Mean over `axes`.
    mean, mean_all = 1;
    /// Maximum over `axes`.
    max, max_all = 2;
    /// Minimum over `axes`.
    min, min_all = 3;
    /// Product over `axes`.
    prod, prod_all = 4;
    /// `log(sum(exp(x)))` over `axes`, computed stably.
    logsumexp, logsumexp_all = 5;
    /// True where all are true.
    all, all_all = 6;
    /// True where any is true.
    any, any_all = 7;
    /// Variance (ddof 0).
    var, var_all = 10;
}

impl Array {
    fn reduce(&self, op: c_int, axes: Option<&[i32]>, keepdims: bool) -> Result<Array> {
        let (p, n) = axes_arg(axes);
        out(|b, o| unsafe { (b.reduce)(op, self.raw(), p, n, keepdims as c_int, o) })
    }

    /// Softmax over `axes`; `precise` accumulates low-precision inputs in f32.
    pub fn softmax(&self, axes: &[i32], precise: bool) -> Result<Array> {
        self.reduce(if precise { 9 } else { 8 }, Some(axes), false)
    }

    /// Index of the maximum along `axis` (`None`: of the flattened array).
    pub fn argmax(&self, axis: Option<i32>, keepdims: bool) -> Result<Array> {
        out(|b, o| unsafe {
            (b.arg_reduce)(0, self.raw(), axis.is_some() as c_int, axis.unwrap_or(0), keepdims as c_int, o)
        })
    }

    /// Index of the minimum along `axis` (`None`: of the flattened array).
    pub fn argmin(&self, axis: Option<i32>, keepdims: bool) -> Result<Array> {
        out(|b, o| unsafe {
            (b.arg_reduce)(1, self.raw(), axis.is_some() as c_int, axis.unwrap_or(0), keepdims as c_int, o)
        })
    }

    /// Cumulative sum along `axis`.
    pub fn cumsum(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        out(|b, o| unsafe { (b.scan)(0, self.raw(), axis, reverse as c_int, inclusive as c_int, o) })
    }

    /// Cumulative max along `axis`.
    pub fn cummax(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        out(|b, o| unsafe { (b.scan)(2, self.raw(), axis, reverse as c_int, inclusive as c_int, o) })
    }

    /// Cumulative log-sum-exp along `axis`.
    pub fn logcumsumexp(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        out(|b, o| unsafe { (b.scan)(3, self.raw(), axis, reverse as c_int, inclusive as c_int, o) })
    }

    /// Sorted along `axis`.
    pub fn sort(&self, axis: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.sort)(self.raw(), axis, 0, o) })
    }

    /// Indices that sort along `axis`.
    pub fn argsort(&self, axis: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.sort)(self.raw(), axis, 1, o) })
    }

    /// The `k` largest values along `axis` (unordered).
    pub fn topk(&self, k: i32, axis: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.topk)(self.raw(), k, axis, o) })
    }

    // ---- shapes -----------------------------------------------------------------------------

    /// Same data, new shape (one dimension may be -1).
    pub fn reshape(&self, shape: &[i32]) -> Result<Array> {
        out(|b, o| unsafe { (b.reshape)(self.raw(), shape.as_ptr(), shape.len() as c_int, o) })
    }

    /// Permutes axes.
    pub fn transpose(&self, axes: &[i32]) -> Result<Array> {
        out(|b, o| unsafe { (b.transpose)(self.raw(), axes.as_ptr(), axes.len() as c_int, o) })
    }

    /// Swaps two axes.
    pub fn swapaxes(&self, a: i32, b_: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.swapaxes)(self.raw(), a, b_, o) })
    }

    /// Inserts size-1 axes.
    pub fn expand_dims(&self, axes: &[i32]) -> Result<Array> {
        out(|b, o| unsafe { (b.expand_dims)(self.raw(), axes.as_ptr(), axes.len() as c_int, o) })
    }

    /// Removes the given size-1 axes (`None`: all of them).
    pub fn squeeze(&self, axes: Option<&[i32]>) -> Result<Array> {
        let (p, n) = axes_arg(axes);
        out(|b, o| unsafe { (b.squeeze)(self.raw(), p, n, o) })
    }

    /// Flattens axes `start..=end` into one.
    pub fn flatten(&self, start: i32, end: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.flatten)(self.raw(), start, end, o) })
    }

    /// Broadcasts to `shape`.
    pub fn broadcast_to(&self, shape: &[i32]) -> Result<Array> {
        out(|b, o| unsafe { (b.broadcast_to)(self.raw(), shape.as_ptr(), shape.len() as c_int, o) })
    }

    /// Splits into `sections` equal parts along `axis`.
    pub fn split(&self, sections: i32, axis: i32) -> Result<Vec<Array>> {
        vec_out(|b, v| unsafe { (b.split)(self.raw(), sections, std::ptr::null(), -1, axis, v) })
    }

    /// Splits along `axis` before each of `indices`.
    pub fn split_at(&self, indices: &[i32], axis: i32) -> Result<Vec<Array>> {
        vec_out(|b, v| unsafe {
            (b.split)(self.raw(), 0, indices.as_ptr(), indices.len() as c_int, axis, v)
        })
    }

    /// `self[start[i]:stop[i]:strides[i], …]` over the leading `start.len()` axes.
    pub fn slice(&self, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<Array> {
        let n = start.len();
        if stop.len() != n || strides.len() != n {
            return Err(crate::Error::InvalidArgument("slice: start/stop/strides lengths differ".into()));
        }
        let (st, sp, sd) = self.full_slice_args(start, stop, strides);
        out(|b, o| unsafe { (b.slice)(self.raw(), st.as_ptr(), sp.as_ptr(), sd.as_ptr(), st.len() as c_int, o) })
    }

    /// `start..stop` along one axis.
    pub fn slice_axis(&self, axis: i32, start: i32, stop: i32) -> Result<Array> {
        let shape = self.shape();
        let nd = shape.len() as i32;
        let ax = if axis < 0 { axis + nd } else { axis };
        if ax < 0 || ax >= nd {
            return Err(crate::Error::InvalidArgument(format!("slice_axis: axis {axis} of a {nd}-d array")));
        }
        let mut st = vec![0; shape.len()];
        let mut sp = shape.clone();
        st[ax as usize] = start;
        sp[ax as usize] = stop;
        let sd = vec![1; shape.len()];
        out(|b, o| unsafe { (b.slice)(self.raw(), st.as_ptr(), sp.as_ptr(), sd.as_ptr(), st.len() as c_int, o) })
    }

    /// A copy of `self` with `self[start:stop:strides] = update`.
    pub fn slice_update(&self, update: &Array, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<Array> {
        let (st, sp, sd) = self.full_slice_args(start, stop, strides);
        out(|b, o| unsafe {
            (b.slice_update)(self.raw(), update.raw(), st.as_ptr(), sp.as_ptr(), sd.as_ptr(), st.len() as c_int, o)
        })
    }

    fn full_slice_args(&self, start: &[i32], stop: &[i32], strides: &[i32]) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
        let shape = self.shape();
        let mut st = start.to_vec();
        let mut sp = stop.to_vec();
        let mut sd = strides.to_vec();
        for &d in shape.iter().skip(start.len()) {
            st.push(0);
            sp.push(d);
            sd.push(1);
        }
        (st, sp, sd)
    }

    /// Repeats each element `repeats` times along `axis`.
    pub fn repeat(&self, repeats: i32, axis: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.repeat)(self.raw(), repeats, axis, o) })
    }

    /// Tiles the array `reps` times per axis.
    pub fn tile(&self, reps: &[i32]) -> Result<Array> {
        out(|b, o| unsafe { (b.tile)(self.raw(), reps.as_ptr(), reps.len() as c_int, o) })
    }

    /// Pads `axes` with `lo`/`hi` elements of `value`.
    pub fn pad(&self, axes: &[i32], lo: &[i32], hi: &[i32], value: &Array) -> Result<Array> {
        out(|b, o| unsafe {
            (b.pad)(self.raw(), axes.as_ptr(), axes.len() as c_int, lo.as_ptr(), hi.as_ptr(), value.raw(), o)
        })
    }

    // ---- indexing ---------------------------------------------------------------------------

    /// Elements at `indices` along `axis` (embedding lookup: `weight.take(&ids, 0)`).
    pub fn take(&self, indices: &Array, axis: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.take)(self.raw(), indices.raw(), 1, axis, o) })
    }

    /// Elements at `indices` of the flattened array.
    pub fn take_flat(&self, indices: &Array) -> Result<Array> {
        out(|b, o| unsafe { (b.take)(self.raw(), indices.raw(), 0, 0, o) })
    }

    /// `out[..., i, ...] = self[..., indices[..., i, ...], ...]` along `axis`.
    pub fn take_along_axis(&self, indices: &Array, axis: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.take_along_axis)(self.raw(), indices.raw(), axis, o) })
    }

    /// A copy with `values` written at `indices` along `axis`.
    pub fn put_along_axis(&self, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.put_along_axis)(self.raw(), indices.raw(), values.raw(), axis, o) })
    }

    /// A copy with `values` added at `indices` along `axis`.
    pub fn scatter_add_axis(&self, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.scatter_add_axis)(self.raw(), indices.raw(), values.raw(), axis, o) })
    }

    // ---- misc -------------------------------------------------------------------------------

    /// Lower triangle (at and below diagonal `k`) of the last two axes.
    pub fn tril(&self, k: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.tril)(self.raw(), k, o) })
    }

    /// Upper triangle (at and above diagonal `k`).
    pub fn triu(&self, k: i32) -> Result<Array> {
        out(|b, o| unsafe { (b.triu)(self.raw(), k, o) })
    }

    /// Clamps into `[min, max]` (either bound optional).
    pub fn clip(&self, min: Option<&Array>, max: Option<&Array>) -> Result<Array> {
        out(|b, o| unsafe { (b.clip)(self.raw(), opt(min), opt(max), o) })
    }

    /// Clamps into `[min, max]` with scalar bounds of this array's dtype.
    pub fn clip_scalar(&self, min: f32, max: f32) -> Result<Array> {
        let lo = min.to_operand(self)?;
        let hi = max.to_operand(self)?;
        self.clip(Some(&lo), Some(&hi))
    }

    /// `self @ w.T`: the usual linear layer with `w` of shape (out, in).
    pub fn linear(&self, w: &Array, bias: Option<&Array>) -> Result<Array> {
        let wt = w.swapaxes(-1, -2)?;
        match bias {
            Some(bias) => addmm(bias, self, &wt, 1.0, 1.0),
            None => self.matmul(&wt),
        }
    }
}

// ---- operators (panic on MLX errors, e.g. shapes that do not broadcast) -----------------------

macro_rules! operator {
    ($tr:ident, $m:ident, $f:ident) => {
        impl std::ops::$tr<&Array> for &Array {
            type Output = Array;
            fn $m(self, rhs: &Array) -> Array {
                self.$f(rhs).unwrap_or_else(|e| panic!("{}: {e}", stringify!($m)))
            }
        }
        impl std::ops::$tr<f32> for &Array {
            type Output = Array;
            fn $m(self, rhs: f32) -> Array {
                self.$f(rhs).unwrap_or_else(|e| panic!("{}: {e}", stringify!($m)))
            }
        }
        impl std::ops::$tr<Array> for Array {
            type Output = Array;
            fn $m(self, rhs: Array) -> Array {
                std::ops::$tr::$m(&self, &rhs)
            }
        }
        impl std::ops::$tr<&Array> for Array {
            type Output = Array;
            fn $m(self, rhs: &Array) -> Array {
                std::ops::$tr::$m(&self, rhs)
            }
        }
        impl std::ops::$tr<f32> for Array {
            type Output = Array;
            fn $m(self, rhs: f32) -> Array {
                std::ops::$tr::$m(&self, rhs)
            }
        }
    };
}

operator!(Add, add, add);
operator!(Sub, sub, sub);
operator!(Mul, mul, mul);
operator!(Div, div, div);

impl std::ops::Neg for &Array {
    type Output = Array;
    fn neg(self) -> Array {
        Array::neg(self).unwrap_or_else(|e| panic!("neg: {e}"))
    }
}
impl std::ops::Neg for Array {
    type Output = Array;
    fn neg(self) -> Array {
        -&self
    }
}
