//! Writing collected batches and reading examples back.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{example_id, Decision, Result, Store, StoreError, NOW_SQL};
use crate::example::{Example, Kind, Message, Verdict};

/// One example on its way into the store, with what curation found out about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub example: Example,
    /// The example's content id ([`example_id`]), when the caller has computed it already
    /// (curation does, to find exact duplicates). [`Store::store_batch`] trusts it as given and
    /// computes it only when it is `None`: whoever sets it must set `example_id(&example)` of
    /// the example as it will be stored (after any scrubbing or edits).
    pub id: Option<String>,
    /// Secrets redacted, by rule id.
    pub scrub_counts: BTreeMap<String, u32>,
    /// Verdicts by filter name.
    pub verdicts: Vec<(String, Verdict)>,
    pub minhash: Option<MinHash>,
    /// The stored example this one nearly duplicates, with the estimated similarity.
    pub duplicate_of: Option<(String, f64)>,
    /// An automatic review decision (thresholds, a filter's reject).
    pub decision: Option<Decision>,
}

impl Record {
    pub fn new(example: Example) -> Record {
        Record {
            example,
            id: None,
            scrub_counts: BTreeMap::new(),
            verdicts: Vec::new(),
            minhash: None,
            duplicate_of: None,
            decision: None,
        }
    }
}

/// A MinHash signature and its LSH band hashes (band index = position).
#[derive(Clone, Debug, PartialEq)]
pub struct MinHash {
    pub signature: Vec<u8>,
    pub bands: Vec<u64>,
}

/// What [`Store::store_batch`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BatchOutcome {
    /// New examples written.
    pub stored: u64,
    /// Examples whose id was already in the store (or earlier in the same batch).
    pub duplicate: u64,
}

/// An example as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredExample {
    pub id: String,
    pub source: String,
    pub plugin: String,
    #[serde(flatten)]
    pub example: Example,
    pub scrub_counts: BTreeMap<String, u32>,
    pub created_at: String,
}

fn json<T: Serialize + ?Sized>(what: &'static str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|source| StoreError::Json { what, source })
}

impl Store {
    /// Stores one batch from `source` (run by `plugin`) and the source's new checkpoint, all or
    /// nothing (a savepoint: its own transaction, or part of an open write group, see
    /// [`Store::begin_group`]). Examples already stored are skipped (their curation data is not
    /// touched); verdicts, MinHash rows, duplicate links and decisions are written for new ones
    /// only. A record's `id`, when set, is used as its content id (see [`Record::id`]).
    pub fn store_batch(&mut self, source: &str, plugin: &str, records: &[Record], checkpoint: Option<&str>) -> Result<BatchOutcome> {
        let tx = self.conn.savepoint()?;
        let mut outcome = BatchOutcome::default();
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO examples
                 (id, source, plugin, provenance, kind, task, messages, rejected, metadata, scrub_counts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for rec in records {
                let ex = &rec.example;
                let computed;
                let id = match &rec.id {
                    Some(id) => id.as_str(),
                    None => {
                        computed = example_id(ex);
                        computed.as_str()
                    }
                };
                let metadata = match &ex.metadata {
                    serde_json::Value::Null => "{}".to_string(),
                    m => json("metadata", m)?,
                };
                let n = insert.execute(params![
                    id,
                    source,
                    plugin,
                    ex.provenance,
                    ex.kind.as_str(),
                    ex.task,
                    json("messages", &ex.messages)?,
                    ex.rejected,
                    metadata,
                    json("scrub counts", &rec.scrub_counts)?,
                ])?;
                if n == 0 {
                    outcome.duplicate += 1;
                    continue;
                }
                outcome.stored += 1;
                write_curation(&tx, id, rec)?;
            }
            if let Some(cp) = checkpoint {
                tx.prepare_cached(&format!(
                    "INSERT INTO checkpoints (source, checkpoint) VALUES (?1, ?2)
                     ON CONFLICT (source) DO UPDATE SET checkpoint = excluded.checkpoint, updated_at = {NOW_SQL}"
                ))?
                .execute(params![source, cp])?;
            }
        }
        tx.commit()?;
        Ok(outcome)
    }

    /// One stored example.
    pub fn example(&self, id: &str) -> Result<StoredExample> {
        self.conn
            .query_row(
                "SELECT id, source, plugin, provenance, kind, task, messages, rejected, metadata, scrub_counts, created_at
                 FROM examples WHERE id = ?1",
                [id],
                read_example,
            )
            .optional()?
            .ok_or_else(|| StoreError::NoExample(id.to_string()))
    }

    /// Ids of every example of `source`, oldest first.
    pub fn example_ids(&self, source: Option<&str>) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM examples WHERE ?1 IS NULL OR source = ?1 ORDER BY created_at, id")?;
        let ids = stmt.query_map([source], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }
}

fn write_curation(tx: &rusqlite::Connection, id: &str, rec: &Record) -> Result<()> {
    for (filter, v) in &rec.verdicts {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO verdicts (example_id, filter, score, flags, complexity, reject_reason, rule, fired)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            id,
            filter,
            v.score as f64,
            json("flags", &v.flags)?,
            v.complexity,
            v.reject_reason,
            v.rule,
            json("fired rules", &v.fired)?
        ])?;
    }
    if let Some(mh) = &rec.minhash {
        tx.prepare_cached("INSERT OR REPLACE INTO minhash (example_id, signature) VALUES (?1, ?2)")?
            .execute(params![id, mh.signature])?;
        let mut band = tx.prepare_cached("INSERT OR IGNORE INTO minhash_bands (band, hash, example_id) VALUES (?1, ?2, ?3)")?;
        for (i, h) in mh.bands.iter().enumerate() {
            band.execute(params![i as i64, *h as i64, id])?;
        }
    }
    if let Some((of, similarity)) = &rec.duplicate_of {
        tx.prepare_cached("INSERT OR REPLACE INTO duplicates (example_id, duplicate_of, similarity) VALUES (?1, ?2, ?3)")?
            .execute(params![id, of, similarity])?;
    }
    if let Some(d) = &rec.decision {
        super::reviews::insert(tx, id, d)?;
    }
    Ok(())
}

fn read_example(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredExample> {
    fn parse<T: serde::de::DeserializeOwned>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
        let text: String = r.get(i)?;
        serde_json::from_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
    }
    let kind: String = r.get(4)?;
    let kind = Kind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, format!("unknown kind {kind:?}").into())
    })?;
    let messages: Vec<Message> = parse(r, 6)?;
    Ok(StoredExample {
        id: r.get(0)?,
        source: r.get(1)?,
        plugin: r.get(2)?,
        example: Example {
            kind,
            task: r.get(5)?,
            messages,
            rejected: r.get(7)?,
            provenance: r.get(3)?,
            metadata: parse(r, 8)?,
        },
        scrub_counts: parse(r, 9)?,
        created_at: r.get(10)?,
    })
}
