//! A connection to the target, whatever its kind, for the work every
//! command shares: xdb's state tables, DDL, and simple reads. The batched
//! apply and bulk load build on it.

use super::mysql::MysqlConn;
use super::postgres::PgConn;
use super::sqlite::SqliteConn;
use super::state;
use crate::error_policy::{DriverError, Retry};
use crate::model::Lsn;
use crate::plan::naming::{SqlDialect, TargetTable};
use crate::plan::TargetUrl;

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

    /// The target lacks a column or table the statement named (by code,
    /// [`DriverError::is_missing_column_or_table`]).
    pub fn is_missing_column_or_table(&self) -> bool {
        matches!(self, TargetError::Sql { source, .. } if source.is_missing_column_or_table())
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

/// An open connection to the target: one variant per target kind, each
/// in its own folder. The methods here are what every command shares;
/// each dispatches to the target's own SQL.
pub enum TargetConn {
    Mysql(MysqlConn),
    Sqlite(SqliteConn),
    Postgres(PgConn),
}

/// Calls the same method on whichever target this is (the SQLite driver is
/// synchronous, hence no `.await` there).
macro_rules! on_target {
    ($self:expr, $c:ident => $call:expr) => {
        match $self {
            TargetConn::Mysql($c) => $call.await,
            TargetConn::Sqlite($c) => $call,
            TargetConn::Postgres($c) => $call.await,
        }
    };
}

impl TargetConn {
    /// Connects to the plan's target. A SQLite file is created when missing.
    pub async fn connect(url: &TargetUrl) -> Result<TargetConn, TargetError> {
        Ok(match url {
            TargetUrl::Mysql(u) => TargetConn::Mysql(MysqlConn::connect(u).await?),
            TargetUrl::Sqlite(path) => TargetConn::Sqlite(SqliteConn::open(path)?),
            TargetUrl::Postgres(u) => TargetConn::Postgres(PgConn::connect(u).await?),
            TargetUrl::Nats(u) => {
                return Err(TargetError::Connect {
                    target: u.redacted(),
                    reason: "a NATS JetStream log is not a database: only `check` and `sync` take a log target \
                             (README: Through a replicated log)"
                        .into(),
                    retry: crate::error_policy::Retry::Fatal,
                })
            }
        })
    }

    /// The SQL dialect of this target.
    pub fn dialect(&self) -> SqlDialect {
        match self {
            TargetConn::Mysql(_) => SqlDialect::Mysql,
            TargetConn::Sqlite(_) => SqlDialect::Sqlite,
            TargetConn::Postgres(_) => SqlDialect::Postgres,
        }
    }

    /// The target for messages (password masked).
    pub fn label(&self) -> String {
        match self {
            TargetConn::Mysql(c) => c.label.clone(),
            TargetConn::Postgres(c) => c.label.clone(),
            TargetConn::Sqlite(c) => c.label(),
        }
    }

    pub(crate) fn err(&self, context: &str, source: DriverError) -> TargetError {
        TargetError::Sql { target: self.label(), context: context.to_string(), source }
    }

    /// Runs statements (DDL or anything without results), in order.
    pub async fn execute_batch(&mut self, statements: &[String], context: &str) -> Result<(), TargetError> {
        for sql in statements {
            let r = on_target!(self, c => c.execute(sql));
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
        let row = on_target!(self, c => c.position_row(&sql, slot))
            .map_err(|reason| self.err("reading the applied position", reason))?;
        Ok(row.map(|(l, t, c)| AppliedPosition {
            applied_lsn: Lsn(l as u64),
            applied_commit_time_us: t,
            consistent_point: Lsn(c as u64),
        }))
    }

    /// Whether xdb's state tables exist on this target (a target no sync
    /// has written to has none; reading never creates them).
    pub async fn has_state(&mut self) -> Result<bool, TargetError> {
        let r = match self {
            TargetConn::Mysql(c) => c.table_exists("xdb_state").await,
            TargetConn::Sqlite(c) => c.table_exists("xdb_state"),
            TargetConn::Postgres(c) => c.table_exists("xdb.state").await,
        };
        r.map_err(|reason| self.err("looking for xdb's state tables", reason))
    }

    /// The applied position, or `None` when no sync has written state here
    /// yet (see [`Self::has_state`]).
    pub async fn read_position_if_any(&mut self, slot: &str) -> Result<Option<AppliedPosition>, TargetError> {
        if !self.has_state().await? {
            return Ok(None);
        }
        self.read_position(slot).await
    }

    /// Every table's copy state for `slot`.
    pub async fn read_tables(&mut self, slot: &str) -> Result<Vec<TableState>, TargetError> {
        let sql = state::select_tables(self.dialect());
        let rows = on_target!(self, c => c.table_state_rows(&sql, slot))
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

    /// The first column of the first row of `sql`, as the target prints it
    /// (`NULL` for NULL); `None` without rows.
    pub async fn scalar_text(&mut self, sql: &str) -> Result<Option<String>, TargetError> {
        let r = on_target!(self, c => c.scalar_text(sql));
        r.map_err(|reason| self.err(&short(sql), reason))
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
        let r = match self {
            TargetConn::Mysql(c) => c.first_text("SELECT VERSION()").await.map(Option::unwrap_or_default),
            TargetConn::Sqlite(_) => Ok(rusqlite::version().to_string()),
            TargetConn::Postgres(c) => c.server_version().await,
        };
        r.map_err(|reason| self.err("reading the server version", reason))
    }

    /// The mapping layer's view of this target (flavour and version).
    pub async fn target_kind(&mut self) -> Result<crate::mapping::TargetKind, TargetError> {
        Ok(match self {
            TargetConn::Mysql(_) => {
                let v = self.server_version().await?;
                crate::mapping::TargetKind::mysql_from_version_string(&v)
            }
            TargetConn::Sqlite(_) => crate::mapping::TargetKind::Sqlite,
            TargetConn::Postgres(_) => crate::mapping::TargetKind::Postgres,
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
        let r = on_target!(self, c => c.execute_params(sql, params));
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
    pub async fn column_names(&mut self, table: &TargetTable) -> Result<Option<Vec<String>>, TargetError> {
        if !self.table_exists(table).await? {
            return Ok(None);
        }
        let sql = format!("SELECT * FROM {} WHERE 1 = 0", table.ident);
        let names = on_target!(self, c => c.column_names(&sql))
            .map_err(|reason| self.err(&format!("reading the columns of {}", table.name), reason))?;
        Ok(Some(names))
    }

    /// Whether the target table exists.
    pub async fn table_exists(&mut self, table: &TargetTable) -> Result<bool, TargetError> {
        let r = match self {
            TargetConn::Mysql(c) => c.table_exists(&table.name).await,
            TargetConn::Sqlite(c) => c.table_exists(&table.name),
            TargetConn::Postgres(c) => c.table_exists(&table.ident).await,
        };
        r.map_err(|reason| self.err(&format!("looking for table {}", table.name), reason))
    }

    /// Rows in a target table, or `None` when it does not exist.
    pub async fn table_rows(&mut self, table: &TargetTable) -> Result<Option<u64>, TargetError> {
        if !self.table_exists(table).await? {
            return Ok(None);
        }
        let sql = format!("SELECT COUNT(*) FROM {}", table.ident);
        let n = on_target!(self, c => c.count(&sql))
            .map_err(|reason| self.err(&format!("counting rows of {}", table.name), reason))?;
        Ok(Some(n as u64))
    }
}
