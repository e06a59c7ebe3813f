//! `money` on a database whose `lc_monetary` has another number of
//! fraction digits than 2 (issue 16). PostgreSQL stores an amount as an
//! integer of the locale's smallest unit: under `ja_JP.UTF-8` (yen, no
//! fraction digits) '1234' is stored as 1234, and read under xdb's
//! `lc_monetary = C` it would print as $12.34. xdb reads the database's
//! digits and moves the amount the application sees, in the copy and in
//! the stream; `validate` compares them.

use crate::support::{self, ok, plan, xdb, MyDb, PgDb, Target};

const YEN: &str = "ja_JP.UTF-8";

/// The server needs the OS locale (`scripts/dev-dbs.sh up` generates it).
fn require_locale() {
    let out = std::process::Command::new("locale").arg("-a").output().expect("locale -a");
    let have = String::from_utf8_lossy(&out.stdout).lines().any(|l| l.eq_ignore_ascii_case("ja_JP.utf8"));
    assert!(
        have,
        "the OS locale {YEN} is missing: run scripts/dev-dbs.sh up (it generates it), or \
         `localedef -i ja_JP -f UTF-8 ja_JP.UTF-8` and restart the test PostgreSQL"
    );
}

async fn yen_moves(target: Target, prefix: &str) {
    require_locale();
    let db = PgDb::create(prefix).await;
    db.exec(&format!("ALTER DATABASE {} SET lc_monetary = '{YEN}'", db.name)).await;
    // A new session: the database's lc_monetary applies.
    db.exec(
        "CREATE TABLE prices (id int PRIMARY KEY, amount money, history money[]);
         ALTER TABLE prices OWNER TO xdb_repl;
         INSERT INTO prices VALUES (1, '1234', ARRAY['1'::money, '20']), (2, '-5', NULL),
                                   (3, '92233720368547758', NULL), (4, NULL, NULL);",
    )
    .await;
    let stored =
        support::pg_rows(&db.super_client().await, "SELECT amount::numeric::text FROM prices WHERE id = 1").await;
    assert_eq!(stored, vec![vec!["1234".to_string()]], "the application sees 1234 yen");
    let plan = plan(&db, &target, "prices", "");
    let check = xdb(&plan, &["check"]);
    let text = support::text(&check);
    assert!(check.status.success(), "{text}");
    assert!(text.contains("money") && text.contains("0 fraction digits"), "check states the money scale: {text}");
    ok(&xdb(&plan, &["snapshot"]));
    db.exec(
        "UPDATE prices SET amount = '250' WHERE id = 2; INSERT INTO prices VALUES (5, '7', ARRAY['3'::money, '-40']);",
    )
    .await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    let got = target.rows("SELECT id, amount FROM prices WHERE id IN (1, 2, 5) ORDER BY id").await;
    let amounts: Vec<f64> = got.iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(amounts, vec![1234.0, 250.0, 7.0], "{got:?}");
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));
}

#[tokio::test]
async fn money_in_yen_moves_to_sqlite_unscaled() {
    yen_moves(Target::sqlite("xdb_money_yen"), "xdb_money_yen").await;
}

#[tokio::test]
async fn money_in_yen_moves_to_mariadb_unscaled() {
    yen_moves(Target::Mysql(MyDb::create("xdb_money_yen_my").await), "xdb_money_yen_my").await;
}
