//! Rows of the run registry: one row per train / DPO / eval run, its per-step metrics, and the
//! status changes. The rules (ids, liveness, durations) live in [`crate::registry`]; this module is
//! SQL only.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::{Result, Store, StoreError, NOW_SQL};

/// A run's status. `interrupted`: the process died or was stopped before it recorded a result;
/// such a run can be resumed from its last checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Done,
    Failed,
    Interrupted,
}

impl RunStatus {
    pub const ALL: [RunStatus; 4] = [RunStatus::Running, RunStatus::Done, RunStatus::Failed, RunStatus::Interrupted];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A new run's row.
#[derive(Clone, Debug, Default)]
pub struct RunInsert {
    pub id: String,
    pub kind: String,
    pub snapshot_id: Option<String>,
    pub parent_id: Option<String>,
    pub config: serde_json::Value,
    pub dir: Option<String>,
    pub adapter: Option<String>,
    pub base_model: Option<String>,
    pub base_hash: Option<String>,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub pid_start: Option<String>,
    pub device: Option<String>,
}

/// A run as stored. Serialized as-is by `brain runs --json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub kind: String,
    pub status: RunStatus,
    pub snapshot_id: Option<String>,
    pub parent_id: Option<String>,
    pub config: serde_json::Value,
    pub dir: Option<String>,
    pub adapter: Option<String>,
    pub base_model: Option<String>,
    pub base_hash: Option<String>,
    pub final_metrics: serde_json::Value,
    pub error: Option<String>,
    pub host: Option<String>,
    pub pid: Option<i64>,
    #[serde(skip)]
    pub pid_start: Option<String>,
    pub device: Option<String>,
    pub started_at: String,
    /// When the current segment began, for a resumed run.
    pub resumed_at: Option<String>,
    pub heartbeat_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_s: Option<f64>,
}

const COLUMNS: &str = "id, kind, status, snapshot_id, parent_id, config, dir, adapter, base_model, base_hash, \
     final_metrics, error, host, pid, pid_start, device, started_at, resumed_at, heartbeat_at, finished_at, duration_s";

fn parse_json(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

fn record(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let status: String = r.get(2)?;
    Ok(RunRecord {
        id: r.get(0)?,
        kind: r.get(1)?,
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Failed),
        snapshot_id: r.get(3)?,
        parent_id: r.get(4)?,
        config: parse_json(r.get(5)?),
        dir: r.get(6)?,
        adapter: r.get(7)?,
        base_model: r.get(8)?,
        base_hash: r.get(9)?,
        final_metrics: parse_json(r.get(10)?),
        error: r.get(11)?,
        host: r.get(12)?,
        pid: r.get(13)?,
        pid_start: r.get(14)?,
        device: r.get(15)?,
        started_at: r.get(16)?,
        resumed_at: r.get(17)?,
        heartbeat_at: r.get(18)?,
        finished_at: r.get(19)?,
        duration_s: r.get(20)?,
    })
}

fn json(what: &'static str, v: &serde_json::Value) -> Result<String> {
    serde_json::to_string(v).map_err(|source| StoreError::Json { what, source })
}

/// Which runs [`Store::runs`] returns, newest first.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub kind: Option<String>,
    pub status: Option<RunStatus>,
    /// At most this many (0 = all).
    pub limit: usize,
}

impl Store {
    /// A fresh run id: `KIND-YYYYMMDD-HHMMSS-xxxx` (UTC, random suffix), sortable by time.
    pub fn new_run_id(&self, kind: &str) -> Result<String> {
        loop {
            let id: String = self.conn.query_row(
                "SELECT ?1 || '-' || strftime('%Y%m%d-%H%M%S', 'now') || '-' || lower(hex(randomblob(2)))",
                [kind],
                |r| r.get(0),
            )?;
            let taken: bool = self.conn.query_row("SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)", [&id], |r| r.get(0))?;
            if !taken {
                return Ok(id);
            }
        }
    }

    /// Inserts a run with status `running`.
    pub fn insert_run(&self, r: &RunInsert) -> Result<()> {
        self.conn.execute(
            "INSERT INTO runs (id, kind, snapshot_id, parent_id, config, status, dir, adapter, base_model, base_hash,
                               host, pid, pid_start, device)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                r.id,
                r.kind,
                r.snapshot_id,
                r.parent_id,
                json("run config", &r.config)?,
                r.dir,
                r.adapter,
                r.base_model,
                r.base_hash,
                r.host,
                r.pid,
                r.pid_start,
                r.device
            ],
        )?;
        Ok(())
    }

    /// Records metrics of one step (a later value for the same step and name replaces the
    /// earlier one: a resumed run re-reports steps after its checkpoint) and the heartbeat.
    pub fn log_run_metrics(&self, run_id: &str, step: i64, metrics: &[(&str, f64)]) -> Result<()> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached("INSERT OR REPLACE INTO run_metrics (run_id, step, name, value) VALUES (?1, ?2, ?3, ?4)")?;
            for (name, value) in metrics {
                if value.is_finite() {
                    stmt.execute(params![run_id, step, name, value])?;
                }
            }
            tx.execute(&format!("UPDATE runs SET heartbeat_at = {NOW_SQL} WHERE id = ?1"), [run_id])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Ends a run (any status but `running`): final metrics, error, duration, finish time.
    pub fn finish_run(&self, run_id: &str, status: RunStatus, final_metrics: &serde_json::Value, error: Option<&str>, duration_s: f64) -> Result<bool> {
        let n = self.conn.execute(
            &format!(
                "UPDATE runs SET status = ?2, final_metrics = ?3, error = ?4, duration_s = ?5, finished_at = {NOW_SQL}
                 WHERE id = ?1"
            ),
            params![run_id, status.as_str(), json("final metrics", final_metrics)?, error, duration_s],
        )?;
        Ok(n == 1)
    }

    /// Sets fields known only after start (the adapter directory, the run directory).
    pub fn update_run_paths(&self, run_id: &str, dir: Option<&str>, adapter: Option<&str>) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET dir = coalesce(?2, dir), adapter = coalesce(?3, adapter) WHERE id = ?1",
            params![run_id, dir, adapter],
        )?;
        Ok(())
    }

    /// A `running` run whose process is gone becomes `interrupted`: finished at its last
    /// heartbeat, its duration counted up to then (added to earlier segments). Only when it is
    /// still `running` (another process may have finished or reaped it). True when changed.
    pub fn mark_run_interrupted(&self, run_id: &str, reason: &str) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE runs SET status = 'interrupted', error = ?2,
                    finished_at = coalesce(heartbeat_at, resumed_at, started_at),
                    duration_s = coalesce(duration_s, 0) + max(0, (julianday(coalesce(heartbeat_at, resumed_at, started_at))
                                                                 - julianday(coalesce(resumed_at, started_at))) * 86400)
             WHERE id = ?1 AND status = 'running'",
            params![run_id, reason],
        )?;
        Ok(n == 1)
    }

    /// Makes an `interrupted` (or `failed`) run `running` again under a new process, for resuming
    /// from its checkpoint. Returns the seconds of work recorded so far (the new segment's time is
    /// added to them when it finishes).
    pub fn reopen_run(&self, run_id: &str, host: Option<&str>, pid: Option<i64>, pid_start: Option<&str>, device: Option<&str>) -> Result<Option<f64>> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let prior: Option<Option<f64>> = tx
            .query_row("SELECT duration_s FROM runs WHERE id = ?1 AND status IN ('interrupted', 'failed')", [run_id], |r| r.get(0))
            .optional()?;
        let Some(prior) = prior else {
            return Ok(None);
        };
        tx.execute(
            &format!(
                "UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, host = ?2, pid = ?3, pid_start = ?4,
                        device = coalesce(?5, device), heartbeat_at = NULL, resumed_at = {NOW_SQL}
                 WHERE id = ?1"
            ),
            params![run_id, host, pid, pid_start, device],
        )?;
        tx.commit()?;
        Ok(Some(prior.unwrap_or(0.0)))
    }

    /// Runs matching `filter`, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let limit = if filter.limit == 0 { -1 } else { filter.limit as i64 };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM runs
             WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR status = ?2)
             ORDER BY started_at DESC, id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![filter.kind, filter.status.map(|s| s.as_str()), limit], record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The run with this id.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        Ok(self.conn.query_row(&format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"), [id], record).optional()?)
    }

    /// Runs whose id starts with `prefix` (at most `limit`).
    pub fn runs_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<RunRecord>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM runs WHERE substr(id, 1, length(?1)) = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![prefix, limit as i64], record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A run's metrics: name → (step, value) ordered by step.
    pub fn run_metrics(&self, run_id: &str) -> Result<BTreeMap<String, Vec<(i64, f64)>>> {
        let mut stmt = self.conn.prepare("SELECT name, step, value FROM run_metrics WHERE run_id = ?1 ORDER BY name, step")?;
        let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        let rows = stmt.query_map([run_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?)))?;
        for row in rows {
            let (name, step, value) = row?;
            out.entry(name).or_default().push((step, value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::super::{schema, Store};
    use super::*;

    /// A store written by schema version 1 (runs with the old statuses, metrics, a model)
    /// migrates: statuses renamed, rows and metrics kept, foreign keys intact.
    #[test]
    fn migrates_runs_and_models_from_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("brain.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO snapshots (id, path, example_count) VALUES ('snap1', '/d', 3);
                 INSERT INTO runs (id, kind, snapshot_id, status, dir) VALUES ('r1', 'sft', 'snap1', 'completed', '/a1');
                 INSERT INTO runs (id, kind, status) VALUES ('r2', 'sft', 'stopped');
                 INSERT INTO runs (id, kind, status, error) VALUES ('r3', 'dpo', 'failed', 'boom');
                 INSERT INTO run_metrics VALUES ('r1', 1, 'train_loss', 2.5), ('r1', 2, 'train_loss', 2.0);
                 INSERT INTO models (version, run_id, status, adapter, eval) VALUES ('v1', 'r1', 'active', '/a1', '{\"test_loss\": 2.1}');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert!(store.schema_version().unwrap() >= 2);
        let status = |id: &str| store.run(id).unwrap().unwrap().status;
        assert_eq!(status("r1"), RunStatus::Done);
        assert_eq!(status("r2"), RunStatus::Interrupted);
        assert_eq!(status("r3"), RunStatus::Failed);
        let r1 = store.run("r1").unwrap().unwrap();
        assert_eq!(r1.snapshot_id.as_deref(), Some("snap1"));
        assert_eq!(r1.dir.as_deref(), Some("/a1"));
        assert_eq!(store.run_metrics("r1").unwrap()["train_loss"], vec![(1, 2.5), (2, 2.0)]);
        let v1 = store.model("v1").unwrap().unwrap();
        assert_eq!(v1.status, crate::store::models::ModelStatus::Active);
        assert_eq!(v1.eval["test_loss"], 2.1);
        let violations: i64 = store.conn().query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
        assert_eq!(violations, 0);
        // The new statuses are accepted, unknown ones are not; the references follow the rename.
        store.insert_run(&RunInsert { id: "r4".into(), kind: "eval".into(), parent_id: Some("r1".into()), ..RunInsert::default() }).unwrap();
        assert!(store.finish_run("r4", RunStatus::Interrupted, &serde_json::json!({}), None, 1.0).unwrap());
        assert!(store.conn().execute("UPDATE runs SET status = 'completed' WHERE id = 'r4'", []).is_err());
        assert!(store.insert_run(&RunInsert { id: "r5".into(), kind: "eval".into(), parent_id: Some("nope".into()), ..RunInsert::default() }).is_err());
        assert!(store.conn().execute("INSERT INTO run_metrics VALUES ('nope', 1, 'x', 1.0)", []).is_err());
        // Deleting a run removes its metrics.
        store.conn().execute("DELETE FROM run_metrics WHERE run_id = 'r1' AND step = 1", []).unwrap();
        let schema: String = store.conn().query_row("SELECT group_concat(sql, ' ') FROM sqlite_master", [], |r| r.get(0)).unwrap();
        assert!(!schema.contains("runs_v2") && !schema.contains("models_v2"), "{schema}");
    }
}
