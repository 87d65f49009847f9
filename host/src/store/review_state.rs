//! What review needs beyond single decisions: decisions on many examples in one transaction,
//! undoing a decision by its row, the interactive session's resume point, and edits of an
//! example's response (kept with the previous text, so an edit can be undone).
//!
//! The tables here (`review_cursor`, `example_edits`) are created by migration 3 (schema.rs).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Decision, Result, ReviewStatus, Store, StoreError, NOW_SQL};
use crate::example::Message;

fn json<T: serde::Serialize + ?Sized>(what: &'static str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|source| StoreError::Json { what, source })
}

/// A decision as it was recorded: its row, for undo.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionRow {
    pub row: i64,
    pub example_id: String,
}

fn insert_row(conn: &Connection, example_id: &str, d: &Decision) -> Result<i64> {
    conn.prepare_cached(&format!(
        "INSERT INTO reviews (example_id, status, reason, note, decided_by, decided_at) VALUES (?1, ?2, ?3, ?4, ?5, {NOW_SQL})"
    ))?
    .execute(params![example_id, d.status.as_str(), d.reason, d.note, d.decided_by.as_str()])?;
    Ok(conn.last_insert_rowid())
}

impl Store {
    /// Records a decision and returns its row (for [`Store::undo_decision`]).
    pub fn decide(&mut self, example_id: &str, d: &Decision) -> Result<DecisionRow> {
        let tx = self.conn.transaction()?;
        let exists: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM examples WHERE id = ?1)", [example_id], |r| r.get(0))?;
        if !exists {
            return Err(StoreError::NoExample(example_id.to_string()));
        }
        let row = insert_row(&tx, example_id, d)?;
        tx.commit()?;
        Ok(DecisionRow { row, example_id: example_id.to_string() })
    }

    /// Records decisions on many examples in one transaction; returns how many were written.
    pub fn decide_many(&mut self, decisions: &[(String, Decision)]) -> Result<usize> {
        let tx = self.conn.transaction()?;
        for (id, d) in decisions {
            insert_row(&tx, id, d)?;
        }
        tx.commit()?;
        Ok(decisions.len())
    }

    /// Removes one decision row (and reverts the edit made with it, if any); returns the
    /// example's status afterwards, or `None` when the row no longer exists.
    pub fn undo_decision(&mut self, row: i64) -> Result<Option<(String, ReviewStatus)>> {
        let tx = self.conn.transaction()?;
        let id: Option<String> = tx.query_row("SELECT example_id FROM reviews WHERE id = ?1", [row], |r| r.get(0)).optional()?;
        let Some(id) = id else { return Ok(None) };
        let edit: Option<i64> = tx.query_row("SELECT id FROM example_edits WHERE review_id = ?1", [row], |r| r.get(0)).optional()?;
        if let Some(edit) = edit {
            revert_edit(&tx, edit)?;
        }
        tx.execute("DELETE FROM reviews WHERE id = ?1", [row])?;
        tx.commit()?;
        let status = self.review_status(&id)?;
        Ok(Some((id, status)))
    }

    /// The latest decision a person made (any session), for undo across sessions.
    pub fn last_human_decision(&self) -> Result<Option<DecisionRow>> {
        Ok(self
            .conn
            .query_row("SELECT id, example_id FROM reviews WHERE decided_by = 'human' ORDER BY id DESC LIMIT 1", [], |r| {
                Ok(DecisionRow { row: r.get(0)?, example_id: r.get(1)? })
            })
            .optional()?)
    }

    /// Where the interactive review named `name` stopped: the last example it handled, with
    /// that example's `created_at` (the queue's order key).
    pub fn review_cursor(&self, name: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row("SELECT created_at, example_id FROM review_cursor WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Moves the cursor to `example_id` (or clears it).
    pub fn set_review_cursor(&self, name: &str, example_id: Option<&str>) -> Result<()> {
        match example_id {
            None => {
                self.conn.execute("DELETE FROM review_cursor WHERE name = ?1", [name])?;
            }
            Some(id) => {
                self.conn.execute(
                    &format!(
                        "INSERT INTO review_cursor (name, example_id, created_at)
                         SELECT ?1, id, created_at FROM examples WHERE id = ?2
                         ON CONFLICT (name) DO UPDATE SET example_id = excluded.example_id,
                             created_at = excluded.created_at, updated_at = {NOW_SQL}"
                    ),
                    params![name, id],
                )?;
            }
        }
        Ok(())
    }

    /// Replaces an example's messages (a person's edit), adds the secrets scrubbed from the new
    /// text to its counts, records the edit with the previous text, and records `decision` with
    /// it — all in one transaction. The example keeps its id (its split and history stay).
    pub fn edit_example(
        &mut self,
        example_id: &str,
        messages: &[Message],
        added_scrub_counts: &BTreeMap<String, u32>,
        decision: &Decision,
    ) -> Result<DecisionRow> {
        let tx = self.conn.transaction()?;
        let old: Option<(String, String)> =
            tx.query_row("SELECT messages, scrub_counts FROM examples WHERE id = ?1", [example_id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        let (old_messages, old_counts) = old.ok_or_else(|| StoreError::NoExample(example_id.to_string()))?;
        let mut counts: BTreeMap<String, u32> = serde_json::from_str(&old_counts).unwrap_or_default();
        for (rule, n) in added_scrub_counts {
            *counts.entry(rule.clone()).or_default() += n;
        }
        let new_messages = json("messages", messages)?;
        tx.execute(
            "UPDATE examples SET messages = ?2, scrub_counts = ?3 WHERE id = ?1",
            params![example_id, new_messages, json("scrub counts", &counts)?],
        )?;
        let row = insert_row(&tx, example_id, decision)?;
        tx.execute(
            "INSERT INTO example_edits (example_id, old_messages, new_messages, old_scrub_counts, review_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![example_id, old_messages, new_messages, old_counts, row],
        )?;
        tx.commit()?;
        Ok(DecisionRow { row, example_id: example_id.to_string() })
    }

    /// How many times the example was edited.
    pub fn edit_count(&self, example_id: &str) -> Result<u32> {
        Ok(self.conn.query_row("SELECT count(*) FROM example_edits WHERE example_id = ?1", [example_id], |r| r.get::<_, i64>(0))? as u32)
    }
}

fn revert_edit(conn: &Connection, edit: i64) -> Result<()> {
    let (id, old_messages, old_counts): (String, String, String) =
        conn.query_row("SELECT example_id, old_messages, old_scrub_counts FROM example_edits WHERE id = ?1", [edit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    conn.execute("UPDATE examples SET messages = ?2, scrub_counts = ?3 WHERE id = ?1", params![id, old_messages, old_counts])?;
    conn.execute("DELETE FROM example_edits WHERE id = ?1", [edit])?;
    Ok(())
}
