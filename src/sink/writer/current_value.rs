//! A target row's current value of one column, as PostgreSQL input text:
//! where an unchanged TOASTed value (not in the change) is read back from
//! when a generated column recomputed on the source reads it
//! (`pipeline::generated_fill`). The target holds exactly what the source
//! held before the change (invariant *commit order*), but only for types
//! whose target text is the source's input text: text and varchar
//! everywhere, bytea (as hex), json/jsonb where the target keeps the text
//! (not MySQL's JSON, which rewrites it). Anything else is refused with the way on.

use super::{SinkError, SinkWriter};
use crate::model::{PgType, TableName, Value};
use crate::plan::naming::SqlDialect;

/// Why a current value cannot be read back exactly.
#[derive(Debug, thiserror::Error)]
#[error(
    "{table}.{column} ({ty}) is unchanged in an UPDATE at {at} (a TOASTed value the change does not carry), and \
     generated column {generated} reads it: {why}. Run ALTER TABLE {table} REPLICA IDENTITY FULL; on the source \
     (changes then carry the old row), then copy again (`xdb sync --recopy`): this change cannot be recomputed \
     exactly"
)]
pub struct CurrentValueError {
    pub table: TableName,
    pub column: String,
    pub ty: String,
    pub generated: String,
    pub at: String,
    pub why: String,
}

impl SinkWriter {
    /// The current text of `column` in the target row of `table` whose key
    /// columns hold `key`: `Ok(None)` when no such row, `Ok(Some(None))`
    /// for NULL. `Err(why)` (as text) when the column's type or a key
    /// type cannot be read back exactly.
    pub async fn current_text(
        &mut self,
        table: &TableName,
        key: &[(&str, &Value)],
        column: &str,
        ty: &PgType,
    ) -> Result<Result<Option<Option<String>>, String>, SinkError> {
        let Some(mapped) = self.mapped.get(table).cloned() else {
            return Ok(Err(format!("{table} is not a planned table")));
        };
        if !crate::mapping::generated::reads_back_exactly(&self.kind, ty) {
            return Ok(Err(format!("a {} value cannot be read back from the target exactly", ty.sql_name())));
        }
        let dialect = self.conn.dialect();
        let mut conds = Vec::with_capacity(key.len());
        for (name, v) in key {
            match literal(dialect, v) {
                Some(l) => conds.push(format!("{} = {l}", dialect.ident(name))),
                None => return Ok(Err(format!("its key column {name} is not an integer or text"))),
            }
        }
        let col = dialect.ident(column);
        // bytea as hex: PostgreSQL's `\x…` input, whatever the target.
        let text = match (ty, dialect) {
            (PgType::Bytea, SqlDialect::Mysql) => format!("CONCAT('\\\\x', LOWER(HEX({col})))"),
            (PgType::Bytea, SqlDialect::Sqlite) => format!("'\\x' || lower(hex({col}))"),
            (PgType::Bytea, SqlDialect::Postgres) => format!("'\\x' || encode({col}, 'hex')"),
            _ => col.clone(),
        };
        let tagged = match dialect {
            SqlDialect::Mysql => format!("CONCAT('v', {text})"),
            _ => format!("'v' || {text}"),
        };
        let sql = format!(
            "SELECT CASE WHEN {col} IS NULL THEN 'n' ELSE {tagged} END FROM {} WHERE {}",
            mapped.target_ident,
            conds.join(" AND ")
        );
        let got = self.conn.scalar_text(&sql).await?;
        Ok(Ok(got.map(|t| t.strip_prefix('v').map(str::to_string))))
    }
}

/// A key value as a SQL literal of the target, for integer and text keys.
fn literal(dialect: SqlDialect, v: &Value) -> Option<String> {
    Some(match v {
        Value::Int2(i) => i.to_string(),
        Value::Int4(i) => i.to_string(),
        Value::Int8(i) => i.to_string(),
        Value::Text(s) => {
            let mut s = s.replace('\'', "''");
            if dialect == SqlDialect::Mysql {
                // xdb's MySQL sessions keep backslash escapes in literals.
                s = s.replace('\\', "\\\\");
            }
            format!("'{s}'")
        }
        _ => return None,
    })
}
