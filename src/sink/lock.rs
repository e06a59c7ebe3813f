//! One applier per position on a target (invariant *exactly once*): a
//! consumer of a replicated log holds a lock named by its plan's slot on
//! its target for as long as it applies, so a second one — started by
//! mistake, or a restart while the old process still lives — stops
//! instead of applying the same messages again over the first one's. The
//! direct path has the replication slot for this (one reader per slot).
//!
//! MariaDB/MySQL: `GET_LOCK` on a connection of its own; PostgreSQL: a
//! session advisory lock; SQLite: an exclusive `flock` on a file beside
//! the database (`<file>.xdb-<slot>.lock`). Each goes with its holder's
//! connection or process, kill -9 included.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use super::conn::{TargetConn, TargetError};
use super::mysql::MysqlConn;
use super::postgres::PgConn;
use crate::error_policy::Retry;
use crate::plan::TargetUrl;

/// A held lock; released on drop.
pub enum ApplierLock {
    /// The connection that holds it.
    Server(Box<TargetConn>),
    Sqlite(std::fs::File),
}

/// The SQLite lock file of `slot` beside `db`.
pub fn sqlite_lock_path(db: &Path, slot: &str) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".xdb-{slot}.lock"));
    db.with_file_name(name)
}

/// The lock's name on a server, for `slot` in database `db`: bounded
/// (MySQL allows 64 characters). MySQL's named locks are server-wide, so
/// the database is part of it (consumers of other databases on the same
/// server may use the same slot name); PostgreSQL's advisory locks are
/// per database already.
fn lock_name(db: &str, slot: &str) -> String {
    format!("xdb-applier-{:016x}", super::fnv1a(&format!("{db}\0{slot}")))
}

impl ApplierLock {
    /// Whether another process holds the lock of `slot` on `url` now
    /// (taken and released at once, for `status` and `cleanup`). Creates
    /// nothing: a SQLite lock file that is not there is not held.
    pub async fn is_held(url: &TargetUrl, slot: &str) -> Result<bool, TargetError> {
        if let TargetUrl::Sqlite(db) = url {
            if !sqlite_lock_path(db, slot).exists() {
                return Ok(false);
            }
        }
        Ok(ApplierLock::acquire(url, slot, Duration::ZERO).await?.is_none())
    }

    /// Takes the lock of `slot` on `url`, waiting up to `wait` for a
    /// holder that is going away (a killed process's connection the server
    /// has not closed yet). `Ok(None)`: someone else holds it.
    pub async fn acquire(url: &TargetUrl, slot: &str, wait: Duration) -> Result<Option<ApplierLock>, TargetError> {
        if let TargetUrl::Sqlite(db) = url {
            return sqlite(db, slot, wait).await;
        }
        let mut conn = TargetConn::connect(url).await?;
        let name = match &mut conn {
            TargetConn::Mysql(MysqlConn { conn: c, .. }) => {
                let db: Option<Option<String>> = c
                    .query_first("SELECT DATABASE()")
                    .await
                    .map_err(|e| sql_err(url, "reading the database name", e.into()))?;
                lock_name(&db.flatten().unwrap_or_default(), slot)
            }
            _ => lock_name("", slot),
        };
        let deadline = Instant::now() + wait;
        loop {
            let got = match &mut conn {
                TargetConn::Mysql(MysqlConn { conn: c, .. }) => {
                    c.exec_first::<Option<i64>, _, _>("SELECT GET_LOCK(?, 0)", (name.as_str(),))
                        .await
                        .map_err(|e| sql_err(url, "taking the applier's lock (GET_LOCK)", e.into()))?
                        .flatten()
                        == Some(1)
                }
                TargetConn::Postgres(PgConn { client, .. }) => client
                    .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&name])
                    .await
                    .map_err(|e| sql_err(url, "taking the applier's lock (pg_try_advisory_lock)", e.into()))?
                    .get::<_, bool>(0),
                TargetConn::Sqlite(_) => unreachable!("SQLite locks a file (above)"),
            };
            if got {
                return Ok(Some(ApplierLock::Server(Box::new(conn))));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn sql_err(url: &TargetUrl, context: &str, source: crate::error_policy::DriverError) -> TargetError {
    TargetError::Sql { target: url.redacted(), context: context.into(), source }
}

async fn sqlite(db: &Path, slot: &str, wait: Duration) -> Result<Option<ApplierLock>, TargetError> {
    let path = sqlite_lock_path(db, slot);
    let err = |e: std::io::Error| TargetError::Connect {
        target: db.display().to_string(),
        reason: format!("opening the applier's lock file {}: {e}", path.display()),
        retry: Retry::Fatal,
    };
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).map_err(err)?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(ApplierLock::Sqlite(file))),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
    }
}
