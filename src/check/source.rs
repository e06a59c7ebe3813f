//! Preflight checks of the PostgreSQL source. Read-only: every query here
//! only looks at settings and catalogs.

use tokio_postgres::Client;

use super::report::CheckSection;
use crate::model::{ReplicaIdentity, TableName, TableSchema};
use crate::pg_conn::client;
use crate::plan::Plan;
use crate::source::postgres::change_stream::MESSAGES_SINCE;
use crate::source::postgres::{catalog, publication};

/// The oldest source: logical replication with pgoutput exists since 10, but
/// xdb is tested from 12 (tests/it/versions.rs); 12 cannot publish a
/// partitioned table by its parent (`streamable.rs` refuses that).
const MIN_VERSION_NUM: i32 = 120000;

/// The newest major the version matrix (tests/it/versions.rs) runs against.
const TESTED_UP_TO: i32 = 18;

/// What the source checks learnt, for later sections (type mapping).
pub struct SourceFacts {
    pub tables: Vec<TableSchema>,
}

fn q(e: tokio_postgres::Error) -> String {
    crate::error_policy::pg_error_text(&e)
}

/// Runs the source checks, appending sections to `out`.
pub async fn check_source(plan: &Plan, out: &mut Vec<CheckSection>) -> SourceFacts {
    let mut s = CheckSection::new(format!("Source {}", plan.source.url.redacted()));
    let mut facts = SourceFacts { tables: Vec::new() };
    let client = match client::connect(&plan.source.url, "xdb check").await {
        Ok(c) => c,
        Err(e) => {
            s.fail(
                format!("source unreachable: {}", plan.scrub(&e.to_string())),
                "check source.url (host, port, database, user) and that PostgreSQL accepts TCP connections \
                 from this host (listen_addresses, pg_hba.conf); the remaining source checks were skipped",
            );
            out.push(s);
            return facts;
        }
    };
    // A log source: PostgreSQL is only read (catalog, `validate`); no slot,
    // no publication, no replication privilege.
    if plan.source.log.is_some() {
        s.pass("reachable: the original source, read for the tables' shapes and by `validate` (source.validate_url)");
        out.push(s);
        let mut tables_section = CheckSection::new("Source tables");
        match table_checks(&client, plan, &mut tables_section).await {
            Ok(t) => facts.tables = t,
            Err(e) => tables_section.fail(format!("could not read the catalog: {e}"), "see the error above"),
        }
        out.push(tables_section);
        out.push(crate::check::log::log_source(plan).await);
        return facts;
    }
    if let Err(e) = server_checks(&client, plan, &mut s).await {
        s.fail(format!("could not read server settings: {e}"), "see the error above");
    }
    out.push(s);
    let mut tables_section = CheckSection::new("Source tables");
    match table_checks(&client, plan, &mut tables_section).await {
        Ok(t) => facts.tables = t,
        Err(e) => tables_section.fail(format!("could not read the catalog: {e}"), "see the error above"),
    }
    out.push(tables_section);
    let mut repl = CheckSection::new("Publication and slot");
    if let Err(e) = replication_checks(&client, plan, &mut repl).await {
        repl.fail(format!("could not read publication/slot state: {e}"), "see the error above");
    }
    out.push(repl);
    facts
}

/// The server's version, `wal_level`, replication capacity and the role's
/// rights, each with its fix.
async fn server_checks(c: &Client, plan: &Plan, s: &mut CheckSection) -> Result<(), String> {
    let f = ServerFacts::read(c, plan).await?;
    s.pass(format!("reachable as {}", f.user));
    version_check(&f, s);
    capacity_checks(&f, s);
    role_check(&f, s);
    Ok(())
}

/// What the server says about itself and the login, in one query.
struct ServerFacts {
    version: String,
    version_num: i32,
    wal_level: String,
    max_slots: i32,
    used_slots: i32,
    max_senders: i32,
    used_senders: i32,
    user: String,
    superuser: bool,
    replication: bool,
    slot_exists: bool,
}

impl ServerFacts {
    async fn read(c: &Client, plan: &Plan) -> Result<ServerFacts, String> {
        let row = c
            .query_one(
                "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
                        current_setting('wal_level'), current_setting('max_replication_slots')::int, \
                        (SELECT count(*)::int FROM pg_replication_slots), \
                        current_setting('max_wal_senders')::int, \
                        (SELECT count(*)::int FROM pg_stat_replication), \
                        current_user::text, r.rolsuper, r.rolreplication, \
                        EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1) \
                 FROM pg_roles r WHERE r.rolname = current_user",
                &[&plan.source.slot],
            )
            .await
            .map_err(q)?;
        Ok(ServerFacts {
            version: row.get(0),
            version_num: row.get(1),
            wal_level: row.get(2),
            max_slots: row.get(3),
            used_slots: row.get(4),
            max_senders: row.get(5),
            used_senders: row.get(6),
            user: row.get(7),
            superuser: row.get(8),
            replication: row.get(9),
            slot_exists: row.get(10),
        })
    }
}

fn version_check(f: &ServerFacts, s: &mut CheckSection) {
    let (version, version_num) = (&f.version, f.version_num);
    let major = version_num / 10000;
    if version_num < MIN_VERSION_NUM {
        s.fail(
            format!("PostgreSQL {version}: xdb supports sources from PostgreSQL 12 through {TESTED_UP_TO}"),
            "upgrade the source to PostgreSQL 12 or newer (14 or newer streams large transactions)",
        );
    } else if version_num < MESSAGES_SINCE {
        s.warn(
            format!(
                "PostgreSQL {version} (xdb supports 12 through {TESTED_UP_TO}): before 14 a large transaction is not \
                 streamed while it runs; it arrives whole at its commit and xdb spills it to disk{}",
                if major == 12 {
                    "; partitioned tables are planned by their partitions (13+ publishes the parent)"
                } else {
                    ""
                }
            ),
            "nothing to do; PostgreSQL 14+ lowers memory and lag for huge transactions",
        );
    } else if major > TESTED_UP_TO {
        s.warn(
            format!("PostgreSQL {version}: newer than the versions xdb is tested with (12 through {TESTED_UP_TO})"),
            "try a snapshot, sync and validate against a copy of the database first",
        );
    } else {
        s.pass(format!("PostgreSQL {version} (xdb supports 12 through {TESTED_UP_TO})"));
    }
}

fn capacity_checks(f: &ServerFacts, s: &mut CheckSection) {
    let (wal_level, slot_exists) = (&f.wal_level, f.slot_exists);
    let (max_slots, used_slots, max_senders, used_senders) = (f.max_slots, f.used_slots, f.max_senders, f.used_senders);
    if wal_level == "logical" {
        s.pass("wal_level = logical");
    } else {
        s.fail(
            format!("wal_level = {wal_level}: logical decoding needs wal_level = logical"),
            "ALTER SYSTEM SET wal_level = logical;  -- then restart PostgreSQL\n\
             (or set wal_level = logical in postgresql.conf; on RDS/Aurora set rds.logical_replication = 1)",
        );
    }
    // The main slot, plus one spare for a temporary slot when a table is re-copied.
    let needed = if slot_exists { 1 } else { 2 };
    let free = max_slots - used_slots;
    if free >= needed {
        s.pass(format!("replication slots: {used_slots} of {max_slots} used, {free} free"));
    } else {
        s.fail(
            format!("replication slots: {used_slots} of {max_slots} used, xdb needs {needed} free"),
            format!(
                "ALTER SYSTEM SET max_replication_slots = {};  -- then restart PostgreSQL",
                used_slots + needed + 2
            ),
        );
    }
    let free_senders = max_senders - used_senders;
    if free_senders >= 2 {
        s.pass(format!("WAL senders: {used_senders} of {max_senders} used"));
    } else {
        s.fail(
            format!("WAL senders: {used_senders} of {max_senders} used, xdb needs 2 free"),
            format!("ALTER SYSTEM SET max_wal_senders = {};  -- then restart PostgreSQL", used_senders + 4),
        );
    }
}

fn role_check(f: &ServerFacts, s: &mut CheckSection) {
    let (user, superuser, replication) = (&f.user, f.superuser, f.replication);
    if superuser {
        s.pass(format!("role {user} is superuser"));
    } else if replication {
        s.pass(format!("role {user} has REPLICATION"));
    } else {
        s.fail(
            format!("role {user} has neither REPLICATION nor SUPERUSER: it cannot open a replication stream"),
            format!("ALTER ROLE {} WITH REPLICATION;", pg_ident(user)),
        );
    }
}

/// Per planned table: it exists (else the closest name), the role may read
/// it, it has a key the stream can match rows on, and what only its
/// partitions or kind can refuse.
async fn table_checks(c: &Client, plan: &Plan, s: &mut CheckSection) -> Result<Vec<TableSchema>, String> {
    let mut types = catalog::TypeCache::new();
    let mut found = Vec::new();
    let mut all_tables: Option<Vec<TableName>> = None;
    for t in &plan.tables {
        let schema = catalog::load_table(c, &mut types, t, plan.mapping.generated).await.map_err(|e| e.to_string())?;
        let Some(schema) = schema else {
            if all_tables.is_none() {
                all_tables = Some(catalog::list_tables(c).await.map_err(|e| e.to_string())?);
            }
            let hint = closest_table(t, all_tables.as_deref().unwrap_or_default())
                .map(|n| format!("did you mean {n}? "))
                .unwrap_or_default();
            s.fail(
                format!("{t}: table does not exist"),
                format!("{hint}fix the name in the plan's tables: list (schema.table), or create the table"),
            );
            continue;
        };
        let can_select = select_privilege(c, t, &schema, s).await?;
        let key_desc = key_description(&schema);
        if key_desc.is_some() {
            streamability(c, plan, t, &schema, s).await?;
        }
        match key_desc {
            Some(k) if can_select => s.pass(format!("{t}: {} columns, {k}", schema.columns.len())),
            Some(_) => {}
            None => s.fail(
                format!(
                    "{t}: no primary key and REPLICA IDENTITY is not FULL: updates and deletes could not be matched on the target"
                ),
                format!(
                    "ALTER TABLE {} ADD PRIMARY KEY (<columns>);\n-- or, to match rows on all columns:\nALTER TABLE {} REPLICA IDENTITY FULL;",
                    t.pg_quoted(),
                    t.pg_quoted()
                ),
            ),
        }
        found.push(schema);
    }
    money_scale(c, &found, s).await?;
    Ok(found)
}

/// Whether the source role may SELECT the table (a ✘ with the GRANT if not).
async fn select_privilege(
    c: &Client,
    t: &TableName,
    schema: &TableSchema,
    s: &mut CheckSection,
) -> Result<bool, String> {
    let can_select: bool =
        c.query_one("SELECT has_table_privilege($1::oid, 'SELECT')", &[&schema.oid]).await.map_err(q)?.get(0);
    if !can_select {
        s.fail(
            format!("{t}: no SELECT privilege for the source role"),
            format!("GRANT SELECT ON {} TO {};", t.pg_quoted(), pg_ident(&current_user(c).await?)),
        );
    }
    Ok(can_select)
}

/// What the stream matches rows on, or `None` when it could not match
/// updates and deletes at all.
fn key_description(schema: &TableSchema) -> Option<String> {
    match (schema.primary_key.is_empty(), schema.replica_identity) {
        (_, ReplicaIdentity::Full) => Some("REPLICA IDENTITY FULL".to_string()),
        (false, ReplicaIdentity::Default) | (false, ReplicaIdentity::Index) => Some(format!(
            "primary key ({})",
            schema.primary_key.iter().map(|&i| schema.columns[i].name.as_str()).collect::<Vec<_>>().join(", ")
        )),
        (true, ReplicaIdentity::Index) => {
            let cols: Vec<&str> = schema.columns.iter().filter(|c| c.is_key).map(|c| c.name.as_str()).collect();
            (!cols.is_empty()).then(|| format!("replica identity index ({})", cols.join(", ")))
        }
        (_, ReplicaIdentity::Nothing) => None,
        (true, _) => None,
    }
}

/// What only the partitions or the table's kind can refuse (a leaf
/// without a key, an inheritance parent, PostgreSQL 12), and how a
/// partitioned table is carried.
async fn streamability(
    c: &Client,
    plan: &Plan,
    t: &TableName,
    schema: &TableSchema,
    s: &mut CheckSection,
) -> Result<(), String> {
    if let Err(refused) = crate::source::postgres::streamable::check(c, std::slice::from_ref(t), &plan.only_tables)
        .await
        .map_err(|e| e.to_string())?
    {
        for u in refused.0 {
            s.fail(format!("{t}: {}", u.reason), u.fix);
        }
    }
    let partitions: i64 = c
        .query_one("SELECT count(*) FROM pg_partition_tree($1::oid::regclass) WHERE isleaf", &[&schema.oid])
        .await
        .map_err(q)?
        .get(0);
    if partitions > 0 {
        s.info(format!(
            "{t}: partitioned ({partitions} partitions now): copied as one table and streamed via its root, \
             so partitions created or attached later follow; on the target it is one plain table"
        ));
    }
    Ok(())
}

/// How `money` amounts are read, when a planned table has one: the
/// database's `lc_monetary` decides what a stored amount means.
async fn money_scale(c: &Client, tables: &[TableSchema], s: &mut CheckSection) -> Result<(), String> {
    use crate::model::PgType;
    let is_money = |t: &PgType| matches!(t, PgType::Money) || matches!(t, PgType::Array(e) if **e == PgType::Money);
    let cols: Vec<String> = tables
        .iter()
        .flat_map(|t| t.columns.iter().filter(|c| is_money(&c.pg_type)).map(move |c| format!("{}.{}", t.name, c.name)))
        .collect();
    if cols.is_empty() {
        return Ok(());
    }
    let scale = crate::source::postgres::money::read_scale(c).await.map_err(q)?;
    s.info(format!(
        "money ({}): lc_monetary {} has {} fraction digits; amounts move as the decimals the database's sessions see ('1'::money::numeric = {})",
        cols.join(", "),
        scale.locale,
        scale.digits,
        if scale.digits == 0 { "1".to_string() } else { format!("1.{}", "0".repeat(scale.digits as usize)) }
    ));
    Ok(())
}

async fn current_user(c: &Client) -> Result<String, String> {
    Ok(c.query_one("SELECT current_user::text", &[]).await.map_err(q)?.get(0))
}

fn closest_table(t: &TableName, all: &[TableName]) -> Option<String> {
    let names: Vec<String> = all.iter().map(|n| n.to_string()).collect();
    crate::suggest::closest(&t.to_string(), names.iter().map(String::as_str)).map(str::to_string)
}

/// The publication and the slot, as `snapshot`/`sync` will find them.
async fn replication_checks(c: &Client, plan: &Plan, s: &mut CheckSection) -> Result<(), String> {
    publication_check(c, plan, s).await?;
    slot_check(c, plan, s).await
}

async fn publication_check(c: &Client, plan: &Plan, s: &mut CheckSection) -> Result<(), String> {
    let pubname = &plan.source.publication;
    let publication = c
        .query_opt(
            "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1",
            &[pubname],
        )
        .await
        .map_err(q)?;
    match publication {
        None => publication_absent(c, plan, s).await,
        Some(p) => publication_exists(c, plan, &p, s).await,
    }
}

/// xdb will create the publication: can this role?
async fn publication_absent(c: &Client, plan: &Plan, s: &mut CheckSection) -> Result<(), String> {
    let pubname = &plan.source.publication;
    let table_list = plan.tables.iter().map(|t| t.pg_quoted()).collect::<Vec<_>>().join(", ");
    // Creating a publication FOR TABLE needs CREATE on the database and
    // ownership of each table (or superuser).
    let row = c
        .query_one(
            "SELECT r.rolsuper OR has_database_privilege(current_database(), 'CREATE') FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(q)?;
    let can_create: bool = row.get(0);
    let mut not_owned = Vec::new();
    for t in &plan.tables {
        let owned: Option<bool> = c
            .query_opt(
                "SELECT pg_has_role(c.relowner, 'USAGE') OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                &[&t.schema, &t.name],
            )
            .await
            .map_err(q)?
            .map(|r| r.get(0));
        if owned == Some(false) {
            not_owned.push(t.to_string());
        }
    }
    if can_create && not_owned.is_empty() {
        s.pass(format!("publication {pubname}: absent, will be created for the planned tables"));
    } else {
        s.fail(
            format!(
                "publication {pubname}: absent, and the source role cannot create it{}",
                if not_owned.is_empty() { String::new() } else { format!(" (not owner of {})", not_owned.join(", ")) }
            ),
            format!(
                "as the tables' owner or a superuser: CREATE PUBLICATION {} FOR TABLE {table_list};",
                pg_ident(pubname)
            ),
        );
    }
    Ok(())
}

/// A publication made earlier (by xdb or by hand): does it publish every
/// operation for every planned table?
async fn publication_exists(
    c: &Client,
    plan: &Plan,
    p: &tokio_postgres::Row,
    s: &mut CheckSection,
) -> Result<(), String> {
    let pubname = &plan.source.publication;
    let all: bool = p.get(0);
    let ops: Vec<(&str, bool)> =
        vec![("insert", p.get(1)), ("update", p.get(2)), ("delete", p.get(3)), ("truncate", p.get(4))];
    let missing_ops: Vec<&str> = ops.iter().filter(|(_, on)| !on).map(|(n, _)| *n).collect();
    let published: Vec<TableName> = c
        .query("SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1", &[pubname])
        .await
        .map_err(q)?
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let unpublished: Vec<&TableName> = plan.tables.iter().filter(|t| !all && !published.contains(t)).collect();
    // A partitioned member of a publication that does not publish via the
    // root is listed under its leaves: it is not missing, it is published
    // the wrong way (below).
    let not_via_root = publication::partitioned_not_via_root(c, pubname, &plan.tables).await.map_err(q)?;
    // The fix names only tables that exist: ADD TABLE on a missing one
    // fails the whole statement (the table check reports the missing ones).
    let mut missing = Vec::new();
    for t in unpublished {
        let exists: bool =
            c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&t.pg_quoted()]).await.map_err(q)?.get(0);
        if exists && !(not_via_root.contains(t) && leaves_published(c, pubname, t).await.map_err(q)?) {
            missing.push(t);
        }
    }
    let wrong_way = !not_via_root.is_empty();
    if wrong_way {
        partitions_not_via_root(c, pubname, &not_via_root, s).await?;
    }
    if !missing_ops.is_empty() {
        s.fail(
            format!("publication {pubname}: exists but does not publish {}", missing_ops.join(", ")),
            format!("ALTER PUBLICATION {} SET (publish = 'insert, update, delete, truncate');", pg_ident(pubname)),
        );
    }
    if !missing.is_empty() {
        s.fail(
            format!(
                "publication {pubname}: exists but lacks {}",
                missing.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            ),
            format!(
                "ALTER PUBLICATION {} ADD TABLE {};",
                pg_ident(pubname),
                missing.iter().map(|t| plan.read_from(t)).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    if missing_ops.is_empty() && missing.is_empty() && !wrong_way {
        s.pass(format!(
            "publication {pubname}: exists and covers the planned tables{}",
            if all { " (FOR ALL TABLES)" } else { "" }
        ));
    }
    Ok(())
}

/// Partitioned tables a publication lists without publishing via their
/// root: fine when xdb made it (it sets the option when it starts), a
/// failure otherwise (their changes would come under the leaves' names).
async fn partitions_not_via_root(
    c: &Client,
    pubname: &str,
    tables: &[TableName],
    s: &mut CheckSection,
) -> Result<(), String> {
    let list = tables.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
    if publication::created_by_xdb(c, pubname).await.map_err(q)? {
        s.pass(format!(
            "publication {pubname}: xdb made it, and sets publish_via_partition_root = true for the partitioned \
             table(s) {list} when it starts"
        ));
    } else {
        s.fail(
            format!(
                "publication {pubname}: lists the partitioned table(s) {list} but does not publish via the \
                 partition root: their changes would arrive under leaf-partition names and be lost"
            ),
            format!("ALTER PUBLICATION {} SET (publish_via_partition_root = true); (as its owner)", pg_ident(pubname)),
        );
    }
    Ok(())
}

/// The slot, if it exists: the right kind, this database, WAL kept, free.
async fn slot_check(c: &Client, plan: &Plan, s: &mut CheckSection) -> Result<(), String> {
    let slot = &plan.source.slot;
    let row = c
        .query_opt(
            // Through to_jsonb, a column the server's version lacks reads
            // as NULL: wal_status is 13+, failover 17+.
            "SELECT plugin::text, slot_type::text, database::text, active, active_pid, \
                    to_jsonb(s) ->> 'wal_status', confirmed_flush_lsn::text, current_database()::text, \
                    (to_jsonb(s) ->> 'failover')::boolean \
             FROM pg_replication_slots s WHERE slot_name = $1",
            &[slot],
        )
        .await
        .map_err(q)?;
    match row {
        None => s.pass(format!("slot {slot}: absent, will be created with an exported snapshot")),
        Some(r) => {
            let plugin: Option<String> = r.get(0);
            let slot_type: String = r.get(1);
            let database: Option<String> = r.get(2);
            let active: bool = r.get(3);
            let active_pid: Option<i32> = r.get(4);
            let wal_status: Option<String> = r.get(5);
            let confirmed: Option<String> = r.get(6);
            let current_db: String = r.get(7);
            let failover: Option<bool> = r.get(8);
            let drop_fix = format!(
                "use another slot name in the plan (source.slot), or drop this one: SELECT pg_drop_replication_slot('{slot}');"
            );
            if slot_type != "logical" || plugin.as_deref() != Some("pgoutput") {
                s.fail(
                    format!(
                        "slot {slot}: exists but is a {slot_type} slot with plugin {}, xdb needs logical/pgoutput",
                        plugin.as_deref().unwrap_or("none")
                    ),
                    drop_fix,
                );
            } else if database.as_deref() != Some(current_db.as_str()) {
                s.fail(
                    format!("slot {slot}: exists but belongs to database {}", database.as_deref().unwrap_or("?")),
                    drop_fix,
                );
            } else if wal_status.as_deref() == Some("lost") {
                s.fail(
                    format!("slot {slot}: its WAL was removed (wal_status = lost): changes are gone and a fresh copy is needed"),
                    format!("xdb sync --plan {} --recopy", plan.file.display()),
                );
            } else if active {
                s.warn(
                    format!("slot {slot}: in use by another process (pid {})", active_pid.unwrap_or_default()),
                    "stop the other consumer (another xdb sync?) before starting xdb",
                );
            } else {
                s.pass(format!(
                    "slot {slot}: exists (pgoutput, confirmed up to {}); see \"Stream continuity\" for whether it \
                     matches the target",
                    confirmed.as_deref().unwrap_or("?")
                ));
                // PostgreSQL 17+: only a failover slot is synchronized to
                // standbys (sync_replication_slots), so only it survives a
                // failover of the source (invariant *slot continuity*).
                match failover {
                    Some(true) => s.info(format!("slot {slot}: a failover slot (kept on standbys that sync slots)")),
                    Some(false) => s.info(format!(
                        "slot {slot}: not a failover slot: a failover of the source loses it, and `xdb sync` \
                         then refuses to go on (a new copy is needed)"
                    )),
                    None => {}
                }
            }
        }
    }
    Ok(())
}

fn pg_ident(s: &str) -> String {
    if !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// Whether a leaf partition of `t` is in `pubname`'s tables: `t` is a
/// member, published under its leaves.
async fn leaves_published(c: &Client, pubname: &str, t: &TableName) -> Result<bool, tokio_postgres::Error> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_partition_tree($1::text::regclass) tr \
           JOIN pg_class k ON k.oid = tr.relid JOIN pg_namespace n ON n.oid = k.relnamespace \
           JOIN pg_publication_tables pt ON pt.schemaname = n.nspname AND pt.tablename = k.relname \
           WHERE pt.pubname = $2 AND tr.isleaf)",
        &[&t.pg_quoted(), &pubname],
    )
    .await?
    .get(0))
}
