//! Server-side range digests for a PostgreSQL target (invariant *server
//! digest implies canonical equality*).
//!
//! When a table's compared columns have the same PostgreSQL type on both
//! sides, each server can checksum its own key ranges: both print a value
//! of the same type as the same text when both sessions use the same output
//! settings, so equal row texts mean equal values and therefore equal
//! canonical forms. A range is then compared by two aggregate queries (row
//! count and the sum of a 64-bit hash of each row, [`row_hash`]) instead of
//! shipping and canonicalising every row; only a range whose digests differ
//! goes the row-by-row path, which names the differing rows exactly as
//! before. The converse does not need to hold: a difference in text only
//! (json spacing, another PostgreSQL version's float output) just sends the
//! range to the row-by-row path, which decides.
//!
//! A table goes the row-by-row path for every range when any compared
//! column differs in type (`format_type`, so typmods like numeric scale and
//! varchar length count), is not a built-in type whose text output this
//! module vouches for ([`SAFE_TYPES`], and arrays of them), is generated on
//! either side, or has another name on the target; and when the plan reads
//! the source table as `ONLY` (inheritance). A PostgreSQL target never
//! alters a value a PostgreSQL source can hold (the only lossy case is a NUL
//! in text, which a PostgreSQL source cannot store), so the lossy policy
//! has nothing to count on this path.

use tokio_postgres::Client;

use super::chunks::{self, Chunk, SplitKey};
use super::ValidateError;
use crate::mapping::MappedTable;
use crate::model::{pg_ident, TableName};

/// Built-in types whose text output depends on nothing but the value and
/// the settings [`pin_settings`] makes equal on both sessions. Left out on
/// purpose: `money` (lc_monetary), `xml` (xmloption), enums, domains,
/// composites and extension types (their output is whatever their code
/// prints, possibly different between installations).
const SAFE_TYPES: &[&str] = &[
    "bool",
    "int2",
    "int4",
    "int8",
    "float4",
    "float8",
    "numeric",
    "text",
    "varchar",
    "bpchar",
    "char",
    "bytea",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
    "json",
    "jsonb",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "bit",
    "varbit",
    "oid",
];

/// The session settings that change how the safe types print. The target
/// session's values (the row-by-row reader set some of them and parses
/// what they give) are copied onto the source session.
const OUTPUT_SETTINGS: &[&str] = &["DateStyle", "IntervalStyle", "TimeZone", "extra_float_digits", "bytea_output"];

/// How one table's ranges are digested on each server.
#[derive(Debug, Clone)]
pub struct ServerDigest {
    source_from: String,
    target_from: String,
    /// The int8 hash of a row, the same expression on both sides.
    row_hash: String,
}

/// One column as a catalog describes it.
#[derive(Debug, Clone, PartialEq)]
struct CatalogColumn {
    name: String,
    type_text: String,
    /// The type's (or an array's element type's) name, when it is a
    /// built-in (`pg_catalog`) type.
    builtin: Option<String>,
    generated: bool,
}

const COLUMNS_SQL: &str = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
       CASE WHEN b.typnamespace = 'pg_catalog'::regnamespace AND b.typtype = 'b' THEN b.typname::text END, \
       a.attgenerated <> '' \
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
       JOIN pg_type b ON b.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END \
     WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";

async fn columns(client: &Client, table: &str) -> Result<Vec<CatalogColumn>, tokio_postgres::Error> {
    let rows = client.query(COLUMNS_SQL, &[&table]).await?;
    Ok(rows
        .iter()
        .map(|r| CatalogColumn { name: r.get(0), type_text: r.get(1), builtin: r.get(2), generated: r.get(3) })
        .collect())
}

/// Whether `mapped` can be digested on the servers: `Ok(digest)`, or
/// `Err(reason)` naming the column that keeps it on the row-by-row path.
pub async fn choose(
    source: &Client,
    target: &Client,
    mapped: &MappedTable,
    only: &[TableName],
) -> Result<ServerDigest, String> {
    let name = &mapped.source.name;
    if only.contains(name) {
        return Err("the plan reads it as ONLY (inheritance)".into());
    }
    let source_from = name.pg_quoted();
    let target_from = mapped.target_ident.clone();
    let src = columns(source, &source_from).await.map_err(|e| format!("reading its source columns: {e}"))?;
    let tgt = columns(target, &target_from).await.map_err(|e| format!("reading its target columns: {e}"))?;
    let mut row: Vec<(String, String, bool)> = Vec::with_capacity(mapped.columns.len());
    for (i, col) in mapped.columns.iter().enumerate() {
        let source_name = mapped.source.columns.get(i).map(|c| c.name.as_str()).unwrap_or("");
        if col.name != source_name {
            return Err(format!("column {source_name} has another name on the target ({})", col.name));
        }
        let s =
            src.iter().find(|c| c.name == col.name).ok_or_else(|| format!("column {} not on the source", col.name))?;
        let t =
            tgt.iter().find(|c| c.name == col.name).ok_or_else(|| format!("column {} not on the target", col.name))?;
        if s.type_text != t.type_text {
            return Err(format!(
                "column {} is {} on the source and {} on the target",
                col.name, s.type_text, t.type_text
            ));
        }
        if s.generated || t.generated {
            return Err(format!("column {} is generated", col.name));
        }
        match &s.builtin {
            Some(b) if SAFE_TYPES.contains(&b.as_str()) => {}
            _ => {
                return Err(format!("column {} has type {}, whose text form is not vouched for", col.name, s.type_text))
            }
        }
        row.push((pg_ident(&col.name), s.builtin.clone().unwrap_or_default(), s.type_text.ends_with("[]")));
    }
    if row.is_empty() {
        return Err("it has no columns".into());
    }
    Ok(ServerDigest { source_from, target_from, row_hash: row_hash(&row) })
}

/// Makes the source session print values as the target session does.
pub async fn pin_settings(source: &Client, target: &Client) -> Result<(), ValidateError> {
    let read: Vec<String> = OUTPUT_SETTINGS.iter().map(|s| format!("current_setting('{s}')")).collect();
    let row = target.query_one(&format!("SELECT {}", read.join(", ")), &[]).await.map_err(|e| {
        ValidateError::TargetSql { context: "reading the session's output settings".into(), source: e.into() }
    })?;
    let mut set = Vec::new();
    for (i, name) in OUTPUT_SETTINGS.iter().enumerate() {
        let v: String = row.get(i);
        set.push(format!("set_config('{name}', '{}', false)", v.replace('\'', "''")));
    }
    source.batch_execute(&format!("SELECT {}", set.join(", "))).await.map_err(|e| ValidateError::SourceSql {
        context: "copying the target's output settings to the source session".into(),
        source: e,
    })
}

/// The hash of a row: columns whose equality is identity of the stored
/// value hashed by their own hash functions (no text output to build:
/// integers, bool, uuid, timestamps, text and varchar compared byte-wise),
/// each with a seed of its own (its position) so values swapped between
/// columns change it, NULL as the seed; the other columns by the hash of
/// their text (numeric keeps its scale, float its -0, jsonb its number
/// spelling there), arrays and char(n) in one `ROW(…)` text. Combined by
/// xor.
fn row_hash(columns: &[(String, String, bool)]) -> String {
    let mut parts = Vec::new();
    let mut texts = Vec::new();
    for (i, (c, base, array)) in columns.iter().enumerate() {
        let seed = i + 1;
        let h = match (base.as_str(), array) {
            (_, true) => None,
            ("int2", _) => Some(format!("hashint2extended({c}, {seed})")),
            ("int4", _) => Some(format!("hashint4extended({c}, {seed})")),
            ("int8", _) => Some(format!("hashint8extended({c}, {seed})")),
            ("bool", _) => Some(format!("hashint4extended({c}::int4, {seed})")),
            ("uuid", _) => Some(format!("uuid_hash_extended({c}, {seed})")),
            ("text" | "varchar", _) => Some(format!("hashtextextended({c}::text COLLATE \"C\", {seed})")),
            ("timestamp", _) => Some(format!("timestamp_hash_extended({c}, {seed})")),
            // UTC has no repeated local times: one instant, one timestamp.
            ("timestamptz", _) => Some(format!("timestamp_hash_extended({c} AT TIME ZONE 'UTC', {seed})")),
            // The text cast of char(n) drops its padding: in the ROW text.
            ("bpchar", _) => None,
            // The others' text cast is their output (inet's adds the mask),
            // which tells values apart; one hash each is cheaper than the
            // ROW text.
            _ => Some(format!("hashtextextended({c}::text COLLATE \"C\", {seed})")),
        };
        match h {
            Some(h) => parts.push(format!("coalesce({h}, {seed})")),
            None => texts.push(c.as_str()),
        }
    }
    if !texts.is_empty() {
        // hashtextextended: 64 bits of PostgreSQL's own hash of the bytes
        // (COLLATE "C": deterministic), a third cheaper than md5. A server
        // of other byte order hashes otherwise, which only sends every range
        // row by row.
        parts.push(format!("hashtextextended(ROW({})::text COLLATE \"C\", 0)", texts.join(", ")));
    }
    parts.join(" # ")
}

/// A side's digest of a range: rows and the sum of their 64-bit hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeDigest {
    pub rows: u64,
    pub sum: String,
}

impl ServerDigest {
    fn sql(&self, from: &str, pred: Option<&str>) -> String {
        // sum(bigint) is numeric: no overflow, exact.
        let mut sql = format!("SELECT count(*), coalesce(sum({}), 0)::text FROM {from}", self.row_hash);
        if let Some(p) = pred {
            sql.push_str(" WHERE ");
            sql.push_str(p);
        }
        sql
    }

    /// Both sides' digests of `chunk`, computed by the servers at once.
    pub async fn digests(
        &self,
        source: &Client,
        target: &Client,
        mapped: &MappedTable,
        key: Option<&SplitKey>,
        chunk: &Chunk,
    ) -> Result<(RangeDigest, RangeDigest), ValidateError> {
        // The target has the source's column names (checked in `choose`), so
        // the literal predicate selects the same range there.
        let pred = chunks::source_predicate(&mapped.source, key, chunk);
        let (ssql, tsql) = (self.sql(&self.source_from, pred.as_deref()), self.sql(&self.target_from, pred.as_deref()));
        let what = || format!("digesting {} ({})", mapped.source.name, chunk.describe(&mapped.source, key));
        let (s, t) = tokio::join!(source.query_one(ssql.as_str(), &[]), target.query_one(tsql.as_str(), &[]));
        let s = s.map_err(|e| ValidateError::SourceSql { context: what(), source: e })?;
        let t = t.map_err(|e| ValidateError::TargetSql { context: what(), source: e.into() })?;
        let d = |r: &tokio_postgres::Row| RangeDigest { rows: r.get::<_, i64>(0).max(0) as u64, sum: r.get(1) };
        Ok((d(&s), d(&t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_hashes() {
        let cols = |v: &[(&str, &str, bool)]| -> Vec<(String, String, bool)> {
            v.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), *c)).collect()
        };
        let h = row_hash(&cols(&[
            ("\"id\"", "int8", false),
            ("\"doc\"", "jsonb", false),
            ("\"at\"", "timestamptz", false),
        ]));
        assert_eq!(
            h,
            "coalesce(hashint8extended(\"id\", 1), 1) # coalesce(hashtextextended(\"doc\"::text COLLATE \"C\", 2), 2) \
             # coalesce(timestamp_hash_extended(\"at\" AT TIME ZONE 'UTC', 3), 3)"
        );
        // Arrays of hashable types go by their text.
        assert_eq!(row_hash(&cols(&[("a", "int4", true)])), "hashtextextended(ROW(a)::text COLLATE \"C\", 0)");
        let d = ServerDigest { source_from: "s".into(), target_from: "t".into(), row_hash: "h".into() };
        assert_eq!(
            d.sql("s", Some("\"id\" < 5")),
            "SELECT count(*), coalesce(sum(h), 0)::text FROM s WHERE \"id\" < 5"
        );
        assert!(!SAFE_TYPES.contains(&"money") && !SAFE_TYPES.contains(&"xml"));
    }
}
