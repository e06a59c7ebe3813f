//! `stop_source_writes` and its exact inverse `resume_source_writes` on a
//! PostgreSQL source.
//!
//! Stopping sets `default_transaction_read_only = on` where it wins for the
//! frozen sessions — per role *in this database* (`ALTER ROLE r IN DATABASE
//! d SET …`, the highest-precedence per-session default), or for the whole
//! database (`ALTER DATABASE d SET …`) with xdb's own role kept writable by a
//! role-in-database `off` — then ends the frozen roles' open sessions so
//! every new one starts read-only, and checks that nothing overrides it.
//!
//! Invariant: the settings as they were before are written to the journal
//! *before* anything changes, and resuming restores exactly those (RESET
//! where there was none), then ends the sessions that logged in during the
//! freeze (they hold the read-only default for their lifetime).
//!
//! A client can still `SET default_transaction_read_only = off` in its own
//! session; applications do not, and the verification step of a runbook can
//! prove a write fails for the application's login.

use serde::{Deserialize, Serialize};

use super::{ActionError, Env, Outcome};
use crate::cutover::journal::{now_ms, Event};
use crate::cutover::runbook::FreezeScope;
use crate::model::pg_ident;
use crate::plan::Plan;
use crate::source::postgres::identity::{self, SourceIdentity};

const GUC: &str = "default_transaction_read_only";

/// Where a setting was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettingScope {
    /// `ALTER DATABASE d SET …`
    Database,
    /// `ALTER ROLE r IN DATABASE d SET …`
    RoleInDatabase { role: String },
}

/// One changed setting and its value before xdb changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedSetting {
    pub scope: SettingScope,
    /// The value xdb set (`on`, or `off` for its own role).
    pub value: String,
    /// The value before, `None` when it was not set.
    pub previous: Option<String>,
}

/// What `stop_source_writes` changed, so it can be undone exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeRecord {
    pub database: String,
    /// xdb's own role (kept writable, its sessions never ended).
    pub own_role: String,
    /// The frozen roles; empty = every role but xdb's own.
    pub roles: Vec<String>,
    pub settings: Vec<ChangedSetting>,
    /// Server time the freeze began (`now()` text), so resuming can end the
    /// sessions that logged in since.
    pub since: String,
    /// The source the freeze was made on; a record is honoured only for the
    /// same source (absent in journals of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceIdentity>,
}

/// A value for `default_transaction_read_only` that is not one of
/// PostgreSQL's boolean spellings. Values come back from the journal, a
/// plain file: they are checked, never pasted into SQL as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{GUC} value {value:?} in the cutover journal is not a boolean (on, off, true, false, yes, no, 1, 0): refusing to run it as SQL; check the journal, or restore the setting by hand")]
pub struct InvalidSetting {
    pub value: String,
}

impl From<InvalidSetting> for ActionError {
    fn from(e: InvalidSetting) -> Self {
        ActionError::Failed(e.to_string())
    }
}

/// The canonical `on` / `off` for a boolean setting value.
pub fn bool_setting(value: &str) -> Result<&'static str, InvalidSetting> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok("on"),
        "off" | "false" | "no" | "0" => Ok("off"),
        _ => Err(InvalidSetting { value: value.to_string() }),
    }
}

fn alter(database: &str, s: &ChangedSetting, value: Option<&str>) -> Result<String, InvalidSetting> {
    let set = match value {
        Some(v) => format!("SET {GUC} = {}", bool_setting(v)?),
        None => format!("RESET {GUC}"),
    };
    Ok(match &s.scope {
        SettingScope::Database => format!("ALTER DATABASE {} {set}", pg_ident(database)),
        SettingScope::RoleInDatabase { role } => {
            format!("ALTER ROLE {} IN DATABASE {} {set}", pg_ident(role), pg_ident(database))
        }
    })
}

/// The statements stopping writes, for `--dry-run` (the database name comes
/// from the URL; nothing is read from the server).
pub fn describe_stop(scope: &FreezeScope, plan: &Plan) -> Vec<String> {
    let url = plan.source.url.redacted();
    let db = url.rsplit('/').next().unwrap_or("<database>").split('?').next().unwrap_or("<database>").to_string();
    let mut v = Vec::new();
    match scope {
        FreezeScope::Roles(roles) => {
            for r in roles {
                v.push(format!(
                    "on the source: ALTER ROLE {} IN DATABASE {} SET {GUC} = on",
                    pg_ident(r),
                    pg_ident(&db)
                ));
            }
            v.push(format!(
                "on the source: SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = current_database() AND usename IN ({})",
                roles.iter().map(|r| format!("'{}'", r.replace('\'', "''"))).collect::<Vec<_>>().join(", ")
            ));
        }
        FreezeScope::Database => {
            v.push(format!("on the source: ALTER DATABASE {} SET {GUC} = on", pg_ident(&db)));
            v.push(format!("on the source: ALTER ROLE CURRENT_USER IN DATABASE {} SET {GUC} = off", pg_ident(&db)));
            v.push("on the source: SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = current_database() AND usename <> current_user".into());
        }
    }
    v.push("then check that no frozen session remains and no setting overrides the freeze".into());
    v
}

fn sql_err(what: &str, e: tokio_postgres::Error) -> ActionError {
    ActionError::source(what, e)
}

/// The current value of the setting at one scope (`None` when not set).
async fn current_setting(c: &tokio_postgres::Client, scope: &SettingScope) -> Result<Option<String>, ActionError> {
    let (sql, role) = match scope {
        SettingScope::Database => (
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE d.datname = current_database() AND s.setrole = 0",
            None,
        ),
        SettingScope::RoleInDatabase { role } => (
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = current_database() AND r.rolname = $1",
            Some(role.clone()),
        ),
    };
    let rows = match &role {
        Some(r) => c.query(sql, &[r]).await,
        None => c.query(sql, &[]).await,
    }
    .map_err(|e| sql_err("reading settings", e))?;
    let prefix = format!("{GUC}=");
    for row in rows {
        let config: Vec<String> = row.try_get(0).unwrap_or_default();
        if let Some(v) = config.iter().find_map(|kv| kv.strip_prefix(&prefix)) {
            return Ok(Some(v.to_string()));
        }
    }
    Ok(None)
}

/// Stops writes; see the module doc.
pub async fn stop(env: &mut Env<'_>, scope: &FreezeScope) -> Result<Outcome, ActionError> {
    let record = freeze_record(env, scope).await?;
    // Every statement, the inverse's too, is checked before the first
    // change: a freeze that could not be undone is never started.
    for s in &record.settings {
        alter(&record.database, s, Some(&s.value))?;
        alter(&record.database, s, s.previous.as_deref())?;
    }
    let mut notes = apply_settings(env, &record).await?;
    // Sessions that began before the settings changed hold the old default.
    let c = env.source().await?;
    let altered_at: String =
        c.query_one("SELECT clock_timestamp()::text", &[]).await.map_err(|e| sql_err("reading the clock", e))?.get(0);
    let ended = terminate(c, &record, None, Some(&altered_at)).await?;
    notes.push(format!("ended {ended} open session(s) of the frozen role(s)"));
    check_frozen(c, &record, &altered_at).await?;
    notes.push("checked: no frozen session remains and no role or database setting overrides the freeze".into());
    Ok(Outcome { notes, ..Default::default() })
}

/// The roles to freeze (none: the whole database, xdb's own role kept
/// writable), checked to exist and not to be xdb's own.
async fn roles_to_freeze(
    c: &tokio_postgres::Client,
    scope: &FreezeScope,
    own_role: &str,
) -> Result<Vec<String>, ActionError> {
    let FreezeScope::Roles(roles) = scope else { return Ok(Vec::new()) };
    for r in roles {
        if r == own_role {
            return Err(ActionError::Failed(format!(
                "stop_source_writes: {r} is xdb's own role (the plan's source login): it must stay writable"
            )));
        }
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM pg_roles WHERE rolname = $1", &[r])
            .await
            .map_err(|e| sql_err("looking up roles", e))?
            .get(0);
        if n == 0 {
            return Err(ActionError::Failed(format!("stop_source_writes: role {r} does not exist on the source")));
        }
    }
    Ok(roles.clone())
}

/// The settings the freeze changes with their values from before xdb,
/// journaled before anything changes. Resuming a run that was interrupted
/// mid-freeze: the journal already holds the values from before xdb;
/// re-reading now would see xdb's own.
async fn freeze_record(env: &mut Env<'_>, scope: &FreezeScope) -> Result<FreezeRecord, ActionError> {
    let earlier = env.freeze.clone();
    let c = env.source().await?;
    let row = c
        .query_one("SELECT current_database()::text, current_user::text, now()::text", &[])
        .await
        .map_err(|e| sql_err("reading the session", e))?;
    let (database, own_role, since): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    let roles = roles_to_freeze(c, scope, &own_role).await?;
    if let Some(r) = earlier.filter(|r| r.database == database) {
        return Ok(r);
    }
    let mut wanted: Vec<(SettingScope, &str)> = Vec::new();
    if roles.is_empty() {
        wanted.push((SettingScope::Database, "on"));
        wanted.push((SettingScope::RoleInDatabase { role: own_role.clone() }, "off"));
    } else {
        for r in &roles {
            wanted.push((SettingScope::RoleInDatabase { role: r.clone() }, "on"));
        }
    }
    let mut settings = Vec::new();
    for (scope, value) in wanted {
        let previous = current_setting(c, &scope).await?;
        settings.push(ChangedSetting { scope, value: value.to_string(), previous });
    }
    let source = identity::read(c).await.map_err(|e| sql_err("reading the source's identity", e))?;
    let record = FreezeRecord { database, own_role, roles, settings, since, source: Some(source) };
    env.record(Event::Freeze { at_ms: now_ms(), record: record.clone() })?;
    env.freeze = Some(record.clone());
    Ok(record)
}

/// Runs each ALTER of the freeze; the statements run, for the notes. A
/// refused ALTER (42501: not the owner) may have changed nothing: only what
/// reads back decides whether a freeze exists.
async fn apply_settings(env: &mut Env<'_>, record: &FreezeRecord) -> Result<Vec<String>, ActionError> {
    let mut notes = Vec::new();
    for s in &record.settings {
        let sql = alter(&record.database, s, Some(&s.value))?;
        let c = env.source().await?;
        if let Err(e) = c.batch_execute(&sql).await {
            let err = sql_err(&sql, e);
            if let Ok(read) = read_back(c, record).await {
                if read.changed.is_empty() {
                    env.record(Event::FreezeReleased { at_ms: now_ms() })?;
                    env.freeze = None;
                    return Err(ActionError::NothingChanged(Box::new(err)));
                }
            }
            return Err(err);
        }
        notes.push(sql);
    }
    Ok(notes)
}

/// Ends the frozen roles' client sessions in this database that began in
/// `[after, before)` (open bounds when `None`), waiting up to 5 s for each.
async fn terminate(
    c: &tokio_postgres::Client,
    r: &FreezeRecord,
    after: Option<&str>,
    before: Option<&str>,
) -> Result<u64, ActionError> {
    let sql = format!(
        "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE {SESSIONS}"
    );
    let (after, before) = (after.unwrap_or("-infinity"), before.unwrap_or("infinity"));
    let row = c
        .query_one(&sql, &[&r.own_role, &r.roles, &after, &before])
        .await
        .map_err(|e| sql_err("ending sessions (needs superuser or pg_signal_backend)", e))?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// The frozen roles' client sessions in this database other than ours;
/// parameters: own role, frozen roles (empty = all but own), begun at or
/// after, begun before.
const SESSIONS: &str = "datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' \
     AND ((cardinality($2::text[]) = 0 AND usename::text <> $1::text) OR usename::text = ANY($2::text[])) \
     AND backend_start >= $3::text::timestamptz AND backend_start < $4::text::timestamptz";

/// Checks the freeze holds: the settings read back, no session of a frozen
/// role remains, and no role-wide or role-in-database `off` overrides it.
async fn check_frozen(c: &tokio_postgres::Client, r: &FreezeRecord, altered_at: &str) -> Result<(), ActionError> {
    for s in &r.settings {
        let now = current_setting(c, &s.scope).await?;
        if now.as_deref() != Some(s.value.as_str()) {
            return Err(ActionError::Failed(format!(
                "{GUC} at {:?} reads back as {now:?}, expected {}",
                s.scope, s.value
            )));
        }
    }
    let sql = format!("SELECT usename::text || ' (pid ' || pid || ')' FROM pg_stat_activity WHERE {SESSIONS}");
    let rows = c
        .query(&sql, &[&r.own_role, &r.roles, &"-infinity", &altered_at])
        .await
        .map_err(|e| sql_err("listing sessions", e))?;
    let remaining: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    if !remaining.is_empty() {
        return Err(ActionError::Failed(format!("sessions still open after ending them: {}", remaining.join(", "))));
    }
    // A role-wide or role-in-database `off` wins over the database default;
    // a role-wide one loses to the role-in-database `on` xdb set.
    let sql = "SELECT r.rolname::text, s.setdatabase <> 0 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
               WHERE (s.setdatabase = 0 OR s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())) \
               AND r.rolcanlogin AND r.rolname <> $1 \
               AND EXISTS (SELECT 1 FROM unnest(s.setconfig) kv WHERE kv IN ('default_transaction_read_only=off', 'default_transaction_read_only=false'))";
    let rows = c.query(sql, &[&r.own_role]).await.map_err(|e| sql_err("looking for overriding settings", e))?;
    let overriding: Vec<String> = rows
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, bool>(1)))
        .filter(|(role, in_db)| if r.roles.is_empty() { true } else { *in_db && r.roles.contains(role) })
        .map(|(role, _)| role)
        .collect();
    if !overriding.is_empty() {
        return Err(ActionError::Failed(format!(
            "role(s) {} have {GUC} = off set for them, which overrides the freeze: they could still write",
            overriding.join(", ")
        )));
    }
    Ok(())
}

/// What a freeze record's settings read back as on the source now.
#[derive(Debug, Clone, Default)]
pub struct ReadBack {
    /// Settings that differ from their value before the freeze, with the
    /// value now (`None`: not set), as `ALTER … SET` text for the operator.
    pub changed: Vec<String>,
    /// Some `default_transaction_read_only = on` xdb set is in effect.
    pub frozen: bool,
}

/// Compares two setting values as booleans when both are (`true` = `on`).
fn same_value(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => match (bool_setting(a), bool_setting(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        },
        (a, b) => a == b,
    }
}

/// Reads the record's settings back from the source: what is actually in
/// effect, which is the only thing ever reported as a freeze.
pub async fn read_back(c: &tokio_postgres::Client, record: &FreezeRecord) -> Result<ReadBack, ActionError> {
    let mut out = ReadBack::default();
    for s in &record.settings {
        let now = current_setting(c, &s.scope).await?;
        if same_value(now.as_deref(), s.previous.as_deref()) {
            continue;
        }
        if s.value == "on" && same_value(now.as_deref(), Some("on")) {
            out.frozen = true;
        }
        let at = match &s.scope {
            SettingScope::Database => format!("database {}", record.database),
            SettingScope::RoleInDatabase { role } => format!("role {role} in database {}", record.database),
        };
        out.changed.push(format!("{GUC} = {} for {at}", now.as_deref().unwrap_or("(not set)")));
    }
    Ok(out)
}

/// Resumes writes exactly as they were before the freeze.
pub async fn resume(env: &mut Env<'_>) -> Result<Outcome, ActionError> {
    let Some(record) = env.freeze.clone() else {
        return Err(ActionError::Failed(
            "resume_source_writes: the journal records no active stop_source_writes, so there is nothing to restore"
                .into(),
        ));
    };
    let c = env.source().await?;
    let db: String = c
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(|e| sql_err("reading the session", e))?
        .get(0);
    if db != record.database {
        return Err(ActionError::Failed(format!(
            "resume_source_writes: the freeze was on database {}, the plan's source is {db}",
            record.database
        )));
    }
    // All checked before the first runs: no half-restored source.
    let statements: Vec<String> = record
        .settings
        .iter()
        .rev()
        .map(|s| alter(&record.database, s, s.previous.as_deref()))
        .collect::<Result<_, _>>()?;
    let mut notes = Vec::new();
    for sql in statements {
        c.batch_execute(&sql).await.map_err(|e| sql_err(&sql, e))?;
        notes.push(sql);
    }
    let ended = terminate(c, &record, Some(&record.since), None).await?;
    notes.push(format!("ended {ended} session(s) that logged in read-only during the freeze"));
    env.record(Event::FreezeReleased { at_ms: now_ms() })?;
    env.freeze = None;
    Ok(Outcome { notes, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_boolean_values_become_sql() {
        let s = ChangedSetting {
            scope: SettingScope::RoleInDatabase { role: "app".into() },
            value: "on".into(),
            previous: None,
        };
        assert_eq!(
            alter("shop", &s, Some("TRUE")).unwrap(),
            "ALTER ROLE \"app\" IN DATABASE \"shop\" SET default_transaction_read_only = on"
        );
        assert!(alter("shop", &s, Some("off")).unwrap().ends_with("= off"));
        assert!(alter("shop", &s, None).unwrap().ends_with("RESET default_transaction_read_only"));
        for bad in ["off; DROP TABLE t", "'off'", "", "of f", "on --"] {
            assert!(alter("shop", &s, Some(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
