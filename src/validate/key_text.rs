//! Keys in a validation report as the source writes them: a line of the
//! report pasted after `WHERE` finds the row (`id=7`,
//! `paid_at='2023-06-15 12:00:22.5+00'`, `ref='\x00ff'::bytea`), and
//! keys listed in the order of their type (`9 < 10 < 100`, not as text).
//! Works from the canonical form (see `mapping::canonical`), which is what
//! the comparison holds.

use std::cmp::Ordering;

use crate::mapping::CanonicalValue;
use crate::model::PgType;

/// One key column: `name = literal`, the name quoted when it needs to be.
pub fn key_condition(name: &str, ty: &PgType, v: &CanonicalValue) -> String {
    match v.as_str() {
        None => format!("{} IS NULL", ident(name)),
        Some(s) => format!("{}={}", ident(name), literal(ty, s)),
    }
}

/// A whole key, as one pasteable condition.
pub fn key_text(cols: &[(String, PgType)], key: &[CanonicalValue]) -> String {
    cols.iter().zip(key).map(|((n, t), v)| key_condition(n, t, v)).collect::<Vec<_>>().join(" AND ")
}

fn ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A value as the source writes it (`NULL` for NULL), for changed columns.
pub fn value_text(ty: &PgType, v: &CanonicalValue) -> String {
    match v.as_str() {
        None => "NULL".into(),
        Some(s) => literal(ty, s),
    }
}

/// The SQL literal of a canonical value of type `ty`.
fn literal(ty: &PgType, s: &str) -> String {
    match ty {
        PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid => s.to_string(),
        PgType::Float4 | PgType::Float8 | PgType::Numeric { .. } => match s {
            "NaN" | "Infinity" | "-Infinity" => quote(s),
            _ => s.to_string(),
        },
        PgType::Bool => (if s == "1" { "true" } else { "false" }).to_string(),
        PgType::Bytea => format!("'\\x{s}'::bytea"),
        PgType::Date => match s.parse::<i64>().ok().and_then(date_text) {
            Some(d) => quote(&d),
            None => quote(s),
        },
        PgType::Time(_) => match s.parse::<i64>().ok().map(time_text) {
            Some(t) => quote(&t),
            None => quote(s),
        },
        PgType::TimeTz(_) => match s.parse::<i64>().ok().map(time_text) {
            Some(t) => quote(&format!("{t}+00")),
            None => quote(s),
        },
        PgType::Timestamp(_) => match s.parse::<i64>().ok().and_then(timestamp_text) {
            Some(t) => quote(&t),
            None => quote(s),
        },
        PgType::TimestampTz(_) => match s.parse::<i64>().ok().and_then(timestamp_text) {
            Some(t) => quote(&format!("{t}+00")),
            None => quote(s),
        },
        _ => quote(s),
    }
}

fn date_text(days: i64) -> Option<String> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let d = epoch.checked_add_signed(chrono::TimeDelta::try_days(days)?)?;
    Some(d.format("%Y-%m-%d").to_string())
}

fn time_text(micros: i64) -> String {
    let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let base = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    with_fraction(base, frac)
}

fn timestamp_text(micros: i64) -> Option<String> {
    let t = chrono::DateTime::from_timestamp_micros(micros)?.naive_utc();
    let base = t.format("%Y-%m-%d %H:%M:%S").to_string();
    Some(with_fraction(base, micros.rem_euclid(1_000_000)))
}

/// `.5`, `.000123`: PostgreSQL's own spelling, trailing zeros dropped.
fn with_fraction(base: String, frac: i64) -> String {
    if frac == 0 {
        base
    } else {
        format!("{base}.{}", format!("{frac:06}").trim_end_matches('0'))
    }
}

/// Orders two keys by their columns' types: numbers as numbers, instants in
/// time, NULL first, the rest (text, uuids, hex bytea) as text, which is
/// their own order.
pub fn compare_keys(types: &[PgType], a: &[CanonicalValue], b: &[CanonicalValue]) -> Ordering {
    for ((ty, x), y) in types.iter().zip(a).zip(b) {
        let o = compare_value(ty, x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn compare_value(ty: &PgType, a: &CanonicalValue, b: &CanonicalValue) -> Ordering {
    let (a, b) = match (a.as_str(), b.as_str()) {
        (None, None) => return Ordering::Equal,
        (None, _) => return Ordering::Less,
        (_, None) => return Ordering::Greater,
        (Some(a), Some(b)) => (a, b),
    };
    match ty {
        PgType::Int2
        | PgType::Int4
        | PgType::Int8
        | PgType::Oid
        | PgType::Date
        | PgType::Time(_)
        | PgType::TimeTz(_)
        | PgType::Timestamp(_)
        | PgType::TimestampTz(_) => instant(a).cmp(&instant(b)).then_with(|| a.cmp(b)),
        PgType::Float4 | PgType::Float8 | PgType::Numeric { .. } | PgType::Money => {
            number(a).partial_cmp(&number(b)).unwrap_or(Ordering::Equal).then_with(|| a.cmp(b))
        }
        _ => a.cmp(b),
    }
}

/// Integers and instants, the infinities at either end.
fn instant(s: &str) -> i128 {
    match s {
        "-infinity" => i128::MIN,
        "infinity" => i128::MAX,
        _ => s.parse().unwrap_or(0),
    }
}

fn number(s: &str) -> f64 {
    match s {
        "NaN" => f64::INFINITY, // PostgreSQL sorts NaN above every number
        "Infinity" => f64::MAX,
        "-Infinity" => f64::MIN,
        _ => s.parse().unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CanonicalValue {
        CanonicalValue(Some(s.into()))
    }

    #[test]
    fn keys_read_as_the_source_writes_them() {
        let ts = PgType::TimestampTz(None);
        assert_eq!(key_condition("payment_date", &ts, &c("1686830422000000")), "payment_date='2023-06-15 12:00:22+00'");
        assert_eq!(key_condition("t", &PgType::Timestamp(None), &c("1686830422500000")), "t='2023-06-15 12:00:22.5'");
        assert_eq!(key_condition("d", &PgType::Date, &c("19523")), "d='2023-06-15'");
        assert_eq!(key_condition("b", &PgType::Bytea, &c("00ff")), "b='\\x00ff'::bytea");
        assert_eq!(key_condition("n", &PgType::Numeric { precision: None, scale: None }, &c("-0.5")), "n=-0.5");
        assert_eq!(key_condition("Id", &PgType::Int8, &c("7")), "\"Id\"=7");
        assert_eq!(key_condition("s", &PgType::Text, &c("o'k")), "s='o''k'");
        assert_eq!(key_condition("s", &PgType::Text, &CanonicalValue(None)), "s IS NULL");
        assert_eq!(key_condition("at", &PgType::Time(None), &c("3723000001")), "at='01:02:03.000001'");
    }

    #[test]
    fn keys_order_by_their_type() {
        let mut ids = [vec![c("100")], vec![c("1000")], vec![c("9")], vec![c("1100")], vec![c("-3")]];
        ids.sort_by(|a, b| compare_keys(&[PgType::Int8], a, b));
        let got: Vec<&str> = ids.iter().map(|k| k[0].as_str().unwrap()).collect();
        assert_eq!(got, ["-3", "9", "100", "1000", "1100"]);
        let n = PgType::Numeric { precision: None, scale: None };
        assert_eq!(compare_keys(&[n], &[c("10.5")], &[c("9.75")]), Ordering::Greater);
        assert_eq!(compare_keys(&[PgType::Text], &[c("b")], &[c("a")]), Ordering::Greater);
    }
}
