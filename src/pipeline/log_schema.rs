//! Table shapes on the replicated log (invariant *schema drift through the
//! log*, docs/architecture.md): the producer publishes a Debezium
//! schema-change event (`debezium/schema.rs`) whenever the shape of a
//! table's change events differs from the last shape the log holds for
//! it, in order with the data (its id: commit LSN and the position of the
//! event it precedes); the consumer reads the shape at its position back
//! from the log, and follows each change with the direct path's
//! [`SinkWriter::relation_changed_with`](crate::sink::writer::SinkWriter).
//!
//! The producer's "last shape" is always the log's own (read back at
//! start), so a restart never publishes a shape twice nor skips one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::debezium::schema::{self as debezium_schema, Kind};
use crate::model::{Column, PgType, ReplicaIdentity, TableName, TableSchema};
use crate::nats::{Log, LogError, NatsTarget};
use crate::pg_conn::client;
use crate::plan::{GeneratedFrom, SecretUrl};
use crate::sink::writer::rename_candidate;
use crate::source::postgres::catalog::{load_table, renamed_in_place, CatalogError, TypeCache};

/// A shape as far as comparing needs: names, type OIDs and modifiers.
fn bare(name: &TableName, oid: u32, sig: &debezium_schema::Signature) -> TableSchema {
    TableSchema {
        oid,
        name: name.clone(),
        columns: sig
            .iter()
            .map(|(n, o, m)| {
                let mut c = Column::new(n.clone(), PgType::Text);
                c.type_oid = *o;
                c.typmod = *m;
                c
            })
            .collect(),
        replica_identity: ReplicaIdentity::Default,
        primary_key: vec![],
        generated: vec![],
    }
}

/// Same column names, type OIDs and modifiers, in the same order.
fn same_shape(a: &TableSchema, b: &TableSchema) -> bool {
    a.columns.len() == b.columns.len()
        && a.columns
            .iter()
            .zip(&b.columns)
            .all(|(x, y)| x.type_oid == y.type_oid && x.typmod == y.typmod && x.name == y.name)
}

/// Why a shape could not be published.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("source: {0}")]
    Connect(#[from] client::ConnectError),
    #[error("source: {0}")]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Config(String),
}

/// The producer's view: the last shape the log holds per table.
pub struct Shapes {
    known: HashMap<TableName, TableSchema>,
    source_url: SecretUrl,
    /// The plan's `mapping.generated`, for reading the catalog.
    generated: GeneratedFrom,
    catalog: Option<tokio_postgres::Client>,
}

/// A schema-change event to publish: subject and payload.
pub struct ShapeEvent {
    pub subject: String,
    pub payload: Vec<u8>,
}

impl Shapes {
    /// The shapes the log holds (the last schema-change event per table),
    /// or, for a table without one (a log written before xdb published
    /// shapes), `fallback`: the catalog's.
    pub async fn from_log(
        log: &Log,
        tables: &HashMap<TableName, Arc<TableSchema>>,
        source_url: &SecretUrl,
        generated: GeneratedFrom,
    ) -> Result<Shapes, ShapeError> {
        let t = &log.target;
        let stream = log.js.get_stream(&t.stream).await.map_err(|e| ShapeError::Config(e.to_string()))?;
        let mut known = HashMap::new();
        for (name, schema) in tables {
            let subject = t.schema_subject(&name.schema, &name.name).map_err(ShapeError::Config)?;
            let shape = match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => {
                    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                    let p = debezium_schema::parse(&v)
                        .map_err(|e| ShapeError::Config(format!("stream {} message {}: {e}", t.stream, m.sequence)))?;
                    bare(name, p.table_oid, &p.signature())
                }
                Err(_) => (**schema).clone(),
            };
            known.insert(name.clone(), shape);
        }
        Ok(Shapes { known, source_url: source_url.clone(), generated, catalog: None })
    }

    /// For the copy: the shapes are the catalog's, published as `CREATE`.
    pub fn for_copy(
        tables: &HashMap<TableName, Arc<TableSchema>>,
        source_url: &SecretUrl,
        generated: GeneratedFrom,
    ) -> Shapes {
        Shapes {
            known: tables.iter().map(|(n, s)| (n.clone(), (**s).clone())).collect(),
            source_url: source_url.clone(),
            generated,
            catalog: None,
        }
    }

    /// The event a table's `CREATE` at the copy.
    pub fn create_event(
        &self,
        target: &NatsTarget,
        db: &str,
        table: &TableSchema,
        source: serde_json::Value,
    ) -> Result<ShapeEvent, ShapeError> {
        let subject = target.schema_subject(&table.name.schema, &table.name.name).map_err(ShapeError::Config)?;
        Ok(ShapeEvent {
            subject,
            payload: debezium_schema::event(db, &target.prefix, table, Kind::Create, &[], &[], source),
        })
    }

    /// `Some(event)` when `table` (the shape a change event is about to be
    /// written with) differs from the last one the log holds; the renames
    /// are those the source's catalog confirms (as the direct path decides
    /// them), and added columns carry the catalog's nullability, default
    /// and identity (a Relation message has none of them).
    pub async fn changed(
        &mut self,
        target: &NatsTarget,
        db: &str,
        table: &TableSchema,
        source: impl FnOnce() -> serde_json::Value,
    ) -> Result<Option<ShapeEvent>, ShapeError> {
        // Called for every change event: compared in place, no allocation.
        let old = match self.known.get(&table.name) {
            Some(o) if same_shape(o, table) => return Ok(None),
            Some(o) => o.clone(),
            None => bare(&table.name, table.oid, &vec![]),
        };
        if self.catalog.is_none() {
            self.catalog = Some(client::connect(&self.source_url, "xdb sync (schema)").await?);
        }
        let catalog = self.catalog.as_ref().expect("connected above");
        let mut renamed = Vec::new();
        for (i, c) in old.columns.iter().enumerate() {
            if let Some(n) = rename_candidate(&old, table, i, &[]) {
                if renamed_in_place(catalog, table.oid, &n.name).await? {
                    renamed.push((c.name.clone(), n.name.clone()));
                }
            }
        }
        let mut full = table.clone();
        // Added columns the catalog no longer has by name (renamed or
        // dropped since the ALTER): their NOT NULL and default are unknown,
        // which the event says rather than let a consumer guess.
        let mut unknown: Vec<String> = full
            .columns
            .iter()
            .filter(|c| old.column_index(&c.name).is_none() && !renamed.iter().any(|(_, to)| *to == c.name))
            .map(|c| c.name.clone())
            .collect();
        if let Some(now) = load_table(catalog, &mut TypeCache::new(), &table.name, self.generated).await? {
            unknown.retain(|n| now.column_index(n).is_none());
            for c in full.columns.iter_mut() {
                if let Some(k) = now.columns.iter().find(|k| k.name == c.name) {
                    c.nullable = k.nullable;
                    c.default = k.default.clone();
                    c.identity = k.identity;
                    c.carried = k.carried.clone();
                    c.feeds_generated = k.feeds_generated;
                }
            }
            if full.primary_key.is_empty() {
                full.primary_key =
                    now.primary_key.iter().filter_map(|&i| full.column_index(&now.columns[i].name)).collect();
            }
        }
        tracing::info!(table = %table.name, renamed = ?renamed, "table shape changed on the source: publishing a schema-change event");
        let subject = target.schema_subject(&table.name.schema, &table.name.name).map_err(ShapeError::Config)?;
        let payload = debezium_schema::event(db, &target.prefix, &full, Kind::Alter, &renamed, &unknown, source());
        self.known.insert(table.name.clone(), full);
        Ok(Some(ShapeEvent { subject, payload }))
    }
}
