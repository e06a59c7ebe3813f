//! The SQLite target: the file's connection and pragmas, the SQL it runs
//! for xdb's state and for the batched apply, and its bulk load
//! ([`load`]). Everything that writes a SQLite file lives in this folder.

pub mod load;

use std::path::{Path, PathBuf};

use rusqlite::OptionalExtension;

use super::apply_plan::Op;
use super::conn::{StateParam, TargetError};
use crate::error_policy::{self, DriverError};

/// An open SQLite database file.
pub struct SqliteConn {
    pub conn: rusqlite::Connection,
    pub path: PathBuf,
}

impl SqliteConn {
    /// Opens (creating when missing) the file, in WAL mode.
    pub fn open(path: &Path) -> Result<SqliteConn, TargetError> {
        let err = |e: rusqlite::Error| TargetError::Connect {
            target: format!("sqlite://{}", path.display()),
            reason: e.to_string(),
            retry: error_policy::sqlite(&e),
        };
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        // WAL lets status/validate read while sync writes. SQLite has
        // one writer at a time: a copy range holds the lock for its
        // whole load, so the others wait (busy_timeout) instead of failing.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 300000; PRAGMA foreign_keys = OFF;")
            .map_err(err)?;
        // The apply's statements repeat: keep them prepared.
        conn.set_prepared_statement_cache_capacity(256);
        Ok(SqliteConn { conn, path: path.to_path_buf() })
    }

    pub fn label(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    pub fn execute(&mut self, sql: &str) -> Result<(), DriverError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    /// One statement with `?` parameters; the rows it changed.
    pub fn execute_params(&mut self, sql: &str, params: &[StateParam]) -> Result<u64, DriverError> {
        let p: Vec<rusqlite::types::Value> = params
            .iter()
            .map(|p| match p {
                StateParam::Text(s) => rusqlite::types::Value::Text(s.clone()),
                StateParam::I64(i) => rusqlite::types::Value::Integer(*i),
                StateParam::I32(i) => rusqlite::types::Value::Integer(*i as i64),
                StateParam::I16(i) => rusqlite::types::Value::Integer(*i as i64),
            })
            .collect();
        Ok(self.conn.execute(sql, rusqlite::params_from_iter(p))? as u64)
    }

    /// The first column of the first row as text (`NULL` for NULL).
    pub fn scalar_text(&mut self, sql: &str) -> Result<Option<String>, DriverError> {
        use rusqlite::types::ValueRef;
        let mut st = self.conn.prepare(sql)?;
        let mut rows = st.query([])?;
        let Some(r) = rows.next()? else { return Ok(None) };
        Ok(Some(match r.get_ref(0)? {
            ValueRef::Null => "NULL".into(),
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(f) => f.to_string(),
            ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        }))
    }

    pub fn position_row(&mut self, sql: &str, slot: &str) -> Result<Option<(i64, i64, i64)>, DriverError> {
        Ok(self.conn.query_row(sql, [slot], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?)
    }

    pub fn table_state_rows(&mut self, sql: &str, slot: &str) -> Result<Vec<(String, i64, i64, i64)>, DriverError> {
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map([slot], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn column_names(&mut self, sql: &str) -> Result<Vec<String>, DriverError> {
        let st = self.conn.prepare(sql)?;
        Ok(st.column_names().into_iter().map(String::from).collect())
    }

    pub fn table_exists(&mut self, flat_name: &str) -> Result<bool, DriverError> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [flat_name],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    pub fn count(&mut self, sql: &str) -> Result<i64, DriverError> {
        Ok(self.conn.query_row(sql, [], |r| r.get(0))?)
    }

    /// Runs one planned apply operation; the rows it changed (or, for
    /// `ExpectRows`, counted).
    pub fn run_op(&mut self, sql: &str, op: &Op<'_>, params: Vec<rusqlite::types::Value>) -> Result<u64, DriverError> {
        let mut st = self.conn.prepare_cached(sql)?;
        let n = if matches!(op, Op::ExpectRows { .. }) {
            st.query_row(rusqlite::params_from_iter(params), |r| r.get::<_, i64>(0))? as u64
        } else {
            st.execute(rusqlite::params_from_iter(params))? as u64
        };
        Ok(n)
    }

    /// Moves `sqlite_sequence` of `table` so that the next AUTOINCREMENT
    /// value is at least `next`; says what it did.
    pub fn set_next_value(&mut self, table: &str, next: i64) -> Result<String, String> {
        let ddl: Option<String> = self
            .conn
            .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| r.get(0))
            .optional()
            .map_err(|e| e.to_string())?;
        let Some(ddl) = ddl else {
            return Err(format!("target table {table} does not exist"));
        };
        if !ddl.to_ascii_uppercase().contains("AUTOINCREMENT") {
            return Ok(format!(
                "skipped: {table} is not AUTOINCREMENT, so SQLite hands out max(rowid)+1 (the source's next is {next})"
            ));
        }
        let seq = next.saturating_sub(1);
        let n = self
            .conn
            .execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?2) WHERE name = ?1", rusqlite::params![table, seq])
            .map_err(|e| e.to_string())?;
        if n == 0 {
            self.conn
                .execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)", rusqlite::params![table, seq])
                .map_err(|e| e.to_string())?;
        }
        Ok(format!("sqlite_sequence for {table} set to at least {seq} (next value {next})"))
    }
}
