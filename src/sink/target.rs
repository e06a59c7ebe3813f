//! A connection to the target, whatever its kind, for the work every
//! command shares: xdb's state tables, DDL, and simple reads. The batched
//! apply and bulk load build on it.

use std::path::PathBuf;

use mysql_async::prelude::Queryable;

use super::dialect::SqlDialect;
use super::state;
use crate::error_policy::{self, DriverError, Retry};
use crate::model::Lsn;
use crate::plan::{SecretUrl, TargetUrl};
use crate::source::postgres::client;

/// A target operation failed; the message names the target (password masked).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Connecting failed. The reason is already scrubbed of the password;
    /// `retry` was decided from the driver's error code.
    #[error("cannot connect to the target {target}: {reason}")]
    Connect { target: String, reason: String, retry: Retry },
    #[error("target {target}: {context}: {source}")]
    Sql {
        target: String,
        context: String,
        #[source]
        source: DriverError,
    },
}

impl TargetError {
    /// True when retrying later may succeed (connection lost, server
    /// restarting, lock wait timeout, deadlock), decided by error code in
    /// [`crate::error_policy`].
    pub fn is_retryable(&self) -> bool {
        match self {
            TargetError::Connect { retry, .. } => retry.is_transient(),
            TargetError::Sql { source, .. } => source.retry().is_transient(),
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
                    retry: error_policy::sqlite(&e),
                })?;
                // WAL lets status/validate read while sync writes. SQLite has
                // one writer at a time: a copy range holds the lock for its
                // whole load, so the others wait (busy_timeout) instead of failing.
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 300000; PRAGMA foreign_keys = OFF;",
                )
                .map_err(|e| TargetError::Connect {
                    target: format!("sqlite://{}", path.display()),
                    reason: e.to_string(),
                    retry: error_policy::sqlite(&e),
                })?;
                Ok(TargetConn::Sqlite { conn, path: path.clone() })
            }
            TargetUrl::Postgres(u) => {
                let client = client::connect(u, "xdb").await.map_err(|e| TargetError::Connect {
                    target: u.redacted(),
                    reason: e.reason.clone(),
                    retry: if e.retryable { Retry::Transient } else { Retry::Fatal },
                })?;
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

    fn err(&self, context: &str, source: DriverError) -> TargetError {
        TargetError::Sql { target: self.label(), context: context.to_string(), source }
    }

    async fn mysql_first(&mut self, sql: &str) -> Result<Option<String>, TargetError> {
        let TargetConn::Mysql { conn, .. } = self else { return Ok(None) };
        let r: Result<Option<String>, _> = conn.query_first(sql).await;
        r.map_err(|e| self.err(sql, e.into()))
    }

    /// Runs statements (DDL or anything without results), in order.
    pub async fn execute_batch(&mut self, statements: &[String], context: &str) -> Result<(), TargetError> {
        for sql in statements {
            let r = match self {
                TargetConn::Mysql { conn, .. } => conn.query_drop(sql.as_str()).await.map_err(DriverError::from),
                TargetConn::Sqlite { conn, .. } => conn.execute_batch(sql).map_err(DriverError::from),
                TargetConn::Postgres { client, .. } => client.batch_execute(sql).await.map_err(DriverError::from),
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
            TargetConn::Mysql { conn, .. } => conn.exec_first(sql.as_str(), (slot,)).await.map_err(DriverError::from),
            TargetConn::Sqlite { conn, .. } => {
                use rusqlite::OptionalExtension;
                conn.query_row(&sql, [slot], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
                    .map_err(DriverError::from)
            }
            TargetConn::Postgres { client, .. } => client
                .query_opt(sql.as_str(), &[&slot])
                .await
                .map(|r| r.map(|r| (r.get(0), r.get(1), r.get(2))))
                .map_err(DriverError::from),
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
            TargetConn::Mysql { conn, .. } => conn.exec(sql.as_str(), (slot,)).await.map_err(DriverError::from),
            TargetConn::Sqlite { conn, .. } => (|| {
                let mut st = conn.prepare(&sql)?;
                let rows = st.query_map([slot], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                rows.collect::<Result<Vec<_>, _>>()
            })()
            .map_err(DriverError::from),
            TargetConn::Postgres { client, .. } => client
                .query(sql.as_str(), &[&slot])
                .await
                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1), r.get::<_, i16>(2) as i64, r.get(3))).collect())
                .map_err(DriverError::from),
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
    let err =
        |reason: String, retry: Retry| TargetError::Connect { target: u.redacted(), reason: scrub(&reason, u), retry };
    let (opts, tls) = super::mysql_tls::opts_from_url(u).map_err(|r| err(r, Retry::Fatal))?;
    let opts = mysql_async::OptsBuilder::from_opts(opts)
        .init(vec![
            // Strict, UTC, utf8mb4: values land exactly or fail loudly.
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
            "SET SESSION time_zone = '+00:00'",
            "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
        ])
        // Affected rows count the rows an UPDATE matched, not only those it
        // changed: the sink tells "matched no row" (an error) from "set the
        // values the row already had" (fine) by this count.
        .client_found_rows(true)
        .prefer_socket(false);
    match tokio::time::timeout(std::time::Duration::from_secs(15), super::mysql_tls::connect(opts, &tls)).await {
        Ok(r) => r.map_err(|e| err(e.reason, e.retry)),
        Err(_) => Err(err("no answer within 15 s".into(), Retry::Transient)),
    }
}

fn scrub(text: &str, u: &SecretUrl) -> String {
    // The one scrubber (crate::secrets); this URL's password is registered
    // first in case the URL did not come from a loaded plan.
    for pw in [u.password(), u.query_password()].into_iter().flatten() {
        crate::secrets::register(&pw);
    }
    crate::secrets::scrub(text)
}

fn short(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}…", one_line.chars().take(80).collect::<String>())
    } else {
        one_line
    }
}

/// A parameter of xdb's own state statements, typed as the state tables'
/// columns are (tokio-postgres binds exact integer widths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateParam {
    Text(String),
    I64(i64),
    I32(i32),
    I16(i16),
}

impl TargetConn {
    /// The server's version string (`SELECT VERSION()`; SQLite's library version).
    pub async fn server_version(&mut self) -> Result<String, TargetError> {
        match self {
            TargetConn::Mysql { .. } => Ok(self.mysql_first("SELECT VERSION()").await?.unwrap_or_default()),
            TargetConn::Sqlite { .. } => Ok(rusqlite::version().to_string()),
            TargetConn::Postgres { client, .. } => {
                let r = client.query_one("SHOW server_version", &[]).await.map_err(DriverError::from);
                let r = r.map(|row| row.get::<_, String>(0));
                r.map_err(|reason| self.err("reading the server version", reason))
            }
        }
    }

    /// The mapping layer's view of this target (flavour and version).
    pub async fn target_kind(&mut self) -> Result<crate::mapping::TargetKind, TargetError> {
        Ok(match self {
            TargetConn::Mysql { .. } => {
                let v = self.server_version().await?;
                crate::mapping::TargetKind::mysql_from_version_string(&v)
            }
            TargetConn::Sqlite { .. } => crate::mapping::TargetKind::Sqlite,
            TargetConn::Postgres { .. } => crate::mapping::TargetKind::Postgres,
        })
    }

    /// Runs one statement with parameters (`?` on MySQL/SQLite, `$n` on
    /// PostgreSQL); returns affected rows.
    pub async fn execute_params(
        &mut self,
        sql: &str,
        params: &[StateParam],
        context: &str,
    ) -> Result<u64, TargetError> {
        let r = match self {
            TargetConn::Mysql { conn, .. } => {
                let p: Vec<mysql_async::Value> = params
                    .iter()
                    .map(|p| match p {
                        StateParam::Text(s) => mysql_async::Value::from(s.as_str()),
                        StateParam::I64(i) => mysql_async::Value::from(*i),
                        StateParam::I32(i) => mysql_async::Value::from(*i),
                        StateParam::I16(i) => mysql_async::Value::from(*i),
                    })
                    .collect();
                match conn.exec_drop(sql, p).await {
                    Ok(()) => Ok(conn.affected_rows()),
                    Err(e) => Err(DriverError::from(e)),
                }
            }
            TargetConn::Sqlite { conn, .. } => {
                let p: Vec<rusqlite::types::Value> = params
                    .iter()
                    .map(|p| match p {
                        StateParam::Text(s) => rusqlite::types::Value::Text(s.clone()),
                        StateParam::I64(i) => rusqlite::types::Value::Integer(*i),
                        StateParam::I32(i) => rusqlite::types::Value::Integer(*i as i64),
                        StateParam::I16(i) => rusqlite::types::Value::Integer(*i as i64),
                    })
                    .collect();
                conn.execute(sql, rusqlite::params_from_iter(p)).map(|n| n as u64).map_err(DriverError::from)
            }
            TargetConn::Postgres { client, .. } => {
                let p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| match p {
                        StateParam::Text(s) => s as &(dyn tokio_postgres::types::ToSql + Sync),
                        StateParam::I64(i) => i,
                        StateParam::I32(i) => i,
                        StateParam::I16(i) => i,
                    })
                    .collect();
                client.execute(sql, &p).await.map_err(DriverError::from)
            }
        };
        r.map_err(|reason| self.err(&format!("{context} ({})", short(sql)), reason))
    }

    /// Records the applied position of `slot` (never moves it backwards).
    pub async fn record_position(&mut self, slot: &str, lsn: Lsn, consistent_point: Lsn) -> Result<(), TargetError> {
        let now = chrono::Utc::now().timestamp_micros();
        let sql = state::upsert_position(self.dialect());
        let p = [
            StateParam::Text(slot.into()),
            StateParam::I64(lsn.0 as i64),
            StateParam::I64(0),
            StateParam::I64(consistent_point.0 as i64),
            StateParam::I64(now),
        ];
        self.execute_params(&sql, &p, "recording the applied position").await.map(|_| ())
    }

    /// Records a table's copy state.
    pub async fn record_table(
        &mut self,
        slot: &str,
        table: &str,
        sync_lsn: Lsn,
        done: bool,
        rows: u64,
    ) -> Result<(), TargetError> {
        let sql = state::upsert_table(self.dialect());
        let p = [
            StateParam::Text(slot.into()),
            StateParam::Text(table.into()),
            StateParam::I64(sync_lsn.0 as i64),
            StateParam::I16(done as i16),
            StateParam::I64(rows as i64),
        ];
        self.execute_params(&sql, &p, "recording a table's copy state").await.map(|_| ())
    }

    /// Forgets a table's finished ranges (before it is copied again).
    pub async fn clear_ranges(&mut self, slot: &str, table: &str) -> Result<(), TargetError> {
        let d = self.dialect();
        let (a, b) = if d == SqlDialect::Postgres { ("$1", "$2") } else { ("?", "?") };
        let sql = format!("DELETE FROM {} WHERE slot = {a} AND table_name = {b}", state::state_table(d, "copy_ranges"));
        let p = [StateParam::Text(slot.into()), StateParam::Text(table.into())];
        self.execute_params(&sql, &p, "clearing copy ranges").await.map(|_| ())
    }

    /// Forgets everything recorded for `slot` (its slot is gone).
    pub async fn forget_slot(&mut self, slot: &str) -> Result<(), TargetError> {
        for sql in state::delete_slot(self.dialect()) {
            self.execute_params(&sql, &[StateParam::Text(slot.into())], "forgetting a lost slot's state").await?;
        }
        Ok(())
    }

    /// The column names of a target table (as the target reports them), or
    /// `None` when the table does not exist.
    pub async fn column_names(
        &mut self,
        source_table: &crate::model::TableName,
    ) -> Result<Option<Vec<String>>, TargetError> {
        if !self.table_exists(source_table).await? {
            return Ok(None);
        }
        let sql = format!("SELECT * FROM {} WHERE 1 = 0", self.dialect().table_ident(source_table));
        let names = match self {
            TargetConn::Mysql { conn, .. } => match conn.query_iter(sql.as_str()).await {
                Ok(result) => {
                    let names: Vec<String> = result.columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
                    result.drop_result().await.map(|_| names).map_err(DriverError::from)
                }
                Err(e) => Err(DriverError::from(e)),
            },
            TargetConn::Sqlite { conn, .. } => conn
                .prepare(&sql)
                .map(|st| st.column_names().into_iter().map(String::from).collect())
                .map_err(DriverError::from),
            TargetConn::Postgres { client, .. } => client
                .prepare(&sql)
                .await
                .map(|st| st.columns().iter().map(|c| c.name().to_string()).collect())
                .map_err(DriverError::from),
        }
        .map_err(|reason| self.err(&format!("reading the columns of {source_table}"), reason))?;
        Ok(Some(names))
    }

    /// Whether the target table for `source_table` exists.
    pub async fn table_exists(&mut self, source_table: &crate::model::TableName) -> Result<bool, TargetError> {
        let d = self.dialect();
        let ident = d.table_ident(source_table);
        let flat = super::dialect::flat_table_name(source_table);
        let table = flat.as_str();
        let exists = match self {
            TargetConn::Mysql { conn, .. } => conn
                .exec_first::<i64, _, _>(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
                    (table,),
                )
                .await
                .map(|n| n.unwrap_or(0) > 0)
                .map_err(DriverError::from),
            TargetConn::Sqlite { conn, .. } => conn
                .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n > 0)
                .map_err(DriverError::from),
            TargetConn::Postgres { client, .. } => client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&ident])
                .await
                .map(|r| r.get::<_, bool>(0))
                .map_err(DriverError::from),
        }
        .map_err(|reason| self.err(&format!("looking for table {table}"), reason))?;
        Ok(exists)
    }

    /// Rows in a target table, or `None` when it does not exist.
    pub async fn table_rows(&mut self, source_table: &crate::model::TableName) -> Result<Option<u64>, TargetError> {
        if !self.table_exists(source_table).await? {
            return Ok(None);
        }
        let ident = self.dialect().table_ident(source_table);
        let sql = format!("SELECT COUNT(*) FROM {ident}");
        let n: Option<i64> = match self {
            TargetConn::Mysql { conn, .. } => conn.query_first(sql.as_str()).await.map_err(DriverError::from),
            TargetConn::Sqlite { conn, .. } => {
                conn.query_row(&sql, [], |r| r.get(0)).map(Some).map_err(DriverError::from)
            }
            TargetConn::Postgres { client, .. } => {
                client.query_one(sql.as_str(), &[]).await.map(|r| Some(r.get(0))).map_err(DriverError::from)
            }
        }
        .map_err(|reason| self.err(&format!("counting rows of {ident}"), reason))?;
        Ok(Some(n.unwrap_or(0) as u64))
    }
}
