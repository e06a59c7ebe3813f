use std::fmt;

use super::PgType;

/// A schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName { schema: schema.into(), name: name.into() }
    }

    /// Parses `schema.table` or `table` (schema `public`). Double quotes
    /// around either part keep dots and case: `"My.Schema"."T"`.
    pub fn parse(s: &str) -> Option<TableName> {
        let parts = split_qualified(s, '"')?;
        match parts.as_slice() {
            [t] => Some(TableName::new("public", t.clone())),
            [s, t] => Some(TableName::new(s.clone(), t.clone())),
            _ => None,
        }
    }

    /// The name quoted for PostgreSQL SQL: `"schema"."table"`.
    pub fn pg_quoted(&self) -> String {
        format!("{}.{}", pg_ident(&self.schema), pg_ident(&self.name))
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Quotes an identifier for PostgreSQL, doubling embedded quotes.
pub fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `a.b`, `"a"."b"` (or with `quote` = '`', MySQL's `` `a`.`b` ``) as its
/// parts: quotes removed, a doubled one inside quotes kept as one; `None`
/// for an empty part or an unclosed quote.
pub fn split_qualified(s: &str, quote: char) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut quoted = false;
    let mut had_quote = false;
    while let Some(c) = chars.next() {
        match c {
            c if c == quote && quoted && chars.peek() == Some(&quote) => {
                chars.next();
                cur.push(quote);
            }
            c if c == quote => {
                quoted = !quoted;
                had_quote = true;
            }
            '.' if !quoted => {
                if cur.is_empty() && !had_quote {
                    return None;
                }
                parts.push(std::mem::take(&mut cur));
                had_quote = false;
            }
            c => cur.push(c),
        }
    }
    if quoted || (cur.is_empty() && !had_quote) {
        return None;
    }
    parts.push(cur);
    Some(parts)
}

/// How a table identifies old rows in UPDATE/DELETE (`relreplident`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// The primary key (`d`).
    Default,
    /// Nothing (`n`): updates and deletes cannot be matched.
    Nothing,
    /// The whole old row (`f`).
    Full,
    /// A chosen unique index (`i`).
    Index,
}

impl ReplicaIdentity {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'd' => ReplicaIdentity::Default,
            b'n' => ReplicaIdentity::Nothing,
            b'f' => ReplicaIdentity::Full,
            b'i' => ReplicaIdentity::Index,
            _ => return None,
        })
    }
}

/// One column of a source table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub pg_type: PgType,
    /// The type OID as the source reports it (for decoding values).
    pub type_oid: u32,
    pub typmod: i32,
    pub nullable: bool,
    /// Part of the replica identity key (primary key or chosen index).
    pub is_key: bool,
    /// The column's default expression as PostgreSQL prints it, if any.
    pub default: Option<String>,
    /// `GENERATED … AS IDENTITY` or a serial (default from a sequence it owns).
    pub identity: bool,
    /// A stored generated column of the source moved as a plain column
    /// (`mapping.generated: source`); `None` for every other column.
    pub carried: Option<CarriedGenerated>,
    /// Read by a generated column the stream recomputes on the source
    /// (before PostgreSQL 18, `mapping.generated: source`).
    pub feeds_generated: bool,
}

/// `mapping.generated: source`: a stored generated column that moves as a
/// plain column whose values come from the source.
///
/// PostgreSQL 18 publishes stored generated columns when the publication
/// says `publish_generated_columns = stored`; before 18 the stream
/// recomputes them on the source from each change (`generated_recompute`).
/// The copy reads them like any column. The catalog reader puts them among
/// the table's columns, in their place, with their expression as the
/// column's default (never translated: a column added while streaming then
/// gets the source's values in the rows the target already has); copy,
/// stream and `validate` treat them as the plain columns they become on the
/// target: kept current by xdb while it streams, computed by no one after
/// the switch (`check` and `schema` say so per column). Virtual generated
/// columns (18) are never published and stay generated columns of the
/// target (`mapping::generated`).
///
/// Read from the catalog with the table and carried with the column
/// through every later shape of it (a Relation message carries no
/// expression; the writer keeps it with the column's default).
#[derive(Debug, Clone, PartialEq)]
pub struct CarriedGenerated {
    /// The expression as `pg_get_expr` prints it.
    pub expression: String,
    /// True before PostgreSQL 18: the stream recomputes the values on the
    /// source; false on 18, which publishes them.
    pub recomputed: bool,
}

/// A `GENERATED ALWAYS AS (…) STORED` column of a source table.
///
/// pgoutput does not publish these (before PostgreSQL 18, and on 18 only
/// when the publication asks), so they are not among
/// [`TableSchema::columns`]: the copy and the stream carry exactly the
/// columns the stream will. The target computes them itself
/// (`mapping::generated`).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedColumn {
    pub name: String,
    pub pg_type: PgType,
    pub type_oid: u32,
    pub typmod: i32,
    /// The expression as `pg_get_expr` prints it.
    pub expression: String,
}

impl Column {
    /// A nullable, non-key column of `pg_type` with no default, as a test or
    /// a synthetic table spells one (catalog columns come from the catalog).
    pub fn new(name: impl Into<String>, pg_type: PgType) -> Column {
        Column {
            name: name.into(),
            pg_type,
            type_oid: 0,
            typmod: -1,
            nullable: true,
            is_key: false,
            default: None,
            identity: false,
            carried: None,
            feeds_generated: false,
        }
    }
}

/// The shape of a source table as known at some point of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// The relation OID on the source.
    pub oid: u32,
    pub name: TableName,
    pub columns: Vec<Column>,
    pub replica_identity: ReplicaIdentity,
    /// Positions of the primary-key columns, in key order (empty: no key).
    pub primary_key: Vec<usize>,
    /// Stored generated columns (from the catalog; a Relation message has
    /// none).
    pub generated: Vec<GeneratedColumn>,
}

impl TableSchema {
    /// Position of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The same table with only the columns named in `keep` (in table
    /// order); `None` when a primary-key column would be lost.
    pub fn restricted_to(&self, keep: &[String]) -> Option<TableSchema> {
        let kept: Vec<usize> = (0..self.columns.len()).filter(|&i| keep.contains(&self.columns[i].name)).collect();
        let primary_key =
            self.primary_key.iter().map(|k| kept.iter().position(|i| i == k)).collect::<Option<Vec<usize>>>()?;
        Some(TableSchema {
            columns: kept.iter().map(|&i| self.columns[i].clone()).collect(),
            primary_key,
            ..self.clone()
        })
    }

    /// Keyed as a pgoutput Relation message keys it: a table without a
    /// primary key whose REPLICA IDENTITY is a unique index (`USING INDEX`)
    /// is identified by that index's columns (`is_key`), which is also all
    /// an UPDATE's or DELETE's old image holds of it. Unchanged otherwise.
    pub fn keyed_by_identity_index(mut self) -> TableSchema {
        if self.primary_key.is_empty() && self.replica_identity == ReplicaIdentity::Index {
            self.primary_key = (0..self.columns.len()).filter(|&i| self.columns[i].is_key).collect();
        }
        self
    }

    /// The columns that identify a row on the target: the primary key, or
    /// every column for a keyless REPLICA IDENTITY FULL table.
    pub fn match_columns(&self) -> Vec<usize> {
        if self.primary_key.is_empty() {
            (0..self.columns.len()).collect()
        } else {
            self.primary_key.clone()
        }
    }
}

/// `shop.t (id bigint, v bigint)` keyed on `keys`: the table unit tests
/// render statements and names for.
#[cfg(test)]
pub(crate) fn two_bigint_columns(keys: Vec<usize>) -> std::sync::Arc<TableSchema> {
    let col = |n: &str| Column { type_oid: 20, ..Column::new(n, PgType::Int8) };
    std::sync::Arc::new(TableSchema {
        oid: 1,
        name: TableName::new("shop", "t"),
        columns: vec![col("id"), col("v")],
        replica_identity: ReplicaIdentity::Default,
        primary_key: keys,
        generated: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qualified_names() {
        assert_eq!(TableName::parse("orders"), Some(TableName::new("public", "orders")));
        assert_eq!(TableName::parse("shop.orders"), Some(TableName::new("shop", "orders")));
        assert_eq!(TableName::parse("\"My.S\".\"T\"\"x\""), Some(TableName::new("My.S", "T\"x")));
        assert_eq!(TableName::parse("a.b.c"), None);
        assert_eq!(TableName::parse(""), None);
        assert_eq!(TableName::parse(".x"), None);
        assert_eq!(TableName::new("a", "b\"c").pg_quoted(), "\"a\".\"b\"\"c\"");
    }
}
