//! The publication xdb streams from: created when missing (and marked as
//! xdb's with a comment, so `xdb cleanup` drops only what xdb made), and
//! checked to cover every planned table when it exists.

use tokio_postgres::Client;

use super::client::error_text;
use crate::model::TableName;

/// The comment that marks a publication as created by xdb.
pub const CREATED_BY_XDB: &str = "created by xdb";

/// Publication setup failed.
#[derive(Debug, thiserror::Error)]
pub enum PublicationError {
    #[error("publication {publication}: {reason}")]
    Sql { publication: String, reason: String },
    #[error(
        "publication {publication} exists but does not include {missing}: run \
         ALTER PUBLICATION {publication} ADD TABLE {missing}; (as its owner) or name another publication in the plan"
    )]
    MissingTables { publication: String, missing: String },
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Makes sure `name` exists and publishes all of `tables`. Returns true when
/// it was created now.
pub async fn ensure(client: &Client, name: &str, tables: &[TableName]) -> Result<bool, PublicationError> {
    let err =
        |e: tokio_postgres::Error| PublicationError::Sql { publication: name.to_string(), reason: error_text(&e) };
    let exists =
        client.query_opt("SELECT puballtables FROM pg_publication WHERE pubname = $1", &[&name]).await.map_err(err)?;
    match exists {
        None => {
            let list = tables.iter().map(|t| t.pg_quoted()).collect::<Vec<_>>().join(", ");
            client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {q} FOR TABLE {list} WITH (publish = 'insert, update, delete, truncate'); \
                     COMMENT ON PUBLICATION {q} IS '{CREATED_BY_XDB}'",
                    q = quote(name)
                ))
                .await
                .map_err(err)?;
            Ok(true)
        }
        Some(row) => {
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

/// True when the publication exists and carries xdb's comment.
pub async fn created_by_xdb(client: &Client, name: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = $1", &[&name])
        .await?;
    Ok(row.and_then(|r| r.get::<_, Option<String>>(0)).is_some_and(|c| c == CREATED_BY_XDB))
}
