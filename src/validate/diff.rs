//! Comparing one chunk: the order-independent checksum of each side first;
//! when they differ, the rows themselves, merged by key, to name exactly
//! the missing, extra and changed keys and the columns that differ.
//!
//! Rows are compared client-side in canonical form, so a chunk's rows are
//! in memory anyway and a sort-merge finds every differing key in one pass:
//! no bisection round-trips are needed (bisection pays off only when the
//! servers hash and the rows stay remote). Pure.

use crate::mapping::CanonicalValue;
#[cfg(test)]
use crate::mapping::RowHasher;

/// One row in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonRow {
    /// The match columns' values (primary key, or every column).
    pub key: Vec<CanonicalValue>,
    /// Every column's value, in table order.
    pub values: Vec<CanonicalValue>,
}

/// One side of a chunk: its rows and their checksum.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub struct ChunkSide {
    pub rows: Vec<CanonRow>,
    pub checksum: u128,
}

#[cfg(test)]
impl ChunkSide {
    /// Builds a side from rows, computing the checksum.
    pub fn new(rows: Vec<CanonRow>) -> ChunkSide {
        let mut h = RowHasher::new();
        for r in &rows {
            h.add_row(&r.values);
        }
        ChunkSide { checksum: h.checksum(), rows }
    }

    /// True when both sides hold the same rows (same count and checksum).
    pub fn same_as(&self, other: &ChunkSide) -> bool {
        self.rows.len() == other.rows.len() && self.checksum == other.checksum
    }
}

/// A key present on both sides with different values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    pub key: Vec<CanonicalValue>,
    /// (column position, source value, target value).
    pub columns: Vec<(usize, CanonicalValue, CanonicalValue)>,
}

/// What differs in a chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkDiff {
    /// Keys on the source, not on the target.
    pub missing: Vec<Vec<CanonicalValue>>,
    /// Keys on the target, not on the source.
    pub extra: Vec<Vec<CanonicalValue>>,
    pub changed: Vec<RowChange>,
}

impl ChunkDiff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.changed.is_empty()
    }

    /// Keeps only differences also present in `earlier` (same key, same
    /// kind): a difference seen in only one of two reads was a change in
    /// flight, not a real one.
    pub fn intersect(self, earlier: &ChunkDiff) -> ChunkDiff {
        ChunkDiff {
            missing: self.missing.into_iter().filter(|k| earlier.missing.contains(k)).collect(),
            extra: self.extra.into_iter().filter(|k| earlier.extra.contains(k)).collect(),
            changed: self.changed.into_iter().filter(|c| earlier.changed.iter().any(|e| e.key == c.key)).collect(),
        }
    }
}

/// Compares two sides row by row (sorting both by key).
pub fn diff_rows(mut source: Vec<CanonRow>, mut target: Vec<CanonRow>) -> ChunkDiff {
    source.sort_by(|a, b| a.key.cmp(&b.key).then_with(|| a.values.cmp(&b.values)));
    target.sort_by(|a, b| a.key.cmp(&b.key).then_with(|| a.values.cmp(&b.values)));
    let mut out = ChunkDiff::default();
    let (mut i, mut j) = (0, 0);
    while i < source.len() || j < target.len() {
        match (source.get(i), target.get(j)) {
            (Some(s), Some(t)) => match s.key.cmp(&t.key) {
                std::cmp::Ordering::Less => {
                    out.missing.push(s.key.clone());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.extra.push(t.key.clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let columns: Vec<(usize, CanonicalValue, CanonicalValue)> = s
                        .values
                        .iter()
                        .zip(&t.values)
                        .enumerate()
                        .filter(|(_, (a, b))| a != b)
                        .map(|(c, (a, b))| (c, a.clone(), b.clone()))
                        .collect();
                    if !columns.is_empty() {
                        out.changed.push(RowChange { key: s.key.clone(), columns });
                    }
                    i += 1;
                    j += 1;
                }
            },
            (Some(s), None) => {
                out.missing.push(s.key.clone());
                i += 1;
            }
            (None, Some(t)) => {
                out.extra.push(t.key.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cv(s: &str) -> CanonicalValue {
        CanonicalValue(Some(s.to_string()))
    }

    fn row(k: &str, v: &str) -> CanonRow {
        CanonRow { key: vec![cv(k)], values: vec![cv(k), cv(v)] }
    }

    #[test]
    fn finds_each_kind_of_difference() {
        let s = vec![row("1", "a"), row("2", "b"), row("3", "c")];
        let t = vec![row("4", "d"), row("3", "C"), row("1", "a")];
        let d = diff_rows(s.clone(), t.clone());
        assert_eq!(d.missing, vec![vec![cv("2")]]);
        assert_eq!(d.extra, vec![vec![cv("4")]]);
        assert_eq!(d.changed, vec![RowChange { key: vec![cv("3")], columns: vec![(1, cv("c"), cv("C"))] }]);
        assert!(!ChunkSide::new(s.clone()).same_as(&ChunkSide::new(t)));
        let mut shuffled = s.clone();
        shuffled.reverse();
        assert!(ChunkSide::new(s.clone()).same_as(&ChunkSide::new(shuffled.clone())));
        assert!(diff_rows(s, shuffled).is_empty());
    }

    #[test]
    fn intersect_drops_changes_in_flight() {
        let first = diff_rows(vec![row("1", "a"), row("2", "b")], vec![row("1", "x")]);
        let second = diff_rows(vec![row("1", "a"), row("2", "b"), row("5", "e")], vec![row("1", "a")]);
        let kept = second.intersect(&first);
        assert_eq!(kept.missing, vec![vec![cv("2")]]);
        assert!(kept.changed.is_empty());
    }

    #[test]
    fn keyless_duplicates_count() {
        let dup = |v: &str| CanonRow { key: vec![cv(v)], values: vec![cv(v)] };
        let d = diff_rows(vec![dup("a"), dup("a")], vec![dup("a")]);
        assert_eq!(d.missing, vec![vec![cv("a")]]);
    }
}
