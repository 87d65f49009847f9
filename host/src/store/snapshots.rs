//! Dataset snapshots: what an export reads (approved examples with their scores), the split each
//! example was given the first time it was exported (kept for good, so a test example never
//! moves into training — not when new examples arrive, not when the ratios change), and the
//! record of every snapshot written.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{Result, Store, StoreError, StoredExample, NOW_SQL};
use crate::example::{Example, Kind, Message};

/// An approved example as an export needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Approved {
    pub stored: StoredExample,
    /// Combined (lowest) filter score.
    pub score: Option<f64>,
    /// Highest complexity a filter gave it.
    pub complexity: Option<u8>,
}

/// A snapshot as recorded in the store.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotRecord {
    pub id: String,
    pub dir: String,
    /// Summary: manifest hash and counts (the full manifest is `manifest.json` in `dir`).
    pub manifest: serde_json::Value,
    pub example_count: u64,
    pub created_at: String,
}

impl Store {
    /// Every example whose current status is approved, by id.
    pub fn approved_examples(&self) -> Result<Vec<Approved>> {
        let mut stmt = self.conn.prepare(
            "WITH latest AS (
                 SELECT r.example_id, r.status FROM reviews r
                 WHERE r.id IN (SELECT max(id) FROM reviews GROUP BY example_id)
             )
             SELECT e.id, e.source, e.plugin, e.provenance, e.kind, e.task, e.messages, e.rejected, e.metadata,
                    e.scrub_counts, e.created_at,
                    (SELECT round(min(score), 6) FROM verdicts v WHERE v.example_id = e.id),
                    (SELECT max(complexity) FROM verdicts v WHERE v.example_id = e.id)
             FROM examples e JOIN latest l ON l.example_id = e.id
             WHERE l.status = 'approved'
             ORDER BY e.id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Approved { stored: read_stored(r)?, score: r.get(11)?, complexity: r.get::<_, Option<i64>>(12)?.map(|c| c.clamp(0, 255) as u8) })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The split of every id in `ids`: the one recorded before, or `assign(id)` for an id
    /// exported for the first time (recorded now, in one transaction).
    pub fn splits_for(&self, ids: &[&str], mut assign: impl FnMut(&str) -> &'static str) -> Result<BTreeMap<String, String>> {
        let tx = self.conn.unchecked_transaction()?;
        let mut out = BTreeMap::new();
        {
            let mut get = tx.prepare_cached("SELECT split FROM example_splits WHERE example_id = ?1")?;
            let mut put = tx.prepare_cached("INSERT INTO example_splits (example_id, split) VALUES (?1, ?2)")?;
            for id in ids {
                let known: Option<String> = get.query_row([id], |r| r.get(0)).optional()?;
                let split = match known {
                    Some(s) => s,
                    None => {
                        let s = assign(id);
                        put.execute(params![id, s])?;
                        s.to_string()
                    }
                };
                out.insert(id.to_string(), split);
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Records a snapshot (the same id again updates its directory).
    pub fn record_snapshot(&self, id: &str, dir: &str, manifest: &serde_json::Value, example_count: u64) -> Result<()> {
        let manifest = serde_json::to_string(manifest).map_err(|source| StoreError::Json { what: "snapshot manifest", source })?;
        self.conn.execute(
            &format!(
                "INSERT INTO snapshots (id, path, manifest, example_count) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET path = excluded.path, manifest = excluded.manifest,
                     example_count = excluded.example_count, created_at = {NOW_SQL}"
            ),
            params![id, dir, manifest, example_count as i64],
        )?;
        Ok(())
    }

    /// Every snapshot, newest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        let mut stmt = self.conn.prepare("SELECT id, path, manifest, example_count, created_at FROM snapshots ORDER BY created_at DESC, id")?;
        let rows = stmt
            .query_map([], |r| {
                let manifest: String = r.get(2)?;
                Ok(SnapshotRecord {
                    id: r.get(0)?,
                    dir: r.get(1)?,
                    manifest: serde_json::from_str(&manifest).unwrap_or(serde_json::Value::Null),
                    example_count: r.get::<_, i64>(3)? as u64,
                    created_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The snapshot written last, if any (what `train` uses when no data directory is given).
    pub fn latest_snapshot(&self) -> Result<Option<SnapshotRecord>> {
        Ok(self.snapshots()?.into_iter().next())
    }
}

fn read_stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredExample> {
    fn parse<T: serde::de::DeserializeOwned>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
        let text: String = r.get(i)?;
        serde_json::from_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
    }
    let kind: String = r.get(4)?;
    let kind = Kind::parse(&kind)
        .ok_or_else(|| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, format!("unknown kind {kind:?}").into()))?;
    let messages: Vec<Message> = parse(r, 6)?;
    Ok(StoredExample {
        id: r.get(0)?,
        source: r.get(1)?,
        plugin: r.get(2)?,
        example: Example { kind, task: r.get(5)?, messages, rejected: r.get(7)?, provenance: r.get(3)?, metadata: parse(r, 8)? },
        scrub_counts: parse(r, 9)?,
        created_at: r.get(10)?,
    })
}
