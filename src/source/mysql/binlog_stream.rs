//! Committed transactions read from a MySQL/MariaDB binary log.
//!
//! Built on `mysql_async`'s binlog dump (`Conn::get_binlog_stream`) and
//! `mysql_common`'s event parser (TableMap, Rows with before and after
//! images, Xid, Query); only the 12-byte body of MariaDB's GTID event,
//! which `mysql_common` leaves undecoded, is read here.
//!
//! What it yields, in binlog (= commit) order: whole transactions in the
//! model of the PostgreSQL stream (`model::Transaction`), each with the
//! binlog position after its commit event. A rolled-back InnoDB transaction
//! never reaches the binlog, so it never appears. Rows of tables outside
//! the plan are skipped; DDL on the plan's database stops the stream with
//! the statement (the original source does not follow it by itself).
//!
//! Memory (invariant *bounded memory*): a transaction is handed over whole
//! up to [`PART_ROWS`] changes; a larger one goes out in parts of that
//! size as it is read ([`BinlogItem::Part`]), then its commit with the last
//! changes, and the applier applies the parts inside one source
//! transaction. Nothing is spilled to disk: a binlog transaction is
//! committed before it is written, so it can be applied while it is read.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest};

use super::ddl_back;
use super::error::BinlogError;
use super::gtid::{Gtid, GtidState};
use super::position::{BinlogPosition, MariadbGtid};
use super::value::{display, to_source_value};
use crate::model::{Change, Row, TableSchema, Transaction, Value};

/// MariaDB's GTID event type (not in `mysql_common`'s enum).
const MARIADB_GTID_EVENT: u8 = 162;
/// GTID event flag: a statement outside any transaction (DDL), with no
/// closing Xid/COMMIT.
const FL_STANDALONE: u8 = 1;

/// A plan table as the binlog shows it: the target table's columns in
/// binlog order, each tied to a column of the original source table.
#[derive(Debug, Clone)]
pub struct ReverseTable {
    /// The source table (its real catalog types).
    pub schema: Arc<TableSchema>,
    /// For each target column in table order, the source column position;
    /// `None` for a column the source generates itself (PostgreSQL
    /// computes it from the others, so it is never written back).
    pub columns: Vec<Option<usize>>,
    /// The target column names, in table order.
    pub names: Vec<String>,
    /// For each target column that is an ENUM, its labels in the target's
    /// order: the binlog carries an ENUM value as its 1-based index.
    pub enums: Vec<Option<Vec<String>>>,
}

/// Changes per part of a large transaction.
pub const PART_ROWS: usize = 5_000;

/// What the reader yields, in binlog order.
#[derive(Debug)]
pub enum BinlogItem {
    /// A committed transaction, or the last changes and the commit of one
    /// whose earlier changes came as parts.
    Transaction(BinlogTransaction),
    /// The next changes of a large transaction; more parts or its commit
    /// follow. `at` is the binlog position read so far (for messages).
    Part { changes: Vec<Change>, at: BinlogPosition },
}

/// One committed target transaction and where it ends.
#[derive(Debug)]
pub struct BinlogTransaction {
    pub tx: Transaction,
    pub position: BinlogPosition,
}

/// Where to start and how to end a binlog read.
pub struct BinlogReadConfig {
    /// Replica server id announced to the server (unique per reader).
    pub server_id: u32,
    pub start: BinlogPosition,
    /// The target database (schema) holding the plan's tables.
    pub database: String,
    /// The plan tables by target table name.
    pub tables: HashMap<String, ReverseTable>,
    /// Start from `start.gtid` (the server finds the place in its binlog)
    /// instead of `start.file`/`start.pos`: the file was purged, or the
    /// target is another server after a failover.
    pub by_gtid: bool,
    /// End at the end of the binlog as it is now instead of waiting.
    pub until_end: bool,
    pub mariadb: bool,
    pub label: String,
}

struct Pending {
    gtid: Option<Gtid>,
    changes: Vec<Change>,
    standalone: bool,
}

pub struct BinlogReader {
    stream: BinlogStream,
    /// A second connection to the target, for its catalog.
    side: mysql_async::Conn,
    config: BinlogReadConfig,
    file: String,
    pending: Option<Pending>,
    /// The GTID position after the last transaction read (None: the
    /// server has no GTIDs, or the start's position is not known).
    gtid: Option<GtidState>,
}

impl BinlogReader {
    /// Starts a binlog dump on `conn` from `config.start`.
    pub async fn open(
        mut conn: mysql_async::Conn,
        side: mysql_async::Conn,
        config: BinlogReadConfig,
    ) -> Result<BinlogReader, BinlogError> {
        let label = config.label.clone();
        if config.mariadb {
            // Capability 4 (MARIA_SLAVE_CAPABILITY_GTID): the server sends
            // its GTID events instead of replacing them with dummy BEGINs.
            conn.query_drop("SET @mariadb_slave_capability = 4")
                .await
                .map_err(|e| BinlogError::driver(&label, "announcing GTID capability", e))?;
        }
        // A heartbeat every second on an idle binlog: a lost connection is
        // noticed instead of waited on forever.
        conn.query_drop("SET @master_heartbeat_period = 1000000000")
            .await
            .map_err(|e| BinlogError::driver(&label, "setting the heartbeat", e))?;
        let file = config.start.file.clone();
        let gtid = config.start.gtid.clone();
        let sids = gtid.as_ref().map(|g| g.mysql_sids()).unwrap_or_default();
        let mut req = BinlogStreamRequest::new(config.server_id);
        match (&gtid, config.by_gtid) {
            (Some(state), true) if state.is_mariadb() => {
                // MariaDB starts a dump at the replica's GTID position when
                // `@slave_connect_state` is set; the file name and offset
                // are then ignored. Not strict: the position's domains may
                // carry GTIDs of servers that no longer write.
                let sql = format!(
                    "SET @slave_connect_state = '{state}', @slave_gtid_strict_mode = 0, @slave_gtid_ignore_duplicates = 0"
                );
                conn.query_drop(sql)
                    .await
                    .map_err(|e| BinlogError::driver(&label, "setting the GTID start position", e))?;
                req = req.with_filename(b"").with_pos(4u64);
            }
            (Some(_), true) => {
                // MySQL: COM_BINLOG_DUMP_GTID with the set already applied.
                req = req.with_gtid().with_gtid_set(sids).with_filename(b"").with_pos(4u64);
            }
            _ => req = req.with_filename(file.as_bytes()).with_pos(config.start.pos),
        }
        if config.until_end {
            req = req.with_non_blocking();
        }
        let stream = conn.get_binlog_stream(req).await.map_err(|e| {
            let at = if config.by_gtid {
                format!("GTID {}", config.start.gtid.as_ref().map(|g| g.to_string()).unwrap_or_default())
            } else {
                config.start.to_string()
            };
            BinlogError::driver(&label, &format!("starting the binlog dump at {at}"), e)
        })?;
        Ok(BinlogReader { stream, side, config, file, pending: None, gtid })
    }

    /// The next committed transaction touching the plan (or an empty one
    /// for a commit that touched nothing of it, so the position still
    /// moves), or `None` at the end of the binlog with `until_end`.
    pub async fn next(&mut self) -> Result<Option<BinlogItem>, BinlogError> {
        loop {
            let Some(event) = self.next_event().await? else { return Ok(None) };
            let header = event.header();
            tracing::trace!(event_type = header.event_type_raw(), log_pos = header.log_pos(), "binlog event");
            let end = BinlogPosition { file: self.file.clone(), pos: header.log_pos() as u64, gtid: None };
            let commit_time = header.timestamp() as i64 * 1_000_000;
            if header.event_type_raw() == MARIADB_GTID_EVENT {
                let body = event.data();
                let gtid = MariadbGtid::from_event_body(body, header.server_id()).map(Gtid::Mariadb);
                let standalone = body.get(12).is_some_and(|f| f & FL_STANDALONE != 0);
                self.pending = Some(Pending { gtid, changes: Vec::new(), standalone });
                continue;
            }
            let data = event
                .read_data()
                .map_err(|source| BinlogError::Decode { target: self.config.label.clone(), source })?;
            match data {
                Some(EventData::RotateEvent(r)) => {
                    self.file = rotate_file_name(&r.name(), &self.config.start.file);
                }
                Some(EventData::GtidEvent(g)) => {
                    // MySQL: a GTID event opens every transaction; a BEGIN
                    // follows unless it is a lone statement (DDL).
                    let gtid = Some(Gtid::from_mysql_event(&g));
                    self.pending = Some(Pending { gtid, changes: Vec::new(), standalone: true });
                }
                Some(EventData::QueryEvent(q)) => {
                    if let Some(t) = self.query(&q, end, commit_time).await? {
                        return Ok(Some(BinlogItem::Transaction(t)));
                    }
                }
                Some(EventData::XidEvent(x)) => {
                    return self.commit(end, commit_time, x.xid).map(|t| Some(BinlogItem::Transaction(t)));
                }
                Some(EventData::RowsEvent(rows)) => {
                    self.rows(&rows, &end)?;
                    if let Some(p) = self.pending.as_mut().filter(|p| p.changes.len() >= PART_ROWS) {
                        let changes = std::mem::take(&mut p.changes);
                        return Ok(Some(BinlogItem::Part { changes, at: end }));
                    }
                }
                _ => {}
            }
        }
    }

    /// The next binlog event; `None` at the end of the binlog with
    /// `until_end`.
    async fn next_event(&mut self) -> Result<Option<mysql_async::binlog::events::Event>, BinlogError> {
        let Some(event) = self.stream.next().await else {
            tracing::debug!("the binlog stream ended");
            if self.config.until_end {
                return Ok(None);
            }
            // A dump without an end only ends when the server goes
            // (a clean shutdown ends it with EOF): read again.
            return Err(BinlogError::Ended { target: self.config.label.clone() });
        };
        if let Err(e) = &event {
            tracing::debug!("binlog stream error: {e:?}");
        }
        let event = match event {
            Ok(e) => e,
            // With BINLOG_DUMP_NON_BLOCK the server ends with EOF,
            // which mysql_async reports as a closed connection.
            Err(mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed)) if self.config.until_end => {
                return Ok(None)
            }
            Err(e) => return Err(BinlogError::driver(&self.config.label, "reading the binlog", e)),
        };
        Ok(Some(event))
    }

    /// A statement in the binlog: BEGIN opens a transaction, COMMIT (or a
    /// lone statement) ends one; DDL on the plan's database is checked.
    async fn query(
        &mut self,
        q: &mysql_async::binlog::events::QueryEvent<'_>,
        end: BinlogPosition,
        commit_time: i64,
    ) -> Result<Option<BinlogTransaction>, BinlogError> {
        let sql = q.query().trim().to_string();
        if sql.eq_ignore_ascii_case("BEGIN") {
            match self.pending.as_mut() {
                Some(p) => p.standalone = false,
                None => self.pending = Some(Pending { gtid: None, changes: Vec::new(), standalone: false }),
            }
        } else if sql.eq_ignore_ascii_case("COMMIT") {
            return self.commit(end, commit_time, 0).map(Some);
        } else if let Some(name) = truncated_table(&sql, q.schema().as_ref(), &self.config.database) {
            // TRUNCATE is a statement in the binlog, not row events: the
            // emptying of a plan table, in its place in commit order.
            if let Some(t) = self.config.tables.get(&name) {
                let change =
                    Change::Truncate { tables: vec![t.schema.clone()], cascade: false, restart_identity: false };
                let pending = self.pending.get_or_insert(Pending { gtid: None, changes: Vec::new(), standalone: true });
                pending.changes.push(change);
            }
            if self.pending.as_ref().is_some_and(|p| p.standalone) {
                return self.commit(end, commit_time, 0).map(Some);
            }
        } else {
            // DDL (or a statement logged as such) on the plan's
            // database: when it left a plan table in another
            // shape than the one being mapped, stop with it. A
            // restart after the operator ran the equivalent on
            // the original source maps the new shape, and the
            // same statement read again then passes.
            if q.schema() == self.config.database || mentions(&sql, &self.config.database) {
                if let Some(detail) = self.shape_changed().await? {
                    return Err(BinlogError::SchemaChange { position: end.to_string(), statement: sql, detail });
                }
            }
            if self.pending.as_ref().is_some_and(|p| p.standalone) {
                return self.commit(end, commit_time, 0).map(Some);
            }
        }
        Ok(None)
    }

    /// A plan table whose columns on the target differ from the ones this
    /// reader maps (read on a second connection): the table, the columns
    /// and the statement for the original source.
    async fn shape_changed(&mut self) -> Result<Option<String>, BinlogError> {
        for (name, t) in &self.config.tables {
            let now = table_columns(&mut self.side, &self.config.database, name, &self.config.label).await?;
            if now != t.names {
                let typed: Vec<(String, String)> = self
                    .side
                    .exec(
                        "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
                         AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                        (&self.config.database, name),
                    )
                    .await
                    .map_err(|e| BinlogError::driver(&self.config.label, "reading the target's columns", e))?;
                return Ok(Some(ddl_back::describe(name, &t.schema.name.to_string(), &t.names, &typed)));
            }
        }
        Ok(None)
    }

    fn commit(
        &mut self,
        mut end: BinlogPosition,
        commit_time: i64,
        xid: u64,
    ) -> Result<BinlogTransaction, BinlogError> {
        let p = self.pending.take().unwrap_or(Pending { gtid: None, changes: Vec::new(), standalone: false });
        if let (Some(state), Some(g)) = (self.gtid.as_mut(), p.gtid.as_ref()) {
            state.add(g);
        }
        end.gtid = self.gtid.clone();
        // Never a made-up position: a transaction without one could not be
        // told applied or not after a restart.
        let lsn = end.ordinal().ok_or_else(|| {
            BinlogError::Setup(format!("binlog position {end} has no file sequence number or is past 4 GiB"))
        })?;
        let tx = Transaction {
            xid: xid as u32,
            commit_lsn: lsn,
            end_lsn: lsn,
            commit_time_micros: commit_time,
            changes: p.changes,
        };
        tracing::debug!(position = %end, changes = tx.changes.len(), "target transaction committed");
        Ok(BinlogTransaction { tx, position: end })
    }

    fn rows(&mut self, rows: &RowsEventData<'_>, at: &BinlogPosition) -> Result<(), BinlogError> {
        let Some(tme) = self.stream.get_tme(rows.table_id()) else {
            tracing::debug!(table_id = rows.table_id(), "rows without a table map");
            return Ok(());
        };
        tracing::trace!(db = %tme.database_name(), table = %tme.table_name(), "rows");
        if tme.database_name() != self.config.database {
            return Ok(());
        }
        let Some(table) = self.config.tables.get(tme.table_name().as_ref()) else { return Ok(()) };
        if rows.num_columns() as usize != table.columns.len() {
            return Err(BinlogError::SchemaChange {
                position: at.to_string(),
                statement: "(not in the binlog)".into(),
                detail: format!(
                    "table {} (source {}) now has {} columns on the target, {} when sync --reverse started",
                    tme.table_name(),
                    table.schema.name,
                    rows.num_columns(),
                    table.columns.len()
                ),
            });
        }
        let pending = self.pending.get_or_insert(Pending { gtid: None, changes: Vec::new(), standalone: false });
        for r in rows.rows(tme) {
            let (before, after) =
                r.map_err(|source| BinlogError::Decode { target: self.config.label.clone(), source })?;
            let before = before.map(|b| source_row(table, &b, at)).transpose()?;
            let after = after.map(|a| source_row(table, &a, at)).transpose()?;
            let change = match (before, after) {
                (None, Some(new)) => Change::Insert { table: table.schema.clone(), new },
                (Some(old), None) => Change::Delete { table: table.schema.clone(), old },
                (Some(old), Some(new)) => {
                    let pk = &table.schema.primary_key;
                    let key_changed = pk.is_empty() || pk.iter().any(|&i| old[i] != new[i]);
                    Change::Update {
                        table: table.schema.clone(),
                        old: key_changed.then_some(old),
                        new,
                        unchanged_toast: Vec::new(),
                    }
                }
                (None, None) => continue,
            };
            pending.changes.push(change);
        }
        Ok(())
    }
}

/// A binlog row as a source row (source column order).
fn source_row(table: &ReverseTable, row: &BinlogRow, at: &BinlogPosition) -> Result<Row, BinlogError> {
    let s = &table.schema;
    let mut out: Row = vec![Value::Null; s.columns.len()];
    for (binlog_col, src) in table.columns.iter().enumerate() {
        let Some(src) = *src else { continue };
        let col = &s.columns[src];
        let labels = table.enums.get(binlog_col).and_then(|l| l.as_ref());
        let label = labels.and_then(|l| enum_label(row.as_ref(binlog_col), l));
        let value = match &label {
            Some(Ok(text)) => Some(BinlogValue::Value(mysql_async::Value::Bytes(text.clone().into_bytes()))),
            _ => None,
        };
        let value = value.as_ref().or(row.as_ref(binlog_col));
        let converted = match label {
            Some(Err(reason)) => Err(reason),
            _ => to_source_value(value, &col.pg_type),
        };
        out[src] = converted.map_err(|reason| {
            let key: Vec<String> = s
                .primary_key
                .iter()
                .filter_map(|&k| table.columns.iter().position(|&c| c == Some(k)))
                .map(|b| display(row.as_ref(b)))
                .collect();
            BinlogError::Value {
                table: s.name.to_string(),
                column: col.name.clone(),
                key: format!("({})", key.join(", ")),
                reason,
                position: at.to_string(),
            }
        })?;
    }
    Ok(out)
}

/// An ENUM value's label: the binlog holds its 1-based index in the
/// target's list (None: not an index, converted as it is).
fn enum_label(v: Option<&BinlogValue<'_>>, labels: &[String]) -> Option<Result<String, String>> {
    let i = match v? {
        BinlogValue::Value(mysql_async::Value::Int(i)) => *i,
        BinlogValue::Value(mysql_async::Value::UInt(u)) => *u as i64,
        _ => return None,
    };
    Some(match usize::try_from(i).ok().and_then(|i| i.checked_sub(1)).and_then(|i| labels.get(i)) {
        Some(l) => Ok(l.clone()),
        None => {
            Err(format!("ENUM index {i} is not one of the target's {} labels (the empty invalid value?)", labels.len()))
        }
    })
}

/// The labels of a MySQL `enum('a','b''c')` column type, in order.
pub fn parse_enum_labels(column_type: &str) -> Option<Vec<String>> {
    let inner = column_type.trim().strip_prefix("enum(")?.strip_suffix(')')?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        match chars.next() {
            Some('\'') => {}
            None => break,
            Some(',') | Some(' ') => continue,
            Some(_) => return None,
        }
        let mut label = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                '\\' => label.push(chars.next()?),
                c => label.push(c),
            }
        }
        out.push(label);
    }
    Some(out)
}

/// For each column of a target table, its ENUM labels if it is one.
pub async fn table_enums(
    conn: &mut mysql_async::Conn,
    database: &str,
    table: &str,
    label: &str,
) -> Result<Vec<Option<Vec<String>>>, BinlogError> {
    let types: Vec<String> = conn
        .exec(
            "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (database, table),
        )
        .await
        .map_err(|e| BinlogError::driver(label, "reading the target's column types", e))?;
    Ok(types.iter().map(|t| parse_enum_labels(t)).collect())
}

/// The file named by a Rotate event. The first (artificial) Rotate comes
/// before the format description, so its name still carries the 4-byte
/// checksum, which may hold any byte, a '.' or digits included: the name is
/// the first `<base>.<digits>` with as many digits as in `like`.
fn rotate_file_name(raw: &str, like: &str) -> String {
    let width = like.rsplit_once('.').map(|(_, d)| d.len()).unwrap_or(6);
    for (i, _) in raw.match_indices('.') {
        let digits: String = raw[i + 1..].chars().take_while(|c| c.is_ascii_digit()).take(width).collect();
        if digits.len() == width {
            return format!("{}.{digits}", &raw[..i]);
        }
    }
    raw.to_string()
}

/// Whether a statement names `db` as a qualifier (`db.t`, `` `db`.t ``).
/// The table a `TRUNCATE [TABLE] [db.]name` statement empties, when it is
/// in `database` (named, or the statement's default schema); backquotes
/// removed.
fn truncated_table(sql: &str, default_schema: &str, database: &str) -> Option<String> {
    let words = sql.trim_end_matches(';').trim();
    let rest = strip_word(words, "truncate")?;
    let rest = strip_word(rest, "table").unwrap_or(rest).trim();
    let parts = crate::model::split_qualified(rest, '`')?;
    let (db, name) = match parts.as_slice() {
        [name] => (default_schema.to_string(), name.clone()),
        [db, name] => (db.clone(), name.clone()),
        _ => return None,
    };
    (db == database).then_some(name)
}

/// `s` after a leading keyword `word` (any case) and the space after it.
fn strip_word<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    let rest = &s[word.len()..];
    (head.eq_ignore_ascii_case(word) && rest.starts_with(char::is_whitespace)).then(|| rest.trim_start())
}

fn mentions(sql: &str, db: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    let db = db.to_ascii_lowercase();
    lower.contains(&format!("{db}.")) || lower.contains(&format!("`{db}`."))
}

/// The columns of a target table, in table order.
pub async fn table_columns(
    conn: &mut mysql_async::Conn,
    database: &str,
    table: &str,
    label: &str,
) -> Result<Vec<String>, BinlogError> {
    conn.exec(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        (database, table),
    )
    .await
    .map_err(|e| BinlogError::driver(label, "reading the target's columns", e))
}

/// The server's current binlog end: `SHOW MASTER STATUS`, with the GTID
/// position at exactly that point (MariaDB: `BINLOG_GTID_POS` of the file
/// and offset; MySQL with `gtid_mode = ON`: the status's executed set, read
/// in the same statement).
pub async fn current_position(conn: &mut mysql_async::Conn, label: &str) -> Result<BinlogPosition, BinlogError> {
    // MySQL 8.4 removed SHOW MASTER STATUS (a syntax error there, 1064)
    // for SHOW BINARY LOG STATUS, which MariaDB 10.x does not know.
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => conn
            .query_first("SHOW BINARY LOG STATUS")
            .await
            .map_err(|e| BinlogError::driver(label, "SHOW BINARY LOG STATUS", e))?,
        r => r.map_err(|e| BinlogError::driver(label, "SHOW MASTER STATUS", e))?,
    };
    let Some(row) = row else {
        return Err(BinlogError::Setup(format!(
            "{label}: the binary log is off (SHOW MASTER STATUS is empty); run `xdb check --reverse` for the fix"
        )));
    };
    let file: String = row.get(0).unwrap_or_default();
    let pos: u64 = row.get(1).unwrap_or_default();
    let mysql_set: Option<String> = (row.len() > 4).then(|| row.get::<Option<String>, _>(4).flatten()).flatten();
    let gtid = match mysql_set {
        // MySQL: an empty set with gtid_mode OFF means no GTIDs at all.
        Some(set) => match gtid_mode_on(conn).await {
            true => GtidState::parse_mysql(&set),
            false => None,
        },
        None => gtid_position_at(conn, &file, pos).await,
    };
    Ok(BinlogPosition { file, pos, gtid })
}

/// MariaDB: the GTID position at a binlog file and offset (None on MySQL,
/// or when the file is gone).
pub async fn gtid_position_at(conn: &mut mysql_async::Conn, file: &str, pos: u64) -> Option<GtidState> {
    let g: Option<Option<String>> = conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos)).await.ok().flatten();
    g.flatten().as_deref().and_then(GtidState::parse_mariadb)
}

async fn gtid_mode_on(conn: &mut mysql_async::Conn) -> bool {
    let mode: Option<Option<String>> = conn.query_first("SELECT @@GLOBAL.gtid_mode").await.ok().flatten();
    mode.flatten().is_some_and(|m| m.eq_ignore_ascii_case("ON"))
}

/// Which server this is: MariaDB's `server_id` (unique among the servers
/// of one replication topology), MySQL's `server_uuid`. A different one
/// than where the position was read means a failover: file:offset is
/// meaningless there.
pub async fn server_identity(conn: &mut mysql_async::Conn, mariadb: bool, label: &str) -> Result<String, BinlogError> {
    let sql = if mariadb { "SELECT CONCAT('server_id ', @@GLOBAL.server_id)" } else { "SELECT @@GLOBAL.server_uuid" };
    let id: Option<String> = conn.query_first(sql).await.map_err(|e| BinlogError::driver(label, sql, e))?;
    Ok(id.unwrap_or_default())
}

/// The binlog files the server still has, oldest first, with their sizes.
pub async fn binary_logs(conn: &mut mysql_async::Conn, label: &str) -> Result<Vec<(String, u64)>, BinlogError> {
    Ok(conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| BinlogError::driver(label, "SHOW BINARY LOGS", e))?
        .into_iter()
        .map(|r: mysql_async::Row| (r.get::<String, _>(0).unwrap_or_default(), r.get::<u64, _>(1).unwrap_or(0)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_statements_name_their_table() {
        assert_eq!(truncated_table("TRUNCATE TABLE carts", "app", "app").as_deref(), Some("carts"));
        assert_eq!(truncated_table("truncate `app`.`we``ird`;", "other", "app").as_deref(), Some("we`ird"));
        assert_eq!(truncated_table("TRUNCATE app.carts", "", "app").as_deref(), Some("carts"));
        assert_eq!(truncated_table("TRUNCATE TABLE other.carts", "app", "app"), None);
        assert_eq!(truncated_table("TRUNCATE TABLE carts", "other", "app"), None);
        assert_eq!(truncated_table("TRUNCATEX carts", "app", "app"), None);
        assert_eq!(truncated_table("TRUNCATE TABLE `sales dept`", "app", "app").as_deref(), Some("sales dept"));
        assert_eq!(truncated_table("ALTER TABLE carts ADD x int", "app", "app"), None);
    }

    #[test]
    fn rotate_names_lose_the_checksum_bytes() {
        assert_eq!(super::rotate_file_name("binlog.000001Ws\u{fffd}C", "binlog.000001"), "binlog.000001");
        assert_eq!(super::rotate_file_name("binlog.000002", "binlog.000001"), "binlog.000002");
        // A checksum byte that is a '.' (found when the test server's binlog
        // grew past 900 MB): the name is still the file's.
        assert_eq!(super::rotate_file_name("binlog.000001W.\u{fffd}C", "binlog.000001"), "binlog.000001");
        assert_eq!(super::rotate_file_name("my.bin.000007.9x", "my.bin.000001"), "my.bin.000007");
    }

    #[test]
    fn enum_labels_parse_with_quotes() {
        assert_eq!(
            super::parse_enum_labels("enum('new','it''s','a,b')").unwrap(),
            vec!["new".to_string(), "it's".into(), "a,b".into()]
        );
        assert_eq!(super::parse_enum_labels("varchar(10)"), None);
    }

    #[test]
    fn qualified_statements_name_their_database() {
        assert!(super::mentions("ALTER TABLE `app`.t ADD c INT", "app"));
        assert!(super::mentions("drop table APP.t", "app"));
        assert!(!super::mentions("CREATE TABLE other.t (a int)", "app"));
    }
}
