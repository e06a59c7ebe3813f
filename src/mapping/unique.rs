//! UNIQUE constraints a target cannot enforce as such. MySQL/MariaDB index
//! a TEXT/BLOB/JSON column only by a prefix, and a unique prefix index
//! would refuse rows the source accepts (two values sharing 768
//! characters), so the copy builds those indexes non-unique
//! ([`super::create_index_ddl`]): after the cutover the target accepts
//! duplicates. That is said, as a `lossy:` line, by `schema` and `check`.

use super::{IndexDef, MappedTable, TargetClass, TargetKind};

/// One line per unique index of `t` the target builds non-unique.
pub fn unenforced_unique(t: &MappedTable, indexes: &[IndexDef], kind: &TargetKind) -> Vec<String> {
    if !kind.is_mysql() {
        return Vec::new();
    }
    indexes
        .iter()
        .filter(|ix| ix.unique)
        .filter_map(|ix| {
            let lobs: Vec<&str> = ix
                .columns
                .iter()
                .filter_map(|name| t.columns.iter().find(|c| &c.name == name))
                .filter(|c| {
                    let u = c.target_type.to_ascii_uppercase();
                    u.contains("TEXT") || u.contains("BLOB") || c.class == TargetClass::Json
                })
                .map(|c| c.name.as_str())
                .collect();
            (!lobs.is_empty()).then(|| {
                format!(
                    "uniqueness not enforced: {}: UNIQUE index {} on ({}) is built non-unique on {kind}, which indexes \
                     {} only by its first 768 characters; after the cutover the target accepts duplicates. To keep \
                     it, give the column a bounded type under mapping.columns (for example VARCHAR(255)) if its \
                     values fit",
                    t.source.name,
                    ix.name,
                    ix.columns.join(", "),
                    lobs.join(", ")
                )
            })
        })
        .collect()
}
