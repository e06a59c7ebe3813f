//! Value conversion: a source [`Value`] to what a target column stores.
//!
//! Every cell first goes through [`MappedTable::prepare`]: a value the
//! target cannot hold exactly (see `fit`) follows the column's
//! [`LossyPolicy`] — an error naming table, column, key and the fix; NULL;
//! or the nearest value the target holds. Then one encoder per target writes
//! it: bound parameters for the apply path, `LOAD DATA`/`COPY` text for the
//! bulk path. The encoders assume a prepared value and never fail.
//!
//! Wire forms (also what `canonical_from_*` reads back):
//! * MySQL/MariaDB: DATETIME in UTC, DECIMAL as exact text, bytea and
//!   BINARY uuids sent as hex in `LOAD DATA` and unhexed by the statement
//!   (`SET col = UNHEX(@vN)`: raw bytes would be re-encoded by the file's
//!   character set), JSON arrays, ISO-8601 intervals.
//! * SQLite: ISO-8601 text (`2024-01-02T03:04:05.000006`, timestamptz with a
//!   trailing `Z`, times in UTC), numerics as text, booleans 0/1, BLOBs.
//! * PostgreSQL: the type's own text input form, cast on the server.

use std::borrow::Cow;
use std::fmt;

use super::text::{self, DateStyle, MICROS_PER_DAY};
use super::{MappedColumn, MappedTable, TargetClass, TargetKind};
use crate::model::{DateValue, NumericValue, Row, TimestampValue, Value};
use crate::plan::LossyPolicy;

/// A value that cannot be written under its column's policy. The details
/// are boxed to keep `Result`s small on the per-cell hot path; fields read
/// through `Deref` (`e.table`, `e.column` …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionError(Box<ConversionDetails>);

impl std::ops::Deref for ConversionError {
    type Target = ConversionDetails;
    fn deref(&self) -> &ConversionDetails {
        &self.0
    }
}

/// What [`ConversionError`] knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionDetails {
    /// `schema.table` on the source.
    pub table: String,
    pub column: String,
    /// The row's key as `col=value, …` (all columns of a keyless table).
    pub key: String,
    /// The value, shortened to 80 characters.
    pub value: String,
    /// Why the target cannot hold it.
    pub reason: String,
    /// The target (`MariaDB 10.11.6`, `SQLite`, …).
    pub target: String,
    /// The policy that was applied.
    pub policy: LossyPolicy,
}

impl fmt::Display for ConversionDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, c) = (&self.table, &self.column);
        write!(f, "{t}.{c} (key {}): cannot write {} to {}: {}. ", self.key, self.value, self.target, self.reason)?;
        match self.policy {
            LossyPolicy::Error => write!(
                f,
                "To write NULL or the nearest value instead, set the column's lossy policy in the plan \
                 (mapping: {{ policies: {{ {t}.{c}: null }} }} or clamp), or give it a wider type with \
                 mapping: {{ columns: {{ {t}.{c}: <TYPE> }} }}"
            ),
            LossyPolicy::Null => write!(
                f,
                "The policy `null` cannot apply to a NOT NULL column: use `clamp` or a wider type with \
                 mapping: {{ columns: {{ {t}.{c}: <TYPE> }} }}"
            ),
            LossyPolicy::Clamp => write!(
                f,
                "The value has no nearest representable value: use the policy `null` \
                 (mapping: {{ policies: {{ {t}.{c}: null }} }}) or a wider type with mapping.columns"
            ),
        }
    }
}

impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ConversionError {}

/// Whether a value fits a column exactly.
enum Fit {
    Exact,
    Lossy { reason: String, clamped: Option<Value> },
}

fn lossy(reason: impl Into<String>, clamped: Option<Value>) -> Fit {
    Fit::Lossy { reason: reason.into(), clamped }
}

/// MySQL DATE/DATETIME range: 1000-01-01 … 9999-12-31 23:59:59.999999.
const MYSQL_MIN_DAYS: i64 = -354_285; // 1000-01-01
const MYSQL_MAX_DAYS: i64 = 2_932_896; // 9999-12-31

fn fit(kind: &TargetKind, col: &MappedColumn, v: &Value) -> Fit {
    match kind {
        // MySQL's JSON stores numbers as doubles (MariaDB's is text).
        TargetKind::Mysql { flavour: super::MysqlFlavour::Mysql, .. }
            if col.class == TargetClass::Json && matches!(v, Value::Json(_)) =>
        {
            let Value::Json(doc) = v else { return Fit::Exact };
            match super::json_numbers::lossy_numbers(doc) {
                None => Fit::Exact,
                Some(stored) => {
                    lossy("a JSON number has more digits than MySQL's JSON keeps (a double)", stored.map(Value::Json))
                }
            }
        }
        TargetKind::Mysql { .. } => fit_mysql(col, v),
        TargetKind::Sqlite => match v {
            Value::Float4(f) if f.is_nan() && col.class == TargetClass::Float => {
                lossy("SQLite stores NaN as NULL", None)
            }
            Value::Float8(f) if f.is_nan() && col.class == TargetClass::Float => {
                lossy("SQLite stores NaN as NULL", None)
            }
            _ => Fit::Exact,
        },
        TargetKind::Postgres => match v {
            Value::Text(s) | Value::Json(s) if s.contains('\0') => {
                lossy("PostgreSQL text cannot hold NUL characters", Some(Value::Text(s.replace('\0', ""))))
            }
            _ => Fit::Exact,
        },
    }
}

fn fit_mysql(col: &MappedColumn, v: &Value) -> Fit {
    let numeric_class = matches!(col.class, TargetClass::Float | TargetClass::Decimal { .. } | TargetClass::Integer);
    match (v, col.class) {
        (Value::Float4(f), _) if !f.is_finite() && numeric_class => {
            let clamp = (!f.is_nan()).then_some(Value::Float4(if *f > 0.0 { f32::MAX } else { f32::MIN }));
            lossy(format!("{} has no {} value", fmt_f64(*f as f64), col.target_type), clamp)
        }
        (Value::Float8(f), _) if !f.is_finite() && numeric_class => {
            let clamp = (!f.is_nan()).then_some(Value::Float8(if *f > 0.0 { f64::MAX } else { f64::MIN }));
            lossy(format!("{} has no {} value", fmt_f64(*f), col.target_type), clamp)
        }
        (Value::Numeric(n), TargetClass::Decimal { precision, scale }) => fit_decimal(n, precision, scale),
        (Value::Date(d), TargetClass::Date | TargetClass::DateTime) => {
            let days = match d {
                DateValue::Days(d) => *d as i64,
                DateValue::PosInfinity => i64::MAX,
                DateValue::NegInfinity => i64::MIN,
            };
            if (MYSQL_MIN_DAYS..=MYSQL_MAX_DAYS).contains(&days) {
                Fit::Exact
            } else {
                let c = if days > MYSQL_MAX_DAYS { MYSQL_MAX_DAYS } else { MYSQL_MIN_DAYS };
                lossy(
                    format!("{} holds dates from 1000-01-01 to 9999-12-31", col.target_type),
                    Some(Value::Date(DateValue::Days(c as i32))),
                )
            }
        }
        (Value::Timestamp(t) | Value::TimestampTz(t), TargetClass::Date | TargetClass::DateTime) => {
            let (lo, hi) = (MYSQL_MIN_DAYS * MICROS_PER_DAY, (MYSQL_MAX_DAYS + 1) * MICROS_PER_DAY - 1);
            let m = match t {
                TimestampValue::Micros(m) => *m,
                TimestampValue::PosInfinity => i64::MAX,
                TimestampValue::NegInfinity => i64::MIN,
            };
            if (lo..=hi).contains(&m) {
                Fit::Exact
            } else {
                let c = TimestampValue::Micros(if m > hi { hi } else { lo });
                let clamped =
                    if matches!(v, Value::Timestamp(_)) { Value::Timestamp(c) } else { Value::TimestampTz(c) };
                lossy(
                    format!("{} holds 1000-01-01 00:00:00 to 9999-12-31 23:59:59.999999", col.target_type),
                    Some(clamped),
                )
            }
        }
        _ => Fit::Exact,
    }
}

fn fmt_f64(f: f64) -> String {
    let mut v = Vec::new();
    text::write_f64(&mut v, f);
    String::from_utf8_lossy(&v).into_owned()
}

/// Checks a numeric against DECIMAL(p,s); the clamp rounds half away from
/// zero to `s` digits and saturates at ±99…9.9…9.
fn fit_decimal(n: &NumericValue, p: u32, s: u32) -> Fit {
    let max = |neg: bool| {
        let int = "9".repeat((p - s.min(p)) as usize);
        let frac = "9".repeat(s as usize);
        let body = match (int.is_empty(), frac.is_empty()) {
            (_, true) => int,
            (true, false) => format!("0.{frac}"),
            (false, false) => format!("{int}.{frac}"),
        };
        Value::Numeric(NumericValue::Finite(if neg { format!("-{body}") } else { body }))
    };
    let text = match n {
        NumericValue::NaN => return lossy(format!("NaN has no DECIMAL({p},{s}) value"), None),
        NumericValue::PosInfinity => return lossy(format!("Infinity has no DECIMAL({p},{s}) value"), Some(max(false))),
        NumericValue::NegInfinity => return lossy(format!("-Infinity has no DECIMAL({p},{s}) value"), Some(max(true))),
        NumericValue::Finite(t) => t,
    };
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text.as_str()),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int_room = (p - s.min(p)) as usize;
    if int.len() <= int_room && frac.len() <= s as usize {
        return Fit::Exact;
    }
    let reason = format!(
        "DECIMAL({p},{s}) holds {int_room} integer and {s} fraction digits; the value has {} and {}",
        int.len(),
        frac.len()
    );
    if int.len() > int_room {
        return lossy(reason, Some(max(neg)));
    }
    // Round the fraction to s digits.
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes().take(s as usize)).collect();
    let round_up = frac.as_bytes().get(s as usize).is_some_and(|d| *d >= b'5');
    if round_up {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - (s as usize).min(frac.len());
    let (ip, fp) = digits.split_at(split);
    if ip.len() > int_room {
        return lossy(reason, Some(max(neg)));
    }
    let mut out = String::new();
    if neg && digits.iter().any(|d| *d != b'0') {
        out.push('-');
    }
    out.push_str(if ip.is_empty() { "0" } else { std::str::from_utf8(ip).unwrap_or("0") });
    if !fp.is_empty() {
        out.push('.');
        out.push_str(std::str::from_utf8(fp).unwrap_or(""));
    }
    lossy(reason, Some(Value::Numeric(NumericValue::Finite(out))))
}

/// A short text of a value for messages.
pub fn show_value(v: &Value) -> String {
    let s = match v {
        Value::Null => "NULL".to_string(),
        Value::Text(s) | Value::Json(s) => format!("'{s}'"),
        Value::Numeric(NumericValue::Finite(s)) => s.clone(),
        Value::Numeric(NumericValue::NaN) => "NaN".to_string(),
        Value::Numeric(NumericValue::PosInfinity) => "Infinity".to_string(),
        Value::Numeric(NumericValue::NegInfinity) => "-Infinity".to_string(),
        Value::Float4(f) => fmt_f64(*f as f64),
        Value::Float8(f) => fmt_f64(*f),
        other => {
            let mut out = Vec::new();
            write_text(&TargetKind::Postgres, TargetClass::Text, other, &mut out);
            String::from_utf8_lossy(&out).into_owned()
        }
    };
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

impl MappedTable {
    /// The target table (name and identifier), for the target connection's
    /// catalog questions.
    pub fn target_table(&self) -> crate::plan::naming::TargetTable {
        crate::plan::naming::TargetTable { name: self.target_name.clone(), ident: self.target_ident.clone() }
    }

    /// The value of column `i` as the target will store it, after the
    /// column's lossy policy.
    pub fn prepare<'a>(&self, i: usize, row: &'a Row) -> Result<Cow<'a, Value>, ConversionError> {
        let v = row.get(i).unwrap_or(&Value::Null);
        let Some(col) = self.columns.get(i) else {
            return Ok(Cow::Borrowed(v));
        };
        match fit(&self.kind, col, v) {
            Fit::Exact => Ok(Cow::Borrowed(v)),
            Fit::Lossy { reason, clamped } => match (col.policy, clamped) {
                (LossyPolicy::Null, _) if col.nullable => Ok(Cow::Owned(Value::Null)),
                (LossyPolicy::Clamp, Some(c)) => Ok(Cow::Owned(c)),
                (policy, _) => Err(self.conversion_error(i, row, reason, policy)),
            },
        }
    }

    /// Every value of `row` the target cannot take (after the policies),
    /// column by column: a refused row names all of them at once, not one
    /// per run.
    pub fn row_errors(&self, row: &Row) -> Vec<ConversionError> {
        (0..self.columns.len()).filter_map(|i| self.prepare(i, row).err()).collect()
    }

    fn conversion_error(&self, i: usize, row: &Row, reason: String, policy: LossyPolicy) -> ConversionError {
        let key = self
            .source
            .match_columns()
            .iter()
            .map(|&k| {
                let name = self.columns.get(k).map(|c| c.name.as_str()).unwrap_or("?");
                format!("{name}={}", show_value(row.get(k).unwrap_or(&Value::Null)))
            })
            .collect::<Vec<_>>()
            .join(", ");
        ConversionError(Box::new(ConversionDetails {
            table: self.source.name.to_string(),
            column: self.columns.get(i).map(|c| c.name.clone()).unwrap_or_default(),
            key,
            value: show_value(row.get(i).unwrap_or(&Value::Null)),
            reason,
            target: self.kind.to_string(),
            policy,
        }))
    }

    /// Bound parameters for MySQL/MariaDB, columns `cols` of `row` in order.
    pub fn mysql_params(&self, row: &Row, cols: &[usize]) -> Result<Vec<mysql_async::Value>, ConversionError> {
        cols.iter()
            .map(|&i| {
                let v = self.prepare(i, row)?;
                let class = self.columns.get(i).map(|c| c.class).unwrap_or(TargetClass::Text);
                Ok(mysql_value(&self.kind, class, &v))
            })
            .collect()
    }

    /// Bound parameters for SQLite, columns `cols` of `row` in order.
    pub fn sqlite_params(&self, row: &Row, cols: &[usize]) -> Result<Vec<rusqlite::types::Value>, ConversionError> {
        cols.iter()
            .map(|&i| {
                let v = self.prepare(i, row)?;
                let class = self.columns.get(i).map(|c| c.class).unwrap_or(TargetClass::Text);
                Ok(sqlite_value(class, &v))
            })
            .collect()
    }

    /// Text parameters for PostgreSQL (None for NULL), columns `cols` of
    /// `row` in order; the SQL casts them with [`MappedTable::pg_placeholder`].
    pub fn pg_params(&self, row: &Row, cols: &[usize]) -> Result<Vec<Option<String>>, ConversionError> {
        cols.iter()
            .map(|&i| {
                let v = self.prepare(i, row)?;
                if v.is_null() {
                    return Ok(None);
                }
                let mut out = Vec::new();
                write_text(&TargetKind::Postgres, TargetClass::Text, &v, &mut out);
                Ok(Some(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())))
            })
            .collect()
    }

    /// The placeholder for parameter `n` (1-based) bound to column `col`:
    /// `$n::text::<type>`, so text parameters reach any target type.
    pub fn pg_placeholder(&self, n: usize, col: usize) -> String {
        match self.columns.get(col) {
            Some(c) => format!("${n}::text::{}", c.target_type),
            None => format!("${n}"),
        }
    }

    /// Appends `row` as one line of MySQL `LOAD DATA` text (see
    /// [`MappedTable::load_data_sql`]): tab-separated, `\N` for NULL,
    /// `\\ \t \n \r \0` escaped, binary columns as hex.
    pub fn append_load_data_row(&self, row: &Row, out: &mut Vec<u8>) -> Result<(), ConversionError> {
        let mut scratch = Vec::new();
        for (i, col) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            let v = self.prepare(i, row)?;
            match (&*v, col.class) {
                (Value::Null, _) => out.extend_from_slice(b"\\N"),
                (v, TargetClass::Binary) => write_binary_hex(&self.kind, v, out),
                (Value::Text(s) | Value::Json(s) | Value::Unknown { text: s, .. }, _) => {
                    text::escape_load_data(out, s.as_bytes())
                }
                (v @ (Value::Array(_) | Value::Bytes(_)), class) => {
                    scratch.clear();
                    write_text(&self.kind, class, v, &mut scratch);
                    text::escape_load_data(out, &scratch);
                }
                (v, class) => write_text(&self.kind, class, v, out),
            }
        }
        out.push(b'\n');
        Ok(())
    }

    /// The `LOAD DATA LOCAL INFILE` statement for [`MappedTable::append_load_data_row`]'s
    /// text, read from the infile stream named `stream_name` in the
    /// character set `charset` (`utf8mb4`, or `binary` where the target's
    /// columns take UTF-8 as it is: `sink::mysql::load`).
    pub fn load_data_sql(&self, stream_name: &str, charset: &str) -> String {
        let d = self.kind.dialect();
        let mut cols = Vec::new();
        let mut sets = Vec::new();
        for (i, c) in self.columns.iter().enumerate() {
            if c.class == TargetClass::Binary {
                cols.push(format!("@v{i}"));
                sets.push(format!("{} = UNHEX(@v{i})", d.ident(&c.name)));
            } else {
                cols.push(d.ident(&c.name));
            }
        }
        let name = stream_name.replace('\\', "\\\\").replace('\'', "''");
        let mut sql = format!(
            "LOAD DATA LOCAL INFILE '{name}' INTO TABLE {} CHARACTER SET {charset} \
             FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
            self.target_ident,
            cols.join(", ")
        );
        if !sets.is_empty() {
            sql.push_str(" SET ");
            sql.push_str(&sets.join(", "));
        }
        sql
    }

    /// Appends `row` as one line of PostgreSQL `COPY … FROM STDIN` text format.
    pub fn append_pg_copy_row(&self, row: &Row, out: &mut Vec<u8>) -> Result<(), ConversionError> {
        let mut scratch = Vec::new();
        for i in 0..self.columns.len() {
            if i > 0 {
                out.push(b'\t');
            }
            let v = self.prepare(i, row)?;
            match &*v {
                Value::Null => out.extend_from_slice(b"\\N"),
                Value::Text(s) | Value::Json(s) | Value::Unknown { text: s, .. } => {
                    text::escape_copy(out, s.as_bytes())
                }
                v @ (Value::Array(_) | Value::Bytes(_)) => {
                    scratch.clear();
                    write_text(&TargetKind::Postgres, TargetClass::Text, v, &mut scratch);
                    text::escape_copy(out, &scratch);
                }
                v => write_text(&TargetKind::Postgres, TargetClass::Text, v, out),
            }
        }
        out.push(b'\n');
        Ok(())
    }

    /// The `COPY … FROM STDIN` statement for [`MappedTable::append_pg_copy_row`].
    pub fn pg_copy_sql(&self) -> String {
        let d = self.kind.dialect();
        let cols: Vec<String> = self.columns.iter().map(|c| d.ident(&c.name)).collect();
        format!("COPY {} ({}) FROM STDIN", self.target_ident, cols.join(", "))
    }
}

/// Hex of a value bound for a binary column (bytes, 16-byte uuid, else its text).
fn write_binary_hex(kind: &TargetKind, v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Bytes(b) => text::write_hex(out, b),
        Value::Uuid(u) => text::write_hex(out, u.as_bytes()),
        other => {
            let mut t = Vec::new();
            write_text(kind, TargetClass::Text, other, &mut t);
            text::write_hex(out, &t);
        }
    }
}

fn mysql_value(kind: &TargetKind, class: TargetClass, v: &Value) -> mysql_async::Value {
    use mysql_async::Value as M;
    match (v, class) {
        (Value::Null, _) => M::NULL,
        (Value::Bool(b), _) => M::Int(*b as i64),
        (Value::Int2(i), _) => M::Int(*i as i64),
        (Value::Int4(i), _) => M::Int(*i as i64),
        (Value::Int8(i), _) => M::Int(*i),
        (Value::Float4(f), TargetClass::Float) => M::Float(*f),
        (Value::Float8(f), TargetClass::Float) => M::Double(*f),
        (Value::Bytes(b), _) => M::Bytes(b.clone()),
        (Value::Uuid(u), TargetClass::Binary) => M::Bytes(u.as_bytes().to_vec()),
        (Value::Text(s) | Value::Json(s), _) => M::Bytes(s.as_bytes().to_vec()),
        (Value::Date(DateValue::Days(d)), TargetClass::Date | TargetClass::DateTime) => {
            let (y, m, dd) = text::civil_from_days(*d as i64);
            M::Date(y as u16, m as u8, dd as u8, 0, 0, 0, 0)
        }
        (
            Value::Timestamp(TimestampValue::Micros(t)) | Value::TimestampTz(TimestampValue::Micros(t)),
            TargetClass::DateTime | TargetClass::Date,
        ) => {
            let (y, m, d) = text::civil_from_days(t.div_euclid(MICROS_PER_DAY));
            let tod = t.rem_euclid(MICROS_PER_DAY);
            let s = tod / 1_000_000;
            M::Date(
                y as u16,
                m as u8,
                d as u8,
                (s / 3600) as u8,
                (s / 60 % 60) as u8,
                (s % 60) as u8,
                (tod % 1_000_000) as u32,
            )
        }
        (Value::Time(_) | Value::TimeTz { .. }, TargetClass::Time) => {
            let us = utc_time_micros(v);
            let s = us / 1_000_000;
            M::Time(
                false,
                (s / 86_400) as u32,
                (s / 3600 % 24) as u8,
                (s / 60 % 60) as u8,
                (s % 60) as u8,
                (us % 1_000_000) as u32,
            )
        }
        (v, class) => {
            let mut out = Vec::new();
            write_text(kind, class, v, &mut out);
            M::Bytes(out)
        }
    }
}

fn sqlite_value(class: TargetClass, v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match (v, class) {
        (Value::Null, _) => S::Null,
        (Value::Bool(b), _) => S::Integer(*b as i64),
        (Value::Int2(i), _) => S::Integer(*i as i64),
        (Value::Int4(i), _) => S::Integer(*i as i64),
        (Value::Int8(i), _) => S::Integer(*i),
        (Value::Float4(f), TargetClass::Float) => S::Real(*f as f64),
        (Value::Float8(f), TargetClass::Float) => S::Real(*f),
        (Value::Bytes(b), TargetClass::Binary) => S::Blob(b.clone()),
        (Value::Uuid(u), TargetClass::Binary) => S::Blob(u.as_bytes().to_vec()),
        (Value::Text(s) | Value::Json(s), _) => S::Text(s.clone()),
        (v, class) => {
            let mut out = Vec::new();
            write_text(&TargetKind::Sqlite, class, v, &mut out);
            S::Text(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
        }
    }
}

/// A time (with zone) as microseconds since midnight UTC.
fn utc_time_micros(v: &Value) -> i64 {
    match v {
        Value::Time(us) => *us,
        Value::TimeTz { micros, offset_seconds } => {
            let utc = micros - *offset_seconds as i64 * 1_000_000;
            // 24:00:00 stays 24:00:00; everything else wraps into one day.
            if utc == MICROS_PER_DAY {
                utc
            } else {
                utc.rem_euclid(MICROS_PER_DAY)
            }
        }
        _ => 0,
    }
}

/// A value as PostgreSQL input text (`None` for NULL): what the source
/// reads back exactly (`source::postgres::generated_recompute`).
pub fn pg_source_text(v: &Value) -> Option<String> {
    if v.is_null() {
        return None;
    }
    let mut out = Vec::new();
    write_text(&TargetKind::Postgres, TargetClass::Text, v, &mut out);
    Some(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Writes a non-NULL value's text form for `kind` (unescaped).
pub(super) fn write_text(kind: &TargetKind, class: TargetClass, v: &Value, out: &mut Vec<u8>) {
    let pg = matches!(kind, TargetKind::Postgres);
    let sqlite = matches!(kind, TargetKind::Sqlite);
    match v {
        Value::Null => {}
        Value::Bool(b) => out.extend_from_slice(match (pg, b) {
            (true, true) => b"t",
            (true, false) => b"f",
            (false, true) => b"1",
            (false, false) => b"0",
        }),
        Value::Int2(i) => text::write_i64(out, *i as i64),
        Value::Int4(i) => text::write_i64(out, *i as i64),
        Value::Int8(i) => text::write_i64(out, *i),
        Value::Float4(f) => {
            if pg && f.is_finite() {
                use std::io::Write as _;
                let _ = write!(out, "{f:?}");
            } else {
                // The exact double of the float reads back as the same float.
                text::write_f64(out, *f as f64)
            }
        }
        Value::Float8(f) => text::write_f64(out, *f),
        Value::Numeric(n) => out.extend_from_slice(match n {
            NumericValue::Finite(s) => s.as_bytes(),
            NumericValue::NaN => b"NaN",
            NumericValue::PosInfinity => b"Infinity",
            NumericValue::NegInfinity => b"-Infinity",
        }),
        Value::Text(s) | Value::Json(s) => out.extend_from_slice(s.as_bytes()),
        Value::Unknown { text, .. } => out.extend_from_slice(text.as_bytes()),
        Value::Bytes(b) => {
            if class == TargetClass::Binary {
                out.extend_from_slice(b);
            } else {
                out.extend_from_slice(b"\\x");
                text::write_hex(out, b);
            }
        }
        Value::Date(d) => match d {
            DateValue::Days(d) => text::write_date(out, *d as i64, if pg { DateStyle::Pg } else { DateStyle::Iso }),
            DateValue::PosInfinity => out.extend_from_slice(b"infinity"),
            DateValue::NegInfinity => out.extend_from_slice(b"-infinity"),
        },
        Value::Time(_) => text::write_time(out, utc_time_micros(v)),
        Value::TimeTz { micros, offset_seconds } => {
            if pg {
                text::write_time(out, *micros);
                let o = offset_seconds.unsigned_abs();
                out.push(if *offset_seconds < 0 { b'-' } else { b'+' });
                let two = |n: u32, out: &mut Vec<u8>| {
                    out.push(b'0' + (n / 10) as u8);
                    out.push(b'0' + (n % 10) as u8);
                };
                two(o / 3600, out);
                out.push(b':');
                two(o / 60 % 60, out);
                out.push(b':');
                two(o % 60, out);
            } else {
                text::write_time(out, utc_time_micros(v));
            }
        }
        Value::Timestamp(t) | Value::TimestampTz(t) => match t {
            TimestampValue::Micros(m) => {
                let tz = matches!(v, Value::TimestampTz(_));
                if pg {
                    text::write_timestamp(out, *m, b' ', DateStyle::Pg);
                    if tz {
                        // Keep BC last: PostgreSQL reads `… +00 BC`? No: it reads `… BC +00`? Avoid the
                        // question by writing the offset before nothing else: insert before " BC".
                        if out.ends_with(b" BC") {
                            out.truncate(out.len() - 3);
                            out.extend_from_slice(b"+00 BC");
                        } else {
                            out.extend_from_slice(b"+00");
                        }
                    }
                } else if sqlite {
                    text::write_timestamp(out, *m, b'T', DateStyle::Iso);
                    if tz {
                        out.push(b'Z');
                    }
                } else {
                    text::write_timestamp(out, *m, b' ', DateStyle::Iso);
                }
            }
            TimestampValue::PosInfinity => out.extend_from_slice(b"infinity"),
            TimestampValue::NegInfinity => out.extend_from_slice(b"-infinity"),
        },
        Value::Interval { months, days, micros } => text::write_interval(out, *months, *days, *micros),
        Value::Uuid(u) => {
            if class == TargetClass::Binary {
                out.extend_from_slice(u.as_bytes());
            } else {
                text::write_uuid(out, u)
            }
        }
        Value::Array(items) => {
            if pg {
                write_pg_array(items, out)
            } else {
                write_json_array(items, out)
            }
        }
    }
}

/// A PostgreSQL array literal: `{"a","b\"c",NULL,{"1","2"}}`; every
/// element quoted, so no element text needs analysis.
fn write_pg_array(items: &[Value], out: &mut Vec<u8>) {
    out.push(b'{');
    let mut t = Vec::new();
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match v {
            Value::Null => out.extend_from_slice(b"NULL"),
            Value::Array(inner) => write_pg_array(inner, out),
            v => {
                t.clear();
                write_text(&TargetKind::Postgres, TargetClass::Text, v, &mut t);
                out.push(b'"');
                for &b in &t {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
        }
    }
    out.push(b'}');
}

/// An array as JSON (MySQL/SQLite targets): numbers and booleans as JSON
/// values, NaN/Infinity and every other type as strings in the target's
/// text form, json elements embedded, nested arrays nested.
pub(super) fn write_json_array(items: &[Value], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_value(v, out);
    }
    out.push(b']');
}

fn write_json_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => write_text(&TargetKind::Sqlite, TargetClass::Text, v, out),
        Value::Float4(f) if f.is_finite() => text::write_f64(out, *f as f64),
        Value::Float8(f) if f.is_finite() => text::write_f64(out, *f),
        Value::Numeric(NumericValue::Finite(s)) => out.extend_from_slice(s.as_bytes()),
        Value::Json(s) => out.extend_from_slice(s.as_bytes()),
        Value::Array(inner) => write_json_array(inner, out),
        Value::Text(s) | Value::Unknown { text: s, .. } => json_string(s, out),
        other => {
            let mut t = Vec::new();
            write_text(&TargetKind::Sqlite, TargetClass::Text, other, &mut t);
            json_string(&String::from_utf8_lossy(&t), out);
        }
    }
}

fn json_string(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping is exactly JSON's; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str, p: u32, sc: u32) -> Option<String> {
        match fit_decimal(&NumericValue::Finite(s.into()), p, sc) {
            Fit::Exact => None,
            Fit::Lossy { clamped: Some(Value::Numeric(NumericValue::Finite(c))), .. } => Some(c),
            Fit::Lossy { .. } => Some("none".into()),
        }
    }

    #[test]
    fn decimal_fit_and_clamp() {
        assert_eq!(dec("123.45", 5, 2), None);
        assert_eq!(dec("-0123.4500", 5, 2), None);
        assert_eq!(dec("0.0", 1, 0), None);
        assert_eq!(dec("123.456", 5, 2), Some("123.46".into()));
        assert_eq!(dec("-123.454", 5, 2), Some("-123.45".into()));
        assert_eq!(dec("999.995", 5, 2), Some("999.99".into()));
        assert_eq!(dec("1234.5", 5, 2), Some("999.99".into()));
        assert_eq!(dec("-1234", 5, 2), Some("-999.99".into()));
        assert_eq!(dec("0.999", 2, 2), Some("0.99".into()));
        assert_eq!(dec("9.5", 1, 0), Some("9".into()));
        assert_eq!(dec("-0.001", 3, 2), Some("0.00".into()));
    }

    #[test]
    fn pg_array_literal_quotes_everything() {
        let mut out = Vec::new();
        write_pg_array(&[Value::Text("a\"b\\c".into()), Value::Null, Value::Array(vec![Value::Int4(1)])], &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a\"b\\c",NULL,{"1"}}"#);
    }
}
