//! The YAML plan that drives every xdb command.
//!
//! Loading a plan either yields a fully validated [`Plan`] or a [`PlanError`]
//! that points at `file:line:column` and says what was expected. `${VAR}`
//! references are filled from the environment while parsing, so a missing
//! variable is reported at the place that uses it; the values themselves
//! (passwords) never appear in an error, and URLs print with `***`.

mod env;
mod error;
pub mod naming;
mod nats_url;
pub mod paths;
pub mod target_names;
mod url;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::Deserialize;

pub use env::{interpolate, with_base};
pub use error::PlanError;
pub use nats_url::NatsTarget;
pub(crate) use url::{percent_decode as percent_decode_text, percent_decode_strict};
pub use url::{SecretUrl, TargetUrl, TARGET_SCHEMES};

use crate::model::TableName;

/// A validated plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the plan was read from (for messages).
    pub file: PathBuf,
    /// The plan file's directory, absolute: relative paths in the plan
    /// (SQLite files, rules files, certificates) were resolved against it,
    /// and `command` steps run in it.
    pub dir: PathBuf,
    pub name: String,
    pub source: Source,
    pub target: Target,
    /// The tables to replicate, schema-qualified, in plan order, no duplicates.
    pub tables: Vec<TableName>,
    /// Tables listed as `ONLY schema.table`: inheritance parents whose own
    /// rows are copied and streamed, without their children's.
    pub only_tables: Vec<TableName>,
    pub mapping: Mapping,
    pub copy: Copy,
    pub apply: Apply,
    /// The cutover runbook, kept as YAML until the cutover executor reads it.
    pub cutover: Option<serde_yaml_ng::Value>,
}

/// The PostgreSQL source.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: SecretUrl,
    /// Publication name; created when missing.
    pub publication: String,
    /// Logical replication slot name; created when missing.
    pub slot: String,
    /// Seconds without any change after which xdb writes a heartbeat message
    /// so an idle slot keeps advancing.
    pub heartbeat_interval_secs: u64,
    /// `source.url: nats://…`: `sync` reads this replicated log (Debezium
    /// events xdb wrote) instead of a slot; `url` is then the original
    /// PostgreSQL (`source.validate_url`) for the catalog and `validate`.
    pub log: Option<SecretUrl>,
}

/// The target database.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: TargetUrl,
}

/// Lossy-value policy: what to do with a value the target cannot hold exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LossyPolicy {
    /// Stop with an error naming table, column and key (the default).
    #[default]
    Error,
    /// Write NULL instead.
    Null,
    /// Write the nearest value the target can hold.
    Clamp,
}

/// Type-mapping settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// A rule file replacing the built-in `mappings/pg-to-<target>.yaml`
    /// (relative to the plan file's directory).
    #[serde(default, deserialize_with = "env_path")]
    pub rules: Option<PathBuf>,
    /// Per-column target types: `schema.table.column: TYPE`.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Lossy-value policy for every column without its own.
    #[serde(default)]
    pub policy: Option<LossyPolicy>,
    /// Per-column lossy-value policies: `schema.table.column: null|clamp|error`.
    #[serde(default)]
    pub policies: BTreeMap<String, LossyPolicy>,
    /// Key or unique columns (`schema.table.column`) of existing target
    /// tables allowed a case- or accent-insensitive collation.
    #[serde(default)]
    pub insensitive_keys: Vec<String>,
    /// Per-table target names (`schema.table: name`), replacing the naming
    /// rule (`plan::target_names`) for names over the target's limit or
    /// two tables the rule gives one name.
    #[serde(default)]
    pub target_names: BTreeMap<String, String>,
    /// Where the values of stored generated columns come from: `target`
    /// (the default: a generated column of the target computes them) or
    /// `source` (PostgreSQL 18+: published and copied, a plain column on
    /// the target; see `model::CarriedGenerated`).
    #[serde(default)]
    pub generated: GeneratedFrom,
}

/// `mapping.generated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GeneratedFrom {
    #[default]
    Target,
    Source,
}

/// Bulk-copy settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Copy {
    /// Copy workers. Default: the number of cores (1 for SQLite, whose
    /// single writer gains nothing from more).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Rows per range when a large table is split among workers.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
}

/// 100,000: each range is one target transaction, and the last ones to
/// commit are the copy's tail, with one core idle while the other worker
/// finishes. Measured (issue 18, 1M-row orders table into MariaDB, 2
/// workers, best of 4): 250,000 rows per range 5.22 s, 100,000 4.73 s,
/// 50,000 4.97 s (more commits); into PostgreSQL no difference above the
/// noise.
fn default_chunk_rows() -> u64 {
    100_000
}

impl Default for Copy {
    fn default() -> Self {
        Copy { parallelism: None, chunk_rows: default_chunk_rows() }
    }
}

/// Change-apply settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Apply {
    /// Rows after which a target transaction is committed (whole source
    /// transactions only).
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// The longest a batch waits for more transactions that the stream is
    /// still handing over (already received). An upper bound only: when
    /// nothing more is queued or on its way, a batch is applied at once.
    #[serde(default = "default_max_batch_delay_ms")]
    pub max_batch_delay_ms: u64,
}

fn default_max_batch_rows() -> usize {
    5000
}
fn default_max_batch_delay_ms() -> u64 {
    100
}

impl Default for Apply {
    fn default() -> Self {
        Apply { max_batch_rows: default_max_batch_rows(), max_batch_delay_ms: default_max_batch_delay_ms() }
    }
}

// ---- raw serde model (what the YAML says, before defaults) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    #[serde(deserialize_with = "env_string")]
    name: String,
    source: RawSource,
    target: RawTarget,
    tables: Vec<PlanTable>,
    #[serde(default)]
    mapping: Mapping,
    #[serde(default)]
    copy: Copy,
    #[serde(default)]
    apply: Apply,
    #[serde(default)]
    cutover: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: SourceUrlField,
    #[serde(default)]
    validate_url: Option<SourceUrlField>,
    #[serde(default)]
    publication: Option<Ident>,
    #[serde(default)]
    slot: Option<SlotName>,
    #[serde(default = "default_heartbeat")]
    heartbeat_interval_secs: u64,
}

fn default_heartbeat() -> u64 {
    10
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: TargetUrlField,
}

/// A string with `${VAR}` filled in at parse time (so errors carry a location).
fn env_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    interpolate(&raw, |n| std::env::var(n).ok()).map_err(de::Error::custom)
}

/// An optional path with `${VAR}` filled in.
fn env_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(Some(PathBuf::from(env_string(d)?)))
}

struct SourceUrlField(SecretUrl);

impl<'de> Deserialize<'de> for SourceUrlField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url = SecretUrl::new(env_string(d)?);
        url.check_userinfo("source.url").map_err(de::Error::custom)?;
        match url.scheme().as_deref() {
            Some("postgres") | Some("postgresql") | Some("nats") => Ok(SourceUrlField(url)),
            other => Err(de::Error::custom(format!(
                "source.url must be a PostgreSQL URL (postgres://user:${{PASSWORD}}@host:5432/db) or a replicated log \
                 (nats://host:4222?stream=…), got scheme {:?} in {}",
                other.unwrap_or(""),
                url.redacted()
            ))),
        }
    }
}

struct TargetUrlField(TargetUrl);

impl<'de> Deserialize<'de> for TargetUrlField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url = env_string(d)?;
        if !url.starts_with("sqlite:") {
            SecretUrl::new(url.clone()).check_userinfo("target.url").map_err(de::Error::custom)?;
        }
        TargetUrl::parse(&url).map(TargetUrlField).map_err(de::Error::custom)
    }
}

impl Plan {
    /// How the source query names a planned table: `ONLY "s"."t"` for a
    /// table listed as `ONLY s.t` (its children's rows left out, as the
    /// publication leaves out their changes), else `"s"."t"`.
    pub fn read_from(&self, t: &TableName) -> String {
        if self.only_tables.contains(t) {
            format!("ONLY {}", t.pg_quoted())
        } else {
            t.pg_quoted()
        }
    }
}

/// A `tables:` entry: `schema.table`, or `ONLY schema.table` for an
/// inheritance parent read without its children.
struct PlanTable(TableName, bool);

impl<'de> Deserialize<'de> for PlanTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = env_string(d)?;
        let (name, only) = match s.trim().split_once(char::is_whitespace) {
            Some((kw, rest)) if kw.eq_ignore_ascii_case("only") => (rest.trim(), true),
            _ => (s.as_str(), false),
        };
        TableName::parse(name).map(|t| PlanTable(t, only)).ok_or_else(|| {
            de::Error::custom(format!("invalid table name {s:?}: expected schema.table, table or ONLY schema.table"))
        })
    }
}

/// A PostgreSQL identifier used unquoted by xdb (publication name).
struct Ident(String);

impl<'de> Deserialize<'de> for Ident {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = env_string(d)?;
        if s.is_empty() || s.len() > 63 {
            return Err(de::Error::custom(format!("invalid name {s:?}: 1 to 63 characters")));
        }
        Ok(Ident(s))
    }
}

/// A replication slot name: PostgreSQL allows lower-case letters, digits and `_`.
struct SlotName(String);

impl<'de> Deserialize<'de> for SlotName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = env_string(d)?;
        if !valid_slot_name(&s) {
            return Err(de::Error::custom(format!(
                "invalid slot name {s:?}: use 1 to 63 lower-case letters, digits and underscores"
            )));
        }
        Ok(SlotName(s))
    }
}

fn valid_slot_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The plan's `mapping.target_names`: each key a planned table, and the
/// names every planned table gets with them checked against the target's
/// limits and each other (`target_names`); an error is the key to
/// point at and the message.
fn check_target_names(raw: &Mapping, tables: &[TableName], target: &TargetUrl) -> Result<(), (String, String)> {
    use naming::{Naming, SqlDialect};
    for (key, name) in &raw.target_names {
        let t = TableName::parse(key).filter(|t| tables.contains(t)).ok_or_else(|| {
            (key.clone(), format!("mapping.target_names entry {key:?} does not name a table in `tables`"))
        })?;
        if name.trim().is_empty() {
            return Err((key.clone(), format!("mapping.target_names gives {t} an empty name")));
        }
    }
    let dialect = match target {
        TargetUrl::Mysql(_) => SqlDialect::Mysql,
        TargetUrl::Sqlite(_) => SqlDialect::Sqlite,
        TargetUrl::Postgres(_) => SqlDialect::Postgres,
        // Subjects on a log have no identifier limit and cannot collide
        // (they keep the schema).
        TargetUrl::Nats(_) => return Ok(()),
    };
    let naming = Naming::new(dialect, target_names::TargetNames::from_mapping(raw));
    let refs: Vec<&TableName> = tables.iter().collect();
    let problems = target_names::table_name_problems(&naming, &refs);
    if let Some(first) = problems.into_iter().next() {
        return Err(("tables".into(), format!("target table names: {first}")));
    }
    Ok(())
}

/// `xdb_<plan name>` reduced to what a slot name may hold.
fn default_object_name(plan_name: &str) -> String {
    let mut s: String =
        plan_name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    s.insert_str(0, "xdb_");
    s.truncate(63);
    s
}

impl Plan {
    /// Reads and validates a plan file.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| PlanError::io(path, format!("cannot read plan file: {e}")))?;
        Plan::parse(&text, path)
    }

    /// Parses and validates plan text; `file` names it in errors. Phases:
    /// the YAML, the tables and what names them, the numeric limits, the
    /// source and target URLs (relative paths resolved against the plan's
    /// directory), then the plan's secrets registered.
    pub fn parse(text: &str, file: &Path) -> Result<Plan, PlanError> {
        let raw: RawPlan = with_base(&paths::plan_dir(file), || serde_yaml_ng::from_str(text))
            .map_err(|e| PlanError::from_yaml(file, text, &e))?;
        let at_key = |(key, msg): (String, String)| PlanError::at_key(file, text, &key, msg);

        if raw.name.trim().is_empty() {
            return Err(at_key(("name".into(), "name must not be empty".into())));
        }
        let (tables, only_tables) = planned_tables(raw.tables).map_err(at_key)?;
        check_mapping_keys(&raw.mapping, &tables).map_err(at_key)?;
        check_target_names(&raw.mapping, &tables, &raw.target.url.0).map_err(at_key)?;
        check_limits(&raw.copy, &raw.apply, &raw.source).map_err(at_key)?;
        let (source_url, log) = source_urls(raw.source.url.0, raw.source.validate_url, &raw.name).map_err(at_key)?;
        let default_name = default_object_name(&raw.name);
        let dir = paths::plan_dir(file);
        let mut mapping = raw.mapping;
        mapping.rules = mapping.rules.map(|r| paths::resolve(&dir, &r));
        let target = resolved_target(raw.target.url.0, &dir, &raw.name).map_err(at_key)?;
        let plan = Plan {
            file: file.to_path_buf(),
            dir: dir.clone(),
            name: raw.name,
            source: Source {
                url: SecretUrl::new(paths::absolutize_url_params(source_url.expose(), &dir)),
                log,
                publication: raw.source.publication.map(|i| i.0).unwrap_or_else(|| default_name.clone()),
                slot: raw.source.slot.map(|s| s.0).unwrap_or(default_name),
                heartbeat_interval_secs: raw.source.heartbeat_interval_secs,
            },
            target: Target { url: target },
            tables,
            only_tables,
            mapping,
            copy: raw.copy,
            apply: raw.apply,
            cutover: raw.cutover,
        };
        for secret in plan.secrets() {
            crate::secrets::register(&secret);
        }
        Ok(plan)
    }

    /// Copy workers after defaults: the plan's value, else the number of
    /// cores, and 1 for SQLite targets.
    pub fn copy_parallelism(&self) -> usize {
        match (self.copy.parallelism, &self.target.url) {
            (Some(n), _) => n,
            (None, TargetUrl::Sqlite(_)) => 1,
            (None, _) => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        }
    }

    /// Every secret the plan holds (passwords in URLs: user-info and
    /// `password=` parameters), for scrubbing text that came from elsewhere
    /// (driver errors) before it is shown.
    pub fn secrets(&self) -> Vec<String> {
        let urls: Vec<&SecretUrl> = match &self.target.url {
            TargetUrl::Mysql(u) | TargetUrl::Postgres(u) | TargetUrl::Nats(u) => vec![&self.source.url, u],
            TargetUrl::Sqlite(_) => vec![&self.source.url],
        };
        let mut urls = urls;
        urls.extend(self.source.log.as_ref());
        let mut v: Vec<String> = urls
            .into_iter()
            .flat_map(|u| [u.password(), u.query_password()])
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// `text` through the one scrubber ([`crate::secrets::scrub`]): this
    /// plan's secrets were registered with it when the plan was loaded.
    pub fn scrub(&self, text: &str) -> String {
        crate::secrets::scrub(text)
    }
}

/// A plan error at a YAML key: the key and the message.
type KeyError = (String, String);

/// The planned tables in order (each once) and those marked `only`.
fn planned_tables(raw: Vec<PlanTable>) -> Result<(Vec<TableName>, Vec<TableName>), KeyError> {
    if raw.is_empty() {
        return Err(("tables".into(), "tables is empty: list at least one table, e.g. tables: [public.orders]".into()));
    }
    let mut tables: Vec<TableName> = Vec::with_capacity(raw.len());
    let mut only_tables = Vec::new();
    for PlanTable(t, only) in raw {
        if tables.contains(&t) {
            return Err(("tables".into(), format!("table {t} is listed twice")));
        }
        if only {
            only_tables.push(t.clone());
        }
        tables.push(t);
    }
    Ok((tables, only_tables))
}

/// Every `mapping.columns` and `mapping.policies` key names a column of a
/// planned table (a misspelt one would otherwise be ignored silently).
fn check_mapping_keys(mapping: &Mapping, tables: &[TableName]) -> Result<(), KeyError> {
    for key in mapping.columns.keys().chain(mapping.policies.keys()) {
        let known = tables.iter().any(|t| {
            key.strip_prefix(&format!("{t}."))
                .or_else(|| (t.schema == "public").then(|| key.strip_prefix(&format!("{}.", t.name))).flatten())
                .is_some_and(|col| !col.is_empty())
        });
        if !known {
            return Err((
                key.clone(),
                format!(
                    "mapping entry {key:?} does not name a column of a planned table: write schema.table.column with a table from `tables`"
                ),
            ));
        }
    }
    Ok(())
}

fn check_limits(copy: &Copy, apply: &Apply, source: &RawSource) -> Result<(), KeyError> {
    if copy.parallelism == Some(0) {
        return Err(("parallelism".into(), "copy.parallelism must be at least 1".into()));
    }
    if apply.max_batch_rows == 0 {
        return Err(("max_batch_rows".into(), "apply.max_batch_rows must be at least 1".into()));
    }
    if source.heartbeat_interval_secs == 0 {
        return Err(("heartbeat_interval_secs".into(), "source.heartbeat_interval_secs must be at least 1".into()));
    }
    Ok(())
}

/// The PostgreSQL URL every command but `sync` uses, and the log's URL
/// for a log source: the original PostgreSQL stands in `validate_url`
/// (catalog, `validate`, `check`).
fn source_urls(
    url: SecretUrl,
    validate_url: Option<SourceUrlField>,
    plan_name: &str,
) -> Result<(SecretUrl, Option<SecretUrl>), KeyError> {
    if url.scheme().as_deref() != Some("nats") {
        if validate_url.is_some_and(|u| u.0.scheme().as_deref() == Some("nats")) {
            return Err(("validate_url".into(), "source.validate_url must be a PostgreSQL URL".into()));
        }
        return Ok((url, None));
    }
    let Some(pg) = validate_url.map(|u| u.0).filter(|u| u.scheme().as_deref() != Some("nats")) else {
        return Err((
            "url".into(),
            "a nats:// source needs source.validate_url: the original PostgreSQL (its catalog gives the tables' \
             types; `xdb validate` compares against it)"
                .into(),
        ));
    };
    NatsTarget::parse(&url, plan_name).map_err(|e| ("url".to_string(), e))?;
    Ok((pg, Some(url)))
}

/// The target URL with relative file paths resolved against the plan's
/// directory.
fn resolved_target(url: TargetUrl, dir: &Path, plan_name: &str) -> Result<TargetUrl, KeyError> {
    Ok(match url {
        TargetUrl::Sqlite(p) => TargetUrl::Sqlite(paths::resolve(dir, &p)),
        TargetUrl::Mysql(u) => TargetUrl::Mysql(SecretUrl::new(paths::absolutize_url_params(u.expose(), dir))),
        TargetUrl::Postgres(u) => TargetUrl::Postgres(SecretUrl::new(paths::absolutize_url_params(u.expose(), dir))),
        TargetUrl::Nats(u) => {
            NatsTarget::parse(&u, plan_name).map_err(|e| ("url".to_string(), e))?;
            TargetUrl::Nats(u)
        }
    })
}
