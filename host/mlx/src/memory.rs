//! MLX's allocator statistics and limits (bytes).

use crate::array::check;
use crate::error::Result;
use crate::sys;

/// Bytes held by live arrays.
pub fn active_memory() -> Result<usize> {
    Ok(unsafe { (sys::bridge()?.get_active_memory)() })
}

/// Peak of [`active_memory`] since start or the last [`reset_peak_memory`].
pub fn peak_memory() -> Result<usize> {
    Ok(unsafe { (sys::bridge()?.get_peak_memory)() })
}

pub fn reset_peak_memory() -> Result<()> {
    unsafe { (sys::bridge()?.reset_peak_memory)() };
    Ok(())
}

/// Bytes kept in MLX's buffer cache for reuse.
pub fn cache_memory() -> Result<usize> {
    Ok(unsafe { (sys::bridge()?.get_cache_memory)() })
}

pub fn memory_limit() -> Result<usize> {
    Ok(unsafe { (sys::bridge()?.get_memory_limit)() })
}

/// Sets the memory limit (a guideline: MLX waits for/frees cache before exceeding it);
/// returns the previous one.
pub fn set_memory_limit(bytes: usize) -> Result<usize> {
    let b = sys::bridge()?;
    let mut prev = 0usize;
    check(b, unsafe { (b.set_memory_limit)(bytes, &mut prev) })?;
    Ok(prev)
}

/// Sets the cache limit; returns the previous one.
pub fn set_cache_limit(bytes: usize) -> Result<usize> {
    let b = sys::bridge()?;
    let mut prev = 0usize;
    check(b, unsafe { (b.set_cache_limit)(bytes, &mut prev) })?;
    Ok(prev)
}

/// Frees MLX's buffer cache.
pub fn clear_cache() -> Result<()> {
    let b = sys::bridge()?;
    check(b, unsafe { (b.clear_cache)() })
}
