//! The way back writes into the original source, whose own triggers must
//! not fire again: the target's rows already carry what they did (a
//! `last_update = now()` trigger, an audit row), and firing them would
//! change the values that come back. PostgreSQL's own logical replication
//! applies with `session_replication_role = replica`, where ordinary
//! triggers (and foreign-key checks) do not fire; the way back does the
//! same, on the tables that have such triggers. Its login may set that role
//! only as a superuser or with `GRANT SET ON PARAMETER` (PostgreSQL 15+):
//! without it the way back refuses before applying anything, naming the
//! triggers and the grant.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::reverse::ReverseError;
use crate::check::CheckSection;
use crate::model::TableName;
use crate::plan::SecretUrl;

/// The URL the way back writes the original source with: `url` itself
/// when none of `tables` (or their partitions) has a trigger that fires
/// for ordinary sessions; else `url` with `session_replication_role =
/// replica` for every connection made with it, when the login may set it;
/// else a refusal naming the triggers and the fix.
pub async fn writer_url(pg: &Client, url: &SecretUrl, tables: &[TableName]) -> Result<SecretUrl, ReverseError> {
    let firing = firing_triggers(pg, tables).await?;
    if firing.is_empty() {
        return Ok(url.clone());
    }
    match may_set_replica_role(pg).await? {
        Ok(()) => {
            tracing::info!(
                triggers = %firing.join("; "),
                "the way back applies with session_replication_role = replica: the source's own triggers do not fire"
            );
            Ok(with_replica_role(url))
        }
        Err(login) => Err(ReverseError::Refused(format!("{}. {}. Nothing was applied", problem(&firing), fix(&login)))),
    }
}

/// `xdb check --reverse`: the same decision, said before the way back runs.
pub async fn check(pg: &Client, tables: &[TableName], s: &mut CheckSection) {
    let firing = match firing_triggers(pg, tables).await {
        Ok(f) => f,
        Err(e) => {
            return s.warn(format!("cannot read the original source's triggers: {e}"), "check the source connection")
        }
    };
    if firing.is_empty() {
        return s.pass("no trigger of the planned tables on the original source would fire on the way back");
    }
    match may_set_replica_role(pg).await {
        Ok(Ok(())) => s.pass(format!(
            "the original source's triggers ({}) will not fire on the way back: it applies with \
             session_replication_role = replica",
            firing.join("; ")
        )),
        Ok(Err(login)) => s.fail(problem(&firing), fix(&login)),
        Err(e) => s.warn(format!("cannot try session_replication_role: {e}"), "check the source connection"),
    }
}

fn problem(firing: &[String]) -> String {
    format!(
        "the original source has triggers on planned tables that would fire again on the way back: {}. The \
         target's rows already carry what they did, and firing them again would change the values that come \
         back. The way back applies as PostgreSQL's own logical replication does, with session_replication_role \
         = replica (ordinary triggers and foreign-key checks do not fire)",
        firing.join("; ")
    )
}

fn fix(login: &str) -> String {
    format!(
        "the login {login} may not set session_replication_role. Run, as a superuser: GRANT SET ON PARAMETER \
         session_replication_role TO {login}; (PostgreSQL 15 and later; before 15, use a superuser login in \
         source.url), then `xdb sync --reverse` again"
    )
}

/// `Ok(Ok(()))` when this login may set `session_replication_role`,
/// `Ok(Err(login))` when it may not.
async fn may_set_replica_role(pg: &Client) -> Result<Result<(), String>, ReverseError> {
    match pg.batch_execute("SET session_replication_role = replica; RESET session_replication_role").await {
        Ok(()) => Ok(Ok(())),
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            let login: String = pg
                .query_one("SELECT current_user::text", &[])
                .await
                .map_err(|source| ReverseError::Source { context: "reading the login".into(), source })?
                .get(0);
            Ok(Err(login))
        }
        Err(source) => Err(ReverseError::Source { context: "trying session_replication_role".into(), source }),
    }
}

/// `table (trigger, …)` for each of `tables` (and their partitions) with
/// triggers that fire in an ordinary session (`tgenabled = 'O'`; those
/// enabled ALWAYS fire on replicas too, as their owner asked).
async fn firing_triggers(pg: &Client, tables: &[TableName]) -> Result<Vec<String>, ReverseError> {
    let names: Vec<String> = tables.iter().map(|t| t.pg_quoted()).collect();
    let rows = pg
        .query(
            // pg_partition_tree is empty for a table outside any partition tree.
            "WITH rels AS ( \
               SELECT n.name::regclass::oid AS relid FROM unnest($1::text[]) AS n(name) \
               UNION SELECT p.relid::oid FROM unnest($1::text[]) AS n(name), pg_partition_tree(n.name::regclass) AS p) \
             SELECT quote_ident(ns.nspname) || '.' || quote_ident(c.relname), \
               string_agg(quote_ident(t.tgname), ', ' ORDER BY t.tgname) \
             FROM rels JOIN pg_trigger t ON t.tgrelid = rels.relid JOIN pg_class c ON c.oid = t.tgrelid \
             JOIN pg_namespace ns ON ns.oid = c.relnamespace \
             WHERE NOT t.tgisinternal AND t.tgenabled = 'O' \
             GROUP BY 1 ORDER BY 1",
            &[&names],
        )
        .await
        .map_err(|source| ReverseError::Source { context: "reading the source's triggers".into(), source })?;
    Ok(rows.iter().map(|r| format!("{} ({})", r.get::<_, String>(0), r.get::<_, String>(1))).collect())
}

/// `url` with `-c session_replication_role=replica` in its `options`.
fn with_replica_role(url: &SecretUrl) -> SecretUrl {
    const SET: &str = "-c%20session_replication_role%3Dreplica";
    let u = url.expose();
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
    fn the_role_is_added_to_the_urls_options() {
        let u = |s: &str| with_replica_role(&SecretUrl::new(s)).expose().to_string();
        assert_eq!(u("postgres://u:p@h/db"), "postgres://u:p@h/db?options=-c%20session_replication_role%3Dreplica");
        assert_eq!(
            u("postgres://u:p@h/db?sslmode=require&options=-c%20work_mem%3D64MB"),
            "postgres://u:p@h/db?sslmode=require&options=-c%20session_replication_role%3Dreplica%20-c%20work_mem%3D64MB"
        );
    }
}
