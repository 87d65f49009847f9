//! One pipeline at a time per config: a lock file created exclusively, holding the pid. A lock
//! left by a process that died (SIGKILL, power loss) is taken over; a live holder makes the
//! second run exit with a clear message, which is what cron needs.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::registry::runs::{process_alive, process_start};

pub struct PipelineLock {
    path: PathBuf,
}

impl PipelineLock {
    pub fn acquire(path: &Path) -> anyhow::Result<PipelineLock> {
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    let pid = std::process::id();
                    let start = process_start(pid).unwrap_or_default();
                    writeln!(f, "{pid} {start}").with_context(|| format!("writing lock {}", path.display()))?;
                    return Ok(PipelineLock { path: path.to_path_buf() });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(path).unwrap_or_default();
                    let mut parts = text.split_whitespace();
                    let pid: Option<i64> = parts.next().and_then(|p| p.parse().ok());
                    let start = parts.next().map(str::to_string);
                    match pid {
                        Some(pid) if process_alive(pid, start.as_deref()) => bail!(
                            "another `brain pipeline run` (pid {pid}) holds {}; wait for it to finish (or, if no brain is running, delete that file)",
                            path.display()
                        ),
                        _ => {
                            tracing::warn!("taking over stale pipeline lock {}", path.display());
                            let _ = std::fs::remove_file(path);
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("creating lock {}", path.display())),
            }
        }
        bail!("cannot take the pipeline lock {}", path.display())
    }
}

impl Drop for PipelineLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
