//! The JSON-lines form of decoded changes that `xdb tail` prints: one object
//! per row change, with the transaction's position and time. Values keep
//! full precision: numerics and 64-bit integers beyond 2^53 as strings,
//! timestamps as ISO-8601 (UTC `Z` for timestamptz), bytes as hex.

use chrono::{DateTime, NaiveDate, TimeDelta};
use serde_json::{json, Map, Value as Json};

use crate::model::{Change, DateValue, NumericValue, TableSchema, TimestampValue, Transaction, Value};

/// One JSON object per change of `tx`, in order.
pub fn transaction_lines(tx: &Transaction) -> Vec<Json> {
    let commit_time = micros_to_iso(tx.commit_time_micros, true);
    tx.changes
        .iter()
        .map(|c| {
            let mut o = Map::new();
            o.insert("lsn".into(), json!(tx.commit_lsn.to_string()));
            o.insert("end_lsn".into(), json!(tx.end_lsn.to_string()));
            o.insert("commit_time".into(), json!(commit_time));
            o.insert("xid".into(), json!(tx.xid));
            match c {
                Change::Insert { table, new } => {
                    o.insert("table".into(), json!(table.name.to_string()));
                    o.insert("op".into(), json!("insert"));
                    o.insert("key".into(), key_of(table, new));
                    o.insert("new".into(), row_object(table, new, &[]));
                }
                Change::Update { table, old, new, unchanged_toast } => {
                    o.insert("table".into(), json!(table.name.to_string()));
                    o.insert("op".into(), json!("update"));
                    o.insert("key".into(), key_of(table, old.as_ref().unwrap_or(new)));
                    o.insert("new".into(), row_object(table, new, unchanged_toast));
                    if let Some(old) = old {
                        o.insert("old".into(), row_object(table, old, unchanged_toast));
                    }
                    if !unchanged_toast.is_empty() {
                        let names: Vec<&str> =
                            unchanged_toast.iter().map(|&i| table.columns[i].name.as_str()).collect();
                        o.insert("unchanged_toast".into(), json!(names));
                    }
                }
                Change::Delete { table, old } => {
                    o.insert("table".into(), json!(table.name.to_string()));
                    o.insert("op".into(), json!("delete"));
                    o.insert("key".into(), key_of(table, old));
                    o.insert("old".into(), row_object(table, old, &[]));
                }
                Change::Truncate { tables, cascade, restart_identity } => {
                    let names: Vec<String> = tables.iter().map(|t| t.name.to_string()).collect();
                    o.insert("tables".into(), json!(names));
                    o.insert("op".into(), json!("truncate"));
                    o.insert("cascade".into(), json!(cascade));
                    o.insert("restart_identity".into(), json!(restart_identity));
                }
            }
            Json::Object(o)
        })
        .collect()
}

fn key_of(table: &TableSchema, row: &[Value]) -> Json {
    let mut o = Map::new();
    for i in table.match_columns() {
        if let Some(v) = row.get(i) {
            o.insert(table.columns[i].name.clone(), value_json(v));
        }
    }
    Json::Object(o)
}

fn row_object(table: &TableSchema, row: &[Value], skip: &[usize]) -> Json {
    let mut o = Map::new();
    for (i, (c, v)) in table.columns.iter().zip(row).enumerate() {
        if !skip.contains(&i) {
            o.insert(c.name.clone(), value_json(v));
        }
    }
    Json::Object(o)
}

/// A value as JSON, losing nothing: what JSON numbers cannot hold exactly
/// becomes a string.
pub fn value_json(v: &Value) -> Json {
    const SAFE: i64 = 1 << 53;
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int2(i) => json!(i),
        Value::Int4(i) => json!(i),
        Value::Int8(i) if (-SAFE..=SAFE).contains(i) => json!(i),
        Value::Int8(i) => json!(i.to_string()),
        Value::Float4(f) if f.is_finite() => json!(f),
        Value::Float8(f) if f.is_finite() => json!(f),
        Value::Float4(f) => json!(float_word(*f as f64)),
        Value::Float8(f) => json!(float_word(*f)),
        Value::Numeric(NumericValue::Finite(s)) => json!(s),
        Value::Numeric(NumericValue::NaN) => json!("NaN"),
        Value::Numeric(NumericValue::PosInfinity) => json!("Infinity"),
        Value::Numeric(NumericValue::NegInfinity) => json!("-Infinity"),
        Value::Text(s) => json!(s),
        Value::Bytes(b) => json!(format!("\\x{}", hex(b))),
        Value::Date(DateValue::Days(d)) => json!(date_iso(*d)),
        Value::Date(DateValue::PosInfinity) => json!("infinity"),
        Value::Date(DateValue::NegInfinity) => json!("-infinity"),
        Value::Time(us) => json!(time_iso(*us)),
        Value::TimeTz { micros, offset_seconds } => {
            let sign = if *offset_seconds < 0 { '-' } else { '+' };
            let off = offset_seconds.unsigned_abs();
            json!(format!("{}{sign}{:02}:{:02}", time_iso(*micros), off / 3600, off % 3600 / 60))
        }
        Value::Timestamp(t) => json!(ts_iso(t, false)),
        Value::TimestampTz(t) => json!(ts_iso(t, true)),
        Value::Interval { months, days, micros } => json!({"months": months, "days": days, "micros": micros}),
        Value::Uuid(u) => json!(u.hyphenated().to_string()),
        Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
        Value::Array(items) => Json::Array(items.iter().map(value_json).collect()),
        Value::Unknown { text, .. } => json!(text),
    }
}

/// PostgreSQL's spelling of the non-finite floats.
fn float_word(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn date_iso(days: i32) -> String {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|d| d.checked_add_signed(TimeDelta::days(days as i64)))
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("{days} days since 1970-01-01"))
}

fn time_iso(us: i64) -> String {
    let s = us / 1_000_000;
    format!("{:02}:{:02}:{:02}.{:06}", s / 3600, s % 3600 / 60, s % 60, us % 1_000_000)
}

fn micros_to_iso(us: i64, utc: bool) -> String {
    match DateTime::from_timestamp_micros(us) {
        Some(t) => {
            let s = t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
            if utc {
                s + "Z"
            } else {
                s
            }
        }
        None => format!("{us} µs since 1970-01-01"),
    }
}

fn ts_iso(t: &TimestampValue, utc: bool) -> String {
    match t {
        TimestampValue::Micros(us) => micros_to_iso(*us, utc),
        TimestampValue::PosInfinity => "infinity".into(),
        TimestampValue::NegInfinity => "-infinity".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_precision() {
        assert_eq!(value_json(&Value::Int8(i64::MAX)), json!("9223372036854775807"));
        assert_eq!(value_json(&Value::Int8(42)), json!(42));
        assert_eq!(value_json(&Value::Numeric(NumericValue::Finite("1.50".into()))), json!("1.50"));
        assert_eq!(value_json(&Value::TimestampTz(TimestampValue::Micros(1))), json!("1970-01-01T00:00:00.000001Z"));
        assert_eq!(value_json(&Value::Date(DateValue::Days(-1))), json!("1969-12-31"));
        assert_eq!(value_json(&Value::Bytes(vec![0, 255])), json!("\\x00ff"));
        assert_eq!(value_json(&Value::Json("{\"a\": [1, 2]}".into())), json!({"a": [1, 2]}));
        assert_eq!(
            value_json(&Value::TimeTz { micros: 3_600_000_000, offset_seconds: -19800 }),
            json!("01:00:00.000000-05:30")
        );
    }
}
