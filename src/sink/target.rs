//! A connection to the target, whatever its kind, for the work every
//! command shares: xdb's state tables, DDL, and simple reads. The batched
//! apply and bulk load build on it.

use std::path::PathBuf;

use mysql_async::prelude::Queryable;

use super::dialect::SqlDialect;
use super::state;
use crate::model::Lsn;
use crate::plan::{SecretUrl, TargetUrl};
use crate::source::postgres::client;

/// A target operation failed; the message names the target (password masked).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot connect to the target {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("target {target}: {context}: {reason}")]
    Sql { target: String, context: String, reason: String },
}

impl TargetError {
    /// True when retrying later may succeed (connection lost, server restarting,
    /// lock wait timeout, deadlock).
    pub fn is_retryable(&self) -> bool {
        match self {
            TargetError::Connect { .. } => true,
            TargetError::Sql { reason, .. } => {
                let r = reason.to_ascii_lowercase();
                [
                    "connection",
                    "broken pipe",
                    "reset",
                    "deadlock",
                    "lock wait timeout",
                    "database is locked",
                    "server has gone away",
                    "i/o",
                    "io error",
                    "closed",
                    "shutting down",
                    "terminating",
                ]
                .iter()
                .any(|needle| r.contains(needle))
            }
        }
    }
}

/// The applied position recorded on the target for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedPosition {
    /// End LSN of the last applied source commit.
    pub applied_lsn: Lsn,
    pub applied_commit_time_us: i64,
    /// The slot's consistent point (where streaming began after the copy).
    pub consistent_point: Lsn,
}

/// Copy state of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableState {
    pub table: String,
    pub sync_lsn: Lsn,
    pub copy_done: bool,
    pub rows_copied: u64,
}

/// An open connection to the target.
pub enum TargetConn {
    Mysql { conn: mysql_async::Conn, label: String, mariadb: bool },
    Sqlite { conn: rusqlite::Connection, path: PathBuf },
    Postgres { client: tokio_postgres::Client, label: String },
}

impl TargetConn {
    /// Connects to the plan's target. A SQLite file is created when missing.
    pub async fn connect(url: &TargetUrl) -> Result<TargetConn, TargetError> {
        match url {
            TargetUrl::Mysql(u) => {
                let conn = connect_mysql(u).await?;
                let mut t = TargetConn::Mysql { conn, label: u.redacted(), mariadb: false };
                let version: String = t.mysql_first("SELECT VERSION()").await?.unwrap_or_default();
                if let TargetConn::Mysql { mariadb, .. } = &mut t {
                    *mariadb = version.to_ascii_lowercase().contains("mariadb");
                }
                Ok(t)
            }
            TargetUrl::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).map_err(|e| TargetError::Connect {
                    target: format!("sqlite://{}", path.display()),
                    reason: e.to_string(),
                })?;
                // WAL lets status/validate read while sync writes; busy_timeout
                // rides out the short write locks instead of failing.
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = OFF;",
                )
                .map_err(|e| TargetError::Connect {
                    target: format!("sqlite://{}", path.display()),
                    reason: e.to_string(),
                })?;
                Ok(TargetConn::Sqlite { conn, path: path.clone() })
            }
            TargetUrl::Postgres(u) => {
                let client = client::connect(u, "xdb")
                    .await
                    .map_err(|e| TargetError::Connect { target: u.redacted(), reason: e.reason.clone() })?;
                Ok(TargetConn::Postgres { client, label: u.redacted() })
            }
        }
    }

    /// The SQL dialect of this target.
    pub fn dialect(&self) -> SqlDialect {
        match self {
            TargetConn::Mysql { .. } => SqlDialect::Mysql,
            TargetConn::Sqlite { .. } => SqlDialect::Sqlite,
            TargetConn::Postgres { .. } => SqlDialect::Postgres,
        }
    }

    /// The target for messages (password masked).
    pub fn label(&self) -> String {
        match self {
            TargetConn::Mysql { label, .. } | TargetConn::Postgres { label, .. } => label.clone(),
            TargetConn::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
        }
    }

    fn err(&self, context: &str, reason: String) -> TargetError {
        TargetError::Sql { target: self.label(), context: context.to_string(), reason }
    }

    async fn mysql_first(&mut self, sql: &str) -> Result<Option<String>, TargetError> {
        let TargetConn::Mysql { conn, .. } = self else { return Ok(None) };
        let r: Result<Option<String>, _> = conn.query_first(sql).await;
        r.map_err(|e| self.err(sql, e.to_string()))
    }

    /// Runs statements (DDL or anything without results), in order.
    pub async fn execute_batch(&mut self, statements: &[String], context: &str) -> Result<(), TargetError> {
        for sql in statements {
            let r = match self {
                TargetConn::Mysql { conn, .. } => conn.query_drop(sql.as_str()).await.map_err(|e| e.to_string()),
                TargetConn::Sqlite { conn, .. } => conn.execute_batch(sql).map_err(|e| e.to_string()),
                TargetConn::Postgres { client, .. } => {
                    client.batch_execute(sql).await.map_err(|e| client::error_text(&e))
                }
            };
            r.map_err(|reason| self.err(&format!("{context} ({})", short(sql)), reason))?;
        }
        Ok(())
    }

    /// Creates xdb's state tables when missing.
    pub async fn ensure_state_tables(&mut self) -> Result<(), TargetError> {
        let stmts = state::create_statements(self.dialect());
        self.execute_batch(&stmts, "creating xdb's state tables").await
    }

    /// The applied position of `slot`, if any was recorded.
    pub async fn read_position(&mut self, slot: &str) -> Result<Option<AppliedPosition>, TargetError> {
        let sql = state::select_position(self.dialect());
        let row: Option<(i64, i64, i64)> = match self {
            TargetConn::Mysql { conn, .. } => conn.exec_first(sql.as_str(), (slot,)).await.map_err(|e| e.to_string()),
            TargetConn::Sqlite { conn, .. } => {
                use rusqlite::OptionalExtension;
                conn.query_row(&sql, [slot], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
                    .map_err(|e| e.to_string())
            }
            TargetConn::Postgres { client, .. } => client
                .query_opt(sql.as_str(), &[&slot])
                .await
                .map(|r| r.map(|r| (r.get(0), r.get(1), r.get(2))))
                .map_err(|e| client::error_text(&e)),
        }
        .map_err(|reason| self.err("reading the applied position", reason))?;
        Ok(row.map(|(l, t, c)| AppliedPosition {
            applied_lsn: Lsn(l as u64),
            applied_commit_time_us: t,
            consistent_point: Lsn(c as u64),
        }))
    }

    /// Every table's copy state for `slot`.
    pub async fn read_tables(&mut self, slot: &str) -> Result<Vec<TableState>, TargetError> {
        let sql = state::select_tables(self.dialect());
        let rows: Vec<(String, i64, i64, i64)> = match self {
            TargetConn::Mysql { conn, .. } => conn.exec(sql.as_str(), (slot,)).await.map_err(|e| e.to_string()),
            TargetConn::Sqlite { conn, .. } => (|| {
                let mut st = conn.prepare(&sql)?;
                let rows = st.query_map([slot], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                rows.collect::<Result<Vec<_>, _>>()
            })()
            .map_err(|e| e.to_string()),
            TargetConn::Postgres { client, .. } => client
                .query(sql.as_str(), &[&slot])
                .await
                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1), r.get::<_, i16>(2) as i64, r.get(3))).collect())
                .map_err(|e| client::error_text(&e)),
        }
        .map_err(|reason| self.err("reading table copy states", reason))?;
        Ok(rows
            .into_iter()
            .map(|(table, l, d, n)| TableState {
                table,
                sync_lsn: Lsn(l as u64),
                copy_done: d != 0,
                rows_copied: n as u64,
            })
            .collect())
    }
}

async fn connect_mysql(u: &SecretUrl) -> Result<mysql_async::Conn, TargetError> {
    let err = |reason: String| TargetError::Connect { target: u.redacted(), reason: scrub(&reason, u) };
    let opts = mysql_async::Opts::from_url(u.expose()).map_err(|e| err(e.to_string()))?;
    let opts = mysql_async::OptsBuilder::from_opts(opts)
        .init(vec![
            // Strict, UTC, utf8mb4: values land exactly or fail loudly.
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
            "SET SESSION time_zone = '+00:00'",
            "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
        ])
        .prefer_socket(false);
    match tokio::time::timeout(std::time::Duration::from_secs(15), mysql_async::Conn::new(opts)).await {
        Ok(r) => r.map_err(|e| err(e.to_string())),
        Err(_) => Err(err("no answer within 15 s".into())),
    }
}

fn scrub(text: &str, u: &SecretUrl) -> String {
    match u.password() {
        Some(p) if !p.is_empty() => text.replace(&p, "***"),
        _ => text.to_string(),
    }
}

fn short(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}…", one_line.chars().take(80).collect::<String>())
    } else {
        one_line
    }
}
