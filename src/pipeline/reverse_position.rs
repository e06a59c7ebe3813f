//! Where the way back resumes (invariants *reverse start*, *exactly once*).
//!
//! With every source transaction the reverse stream commits, it records in
//! `xdb.reverse_position` the binlog file and offset after the last target
//! transaction applied, the GTID position there (MariaDB
//! `domain-server-seq` per domain, MySQL GTID set) and which server it read
//! them from. On restart:
//!
//! - the same server, the file still there: the dump resumes at file:offset
//!   (exact, and cheap: a MariaDB GTID start scans the binlog file for its
//!   place);
//! - the file purged, or another server (a failover: file names and
//!   offsets of one server mean nothing on another): the dump resumes at
//!   the GTID position, and the server finds the place itself;
//! - neither possible (no GTIDs recorded): a refusal saying so, never a
//!   guess.
//!
//! The writer's ordered position (`xdb.state`, file sequence << 32 |
//! offset) only grows along one server's binlog: after a failover it is
//! reset, since the new server's file numbers start elsewhere.

use super::reverse::ReverseError;
use crate::sink::StateParam;
use crate::source::mysql::gtid::GtidState;
use crate::source::mysql::position::{file_number, BinlogPosition};

pub const DDL: &str = "CREATE SCHEMA IF NOT EXISTS xdb; CREATE TABLE IF NOT EXISTS xdb.reverse_position (\
     slot text PRIMARY KEY, binlog_file text NOT NULL, binlog_pos bigint NOT NULL, gtid text, server text, \
     updated_at timestamptz NOT NULL DEFAULT now())";

/// A position read on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub position: BinlogPosition,
    /// `server_id N` (MariaDB) or the server UUID (MySQL); None when
    /// recorded before xdb kept it.
    pub server: Option<String>,
}

/// The statement and parameters that record `p` with the applied position
/// (`SinkWriter::set_position_companion`).
pub fn companion(key: &str, p: &BinlogPosition, server: &str) -> (String, Vec<StateParam>) {
    let sql = "INSERT INTO xdb.reverse_position (slot, binlog_file, binlog_pos, gtid, server, updated_at) \
               VALUES ($1, $2, $3, NULLIF($4, ''), $5, now()) ON CONFLICT (slot) DO UPDATE SET \
               binlog_file = excluded.binlog_file, binlog_pos = excluded.binlog_pos, gtid = excluded.gtid, \
               server = excluded.server, updated_at = excluded.updated_at";
    let gtid = p.gtid.as_ref().map(|g| g.to_string()).unwrap_or_default();
    let params = vec![
        StateParam::Text(key.into()),
        StateParam::Text(p.file.clone()),
        StateParam::I64(p.pos as i64),
        StateParam::Text(gtid),
        StateParam::Text(server.into()),
    ];
    (sql.into(), params)
}

/// The recorded position of `key`, if any.
pub async fn read(pg: &tokio_postgres::Client, key: &str) -> Result<Option<Recorded>, ReverseError> {
    read_from(pg, "xdb.reverse_position", key).await
}

/// A recorded binlog position (`xdb.reverse_position`, or the switch point
/// in `xdb.reverse_start`) of `key`; `None` when there is none or no table yet.
pub async fn read_from(pg: &tokio_postgres::Client, table: &str, key: &str) -> Result<Option<Recorded>, ReverseError> {
    let sql = format!("SELECT binlog_file, binlog_pos, gtid, server FROM {table} WHERE slot = $1");
    match pg.query_opt(sql.as_str(), &[&key]).await {
        Ok(r) => Ok(r.map(|r| Recorded {
            position: BinlogPosition {
                file: r.get(0),
                pos: r.get::<_, i64>(1) as u64,
                gtid: r.get::<_, Option<String>>(2).as_deref().and_then(GtidState::parse),
            },
            server: r.get(3),
        })),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(source) => Err(ReverseError::Source { context: format!("reading {table}"), source }),
    }
}

/// How to start the binlog dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// At the recorded file and offset.
    FilePos,
    /// At the recorded GTID position; `failover` when another server.
    Gtid { failover: bool },
}

/// Decides how to resume from `at`, read on `at.server`, on the server
/// `here` that retains `logs` (pure: the rules of the module doc).
pub fn decide(at: &Recorded, here: &str, logs: &[(String, u64)]) -> Result<Resume, String> {
    let other_server = at.server.as_deref().is_some_and(|s| s != here);
    let retained = logs.iter().any(|(f, _)| f == &at.position.file);
    if !other_server && retained {
        return Ok(Resume::FilePos);
    }
    if at.position.gtid.is_some() {
        return Ok(Resume::Gtid { failover: other_server });
    }
    let why = if other_server {
        format!(
            "the target is another server ({here}) than the one the position {} was read on ({})",
            at.position,
            at.server.as_deref().unwrap_or_default()
        )
    } else {
        let oldest = logs.first().map(|(f, _)| f.as_str()).unwrap_or("none");
        let purged = file_number(oldest) > file_number(&at.position.file);
        format!(
            "the target no longer has binlog {} ({}; its oldest is {oldest})",
            at.position.file,
            if purged { "purged" } else { "not in SHOW BINARY LOGS" }
        )
    };
    Err(format!(
        "{why}, and no GTID position was recorded: the way back cannot tell where to resume. Changes made on the \
         target since then can only be brought back by comparing: `xdb validate --plan P` lists them"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: &str, gtid: Option<&str>, server: Option<&str>) -> Recorded {
        Recorded {
            position: BinlogPosition { file: file.into(), pos: 400, gtid: gtid.and_then(GtidState::parse) },
            server: server.map(Into::into),
        }
    }

    #[test]
    fn file_offset_on_the_same_server_gtid_after_purge_or_failover() {
        let logs = vec![("binlog.000003".to_string(), 100), ("binlog.000004".to_string(), 100)];
        let here = "server_id 1";
        assert_eq!(decide(&at("binlog.000003", Some("0-1-9"), Some(here)), here, &logs), Ok(Resume::FilePos));
        assert_eq!(decide(&at("binlog.000003", None, None), here, &logs), Ok(Resume::FilePos));
        assert_eq!(
            decide(&at("binlog.000002", Some("0-1-9"), Some(here)), here, &logs),
            Ok(Resume::Gtid { failover: false })
        );
        assert_eq!(
            decide(&at("binlog.000003", Some("0-1-9"), Some("server_id 2")), here, &logs),
            Ok(Resume::Gtid { failover: true })
        );
        let e = decide(&at("binlog.000002", None, Some(here)), here, &logs).unwrap_err();
        assert!(e.contains("no longer has binlog binlog.000002 (purged; its oldest is binlog.000003)"), "{e}");
        let e = decide(&at("binlog.000003", None, Some("server_id 2")), here, &logs).unwrap_err();
        assert!(e.contains("another server (server_id 1)"), "{e}");
    }
}
