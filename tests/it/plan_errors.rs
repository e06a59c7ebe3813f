//! Broken plans each give their own message at file:line:column, and no
//! secret ever reaches an error.

use std::path::Path;

use xdb::plan::{Plan, PlanError, TargetUrl};

fn parse(yaml: &str) -> Result<Plan, PlanError> {
    Plan::parse(yaml, Path::new("plan.yaml"))
}

fn err(yaml: &str) -> PlanError {
    match parse(yaml) {
        Ok(_) => panic!("plan should have been rejected:\n{yaml}"),
        Err(e) => e,
    }
}

const GOOD: &str = "name: shop
source:
  url: postgres://xdb:pw@127.0.0.1:5432/shop
target:
  url: mysql://xdb:pw@127.0.0.1:3306/shop
tables: [public.orders, customers]
";

#[test]
fn a_good_plan_gets_defaults_by_target_kind() {
    let p = parse(GOOD).unwrap();
    assert_eq!(p.source.slot, "xdb_shop");
    assert_eq!(p.source.publication, "xdb_shop");
    assert_eq!(p.tables[1].to_string(), "public.customers");
    assert_eq!(p.apply.max_batch_rows, 5000);
    assert!(matches!(p.target.url, TargetUrl::Mysql(_)));
    let sqlite = parse(&GOOD.replace("mysql://xdb:pw@127.0.0.1:3306/shop", "sqlite://shop.db")).unwrap();
    assert_eq!(sqlite.copy_parallelism(), 1, "SQLite has one writer");
}

#[test]
fn bad_yaml_points_at_line_and_column() {
    let e = err("name: shop\nsource:\n  url: [unclosed\ntarget: {}\n");
    assert_eq!(e.file, "plan.yaml");
    assert!(e.line.is_some() && e.column.is_some(), "{e}");
    assert!(e.to_string().starts_with("plan.yaml:"), "{e}");
}

#[test]
fn wrong_type_names_what_was_expected() {
    let e =
        err(&GOOD
            .replace("tables: [public.orders, customers]", "tables: [public.orders]\napply:\n  max_batch_rows: lots"));
    assert_eq!((e.line, e.column), (Some(8), Some(19)), "{e}");
    assert!(e.message.contains("invalid type: string \"lots\", expected a whole number"), "{e}");
}

#[test]
fn unknown_key_suggests_the_closest() {
    let e = err(&format!("{GOOD}copy:\n  paralelism: 4\n"));
    assert_eq!((e.line, e.column), (Some(8), Some(3)), "{e}");
    assert!(e.message.contains("unknown field `paralelism`"), "{e}");
    assert!(e.message.contains("did you mean `parallelism`?"), "{e}");
    let top = err(&GOOD.replace("tables:", "tabels:"));
    assert!(top.message.contains("did you mean `tables`?"), "{top}");
}

#[test]
fn missing_env_var_is_named_at_its_use() {
    let e = err(&GOOD.replace("xdb:pw@127.0.0.1:5432", "xdb:${XDB_TEST_SURELY_UNSET_VAR}@127.0.0.1:5432"));
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("XDB_TEST_SURELY_UNSET_VAR is not set"), "{e}");
}

#[test]
fn unknown_target_scheme_lists_the_known_ones() {
    let e = err(&GOOD.replace("mysql://xdb:pw@", "oracle://xdb:pw@"));
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("unknown target URL scheme \"oracle\""), "{e}");
    assert!(e.message.contains("sqlite://"), "{e}");
    assert!(!e.to_string().contains(":pw@"), "password leaked: {e}");
}

#[test]
fn empty_table_list_is_refused() {
    let e = err(&GOOD.replace("tables: [public.orders, customers]", "tables: []"));
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.message.contains("tables is empty"), "{e}");
}

#[test]
fn other_mistakes_are_located() {
    let e = err(&GOOD.replace("tables: [public.orders, customers]", "tables: [a.b.c]"));
    assert!(e.message.contains("invalid table name \"a.b.c\""), "{e}");
    let e = err(&GOOD.replace("name: shop\n", ""));
    assert!(e.message.contains("missing field `name`"), "{e}");
    let e = err(&format!("{GOOD}mapping:\n  policy: nul\n"));
    assert!(e.message.contains("did you mean `null`?"), "{e}");
    let e = err(&format!("{GOOD}mapping:\n  columns:\n    public.nope.col: JSON\n"));
    assert_eq!(e.line, Some(9), "{e}");
    assert!(e.message.contains("does not name a column of a planned table"), "{e}");
    let e = err(&GOOD.replace("source:\n", "source:\n  slot: Bad-Slot\n"));
    assert!(e.message.contains("invalid slot name"), "{e}");
    let e = err(&GOOD.replace("postgres://", "mysql://"));
    assert!(e.message.contains("source.url must be a PostgreSQL URL"), "{e}");
    assert!(!e.to_string().contains(":pw@"), "password leaked: {e}");
    assert!(err("").message.contains("empty"));
}

#[test]
fn env_values_are_used_but_never_printed() {
    std::env::set_var("XDB_TEST_PLAN_PW", "hunter2-secret");
    let p = parse(&GOOD.replace("xdb:pw@127.0.0.1:5432", "xdb:${XDB_TEST_PLAN_PW}@127.0.0.1:5432")).unwrap();
    assert!(p.source.url.expose().contains("hunter2-secret"));
    assert!(!format!("{p:?}").contains("hunter2-secret"), "Debug leaks the password");
    assert!(!p.source.url.to_string().contains("hunter2-secret"));
    assert_eq!(p.scrub("driver said: hunter2-secret is wrong"), "driver said: *** is wrong");
}

#[test]
fn the_cli_reports_a_bad_plan_with_exit_2() {
    let f = crate::support::PlanFile::new(&GOOD.replace("tables: [public.orders, customers]", "tables: []"));
    let out = crate::support::xdb_args(&["check", "--plan", f.path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", crate::support::text(&out));
    let t = crate::support::text(&out);
    assert!(t.contains("plan.yaml:6:1: tables is empty"), "{t}");
}
