//! PostgreSQL values in their text form (what pgoutput sends in `'t'` tuple
//! columns and what `col::text` prints) decoded into [`Value`].
//!
//! Assumes the output settings xdb's connections use: `DateStyle = ISO`,
//! `IntervalStyle = postgres` (`iso_8601` is accepted too), `bytea_output`
//! hex (the legacy escape form is accepted too) and `lc_monetary = C` for
//! `money` (`$1,234.56`, `-$1,234.56`; two fraction digits). Any UTC offset
//! is understood, so the session `TimeZone` does not matter: timestamptz
//! values are converted to UTC microseconds.

use crate::model::{DateValue, NumericValue, PgType, TimestampValue, Value};

/// A value could not be decoded: its type and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {type_name} value: {message}")]
pub struct ValueError {
    /// The PostgreSQL type name (`PgType::sql_name`).
    pub type_name: String,
    pub message: String,
}

impl ValueError {
    pub(crate) fn new(ty: &PgType, message: impl Into<String>) -> Self {
        ValueError { type_name: ty.sql_name(), message: message.into() }
    }
}

/// Microseconds per second/minute/hour/day.
use crate::model::time::{MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_MINUTE, MICROS_PER_SEC};

/// Longest text shown back in an error message.
const SHOWN: usize = 60;

fn shown(text: &str) -> String {
    if text.len() <= SHOWN {
        format!("{text:?}")
    } else {
        let mut end = SHOWN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}…", &text[..end])
    }
}

/// Decodes the text form of a value of type `ty`. SQL NULL is not a text
/// form: callers map it to [`Value::Null`] themselves (inside arrays the
/// unquoted `NULL` element is handled here).
pub fn decode_text(ty: &PgType, text: &str) -> Result<Value, ValueError> {
    let bad = |what: &str| ValueError::new(ty, format!("{what}: {}", shown(text)));
    Ok(match ty {
        PgType::Bool => match text {
            "t" | "true" | "on" | "yes" | "1" => Value::Bool(true),
            "f" | "false" | "off" | "no" | "0" => Value::Bool(false),
            _ => return Err(bad("not t or f")),
        },
        PgType::Int2 => Value::Int2(text.trim().parse().map_err(|_| bad("not a smallint"))?),
        PgType::Int4 => Value::Int4(text.trim().parse().map_err(|_| bad("not an integer"))?),
        PgType::Int8 => Value::Int8(text.trim().parse().map_err(|_| bad("not a bigint"))?),
        PgType::Oid => Value::Int8(text.trim().parse::<u32>().map_err(|_| bad("not an oid"))?.into()),
        PgType::Float4 => Value::Float4(match text {
            "NaN" => f32::NAN,
            "Infinity" => f32::INFINITY,
            "-Infinity" => f32::NEG_INFINITY,
            _ => text.parse().map_err(|_| bad("not a real"))?,
        }),
        PgType::Float8 => Value::Float8(match text {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => text.parse().map_err(|_| bad("not a double precision"))?,
        }),
        PgType::Numeric { .. } => Value::Numeric(match text {
            "NaN" => NumericValue::NaN,
            "Infinity" => NumericValue::PosInfinity,
            "-Infinity" => NumericValue::NegInfinity,
            _ if is_plain_decimal(text) => NumericValue::Finite(text.to_string()),
            _ => return Err(bad("not a plain decimal number")),
        }),
        PgType::Money => Value::Numeric(NumericValue::Finite(
            parse_money(text)
                .and_then(|d| crate::source::postgres::money::from_c_locale(&d))
                .ok_or_else(|| bad("not a money amount (expected lc_monetary=C form such as $1,234.56)"))?,
        )),
        PgType::Text
        | PgType::Varchar(_)
        | PgType::Char(_)
        | PgType::InternalChar
        | PgType::Name
        | PgType::Xml
        | PgType::TsVector
        | PgType::TsQuery
        | PgType::Inet
        | PgType::Cidr
        | PgType::Macaddr
        | PgType::Macaddr8
        | PgType::Bit(_)
        | PgType::VarBit(_)
        | PgType::Enum { .. } => Value::Text(text.to_string()),
        PgType::Bytea => Value::Bytes(parse_bytea(text).map_err(bad)?),
        PgType::Date => Value::Date(parse_date_value(text).map_err(|m| bad(&m))?),
        PgType::Time(_) => {
            let (micros, rest) = parse_time_of_day(text).map_err(|m| bad(&m))?;
            if !rest.is_empty() {
                return Err(bad("trailing text after the time"));
            }
            Value::Time(micros)
        }
        PgType::TimeTz(_) => {
            let (micros, rest) = parse_time_of_day(text).map_err(|m| bad(&m))?;
            let (offset_seconds, rest) = parse_utc_offset(rest).map_err(|m| bad(&m))?;
            if !rest.is_empty() {
                return Err(bad("trailing text after the time zone offset"));
            }
            Value::TimeTz { micros, offset_seconds }
        }
        PgType::Timestamp(_) => Value::Timestamp(parse_timestamp(text, false).map_err(|m| bad(&m))?),
        PgType::TimestampTz(_) => Value::TimestampTz(parse_timestamp(text, true).map_err(|m| bad(&m))?),
        PgType::Interval => {
            let (months, days, micros) = parse_interval(text).map_err(|m| bad(&m))?;
            Value::Interval { months, days, micros }
        }
        PgType::Uuid => Value::Uuid(uuid::Uuid::try_parse(text).map_err(|_| bad("not a UUID"))?),
        PgType::Json | PgType::Jsonb => {
            validate_json(text).map_err(|e| bad(&format!("not JSON ({e})")))?;
            Value::Json(text.to_string())
        }
        PgType::Array(elem) => parse_array(ty, elem, text)?,
        PgType::Other { name } => Value::Unknown { type_name: name.clone(), text: text.to_string() },
    })
}

/// Checks that `text` is one JSON document (xdb keeps the source's text).
/// Iterative, so any nesting depth PostgreSQL accepts is accepted (a
/// recursive parser such as serde_json stops at 128 levels), and string
/// escapes are checked for form only, as PostgreSQL's `json` type does.
pub(crate) fn validate_json(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut stack: Vec<u8> = Vec::new();
    let ws = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
            *i += 1;
        }
    };
    let at = |i: usize| {
        format!("unexpected {} at byte {i}", b.get(i).map_or("end".to_string(), |c| format!("{:?}", *c as char)))
    };
    'value: loop {
        ws(&mut i);
        match b.get(i) {
            Some(b'{') => {
                i += 1;
                ws(&mut i);
                if b.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    stack.push(b'{');
                    json_key(b, &mut i).map_err(|_| at(i))?;
                    ws(&mut i);
                    if b.get(i) != Some(&b':') {
                        return Err(at(i));
                    }
                    i += 1;
                    continue 'value;
                }
            }
            Some(b'[') => {
                i += 1;
                ws(&mut i);
                if b.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    stack.push(b'[');
                    continue 'value;
                }
            }
            Some(b'"') => json_string(b, &mut i).map_err(|_| at(i))?,
            Some(b't') if b[i..].starts_with(b"true") => i += 4,
            Some(b'f') if b[i..].starts_with(b"false") => i += 5,
            Some(b'n') if b[i..].starts_with(b"null") => i += 4,
            Some(b'-' | b'0'..=b'9') => json_number(b, &mut i).map_err(|_| at(i))?,
            _ => return Err(at(i)),
        }
        // After a value: close containers or move to the next element.
        loop {
            ws(&mut i);
            match (stack.last(), b.get(i)) {
                (None, None) => return Ok(()),
                (None, Some(_)) => return Err(at(i)),
                (Some(b'['), Some(b',')) => {
                    i += 1;
                    continue 'value;
                }
                (Some(b'{'), Some(b',')) => {
                    i += 1;
                    ws(&mut i);
                    json_key(b, &mut i).map_err(|_| at(i))?;
                    ws(&mut i);
                    if b.get(i) != Some(&b':') {
                        return Err(at(i));
                    }
                    i += 1;
                    continue 'value;
                }
                (Some(b'['), Some(b']')) | (Some(b'{'), Some(b'}')) => {
                    stack.pop();
                    i += 1;
                }
                _ => return Err(at(i)),
            }
        }
    }
}

fn json_key(b: &[u8], i: &mut usize) -> Result<(), ()> {
    if b.get(*i) != Some(&b'"') {
        return Err(());
    }
    json_string(b, i)
}

/// A string starting at the opening quote.
fn json_string(b: &[u8], i: &mut usize) -> Result<(), ()> {
    *i += 1;
    loop {
        match b.get(*i) {
            None => return Err(()),
            Some(b'"') => {
                *i += 1;
                return Ok(());
            }
            Some(b'\\') => match b.get(*i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => *i += 2,
                Some(b'u') if b.get(*i + 2..*i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => *i += 6,
                _ => return Err(()),
            },
            Some(c) if *c < 0x20 => return Err(()),
            Some(_) => *i += 1,
        }
    }
}

fn json_number(b: &[u8], i: &mut usize) -> Result<(), ()> {
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(*i) == Some(&b'-') {
        *i += 1;
    }
    match b.get(*i) {
        Some(b'0') => *i += 1,
        Some(b'1'..=b'9') => {
            digits(i);
        }
        _ => return Err(()),
    }
    if b.get(*i) == Some(&b'.') {
        *i += 1;
        if digits(i) == 0 {
            return Err(());
        }
    }
    if matches!(b.get(*i), Some(b'e' | b'E')) {
        *i += 1;
        if matches!(b.get(*i), Some(b'+' | b'-')) {
            *i += 1;
        }
        if digits(i) == 0 {
            return Err(());
        }
    }
    Ok(())
}

/// `-?digits(.digits)?`: the only form `numeric_out` prints for finite values.
fn is_plain_decimal(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// `$1,234.56`, `-$1,234.56` or `($1,234.56)` → `1234.56` / `-1234.56`.
/// The currency symbol and group separators are dropped whatever they are;
/// the decimal point must be `.` (lc_monetary=C or an English locale).
fn parse_money(text: &str) -> Option<String> {
    let t = text.trim();
    let (neg, t) = if let Some(inner) = t.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        (true, inner)
    } else if let Some(rest) = t.strip_prefix('-') {
        (true, rest)
    } else {
        (false, t)
    };
    let t = t.trim_start_matches(|c: char| !c.is_ascii_digit() && c != '-');
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) if !neg => (true, rest),
        Some(_) => return None,
        None => (neg, t),
    };
    let t = t.trim_end();
    let mut int = String::with_capacity(t.len());
    let mut frac = None;
    for (i, c) in t.char_indices() {
        match c {
            '0'..='9' => int.push(c),
            ',' => {}
            '.' => {
                frac = Some(&t[i + 1..]);
                break;
            }
            _ => return None,
        }
    }
    if int.is_empty() {
        return None;
    }
    let mut frac = frac.unwrap_or("").to_string();
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    while frac.len() < 2 {
        frac.push('0');
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let zero = int == "0" && frac.bytes().all(|b| b == b'0');
    Some(format!("{}{int}.{frac}", if neg && !zero { "-" } else { "" }))
}

/// bytea text: `\x0a1b…` (hex) or the legacy escape form (`\\`, `\ooo`,
/// other bytes as themselves).
fn parse_bytea(text: &str) -> Result<Vec<u8>, &'static str> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return Err("odd number of hex digits");
        }
        return digits
            .chunks_exact(2)
            .map(|p| Ok((hex_val(p[0]).ok_or("bad hex digit")? << 4) | hex_val(p[1]).ok_or("bad hex digit")?))
            .collect();
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b.get(i + 1..i + 4).ok_or("truncated backslash escape")?;
            if !oct.iter().all(|d| (b'0'..=b'7').contains(d)) || oct[0] > b'3' {
                return Err("bad backslash escape");
            }
            out.push(((oct[0] - b'0') << 6) | ((oct[1] - b'0') << 3) | (oct[2] - b'0'));
            i += 4;
        }
    }
    Ok(out)
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Days since 1970-01-01 of a proleptic Gregorian date with an astronomical
/// year (1 BC = year 0), after validating month and day.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> Result<i64, String> {
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} out of range"));
    }
    crate::model::time::days_from_civil(year, month, day).ok_or_else(|| format!("day {day} out of range"))
}

/// `N` leading ASCII digits as a number, and the rest.
fn take_digits(s: &str, min: usize, max: usize) -> Result<(i64, &str), String> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n < min || n > max {
        return Err(format!("expected {min} to {max} digits at {}", shown(s)));
    }
    let v = s[..n].parse::<i64>().map_err(|e| e.to_string())?;
    Ok((v, &s[n..]))
}

fn expect(s: &str, c: char) -> Result<&str, String> {
    s.strip_prefix(c).ok_or_else(|| format!("expected {c:?} at {}", shown(s)))
}

/// `YYYY-MM-DD` (year of 4 or more digits) → (year as written, month, day, rest).
fn parse_ymd(s: &str) -> Result<(i64, u32, u32, &str), String> {
    let (y, s) = take_digits(s, 4, 9)?;
    let (m, s) = take_digits(expect(s, '-')?, 2, 2)?;
    let (d, s) = take_digits(expect(s, '-')?, 2, 2)?;
    Ok((y, m as u32, d as u32, s))
}

/// Strips a trailing ` BC` and turns the written year into an astronomical one.
fn split_bc(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    }
}

fn astronomical(year: i64, bc: bool) -> Result<i64, String> {
    if bc {
        if year == 0 {
            return Err("year 0 BC does not exist".into());
        }
        Ok(1 - year)
    } else {
        Ok(year)
    }
}

fn parse_date_value(text: &str) -> Result<DateValue, String> {
    match text {
        "infinity" => return Ok(DateValue::PosInfinity),
        "-infinity" => return Ok(DateValue::NegInfinity),
        _ => {}
    }
    let (body, bc) = split_bc(text);
    let (y, m, d, rest) = parse_ymd(body)?;
    if !rest.is_empty() {
        return Err("trailing text after the date".into());
    }
    let days = days_from_civil(astronomical(y, bc)?, m, d)?;
    Ok(DateValue::Days(i32::try_from(days).map_err(|_| "date out of range".to_string())?))
}

/// `HH:MM:SS[.f{1,6}]` (hours up to 24) → microseconds and the rest.
fn parse_time_of_day(s: &str) -> Result<(i64, &str), String> {
    let (h, s) = take_digits(s, 2, 2)?;
    let (mi, s) = take_digits(expect(s, ':')?, 2, 2)?;
    let (sec, s) = take_digits(expect(s, ':')?, 2, 2)?;
    let (frac, s) = parse_fraction(s)?;
    if h > 24 || mi > 59 || sec > 60 {
        return Err("time field out of range".into());
    }
    let micros = h * MICROS_PER_HOUR + mi * MICROS_PER_MINUTE + sec * MICROS_PER_SEC + frac;
    if micros > MICROS_PER_DAY {
        return Err("time out of range".into());
    }
    Ok((micros, s))
}

/// An optional `.ddd` (1 to 6 digits) → microseconds, and the rest.
fn parse_fraction(s: &str) -> Result<(i64, &str), String> {
    let Some(after) = s.strip_prefix('.') else { return Ok((0, s)) };
    let n = after.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || n > 6 {
        return Err(format!("expected 1 to 6 fraction digits at {}", shown(s)));
    }
    let mut v: i64 = after[..n].parse().map_err(|_| "bad fraction".to_string())?;
    for _ in n..6 {
        v *= 10;
    }
    Ok((v, &after[n..]))
}

/// `+HH`, `+HH:MM` or `+HH:MM:SS` (or `-`) → seconds east of UTC, and the rest.
fn parse_utc_offset(s: &str) -> Result<(i32, &str), String> {
    let (sign, s) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(format!("expected a UTC offset at {}", shown(s))),
    };
    let (h, mut s) = take_digits(s, 2, 2)?;
    let mut secs = h * 3600;
    for unit in [60, 1] {
        match s.strip_prefix(':') {
            Some(rest) => {
                let (v, rest) = take_digits(rest, 2, 2)?;
                if v > 59 {
                    return Err("UTC offset field out of range".into());
                }
                secs += v * unit;
                s = rest;
            }
            None => break,
        }
    }
    Ok(((sign * secs) as i32, s))
}

/// `YYYY-MM-DD HH:MM:SS[.f][±zone][ BC]` → microseconds since 1970 (UTC
/// when `with_zone`).
fn parse_timestamp(text: &str, with_zone: bool) -> Result<TimestampValue, String> {
    match text {
        "infinity" => return Ok(TimestampValue::PosInfinity),
        "-infinity" => return Ok(TimestampValue::NegInfinity),
        _ => {}
    }
    let (body, bc) = split_bc(text);
    let (y, m, d, rest) = parse_ymd(body)?;
    let rest = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('T')).ok_or("expected a time after the date")?;
    let (tod, rest) = parse_time_of_day(rest)?;
    let (offset, rest) = if with_zone { parse_utc_offset(rest)? } else { (0, rest) };
    if !rest.is_empty() {
        return Err("trailing text after the timestamp".into());
    }
    let days = days_from_civil(astronomical(y, bc)?, m, d)?;
    days.checked_mul(MICROS_PER_DAY)
        .and_then(|v| v.checked_add(tod))
        .and_then(|v| v.checked_sub(offset as i64 * MICROS_PER_SEC))
        .filter(|v| *v != i64::MIN && *v != i64::MAX)
        .map(TimestampValue::Micros)
        .ok_or_else(|| "timestamp out of range (xdb keeps microseconds since 1970 in 64 bits)".into())
}

/// An interval as (months, days, microseconds) from IntervalStyle
/// `postgres` (`1 year 2 mons -3 days +04:05:06.7`) or `iso_8601`
/// (`P1Y2M-3DT4H5M6.7S`).
fn parse_interval(text: &str) -> Result<(i32, i32, i64), String> {
    let t = text.trim();
    if let Some(iso) = t.strip_prefix('P') {
        return parse_interval_iso(iso);
    }
    let t = t.strip_prefix('@').unwrap_or(t);
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    let mut words = t.split_whitespace().peekable();
    let mut any = false;
    let overflow = || "interval out of range".to_string();
    while let Some(word) = words.next() {
        any = true;
        if word.contains(':') {
            let (neg, hms) = match word.as_bytes().first() {
                Some(b'-') => (true, &word[1..]),
                Some(b'+') => (false, &word[1..]),
                _ => (false, word),
            };
            let (h, s) = take_digits(hms, 1, 18)?;
            let (mi, s) = take_digits(expect(s, ':')?, 2, 2)?;
            let (sec, s) = take_digits(expect(s, ':')?, 2, 2)?;
            let (frac, s) = parse_fraction(s)?;
            if !s.is_empty() || mi > 59 || sec > 59 {
                return Err(format!("bad time part {}", shown(word)));
            }
            let v = h
                .checked_mul(MICROS_PER_HOUR)
                .and_then(|v| v.checked_add(mi * MICROS_PER_MINUTE + sec * MICROS_PER_SEC + frac))
                .ok_or_else(overflow)?;
            micros = micros.checked_add(if neg { -v } else { v }).ok_or_else(overflow)?;
            continue;
        }
        let n: i64 = word.parse().map_err(|_| format!("expected a number at {}", shown(word)))?;
        let unit = words.next().ok_or_else(|| format!("missing unit after {}", shown(word)))?;
        let mult = match unit.trim_end_matches('s') {
            "year" => (12, 0, 0),
            "mon" | "month" => (1, 0, 0),
            "day" => (0, 1, 0),
            "hour" => (0, 0, MICROS_PER_HOUR),
            "min" | "minute" => (0, 0, MICROS_PER_MINUTE),
            "sec" | "second" => (0, 0, MICROS_PER_SEC),
            _ => return Err(format!("unknown interval unit {}", shown(unit))),
        };
        months = n.checked_mul(mult.0).and_then(|v| v.checked_add(months)).ok_or_else(overflow)?;
        days = n.checked_mul(mult.1).and_then(|v| v.checked_add(days)).ok_or_else(overflow)?;
        micros = n.checked_mul(mult.2).and_then(|v| v.checked_add(micros)).ok_or_else(overflow)?;
    }
    if !any {
        return Err("empty interval".into());
    }
    Ok((i32::try_from(months).map_err(|_| overflow())?, i32::try_from(days).map_err(|_| overflow())?, micros))
}

/// The part after `P` of an ISO 8601 interval: `nY nM nW nD` then `T nH nM n.fS`,
/// each number with its own sign.
fn parse_interval_iso(s: &str) -> Result<(i32, i32, i64), String> {
    let overflow = || "interval out of range".to_string();
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    let mut in_time = false;
    let mut rest = s;
    let mut any = false;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('T') {
            if in_time {
                return Err("second T in ISO 8601 interval".into());
            }
            in_time = true;
            rest = r;
            continue;
        }
        let (neg, r) = match rest.as_bytes().first() {
            Some(b'-') => (true, &rest[1..]),
            Some(b'+') => (false, &rest[1..]),
            _ => (false, rest),
        };
        let (n, r) = take_digits(r, 1, 18)?;
        let (frac, r) = parse_fraction(r)?;
        let designator = r.chars().next().ok_or("missing designator in ISO 8601 interval")?;
        rest = &r[designator.len_utf8()..];
        any = true;
        if frac != 0 && !(in_time && designator == 'S') {
            return Err("fractions are only supported on seconds".into());
        }
        let sign = if neg { -1 } else { 1 };
        let (target, mult) = match (in_time, designator) {
            (false, 'Y') => (&mut months, 12),
            (false, 'M') => (&mut months, 1),
            (false, 'W') => (&mut days, 7),
            (false, 'D') => (&mut days, 1),
            (true, 'H') => (&mut micros, MICROS_PER_HOUR),
            (true, 'M') => (&mut micros, MICROS_PER_MINUTE),
            (true, 'S') => (&mut micros, MICROS_PER_SEC),
            _ => return Err(format!("unexpected designator {designator:?} in ISO 8601 interval")),
        };
        let v = n.checked_mul(mult).and_then(|v| v.checked_add(frac)).ok_or_else(overflow)?;
        *target = target.checked_add(sign * v).ok_or_else(overflow)?;
    }
    if !any {
        return Err("empty ISO 8601 interval".into());
    }
    Ok((i32::try_from(months).map_err(|_| overflow())?, i32::try_from(days).map_err(|_| overflow())?, micros))
}

/// Deepest array nesting PostgreSQL allows (MAXDIM).
pub(crate) const MAX_ARRAY_DIMS: usize = 6;

/// Array text: optional bounds decoration `[0:1][1:2]=`, then `{…}` with
/// nested braces per dimension; elements quoted (`"a,b"`, backslash escapes)
/// or bare (`NULL` unquoted is SQL NULL).
fn parse_array(ty: &PgType, elem: &PgType, text: &str) -> Result<Value, ValueError> {
    let bad = |what: &str| ValueError::new(ty, format!("{what}: {}", shown(text)));
    let mut s = text.trim_start();
    if s.starts_with('[') {
        let (decoration, rest) = s.split_once('=').ok_or_else(|| bad("array bounds without '='"))?;
        if !decoration.bytes().all(|b| b"[]:-+0123456789 ".contains(&b)) {
            return Err(bad("bad array bounds"));
        }
        s = rest.trim_start();
    }
    let mut p = ArrayParser { s: s.as_bytes(), pos: 0, elem };
    if p.peek() != Some(b'{') {
        return Err(bad("array does not start with '{'"));
    }
    let v = p.level(1).map_err(|e| match e {
        ArrayErr::Syntax(m) => bad(m),
        ArrayErr::Elem(e) => ValueError::new(ty, format!("element: {e}")),
    })?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(bad("trailing text after the array"));
    }
    Ok(v)
}

enum ArrayErr {
    Syntax(&'static str),
    Elem(ValueError),
}

struct ArrayParser<'a> {
    s: &'a [u8],
    pos: usize,
    elem: &'a PgType,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// Parses `{…}` at the cursor (which is on the `{`).
    fn level(&mut self, depth: usize) -> Result<Value, ArrayErr> {
        if depth > MAX_ARRAY_DIMS {
            return Err(ArrayErr::Syntax("more than 6 array dimensions"));
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            let item = match self.peek() {
                Some(b'{') => self.level(depth + 1)?,
                Some(b'"') => {
                    let text = self.quoted()?;
                    decode_text(self.elem, &text).map_err(ArrayErr::Elem)?
                }
                Some(_) => {
                    let (text, escaped) = self.bare()?;
                    if !escaped && text.eq_ignore_ascii_case("NULL") {
                        Value::Null
                    } else {
                        decode_text(self.elem, &text).map_err(ArrayErr::Elem)?
                    }
                }
                None => return Err(ArrayErr::Syntax("unterminated array")),
            };
            items.push(item);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(ArrayErr::Syntax("expected ',' or '}' in array")),
            }
        }
    }

    /// A double-quoted element; the cursor is on the opening quote.
    fn quoted(&mut self) -> Result<String, ArrayErr> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ArrayErr::Syntax("unterminated quoted array element")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let c = self.s.get(self.pos + 1).copied().ok_or(ArrayErr::Syntax("dangling backslash"))?;
                    out.push(c);
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| ArrayErr::Syntax("array element splits a UTF-8 character"))
    }

    /// An unquoted element up to `,` or `}`, trailing white space dropped;
    /// also says whether it contained a backslash escape.
    fn bare(&mut self) -> Result<(String, bool), ArrayErr> {
        let mut out = Vec::new();
        let mut escaped = false;
        let mut kept = 0; // length up to the last escaped or non-space byte
        loop {
            match self.peek() {
                None => return Err(ArrayErr::Syntax("unterminated array")),
                Some(b',' | b'}') => break,
                Some(b'{' | b'"') => return Err(ArrayErr::Syntax("unexpected '{' or '\"' in array element")),
                Some(b'\\') => {
                    let c = self.s.get(self.pos + 1).copied().ok_or(ArrayErr::Syntax("dangling backslash"))?;
                    out.push(c);
                    escaped = true;
                    kept = out.len();
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    if !c.is_ascii_whitespace() {
                        kept = out.len();
                    }
                    self.pos += 1;
                }
            }
        }
        out.truncate(kept);
        let s = String::from_utf8(out).map_err(|_| ArrayErr::Syntax("array element splits a UTF-8 character"))?;
        Ok((s, escaped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(ty: PgType, s: &str) -> Value {
        decode_text(&ty, s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ts(s: &str) -> TimestampValue {
        match d(PgType::TimestampTz(None), s) {
            Value::TimestampTz(t) => t,
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(d(PgType::Bool, "t"), Value::Bool(true));
        assert_eq!(d(PgType::Int8, "-9223372036854775808"), Value::Int8(i64::MIN));
        assert_eq!(d(PgType::Oid, "4294967295"), Value::Int8(4294967295));
        assert_eq!(format!("{:?}", d(PgType::Float8, "-0")), "Float8(-0.0)");
        assert_eq!(d(PgType::Float4, "-Infinity"), Value::Float4(f32::NEG_INFINITY));
        let num = PgType::Numeric { precision: None, scale: None };
        assert_eq!(d(num.clone(), "-12.500"), Value::Numeric(NumericValue::Finite("-12.500".into())));
        assert_eq!(d(num.clone(), "NaN"), Value::Numeric(NumericValue::NaN));
        assert!(decode_text(&num, "1e5").is_err());
        assert!(decode_text(&num, "1.").is_err());
        assert_eq!(d(PgType::Money, "-$1,234.56"), Value::Numeric(NumericValue::Finite("-1234.56".into())));
        assert_eq!(d(PgType::Money, "$0.00"), Value::Numeric(NumericValue::Finite("0.00".into())));
        assert_eq!(d(PgType::Bytea, "\\x00ff"), Value::Bytes(vec![0, 255]));
        assert_eq!(d(PgType::Bytea, "a\\\\\\001"), Value::Bytes(vec![b'a', b'\\', 1]));
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(d(PgType::Date, "1970-01-02"), Value::Date(DateValue::Days(1)));
        assert_eq!(d(PgType::Date, "2000-01-01"), Value::Date(DateValue::Days(10957)));
        assert_eq!(d(PgType::Date, "0001-12-31 BC"), d(PgType::Date, "0001-01-01").map_days(-1));
        assert_eq!(d(PgType::Date, "-infinity"), Value::Date(DateValue::NegInfinity));
        assert!(decode_text(&PgType::Date, "2021-02-29").is_err());
        assert_eq!(d(PgType::Time(None), "24:00:00"), Value::Time(MICROS_PER_DAY));
        assert_eq!(
            d(PgType::TimeTz(None), "04:05:06.5-03:30:15"),
            Value::TimeTz { micros: 4 * MICROS_PER_HOUR + 5 * MICROS_PER_MINUTE + 6_500_000, offset_seconds: -12615 }
        );
        assert_eq!(ts("1970-01-01 05:30:00+05:30"), TimestampValue::Micros(0));
        assert_eq!(ts("1970-01-01 00:00:00.000001+00"), TimestampValue::Micros(1));
        assert_eq!(ts("infinity"), TimestampValue::PosInfinity);
        assert!(decode_text(&PgType::Timestamp(None), "294277-01-01 00:00:00").is_err());
        assert!(decode_text(&PgType::Timestamp(None), "2000-01-01 00:00:00.1234567").is_err());
    }

    impl Value {
        fn map_days(self, delta: i32) -> Value {
            match self {
                Value::Date(DateValue::Days(n)) => Value::Date(DateValue::Days(n + delta)),
                v => v,
            }
        }
    }

    #[test]
    fn intervals_both_styles() {
        let iv = |s: &str| d(PgType::Interval, s);
        let want =
            Value::Interval { months: 14, days: -3, micros: 4 * MICROS_PER_HOUR + 5 * MICROS_PER_MINUTE + 6_700_000 };
        assert_eq!(iv("1 year 2 mons -3 days +04:05:06.7"), want);
        assert_eq!(iv("P1Y2M-3DT4H5M6.7S"), want);
        assert_eq!(iv("-00:00:01"), Value::Interval { months: 0, days: 0, micros: -1_000_000 });
        assert_eq!(iv("PT-1S"), Value::Interval { months: 0, days: 0, micros: -1_000_000 });
        assert_eq!(iv("PT-0.5S"), Value::Interval { months: 0, days: 0, micros: -500_000 });
        assert_eq!(iv("00:00:00"), iv("PT0S"));
        assert_eq!(iv("-1 years -2 mons"), Value::Interval { months: -14, days: 0, micros: 0 });
    }

    #[test]
    fn arrays() {
        let a = |e: PgType, s: &str| d(PgType::Array(Box::new(e)), s);
        let t = |s: &str| Value::Text(s.into());
        assert_eq!(
            a(PgType::Text, r#"{"a,b","q\"x",NULL,"NULL",c\\d, sp ,""}"#),
            Value::Array(vec![t("a,b"), t("q\"x"), Value::Null, t("NULL"), t("c\\d"), t("sp"), t("")])
        );
        assert_eq!(
            a(PgType::Int4, "[0:1][1:1]={{1},{2}}"),
            Value::Array(vec![Value::Array(vec![Value::Int4(1)]), Value::Array(vec![Value::Int4(2)])])
        );
        assert_eq!(a(PgType::Int4, "{}"), Value::Array(vec![]));
        assert!(decode_text(&PgType::Array(Box::new(PgType::Int4)), "{1,2").is_err());
        assert!(decode_text(&PgType::Array(Box::new(PgType::Int4)), "{{{{{{{1}}}}}}}").is_err());
    }

    #[test]
    fn json_validation() {
        for ok in ["{}", "[]", " {\"a\": [1, -2.5e+3, true, false, null, \"x\\u00e9\\ud800\"]} ", "0", "\"\""] {
            assert!(validate_json(ok).is_ok(), "{ok}");
        }
        for bad in ["", "{", "[1,]", "{\"a\"}", "01", "1.", "tru", "[1] 2", "\"\\x\"", "{\"a\":1,}", "\"\n\""] {
            assert!(validate_json(bad).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(validate_json(&deep).is_ok());
    }

    fn all_types() -> Vec<PgType> {
        let scalars = vec![
            PgType::Bool,
            PgType::Int2,
            PgType::Int8,
            PgType::Oid,
            PgType::Float4,
            PgType::Numeric { precision: None, scale: None },
            PgType::Money,
            PgType::Text,
            PgType::Bytea,
            PgType::Date,
            PgType::Time(None),
            PgType::TimeTz(None),
            PgType::Timestamp(None),
            PgType::TimestampTz(None),
            PgType::Interval,
            PgType::Uuid,
            PgType::Jsonb,
            PgType::Other { name: "x".into() },
        ];
        let arrays: Vec<PgType> = scalars.iter().map(|t| PgType::Array(Box::new(t.clone()))).collect();
        scalars.into_iter().chain(arrays).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn never_panics(s in ".{0,40}", shaped in "[-+PTYMDHS0-9:. {}\",\\\\NUL\\[\\]=BCx]{0,40}") {
            for ty in all_types() {
                let _ = decode_text(&ty, &s);
                let _ = decode_text(&ty, &shaped);
            }
        }

        #[test]
        fn timestamps_round_trip(micros in -210_000_000_000_000_000i64..9_000_000_000_000_000_000i64) {
            // chrono cannot print every year PostgreSQL can; stay in its range.
            let Some(dt) = chrono::DateTime::from_timestamp_micros(micros) else { return Ok(()) };
            let naive = dt.naive_utc();
            use chrono::Datelike;
            let year = naive.year();
            if year <= 0 || year > 9999 { return Ok(()) }
            let text = naive.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
            prop_assert_eq!(ts(&text), TimestampValue::Micros(micros));
        }
    }
}
