//! How xdb selects a table's rows from PostgreSQL for COPY binary: every
//! reader (the copy, validation, re-reading rows while streaming) uses the
//! same select list, so a column of a type xdb does not decode arrives the
//! same way everywhere — as text, marked [`Value::Unknown`].

use crate::model::{pg_ident, PgType, Row, TableSchema, Value};

/// The select list of a table read (copy, validation, re-reading rows) with the types the binary reader
/// decodes: columns of types xdb does not decode are read as text and
/// become [`Value::Unknown`] (their positions and type names are returned).
pub fn select_list(table: &TableSchema) -> (String, Vec<PgType>, Vec<(usize, String)>) {
    let mut cols = Vec::with_capacity(table.columns.len());
    let mut types = Vec::with_capacity(table.columns.len());
    let mut unknown = Vec::new();
    for (i, c) in table.columns.iter().enumerate() {
        if needs_text(&c.pg_type) {
            cols.push(format!("{}::text", pg_ident(&c.name)));
            types.push(PgType::Text);
            unknown.push((i, c.pg_type.sql_name()));
        } else {
            cols.push(pg_ident(&c.name));
            types.push(c.pg_type.clone());
        }
    }
    (cols.join(", "), types, unknown)
}

/// Turns the text read for columns of undecoded types (positions from
/// [`select_list`]) into [`Value::Unknown`] carrying the type's name.
pub fn mark_unknown(row: &mut Row, unknown: &[(usize, String)]) {
    for (i, name) in unknown {
        if let Some(slot) = row.get_mut(*i) {
            if let Value::Text(t) = std::mem::replace(slot, Value::Null) {
                *slot = Value::Unknown { type_name: name.clone(), text: t };
            }
        }
    }
}

/// Types xdb does not decode from COPY binary: read as text instead.
pub fn needs_text(t: &PgType) -> bool {
    match t {
        PgType::Other { .. } => true,
        PgType::Array(inner) => needs_text(inner),
        _ => false,
    }
}
