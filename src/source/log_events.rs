//! Debezium change events read back from a replicated log, assembled into
//! whole source transactions by their BEGIN/END metadata (invariant
//! *commit order*), with the tables' shapes followed from the log's
//! schema-change events (invariant *schema drift through the log*).
//! Transport-neutral: a transport (`source/nats/`; a Kafka one would be a
//! sibling) hands over each message's position, subject (`<prefix>.…`, as
//! a Kafka topic would be named) and payload. Positions are the
//! transport's sequence numbers: a transaction's is the sequence of its
//! END, a copied row's its own.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::debezium::{self, UNAVAILABLE};
use crate::model::{Change, Lsn, Row, TableSchema, Transaction};
use crate::source::postgres::catalog::{resolve_event_shape, CatalogError, TypeCache};
use crate::source::{NoLarge, ShapeChange, SourceEvent};

/// A message that is not what xdb writes, or a shape the original source
/// cannot resolve.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("stream {stream} message {seq} on {subject}: {reason}")]
    Message { stream: String, seq: u64, subject: String, reason: String },
    #[error("stream {stream} message {seq}: the new shape of {table}: {source}")]
    Shape {
        stream: String,
        seq: u64,
        table: String,
        #[source]
        source: CatalogError,
    },
}

impl EventError {
    pub fn is_retryable(&self) -> bool {
        match self {
            EventError::Message { .. } => false,
            EventError::Shape { source, .. } => match source {
                CatalogError::Query { source, .. } => crate::error_policy::postgres(source).is_transient(),
                _ => false,
            },
        }
    }
}

/// What the assembler hands on: whole transactions (a copied row is one
/// of its own), the first changes of a large one as parts (invariant
/// *bounded memory*; the rest comes as the closing transaction), a copy's
/// start as a transaction emptying the planned tables and its end as
/// [`SourceEvent::CopyDone`], and shape changes with the renames the
/// producer's catalog confirmed.
pub type LogEvent = SourceEvent<NoLarge>;

/// Changes of one transaction held before they are handed on as a part
/// (`XDB_LOG_PART_CHANGES`).
fn part_changes() -> usize {
    std::env::var("XDB_LOG_PART_CHANGES").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(20_000)
}

/// Assembles a log's messages, in order, into [`LogEvent`]s.
pub struct EventAssembler {
    /// The log's name, for messages.
    stream: String,
    /// The subject prefix (the producer's `subject_prefix`).
    prefix: String,
    tables: HashMap<(String, String), Arc<TableSchema>>,
    /// The planned tables in the plan's order (a copy's start empties them).
    order: Vec<(String, String)>,
    /// The transaction being assembled: xid, commit time, changes.
    open: Option<(u32, i64, Vec<Change>)>,
    part_size: usize,
    /// The original source, whose catalog resolves the types of a new shape.
    catalog: tokio_postgres::Client,
    types: TypeCache,
    /// Parts of the open transaction already handed on.
    parts_out: bool,
}

impl EventAssembler {
    /// `tables`: the planned ones, in the shapes at the reader's position.
    pub fn new(stream: &str, prefix: &str, tables: Vec<Arc<TableSchema>>, catalog: tokio_postgres::Client) -> Self {
        EventAssembler {
            stream: stream.to_string(),
            prefix: prefix.to_string(),
            order: tables.iter().map(|t| (t.name.schema.clone(), t.name.name.clone())).collect(),
            tables: tables.into_iter().map(|t| ((t.name.schema.clone(), t.name.name.clone()), t)).collect(),
            open: None,
            part_size: part_changes(),
            catalog,
            types: Default::default(),
            parts_out: false,
        }
    }

    /// One message, the one after the last fed: an item when it completes
    /// one (a transaction's END, a copied row, a marker, a new shape, a
    /// part of a large transaction), else `None`.
    pub async fn feed(&mut self, seq: u64, subject: &str, payload: &[u8]) -> Result<Option<LogEvent>, EventError> {
        let stream_name = self.stream.clone();
        let bad = |reason: String| EventError::Message {
            stream: stream_name.clone(),
            seq,
            subject: subject.to_string(),
            reason,
        };
        let v: Json = serde_json::from_slice(payload).map_err(|e| bad(format!("not JSON: {e}")))?;
        let rest = subject.strip_prefix(&self.prefix).and_then(|r| r.strip_prefix('.')).unwrap_or(subject);
        if rest.starts_with("xdb_schema.") {
            let parsed = crate::debezium::schema::parse(&v).map_err(bad)?;
            let key = (parsed.table.schema.clone(), parsed.table.name.clone());
            // Another applier's table (a `tables:` split): skipped.
            let Some(base) = self.tables.get(&key).cloned() else { return Ok(None) };
            if self.parts_out {
                return Err(bad(format!(
                    "{} changed shape inside a transaction whose first changes are applied already (in parts \
                     of XDB_LOG_PART_CHANGES={}): run the consumer again with XDB_LOG_PART_CHANGES above the \
                     transaction's size",
                    parsed.table, self.part_size
                )));
            }
            let shape =
                resolve_event_shape(&parsed, &self.catalog, &mut self.types, Some(&base)).await.map_err(|source| {
                    EventError::Shape { stream: self.stream.clone(), seq, table: parsed.table.to_string(), source }
                })?;
            let table = Arc::new(shape.keyed_by_identity_index());
            self.tables.insert(key, table.clone());
            return Ok(Some(SourceEvent::Shape(ShapeChange {
                table,
                renamed: parsed.renamed,
                catalog_unknown: parsed.catalog_unknown,
            })));
        }
        let p = if v.get("schema").is_some() && v.get("payload").is_some() { &v["payload"] } else { &v };
        self.message(seq, subject, p).map_err(bad)
    }

    /// Whether the first changes of the open transaction were handed on.
    pub fn in_parts(&self) -> bool {
        self.parts_out
    }

    /// The copy starts (again): the planned tables are emptied, with the
    /// position, in one target transaction.
    fn copy_start(&self, seq: u64) -> Transaction {
        let tables = self.order.iter().filter_map(|k| self.tables.get(k).cloned()).collect();
        Transaction {
            xid: 0,
            commit_lsn: Lsn(seq),
            end_lsn: Lsn(seq),
            commit_time_micros: 0,
            changes: vec![Change::Truncate { tables, cascade: false, restart_identity: false }],
        }
    }

    fn message(&mut self, seq: u64, subject: &str, p: &Json) -> Result<Option<LogEvent>, String> {
        let rest = subject.strip_prefix(&self.prefix).and_then(|r| r.strip_prefix('.')).unwrap_or(subject);
        match rest {
            "xdb_heartbeat" => Ok(None),
            "xdb" => Ok(match p["snapshot"].as_str() {
                Some("start") => Some(SourceEvent::Transaction(self.copy_start(seq))),
                Some("end") => Some(SourceEvent::CopyDone(Lsn(seq))),
                _ => None,
            }),
            "transaction" => match p["status"].as_str() {
                Some("BEGIN") => {
                    let id = p["id"].as_str().unwrap_or_default();
                    let xid = id.split(':').next().and_then(|x| x.parse().ok()).unwrap_or(0);
                    // A BEGIN while one is open: the producer restarted and
                    // published the same transaction's BEGIN again is not
                    // possible (the stream holds a gap-free prefix), so
                    // this is a log xdb did not write.
                    if self.open.is_some() {
                        return Err("BEGIN inside an open transaction".into());
                    }
                    self.open = Some((xid, p["ts_ms"].as_i64().unwrap_or(0) * 1000, Vec::new()));
                    Ok(None)
                }
                Some("END") => {
                    let (xid, time, changes) = self.open.take().ok_or("END without BEGIN")?;
                    self.parts_out = false;
                    Ok(Some(SourceEvent::Transaction(Transaction {
                        xid,
                        commit_lsn: Lsn(seq),
                        end_lsn: Lsn(seq),
                        commit_time_micros: time,
                        changes,
                    })))
                }
                other => Err(format!("unknown transaction status {other:?}")),
            },
            _ => {
                let (schema, table) = (p["source"]["schema"].as_str(), p["source"]["table"].as_str());
                let (Some(schema), Some(table)) = (schema, table) else { return Err("no source.schema/table".into()) };
                // Another applier's table (a `tables:` split): skipped.
                let Some(t) = self.tables.get(&(schema.to_string(), table.to_string())).cloned() else {
                    return Ok(None);
                };
                let op = p["op"].as_str().unwrap_or_default();
                let change = change(&t, op, p)?;
                if op == "r" {
                    return Ok(Some(SourceEvent::Transaction(Transaction {
                        xid: 0,
                        commit_lsn: Lsn(seq),
                        end_lsn: Lsn(seq),
                        commit_time_micros: p["source"]["ts_ms"].as_i64().unwrap_or(0) * 1000,
                        changes: vec![change],
                    })));
                }
                let (xid, time, changes) = self.open.as_mut().ok_or("a change outside BEGIN/END")?;
                changes.push(change);
                if changes.len() >= self.part_size {
                    self.parts_out = true;
                    return Ok(Some(SourceEvent::Part(Transaction {
                        xid: *xid,
                        commit_lsn: Lsn(seq),
                        end_lsn: Lsn(seq),
                        commit_time_micros: *time,
                        changes: std::mem::take(changes),
                    })));
                }
                Ok(None)
            }
        }
    }
}

/// One event back into a [`Change`] on `t` (the source catalog's shape).
fn change(t: &Arc<TableSchema>, op: &str, p: &Json) -> Result<Change, String> {
    let row = |field: &str, toast: &mut Vec<usize>| -> Result<Option<Row>, String> {
        let obj = &p[field];
        if obj.is_null() {
            return Ok(None);
        }
        // The event and the last shape the log described must agree on
        // the columns (invariant *schema drift through the log*): a
        // missing or extra column is never guessed.
        if let Some(o) = obj.as_object() {
            if let Some(extra) = o.keys().find(|k| t.column_index(k).is_none()) {
                return Err(format!(
                    "{}: column {extra} is in the event but not in the table's last schema-change event (a log \
                     written by an xdb that did not publish shapes): copy into a new stream",
                    t.name
                ));
            }
            if field == "after" {
                if let Some(c) = t.columns.iter().find(|c| !o.contains_key(&c.name)) {
                    return Err(format!(
                        "{}: the event has no column {}, which the table's last schema-change event has (a log \
                         written by an xdb that did not publish shapes): copy into a new stream",
                        t.name, c.name
                    ));
                }
            }
        }
        let mut row = Vec::with_capacity(t.columns.len());
        for (i, c) in t.columns.iter().enumerate() {
            let v = &obj[c.name.as_str()];
            if v.as_str() == Some(UNAVAILABLE) && !matches!(c.pg_type, crate::model::PgType::Bytea) {
                toast.push(i);
                row.push(crate::model::Value::Null);
                continue;
            }
            row.push(debezium::decode(&c.pg_type, v).map_err(|e| format!("{}.{}: {e}", t.name, c.name))?);
        }
        Ok(Some(row))
    };
    let mut toast = Vec::new();
    let mut ignored = Vec::new();
    Ok(match op {
        "r" | "c" => Change::Insert { table: t.clone(), new: row("after", &mut ignored)?.ok_or("no after")? },
        "u" => {
            let old = row("before", &mut ignored)?;
            let new = row("after", &mut toast)?.ok_or("no after")?;
            Change::Update { table: t.clone(), old, new, unchanged_toast: toast }
        }
        "d" => Change::Delete { table: t.clone(), old: row("before", &mut ignored)?.ok_or("no before")? },
        "t" => Change::Truncate { tables: vec![t.clone()], cascade: false, restart_identity: false },
        other => return Err(format!("unknown op {other:?}")),
    })
}
