//! The `sqlite` capability: read-only queries on granted database files.
//!
//! Connections open with `SQLITE_OPEN_READ_ONLY` and `PRAGMA query_only`; statements that are
//! not read-only are refused before they run, ATTACH and setting pragmas are refused by an
//! authorizer; results are capped by rows and bytes; a query
//! that outlives the plugin's call deadline is interrupted.

use std::path::Path;
use std::time::Instant;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use wasmtime::component::Resource;

use crate::plugin::bindings::source::sam::plugin::sqlite::{Host, HostConnection, Rows, Value};
use crate::plugin::state::HostState;

/// Most rows one query returns.
pub const MAX_ROWS: usize = 10_000;
/// Most bytes (text and blobs, roughly) one query returns.
pub const MAX_BYTES: usize = 32 * 1024 * 1024;

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
        // ATTACH counts as "read-only" to SQLite but would open files outside the grant; pragmas
        // that set something are refused too (the informational ones take an argument).
        conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
            AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
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
                            bytes += t.len();
                            Value::Text(String::from_utf8_lossy(t).into_owned())
                        }
                        ValueRef::Blob(b) => {
                            bytes += b.len();
                            Value::Blob(b.to_vec())
                        }
                    };
                    bytes += 8;
                    vals.push(v);
                }
                if bytes > MAX_BYTES {
                    return Err(format!("result larger than {MAX_BYTES} bytes: page with LIMIT/OFFSET"));
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
        let rows = self.query(
            "SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
            &[],
            None,
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
        let rows = self.query("SELECT name FROM pragma_table_info(?1)", &[Value::Text(table.to_string())], None)?;
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

impl Host for HostState {}

impl HostConnection for HostState {
    fn open(&mut self, path: String) -> wasmtime::Result<Result<Resource<SqlConn>, String>> {
        let real = match self.caps.check("sqlite", &path) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        match SqlConn::open(&real) {
            Ok(c) => Ok(Ok(self.table.push(c)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    fn query(
        &mut self,
        self_: Resource<SqlConn>,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, String>> {
        let deadline = self.caps.deadline;
        Ok(self.table.get(&self_)?.query(&sql, &params, deadline))
    }

    fn tables(&mut self, self_: Resource<SqlConn>) -> wasmtime::Result<Result<Vec<String>, String>> {
        Ok(self.table.get(&self_)?.tables())
    }

    fn columns(&mut self, self_: Resource<SqlConn>, table: String) -> wasmtime::Result<Result<Vec<String>, String>> {
        Ok(self.table.get(&self_)?.columns(&table))
    }

    fn drop(&mut self, rep: Resource<SqlConn>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}
