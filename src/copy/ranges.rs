//! How a table's copy is split among workers: contiguous ranges of an
//! integer primary key, or of heap pages (ctid) for tables whose key does not
//! split well. Every row falls in exactly one range: the first range has no
//! lower bound and the last no upper bound, so rows outside the sampled
//! minimum and maximum are still copied once.

use crate::model::{PgType, TableSchema};

/// One slice of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyRange {
    /// The whole table.
    Whole,
    /// `key >= lo` (when `Some`) and `key < hi` (when `Some`).
    IntKey { column: String, lo: Option<i64>, hi: Option<i64> },
    /// Heap pages `[first, end)`; `end = None` runs to the end of the table.
    Pages { first: u64, end: Option<u64> },
}

impl CopyRange {
    /// The SQL condition selecting this range (`None` for the whole table).
    pub fn predicate(&self) -> Option<String> {
        match self {
            CopyRange::Whole => None,
            CopyRange::IntKey { column, lo, hi } => {
                let c = format!("\"{}\"", column.replace('"', "\"\""));
                match (lo, hi) {
                    (Some(lo), Some(hi)) => Some(format!("{c} >= {lo} AND {c} < {hi}")),
                    (Some(lo), None) => Some(format!("{c} >= {lo}")),
                    (None, Some(hi)) => Some(format!("{c} < {hi}")),
                    (None, None) => None,
                }
            }
            CopyRange::Pages { first, end } => match end {
                Some(end) => Some(format!("ctid >= '({first},0)'::tid AND ctid < '({end},0)'::tid")),
                None => Some(format!("ctid >= '({first},0)'::tid")),
            },
        }
    }
}

/// The integer key column a table can be split on, if it has one: a
/// single-column primary key of type smallint, integer or bigint.
pub fn int_split_column(table: &TableSchema) -> Option<&str> {
    match table.primary_key.as_slice() {
        [i] => {
            let c = &table.columns[*i];
            matches!(c.pg_type, PgType::Int2 | PgType::Int4 | PgType::Int8).then_some(c.name.as_str())
        }
        _ => None,
    }
}

/// Splits `[min, max]` of an integer key into ranges of about `chunk_rows`
/// rows, assuming `rows` rows spread evenly.
pub fn split_int_key(column: &str, min: i64, max: i64, rows: u64, chunk_rows: u64) -> Vec<CopyRange> {
    let parts = parts_for(rows, chunk_rows);
    let span = (max as i128 - min as i128 + 1).max(1);
    let parts = (parts as i128).min(span).max(1) as u64;
    if parts == 1 {
        return vec![CopyRange::Whole];
    }
    let step = span / parts as i128;
    (0..parts)
        .map(|p| {
            let lo = (p > 0).then(|| (min as i128 + step * p as i128) as i64);
            let hi = (p + 1 < parts).then(|| (min as i128 + step * (p as i128 + 1)) as i64);
            CopyRange::IntKey { column: column.to_string(), lo, hi }
        })
        .collect()
}

/// Splits `pages` heap pages into ranges of about `chunk_rows` rows.
pub fn split_pages(pages: u64, rows: u64, chunk_rows: u64) -> Vec<CopyRange> {
    let parts = parts_for(rows, chunk_rows).min(pages.max(1));
    if parts <= 1 {
        return vec![CopyRange::Whole];
    }
    let step = pages.div_ceil(parts);
    let mut out = Vec::new();
    let mut first = 0;
    while first < pages {
        let end = first + step;
        out.push(CopyRange::Pages { first, end: (end < pages).then_some(end) });
        first = end;
    }
    if let Some(CopyRange::Pages { end, .. }) = out.last_mut() {
        *end = None;
    }
    out
}

fn parts_for(rows: u64, chunk_rows: u64) -> u64 {
    rows.div_ceil(chunk_rows.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_ranges_cover_everything_once() {
        let r = split_int_key("id", 1, 1000, 1000, 250);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].predicate().unwrap(), "\"id\" < 251");
        assert_eq!(r[1].predicate().unwrap(), "\"id\" >= 251 AND \"id\" < 501");
        assert_eq!(r[3].predicate().unwrap(), "\"id\" >= 751");
        assert_eq!(split_int_key("id", 5, 5, 1_000_000, 10), vec![CopyRange::Whole]);
        assert_eq!(split_int_key("id", 0, 10, 5, 100), vec![CopyRange::Whole]);
        let extreme = split_int_key("id", i64::MIN, i64::MAX, 10, 5);
        assert_eq!(extreme.len(), 2);
    }

    #[test]
    fn page_ranges_cover_everything_once() {
        let r = split_pages(10, 1000, 300);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].predicate().unwrap(), "ctid >= '(0,0)'::tid AND ctid < '(3,0)'::tid");
        assert_eq!(r[3].predicate().unwrap(), "ctid >= '(9,0)'::tid");
        assert_eq!(split_pages(0, 0, 300), vec![CopyRange::Whole]);
    }
}
