//! `xdb status --reverse`: where the way back is. The recorded start, the
//! applied position (with its MariaDB GTID), the target's binlog end, the
//! lag in bytes and seconds, and the binlogs the target retains.

use std::fmt::Write as _;

use mysql_async::prelude::Queryable;

use super::reverse::{position_key, read_start, unsupported_target, ReverseError};
use crate::plan::{Plan, TargetUrl};
use crate::sink::TargetConn;
use crate::source::mysql::binlog_stream::current_position;
use crate::source::mysql::error::BinlogError;
use crate::source::mysql::position::{file_number, BinlogPosition};
use crate::source::postgres::client;

/// The status as text lines.
pub async fn report(plan: &Plan) -> Result<String, ReverseError> {
    if let Some(why) = unsupported_target(plan) {
        return Err(ReverseError::Refused(why.into()));
    }
    let mut out = String::new();
    let pg = client::connect(&plan.source.url, "xdb status --reverse").await?;
    let Some(start) = read_start(plan, &pg).await? else {
        return Ok(
            "reverse: no start recorded (cutover step start_reverse, or sync --reverse --set-start-here)\n".into()
        );
    };
    let _ = writeln!(out, "reverse start:   {start}");
    let mut source = TargetConn::connect(&TargetUrl::Postgres(plan.source.url.clone())).await?;
    let applied = source.read_position(&position_key(plan)).await?;
    let t = TargetConn::connect(&plan.target.url).await?;
    let label = t.label();
    let TargetConn::Mysql(crate::sink::mysql::MysqlConn { mut conn, mariadb, .. }) = t else {
        unreachable!("checked by unsupported_target")
    };
    let end = current_position(&mut conn, &label).await?;
    let applied_pos = match &applied {
        Some(p) => BinlogPosition::from_ordinal(p.applied_lsn, &start.file).unwrap_or(start.clone()),
        None => start.clone(),
    };
    let gtid: Option<String> = if mariadb {
        conn.exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, ?)", (&applied_pos.file, applied_pos.pos))
            .await
            .ok()
            .flatten()
            .flatten()
    } else {
        None
    };
    let _ = writeln!(
        out,
        "applied:         {}:{}{}",
        applied_pos.file,
        applied_pos.pos,
        gtid.as_deref().map(|g| format!(" (GTID {g})")).unwrap_or_default()
    );
    let _ = writeln!(out, "target binlog:   {end}");
    // Binlog files with sizes: the lag in bytes and what is retained.
    let logs: Vec<(String, u64)> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| BinlogError::driver(&label, "SHOW BINARY LOGS", e))?
        .into_iter()
        .map(|r: mysql_async::Row| (r.get::<String, _>(0).unwrap_or_default(), r.get::<u64, _>(1).unwrap_or(0)))
        .collect();
    // After the last commit the binlog may hold events of no transaction
    // (a binlog checkpoint after a rotation): on MariaDB, the same GTID
    // position on both sides means every transaction is applied.
    let end_gtids: Option<String> =
        if mariadb { conn.query_first("SELECT @@GLOBAL.gtid_binlog_pos").await.ok().flatten() } else { None };
    let all_applied = gtid.is_some() && gtid == end_gtids;
    let lag = if all_applied { 0 } else { bytes_between(&logs, &applied_pos, &end) };
    let behind = match &applied {
        Some(p) if lag > 0 => {
            format!(
                ", last applied commit {:.1} s ago",
                (chrono::Utc::now().timestamp_micros() - p.applied_commit_time_us) as f64 / 1e6
            )
        }
        _ => String::new(),
    };
    let _ = writeln!(out, "lag:             {lag} bytes of binlog{behind}");
    let total: u64 = logs.iter().map(|(_, s)| s).sum();
    let _ = writeln!(out, "retained:        {} binlog file(s), {total} bytes", logs.len());
    if let Some((first, _)) = logs.first() {
        if file_number(first) > file_number(&applied_pos.file) {
            let _ = writeln!(
                out,
                "WARNING: the target no longer has {} (oldest is {first}): the way back lost its place",
                applied_pos.file
            );
        }
    }
    Ok(out)
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
