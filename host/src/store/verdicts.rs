//! Reading curation results back: each filter's verdict, and one summary row per example (its
//! combined score, latest decision, duplicate link) for review lists, batch decisions and recut.
//!
//! The combined score of an example is the lowest score any filter gave it: every filter judges
//! one aspect (quality, repetition, format), and an example is only as good as its weakest one.

use std::collections::BTreeMap;

use rusqlite::types::ToSql;
use rusqlite::OptionalExtension;
use serde::Serialize;

use super::{DecidedBy, Result, ReviewStatus, Store, StoreError};
use crate::example::{Kind, Verdict};

/// One example as review sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub id: String,
    pub source: String,
    pub kind: String,
    pub task: String,
    pub provenance: String,
    pub created_at: String,
    pub status: ReviewStatus,
    /// Who made the latest decision (none while pending and never decided).
    pub decided_by: Option<DecidedBy>,
    pub reason: Option<String>,
    pub note: Option<String>,
    pub decided_at: Option<String>,
    /// Lowest filter score; none when no filter judged it.
    pub score: Option<f64>,
    /// Highest complexity any filter gave it.
    pub complexity: Option<u8>,
    /// Filters that judged it.
    pub filters: u32,
    /// `filter: reason` of every filter that rejected it.
    pub filter_rejects: Vec<String>,
    pub duplicate_of: Option<String>,
    pub similarity: Option<f64>,
}

/// Which examples a query returns. Empty fields select everything.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// Exact ids (or unique prefixes resolved beforehand).
    pub ids: Vec<String>,
    pub statuses: Vec<ReviewStatus>,
    pub source: Option<String>,
    pub kind: Option<Kind>,
    /// Combined score at or above (examples without a score never match).
    pub min_score: Option<f64>,
    /// Combined score at or below (examples without a score never match).
    pub max_score: Option<f64>,
    /// At most this many rows (after ordering).
    pub limit: Option<usize>,
}

/// The latest decision per example, the score summary and the duplicate link, joined to examples.
const SUMMARY_SQL: &str = "
WITH latest AS (
    SELECT r.example_id, r.status, r.decided_by, r.reason, r.note, r.decided_at
    FROM reviews r WHERE r.id IN (SELECT max(id) FROM reviews GROUP BY example_id)
), scores AS (
    SELECT example_id, round(min(score), 6) AS score, max(complexity) AS complexity, count(*) AS n,
           json_group_array(CASE WHEN reject_reason IS NOT NULL THEN filter || ': ' || reject_reason END) AS rejects
    FROM verdicts GROUP BY example_id
)
SELECT e.id, e.source, e.kind, e.task, e.provenance, e.created_at,
       coalesce(l.status, 'pending') AS status, l.decided_by AS decided_by, l.reason AS reason,
       l.note AS note, l.decided_at AS decided_at, s.score AS score, s.complexity AS complexity,
       coalesce(s.n, 0) AS n, s.rejects AS rejects, d.duplicate_of AS duplicate_of, d.similarity AS similarity
FROM examples e
LEFT JOIN latest l ON l.example_id = e.id
LEFT JOIN scores s ON s.example_id = e.id
LEFT JOIN duplicates d ON d.example_id = e.id
";

fn read_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<Summary> {
    let status: String = r.get(6)?;
    let by: Option<String> = r.get(7)?;
    let rejects: Option<String> = r.get(14)?;
    let mut filter_rejects: Vec<String> =
        rejects.and_then(|j| serde_json::from_str::<Vec<Option<String>>>(&j).ok()).unwrap_or_default().into_iter().flatten().collect();
    filter_rejects.sort();
    Ok(Summary {
        id: r.get(0)?,
        source: r.get(1)?,
        kind: r.get(2)?,
        task: r.get(3)?,
        provenance: r.get(4)?,
        created_at: r.get(5)?,
        status: ReviewStatus::parse(&status).unwrap_or(ReviewStatus::Pending),
        decided_by: by.map(|b| if b == "human" { DecidedBy::Human } else { DecidedBy::Auto }),
        reason: r.get(8)?,
        note: r.get(9)?,
        decided_at: r.get(10)?,
        score: r.get(11)?,
        complexity: r.get::<_, Option<i64>>(12)?.map(|c| c.clamp(0, 255) as u8),
        filters: r.get::<_, i64>(13)? as u32,
        filter_rejects,
        duplicate_of: r.get(15)?,
        similarity: r.get(16)?,
    })
}

impl Store {
    /// The verdicts stored for an example, by filter name.
    pub fn verdicts(&self, example_id: &str) -> Result<Vec<(String, Verdict)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT filter, score, flags, complexity, reject_reason, rule, fired FROM verdicts WHERE example_id = ?1 ORDER BY filter",
        )?;
        let rows = stmt.query_map([example_id], read_verdict)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Every stored verdict, grouped by example id (for recut).
    pub fn all_verdicts(&self) -> Result<BTreeMap<String, Vec<(String, Verdict)>>> {
        let mut stmt = self
            .conn
            .prepare("SELECT example_id, filter, score, flags, complexity, reject_reason, rule, fired FROM verdicts ORDER BY example_id, filter")?;
        let mut out: BTreeMap<String, Vec<(String, Verdict)>> = BTreeMap::new();
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let v = read_verdict_at(r, 1)?;
            out.entry(id).or_default().push(v);
        }
        Ok(out)
    }

    /// Summaries of the selected examples, oldest first (then by id).
    pub fn summaries(&self, sel: &Selector) -> Result<Vec<Summary>> {
        let mut sql = format!("SELECT * FROM ({SUMMARY_SQL}) WHERE 1");
        let mut params: Vec<Box<dyn ToSql>> = Vec::new();
        if !sel.ids.is_empty() {
            sql.push_str(" AND id IN (SELECT value FROM json_each(?))");
            params.push(Box::new(serde_json::to_string(&sel.ids).map_err(|source| StoreError::Json { what: "ids", source })?));
        }
        if !sel.statuses.is_empty() {
            let names: Vec<&str> = sel.statuses.iter().map(|s| s.as_str()).collect();
            sql.push_str(" AND status IN (SELECT value FROM json_each(?))");
            params.push(Box::new(serde_json::to_string(&names).map_err(|source| StoreError::Json { what: "statuses", source })?));
        }
        if let Some(s) = &sel.source {
            sql.push_str(" AND source = ?");
            params.push(Box::new(s.clone()));
        }
        if let Some(k) = sel.kind {
            sql.push_str(" AND kind = ?");
            params.push(Box::new(k.as_str()));
        }
        if let Some(x) = sel.min_score {
            sql.push_str(" AND score IS NOT NULL AND score >= ?");
            params.push(Box::new(x));
        }
        if let Some(x) = sel.max_score {
            sql.push_str(" AND score IS NOT NULL AND score <= ?");
            params.push(Box::new(x));
        }
        sql.push_str(" ORDER BY created_at, id");
        if let Some(n) = sel.limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let mut stmt = self.conn.prepare(&sql)?;
        let refs: Vec<&dyn ToSql> = params.iter().map(|p| p.as_ref()).collect();
        let rows = stmt.query_map(refs.as_slice(), read_summary)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// One example's summary.
    pub fn summary(&self, id: &str) -> Result<Summary> {
        let sel = Selector { ids: vec![id.to_string()], ..Default::default() };
        self.summaries(&sel)?.into_iter().next().ok_or_else(|| StoreError::NoExample(id.to_string()))
    }

    /// The example whose id is `prefix` or starts with it; an error when none or several do.
    pub fn resolve_id(&self, prefix: &str) -> Result<String> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NoExample(format!("{prefix} (an id is hex digits)")));
        }
        let exact: Option<String> = self.conn.query_row("SELECT id FROM examples WHERE id = ?1", [&prefix], |r| r.get(0)).optional()?;
        if let Some(id) = exact {
            return Ok(id);
        }
        let mut stmt = self.conn.prepare("SELECT id FROM examples WHERE id >= ?1 AND id < ?1 || 'g' ORDER BY id LIMIT 2")?;
        let ids: Vec<String> = stmt.query_map([&prefix], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        match ids.len() {
            1 => Ok(ids.into_iter().next().expect("one")),
            0 => Err(StoreError::NoExample(prefix)),
            _ => Err(StoreError::NoExample(format!("{prefix} (ambiguous: several ids start with it; give more digits)"))),
        }
    }
}

fn read_verdict(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Verdict)> {
    read_verdict_at(r, 0)
}

fn read_verdict_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<(String, Verdict)> {
    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = r.get(at + i)?;
        serde_json::from_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(at + i, rusqlite::types::Type::Text, Box::new(e)))
    };
    Ok((
        r.get(at)?,
        Verdict {
            score: r.get::<_, f64>(at + 1)? as f32,
            flags: list(2)?,
            complexity: r.get::<_, i64>(at + 3)?.clamp(0, 255) as u8,
            reject_reason: r.get(at + 4)?,
            rule: r.get(at + 5)?,
            fired: list(6)?,
        },
    ))
}
