//! Near-duplicate data: the MinHash signatures curation indexes, and superseding a stored
//! example by a better-scored near copy.

use rusqlite::{params, OptionalExtension};

use super::{Result, Store, NOW_SQL};

/// A stored example that can keep its place against near copies: it is not itself a near
/// duplicate, and no filter rejected it (unless a person approved it anyway).
#[derive(Clone, Debug, PartialEq)]
pub struct Keeper {
    pub id: String,
    /// Near duplicates are looked for among examples of the same kind.
    pub kind: String,
    /// The stored signature bytes (`None` when the example has none yet).
    pub signature: Option<Vec<u8>>,
    /// Combined (lowest) filter score.
    pub score: Option<f64>,
    /// Its latest decision was a person's: it is never superseded automatically.
    pub human: bool,
}

/// What [`Store::supersede`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Superseded {
    Done,
    /// A person decided on the old example meanwhile: left alone.
    Protected,
    /// One of the two examples is gone.
    Missing,
}

impl Store {
    /// True when an example with this id is stored.
    pub fn has_example(&self, id: &str) -> Result<bool> {
        Ok(self.conn.prepare_cached("SELECT 1 FROM examples WHERE id = ?1")?.query_row([id], |_| Ok(())).optional()?.is_some())
    }

    /// Every example that can keep its place against near copies, oldest first.
    pub fn keepers(&self) -> Result<Vec<Keeper>> {
        let mut stmt = self.conn.prepare(
            "WITH latest AS (
                 SELECT r.example_id, r.status, r.decided_by FROM reviews r
                 WHERE r.id IN (SELECT max(id) FROM reviews GROUP BY example_id)
             )
             SELECT e.id, e.kind, m.signature,
                    (SELECT round(min(score), 6) FROM verdicts v WHERE v.example_id = e.id),
                    coalesce(l.decided_by = 'human', 0)
             FROM examples e
             LEFT JOIN minhash m ON m.example_id = e.id
             LEFT JOIN latest l ON l.example_id = e.id
             WHERE e.id NOT IN (SELECT example_id FROM duplicates)
               AND (NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.example_id = e.id AND v.reject_reason IS NOT NULL)
                    OR (l.decided_by = 'human' AND l.status = 'approved'))
             ORDER BY e.created_at, e.id",
        )?;
        let rows = stmt
            .query_map([], |r| Ok(Keeper { id: r.get(0)?, kind: r.get(1)?, signature: r.get(2)?, score: r.get(3)?, human: r.get(4)? }))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Writes (or replaces) signatures, all or nothing. Takes `&self`: curation calls it between
    /// batches (inside a collect's write group, see [`Store::begin_group`]).
    pub fn put_signatures(&self, signatures: &[(String, Vec<u8>)]) -> Result<()> {
        if signatures.is_empty() {
            return Ok(());
        }
        let tx = super::Nested::begin(&self.conn)?;
        {
            let mut stmt = tx.prepare_cached("INSERT OR REPLACE INTO minhash (example_id, signature) VALUES (?1, ?2)")?;
            for (id, sig) in signatures {
                stmt.execute(params![id, sig])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks the stored example `old` as a near duplicate of the better-scored `new`: a
    /// duplicate link, and an automatic rejection (reason `duplicate`). Examples that
    /// duplicated `old` now point at `new`. A person's decision on `old` is never overridden.
    pub fn supersede(&self, old: &str, new: &str, similarity: f64) -> Result<Superseded> {
        let tx = super::Nested::begin(&self.conn)?;
        let both: i64 = tx.query_row("SELECT count(*) FROM examples WHERE id IN (?1, ?2)", params![old, new], |r| r.get(0))?;
        if both != 2 || old == new {
            return Ok(Superseded::Missing);
        }
        let by: Option<String> =
            tx.query_row("SELECT decided_by FROM reviews WHERE example_id = ?1 ORDER BY id DESC LIMIT 1", [old], |r| r.get(0)).optional()?;
        if by.as_deref() == Some("human") {
            return Ok(Superseded::Protected);
        }
        tx.execute("INSERT OR REPLACE INTO duplicates (example_id, duplicate_of, similarity) VALUES (?1, ?2, ?3)", params![old, new, similarity])?;
        tx.execute("UPDATE duplicates SET duplicate_of = ?2 WHERE duplicate_of = ?1 AND example_id != ?2", params![old, new])?;
        tx.execute("DELETE FROM duplicates WHERE example_id = ?1 AND duplicate_of = ?1", [new])?;
        tx.execute(
            &format!(
                "INSERT INTO reviews (example_id, status, reason, note, decided_by, decided_at)
                 VALUES (?1, 'rejected', 'duplicate', ?2, 'auto', {NOW_SQL})"
            ),
            params![old, format!("near-duplicate of {new} (similarity {similarity:.2}); superseded by this better-scored copy")],
        )?;
        tx.commit()?;
        Ok(Superseded::Done)
    }
}
