//! Rows of the model versions: candidate → active → retired, at most one active (a unique partial
//! index), every change kept in `model_events`. Each change is one immediate transaction, so two
//! `brain` processes never leave two actives or none half-way. The decisions (when to promote,
//! what rollback means) live in [`crate::registry`].

use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::{Result, Store, StoreError, NOW_SQL};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatus {
    Candidate,
    Active,
    Retired,
}

impl ModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelStatus::Candidate => "candidate",
            ModelStatus::Active => "active",
            ModelStatus::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<ModelStatus> {
        [ModelStatus::Candidate, ModelStatus::Active, ModelStatus::Retired].into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for ModelStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model version as stored. Serialized as-is by `brain models --json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelRecord {
    pub version: String,
    pub run_id: Option<String>,
    pub status: ModelStatus,
    pub adapter: Option<String>,
    pub base_model: Option<String>,
    /// The latest evaluation (metric name → value, plus whatever the evaluator reports).
    pub eval: serde_json::Value,
    /// Why the last decision about it was taken.
    pub reason: Option<String>,
    /// The version that was active when this one was promoted (what rollback returns to).
    pub previous: Option<String>,
    pub created_at: String,
    pub promoted_at: Option<String>,
    pub retired_at: Option<String>,
}

/// One status change of a model version.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelEvent {
    pub version: String,
    /// registered, promoted, kept, retired, rolled-back, restored, eval.
    pub event: String,
    pub status: ModelStatus,
    pub reason: Option<String>,
    pub at: String,
}

const COLUMNS: &str = "version, run_id, status, adapter, base_model, eval, reason, previous, created_at, promoted_at, retired_at";

fn record(r: &Row<'_>) -> rusqlite::Result<ModelRecord> {
    let status: String = r.get(2)?;
    let eval: String = r.get(5)?;
    Ok(ModelRecord {
        version: r.get(0)?,
        run_id: r.get(1)?,
        status: ModelStatus::parse(&status).unwrap_or(ModelStatus::Retired),
        adapter: r.get(3)?,
        base_model: r.get(4)?,
        eval: serde_json::from_str(&eval).unwrap_or(serde_json::Value::String(eval)),
        reason: r.get(6)?,
        previous: r.get(7)?,
        created_at: r.get(8)?,
        promoted_at: r.get(9)?,
        retired_at: r.get(10)?,
    })
}

fn event(tx: &Transaction<'_>, version: &str, event: &str, status: ModelStatus, reason: Option<&str>) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO model_events (version, event, status, reason) VALUES (?1, ?2, ?3, ?4)",
        params![version, event, status.as_str(), reason],
    )?;
    Ok(())
}

/// The outcome of [`Store::activate_model`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    pub version: String,
    /// The version that was active before (now retired), if any.
    pub replaced: Option<String>,
}

impl Store {
    fn immediate(&self) -> Result<Transaction<'_>> {
        Ok(Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?)
    }

    /// Registers a candidate version (`v1`, `v2`, … in order) for an adapter.
    pub fn insert_model(&self, run_id: Option<&str>, adapter: Option<&str>, base_model: Option<&str>, eval: &serde_json::Value) -> Result<String> {
        let eval = serde_json::to_string(eval).map_err(|source| StoreError::Json { what: "model eval", source })?;
        let tx = self.immediate()?;
        let n: i64 = tx.query_row(
            "SELECT coalesce(max(CAST(substr(version, 2) AS INTEGER)), 0) FROM models WHERE version GLOB 'v[0-9]*'",
            [],
            |r| r.get(0),
        )?;
        let version = format!("v{}", n + 1);
        tx.execute(
            "INSERT INTO models (version, run_id, status, adapter, base_model, eval) VALUES (?1, ?2, 'candidate', ?3, ?4, ?5)",
            params![version, run_id, adapter, base_model, eval],
        )?;
        event(&tx, &version, "registered", ModelStatus::Candidate, None)?;
        tx.commit()?;
        Ok(version)
    }

    /// All versions, newest first.
    pub fn models(&self) -> Result<Vec<ModelRecord>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM models ORDER BY created_at DESC, CAST(substr(version, 2) AS INTEGER) DESC, version DESC"
        ))?;
        let rows = stmt.query_map([], record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn model(&self, version: &str) -> Result<Option<ModelRecord>> {
        Ok(self.conn.query_row(&format!("SELECT {COLUMNS} FROM models WHERE version = ?1"), [version], record).optional()?)
    }

    pub fn active_model(&self) -> Result<Option<ModelRecord>> {
        Ok(self.conn.query_row(&format!("SELECT {COLUMNS} FROM models WHERE status = 'active'"), [], record).optional()?)
    }

    /// The version registered from `run_id`, if any.
    pub fn model_of_run(&self, run_id: &str) -> Result<Option<ModelRecord>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {COLUMNS} FROM models WHERE run_id = ?1 ORDER BY created_at DESC LIMIT 1"), [run_id], record)
            .optional()?)
    }

    /// Replaces a version's evaluation.
    pub fn set_model_eval(&self, version: &str, eval: &serde_json::Value) -> Result<bool> {
        let eval = serde_json::to_string(eval).map_err(|source| StoreError::Json { what: "model eval", source })?;
        let tx = self.immediate()?;
        let n = tx.execute("UPDATE models SET eval = ?2 WHERE version = ?1", params![version, eval])?;
        if n == 1 {
            let status: String = tx.query_row("SELECT status FROM models WHERE version = ?1", [version], |r| r.get(0))?;
            event(&tx, version, "eval", ModelStatus::parse(&status).unwrap_or(ModelStatus::Retired), None)?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Makes `version` the active one; the active one before it is retired and remembered as
    /// `version`'s `previous` (unless `remember_previous` is false: a rollback restores a version
    /// without rewriting what it had replaced). `event_name` and `reason` go to the history.
    /// Returns None when there is no such version.
    pub fn activate_model(&self, version: &str, event_name: &str, reason: &str, remember_previous: bool) -> Result<Option<Activation>> {
        let tx = self.immediate()?;
        let exists: Option<String> = tx.query_row("SELECT status FROM models WHERE version = ?1", [version], |r| r.get(0)).optional()?;
        if exists.is_none() {
            return Ok(None);
        }
        let current: Option<String> = tx.query_row("SELECT version FROM models WHERE status = 'active'", [], |r| r.get(0)).optional()?;
        if current.as_deref() == Some(version) {
            tx.commit()?;
            return Ok(Some(Activation { version: version.to_string(), replaced: None }));
        }
        if let Some(cur) = &current {
            tx.execute(&format!("UPDATE models SET status = 'retired', retired_at = {NOW_SQL} WHERE version = ?1"), [cur])?;
            let why = format!("replaced by {version}");
            event(&tx, cur, "retired", ModelStatus::Retired, Some(&why))?;
        }
        if remember_previous {
            tx.execute(
                &format!("UPDATE models SET status = 'active', promoted_at = {NOW_SQL}, retired_at = NULL, reason = ?2, previous = ?3 WHERE version = ?1"),
                params![version, reason, current],
            )?;
        } else {
            tx.execute(
                &format!("UPDATE models SET status = 'active', promoted_at = {NOW_SQL}, retired_at = NULL, reason = ?2 WHERE version = ?1"),
                params![version, reason],
            )?;
        }
        event(&tx, version, event_name, ModelStatus::Active, Some(reason))?;
        tx.commit()?;
        Ok(Some(Activation { version: version.to_string(), replaced: current }))
    }

    /// Leaves a candidate where it is, recording why it was not promoted.
    pub fn keep_model(&self, version: &str, reason: &str) -> Result<bool> {
        let tx = self.immediate()?;
        let n = tx.execute("UPDATE models SET reason = ?2 WHERE version = ?1", params![version, reason])?;
        if n == 1 {
            let status: String = tx.query_row("SELECT status FROM models WHERE version = ?1", [version], |r| r.get(0))?;
            event(&tx, version, "kept", ModelStatus::parse(&status).unwrap_or(ModelStatus::Retired), Some(reason))?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// A version's history, oldest first.
    pub fn model_events(&self, version: &str) -> Result<Vec<ModelEvent>> {
        let mut stmt = self.conn.prepare("SELECT version, event, status, reason, at FROM model_events WHERE version = ?1 ORDER BY id")?;
        let rows = stmt.query_map([version], |r| {
            let status: String = r.get(2)?;
            Ok(ModelEvent {
                version: r.get(0)?,
                event: r.get(1)?,
                status: ModelStatus::parse(&status).unwrap_or(ModelStatus::Retired),
                reason: r.get(3)?,
                at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
