//! A schema change seen on the target while its changes flow back, told as
//! the table, the columns, and the statement to run on the original
//! PostgreSQL source (the way back never changes the source's schema by
//! itself: invariant *reverse start*, schema changes stop it).

/// The PostgreSQL type for a MySQL/MariaDB `COLUMN_TYPE`, where one is
/// plain; None: the operator chooses (the statement says so).
pub fn pg_type_for(column_type: &str) -> Option<String> {
    let t = column_type.trim().to_ascii_lowercase();
    let unsigned = t.contains("unsigned");
    let base = t.split(['(', ' ']).next().unwrap_or("");
    let args = t.split_once('(').and_then(|(_, r)| r.split_once(')')).map(|(a, _)| a.to_string());
    Some(match base {
        "tinyint" if args.as_deref() == Some("1") => "boolean".into(),
        "tinyint" | "smallint" => if unsigned { "integer" } else { "smallint" }.into(),
        "mediumint" | "int" | "integer" => if unsigned { "bigint" } else { "integer" }.into(),
        "bigint" => if unsigned { "numeric(20)" } else { "bigint" }.into(),
        "decimal" | "numeric" => format!("numeric({})", args?),
        "float" => "real".into(),
        "double" => "double precision".into(),
        "varchar" => format!("varchar({})", args?),
        "char" => format!("char({})", args?),
        "tinytext" | "text" | "mediumtext" | "longtext" => "text".into(),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => "bytea".into(),
        "json" => "jsonb".into(),
        "date" => "date".into(),
        "time" => "time".into(),
        "datetime" => "timestamp".into(),
        "timestamp" => "timestamptz".into(),
        _ => return None,
    })
}

/// What differs between the columns being mapped (`before`) and the
/// target table's columns now (name, COLUMN_TYPE): the table, each column,
/// and the statement for the original `source_table`.
pub fn describe(target_table: &str, source_table: &str, before: &[String], now: &[(String, String)]) -> String {
    let mut parts = Vec::new();
    let mut stmts = Vec::new();
    for (name, ty) in now.iter().filter(|(n, _)| !before.contains(n)) {
        parts.push(format!("column {name} ({ty}) was added"));
        let pg = pg_type_for(ty).unwrap_or_else(|| format!("<the PostgreSQL type for {ty}>"));
        stmts.push(format!("ALTER TABLE {source_table} ADD COLUMN {} {pg};", quote(name)));
    }
    for name in before.iter().filter(|b| !now.iter().any(|(n, _)| n == *b)) {
        parts.push(format!("column {name} was dropped (or renamed)"));
        stmts.push(format!("ALTER TABLE {source_table} DROP COLUMN {};", quote(name)));
    }
    if parts.is_empty() {
        parts.push("its columns were reordered".into());
    }
    let mut s = format!("table {target_table} (source {source_table}): {}", parts.join(", "));
    if !stmts.is_empty() {
        s.push_str(&format!("; on the original source run: {}", stmts.join(" ")));
    }
    s
}

fn quote(name: &str) -> String {
    let plain = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        name.into()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_and_dropped_columns_name_the_statement() {
        let before = vec!["id".to_string(), "flag".into(), "gone".into()];
        let now = vec![
            ("id".to_string(), "int(11)".to_string()),
            ("flag".into(), "tinyint(1)".into()),
            ("Added".into(), "decimal(12,2)".into()),
        ];
        let d = describe("flags", "public.flags", &before, &now);
        assert_eq!(
            d,
            "table flags (source public.flags): column Added (decimal(12,2)) was added, column gone was dropped \
             (or renamed); on the original source run: ALTER TABLE public.flags ADD COLUMN \"Added\" numeric(12,2); \
             ALTER TABLE public.flags DROP COLUMN gone;"
        );
        assert_eq!(pg_type_for("int(10) unsigned").as_deref(), Some("bigint"));
        assert_eq!(pg_type_for("geometry"), None);
    }
}
