//! Invariant *quiet target triggers*: triggers of a PostgreSQL target must
//! not fire on the changes xdb applies: the rows already carry what the source's triggers did (a
//! `last_update = now()` trigger, an audit row), and firing them again
//! would change the values (pagila's `last_updated` stamps the time of the
//! apply). PostgreSQL's own logical replication applies with
//! `session_replication_role = replica`, where ordinary triggers (and
//! foreign-key checks) do not fire; xdb does the same on a target whose
//! tables have such triggers — a schema restored with `pg_dump
//! --schema-only` before the copy, or the original source on the way
//! back. The login may set that role only as a superuser or with `GRANT
//! SET ON PARAMETER` (PostgreSQL 15+): without it xdb refuses before
//! writing anything, naming the triggers and the grant. Triggers enabled
//! `ALWAYS` fire anyway, as their owner asked.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::plan::{Plan, SecretUrl, TargetUrl};

/// Why the target cannot be written as it is.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// Triggers would fire and the login may not stop them.
    #[error("{0}")]
    WouldFire(String),
    #[error("reading the target's triggers: {}", crate::error_policy::pg_error_text(.0))]
    Sql(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Connect(#[from] crate::pg_conn::client::ConnectError),
}

impl TriggerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            TriggerError::WouldFire(_) => false,
            TriggerError::Sql(e) => crate::error_policy::postgres(e).is_transient(),
            TriggerError::Connect(e) => e.retryable,
        }
    }
}

/// `plan` with its PostgreSQL target's URL from [`writer_url`] for the
/// planned tables as the target names them; other targets unchanged.
pub async fn for_target(plan: &Plan) -> Result<Plan, TriggerError> {
    let TargetUrl::Postgres(url) = &plan.target.url else { return Ok(plan.clone()) };
    let pg = crate::pg_conn::client::connect(url, "xdb").await?;
    let naming = crate::plan::naming::Naming::of_plan(plan);
    let tables: Vec<String> = plan.tables.iter().map(|t| naming.table_ident(t)).collect();
    let mut out = plan.clone();
    out.target.url = TargetUrl::Postgres(writer_url(&pg, url, &tables).await?);
    Ok(out)
}

/// The URL to write the target with: `url` itself when none of `tables`
/// (quoted `schema.table` names; their partitions too; tables not there
/// yet are skipped) has a trigger that fires in an ordinary session; else
/// `url` with `session_replication_role = replica` for every connection
/// made with it, when the login may set it; else a refusal.
pub async fn writer_url(pg: &Client, url: &SecretUrl, tables: &[String]) -> Result<SecretUrl, TriggerError> {
    let firing = firing(pg, tables).await?;
    if firing.is_empty() {
        return Ok(url.clone());
    }
    match may_set_replica_role(pg).await? {
        Ok(()) => {
            tracing::info!(
                triggers = %firing.join("; "),
                "applying with session_replication_role = replica: the target's own triggers do not fire"
            );
            Ok(with_replica_role(url))
        }
        Err(login) => {
            Err(TriggerError::WouldFire(format!("{}; {}. Nothing was written", problem(&firing), fix(&login))))
        }
    }
}

/// What stops the triggers from firing, for a preflight: `None` when no
/// trigger would fire, else `(what would fire, Some(fix))` when the login
/// may not set the role, `(…, None)` when xdb will set it.
pub async fn preflight(pg: &Client, tables: &[String]) -> Result<Option<(String, Option<String>)>, TriggerError> {
    let firing = firing(pg, tables).await?;
    if firing.is_empty() {
        return Ok(None);
    }
    Ok(Some(match may_set_replica_role(pg).await? {
        Ok(()) => (firing.join("; "), None),
        Err(login) => (problem(&firing), Some(fix(&login))),
    }))
}

fn problem(firing: &[String]) -> String {
    format!(
        "triggers or foreign-key actions would fire on the rows xdb writes: {}. The rows already carry what the \
         source's triggers and cascades did, and firing these would change the values; xdb applies as PostgreSQL's \
         own logical replication does, with session_replication_role = replica (ordinary triggers and foreign-key \
         checks and actions do not fire)",
        firing.join("; ")
    )
}

fn fix(login: &str) -> String {
    format!(
        "the login {login} may not set session_replication_role. Run, as a superuser: GRANT SET ON PARAMETER \
         session_replication_role TO {login}; (PostgreSQL 15 and later; before 15, use a superuser login, or \
         ALTER TABLE … DISABLE TRIGGER … for the migration), then run the command again"
    )
}

/// `Ok(())` when this login may set `session_replication_role`,
/// `Err(login)` when it may not.
async fn may_set_replica_role(pg: &Client) -> Result<Result<(), String>, tokio_postgres::Error> {
    match pg.batch_execute("SET session_replication_role = replica; RESET session_replication_role").await {
        Ok(()) => Ok(Ok(())),
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            Ok(Err(pg.query_one("SELECT current_user::text", &[]).await?.get(0)))
        }
        Err(e) => Err(e),
    }
}

/// `schema.table (trigger, …)` for each of `tables` (and their
/// partitions) with triggers that fire in an ordinary session
/// (`tgenabled = 'O'`), and referenced by foreign keys with an action
/// (`ON DELETE CASCADE`, `ON UPDATE SET NULL` …) from another planned
/// table: those are triggers too, changing that table's rows, which the
/// stream already carries as they became (the cascade's own changes on the
/// source; on the way back the target has no foreign keys at all): acting
/// again would make this side differ, silently. A table of this side only
/// keeps its cascades; a plain foreign key only checks (a row it refuses
/// stops the apply, named).
async fn firing(pg: &Client, tables: &[String]) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = pg
        .query(
            // pg_partition_tree is empty for a table outside any partition
            // tree; to_regclass is NULL for a table not created yet.
            "WITH planned AS (SELECT to_regclass(n) AS rel FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NOT NULL), \
             rels AS (SELECT rel::oid AS relid FROM planned \
               UNION SELECT p.relid::oid FROM planned, pg_partition_tree(planned.rel) AS p), \
             fired AS ( \
               SELECT t.tgrelid AS relid, quote_ident(t.tgname) AS what FROM rels JOIN pg_trigger t ON t.tgrelid = rels.relid \
               WHERE NOT t.tgisinternal AND t.tgenabled = 'O' \
               UNION SELECT rels.relid, 'foreign key ' || quote_ident(k.conname) || ' ON ' || \
                 CASE WHEN k.confdeltype IN ('c', 'n', 'd') THEN 'DELETE' ELSE 'UPDATE' END || ' ' || \
                 CASE CASE WHEN k.confdeltype IN ('c', 'n', 'd') THEN k.confdeltype ELSE k.confupdtype END \
                   WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' ELSE 'SET DEFAULT' END \
               FROM rels JOIN pg_constraint k ON k.contype = 'f' AND k.confrelid = rels.relid \
               WHERE (k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd')) \
                 AND k.conrelid IN (SELECT relid FROM rels)) \
             SELECT quote_ident(ns.nspname) || '.' || quote_ident(c.relname), string_agg(fired.what, ', ' ORDER BY fired.what) \
             FROM fired JOIN pg_class c ON c.oid = fired.relid JOIN pg_namespace ns ON ns.oid = c.relnamespace \
             GROUP BY 1 ORDER BY 1",
            &[&tables],
        )
        .await?;
    Ok(rows.iter().map(|r| format!("{} ({})", r.get::<_, String>(0), r.get::<_, String>(1))).collect())
}

/// `url` with `-c session_replication_role=replica` in its `options`
/// (unchanged when it has it already).
fn with_replica_role(url: &SecretUrl) -> SecretUrl {
    const SET: &str = "-c%20session_replication_role%3Dreplica";
    let u = url.expose();
    if u.contains(SET) {
        return url.clone();
    }
    let (base, query) = u.split_once('?').unwrap_or((u, ""));
    let mut params: Vec<String> = Vec::new();
    let mut had_options = false;
    for p in query.split('&').filter(|p| !p.is_empty()) {
        match p.strip_prefix("options=") {
            Some(v) => {
                had_options = true;
                params.push(format!("options={SET}%20{v}"));
            }
            None => params.push(p.to_string()),
        }
    }
    if !had_options {
        params.push(format!("options={SET}"));
    }
    SecretUrl::new(format!("{base}?{}", params.join("&")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_added_to_the_urls_options_once() {
        let u = |s: &str| with_replica_role(&SecretUrl::new(s)).expose().to_string();
        let once = u("postgres://u:p@h/db");
        assert_eq!(once, "postgres://u:p@h/db?options=-c%20session_replication_role%3Dreplica");
        assert_eq!(u(&once), once);
        assert_eq!(
            u("postgres://u:p@h/db?sslmode=require&options=-c%20work_mem%3D64MB"),
            "postgres://u:p@h/db?sslmode=require&options=-c%20session_replication_role%3Dreplica%20-c%20work_mem%3D64MB"
        );
    }
}
