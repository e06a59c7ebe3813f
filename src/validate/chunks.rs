//! How a table is cut into primary-key ranges that select the same rows on
//! the source and on every target.
//!
//! A range predicate only selects the same rows on both sides when both
//! order the key alike. That holds for integers, for text compared byte-wise
//! (PostgreSQL `COLLATE "C"`, MySQL's binary utf8mb4 collations, SQLite's
//! BINARY) and for UUIDs (byte order, and the lower-case hex text of the
//! CHAR(36) mapping sorts the same way). A key is split on its longest
//! leading run of such columns — a partitioned table's `(city_id,
//! logdate)` on `city_id`: every row still falls in exactly one range, as
//! rows with the same leading values share one. A key that starts with any
//! other type (numeric stored as SQLite TEXT, timestamps, …) or a table
//! without a key is compared as one chunk. Pure: SQL text and bound values
//! only.

use crate::model::{pg_ident, PgType, Row, TableSchema, Value};
use crate::plan::naming::SqlDialect;

/// How a key column orders on every side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Int,
    Text,
    Uuid,
}

impl KeyKind {
    /// The kind of a key column type, `None` when ranges over it are unsafe.
    pub fn of(t: &PgType) -> Option<KeyKind> {
        match t {
            PgType::Int2 | PgType::Int4 | PgType::Int8 => Some(KeyKind::Int),
            PgType::Text | PgType::Varchar(_) => Some(KeyKind::Text),
            PgType::Uuid => Some(KeyKind::Uuid),
            _ => None,
        }
    }

    /// A key value from its PostgreSQL text form.
    pub fn value_from_text(self, s: &str) -> Option<Value> {
        match self {
            KeyKind::Int => s.parse().ok().map(Value::Int8),
            KeyKind::Text => Some(Value::Text(s.to_string())),
            KeyKind::Uuid => uuid::Uuid::parse_str(s).ok().map(Value::Uuid),
        }
    }
}

/// The key a table is split on: column positions and their kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitKey {
    pub columns: Vec<usize>,
    pub kinds: Vec<KeyKind>,
}

impl SplitKey {
    /// The primary key's longest leading run of columns that order alike
    /// everywhere; `None` when its first column does not (or no key).
    pub fn of(table: &TableSchema) -> Option<SplitKey> {
        let (columns, kinds): (Vec<usize>, Vec<KeyKind>) =
            table.primary_key.iter().map_while(|&i| Some((i, KeyKind::of(&table.columns.get(i)?.pg_type)?))).unzip();
        (!columns.is_empty()).then_some(SplitKey { columns, kinds })
    }

    /// Whether the ranges are on part of the primary key only.
    pub fn is_prefix_of(&self, table: &TableSchema) -> bool {
        self.columns.len() < table.primary_key.len()
    }
}

/// A key bound: one value per split-key column.
pub type KeyBound = Vec<Value>;

/// A half-open key range `[lo, hi)`; a missing bound is open. Every row
/// falls in exactly one chunk of a table's list.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Position in the table's list (for messages).
    pub number: usize,
    pub lo: Option<KeyBound>,
    pub hi: Option<KeyBound>,
}

impl Chunk {
    /// The whole table.
    pub fn whole() -> Chunk {
        Chunk { number: 0, lo: None, hi: None }
    }

    /// A short description: `id >= 10000 AND id < 20000`.
    pub fn describe(&self, table: &TableSchema, key: Option<&SplitKey>) -> String {
        let Some(key) = key else { return "whole table".into() };
        let cols: Vec<&str> =
            key.columns.iter().map(|&i| table.columns.get(i).map(|c| c.name.as_str()).unwrap_or("?")).collect();
        let show = |b: &KeyBound| b.iter().map(show_value).collect::<Vec<_>>().join(", ");
        let c = if cols.len() == 1 { cols[0].to_string() } else { format!("({})", cols.join(", ")) };
        let wrap = |s: String| if cols.len() == 1 { s } else { format!("({s})") };
        match (&self.lo, &self.hi) {
            (None, None) => "whole table".into(),
            (Some(lo), None) => format!("{c} >= {}", wrap(show(lo))),
            (None, Some(hi)) => format!("{c} < {}", wrap(show(hi))),
            (Some(lo), Some(hi)) => format!("{c} >= {} AND {c} < {}", wrap(show(lo)), wrap(show(hi))),
        }
    }
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Int8(i) => i.to_string(),
        Value::Text(s) => format!("'{s}'"),
        Value::Uuid(u) => format!("'{u}'"),
        other => format!("{other:?}"),
    }
}

/// Chunks from sorted boundaries: `(-∞, b1), [b1, b2), …, [bn, +∞)`.
pub fn chunks_from_bounds(bounds: Vec<KeyBound>) -> Vec<Chunk> {
    if bounds.is_empty() {
        return vec![Chunk::whole()];
    }
    let mut out = Vec::with_capacity(bounds.len() + 1);
    let mut lo: Option<KeyBound> = None;
    for (n, b) in bounds.into_iter().enumerate() {
        out.push(Chunk { number: n, lo: lo.take(), hi: Some(b.clone()) });
        lo = Some(b);
    }
    out.push(Chunk { number: out.len(), lo, hi: None });
    out
}

/// Boundaries that split integer keys `[min, max]` into ranges of about
/// `chunk_rows` of `rows` rows, assuming they spread evenly.
pub fn int_bounds(min: i64, max: i64, rows: u64, chunk_rows: u64) -> Vec<KeyBound> {
    let span = (max as i128 - min as i128 + 1).max(1);
    let parts = (rows.div_ceil(chunk_rows.max(1)) as i128).clamp(1, span);
    let width = (span + parts - 1) / parts;
    (1..parts)
        .map(|i| min as i128 + i * width)
        .filter(|&b| b <= max as i128)
        .map(|b| vec![Value::Int8(b as i64)])
        .collect()
}

/// Splits a bounded single-integer-key range in two halves, `None` when it
/// is open or holds one key.
pub fn bisect(chunk: &Chunk) -> Option<(Chunk, Chunk)> {
    let (Some(lo), Some(hi)) = (&chunk.lo, &chunk.hi) else { return None };
    let ([Value::Int8(lo)], [Value::Int8(hi)]) = (lo.as_slice(), hi.as_slice()) else { return None };
    if (*hi as i128) - (*lo as i128) < 2 {
        return None;
    }
    let mid = ((*lo as i128 + *hi as i128) / 2) as i64;
    let mid = vec![Value::Int8(mid)];
    Some((
        Chunk { number: chunk.number, lo: chunk.lo.clone(), hi: Some(mid.clone()) },
        Chunk { number: chunk.number, lo: Some(mid), hi: chunk.hi.clone() },
    ))
}

/// A PostgreSQL literal for a key value (COPY takes no parameters).
/// Assumes `standard_conforming_strings = on`, which the reader sets.
fn pg_literal(v: &Value) -> String {
    match v {
        Value::Int2(i) => i.to_string(),
        Value::Int4(i) => i.to_string(),
        Value::Int8(i) => i.to_string(),
        Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Uuid(u) => format!("'{u}'::uuid"),
        _ => "NULL".into(),
    }
}

/// The key expression of one column on a PostgreSQL side: text compared
/// byte-wise, like the MySQL and SQLite targets compare it.
fn pg_key_expr(name: &str, kind: KeyKind) -> String {
    match kind {
        KeyKind::Text => format!("({} COLLATE \"C\")", pg_ident(name)),
        _ => pg_ident(name),
    }
}

/// The key expression of the split key on a PostgreSQL side, `(a, b)` for
/// composite keys.
pub fn pg_key_tuple(table: &TableSchema, key: &SplitKey) -> String {
    let exprs: Vec<String> = key
        .columns
        .iter()
        .zip(&key.kinds)
        .map(|(&i, &k)| pg_key_expr(table.columns.get(i).map(|c| c.name.as_str()).unwrap_or(""), k))
        .collect();
    if exprs.len() == 1 {
        exprs.into_iter().next().unwrap_or_default()
    } else {
        format!("({})", exprs.join(", "))
    }
}

/// The source-side condition of a chunk with literals inlined (`None`: the
/// whole table).
pub fn source_predicate(table: &TableSchema, key: Option<&SplitKey>, chunk: &Chunk) -> Option<String> {
    let key = key?;
    let k = pg_key_tuple(table, key);
    let lit = |b: &KeyBound| {
        let items: Vec<String> = b.iter().map(pg_literal).collect();
        if items.len() == 1 {
            items.into_iter().next().unwrap_or_default()
        } else {
            format!("ROW({})", items.join(", "))
        }
    };
    let mut parts = Vec::new();
    if let Some(lo) = &chunk.lo {
        parts.push(format!("{k} >= {}", lit(lo)));
    }
    if let Some(hi) = &chunk.hi {
        parts.push(format!("{k} < {}", lit(hi)));
    }
    (!parts.is_empty()).then(|| parts.join(" AND "))
}

/// A target-side condition: SQL with placeholders, and for each
/// placeholder in order the key bound it binds and the key position
/// (0-based index into the split key) of the value.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetPredicate {
    pub sql: String,
    /// (bound is the upper one, key position) per placeholder.
    pub params: Vec<(bool, usize)>,
}

/// The target-side condition of a chunk. `placeholder(n, column)` spells the
/// n-th (1-based) parameter bound to table column `column`.
pub fn target_predicate(
    dialect: SqlDialect,
    table: &TableSchema,
    key: Option<&SplitKey>,
    chunk: &Chunk,
    placeholder: &dyn Fn(usize, usize) -> String,
) -> Option<TargetPredicate> {
    let key = key?;
    let names: Vec<String> = key
        .columns
        .iter()
        .zip(&key.kinds)
        .map(|(&i, &kind)| {
            let name = table.columns.get(i).map(|c| c.name.as_str()).unwrap_or("");
            match (dialect, kind) {
                (SqlDialect::Postgres, KeyKind::Text) => format!("({} COLLATE \"C\")", dialect.ident(name)),
                _ => dialect.ident(name),
            }
        })
        .collect();
    let tuple = |v: &[String]| if v.len() == 1 { v[0].clone() } else { format!("({})", v.join(", ")) };
    let k = tuple(&names);
    let mut n = 0usize;
    let mut params = Vec::new();
    let mut parts = Vec::new();
    for (upper, bound) in [(false, &chunk.lo), (true, &chunk.hi)] {
        if bound.is_some() {
            let phs: Vec<String> = key
                .columns
                .iter()
                .enumerate()
                .map(|(pos, &col)| {
                    n += 1;
                    params.push((upper, pos));
                    placeholder(n, col)
                })
                .collect();
            let op = if upper { "<" } else { ">=" };
            parts.push(format!("{k} {op} {}", tuple(&phs)));
        }
    }
    (!parts.is_empty()).then(|| TargetPredicate { sql: parts.join(" AND "), params })
}

/// A full-width row holding a bound's values at the key's column positions
/// (NULL elsewhere), for the mapping's parameter converters.
pub fn bound_row(width: usize, key: &SplitKey, bound: &KeyBound) -> Row {
    let mut row = vec![Value::Null; width];
    for (pos, &col) in key.columns.iter().enumerate() {
        if let (Some(slot), Some(v)) = (row.get_mut(col), bound.get(pos)) {
            *slot = v.clone();
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, ReplicaIdentity, TableName};

    fn table(types: &[(&str, PgType)], pk: Vec<usize>) -> TableSchema {
        TableSchema {
            oid: 1,
            name: TableName::new("public", "t"),
            columns: types.iter().map(|(n, t)| Column { nullable: false, ..Column::new(*n, t.clone()) }).collect(),
            replica_identity: ReplicaIdentity::Default,
            primary_key: pk,
            generated: Vec::new(),
        }
    }

    #[test]
    fn split_keys() {
        let t = table(&[("id", PgType::Int8), ("v", PgType::Text)], vec![0]);
        assert_eq!(SplitKey::of(&t), Some(SplitKey { columns: vec![0], kinds: vec![KeyKind::Int] }));
        let n = table(&[("id", PgType::Numeric { precision: None, scale: None })], vec![0]);
        assert_eq!(SplitKey::of(&n), None);
        assert_eq!(SplitKey::of(&table(&[("a", PgType::Int4)], vec![])), None);
    }

    #[test]
    fn chunks_cover_everything_once() {
        let c = chunks_from_bounds(vec![vec![Value::Int8(10)], vec![Value::Int8(20)]]);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].lo, None);
        assert_eq!(c[0].hi, c[1].lo);
        assert_eq!(c[1].hi, c[2].lo);
        assert_eq!(c[2].hi, None);
        assert_eq!(chunks_from_bounds(vec![]), vec![Chunk::whole()]);
    }

    #[test]
    fn integer_splits() {
        let b = int_bounds(1, 100, 100, 10);
        assert_eq!(b.len(), 9);
        assert_eq!(b[0], vec![Value::Int8(11)]);
        assert!(int_bounds(5, 5, 1000, 10).is_empty());
        assert_eq!(int_bounds(i64::MIN, i64::MAX, 30, 10).len(), 2);
        let c = Chunk { number: 3, lo: Some(vec![Value::Int8(0)]), hi: Some(vec![Value::Int8(10)]) };
        let (a, z) = bisect(&c).unwrap();
        assert_eq!((a.hi.clone(), z.lo.clone()), (Some(vec![Value::Int8(5)]), Some(vec![Value::Int8(5)])));
        assert_eq!(bisect(&Chunk { number: 0, lo: None, hi: Some(vec![Value::Int8(1)]) }), None);
        let one = Chunk { number: 0, lo: Some(vec![Value::Int8(1)]), hi: Some(vec![Value::Int8(2)]) };
        assert_eq!(bisect(&one), None);
    }

    #[test]
    fn predicates() {
        let t = table(&[("id", PgType::Int8), ("code", PgType::Text), ("v", PgType::Text)], vec![0, 1]);
        let key = SplitKey::of(&t).unwrap();
        let chunk = Chunk {
            number: 1,
            lo: Some(vec![Value::Int8(1), Value::Text("it's".into())]),
            hi: Some(vec![Value::Int8(2), Value::Text("a".into())]),
        };
        assert_eq!(
            source_predicate(&t, Some(&key), &chunk).unwrap(),
            "(\"id\", (\"code\" COLLATE \"C\")) >= ROW(1, 'it''s') AND (\"id\", (\"code\" COLLATE \"C\")) < ROW(2, 'a')"
        );
        let p = target_predicate(SqlDialect::Mysql, &t, Some(&key), &chunk, &|_, _| "?".into()).unwrap();
        assert_eq!(p.sql, "(`id`, `code`) >= (?, ?) AND (`id`, `code`) < (?, ?)");
        assert_eq!(p.params, vec![(false, 0), (false, 1), (true, 0), (true, 1)]);
        let one = table(&[("id", PgType::Int4)], vec![0]);
        let k1 = SplitKey::of(&one).unwrap();
        let c = Chunk { number: 0, lo: None, hi: Some(vec![Value::Int8(5)]) };
        let p = target_predicate(SqlDialect::Postgres, &one, Some(&k1), &c, &|n, _| format!("${n}")).unwrap();
        assert_eq!(p.sql, "\"id\" < $1");
        assert_eq!(source_predicate(&one, Some(&k1), &c).unwrap(), "\"id\" < 5");
        assert_eq!(source_predicate(&one, None, &c), None);
        assert_eq!(c.describe(&one, Some(&k1)), "id < 5");
        assert_eq!(bound_row(2, &key, &vec![Value::Int8(1), Value::Text("x".into())])[1], Value::Text("x".into()));
    }
}
