//! The target a test writes to, whatever its kind: its URL for a plan and
//! its rows read back as text.

use mysql_async::prelude::Queryable;

use super::{MyDb, PgDb};

/// A test target: a SQLite file, a MariaDB database or a PostgreSQL database.
pub enum Target {
    Sqlite(std::path::PathBuf),
    Mysql(MyDb),
    Postgres(PgDb),
}

impl Target {
    pub fn sqlite(prefix: &str) -> Target {
        let dir = std::env::temp_dir().join(super::unique(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        Target::Sqlite(dir.join("target.db"))
    }

    pub fn url(&self) -> String {
        match self {
            Target::Sqlite(p) => format!("sqlite://{}", p.display()),
            Target::Mysql(db) => db.url(),
            Target::Postgres(db) => db.super_url(),
        }
    }

    /// Runs statements on the target (a DDL or a write the user would run).
    pub async fn exec(&self, sql: &str) {
        match self {
            Target::Sqlite(p) => {
                rusqlite::Connection::open(p).unwrap().execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Target::Mysql(db) => {
                use mysql_async::prelude::Queryable;
                let mut c = mysql_async::Conn::from_url(db.url()).await.unwrap();
                c.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.disconnect().await;
            }
            Target::Postgres(db) => {
                db.super_client().await.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        }
    }

    /// Rows of a query as text (NULL as "NULL"), in the query's order.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        match self {
            Target::Sqlite(p) => {
                let c = rusqlite::Connection::open(p).unwrap();
                let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let n = st.column_count();
                let rows = st
                    .query_map([], |r| {
                        Ok((0..n)
                            .map(|i| match r.get_ref(i).unwrap() {
                                rusqlite::types::ValueRef::Null => "NULL".to_string(),
                                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                                rusqlite::types::ValueRef::Real(v) => v.to_string(),
                                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                                rusqlite::types::ValueRef::Blob(b) => format!("blob:{}", b.len()),
                            })
                            .collect::<Vec<_>>())
                    })
                    .unwrap();
                rows.map(|r| r.unwrap()).collect()
            }
            Target::Mysql(db) => {
                let mut c = mysql_async::Conn::from_url(db.url()).await.unwrap();
                let rows: Vec<mysql_async::Row> = c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.disconnect().await;
                rows.into_iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| match r.as_ref(i).unwrap() {
                                mysql_async::Value::NULL => "NULL".to_string(),
                                mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                                mysql_async::Value::Int(v) => v.to_string(),
                                mysql_async::Value::UInt(v) => v.to_string(),
                                other => format!("{other:?}"),
                            })
                            .collect()
                    })
                    .collect()
            }
            Target::Postgres(db) => pg_rows(&db.super_client().await, sql).await,
        }
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.rows(&format!("SELECT COUNT(*) FROM {table}")).await[0][0].parse().unwrap()
    }
}

/// Rows of a PostgreSQL query, every column cast to text by the caller.
pub async fn pg_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    let rows = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect())
            }
            _ => None,
        })
        .collect()
}
