//! The C heap's policy for MLX's CPU arrays (glibc on Linux).
//!
//! On the CPU, MLX 0.32 allocates every array's buffer with `malloc` and frees it with `free` when
//! the array dies; it keeps no cache of its own (its buffer cache is Metal's and CUDA's). glibc's
//! defaults then hand memory back to the kernel at every chance: a freed block above the dynamic
//! mmap threshold is unmapped, and the top of a heap is trimmed once more than the trim threshold
//! is free. A training step frees and allocates the same few hundred megabytes of activations in
//! every step, so each step faults them in again, page by page, zeroed by the kernel: 3-40
//! thousand page faults per SmolLM2 update here (`bench/sgemm_shapes.sh`), most of them inside
//! OpenBLAS's first pass over a GEMM's fresh output buffer, and system time with them.
//!
//! The policy: blocks up to 32 MiB (glibc's ceiling for the threshold) come from the heap, freed
//! heap memory is kept for reuse instead of trimmed, and every thread allocates from the one main
//! heap. The last matters because MLX allocates on its stream thread: a thread's own arena gives
//! whole 64 MiB sub-heaps back to the kernel as soon as one empties, whatever the trim threshold.
//! glibc fixes the number of arenas when a second thread first allocates, so that part only takes
//! effect if this runs before: `brain` calls it first thing in `main`; loading MLX calls it too
//! (the thresholds always apply). The process keeps its peak heap, which is what a training or
//! generation run reaches again at its next step or token anyway. Set `BRAIN_MLX_DEFAULT_HEAP=1`
//! (or any glibc `MALLOC_*_` / `GLIBC_TUNABLES` setting, which then wins) to keep glibc's defaults.

/// Applies the policy (once; later calls return the first answer). Returns whether it applied.
pub fn keep_freed_memory() -> bool {
    static APPLIED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *APPLIED.get_or_init(apply)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    use std::ffi::c_int;
    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    // glibc's <malloc.h>.
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    const M_ARENA_MAX: c_int = -8;
    let user_set = std::env::vars_os().any(|(k, _)| {
        let k = k.to_string_lossy();
        k == "GLIBC_TUNABLES" || (k.starts_with("MALLOC_") && k.ends_with('_'))
    });
    if user_set || std::env::var("BRAIN_MLX_DEFAULT_HEAP").is_ok_and(|v| v == "1") {
        return false;
    }
    // SAFETY: mallopt only changes the allocator's parameters; it is thread-safe in glibc.
    unsafe {
        mallopt(M_ARENA_MAX, 1) == 1
            && mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
            && mallopt(M_TRIM_THRESHOLD, c_int::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}
