//! Text forms of values, written straight into a byte buffer (no
//! allocation per value: the bulk-load encoders call these per cell), and
//! the parsers that read them back. Calendar arithmetic is
//! [`crate::model::time`]'s.

pub use crate::model::time::{civil_from_days, days_from_civil, MICROS_PER_DAY, MICROS_PER_SEC};

/// Appends an integer in decimal.
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// Appends an unsigned integer in decimal.
pub fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `v` zero-padded to `width` digits.
fn write_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut v = v;
    while v > 0 && i > 0 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let start = i.min(buf.len() - width.min(20));
    out.extend_from_slice(&buf[start..]);
}

/// How a date is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateStyle {
    /// ISO-8601: 4-digit year, `-0044`/`+10000` outside 0..=9999 (astronomical years).
    Iso,
    /// PostgreSQL input/output: years before 1 AD as `0044-03-15 BC`.
    Pg,
}

/// Appends a date of `days` since 1970-01-01.
pub fn write_date(out: &mut Vec<u8>, days: i64, style: DateStyle) {
    if write_date_body(out, days, style) {
        out.extend_from_slice(b" BC");
    }
}

/// Writes the date without PostgreSQL's ` BC`; returns whether it needs one.
fn write_date_body(out: &mut Vec<u8>, days: i64, style: DateStyle) -> bool {
    let (y, m, d) = civil_from_days(days);
    let bc = style == DateStyle::Pg && y <= 0;
    let year = if bc { 1 - y } else { y };
    if year < 0 {
        out.push(b'-');
    } else if year > 9999 && style == DateStyle::Iso {
        out.push(b'+');
    }
    write_padded(out, year.unsigned_abs(), 4);
    out.push(b'-');
    write_padded(out, m as u64, 2);
    out.push(b'-');
    write_padded(out, d as u64, 2);
    bc
}

/// Appends `HH:MM:SS.ffffff` of microseconds since midnight (24:00:00 allowed).
pub fn write_time(out: &mut Vec<u8>, micros: i64) {
    let micros = micros.max(0) as u64;
    let secs = micros / 1_000_000;
    write_padded(out, secs / 3600, 2);
    out.push(b':');
    write_padded(out, secs / 60 % 60, 2);
    out.push(b':');
    write_padded(out, secs % 60, 2);
    out.push(b'.');
    write_padded(out, micros % 1_000_000, 6);
}

/// Appends `<date><sep><time>` of microseconds since 1970-01-01 00:00:00;
/// a BC date puts its ` BC` after the time, as PostgreSQL does.
pub fn write_timestamp(out: &mut Vec<u8>, micros: i64, sep: u8, style: DateStyle) {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let tod = micros.rem_euclid(MICROS_PER_DAY);
    let bc = write_date_body(out, days, style);
    out.push(sep);
    write_time(out, tod);
    if bc {
        out.extend_from_slice(b" BC");
    }
}

/// Appends an interval as ISO-8601 with designators, each field signed as
/// PostgreSQL's `iso_8601` IntervalStyle writes it: `P1Y2M3DT4H5M6.5S`,
/// `P-1Y-2M`, `PT0S`.
pub fn write_interval(out: &mut Vec<u8>, months: i32, days: i32, micros: i64) {
    out.push(b'P');
    let (y, mo) = (months / 12, months % 12);
    if y != 0 {
        write_i64(out, y as i64);
        out.push(b'Y');
    }
    if mo != 0 {
        write_i64(out, mo as i64);
        out.push(b'M');
    }
    if days != 0 {
        write_i64(out, days as i64);
        out.push(b'D');
    }
    if micros != 0 || (months == 0 && days == 0) {
        out.push(b'T');
        let neg = micros < 0;
        let a = micros.unsigned_abs();
        let (h, m, s, f) = (a / 3_600_000_000, a / 60_000_000 % 60, a / 1_000_000 % 60, a % 1_000_000);
        let sign = |out: &mut Vec<u8>| {
            if neg {
                out.push(b'-')
            }
        };
        if h != 0 {
            sign(out);
            write_u64(out, h);
            out.push(b'H');
        }
        if m != 0 {
            sign(out);
            write_u64(out, m);
            out.push(b'M');
        }
        if s != 0 || f != 0 || a == 0 {
            sign(out);
            write_u64(out, s);
            if f != 0 {
                out.push(b'.');
                let mut frac = Vec::with_capacity(6);
                write_padded(&mut frac, f, 6);
                while frac.last() == Some(&b'0') {
                    frac.pop();
                }
                out.extend_from_slice(&frac);
            }
            out.push(b'S');
        }
    }
}

/// Reads [`write_interval`]'s form (and PostgreSQL's `iso_8601` output),
/// or PostgreSQL's default `postgres` style (`1 year 2 mons -3 days
/// -04:05:06.5`), back into (months, days, micros).
pub fn parse_interval(s: &str) -> Option<(i32, i32, i64)> {
    let s = s.trim();
    let Some(rest) = s.strip_prefix('P') else {
        return parse_interval_postgres(s);
    };
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    let fields = |part: &str| -> Option<Vec<(String, char)>> {
        let mut v = Vec::new();
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' {
                num.push(c);
            } else {
                if num.is_empty() {
                    return None;
                }
                v.push((std::mem::take(&mut num), c));
            }
        }
        num.is_empty().then_some(v)
    };
    for (n, unit) in fields(date)? {
        let n = i64::from(n.parse::<i32>().ok()?);
        match unit {
            'Y' => months = months.checked_add(n * 12)?,
            'M' => months = months.checked_add(n)?,
            'W' => days = days.checked_add(n * 7)?,
            'D' => days = days.checked_add(n)?,
            _ => return None,
        }
    }
    if let Some(t) = time {
        for (n, unit) in fields(t)? {
            match unit {
                'H' => micros = micros.checked_add(i64::from(n.parse::<i32>().ok()?) * 3_600_000_000)?,
                'M' => micros = micros.checked_add(i64::from(n.parse::<i32>().ok()?) * 60_000_000)?,
                'S' => micros = micros.checked_add(parse_seconds_micros(&n)?)?,
                _ => return None,
            }
        }
    }
    Some((i32::try_from(months).ok()?, i32::try_from(days).ok()?, micros))
}

fn parse_interval_postgres(s: &str) -> Option<(i32, i32, i64)> {
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    let mut tokens = s.split_whitespace().peekable();
    while let Some(tok) = tokens.next() {
        if tok.contains(':') {
            let (neg, t) = match tok.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, tok.strip_prefix('+').unwrap_or(tok)),
            };
            let mut parts = t.splitn(3, ':');
            let h = i64::from(parts.next()?.parse::<i32>().ok()?);
            let m = i64::from(parts.next()?.parse::<i32>().ok()?);
            let sec = match parts.next() {
                Some(x) => parse_seconds_micros(x)?,
                None => 0,
            };
            let v = h * 3_600_000_000 + m * 60_000_000 + sec;
            micros = micros.checked_add(if neg { -v } else { v })?;
            continue;
        }
        let unit = tokens.next()?;
        let unit = unit.trim_end_matches('s');
        match unit {
            "year" => months = months.checked_add(i64::from(tok.parse::<i32>().ok()?) * 12)?,
            "mon" => months = months.checked_add(i64::from(tok.parse::<i32>().ok()?))?,
            "day" => days = days.checked_add(i64::from(tok.parse::<i32>().ok()?))?,
            _ => return None,
        }
    }
    Some((i32::try_from(months).ok()?, i32::try_from(days).ok()?, micros))
}

/// `-6.5` → -6_500_000 (exact, up to 6 fraction digits; more are an error).
fn parse_seconds_micros(n: &str) -> Option<i64> {
    let (neg, n) = match n.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, n.strip_prefix('+').unwrap_or(n)),
    };
    let (i, f) = n.split_once('.').unwrap_or((n, ""));
    if f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: i64 = if f.is_empty() { 0 } else { format!("{f:0<6}").parse().ok()? };
    let v = i64::from(i.parse::<i32>().ok()?) * 1_000_000 + frac;
    Some(if neg { -v } else { v })
}

/// Appends lower-case hex.
pub fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

/// Decodes hex (either case); `None` on odd length or a non-hex digit.
pub fn parse_hex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let d = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    s.chunks(2).map(|p| Some(d(p[0])? << 4 | d(p[1])?)).collect()
}

/// Appends a lower-case hyphenated UUID.
pub fn write_uuid(out: &mut Vec<u8>, u: &uuid::Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(u.hyphenated().encode_lower(&mut buf).as_bytes());
}

/// Appends the shortest text that reads back as the same double
/// (`0.1`, `1e300`); NaN and infinities as PostgreSQL spells them.
pub fn write_f64(out: &mut Vec<u8>, f: f64) {
    use std::io::Write as _;
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        let _ = write!(out, "{f:?}");
    }
}

/// Appends `s` escaped for MySQL `LOAD DATA` (fields by tab, lines by
/// newline, escape `\`): `\\`, `\t`, `\n`, `\r` and NUL as `\0`.
pub fn escape_load_data(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc = match b {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            0 => b'0',
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.push(b'\\');
        out.push(esc);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// Appends `s` escaped for PostgreSQL `COPY … FROM STDIN` text format.
pub fn escape_copy(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc = match b {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.push(b'\\');
        out.push(esc);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// Reads a date: `YYYY-MM-DD`, signed ISO years, PostgreSQL's ` BC`.
/// Returns days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let (s, bc) = match s.strip_suffix(" BC") {
        Some(r) => (r, true),
        None => (s, false),
    };
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let mut it = body.splitn(3, '-');
    let y = i64::from(it.next()?.parse::<i32>().ok()?);
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    let y = if neg { -y } else { y };
    let y = if bc { 1 - y } else { y };
    days_from_civil(y, m, d)
}

/// Reads `HH:MM[:SS[.ffffff]]` into microseconds since midnight.
pub fn parse_time(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, ':');
    let h = i64::from(it.next()?.parse::<i32>().ok()?);
    let m = i64::from(it.next()?.parse::<i32>().ok()?);
    let sec = match it.next() {
        Some(x) => parse_seconds_micros(x)?,
        None => 0,
    };
    Some(h * 3_600_000_000 + m * 60_000_000 + sec)
}

/// Reads a UTC offset `Z`, `+HH`, `+HH:MM`, `-HHMM`, `+HH:MM:SS` into seconds east.
pub fn parse_offset(s: &str) -> Option<i32> {
    if s == "Z" {
        return Some(0);
    }
    let (neg, r) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => return None,
    };
    let parts: Vec<&str> = if r.contains(':') {
        r.split(':').collect()
    } else if r.len() == 4 {
        vec![&r[..2], &r[2..]]
    } else {
        vec![r]
    };
    let mut secs = 0i32;
    for (i, p) in parts.iter().enumerate() {
        let v: i32 = p.parse().ok()?;
        secs += v * [3600, 60, 1].get(i)?;
    }
    Some(if neg { -secs } else { secs })
}

/// Splits a time-with-offset text `HH:MM:SS.ffffff+02` into (time, offset).
pub fn split_offset(s: &str) -> (&str, Option<&str>) {
    let s = s.trim();
    if let Some(r) = s.strip_suffix('Z') {
        return (r, Some("Z"));
    }
    match s.rfind(['+', '-']) {
        Some(i) if i > 0 => (&s[..i], Some(&s[i..])),
        _ => (s, None),
    }
}

/// Reads a timestamp `YYYY-MM-DD[ T]HH:MM:SS[.f][offset][ BC]` into
/// microseconds since 1970-01-01 (UTC when an offset is given).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (s, bc) = match s.strip_suffix(" BC") {
        Some(r) => (r, true),
        None => (s, false),
    };
    // The date ends at the first ' ' or 'T' after the year's digits.
    let start = usize::from(s.starts_with(['-', '+']));
    let split = s[start..].find([' ', 'T'])? + start;
    let (date, time) = (&s[..split], &s[split + 1..]);
    let days = parse_date(&if bc { format!("{date} BC") } else { date.to_string() })?;
    let (t, off) = split_offset(time);
    let tod = parse_time(t)?;
    let off = match off {
        Some(o) => parse_offset(o)? as i64,
        None => 0,
    };
    days.checked_mul(MICROS_PER_DAY)?.checked_add(tod)?.checked_sub(off * MICROS_PER_SEC)
}

/// An `inet` (or, with `cidr`, a `cidr`) value in PostgreSQL's output
/// form: the address as PostgreSQL prints it, `/prefix` unless an `inet`
/// covers one host. `None` when PostgreSQL would read it otherwise or not
/// at all: no address, a prefix beyond the address, a `cidr` without its
/// prefix (PostgreSQL would guess a classful one) or with bits set past it.
pub fn canonical_inet(s: &str, cidr: bool) -> Option<String> {
    let s = s.trim();
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (a, Some(p.parse::<u8>().ok()?)),
        Some(_) => return None,
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) if p > max => return None,
        Some(p) => p,
        None if cidr => return None,
        None => max,
    };
    if cidr {
        let host_bits = match ip {
            std::net::IpAddr::V4(a) => u32::from(a).checked_shl(u32::from(prefix)).unwrap_or(0) as u128,
            std::net::IpAddr::V6(a) => u128::from(a).checked_shl(u32::from(prefix)).unwrap_or(0),
        };
        if host_bits != 0 {
            return None;
        }
    }
    Some(if prefix == max && !cidr { ip.to_string() } else { format!("{ip}/{prefix}") })
}

/// A `macaddr` (6 bytes) or `macaddr8` (8; a 6-byte address gets FF:FE in
/// its middle, as PostgreSQL does) in PostgreSQL's output form: lowercase
/// hex pairs joined by `:`. Accepts the separators PostgreSQL reads (`:`,
/// `-`, `.`, none). `None` when it is not such an address.
pub fn canonical_mac(s: &str, eight: bool) -> Option<String> {
    let digits: Vec<u8> = s.trim().bytes().filter(|b| !matches!(b, b':' | b'-' | b'.')).collect();
    let mut bytes = parse_hex(&digits)?;
    match (bytes.len(), eight) {
        (6, false) | (8, true) => {}
        (6, true) => bytes.splice(3..3, [0xff, 0xfe]).for_each(drop),
        _ => return None,
    }
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn addresses_read_as_postgresql_prints_them() {
        assert_eq!(canonical_inet("10.1.2.3/32", false).as_deref(), Some("10.1.2.3"));
        assert_eq!(canonical_inet("192.168.0.10/24", false).as_deref(), Some("192.168.0.10/24"));
        assert_eq!(canonical_inet("2001:DB8:0:0::1", false).as_deref(), Some("2001:db8::1"));
        assert_eq!(canonical_inet("10.0.0.0/8", true).as_deref(), Some("10.0.0.0/8"));
        assert_eq!(canonical_inet("10.1.2.3/32", true).as_deref(), Some("10.1.2.3/32"));
        assert_eq!(canonical_inet("10.0.0.0", true), None, "a cidr without its prefix");
        assert_eq!(canonical_inet("10.0.0.1/8", true), None, "bits past the prefix");
        assert_eq!(canonical_inet("10.0.0.1/33", false), None);
        assert_eq!(canonical_inet("10.0.0.256", false), None);
        assert_eq!(canonical_inet("10.0.0.1/", false), None);
        assert_eq!(canonical_mac("08-00-2B-AA-BB-CC", false).as_deref(), Some("08:00:2b:aa:bb:cc"));
        assert_eq!(canonical_mac("0800.2baa.bbcc", false).as_deref(), Some("08:00:2b:aa:bb:cc"));
        assert_eq!(canonical_mac("08:00:2b:aa:bb:cc", true).as_deref(), Some("08:00:2b:ff:fe:aa:bb:cc"));
        assert_eq!(canonical_mac("0800.2baa.bbcc.ddee", true).as_deref(), Some("08:00:2b:aa:bb:cc:dd:ee"));
        assert_eq!(canonical_mac("0800.2baa.bbcc.ddee", false), None);
        assert_eq!(canonical_mac("08:00:2b:aa:bb", false), None);
        assert_eq!(canonical_mac("zz:00:2b:aa:bb:cc", false), None);
    }

    #[test]
    fn calendar_round_trips() {
        for d in [-1_000_000i64, -719_528, -1, 0, 1, 10_957, 2_932_896, 5_000_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), Some(d));
        }
        assert_eq!(days_from_civil(2000, 2, 30), None);
        assert_eq!(s(|o| write_date(o, 0, DateStyle::Iso)), "1970-01-01");
        assert_eq!(s(|o| write_date(o, days_from_civil(1000, 1, 1).unwrap(), DateStyle::Iso)), "1000-01-01");
        assert_eq!(s(|o| write_date(o, days_from_civil(-43, 3, 15).unwrap(), DateStyle::Pg)), "0044-03-15 BC");
        assert_eq!(s(|o| write_date(o, days_from_civil(-43, 3, 15).unwrap(), DateStyle::Iso)), "-0043-03-15");
        assert_eq!(s(|o| write_date(o, days_from_civil(12345, 1, 2).unwrap(), DateStyle::Iso)), "+12345-01-02");
        assert_eq!(parse_date("0044-03-15 BC"), days_from_civil(-43, 3, 15));
        assert_eq!(parse_date("-0043-03-15"), days_from_civil(-43, 3, 15));
        assert_eq!(parse_date("+12345-01-02"), days_from_civil(12345, 1, 2));
    }

    #[test]
    fn timestamps_and_times() {
        let t = 1_700_000_000_123_456i64;
        let txt = s(|o| write_timestamp(o, t, b' ', DateStyle::Pg));
        assert_eq!(txt, "2023-11-14 22:13:20.123456");
        assert_eq!(parse_timestamp(&txt), Some(t));
        assert_eq!(parse_timestamp("2023-11-15T00:13:20.123456+02"), Some(t));
        assert_eq!(parse_timestamp("2023-11-14 22:13:20.123456Z"), Some(t));
        let bc = days_from_civil(-43, 3, 15).unwrap() * MICROS_PER_DAY + 1;
        let txt = s(|o| write_timestamp(o, bc, b' ', DateStyle::Pg));
        assert_eq!(txt, "0044-03-15 00:00:00.000001 BC");
        assert_eq!(parse_timestamp(&txt), Some(bc));
        assert_eq!(parse_timestamp("-0043-03-15T00:00:00.000001"), Some(bc));
        assert_eq!(s(|o| write_time(o, MICROS_PER_DAY)), "24:00:00.000000");
        assert_eq!(parse_time("24:00:00"), Some(MICROS_PER_DAY));
        assert_eq!(split_offset("10:00:00-05:30"), ("10:00:00", Some("-05:30")));
        assert_eq!(parse_offset("-05:30"), Some(-19_800));
    }

    #[test]
    fn intervals_round_trip() {
        for (m, d, us) in [(0, 0, 0), (14, 3, 14_706_500_000), (-14, -3, -1_500_000), (1, 0, -500_000), (0, 0, 1)] {
            let txt = s(|o| write_interval(o, m, d, us));
            assert_eq!(parse_interval(&txt), Some((m, d, us)), "{txt}");
        }
        assert_eq!(s(|o| write_interval(o, 14, 3, 14_706_500_000)), "P1Y2M3DT4H5M6.5S");
        assert_eq!(s(|o| write_interval(o, 0, 0, 0)), "PT0S");
        assert_eq!(parse_interval("P1W"), Some((0, 7, 0)));
        assert_eq!(parse_interval("nonsense"), None);
        assert_eq!(parse_interval("1 year 2 mons -3 days -04:05:06.5"), Some((14, -3, -14_706_500_000)));
        assert_eq!(parse_interval("00:00:00"), Some((0, 0, 0)));
        assert_eq!(parse_interval("-1 days +00:00:01"), Some((0, -1, 1_000_000)));
    }

    #[test]
    fn escapes() {
        let mut o = Vec::new();
        escape_load_data(&mut o, b"a\\b\tc\nd\0e\rf");
        assert_eq!(o, b"a\\\\b\\tc\\nd\\0e\\rf");
        let mut o = Vec::new();
        escape_copy(&mut o, b"a\\b\tc\n");
        assert_eq!(o, b"a\\\\b\\tc\\n");
        assert_eq!(parse_hex(b"00fF"), Some(vec![0, 255]));
        assert_eq!(parse_hex(b"0"), None);
        assert_eq!(s(|o| write_f64(o, 0.1)), "0.1");
        assert_eq!(s(|o| write_f64(o, 1e300)), "1e300");
    }
}
