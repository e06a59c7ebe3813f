//! GTID positions of a MySQL/MariaDB binlog: what a reader has applied, in
//! the server's own form, so that it can resume where a binlog file name
//! and offset mean nothing any more (the file was purged, or the target
//! failed over to another server whose binlog has other names and
//! offsets).
//!
//! - MariaDB: the last GTID per replication domain, `domain-server-seq`
//!   joined by commas (the form of `@@gtid_binlog_pos` and of a replica's
//!   `@slave_connect_state`).
//! - MySQL: a GTID set, `uuid:1-5:7,uuid2:1-3` (the form of
//!   `@@gtid_executed`), sent as the SID blocks of `COM_BINLOG_DUMP_GTID`.
//!   Tagged GTIDs (MySQL 8.4 `uuid:tag:n`) are not parsed: such a state is
//!   not recorded and the file:offset position is the only one.

use std::collections::BTreeMap;
use std::fmt;

use mysql_async::binlog::events::GtidEvent;
use mysql_async::{GnoInterval, Sid};

use super::position::MariadbGtid;

/// The GTID of one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gtid {
    Mariadb(MariadbGtid),
    Mysql { uuid: [u8; 16], gno: u64 },
}

impl Gtid {
    pub fn from_mysql_event(e: &GtidEvent) -> Gtid {
        Gtid::Mysql { uuid: e.sid(), gno: e.gno() }
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::Mariadb(g) => write!(f, "{g}"),
            Gtid::Mysql { uuid, gno } => write!(f, "{}:{gno}", uuid::Uuid::from_bytes(*uuid)),
        }
    }
}

/// Everything applied, as a GTID position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidState {
    /// Domain → the last GTID applied in it.
    Mariadb(BTreeMap<u32, MariadbGtid>),
    /// Server UUID → applied intervals (inclusive, sorted, disjoint).
    Mysql(BTreeMap<uuid::Uuid, Vec<(u64, u64)>>),
}

impl GtidState {
    /// A MariaDB position (`0-1-42,1-2-7`; empty: nothing yet).
    pub fn parse_mariadb(s: &str) -> Option<GtidState> {
        let mut m = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g = MariadbGtid::parse(part)?;
            m.insert(g.domain, g);
        }
        Some(GtidState::Mariadb(m))
    }

    /// A MySQL GTID set (`uuid:1-5:7,uuid2:3`; empty: nothing yet).
    pub fn parse_mysql(s: &str) -> Option<GtidState> {
        let mut m: BTreeMap<uuid::Uuid, Vec<(u64, u64)>> = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split(':');
            let uuid = uuid::Uuid::parse_str(it.next()?.trim()).ok()?;
            let intervals = m.entry(uuid).or_default();
            for iv in it {
                let (a, b) = match iv.split_once('-') {
                    Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                    // A tag (MySQL 8.4) is not a number: not parsed.
                    None => {
                        let n = iv.parse().ok()?;
                        (n, n)
                    }
                };
                if a > b || a == 0 {
                    return None;
                }
                intervals.push((a, b));
            }
            normalize(intervals);
        }
        Some(GtidState::Mysql(m))
    }

    /// The stored form back: MySQL sets name a UUID, MariaDB positions do not.
    pub fn parse(s: &str) -> Option<GtidState> {
        if s.contains(':') {
            GtidState::parse_mysql(s)
        } else {
            GtidState::parse_mariadb(s)
        }
    }

    /// Adds an applied transaction.
    pub fn add(&mut self, g: &Gtid) {
        match (self, g) {
            (GtidState::Mariadb(m), Gtid::Mariadb(g)) => {
                m.insert(g.domain, *g);
            }
            (GtidState::Mysql(m), Gtid::Mysql { uuid, gno }) => {
                let v = m.entry(uuid::Uuid::from_bytes(*uuid)).or_default();
                v.push((*gno, *gno));
                normalize(v);
            }
            // A MariaDB GTID in a MySQL set (or the reverse) cannot happen
            // on one server; a failover between the two kinds is not one.
            _ => {}
        }
    }

    pub fn is_mariadb(&self) -> bool {
        matches!(self, GtidState::Mariadb(_))
    }

    /// The SID blocks of `COM_BINLOG_DUMP_GTID` (MySQL): everything the
    /// reader has, so the server sends only what is missing.
    pub fn mysql_sids(&self) -> Vec<Sid<'static>> {
        let GtidState::Mysql(m) = self else { return Vec::new() };
        m.iter()
            .map(|(u, v)| {
                Sid::new(*u.as_bytes()).with_intervals(v.iter().map(|&(a, b)| GnoInterval::new(a, b + 1)).collect())
            })
            .collect()
    }
}

/// Sorts and merges touching intervals.
fn normalize(v: &mut Vec<(u64, u64)>) {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for &(a, b) in v.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *v = out;
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidState::Mariadb(m) => {
                let parts: Vec<String> = m.values().map(|g| g.to_string()).collect();
                write!(f, "{}", parts.join(","))
            }
            GtidState::Mysql(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(u, v)| {
                        let iv: Vec<String> =
                            v.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
                        format!("{u}:{}", iv.join(":"))
                    })
                    .collect();
                write!(f, "{}", parts.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_positions_keep_the_last_gtid_per_domain() {
        let mut s = GtidState::parse("0-1-41,1-2-7").unwrap();
        s.add(&Gtid::Mariadb(MariadbGtid { domain: 0, server: 3, seq: 42 }));
        assert_eq!(s.to_string(), "0-3-42,1-2-7");
        assert_eq!(GtidState::parse("").unwrap().to_string(), "");
        assert_eq!(GtidState::parse("0-1"), None);
    }

    #[test]
    fn mysql_sets_merge_intervals_and_round_trip() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut s = GtidState::parse(&format!("{u}:1-5:7")).unwrap();
        let uuid = *uuid::Uuid::parse_str(u).unwrap().as_bytes();
        s.add(&Gtid::Mysql { uuid, gno: 6 });
        assert_eq!(s.to_string(), format!("{u}:1-7"));
        s.add(&Gtid::Mysql { uuid, gno: 9 });
        assert_eq!(s.to_string(), format!("{u}:1-7:9"));
        assert_eq!(GtidState::parse(&s.to_string()), Some(s.clone()));
        let sids = s.mysql_sids();
        assert_eq!(sids.len(), 1);
        assert_eq!(sids[0].intervals()[0].end(), 8, "the wire form's end is exclusive");
        // Tagged GTIDs (8.4) are not parsed.
        assert_eq!(GtidState::parse(&format!("{u}:tag:1-3")), None);
    }
}
