//! On-disk cache of compiled components: `<dir>/<sha256 of the component>-<engine hash>.cwasm`,
//! each beside a `.sha256` file holding the digest of the artifact as the host wrote it.
//!
//! The engine hash covers wasmtime's version and every compilation setting, so a new brain or a
//! changed config never loads an incompatible artifact. Files are written atomically (temp file
//! + rename). A cache file that fails to load is recompiled and replaced.
//!
//! Trust: `.cwasm` files are native code, and wasmtime's deserialize trusts its input. So the
//! cache directory is created private (0700), a directory that others can write or that belongs
//! to another user is not used at all, and an artifact is deserialized only when its bytes match
//! the digest the host recorded when it wrote them (a file dropped in, truncated or changed
//! after the fact is recompiled instead).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

pub(crate) struct DiskCache {
    dir: Option<PathBuf>,
    engine_hash: u64,
}

/// Creates `dir` (and missing parents) private to the user, and checks an existing one is not
/// writable by anyone else. Returns why it cannot be used.
fn private_dir(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| e.to_string())?;
        let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(format!("it belongs to another user (uid {})", meta.uid()));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(format!(
                "others can write to it (mode {:o}); run `chmod 700 {}`",
                meta.permissions().mode() & 0o777,
                dir.display()
            ));
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())
    }
}

impl DiskCache {
    pub fn new(dir: &Path, engine: &Engine) -> DiskCache {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = h.finish();
        let dir = match private_dir(dir) {
            Ok(()) => Some(dir.to_path_buf()),
            Err(e) => {
                tracing::warn!("plugin cache directory {} not used ({e}); compiling plugins on every start", dir.display());
                None
            }
        };
        DiskCache { dir, engine_hash }
    }

    fn path(&self, hash: &[u8; 32]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{}-{:016x}.cwasm", hex::encode(&hash[..20]), self.engine_hash)))
    }

    /// The artifact at `p`, if the host wrote it: its bytes match the recorded digest.
    fn read_verified(p: &Path) -> Option<Vec<u8>> {
        // Read into memory rather than `deserialize_file` (which maps the file): another
        // process rewriting the cache must not be able to pull code from under us.
        let data = std::fs::read(p).ok()?;
        let recorded = std::fs::read_to_string(digest_path(p)).ok();
        if recorded.as_deref().map(str::trim) != Some(hex::encode(Sha256::digest(&data)).as_str()) {
            tracing::warn!("recompiling plugin: cached {} does not match the digest the host recorded", p.display());
            return None;
        }
        Some(data)
    }

    pub fn load_or_compile(&self, engine: &Engine, hash: &[u8; 32], bytes: &[u8]) -> wasmtime::Result<Component> {
        let path = self.path(hash);
        if let Some(p) = &path {
            if let Some(data) = Self::read_verified(p) {
                // SAFETY: the bytes are exactly those `Component::serialize` of an engine with
                // the same compatibility hash (it is in the file name) wrote into the user's
                // private cache directory (their digest matches the one recorded then); wasmtime
                // also checks the header and refuses mismatching artifacts.
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
                    if let Err(e) = write_artifact(p, &data) {
                        tracing::warn!("could not cache compiled plugin at {}: {e}", p.display());
                    }
                }
                Err(e) => tracing::warn!("could not serialize compiled plugin: {e:#}"),
            }
        }
        Ok(component)
    }
}

fn digest_path(artifact: &Path) -> PathBuf {
    artifact.with_extension("cwasm.sha256")
}

/// Writes the artifact and then its digest, each atomically; a reader that sees a digest but an
/// older or newer artifact finds a mismatch and recompiles.
fn write_artifact(p: &Path, data: &[u8]) -> std::io::Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let atomic_write = |dest: &Path, bytes: &[u8]| -> std::io::Result<()> {
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dest.with_extension(format!("tmp-{}-{seq}", std::process::id()));
        let r = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, dest));
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    };
    atomic_write(p, data)?;
    atomic_write(&digest_path(p), hex::encode(Sha256::digest(data)).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: no imports, no exports.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn cwasm(dir: &Path) -> PathBuf {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files.pop().unwrap()
    }

    #[test]
    fn artifacts_load_only_with_the_digest_the_host_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/components");
        let engine = Engine::default();
        let cache = DiskCache::new(&dir, &engine);
        assert!(cache.dir.is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        }
        let hash = [7u8; 32];
        cache.load_or_compile(&engine, &hash, EMPTY_COMPONENT).unwrap();
        let p = cwasm(&dir);
        assert!(DiskCache::read_verified(&p).is_some(), "the host's own artifact loads");

        // Changed after the host wrote it (one byte): refused, then recompiled and rewritten.
        let mut data = std::fs::read(&p).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        std::fs::write(&p, &data).unwrap();
        assert!(DiskCache::read_verified(&p).is_none(), "a changed artifact was accepted");
        cache.load_or_compile(&engine, &hash, EMPTY_COMPONENT).unwrap();
        assert!(DiskCache::read_verified(&p).is_some(), "recompiling restores a trusted artifact");

        // Dropped in without a recorded digest: refused.
        std::fs::remove_file(digest_path(&p)).unwrap();
        assert!(DiskCache::read_verified(&p).is_none(), "an artifact without a digest was accepted");
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_folder_others_can_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shared");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let engine = Engine::default();
        let cache = DiskCache::new(&dir, &engine);
        assert!(cache.dir.is_none(), "a world-writable cache folder was used");
        // Compiling still works, only uncached.
        cache.load_or_compile(&engine, &[1u8; 32], EMPTY_COMPONENT).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
