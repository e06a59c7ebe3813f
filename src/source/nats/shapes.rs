//! The shape a consumer of the log starts from (invariant *schema drift
//! through the log*): the producer publishes a schema-change event before
//! the first event written with a new shape, so the shape at a stream
//! position is found in the log itself, not in the source's catalog.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use futures_util::StreamExt;

use crate::debezium::schema::{self as debezium_schema, Parsed};
use crate::model::TableName;
use crate::nats::{Log, LogError, NatsTarget};

/// The consumer's view at a stream position: for each table, the shape its
/// next event was written with — the last schema-change event at or before
/// `after`, or, when there is none yet (a consumer at the start, or killed
/// after the copy's start marker but before its `CREATE` events), the first
/// one after it. Never the source catalog's current shape while the log
/// has one: columns added since would look dropped when the copy's shape
/// arrives. (None: the log has none for the table.)
pub async fn shapes_at(target: &NatsTarget, after: u64) -> Result<HashMap<TableName, Parsed>, LogError> {
    let mut out = HashMap::new();
    let log = Log::connect(target).await?;
    let api = |e: &dyn std::fmt::Display| LogError::Api {
        stream: target.stream.clone(),
        what: "reading the schema-change events",
        reason: e.to_string(),
        retry: crate::error_policy::Retry::Transient,
    };
    let stream = log.js.get_stream(&target.stream).await.map_err(|e| api(&e))?;
    let config = OrderedConfig {
        filter_subject: format!("{}.xdb_schema.>", target.prefix),
        deliver_policy: DeliverPolicy::All,
        ..Default::default()
    };
    let mut consumer = stream.create_consumer(config).await.map_err(|e| api(&e))?;
    let mut pending = consumer.info().await.map_err(|e| api(&e))?.num_pending;
    if pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await.map_err(|e| api(&e))?;
    while pending > 0 {
        let m = match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(api(&e)),
            Ok(None) | Err(_) => return Err(api(&"the schema-change events stopped coming")),
        };
        let info = m.info().map_err(|e| api(&e))?;
        pending = info.pending;
        let at_or_before = info.stream_sequence <= after;
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
        let p = debezium_schema::parse(&v)
            .map_err(|e| api(&format!("message {} on {}: {e}", info.stream_sequence, m.subject)))?;
        if at_or_before {
            out.insert(p.table.clone(), p);
        } else {
            out.entry(p.table.clone()).or_insert(p);
        }
    }
    Ok(out)
}
