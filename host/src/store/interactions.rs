//! What `brain serve` answered: every interaction (escalated or not) with the local answer and
//! the routing decision, for routing data and evaluation. Kept for a number of days
//! (`[serve] keep_interactions_days`); the caller scrubs text before it gets here.

use rusqlite::params;
use serde::Serialize;

use super::{BatchOutcome, Record, Result, Store};
use crate::example::Message;

/// One answered request.
#[derive(Clone, Debug, PartialEq)]
pub struct Interaction {
    pub model_version: Option<String>,
    /// The conversation as asked.
    pub messages: Vec<Message>,
    /// The local model's answer.
    pub answer: String,
    pub finish: String,
    pub escalated: bool,
    /// Why it was escalated (`always`, `empty`, `repetitive`, …); none when it was not.
    pub route: Option<String>,
    pub teacher: Option<String>,
    /// The preference example an escalation stored.
    pub example_id: Option<String>,
}

/// Counts for `brain status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InteractionCounts {
    pub total: u64,
    pub escalated: u64,
}

impl Store {
    /// Records one interaction and drops those older than `keep_days`, in one transaction.
    pub fn log_interaction(&mut self, i: &Interaction, keep_days: u32) -> Result<i64> {
        let tx = self.conn.savepoint()?;
        let messages = serde_json::to_string(&i.messages).map_err(|source| super::StoreError::Json { what: "messages", source })?;
        tx.prepare_cached(
            "INSERT INTO interactions (model_version, messages, answer, finish, escalated, route, teacher, example_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![i.model_version, messages, i.answer, i.finish, i.escalated, i.route, i.teacher, i.example_id])?;
        let id = tx.last_insert_rowid();
        purge(&tx, keep_days)?;
        tx.commit()?;
        Ok(id)
    }

    /// Stores an escalation's examples (with their decisions) and its interaction, all or
    /// nothing.
    pub fn store_escalation(&mut self, source: &str, plugin: &str, records: &[Record], i: &Interaction, keep_days: u32) -> Result<BatchOutcome> {
        self.begin_group()?;
        let written = self.store_batch(source, plugin, records, None).and_then(|out| self.log_interaction(i, keep_days).map(|_| out));
        match written {
            Ok(out) => {
                self.commit_group()?;
                Ok(out)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK; PRAGMA temp_store = DEFAULT");
                Err(e)
            }
        }
    }

    /// Drops interactions older than `keep_days` days; returns how many.
    pub fn purge_interactions(&mut self, keep_days: u32) -> Result<usize> {
        purge(&self.conn, keep_days)
    }

    pub fn interaction_counts(&self) -> Result<InteractionCounts> {
        let (total, escalated): (i64, i64) =
            self.conn.query_row("SELECT count(*), coalesce(sum(escalated), 0) FROM interactions", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(InteractionCounts { total: total as u64, escalated: escalated as u64 })
    }
}

fn purge(conn: &rusqlite::Connection, keep_days: u32) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM interactions WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)",
        [format!("-{keep_days} days")],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::Role;

    fn interaction(escalated: bool) -> Interaction {
        Interaction {
            model_version: Some("v1".into()),
            messages: vec![Message { role: Role::User, content: "hi".into() }],
            answer: "hello".into(),
            finish: "stop".into(),
            escalated,
            route: escalated.then(|| "always".into()),
            teacher: None,
            example_id: None,
        }
    }

    #[test]
    fn logs_counts_and_keeps_only_recent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("brain.db")).unwrap();
        s.log_interaction(&interaction(false), 30).unwrap();
        s.log_interaction(&interaction(true), 30).unwrap();
        assert_eq!(s.interaction_counts().unwrap(), InteractionCounts { total: 2, escalated: 1 });
        // One from 40 days ago goes at the next write; today's stay.
        s.conn().execute("UPDATE interactions SET at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-40 days') WHERE id = 1", []).unwrap();
        s.log_interaction(&interaction(false), 30).unwrap();
        assert_eq!(s.interaction_counts().unwrap(), InteractionCounts { total: 2, escalated: 1 });
        s.conn().execute("UPDATE interactions SET at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-2 days')", []).unwrap();
        assert_eq!(s.purge_interactions(1).unwrap(), 2);
    }
}
