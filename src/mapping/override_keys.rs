//! Every column a plan's `mapping:` section names must exist: a misspelt
//! key under `mapping.columns`, `mapping.policies` or
//! `mapping.insensitive_keys` would otherwise be silently ignored, and the
//! type or policy the user asked for never applied. The plan loader checks
//! the table part; this checks the column against the source catalog.

use super::rules::split_column_key;
use crate::model::TableSchema;
use crate::plan::Mapping;

/// One message per key naming a column its table does not have, with the
/// closest existing column.
pub fn unknown_columns(mapping: &Mapping, tables: &[&TableSchema]) -> Vec<String> {
    let keys = mapping
        .columns
        .keys()
        .map(|k| ("mapping.columns", k))
        .chain(mapping.policies.keys().map(|k| ("mapping.policies", k)))
        .chain(mapping.insensitive_keys.iter().map(|k| ("mapping.insensitive_keys", k)));
    let mut out = Vec::new();
    for (section, key) in keys {
        let Some((table, column)) = split_column_key(key) else { continue };
        let Some(t) = tables.iter().find(|t| t.name == table) else { continue };
        let names: Vec<&str> =
            t.columns.iter().map(|c| c.name.as_str()).chain(t.generated.iter().map(|g| g.name.as_str())).collect();
        if names.contains(&column.as_str()) {
            continue;
        }
        let best = crate::suggest::closest(&column, names.iter().copied())
            .map(|c| format!(" — did you mean `{table}.{c}`?"))
            .unwrap_or_else(|| format!(" (its columns: {})", names.join(", ")));
        out.push(format!("{section}: {key}: table {table} has no column {column}{best}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, PgType, ReplicaIdentity, TableName};

    #[test]
    fn misspelt_columns_are_named_with_the_closest() {
        let col = |n: &str| Column { type_oid: 25, ..Column::new(n, PgType::Text) };
        let t = TableSchema {
            oid: 1,
            name: TableName::new("shop", "orders"),
            columns: vec![col("id"), col("amount")],
            replica_identity: ReplicaIdentity::Default,
            primary_key: vec![0],
            generated: Vec::new(),
        };
        let mut m = Mapping::default();
        m.columns.insert("shop.orders.amout".into(), "TEXT".into());
        m.policies.insert("shop.orders.amount".into(), crate::plan::LossyPolicy::Null);
        let e = unknown_columns(&m, &[&t]);
        assert_eq!(e, vec!["mapping.columns: shop.orders.amout: table shop.orders has no column amout — did you mean `shop.orders.amount`?"]);
    }
}
