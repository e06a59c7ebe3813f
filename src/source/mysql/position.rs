//! Positions in a MySQL/MariaDB binary log.
//!
//! A [`BinlogPosition`] names the point *after* a committed transaction: the
//! binlog file and the offset of the next event (what `SHOW MASTER STATUS`
//! reports and what a binlog dump is restarted from), plus the GTID
//! position there (`gtid.rs`: everything applied up to this point) when the
//! server has GTIDs.
//!
//! The stored, ordered form is [`BinlogPosition::ordinal`]: the file's
//! sequence number in the high 32 bits and the offset in the low 32 (a
//! binlog file never exceeds 4 GiB: `max_binlog_size` is capped at 1 GiB).
//! It only grows along the binlog, so it fits the writer's "only moves
//! forward" position column (invariant *exactly once*) as an [`Lsn`]; the
//! file name is rebuilt from the server's binlog base name.

use std::fmt;

use super::gtid::GtidState;
use crate::model::Lsn;

/// A MariaDB global transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MariadbGtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

impl MariadbGtid {
    /// Parses `domain-server-seq`.
    pub fn parse(s: &str) -> Option<MariadbGtid> {
        let mut it = s.trim().splitn(3, '-');
        let domain = it.next()?.parse().ok()?;
        let server = it.next()?.parse().ok()?;
        let seq = it.next()?.parse().ok()?;
        Some(MariadbGtid { domain, server, seq })
    }

    /// The body of a MariaDB GTID event (type 162), which mysql_common does
    /// not decode: sequence number (8 bytes LE), domain id (4 bytes LE),
    /// flags; the server id is the event header's.
    pub fn from_event_body(body: &[u8], server: u32) -> Option<MariadbGtid> {
        let seq = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
        let domain = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?);
        Some(MariadbGtid { domain, server, seq })
    }
}

/// A point in the binlog, after a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogPosition {
    pub file: String,
    pub pos: u64,
    /// The GTID position here (all transactions up to this point), if
    /// the server has GTIDs and it is known.
    pub gtid: Option<GtidState>,
}

/// The binlog file's sequence number: the digits after the last dot
/// (`binlog.000042` → 42).
pub fn file_number(file: &str) -> Option<u32> {
    file.rsplit_once('.').and_then(|(_, n)| n.parse().ok())
}

/// The file name for a sequence number, given any file of the same log
/// (same base name and zero padding).
pub fn file_name(sibling: &str, number: u32) -> Option<String> {
    let (base, digits) = sibling.rsplit_once('.')?;
    Some(format!("{base}.{number:0width$}", width = digits.len()))
}

impl BinlogPosition {
    /// The ordered form stored as the applied position.
    pub fn ordinal(&self) -> Option<Lsn> {
        let n = file_number(&self.file)? as u64;
        (self.pos < (1 << 32)).then_some(Lsn((n << 32) | self.pos))
    }

    /// Back from the ordered form, with the file named like `sibling`.
    pub fn from_ordinal(ordinal: Lsn, sibling: &str) -> Option<BinlogPosition> {
        let file = file_name(sibling, (ordinal.0 >> 32) as u32)?;
        Some(BinlogPosition { file, pos: ordinal.0 & 0xffff_ffff, gtid: None })
    }
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        if let Some(g) = self.gtid.as_ref().filter(|g| !g.to_string().is_empty()) {
            write!(f, " (GTID {g})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinal_round_trips_and_orders_by_file_then_offset() {
        let a = BinlogPosition { file: "binlog.000009".into(), pos: 4_000_000, gtid: None };
        let b = BinlogPosition { file: "binlog.000010".into(), pos: 256, gtid: None };
        assert!(a.ordinal().unwrap() < b.ordinal().unwrap());
        let back = BinlogPosition::from_ordinal(b.ordinal().unwrap(), "binlog.000001").unwrap();
        assert_eq!(back, b);
        assert_eq!(file_name("/var/lib/mysql/mariadb-bin.000001", 12).unwrap(), "/var/lib/mysql/mariadb-bin.000012");
    }

    #[test]
    fn gtid_parses_and_decodes_the_event_body() {
        assert_eq!(MariadbGtid::parse("0-1-42"), Some(MariadbGtid { domain: 0, server: 1, seq: 42 }));
        assert_eq!(MariadbGtid::parse("0-1"), None);
        let mut body = 42u64.to_le_bytes().to_vec();
        body.extend_from_slice(&7u32.to_le_bytes());
        body.push(0);
        assert_eq!(MariadbGtid::from_event_body(&body, 3).unwrap().to_string(), "7-3-42");
    }
}
