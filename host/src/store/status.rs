//! Counts for `brain status`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Result, Store};

/// What the store holds. Serialized as-is by `brain status --json`: `total`, `by_source`,
/// `by_kind` and `by_status` are promised to scripts; the rest may grow.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Status {
    pub total: u64,
    pub by_source: BTreeMap<String, u64>,
    pub by_kind: BTreeMap<String, u64>,
    /// pending / approved / rejected (always all three).
    pub by_status: BTreeMap<String, u64>,
    pub by_task: BTreeMap<String, u64>,
    /// Examples marked as near duplicates of another.
    pub near_duplicates: u64,
    /// Examples with at least one filter verdict.
    pub scored: u64,
    /// Source name → time its checkpoint was last written.
    pub checkpoints: BTreeMap<String, String>,
    /// Time of the newest example, if any.
    pub last_collected: Option<String>,
    /// What `brain serve` answered and how much of it went to a teacher.
    pub interactions: super::interactions::InteractionCounts,
    pub store: StoreInfo,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StoreInfo {
    pub path: String,
    pub schema_version: i64,
    /// Size of the database file plus its WAL.
    pub bytes: u64,
}

impl Store {
    pub fn status(&self) -> Result<Status> {
        let grouped = |sql: &str| -> Result<BTreeMap<String, u64>> {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        };
        let count = |sql: &str| -> Result<u64> { Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };

        let mut by_status = grouped("SELECT status, count(*) FROM example_status GROUP BY status")?;
        for s in super::ReviewStatus::ALL {
            by_status.entry(s.as_str().to_string()).or_insert(0);
        }
        let bytes = ["", "-wal"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", self.path.display())).ok())
            .map(|m| m.len())
            .sum();
        Ok(Status {
            total: count("SELECT count(*) FROM examples")?,
            by_source: grouped("SELECT source, count(*) FROM examples GROUP BY source")?,
            by_kind: grouped("SELECT kind, count(*) FROM examples GROUP BY kind")?,
            by_status,
            by_task: grouped("SELECT task, count(*) FROM examples GROUP BY task")?,
            near_duplicates: count("SELECT count(*) FROM duplicates")?,
            scored: count("SELECT count(DISTINCT example_id) FROM verdicts")?,
            checkpoints: self
                .conn
                .prepare("SELECT source, updated_at FROM checkpoints ORDER BY source")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?,
            last_collected: self.conn.query_row("SELECT max(created_at) FROM examples", [], |r| r.get(0))?,
            interactions: self.interaction_counts()?,
            store: StoreInfo { path: self.path.display().to_string(), schema_version: self.schema_version()?, bytes },
        })
    }
}
