//! The canonical form: one text per logical value, so that a source value
//! and its copy on any target compare (and hash) equal exactly when they
//! hold the same data.
//!
//! | type | canonical text |
//! |---|---|
//! | boolean | `0` / `1` |
//! | integers | decimal |
//! | numeric | decimal without leading/trailing zeros (`-0.5`, `12`), `NaN`, `Infinity`, `-Infinity` |
//! | real / double | shortest text that reads back as the same double (`0.1`, `1e300`); `-0` is `0` |
//! | bytea | lower-case hex |
//! | date | days since 1970-01-01, or `infinity` / `-infinity` |
//! | time / timetz | microseconds since midnight (timetz in UTC) |
//! | timestamp / timestamptz | microseconds since 1970-01-01 (UTC), or the infinities |
//! | interval | `months days micros` |
//! | uuid | lower-case hyphenated |
//! | json / jsonb / arrays | JSON with sorted keys, no white space (arrays in their JSON form) |
//! | char(n) | padded to n characters (MySQL drops the padding) |
//! | everything else | the text as is |
//!
//! Readers: [`canonical_from_mysql`] (binary or text protocol values),
//! [`canonical_from_sqlite`], [`canonical_from_pg_text`] (values as text
//! in any TimeZone; intervals in the `postgres` or `iso_8601` IntervalStyle).

use std::fmt;

use super::convert::write_json_array;
use super::text;
use super::MappedColumn;
use crate::model::time::MICROS_PER_DAY;
use crate::model::{DateValue, NumericValue, PgType, TimestampValue, Value};

/// A value in canonical form (`None` is SQL NULL).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CanonicalValue(pub Option<String>);

impl CanonicalValue {
    /// The canonical text, `None` for NULL.
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }

    fn some(s: impl Into<String>) -> Self {
        CanonicalValue(Some(s.into()))
    }
}

impl fmt::Display for CanonicalValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(s) => f.write_str(s),
            None => f.write_str("NULL"),
        }
    }
}

fn canon_f64(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let mut out = Vec::new();
    text::write_f64(&mut out, f);
    String::from_utf8_lossy(&out).into_owned()
}

/// A numeric's decimal text without leading or trailing zeros.
fn canon_numeric(s: &str) -> String {
    let s = s.trim();
    match s {
        "NaN" | "nan" => return "NaN".into(),
        "Infinity" | "inf" | "+Infinity" => return "Infinity".into(),
        "-Infinity" | "-inf" => return "-Infinity".into(),
        _ => {}
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(s.len());
    if neg && (!int.is_empty() || !frac.is_empty()) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// JSON text with object keys sorted and no insignificant white space;
/// text that is not JSON is returned as it is.
pub fn canonical_json(s: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v) => {
            let mut out = String::with_capacity(s.len());
            write_sorted(&v, &mut out);
            out
        }
        Err(_) => s.to_string(),
    }
}

fn write_sorted(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value as J;
    match v {
        J::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                if let Some(x) = m.get(*k) {
                    write_sorted(x, out);
                }
            }
            out.push('}');
        }
        J::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(x, out);
            }
            out.push(']');
        }
        // Numbers: integers as integers, the rest as the shortest double.
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => out.push_str(&(f as i64).to_string()),
            (_, _, Some(f)) => out.push_str(&canon_f64(f)),
            _ => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

/// The canonical form of a source value.
pub fn canonical(v: &Value) -> CanonicalValue {
    let s = match v {
        Value::Null => return CanonicalValue(None),
        Value::Bool(b) => (if *b { "1" } else { "0" }).to_string(),
        Value::Int2(i) => i.to_string(),
        Value::Int4(i) => i.to_string(),
        Value::Int8(i) => i.to_string(),
        Value::Float4(f) => canon_f64(*f as f64),
        Value::Float8(f) => canon_f64(*f),
        Value::Numeric(n) => match n {
            NumericValue::Finite(s) => canon_numeric(s),
            NumericValue::NaN => "NaN".into(),
            NumericValue::PosInfinity => "Infinity".into(),
            NumericValue::NegInfinity => "-Infinity".into(),
        },
        Value::Text(s) => s.clone(),
        Value::Unknown { text, .. } => text.clone(),
        Value::Bytes(b) => {
            let mut out = Vec::with_capacity(b.len() * 2);
            text::write_hex(&mut out, b);
            String::from_utf8_lossy(&out).into_owned()
        }
        Value::Date(d) => match d {
            DateValue::Days(d) => d.to_string(),
            DateValue::PosInfinity => "infinity".into(),
            DateValue::NegInfinity => "-infinity".into(),
        },
        Value::Time(us) => us.to_string(),
        Value::TimeTz { micros, offset_seconds } => {
            let utc = micros - *offset_seconds as i64 * 1_000_000;
            let utc = if utc == MICROS_PER_DAY { utc } else { utc.rem_euclid(MICROS_PER_DAY) };
            utc.to_string()
        }
        Value::Timestamp(t) | Value::TimestampTz(t) => match t {
            TimestampValue::Micros(m) => m.to_string(),
            TimestampValue::PosInfinity => "infinity".into(),
            TimestampValue::NegInfinity => "-infinity".into(),
        },
        Value::Interval { months, days, micros } => format!("{months} {days} {micros}"),
        Value::Uuid(u) => u.hyphenated().to_string(),
        Value::Json(s) => canonical_json(s),
        Value::Array(items) => {
            let mut out = Vec::new();
            write_json_array(items, &mut out);
            canonical_json(&String::from_utf8_lossy(&out))
        }
    };
    CanonicalValue(Some(s))
}

/// Pads a char(n) value to n characters, as PostgreSQL stores it.
fn pad_char(c: CanonicalValue, ty: &PgType) -> CanonicalValue {
    match (c, ty) {
        (CanonicalValue(Some(s)), PgType::Char(Some(n))) => {
            let len = s.chars().count();
            let n = *n as usize;
            if len < n {
                CanonicalValue(Some(format!("{s}{}", " ".repeat(n - len))))
            } else {
                CanonicalValue(Some(s))
            }
        }
        (c, _) => c,
    }
}

/// Reads a value's text (as any target prints it) by the source type.
/// `None` when the text does not parse as that type.
pub fn value_from_text(s: &str, ty: &PgType) -> Option<Value> {
    let st = s.trim();
    Some(match ty {
        PgType::Bool => match st {
            "t" | "true" | "1" | "TRUE" => Value::Bool(true),
            "f" | "false" | "0" | "FALSE" => Value::Bool(false),
            _ => return None,
        },
        PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid => Value::Int8(st.parse().ok()?),
        PgType::Float4 => Value::Float4(parse_float(st)? as f32),
        PgType::Float8 => Value::Float8(parse_float(st)?),
        PgType::Numeric { .. } => Value::Numeric(NumericValue::Finite(canon_numeric(st))),
        PgType::Money => Value::Numeric(NumericValue::Finite(canon_numeric(&st.replace(['$', ','], "")))),
        PgType::Bytea => Value::Bytes(text::parse_hex(st.strip_prefix("\\x")?.as_bytes())?),
        PgType::Date => Value::Date(match st {
            "infinity" => DateValue::PosInfinity,
            "-infinity" => DateValue::NegInfinity,
            _ => DateValue::Days(i32::try_from(text::parse_date(st)?).ok()?),
        }),
        PgType::Time(_) => Value::Time(text::parse_time(st)?),
        PgType::TimeTz(_) => {
            let (t, off) = text::split_offset(st);
            let offset_seconds = match off {
                Some(o) => text::parse_offset(o)?,
                None => 0,
            };
            Value::TimeTz { micros: text::parse_time(t)?, offset_seconds }
        }
        PgType::Timestamp(_) | PgType::TimestampTz(_) => {
            let t = match st {
                "infinity" => TimestampValue::PosInfinity,
                "-infinity" => TimestampValue::NegInfinity,
                _ => TimestampValue::Micros(text::parse_timestamp(st)?),
            };
            if matches!(ty, PgType::Timestamp(_)) {
                Value::Timestamp(t)
            } else {
                Value::TimestampTz(t)
            }
        }
        PgType::Interval => {
            let (months, days, micros) = text::parse_interval(st)?;
            Value::Interval { months, days, micros }
        }
        PgType::Uuid => Value::Uuid(uuid::Uuid::parse_str(st).ok()?),
        // Targets keep the text; an application there may write another
        // spelling of the same address (`08-00-2B-…`, `10.1.2.3/32`).
        PgType::Inet | PgType::Cidr => Value::Text(text::canonical_inet(st, ty == &PgType::Cidr)?),
        PgType::Macaddr | PgType::Macaddr8 => Value::Text(text::canonical_mac(st, ty == &PgType::Macaddr8)?),
        PgType::Json | PgType::Jsonb => Value::Json(s.to_string()),
        PgType::Array(inner) => Value::Array(parse_pg_array(st, inner)?),
        _ => Value::Text(s.to_string()),
    })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Parses a PostgreSQL array literal (`{1,"a b",NULL,{2,3}}`) with its
/// elements read as `elem`. Dimension decorations (`[0:1]=`) are skipped.
fn parse_pg_array(s: &str, elem: &PgType) -> Option<Vec<Value>> {
    let s = match s.find("={") {
        Some(i) if s.starts_with('[') => &s[i + 1..],
        _ => s,
    };
    let bytes = s.as_bytes();
    let mut pos = 0;
    let v = parse_array_level(bytes, &mut pos, elem)?;
    (pos == bytes.len()).then_some(v)
}

fn parse_array_level(b: &[u8], pos: &mut usize, elem: &PgType) -> Option<Vec<Value>> {
    if b.get(*pos) != Some(&b'{') {
        return None;
    }
    *pos += 1;
    let mut out = Vec::new();
    if b.get(*pos) == Some(&b'}') {
        *pos += 1;
        return Some(out);
    }
    // bytea and box use other delimiters; every type xdb maps uses ','.
    loop {
        match b.get(*pos)? {
            b'{' => out.push(Value::Array(parse_array_level(b, pos, elem)?)),
            b'"' => {
                *pos += 1;
                let mut t = Vec::new();
                loop {
                    match b.get(*pos)? {
                        b'\\' => {
                            t.push(*b.get(*pos + 1)?);
                            *pos += 2;
                        }
                        b'"' => {
                            *pos += 1;
                            break;
                        }
                        c => {
                            t.push(*c);
                            *pos += 1;
                        }
                    }
                }
                out.push(value_from_text(std::str::from_utf8(&t).ok()?, elem)?);
            }
            _ => {
                let start = *pos;
                while !matches!(b.get(*pos)?, b',' | b'}') {
                    *pos += 1;
                }
                let t = std::str::from_utf8(&b[start..*pos]).ok()?.trim();
                out.push(if t.eq_ignore_ascii_case("NULL") { Value::Null } else { value_from_text(t, elem)? });
            }
        }
        match b.get(*pos)? {
            b',' => *pos += 1,
            b'}' => {
                *pos += 1;
                return Some(out);
            }
            _ => return None,
        }
    }
}

/// A JSON array whose elements are strings of a type with a text form of
/// its own (dates, times, intervals, addresses, UUIDs), as the values they
/// name; `None` for other element types or an element that does not parse.
fn json_array_values(s: &str, elem: &PgType) -> Option<Vec<Value>> {
    use serde_json::Value as J;
    if !matches!(
        elem,
        PgType::Date
            | PgType::Time(_)
            | PgType::Timestamp(_)
            | PgType::TimestampTz(_)
            | PgType::Interval
            | PgType::Inet
            | PgType::Cidr
            | PgType::Macaddr
            | PgType::Macaddr8
            | PgType::Uuid
    ) {
        return None;
    }
    fn items(v: &[J], elem: &PgType) -> Option<Vec<Value>> {
        v.iter()
            .map(|x| match x {
                J::Null => Some(Value::Null),
                J::Array(inner) => items(inner, elem).map(Value::Array),
                J::String(t) => value_from_text(t, elem),
                _ => None,
            })
            .collect()
    }
    match serde_json::from_str::<J>(s).ok()? {
        J::Array(v) => items(&v, elem),
        _ => None,
    }
}

/// The canonical form of a text a target returned for a column; text that
/// does not parse as the column's type stays as it is (and so differs).
fn canonical_text(s: &str, col: &MappedColumn) -> CanonicalValue {
    let c = match &col.source_type {
        // Targets without arrays store the JSON form; elements written as
        // text of their own type (an application on the target may spell
        // `2025-01-01 12:00:00+02:00` for the `…T10:00:00…Z` xdb wrote) are
        // compared as the values they name.
        PgType::Array(inner) if s.trim_start().starts_with('[') => match json_array_values(s, inner) {
            Some(items) => canonical(&Value::Array(items)),
            None => CanonicalValue::some(canonical_json(s)),
        },
        ty => match value_from_text(s, ty) {
            Some(v) => canonical(&v),
            None => CanonicalValue::some(s),
        },
    };
    pad_char(c, &col.source_type)
}

/// The canonical form of a value read from MySQL/MariaDB (binary protocol
/// values from `exec`, or text protocol bytes from `query`).
pub fn canonical_from_mysql(v: &mysql_async::Value, col: &MappedColumn) -> CanonicalValue {
    use mysql_async::Value as M;
    let ty = &col.source_type;
    let c = match v {
        M::NULL => CanonicalValue(None),
        M::Int(i) => match ty {
            PgType::Bool => CanonicalValue::some(if *i != 0 { "1" } else { "0" }),
            _ => CanonicalValue::some(i.to_string()),
        },
        M::UInt(u) => CanonicalValue::some(u.to_string()),
        M::Float(f) => canonical(&Value::Float4(*f)),
        M::Double(d) => match ty {
            PgType::Float4 => canonical(&Value::Float4(*d as f32)),
            _ => canonical(&Value::Float8(*d)),
        },
        M::Date(y, m, d, h, mi, s, us) => {
            // MySQL's zero dates ('0000-00-00') are no PostgreSQL value: keep them visibly different.
            let Some(days) = text::days_from_civil(*y as i64, *m as u32, *d as u32) else {
                return CanonicalValue::some(format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"));
            };
            match ty {
                PgType::Date => canonical(&Value::Date(DateValue::Days(days as i32))),
                _ => {
                    let micros = days * MICROS_PER_DAY
                        + (*h as i64 * 3600 + *mi as i64 * 60 + *s as i64) * 1_000_000
                        + *us as i64;
                    CanonicalValue::some(micros.to_string())
                }
            }
        }
        M::Time(neg, days, h, m, s, us) => {
            let micros = ((*days as i64 * 24 + *h as i64) * 3600 + *m as i64 * 60 + *s as i64) * 1_000_000 + *us as i64;
            CanonicalValue::some((if *neg { -micros } else { micros }).to_string())
        }
        M::Bytes(b) => match ty {
            PgType::Bytea => canonical(&Value::Bytes(b.clone())),
            PgType::Uuid if b.len() == 16 => match uuid::Uuid::from_slice(b) {
                Ok(u) => canonical(&Value::Uuid(u)),
                Err(_) => CanonicalValue::some(String::from_utf8_lossy(b)),
            },
            _ => return canonical_text(&String::from_utf8_lossy(b), col),
        },
    };
    pad_char(c, ty)
}

/// The canonical form of a value read from SQLite.
pub fn canonical_from_sqlite(v: &rusqlite::types::Value, col: &MappedColumn) -> CanonicalValue {
    use rusqlite::types::Value as S;
    let ty = &col.source_type;
    let c = match v {
        S::Null => CanonicalValue(None),
        S::Integer(i) => match ty {
            PgType::Bool => CanonicalValue::some(if *i != 0 { "1" } else { "0" }),
            PgType::Float4 => canonical(&Value::Float4(*i as f32)),
            PgType::Float8 => canonical(&Value::Float8(*i as f64)),
            _ => CanonicalValue::some(i.to_string()),
        },
        S::Real(f) => match ty {
            PgType::Float4 => canonical(&Value::Float4(*f as f32)),
            _ => canonical(&Value::Float8(*f)),
        },
        S::Blob(b) => match ty {
            PgType::Uuid if b.len() == 16 => match uuid::Uuid::from_slice(b) {
                Ok(u) => canonical(&Value::Uuid(u)),
                Err(_) => canonical(&Value::Bytes(b.clone())),
            },
            _ => canonical(&Value::Bytes(b.clone())),
        },
        S::Text(s) => return canonical_text(s, col),
    };
    pad_char(c, ty)
}

/// The canonical form of a value read from PostgreSQL as text (`NULL` as
/// `None`).
pub fn canonical_from_pg_text(v: Option<&str>, col: &MappedColumn) -> CanonicalValue {
    match v {
        None => CanonicalValue(None),
        Some(s) => canonical_text(s, col),
    }
}

/// Hashes rows in canonical form with xxh3-128. A chunk's checksum is the
/// wrapping sum of its row hashes, so it does not depend on row order
/// (targets return rows in their own order); the row count travels with it.
#[derive(Debug, Clone, Default)]
pub struct RowHasher {
    sum: u128,
    count: u64,
    buf: Vec<u8>,
}

impl RowHasher {
    pub fn new() -> Self {
        Self::default()
    }

    /// The hash of one row: each value as a tag byte (0 NULL, 1 value), its
    /// length and its bytes, so `("ab","c")` and `("a","bc")` differ.
    pub fn row_hash(&mut self, row: &[CanonicalValue]) -> u128 {
        self.buf.clear();
        for v in row {
            match v.as_str() {
                None => self.buf.push(0),
                Some(s) => {
                    self.buf.push(1);
                    self.buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
                    self.buf.extend_from_slice(s.as_bytes());
                }
            }
        }
        twox_hash::XxHash3_128::oneshot(&self.buf)
    }

    /// Adds a row to the chunk checksum.
    pub fn add_row(&mut self, row: &[CanonicalValue]) {
        let h = self.row_hash(row);
        self.add_hash(h);
    }

    /// Adds a precomputed row hash.
    pub fn add_hash(&mut self, h: u128) {
        self.sum = self.sum.wrapping_add(h);
        self.count += 1;
    }

    /// Rows added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The order-independent checksum of the rows added so far.
    pub fn checksum(&self) -> u128 {
        self.sum
    }
}
