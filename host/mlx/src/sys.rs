//! Loading the bridge library and its raw `extern "C"` surface.
//!
//! The bridge (src/bridge.cpp) is a shared library built by build.rs. It is opened lazily, the
//! first time anything in this crate needs MLX, and kept open for the life of the process (MLX
//! runs worker threads inside it). On Linux, OpenBLAS is opened RTLD_GLOBAL first so that MLX's
//! cblas/LAPACK calls resolve to it instead of the wheel's reference BLAS, and the C heap is told
//! to keep freed memory (`heap.rs`).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};

pub(crate) type Arr = *mut c_void;
pub(crate) type Vec_ = *mut c_void;
pub(crate) type St = *mut c_void;
pub(crate) type ClosureFn =
    unsafe extern "C" fn(ctx: *mut c_void, inputs: *const c_void, outputs: *mut c_void) -> c_int;

/// The bridge ABI this crate was written against (bridge.cpp's MLXB_ABI).
const ABI: c_int = 11;

macro_rules! bridge_fns {
    ($( fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)? ; )*) => {
        #[allow(dead_code)]
        pub(crate) struct Bridge {
            _lib: libloading::Library,
            $( pub $name: unsafe extern "C" fn($($ty),*) $(-> $ret)?, )*
        }

        impl Bridge {
            unsafe fn resolve(lib: libloading::Library) -> std::result::Result<Self, String> {
                $(
                    let $name = *lib
                        .get::<unsafe extern "C" fn($($ty),*) $(-> $ret)?>(
                            concat!("mlxb_", stringify!($name), "\0").as_bytes(),
                        )
                        .map_err(|e| format!("symbol mlxb_{}: {e}", stringify!($name)))?;
                )*
                Ok(Bridge { _lib: lib, $($name),* })
            }
        }
    };
}

bridge_fns! {
    fn abi_version() -> c_int;
    fn mlx_version() -> *const c_char;
    fn last_error() -> *const c_char;
    fn string_free(s: *mut c_char);

    fn array_free(a: Arr);
    fn array_clone(a: Arr, out: *mut Arr) -> c_int;
    fn array_ndim(a: Arr) -> c_int;
    fn array_shape(a: Arr, out: *mut c_int);
    fn array_dtype(a: Arr) -> c_int;
    fn array_size(a: Arr) -> usize;
    fn array_nbytes(a: Arr) -> usize;
    fn array_itemsize(a: Arr) -> usize;
    fn array_from_data(data: *const c_void, shape: *const c_int, ndim: c_int, dtype: c_int, out: *mut Arr) -> c_int;
    fn array_to_host(a: Arr, dst: *mut c_void, nbytes: usize) -> c_int;
    fn array_to_string(a: Arr, out: *mut *mut c_char) -> c_int;
    fn eval(arrays: *const Arr, n: c_int) -> c_int;
    fn export_graph(path: *const c_char, arrays: *const Arr, n: c_int, dot: c_int) -> c_int;
    fn async_eval(arrays: *const Arr, n: c_int) -> c_int;

    fn vec_new() -> Vec_;
    fn vec_free(v: Vec_);
    fn vec_len(v: Vec_) -> usize;
    fn vec_get(v: Vec_, i: usize, out: *mut Arr) -> c_int;
    fn vec_push(v: Vec_, a: Arr) -> c_int;

    fn full(shape: *const c_int, ndim: c_int, value: f64, dtype: c_int, out: *mut Arr) -> c_int;
    fn full_like_array(shape: *const c_int, ndim: c_int, value: Arr, out: *mut Arr) -> c_int;
    fn arange(start: f64, stop: f64, step: f64, dtype: c_int, out: *mut Arr) -> c_int;
    fn tri(n: c_int, m: c_int, k: c_int, dtype: c_int, out: *mut Arr) -> c_int;
    fn astype(a: Arr, dtype: c_int, out: *mut Arr) -> c_int;

    fn unary(op: c_int, a: Arr, out: *mut Arr) -> c_int;
    fn binary(op: c_int, a: Arr, b: Arr, out: *mut Arr) -> c_int;
    fn select(c: Arr, x: Arr, y: Arr, out: *mut Arr) -> c_int;
    fn clip(a: Arr, lo: Arr, hi: Arr, out: *mut Arr) -> c_int;

    fn reduce(op: c_int, a: Arr, axes: *const c_int, naxes: c_int, keepdims: c_int, out: *mut Arr) -> c_int;
    fn arg_reduce(op: c_int, a: Arr, has_axis: c_int, axis: c_int, keepdims: c_int, out: *mut Arr) -> c_int;
    fn scan(op: c_int, a: Arr, axis: c_int, reverse: c_int, inclusive: c_int, out: *mut Arr) -> c_int;
    fn sort(a: Arr, axis: c_int, arg: c_int, out: *mut Arr) -> c_int;
    fn topk(a: Arr, k: c_int, axis: c_int, out: *mut Arr) -> c_int;

    fn reshape(a: Arr, shape: *const c_int, ndim: c_int, out: *mut Arr) -> c_int;
    fn transpose(a: Arr, axes: *const c_int, naxes: c_int, out: *mut Arr) -> c_int;
    fn swapaxes(a: Arr, i: c_int, j: c_int, out: *mut Arr) -> c_int;
    fn expand_dims(a: Arr, axes: *const c_int, naxes: c_int, out: *mut Arr) -> c_int;
    fn squeeze(a: Arr, axes: *const c_int, naxes: c_int, out: *mut Arr) -> c_int;
    fn flatten(a: Arr, start: c_int, end: c_int, out: *mut Arr) -> c_int;
    fn broadcast_to(a: Arr, shape: *const c_int, ndim: c_int, out: *mut Arr) -> c_int;
    fn concatenate(arrays: *const Arr, n: c_int, axis: c_int, out: *mut Arr) -> c_int;
    fn stack(arrays: *const Arr, n: c_int, axis: c_int, out: *mut Arr) -> c_int;
    fn split(a: Arr, sections: c_int, indices: *const c_int, nindices: c_int, axis: c_int, out: *mut Vec_) -> c_int;
    fn slice(a: Arr, start: *const c_int, stop: *const c_int, strides: *const c_int, n: c_int, out: *mut Arr) -> c_int;
    fn slice_update(a: Arr, update: Arr, start: *const c_int, stop: *const c_int, strides: *const c_int, n: c_int, out: *mut Arr) -> c_int;
    fn repeat(a: Arr, repeats: c_int, axis: c_int, out: *mut Arr) -> c_int;
    fn tile(a: Arr, reps: *const c_int, n: c_int, out: *mut Arr) -> c_int;
    fn pad(a: Arr, axes: *const c_int, naxes: c_int, lo: *const c_int, hi: *const c_int, value: Arr, out: *mut Arr) -> c_int;

    fn take(a: Arr, indices: Arr, has_axis: c_int, axis: c_int, out: *mut Arr) -> c_int;
    fn take_along_axis(a: Arr, indices: Arr, axis: c_int, out: *mut Arr) -> c_int;
    fn put_along_axis(a: Arr, indices: Arr, values: Arr, axis: c_int, out: *mut Arr) -> c_int;
    fn scatter_add_axis(a: Arr, indices: Arr, values: Arr, axis: c_int, out: *mut Arr) -> c_int;

    fn addmm(c: Arr, a: Arr, b: Arr, alpha: f32, beta: f32, out: *mut Arr) -> c_int;
    fn tril(a: Arr, k: c_int, out: *mut Arr) -> c_int;
    fn triu(a: Arr, k: c_int, out: *mut Arr) -> c_int;

    fn rms_norm(x: Arr, w: Arr, eps: f32, out: *mut Arr) -> c_int;
    fn layer_norm(x: Arr, w: Arr, b: Arr, eps: f32, out: *mut Arr) -> c_int;
    fn rope(x: Arr, dims: c_int, traditional: c_int, has_base: c_int, base: f32, scale: f32, offset: c_int, offset_arr: Arr, freqs: Arr, out: *mut Arr) -> c_int;
    fn sdpa(q: Arr, k: Arr, v: Arr, scale: f32, mask_mode: *const c_char, mask: Arr, out: *mut Arr) -> c_int;

    fn quantize(w: Arr, group_size: c_int, bits: c_int, mode: *const c_char, out: *mut Vec_) -> c_int;
    fn dequantize(w: Arr, scales: Arr, biases: Arr, group_size: c_int, bits: c_int, mode: *const c_char, out: *mut Arr) -> c_int;
    fn quantized_matmul(x: Arr, w: Arr, scales: Arr, biases: Arr, transpose: c_int, group_size: c_int, bits: c_int, mode: *const c_char, out: *mut Arr) -> c_int;

    fn random_seed(seed: u64) -> c_int;
    fn random_key(seed: u64, out: *mut Arr) -> c_int;
    fn random_split(key: Arr, num: c_int, out: *mut Arr) -> c_int;
    fn random_normal(shape: *const c_int, ndim: c_int, dtype: c_int, loc: f32, scale: f32, key: Arr, out: *mut Arr) -> c_int;
    fn random_uniform(low: Arr, high: Arr, shape: *const c_int, ndim: c_int, dtype: c_int, key: Arr, out: *mut Arr) -> c_int;
    fn random_bernoulli(p: Arr, shape: *const c_int, ndim: c_int, key: Arr, out: *mut Arr) -> c_int;
    fn random_categorical(logits: Arr, axis: c_int, num_samples: c_int, key: Arr, out: *mut Arr) -> c_int;
    fn random_randint(low: Arr, high: Arr, shape: *const c_int, ndim: c_int, dtype: c_int, key: Arr, out: *mut Arr) -> c_int;

    fn value_and_grad(f: ClosureFn, ctx: *mut c_void, inputs: Vec_, argnums: *const c_int, nargnums: c_int, values: *mut Vec_, grads: *mut Vec_) -> c_int;
    fn vjp(f: ClosureFn, ctx: *mut c_void, primals: Vec_, cotangents: Vec_, outputs: *mut Vec_, vjps: *mut Vec_) -> c_int;
    fn checkpoint(f: ClosureFn, ctx: *mut c_void, drop: unsafe extern "C" fn(*mut c_void), inputs: Vec_, outputs: *mut Vec_) -> c_int;
    fn compiled_call(f: ClosureFn, ctx: *mut c_void, id: u64, inputs: Vec_, outputs: *mut Vec_) -> c_int;
    fn compile_erase(id: u64) -> c_int;

    fn safetensors_load(path: *const c_char, out: *mut St) -> c_int;
    fn gguf_load(path: *const c_char, out: *mut St) -> c_int;
    fn st_free(st: St);
    fn st_len(st: St) -> usize;
    fn st_name(st: St, i: usize) -> *const c_char;
    fn st_array(st: St, i: usize, out: *mut Arr) -> c_int;
    fn st_meta_len(st: St) -> usize;
    fn st_meta_key(st: St, i: usize) -> *const c_char;
    fn st_meta_val(st: St, i: usize) -> *const c_char;
    fn safetensors_save(path: *const c_char, names: *const *const c_char, arrays: *const Arr, n: c_int, meta_keys: *const *const c_char, meta_vals: *const *const c_char, nmeta: c_int) -> c_int;

    fn get_active_memory() -> usize;
    fn get_peak_memory() -> usize;
    fn reset_peak_memory();
    fn get_cache_memory() -> usize;
    fn get_memory_limit() -> usize;
    fn set_memory_limit(limit: usize, previous: *mut usize) -> c_int;
    fn set_cache_limit(limit: usize, previous: *mut usize) -> c_int;
    fn clear_cache() -> c_int;

    fn is_available(kind: c_int) -> c_int;
    fn set_default_device(kind: c_int, index: c_int) -> c_int;
    fn default_device(kind: *mut c_int, index: *mut c_int);
    fn new_stream(kind: c_int, index: c_int, stream_index: *mut c_int) -> c_int;
    fn default_stream(kind: c_int, index: c_int, stream_index: *mut c_int) -> c_int;
    fn set_default_stream(stream_index: c_int, kind: c_int, index: c_int) -> c_int;
    fn synchronize() -> c_int;

    fn fused_cross_entropy(hidden: Arr, weight: Arr, targets: Arr, chunk: c_int, nll: *mut Arr, lse: *mut Arr) -> c_int;
    fn has_sgemm() -> c_int;
    fn swiglu(g: Arr, u: Arr, out: *mut Arr) -> c_int;
    fn attention_cpu(q: Arr, k: Arr, v: Arr, scale: f32, causal: c_int, out: *mut Arr) -> c_int;
    fn rms_norm_cpu(x: Arr, w: Arr, eps: f32, out: *mut Arr) -> c_int;
    fn rope_cpu(x: Arr, dims: c_int, base: f32, scale: f32, offset: c_int, periods: Arr, out: *mut Arr) -> c_int;
    fn adamw_cpu(params: Vec_, grads: Vec_, m: Vec_, v: Vec_, lr_hat: f32, v_scale: f32, b1: f32, b2: f32, eps: f32, decay: f32, out: *mut Vec_) -> c_int;
    fn quantized_matmul_cpu(x: Arr, w: Arr, scales: Arr, biases: Arr, transpose: c_int, group: c_int, bits: c_int, out: *mut Arr) -> c_int;
    fn dequantize_cpu(w: Arr, scales: Arr, biases: Arr, group: c_int, bits: c_int, out: *mut Arr) -> c_int;
    fn qmm_row_kernel(bits: c_int, group: c_int) -> *const c_char;
    fn quantized_matmul_cpu_bf16(x: Arr, w: Arr, scales: Arr, biases: Arr, transpose: c_int, group: c_int, bits: c_int, out: *mut Arr) -> c_int;
    fn has_bf16_gemm() -> c_int;
    fn bf16_matmul_cpu(x: Arr, w: Arr, transpose: c_int, out: *mut Arr) -> c_int;
    fn bf16_matmul_group_cpu(x: Arr, ws: *const Arr, n: c_int, out: *mut Vec_) -> c_int;

    fn dist_is_available(backend: *const c_char) -> c_int;
    fn dist_init(strict: c_int, backend: *const c_char, rank: *mut c_int, size: *mut c_int) -> c_int;
    fn dist_all_sum(a: Arr, out: *mut Arr) -> c_int;
    fn dist_all_gather(a: Arr, out: *mut Arr) -> c_int;
}

/// Where the bridge was found and what it reports.
#[derive(Debug, Clone)]
pub struct BridgeInfo {
    /// Path of the loaded bridge library.
    pub path: PathBuf,
    /// MLX version reported by the loaded libmlx at run time.
    pub mlx_version: String,
    /// Whether OpenBLAS was preloaded (Linux); false means MLX's matmuls use the reference BLAS.
    pub openblas: bool,
    /// Whether freed C-heap memory is kept for reuse (see `heap.rs`); false: glibc's defaults.
    pub heap_kept: bool,
}

struct Loaded {
    bridge: Bridge,
    info: BridgeInfo,
}

static LOADED: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

/// The loaded bridge, loading it on first use.
pub(crate) fn bridge() -> Result<&'static Bridge> {
    match LOADED.get_or_init(load) {
        Ok(l) => Ok(&l.bridge),
        Err(msg) => Err(Error::Unavailable(msg.clone())),
    }
}

/// The bridge, known to be loaded (an `Array` exists).
#[inline]
pub(crate) fn b() -> &'static Bridge {
    match LOADED.get() {
        Some(Ok(l)) => &l.bridge,
        _ => bridge().expect("MLX bridge used before it was loaded"),
    }
}

pub(crate) fn info() -> Result<BridgeInfo> {
    bridge()?;
    Ok(LOADED.get().unwrap().as_ref().unwrap().info.clone())
}

fn candidate_paths() -> Vec<PathBuf> {
    let name = Path::new(env!("BRAIN_MLX_BRIDGE"))
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("libbrain_mlx_bridge.so"));
    let mut v = Vec::new();
    if let Ok(p) = std::env::var("BRAIN_MLX_BRIDGE") {
        if !p.is_empty() {
            v.push(PathBuf::from(p));
            return v;
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        // The binary's own folder, and its parent (tests live in target/<profile>/deps,
        // examples in target/<profile>/examples).
        for dir in exe.ancestors().skip(1).take(2) {
            v.push(dir.join(&name));
        }
    }
    v.push(PathBuf::from(env!("BRAIN_MLX_BRIDGE")));
    v
}

#[cfg(target_os = "linux")]
fn preload_openblas() -> bool {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    if std::env::var("BRAIN_MLX_NO_OPENBLAS").is_ok_and(|v| v == "1") {
        return false; // for benchmarks and debugging: keep the wheel's reference BLAS
    }
    choose_openblas_core();
    for name in ["libopenblas.so.0", "libopenblas.so"] {
        // SAFETY: loading a system BLAS library; its initializers are benign.
        if let Ok(lib) = unsafe { Library::open(Some(name), RTLD_NOW | RTLD_GLOBAL) } {
            std::mem::forget(lib); // stays loaded for the process
            return true;
        }
    }
    tracing::warn!(
        "OpenBLAS not found: MLX will use the reference BLAS its wheel bundles (matmul ~60x \
         slower). Install it: apt-get install libopenblas0-pthread"
    );
    false
}

/// The OpenBLAS kernels for this CPU, by its instruction sets, unless `OPENBLAS_CORETYPE` is
/// set. OpenBLAS picks its kernels from the CPUID family and model when it loads; a CPU it does
/// not know — a newer one, or a VM that reports a generic "Intel Xeon Processor" — gets its
/// oldest x86-64 kernels (Prescott, SSE3), ~3.5× slower here (bench/mlx_ops.sh: 1024³ f32
/// matmul 42 → 146 GFLOP/s on an AVX-512 VM). The kernels chosen need only the features checked.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn choose_openblas_core() {
    if std::env::var_os("OPENBLAS_CORETYPE").is_some() {
        return;
    }
    use std::arch::is_x86_feature_detected as has;
    let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") && has!("avx512cd");
    let core = if avx512 {
        "SkylakeX"
    } else if has!("avx2") && has!("fma") {
        "Haswell"
    } else {
        return;
    };
    // Set before OpenBLAS is loaded, the only time it reads it. The bridge loads once, under
    // the OnceLock of `bridge()`, before MLX starts any thread.
    std::env::set_var("OPENBLAS_CORETYPE", core);
}

#[cfg(all(target_os = "linux", not(target_arch = "x86_64")))]
fn choose_openblas_core() {}

#[cfg(not(target_os = "linux"))]
fn preload_openblas() -> bool {
    false
}

fn load() -> std::result::Result<Loaded, String> {
    let build_error = env!("BRAIN_MLX_BUILD_ERROR");
    if !build_error.is_empty() {
        return Err(format!(
            "the MLX bridge was not built: {build_error}. Fix that and rebuild (set MLX_DIR to an \
             MLX {} prefix, or `pip install mlx-cpu=={}`; g++ with C++20 is needed)",
            crate::VERSION,
            crate::VERSION
        ));
    }
    let candidates = candidate_paths();
    let path = candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "the MLX bridge library is missing (looked in: {}); rebuild with cargo or set \
             BRAIN_MLX_BRIDGE to its path",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })?;
    // Before OpenBLAS starts its threads (see heap.rs: the arena limit).
    let heap_kept = crate::heap::keep_freed_memory();
    let openblas = preload_openblas();
    // SAFETY: the bridge is our own library; its initializers only set up MLX.
    let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| {
        format!(
            "cannot load the MLX bridge {}: {e}. MLX {} must stay where it was at build time \
             (prefix {}); reinstall it (`pip install mlx-cpu=={}`) or rebuild",
            path.display(),
            crate::VERSION,
            env!("BRAIN_MLX_PREFIX"),
            crate::VERSION
        )
    })?;
    // SAFETY: the symbols' types are bridge.cpp's signatures at ABI `ABI`, checked next.
    let bridge = unsafe { Bridge::resolve(lib) }
        .map_err(|e| format!("the MLX bridge {} is incomplete: {e}; rebuild", path.display()))?;
    let abi = unsafe { (bridge.abi_version)() };
    if abi != ABI {
        return Err(format!(
            "the MLX bridge {} has ABI {abi}, this binary expects {ABI}; rebuild",
            path.display()
        ));
    }
    let mlx_version = unsafe { CStr::from_ptr((bridge.mlx_version)()) }
        .to_string_lossy()
        .into_owned();
    if !mlx_version.starts_with(crate::VERSION) {
        tracing::warn!(
            "MLX {mlx_version} loaded at run time, this binary was built for {}",
            crate::VERSION
        );
    }
    Ok(Loaded { bridge, info: BridgeInfo { path, mlx_version, openblas, heap_kept } })
}

/// The bridge's last error message on this thread.
pub(crate) fn last_error(b: &Bridge) -> String {
    unsafe { CStr::from_ptr((b.last_error)()) }.to_string_lossy().into_owned()
}
