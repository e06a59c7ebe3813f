//! Rule files (`mappings/pg-to-<target>.yaml`) and the plan's per-column
//! overrides: from a PostgreSQL type to the text of a target column type.
//! The only I/O of the mapping layer is [`MappingRules::load`] reading a file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use super::{MappingError, TargetKind};
use crate::model::{PgType, TableName};
use crate::plan::{LossyPolicy, Mapping};

pub(super) const BUILTIN_MYSQL: &str = include_str!("../../mappings/pg-to-mysql.yaml");
pub(super) const BUILTIN_SQLITE: &str = include_str!("../../mappings/pg-to-sqlite.yaml");
pub(super) const BUILTIN_POSTGRES: &str = include_str!("../../mappings/pg-to-postgres.yaml");

/// The rule-name keys every rule file must define (one per [`PgType`] kind
/// except `Other`).
pub const RULE_NAMES: &[&str] = &[
    "boolean",
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "numeric",
    "money",
    "text",
    "varchar",
    "char",
    "\"char\"",
    "name",
    "bytea",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
    "json",
    "jsonb",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "xml",
    "tsvector",
    "tsquery",
    "oid",
    "bit",
    "varbit",
    "enum",
    "array",
];

/// One rule: a template, or a template with variants for a missing or too
/// large modifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawRule {
    Template(String),
    Full(FullRule),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullRule {
    /// Template used when the type has its modifier.
    #[serde(rename = "type")]
    ty: String,
    /// Template used when the type has no modifier.
    #[serde(default)]
    unbounded: Option<String>,
    /// Largest modifier `type` may be used with.
    #[serde(default)]
    max: Option<u32>,
    /// Template used above `max`.
    #[serde(default)]
    over_max: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleFile {
    /// `mysql`, `sqlite` or `postgres`: guards against loading the wrong file.
    target: String,
    types: BTreeMap<String, RawRule>,
}

/// Type rules for one target.
#[derive(Debug, Clone)]
pub struct MappingRules {
    kind: TargetKind,
    rules: HashMap<String, FullRule>,
}

impl MappingRules {
    /// The built-in rules for `kind` (the files in `mappings/`, compiled in).
    pub fn builtin(kind: &TargetKind) -> Self {
        let text = match kind {
            TargetKind::Mysql { .. } => BUILTIN_MYSQL,
            TargetKind::Sqlite => BUILTIN_SQLITE,
            TargetKind::Postgres => BUILTIN_POSTGRES,
        };
        // The built-in files are checked by a unit test; a failure here is a build defect.
        Self::parse(kind, text, "built-in rules").unwrap_or_else(|e| panic!("built-in mapping rules: {e}"))
    }

    /// The rules from `file` when given (plan `mapping.rules`), else the
    /// built-in ones. A file must name every rule (see [`RULE_NAMES`]).
    pub fn load(kind: &TargetKind, file: Option<&Path>) -> Result<Self, MappingError> {
        match file {
            None => Ok(Self::builtin(kind)),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| MappingError::RuleFile {
                    file: path.display().to_string(),
                    message: format!("cannot read: {e}"),
                })?;
                Self::parse(kind, &text, &path.display().to_string())
            }
        }
    }

    /// Parses rule-file text; `file` names it in errors.
    pub fn parse(kind: &TargetKind, text: &str, file: &str) -> Result<Self, MappingError> {
        let err = |message: String| MappingError::RuleFile { file: file.to_string(), message };
        let raw: RawRuleFile = serde_yaml_ng::from_str(text).map_err(|e| err(e.to_string()))?;
        if raw.target != kind.rule_target() {
            return Err(err(format!(
                "the file is for target `{}` but the plan's target is {kind} (`target: {}`)",
                raw.target,
                kind.rule_target()
            )));
        }
        let mut rules = HashMap::new();
        for (name, rule) in raw.types {
            if !RULE_NAMES.contains(&name.as_str()) {
                return Err(err(format!("unknown type rule `{name}`; known rules: {}", RULE_NAMES.join(", "))));
            }
            let full = match rule {
                RawRule::Template(ty) => FullRule { ty, unbounded: None, max: None, over_max: None },
                RawRule::Full(f) => f,
            };
            rules.insert(name, full);
        }
        if let Some(missing) = RULE_NAMES.iter().find(|n| !rules.contains_key(**n)) {
            return Err(err(format!("no rule for type `{missing}`: every built-in type needs one")));
        }
        Ok(MappingRules { kind: *kind, rules })
    }

    /// The target kind these rules are for.
    pub fn kind(&self) -> &TargetKind {
        &self.kind
    }

    /// The target type for `ty`, or `None` for a type without a rule
    /// ([`PgType::Other`]).
    pub fn target_type(&self, ty: &PgType) -> Option<String> {
        let rule = self.rules.get(ty.rule_name())?;
        let (n, p, s) = match ty {
            PgType::Numeric { precision, scale } => (None, *precision, Some(scale.unwrap_or(0))),
            PgType::Varchar(n) | PgType::Char(n) | PgType::Bit(n) | PgType::VarBit(n) => (*n, None, None),
            PgType::Time(p) | PgType::TimeTz(p) | PgType::Timestamp(p) | PgType::TimestampTz(p) => (None, *p, None),
            _ => (None, None, None),
        };
        let modifier = n.or(p);
        let has_modifier_slot = rule.ty.contains("{n}") || rule.ty.contains("{p}");
        let template = match (modifier, &rule.unbounded, rule.max, &rule.over_max) {
            (None, Some(u), _, _) if has_modifier_slot => u,
            (Some(m), _, Some(max), Some(over)) if m > max => over,
            _ => &rule.ty,
        };
        let mut out = template.clone();
        if let Some(n) = n {
            out = out.replace("{n}", &n.to_string());
        }
        if let Some(p) = p {
            out = out.replace("{p}", &p.to_string());
        }
        if let Some(s) = s {
            out = out.replace("{s}", &s.to_string());
        }
        if out.contains("{labels}") {
            let labels = match ty {
                PgType::Enum { labels, .. } => {
                    labels.iter().map(|l| super::ddl::sql_string(&self.kind, l)).collect::<Vec<_>>().join(",")
                }
                _ => String::new(),
            };
            out = out.replace("{labels}", &labels);
        }
        if out.contains("{pg}") {
            out = out.replace("{pg}", &pg_type_sql(ty));
        }
        // A modifier slot left over (e.g. `{n}` for `bit` without length) falls back to 1.
        Some(out.replace("{n}", "1").replace("{p}", "6").replace("{s}", "0"))
    }
}

/// A PostgreSQL type as written in DDL on a PostgreSQL target; enum type
/// names are quoted (and keep their schema).
pub fn pg_type_sql(ty: &PgType) -> String {
    match ty {
        // Other types keep the name the catalog gave (already valid SQL, maybe qualified).
        PgType::Other { name } => name.clone(),
        PgType::Enum { name, .. } => TableName::parse(name).map(|t| t.pg_quoted()).unwrap_or_else(|| name.clone()),
        PgType::Array(inner) => format!("{}[]", pg_type_sql(inner)),
        other => other.sql_name(),
    }
}

/// Per-column settings from the plan: type overrides and lossy policies.
#[derive(Debug, Clone, Default)]
pub struct MappingOverrides {
    types: HashMap<(TableName, String), String>,
    policies: HashMap<(TableName, String), LossyPolicy>,
    default_policy: LossyPolicy,
    /// `mapping.target_names`.
    names: crate::plan::target_names::TargetNames,
}

/// Splits `schema.table.column` (or `table.column`, schema `public`).
pub(super) fn split_column_key(key: &str) -> Option<(TableName, String)> {
    let (table, column) = key.rsplit_once('.')?;
    let column = column.trim_matches('"');
    if column.is_empty() {
        return None;
    }
    Some((TableName::parse(table)?, column.to_string()))
}

impl MappingOverrides {
    /// The overrides of a plan's `mapping:` section.
    pub fn from_plan(m: &Mapping) -> Self {
        let types = m.columns.iter().filter_map(|(k, v)| Some((split_column_key(k)?, v.clone()))).collect();
        let policies = m.policies.iter().filter_map(|(k, v)| Some((split_column_key(k)?, *v))).collect();
        MappingOverrides {
            types,
            policies,
            default_policy: m.policy.unwrap_or_default(),
            names: crate::plan::target_names::TargetNames::from_mapping(m),
        }
    }

    /// Where the tables go on a target of this dialect.
    pub fn naming(&self, dialect: crate::plan::naming::SqlDialect) -> crate::plan::naming::Naming {
        crate::plan::naming::Naming::new(dialect, self.names.clone())
    }

    /// The type override for a column, if any.
    pub fn column_type(&self, table: &TableName, column: &str) -> Option<&str> {
        self.types.get(&(table.clone(), column.to_string())).map(String::as_str)
    }

    /// The lossy policy for a column: its own, else the plan default, else `error`.
    pub fn policy(&self, table: &TableName, column: &str) -> LossyPolicy {
        self.policies.get(&(table.clone(), column.to_string())).copied().unwrap_or(self.default_policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::MysqlFlavour;

    fn maria() -> TargetKind {
        TargetKind::Mysql { flavour: MysqlFlavour::Mariadb, version: (10, 11, 6) }
    }

    #[test]
    fn builtin_files_parse_and_cover_every_type() {
        for k in [maria(), TargetKind::Sqlite, TargetKind::Postgres] {
            let r = MappingRules::builtin(&k);
            assert!(r.target_type(&PgType::Other { name: "hstore".into() }).is_none());
        }
    }

    #[test]
    fn templates_expand_modifiers() {
        let r = MappingRules::builtin(&maria());
        let t = |ty: PgType| r.target_type(&ty).unwrap();
        assert_eq!(t(PgType::Numeric { precision: Some(12), scale: Some(2) }), "DECIMAL(12,2)");
        assert_eq!(t(PgType::Numeric { precision: None, scale: None }), "DECIMAL(65,30)");
        assert_eq!(t(PgType::Numeric { precision: Some(100), scale: Some(2) }), "DECIMAL(65,30)");
        assert_eq!(t(PgType::Varchar(Some(20))), "VARCHAR(20)");
        assert_eq!(t(PgType::Varchar(Some(20000))), "LONGTEXT");
        assert_eq!(t(PgType::Varchar(None)), "LONGTEXT");
        assert_eq!(t(PgType::TimestampTz(Some(3))), "DATETIME(3)");
        assert_eq!(t(PgType::TimestampTz(None)), "DATETIME(6)");
        assert_eq!(t(PgType::Enum { name: "mood".into(), labels: vec!["a'b".into(), "c".into()] }), "ENUM('a''b','c')");
        let pg = MappingRules::builtin(&TargetKind::Postgres);
        let e = PgType::Array(Box::new(PgType::Enum { name: "shop.Mood".into(), labels: vec![] }));
        assert_eq!(pg.target_type(&e).unwrap(), "\"shop\".\"Mood\"[]");
        assert_eq!(pg.target_type(&PgType::Varchar(Some(5))).unwrap(), "character varying(5)");
    }

    #[test]
    fn rule_file_errors_say_what_is_wrong() {
        let e = MappingRules::parse(&TargetKind::Sqlite, "target: mysql\ntypes: {}\n", "x.yaml").unwrap_err();
        assert!(e.to_string().contains("x.yaml") && e.to_string().contains("target `mysql`"), "{e}");
        let e =
            MappingRules::parse(&TargetKind::Sqlite, "target: sqlite\ntypes: {text: TEXT}\n", "x.yaml").unwrap_err();
        assert!(e.to_string().contains("no rule for type `boolean`"), "{e}");
        let e =
            MappingRules::parse(&TargetKind::Sqlite, "target: sqlite\ntypes: {hstore: TEXT}\n", "x.yaml").unwrap_err();
        assert!(e.to_string().contains("unknown type rule `hstore`"), "{e}");
    }

    #[test]
    fn overrides_from_plan() {
        let mut m = Mapping::default();
        m.columns.insert("public.t.c".into(), "JSON".into());
        m.columns.insert("u.d".into(), "TEXT".into());
        m.policies.insert("s.t.x".into(), LossyPolicy::Clamp);
        m.policy = Some(LossyPolicy::Null);
        let o = MappingOverrides::from_plan(&m);
        assert_eq!(o.column_type(&TableName::new("public", "t"), "c"), Some("JSON"));
        assert_eq!(o.column_type(&TableName::new("public", "u"), "d"), Some("TEXT"));
        assert_eq!(o.policy(&TableName::new("s", "t"), "x"), LossyPolicy::Clamp);
        assert_eq!(o.policy(&TableName::new("s", "t"), "y"), LossyPolicy::Null);
    }
}
