//! Debezium's schema-change event (the value its connectors write to the
//! `<topic.prefix>` schema-change topic: `databaseName`, `schemaName`,
//! `ddl`, `tableChanges` with the table's full column list), as xdb writes
//! it to a replicated log when a table's shape changes (invariant *schema
//! drift through the log*): `CREATE` for every table at the start of the
//! copy, `ALTER` before the first change event with a new shape. The data
//! events after it carry the new shape in their inline schema as well.
//!
//! pgoutput carries no DDL text, so `ddl` is null; what Debezium's column
//! list cannot say exactly is in fields of xdb's own, which a Debezium
//! consumer ignores: each column's `typmod`, and `xdb.table_oid` and
//! `xdb.renamed` (columns the source's catalog confirmed as renamed in
//! place, old and new name).

use serde_json::{json, Value as Json};

use crate::model::{PgType, TableName, TableSchema};

/// Whether the table is new to the log (copy) or changed (stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Alter,
}

/// What a column is, for comparing shapes: name, type OID, type modifier.
pub type Signature = Vec<(String, u32, i32)>;

/// The shape of a table as far as its events' values depend on it.
pub fn signature(t: &TableSchema) -> Signature {
    t.columns.iter().map(|c| (c.name.clone(), c.type_oid, c.typmod)).collect()
}

/// `java.sql.Types` of a column, as Debezium's `jdbcType`.
fn jdbc_type(t: &PgType) -> i32 {
    match t {
        PgType::Bool => 16,
        PgType::Int2 => 5,
        PgType::Int4 | PgType::Oid => 4,
        PgType::Int8 => -5,
        PgType::Float4 => 7,
        PgType::Float8 => 8,
        PgType::Numeric { .. } | PgType::Money => 2,
        PgType::Char(_) | PgType::InternalChar => 1,
        PgType::Text | PgType::Varchar(_) | PgType::Name => 12,
        PgType::Bytea => -2,
        PgType::Date => 91,
        PgType::Time(_) => 92,
        PgType::TimeTz(_) => 2013,
        PgType::Timestamp(_) => 93,
        PgType::TimestampTz(_) => 2014,
        PgType::Bit(_) | PgType::VarBit(_) => -7,
        PgType::Array(_) => 2003,
        _ => 1111,
    }
}

/// (length, scale) as Debezium reports them.
fn length_scale(t: &PgType) -> (Option<u32>, Option<u32>) {
    match t {
        PgType::Numeric { precision, scale } => (*precision, *scale),
        PgType::Varchar(n) | PgType::Char(n) | PgType::Bit(n) | PgType::VarBit(n) => (*n, None),
        PgType::Time(p) | PgType::TimeTz(p) | PgType::Timestamp(p) | PgType::TimestampTz(p) => (*p, None),
        _ => (None, None),
    }
}

/// The event's payload (no inline schema: Debezium's schema-change topic
/// is read as plain JSON by its consumers).
pub fn event(
    db: &str,
    connector: &str,
    table: &TableSchema,
    kind: Kind,
    renamed: &[(String, String)],
    unknown: &[String],
    source: Json,
) -> Vec<u8> {
    let n = &table.name;
    let columns: Vec<Json> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (length, scale) = length_scale(&c.pg_type);
            let enum_values = match &c.pg_type {
                PgType::Enum { labels, .. } => json!(labels),
                _ => Json::Null,
            };
            json!({
                "name": c.name,
                "jdbcType": jdbc_type(&c.pg_type),
                "nativeType": c.type_oid,
                "typeName": c.pg_type.sql_name(),
                "typeExpression": c.pg_type.sql_name(),
                "charsetName": null,
                "length": length,
                "scale": scale,
                "position": i + 1,
                "optional": c.nullable,
                "autoIncremented": c.identity,
                "generated": c.identity,
                "comment": null,
                "hasDefaultValue": c.default.is_some(),
                "defaultValueExpression": c.default,
                "enumValues": enum_values,
                "typmod": c.typmod,
                "key": c.is_key,
            })
        })
        .collect();
    let pk: Vec<&str> = table.primary_key.iter().map(|&i| table.columns[i].name.as_str()).collect();
    let v = json!({
        "source": source,
        "ts_ms": super::now_ms(),
        "databaseName": db,
        "schemaName": n.schema,
        "ddl": null,
        "tableChanges": [{
            "type": match kind { Kind::Create => "CREATE", Kind::Alter => "ALTER" },
            "id": format!("\"{db}\".\"{}\".\"{}\"", n.schema, n.name),
            "table": {
                "defaultCharsetName": null,
                "primaryKeyColumnNames": pk,
                "columns": columns,
                "comment": null,
            },
        }],
        "xdb": {
            "connector": connector,
            "table_oid": table.oid,
            "renamed": renamed.iter().map(|(from, to)| json!({"from": from, "to": to})).collect::<Vec<_>>(),
            "catalog_unknown": unknown,
        },
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// One column of a schema-change event read back.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    pub nullable: bool,
    pub default: Option<String>,
    pub identity: bool,
    /// Part of the replica-identity key.
    pub key: bool,
}

/// A schema-change event read back: the table, its columns (types still
/// to resolve), the key and the renames.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub table: TableName,
    pub table_oid: u32,
    pub columns: Vec<ColumnSpec>,
    pub primary_key: Vec<String>,
    pub renamed: Vec<(String, String)>,
    /// Added columns the source's catalog no longer had by name when the
    /// event was written (renamed or dropped since): NOT NULL and default unknown.
    pub catalog_unknown: Vec<String>,
}

impl Parsed {
    pub fn signature(&self) -> Signature {
        self.columns.iter().map(|c| (c.name.clone(), c.type_oid, c.typmod)).collect()
    }
}

/// Reads an event [`event`] wrote (with or without an inline-schema wrapper).
pub fn parse(v: &Json) -> Result<Parsed, String> {
    let p = if v.get("schema").is_some() && v.get("payload").is_some() { &v["payload"] } else { v };
    let change = &p["tableChanges"][0];
    let schema = p["schemaName"].as_str().ok_or("no schemaName")?;
    let id = change["id"].as_str().ok_or("no tableChanges[0].id")?;
    let name = id.rsplit("\".\"").next().map(|s| s.trim_end_matches('"')).ok_or("tableChanges[0].id")?;
    let table = &change["table"];
    let columns = table["columns"]
        .as_array()
        .ok_or("no tableChanges[0].table.columns")?
        .iter()
        .map(|c| {
            Ok(ColumnSpec {
                name: c["name"].as_str().ok_or("a column without name")?.to_string(),
                type_oid: c["nativeType"].as_u64().ok_or("a column without nativeType")? as u32,
                typmod: c["typmod"].as_i64().unwrap_or(-1) as i32,
                nullable: c["optional"].as_bool().unwrap_or(true),
                default: c["defaultValueExpression"].as_str().map(str::to_string),
                identity: c["autoIncremented"].as_bool().unwrap_or(false),
                key: c["key"].as_bool().unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>, &str>>()?;
    let strings = |j: &Json| -> Vec<String> {
        j.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let renamed = p["xdb"]["renamed"]
        .as_array()
        .map(|a| {
            a.iter().filter_map(|r| Some((r["from"].as_str()?.to_string(), r["to"].as_str()?.to_string()))).collect()
        })
        .unwrap_or_default();
    Ok(Parsed {
        table: TableName::new(schema, name),
        table_oid: p["xdb"]["table_oid"].as_u64().unwrap_or(0) as u32,
        columns,
        primary_key: strings(&table["primaryKeyColumnNames"]),
        renamed,
        catalog_unknown: strings(&p["xdb"]["catalog_unknown"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, ReplicaIdentity};

    #[test]
    fn a_schema_change_reads_back_with_its_renames_and_types() {
        let mut id = Column::new("id", PgType::Int8);
        id.is_key = true;
        id.nullable = false;
        id.type_oid = 20;
        let mut price = Column::new("price", PgType::Numeric { precision: Some(10), scale: Some(2) });
        price.type_oid = 1700;
        price.typmod = (10 << 16) + 2 + 4;
        price.default = Some("1.50".into());
        let t = TableSchema {
            oid: 77,
            name: TableName::new("public", "orders"),
            columns: vec![id, price],
            replica_identity: ReplicaIdentity::Default,
            primary_key: vec![0],
            generated: vec![],
        };
        let bytes = event("shop", "x", &t, Kind::Alter, &[("amount".into(), "price".into())], &[], json!({}));
        let v: Json = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["tableChanges"][0]["type"], "ALTER");
        assert_eq!(v["tableChanges"][0]["id"], "\"shop\".\"public\".\"orders\"");
        assert_eq!(v["tableChanges"][0]["table"]["columns"][1]["length"], 10);
        let p = parse(&v).unwrap();
        assert_eq!(p.table, t.name);
        assert_eq!(p.table_oid, 77);
        assert_eq!(p.signature(), signature(&t));
        assert_eq!(p.primary_key, ["id"]);
        assert_eq!(p.renamed, [("amount".to_string(), "price".to_string())]);
        assert_eq!(p.columns[1].default.as_deref(), Some("1.50"));
    }
}
