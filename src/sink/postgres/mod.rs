//! The PostgreSQL target: its connection, the SQL it runs for xdb's state
//! and for the batched apply (prepared statements, cached per
//! connection), and its bulk load ([`load`]). Everything that writes a
//! PostgreSQL target lives in this folder.

pub mod load;
pub mod merge;
pub mod triggers;

use std::collections::HashMap;

use tokio_postgres::types::ToSql;

use super::apply_plan::Op;
use super::conn::{StateParam, TargetError};
use crate::error_policy::{DriverError, Retry};
use crate::pg_conn::client;
use crate::plan::SecretUrl;

/// Prepared apply statements kept per connection (beyond this many the
/// cache starts over: a schema with thousands of shapes stays bounded).
const STATEMENT_CACHE: usize = 512;

/// An open PostgreSQL target connection.
pub struct PgConn {
    pub client: tokio_postgres::Client,
    /// The target for messages (password masked).
    pub label: String,
    statements: HashMap<String, tokio_postgres::Statement>,
}

impl PgConn {
    pub async fn connect(u: &SecretUrl) -> Result<PgConn, TargetError> {
        let client = client::connect(u, "xdb").await.map_err(|e| TargetError::Connect {
            target: u.redacted(),
            reason: e.reason.clone(),
            retry: if e.retryable { Retry::Transient } else { Retry::Fatal },
        })?;
        Ok(PgConn { client, label: u.redacted(), statements: HashMap::new() })
    }

    pub async fn execute(&mut self, sql: &str) -> Result<(), DriverError> {
        Ok(self.client.batch_execute(sql).await?)
    }

    /// One statement with `$n` parameters; the rows it changed.
    pub async fn execute_params(&mut self, sql: &str, params: &[StateParam]) -> Result<u64, DriverError> {
        let p: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| match p {
                StateParam::Text(s) => s as &(dyn ToSql + Sync),
                StateParam::I64(i) => i,
                StateParam::I32(i) => i,
                StateParam::I16(i) => i,
            })
            .collect();
        Ok(self.client.execute(sql, &p).await?)
    }

    pub async fn server_version(&mut self) -> Result<String, DriverError> {
        Ok(self.client.query_one("SHOW server_version", &[]).await?.get(0))
    }

    /// The first column of the first row as text (`NULL` for NULL), by the
    /// simple protocol so that any type reads as its text form.
    pub async fn scalar_text(&mut self, sql: &str) -> Result<Option<String>, DriverError> {
        for m in self.client.simple_query(sql).await? {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                return Ok(Some(r.get(0).unwrap_or("NULL").to_string()));
            }
        }
        Ok(None)
    }

    pub async fn position_row(&mut self, sql: &str, slot: &str) -> Result<Option<(i64, i64, i64)>, DriverError> {
        let r = self.client.query_opt(sql, &[&slot]).await?;
        Ok(r.map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    pub async fn table_state_rows(
        &mut self,
        sql: &str,
        slot: &str,
    ) -> Result<Vec<(String, i64, i64, i64)>, DriverError> {
        let rows = self.client.query(sql, &[&slot]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get::<_, i16>(2) as i64, r.get(3))).collect())
    }

    pub async fn column_names(&mut self, sql: &str) -> Result<Vec<String>, DriverError> {
        let st = self.client.prepare(sql).await?;
        Ok(st.columns().iter().map(|c| c.name().to_string()).collect())
    }

    pub async fn table_exists(&mut self, ident: &str) -> Result<bool, DriverError> {
        Ok(self.client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&ident]).await?.get(0))
    }

    pub async fn count(&mut self, sql: &str) -> Result<i64, DriverError> {
        Ok(self.client.query_one(sql, &[]).await?.get(0))
    }

    /// Runs one planned apply operation as a prepared statement with text
    /// parameters (the SQL casts them); the rows it changed (or, for
    /// `ExpectRows`, counted).
    pub async fn run_op(&mut self, sql: &str, op: &Op<'_>, params: Vec<Option<String>>) -> Result<u64, DriverError> {
        let st = match self.statements.get(sql) {
            Some(st) => st.clone(),
            None => {
                let st = self.client.prepare(sql).await?;
                if self.statements.len() > STATEMENT_CACHE {
                    self.statements.clear();
                }
                self.statements.insert(sql.to_string(), st.clone());
                st
            }
        };
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        if matches!(op, Op::ExpectRows { .. }) {
            Ok(self.client.query_one(&st, &refs).await?.get::<_, i64>(0) as u64)
        } else {
            Ok(self.client.execute(&st, &refs).await?)
        }
    }

    /// Runs planned apply operations pipelined: every statement is sent
    /// before the first answer is awaited (tokio-postgres pipelines the
    /// requests it is polled for at once), so a group costs one round trip
    /// instead of one per statement. The server runs them in order, inside
    /// the open transaction; after a failure the later ones fail too (the
    /// transaction is aborted) and the caller rolls back. One result per
    /// operation, in order.
    pub async fn run_ops_pipelined(
        &mut self,
        ops: &[Op<'_>],
        statements: Vec<(String, Vec<Option<String>>)>,
    ) -> Vec<Result<u64, DriverError>> {
        // The statements not prepared yet, prepared together first.
        let mut missing: Vec<&str> = Vec::new();
        for (sql, _) in &statements {
            if !self.statements.contains_key(sql) && !missing.contains(&sql.as_str()) {
                missing.push(sql);
            }
        }
        if !missing.is_empty() {
            if self.statements.len() + missing.len() > STATEMENT_CACHE {
                self.statements.clear();
            }
            let client = &self.client;
            let prepared = futures_util::future::join_all(missing.iter().map(|sql| client.prepare(sql))).await;
            for (sql, st) in missing.iter().zip(prepared) {
                match st {
                    Ok(st) => {
                        self.statements.insert(sql.to_string(), st);
                    }
                    Err(e) => return vec![Err(e.into())],
                }
            }
        }
        let client = &self.client;
        let cache = &self.statements;
        let runs = ops.iter().zip(&statements).map(|(op, (sql, params))| async move {
            let st = cache.get(sql).expect("prepared above");
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            if matches!(op, Op::ExpectRows { .. }) {
                client.query_one(st, &refs).await.map(|r| r.get::<_, i64>(0) as u64)
            } else {
                client.execute(st, &refs).await
            }
        });
        futures_util::future::join_all(runs).await.into_iter().map(|r| r.map_err(DriverError::from)).collect()
    }

    /// Moves the sequence owned by `table`.`column` so that its next value
    /// is at least `next`; says what it did.
    pub async fn set_next_value(&mut self, table: &str, column: &str, next: i64) -> Result<String, DriverError> {
        let row = self.client.query_one("SELECT pg_get_serial_sequence($1, $2)", &[&table, &column]).await?;
        let Some(seq) = row.get::<_, Option<String>>(0) else {
            return Ok(format!("skipped: target column {table}.{column} owns no sequence"));
        };
        let sql = format!(
            "SELECT setval($1::text::regclass, GREATEST($2::bigint, (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {seq})), false)"
        );
        let r = self.client.query_one(&sql, &[&seq, &next]).await?;
        let set: i64 = r.get(0);
        Ok(format!("setval({seq}) — next value {set}"))
    }
}
