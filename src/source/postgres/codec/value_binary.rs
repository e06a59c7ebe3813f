//! PostgreSQL values in their binary send/recv form (`COPY … (FORMAT
//! binary)` fields and pgoutput `'b'` tuple columns) decoded into [`Value`].
//!
//! Produces exactly what [`decode_text`](super::value_text::decode_text)
//! produces for the same value: types kept as text (inet, macaddr, bit
//! strings, tsvector …) are printed the way PostgreSQL's output functions
//! print them. `money` is the stored int8 printed with the source
//! database's fraction digits (`crate::source::postgres::money`), as the text decoder's
//! rescaled `lc_monetary = C` form is.

use std::fmt::Write as _;

use super::value_text::{validate_json, ValueError, MAX_ARRAY_DIMS};
use crate::model::{DateValue, NumericValue, PgType, TimestampValue, Value};

use crate::model::time::{PG_EPOCH_OFFSET_DAYS, PG_EPOCH_OFFSET_MICROS};

/// Decodes the binary form of a value of type `ty` (never SQL NULL: that is
/// the field length -1, handled by the caller).
pub fn decode_binary(ty: &PgType, raw: &[u8]) -> Result<Value, ValueError> {
    let err = |m: String| ValueError::new(ty, m);
    let mut r = Reader { b: raw };
    let v = match ty {
        PgType::Bool => match r.exact::<1>(ty)? {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            [b] => return Err(err(format!("bool byte {b}"))),
        },
        PgType::Int2 => Value::Int2(i16::from_be_bytes(r.exact(ty)?)),
        PgType::Int4 => Value::Int4(i32::from_be_bytes(r.exact(ty)?)),
        PgType::Int8 => Value::Int8(i64::from_be_bytes(r.exact(ty)?)),
        PgType::Oid => Value::Int8(u32::from_be_bytes(r.exact(ty)?).into()),
        PgType::Float4 => Value::Float4(f32::from_be_bytes(r.exact(ty)?)),
        PgType::Float8 => Value::Float8(f64::from_be_bytes(r.exact(ty)?)),
        PgType::Numeric { .. } => Value::Numeric(numeric(ty, raw)?),
        PgType::Money => Value::Numeric(NumericValue::Finite(money(i64::from_be_bytes(r.exact(ty)?)))),
        PgType::Text | PgType::Varchar(_) | PgType::Char(_) | PgType::Name | PgType::Xml | PgType::Enum { .. } => {
            Value::Text(utf8(ty, raw)?.to_string())
        }
        PgType::InternalChar => Value::Text(match r.exact::<1>(ty)? {
            [0] => String::new(),
            [b] if b >= 0x80 => format!("\\{b:03o}"),
            [b] => (b as char).to_string(),
        }),
        PgType::Bytea => Value::Bytes(raw.to_vec()),
        PgType::Date => Value::Date(match i32::from_be_bytes(r.exact(ty)?) {
            i32::MAX => DateValue::PosInfinity,
            i32::MIN => DateValue::NegInfinity,
            d => DateValue::Days(d.checked_add(PG_EPOCH_OFFSET_DAYS).ok_or_else(|| err("date out of range".into()))?),
        }),
        PgType::Time(_) => Value::Time(i64::from_be_bytes(r.exact(ty)?)),
        PgType::TimeTz(_) => {
            let micros = i64::from_be_bytes(r.take::<8>(ty)?);
            // PostgreSQL keeps the zone as seconds west of UTC.
            let west = i32::from_be_bytes(r.take::<4>(ty)?);
            r.end(ty)?;
            Value::TimeTz { micros, offset_seconds: west.checked_neg().ok_or_else(|| err("bad zone".into()))? }
        }
        PgType::Timestamp(_) => Value::Timestamp(timestamp(ty, i64::from_be_bytes(r.exact(ty)?))?),
        PgType::TimestampTz(_) => Value::TimestampTz(timestamp(ty, i64::from_be_bytes(r.exact(ty)?))?),
        PgType::Interval => {
            let micros = i64::from_be_bytes(r.take::<8>(ty)?);
            let days = i32::from_be_bytes(r.take::<4>(ty)?);
            let months = i32::from_be_bytes(r.take::<4>(ty)?);
            r.end(ty)?;
            Value::Interval { months, days, micros }
        }
        PgType::Uuid => Value::Uuid(uuid::Uuid::from_bytes(r.exact(ty)?)),
        PgType::Json => json(ty, raw)?,
        PgType::Jsonb => match raw.split_first() {
            Some((1, text)) => json(ty, text)?,
            Some((v, _)) => return Err(err(format!("unknown jsonb version {v}"))),
            None => return Err(err("empty jsonb".into())),
        },
        PgType::Inet | PgType::Cidr => Value::Text(inet(ty, raw)?),
        PgType::Macaddr => Value::Text(mac(&r.exact::<6>(ty)?)),
        PgType::Macaddr8 => Value::Text(mac(&r.exact::<8>(ty)?)),
        PgType::Bit(_) | PgType::VarBit(_) => Value::Text(bits(ty, raw)?),
        PgType::TsVector => Value::Text(tsvector(ty, raw)?),
        PgType::TsQuery => Value::Text(tsquery(ty, raw)?),
        PgType::Array(elem) => array(ty, elem, raw)?,
        PgType::Other { name } => {
            return Err(err(format!(
                "xdb cannot read the binary form of type {name}: select the column cast to text ({name} → text)"
            )))
        }
    };
    Ok(v)
}

/// A cursor over untrusted bytes: every read is checked.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn short(ty: &PgType) -> ValueError {
        ValueError::new(ty, "value is shorter than its type needs")
    }

    fn take<const N: usize>(&mut self, ty: &PgType) -> Result<[u8; N], ValueError> {
        let (head, rest) = self.b.split_first_chunk::<N>().ok_or_else(|| Self::short(ty))?;
        self.b = rest;
        Ok(*head)
    }

    /// Reads `N` bytes that must be the whole value.
    fn exact<const N: usize>(&mut self, ty: &PgType) -> Result<[u8; N], ValueError> {
        let v = self.take::<N>(ty)?;
        self.end(ty)?;
        Ok(v)
    }

    fn end(&self, ty: &PgType) -> Result<(), ValueError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(ValueError::new(ty, format!("{} unexpected trailing bytes", self.b.len())))
        }
    }

    fn bytes(&mut self, ty: &PgType, n: usize) -> Result<&'a [u8], ValueError> {
        if self.b.len() < n {
            return Err(Self::short(ty));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn i16(&mut self, ty: &PgType) -> Result<i16, ValueError> {
        Ok(i16::from_be_bytes(self.take(ty)?))
    }

    fn u16(&mut self, ty: &PgType) -> Result<u16, ValueError> {
        Ok(u16::from_be_bytes(self.take(ty)?))
    }

    fn i32(&mut self, ty: &PgType) -> Result<i32, ValueError> {
        Ok(i32::from_be_bytes(self.take(ty)?))
    }

    fn u8(&mut self, ty: &PgType) -> Result<u8, ValueError> {
        Ok(self.take::<1>(ty)?[0])
    }

    /// A NUL-terminated string.
    fn cstring(&mut self, ty: &PgType) -> Result<&'a str, ValueError> {
        let n = self.b.iter().position(|&b| b == 0).ok_or_else(|| Self::short(ty))?;
        let s = self.bytes(ty, n)?;
        self.b = self.b.get(1..).unwrap_or_default();
        utf8(ty, s)
    }
}

fn utf8<'a>(ty: &PgType, raw: &'a [u8]) -> Result<&'a str, ValueError> {
    std::str::from_utf8(raw).map_err(|e| ValueError::new(ty, format!("not UTF-8 ({e})")))
}

fn json(ty: &PgType, raw: &[u8]) -> Result<Value, ValueError> {
    let text = utf8(ty, raw)?;
    validate_json(text).map_err(|e| ValueError::new(ty, format!("not JSON ({e})")))?;
    Ok(Value::Json(text.to_string()))
}

fn timestamp(ty: &PgType, pg: i64) -> Result<TimestampValue, ValueError> {
    Ok(match pg {
        i64::MAX => TimestampValue::PosInfinity,
        i64::MIN => TimestampValue::NegInfinity,
        v => TimestampValue::Micros(v.checked_add(PG_EPOCH_OFFSET_MICROS).filter(|v| *v != i64::MAX).ok_or_else(
            || ValueError::new(ty, "timestamp out of range (xdb keeps microseconds since 1970 in 64 bits)"),
        )?),
    })
}

/// The stored int8 → `-1234.56` (the source's fraction digits, see
/// [`crate::source::postgres::money`]).
fn money(raw: i64) -> String {
    crate::source::postgres::money::from_raw(raw)
}

/// numeric send form: ndigits, weight, sign, dscale, then base-10000 digits
/// (the first one is the group at 10000^weight). Printed like `numeric_out`.
fn numeric(ty: &PgType, raw: &[u8]) -> Result<NumericValue, ValueError> {
    let err = |m: &str| ValueError::new(ty, m.to_string());
    let mut r = Reader { b: raw };
    let ndigits = r.i16(ty)?;
    let weight = r.i16(ty)? as i32;
    let sign = r.u16(ty)?;
    let dscale = r.u16(ty)?;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok(NumericValue::NaN),
        0xD000 => return Ok(NumericValue::PosInfinity),
        0xF000 => return Ok(NumericValue::NegInfinity),
        _ => return Err(err("bad numeric sign")),
    }
    if ndigits < 0 || dscale > 0x3FFF {
        return Err(err("bad numeric header"));
    }
    let mut digits = Vec::with_capacity(ndigits as usize);
    for _ in 0..ndigits {
        let d = r.i16(ty)?;
        if !(0..10000).contains(&d) {
            return Err(err("numeric digit out of range"));
        }
        digits.push(d as u16);
    }
    r.end(ty)?;
    let digit = |i: i32| if i < 0 { 0 } else { digits.get(i as usize).copied().unwrap_or(0) };
    let mut out = String::with_capacity(4 * (weight.max(0) as usize + 1) + dscale as usize + 2);
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                let _ = write!(out, "{}", digit(i));
            } else {
                let _ = write!(out, "{:04}", digit(i));
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut i = weight + 1;
        while out.len() - start < dscale as usize {
            let _ = write!(out, "{:04}", digit(i));
            i += 1;
        }
        out.truncate(start + dscale as usize);
    }
    Ok(NumericValue::Finite(out))
}

/// inet/cidr send form: family (2 = IPv4, 3 = IPv6), bits, is_cidr, address
/// length, address. Printed like `inet_out`/`cidr_out`.
fn inet(ty: &PgType, raw: &[u8]) -> Result<String, ValueError> {
    let err = |m: &str| ValueError::new(ty, m.to_string());
    let mut r = Reader { b: raw };
    let family = r.u8(ty)?;
    let bits = r.u8(ty)?;
    let _is_cidr = r.u8(ty)?;
    let len = r.u8(ty)? as usize;
    let addr = r.bytes(ty, len)?;
    r.end(ty)?;
    let mut out = String::new();
    let max_bits = match (family, addr) {
        (2, [a, b, c, d]) => {
            let _ = write!(out, "{a}.{b}.{c}.{d}");
            32
        }
        (3, a) if a.len() == 16 => {
            ipv6(&mut out, a);
            128
        }
        _ => return Err(err("bad address family or length")),
    };
    if bits > max_bits {
        return Err(err("netmask longer than the address"));
    }
    if bits != max_bits || matches!(ty, PgType::Cidr) {
        let _ = write!(out, "/{bits}");
    }
    Ok(out)
}

/// IPv6 as PostgreSQL's `inet_net_ntop` prints it: the longest run (≥ 2) of
/// zero groups becomes `::`, and IPv4-compatible/-mapped forms end dotted.
fn ipv6(out: &mut String, a: &[u8]) {
    let words: Vec<u16> = a.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
    let (mut best, mut cur): ((i32, i32), (i32, i32)) = ((-1, 0), (-1, 0));
    for (i, w) in words.iter().enumerate() {
        if *w == 0 {
            if cur.0 == -1 {
                cur = (i as i32, 1);
            } else {
                cur.1 += 1;
            }
        } else if cur.0 != -1 {
            if best.0 == -1 || cur.1 > best.1 {
                best = cur;
            }
            cur.0 = -1;
        }
    }
    if cur.0 != -1 && (best.0 == -1 || cur.1 > best.1) {
        best = cur;
    }
    if best.0 != -1 && best.1 < 2 {
        best.0 = -1;
    }
    for (i, w) in words.iter().enumerate() {
        let i = i as i32;
        if best.0 != -1 && i >= best.0 && i < best.0 + best.1 {
            if i == best.0 {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6
            && best.0 == 0
            && (best.1 == 6 || (best.1 == 7 && words[7] != 1) || (best.1 == 5 && words[5] == 0xffff))
        {
            let _ = write!(out, "{}.{}.{}.{}", a[12], a[13], a[14], a[15]);
            return;
        }
        let _ = write!(out, "{w:x}");
    }
    if best.0 != -1 && best.0 + best.1 == 8 {
        out.push(':');
    }
}

fn mac(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{x:02x}");
    }
    out
}

/// bit/varbit send form: bit count, then the bits packed MSB first.
fn bits(ty: &PgType, raw: &[u8]) -> Result<String, ValueError> {
    let mut r = Reader { b: raw };
    let n = r.i32(ty)?;
    let n = usize::try_from(n).map_err(|_| ValueError::new(ty, "negative bit length"))?;
    let bytes = r.bytes(ty, n.div_ceil(8))?;
    r.end(ty)?;
    Ok((0..n).map(|i| if bytes[i / 8] & (0x80 >> (i % 8)) != 0 { '1' } else { '0' }).collect())
}

/// Quotes a tsvector/tsquery lexeme like `tsvectorout`: in single quotes,
/// with `'` and `\` doubled.
fn push_lexeme(out: &mut String, lexeme: &str) {
    out.push('\'');
    for c in lexeme.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
}

/// tsvector send form: lexeme count, then per lexeme a C string, a position
/// count and positions (weight in the top two bits). Printed like `tsvectorout`.
fn tsvector(ty: &PgType, raw: &[u8]) -> Result<String, ValueError> {
    let mut r = Reader { b: raw };
    let n = r.i32(ty)?;
    let mut out = String::new();
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        let lexeme = r.cstring(ty)?;
        push_lexeme(&mut out, lexeme);
        let npos = r.u16(ty)?;
        for j in 0..npos {
            let p = r.u16(ty)?;
            out.push(if j == 0 { ':' } else { ',' });
            let _ = write!(out, "{}", p & 0x3FFF);
            match p >> 14 {
                3 => out.push('A'),
                2 => out.push('B'),
                1 => out.push('C'),
                _ => {}
            }
        }
    }
    r.end(ty)?;
    Ok(out)
}

/// One item of a tsquery in prefix order.
enum TsItem<'a> {
    Operand { weight: u8, prefix: bool, text: &'a str },
    Not,
    And,
    Or,
    Phrase(u16),
}

/// tsquery send form: item count, then items in prefix (Polish) order:
/// operands `1, weight, prefix, text\0`, operators `2, op[, distance]`.
/// Printed like `tsqueryout`.
fn tsquery(ty: &PgType, raw: &[u8]) -> Result<String, ValueError> {
    let mut r = Reader { b: raw };
    let n = r.i32(ty)?;
    let n = usize::try_from(n).map_err(|_| ValueError::new(ty, "negative item count"))?;
    let mut items = Vec::with_capacity(n.min(raw.len()));
    for _ in 0..n {
        items.push(match r.u8(ty)? {
            1 => {
                let weight = r.u8(ty)?;
                let prefix = r.u8(ty)? != 0;
                TsItem::Operand { weight, prefix, text: r.cstring(ty)? }
            }
            2 => match r.u8(ty)? {
                1 => TsItem::Not,
                2 => TsItem::And,
                3 => TsItem::Or,
                4 => TsItem::Phrase(r.u16(ty)?),
                o => return Err(ValueError::new(ty, format!("unknown tsquery operator {o}"))),
            },
            k => return Err(ValueError::new(ty, format!("unknown tsquery item kind {k}"))),
        });
    }
    r.end(ty)?;
    if items.is_empty() {
        return Ok(String::new());
    }
    let mut pos = 0;
    let mut out = String::new();
    ts_infix(ty, &items, &mut pos, &mut out, -1, false, 0)?;
    if pos != items.len() {
        return Err(ValueError::new(ty, "tsquery has items left over"));
    }
    Ok(out)
}

/// Operator priority as in PostgreSQL's tsquery.h (higher binds tighter).
fn ts_priority(item: &TsItem) -> u8 {
    match item {
        TsItem::Operand { .. } => 5,
        TsItem::Not => 4,
        TsItem::Phrase(_) => 3,
        TsItem::And => 2,
        TsItem::Or => 1,
    }
}

/// Prints the subtree at `*pos` like `infix()` in tsquery.c: `parent` is the
/// priority of the enclosing operator (parentheses when it binds tighter),
/// `right_phrase` says this is the right operand of a phrase operator. The
/// send order is prefix with the right operand before the left one.
fn ts_infix(
    ty: &PgType,
    items: &[TsItem],
    pos: &mut usize,
    out: &mut String,
    parent: i32,
    right_phrase: bool,
    depth: usize,
) -> Result<(), ValueError> {
    if depth > 1000 {
        return Err(ValueError::new(ty, "tsquery nested too deeply"));
    }
    let item = items.get(*pos).ok_or_else(|| ValueError::new(ty, "tsquery ends inside an operator"))?;
    *pos += 1;
    let prio = ts_priority(item) as i32;
    match item {
        TsItem::Operand { weight, prefix, text } => {
            push_lexeme(out, text);
            if *prefix || *weight != 0 {
                out.push(':');
                if *prefix {
                    out.push('*');
                }
                for (bit, c) in [(1u8 << 3, 'A'), (1 << 2, 'B'), (1 << 1, 'C'), (1, 'D')] {
                    if weight & bit != 0 {
                        out.push(c);
                    }
                }
            }
        }
        TsItem::Not => {
            let paren = prio < parent;
            if paren {
                out.push_str("( ");
            }
            out.push('!');
            ts_infix(ty, items, pos, out, prio, false, depth + 1)?;
            if paren {
                out.push_str(" )");
            }
        }
        op => {
            let is_phrase = matches!(op, TsItem::Phrase(_));
            let paren = prio < parent || (is_phrase && right_phrase);
            if paren {
                out.push_str("( ");
            }
            let mut right = String::new();
            ts_infix(ty, items, pos, &mut right, prio, is_phrase, depth + 1)?;
            ts_infix(ty, items, pos, out, prio, false, depth + 1)?;
            match op {
                TsItem::And => out.push_str(" & "),
                TsItem::Or => out.push_str(" | "),
                TsItem::Phrase(1) => out.push_str(" <-> "),
                TsItem::Phrase(d) => {
                    let _ = write!(out, " <{d}> ");
                }
                _ => {}
            }
            out.push_str(&right);
            if paren {
                out.push_str(" )");
            }
        }
    }
    Ok(())
}

/// Array send form: ndim, has-nulls flag, element type OID, (length, lower
/// bound) per dimension, then each element as length (-1 = NULL) and bytes,
/// in row-major order. Multi-dimensional arrays become nested arrays.
fn array(ty: &PgType, elem: &PgType, raw: &[u8]) -> Result<Value, ValueError> {
    let err = |m: String| ValueError::new(ty, m);
    let mut r = Reader { b: raw };
    let ndim = r.i32(ty)?;
    let _flags = r.i32(ty)?;
    let _elem_oid = r.i32(ty)?;
    let ndim =
        usize::try_from(ndim).ok().filter(|n| *n <= MAX_ARRAY_DIMS).ok_or_else(|| err(format!("{ndim} dimensions")))?;
    if ndim == 0 {
        r.end(ty)?;
        return Ok(Value::Array(Vec::new()));
    }
    let mut dims = Vec::with_capacity(ndim);
    let mut total: usize = 1;
    for _ in 0..ndim {
        let len = r.i32(ty)?;
        let _lbound = r.i32(ty)?;
        let len = usize::try_from(len).map_err(|_| err(format!("negative dimension {len}")))?;
        total = total.checked_mul(len).ok_or_else(|| err("too many elements".into()))?;
        dims.push(len);
    }
    // Every element takes at least its 4-byte length: refuse absurd counts
    // before allocating for them.
    if total > r.b.len() / 4 {
        return Err(err(format!("{total} elements do not fit in {} bytes", r.b.len())));
    }
    let mut flat = Vec::with_capacity(total);
    for i in 0..total {
        let len = r.i32(ty)?;
        if len == -1 {
            flat.push(Value::Null);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| err(format!("element {i}: negative length {len}")))?;
        let bytes = r.bytes(ty, len)?;
        flat.push(decode_binary(elem, bytes).map_err(|e| err(format!("element {i}: {e}")))?);
    }
    r.end(ty)?;
    Ok(nest(flat, &dims))
}

/// Groups a row-major flat list into nested arrays of the given dimensions.
fn nest(flat: Vec<Value>, dims: &[usize]) -> Value {
    match dims {
        [] | [_] => Value::Array(flat),
        [_, inner @ ..] => {
            let chunk: usize = inner.iter().product();
            if chunk == 0 {
                return Value::Array(Vec::new());
            }
            let mut it = flat.into_iter();
            let mut out = Vec::new();
            loop {
                let part: Vec<Value> = it.by_ref().take(chunk).collect();
                if part.is_empty() {
                    break;
                }
                out.push(nest(part, inner));
            }
            Value::Array(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn num(raw: &[i16]) -> String {
        let bytes: Vec<u8> = raw.iter().flat_map(|v| v.to_be_bytes()).collect();
        match numeric(&PgType::Numeric { precision: None, scale: None }, &bytes).unwrap() {
            NumericValue::Finite(s) => s,
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn numerics_print_like_numeric_out() {
        // ndigits, weight, sign, dscale, digits…
        assert_eq!(num(&[2, 0, 0, 2, 12, 5000]), "12.50");
        assert_eq!(num(&[1, -1, 0x4000, 5, 100]), "-0.01000");
        assert_eq!(num(&[1, -2, 0, 8, 1234]), "0.00001234");
        assert_eq!(num(&[1, 2, 0, 0, 1]), "100000000");
        assert_eq!(num(&[0, 0, 0, 3]), "0.000");
        assert_eq!(num(&[0, 0, 0, 0]), "0");
    }

    fn inet_bytes(family: u8, bits: u8, cidr: bool, addr: &[u8]) -> Vec<u8> {
        let mut v = vec![family, bits, cidr as u8, addr.len() as u8];
        v.extend_from_slice(addr);
        v
    }

    #[test]
    fn inet_prints_like_postgres() {
        let i = |b: Vec<u8>| inet(&PgType::Inet, &b).unwrap();
        assert_eq!(i(inet_bytes(2, 32, false, &[192, 168, 0, 1])), "192.168.0.1");
        assert_eq!(i(inet_bytes(2, 24, false, &[192, 168, 0, 1])), "192.168.0.1/24");
        assert_eq!(inet(&PgType::Cidr, &inet_bytes(2, 32, true, &[10, 0, 0, 0])).unwrap(), "10.0.0.0/32");
        let mut v6 = [0u8; 16];
        v6[0] = 0x20;
        v6[1] = 0x01;
        v6[2] = 0x0d;
        v6[3] = 0xb8;
        v6[15] = 1;
        assert_eq!(i(inet_bytes(3, 128, false, &v6)), "2001:db8::1");
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(i(inet_bytes(3, 128, false, &mapped)), "::ffff:1.2.3.4");
        assert_eq!(i(inet_bytes(3, 64, false, &[0u8; 16])), "::/64");
    }

    #[test]
    fn small_types() {
        assert_eq!(bits(&PgType::Bit(None), &[0, 0, 0, 10, 0b1011_0000, 0b0100_0000]).unwrap(), "1011000001");
        assert_eq!(mac(&[8, 0, 0x2b, 1, 2, 3]), "08:00:2b:01:02:03");
        assert_eq!(money(-123456), "-1234.56");
        assert_eq!(money(5), "0.05");
        assert_eq!(decode_binary(&PgType::InternalChar, &[0xE9]).unwrap(), Value::Text("\\351".into()));
        assert_eq!(decode_binary(&PgType::Date, &0i32.to_be_bytes()).unwrap(), Value::Date(DateValue::Days(10957)));
        assert!(decode_binary(&PgType::Timestamp(None), &(i64::MAX - 1).to_be_bytes()).is_err());
        assert!(decode_binary(&PgType::Other { name: "x".into() }, b"").is_err());
    }

    /// numeric_send of a canonical decimal text (as a reference encoder).
    fn encode_numeric(text: &str) -> Vec<u8> {
        let (neg, body) = match text.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, text),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let int_pad = format!("{}{int}", "0".repeat((4 - int.len() % 4) % 4));
        let frac_pad = format!("{frac}{}", "0".repeat((4 - frac.len() % 4) % 4));
        let mut groups: Vec<i16> = int_pad
            .as_bytes()
            .chunks(4)
            .chain(frac_pad.as_bytes().chunks(4))
            .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
            .collect();
        let mut weight = (int_pad.len() / 4) as i16 - 1;
        while groups.first() == Some(&0) {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        let sign: u16 = if neg { 0x4000 } else { 0 };
        let mut out = Vec::new();
        for v in [groups.len() as i16, weight, sign as i16, frac.len() as i16] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        groups.iter().for_each(|g| out.extend_from_slice(&g.to_be_bytes()));
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn numeric_binary_prints_the_text(neg: bool, int in "0|[1-9][0-9]{0,40}", frac in "([0-9]{1,30})?") {
            let text = format!("{}{int}{}{frac}", if neg { "-" } else { "" }, if frac.is_empty() { "" } else { "." });
            let zero = text.trim_start_matches('-').bytes().all(|b| b == b'0' || b == b'.');
            let want = if zero { text.trim_start_matches('-').to_string() } else { text.clone() };
            let ty = PgType::Numeric { precision: None, scale: None };
            let bytes = encode_numeric(&want);
            prop_assert_eq!(decode_binary(&ty, &bytes).unwrap(), Value::Numeric(NumericValue::Finite(want)));
        }


        #[test]
        fn never_panics(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let types = [
                PgType::Bool, PgType::Int4, PgType::Numeric { precision: None, scale: None }, PgType::Money,
                PgType::Text, PgType::InternalChar, PgType::Date, PgType::TimeTz(None), PgType::Timestamp(None),
                PgType::Interval, PgType::Uuid, PgType::Jsonb, PgType::Inet, PgType::Cidr, PgType::Macaddr,
                PgType::Bit(None), PgType::TsVector, PgType::TsQuery, PgType::Array(Box::new(PgType::Int4)),
                PgType::Array(Box::new(PgType::Array(Box::new(PgType::Text)))),
            ];
            for ty in &types {
                let _ = decode_binary(ty, &raw);
            }
        }
    }
}
