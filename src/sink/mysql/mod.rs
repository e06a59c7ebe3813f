//! The MySQL/MariaDB target: its connection and session settings, the SQL
//! it runs for xdb's state and for the batched apply, its bulk load
//! ([`load`]) and its TLS options ([`tls`]). Everything that talks to a
//! MySQL server on the way in lives in this folder.

pub mod load;
pub mod tls;

use mysql_async::prelude::Queryable;

use super::apply_plan::Op;
use super::conn::{StateParam, TargetError};
use crate::error_policy::{DriverError, Retry};
use crate::mapping::MappedTable;
use crate::plan::SecretUrl;

/// An open MySQL/MariaDB connection with xdb's session settings.
pub struct MysqlConn {
    pub conn: mysql_async::Conn,
    /// The target for messages (password masked).
    pub label: String,
    pub mariadb: bool,
}

impl MysqlConn {
    /// Connects with xdb's session: strict mode, UTC, utf8mb4 with a binary
    /// collation (values land exactly or fail loudly).
    pub async fn connect(u: &SecretUrl) -> Result<MysqlConn, TargetError> {
        let err = |reason: String, retry: Retry| TargetError::Connect {
            target: u.redacted(),
            reason: scrub(&reason, u),
            retry,
        };
        let (opts, tls) = tls::opts_from_url(u).map_err(|r| err(r, Retry::Fatal))?;
        let opts = mysql_async::OptsBuilder::from_opts(opts)
            .init(vec![
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
                "SET SESSION time_zone = '+00:00'",
                "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
            ])
            // Affected rows count the rows an UPDATE matched, not only those it
            // changed: the sink tells "matched no row" (an error) from "set the
            // values the row already had" (fine) by this count.
            .client_found_rows(true)
            .prefer_socket(false);
        let mut conn = match tokio::time::timeout(std::time::Duration::from_secs(15), tls::connect(opts, &tls)).await {
            Ok(r) => r.map_err(|e| err(e.reason, e.retry))?,
            Err(_) => return Err(err("no answer within 15 s".into(), Retry::Transient)),
        };
        let label = u.redacted();
        let version: Option<String> = conn.query_first("SELECT VERSION()").await.map_err(|e| TargetError::Sql {
            target: label.clone(),
            context: "reading the server version".into(),
            source: e.into(),
        })?;
        let mariadb = version.unwrap_or_default().to_ascii_lowercase().contains("mariadb");
        Ok(MysqlConn { conn, label, mariadb })
    }

    pub async fn execute(&mut self, sql: &str) -> Result<(), DriverError> {
        Ok(self.conn.query_drop(sql).await?)
    }

    /// One statement with `?` parameters; the rows it matched.
    pub async fn execute_params(&mut self, sql: &str, params: &[StateParam]) -> Result<u64, DriverError> {
        let p: Vec<mysql_async::Value> = params
            .iter()
            .map(|p| match p {
                StateParam::Text(s) => mysql_async::Value::from(s.as_str()),
                StateParam::I64(i) => mysql_async::Value::from(*i),
                StateParam::I32(i) => mysql_async::Value::from(*i),
                StateParam::I16(i) => mysql_async::Value::from(*i),
            })
            .collect();
        self.conn.exec_drop(sql, p).await?;
        Ok(self.conn.affected_rows())
    }

    pub async fn first_text(&mut self, sql: &str) -> Result<Option<String>, DriverError> {
        Ok(self.conn.query_first(sql).await?)
    }

    /// The first column of the first row as text (`NULL` for NULL).
    pub async fn scalar_text(&mut self, sql: &str) -> Result<Option<String>, DriverError> {
        let row: Option<mysql_async::Row> = self.conn.query_first(sql).await?;
        Ok(row.map(|r| r.as_ref(0).map(value_text).unwrap_or_else(|| "NULL".into())))
    }

    pub async fn position_row(&mut self, sql: &str, slot: &str) -> Result<Option<(i64, i64, i64)>, DriverError> {
        Ok(self.conn.exec_first(sql, (slot,)).await?)
    }

    pub async fn table_state_rows(
        &mut self,
        sql: &str,
        slot: &str,
    ) -> Result<Vec<(String, i64, i64, i64)>, DriverError> {
        Ok(self.conn.exec(sql, (slot,)).await?)
    }

    pub async fn column_names(&mut self, sql: &str) -> Result<Vec<String>, DriverError> {
        let result = self.conn.query_iter(sql).await?;
        let names: Vec<String> = result.columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
        result.drop_result().await?;
        Ok(names)
    }

    pub async fn table_exists(&mut self, flat_name: &str) -> Result<bool, DriverError> {
        let n: Option<i64> = self
            .conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
                (flat_name,),
            )
            .await?;
        Ok(n.unwrap_or(0) > 0)
    }

    pub async fn count(&mut self, sql: &str) -> Result<i64, DriverError> {
        let n: Option<i64> = self.conn.query_first(sql).await?;
        Ok(n.unwrap_or(0))
    }

    /// Runs one planned apply operation; the rows it changed (or, for
    /// `ExpectRows`, counted).
    pub async fn run_op(
        &mut self,
        sql: &str,
        op: &Op<'_>,
        params: Vec<mysql_async::Value>,
    ) -> Result<u64, DriverError> {
        if matches!(op, Op::ExpectRows { .. }) {
            Ok(self.conn.exec_first::<u64, _, _>(sql, params).await?.unwrap_or(0))
        } else {
            self.conn.exec_drop(sql, params).await?;
            Ok(self.conn.affected_rows())
        }
    }

    /// Runs a group's statements, their values already written in as
    /// literals ([`literal`]), as multi-statement queries of up to
    /// [`MULTI_STATEMENT_BYTES`]: one round trip for many statements
    /// instead of one each (under load every round trip waits for the
    /// server to be scheduled). The server runs them in order inside the
    /// open transaction and stops at the first that fails; nothing commits
    /// here. One result per statement, in order, up to and including the
    /// first failure: the rows it changed, or for a `counted` statement
    /// (a row check) the count it returned.
    pub async fn run_inlined(&mut self, statements: &[(String, bool)]) -> Vec<Result<u64, DriverError>> {
        let mut out = Vec::with_capacity(statements.len());
        let mut at = 0;
        while at < statements.len() {
            let mut end = at;
            let mut bytes = 0;
            while end < statements.len() && (end == at || bytes + statements[end].0.len() <= MULTI_STATEMENT_BYTES) {
                bytes += statements[end].0.len() + 2;
                end += 1;
            }
            let chunk = &statements[at..end];
            let failed = self.run_chunk(chunk, &mut out).await;
            if failed {
                return out;
            }
            at = end;
        }
        out
    }

    /// One multi-statement query; true when a statement failed (its error
    /// is the last of `out`).
    async fn run_chunk(&mut self, chunk: &[(String, bool)], out: &mut Vec<Result<u64, DriverError>>) -> bool {
        let text = chunk.iter().map(|(sql, _)| sql.as_str()).collect::<Vec<_>>().join(";\n");
        let mut result = match self.conn.query_iter(text).await {
            Ok(r) => r,
            Err(e) => {
                out.push(Err(e.into()));
                return true;
            }
        };
        for (i, (_, counted)) in chunk.iter().enumerate() {
            let affected = result.affected_rows();
            // Reading this statement's result moves on to the next
            // statement's, which is where the next one's error shows.
            let rows = match result.collect::<mysql_async::Row>().await {
                Ok(rows) => rows,
                Err(e) => {
                    // The next statement failed (or, for the last, reading
                    // this one's rows). This one ran, but its count is
                    // lost: u64::MAX lets the caller reach the error, the
                    // cause; the group is rolled back either way.
                    if i + 1 < chunk.len() {
                        out.push(Ok(u64::MAX));
                    }
                    out.push(Err(e.into()));
                    return true;
                }
            };
            out.push(Ok(Self::counted_or(affected, *counted, &rows)));
        }
        false
    }

    /// A row check's count (its one row's first column), else `affected`.
    fn counted_or(affected: u64, counted: bool, rows: &[mysql_async::Row]) -> u64 {
        if !counted {
            return affected;
        }
        rows.first().and_then(|r| r.get::<Option<u64>, _>(0).flatten()).unwrap_or(0)
    }

    /// Whether nothing on the target relates `tables` (names in the
    /// current database), so that their changes may be applied table by
    /// table ([`crate::sink::apply_plan::ChangeOrder::ByTable`]): none of
    /// them declares a foreign key — which covers every key between two of
    /// them — and none has a trigger. A foreign key declared elsewhere that
    /// references one of them cannot tell the order between them: its table
    /// changes only by cascades, which follow each referenced table's own
    /// changes, still in order (and reading those would cost a scan of
    /// every table's definitions, ~7 ms at 500 tables, per group).
    ///
    /// Read in the open transaction, by one statement that also reads each
    /// table: that takes the tables' metadata locks, held until the
    /// transaction ends, so a `CREATE TRIGGER` or an `ALTER TABLE … ADD
    /// FOREIGN KEY` waits for this transaction rather than landing between
    /// the read and the writes it allowed.
    pub async fn unrelated_now(&mut self, tables: &[&str]) -> Result<bool, DriverError> {
        if tables.is_empty() {
            return Ok(true);
        }
        let counts: Vec<i64> = self.conn.query(unrelated_sql(tables)).await?;
        Ok(counts.iter().all(|&n| n == 0))
    }

    /// `START TRANSACTION` and [`unrelated_now`](Self::unrelated_now) in one
    /// round trip (a multi-statement query): under load every round trip
    /// waits for the server to be scheduled, so a group saves one here.
    pub async fn begin_and_check_unrelated(&mut self, tables: &[&str]) -> Result<bool, DriverError> {
        if tables.is_empty() {
            self.conn.query_drop("START TRANSACTION").await?;
            return Ok(true);
        }
        let mut result = self.conn.query_iter(format!("START TRANSACTION; {}", unrelated_sql(tables))).await?;
        let mut counts: Vec<i64> = Vec::new();
        while !result.is_empty() {
            counts.extend(result.collect::<i64>().await?);
        }
        Ok(counts.len() == 2 && counts.iter().all(|&n| n == 0))
    }

    /// Runs `statements` (each with its `?` parameters) and then `COMMIT`,
    /// as one multi-statement query: one round trip. The parameters are
    /// xdb's own state values (slot names, positions), written as literals
    /// by the driver's escaping for this session's `sql_mode` (which has no
    /// `NO_BACKSLASH_ESCAPES`). The server stops at the first failing
    /// statement, so a failed write never reaches the `COMMIT`.
    pub async fn execute_and_commit(&mut self, statements: &[(&str, &[StateParam])]) -> Result<(), DriverError> {
        let mut text = String::new();
        for (sql, params) in statements {
            text.push_str(&inline_params(sql, params));
            text.push_str("; ");
        }
        text.push_str("COMMIT");
        Ok(self.conn.query_drop(text).await?)
    }
    /// Moves the AUTO_INCREMENT of `table` to at least `next` (the source
    /// sequence's next value); says what it did.
    pub async fn set_next_value(&mut self, table: &str, next: i64) -> Result<String, DriverError> {
        let auto: Option<i64> = self
            .conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() \
                 AND table_name = ? AND extra LIKE '%auto_increment%'",
                (table,),
            )
            .await?;
        if auto.unwrap_or(0) == 0 {
            return Ok(format!("skipped: target table {table} has no AUTO_INCREMENT column"));
        }
        let sql = format!(
            "ALTER TABLE {} AUTO_INCREMENT = {}",
            crate::plan::naming::SqlDialect::Mysql.ident(table),
            next.max(1)
        );
        self.conn.query_drop(sql.as_str()).await?;
        Ok(format!("{sql} (next value {next})"))
    }
}

/// The read behind [`MysqlConn::unrelated_now`]: a `SELECT … WHERE FALSE`
/// of each table (its metadata lock), then two counts, triggers and
/// declared foreign keys of those tables.
fn unrelated_sql(tables: &[&str]) -> String {
    let d = crate::plan::naming::SqlDialect::Mysql;
    let literal = |t: &&str| format!("'{}'", t.replace('\\', "\\\\").replace('\'', "''"));
    let names = tables.iter().map(literal).collect::<Vec<_>>().join(", ");
    let mut parts: Vec<String> = tables.iter().map(|t| format!("SELECT 0 FROM {} WHERE FALSE", d.ident(t))).collect();
    parts.push(format!(
        "SELECT COUNT(*) FROM information_schema.triggers \
         WHERE event_object_schema = DATABASE() AND event_object_table IN ({names})"
    ));
    parts.push(format!(
        "SELECT COUNT(*) FROM information_schema.referential_constraints \
         WHERE constraint_schema = DATABASE() AND table_name IN ({names})"
    ));
    parts.join(" UNION ALL ")
}

/// The most statement text one multi-statement query carries (well under
/// `max_allowed_packet`, 16 MiB by default on MariaDB, 64 MiB on MySQL).
pub const MULTI_STATEMENT_BYTES: usize = 1 << 20;

/// A parameter as an SQL literal of xdb's sessions (whose `sql_mode` has
/// no `NO_BACKSLASH_ESCAPES`): text and bytes quoted and escaped (bytes
/// that are not UTF-8 as a hex literal), dates and times quoted, by the
/// driver's own escaping. Floating-point numbers are written in exponent
/// form, the shortest that reads back as the same double: the server reads
/// such a literal as that DOUBLE, where a plain decimal would be read as
/// DECIMAL and rounded twice on its way to a FLOAT column. A value that is
/// not finite is written as a quoted word the server refuses (as it
/// refuses it bound).
pub fn literal(v: &mysql_async::Value) -> String {
    use mysql_async::Value as M;
    match v {
        M::Float(f) if f.is_finite() => format!("{:e}", f64::from(*f)),
        M::Double(d) if d.is_finite() => format!("{d:e}"),
        M::Float(f) => format!("'{f}'"),
        M::Double(d) => format!("'{d}'"),
        other => other.as_sql(false),
    }
}

/// `sql` with each `?` replaced by its parameter as a literal (xdb's state
/// statements, whose text has no `?` but the placeholders).
fn inline_params(sql: &str, params: &[StateParam]) -> String {
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let mut values = params.iter();
    for (i, piece) in sql.split('?').enumerate() {
        if i > 0 {
            let v = match values.next().expect("a parameter for each placeholder") {
                StateParam::Text(s) => mysql_async::Value::from(s.as_str()),
                StateParam::I64(i) => mysql_async::Value::from(*i),
                StateParam::I32(i) => mysql_async::Value::from(*i),
                StateParam::I16(i) => mysql_async::Value::from(*i),
            };
            out.push_str(&v.as_sql(false));
        }
        out.push_str(piece);
    }
    assert!(values.next().is_none(), "a placeholder for each parameter");
    out
}

/// Parameters of `cols` of `row`, bound for this target.
pub fn params(
    table: &MappedTable,
    row: &crate::model::Row,
    cols: &[usize],
) -> Result<Vec<mysql_async::Value>, crate::mapping::ConversionError> {
    table.mysql_params(row, cols)
}

fn scrub(text: &str, u: &SecretUrl) -> String {
    // The one scrubber (crate::secrets); this URL's password is registered
    // first in case the URL did not come from a loaded plan.
    for pw in [u.password(), u.query_password()].into_iter().flatten() {
        crate::secrets::register(&pw);
    }
    crate::secrets::scrub(text)
}

/// A MySQL value as text, the way the `mysql` client prints it.
pub fn value_text(v: &mysql_async::Value) -> String {
    use mysql_async::Value as V;
    match v {
        V::NULL => "NULL".into(),
        V::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        V::Int(i) => i.to_string(),
        V::UInt(u) => u.to_string(),
        V::Float(f) => f.to_string(),
        V::Double(d) => d.to_string(),
        V::Date(y, mo, d, h, mi, s, us) => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"),
        V::Time(neg, d, h, mi, s, us) => {
            format!("{}{:02}:{mi:02}:{s:02}.{us:06}", if *neg { "-" } else { "" }, u32::from(*h) + d * 24)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_literals() {
        use mysql_async::Value as M;
        // Floats in exponent form: the server reads a DOUBLE, exactly the value.
        assert_eq!(literal(&M::Float(0.1)), "1.0000000149011612e-1");
        assert_eq!(literal(&M::Double(0.1)), "1e-1");
        assert_eq!(literal(&M::Double(-2.5e-300)), "-2.5e-300");
        assert_eq!(literal(&M::Float(f32::NAN)), "'NaN'");
        // Text escaped for a session with backslash escapes; bytes that are
        // not UTF-8 as hex.
        assert_eq!(literal(&M::Bytes(b"it's \\\\ a; b".to_vec())), r"'it\'s \\\\ a; b'");
        assert_eq!(literal(&M::Bytes(vec![0x00, 0xff, 0x10])), "0x00FF10");
        assert_eq!(literal(&M::Bytes(vec![0x00, b'a'])), r"'\0a'");
        assert_eq!(literal(&M::Int(-9_223_372_036_854_775_808)), "-9223372036854775808");
        assert_eq!(literal(&M::NULL), "NULL");
        assert_eq!(literal(&M::Date(2024, 2, 29, 23, 59, 59, 999_999)), "'2024-02-29 23:59:59.999999'");
    }

    #[test]
    fn the_position_statement_gets_its_values_as_literals() {
        let sql = crate::sink::state::upsert_position(crate::plan::naming::SqlDialect::Mysql);
        let p = [
            StateParam::Text("o'k\\slot".into()),
            StateParam::I64(-5),
            StateParam::I64(1_700_000_000_000_000),
            StateParam::I64(42),
            StateParam::I64(7),
        ];
        let text = inline_params(&sql, &p);
        assert!(!text.contains('?'), "{text}");
        assert!(text.contains(r"VALUES ('o\'k\\slot', -5, 1700000000000000, 42, 7)"), "{text}");
        assert!(text.ends_with(&sql[sql.find(" ON DUPLICATE").unwrap()..]), "{text}");
    }
}
