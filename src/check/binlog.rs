//! What reading a MySQL/MariaDB binlog back needs, each with its fix
//! (`xdb check --reverse`): the binary log on, row-based, full row images,
//! kept long enough, and the replication privileges.

use mysql_async::prelude::Queryable;

use super::CheckSection;

async fn var(conn: &mut mysql_async::Conn, name: &str) -> Option<String> {
    let sql = format!("SELECT @@GLOBAL.{name}");
    // An unknown variable (another server version) reads as absent.
    conn.query_first::<Option<String>, _>(sql).await.ok().flatten().flatten()
}

/// Adds one item per requirement to `out`: the binlog's format, its
/// retention, GTIDs, then the user's privileges.
pub async fn binlog_settings(conn: &mut mysql_async::Conn, mariadb: bool, out: &mut CheckSection) {
    binlog_format(conn, out).await;
    retention(conn, out).await;
    gtids(conn, mariadb, out).await;
    privileges(conn, mariadb, out).await;
}

/// On, row-based, full row images.
async fn binlog_format(conn: &mut mysql_async::Conn, out: &mut CheckSection) {
    let restart = "in the server's configuration ([mysqld] section) and restart it";
    match var(conn, "log_bin").await.as_deref() {
        Some("1") | Some("ON") => out.pass("log_bin is on"),
        other => out.fail(
            format!("log_bin is {} (no binary log: no change can be read back)", other.unwrap_or("unknown")),
            format!("set `log_bin = mysql-bin` and `server_id = 1` {restart}"),
        ),
    }
    match var(conn, "binlog_format").await {
        Some(f) if f.eq_ignore_ascii_case("ROW") => out.pass("binlog_format = ROW"),
        other => out.fail(
            format!("binlog_format is {} (statements cannot be mapped back row by row)", other.unwrap_or_default()),
            format!("SET GLOBAL binlog_format = 'ROW'; and `binlog_format = ROW` {restart}"),
        ),
    }
    match var(conn, "binlog_row_image").await {
        Some(f) if f.eq_ignore_ascii_case("FULL") => out.pass("binlog_row_image = FULL"),
        other => out.fail(
            format!(
                "binlog_row_image is {} (rows would lack the columns not changed)",
                other.unwrap_or_else(|| "unknown".into())
            ),
            format!("SET GLOBAL binlog_row_image = 'FULL'; and `binlog_row_image = FULL` {restart}"),
        ),
    }
}

async fn retention(conn: &mut mysql_async::Conn, out: &mut CheckSection) {
    let seconds = var(conn, "binlog_expire_logs_seconds").await.and_then(|v| v.parse::<f64>().ok());
    let days = var(conn, "expire_logs_days").await.and_then(|v| v.parse::<f64>().ok());
    let retention = match (seconds, days) {
        (Some(s), _) if s > 0.0 => Some(s),
        (_, Some(d)) if d > 0.0 => Some(d * 86_400.0),
        _ => None,
    };
    let fix = "SET GLOBAL binlog_expire_logs_seconds = 604800; (7 days, and in the configuration)";
    match retention {
        None => out.pass("binlogs are kept until purged (no expiry): watch the disk"),
        Some(s) if s < 86_400.0 => {
            out.warn(format!("binlogs expire after {:.0} s: a reverse stream stopped longer loses its place", s), fix)
        }
        Some(s) => out.pass(format!("binlogs are kept {:.1} days", s / 86_400.0)),
    }
}

/// Where file:offset means nothing any more (the file purged, a failover
/// to another server), the way back resumes by its GTID.
async fn gtids(conn: &mut mysql_async::Conn, mariadb: bool, out: &mut CheckSection) {
    if mariadb {
        out.pass("GTIDs: MariaDB logs them always (the way back resumes by GTID after a purge or a failover)");
    } else {
        match var(conn, "gtid_mode").await.as_deref() {
            Some(m) if m.eq_ignore_ascii_case("ON") => out.pass("gtid_mode = ON (the way back resumes by GTID after a purge or a failover)"),
            other => out.warn(
                format!(
                    "gtid_mode is {}: positions are file:offset only, and once the file is purged or the target fails \
                     over the way back cannot resume",
                    other.unwrap_or("unknown")
                ),
                "SET GLOBAL enforce_gtid_consistency = ON; then gtid_mode = OFF_PERMISSIVE, ON_PERMISSIVE, ON (one step at a time), and in the configuration",
            ),
        }
    }
}

/// REPLICATION SLAVE for the dump, a monitor privilege for the position.
async fn privileges(conn: &mut mysql_async::Conn, mariadb: bool, out: &mut CheckSection) {
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.unwrap_or_default();
    let all = grants.join("\n").to_ascii_uppercase();
    let has = |p: &str| all.contains("ALL PRIVILEGES ON *.*") || all.contains(p);
    let user: String = conn.query_first("SELECT CURRENT_USER()").await.ok().flatten().unwrap_or_default();
    let grantee = match user.split_once('@') {
        Some((u, h)) => format!("'{u}'@'{h}'"),
        None => format!("'{user}'"),
    };
    if has("REPLICATION SLAVE") || has("REPLICATION REPLICA") {
        out.pass("the target user may read the binlog (REPLICATION SLAVE)");
    } else {
        out.fail(
            format!("{grantee} lacks REPLICATION SLAVE (the binlog dump is refused)"),
            format!("GRANT REPLICATION SLAVE ON *.* TO {grantee};"),
        );
    }
    let monitor = if mariadb { "BINLOG MONITOR" } else { "REPLICATION CLIENT" };
    if has(monitor) || has("REPLICATION CLIENT") || has("SUPER") {
        out.pass(format!("the target user may read the binlog position ({monitor})"));
    } else {
        out.fail(
            format!("{grantee} lacks {monitor} (SHOW MASTER STATUS, needed for the switch point)"),
            format!("GRANT {monitor} ON *.* TO {grantee};"),
        );
    }
}
