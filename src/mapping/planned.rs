//! The plan's tables mapped to one target, every problem reported at once:
//! the names they get there, mapping keys that name no column, and each
//! table's columns. Used by every command that writes or reads the target
//! (copy, schema, sync, validate, the way back, the log).

use std::sync::Arc;

use super::{
    check_table, map_table, unknown_columns, MappedTable, MappingError, MappingOverrides, MappingRules, TargetKind,
};
use crate::model::TableSchema;
use crate::plan::naming::name_problems;
use crate::plan::Plan;

/// The plan's tables cannot be mapped.
#[derive(Debug, thiserror::Error)]
pub enum MapTablesError {
    /// The rules file cannot be used.
    #[error("{0}")]
    Rules(#[from] MappingError),
    /// One line per problem, all tables at once.
    #[error("{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Problems(Vec<String>),
}

/// Maps every table of `schemas` for `kind` under the plan's rules and
/// overrides.
pub fn map_tables(
    plan: &Plan,
    kind: &TargetKind,
    schemas: &[Arc<TableSchema>],
) -> Result<Vec<Arc<MappedTable>>, MapTablesError> {
    let rules = MappingRules::load(kind, plan.mapping.rules.as_deref())?;
    let overrides = MappingOverrides::from_plan(&plan.mapping);
    let all: Vec<&TableSchema> = schemas.iter().map(|s| s.as_ref()).collect();
    let mut problems = name_problems(&overrides.naming(kind.dialect()), &all);
    problems.extend(unknown_columns(&plan.mapping, &all));
    let mut mapped = Vec::new();
    for s in schemas {
        match map_table(&rules, s, &overrides) {
            Ok(m) => mapped.push(Arc::new(m)),
            // Every problem of the table, not only the first.
            Err(_) => problems.extend(check_table(&rules, s, &overrides).iter().map(|e| e.to_string())),
        }
    }
    if problems.is_empty() {
        Ok(mapped)
    } else {
        Err(MapTablesError::Problems(problems))
    }
}
