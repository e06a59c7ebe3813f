//! The plan's cutover runbook, checked before the maintenance window: that
//! it parses (the executor reads it only when the cutover starts), and
//! that xdb's source login may do what its steps will ask of it. A
//! `stop_source_writes` refused for want of a privilege fails at the
//! first step of the cutover, with the application already told to wait;
//! here it is a line with the statement that grants it.

use tokio_postgres::Client;

use super::report::CheckSection;
use crate::cutover::runbook::{self, Action, FreezeScope, Runbook};
use crate::error_policy::pg_error_text;
use crate::model::pg_ident;
use crate::pg_conn::client;
use crate::plan::Plan;

/// The "Cutover runbook" section, when the plan has one.
pub async fn check(plan: &Plan) -> Option<CheckSection> {
    let value = plan.cutover.as_ref()?;
    let mut s = CheckSection::new("Cutover runbook");
    let book = match runbook::parse(value) {
        Ok(b) => b,
        Err(e) => {
            s.fail(e.to_string(), "correct the runbook in the plan (`xdb cutover --dry-run` prints what it would run)");
            return Some(s);
        }
    };
    s.pass(format!("{} step(s) parse", book.steps.len()));
    let freezes: Vec<&FreezeScope> = actions(&book)
        .filter_map(|a| match a {
            Action::StopSourceWrites(scope) => Some(scope),
            _ => None,
        })
        .collect();
    if !freezes.is_empty() {
        match client::connect(&plan.source.url, "xdb check").await {
            Ok(c) => {
                for scope in freezes {
                    if let Err(e) = freeze_privileges(&c, scope, &mut s).await {
                        s.warn(
                            format!("cannot read the privileges stop_source_writes needs: {}", pg_error_text(&e)),
                            "see the error above",
                        );
                    }
                }
            }
            Err(_) => s.info("stop_source_writes not checked: the source is unreachable (see above)"),
        }
    }
    if actions(&book).any(|a| matches!(a, Action::StartReverse)) {
        s.info(format!(
            "the runbook records the way back's start (start_reverse): `xdb check --reverse --plan {}` checks the way back",
            plan.file.display()
        ));
    }
    Some(s)
}

/// Every action of the runbook, rollbacks included.
fn actions(book: &Runbook) -> impl Iterator<Item = &Action> {
    book.steps.iter().flat_map(|s| std::iter::once(&s.action).chain(s.rollback.iter()))
}

/// What `stop_source_writes` runs, and who may run it: `ALTER DATABASE …
/// SET` needs the database's owner (or a superuser); `ALTER ROLE r IN
/// DATABASE … SET` a superuser, or CREATEROLE (on PostgreSQL 16 and later
/// with ADMIN OPTION on `r`); ending the frozen roles' open sessions
/// superuser or `pg_signal_backend`.
async fn freeze_privileges(c: &Client, scope: &FreezeScope, s: &mut CheckSection) -> Result<(), tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT current_user::text, current_database()::text, r.rolsuper, r.rolcreaterole, \
                    pg_has_role(current_user, d.datdba, 'USAGE'), pg_get_userbyid(d.datdba)::text, \
                    pg_has_role(current_user, 'pg_signal_backend', 'USAGE'), \
                    current_setting('server_version_num')::int \
             FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()",
            &[],
        )
        .await?;
    let (me, db): (String, String) = (row.get(0), row.get(1));
    let (superuser, createrole, owns, owner): (bool, bool, bool, String) =
        (row.get(2), row.get(3), row.get(4), row.get(5));
    let (signal, version): (bool, i32) = (row.get(6), row.get(7));
    match scope {
        FreezeScope::Database if superuser || owns => s.pass(format!(
            "stop_source_writes {{ database: true }}: {me} may set database {db}'s default_transaction_read_only{}",
            if superuser { " (superuser)" } else { " (it owns the database)" }
        )),
        FreezeScope::Database => s.fail(
            format!(
                "stop_source_writes {{ database: true }}: {me} does not own database {db} (owner {owner}) and is no \
                 superuser: ALTER DATABASE … SET default_transaction_read_only would fail at the first step of the \
                 cutover"
            ),
            format!(
                "as a superuser or {owner}: ALTER DATABASE {} OWNER TO {}; — or freeze only the application's login \
                 roles (stop_source_writes: {{ roles: [<app role>] }}), which needs CREATEROLE",
                pg_ident(&db),
                pg_ident(&me)
            ),
        ),
        FreezeScope::Roles(roles) => {
            for role in roles {
                let may = superuser || *role == me || createrole && admin_of(c, role, version).await?;
                if may {
                    s.pass(format!("stop_source_writes: {me} may set the defaults of role {role} in database {db}"));
                } else {
                    let fix = if version >= 160000 {
                        format!(
                            "as a superuser: ALTER ROLE {me_q} CREATEROLE; GRANT {r} TO {me_q} WITH ADMIN OPTION;",
                            me_q = pg_ident(&me),
                            r = pg_ident(role)
                        )
                    } else {
                        format!("as a superuser: ALTER ROLE {} CREATEROLE;", pg_ident(&me))
                    };
                    s.fail(
                        format!(
                            "stop_source_writes: {me} may not set the defaults of role {role} (ALTER ROLE … IN \
                             DATABASE … SET would fail at the first step of the cutover)"
                        ),
                        fix,
                    );
                }
            }
        }
    }
    if !superuser && !signal {
        s.warn(
            format!(
                "stop_source_writes ends the frozen roles' open sessions (they keep writing until they reconnect), \
                 and {me} is neither superuser nor a member of pg_signal_backend: the step fails if any is open"
            ),
            format!("as a superuser: GRANT pg_signal_backend TO {};", pg_ident(&me)),
        );
    }
    Ok(())
}

/// Whether a CREATEROLE login may alter `role`'s settings: before 16 any
/// role that is not a superuser; from 16 one it holds ADMIN OPTION on.
async fn admin_of(c: &Client, role: &str, version: i32) -> Result<bool, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT rolsuper, CASE WHEN $2 >= 160000 THEN pg_has_role(current_user, oid, 'MEMBER WITH ADMIN OPTION') \
             ELSE true END FROM pg_roles WHERE rolname = $1",
            &[&role, &version],
        )
        .await?;
    Ok(row.is_some_and(|r| !r.get::<_, bool>(0) && r.get::<_, bool>(1)))
}
