//! What a validation found, per table: rows on each side, the keys missing
//! on the target, the extra keys, the changed keys with the columns that
//! differ (both values, truncated), and what `--repair` did. Rendered as a
//! table for people and serialized as JSON for pipelines.

use std::fmt::Write as _;

use serde::Serialize;

use super::diff::ChunkDiff;
use super::key_text;
use crate::mapping::{CanonicalValue, MappedTable};

/// Differences kept per table and kind (all of them in `--format json` up
/// to this many); the totals count all of them.
pub const MAX_LISTED: usize = 100_000;

/// Differences the text report lists per table and kind, with the total
/// and a pointer to `--format json` for the rest.
pub const TEXT_LISTED: usize = 20;

/// Longest value shown in a report (characters).
const MAX_VALUE_CHARS: usize = 80;

/// The outcome of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    /// Same rows on both sides.
    Equal,
    /// Rows differ (or, counts only, the counts do).
    Differs,
    /// Rows differed and `--repair` made them equal.
    Repaired,
    /// The table could not be compared (see `error`).
    Error,
}

/// One column of a changed row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnDiff {
    pub column: String,
    /// The source value in canonical form (`NULL` for SQL NULL), truncated.
    pub source: String,
    /// The target value in canonical form, truncated.
    pub target: String,
}

/// A key present on both sides whose values differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedRow {
    /// `id = 7` or `a = 1 AND b = 'x'`: pasteable after `WHERE`.
    pub key: String,
    pub columns: Vec<ColumnDiff>,
}

/// What `--repair` did to a table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairSummary {
    /// Key ranges rewritten from the source.
    pub chunks: u64,
    pub rows_deleted: u64,
    pub rows_written: u64,
    /// Differences left when the repaired ranges were compared again.
    pub remaining: u64,
}

/// One table's result.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// The source table, `schema.table`.
    pub table: String,
    /// The target table name.
    pub target_table: String,
    pub status: TableStatus,
    pub source_rows: u64,
    pub target_rows: u64,
    /// Key ranges compared (0 when only counts were compared).
    pub chunks: u64,
    /// Ranges whose checksums differed (after re-checks).
    pub chunks_differing: u64,
    pub missing_total: u64,
    pub extra_total: u64,
    pub changed_total: u64,
    /// Keys on the source but not on the target (at most [`MAX_LISTED`]).
    pub missing: Vec<String>,
    /// Keys on the target but not on the source.
    pub extra: Vec<String>,
    pub changed: Vec<ChangedRow>,
    /// Source values that a `null` / `clamp` policy changes: compared as the
    /// target is meant to hold them (so equal), counted here so that they
    /// are never silent.
    pub policy_altered: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairSummary>,
    /// Something the reader should know (compared as one chunk, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub seconds: f64,
    /// Keys as compared, until [`TableReport::finish`] orders and renders them.
    #[serde(skip)]
    raw_missing: Vec<Vec<CanonicalValue>>,
    #[serde(skip)]
    raw_extra: Vec<Vec<CanonicalValue>>,
    #[serde(skip)]
    raw_changed: Vec<(Vec<CanonicalValue>, Vec<ColumnDiff>)>,
}

impl TableReport {
    /// An empty report for `mapped`.
    pub fn new(mapped: &MappedTable) -> TableReport {
        TableReport {
            table: mapped.source.name.to_string(),
            target_table: mapped.target_name.clone(),
            status: TableStatus::Equal,
            source_rows: 0,
            target_rows: 0,
            chunks: 0,
            chunks_differing: 0,
            missing_total: 0,
            extra_total: 0,
            changed_total: 0,
            missing: Vec::new(),
            extra: Vec::new(),
            changed: Vec::new(),
            policy_altered: 0,
            repair: None,
            note: None,
            error: None,
            seconds: 0.0,
            raw_missing: Vec::new(),
            raw_extra: Vec::new(),
            raw_changed: Vec::new(),
        }
    }

    /// Differences found (before any repair).
    pub fn differences(&self) -> u64 {
        self.missing_total + self.extra_total + self.changed_total
    }

    /// Adds a chunk's differences (listed by [`TableReport::finish`]).
    pub fn add_diff(&mut self, mapped: &MappedTable, diff: &ChunkDiff) {
        self.missing_total += diff.missing.len() as u64;
        self.extra_total += diff.extra.len() as u64;
        self.changed_total += diff.changed.len() as u64;
        for k in &diff.missing {
            if self.raw_missing.len() < MAX_LISTED {
                self.raw_missing.push(k.clone());
            }
        }
        for k in &diff.extra {
            if self.raw_extra.len() < MAX_LISTED {
                self.raw_extra.push(k.clone());
            }
        }
        for c in &diff.changed {
            if self.raw_changed.len() < MAX_LISTED {
                let columns = c
                    .columns
                    .iter()
                    .map(|(i, s, t)| {
                        let col = mapped.columns.get(*i);
                        let ty = col.map(|c| c.source_type.clone()).unwrap_or(crate::model::PgType::Text);
                        ColumnDiff {
                            column: col.map(|c| c.name.clone()).unwrap_or_default(),
                            source: cut(key_text::value_text(&ty, s)),
                            target: cut(key_text::value_text(&ty, t)),
                        }
                    })
                    .collect();
                self.raw_changed.push((c.key.clone(), columns));
            }
        }
    }

    /// Orders the differing keys by the key's type and renders them as the
    /// source writes them (see [`key_text`]).
    pub fn finish(&mut self, mapped: &MappedTable) {
        let cols = key_columns(mapped);
        let types: Vec<crate::model::PgType> = cols.iter().map(|(_, t)| t.clone()).collect();
        let mut missing = std::mem::take(&mut self.raw_missing);
        missing.sort_by(|a, b| key_text::compare_keys(&types, a, b));
        self.missing = missing.iter().map(|k| key_text::key_text(&cols, k)).collect();
        let mut extra = std::mem::take(&mut self.raw_extra);
        extra.sort_by(|a, b| key_text::compare_keys(&types, a, b));
        self.extra = extra.iter().map(|k| key_text::key_text(&cols, k)).collect();
        let mut changed = std::mem::take(&mut self.raw_changed);
        changed.sort_by(|a, b| key_text::compare_keys(&types, &a.0, &b.0));
        self.changed = changed
            .into_iter()
            .map(|(k, columns)| ChangedRow { key: key_text::key_text(&cols, &k), columns })
            .collect();
    }
}

/// The key columns' names and source types, in key order.
fn key_columns(mapped: &MappedTable) -> Vec<(String, crate::model::PgType)> {
    mapped
        .source
        .match_columns()
        .iter()
        .filter_map(|&i| mapped.source.columns.get(i).map(|c| (c.name.clone(), c.pg_type.clone())))
        .collect()
}

fn cut(s: String) -> String {
    if s.chars().count() > MAX_VALUE_CHARS {
        format!("{}…", s.chars().take(MAX_VALUE_CHARS).collect::<String>())
    } else {
        s
    }
}

/// The whole validation.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    /// The plan's name.
    pub plan: String,
    /// Row checksums compared (false: row counts only).
    pub checksums: bool,
    /// A running `xdb sync` was detected; each comparison waited until the
    /// target had applied past the source snapshot, and mismatches were
    /// re-checked.
    pub live_sync: bool,
    pub tables: Vec<TableReport>,
    pub seconds: f64,
}

impl ValidationReport {
    /// True when every table holds the same data on both sides (after
    /// `--repair`, when it ran) and none failed to compare.
    pub fn is_equal(&self) -> bool {
        self.tables.iter().all(|t| matches!(t.status, TableStatus::Equal | TableStatus::Repaired))
    }

    /// True when some table could not be compared.
    pub fn has_errors(&self) -> bool {
        self.tables.iter().any(|t| t.status == TableStatus::Error)
    }

    /// True when some table still differs.
    pub fn has_differences(&self) -> bool {
        self.tables.iter().any(|t| t.status == TableStatus::Differs)
    }

    /// A table for people, then the differences of each table that has any.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let mode = if self.checksums { "row counts and checksums" } else { "row counts only" };
        let live = if self.live_sync { ", consistent with the running sync" } else { "" };
        let _ = writeln!(out, "xdb validate: plan {} ({mode}{live}), {:.1} s\n", self.plan, self.seconds);
        self.write_table(&mut out);
        for t in &self.tables {
            write_differences(&mut out, t);
        }
        for t in &self.tables {
            if t.policy_altered > 0 {
                let _ = writeln!(
                    out,
                    "\nnote: {}: {} source value(s) differ from the target by the plan's lossy policy (null/clamp) \
                     and were compared as the policy writes them",
                    t.table, t.policy_altered
                );
            }
            if let Some(n) = &t.note {
                let _ = writeln!(out, "\nnote: {}: {n}", t.table);
            }
        }
        let verdict = if self.has_errors() {
            "some tables could not be validated"
        } else if self.has_differences() {
            "the target differs from the source"
        } else if self.tables.iter().any(|t| t.status == TableStatus::Repaired) {
            "the target differed and was repaired; it now matches the source"
        } else {
            "the target matches the source"
        };
        let _ = writeln!(out, "\n{verdict}");
        out
    }

    /// The per-table summary, as an aligned table.
    fn write_table(&self, out: &mut String) {
        let headers = ["TABLE", "SOURCE ROWS", "TARGET ROWS", "MISSING", "EXTRA", "CHANGED", "STATUS"];
        let rows: Vec<[String; 7]> = self
            .tables
            .iter()
            .map(|t| {
                let status = match t.status {
                    TableStatus::Equal => "equal",
                    TableStatus::Differs => "DIFFERS",
                    TableStatus::Repaired => "repaired",
                    TableStatus::Error => "ERROR",
                };
                [
                    t.table.clone(),
                    t.source_rows.to_string(),
                    t.target_rows.to_string(),
                    t.missing_total.to_string(),
                    t.extra_total.to_string(),
                    t.changed_total.to_string(),
                    status.to_string(),
                ]
            })
            .collect();
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i == 0 || i == cells.len() - 1 {
                    let _ = write!(s, "{c:<w$}  ");
                } else {
                    let _ = write!(s, "{c:>w$}  ");
                }
            }
            s.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(headers.to_vec()));
        for r in &rows {
            let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
        }
    }
}

/// One table's error, differing counts, or listed keys (capped; `--format
/// json` lists all) and repair.
fn write_differences(out: &mut String, t: &TableReport) {
    if let Some(e) = &t.error {
        let _ = writeln!(out, "\n{}: could not validate: {e}", t.table);
    }
    if t.differences() == 0 && t.source_rows == t.target_rows {
        return;
    }
    if t.differences() == 0 {
        let _ = writeln!(out, "\n{}: row counts differ ({} vs {})", t.table, t.source_rows, t.target_rows);
        return;
    }
    let _ = writeln!(out, "\n{} (target {}):", t.table, t.target_table);
    let more = |listed: usize, total: u64| {
        let shown = listed.min(TEXT_LISTED) as u64;
        if shown < total {
            format!(" ({total}, first {shown} by key; --format json lists all)")
        } else {
            format!(" ({total})")
        }
    };
    for (keys, total, what) in
        [(&t.missing, t.missing_total, "missing on the target"), (&t.extra, t.extra_total, "extra on the target")]
    {
        if !keys.is_empty() {
            let _ = writeln!(out, "  {what}{}:", more(keys.len(), total));
            for k in keys.iter().take(TEXT_LISTED) {
                let _ = writeln!(out, "    {k}");
            }
        }
    }
    if !t.changed.is_empty() {
        let _ = writeln!(out, "  changed{}:", more(t.changed.len(), t.changed_total));
        for c in t.changed.iter().take(TEXT_LISTED) {
            let _ = writeln!(out, "    {}", c.key);
            for col in &c.columns {
                let _ = writeln!(out, "      {}: source {} | target {}", col.column, col.source, col.target);
            }
        }
    }
    if let Some(r) = &t.repair {
        let _ = writeln!(
            out,
            "  repair: {} ranges rewritten from the source ({} rows deleted, {} written); {} differences remain",
            r.chunks, r.rows_deleted, r.rows_written, r.remaining
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_table() {
        let r = ValidationReport { plan: "p".into(), checksums: true, live_sync: false, tables: vec![], seconds: 0.0 };
        assert!(r.is_equal());
        assert!(r.render_text().contains("matches the source"));
    }
}
