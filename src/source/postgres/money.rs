//! `money` amounts as the source database's applications see them.
//!
//! PostgreSQL stores a `money` value as an integer count of the smallest
//! unit of the locale in `lc_monetary` (cents for `en_US`, yen for
//! `ja_JP`, fils for `ar_KW`): the same stored 1234 is $12.34 in one and
//! ￥1234 in the other. xdb's replication sessions set `lc_monetary = C`
//! so the stream's text is always `$1,234.56`-shaped (2 digits) and the
//! copy reads the integer itself (binary COPY); both are rescaled here to
//! the number of fraction digits of the database's own `lc_monetary`, read
//! once per process on a plain session (server, database or role setting,
//! what xdb's login — and an application's session — gets), before xdb
//! reads any table. An amount is then moved as the decimal its
//! application sees, `'1234'::money::numeric`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio_postgres::Client;

static DIGITS: AtomicU32 = AtomicU32::new(2);
static READ: AtomicBool = AtomicBool::new(false);

/// The database's `lc_monetary` and its number of fraction digits.
#[derive(Debug, Clone, PartialEq)]
pub struct MoneyScale {
    pub locale: String,
    pub digits: u32,
}

/// Reads the source's money scale (a session without xdb's
/// `lc_monetary = C`): `money → numeric` keeps the locale's digits.
pub async fn read_scale(client: &Client) -> Result<MoneyScale, tokio_postgres::Error> {
    let row = client.query_one("SELECT current_setting('lc_monetary'), scale('0'::money::numeric)", &[]).await?;
    let digits: i32 = row.get(1);
    Ok(MoneyScale { locale: row.get(0), digits: digits.max(0) as u32 })
}

/// Reads the scale once per process (the first table loaded) and makes it
/// the one every decoder of this process uses.
pub async fn ensure_read(client: &Client) -> Result<(), tokio_postgres::Error> {
    if READ.load(Ordering::Acquire) {
        return Ok(());
    }
    let scale = read_scale(client).await?;
    DIGITS.store(scale.digits, Ordering::Release);
    READ.store(true, Ordering::Release);
    Ok(())
}

/// The fraction digits amounts are read with (2 until the source told).
pub fn fraction_digits() -> u32 {
    DIGITS.load(Ordering::Acquire)
}

/// A stored amount (units of the locale's smallest fraction) as a decimal:
/// 1234 → `12.34` with 2 digits, `1234` with none.
pub fn from_raw(raw: i64) -> String {
    from_raw_digits(raw, fraction_digits())
}

fn from_raw_digits(raw: i64, digits: u32) -> String {
    let sign = if raw < 0 { "-" } else { "" };
    let abs = raw.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs}");
    }
    let unit = 10u64.pow(digits.min(18));
    format!("{sign}{}.{:0width$}", abs / unit, abs % unit, width = digits as usize)
}

/// An amount as `lc_monetary = C` prints it, already parsed to a plain
/// decimal with 2 digits (`-12.34`), rescaled to the database's digits.
/// `None` when it is not a 2-digit decimal or out of the 64-bit range.
pub fn from_c_locale(decimal: &str) -> Option<String> {
    let digits = fraction_digits();
    if digits == 2 {
        return Some(decimal.to_string());
    }
    let (neg, rest) = match decimal.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, decimal),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, "00"));
    if frac.len() != 2 {
        return None;
    }
    let raw: i128 = format!("{int}{frac}").parse().ok()?;
    let raw = i64::try_from(if neg { -raw } else { raw }).ok()?;
    Some(from_raw_digits(raw, digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_follow_the_locale_digits() {
        assert_eq!(from_raw_digits(123456, 2), "1234.56");
        assert_eq!(from_raw_digits(-5, 2), "-0.05");
        assert_eq!(from_raw_digits(1234, 0), "1234");
        assert_eq!(from_raw_digits(-1234, 0), "-1234");
        assert_eq!(from_raw_digits(1234, 3), "1.234");
        assert_eq!(from_raw_digits(i64::MIN, 0), "-9223372036854775808");
    }
}
