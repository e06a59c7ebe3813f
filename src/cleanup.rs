//! `xdb cleanup`: removes what xdb left on the servers for a plan — the
//! replication slot (so the source stops retaining WAL), the publication if
//! xdb created it, and xdb's state rows on the target. The replicated data
//! itself is never touched. Refuses while a sync is streaming from the slot.

use crate::pg_conn::client;
use crate::plan::{Plan, TargetUrl};
use crate::sink::state;
use crate::sink::{TargetConn, TargetError};
use crate::source::postgres::publication;

/// What cleanup would do (or did).
#[derive(Debug, Clone, Default)]
pub struct CleanupPlan {
    pub drop_slot: bool,
    pub drop_publication: bool,
    /// The publication exists but was not created by xdb: kept.
    pub keep_publication: bool,
    pub clear_target_state: bool,
    /// The way back left its start and applied position on the source.
    pub clear_reverse_state: bool,
    /// A PostgreSQL target holds the way back's slot and publication.
    pub drop_reverse_slot: bool,
}

/// Cleanup cannot proceed.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(
        "slot {slot} is in use by process {pid} (a running `xdb sync`?): stop it first, then run xdb cleanup again"
    )]
    SlotActive { slot: String, pid: i32 },
    #[error(
        "`xdb sync --reverse` of slot {slot} is running (it holds its lock on the source): stop it first, then run \
         xdb cleanup again"
    )]
    ReverseRunning { slot: String },
    #[error("{0}")]
    SourceConnect(#[from] client::ConnectError),
    #[error("source: {}", crate::error_policy::pg_error_text(.0))]
    SourceSql(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Looks at both servers and says what cleanup would remove.
pub async fn inspect(plan: &Plan) -> Result<CleanupPlan, CleanupError> {
    let c = client::connect(&plan.source.url, "xdb cleanup").await?;
    let q = CleanupError::SourceSql;
    let slot = c
        .query_opt("SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1", &[&plan.source.slot])
        .await
        .map_err(q)?;
    let mut out = CleanupPlan::default();
    if let Some(s) = slot {
        if s.get::<_, bool>(0) {
            return Err(CleanupError::SlotActive {
                slot: plan.source.slot.clone(),
                pid: s.get::<_, Option<i32>>(1).unwrap_or_default(),
            });
        }
        out.drop_slot = true;
    }
    let exists =
        c.query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&plan.source.publication]).await.map_err(q)?;
    if exists.is_some() {
        if publication::created_by_xdb(&c, &plan.source.publication).await.map_err(q)? {
            out.drop_publication = true;
        } else {
            out.keep_publication = true;
        }
    }
    out.clear_reverse_state = reverse_state_rows(&c, plan).await.map_err(q)? > 0;
    if out.clear_reverse_state {
        // The reverse stream holds this lock while it runs (one per plan).
        let key = crate::pipeline::reverse::position_key(plan);
        let running: bool = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND objid = hashtext($1)::oid AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
                &[&key],
            )
            .await
            .map_err(q)?
            .get(0);
        if running {
            return Err(CleanupError::ReverseRunning { slot: plan.source.slot.clone() });
        }
    }
    match crate::pipeline::reverse_pg::slot_state(plan).await.map_err(q)? {
        Some(true) => return Err(CleanupError::ReverseRunning { slot: plan.source.slot.clone() }),
        Some(false) => out.drop_reverse_slot = true,
        None => {}
    }
    out.clear_target_state = match &plan.target.url {
        TargetUrl::Sqlite(p) if !p.exists() => false,
        _ => match TargetConn::connect(&plan.target.url).await {
            Ok(mut t) => {
                t.read_position(&plan.source.slot).await.map(|p| p.is_some()).unwrap_or(false)
                    || !t.read_tables(&plan.source.slot).await.unwrap_or_default().is_empty()
            }
            Err(e) => return Err(e.into()),
        },
    };
    Ok(out)
}

impl CleanupPlan {
    /// The actions, one line each, for the confirmation prompt and dry runs.
    pub fn describe(&self, plan: &Plan) -> Vec<String> {
        let mut v = Vec::new();
        if self.drop_slot {
            v.push(format!(
                "drop replication slot {} on the source (it stops retaining WAL; streaming cannot resume from it)",
                plan.source.slot
            ));
        }
        if self.drop_publication {
            v.push(format!("drop publication {} (created by xdb)", plan.source.publication));
        }
        if self.keep_publication {
            v.push(format!("keep publication {}: it was not created by xdb", plan.source.publication));
        }
        if self.clear_target_state {
            v.push(format!(
                "delete xdb's state for slot {} on the target {} (replicated tables are kept)",
                plan.source.slot,
                plan.target.url.redacted()
            ));
        }
        if self.clear_reverse_state {
            v.push(format!(
                "delete the way back's state for slot {} on the source (its start in xdb.reverse_start, its applied \
                 position {} in xdb.state and xdb.reverse_position)",
                plan.source.slot,
                crate::pipeline::reverse::position_key(plan)
            ));
        }
        if self.drop_reverse_slot {
            v.push(format!(
                "drop the way back's slot {} and publication {} on the target, and its position on the source",
                crate::pipeline::reverse_pg::slot(plan),
                crate::pipeline::reverse_pg::publication(plan)
            ));
        }
        v
    }

    /// True when there is nothing to remove.
    pub fn is_empty(&self) -> bool {
        !self.drop_slot
            && !self.drop_publication
            && !self.clear_target_state
            && !self.clear_reverse_state
            && !self.drop_reverse_slot
    }
}

/// Carries out `what`. The slot is dropped first: if it became active in the
/// meantime, PostgreSQL refuses and nothing else is removed.
pub async fn execute(plan: &Plan, what: &CleanupPlan) -> Result<(), CleanupError> {
    let c = client::connect(&plan.source.url, "xdb cleanup").await?;
    let q = CleanupError::SourceSql;
    if what.drop_slot {
        c.execute("SELECT pg_drop_replication_slot($1)", &[&plan.source.slot]).await.map_err(q)?;
    }
    if what.drop_publication {
        c.batch_execute(&format!("DROP PUBLICATION IF EXISTS \"{}\"", plan.source.publication.replace('"', "\"\"")))
            .await
            .map_err(q)?;
    }
    if what.clear_reverse_state {
        let key = crate::pipeline::reverse::position_key(plan);
        if has_table(&c, "xdb.reverse_start").await.map_err(q)? {
            c.execute("DELETE FROM xdb.reverse_start WHERE slot = $1", &[&plan.source.slot]).await.map_err(q)?;
        }
        if has_table(&c, "xdb.state").await.map_err(q)? {
            c.execute("DELETE FROM xdb.state WHERE slot = $1", &[&key]).await.map_err(q)?;
        }
        if has_table(&c, "xdb.reverse_position").await.map_err(q)? {
            c.execute("DELETE FROM xdb.reverse_position WHERE slot = $1", &[&key]).await.map_err(q)?;
        }
    }
    if what.drop_reverse_slot {
        crate::pipeline::reverse_pg::cleanup(plan, &c).await.map_err(q)?;
    }
    if what.clear_target_state {
        let mut t = TargetConn::connect(&plan.target.url).await?;
        let d = t.dialect();
        let slot_literal = format!("'{}'", plan.source.slot.replace('\'', "''"));
        let stmts: Vec<String> = state::delete_slot(d)
            .into_iter()
            .map(|s| s.replace("= $1", &format!("= {slot_literal}")).replace("= ?", &format!("= {slot_literal}")))
            .collect();
        t.execute_batch(&stmts, "deleting xdb's state").await?;
    }
    Ok(())
}

async fn has_table(c: &tokio_postgres::Client, name: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).await?.get(0))
}

/// Rows the way back (`sync --reverse`) keeps on the source for this plan.
async fn reverse_state_rows(c: &tokio_postgres::Client, plan: &Plan) -> Result<i64, tokio_postgres::Error> {
    let mut n = 0;
    if has_table(c, "xdb.reverse_start").await? {
        n += c
            .query_one("SELECT count(*) FROM xdb.reverse_start WHERE slot = $1", &[&plan.source.slot])
            .await?
            .get::<_, i64>(0);
    }
    if has_table(c, "xdb.state").await? {
        let key = crate::pipeline::reverse::position_key(plan);
        n += c.query_one("SELECT count(*) FROM xdb.state WHERE slot = $1", &[&key]).await?.get::<_, i64>(0);
    }
    Ok(n)
}
