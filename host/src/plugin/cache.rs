//! On-disk cache of compiled components: `<dir>/<sha256 of the component>-<engine hash>.cwasm`.
//!
//! The engine hash covers wasmtime's version and every compilation setting, so a new brain or a
//! changed config never loads an incompatible artifact. Files are written atomically (temp file
//! + rename). A cache file that fails to load is recompiled and replaced.
//!
//! Trust: `.cwasm` files are native code; the cache directory must be writable only by the user
//! (it lives in the user's own data directory).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

pub(crate) struct DiskCache {
    dir: Option<PathBuf>,
    engine_hash: u64,
}

impl DiskCache {
    pub fn new(dir: &Path, engine: &Engine) -> DiskCache {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = h.finish();
        let dir = match std::fs::create_dir_all(dir) {
            Ok(()) => Some(dir.to_path_buf()),
            Err(e) => {
                tracing::warn!("plugin cache directory {} unusable ({e}); compiling plugins on every start", dir.display());
                None
            }
        };
        DiskCache { dir, engine_hash }
    }

    fn path(&self, hash: &[u8; 32]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{}-{:016x}.cwasm", hex::encode(&hash[..20]), self.engine_hash)))
    }

    pub fn load_or_compile(&self, engine: &Engine, hash: &[u8; 32], bytes: &[u8]) -> wasmtime::Result<Component> {
        let path = self.path(hash);
        if let Some(p) = &path {
            // Read into memory rather than `deserialize_file` (which maps the file): another
            // process rewriting the cache must not be able to pull code from under us.
            if let Ok(data) = std::fs::read(p) {
                // SAFETY: the bytes were written by `Component::serialize` of an engine with the
                // same compatibility hash (it is in the file name) into the user's own cache
                // directory; wasmtime checks the header and refuses mismatching artifacts.
                match unsafe { Component::deserialize(engine, &data) } {
                    Ok(c) => return Ok(c),
                    Err(e) => tracing::warn!("recompiling plugin: cached {} unusable: {e:#}", p.display()),
                }
            }
        }
        let t = std::time::Instant::now();
        let component = Component::new(engine, bytes)?;
        tracing::debug!("compiled plugin component ({} bytes) in {:?}", bytes.len(), t.elapsed());
        if let Some(p) = &path {
            match component.serialize() {
                Ok(data) => {
                    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let tmp = p.with_extension(format!("tmp-{}-{seq}", std::process::id()));
                    let written = std::fs::write(&tmp, &data).and_then(|_| std::fs::rename(&tmp, p));
                    if let Err(e) = written {
                        let _ = std::fs::remove_file(&tmp);
                        tracing::warn!("could not cache compiled plugin at {}: {e}", p.display());
                    }
                }
                Err(e) => tracing::warn!("could not serialize compiled plugin: {e:#}"),
            }
        }
        Ok(component)
    }
}
