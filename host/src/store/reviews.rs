//! Review decisions. Every decision is a new row; an example's status is its latest decision
//! (none = pending), so undo removes the latest one and the previous decision shows again.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{Result, Store, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewStatus {
    Pending,
    Approved,
    Rejected,
}

impl ReviewStatus {
    pub const ALL: [ReviewStatus; 3] = [ReviewStatus::Pending, ReviewStatus::Approved, ReviewStatus::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<ReviewStatus> {
        ReviewStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecidedBy {
    Auto,
    Human,
}

impl DecidedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Auto => "auto",
            DecidedBy::Human => "human",
        }
    }
}

/// One review decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub status: ReviewStatus,
    /// Why (a threshold, a filter's reject reason, the reviewer's words).
    pub reason: Option<String>,
    pub note: Option<String>,
    pub decided_by: DecidedBy,
}

pub(super) fn insert(conn: &rusqlite::Connection, example_id: &str, d: &Decision) -> Result<()> {
    conn.prepare_cached("INSERT INTO reviews (example_id, status, reason, note, decided_by) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![example_id, d.status.as_str(), d.reason, d.note, d.decided_by.as_str()])?;
    Ok(())
}

impl Store {
    /// Records a decision on a stored example.
    pub fn review(&mut self, example_id: &str, decision: &Decision) -> Result<()> {
        let tx = self.conn.transaction()?;
        let exists: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM examples WHERE id = ?1)", [example_id], |r| r.get(0))?;
        if !exists {
            return Err(StoreError::NoExample(example_id.to_string()));
        }
        insert(&tx, example_id, decision)?;
        tx.commit()?;
        Ok(())
    }

    /// The example's current status.
    pub fn review_status(&self, example_id: &str) -> Result<ReviewStatus> {
        let s: Option<String> = self
            .conn
            .query_row("SELECT status FROM example_status WHERE example_id = ?1", [example_id], |r| r.get(0))
            .optional()?;
        let s = s.ok_or_else(|| StoreError::NoExample(example_id.to_string()))?;
        Ok(ReviewStatus::parse(&s).unwrap_or(ReviewStatus::Pending))
    }

    /// Removes the latest decision on the example; returns the status it has again, or `None`
    /// when there was nothing to undo.
    pub fn undo_review(&mut self, example_id: &str) -> Result<Option<ReviewStatus>> {
        let n = self.conn.execute(
            "DELETE FROM reviews WHERE id = (SELECT max(id) FROM reviews WHERE example_id = ?1)",
            [example_id],
        )?;
        if n == 0 {
            return Ok(None);
        }
        self.review_status(example_id).map(Some)
    }

    /// Every decision on the example, oldest first, with its time.
    pub fn review_history(&self, example_id: &str) -> Result<Vec<(Decision, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT status, reason, note, decided_by, decided_at FROM reviews WHERE example_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([example_id], |r| {
                let status: String = r.get(0)?;
                let by: String = r.get(3)?;
                Ok((
                    Decision {
                        status: ReviewStatus::parse(&status).unwrap_or(ReviewStatus::Pending),
                        reason: r.get(1)?,
                        note: r.get(2)?,
                        decided_by: if by == "human" { DecidedBy::Human } else { DecidedBy::Auto },
                    },
                    r.get(4)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}
