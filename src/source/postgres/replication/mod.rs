//! xdb's own walsender connection (`replication=database`), on the pure
//! codecs of `postgres-protocol` over tokio: tokio-postgres cannot speak the
//! replication protocol. It runs replication commands (IDENTIFY_SYSTEM,
//! CREATE/DROP_REPLICATION_SLOT), plain SQL through the simple query
//! protocol, and streams pgoutput with [`ReplicationClient::start_replication`].
//!
//! The stream hands out raw pgoutput messages as [`bytes::Bytes`] slices of
//! the read buffer (no copy); decoding them is [`super::codec::pgoutput`]'s job.
//! What is confirmed to the server is entirely the caller's decision
//! ([`ReplicationStream::set_positions`]).

mod config;
mod conn;
mod error;
mod stream;
mod wire;

use std::time::Duration;

pub use config::ReplicationConfig;
pub use error::ReplicationError;
pub use stream::{ReplicationEvent, ReplicationStream};

use crate::model::Lsn;
use crate::plan::SecretUrl;
use conn::Conn;

/// The answer to IDENTIFY_SYSTEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemId {
    /// The cluster's system identifier (a u64 in decimal).
    pub systemid: String,
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlogpos: Lsn,
    /// The database the connection is bound to.
    pub dbname: Option<String>,
}

/// What CREATE_REPLICATION_SLOT does with the slot's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotAction {
    /// Export it: other sessions may `SET TRANSACTION SNAPSHOT` to its name
    /// until this connection runs its next command or closes.
    Export,
    /// Make it the snapshot of the current transaction of this connection,
    /// which must be `BEGIN ISOLATION LEVEL REPEATABLE READ` and not have
    /// run a query yet.
    Use,
    /// No snapshot.
    NoExport,
}

/// The answer to CREATE_REPLICATION_SLOT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    pub slot_name: String,
    /// Streaming from here delivers exactly the transactions the snapshot does not see.
    pub consistent_point: Lsn,
    /// With [`SnapshotAction::Export`]: the name to import.
    pub snapshot_name: Option<String>,
    pub output_plugin: Option<String>,
}

/// Options of START_REPLICATION for pgoutput.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartReplicationOptions {
    /// 1 (PG10+), 2 (streaming of in-progress transactions, PG14+), 3, 4.
    pub proto_version: u32,
    pub publication_names: Vec<String>,
    /// Stream in-progress transactions (needs proto_version ≥ 2).
    pub streaming: bool,
    /// Deliver `pg_logical_emit_message` messages (PG14+).
    pub messages: bool,
    /// Binary tuple data (PG14+).
    pub binary: bool,
    /// How often a standby status update is sent while streaming, even when
    /// nothing arrives; keep it well inside the server's `wal_sender_timeout`.
    pub status_interval: Duration,
}

impl Default for StartReplicationOptions {
    fn default() -> Self {
        StartReplicationOptions {
            proto_version: 1,
            publication_names: Vec::new(),
            streaming: false,
            messages: false,
            binary: false,
            status_interval: Duration::from_secs(1),
        }
    }
}

/// A logged-in walsender connection, before streaming.
pub struct ReplicationClient {
    conn: Conn,
}

impl std::fmt::Debug for ReplicationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationClient").field("server", &self.conn.server).finish()
    }
}

impl ReplicationClient {
    /// Connects (over TLS as `sslmode` asks) and authenticates (trust, cleartext, md5, SCRAM-SHA-256).
    pub async fn connect(config: &ReplicationConfig) -> Result<Self, ReplicationError> {
        Ok(ReplicationClient { conn: Conn::connect(config).await? })
    }

    /// Connects to `url` with `application_name` (which overrides one in the URL).
    pub async fn connect_url(url: &SecretUrl, application_name: &str) -> Result<Self, ReplicationError> {
        let mut config = ReplicationConfig::from_url(url)?;
        config.application_name = application_name.to_string();
        Self::connect(&config).await
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.conn.server
    }

    /// The server's `server_version` (e.g. `15.4 (Debian 15.4-1)`).
    pub fn server_version(&self) -> Option<&str> {
        self.conn.server_version.as_deref()
    }

    /// The major version (e.g. 15), when the server reported one.
    pub fn server_major_version(&self) -> Option<u32> {
        major_version(self.conn.server_version.as_deref()?)
    }

    /// Runs IDENTIFY_SYSTEM.
    pub async fn identify_system(&mut self) -> Result<SystemId, ReplicationError> {
        let rows = self.conn.simple_query("IDENTIFY_SYSTEM").await?;
        let row = single_row(rows, "IDENTIFY_SYSTEM", 3)?;
        Ok(SystemId {
            systemid: row[0].clone().unwrap_or_default(),
            timeline: parse_field(&row[1], "IDENTIFY_SYSTEM timeline", |s| s.parse().ok())?,
            xlogpos: parse_field(&row[2], "IDENTIFY_SYSTEM xlogpos", |s| s.parse().ok())?,
            dbname: row.get(3).cloned().flatten(),
        })
    }

    /// Creates a logical slot for pgoutput. `temporary` slots vanish with the connection.
    pub async fn create_replication_slot(
        &mut self,
        name: &str,
        temporary: bool,
        snapshot: SnapshotAction,
    ) -> Result<CreatedSlot, ReplicationError> {
        let legacy = self.server_major_version().is_some_and(|v| v < 15);
        let sql = create_slot_command(name, temporary, snapshot, legacy)?;
        let rows = self.conn.simple_query(&sql).await?;
        let row = single_row(rows, "CREATE_REPLICATION_SLOT", 2)?;
        Ok(CreatedSlot {
            slot_name: row[0].clone().unwrap_or_else(|| name.to_string()),
            consistent_point: parse_field(&row[1], "consistent_point", |s| s.parse().ok())?,
            snapshot_name: row.get(2).cloned().flatten(),
            output_plugin: row.get(3).cloned().flatten(),
        })
    }

    /// Drops a slot; with `wait`, waits for an active slot to be released instead of failing with 55006.
    pub async fn drop_replication_slot(&mut self, name: &str, wait: bool) -> Result<(), ReplicationError> {
        let mut sql = format!("DROP_REPLICATION_SLOT {}", quote_ident(checked_slot(name)?));
        if wait {
            sql.push_str(" WAIT");
        }
        self.conn.simple_query(&sql).await.map(|_| ())
    }

    /// Runs SQL (or a replication command) with the simple query protocol; rows as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ReplicationError> {
        self.conn.simple_query(sql).await
    }

    /// Starts streaming from `slot` at `start` (0/0: from the slot's confirmed position).
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &StartReplicationOptions,
    ) -> Result<ReplicationStream, ReplicationError> {
        let sql = start_replication_command(slot, start, options)?;
        self.conn.queue_query(&sql)?;
        self.conn.flush().await?;
        loop {
            let f = self.conn.read_frame().await?;
            match f.tag {
                b'W' => return Ok(ReplicationStream::new(self.conn, options.status_interval)),
                b'N' | b'S' => {}
                b'E' => {
                    let err = wire::parse_error(&f.body);
                    // Leave the connection at ReadyForQuery; it is dropped anyway.
                    drain_to_ready(&mut self.conn).await;
                    return Err(err);
                }
                other => return Err(conn::unexpected(other, "in answer to START_REPLICATION")),
            }
        }
    }

    /// Sends Terminate and closes the connection (temporary slots are dropped by the server).
    pub async fn close(self) {
        self.conn.terminate().await;
    }
}

async fn drain_to_ready(conn: &mut Conn) {
    let drain = async {
        while let Ok(f) = conn.read_frame().await {
            if f.tag == b'Z' {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

fn major_version(v: &str) -> Option<u32> {
    v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn single_row(
    mut rows: Vec<Vec<Option<String>>>,
    command: &str,
    min_columns: usize,
) -> Result<Vec<Option<String>>, ReplicationError> {
    if rows.len() != 1 || rows[0].len() < min_columns {
        return Err(ReplicationError::Protocol(format!(
            "{command} returned {} rows (expected one with at least {min_columns} columns)",
            rows.len()
        )));
    }
    Ok(rows.remove(0))
}

fn parse_field<T>(v: &Option<String>, what: &str, f: impl Fn(&str) -> Option<T>) -> Result<T, ReplicationError> {
    v.as_deref()
        .and_then(f)
        .ok_or_else(|| ReplicationError::Protocol(format!("unexpected {what} {v:?} from the server")))
}

/// Slot names are restricted by PostgreSQL; checking here gives a clear error and safe quoting.
fn checked_slot(name: &str) -> Result<&str, ReplicationError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(ReplicationError::Config(format!(
            "invalid replication slot name {name:?}: use 1 to 63 lower-case letters, digits and underscores"
        )))
    }
}

/// A double-quoted identifier.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A single-quoted literal for the replication grammar.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn create_slot_command(
    name: &str,
    temporary: bool,
    snapshot: SnapshotAction,
    legacy: bool,
) -> Result<String, ReplicationError> {
    let mut sql = format!("CREATE_REPLICATION_SLOT {}", quote_ident(checked_slot(name)?));
    if temporary {
        sql.push_str(" TEMPORARY");
    }
    sql.push_str(" LOGICAL pgoutput ");
    // PG15 introduced the option list; the old keywords work on PG10 to 14 (and later).
    sql.push_str(match (snapshot, legacy) {
        (SnapshotAction::Export, false) => "(SNAPSHOT 'export')",
        (SnapshotAction::Use, false) => "(SNAPSHOT 'use')",
        (SnapshotAction::NoExport, false) => "(SNAPSHOT 'nothing')",
        (SnapshotAction::Export, true) => "EXPORT_SNAPSHOT",
        (SnapshotAction::Use, true) => "USE_SNAPSHOT",
        (SnapshotAction::NoExport, true) => "NOEXPORT_SNAPSHOT",
    });
    Ok(sql)
}

fn start_replication_command(
    slot: &str,
    start: Lsn,
    options: &StartReplicationOptions,
) -> Result<String, ReplicationError> {
    if options.publication_names.is_empty() {
        return Err(ReplicationError::Config("START_REPLICATION for pgoutput needs at least one publication".into()));
    }
    if options.streaming && options.proto_version < 2 {
        return Err(ReplicationError::Config(
            "streaming of in-progress transactions needs proto_version 2 or later".into(),
        ));
    }
    let pubs: Vec<String> = options.publication_names.iter().map(|p| quote_ident(p)).collect();
    let mut sql = format!(
        "START_REPLICATION SLOT {} LOGICAL {start} (proto_version '{}', publication_names {}",
        quote_ident(checked_slot(slot)?),
        options.proto_version,
        quote_literal(&pubs.join(","))
    );
    // Options left at their defaults are omitted: older servers reject unknown names.
    if options.streaming {
        sql.push_str(", streaming 'on'");
    }
    if options.messages {
        sql.push_str(", messages 'true'");
    }
    if options.binary {
        sql.push_str(", binary 'true'");
    }
    sql.push(')');
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_commands() {
        assert_eq!(
            create_slot_command("s_1", true, SnapshotAction::Export, false).unwrap(),
            "CREATE_REPLICATION_SLOT \"s_1\" TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')"
        );
        assert_eq!(
            create_slot_command("s", false, SnapshotAction::NoExport, true).unwrap(),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput NOEXPORT_SNAPSHOT"
        );
        assert!(create_slot_command("Bad-Name", false, SnapshotAction::Use, false).is_err());
        let opts = StartReplicationOptions {
            proto_version: 2,
            publication_names: vec!["p1".into(), "we\"ird'pub".into()],
            streaming: true,
            messages: true,
            ..Default::default()
        };
        assert_eq!(
            start_replication_command("s", Lsn(0x1_0000_0010), &opts).unwrap(),
            "START_REPLICATION SLOT \"s\" LOGICAL 1/10 (proto_version '2', publication_names \
             '\"p1\",\"we\"\"ird''pub\"', streaming 'on', messages 'true')"
        );
        let bad =
            StartReplicationOptions { publication_names: vec!["p".into()], streaming: true, ..Default::default() };
        assert!(start_replication_command("s", Lsn(0), &bad).is_err());
        assert!(start_replication_command("s", Lsn(0), &StartReplicationOptions::default()).is_err());
        assert_eq!(major_version("15.4 (Debian 15.4-1.pgdg120+1)"), Some(15));
        assert_eq!(major_version("16beta1"), Some(16));
    }
}
