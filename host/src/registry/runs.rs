//! Runs: start, per-step metrics, finish, resume, and finding runs whose process died.
//!
//! A [`Run`] is the handle a training command holds while it works. It writes through its own
//! connection to the store file, so the caller keeps its `Store` free for other work, and a run
//! dropped without a result (an early `?`, a panic) is recorded as failed rather than left
//! `running`. A process killed outright (SIGKILL, power loss) cannot record anything: its run
//! stays `running` until [`reap_stale`] sees that the process recorded for it (pid + its start
//! time, on this host) is gone and marks it interrupted.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::{RegistryError, Result};
use crate::store::runs::{RunFilter, RunInsert, RunRecord, RunStatus};
use crate::store::Store;

/// What a new run is.
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    /// `sft`, `dpo`, `eval` (or `pipeline`).
    pub kind: String,
    /// The settings it runs with (the trainer's args, as JSON).
    pub config: serde_json::Value,
    /// The dataset snapshot it reads.
    pub snapshot_id: Option<String>,
    /// The run it builds on: the SFT run under a DPO run, the run an eval evaluates.
    pub parent_id: Option<String>,
    /// The base model directory; fingerprinted at start.
    pub base_model: Option<PathBuf>,
    /// The adapter directory it writes (or, for eval, reads).
    pub adapter: Option<PathBuf>,
    /// Its run directory (checkpoints, metrics.jsonl), when other than the adapter directory.
    pub dir: Option<PathBuf>,
    /// The MLX device (`cpu`, `gpu`); see [`mlx_device_name`].
    pub device: Option<String>,
}

/// An open run. Finish it with [`Run::done`], [`Run::fail`], [`Run::interrupted`] or
/// [`Run::finish`]; dropped unfinished, it is recorded as failed.
pub struct Run {
    store: Store,
    id: String,
    started: Instant,
    /// Seconds of work recorded by earlier segments (a resumed run).
    prior_s: f64,
    finished: bool,
}

fn path_str(p: &Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

/// The separate connection a run writes through.
fn own_connection(store: &Store) -> Result<Store> {
    let path = store.path();
    if path == Path::new(":memory:") {
        return Err(RegistryError::InMemory(path.display().to_string()));
    }
    Ok(Store::open(path)?)
}

impl Run {
    /// Records a new `running` run: fingerprints the base model, notes this host, process and
    /// device. Fails when the base model cannot be read.
    pub fn start(store: &Store, spec: RunSpec) -> Result<Run> {
        let store = own_connection(store)?;
        if let Some(snap) = &spec.snapshot_id {
            let known: bool = store.conn().query_row("SELECT EXISTS (SELECT 1 FROM snapshots WHERE id = ?1)", [snap], |r| r.get(0)).map_err(crate::store::StoreError::from)?;
            if !known {
                return Err(RegistryError::NoSnapshot(snap.clone()));
            }
        }
        if let Some(parent) = &spec.parent_id {
            if store.run(parent)?.is_none() {
                return Err(RegistryError::NoRun(parent.clone()));
            }
        }
        let base_hash = match &spec.base_model {
            Some(dir) => Some(
                super::fingerprint::fingerprint(dir).map_err(|source| RegistryError::Fingerprint { path: dir.display().to_string(), source })?,
            ),
            None => None,
        };
        let id = store.new_run_id(&spec.kind)?;
        let pid = std::process::id();
        store.insert_run(&RunInsert {
            id: id.clone(),
            kind: spec.kind.clone(),
            snapshot_id: spec.snapshot_id.clone(),
            parent_id: spec.parent_id.clone(),
            config: spec.config.clone(),
            dir: spec.dir.as_deref().or(spec.adapter.as_deref()).map(path_str),
            adapter: spec.adapter.as_deref().map(path_str),
            base_model: spec.base_model.as_deref().map(path_str),
            base_hash,
            host: Some(host_name()),
            pid: Some(pid as i64),
            pid_start: process_start(pid),
            device: spec.device.clone(),
        })?;
        Ok(Run { store, id, started: Instant::now(), prior_s: 0.0, finished: false })
    }

    /// Reopens an interrupted (or failed) run to continue it from its checkpoint: it becomes
    /// `running` under this process; its metrics are kept (steps re-reported replace theirs) and
    /// its duration adds up.
    pub fn resume(store: &Store, id: &str, device: Option<&str>) -> Result<Run> {
        let store = own_connection(store)?;
        let record = store.run(id)?.ok_or_else(|| RegistryError::NoRun(id.to_string()))?;
        let pid = std::process::id();
        let start = process_start(pid);
        match store.reopen_run(id, Some(&host_name()), Some(pid as i64), start.as_deref(), device)? {
            Some(prior_s) => Ok(Run { store, id: id.to_string(), started: Instant::now(), prior_s, finished: false }),
            None => Err(RegistryError::NotResumable { id: id.to_string(), status: record.status.to_string() }),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seconds of work so far (earlier segments included).
    pub fn elapsed_s(&self) -> f64 {
        self.prior_s + self.started.elapsed().as_secs_f64()
    }

    /// Records metrics of one step (non-finite values are skipped).
    pub fn log(&self, step: u64, metrics: &[(&str, f64)]) -> Result<()> {
        Ok(self.store.log_run_metrics(&self.id, step as i64, metrics)?)
    }

    /// Records every number of a serializable progress report as a metric of its `step`:
    /// `train_loss`, `val_loss`, `learning_rate`, … from the SFT trainer; TRL's names
    /// (`loss`, `rewards/chosen`, `rewards/margins`, …) from DPO; nested objects are joined with
    /// `/`. The fields `step`, `iters`, `event` and `elapsed_s` are not metrics.
    pub fn log_report<T: Serialize>(&self, step: u64, report: &T) -> Result<()> {
        let value = serde_json::to_value(report).map_err(|source| crate::store::StoreError::Json { what: "progress report", source })?;
        let mut metrics = Vec::new();
        flatten_numbers("", &value, &mut metrics);
        let refs: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.log(step, &refs)
    }

    /// Records a progress event of the SFT trainer (brain-train's `Progress`).
    pub fn log_progress(&self, p: &brain_train::Progress) -> Result<()> {
        self.log_report(p.step as u64, p)
    }

    /// Sets the adapter (and run) directory when it is known only after start.
    pub fn set_paths(&self, dir: Option<&Path>, adapter: Option<&Path>) -> Result<()> {
        let dir = dir.map(path_str);
        let adapter = adapter.map(path_str);
        Ok(self.store.update_run_paths(&self.id, dir.as_deref(), adapter.as_deref())?)
    }

    /// Ends the run with `status` (not `running`), final metrics and an error message.
    pub fn finish(mut self, status: RunStatus, final_metrics: serde_json::Value, error: Option<&str>) -> Result<RunRecord> {
        self.end(status, &final_metrics, error)?;
        self.store.run(&self.id)?.ok_or_else(|| RegistryError::NoRun(self.id.clone()))
    }

    pub fn done(self, final_metrics: serde_json::Value) -> Result<RunRecord> {
        self.finish(RunStatus::Done, final_metrics, None)
    }

    /// Failed with `error` (its chain of causes, when it is an `anyhow::Error` shown with `{:#}`).
    pub fn fail(self, error: &dyn std::fmt::Display) -> Result<RunRecord> {
        let message = format!("{error:#}");
        self.finish(RunStatus::Failed, serde_json::json!({}), Some(&message))
    }

    /// Stopped before the end (Ctrl-C, a cancel flag) with a checkpoint to resume from.
    pub fn interrupted(self, reason: &str, metrics_so_far: serde_json::Value) -> Result<RunRecord> {
        self.finish(RunStatus::Interrupted, metrics_so_far, Some(reason))
    }

    fn end(&mut self, status: RunStatus, final_metrics: &serde_json::Value, error: Option<&str>) -> Result<()> {
        let status = if status == RunStatus::Running { RunStatus::Done } else { status };
        self.finished = true;
        self.store.finish_run(&self.id, status, final_metrics, error, self.elapsed_s())?;
        Ok(())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.finished {
            let why = if std::thread::panicking() { "the process panicked" } else { "the command ended without recording a result" };
            if let Err(e) = self.end(RunStatus::Failed, &serde_json::json!({}), Some(why)) {
                tracing::warn!("run {}: cannot record its end: {e}", self.id);
            }
        }
    }
}

fn flatten_numbers(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
    const NOT_METRICS: [&str; 5] = ["step", "iters", "event", "elapsed_s", "path"];
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if prefix.is_empty() && NOT_METRICS.contains(&k.as_str()) {
                    continue;
                }
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}/{k}") };
                flatten_numbers(&name, v, out);
            }
        }
        serde_json::Value::Number(n) if !prefix.is_empty() => {
            if let Some(x) = n.as_f64() {
                out.push((prefix.to_string(), x));
            }
        }
        _ => {}
    }
}

/// This machine's name (for telling whose process a run was).
pub fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on
        // success (we also stop at the buffer's end).
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
            if !name.is_empty() {
                return name;
            }
        }
    }
    std::env::var("HOSTNAME").or_else(|_| std::env::var("COMPUTERNAME")).unwrap_or_else(|_| "localhost".into())
}

/// When process `pid` started, where the OS tells cheaply (Linux: field 22 of /proc/PID/stat,
/// clock ticks since boot). Guards the liveness check against a recycled pid.
pub fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(String::from)
}

/// Whether process `pid` (started at `start`, when known) still runs on this host.
pub fn process_alive(pid: i64, start: Option<&str>) -> bool {
    if pid <= 0 || pid > i32::MAX as i64 {
        return false;
    }
    if pid as u32 == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
        let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !exists {
            return false;
        }
        match (start, process_start(pid as u32)) {
            (Some(recorded), Some(now)) => recorded == now,
            _ => true,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = start;
        true
    }
}

/// A run found dead by [`reap_stale`].
#[derive(Clone, Debug, Serialize)]
pub struct Reaped {
    pub id: String,
    pub kind: String,
    pub pid: Option<i64>,
}

/// Marks `running` runs of this host whose process is gone as interrupted (their duration counts
/// up to their last metric). Runs of other hosts are left alone: their processes cannot be
/// checked from here.
pub fn reap_stale(store: &Store) -> Result<Vec<Reaped>> {
    let host = host_name();
    let mut reaped = Vec::new();
    for run in store.runs(&RunFilter { status: Some(RunStatus::Running), ..RunFilter::default() })? {
        if run.host.as_deref().is_some_and(|h| h != host) {
            continue;
        }
        let alive = run.pid.is_some_and(|pid| process_alive(pid, run.pid_start.as_deref()));
        if alive {
            continue;
        }
        let reason = match run.pid {
            Some(pid) => format!("process {pid} on {host} ended without recording a result (killed?)"),
            None => "no process recorded for it".to_string(),
        };
        if store.mark_run_interrupted(&run.id, &reason)? {
            reaped.push(Reaped { id: run.id, kind: run.kind, pid: run.pid });
        }
    }
    Ok(reaped)
}

/// Runs, newest first, after reaping dead ones.
pub fn list(store: &Store, filter: &RunFilter) -> Result<Vec<RunRecord>> {
    reap_stale(store)?;
    Ok(store.runs(filter)?)
}

/// The run `id`: an exact id, a unique prefix of one, or `latest` (the newest run).
pub fn find(store: &Store, id: &str) -> Result<RunRecord> {
    reap_stale(store)?;
    if id == "latest" || id == "last" {
        return store.runs(&RunFilter { limit: 1, ..RunFilter::default() })?.pop().ok_or_else(|| RegistryError::NoRun(id.to_string()));
    }
    if let Some(r) = store.run(id)? {
        return Ok(r);
    }
    let mut matches = store.runs_with_prefix(id, 6)?;
    match matches.len() {
        0 => Err(RegistryError::NoRun(id.to_string())),
        1 => Ok(matches.remove(0)),
        _ => Err(RegistryError::AmbiguousRun { prefix: id.to_string(), ids: matches.into_iter().map(|r| r.id).collect() }),
    }
}

/// The newest interrupted run of `kind`, to resume (the pipeline continues it from its
/// checkpoint instead of starting over).
pub fn latest_interrupted(store: &Store, kind: &str) -> Result<Option<RunRecord>> {
    reap_stale(store)?;
    Ok(store.runs(&RunFilter { kind: Some(kind.to_string()), status: Some(RunStatus::Interrupted), limit: 1 })?.pop())
}

/// The MLX default device as recorded in runs: `cpu`, or `gpu` / `gpu:N`. Loads MLX.
pub fn mlx_device_name() -> Option<String> {
    match mlx::device::default_device().ok()? {
        mlx::device::Device::Cpu => Some("cpu".into()),
        mlx::device::Device::Gpu(0) => Some("gpu".into()),
        mlx::device::Device::Gpu(i) => Some(format!("gpu:{i}")),
    }
}
