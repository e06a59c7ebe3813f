//! The pgoutput logical replication message format (protocol versions 1 and
//! 2): a pure, sans-I/O decoder from one XLogData payload to a
//! [`PgoutputMessage`], and its inverse [`encode`] (for tests, benches and
//! fixtures).
//!
//! Tuple values are zero-copy slices of the input ([`Bytes::slice`]); turning
//! them into [`Value`](crate::model::Value)s needs the relation's column types
//! and is the [assembler](crate::source::postgres::assembler)'s job. Malformed input of any kind
//! is a [`DecodeError`] naming what was being read and where, never a panic.

use bytes::{BufMut, Bytes, BytesMut};

use crate::model::Lsn;

use crate::model::time::PG_EPOCH_OFFSET_MICROS;

/// One column of a TupleData: the value as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleDatum {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value that was not sent; the old one stands.
    UnchangedToast,
    /// `t`: the type's text output (a slice of the input message).
    Text(Bytes),
    /// `b`: the type's binary send format (only with `binary 'true'`).
    Binary(Bytes),
}

/// One column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Bit 1: the column is part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// The body of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationBody {
    /// The (sub)transaction id, present only inside a stream block.
    pub xid: Option<u32>,
    pub oid: u32,
    /// The schema; empty means `pg_catalog`.
    pub namespace: String,
    pub name: String,
    /// `d`, `n`, `f` or `i` (see [`ReplicaIdentity::from_byte`](crate::model::ReplicaIdentity::from_byte)).
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// One decoded pgoutput message. `xid` fields marked "stream" are `Some`
/// exactly when the message was decoded with `in_stream = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgoutputMessage {
    Begin {
        /// LSN of the commit record.
        final_lsn: Lsn,
        /// Microseconds since 1970-01-01 UTC.
        commit_time_micros: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        /// End of the commit record: the position to confirm once applied.
        end_lsn: Lsn,
        commit_time_micros: i64,
    },
    Origin {
        commit_lsn: Lsn,
        name: String,
    },
    Relation(RelationBody),
    Type {
        /// Stream only.
        xid: Option<u32>,
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        /// Stream only.
        xid: Option<u32>,
        relation_oid: u32,
        new: Vec<TupleDatum>,
    },
    Update {
        /// Stream only.
        xid: Option<u32>,
        relation_oid: u32,
        /// `K`: the old replica identity key (full width, NULL elsewhere).
        key: Option<Vec<TupleDatum>>,
        /// `O`: the whole old row (REPLICA IDENTITY FULL).
        old: Option<Vec<TupleDatum>>,
        new: Vec<TupleDatum>,
    },
    Delete {
        /// Stream only.
        xid: Option<u32>,
        relation_oid: u32,
        key: Option<Vec<TupleDatum>>,
        old: Option<Vec<TupleDatum>>,
    },
    Truncate {
        /// Stream only.
        xid: Option<u32>,
        /// Bit 1: CASCADE, bit 2: RESTART IDENTITY.
        options: u8,
        relation_oids: Vec<u32>,
    },
    Message {
        /// Stream only.
        xid: Option<u32>,
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Bytes,
    },
    StreamStart {
        xid: u32,
        first_segment: bool,
    },
    StreamStop,
    StreamCommit {
        xid: u32,
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time_micros: i64,
    },
    StreamAbort {
        xid: u32,
        /// The aborted sub-transaction; equal to `xid` when the whole
        /// transaction aborted.
        subxid: u32,
        /// Protocol v4 (parallel streaming) only: abort LSN and time.
        abort_lsn: Option<Lsn>,
        abort_time_micros: Option<i64>,
    },
}

impl PgoutputMessage {
    /// A short name of the message kind, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PgoutputMessage::Begin { .. } => "Begin",
            PgoutputMessage::Commit { .. } => "Commit",
            PgoutputMessage::Origin { .. } => "Origin",
            PgoutputMessage::Relation(_) => "Relation",
            PgoutputMessage::Type { .. } => "Type",
            PgoutputMessage::Insert { .. } => "Insert",
            PgoutputMessage::Update { .. } => "Update",
            PgoutputMessage::Delete { .. } => "Delete",
            PgoutputMessage::Truncate { .. } => "Truncate",
            PgoutputMessage::Message { .. } => "Message",
            PgoutputMessage::StreamStart { .. } => "Stream Start",
            PgoutputMessage::StreamStop => "Stream Stop",
            PgoutputMessage::StreamCommit { .. } => "Stream Commit",
            PgoutputMessage::StreamAbort { .. } => "Stream Abort",
        }
    }
}

/// A pgoutput message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty pgoutput message")]
    Empty,
    #[error("unknown pgoutput message type {tag:?} (byte 0x{byte:02x}); xdb speaks protocol versions 1 and 2", tag = *byte as char)]
    UnknownMessage { byte: u8 },
    #[error("pgoutput {message} message truncated: needed {needed} bytes for {what} at byte {offset}, the message has {len}")]
    Truncated { message: &'static str, what: &'static str, offset: usize, needed: usize, len: usize },
    #[error("pgoutput {message} message: invalid {what} at byte {offset}: {detail}")]
    Invalid { message: &'static str, what: &'static str, offset: usize, detail: String },
    #[error("pgoutput {message} message: {extra} unexpected bytes after the end at byte {offset}")]
    TrailingBytes { message: &'static str, offset: usize, extra: usize },
}

/// A bounds-checked big-endian cursor over one message.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn take_range(&mut self, n: usize, what: &'static str) -> Result<std::ops::Range<usize>, DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(DecodeError::Truncated {
            message: self.message,
            what,
            offset: self.pos,
            needed: n,
            len: self.buf.len(),
        })?;
        let r = self.pos..end;
        self.pos = end;
        Ok(r)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let r = self.take_range(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[r]);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    fn lsn(&mut self, what: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(self.u64(what)?))
    }

    /// A PostgreSQL timestamp (µs since 2000-01-01) as µs since 1970-01-01.
    fn timestamp(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let offset = self.pos;
        let pg = i64::from_be_bytes(self.array(what)?);
        pg.checked_add(PG_EPOCH_OFFSET_MICROS).ok_or_else(|| self.invalid(what, offset, format!("{pg} out of range")))
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let r = self.take_range(n, what)?;
        Ok(self.buf.slice(r))
    }

    /// A NUL-terminated UTF-8 string.
    fn cstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let start = self.pos;
        let rest = self.buf.get(start..).unwrap_or_default();
        let nul = rest.iter().position(|&b| b == 0).ok_or(DecodeError::Truncated {
            message: self.message,
            what,
            offset: start,
            needed: rest.len() + 1,
            len: self.buf.len(),
        })?;
        let s = std::str::from_utf8(&rest[..nul])
            .map_err(|e| self.invalid(what, start, format!("not UTF-8 ({e})")))?
            .to_string();
        self.pos = start + nul + 1;
        Ok(s)
    }

    fn invalid(&self, what: &'static str, offset: usize, detail: String) -> DecodeError {
        DecodeError::Invalid { message: self.message, what, offset, detail }
    }

    fn stream_xid(&mut self, in_stream: bool) -> Result<Option<u32>, DecodeError> {
        if in_stream {
            Ok(Some(self.u32("transaction id")?))
        } else {
            Ok(None)
        }
    }

    /// A non-negative Int16 count.
    fn count(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let n = self.i16(what)?;
        usize::try_from(n).map_err(|_| self.invalid(what, offset, format!("negative count {n}")))
    }

    fn tuple(&mut self) -> Result<Vec<TupleDatum>, DecodeError> {
        let n = self.count("tuple column count")?;
        let mut cols = Vec::with_capacity(n);
        for _ in 0..n {
            let offset = self.pos;
            let datum = match self.u8("tuple column kind")? {
                b'n' => TupleDatum::Null,
                b'u' => TupleDatum::UnchangedToast,
                kind @ (b't' | b'b') => {
                    let len = self.u32("tuple value length")? as usize;
                    let v = self.bytes(len, "tuple value")?;
                    if kind == b't' {
                        TupleDatum::Text(v)
                    } else {
                        TupleDatum::Binary(v)
                    }
                }
                other => {
                    return Err(self.invalid(
                        "tuple column kind",
                        offset,
                        format!("{:?} (0x{other:02x}), expected n, u, t or b", other as char),
                    ))
                }
            };
            cols.push(datum);
        }
        Ok(cols)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                message: self.message,
                offset: self.pos,
                extra: self.buf.len() - self.pos,
            })
        }
    }
}

fn message_name(tag: u8) -> Option<&'static str> {
    Some(match tag {
        b'B' => "Begin",
        b'C' => "Commit",
        b'O' => "Origin",
        b'R' => "Relation",
        b'Y' => "Type",
        b'I' => "Insert",
        b'U' => "Update",
        b'D' => "Delete",
        b'T' => "Truncate",
        b'M' => "Message",
        b'S' => "Stream Start",
        b'E' => "Stream Stop",
        b'c' => "Stream Commit",
        b'A' => "Stream Abort",
        _ => return None,
    })
}

/// Decodes one pgoutput message (the payload of one XLogData).
///
/// `in_stream` says whether the message sits between Stream Start and Stream
/// Stop: there Relation, Type, Insert, Update, Delete, Truncate and Message
/// carry a leading transaction id.
pub fn decode(buf: &Bytes, in_stream: bool) -> Result<PgoutputMessage, DecodeError> {
    let tag = *buf.first().ok_or(DecodeError::Empty)?;
    let message = message_name(tag).ok_or(DecodeError::UnknownMessage { byte: tag })?;
    let mut r = Reader { buf, pos: 1, message };
    let msg = match tag {
        b'B' => PgoutputMessage::Begin {
            final_lsn: r.lsn("final LSN")?,
            commit_time_micros: r.timestamp("commit time")?,
            xid: r.u32("transaction id")?,
        },
        b'C' => PgoutputMessage::Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_time_micros: r.timestamp("commit time")?,
        },
        b'O' => PgoutputMessage::Origin { commit_lsn: r.lsn("origin commit LSN")?, name: r.cstr("origin name")? },
        b'R' => {
            let xid = r.stream_xid(in_stream)?;
            let oid = r.u32("relation OID")?;
            let namespace = r.cstr("namespace")?;
            let name = r.cstr("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            let n = r.count("column count")?;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                columns.push(RelationColumn {
                    flags: r.u8("column flags")?,
                    name: r.cstr("column name")?,
                    type_oid: r.u32("column type OID")?,
                    typmod: r.i32("column type modifier")?,
                });
            }
            PgoutputMessage::Relation(RelationBody { xid, oid, namespace, name, replica_identity, columns })
        }
        b'Y' => PgoutputMessage::Type {
            xid: r.stream_xid(in_stream)?,
            oid: r.u32("type OID")?,
            namespace: r.cstr("type namespace")?,
            name: r.cstr("type name")?,
        },
        b'I' => {
            let xid = r.stream_xid(in_stream)?;
            let relation_oid = r.u32("relation OID")?;
            let offset = r.pos;
            match r.u8("new tuple marker")? {
                b'N' => {}
                other => return Err(r.invalid("new tuple marker", offset, format!("0x{other:02x}, expected 'N'"))),
            }
            PgoutputMessage::Insert { xid, relation_oid, new: r.tuple()? }
        }
        b'U' => {
            let xid = r.stream_xid(in_stream)?;
            let relation_oid = r.u32("relation OID")?;
            let (mut key, mut old) = (None, None);
            let mut offset = r.pos;
            let mut marker = r.u8("tuple marker")?;
            if marker == b'K' || marker == b'O' {
                let t = Some(r.tuple()?);
                if marker == b'K' {
                    key = t;
                } else {
                    old = t;
                }
                offset = r.pos;
                marker = r.u8("new tuple marker")?;
            }
            if marker != b'N' {
                return Err(r.invalid("tuple marker", offset, format!("0x{marker:02x}, expected 'K', 'O' or 'N'")));
            }
            PgoutputMessage::Update { xid, relation_oid, key, old, new: r.tuple()? }
        }
        b'D' => {
            let xid = r.stream_xid(in_stream)?;
            let relation_oid = r.u32("relation OID")?;
            let offset = r.pos;
            let (key, old) = match r.u8("old tuple marker")? {
                b'K' => (Some(r.tuple()?), None),
                b'O' => (None, Some(r.tuple()?)),
                other => {
                    return Err(r.invalid("old tuple marker", offset, format!("0x{other:02x}, expected 'K' or 'O'")))
                }
            };
            PgoutputMessage::Delete { xid, relation_oid, key, old }
        }
        b'T' => {
            let xid = r.stream_xid(in_stream)?;
            let n = r.u32("relation count")? as usize;
            let options = r.u8("options")?;
            // Bound the allocation by what the message can hold.
            let mut relation_oids = Vec::with_capacity(n.min(buf.len() / 4));
            for _ in 0..n {
                relation_oids.push(r.u32("relation OID")?);
            }
            PgoutputMessage::Truncate { xid, options, relation_oids }
        }
        b'M' => {
            let xid = r.stream_xid(in_stream)?;
            let flags = r.u8("flags")?;
            let lsn = r.lsn("message LSN")?;
            let prefix = r.cstr("prefix")?;
            let len = r.u32("content length")? as usize;
            let content = r.bytes(len, "content")?;
            PgoutputMessage::Message { xid, transactional: flags & 1 != 0, lsn, prefix, content }
        }
        b'S' => {
            let xid = r.u32("transaction id")?;
            let offset = r.pos;
            let first_segment = match r.u8("first segment flag")? {
                0 => false,
                1 => true,
                other => return Err(r.invalid("first segment flag", offset, format!("{other}, expected 0 or 1"))),
            };
            PgoutputMessage::StreamStart { xid, first_segment }
        }
        b'E' => PgoutputMessage::StreamStop,
        b'c' => PgoutputMessage::StreamCommit {
            xid: r.u32("transaction id")?,
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_time_micros: r.timestamp("commit time")?,
        },
        b'A' => {
            let xid = r.u32("transaction id")?;
            let subxid = r.u32("sub-transaction id")?;
            let (abort_lsn, abort_time_micros) = if r.pos < buf.len() {
                (Some(r.lsn("abort LSN")?), Some(r.timestamp("abort time")?))
            } else {
                (None, None)
            };
            PgoutputMessage::StreamAbort { xid, subxid, abort_lsn, abort_time_micros }
        }
        _ => return Err(DecodeError::UnknownMessage { byte: tag }),
    };
    r.finish()?;
    Ok(msg)
}

/// The message tag and, inside a stream block, the transaction id of a
/// message without decoding the rest (the assembler buffers changes raw).
pub fn peek(buf: &Bytes, in_stream: bool) -> Result<(u8, Option<u32>), DecodeError> {
    let tag = *buf.first().ok_or(DecodeError::Empty)?;
    let message = message_name(tag).ok_or(DecodeError::UnknownMessage { byte: tag })?;
    let has_xid = in_stream && matches!(tag, b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M');
    let mut r = Reader { buf, pos: 1, message };
    let xid = r.stream_xid(has_xid)?;
    Ok((tag, xid))
}

/// Encodes a message as the server would send it: the inverse of [`decode`]
/// (for tests, benches and fixtures). Inside a stream block (`in_stream`) a
/// missing `xid` is written as 0; outside, `xid` fields are not written.
pub fn encode(msg: &PgoutputMessage, in_stream: bool) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    let xid = |b: &mut BytesMut, xid: &Option<u32>| {
        if in_stream {
            b.put_u32(xid.unwrap_or(0));
        }
    };
    let cstr = |b: &mut BytesMut, s: &str| {
        b.put_slice(s.as_bytes());
        b.put_u8(0);
    };
    let ts = |b: &mut BytesMut, t: i64| b.put_i64(t.wrapping_sub(PG_EPOCH_OFFSET_MICROS));
    let tuple = |b: &mut BytesMut, t: &[TupleDatum]| {
        b.put_i16(t.len() as i16);
        for d in t {
            match d {
                TupleDatum::Null => b.put_u8(b'n'),
                TupleDatum::UnchangedToast => b.put_u8(b'u'),
                TupleDatum::Text(v) | TupleDatum::Binary(v) => {
                    b.put_u8(if matches!(d, TupleDatum::Text(_)) { b't' } else { b'b' });
                    b.put_u32(v.len() as u32);
                    b.put_slice(v);
                }
            }
        }
    };
    match msg {
        PgoutputMessage::Begin { final_lsn, commit_time_micros, xid } => {
            b.put_u8(b'B');
            b.put_u64(final_lsn.0);
            ts(&mut b, *commit_time_micros);
            b.put_u32(*xid);
        }
        PgoutputMessage::Commit { flags, commit_lsn, end_lsn, commit_time_micros } => {
            b.put_u8(b'C');
            b.put_u8(*flags);
            b.put_u64(commit_lsn.0);
            b.put_u64(end_lsn.0);
            ts(&mut b, *commit_time_micros);
        }
        PgoutputMessage::Origin { commit_lsn, name } => {
            b.put_u8(b'O');
            b.put_u64(commit_lsn.0);
            cstr(&mut b, name);
        }
        PgoutputMessage::Relation(rel) => {
            b.put_u8(b'R');
            xid(&mut b, &rel.xid);
            b.put_u32(rel.oid);
            cstr(&mut b, &rel.namespace);
            cstr(&mut b, &rel.name);
            b.put_u8(rel.replica_identity);
            b.put_i16(rel.columns.len() as i16);
            for c in &rel.columns {
                b.put_u8(c.flags);
                cstr(&mut b, &c.name);
                b.put_u32(c.type_oid);
                b.put_i32(c.typmod);
            }
        }
        PgoutputMessage::Type { xid: x, oid, namespace, name } => {
            b.put_u8(b'Y');
            xid(&mut b, x);
            b.put_u32(*oid);
            cstr(&mut b, namespace);
            cstr(&mut b, name);
        }
        PgoutputMessage::Insert { xid: x, relation_oid, new } => {
            b.put_u8(b'I');
            xid(&mut b, x);
            b.put_u32(*relation_oid);
            b.put_u8(b'N');
            tuple(&mut b, new);
        }
        PgoutputMessage::Update { xid: x, relation_oid, key, old, new } => {
            b.put_u8(b'U');
            xid(&mut b, x);
            b.put_u32(*relation_oid);
            if let Some(k) = key {
                b.put_u8(b'K');
                tuple(&mut b, k);
            } else if let Some(o) = old {
                b.put_u8(b'O');
                tuple(&mut b, o);
            }
            b.put_u8(b'N');
            tuple(&mut b, new);
        }
        PgoutputMessage::Delete { xid: x, relation_oid, key, old } => {
            b.put_u8(b'D');
            xid(&mut b, x);
            b.put_u32(*relation_oid);
            if let Some(o) = old {
                b.put_u8(b'O');
                tuple(&mut b, o);
            } else {
                b.put_u8(b'K');
                tuple(&mut b, key.as_deref().unwrap_or_default());
            }
        }
        PgoutputMessage::Truncate { xid: x, options, relation_oids } => {
            b.put_u8(b'T');
            xid(&mut b, x);
            b.put_u32(relation_oids.len() as u32);
            b.put_u8(*options);
            for oid in relation_oids {
                b.put_u32(*oid);
            }
        }
        PgoutputMessage::Message { xid: x, transactional, lsn, prefix, content } => {
            b.put_u8(b'M');
            xid(&mut b, x);
            b.put_u8(u8::from(*transactional));
            b.put_u64(lsn.0);
            cstr(&mut b, prefix);
            b.put_u32(content.len() as u32);
            b.put_slice(content);
        }
        PgoutputMessage::StreamStart { xid, first_segment } => {
            b.put_u8(b'S');
            b.put_u32(*xid);
            b.put_u8(u8::from(*first_segment));
        }
        PgoutputMessage::StreamStop => b.put_u8(b'E'),
        PgoutputMessage::StreamCommit { xid, flags, commit_lsn, end_lsn, commit_time_micros } => {
            b.put_u8(b'c');
            b.put_u32(*xid);
            b.put_u8(*flags);
            b.put_u64(commit_lsn.0);
            b.put_u64(end_lsn.0);
            ts(&mut b, *commit_time_micros);
        }
        PgoutputMessage::StreamAbort { xid, subxid, abort_lsn, abort_time_micros } => {
            b.put_u8(b'A');
            b.put_u32(*xid);
            b.put_u32(*subxid);
            if let (Some(l), Some(t)) = (abort_lsn, abort_time_micros) {
                b.put_u64(l.0);
                ts(&mut b, *t);
            }
        }
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> TupleDatum {
        TupleDatum::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn rt(msg: PgoutputMessage, in_stream: bool) {
        let bytes = encode(&msg, in_stream);
        assert_eq!(decode(&bytes, in_stream).unwrap(), msg, "{bytes:?}");
        // Every proper prefix is an error, never a panic or a success.
        for cut in 0..bytes.len() {
            assert!(decode(&bytes.slice(..cut), in_stream).is_err(), "prefix {cut} of {msg:?}");
        }
    }

    #[test]
    fn begin_and_commit_convert_the_epoch() {
        let mut raw = vec![b'B'];
        raw.extend_from_slice(&0x16_B374_D848u64.to_be_bytes());
        raw.extend_from_slice(&0i64.to_be_bytes());
        raw.extend_from_slice(&771u32.to_be_bytes());
        let m = decode(&Bytes::from(raw), false).unwrap();
        assert_eq!(
            m,
            PgoutputMessage::Begin {
                final_lsn: Lsn(0x16_B374_D848),
                commit_time_micros: PG_EPOCH_OFFSET_MICROS,
                xid: 771
            }
        );
        rt(
            PgoutputMessage::Commit {
                flags: 0,
                commit_lsn: Lsn(10),
                end_lsn: Lsn(20),
                commit_time_micros: 1_700_000_000,
            },
            false,
        );
        rt(PgoutputMessage::Origin { commit_lsn: Lsn(5), name: "pg_1".into() }, false);
    }

    #[test]
    fn relation_and_type() {
        for in_stream in [false, true] {
            let xid = in_stream.then_some(9);
            rt(
                PgoutputMessage::Relation(RelationBody {
                    xid,
                    oid: 16384,
                    namespace: "public".into(),
                    name: "orders".into(),
                    replica_identity: b'd',
                    columns: vec![
                        RelationColumn { flags: 1, name: "id".into(), type_oid: 20, typmod: -1 },
                        RelationColumn { flags: 0, name: "amount".into(), type_oid: 1700, typmod: 786438 },
                    ],
                }),
                in_stream,
            );
            rt(PgoutputMessage::Type { xid, oid: 99999, namespace: "public".into(), name: "mood".into() }, in_stream);
        }
    }

    #[test]
    fn row_changes() {
        for in_stream in [false, true] {
            let xid = in_stream.then_some(9);
            let new = vec![
                t("1"),
                TupleDatum::Null,
                TupleDatum::UnchangedToast,
                TupleDatum::Binary(Bytes::from_static(b"\0\x01")),
            ];
            rt(PgoutputMessage::Insert { xid, relation_oid: 1, new: new.clone() }, in_stream);
            rt(PgoutputMessage::Update { xid, relation_oid: 1, key: None, old: None, new: new.clone() }, in_stream);
            rt(
                PgoutputMessage::Update { xid, relation_oid: 1, key: Some(vec![t("0")]), old: None, new: new.clone() },
                in_stream,
            );
            rt(
                PgoutputMessage::Update { xid, relation_oid: 1, key: None, old: Some(new.clone()), new: new.clone() },
                in_stream,
            );
            rt(PgoutputMessage::Delete { xid, relation_oid: 1, key: Some(vec![t("1")]), old: None }, in_stream);
            rt(PgoutputMessage::Delete { xid, relation_oid: 1, key: None, old: Some(new.clone()) }, in_stream);
            rt(PgoutputMessage::Truncate { xid, options: 3, relation_oids: vec![1, 2, 3] }, in_stream);
            rt(
                PgoutputMessage::Message {
                    xid,
                    transactional: true,
                    lsn: Lsn(77),
                    prefix: "xdb".into(),
                    content: Bytes::from_static(b"hello\0world"),
                },
                in_stream,
            );
        }
    }

    #[test]
    fn stream_control() {
        rt(PgoutputMessage::StreamStart { xid: 5, first_segment: true }, false);
        rt(PgoutputMessage::StreamStop, false);
        rt(
            PgoutputMessage::StreamCommit {
                xid: 5,
                flags: 0,
                commit_lsn: Lsn(1),
                end_lsn: Lsn(2),
                commit_time_micros: 3,
            },
            false,
        );
        rt(PgoutputMessage::StreamAbort { xid: 5, subxid: 6, abort_lsn: None, abort_time_micros: None }, false);
        let v4 =
            PgoutputMessage::StreamAbort { xid: 5, subxid: 5, abort_lsn: Some(Lsn(8)), abort_time_micros: Some(9) };
        assert_eq!(decode(&encode(&v4, false), false).unwrap(), v4);
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(decode(&Bytes::new(), false), Err(DecodeError::Empty));
        assert_eq!(decode(&Bytes::from_static(b"Z"), false), Err(DecodeError::UnknownMessage { byte: b'Z' }));
        let e = decode(&Bytes::from_static(b"I\0\0\0\x01N\0\x01t\0\0\0\x09ab"), false).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Truncated { message: "Insert", what: "tuple value", offset: 13, needed: 9, len: 15 }
        );
        assert!(e.to_string().contains("tuple value at byte 13"), "{e}");
        let e = decode(&Bytes::from_static(b"I\0\0\0\x01N\0\x01x"), false).unwrap_err();
        assert!(matches!(e, DecodeError::Invalid { what: "tuple column kind", offset: 8, .. }), "{e}");
        let e = decode(&Bytes::from_static(b"E!"), false).unwrap_err();
        assert_eq!(e, DecodeError::TrailingBytes { message: "Stream Stop", offset: 1, extra: 1 });
        let e = decode(&Bytes::from_static(b"I\0\0\0\x01N\xff\xff"), false).unwrap_err();
        assert!(matches!(e, DecodeError::Invalid { what: "tuple column count", .. }), "{e}");
        // An in-stream message read as out-of-stream misparses into an error here.
        let msg = PgoutputMessage::Type { xid: Some(1), oid: 2, namespace: "a".into(), name: "b".into() };
        assert!(decode(&encode(&msg, true), false).is_err());
    }

    #[test]
    fn peek_reads_tag_and_stream_xid() {
        let m = encode(&PgoutputMessage::Insert { xid: Some(42), relation_oid: 1, new: vec![] }, true);
        assert_eq!(peek(&m, true).unwrap(), (b'I', Some(42)));
        assert_eq!(peek(&m, false).unwrap(), (b'I', None));
        assert!(peek(&Bytes::from_static(b"I\0"), true).is_err());
    }

    fn datum() -> impl Strategy<Value = TupleDatum> {
        prop_oneof![
            Just(TupleDatum::Null),
            Just(TupleDatum::UnchangedToast),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|v| TupleDatum::Text(Bytes::from(v))),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|v| TupleDatum::Binary(Bytes::from(v))),
        ]
    }

    fn tuple() -> impl Strategy<Value = Vec<TupleDatum>> {
        proptest::collection::vec(datum(), 0..8)
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_ é\"]{0,12}"
    }

    fn ts() -> impl Strategy<Value = i64> {
        -1_000_000_000_000_000i64..1_000_000_000_000_000
    }

    fn message(in_stream: bool) -> impl Strategy<Value = PgoutputMessage> {
        let xid = move |x: u32| in_stream.then_some(x);
        let col = (any::<u8>(), name(), any::<u32>(), any::<i32>())
            .prop_map(|(flags, name, type_oid, typmod)| RelationColumn { flags, name, type_oid, typmod });
        prop_oneof![
            (any::<u64>(), ts(), any::<u32>()).prop_map(|(l, t, x)| PgoutputMessage::Begin {
                final_lsn: Lsn(l),
                commit_time_micros: t,
                xid: x
            }),
            (any::<u8>(), any::<u64>(), any::<u64>(), ts()).prop_map(|(f, a, b, t)| PgoutputMessage::Commit {
                flags: f,
                commit_lsn: Lsn(a),
                end_lsn: Lsn(b),
                commit_time_micros: t
            }),
            (any::<u64>(), name()).prop_map(|(l, n)| PgoutputMessage::Origin { commit_lsn: Lsn(l), name: n }),
            (any::<u32>(), any::<u32>(), name(), name(), any::<u8>(), proptest::collection::vec(col, 0..6)).prop_map(
                move |(x, oid, namespace, name, ri, columns)| PgoutputMessage::Relation(RelationBody {
                    xid: xid(x),
                    oid,
                    namespace,
                    name,
                    replica_identity: ri,
                    columns
                })
            ),
            (any::<u32>(), any::<u32>(), name(), name()).prop_map(move |(x, oid, namespace, name)| {
                PgoutputMessage::Type { xid: xid(x), oid, namespace, name }
            }),
            (any::<u32>(), any::<u32>(), tuple()).prop_map(move |(x, r, new)| PgoutputMessage::Insert {
                xid: xid(x),
                relation_oid: r,
                new
            }),
            (any::<u32>(), any::<u32>(), 0u8..3, tuple(), tuple()).prop_map(move |(x, r, k, o, new)| {
                PgoutputMessage::Update {
                    xid: xid(x),
                    relation_oid: r,
                    key: (k == 1).then(|| o.clone()),
                    old: (k == 2).then_some(o),
                    new,
                }
            }),
            (any::<u32>(), any::<u32>(), any::<bool>(), tuple()).prop_map(move |(x, r, full, o)| {
                PgoutputMessage::Delete {
                    xid: xid(x),
                    relation_oid: r,
                    key: (!full).then(|| o.clone()),
                    old: full.then_some(o),
                }
            }),
            (any::<u32>(), any::<u8>(), proptest::collection::vec(any::<u32>(), 0..5)).prop_map(
                move |(x, options, relation_oids)| PgoutputMessage::Truncate { xid: xid(x), options, relation_oids }
            ),
            (any::<u32>(), any::<bool>(), any::<u64>(), name(), proptest::collection::vec(any::<u8>(), 0..30))
                .prop_map(move |(x, tr, l, prefix, c)| PgoutputMessage::Message {
                    xid: xid(x),
                    transactional: tr,
                    lsn: Lsn(l),
                    prefix,
                    content: Bytes::from(c)
                }),
            (any::<u32>(), any::<bool>())
                .prop_map(|(xid, first_segment)| PgoutputMessage::StreamStart { xid, first_segment }),
            Just(PgoutputMessage::StreamStop),
            (any::<u32>(), any::<u8>(), any::<u64>(), any::<u64>(), ts()).prop_map(|(xid, flags, a, b, t)| {
                PgoutputMessage::StreamCommit { xid, flags, commit_lsn: Lsn(a), end_lsn: Lsn(b), commit_time_micros: t }
            }),
            (any::<u32>(), any::<u32>()).prop_map(|(xid, subxid)| PgoutputMessage::StreamAbort {
                xid,
                subxid,
                abort_lsn: None,
                abort_time_micros: None
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(
            tag in prop::sample::select(b"BCORYIUDTMSEcAx".to_vec()),
            rest in proptest::collection::vec(any::<u8>(), 0..64),
            in_stream in any::<bool>(),
        ) {
            let mut data = vec![tag];
            data.extend_from_slice(&rest);
            let _ = decode(&Bytes::from(rest), in_stream);
            let _ = decode(&Bytes::from(data.clone()), in_stream);
            let _ = peek(&Bytes::from(data), in_stream);
        }

        #[test]
        fn mutated_messages_never_panic(msg in message(true), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut raw = encode(&msg, true).to_vec();
            let i = at.index(raw.len());
            raw[i] = byte;
            let _ = decode(&Bytes::from(raw.clone()), true);
            let _ = decode(&Bytes::from(raw), false);
        }

        #[test]
        fn round_trip_out_of_stream(msg in message(false)) {
            prop_assert_eq!(decode(&encode(&msg, false), false).unwrap(), msg);
        }

        #[test]
        fn round_trip_in_stream(msg in message(true)) {
            // Begin/Commit/Origin/Stream* carry no stream xid; the rest do.
            prop_assert_eq!(decode(&encode(&msg, true), true).unwrap(), msg);
        }
    }
}
