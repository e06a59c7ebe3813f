//! Whether a planned table can be published without harming the source or
//! losing changes — checked before xdb creates or extends a publication.
//!
//! Once a table is in a publication that publishes updates and deletes,
//! PostgreSQL rejects the application's own `UPDATE`/`DELETE` on it unless
//! it has a replica identity (a primary key, an identity index, or FULL).
//! xdb must never make the application's writes fail, so such a table is
//! refused with the fix, before anything is published (invariant "keys").
//!
//! Partitioned tables are planned by their parent: the publication
//! publishes via the root, so changes to any partition — including ones
//! attached later — arrive under the parent's name. Every leaf partition
//! needs a replica identity too, because the leaf is what the
//! application writes to. An inheritance parent is refused unless the plan
//! lists it as `ONLY schema.table`: its children would be read by the copy
//! (`SELECT … FROM parent` includes them) but their changes are published
//! under their own names, so copy and stream would disagree. With `ONLY`,
//! the copy, the publication and validation take the parent's own rows.

use tokio_postgres::Client;

use super::catalog::CatalogError;
use crate::model::TableName;

/// A planned table xdb will not publish, with the reason and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstreamable {
    pub table: TableName,
    pub reason: String,
    pub fix: String,
}

/// Refusing to publish: every table that cannot be, with its fix.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.0))]
pub struct UnstreamableTables(pub Vec<Unstreamable>);

fn render(list: &[Unstreamable]) -> String {
    let mut s = String::from(
        "nothing was published and no slot was created, because PostgreSQL would then reject the application's \
         own writes, or changes would be lost:",
    );
    for u in list {
        s.push_str(&format!("\n  {}: {}\n    fix: {}", u.table, u.reason, u.fix.replace('\n', "\n         ")));
    }
    s
}

/// Checks every table of the plan; `Ok(Ok(()))` when all can be published.
pub async fn check(
    client: &Client,
    tables: &[TableName],
    only: &[TableName],
) -> Result<Result<(), UnstreamableTables>, CatalogError> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|source| CatalogError::Query { what: "the server version".into(), source })?
        .get(0);
    let mut refused = Vec::new();
    for t in tables {
        refused.extend(check_table(client, t, version, only.contains(t)).await?);
    }
    Ok(if refused.is_empty() { Ok(()) } else { Err(UnstreamableTables(refused)) })
}

async fn check_table(
    client: &Client,
    table: &TableName,
    version: i32,
    only: bool,
) -> Result<Vec<Unstreamable>, CatalogError> {
    let q = |source| CatalogError::Query { what: format!("the replica identity of {table}"), source };
    // The table itself and, for a partitioned table, every leaf partition.
    let rows = client
        .query(
            "WITH t AS (SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                        WHERE n.nspname = $1 AND c.relname = $2) \
             SELECT r.oid::regclass::text, r.relkind::text, r.relreplident::text, \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = r.oid AND (i.indisprimary OR i.indisreplident)), \
                    EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhparent = r.oid), \
                    r.oid = t.oid \
             FROM t, pg_class r \
             WHERE r.oid = t.oid \
                OR (t.relkind = 'p' AND r.oid IN (SELECT relid FROM pg_partition_tree(t.oid) WHERE isleaf)) \
             ORDER BY r.oid = t.oid DESC, 1",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(q)?;
    let mut out = Vec::new();
    let refuse = |reason: String, fix: String| Unstreamable { table: table.clone(), reason, fix };
    for row in rows {
        let rel: String = row.get(0);
        let relkind: String = row.get(1);
        let ident: String = row.get(2);
        let has_key: bool = row.get(3);
        let has_children: bool = row.get(4);
        let is_planned: bool = row.get(5);
        if is_planned && relkind == "p" && version < 130000 {
            out.push(refuse(
                "a partitioned table, and PostgreSQL 12 cannot publish a partitioned table by its parent \
                 (publish_via_partition_root needs 13)"
                    .into(),
                format!("list the partitions in the plan's tables instead of {table}"),
            ));
            continue;
        }
        if is_planned && relkind == "r" && has_children && !only {
            out.push(refuse(
                "an inheritance parent: the copy would read its children's rows, but their changes are \
                 published under the children's own names, so copy and stream would disagree"
                    .into(),
                format!(
                    "list it as `ONLY {table}` in the plan's tables to copy and stream its own rows only \
                     (and plan the children it should also move, each on its own)"
                ),
            ));
            continue;
        }
        let ok = match ident.as_str() {
            "f" => true,
            "d" | "i" => has_key,
            _ => false,
        };
        if ok || (relkind == "p" && !is_planned) {
            continue;
        }
        let what = if is_planned { String::new() } else { format!("its partition {rel} has ") };
        let reason = match ident.as_str() {
            "n" => format!("{what}REPLICA IDENTITY NOTHING"),
            _ => format!("{what}no primary key and REPLICA IDENTITY is not FULL"),
        };
        out.push(refuse(
            format!(
                "{reason}: once published, PostgreSQL rejects every UPDATE and DELETE on it \
                 (\"cannot update table … because it does not have a replica identity and publishes updates\")"
            ),
            format!(
                "ALTER TABLE {rel} ADD PRIMARY KEY (<columns>);\n-- or, to match rows on all columns:\n\
                 ALTER TABLE {rel} REPLICA IDENTITY FULL;"
            ),
        ));
    }
    Ok(out)
}
