//! The publication xdb streams from: created when missing (and marked as
//! xdb's with a comment, so `xdb cleanup` drops only what xdb made), and
//! checked to cover every planned table when it exists.

use tokio_postgres::Client;

use crate::error_policy::pg_error_text;
use crate::model::TableName;

/// The comment that marks a publication as created by xdb.
pub const CREATED_BY_XDB: &str = "created by xdb";

/// Publication setup failed.
#[derive(Debug, thiserror::Error)]
pub enum PublicationError {
    #[error("publication {publication}: {}", pg_error_text(source))]
    Sql {
        publication: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "publication {publication} exists but does not include {missing}: run \
         ALTER PUBLICATION {publication} ADD TABLE {missing}; (as its owner) or name another publication in the plan"
    )]
    MissingTables { publication: String, missing: String },
    #[error(
        "publication {publication} lists the partitioned table(s) {tables} but does not publish via the \
         partition root, so their changes would arrive under leaf-partition names and be lost: run \
         ALTER PUBLICATION {publication} SET (publish_via_partition_root = true); (as its owner)"
    )]
    NotViaRoot { publication: String, tables: String },
    #[error(
        "publication {publication} publishes generated columns (publish_generated_columns = stored) and \
         {tables} have some: xdb makes them generated columns of the target, which the stream must not write: \
         run ALTER PUBLICATION {publication} SET (publish_generated_columns = none); (as its owner) or name \
         another publication in the plan"
    )]
    PublishesGenerated { publication: String, tables: String },
    #[error(
        "publication {publication} does not publish generated columns, and the plan says mapping.generated: \
         source (their values come from the stream): run ALTER PUBLICATION {publication} SET \
         (publish_generated_columns = stored); (as its owner) or name another publication in the plan"
    )]
    OmitsGenerated { publication: String },
}

impl PublicationError {
    /// A source restarting or away (by SQLSTATE); a publication in the
    /// wrong shape is the operator's to fix.
    pub fn is_retryable(&self) -> bool {
        match self {
            PublicationError::Sql { source, .. } => crate::error_policy::postgres(source).is_transient(),
            _ => false,
        }
    }
}

/// What `pg_publication.pubgencols` says for `name`: `n` (none) or `s`
/// (stored generated columns are published). PostgreSQL 18 and later.
async fn published_generated(client: &Client, name: &str) -> Result<String, tokio_postgres::Error> {
    Ok(client.query_one("SELECT pubgencols::text FROM pg_publication WHERE pubname = $1", &[&name]).await?.get(0))
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Makes sure `name` exists and publishes all of `tables`. Returns true when
/// it was created now.
pub async fn ensure(
    client: &Client,
    name: &str,
    tables: &[TableName],
    only: &[TableName],
    generated: crate::plan::GeneratedFrom,
) -> Result<bool, PublicationError> {
    let from_source = generated == crate::plan::GeneratedFrom::Source;
    let err = |source: tokio_postgres::Error| PublicationError::Sql { publication: name.to_string(), source };
    let exists =
        client.query_opt("SELECT puballtables FROM pg_publication WHERE pubname = $1", &[&name]).await.map_err(err)?;
    let version: i32 =
        client.query_one("SELECT current_setting('server_version_num')::int", &[]).await.map_err(err)?.get(0);
    match exists {
        None => {
            // `ONLY parent`: the children's changes are not published,
            // just as the copy leaves their rows out.
            let list = tables
                .iter()
                .map(|t| if only.contains(t) { format!("ONLY {}", t.pg_quoted()) } else { t.pg_quoted() })
                .collect::<Vec<_>>()
                .join(", ");
            // Via the root (13+): a partitioned table's changes arrive
            // under the planned parent's name, whichever partition they hit,
            // including partitions attached later. Without it pgoutput names
            // the leaf, which is not in the plan, and every change is lost.
            let via_root = if version >= 130000 { ", publish_via_partition_root = true" } else { "" };
            // `mapping.generated: source` (18+; before 18 `generated_recompute`).
            let via_root = if from_source && version >= 180000 {
                format!("{via_root}, publish_generated_columns = stored")
            } else {
                via_root.to_string()
            };
            client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {q} FOR TABLE {list} WITH (publish = 'insert, update, delete, truncate'{via_root}); \
                     COMMENT ON PUBLICATION {q} IS '{CREATED_BY_XDB}'",
                    q = quote(name)
                ))
                .await
                .map_err(err)?;
            Ok(true)
        }
        Some(row) => {
            if version >= 130000 {
                ensure_via_root(client, name, tables).await?;
            }
            if version >= 180000 && from_source {
                publish_generated(client, name).await?;
            } else if version >= 180000 {
                refuse_published_generated(client, name, tables).await?;
            }
            if row.get::<_, bool>(0) {
                return Ok(false);
            }
            let published: Vec<TableName> = client
                .query(
                    "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
                    &[&name],
                )
                .await
                .map_err(err)?
                .iter()
                .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect();
            let missing: Vec<String> =
                tables.iter().filter(|t| !published.contains(t)).map(|t| t.pg_quoted()).collect();
            if missing.is_empty() {
                Ok(false)
            } else {
                Err(PublicationError::MissingTables { publication: name.to_string(), missing: missing.join(", ") })
            }
        }
    }
}

/// The planned partitioned tables of a publication that does not publish
/// via the root (13+): the stream would name their leaf partitions, which
/// are not in the plan, and lose every change. Empty when it does, or when
/// no planned table is partitioned. Read only (`check` asks it too).
pub async fn partitioned_not_via_root(
    client: &Client,
    name: &str,
    tables: &[TableName],
) -> Result<Vec<TableName>, tokio_postgres::Error> {
    let version: i32 = client.query_one("SELECT current_setting('server_version_num')::int", &[]).await?.get(0);
    if version < 130000 {
        // No publish_via_partition_root (streamable refuses partitioned tables there).
        return Ok(Vec::new());
    }
    let via_root: Option<bool> =
        client.query_opt("SELECT pubviaroot FROM pg_publication WHERE pubname = $1", &[&name]).await?.map(|r| r.get(0));
    if via_root != Some(false) {
        return Ok(Vec::new());
    }
    let mut partitioned = Vec::new();
    for t in tables {
        let p: Option<bool> = client
            .query_opt(
                "SELECT c.relkind = 'p' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&t.schema, &t.name],
            )
            .await?
            .map(|r| r.get(0));
        if p == Some(true) {
            partitioned.push(t.clone());
        }
    }
    Ok(partitioned)
}

/// A publication that lists a partitioned table must publish via the root,
/// or the stream names leaf partitions that are not in the plan. xdb fixes
/// its own publication; someone else's is refused with the statement.
async fn ensure_via_root(client: &Client, name: &str, tables: &[TableName]) -> Result<(), PublicationError> {
    let err = |source: tokio_postgres::Error| PublicationError::Sql { publication: name.to_string(), source };
    let partitioned = partitioned_not_via_root(client, name, tables).await.map_err(err)?;
    if partitioned.is_empty() {
        return Ok(());
    }
    if created_by_xdb(client, name).await.map_err(err)? {
        client
            .batch_execute(&format!("ALTER PUBLICATION {} SET (publish_via_partition_root = true)", quote(name)))
            .await
            .map_err(err)?;
        tracing::info!(publication = name, "publishing partitioned tables via their root");
        return Ok(());
    }
    Err(PublicationError::NotViaRoot {
        publication: name.to_string(),
        tables: partitioned.iter().map(|t| t.pg_quoted()).collect::<Vec<_>>().join(", "),
    })
}

/// PostgreSQL 18 can publish stored generated columns; xdb's target
/// computes them itself (`mapping::generated`), so a publication that sends
/// them for a planned table is refused with the statement.
async fn refuse_published_generated(client: &Client, name: &str, tables: &[TableName]) -> Result<(), PublicationError> {
    let err = |source: tokio_postgres::Error| PublicationError::Sql { publication: name.to_string(), source };
    let gencols = published_generated(client, name).await.map_err(err)?;
    if gencols == "n" {
        return Ok(());
    }
    let mut with = Vec::new();
    for t in tables {
        let has: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attgenerated = 's' AND NOT a.attisdropped)",
                &[&t.schema, &t.name],
            )
            .await
            .map_err(err)?
            .get(0);
        if has {
            with.push(t.pg_quoted());
        }
    }
    if with.is_empty() {
        return Ok(());
    }
    Err(PublicationError::PublishesGenerated { publication: name.to_string(), tables: with.join(", ") })
}

/// `mapping.generated: source`: the publication must publish stored
/// generated columns. xdb sets it on its own publication; someone else's
/// is refused with the statement.
async fn publish_generated(client: &Client, name: &str) -> Result<(), PublicationError> {
    let err = |source: tokio_postgres::Error| PublicationError::Sql { publication: name.to_string(), source };
    let gencols = published_generated(client, name).await.map_err(err)?;
    if gencols == "s" {
        return Ok(());
    }
    if created_by_xdb(client, name).await.map_err(err)? {
        client
            .batch_execute(&format!("ALTER PUBLICATION {} SET (publish_generated_columns = stored)", quote(name)))
            .await
            .map_err(err)?;
        tracing::info!(publication = name, "publishing stored generated columns (mapping.generated: source)");
        return Ok(());
    }
    Err(PublicationError::OmitsGenerated { publication: name.to_string() })
}

/// True when the publication exists and carries xdb's comment.
pub async fn created_by_xdb(client: &Client, name: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = $1", &[&name])
        .await?;
    Ok(row.and_then(|r| r.get::<_, Option<String>>(0)).is_some_and(|c| c == CREATED_BY_XDB))
}
