//! Binlog values back to the original PostgreSQL column types: the reverse
//! of `mappings/pg-to-mysql.yaml`, decided by the source's real column type
//! (read from its catalog), never by the MySQL type alone.
//!
//! A value is mapped back only when the result is exactly what the forward
//! mapping would have written for it; otherwise the error says why (the
//! caller names table, column and key). Types the forward mapping altered
//! (`timetz` lost its offset, `interval` text …) are refused rather than
//! guessed ([`comes_back`], which `check --reverse` asks of every column);
//! network addresses, MAC addresses, bit strings and intervals went
//! forward as their text and come back checked, composite, range and
//! extension types as their text; arrays, which became JSON arrays, come back where their
//! elements name one value each (integers, strings, booleans).

use mysql_async::binlog::value::BinlogValue;
use mysql_async::Value as My;

use crate::model::{DateValue, NumericValue, PgType, TimestampValue, Value};

/// Days since 1970-01-01 of a date the binlog carries (MariaDB's zero
/// dates and days have none).
fn days_from_civil(y: i64, m: u32, d: u32) -> Result<i64, String> {
    crate::model::time::days_from_civil(y, m, d).ok_or_else(|| format!("{y:04}-{m:02}-{d:02} is not a date"))
}

fn text(v: &My) -> Result<String, String> {
    match v {
        My::Bytes(b) => String::from_utf8(b.clone()).map_err(|_| "the target value is not valid UTF-8".into()),
        other => Err(format!("expected text, the binlog has {other:?}")),
    }
}

fn int(v: &My) -> Result<i64, String> {
    match v {
        My::Int(i) => Ok(*i),
        My::UInt(u) => i64::try_from(*u).map_err(|_| format!("{u} is beyond bigint")),
        other => Err(format!("expected an integer, the binlog has {other:?}")),
    }
}

/// `DECIMAL(65,30)` (the forward mapping of unconstrained `numeric`) pads
/// the scale: the number is the same without its trailing fraction zeros.
fn trim_scale(s: &str) -> String {
    match s.split_once('.') {
        Some((i, f)) => {
            let f = f.trim_end_matches('0');
            if f.is_empty() {
                i.to_string()
            } else {
                format!("{i}.{f}")
            }
        }
        None => s.to_string(),
    }
}

/// One binlog value as the PostgreSQL column `ty` holds it.
pub fn to_source_value(v: Option<&BinlogValue<'_>>, ty: &PgType) -> Result<Value, String> {
    let v = match v {
        None => return Err("the binlog row image lacks this column (binlog_row_image is not FULL)".into()),
        Some(BinlogValue::Value(My::NULL)) => return Ok(Value::Null),
        Some(BinlogValue::Value(v)) => v,
        Some(_) => return Err("MySQL binary JSON is not mapped back yet (MariaDB stores JSON as text)".into()),
    };
    let out_of_range = |what: &str, n: i64| format!("{n} does not fit {what}");
    Ok(match ty {
        PgType::Bool => match int(v)? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            n => return Err(format!("{n} is not a boolean (0 or 1)")),
        },
        PgType::Int2 => {
            let n = int(v)?;
            Value::Int2(i16::try_from(n).map_err(|_| out_of_range("smallint", n))?)
        }
        PgType::Int4 => {
            let n = int(v)?;
            Value::Int4(i32::try_from(n).map_err(|_| out_of_range("integer", n))?)
        }
        PgType::Int8 => Value::Int8(int(v)?),
        PgType::Oid => Value::Int8(int(v)?),
        PgType::Float4 => match v {
            My::Float(f) => Value::Float4(*f),
            My::Double(d) if (*d as f32) as f64 == *d => Value::Float4(*d as f32),
            other => return Err(format!("expected a real, the binlog has {other:?}")),
        },
        PgType::Float8 => match v {
            My::Double(d) => Value::Float8(*d),
            My::Float(f) => Value::Float8(*f as f64),
            other => return Err(format!("expected a double, the binlog has {other:?}")),
        },
        PgType::Numeric { scale, .. } => {
            let s = text(v)?;
            Value::Numeric(NumericValue::Finite(if scale.is_none() { trim_scale(&s) } else { s }))
        }
        PgType::Money => Value::Numeric(NumericValue::Finite(text(v)?)),
        PgType::Text | PgType::Varchar(_) | PgType::Char(_) | PgType::Name | PgType::Xml | PgType::InternalChar => {
            Value::Text(text(v)?)
        }
        PgType::Enum { labels, .. } => {
            let s = text(v)?;
            if !labels.contains(&s) {
                return Err(format!("'{s}' is not a label of the source's enum"));
            }
            Value::Text(s)
        }
        PgType::Bytea => match v {
            My::Bytes(b) => Value::Bytes(b.clone()),
            other => return Err(format!("expected bytes, the binlog has {other:?}")),
        },
        PgType::Uuid => {
            let s = text(v)?;
            Value::Uuid(uuid::Uuid::parse_str(&s).map_err(|_| format!("'{s}' is not a UUID"))?)
        }
        PgType::Json | PgType::Jsonb => {
            let s = text(v)?;
            serde_json::from_str::<serde_json::Value>(&s).map_err(|e| format!("not valid JSON: {e}"))?;
            Value::Json(s)
        }
        PgType::Date => match v {
            My::Date(y, m, d, 0, 0, 0, 0) => Value::Date(DateValue::Days(
                i32::try_from(days_from_civil(*y as i64, *m as u32, *d as u32)?).map_err(|_| "date out of range")?,
            )),
            other => return Err(format!("expected a date, the binlog has {other:?}")),
        },
        // Both are written as the UTC wall clock by the forward mapping
        // (the target session runs with time_zone '+00:00').
        PgType::Timestamp(_) | PgType::TimestampTz(_) => match v {
            My::Date(y, mo, d, h, mi, s, us) => {
                let days = days_from_civil(*y as i64, *mo as u32, *d as u32)?;
                let micros =
                    ((days * 86_400 + *h as i64 * 3600 + *mi as i64 * 60 + *s as i64) * 1_000_000) + *us as i64;
                let t = TimestampValue::Micros(micros);
                if matches!(ty, PgType::TimestampTz(_)) {
                    Value::TimestampTz(t)
                } else {
                    Value::Timestamp(t)
                }
            }
            other => return Err(format!("expected a datetime, the binlog has {other:?}")),
        },
        PgType::Time(_) => match v {
            My::Time(false, 0, h, m, s, us) => {
                Value::Time((*h as i64 * 3600 + *m as i64 * 60 + *s as i64) * 1_000_000 + *us as i64)
            }
            other => return Err(format!("{other:?} is not a time of day")),
        },
        // The text PostgreSQL reads a tsvector from, as the application
        // wrote it on the target: PostgreSQL parses it as it would the
        // same INSERT made there (the forward mapping writes its output).
        PgType::TsVector => Value::Text(text(v)?),
        // The forward mapping writes PostgreSQL's output; what the
        // application wrote there is checked to be an address PostgreSQL
        // reads as written (a `cidr` needs its prefix: PostgreSQL would
        // guess a classful one), so a stray text is named here, not by a
        // failed statement.
        PgType::Inet | PgType::Cidr => {
            let s = text(v)?;
            let cidr = ty == &PgType::Cidr;
            Value::Text(crate::mapping::text::canonical_inet(&s, cidr).ok_or_else(|| {
                if cidr {
                    format!("'{s}' is not a network (address/prefix with no bits set past the prefix)")
                } else {
                    format!("'{s}' is not an IP address (with an optional /prefix)")
                }
            })?)
        }
        // macaddr8 also takes a 6-byte address (PostgreSQL inserts FF:FE).
        PgType::Macaddr | PgType::Macaddr8 => {
            let s = text(v)?;
            let eight = ty == &PgType::Macaddr8;
            Value::Text(
                crate::mapping::text::canonical_mac(&s, eight).ok_or_else(|| {
                    format!("'{s}' is not a MAC address of {} bytes", if eight { "6 or 8" } else { "6" })
                })?,
            )
        }
        PgType::Bit(n) => Value::Text(bits(&text(v)?, Some(n.unwrap_or(1)), true)?),
        PgType::VarBit(n) => Value::Text(bits(&text(v)?, *n, false)?),
        // Written forward in the `iso_8601` style, which keeps months,
        // days and microseconds apart; read back into the same three (the
        // `postgres` style too, as an application may write it).
        PgType::Interval => {
            let s = text(v)?;
            let (months, days, micros) = crate::mapping::text::parse_interval(&s)
                .ok_or_else(|| format!("'{s}' is not an interval (ISO 8601 `P1DT2H` or `1 day 02:00:00`)"))?;
            Value::Interval { months, days, micros }
        }
        PgType::Array(elem) if array_element_maps_back(elem) => {
            let s = text(v)?;
            let json: serde_json::Value = serde_json::from_str(&s).map_err(|e| format!("not valid JSON: {e}"))?;
            let serde_json::Value::Array(items) = &json else {
                return Err(format!("{s} is not a JSON array (the forward mapping writes {} as one)", ty.sql_name()));
            };
            // Numbers as written: serde_json reads one as a double.
            let mut numbers = crate::mapping::json_numbers::number_texts(&s).into_iter();
            array_from_json(items, elem, 1, &mut numbers)?
        }
        // Composite, range and extension types (citext, hstore …) and
        // tsquery went forward as their text (a text override in the
        // plan): PostgreSQL reads it back as it would the same INSERT.
        PgType::Other { .. } | PgType::TsQuery => Value::Text(text(v)?),
        other => {
            return Err(comes_back(other).err().unwrap_or_else(|| format!("{} is not mapped back", other.sql_name())))
        }
    })
}

/// Whether values of a source column of type `ty` can come back from
/// MySQL/MariaDB at all (each value is still checked on its way); the
/// reason when they cannot. `check --reverse` asks it of every column.
pub fn comes_back(ty: &PgType) -> Result<(), String> {
    match ty {
        PgType::TimeTz(_) => Err(
            "the forward mapping wrote it as a TIME normalised to UTC: the offset is lost, so it is not mapped back"
                .into(),
        ),
        PgType::Array(elem) if !array_element_maps_back(elem) => Err(format!(
            "its arrays went forward as JSON arrays whose elements do not each name one {} (read back as a \
             double, a JSON number loses numeric's scale and digits), so it is not mapped back",
            elem.sql_name()
        )),
        _ => Ok(()),
    }
}

/// A bit string of `0`s and `1`s: exactly `n` for `bit(n)`, at most `n`
/// for `varbit(n)`.
fn bits(s: &str, n: Option<u32>, exact: bool) -> Result<String, String> {
    if !s.chars().all(|c| c == '0' || c == '1') {
        return Err(format!("'{s}' is not a bit string (0s and 1s)"));
    }
    match n {
        Some(n) if exact && s.len() != n as usize => {
            Err(format!("'{s}' has {} bits, bit({n}) holds exactly {n}", s.len()))
        }
        Some(n) if s.len() > n as usize => Err(format!("'{s}' has {} bits, more than varbit({n}) holds", s.len())),
        _ => Ok(s.to_string()),
    }
}

/// Element types whose JSON form (arrays go forward as JSON arrays) names
/// one PostgreSQL value: integers, floats (a double's shortest text reads
/// back as it; NaN and infinities as strings), strings, booleans, and
/// dates, times and intervals as their ISO text, and numerics as written
/// (their text, not the double a JSON parser reads).
fn array_element_maps_back(elem: &PgType) -> bool {
    matches!(
        elem,
        PgType::Bool
            | PgType::Int2
            | PgType::Int4
            | PgType::Int8
            | PgType::Text
            | PgType::Varchar(_)
            | PgType::Char(_)
            | PgType::Name
            | PgType::Uuid
            | PgType::Enum { .. }
            | PgType::Float4
            | PgType::Float8
            | PgType::Numeric { .. }
            | PgType::Date
            | PgType::Time(_)
            | PgType::Timestamp(_)
            | PgType::TimestampTz(_)
            | PgType::Interval
    )
}

/// A JSON array (MariaDB's column, written there by the application) as
/// the PostgreSQL array of `elem` it stands for: nested arrays are the
/// dimensions, which PostgreSQL needs rectangular (as deep as its six).
fn array_from_json<'a>(
    items: &[serde_json::Value],
    elem: &PgType,
    depth: usize,
    numbers: &mut impl Iterator<Item = &'a str>,
) -> Result<Value, String> {
    use serde_json::Value as J;
    if depth > 6 {
        return Err("an array nested deeper than PostgreSQL's 6 dimensions".into());
    }
    let nested = items.iter().filter(|i| i.is_array()).count();
    if nested > 0 && nested < items.len() {
        return Err("a JSON array mixing arrays and values is no PostgreSQL array".into());
    }
    if nested > 0 {
        let shape = |i: &J| match i {
            J::Array(a) => a.len(),
            _ => 0,
        };
        let width = shape(&items[0]);
        if width == 0 || items.iter().any(|i| shape(i) != width) {
            return Err("nested JSON arrays of different (or no) lengths are no PostgreSQL array".into());
        }
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(match item {
            J::Null => Value::Null,
            J::Array(inner) => array_from_json(inner, elem, depth + 1, numbers)?,
            J::Number(_) => {
                let text = numbers.next().ok_or("the JSON array's numbers could not be read as written")?;
                match elem {
                    PgType::Numeric { precision, scale } => numeric_element(text, *precision, *scale)?,
                    _ => array_element(item, elem)?,
                }
            }
            scalar => array_element(scalar, elem)?,
        });
    }
    Ok(Value::Array(out))
}

/// A JSON number as a `numeric(p,s)` element, as written (`1.50` stays
/// `1.50`). Refused when the column would round it (more fraction digits
/// than its scale) or cannot hold it, or written with an exponent.
fn numeric_element(text: &str, precision: Option<u32>, scale: Option<u32>) -> Result<Value, String> {
    if text.contains(['e', 'E']) {
        return Err(format!("array element {text} is written with an exponent: write it as plain decimal digits"));
    }
    let digits = text.trim_start_matches('-');
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if let (Some(p), Some(s)) = (precision, scale) {
        let int_digits = int.trim_start_matches('0').len() as u32;
        if frac.trim_end_matches('0').len() as u32 > s {
            return Err(format!(
                "array element {text} has more fraction digits than numeric({p},{s}) keeps: it would be rounded"
            ));
        }
        if int_digits > p.saturating_sub(s) {
            return Err(format!("array element {text} does not fit numeric({p},{s})"));
        }
    }
    Ok(Value::Numeric(NumericValue::Finite(text.to_string())))
}

fn array_element(v: &serde_json::Value, elem: &PgType) -> Result<Value, String> {
    use serde_json::Value as J;
    let wrong = || format!("array element {v} is not a {}", elem.sql_name());
    let int = || v.as_i64().ok_or_else(wrong);
    Ok(match (elem, v) {
        (PgType::Bool, J::Bool(b)) => Value::Bool(*b),
        (PgType::Int2, J::Number(_)) => Value::Int2(i16::try_from(int()?).map_err(|_| wrong())?),
        (PgType::Int4, J::Number(_)) => Value::Int4(i32::try_from(int()?).map_err(|_| wrong())?),
        (PgType::Int8, J::Number(_)) => Value::Int8(int()?),
        (PgType::Uuid, J::String(s)) => Value::Uuid(uuid::Uuid::parse_str(s).map_err(|_| wrong())?),
        (PgType::Enum { labels, .. }, J::String(s)) if labels.contains(s) => Value::Text(s.clone()),
        (PgType::Text | PgType::Varchar(_) | PgType::Char(_) | PgType::Name, J::String(s)) => Value::Text(s.clone()),
        // The shortest text of a double reads back as that double; JSON has
        // no NaN or infinity, which the forward mapping writes as strings.
        (PgType::Float8, J::Number(n)) => Value::Float8(n.as_f64().ok_or_else(wrong)?),
        // A real went forward widened to a double: one that is not exactly
        // a real was written on the target and would be rounded.
        (PgType::Float4, J::Number(n)) => match n.as_f64() {
            Some(d) if (d as f32) as f64 == d => Value::Float4(d as f32),
            _ => return Err(format!("array element {v} is not exactly a real (it would be rounded)")),
        },
        (PgType::Numeric { .. }, J::String(s)) => Value::Numeric(match s.as_str() {
            "NaN" => NumericValue::NaN,
            "Infinity" => NumericValue::PosInfinity,
            "-Infinity" => NumericValue::NegInfinity,
            _ => return Err(wrong()),
        }),
        (PgType::Float8 | PgType::Float4, J::String(s)) => {
            let f = match s.as_str() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => return Err(wrong()),
            };
            if elem == &PgType::Float4 {
                Value::Float4(f as f32)
            } else {
                Value::Float8(f)
            }
        }
        // Dates and times went forward as their text (ISO 8601, UTC for
        // timestamptz); read by the parsers `validate` uses, offsets
        // included.
        (
            PgType::Date | PgType::Time(_) | PgType::Timestamp(_) | PgType::TimestampTz(_) | PgType::Interval,
            J::String(s),
        ) => crate::mapping::value_from_text(s, elem).ok_or_else(wrong)?,
        _ => return Err(wrong()),
    })
}

/// A binlog value as SQL text, to name a key in messages.
pub fn display(v: Option<&BinlogValue<'_>>) -> String {
    match v {
        Some(BinlogValue::Value(v)) => v.as_sql(false),
        Some(other) => format!("{other:?}"),
        None => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_date_is_not_mapped_back() {
        let zero = BinlogValue::Value(My::Date(0, 0, 0, 0, 0, 0, 0));
        assert!(to_source_value(Some(&zero), &PgType::Date).is_err());
    }

    #[test]
    fn values_map_back_by_the_source_type() {
        let b = |v: My| BinlogValue::Value(v);
        assert_eq!(to_source_value(Some(&b(My::Int(1))), &PgType::Bool).unwrap(), Value::Bool(true));
        assert!(to_source_value(Some(&b(My::Int(70_000))), &PgType::Int2).is_err());
        let n = b(My::Bytes(b"1.500000".to_vec()));
        let unconstrained = PgType::Numeric { precision: None, scale: None };
        assert_eq!(
            to_source_value(Some(&n), &unconstrained).unwrap(),
            Value::Numeric(NumericValue::Finite("1.5".into()))
        );
        let ts = b(My::Date(2000, 3, 1, 0, 0, 1, 5));
        assert_eq!(
            to_source_value(Some(&ts), &PgType::TimestampTz(None)).unwrap(),
            Value::TimestampTz(TimestampValue::Micros(11_017 * 86_400_000_000 + 1_000_005))
        );
        assert!(to_source_value(Some(&b(My::Bytes(b"{".to_vec()))), &PgType::Json).is_err());
        assert!(to_source_value(Some(&b(My::Bytes(b"x".to_vec()))), &PgType::Interval).is_err());
        assert!(to_source_value(None, &PgType::Text).is_err());
    }

    #[test]
    fn json_arrays_map_back_to_arrays_of_exact_element_types() {
        let b = |s: &str| BinlogValue::Value(My::Bytes(s.as_bytes().to_vec()));
        let text_array = PgType::Array(Box::new(PgType::Text));
        assert_eq!(
            to_source_value(Some(&b(r#"["Trailers", "a\"b", null]"#)), &text_array).unwrap(),
            Value::Array(vec![Value::Text("Trailers".into()), Value::Text("a\"b".into()), Value::Null])
        );
        let ints = PgType::Array(Box::new(PgType::Int4));
        assert_eq!(
            to_source_value(Some(&b("[[1,2],[3,null]]")), &ints).unwrap(),
            Value::Array(vec![
                Value::Array(vec![Value::Int4(1), Value::Int4(2)]),
                Value::Array(vec![Value::Int4(3), Value::Null])
            ])
        );
        assert_eq!(to_source_value(Some(&b("[]")), &ints).unwrap(), Value::Array(vec![]));
        for bad in ["[1.5]", "[\"1\"]", "[3000000000]", "[[1],[2,3]]", "[[1],2]", "[[]]", "{}", "7"] {
            assert!(to_source_value(Some(&b(bad)), &ints).is_err(), "{bad}");
        }
        // Numbers as written, not as the double a JSON parser reads.
        let numerics = PgType::Array(Box::new(PgType::Numeric { precision: None, scale: None }));
        assert_eq!(
            to_source_value(Some(&b(r#"[["-1", 1.50], ["NaN", 12345678901234567890.123456789]]"#)), &numerics).err(),
            Some("array element \"-1\" is not a numeric".into()),
            "a string is no numeric (the scanner skips the digits in it)"
        );
        assert_eq!(
            to_source_value(Some(&b(r#"[["NaN", 1.50], ["-Infinity", 12345678901234567890.123456789]]"#)), &numerics)
                .unwrap(),
            Value::Array(vec![
                Value::Array(vec![
                    Value::Numeric(NumericValue::NaN),
                    Value::Numeric(NumericValue::Finite("1.50".into()))
                ]),
                Value::Array(vec![
                    Value::Numeric(NumericValue::NegInfinity),
                    Value::Numeric(NumericValue::Finite("12345678901234567890.123456789".into()))
                ])
            ])
        );
        assert_eq!(
            to_source_value(Some(&b(r#"[1.50, -0.001, "NaN"]"#)), &numerics).unwrap(),
            Value::Array(vec![
                Value::Numeric(NumericValue::Finite("1.50".into())),
                Value::Numeric(NumericValue::Finite("-0.001".into())),
                Value::Numeric(NumericValue::NaN)
            ])
        );
        let money = PgType::Array(Box::new(PgType::Numeric { precision: Some(5), scale: Some(2) }));
        assert!(to_source_value(Some(&b("[1.5, 999.99, 1.230]")), &money).is_ok());
        for bad in ["[1.555]", "[1000]", "[1e3]"] {
            assert!(to_source_value(Some(&b(bad)), &money).is_err(), "{bad}");
        }
        let reals = PgType::Array(Box::new(PgType::Float4));
        assert_eq!(
            to_source_value(Some(&b("[0.5, 0.10000000149011612]")), &reals).unwrap(),
            Value::Array(vec![Value::Float4(0.5), Value::Float4(0.1)])
        );
        assert!(to_source_value(Some(&b("[0.1]")), &reals).is_err(), "0.1 is no real: it would be rounded");
    }
}
