//! `xdb status --reverse`: where the way back is. The recorded start, the
//! applied position (with its MariaDB GTID), the target's binlog end, the
//! lag in bytes and seconds, and the binlogs the target retains.

use std::fmt::Write as _;

use mysql_async::prelude::Queryable;

use super::reverse::{position_key, read_start, unsupported_target, ReverseError};
use super::reverse_position;
use crate::pg_conn::client;
use crate::plan::{Plan, TargetUrl};
use crate::sink::TargetConn;
use crate::source::mysql::binlog_stream::{binary_logs, current_position, gtid_position_at, server_identity};
use crate::source::mysql::position::{file_number, BinlogPosition};

/// Where the way back stands on the target's binlog.
struct Located {
    conn: mysql_async::Conn,
    label: String,
    /// The position of the last applied transaction (the start before any).
    applied_pos: BinlogPosition,
    applied: Option<crate::sink::AppliedPosition>,
    /// The target's binlog end, and the server it was read on.
    end: BinlogPosition,
    here: String,
    /// The server the applied position was read on, when recorded.
    read_on: Option<String>,
}

impl Located {
    /// Read on another server than the one the target is now: a failover.
    fn other_server(&self) -> bool {
        self.read_on.as_deref().is_some_and(|s| s != self.here)
    }
}

/// The status as text lines: the positions, then the lag and what the
/// target retains, then warnings about retention.
pub async fn report(plan: &Plan) -> Result<String, ReverseError> {
    if let Some(why) = unsupported_target(plan) {
        return Err(ReverseError::Refused(why.into()));
    }
    if matches!(plan.target.url, TargetUrl::Postgres(_)) {
        return super::reverse_pg::status(plan).await;
    }
    let mut out = String::new();
    let pg = client::connect(&plan.source.url, "xdb status --reverse").await?;
    let Some(start) = read_start(plan, &pg).await? else {
        return Ok(
            "reverse: no start recorded (cutover step start_reverse, or sync --reverse --set-start-here)\n".into()
        );
    };
    let _ = writeln!(out, "reverse start:   {start}");
    let mut at = locate(plan, &pg, &start).await?;
    let _ = writeln!(out, "applied:         {}", at.applied_pos);
    let _ = writeln!(out, "target binlog:   {} on {}", at.end, at.here);
    if at.other_server() {
        let _ = writeln!(
            out,
            "NOTE: the applied position was read on another server ({}): a failover; sync --reverse resumes there at the GTID position",
            at.read_on.clone().unwrap_or_default()
        );
    }
    lag_and_retention(&mut at, &mut out).await?;
    Ok(out)
}

/// The applied position (with its MariaDB GTID when it can be found) and
/// the target's binlog end.
async fn locate(plan: &Plan, pg: &tokio_postgres::Client, start: &BinlogPosition) -> Result<Located, ReverseError> {
    let mut source = TargetConn::connect(&TargetUrl::Postgres(plan.source.url.clone())).await?;
    // Before the first `sync --reverse` the state table may not exist yet.
    let has_state: bool = pg
        .query_one("SELECT to_regclass('xdb.state') IS NOT NULL", &[])
        .await
        .map_err(|source| ReverseError::Source { context: "looking for xdb.state".into(), source })?
        .get(0);
    let applied = if has_state { source.read_position(&position_key(plan)).await? } else { None };
    let t = TargetConn::connect(&plan.target.url).await?;
    let label = t.label();
    let TargetConn::Mysql(crate::sink::mysql::MysqlConn { mut conn, mariadb, .. }) = t else {
        unreachable!("checked by unsupported_target")
    };
    let end = current_position(&mut conn, &label).await?;
    let here = server_identity(&mut conn, mariadb, &label).await?;
    // The position recorded with the last applied transaction (file,
    // offset, GTID position, server); before any: the start.
    let recorded = reverse_position::read(pg, &position_key(plan)).await?;
    let mut applied_pos = match (&recorded, &applied) {
        (Some(r), _) => r.position.clone(),
        (None, Some(p)) => BinlogPosition::from_ordinal(p.applied_lsn, &start.file).unwrap_or(start.clone()),
        (None, None) => start.clone(),
    };
    let read_on = recorded.as_ref().and_then(|r| r.server.clone());
    let other_server = read_on.as_deref().is_some_and(|s| s != here);
    if applied_pos.gtid.is_none() && mariadb && !other_server {
        applied_pos.gtid = gtid_position_at(&mut conn, &applied_pos.file, applied_pos.pos).await;
    }
    Ok(Located { conn, label, applied_pos, applied, end, here, read_on })
}

/// The lag in bytes and seconds, the binlogs retained and their expiry,
/// and a warning when the unapplied part is gone or may soon be.
async fn lag_and_retention(at: &mut Located, out: &mut String) -> Result<(), ReverseError> {
    let gtid = at.applied_pos.gtid.as_ref().map(|g| g.to_string());
    let other_server = at.other_server();
    // Binlog files with sizes: the lag in bytes and what is retained.
    let logs = binary_logs(&mut at.conn, &at.label).await?;
    // After the last commit the binlog may hold events of no transaction
    // (a binlog checkpoint after a rotation): the same GTID position on
    // both sides means every transaction is applied.
    let end_gtids = at.end.gtid.as_ref().map(|g| g.to_string());
    let all_applied = gtid.is_some() && gtid == end_gtids;
    let lag = if all_applied || other_server { 0 } else { bytes_between(&logs, &at.applied_pos, &at.end) };
    let behind_s = match &at.applied {
        Some(p) if lag > 0 => Some((chrono::Utc::now().timestamp_micros() - p.applied_commit_time_us) as f64 / 1e6),
        _ => None,
    };
    let behind = behind_s.map(|s| format!(", last applied commit {s:.1} s ago")).unwrap_or_default();
    let _ = writeln!(out, "lag:             {lag} bytes of binlog{behind}");
    let total: u64 = logs.iter().map(|(_, s)| s).sum();
    let _ = writeln!(out, "retained:        {} binlog file(s), {total} bytes", logs.len());
    let expiry = expiry_seconds(&mut at.conn).await;
    match expiry {
        Some(e) => {
            let _ = writeln!(out, "binlog expiry:   {e:.0} s");
        }
        None => {
            let _ = writeln!(out, "binlog expiry:   none (kept until purged)");
        }
    }
    if !other_server {
        if let Some((first, _)) = logs.first() {
            if file_number(first) > file_number(&at.applied_pos.file) {
                let how = if gtid.is_some() {
                    "sync --reverse resumes at the GTID position, as long as the unapplied transactions are still there"
                } else {
                    "no GTID position is recorded: the way back lost its place"
                };
                let _ = writeln!(
                    out,
                    "WARNING: the target no longer has {} (oldest is {first}): {how}",
                    at.applied_pos.file
                );
            }
        }
    }
    if let (Some(e), Some(b)) = (expiry, behind_s) {
        if b > e / 2.0 {
            let _ = writeln!(
                out,
                "WARNING: the way back is {b:.0} s behind and the target's binlogs expire after {e:.0} s: catch up \
                 (xdb sync --reverse) or keep them longer (SET GLOBAL binlog_expire_logs_seconds = …)"
            );
        }
    }
    Ok(())
}

/// The target's binlog expiry in seconds (None: kept until purged).
pub async fn expiry_seconds(conn: &mut mysql_async::Conn) -> Option<f64> {
    let mut get = async |name: &str| -> Option<f64> {
        let v: Option<Option<String>> = conn.query_first(format!("SELECT @@GLOBAL.{name}")).await.ok().flatten();
        v.flatten().and_then(|v| v.parse::<f64>().ok()).filter(|v| *v > 0.0)
    };
    match get("binlog_expire_logs_seconds").await {
        Some(s) => Some(s),
        None => get("expire_logs_days").await.map(|d| d * 86_400.0),
    }
}

/// Binlog bytes from `from` to `to`, given the files and their sizes.
fn bytes_between(logs: &[(String, u64)], from: &BinlogPosition, to: &BinlogPosition) -> u64 {
    let (Some(a), Some(b)) = (file_number(&from.file), file_number(&to.file)) else { return 0 };
    if a == b {
        return to.pos.saturating_sub(from.pos);
    }
    let mut total = 0;
    for (name, size) in logs {
        match file_number(name) {
            Some(n) if n == a => total += size.saturating_sub(from.pos),
            Some(n) if n > a && n < b => total += size,
            Some(n) if n == b => total += to.pos,
            _ => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_spans_files() {
        let p = |f: &str, pos| BinlogPosition { file: f.into(), pos, gtid: None };
        let logs = vec![("b.000001".to_string(), 1000), ("b.000002".to_string(), 500), ("b.000003".to_string(), 70)];
        assert_eq!(bytes_between(&logs, &p("b.000001", 900), &p("b.000003", 70)), 100 + 500 + 70);
        assert_eq!(bytes_between(&logs, &p("b.000003", 20), &p("b.000003", 70)), 50);
    }
}
