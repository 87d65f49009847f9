//! Evaluation and function transforms: value_and_grad, vjp, checkpoint.
//!
//! A Rust closure is handed to MLX as a C function pointer plus context. The trampoline runs
//! it under `catch_unwind`; an `Err` or a panic becomes a status code, MLX unwinds its own
//! frames with a C++ exception, and the original error comes back out of the outer call.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::array::{check, Array, CALLBACK_ERROR};
use crate::error::{Error, Result};
use crate::ops::{make_vec, take_vec};
use crate::sys;

/// Computes all `arrays` (and everything they depend on).
pub fn eval<'a>(arrays: impl IntoIterator<Item = &'a Array>) -> Result<()> {
    let raws: Vec<sys::Arr> = arrays.into_iter().map(|a| a.raw()).collect();
    let b = sys::bridge()?;
    check(b, unsafe { (b.eval)(raws.as_ptr(), raws.len() as c_int) })
}

/// How [`export_graph`] writes a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    /// Graphviz DOT, as Python's `mx.export_to_dot`: one node per op, labelled with its name.
    Dot,
    /// MLX's `print_graph`: one line per op with its inputs' and output's shapes and dtypes.
    Text,
}

/// Writes the graph that computes `arrays`, unevaluated, to `path`.
pub fn export_graph<'a>(path: &std::path::Path, arrays: impl IntoIterator<Item = &'a Array>, format: GraphFormat) -> Result<()> {
    let raws: Vec<sys::Arr> = arrays.into_iter().map(|a| a.raw()).collect();
    let c = std::ffi::CString::new(path.to_string_lossy().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{}: a path with a NUL byte", path.display())))?;
    let b = sys::bridge()?;
    let dot = (format == GraphFormat::Dot) as c_int;
    check(b, unsafe { (b.export_graph)(c.as_ptr(), raws.as_ptr(), raws.len() as c_int, dot) })
}

/// Starts computing `arrays` in the background.
pub fn async_eval<'a>(arrays: impl IntoIterator<Item = &'a Array>) -> Result<()> {
    let raws: Vec<sys::Arr> = arrays.into_iter().map(|a| a.raw()).collect();
    let b = sys::bridge()?;
    check(b, unsafe { (b.async_eval)(raws.as_ptr(), raws.len() as c_int) })
}

type DynFn<'a> = dyn FnMut(&[Array]) -> Result<Vec<Array>> + 'a;

/// Calls the bridge with `inputs` as one of its vectors (freed after), checking the status.
fn with_vec(inputs: &[&Array], call: impl FnOnce(&sys::Bridge, sys::Vec_) -> c_int) -> Result<()> {
    let inv = make_vec(inputs)?;
    let b = sys::b();
    let rc = call(b, inv);
    unsafe { (b.vec_free)(inv) };
    check(b, rc)
}

/// The trampoline MLX calls: `ctx` is a `*mut &mut DynFn`.
unsafe extern "C" fn trampoline(ctx: *mut c_void, inputs: *const c_void, outputs: *mut c_void) -> c_int {
    let f = &mut *(ctx as *mut &mut DynFn<'_>);
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let b = sys::b();
        let n = (b.vec_len)(inputs as sys::Vec_);
        let mut xs = Vec::with_capacity(n);
        for i in 0..n {
            let mut p: sys::Arr = std::ptr::null_mut();
            check(b, (b.vec_get)(inputs as sys::Vec_, i, &mut p))?;
            xs.push(Array::from_raw(p));
        }
        let ys = f(&xs)?;
        for y in &ys {
            check(b, (b.vec_push)(outputs as sys::Vec_, y.raw()))?;
        }
        Ok(())
    }));
    let err = match result {
        Ok(Ok(())) => return 0,
        Ok(Err(e)) => e,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Error::Callback(format!("panic in a function differentiated by MLX: {msg}"))
        }
    };
    CALLBACK_ERROR.with(|c| *c.borrow_mut() = Some(err));
    1
}

/// Calls `f(inputs)` and its gradient: returns `(f's outputs, d outputs[0] / d inputs[i] for i
/// in argnums)`. `f`'s first output must be a scalar (the loss); further outputs are passed
/// through (auxiliary values). Errors inside `f` come back as they were.
pub fn value_and_grad<F>(mut f: F, inputs: &[&Array], argnums: &[i32]) -> Result<(Vec<Array>, Vec<Array>)>
where
    F: FnMut(&[Array]) -> Result<Vec<Array>>,
{
    let mut dynf: &mut DynFn<'_> = &mut f;
    let ctx = &mut dynf as *mut &mut DynFn<'_> as *mut c_void;
    let (mut vals, mut grads): (sys::Vec_, sys::Vec_) = (std::ptr::null_mut(), std::ptr::null_mut());
    with_vec(inputs, |b, inv| unsafe {
        (b.value_and_grad)(trampoline, ctx, inv, argnums.as_ptr(), argnums.len() as c_int, &mut vals, &mut grads)
    })?;
    Ok((take_vec(vals)?, take_vec(grads)?))
}

/// Outputs of `f(primals)` and the vector-Jacobian products for `cotangents` (one per output).
pub fn vjp<F>(mut f: F, primals: &[&Array], cotangents: &[&Array]) -> Result<(Vec<Array>, Vec<Array>)>
where
    F: FnMut(&[Array]) -> Result<Vec<Array>>,
{
    let mut dynf: &mut DynFn<'_> = &mut f;
    let ctx = &mut dynf as *mut &mut DynFn<'_> as *mut c_void;
    let pv = make_vec(primals)?;
    let cv = make_vec(cotangents)?;
    let b = sys::b();
    let mut outs: sys::Vec_ = std::ptr::null_mut();
    let mut vjps: sys::Vec_ = std::ptr::null_mut();
    let rc = unsafe { (b.vjp)(trampoline, ctx, pv, cv, &mut outs, &mut vjps) };
    unsafe {
        (b.vec_free)(pv);
        (b.vec_free)(cv);
    }
    check(b, rc)?;
    Ok((take_vec(outs)?, take_vec(vjps)?))
}

/// A function MLX compiles ([`Compiled::call`]): traced once per input shape, its graph
/// simplified and its elementwise chains fused, then replayed. On a GPU that saves a kernel
/// launch per fused op and the graph's construction each call (mlx-lm compiles its training
/// step so). Dropping it frees the cached graphs. MLX keeps them per thread: call and drop it
/// on one.
pub struct Compiled {
    id: u64,
}

impl Compiled {
    pub fn new() -> Compiled {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        // Small ids never collide with the code addresses MLX keys its own compiled functions by.
        Compiled { id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) }
    }

    /// `f(inputs)`, compiled. `f` is called only to trace (the first call, and the first with
    /// new input shapes or dtypes), so it must be the same function every time: everything that
    /// changes between calls must come in through `inputs`, since arrays and numbers `f` captures
    /// are baked into the graph. Arrays it captures should be evaluated, or their whole graph is
    /// replayed too.
    pub fn call<F>(&self, mut f: F, inputs: &[&Array]) -> Result<Vec<Array>>
    where
        F: FnMut(&[Array]) -> Result<Vec<Array>>,
    {
        let mut dynf: &mut DynFn<'_> = &mut f;
        let ctx = &mut dynf as *mut &mut DynFn<'_> as *mut c_void;
        let mut outs: sys::Vec_ = std::ptr::null_mut();
        with_vec(inputs, |b, inv| unsafe { (b.compiled_call)(trampoline, ctx, self.id, inv, &mut outs) })?;
        take_vec(outs)
    }
}

impl Default for Compiled {
    fn default() -> Self {
        Compiled::new()
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        if let Ok(b) = sys::bridge() {
            unsafe { (b.compile_erase)(self.id) };
        }
    }
}

/// Boxed closure for checkpoint: MLX may call it again while building the backward pass, so
/// it is owned by MLX (freed through `drop_boxed`).
struct Boxed(Box<DynFn<'static>>);

unsafe extern "C" fn checkpoint_trampoline(ctx: *mut c_void, inputs: *const c_void, outputs: *mut c_void) -> c_int {
    let boxed = &mut *(ctx as *mut Boxed);
    let mut r: &mut DynFn<'static> = &mut *boxed.0;
    trampoline(&mut r as *mut &mut DynFn<'_> as *mut c_void, inputs, outputs)
}

unsafe extern "C" fn drop_boxed(ctx: *mut c_void) {
    drop(Box::from_raw(ctx as *mut Boxed));
}

/// Gradient checkpointing: calls `f(inputs)` without keeping its intermediates for the
/// backward pass; they are recomputed (by calling `f` again) when gradients are taken. Use it
/// inside a `value_and_grad` closure, e.g. around each transformer block. `f` must be `'static`
/// (capture parameters by value: `Array` clones are cheap handle copies) and deterministic.
pub fn checkpoint<F>(f: F, inputs: &[&Array]) -> Result<Vec<Array>>
where
    F: FnMut(&[Array]) -> Result<Vec<Array>> + 'static,
{
    let ctx = Box::into_raw(Box::new(Boxed(Box::new(f)))) as *mut c_void;
    let inv = match make_vec(inputs) {
        Ok(v) => v,
        Err(e) => {
            unsafe { drop_boxed(ctx) };
            return Err(e);
        }
    };
    let b = sys::b();
    let mut outs: sys::Vec_ = std::ptr::null_mut();
    // The bridge owns ctx from here on (freed with drop_boxed, also on error).
    let rc = unsafe { (b.checkpoint)(checkpoint_trampoline, ctx, drop_boxed, inv, &mut outs) };
    unsafe { (b.vec_free)(inv) };
    check(b, rc)?;
    take_vec(outs)
}
