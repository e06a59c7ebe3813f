//! Turns the stream of pgoutput messages into whole committed transactions
//! ([`Transaction`]), sans I/O except for spill files.
//!
//! Every open transaction — an ordinary one between Begin and Commit, or a
//! streamed (protocol v2) one whose chunks arrive in Stream Start … Stream
//! Stop blocks, interleaved with others — is buffered as the raw change
//! messages (zero-copy [`Bytes`]), and decoded into [`Change`]s only when it
//! commits. That keeps memory close to the wire size and lets a Stream Abort
//! drop a sub-transaction by cutting the buffer at its first change. When a
//! transaction's buffer grows beyond [`AssemblerConfig::spill_threshold_bytes`]
//! its messages go to a temporary file instead, and the commit yields a
//! [`SpilledTransaction`] that decodes them on read-back, in order.
//!
//! Relation messages update the assembler's relation map when they arrive
//! (and are reported as [`AssemblerEvent::Relation`] at once, so the driver
//! can check drift and [`insert_relation`](TransactionAssembler::insert_relation)
//! a richer catalog schema). Each open transaction also remembers the
//! relations announced inside it, in order, so that a transaction that
//! altered a table mid-way decodes its earlier changes with the earlier
//! shape. Changes to a relation not announced inside the transaction use the
//! map as it is at commit: PostgreSQL's locks keep another transaction from
//! changing a table that an open transaction has written.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::codec::pgoutput::{self, DecodeError, PgoutputMessage, RelationBody, TupleDatum};
use crate::model::{Change, Column, Lsn, PgType, ReplicaIdentity, Row, TableName, TableSchema, Transaction, Value};

/// Maps a column's type OID and modifier to a [`PgType`]. The driver can
/// back this with the catalog (enums, domains, extension types).
pub trait TypeResolver: Send + Sync {
    fn resolve(&self, oid: u32, typmod: i32) -> PgType;
}

/// Built-in types only: [`PgType::from_builtin_oid`], else
/// `PgType::Other { name: "oid N" }` (the assembler replaces that name with
/// the one from a Type message when it saw one).
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinTypes;

impl TypeResolver for BuiltinTypes {
    fn resolve(&self, oid: u32, typmod: i32) -> PgType {
        PgType::from_builtin_oid(oid, typmod).unwrap_or_else(|| PgType::Other { name: format!("oid {oid}") })
    }
}

/// How column values become [`Value`]s: one function for the text format,
/// one for the binary format. Errors are a message; the assembler adds the
/// table, column and LSN.
#[derive(Debug, Clone, Copy)]
pub struct ValueDecoders {
    pub text: fn(&PgType, &str) -> Result<Value, String>,
    pub binary: fn(&PgType, &[u8]) -> Result<Value, String>,
}

impl ValueDecoders {
    /// Keeps every text value as [`Value::Unknown`] with its type name;
    /// binary values are an error. For tests and raw inspection.
    pub fn raw() -> Self {
        fn text(t: &PgType, s: &str) -> Result<Value, String> {
            Ok(Value::Unknown { type_name: t.sql_name(), text: s.to_string() })
        }
        fn binary(_: &PgType, _: &[u8]) -> Result<Value, String> {
            Err("binary values need a binary decoder (ValueDecoders::raw has none)".to_string())
        }
        ValueDecoders { text, binary }
    }
}

/// Memory bound of the assembler.
#[derive(Debug, Clone)]
pub struct AssemblerConfig {
    /// Buffered bytes of one open transaction beyond which its messages go
    /// to a temporary file.
    pub spill_threshold_bytes: usize,
    /// Where spill files are created (and removed once read or dropped).
    pub spill_dir: PathBuf,
}

impl Default for AssemblerConfig {
    fn default() -> Self {
        AssemblerConfig { spill_threshold_bytes: 16 << 20, spill_dir: std::env::temp_dir() }
    }
}

/// Something the stream completed.
#[derive(Debug)]
pub enum AssemblerEvent {
    /// A committed transaction held in memory, changes in order.
    Transaction(Transaction),
    /// A committed transaction too large for memory: its changes are read
    /// back from a temporary file with [`SpilledTransaction::next_changes`].
    Spilled(SpilledTransaction),
    /// Every Relation message, when it arrives (also inside transactions),
    /// so the driver can detect schema drift.
    Relation { previous: Option<Arc<TableSchema>>, current: Arc<TableSchema> },
    /// A logical decoding message. Transactional ones come at commit, right
    /// before their transaction's event, with its xid; non-transactional ones
    /// at once.
    Message { xid: Option<u32>, transactional: bool, lsn: Lsn, prefix: String, content: Bytes },
}

/// The stream could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AssemblerError {
    #[error("at LSN {lsn}: {source}")]
    Decode {
        lsn: Lsn,
        #[source]
        source: DecodeError,
    },
    #[error(transparent)]
    Value(Box<ValueDecodeError>),
    #[error("at LSN {lsn}: {message} refers to relation OID {oid}, which no Relation message described")]
    UnknownRelation { oid: u32, lsn: Lsn, message: &'static str },
    #[error("at LSN {lsn}: {table}: {what} tuple has {got} columns, the relation has {expected}")]
    ColumnCount { table: TableName, what: &'static str, got: usize, expected: usize, lsn: Lsn },
    #[error("at LSN {lsn}: pgoutput protocol violation: {detail}")]
    Protocol { lsn: Lsn, detail: String },
    #[error("spill file {path}: {action}: {source}")]
    Spill {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A column value the [`ValueDecoders`] rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at LSN {lsn}: column {table}.{column} ({type_name}): cannot decode value: {message}")]
pub struct ValueDecodeError {
    pub table: TableName,
    pub column: String,
    pub type_name: String,
    pub lsn: Lsn,
    pub message: String,
}

/// Accounting overhead per buffered message on top of its bytes (the
/// `Bytes` handle, LSN and vector slot).
const ITEM_OVERHEAD: usize = 48;

/// One buffered message of an open transaction.
enum Item {
    /// The n-th relation announced inside this transaction applies from here.
    Relation(usize),
    /// A raw Insert/Update/Delete/Truncate message and its LSN.
    Change { lsn: Lsn, data: Bytes },
}

/// A transactional logical message waiting for its commit.
struct PendingMessage {
    lsn: Lsn,
    prefix: String,
    content: Bytes,
}

/// Where a sub-transaction's first message sits in its transaction's
/// buffer: cutting back to it undoes the sub-transaction.
struct Mark {
    subxid: u32,
    items: usize,
    file_len: Option<u64>,
    mem_bytes: usize,
    change_count: u64,
    relations: usize,
    messages: usize,
}

/// A spill file's name, for messages; removed when dropped where it could
/// not be removed at once (see [`SpillWriter::create`]).
#[derive(Debug)]
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct SpillWriter {
    writer: BufWriter<File>,
    len: u64,
    path: TempPath,
}

impl SpillWriter {
    fn create(dir: &Path, xid: u32) -> Result<Self, AssemblerError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let path =
            dir.join(format!("xdb-spill-{}-{xid}-{}.bin", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| AssemblerError::Spill { path: path.clone(), action: "create", source })?;
        // Written and read back through this one handle: on Unix the name
        // goes now, so that a process killed with -9 (or by the OOM killer)
        // leaves nothing behind; the space is freed when the handle closes.
        #[cfg(unix)]
        let _ = std::fs::remove_file(&path);
        Ok(SpillWriter { writer: BufWriter::with_capacity(256 << 10, file), len: 0, path: TempPath(path) })
    }

    fn err(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> AssemblerError + '_ {
        move |source| AssemblerError::Spill { path: self.path.0.clone(), action, source }
    }

    /// Record layout: `R` u32 relation index, or `C` u64 LSN u32 length bytes.
    fn write(&mut self, item: &Item) -> Result<(), AssemblerError> {
        let r = match item {
            Item::Relation(i) => {
                self.len += 5;
                self.writer.write_all(b"R").and_then(|_| self.writer.write_all(&(*i as u32).to_be_bytes()))
            }
            Item::Change { lsn, data } => {
                self.len += 13 + data.len() as u64;
                let mut head = [0u8; 13];
                head[0] = b'C';
                head[1..9].copy_from_slice(&lsn.0.to_be_bytes());
                head[9..13].copy_from_slice(&(data.len() as u32).to_be_bytes());
                self.writer.write_all(&head).and_then(|_| self.writer.write_all(data))
            }
        };
        r.map_err(|source| AssemblerError::Spill { path: self.path.0.clone(), action: "write", source })
    }

    fn truncate(&mut self, len: u64) -> Result<(), AssemblerError> {
        self.writer.flush().map_err(self.err("flush"))?;
        let f = self.writer.get_mut();
        let r = f.set_len(len).and_then(|_| f.seek(SeekFrom::Start(len)).map(|_| ()));
        r.map_err(|source| AssemblerError::Spill { path: self.path.0.clone(), action: "truncate", source })?;
        self.len = len;
        Ok(())
    }

    fn into_reader(mut self) -> Result<(BufReader<File>, TempPath), AssemblerError> {
        self.writer.flush().map_err(self.err("flush"))?;
        let path = self.path;
        let mut file = self.writer.into_inner().map_err(|e| AssemblerError::Spill {
            path: path.0.clone(),
            action: "flush",
            source: e.into_error(),
        })?;
        file.seek(SeekFrom::Start(0)).map_err(|source| AssemblerError::Spill {
            path: path.0.clone(),
            action: "rewind",
            source,
        })?;
        Ok((BufReader::with_capacity(256 << 10, file), path))
    }
}

/// One open transaction.
struct TxnBuffer {
    xid: u32,
    /// Streamed: its change messages carry a leading xid.
    streamed: bool,
    items: Vec<Item>,
    /// Items pushed so far (in memory or in the file).
    item_count: usize,
    mem_bytes: usize,
    spill: Option<SpillWriter>,
    change_count: u64,
    /// Relations announced inside this transaction, in order.
    relations: Vec<Arc<TableSchema>>,
    /// The shape each of those tables had before this transaction's first
    /// Relation of it: the session's current shape moves on when the
    /// Relation arrives, and the transaction's rows before it are of the
    /// shape before.
    before: HashMap<u32, Arc<TableSchema>>,
    messages: Vec<PendingMessage>,
    marks: Vec<Mark>,
    mark_of: HashMap<u32, usize>,
}

impl TxnBuffer {
    fn new(xid: u32, streamed: bool) -> Self {
        TxnBuffer {
            xid,
            streamed,
            items: Vec::new(),
            item_count: 0,
            mem_bytes: 0,
            spill: None,
            change_count: 0,
            relations: Vec::new(),
            before: HashMap::new(),
            messages: Vec::new(),
            marks: Vec::new(),
            mark_of: HashMap::new(),
        }
    }

    /// Notes the first message of a sub-transaction (streamed only).
    fn note_subxact(&mut self, subxid: Option<u32>) {
        let Some(subxid) = subxid.filter(|&s| s != self.xid) else { return };
        if self.marks.last().is_some_and(|m| m.subxid == subxid) || self.mark_of.contains_key(&subxid) {
            return;
        }
        self.mark_of.insert(subxid, self.marks.len());
        self.marks.push(Mark {
            subxid,
            items: self.item_count,
            file_len: self.spill.as_ref().map(|s| s.len),
            mem_bytes: self.mem_bytes,
            change_count: self.change_count,
            relations: self.relations.len(),
            messages: self.messages.len(),
        });
    }

    fn push(&mut self, item: Item, config: &AssemblerConfig) -> Result<(), AssemblerError> {
        self.item_count += 1;
        if let Item::Change { .. } = item {
            self.change_count += 1;
        }
        if let Some(spill) = &mut self.spill {
            return spill.write(&item);
        }
        self.mem_bytes += ITEM_OVERHEAD + if let Item::Change { data, .. } = &item { data.len() } else { 0 };
        self.items.push(item);
        if self.mem_bytes > config.spill_threshold_bytes {
            self.spill_now(config)?;
        }
        Ok(())
    }

    /// Moves the buffered items to a new spill file; later ones go there too.
    fn spill_now(&mut self, config: &AssemblerConfig) -> Result<(), AssemblerError> {
        let mut w = SpillWriter::create(&config.spill_dir, self.xid)?;
        let mut offsets = Vec::with_capacity(self.items.len() + 1);
        for item in &self.items {
            offsets.push(w.len);
            w.write(item)?;
        }
        offsets.push(w.len);
        for m in &mut self.marks {
            m.file_len = offsets.get(m.items).copied();
            m.mem_bytes = 0;
        }
        self.items = Vec::new();
        self.mem_bytes = 0;
        self.spill = Some(w);
        Ok(())
    }

    /// Drops everything from a sub-transaction's first message on.
    fn abort_subxact(&mut self, subxid: u32, lsn: Lsn) -> Result<(), AssemblerError> {
        let Some(&i) = self.mark_of.get(&subxid) else { return Ok(()) };
        let Some(m) = self.marks.get(i) else { return Ok(()) };
        match (&mut self.spill, m.file_len) {
            (Some(spill), Some(len)) => spill.truncate(len)?,
            (None, _) => self.items.truncate(m.items),
            (Some(_), None) => {
                return Err(AssemblerError::Protocol {
                    lsn,
                    detail: format!("lost the spill position of sub-transaction {subxid}"),
                })
            }
        }
        self.item_count = m.items;
        self.mem_bytes = m.mem_bytes;
        self.change_count = m.change_count;
        self.relations.truncate(m.relations);
        self.messages.truncate(m.messages);
        for gone in self.marks.drain(i..) {
            self.mark_of.remove(&gone.subxid);
        }
        Ok(())
    }
}

/// Decodes buffered change messages in order, with the relations announced
/// inside the transaction overriding the assembler's map.
struct Replay<'a> {
    base: &'a HashMap<u32, Arc<TableSchema>>,
    overlay: HashMap<u32, Arc<TableSchema>>,
    decoders: ValueDecoders,
    streamed: bool,
}

impl Replay<'_> {
    fn announce(&mut self, schema: &Arc<TableSchema>) {
        self.overlay.insert(schema.oid, schema.clone());
    }

    fn table(&self, oid: u32, lsn: Lsn, message: &'static str) -> Result<Arc<TableSchema>, AssemblerError> {
        self.overlay.get(&oid).or_else(|| self.base.get(&oid)).cloned().ok_or(AssemblerError::UnknownRelation {
            oid,
            lsn,
            message,
        })
    }

    fn change(&self, lsn: Lsn, data: &Bytes) -> Result<Change, AssemblerError> {
        let msg = pgoutput::decode(data, self.streamed).map_err(|source| AssemblerError::Decode { lsn, source })?;
        Ok(match msg {
            PgoutputMessage::Insert { relation_oid, new, .. } => {
                let table = self.table(relation_oid, lsn, "Insert")?;
                let (new, _) = self.row(&table, &new, lsn, "new")?;
                Change::Insert { table, new }
            }
            PgoutputMessage::Update { relation_oid, key, old, new, .. } => {
                let table = self.table(relation_oid, lsn, "Update")?;
                let old = match key.as_ref().or(old.as_ref()) {
                    Some(o) => Some(self.row(&table, o, lsn, "old")?.0),
                    None => None,
                };
                let (new, unchanged_toast) = self.row(&table, &new, lsn, "new")?;
                Change::Update { table, old, new, unchanged_toast }
            }
            PgoutputMessage::Delete { relation_oid, key, old, .. } => {
                let table = self.table(relation_oid, lsn, "Delete")?;
                let old = self.row(&table, key.as_ref().or(old.as_ref()).map_or(&[][..], |v| v), lsn, "old")?.0;
                Change::Delete { table, old }
            }
            PgoutputMessage::Truncate { options, relation_oids, .. } => Change::Truncate {
                tables: relation_oids.iter().map(|&oid| self.table(oid, lsn, "Truncate")).collect::<Result<_, _>>()?,
                cascade: options & 1 != 0,
                restart_identity: options & 2 != 0,
            },
            other => {
                return Err(AssemblerError::Protocol {
                    lsn,
                    detail: format!("buffered a {} message as a change", other.kind()),
                })
            }
        })
    }

    /// A full-width row; a new tuple must have every column, an old one may
    /// be shorter (the rest is NULL). Unchanged TOAST values become NULL and
    /// their positions are returned.
    fn row(
        &self,
        table: &TableSchema,
        tuple: &[TupleDatum],
        lsn: Lsn,
        what: &'static str,
    ) -> Result<(Row, Vec<usize>), AssemblerError> {
        let expected = table.columns.len();
        if tuple.len() > expected || (what == "new" && tuple.len() != expected) {
            return Err(AssemblerError::ColumnCount {
                table: table.name.clone(),
                what,
                got: tuple.len(),
                expected,
                lsn,
            });
        }
        let mut row = Vec::with_capacity(expected);
        let mut unchanged = Vec::new();
        for (i, (datum, col)) in tuple.iter().zip(&table.columns).enumerate() {
            let value_err = |message: String| {
                AssemblerError::Value(Box::new(ValueDecodeError {
                    table: table.name.clone(),
                    column: col.name.clone(),
                    type_name: col.pg_type.sql_name(),
                    lsn,
                    message,
                }))
            };
            row.push(match datum {
                TupleDatum::Null => Value::Null,
                TupleDatum::UnchangedToast => {
                    unchanged.push(i);
                    Value::Null
                }
                TupleDatum::Text(b) => {
                    let s = std::str::from_utf8(b).map_err(|e| value_err(format!("text is not UTF-8: {e}")))?;
                    (self.decoders.text)(&col.pg_type, s).map_err(value_err)?
                }
                TupleDatum::Binary(b) => (self.decoders.binary)(&col.pg_type, b).map_err(value_err)?,
            });
        }
        row.resize(expected, Value::Null);
        Ok((row, unchanged))
    }
}

/// A committed transaction whose changes wait in a temporary file. Read
/// them with [`next_changes`](Self::next_changes); the file is removed when
/// this value is dropped.
pub struct SpilledTransaction {
    pub xid: u32,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub commit_time_micros: i64,
    pub change_count: u64,
    reader: BufReader<File>,
    path: TempPath,
    relations: Vec<Arc<TableSchema>>,
    base: HashMap<u32, Arc<TableSchema>>,
    overlay: HashMap<u32, Arc<TableSchema>>,
    decoders: ValueDecoders,
    streamed: bool,
    done: bool,
}

impl std::fmt::Debug for SpilledTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpilledTransaction")
            .field("xid", &self.xid)
            .field("commit_lsn", &self.commit_lsn)
            .field("end_lsn", &self.end_lsn)
            .field("commit_time_micros", &self.commit_time_micros)
            .field("change_count", &self.change_count)
            .field("path", &self.path.0)
            .finish()
    }
}

impl crate::model::ChunkedTransaction for SpilledTransaction {
    fn change_count(&self) -> u64 {
        self.change_count
    }

    fn header(&self) -> Transaction {
        Transaction {
            xid: self.xid,
            commit_lsn: self.commit_lsn,
            end_lsn: self.end_lsn,
            commit_time_micros: self.commit_time_micros,
            changes: Vec::new(),
        }
    }

    fn next_chunk(&mut self, max: usize) -> Result<Option<Transaction>, crate::model::ChunkError> {
        let changes = self.next_changes(max)?;
        Ok((!changes.is_empty()).then(|| Transaction { changes, ..self.header() }))
    }
}

impl SpilledTransaction {
    /// Up to `max` further changes, in commit order; empty once all are read.
    pub fn next_changes(&mut self, max: usize) -> Result<Vec<Change>, AssemblerError> {
        let mut out = Vec::with_capacity(max.min(4096));
        while out.len() < max && !self.done {
            let mut kind = [0u8; 1];
            match self.reader.read(&mut kind) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(self.io_err(source)),
            }
            match kind[0] {
                b'R' => {
                    let mut i = [0u8; 4];
                    self.reader.read_exact(&mut i).map_err(|e| self.io_err(e))?;
                    let i = u32::from_be_bytes(i) as usize;
                    let schema = self.relations.get(i).cloned().ok_or_else(|| self.corrupt())?;
                    self.overlay.insert(schema.oid, schema);
                }
                b'C' => {
                    let mut head = [0u8; 12];
                    self.reader.read_exact(&mut head).map_err(|e| self.io_err(e))?;
                    let (lsn, len) = head.split_at(8);
                    let lsn = Lsn(u64::from_be_bytes(lsn.try_into().unwrap_or_default()));
                    let len = u32::from_be_bytes(len.try_into().unwrap_or_default()) as usize;
                    let mut data = vec![0u8; len];
                    self.reader.read_exact(&mut data).map_err(|e| self.io_err(e))?;
                    let replay = Replay {
                        base: &self.base,
                        overlay: std::mem::take(&mut self.overlay),
                        decoders: self.decoders,
                        streamed: self.streamed,
                    };
                    let change = replay.change(lsn, &Bytes::from(data));
                    self.overlay = replay.overlay;
                    out.push(change?);
                }
                _ => return Err(self.corrupt()),
            }
        }
        Ok(out)
    }

    fn io_err(&self, source: std::io::Error) -> AssemblerError {
        AssemblerError::Spill { path: self.path.0.clone(), action: "read", source }
    }

    fn corrupt(&self) -> AssemblerError {
        self.io_err(std::io::Error::new(std::io::ErrorKind::InvalidData, "corrupt spill record"))
    }
}

/// The stateful assembler: feed it every XLogData payload in order.
pub struct TransactionAssembler {
    config: AssemblerConfig,
    decoders: ValueDecoders,
    resolver: Arc<dyn TypeResolver>,
    relations: HashMap<u32, Arc<TableSchema>>,
    /// Names from Type messages, for types the resolver does not know.
    type_names: HashMap<u32, String>,
    /// The ordinary transaction between Begin and Commit.
    current: Option<TxnBuffer>,
    /// Streamed transactions by top-level xid.
    streams: HashMap<u32, TxnBuffer>,
    /// The xid of the open stream block (between Stream Start and Stop).
    in_stream: Option<u32>,
}

impl TransactionAssembler {
    pub fn new(config: AssemblerConfig, decoders: ValueDecoders, resolver: Arc<dyn TypeResolver>) -> Self {
        TransactionAssembler {
            config,
            decoders,
            resolver,
            relations: HashMap::new(),
            type_names: HashMap::new(),
            current: None,
            streams: HashMap::new(),
            in_stream: None,
        }
    }

    /// Decodes one pgoutput message (the XLogData payload after its 25-byte
    /// header; `wal_start` is the XLogData's start LSN) and returns what it
    /// completed. Knows by itself whether it is inside a stream block.
    pub fn feed(&mut self, wal_start: Lsn, data: &Bytes) -> Result<Vec<AssemblerEvent>, AssemblerError> {
        let lsn = wal_start;
        let streaming = self.in_stream.is_some();
        let (tag, xid) = pgoutput::peek(data, streaming).map_err(|source| AssemblerError::Decode { lsn, source })?;
        let mut events = Vec::new();
        if matches!(tag, b'I' | b'U' | b'D' | b'T') {
            // Changes stay raw until commit; decoding them now would double the work.
            let config = &self.config;
            let buf = Self::owner(&mut self.current, &mut self.streams, self.in_stream, lsn, "a row change")?;
            buf.note_subxact(xid);
            buf.push(Item::Change { lsn, data: data.clone() }, config)?;
            return Ok(events);
        }
        let msg = pgoutput::decode(data, streaming).map_err(|source| AssemblerError::Decode { lsn, source })?;
        match msg {
            PgoutputMessage::Begin { xid, .. } => {
                if self.current.is_some() || streaming {
                    return Err(self.protocol(lsn, format!("Begin of {xid} inside another transaction")));
                }
                self.current = Some(TxnBuffer::new(xid, false));
            }
            PgoutputMessage::Commit { commit_lsn, end_lsn, commit_time_micros, .. } => {
                let buf = self.current.take().ok_or_else(|| self.protocol(lsn, "Commit without Begin".into()))?;
                self.finish(buf, commit_lsn, end_lsn, commit_time_micros, &mut events)?;
            }
            PgoutputMessage::Origin { .. } => {}
            PgoutputMessage::Relation(body) if streaming => {
                // Inside a streamed transaction the new shape may yet be
                // rolled back (Stream Abort): it is kept with the transaction
                // and reported, and made current, only at Stream Commit, so
                // an aborted ALTER never reaches the target.
                let xid = body.xid;
                let current = Arc::new(self.relation_schema(body, lsn)?);
                let buf = Self::owner(&mut self.current, &mut self.streams, self.in_stream, lsn, "a relation")?;
                buf.note_subxact(xid);
                buf.relations.push(current);
                let i = buf.relations.len() - 1;
                buf.push(Item::Relation(i), &self.config)?;
            }
            PgoutputMessage::Relation(body) => {
                let xid = body.xid;
                let current = Arc::new(self.relation_schema(body, lsn)?);
                let previous = self.relations.insert(current.oid, current.clone());
                if let Ok(buf) = Self::owner(&mut self.current, &mut self.streams, self.in_stream, lsn, "") {
                    buf.note_subxact(xid);
                    if let Some(p) = &previous {
                        buf.before.entry(current.oid).or_insert_with(|| p.clone());
                    }
                    buf.relations.push(current.clone());
                    let i = buf.relations.len() - 1;
                    buf.push(Item::Relation(i), &self.config)?;
                }
                events.push(AssemblerEvent::Relation { previous, current });
            }
            PgoutputMessage::Type { oid, namespace, name, .. } => {
                let name = if namespace.is_empty() { name } else { format!("{namespace}.{name}") };
                self.type_names.insert(oid, name);
            }
            PgoutputMessage::Message { xid, transactional, lsn: msg_lsn, prefix, content } => {
                if transactional {
                    let buf = Self::owner(
                        &mut self.current,
                        &mut self.streams,
                        self.in_stream,
                        lsn,
                        "a transactional message",
                    )?;
                    buf.note_subxact(xid);
                    buf.messages.push(PendingMessage { lsn: msg_lsn, prefix, content });
                } else {
                    events.push(AssemblerEvent::Message { xid, transactional, lsn: msg_lsn, prefix, content });
                }
            }
            PgoutputMessage::StreamStart { xid, first_segment } => {
                if streaming || self.current.is_some() {
                    return Err(self.protocol(lsn, format!("Stream Start of {xid} inside another transaction")));
                }
                match (self.streams.contains_key(&xid), first_segment) {
                    (false, true) => {
                        self.streams.insert(xid, TxnBuffer::new(xid, true));
                    }
                    (true, false) => {}
                    (true, true) => {
                        return Err(self.protocol(lsn, format!("second first segment of streamed transaction {xid}")))
                    }
                    (false, false) => {
                        return Err(self.protocol(
                            lsn,
                            format!("Stream Start of {xid} continues a transaction whose first segment was not seen"),
                        ))
                    }
                }
                self.in_stream = Some(xid);
            }
            PgoutputMessage::StreamStop => {
                if self.in_stream.take().is_none() {
                    return Err(self.protocol(lsn, "Stream Stop outside a stream block".into()));
                }
            }
            PgoutputMessage::StreamCommit { xid, commit_lsn, end_lsn, commit_time_micros, .. } => {
                if streaming {
                    return Err(self.protocol(lsn, format!("Stream Commit of {xid} inside a stream block")));
                }
                let buf = self
                    .streams
                    .remove(&xid)
                    .ok_or_else(|| self.protocol(lsn, format!("Stream Commit of {xid}, which never streamed")))?;
                // The relations it announced (and did not roll back) become
                // current now, reported before the transaction they shape.
                let announced = buf.relations.clone();
                let mut shapes: HashMap<u32, Arc<TableSchema>> = HashMap::new();
                for current in &announced {
                    let previous = shapes.get(&current.oid).or_else(|| self.relations.get(&current.oid)).cloned();
                    shapes.insert(current.oid, current.clone());
                    events.push(AssemblerEvent::Relation { previous, current: current.clone() });
                }
                // Decoded against the map as it was: changes before an
                // announcement inside the transaction have the older shape.
                self.finish(buf, commit_lsn, end_lsn, commit_time_micros, &mut events)?;
                self.relations.extend(shapes);
            }
            PgoutputMessage::StreamAbort { xid, subxid, .. } => {
                if subxid == xid {
                    // Dropping the buffer removes its spill file.
                    self.streams.remove(&xid);
                } else if let Some(buf) = self.streams.get_mut(&xid) {
                    buf.abort_subxact(subxid, lsn)?;
                }
            }
            PgoutputMessage::Insert { .. }
            | PgoutputMessage::Update { .. }
            | PgoutputMessage::Delete { .. }
            | PgoutputMessage::Truncate { .. } => {
                return Err(self.protocol(lsn, "unreachable: change handled above".into()))
            }
        }
        Ok(events)
    }

    /// Replaces (or adds) a relation, e.g. with a richer catalog schema
    /// (same OID and columns): later decoding, including of transactions
    /// still open, uses it.
    pub fn insert_relation(&mut self, schema: Arc<TableSchema>) {
        let oid = schema.oid;
        for buf in self.current.iter_mut().chain(self.streams.values_mut()) {
            if let Some(r) = buf.relations.iter_mut().rev().find(|r| r.oid == oid) {
                *r = schema.clone();
            }
        }
        self.relations.insert(oid, schema);
    }

    /// The relation as last announced or inserted.
    pub fn relation(&self, oid: u32) -> Option<&Arc<TableSchema>> {
        self.relations.get(&oid)
    }

    /// Open transactions: the ordinary one (if any) and the streamed ones.
    pub fn open_transactions(&self) -> usize {
        usize::from(self.current.is_some()) + self.streams.len()
    }

    /// Bytes buffered in memory by open transactions (spilled ones count 0).
    pub fn buffered_bytes(&self) -> usize {
        self.current.iter().chain(self.streams.values()).map(|b| b.mem_bytes).sum()
    }

    fn protocol(&self, lsn: Lsn, detail: String) -> AssemblerError {
        AssemblerError::Protocol { lsn, detail }
    }

    /// The transaction a message belongs to: the open stream block's, else
    /// the ordinary one.
    fn owner<'a>(
        current: &'a mut Option<TxnBuffer>,
        streams: &'a mut HashMap<u32, TxnBuffer>,
        in_stream: Option<u32>,
        lsn: Lsn,
        what: &str,
    ) -> Result<&'a mut TxnBuffer, AssemblerError> {
        let found = match in_stream {
            Some(xid) => streams.get_mut(&xid),
            None => current.as_mut(),
        };
        found.ok_or_else(|| AssemblerError::Protocol { lsn, detail: format!("{what} outside a transaction") })
    }

    fn resolve(&self, oid: u32, typmod: i32) -> PgType {
        match self.resolver.resolve(oid, typmod) {
            PgType::Other { name } if name == format!("oid {oid}") => {
                PgType::Other { name: self.type_names.get(&oid).cloned().unwrap_or(name) }
            }
            t => t,
        }
    }

    fn relation_schema(&self, body: RelationBody, lsn: Lsn) -> Result<TableSchema, AssemblerError> {
        let replica_identity = ReplicaIdentity::from_byte(body.replica_identity).ok_or_else(|| {
            self.protocol(
                lsn,
                format!("Relation {}: unknown replica identity {:?}", body.name, body.replica_identity as char),
            )
        })?;
        let columns: Vec<Column> = body
            .columns
            .into_iter()
            .map(|c| Column {
                pg_type: self.resolve(c.type_oid, c.typmod),
                name: c.name,
                type_oid: c.type_oid,
                typmod: c.typmod,
                nullable: true,
                is_key: c.flags & 1 != 0,
                default: None,
                identity: false,
                carried: None,
                feeds_generated: false,
            })
            .collect();
        // With FULL every column is flagged; the driver fills the real key from the catalog.
        let primary_key = if replica_identity == ReplicaIdentity::Full {
            Vec::new()
        } else {
            columns.iter().enumerate().filter(|(_, c)| c.is_key).map(|(i, _)| i).collect()
        };
        let schema = if body.namespace.is_empty() { "pg_catalog".to_string() } else { body.namespace };
        Ok(TableSchema {
            oid: body.oid,
            name: TableName::new(schema, body.name),
            columns,
            replica_identity,
            primary_key,
            generated: Vec::new(),
        })
    }

    fn finish(
        &self,
        buf: TxnBuffer,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time_micros: i64,
        events: &mut Vec<AssemblerEvent>,
    ) -> Result<(), AssemblerError> {
        let TxnBuffer { xid, streamed, items, spill, change_count, relations, before, messages, .. } = buf;
        for m in messages {
            events.push(AssemblerEvent::Message {
                xid: Some(xid),
                transactional: true,
                lsn: m.lsn,
                prefix: m.prefix,
                content: m.content,
            });
        }
        if let Some(spill) = spill {
            let (reader, path) = spill.into_reader()?;
            events.push(AssemblerEvent::Spilled(SpilledTransaction {
                xid,
                commit_lsn,
                end_lsn,
                commit_time_micros,
                change_count,
                reader,
                path,
                relations,
                base: self.relations.clone(),
                overlay: before,
                decoders: self.decoders,
                streamed,
                done: false,
            }));
            return Ok(());
        }
        let mut replay = Replay { base: &self.relations, overlay: before, decoders: self.decoders, streamed };
        let mut changes = Vec::with_capacity(change_count as usize);
        for item in &items {
            match item {
                Item::Relation(i) => {
                    if let Some(schema) = relations.get(*i) {
                        replay.announce(schema);
                    }
                }
                Item::Change { lsn, data } => changes.push(replay.change(*lsn, data)?),
            }
        }
        events.push(AssemblerEvent::Transaction(Transaction { xid, commit_lsn, end_lsn, commit_time_micros, changes }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::postgres::codec::pgoutput::{encode, RelationColumn};

    fn t(s: &str) -> TupleDatum {
        TupleDatum::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn txt(s: &str) -> Value {
        Value::Unknown { type_name: "text".into(), text: s.into() }
    }

    fn int(s: &str) -> Value {
        Value::Unknown { type_name: "bigint".into(), text: s.into() }
    }

    struct Harness {
        a: TransactionAssembler,
        lsn: u64,
        in_stream: bool,
        dir: PathBuf,
    }

    impl Harness {
        fn new(threshold: usize) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "xdb-asm-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let config = AssemblerConfig { spill_threshold_bytes: threshold, spill_dir: dir.clone() };
            Harness {
                a: TransactionAssembler::new(config, ValueDecoders::raw(), Arc::new(BuiltinTypes)),
                lsn: 0x100,
                in_stream: false,
                dir,
            }
        }

        fn feed(&mut self, msg: PgoutputMessage) -> Vec<AssemblerEvent> {
            self.try_feed(msg).unwrap()
        }

        fn try_feed(&mut self, msg: PgoutputMessage) -> Result<Vec<AssemblerEvent>, AssemblerError> {
            match msg {
                PgoutputMessage::StreamStart { .. } => self.in_stream = true,
                PgoutputMessage::StreamStop => self.in_stream = false,
                _ => {}
            }
            self.lsn += 0x10;
            self.a.feed(Lsn(self.lsn), &encode(&msg, self.in_stream))
        }

        /// Spill files open in this process under the harness's directory
        /// (their names are removed at once: counted by open handle).
        fn spill_files(&self) -> usize {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.starts_with(&self.dir))
                .count()
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn relation(xid: Option<u32>, oid: u32, ident: u8, extra: bool) -> PgoutputMessage {
        let mut columns = vec![
            RelationColumn { flags: 1, name: "id".into(), type_oid: 20, typmod: -1 },
            RelationColumn { flags: 0, name: "body".into(), type_oid: 25, typmod: -1 },
        ];
        if extra {
            columns.push(RelationColumn { flags: 0, name: "extra".into(), type_oid: 77777, typmod: -1 });
        }
        PgoutputMessage::Relation(RelationBody {
            xid,
            oid,
            namespace: "public".into(),
            name: format!("t{oid}"),
            replica_identity: ident,
            columns,
        })
    }

    fn begin(xid: u32) -> PgoutputMessage {
        PgoutputMessage::Begin { final_lsn: Lsn(0x900), commit_time_micros: 1_000, xid }
    }

    fn commit() -> PgoutputMessage {
        PgoutputMessage::Commit { flags: 0, commit_lsn: Lsn(0x900), end_lsn: Lsn(0x908), commit_time_micros: 1_000 }
    }

    fn insert(xid: Option<u32>, oid: u32, id: &str) -> PgoutputMessage {
        PgoutputMessage::Insert { xid, relation_oid: oid, new: vec![t(id), t("x")] }
    }

    fn only_txn(events: Vec<AssemblerEvent>) -> Transaction {
        let mut txns: Vec<_> = events
            .into_iter()
            .filter_map(|e| match e {
                AssemblerEvent::Transaction(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(txns.len(), 1);
        txns.remove(0)
    }

    fn inserted_ids(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Insert { new, .. } => match &new[0] {
                    Value::Unknown { text, .. } => text.clone(),
                    v => panic!("{v:?}"),
                },
                c => panic!("{c:?}"),
            })
            .collect()
    }

    /// A migration's transaction after the session already described the
    /// table: rows of the old shape, then the ALTER's Relation, then rows of
    /// the new one. The rows before the Relation were decoded with the new
    /// shape (the assembler's current one at commit) and failed ("new tuple
    /// has 2 columns, the relation has 3"); in memory and spilled.
    #[test]
    fn rows_before_a_shape_change_in_their_transaction_keep_the_old_shape() {
        for threshold in [usize::MAX, 1] {
            let mut h = Harness::new(threshold);
            h.feed(begin(7));
            h.feed(relation(None, 1, b'd', false));
            h.feed(insert(None, 1, "1"));
            h.feed(commit());
            h.feed(begin(8));
            h.feed(insert(None, 1, "2"));
            h.feed(relation(None, 1, b'd', true));
            h.feed(PgoutputMessage::Insert { xid: None, relation_oid: 1, new: vec![t("3"), t("y"), t("z")] });
            let ev = h.feed(commit());
            let changes = match ev.into_iter().find_map(|e| match e {
                AssemblerEvent::Transaction(t) => Some(t.changes),
                AssemblerEvent::Spilled(mut s) => Some(s.next_changes(100).unwrap()),
                _ => None,
            }) {
                Some(c) => c,
                None => panic!("no transaction (threshold {threshold})"),
            };
            let widths: Vec<usize> = changes
                .iter()
                .map(|c| match c {
                    Change::Insert { table, new } => {
                        assert_eq!(table.columns.len(), new.len());
                        new.len()
                    }
                    c => panic!("{c:?}"),
                })
                .collect();
            assert_eq!(widths, vec![2, 3], "threshold {threshold}");
        }
    }

    #[test]
    fn ordinary_transaction_with_every_change_kind() {
        let mut h = Harness::new(usize::MAX);
        assert!(h.feed(begin(7)).is_empty());
        let ev = h.feed(relation(None, 1, b'd', false));
        let schema = match &ev[..] {
            [AssemblerEvent::Relation { previous: None, current }] => current.clone(),
            e => panic!("{e:?}"),
        };
        assert_eq!(schema.name, TableName::new("public", "t1"));
        assert_eq!(schema.primary_key, vec![0]);
        assert_eq!(schema.columns[1].pg_type, PgType::Text);
        h.feed(insert(None, 1, "1"));
        h.feed(PgoutputMessage::Update {
            xid: None,
            relation_oid: 1,
            key: Some(vec![t("1"), TupleDatum::Null]),
            old: None,
            new: vec![t("2"), TupleDatum::UnchangedToast],
        });
        h.feed(PgoutputMessage::Delete {
            xid: None,
            relation_oid: 1,
            key: Some(vec![t("2"), TupleDatum::Null]),
            old: None,
        });
        h.feed(PgoutputMessage::Truncate { xid: None, options: 2, relation_oids: vec![1] });
        h.feed(PgoutputMessage::Message {
            xid: None,
            transactional: true,
            lsn: Lsn(0x500),
            prefix: "p".into(),
            content: Bytes::from_static(b"c"),
        });
        assert_eq!(h.a.open_transactions(), 1);
        assert!(h.a.buffered_bytes() > 0);
        let ev = h.feed(commit());
        assert!(
            matches!(&ev[0], AssemblerEvent::Message { xid: Some(7), transactional: true, prefix, .. } if prefix == "p")
        );
        let txn = only_txn(ev);
        assert_eq!((txn.xid, txn.commit_lsn, txn.end_lsn, txn.commit_time_micros), (7, Lsn(0x900), Lsn(0x908), 1_000));
        assert_eq!(
            txn.changes,
            vec![
                Change::Insert { table: schema.clone(), new: vec![int("1"), txt("x")] },
                Change::Update {
                    table: schema.clone(),
                    old: Some(vec![int("1"), Value::Null]),
                    new: vec![int("2"), Value::Null],
                    unchanged_toast: vec![1],
                },
                Change::Delete { table: schema.clone(), old: vec![int("2"), Value::Null] },
                Change::Truncate { tables: vec![schema], cascade: false, restart_identity: true },
            ]
        );
        assert_eq!(h.a.open_transactions(), 0);
        assert_eq!(h.a.buffered_bytes(), 0);
    }

    #[test]
    fn full_identity_and_type_names() {
        let mut h = Harness::new(usize::MAX);
        h.feed(PgoutputMessage::Type { xid: None, oid: 77777, namespace: "public".into(), name: "mood".into() });
        h.feed(begin(1));
        let ev = h.feed(relation(None, 2, b'f', true));
        let AssemblerEvent::Relation { current, .. } = &ev[0] else { panic!() };
        assert!(current.primary_key.is_empty());
        assert_eq!(current.replica_identity, ReplicaIdentity::Full);
        assert_eq!(current.columns[2].pg_type, PgType::Other { name: "public.mood".into() });
        h.feed(PgoutputMessage::Delete {
            xid: None,
            relation_oid: 2,
            key: None,
            old: Some(vec![t("5"), t("b"), t("happy")]),
        });
        let txn = only_txn(h.feed(commit()));
        let Change::Delete { old, .. } = &txn.changes[0] else { panic!() };
        assert_eq!(old[2], Value::Unknown { type_name: "public.mood".into(), text: "happy".into() });
    }

    #[test]
    fn message_only_and_non_transactional_messages() {
        let mut h = Harness::new(usize::MAX);
        let ev = h.feed(PgoutputMessage::Message {
            xid: None,
            transactional: false,
            lsn: Lsn(1),
            prefix: "hb".into(),
            content: Bytes::new(),
        });
        assert!(matches!(&ev[..], [AssemblerEvent::Message { xid: None, transactional: false, .. }]));
        h.feed(begin(3));
        h.feed(PgoutputMessage::Message {
            xid: None,
            transactional: true,
            lsn: Lsn(2),
            prefix: "m".into(),
            content: Bytes::new(),
        });
        let ev = h.feed(commit());
        assert_eq!(ev.len(), 2);
        assert!(only_txn(ev).changes.is_empty());
    }

    #[test]
    fn relation_changed_inside_a_transaction_applies_in_order() {
        let mut h = Harness::new(usize::MAX);
        h.feed(begin(1));
        h.feed(relation(None, 1, b'd', false));
        h.feed(insert(None, 1, "1"));
        h.feed(relation(None, 1, b'd', true));
        h.feed(PgoutputMessage::Insert { xid: None, relation_oid: 1, new: vec![t("2"), t("y"), t("z")] });
        let txn = only_txn(h.feed(commit()));
        let widths: Vec<_> = txn.changes.iter().map(|c| c.tables()[0].columns.len()).collect();
        assert_eq!(widths, vec![2, 3]);
    }

    #[test]
    fn insert_relation_reaches_open_transactions() {
        let mut h = Harness::new(usize::MAX);
        h.feed(begin(1));
        let ev = h.feed(relation(None, 2, b'f', false));
        let AssemblerEvent::Relation { current, .. } = &ev[0] else { panic!() };
        let mut rich = (**current).clone();
        rich.primary_key = vec![0];
        rich.columns[0].nullable = false;
        h.a.insert_relation(Arc::new(rich.clone()));
        h.feed(insert(None, 2, "1"));
        let txn = only_txn(h.feed(commit()));
        assert_eq!(**txn.changes[0].tables()[0], rich);
        assert_eq!(**h.a.relation(2).unwrap(), rich);
    }

    #[test]
    fn streamed_transactions_interleave_and_abort() {
        let mut h = Harness::new(usize::MAX);
        h.feed(PgoutputMessage::StreamStart { xid: 10, first_segment: true });
        h.feed(relation(Some(10), 1, b'd', false));
        h.feed(insert(Some(10), 1, "a1"));
        h.feed(PgoutputMessage::StreamStop);
        // pgoutput sends the schema once per streamed transaction, and again
        // outside streams until a streamed one that sent it commits.
        h.feed(PgoutputMessage::StreamStart { xid: 20, first_segment: true });
        h.feed(relation(Some(20), 1, b'd', false));
        h.feed(insert(Some(20), 1, "b1"));
        h.feed(PgoutputMessage::StreamStop);
        // An ordinary transaction between the blocks.
        h.feed(begin(30));
        h.feed(relation(None, 1, b'd', false));
        h.feed(insert(None, 1, "c1"));
        assert_eq!(inserted_ids(&only_txn(h.feed(commit())).changes), ["c1"]);
        h.feed(PgoutputMessage::StreamStart { xid: 10, first_segment: false });
        h.feed(insert(Some(11), 1, "a2-sub11"));
        h.feed(insert(Some(12), 1, "a3-sub12"));
        h.feed(PgoutputMessage::Message {
            xid: Some(12),
            transactional: true,
            lsn: Lsn(3),
            prefix: "gone".into(),
            content: Bytes::new(),
        });
        h.feed(PgoutputMessage::StreamStop);
        assert_eq!(h.a.open_transactions(), 2);
        // Sub-transaction 12 rolls back: only its changes (and message) go.
        h.feed(PgoutputMessage::StreamAbort { xid: 10, subxid: 12, abort_lsn: None, abort_time_micros: None });
        h.feed(PgoutputMessage::StreamStart { xid: 10, first_segment: false });
        h.feed(insert(Some(13), 1, "a4-sub13"));
        h.feed(PgoutputMessage::StreamStop);
        h.feed(PgoutputMessage::StreamAbort { xid: 20, subxid: 20, abort_lsn: None, abort_time_micros: None });
        let ev = h.feed(PgoutputMessage::StreamCommit {
            xid: 10,
            flags: 0,
            commit_lsn: Lsn(0x1000),
            end_lsn: Lsn(0x1008),
            commit_time_micros: 5,
        });
        let txn = only_txn(ev);
        assert_eq!(txn.xid, 10);
        assert_eq!(inserted_ids(&txn.changes), ["a1", "a2-sub11", "a4-sub13"]);
        assert_eq!(h.a.open_transactions(), 0);
        assert!(h.try_feed(PgoutputMessage::StreamStart { xid: 20, first_segment: false }).is_err());
    }

    /// A schema change inside a streamed transaction that rolls back must
    /// leave no trace: no Relation event, and the old shape stays current.
    #[test]
    fn aborted_streamed_relation_change_is_never_reported() {
        let mut h = Harness::new(usize::MAX);
        h.feed(begin(1));
        h.feed(relation(None, 1, b'd', false));
        h.feed(insert(None, 1, "1"));
        h.feed(commit());
        h.feed(PgoutputMessage::StreamStart { xid: 10, first_segment: true });
        let ev = h.feed(relation(Some(10), 1, b'd', true));
        assert!(ev.is_empty(), "a relation inside a stream is held until its commit");
        h.feed(PgoutputMessage::Insert { xid: Some(10), relation_oid: 1, new: vec![t("2"), t("y"), t("z")] });
        h.feed(PgoutputMessage::StreamStop);
        let ev = h.feed(PgoutputMessage::StreamAbort { xid: 10, subxid: 10, abort_lsn: None, abort_time_micros: None });
        assert!(ev.is_empty());
        assert_eq!(h.a.relation(1).unwrap().columns.len(), 2, "the aborted shape never became current");
    }

    #[test]
    fn committed_streamed_relation_change_comes_before_its_transaction() {
        let mut h = Harness::new(usize::MAX);
        h.feed(begin(1));
        h.feed(relation(None, 1, b'd', false));
        h.feed(commit());
        h.feed(PgoutputMessage::StreamStart { xid: 10, first_segment: true });
        h.feed(insert(Some(10), 1, "1"));
        h.feed(relation(Some(10), 1, b'd', true));
        h.feed(PgoutputMessage::Insert { xid: Some(10), relation_oid: 1, new: vec![t("2"), t("y"), t("z")] });
        h.feed(PgoutputMessage::StreamStop);
        let ev = h.feed(PgoutputMessage::StreamCommit {
            xid: 10,
            flags: 0,
            commit_lsn: Lsn(0x1000),
            end_lsn: Lsn(0x1008),
            commit_time_micros: 5,
        });
        assert_eq!(ev.len(), 2, "Relation, then the transaction");
        let AssemblerEvent::Relation { previous, current } = &ev[0] else { panic!("Relation first") };
        assert_eq!((previous.as_ref().unwrap().columns.len(), current.columns.len()), (2, 3));
        let AssemblerEvent::Transaction(txn) = &ev[1] else { panic!("then the transaction") };
        let widths: Vec<_> = txn.changes.iter().map(|c| c.tables()[0].columns.len()).collect();
        assert_eq!(widths, vec![2, 3], "changes before the ALTER keep the older shape");
        assert_eq!(h.a.relation(1).unwrap().columns.len(), 3);
    }

    #[test]
    fn large_transactions_spill_and_read_back_in_order() {
        let mut h = Harness::new(200);
        h.feed(PgoutputMessage::StreamStart { xid: 10, first_segment: true });
        h.feed(relation(Some(10), 1, b'd', false));
        for i in 0..5 {
            h.feed(insert(Some(10), 1, &format!("a{i}")));
        }
        assert_eq!(h.spill_files(), 1);
        assert_eq!(h.a.buffered_bytes(), 0);
        h.feed(relation(Some(10), 1, b'd', true));
        h.feed(PgoutputMessage::Insert { xid: Some(10), relation_oid: 1, new: vec![t("w"), t("y"), t("z")] });
        h.feed(insert(Some(11), 1, "gone1"));
        h.feed(PgoutputMessage::StreamStop);
        h.feed(PgoutputMessage::StreamAbort { xid: 10, subxid: 11, abort_lsn: None, abort_time_micros: None });
        h.feed(PgoutputMessage::StreamStart { xid: 10, first_segment: false });
        h.feed(PgoutputMessage::Insert { xid: Some(10), relation_oid: 1, new: vec![t("v"), t("y"), t("z")] });
        h.feed(PgoutputMessage::StreamStop);
        let ev = h.feed(PgoutputMessage::StreamCommit {
            xid: 10,
            flags: 0,
            commit_lsn: Lsn(0x1000),
            end_lsn: Lsn(0x1008),
            commit_time_micros: 5,
        });
        // The relations announced (and kept) inside the stream come first.
        let mut ev = ev.into_iter().skip_while(|e| matches!(e, AssemblerEvent::Relation { .. }));
        let mut spilled = match ev.next() {
            Some(AssemblerEvent::Spilled(s)) => s,
            e => panic!("{e:?}"),
        };
        assert_eq!((spilled.xid, spilled.change_count, spilled.end_lsn), (10, 7, Lsn(0x1008)));
        let mut all = Vec::new();
        loop {
            let batch = spilled.next_changes(3).unwrap();
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= 3);
            all.extend(batch);
        }
        assert_eq!(inserted_ids(&all), ["a0", "a1", "a2", "a3", "a4", "w", "v"]);
        let widths: Vec<_> = all.iter().map(|c| c.tables()[0].columns.len()).collect();
        assert_eq!(widths, [2, 2, 2, 2, 2, 3, 3]);
        drop(spilled);
        assert_eq!(h.spill_files(), 0);

        // An ordinary transaction spills too, and an aborted stream removes its file.
        h.feed(begin(40));
        for i in 0..5 {
            h.feed(insert(None, 1, &i.to_string()).clone_with_width3());
        }
        assert!(matches!(h.feed(commit()).into_iter().next(), Some(AssemblerEvent::Spilled(_))));
        h.feed(PgoutputMessage::StreamStart { xid: 50, first_segment: true });
        for i in 0..5 {
            h.feed(insert(Some(50), 1, &i.to_string()).clone_with_width3());
        }
        h.feed(PgoutputMessage::StreamStop);
        assert_eq!(h.spill_files(), 1);
        h.feed(PgoutputMessage::StreamAbort { xid: 50, subxid: 50, abort_lsn: None, abort_time_micros: None });
        assert_eq!(h.spill_files(), 0);
    }

    impl PgoutputMessage {
        fn clone_with_width3(self) -> Self {
            match self {
                PgoutputMessage::Insert { xid, relation_oid, mut new } => {
                    new.push(TupleDatum::Null);
                    PgoutputMessage::Insert { xid, relation_oid, new }
                }
                m => m,
            }
        }
    }

    #[test]
    fn errors_name_table_column_and_lsn() {
        fn bad(_: &PgType, s: &str) -> Result<Value, String> {
            Err(format!("{s:?} is no good"))
        }
        let mut h = Harness::new(usize::MAX);
        h.a.decoders.text = bad;
        let e = h.try_feed(insert(None, 1, "1")).unwrap_err();
        assert!(e.to_string().contains("row change outside a transaction"), "{e}");
        h.feed(begin(1));
        h.feed(insert(None, 9, "1"));
        let e = h.try_feed(commit()).unwrap_err();
        assert!(matches!(e, AssemblerError::UnknownRelation { oid: 9, .. }), "{e}");
        h.feed(begin(2));
        h.feed(relation(None, 1, b'd', false));
        h.feed(insert(None, 1, "1"));
        let lsn = h.lsn;
        let e = h.try_feed(commit()).unwrap_err().to_string();
        assert!(
            e.contains(&Lsn(lsn).to_string()) && e.contains("public.t1.id") && e.contains("\"1\" is no good"),
            "{e}"
        );
        h.feed(begin(3));
        h.feed(PgoutputMessage::Insert { xid: None, relation_oid: 1, new: vec![t("1")] });
        let e = h.try_feed(commit()).unwrap_err();
        assert!(matches!(e, AssemblerError::ColumnCount { got: 1, expected: 2, .. }), "{e}");
        // Changes stay raw until commit: a malformed one fails there, with its own LSN.
        h.feed(begin(4));
        assert!(h.a.feed(Lsn(5), &Bytes::from_static(b"I\0")).unwrap().is_empty());
        let e = h.try_feed(commit()).unwrap_err().to_string();
        assert!(e.contains("0/5") && e.contains("Insert"), "{e}");
    }
}
