//! Debezium's change-event envelope (PostgreSQL connector flavour), as JSON
//! with or without the inline Kafka Connect `schema`: what xdb writes to a
//! replicated log (`nats/`) so that consumers built for Debezium read
//! xdb's subjects unchanged. Transport-neutral on purpose: a Kafka sink
//! would publish the same bytes.
//!
//! Value encodings follow the connector's defaults where those keep every
//! bit (integers, floats, booleans, text, `bytea` as base64 bytes, `date`
//! as days, `time`/`timestamp` as microseconds, `timestamptz`/`timetz` as
//! ISO-8601 UTC strings, `uuid`/`json` as strings), and its documented
//! non-default modes where the default would round: `numeric` as a decimal
//! string (`decimal.handling.mode: string`, which also carries NaN and the
//! infinities) and `interval` as an ISO-8601 string
//! (`interval.handling.mode: string`). Infinite dates and timestamps are
//! the extreme `int32`/`int64` values; infinite `timestamptz` the strings
//! `infinity`/`-infinity`.

pub mod schema;

use serde_json::{json, Map, Value as Json};

use crate::mapping::text::{self, DateStyle};
use crate::model::{Column, DateValue, Lsn, NumericValue, PgType, TableSchema, TimestampValue, Value};

/// What Debezium writes in place of an unchanged TOASTed value it was not
/// sent (its `unavailable.value.placeholder` default).
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// The `op` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
    /// A row of the initial copy (snapshot read).
    Read,
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// `source.snapshot`: `"false"` on the stream; on the copy `"first"` for
/// the first row, `"last"` for the last, `"true"` in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    No,
    First,
    Yes,
    Last,
}

impl Snapshot {
    fn text(self) -> &'static str {
        match self {
            Snapshot::No => "false",
            Snapshot::First => "first",
            Snapshot::Yes => "true",
            Snapshot::Last => "last",
        }
    }
}

/// The connector-wide part of the `source` block.
#[derive(Debug, Clone)]
pub struct Connector {
    /// `source.name`: Debezium's `topic.prefix` (xdb: the subject prefix).
    pub name: String,
    /// The source database's name.
    pub db: String,
    /// Inline the Kafka Connect schema (`schemas.enable`).
    pub schemas: bool,
}

/// Where one event sits: its transaction and position, for `source` and
/// the `transaction` block.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub snapshot: Snapshot,
    pub tx_id: Option<u32>,
    /// Commit LSN (stream) or the snapshot's consistent point (copy).
    pub lsn: Lsn,
    /// Commit time (stream) or copy time, ms since the epoch.
    pub ts_ms: i64,
    /// (total_order, data_collection_order), both from 1, on the stream.
    pub order: Option<(u64, u64)>,
}

/// Debezium's transaction id for PostgreSQL: `<txId>:<commit LSN>`.
pub fn transaction_id(xid: u32, commit_lsn: Lsn) -> String {
    format!("{xid}:{}", commit_lsn.0)
}

/// Milliseconds since the epoch, now (the envelope's top-level `ts_ms`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One change event as JSON bytes. `before`/`after` are full rows in the
/// table's column order; positions in `unavailable` (unchanged TOAST, not
/// sent by the source) carry [`UNAVAILABLE`] in `after`.
pub fn change_event(
    c: &Connector,
    table: &TableSchema,
    op: Op,
    before: Option<&[Value]>,
    after: Option<&[Value]>,
    unavailable: &[usize],
    at: &At,
) -> Vec<u8> {
    let row = |r: Option<&[Value]>, placeholders: &[usize]| -> Json {
        match r {
            None => Json::Null,
            Some(values) => {
                let mut m = Map::with_capacity(values.len());
                for (i, (col, v)) in table.columns.iter().zip(values).enumerate() {
                    let j = if placeholders.contains(&i) { Json::from(UNAVAILABLE) } else { encode(&col.pg_type, v) };
                    m.insert(col.name.clone(), j);
                }
                Json::Object(m)
            }
        }
    };
    let mut source = Map::new();
    source.insert("version".into(), Json::from(concat!("xdb-", env!("CARGO_PKG_VERSION"))));
    source.insert("connector".into(), Json::from("postgresql"));
    source.insert("name".into(), Json::from(c.name.as_str()));
    source.insert("ts_ms".into(), Json::from(at.ts_ms));
    source.insert("snapshot".into(), Json::from(at.snapshot.text()));
    source.insert("db".into(), Json::from(c.db.as_str()));
    source.insert("sequence".into(), Json::from(format!("[null,\"{}\"]", at.lsn.0)));
    source.insert("schema".into(), Json::from(table.name.schema.as_str()));
    source.insert("table".into(), Json::from(table.name.name.as_str()));
    source.insert("txId".into(), at.tx_id.map(Json::from).unwrap_or(Json::Null));
    source.insert("lsn".into(), Json::from(at.lsn.0));
    source.insert("xmin".into(), Json::Null);
    let transaction = match (at.tx_id, at.order) {
        (Some(x), Some((total, in_table))) => json!({
            "id": transaction_id(x, at.lsn),
            "total_order": total,
            "data_collection_order": in_table,
        }),
        _ => Json::Null,
    };
    let payload = json!({
        "before": row(before, &[]),
        "after": row(after, unavailable),
        "source": Json::Object(source),
        "op": op.code(),
        "ts_ms": now_ms(),
        "transaction": transaction,
    });
    let out = if c.schemas { json!({"schema": envelope_schema(c, table), "payload": payload}) } else { payload };
    serde_json::to_vec(&out).unwrap_or_default()
}

/// A transaction-metadata event (Debezium's `<prefix>.transaction` topic):
/// BEGIN, or END with the event count per table.
pub fn transaction_event(c: &Connector, id: &str, ts_ms: i64, end: Option<&[(String, u64)]>) -> Vec<u8> {
    let payload = match end {
        None => json!({"status": "BEGIN", "id": id, "event_count": null, "data_collections": null, "ts_ms": ts_ms}),
        Some(counts) => json!({
            "status": "END",
            "id": id,
            "event_count": counts.iter().map(|(_, n)| n).sum::<u64>(),
            "data_collections": counts.iter().map(|(t, n)| json!({"data_collection": t, "event_count": n})).collect::<Vec<_>>(),
            "ts_ms": ts_ms,
        }),
    };
    let out = if c.schemas { json!({"schema": transaction_schema(), "payload": payload}) } else { payload };
    serde_json::to_vec(&out).unwrap_or_default()
}

/// One value as the connector writes it (module doc).
pub fn encode(t: &PgType, v: &Value) -> Json {
    let s = |b: Vec<u8>| Json::from(String::from_utf8_lossy(&b).into_owned());
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::from(*b),
        Value::Int2(i) => Json::from(*i),
        Value::Int4(i) => Json::from(*i),
        Value::Int8(i) => Json::from(*i),
        // Kafka Connect's JSON converter writes non-finite floats as strings.
        Value::Float4(f) if f.is_finite() => Json::from(*f),
        Value::Float8(f) if f.is_finite() => Json::from(*f),
        Value::Float4(f) => Json::from(f.to_string()),
        Value::Float8(f) => Json::from(f.to_string()),
        Value::Numeric(NumericValue::Finite(d)) => Json::from(d.as_str()),
        Value::Numeric(NumericValue::NaN) => Json::from("NaN"),
        Value::Numeric(NumericValue::PosInfinity) => Json::from("Infinity"),
        Value::Numeric(NumericValue::NegInfinity) => Json::from("-Infinity"),
        Value::Text(t) => Json::from(t.as_str()),
        Value::Bytes(b) => Json::from(base64(b)),
        Value::Date(DateValue::Days(d)) => Json::from(*d),
        Value::Date(DateValue::PosInfinity) => Json::from(i32::MAX),
        Value::Date(DateValue::NegInfinity) => Json::from(i32::MIN),
        Value::Time(us) => Json::from(*us),
        Value::TimeTz { micros, offset_seconds } => {
            let utc = (micros - *offset_seconds as i64 * 1_000_000).rem_euclid(crate::model::time::MICROS_PER_DAY);
            let mut b = Vec::new();
            text::write_time(&mut b, utc);
            b.push(b'Z');
            s(b)
        }
        Value::Timestamp(TimestampValue::Micros(us)) => Json::from(*us),
        Value::Timestamp(TimestampValue::PosInfinity) => Json::from(i64::MAX),
        Value::Timestamp(TimestampValue::NegInfinity) => Json::from(i64::MIN),
        Value::TimestampTz(TimestampValue::Micros(us)) => {
            let mut b = Vec::new();
            text::write_timestamp(&mut b, *us, b'T', DateStyle::Iso);
            b.push(b'Z');
            s(b)
        }
        Value::TimestampTz(TimestampValue::PosInfinity) => Json::from("infinity"),
        Value::TimestampTz(TimestampValue::NegInfinity) => Json::from("-infinity"),
        Value::Interval { months, days, micros } => {
            let mut b = Vec::new();
            text::write_interval(&mut b, *months, *days, *micros);
            s(b)
        }
        Value::Uuid(u) => Json::from(u.to_string()),
        Value::Json(j) => Json::from(j.as_str()),
        Value::Array(items) => {
            let elem = match t {
                PgType::Array(e) => e.as_ref(),
                other => other,
            };
            Json::Array(items.iter().map(|i| encode(elem, i)).collect())
        }
        Value::Unknown { text, .. } => Json::from(text.as_str()),
    }
}

/// One value back from its event form ([`encode`]'s inverse), as the
/// PostgreSQL decoder would have produced it for a column of type `t`.
pub fn decode(t: &PgType, j: &Json) -> Result<Value, String> {
    use crate::model::NumericValue as N;
    let bad = || format!("{j} is not a {} value as xdb encodes it", t.sql_name());
    let text = || j.as_str().map(str::to_string).ok_or_else(bad);
    if j.is_null() {
        return Ok(Value::Null);
    }
    Ok(match t {
        PgType::Bool => Value::Bool(j.as_bool().ok_or_else(bad)?),
        PgType::Int2 => Value::Int2(j.as_i64().and_then(|v| i16::try_from(v).ok()).ok_or_else(bad)?),
        PgType::Int4 => Value::Int4(j.as_i64().and_then(|v| i32::try_from(v).ok()).ok_or_else(bad)?),
        PgType::Int8 | PgType::Oid => Value::Int8(j.as_i64().ok_or_else(bad)?),
        PgType::Float4 => match j.as_f64() {
            Some(f) => Value::Float4(f as f32),
            None => Value::Float4(text()?.parse().map_err(|_| bad())?),
        },
        PgType::Float8 => match j.as_f64() {
            Some(f) => Value::Float8(f),
            None => Value::Float8(text()?.parse().map_err(|_| bad())?),
        },
        PgType::Numeric { .. } | PgType::Money => Value::Numeric(match text()?.as_str() {
            "NaN" => N::NaN,
            "Infinity" => N::PosInfinity,
            "-Infinity" => N::NegInfinity,
            d => N::Finite(d.to_string()),
        }),
        PgType::Bytea => Value::Bytes(unbase64(&text()?).ok_or_else(bad)?),
        PgType::Date => match j.as_i64().ok_or_else(bad)? {
            v if v == i32::MAX as i64 => Value::Date(DateValue::PosInfinity),
            v if v == i32::MIN as i64 => Value::Date(DateValue::NegInfinity),
            v => Value::Date(DateValue::Days(i32::try_from(v).map_err(|_| bad())?)),
        },
        PgType::Time(_) => Value::Time(j.as_i64().ok_or_else(bad)?),
        PgType::TimeTz(_) => {
            let s = text()?;
            let micros = text::parse_time(s.trim_end_matches('Z')).ok_or_else(bad)?;
            Value::TimeTz { micros, offset_seconds: 0 }
        }
        PgType::Timestamp(_) => Value::Timestamp(match j.as_i64().ok_or_else(bad)? {
            i64::MAX => TimestampValue::PosInfinity,
            i64::MIN => TimestampValue::NegInfinity,
            v => TimestampValue::Micros(v),
        }),
        PgType::TimestampTz(_) => Value::TimestampTz(match text()?.as_str() {
            "infinity" => TimestampValue::PosInfinity,
            "-infinity" => TimestampValue::NegInfinity,
            s => TimestampValue::Micros(
                text::parse_timestamp(&format!("{}+00", s.trim_end_matches('Z'))).ok_or_else(bad)?,
            ),
        }),
        PgType::Interval => {
            let (months, days, micros) = text::parse_interval(&text()?).ok_or_else(bad)?;
            Value::Interval { months, days, micros }
        }
        PgType::Uuid => Value::Uuid(text()?.parse().map_err(|_| bad())?),
        PgType::Json | PgType::Jsonb => Value::Json(text()?),
        PgType::Array(e) => {
            let items = j.as_array().ok_or_else(bad)?;
            Value::Array(items.iter().map(|i| decode(e, i)).collect::<Result<_, _>>()?)
        }
        PgType::Other { name } => Value::Unknown { type_name: name.clone(), text: text()? },
        PgType::TsQuery => Value::Unknown { type_name: t.sql_name(), text: text()? },
        _ => Value::Text(text()?),
    })
}

/// Standard base64 back to bytes (None: not base64).
pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let b = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for chunk in b.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        match chunk.len() {
            4 => out.extend_from_slice(&bytes),
            3 => out.extend_from_slice(&bytes[..2]),
            2 => out.push(bytes[0]),
            _ => return None,
        }
    }
    Some(out)
}

/// Standard base64 with padding (Kafka Connect's JSON form of `bytes`).
pub fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The Kafka Connect schema of one column's values (module doc).
fn field_schema(col: &Column) -> Json {
    let (ty, name): (&str, Option<&str>) = type_of(&col.pg_type);
    let mut m = Map::new();
    m.insert("type".into(), Json::from(ty));
    if let PgType::Array(e) = &col.pg_type {
        let (ety, ename) = type_of(e);
        let mut items = json!({"type": ety, "optional": true});
        if let Some(n) = ename {
            items["name"] = Json::from(n);
        }
        m.insert("items".into(), items);
    }
    m.insert("optional".into(), Json::from(col.nullable));
    if let Some(n) = name {
        m.insert("name".into(), Json::from(n));
        m.insert("version".into(), Json::from(1));
    }
    m.insert("field".into(), Json::from(col.name.as_str()));
    Json::Object(m)
}

fn type_of(t: &PgType) -> (&'static str, Option<&'static str>) {
    match t {
        PgType::Bool => ("boolean", None),
        PgType::Int2 => ("int16", None),
        PgType::Int4 | PgType::Oid => ("int32", None),
        PgType::Int8 => ("int64", None),
        PgType::Float4 => ("float", None),
        PgType::Float8 => ("double", None),
        PgType::Bytea => ("bytes", None),
        PgType::Date => ("int32", Some("io.debezium.time.Date")),
        PgType::Time(_) => ("int64", Some("io.debezium.time.MicroTime")),
        PgType::TimeTz(_) => ("string", Some("io.debezium.time.ZonedTime")),
        PgType::Timestamp(_) => ("int64", Some("io.debezium.time.MicroTimestamp")),
        PgType::TimestampTz(_) => ("string", Some("io.debezium.time.ZonedTimestamp")),
        PgType::Interval => ("string", Some("io.debezium.time.Interval")),
        PgType::Uuid => ("string", Some("io.debezium.data.Uuid")),
        PgType::Json | PgType::Jsonb => ("string", Some("io.debezium.data.Json")),
        PgType::Xml => ("string", Some("io.debezium.data.Xml")),
        PgType::Enum { .. } => ("string", Some("io.debezium.data.Enum")),
        PgType::Array(_) => ("array", None),
        _ => ("string", None),
    }
}

fn envelope_schema(c: &Connector, table: &TableSchema) -> Json {
    let base = format!("{}.{}.{}", c.name, table.name.schema, table.name.name);
    let fields: Vec<Json> = table.columns.iter().map(field_schema).collect();
    let row = |field: &str| json!({"type": "struct", "fields": fields, "optional": true, "name": format!("{base}.Value"), "field": field});
    let s = |f: &str| json!({"type": "string", "optional": false, "field": f});
    let source = json!({
        "type": "struct", "optional": false, "name": "io.debezium.connector.postgresql.Source", "field": "source",
        "fields": [
            s("version"), s("connector"), s("name"),
            {"type": "int64", "optional": false, "field": "ts_ms"},
            {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
             "parameters": {"allowed": "true,last,false,incremental,first"}, "default": "false", "field": "snapshot"},
            s("db"),
            {"type": "string", "optional": true, "field": "sequence"},
            s("schema"), s("table"),
            {"type": "int64", "optional": true, "field": "txId"},
            {"type": "int64", "optional": true, "field": "lsn"},
            {"type": "int64", "optional": true, "field": "xmin"},
        ],
    });
    json!({
        "type": "struct",
        "fields": [
            row("before"), row("after"), source,
            s("op"),
            {"type": "int64", "optional": true, "field": "ts_ms"},
            {"type": "struct", "optional": true, "name": "event.block", "version": 1, "field": "transaction", "fields": [
                {"type": "string", "optional": false, "field": "id"},
                {"type": "int64", "optional": false, "field": "total_order"},
                {"type": "int64", "optional": false, "field": "data_collection_order"},
            ]},
        ],
        "optional": false,
        "name": format!("{base}.Envelope"),
        "version": 1,
    })
}

fn transaction_schema() -> Json {
    json!({
        "type": "struct", "optional": false, "name": "io.debezium.connector.common.TransactionMetadataValue", "version": 1,
        "fields": [
            {"type": "string", "optional": false, "field": "status"},
            {"type": "string", "optional": false, "field": "id"},
            {"type": "int64", "optional": true, "field": "event_count"},
            {"type": "array", "optional": true, "field": "data_collections", "items": {
                "type": "struct", "optional": false, "fields": [
                    {"type": "string", "optional": false, "field": "data_collection"},
                    {"type": "int64", "optional": false, "field": "event_count"},
                ]}},
            {"type": "int64", "optional": false, "field": "ts_ms"},
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ReplicaIdentity, TableName};

    fn table() -> TableSchema {
        let mut id = Column::new("id", PgType::Int8);
        id.is_key = true;
        id.nullable = false;
        TableSchema {
            oid: 1,
            name: TableName::new("public", "orders"),
            columns: vec![
                id,
                Column::new("amount", PgType::Numeric { precision: Some(10), scale: Some(2) }),
                Column::new("at", PgType::TimestampTz(None)),
                Column::new("note", PgType::Text),
            ],
            replica_identity: ReplicaIdentity::Default,
            primary_key: vec![0],
            generated: vec![],
        }
    }

    #[test]
    fn an_update_has_debeziums_fields_op_and_source() {
        let c = Connector { name: "shop".into(), db: "shopdb".into(), schemas: false };
        let row = vec![
            Value::Int8(7),
            Value::Numeric(NumericValue::Finite("12.50".into())),
            Value::TimestampTz(TimestampValue::Micros(1_000_000)),
            Value::Null,
        ];
        let at = At { snapshot: Snapshot::No, tx_id: Some(571), lsn: Lsn(53195832), ts_ms: 5, order: Some((2, 1)) };
        let e: Json =
            serde_json::from_slice(&change_event(&c, &table(), Op::Update, None, Some(&row), &[3], &at)).unwrap();
        assert_eq!(e["op"], "u");
        assert_eq!(e["before"], Json::Null);
        assert_eq!(e["after"]["id"], 7);
        assert_eq!(e["after"]["amount"], "12.50");
        assert_eq!(e["after"]["at"], "1970-01-01T00:00:01.000000Z");
        assert_eq!(e["after"]["note"], UNAVAILABLE);
        assert_eq!(e["source"]["connector"], "postgresql");
        assert_eq!(e["source"]["lsn"], 53195832);
        assert_eq!(e["source"]["txId"], 571);
        assert_eq!(e["source"]["snapshot"], "false");
        assert_eq!(e["source"]["table"], "orders");
        assert_eq!(e["transaction"]["id"], "571:53195832");
        assert_eq!(e["transaction"]["total_order"], 2);
        let with = Connector { schemas: true, ..c };
        let e: Json =
            serde_json::from_slice(&change_event(&with, &table(), Op::Read, None, Some(&row), &[], &at)).unwrap();
        assert_eq!(e["schema"]["name"], "shop.public.orders.Envelope");
        assert_eq!(e["payload"]["op"], "r");
    }

    #[test]
    fn values_encode_as_the_connector_does() {
        assert_eq!(encode(&PgType::Bytea, &Value::Bytes(b"hello".to_vec())), "aGVsbG8=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
        assert_eq!(encode(&PgType::Date, &Value::Date(DateValue::Days(-1))), -1);
        assert_eq!(
            encode(&PgType::Interval, &Value::Interval { months: 14, days: 3, micros: 4_500_000 }),
            "P1Y2M3DT4.5S"
        );
        let tz = Value::TimeTz { micros: 3_600_000_000, offset_seconds: 3600 };
        assert_eq!(encode(&PgType::TimeTz(None), &tz), "00:00:00.000000Z");
        let arr = Value::Array(vec![Value::Int4(1), Value::Null]);
        assert_eq!(encode(&PgType::Array(Box::new(PgType::Int4)), &arr), json!([1, null]));
    }

    #[test]
    fn values_decode_back_to_what_was_encoded() {
        let cases = [
            (PgType::Bytea, Value::Bytes(b"hello!".to_vec())),
            (PgType::Bytea, Value::Bytes(b"ab".to_vec())),
            (PgType::Numeric { precision: None, scale: None }, Value::Numeric(NumericValue::Finite("-1.50".into()))),
            (PgType::Numeric { precision: None, scale: None }, Value::Numeric(NumericValue::NaN)),
            (PgType::TimestampTz(None), Value::TimestampTz(TimestampValue::Micros(1_700_000_000_123_456))),
            (PgType::TimestampTz(None), Value::TimestampTz(TimestampValue::PosInfinity)),
            (PgType::Timestamp(None), Value::Timestamp(TimestampValue::Micros(-5))),
            (PgType::Date, Value::Date(DateValue::NegInfinity)),
            (PgType::Interval, Value::Interval { months: -14, days: 3, micros: 4_500_000 }),
            (PgType::TimeTz(None), Value::TimeTz { micros: 3_600_000_001, offset_seconds: 0 }),
            (PgType::Array(Box::new(PgType::Int8)), Value::Array(vec![Value::Int8(1), Value::Null])),
            (PgType::Text, Value::Text("é".into())),
        ];
        for (t, v) in cases {
            assert_eq!(decode(&t, &encode(&t, &v)).unwrap(), v, "{t:?}");
        }
        assert!(decode(&PgType::Int4, &json!("x")).is_err());
    }
}
