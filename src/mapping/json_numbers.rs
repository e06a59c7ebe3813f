//! JSON numbers MySQL's `JSON` type cannot keep. MySQL parses a JSON
//! document and stores each number as a 64-bit integer or a double, so a
//! number with more digits than a double holds (`1.000000000000000000001`,
//! an integer beyond 2^64, `1e400`) comes back as another number. Such a
//! value is lossy and follows the column's policy (invariant *lossy
//! values*); `clamp` writes the double MySQL would store. MariaDB's `JSON`
//! is text and keeps every number as written.

/// The document with every number MySQL would change replaced by the value
/// it would store, or `None` when every number survives; `Some(None)` when
/// a number has no such value (out of the double range).
pub fn lossy_numbers(doc: &str) -> Option<Option<String>> {
    let mut out = String::with_capacity(doc.len());
    let mut changed = false;
    let mut last = 0;
    for (start, end) in number_spans(doc) {
        if let Some(stored) = stored_number(&doc[start..end]) {
            changed = true;
            out.push_str(&doc[last..start]);
            match stored {
                Some(s) => out.push_str(&s),
                // Out of range: nothing to clamp to.
                None => return Some(None),
            }
            last = end;
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&doc[last..]);
    Some(Some(out))
}

/// The text of every number of a JSON document, in document order (the
/// order a depth-first walk of its parsed form meets them): a number as
/// written, which a parser reading it as a double would not keep.
pub fn number_texts(doc: &str) -> Vec<&str> {
    number_spans(doc).map(|(start, end)| &doc[start..end]).collect()
}

/// Byte spans of the numbers of a JSON document (strings skipped).
fn number_spans(doc: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let b = doc.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    i += 1;
                    while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                        i += 1;
                    }
                    return Some((start, i));
                }
                _ => i += 1,
            }
        }
        None
    })
}

/// `None` when MySQL keeps `n` as written; else the number it stores
/// (`Some(None)`: none, out of range).
fn stored_number(n: &str) -> Option<Option<String>> {
    let integer = !n.contains(['.', 'e', 'E']);
    if integer && (n.parse::<i64>().is_ok() || n.parse::<u64>().is_ok()) {
        return None;
    }
    let f: f64 = n.parse().ok()?;
    if !f.is_finite() {
        return Some(None);
    }
    let back = format!("{f:e}");
    if normalize(n) == normalize(&back) {
        None
    } else {
        let mut v = Vec::new();
        super::text::write_f64(&mut v, f);
        Some(Some(String::from_utf8_lossy(&v).into_owned()))
    }
}

/// (negative, significant digits, exponent of the first digit): equal for
/// equal decimal values however written.
fn normalize(n: &str) -> (bool, String, i64) {
    let (neg, n) = match n.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, n),
    };
    let (mant, exp) = match n.find(['e', 'E']) {
        Some(p) => (&n[..p], n[p + 1..].parse::<i64>().unwrap_or(0)),
        None => (n, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let digits = format!("{int}{frac}");
    let lead = digits.len() - digits.trim_start_matches('0').len();
    let sig = digits.trim_start_matches('0').trim_end_matches('0').to_string();
    if sig.is_empty() {
        return (false, String::new(), 0);
    }
    (neg, sig, exp + int.len() as i64 - lead as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_a_double_keeps_pass() {
        for doc in [r#"{"a": 0.1, "b": [1.50, -3, 1e3, 18446744073709551615]}"#, r#"{"s": "1.00000000000000000001"}"#] {
            assert_eq!(lossy_numbers(doc), None, "{doc}");
        }
    }

    #[test]
    fn numbers_beyond_a_double_are_found() {
        assert_eq!(
            lossy_numbers(r#"{"a": 1.000000000000000000001, "b": 2}"#),
            Some(Some(r#"{"a": 1.0, "b": 2}"#.to_string()))
        );
        assert_eq!(lossy_numbers("[123456789012345678901234567890]"), Some(Some("[1.2345678901234568e29]".into())));
        assert_eq!(lossy_numbers("[1e400]"), Some(None));
    }
}

#[cfg(test)]
mod policy_tests {
    use crate::mapping::{map_table, MappingOverrides, MappingRules, TargetKind};
    use crate::model::{Column, PgType, ReplicaIdentity, TableName, TableSchema, Value};
    use crate::plan::{LossyPolicy, Mapping};

    fn table() -> TableSchema {
        let col = |name: &str, pg_type: PgType| Column::new(name, pg_type);
        TableSchema {
            oid: 1,
            name: TableName::new("public", "docs"),
            columns: vec![col("id", PgType::Int8), col("doc", PgType::Jsonb)],
            replica_identity: ReplicaIdentity::Default,
            primary_key: vec![0],
            generated: Vec::new(),
        }
    }

    /// A number a double cannot keep follows the policy on MySQL; MariaDB
    /// keeps the text.
    #[test]
    fn policy_applies_on_mysql_only() {
        let row = vec![Value::Int8(1), Value::Json(r#"{"n": 0.30000000000000000001}"#.into())];
        let mysql = TargetKind::mysql_from_version_string("8.0.36");
        let mt = map_table(&MappingRules::builtin(&mysql), &table(), &MappingOverrides::default()).unwrap();
        let e = mt.prepare(1, &row).unwrap_err().to_string();
        assert!(e.contains("public.docs.doc (key id=1)") && e.contains("more digits than MySQL's JSON keeps"), "{e}");
        let m = Mapping { policy: Some(LossyPolicy::Clamp), ..Default::default() };
        let mt = map_table(&MappingRules::builtin(&mysql), &table(), &MappingOverrides::from_plan(&m)).unwrap();
        assert_eq!(mt.prepare(1, &row).unwrap().into_owned(), Value::Json(r#"{"n": 0.3}"#.into()));
        let maria = TargetKind::mysql_from_version_string("10.11.6-MariaDB");
        let mt = map_table(&MappingRules::builtin(&maria), &table(), &MappingOverrides::default()).unwrap();
        assert_eq!(mt.prepare(1, &row).unwrap().into_owned(), row[1]);
    }
}
