use std::fmt;
use std::str::FromStr;

/// A PostgreSQL WAL position (log sequence number), written as `X/X`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The zero position, used as "nothing yet".
    pub const ZERO: Lsn = Lsn(0);

    /// Invariant "per-table sync LSN": true when a copy consistent at
    /// `self` (a slot's consistent point) already holds the transaction
    /// whose commit record starts at `commit_lsn`, so the stream's copy of
    /// it must be skipped. PostgreSQL's own rule (its apply worker applies
    /// when `sync_lsn <= commit_lsn`): the consistent point is the end of
    /// the record that made the snapshot consistent, and a commit record may
    /// start exactly there; that transaction is not in the snapshot.
    pub fn snapshot_holds_commit(self, commit_lsn: Lsn) -> bool {
        commit_lsn < self
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The text was not an LSN of the form `X/X` (hexadecimal halves).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two hexadecimal numbers separated by '/', like 16/B374D848")]
pub struct LsnParseError(pub String);

impl FromStr for Lsn {
    type Err = LsnParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn(((hi as u64) << 32) | lo as u64))
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Lsn(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_at_the_consistent_point_is_not_in_the_snapshot() {
        let sync_lsn = Lsn(0x16_B374_D848);
        assert!(!sync_lsn.snapshot_holds_commit(sync_lsn), "a commit starting at the consistent point is streamed");
        assert!(sync_lsn.snapshot_holds_commit(Lsn(sync_lsn.0 - 1)));
        assert!(!sync_lsn.snapshot_holds_commit(Lsn(sync_lsn.0 + 1)));
    }

    #[test]
    fn round_trips_text_form() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l.0, 0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert!("16B374D848".parse::<Lsn>().is_err());
        assert!("G/1".parse::<Lsn>().is_err());
    }
}
