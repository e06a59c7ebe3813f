//! Reads table shapes from the source's system catalog.
//!
//! Domains are resolved to their base type, enums carry their labels, arrays
//! their element type, so that mapping sees only [`PgType`]s it can rule on.
//! Generated columns are kept apart ([`TableSchema::generated`]): pgoutput
//! does not send them, and the copy must carry exactly the columns the
//! stream will; the target computes them (`mapping::generated`).

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::debezium::schema::Parsed;
use crate::model::{CarriedGenerated, Column, GeneratedColumn, PgType, ReplicaIdentity, TableName, TableSchema};
use crate::plan::GeneratedFrom;

/// A catalog query failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading the catalog for {what}: {source}")]
    Query {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("type OID {oid} used by {what} is not in pg_type")]
    MissingType { oid: u32, what: String },
}

/// Resolves type OIDs against `pg_type`, caching what it learnt.
#[derive(Default)]
pub struct TypeCache {
    types: HashMap<(u32, i32), PgType>,
}

impl TypeCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The [`PgType`] of `oid` with modifier `typmod`.
    pub async fn resolve(&mut self, client: &Client, oid: u32, typmod: i32) -> Result<PgType, CatalogError> {
        if let Some(t) = PgType::from_builtin_oid(oid, typmod) {
            return Ok(t);
        }
        if let Some(t) = self.types.get(&(oid, typmod)) {
            return Ok(t.clone());
        }
        let mut cur_oid = oid;
        let mut cur_mod = typmod;
        // Domains may stack; follow typbasetype to the bottom (bounded for safety).
        let resolved = 'outer: {
            for _ in 0..16 {
                if let Some(t) = PgType::from_builtin_oid(cur_oid, cur_mod) {
                    break 'outer t;
                }
                let what = format!("type OID {cur_oid}");
                let row = client
                    .query_opt(
                        "SELECT t.typtype::text, t.typname::text, n.nspname::text, t.typbasetype, t.typtypmod, \
                                t.typelem, t.typcategory::text, t.typlen \
                         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1",
                        &[&cur_oid],
                    )
                    .await
                    .map_err(|source| CatalogError::Query { what: what.clone(), source })?
                    .ok_or(CatalogError::MissingType { oid: cur_oid, what })?;
                let typtype: String = row.get(0);
                let name: String = row.get(1);
                let nsp: String = row.get(2);
                let qualified =
                    if nsp == "pg_catalog" || nsp == "public" { name.clone() } else { format!("{nsp}.{name}") };
                match typtype.as_str() {
                    "d" => {
                        let base: u32 = row.get(3);
                        let base_mod: i32 = row.get(4);
                        cur_oid = base;
                        // The domain's own typmod applies when the column has none.
                        cur_mod = if cur_mod >= 0 { cur_mod } else { base_mod };
                        continue;
                    }
                    "e" => {
                        let labels = client
                            .query(
                                "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder",
                                &[&cur_oid],
                            )
                            .await
                            .map_err(|source| CatalogError::Query { what: format!("enum {qualified}"), source })?
                            .iter()
                            .map(|r| r.get::<_, String>(0))
                            .collect();
                        break 'outer PgType::Enum { name: qualified, labels };
                    }
                    _ => {
                        let elem: u32 = row.get(5);
                        let category: String = row.get(6);
                        let typlen: i16 = row.get(7);
                        if elem != 0 && category == "A" && typlen == -1 {
                            let inner = Box::pin(self.resolve(client, elem, cur_mod)).await?;
                            break 'outer PgType::Array(Box::new(inner));
                        }
                        break 'outer PgType::Other { name: qualified };
                    }
                }
            }
            PgType::Other { name: format!("oid {oid}") }
        };
        self.types.insert((oid, typmod), resolved.clone());
        Ok(resolved)
    }
}

/// Reads one table's schema, or `None` when no such table (or partitioned
/// table) exists. `generated` is the plan's `mapping.generated`: with
/// `source`, stored generated columns are plain columns in their place
/// ([`CarriedGenerated`]).
pub async fn load_table(
    client: &Client,
    types: &mut TypeCache,
    table: &TableName,
    generated: GeneratedFrom,
) -> Result<Option<TableSchema>, CatalogError> {
    let q = |source| CatalogError::Query { what: format!("table {table}"), source };
    // Before any of its values is read (`money` amounts follow the source's digits).
    super::money::ensure_read(client).await.map_err(q)?;
    let Some((oid, replica_identity)) = relation(client, table).await.map_err(q)? else {
        return Ok(None);
    };
    // `mapping.generated: source`: stored generated columns are plain
    // columns, in their place (`CarriedGenerated`); before 18 the stream
    // recomputes them (`generated_recompute`).
    let from_source = generated == GeneratedFrom::Source;
    let recomputed = from_source && super::generated_recompute::recomputes(client).await.map_err(q)?;
    let (plain, kept_apart) = if from_source { ("('', 's')", "('v')") } else { ("('')", "('s', 'v')") };
    let pk = key_attnums(client, oid, "indisprimary").await.map_err(q)?;
    let key_cols = if replica_identity == ReplicaIdentity::Index {
        key_attnums(client, oid, "indisreplident").await.map_err(q)?
    } else {
        pk.clone()
    };
    let mut read = plain_columns(client, types, table, oid, plain, &key_cols).await?;
    let primary_key = pk.iter().filter_map(|a| read.attnums.iter().position(|x| x == a)).collect();
    for (at, expression) in &read.from_source {
        read.columns[*at].carried = Some(CarriedGenerated { expression: expression.clone(), recomputed });
    }
    if recomputed && !read.from_source.is_empty() {
        let inputs =
            super::generated_recompute::input_columns(client, oid, &read.from_source_attnums).await.map_err(q)?;
        for c in read.columns.iter_mut().filter(|c| inputs.contains(&c.name)) {
            c.feeds_generated = true;
        }
    }
    let generated = generated_columns(client, types, table, oid, kept_apart).await?;
    Ok(Some(TableSchema { oid, name: table.clone(), columns: read.columns, replica_identity, primary_key, generated }))
}

/// The table's oid and replica identity; `None` when no such table (or
/// partitioned table) exists.
async fn relation(client: &Client, table: &TableName) -> Result<Option<(u32, ReplicaIdentity)>, tokio_postgres::Error> {
    let Some(rel) = client
        .query_opt(
            "SELECT c.oid, c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema, &table.name],
        )
        .await?
    else {
        return Ok(None);
    };
    let replident: String = rel.get(1);
    let replica_identity = ReplicaIdentity::from_byte(replident.as_bytes().first().copied().unwrap_or(b'd'))
        .unwrap_or(ReplicaIdentity::Default);
    Ok(Some((rel.get(0), replica_identity)))
}

/// The column numbers of the table's primary key (`indisprimary`) or
/// replica identity index (`indisreplident`), in index order.
async fn key_attnums(client: &Client, oid: u32, flag: &'static str) -> Result<Vec<i16>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT k.attnum::int2 FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
         WHERE i.indrelid = $1 AND i.{flag} ORDER BY k.ord"
    );
    Ok(client.query(&sql, &[&oid]).await?.iter().map(|r| r.get::<_, i16>(0)).collect())
}

/// The columns xdb reads and writes, with their numbers; and the stored
/// generated ones among them (`mapping.generated: source`).
struct PlainColumns {
    columns: Vec<Column>,
    attnums: Vec<i16>,
    /// (index in `columns`, expression) of the stored generated ones.
    from_source: Vec<(usize, String)>,
    from_source_attnums: Vec<i16>,
}

/// The columns whose `attgenerated` is in `plain` (an SQL list), in table
/// order; `key_cols` are the matching key's column numbers.
async fn plain_columns(
    client: &Client,
    types: &mut TypeCache,
    table: &TableName,
    oid: u32,
    plain: &str,
    key_cols: &[i16],
) -> Result<PlainColumns, CatalogError> {
    let rows = client
        .query(
            &format!(
                "SELECT a.attnum, a.attname::text, a.atttypid, a.atttypmod, a.attnotnull, \
                        pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text \
                 FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated IN {plain} \
                 ORDER BY a.attnum"
            ),
            &[&oid],
        )
        .await
        .map_err(|source| CatalogError::Query { what: format!("table {table}"), source })?;
    let mut out = PlainColumns {
        columns: Vec::with_capacity(rows.len()),
        attnums: Vec::with_capacity(rows.len()),
        from_source: Vec::new(),
        from_source_attnums: Vec::new(),
    };
    for r in &rows {
        let attnum: i16 = r.get(0);
        let type_oid: u32 = r.get(2);
        let typmod: i32 = r.get(3);
        let default: Option<String> = r.get(5);
        if r.get::<_, String>(7) == "s" {
            // Its values come from the source. The expression stays as the
            // column's (never translated) default: a column added while
            // streaming then gets the source's values in the rows the
            // target already has, like a volatile default (invariant
            // *schema drift*).
            out.from_source.push((out.columns.len(), default.clone().unwrap_or_default()));
            out.from_source_attnums.push(attnum);
        }
        let identity: String = r.get(6);
        let pg_type = types.resolve(client, type_oid, typmod).await?;
        let is_serial = default.as_deref().is_some_and(|d| d.starts_with("nextval("));
        out.columns.push(Column {
            name: r.get(1),
            pg_type,
            type_oid,
            typmod,
            nullable: !r.get::<_, bool>(4),
            is_key: key_cols.contains(&attnum),
            default,
            identity: !identity.is_empty() || is_serial,
            carried: None,
            feeds_generated: false,
        });
        out.attnums.push(attnum);
    }
    Ok(out)
}

/// The generated columns kept apart from the plain ones (`attgenerated`
/// in `kept_apart`), with their expressions.
async fn generated_columns(
    client: &Client,
    types: &mut TypeCache,
    table: &TableName,
    oid: u32,
    kept_apart: &str,
) -> Result<Vec<GeneratedColumn>, CatalogError> {
    let rows = client
        .query(
            &format!(
                "SELECT a.attname::text, a.atttypid, a.atttypmod, pg_get_expr(d.adbin, d.adrelid) \
                 FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated IN {kept_apart} \
                 ORDER BY a.attnum"
            ),
            &[&oid],
        )
        .await
        .map_err(|source| CatalogError::Query { what: format!("table {table}"), source })?;
    let mut generated = Vec::with_capacity(rows.len());
    for r in &rows {
        let type_oid: u32 = r.get(1);
        let typmod: i32 = r.get(2);
        generated.push(GeneratedColumn {
            name: r.get(0),
            pg_type: types.resolve(client, type_oid, typmod).await?,
            type_oid,
            typmod,
            expression: r.get(3),
        });
    }
    Ok(generated)
}

/// The schemas of `tables`, in order, through one type cache: the one way
/// every command reads the plan's tables. `missing` makes the caller's
/// error for a table the source does not have (the words differ: not yet
/// copied, dropped while streaming, gone from the original source).
pub async fn load_planned<E: From<CatalogError>>(
    client: &Client,
    tables: &[TableName],
    generated: GeneratedFrom,
    missing: impl Fn(&TableName) -> E,
) -> Result<Vec<TableSchema>, E> {
    let mut types = TypeCache::new();
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        out.push(load_table(client, &mut types, t, generated).await?.ok_or_else(|| missing(t))?);
    }
    Ok(out)
}

/// Every user table's qualified name (to suggest the closest one when a
/// plan names a table that does not exist).
pub async fn list_tables(client: &Client) -> Result<Vec<TableName>, CatalogError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|source| CatalogError::Query { what: "the list of tables".into(), source })?;
    Ok(rows.iter().map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1))).collect())
}

/// A secondary index or unique constraint of a source table, as the copy
/// rebuilds it on the target after loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIndex {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
    /// Expression or partial indexes cannot be translated column by column;
    /// they are reported, not rebuilt.
    pub definition: Option<String>,
}

/// The table's indexes other than the primary key.
pub async fn load_indexes(client: &Client, table_oid: u32) -> Result<Vec<SourceIndex>, CatalogError> {
    let rows = client
        .query(
            "SELECT c.relname::text, i.indisunique, (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL), \
                    pg_get_indexdef(i.indexrelid), \
                    ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = $1 AND NOT i.indisprimary ORDER BY c.relname",
            &[&table_oid],
        )
        .await
        .map_err(|source| CatalogError::Query { what: format!("indexes of table OID {table_oid}"), source })?;
    Ok(rows
        .iter()
        .map(|r| {
            let special: bool = r.get(2);
            SourceIndex { name: r.get(0), unique: r.get(1), definition: special.then(|| r.get(3)), columns: r.get(4) }
        })
        .collect())
}

/// True when column `name` of table `table_oid` keeps the attribute number
/// of the column listed before it in a Relation message: no dropped
/// attribute lies between the closest live column below it and it.
///
/// A column dropped and another added takes a new attribute number above
/// every other, so the dropped one lies between them; a renamed column
/// keeps its number. (A column dropped long ago in that gap makes a rename
/// look like a drop, never the other way round.)
pub async fn renamed_in_place(client: &Client, table_oid: u32, name: &str) -> Result<bool, CatalogError> {
    let row = client
        .query_opt(
            "SELECT NOT EXISTS ( \
                 SELECT 1 FROM pg_attribute d WHERE d.attrelid = b.attrelid AND d.attisdropped \
                 AND d.attnum < b.attnum AND d.attnum > COALESCE(( \
                     SELECT max(p.attnum) FROM pg_attribute p WHERE p.attrelid = b.attrelid AND p.attnum > 0 \
                     AND p.attnum < b.attnum AND NOT p.attisdropped), 0)) \
             FROM pg_attribute b WHERE b.attrelid = $1 AND b.attname = $2 AND NOT b.attisdropped",
            &[&table_oid, &name],
        )
        .await
        .map_err(|source| CatalogError::Query { what: format!("column {name} of table OID {table_oid}"), source })?;
    Ok(row.is_some_and(|r| r.get::<_, bool>(0)))
}

/// The table's schema a Debezium schema-change event carries, types
/// resolved through this catalog (the original source's); what the event
/// does not carry (replica identity, generated columns) taken from `base`,
/// the table as the catalog has it.
pub async fn resolve_event_shape(
    parsed: &Parsed,
    client: &Client,
    types: &mut TypeCache,
    base: Option<&TableSchema>,
) -> Result<TableSchema, CatalogError> {
    let mut columns = Vec::with_capacity(parsed.columns.len());
    for s in &parsed.columns {
        let mut c = Column::new(s.name.clone(), types.resolve(client, s.type_oid, s.typmod).await?);
        c.type_oid = s.type_oid;
        c.typmod = s.typmod;
        c.nullable = s.nullable;
        c.default = s.default.clone();
        c.identity = s.identity;
        c.is_key = s.key;
        // A stored generated column carried as plain keeps its expression
        // (the event has the column, not what it was on the source).
        if let Some(b) = base.and_then(|b| b.columns.iter().find(|b| b.name == c.name)) {
            c.carried = b.carried.clone();
            c.feeds_generated = b.feeds_generated;
        }
        columns.push(c);
    }
    let primary_key =
        parsed.primary_key.iter().filter_map(|k| columns.iter().position(|c: &Column| &c.name == k)).collect();
    Ok(TableSchema {
        oid: parsed.table_oid,
        name: parsed.table.clone(),
        columns,
        replica_identity: base.map(|b| b.replica_identity).unwrap_or(ReplicaIdentity::Default),
        primary_key,
        generated: base.map(|b| b.generated.clone()).unwrap_or_default(),
    })
}
