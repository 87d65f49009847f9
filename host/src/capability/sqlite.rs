//! The `sqlite` capability: read-only queries on granted database files.
//!
//! Connections open with `SQLITE_OPEN_READ_ONLY` and `PRAGMA query_only`; statements that are
//! not read-only are refused before they run, ATTACH, setting pragmas and transactions (a read
//! transaction left open would hold the database past the call) are refused by an authorizer;
//! SQLite's own limits cap every value it makes (`zeroblob(2e9)`, a huge `group_concat`) and the
//! SQL text; results are capped by rows and bytes, checked before a value is copied; a query
//! that outlives the plugin's call deadline is interrupted (the plugin then times out).

use std::path::Path;
use std::time::Instant;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use wasmtime::component::Resource;

use crate::plugin::bindings::source::sam::plugin::sqlite::{Host, HostConnection, Rows, Value};
use super::{deadline_trap, Handle};
use crate::plugin::state::HostState;

/// Most rows one query returns.
pub const MAX_ROWS: usize = 10_000;
/// Most bytes (text and blobs, roughly) one query returns.
pub const MAX_BYTES: usize = 32 * 1024 * 1024;
/// SQLite's own limits on every connection: the longest string or blob it may make (so also
/// its memory for one value), the longest SQL text, bound parameters, columns, attached files.
const LIMITS: [(i32, i32); 5] = [
    (rusqlite::ffi::SQLITE_LIMIT_LENGTH, MAX_BYTES as i32),
    (rusqlite::ffi::SQLITE_LIMIT_SQL_LENGTH, 100_000),
    (rusqlite::ffi::SQLITE_LIMIT_VARIABLE_NUMBER, 999),
    (rusqlite::ffi::SQLITE_LIMIT_COLUMN, 1000),
    (rusqlite::ffi::SQLITE_LIMIT_ATTACHED, 0),
];

/// A read-only connection (the host side of the WIT `connection` resource).
pub struct SqlConn {
    conn: Connection,
}

impl SqlConn {
    pub fn open(path: &Path) -> Result<SqlConn, String> {
        if !path.is_file() {
            return Err(format!("`{}` is not a file", path.display()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| format!("cannot open `{}` read-only: {e}", path.display()))?;
        conn.pragma_update(None, "query_only", true).map_err(|e| e.to_string())?;
        for (limit, value) in LIMITS {
            // SAFETY: the handle is this open connection's, used on this thread only; limit ids
            // are SQLite's constants (an unknown one is ignored by SQLite).
            unsafe { rusqlite::ffi::sqlite3_limit(conn.handle(), limit, value) };
        }
        // ATTACH counts as "read-only" to SQLite but would open files outside the grant; pragmas
        // that set something are refused too (the informational ones take an argument).
        conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
            AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
            AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Authorization::Deny,
            AuthAction::Pragma { pragma_name, pragma_value: Some(_) }
                if !matches!(pragma_name, "table_info" | "table_xinfo" | "index_list" | "index_info" | "index_xinfo" | "foreign_key_list") =>
            {
                Authorization::Deny
            }
            _ => Authorization::Allow,
        }));
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| e.to_string())?;
        Ok(SqlConn { conn })
    }

    /// Runs one read-only statement. `deadline` interrupts a runaway query.
    pub fn query(&self, sql: &str, params: &[Value], deadline: Option<Instant>) -> Result<Rows, String> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| format!("bad SQL: {e}"))?;
        if !stmt.readonly() {
            return Err("only read-only statements are allowed".into());
        }
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        for (i, p) in params.iter().enumerate() {
            let idx = i + 1;
            let r = match p {
                Value::Null => stmt.raw_bind_parameter(idx, rusqlite::types::Null),
                Value::Integer(v) => stmt.raw_bind_parameter(idx, v),
                Value::Real(v) => stmt.raw_bind_parameter(idx, v),
                Value::Text(v) => stmt.raw_bind_parameter(idx, v),
                Value::Blob(v) => stmt.raw_bind_parameter(idx, v),
            };
            r.map_err(|e| format!("parameter {idx}: {e}"))?;
        }
        if let Some(deadline) = deadline {
            self.conn.progress_handler(10_000, Some(move || Instant::now() > deadline));
        }
        let result = (|| {
            let mut rows_out = Vec::new();
            let mut bytes = 0usize;
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next().map_err(|e| format!("query failed: {e}"))? {
                if rows_out.len() >= MAX_ROWS {
                    return Err(format!("more than {MAX_ROWS} rows: page with LIMIT/OFFSET"));
                }
                let mut vals = Vec::with_capacity(columns.len());
                for i in 0..columns.len() {
                    let v = row.get_ref(i).map_err(|e| e.to_string())?;
                    let v = match v {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(x) => Value::Integer(x),
                        ValueRef::Real(x) => Value::Real(x),
                        ValueRef::Text(t) => {
                            bytes = within(bytes, t.len())?;
                            Value::Text(String::from_utf8_lossy(t).into_owned())
                        }
                        ValueRef::Blob(b) => {
                            bytes = within(bytes, b.len())?;
                            Value::Blob(b.to_vec())
                        }
                    };
                    bytes = within(bytes, 8)?;
                    vals.push(v);
                }
                rows_out.push(vals);
            }
            Ok(rows_out)
        })();
        if deadline.is_some() {
            self.conn.progress_handler(0, None::<fn() -> bool>);
        }
        Ok(Rows { columns, rows: result? })
    }

    pub fn tables(&self) -> Result<Vec<String>, String> {
        self.tables_until(None)
    }

    /// [`SqlConn::tables`], interrupted at `deadline`.
    pub fn tables_until(&self, deadline: Option<Instant>) -> Result<Vec<String>, String> {
        let rows = self.query(
            "SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
            &[],
            deadline,
        )?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|r| match r.into_iter().next() {
                Some(Value::Text(t)) => Some(t),
                _ => None,
            })
            .collect())
    }

    pub fn columns(&self, table: &str) -> Result<Vec<String>, String> {
        self.columns_until(table, None)
    }

    /// [`SqlConn::columns`], interrupted at `deadline`.
    pub fn columns_until(&self, table: &str, deadline: Option<Instant>) -> Result<Vec<String>, String> {
        let rows = self.query("SELECT name FROM pragma_table_info(?1)", &[Value::Text(table.to_string())], deadline)?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|r| match r.into_iter().next() {
                Some(Value::Text(t)) => Some(t),
                _ => None,
            })
            .collect())
    }
}

/// `bytes` plus `more`, if the result stays within [`MAX_BYTES`]: checked before a value is
/// copied out of SQLite.
fn within(bytes: usize, more: usize) -> Result<usize, String> {
    let total = bytes.saturating_add(more);
    if total > MAX_BYTES {
        return Err(format!("result larger than {MAX_BYTES} bytes: page with LIMIT/OFFSET"));
    }
    Ok(total)
}

impl Host for HostState {}

impl HostConnection for HostState {
    fn open(&mut self, path: String) -> wasmtime::Result<Result<Resource<SqlConn>, String>> {
        let real = match self.caps.check("sqlite", &path) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let conn = match SqlConn::open(&real) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.caps.handles.open(Handle::Sqlite) {
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(conn)?))
    }

    fn query(
        &mut self,
        self_: Resource<SqlConn>,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, String>> {
        let deadline = self.caps.deadline;
        deadline_trap(deadline, self.table.get(&self_)?.query(&sql, &params, deadline))
    }

    fn tables(&mut self, self_: Resource<SqlConn>) -> wasmtime::Result<Result<Vec<String>, String>> {
        let deadline = self.caps.deadline;
        deadline_trap(deadline, self.table.get(&self_)?.tables_until(deadline))
    }

    fn columns(&mut self, self_: Resource<SqlConn>, table: String) -> wasmtime::Result<Result<Vec<String>, String>> {
        let deadline = self.caps.deadline;
        deadline_trap(deadline, self.table.get(&self_)?.columns_until(&table, deadline))
    }

    fn drop(&mut self, rep: Resource<SqlConn>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        self.caps.handles.close(Handle::Sqlite);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, SqlConn) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('a'), ('b');").unwrap();
        drop(c);
        let conn = SqlConn::open(&path).unwrap();
        (dir, conn)
    }

    #[test]
    fn values_sqlite_would_make_too_large_are_refused_before_they_are_made() {
        let (_d, c) = db();
        for sql in [
            "SELECT zeroblob(2000000000)",
            "SELECT randomblob(2000000000)",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 3000000) SELECT group_concat(printf('%020d', n)) FROM r",
        ] {
            let err = c.query(sql, &[], None).unwrap_err();
            assert!(err.contains("too big"), "{sql}: {err}");
        }
        // Many rows each under the cap still add up to it, checked before copying.
        let sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 5000) SELECT zeroblob(10000000) FROM r";
        let err = c.query(sql, &[], None).unwrap_err();
        assert!(err.contains("result larger than"), "{err}");
        let long_sql = format!("SELECT '{}'", "x".repeat(200_000));
        let err = c.query(&long_sql, &[], None).unwrap_err();
        assert!(err.contains("too big") || err.contains("too long"), "{err}");
    }

    #[test]
    fn a_plugin_cannot_hold_a_transaction_open() {
        let (_d, c) = db();
        for sql in ["BEGIN", "BEGIN IMMEDIATE", "SAVEPOINT s", "COMMIT"] {
            let err = c.query(sql, &[], None).unwrap_err();
            assert!(err.contains("not authorized"), "{sql}: {err}");
        }
        assert!(c.conn.is_autocommit());
        assert_eq!(c.query("SELECT count(*) FROM t", &[], None).unwrap().rows.len(), 1);
    }

    #[test]
    fn a_runaway_query_ends_at_the_deadline() {
        let (_d, c) = db();
        let deadline = Instant::now() + std::time::Duration::from_millis(200);
        let err = c.query("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", &[], Some(deadline)).unwrap_err();
        assert!(err.contains("interrupt"), "{err}");
        // The capability reports it as past the deadline, which the runtime turns into a timeout.
        let trapped = deadline_trap(Some(deadline), Err::<(), _>(err)).unwrap_err();
        assert!(matches!(trapped.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)), "{trapped:?}");
    }
}
