//! The way back from a PostgreSQL target: the forward pipeline with the
//! two databases swapped. The target is read with the same replication
//! client and pgoutput decoder (`source/postgres/`), through its own
//! publication and slot, and applied to the original source by the same
//! writer the forward stream uses for a PostgreSQL target.
//!
//! - **Start** (invariant *reverse start*): `start_reverse` (or
//!   `--set-start-here`) creates on the target the publication of the
//!   planned tables, then the slot `<slot>_reverse`; the slot's consistent
//!   point is the exact switch point (the source frozen, the target caught
//!   up). On the original source it records that point as the applied
//!   position of `<slot>_reverse` and every planned table as copied at it,
//!   so the swapped pipeline copies nothing and streams from there.
//! - **No loop**: the forward stream must be stopped (checked, as for
//!   MariaDB); its writes on the target all precede the slot, and the
//!   reverse publication names only the planned tables (xdb's state tables
//!   on the target are not in it).
//! - **Exactly once**, **commit order**, **bounded memory**, restarts and
//!   kill -9: the forward stream's own guarantees, position stored on the
//!   original source in `xdb.state` under `<slot>_reverse`.

use super::reverse::ReverseError;
use crate::check::CheckSection;
use crate::model::{Lsn, TableName};
use crate::pg_conn::client;
use crate::plan::naming::Naming;
use crate::plan::{Mapping, Plan, TargetUrl};
use crate::sink::TargetConn;
use crate::source::postgres::replication::{ReplicationClient, SnapshotAction};

/// The slot on the target (and the state key on the source).
pub fn slot(plan: &Plan) -> String {
    format!("{}_reverse", plan.source.slot)
}

/// The publication on the target.
pub fn publication(plan: &Plan) -> String {
    format!("{}_reverse", plan.source.publication)
}

/// The plan of the way back: the target as the source, the original
/// source as a PostgreSQL target. Its tables are the forward plan's as the
/// target names them (same schema; `mapping.target_names` may rename a
/// table), and its own `target_names` take each back to the original's
/// name — the swapped plan carries its names, the forward plan's are not
/// consulted.
pub fn reversed(plan: &Plan) -> Option<Plan> {
    let TargetUrl::Postgres(target) = &plan.target.url else { return None };
    let naming = Naming::of_plan(plan);
    let there = |t: &TableName| TableName::new(t.schema.clone(), naming.target_table_name(t));
    let mut r = plan.clone();
    r.source.url = target.clone();
    r.source.slot = slot(plan);
    r.source.publication = publication(plan);
    r.target.url = TargetUrl::Postgres(plan.source.url.clone());
    r.tables = plan.tables.iter().map(there).collect();
    r.only_tables = plan.only_tables.iter().map(there).collect();
    r.mapping = Mapping {
        target_names: plan
            .tables
            .iter()
            .filter(|t| there(t) != **t)
            .map(|t| (there(t).pg_quoted(), t.name.clone()))
            .collect(),
        ..Default::default()
    };
    Some(r)
}

/// `mapping.generated: source` made the original source's stored generated
/// columns plain columns of the target. The original source computes them
/// and refuses a value for them (SQLSTATE 428C9), so no change of those
/// tables could come back: named, with the fix, before anything starts.
/// `None` when the way back can write every column.
async fn generated_moved_as_plain(
    plan: &Plan,
    source: &tokio_postgres::Client,
) -> Result<Option<(String, String)>, tokio_postgres::Error> {
    if plan.mapping.generated != crate::plan::GeneratedFrom::Source {
        return Ok(None);
    }
    let tables: Vec<String> = plan.tables.iter().map(|t| t.pg_quoted()).collect();
    let rows = source
        .query(
            "SELECT format('%s.%s.%s', n.nspname, c.relname, a.attname) FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE a.attrelid IN (SELECT to_regclass(x) FROM unnest($1::text[]) x) \
               AND a.attgenerated = 's' AND NOT a.attisdropped ORDER BY 1",
            &[&tables],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let columns = rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join(", ");
    Ok(Some((
        format!(
            "mapping.generated: source moved the original source's stored generated column(s) {columns} to the \
             target as plain columns; the original source computes them and refuses a value for them, so the way \
             back could not apply a single change of those tables"
        ),
        "a PostgreSQL target computes generated columns itself: move with mapping.generated: target (the default), \
         where the way back leaves them to the original source"
            .to_string(),
    )))
}

async fn refuse_generated_moved_as_plain(plan: &Plan, source: &tokio_postgres::Client) -> Result<(), ReverseError> {
    match generated_moved_as_plain(plan, source).await {
        Ok(None) => Ok(()),
        Ok(Some((what, fix))) => Err(ReverseError::Refused(format!("{what}. To go on: {fix}"))),
        Err(source) => {
            Err(ReverseError::Source { context: "reading the original source's generated columns".into(), source })
        }
    }
}

fn refused(what: &str, e: impl std::fmt::Display) -> ReverseError {
    ReverseError::Refused(format!("{what}: {e}"))
}

/// Creates the publication and the slot on the target at the switch point
/// and records it on the original source. Returns the consistent point.
pub async fn record_switch_point(plan: &Plan) -> Result<Lsn, ReverseError> {
    let r = reversed(plan).ok_or_else(|| ReverseError::Refused("not a PostgreSQL target".into()))?;
    let original = client::connect(&plan.source.url, "xdb start_reverse").await?;
    refuse_generated_moved_as_plain(plan, &original).await?;
    let target = client::connect(&r.source.url, "xdb start_reverse").await?;
    crate::source::postgres::publication::ensure(
        &target,
        &r.source.publication,
        &r.tables,
        &r.only_tables,
        r.mapping.generated,
    )
    .await
    .map_err(|e| refused("creating the reverse publication on the target", e))?;
    // A new start replaces an older one: its slot, if any, goes first.
    let old = target
        .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&r.source.slot])
        .await
        .map_err(|source| ReverseError::Source { context: "target: reading pg_replication_slots".into(), source })?;
    if let Some(row) = old {
        if row.get::<_, bool>(0) {
            return Err(ReverseError::Refused(format!(
                "slot {} on the target is in use: stop `xdb sync --reverse` first",
                r.source.slot
            )));
        }
        target.execute("SELECT pg_drop_replication_slot($1)", &[&r.source.slot]).await.map_err(|source| {
            ReverseError::Source { context: "target: dropping the older reverse slot".into(), source }
        })?;
    }
    let mut repl = ReplicationClient::connect_url(&r.source.url, "xdb start_reverse")
        .await
        .map_err(|e| refused("target: the replication connection", e))?;
    let created = repl
        .create_replication_slot(&r.source.slot, false, SnapshotAction::NoExport)
        .await
        .map_err(|e| refused("target: creating the reverse slot", e))?;
    let at = created.consistent_point;
    // The original source, as the reversed plan's target: the position and
    // every table as copied at the switch point.
    let mut source = TargetConn::connect(&r.target.url).await?;
    source.ensure_state_tables().await?;
    for sql in ["DELETE FROM xdb.state WHERE slot = $1", "DELETE FROM xdb.tables WHERE slot = $1"] {
        source
            .execute_params(
                sql,
                &[crate::sink::StateParam::Text(r.source.slot.clone())],
                "forgetting an older reverse start",
            )
            .await?;
    }
    source.record_position(&r.source.slot, at, at).await?;
    for t in &r.tables {
        source.record_table(&r.source.slot, &t.to_string(), at, true, 0).await?;
    }
    tracing::info!(slot = %r.source.slot, consistent_point = %at, "the way back starts here");
    Ok(at)
}

/// `sync --reverse` from a PostgreSQL target: the forward stream, swapped.
pub async fn run(plan: &Plan, options: &super::reverse::ReverseOptions) -> Result<(), ReverseError> {
    let r = reversed(plan).ok_or_else(|| ReverseError::Refused("not a PostgreSQL target".into()))?;
    let pg = client::connect(&plan.source.url, "xdb sync --reverse").await?;
    let started: Option<tokio_postgres::Row> = pg
        .query_opt("SELECT 1 FROM xdb.tables WHERE slot = $1 LIMIT 1", &[&r.source.slot])
        .await
        .or_else(
            |e| if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) { Ok(None) } else { Err(e) },
        )
        .map_err(|source| ReverseError::Source { context: "reading the reverse start".into(), source })?;
    if started.is_none() {
        return Err(super::reverse::no_start(plan));
    }
    super::reverse::forward_stopped(plan, &pg).await?;
    refuse_generated_moved_as_plain(plan, &pg).await?;
    let sync_options = super::sync::SyncOptions {
        copy: Default::default(),
        until_caught_up: options.until_caught_up,
        max_retries: options.max_retries,
        accept_slot_position: false,
    };
    Box::pin(super::sync::run(&r, &sync_options, Default::default()))
        .await
        .map_err(|e| ReverseError::Refused(format!("the way back (target → original source): {e}")))
}

/// `check --reverse` for a PostgreSQL target: logical decoding on, and a
/// login that may create the slot and the publication.
pub async fn check(plan: &Plan, s: &mut CheckSection) {
    let Some(r) = reversed(plan) else { return };
    let target = match client::connect(&r.source.url, "xdb check --reverse").await {
        Ok(c) => c,
        Err(e) => {
            return s.fail(format!("cannot connect to the target: {e}"), "fix the target URL or start the server")
        }
    };
    let one = |sql: &'static str| {
        let t = &target;
        async move { t.query_one(sql, &[]).await.ok().and_then(|r| r.get::<_, Option<String>>(0)) }
    };
    match one("SELECT current_setting('wal_level')").await.as_deref() {
        Some("logical") => s.pass("the target has wal_level = logical"),
        other => s.fail(
            format!("the target has wal_level = {} (its changes cannot be decoded)", other.unwrap_or("unknown")),
            "ALTER SYSTEM SET wal_level = logical; then restart the target",
        ),
    }
    let role = one("SELECT current_user::text").await.unwrap_or_default();
    let may = one("SELECT (rolsuper OR rolreplication)::text FROM pg_roles WHERE rolname = current_user").await;
    if may.as_deref() == Some("true") {
        s.pass(format!("{role} may create the reverse slot (REPLICATION)"));
    } else {
        s.fail(
            format!("{role} lacks REPLICATION on the target (the reverse slot cannot be made)"),
            format!("ALTER ROLE \"{role}\" REPLICATION;"),
        );
    }
    let slots = one(
        "SELECT (current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots))::text",
    )
    .await;
    match slots.and_then(|v| v.parse::<i64>().ok()) {
        Some(n) if n > 0 => s.pass(format!("the target has {n} free replication slot(s)")),
        _ => s.fail("the target has no free replication slot", "raise max_replication_slots and restart the target"),
    }
    match client::connect(&plan.source.url, "xdb check --reverse").await {
        Ok(original) => match generated_moved_as_plain(plan, &original).await {
            Ok(None) => {}
            Ok(Some((what, fix))) => s.fail(what, fix),
            Err(e) => s.warn(
                format!(
                    "cannot read the original source's generated columns: {}",
                    crate::error_policy::pg_error_text(&e)
                ),
                "check the source connection",
            ),
        },
        Err(e) => {
            s.fail(format!("cannot connect to the original source: {e}"), "fix the source URL or start the server")
        }
    }
    match slot_state(plan).await {
        Ok(Some(_)) => s.pass(format!("reverse start recorded: slot {} exists on the target", r.source.slot)),
        Ok(None) => s.info(
            "no reverse start recorded yet: the cutover's start_reverse step (or `xdb sync --reverse --set-start-here`) creates the slot",
        ),
        Err(e) => s.warn(format!("cannot read the target's slots: {e}"), "check the target connection"),
    }
}

/// `status --reverse` for a PostgreSQL target: the reverse slot on the
/// target, what the original source applied, the lag and the WAL the slot
/// retains.
pub async fn status(plan: &Plan) -> Result<String, ReverseError> {
    use std::fmt::Write as _;
    let r = reversed(plan).ok_or_else(|| ReverseError::Refused("not a PostgreSQL target".into()))?;
    let mut out = String::new();
    let target = client::connect(&r.source.url, "xdb status --reverse").await?;
    let row = target
        .query_opt(
            "SELECT active, confirmed_flush_lsn::text, pg_current_wal_lsn()::text, \
             pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
            &[&r.source.slot],
        )
        .await
        .map_err(|source| ReverseError::Source { context: "target: reading pg_replication_slots".into(), source })?;
    let Some(row) = row else {
        return Ok(format!(
            "reverse: no slot {} on the target (cutover step start_reverse, or sync --reverse --set-start-here)\n",
            r.source.slot
        ));
    };
    let mut source = TargetConn::connect(&r.target.url).await?;
    let applied = source.read_position(&r.source.slot).await?;
    let end: String = row.get(2);
    let _ = writeln!(
        out,
        "reverse slot:    {} on the target ({})",
        r.source.slot,
        if row.get(0) { "active" } else { "inactive" }
    );
    let applied_lsn = applied.map(|p| p.applied_lsn).unwrap_or(Lsn::ZERO);
    let _ = writeln!(out, "applied:         {applied_lsn}");
    let _ = writeln!(out, "target WAL:      {end}");
    let end_lsn: Lsn = end.parse().unwrap_or(Lsn::ZERO);
    let _ = writeln!(out, "lag:             {} bytes of WAL", end_lsn.0.saturating_sub(applied_lsn.0));
    let _ = writeln!(out, "retained:        {} bytes of WAL", row.get::<_, Option<i64>>(3).unwrap_or(0));
    Ok(out)
}

/// For `xdb cleanup`: whether the reverse slot exists on the target, and
/// whether it is in use (None: not a PostgreSQL target, or no slot).
pub async fn slot_state(plan: &Plan) -> Result<Option<bool>, tokio_postgres::Error> {
    let Some(r) = reversed(plan) else { return Ok(None) };
    let Ok(target) = client::connect(&r.source.url, "xdb cleanup").await else { return Ok(None) };
    let row =
        target.query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&r.source.slot]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// For `xdb cleanup`: drops the reverse slot and publication on the target
/// and forgets the reverse position and table states on the source.
pub async fn cleanup(plan: &Plan, source: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    let Some(r) = reversed(plan) else { return Ok(()) };
    if let Ok(target) = client::connect(&r.source.url, "xdb cleanup").await {
        target
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&r.source.slot],
            )
            .await?;
        target
            .batch_execute(&format!("DROP PUBLICATION IF EXISTS \"{}\"", r.source.publication.replace('"', "\"\"")))
            .await?;
    }
    for sql in ["DELETE FROM xdb.state WHERE slot = $1", "DELETE FROM xdb.tables WHERE slot = $1"] {
        match source.execute(sql, &[&r.source.slot]).await {
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {}
            r => {
                r?;
            }
        }
    }
    Ok(())
}
