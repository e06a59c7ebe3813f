//! Invariant *slot continuity*, checked ahead of `sync`: the slot must
//! still hold every change after the position stored on the target. A slot
//! that is gone, or that another reader (a second plan naming the same
//! slot, `pg_replication_slot_advance`) moved past the target, would make
//! `sync` refuse; `check` says so first, with both positions.

use super::report::CheckSection;
use crate::model::Lsn;
use crate::pg_conn::client;
use crate::plan::{Plan, TargetUrl};
use crate::sink::TargetConn;

pub(super) async fn check(plan: &Plan) -> CheckSection {
    let mut s = CheckSection::new("Stream continuity");
    let slot = &plan.source.slot;
    // Reading only: a SQLite file that does not exist yet has no position
    // (and connecting would create it).
    if let TargetUrl::Sqlite(path) = &plan.target.url {
        if !path.exists() {
            s.pass("no stream position on the target yet: the first run copies, then streams");
            return s;
        }
    }
    if plan.source.log.is_some() {
        s.info("the position is the log's stream sequence stored on the target: `sync` reads on from there");
        return s;
    }
    if let TargetUrl::Nats(_) = &plan.target.url {
        s.info("a log target keeps its position in the stream itself: `sync` resumes from its last message");
        return s;
    }
    let applied = match TargetConn::connect(&plan.target.url).await {
        // No state table yet reads as "no position".
        Ok(mut t) => t.read_position(slot).await.ok().flatten().map(|p| p.applied_lsn),
        Err(_) => {
            s.info("not checked: the target is unreachable (see above)");
            return s;
        }
    };
    let Some(applied) = applied else {
        s.pass("no stream position on the target yet: the first run copies, then streams");
        return s;
    };
    let confirmed = match client::connect(&plan.source.url, "xdb check").await {
        Ok(c) => c
            .query_opt(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots \
                 WHERE slot_name = $1 AND database = current_database()",
                &[slot],
            )
            .await
            .map(|r| r.map(|r| r.get::<_, Option<String>>(0).and_then(|l| l.parse::<Lsn>().ok()))),
        Err(_) => {
            s.info("not checked: the source is unreachable (see above)");
            return s;
        }
    };
    let recopy = format!("xdb sync --plan {} --recopy", plan.file.display());
    match confirmed {
        Err(e) => s.info(format!("not checked: {}", crate::error_policy::pg_error_text(&e))),
        Ok(None) => s.fail(
            format!(
                "slot {slot} does not exist, but the target has applied changes up to {applied}: the changes \
                 since then went with the slot"
            ),
            format!("copy every table again from a new slot: {recopy}"),
        ),
        Ok(Some(Some(confirmed))) if confirmed > applied => s.fail(
            format!(
                "slot {slot} has confirmed changes up to {confirmed}, but the target has applied only up to \
                 {applied}: {} bytes of WAL were acknowledged by another reader and are gone for this target",
                confirmed.0 - applied.0
            ),
            format!(
                "{recopy}; or, if nothing the plan copies was written in between, \
                 xdb sync --plan {} --accept-slot-position",
                plan.file.display()
            ),
        ),
        Ok(Some(confirmed)) => s.pass(format!(
            "slot {slot} confirmed up to {}, target applied up to {applied}: streaming continues where the \
             target stopped",
            confirmed.map(|c| c.to_string()).unwrap_or_else(|| "?".into())
        )),
    }
    s
}
