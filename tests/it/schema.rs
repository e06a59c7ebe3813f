//! `xdb schema` against the real servers: the DDL for a realistic shop
//! schema matches a reviewed file per target (tests/expected/schema/), `--apply`
//! creates the tables and a second run keeps them, and `--scan` finds planted
//! out-of-range values with their keys.
//!
//! `XDB_BLESS=1 cargo test --test it schema` rewrites the expected files;
//! review the diff before committing it.

use std::path::PathBuf;

use mysql_async::prelude::Queryable;

use crate::support::{self, MyDb, PgDb, PlanFile};

/// A shop with every kind of column the mapping rules have to decide on.
const SHOP: &str = r#"
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'cancelled');
CREATE DOMAIN money_amount AS numeric(12,2) CHECK (VALUE >= 0);
CREATE TABLE customers (
  id bigserial PRIMARY KEY,
  email varchar(320) NOT NULL,
  name text,
  bio varchar(20000),
  external_id uuid NOT NULL DEFAULT gen_random_uuid(),
  is_active boolean NOT NULL DEFAULT true,
  signup_ip inet,
  created_at timestamptz NOT NULL DEFAULT now(),
  birthday date,
  preferences jsonb DEFAULT '{}'
);
CREATE UNIQUE INDEX customers_email_key ON customers (email);
CREATE INDEX customers_lower_email_idx ON customers (lower(email));
CREATE TABLE products (
  id serial PRIMARY KEY,
  sku varchar(64) NOT NULL,
  title text NOT NULL,
  price money_amount NOT NULL,
  weight_kg numeric,
  tags text[],
  photo bytea,
  attributes json,
  updated_at timestamp(3)
);
CREATE UNIQUE INDEX products_sku_key ON products (sku);
CREATE TABLE orders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers(id),
  status order_status NOT NULL DEFAULT 'pending',
  total numeric(14,2) NOT NULL DEFAULT 0,
  placed_at timestamptz NOT NULL,
  delivery_window interval,
  pickup_time time,
  note text
);
CREATE INDEX orders_customer_placed_idx ON orders (customer_id, placed_at);
CREATE TABLE order_items (
  order_id bigint NOT NULL REFERENCES orders(id),
  line_no integer NOT NULL,
  product_id integer NOT NULL REFERENCES products(id),
  quantity smallint NOT NULL DEFAULT 1,
  unit_price money_amount NOT NULL,
  PRIMARY KEY (order_id, line_no),
  CONSTRAINT order_items_quantity_positive CHECK (quantity > 0)
);
GRANT SELECT ON ALL TABLES IN SCHEMA public TO xdb_repl;
"#;

const SHOP_TABLES: &str = "customers, products, orders, public.order_items";

fn plan_yaml(source_url: &str, target_url: &str, tables: &str, mapping: &str) -> String {
    format!("name: shop\nsource:\n  url: {source_url}\ntarget:\n  url: {target_url}\ntables: [{tables}]\n{mapping}")
}

/// Runs `xdb schema --plan <yaml> <args>`: exit code, stdout, stderr.
fn run_schema(yaml: &str, args: &[&str]) -> (i32, String, String) {
    let f = PlanFile::new(yaml);
    let mut all = vec!["schema", "--plan", f.path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = support::xdb_args(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Replaces what differs between runs and machines: the target URL on the
/// header line (it holds the generated database name) and server versions.
fn normalise(script: &str) -> String {
    let mut out = String::new();
    for line in script.lines() {
        let line = match (line.starts_with("-- xdb schema for plan "), line.split_once(" → "), line.rfind(" (")) {
            (true, Some((head, _)), Some(kind_at)) => format!("{head} → <target>{}", &line[kind_at..]),
            _ => line.to_string(),
        };
        out.push_str(&strip_versions(&line));
        out.push('\n');
    }
    out
}

/// `MariaDB 10.11.6` → `MariaDB <version>` (likewise MySQL).
fn strip_versions(line: &str) -> String {
    let mut out = line.to_string();
    for flavour in ["MariaDB ", "MySQL "] {
        let mut from = 0;
        while let Some(at) = out[from..].find(flavour).map(|i| i + from) {
            let start = at + flavour.len();
            let len = out[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').count();
            if len == 0 {
                from = start;
                continue;
            }
            out.replace_range(start..start + len, "<version>");
            from = start;
        }
    }
    out
}

/// Compares with tests/expected/schema/<name>.sql, or rewrites it under XDB_BLESS=1.
fn check_expected(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/expected/schema").join(format!("{name}.sql"));
    if std::env::var("XDB_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with XDB_BLESS=1 to create it", path.display()));
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "xdb schema output differs from {} at line {}:\n expected: {:?}\n actual:   {:?}\n\
             full output:\n{actual}\n(if the change is intended, rerun with XDB_BLESS=1 and review the diff)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first),
        );
    }
}

async fn shop() -> PgDb {
    let src = PgDb::create("xdb_schema_src").await;
    src.exec(SHOP).await;
    src
}

/// Plan, apply, apply again against one target; returns the first apply's output.
fn plan_apply_reapply(src: &PgDb, target_url: &str, expected: &str) -> String {
    let yaml = plan_yaml(&src.repl_url(), target_url, SHOP_TABLES, "");
    let (code, out, err) = run_schema(&yaml, &[]);
    assert_eq!(code, 0, "{out}{err}");
    check_expected(expected, &normalise(&out));
    // Spelled out as well, so a re-bless cannot silently drop them.
    assert!(
        out.contains("-- not rebuilt: public.customers: index customers_lower_email_idx is an expression"),
        "{out}"
    );
    assert!(
        out.contains(
            "-- not created: foreign key orders_customer_id_fkey: FOREIGN KEY (customer_id) REFERENCES customers(id)"
        ),
        "{out}"
    );

    let (code, applied, err) = run_schema(&yaml, &["--apply"]);
    assert_eq!(code, 0, "{applied}{err}");
    for t in ["customers", "products", "orders", "order_items"] {
        assert!(applied.contains(&format!("created the target table for public.{t}\n")), "{applied}");
    }
    let (code, again, err) = run_schema(&yaml, &["--apply"]);
    assert_eq!(code, 0, "{again}{err}");
    assert!(!again.contains("created the target table"), "second --apply created something:\n{again}");
    for t in ["customers", "products", "orders", "order_items"] {
        assert!(again.contains(&format!("kept the existing target table for public.{t} (not changed)")), "{again}");
    }
    applied
}

#[tokio::test]
async fn mariadb_schema_matches_reviewed_ddl_and_apply_is_idempotent() {
    let src = shop().await;
    let my = MyDb::create("xdb_schema_my").await;
    plan_apply_reapply(&src, &my.url(), "mariadb");

    // What the server made of it: binary NO PAD keys, JSON checked, UTC default.
    let mut c = mysql_async::Conn::from_url(my.url()).await.unwrap();
    let (_, ddl): (String, String) = c.query_first("SHOW CREATE TABLE customers").await.unwrap().unwrap();
    assert!(ddl.contains("COLLATE=utf8mb4_nopad_bin"), "{ddl}");
    assert!(ddl.contains("CHECK (json_valid(`preferences`))"), "{ddl}");
    assert!(ddl.contains("DEFAULT utc_timestamp(6)"), "{ddl}");
    assert!(ddl.contains("`bio` longtext"), "{ddl}");
    let bad: Result<(), _> =
        c.query_drop("INSERT INTO customers (email, external_id, preferences) VALUES ('a@b', UUID(), '{no')").await;
    assert!(bad.is_err(), "MariaDB accepted invalid JSON");
    // 'a' and 'a ' are two keys, as on PostgreSQL.
    c.query_drop("INSERT INTO products (sku, title, price) VALUES ('a', 't', 1), ('a ', 't', 1), ('A', 't', 1)")
        .await
        .unwrap();
    c.query_drop("CREATE UNIQUE INDEX sku ON products (sku)").await.expect("'a', 'a ' and 'A' collide as keys");
    let n: Option<i64> = c.query_first("SELECT count(*) FROM products WHERE sku = 'a'").await.unwrap();
    assert_eq!(n, Some(1));

    // A table that no longer matches is kept, and the difference reported.
    c.query_drop("ALTER TABLE orders DROP COLUMN note, ADD COLUMN legacy INT").await.unwrap();
    let (code, out, err) = run_schema(&plan_yaml(&src.repl_url(), &my.url(), SHOP_TABLES, ""), &["--apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("-- note: the existing target table orders differs: it lacks the column(s) note; it has column(s) the source does not: legacy; xdb leaves it as it is"),
        "{out}"
    );
    assert!(out.contains("kept the existing target table for public.orders (not changed)"), "{out}");
    assert!(!out.contains("target table customers differs"), "{out}");
    let _ = c.disconnect().await;
}

#[tokio::test]
async fn sqlite_schema_matches_reviewed_ddl_and_apply_is_idempotent() {
    let src = shop().await;
    let dir = std::env::temp_dir().join(support::unique("xdb_schema_sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/shop.db", dir.display());
    plan_apply_reapply(&src, &url, "sqlite");
    let db = rusqlite::Connection::open(dir.join("shop.db")).unwrap();
    let n: i64 = db.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0)).unwrap();
    assert!(n >= 4, "{n} tables");
    let bad = db.execute("INSERT INTO orders (customer_id, status, placed_at) VALUES (1, 'lost', 'x')", []);
    assert!(bad.is_err(), "the enum CHECK let 'lost' in");
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn postgres_schema_matches_reviewed_ddl_and_apply_is_idempotent() {
    let src = shop().await;
    let tgt = PgDb::create("xdb_schema_tgt").await;
    plan_apply_reapply(&src, &tgt.super_url(), "postgres");
    let c = tgt.super_client().await;
    let labels: String = c
        .query_one("SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = 'order_status'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(labels, "pending,paid,shipped,cancelled");
    let price: String = c
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.products'::regclass AND attname = 'price'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(price, "numeric(12,2)", "domains land as their base type");
    // The setval the script's identity note prints makes new ids follow the copied ones.
    c.batch_execute(
        "INSERT INTO orders (id, customer_id, placed_at) VALUES (5, 1, now());
         SELECT setval(pg_get_serial_sequence('\"public\".\"orders\"', 'id'), max(\"id\")) FROM \"public\".\"orders\";",
    )
    .await
    .unwrap();
    let next: i64 = c
        .query_one("INSERT INTO orders (customer_id, placed_at) VALUES (1, now()) RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 6);
}

/// Values the MySQL family cannot hold, one kind per row, keyed by id; and a
/// composite-key table to show how keys are named.
const PLANTED: &str = r#"
CREATE TABLE events (
  id int PRIMARY KEY,
  at timestamp,
  at_tz timestamptz,
  day date,
  amount numeric,
  price numeric(12,2),
  ratio double precision,
  note text
);
INSERT INTO events VALUES
  (1, '9999-12-31 23:59:59.999999', '1000-01-01 00:00:00+00', '1000-01-01', 12345.678, 1.5, 0.25, 'fine: the limits themselves fit'),
  (2, '0001-01-01 00:00:00 BC', NULL, NULL, NULL, NULL, NULL, 'year 0'),
  (3, '10000-01-01 00:00:00', NULL, NULL, NULL, NULL, NULL, 'year 10000'),
  (4, 'infinity', '-infinity', 'infinity', NULL, NULL, NULL, 'infinities'),
  (5, '-infinity', 'infinity', '0999-12-31', NULL, NULL, NULL, 'infinities'),
  (6, NULL, NULL, NULL, 'NaN', 'NaN', NULL, 'NaN'),
  (7, NULL, NULL, NULL, 1234567890123456789012345678901234567890, NULL, NULL, '40 integer digits'),
  (8, NULL, NULL, NULL, 0.1234567890123456789012345678901, NULL, NULL, '31 fraction digits'),
  (9, NULL, NULL, NULL, '-Infinity', NULL, 'NaN', 'infinite numeric, NaN double');
CREATE TABLE shipments (region text, id int, sent_at timestamptz, PRIMARY KEY (region, id));
INSERT INTO shipments VALUES ('eu', 1, now()), ('eu', 7, '0500-06-01 12:00:00+00');
CREATE TABLE clean (id int PRIMARY KEY, at timestamptz, amount numeric(10,2));
INSERT INTO clean VALUES (1, now(), 1.25), (2, NULL, NULL);
GRANT SELECT ON ALL TABLES IN SCHEMA public TO xdb_repl;
"#;

#[tokio::test]
async fn scan_finds_planted_values_with_their_keys_on_mariadb() {
    let src = PgDb::create("xdb_schema_scan").await;
    src.exec(PLANTED).await;
    // PostgreSQL text cannot hold NUL at all, so there is no NUL to plant on a source.
    let nul = src.super_client().await.batch_execute("SELECT chr(0)").await;
    assert!(nul.is_err(), "PostgreSQL accepted a NUL character");
    let my = MyDb::create("xdb_schema_scan").await;

    // Clean data: exit 0.
    let (code, out, err) = run_schema(&plan_yaml(&src.repl_url(), &my.url(), "clean", ""), &["--scan"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("scan: every source value maps exactly under the current policies"), "{out}");

    let (code, out, err) =
        run_schema(&plan_yaml(&src.repl_url(), &my.url(), "events, shipments, clean", ""), &["--scan"]);
    assert_eq!(code, 1, "findings must exit 1:\n{out}{err}");
    let finding = |col: &str| -> String {
        let head = format!("  public.{col}: ");
        let at = out.find(&head).unwrap_or_else(|| panic!("no finding for {col}:\n{out}"));
        let rest = &out[at + 2..];
        let end = rest.find("\n  public.").unwrap_or(rest.len());
        rest[..end].to_string()
    };
    let at = finding("events.at");
    assert!(at.starts_with("public.events.at: 4 value(s) DATETIME(6) on MariaDB"), "{at}");
    assert!(at.contains("Resolve with mapping: { policies: { public.events.at: null } }"), "{at}");
    for (key, value) in
        [(2, "0001-01-01 00:00:00.000000 BC"), (3, "10000-01-01 00:00:00.000000"), (4, "infinity"), (5, "-infinity")]
    {
        let line = format!("\n    key id={key}: {value}: DATETIME(6) holds 1000-01-01 00:00:00 to 9999-12-31 23:59:59.999999; rejected");
        assert!(at.contains(&line), "missing {line:?} in\n{at}");
    }
    assert!(!at.contains("key id=1:"), "the limits themselves fit:\n{at}");
    let at_tz = finding("events.at_tz");
    assert!(at_tz.starts_with("public.events.at_tz: 2 value(s)"), "{at_tz}");
    assert!(at_tz.contains("key id=4: -infinity") && at_tz.contains("key id=5: infinity"), "{at_tz}");
    let day = finding("events.day");
    assert!(day.starts_with("public.events.day: 2 value(s) DATE on MariaDB"), "{day}");
    assert!(day.contains("key id=4: infinity") && day.contains("key id=5: 0999-12-31"), "{day}");
    let amount = finding("events.amount");
    assert!(amount.starts_with("public.events.amount: 4 value(s) DECIMAL(65,30)"), "{amount}");
    assert!(amount.contains("key id=6: NaN: NaN has no DECIMAL(65,30) value; rejected"), "{amount}");
    assert!(
        amount.contains("key id=7: 1234567890123456789012345678901234567890: DECIMAL(65,30) holds 35 integer and 30 fraction digits; the value has 40 and 0"),
        "{amount}"
    );
    assert!(amount.contains("key id=8: 0.1234567890123456789012345678901: DECIMAL(65,30) holds 35 integer and 30 fraction digits; the value has 0 and 31"), "{amount}");
    assert!(amount.contains("key id=9: -Infinity: -Infinity has no DECIMAL(65,30) value"), "{amount}");
    let price = finding("events.price");
    assert!(
        price.starts_with("public.events.price: 1 value(s) DECIMAL(12,2)") && price.contains("key id=6: NaN"),
        "{price}"
    );
    let ratio = finding("events.ratio");
    assert!(ratio.contains("key id=9: NaN: NaN has no DOUBLE value"), "{ratio}");
    let sent = finding("shipments.sent_at");
    assert!(sent.contains("key region='eu', id=7: 0500-06-01 12:00:00.000000+00: DATETIME(6) holds"), "{sent}");
    assert!(!out.contains("public.events.note") && !out.contains("public.clean."), "{out}");

    // Under other policies the scan says what would be written instead.
    let policies = "mapping:\n  policies:\n    public.events.at: clamp\n    public.events.amount: null\n";
    let (code, out, err) = run_schema(&plan_yaml(&src.repl_url(), &my.url(), "events", policies), &["--scan"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("public.events.at: 4 value(s) DATETIME(6) on MariaDB 10"), "{out}");
    assert!(out.contains("; policy clamp\n"), "{out}");
    assert!(out.contains("key id=2: 0001-01-01 00:00:00.000000 BC: DATETIME(6) holds 1000-01-01 00:00:00 to 9999-12-31 23:59:59.999999; written as 1000-01-01 00:00:00.000000\n"), "{out}");
    assert!(out.contains("key id=4: infinity: DATETIME(6) holds 1000-01-01 00:00:00 to 9999-12-31 23:59:59.999999; written as 9999-12-31 23:59:59.999999\n"), "{out}");
    assert!(out.contains("key id=6: NaN: NaN has no DECIMAL(65,30) value; written as NULL"), "{out}");
    // The script shows the policies too.
    assert!(out.contains("written as the nearest value the target holds (policy clamp)"), "{out}");
}

#[tokio::test]
async fn scan_on_sqlite_reports_only_what_sqlite_cannot_hold() {
    let src = PgDb::create("xdb_schema_scan_lite").await;
    src.exec(PLANTED).await;
    let dir = std::env::temp_dir().join(support::unique("xdb_schema_scan_lite"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/t.db", dir.display());
    let (code, out, err) = run_schema(&plan_yaml(&src.repl_url(), &url, "events, shipments", ""), &["--scan"]);
    assert_eq!(code, 1, "{out}{err}");
    // SQLite keeps timestamps and numerics as text: only the double NaN is lost.
    assert!(out.contains("public.events.ratio: 1 value(s) REAL on SQLite cannot hold"), "{out}");
    assert!(out.contains("key id=9: NaN: SQLite stores NaN as NULL; rejected"), "{out}");
    for col in ["events.at:", "events.at_tz:", "events.amount:", "events.price:", "shipments.sent_at:"] {
        assert!(!out.contains(&format!("  public.{col}")), "{col} reported on SQLite:\n{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn exit_codes() {
    let src = PgDb::create("xdb_schema_exit").await;
    src.exec(PLANTED).await;
    let lite = "sqlite:///tmp/xdb-schema-unused.db";
    // 1 with the reason on stderr when the command fails.
    let (code, out, err) = run_schema(&plan_yaml(&src.repl_url(), lite, "nosuch", ""), &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("error:") && err.contains("public.nosuch"), "{err}");
    // 2 for a plan that does not parse.
    let (code, _, err) = run_schema("name: x\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid plan"), "{err}");
    // 0 without --scan even when the data has values the target cannot hold.
    let (code, out, err) = run_schema(&plan_yaml(&src.repl_url(), lite, "events", ""), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!std::path::Path::new("/tmp/xdb-schema-unused.db").exists(), "printing the DDL created the file");
    // 0 with --scan when the target holds every value: PostgreSQL keeps NaN, infinities and year 0
    // (a double NaN, unequal to itself, is no false finding).
    let tgt = PgDb::create("xdb_schema_exit_tgt").await;
    let (code, out, err) =
        run_schema(&plan_yaml(&src.repl_url(), &tgt.super_url(), "events, shipments", ""), &["--scan"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("scan: every source value maps exactly under the current policies"), "{out}");
}
