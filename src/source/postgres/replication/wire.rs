//! Sans-I/O pieces of the protocol: splitting backend frames off a read
//! buffer, parsing the few backend messages xdb needs by hand (so that no
//! untrusted byte is indexed blindly), the CopyData payloads of the
//! replication protocol, and the standby status update.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::ReplicationError;
use crate::model::Lsn;

/// Largest backend message accepted; protects against allocating on garbage.
/// PostgreSQL caps a single datum at 1 GB, and a pgoutput message can hold a
/// whole row of such values in text form.
pub const MAX_FRAME: usize = 1 << 30 | 1 << 29;

use crate::model::time::PG_EPOCH_OFFSET_MICROS;

/// One backend message: its tag byte and body (without the length word).
#[derive(Debug, Clone)]
pub struct Frame {
    pub tag: u8,
    pub body: Bytes,
}

/// Splits the next complete frame off `buf`; `Ok(None)` when more bytes are needed.
pub fn split_frame(buf: &mut BytesMut) -> Result<Option<Frame>, ReplicationError> {
    let Some(total) = frame_len(buf)? else {
        return Ok(None);
    };
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    let tag = frame[0];
    frame.advance(5);
    Ok(Some(Frame { tag, body: frame }))
}

/// How many bytes (total) the frame at the start of `buf` has, once its header is there.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ReplicationError> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if !(4..=MAX_FRAME).contains(&len) {
        return Err(ReplicationError::Protocol(format!(
            "invalid length {len} of a message with tag {:?}",
            header[0] as char
        )));
    }
    Ok(Some(len + 1))
}

/// Bytes still missing before the frame at the start of `buf` is complete (at least the header).
pub fn bytes_missing(buf: &[u8]) -> usize {
    match frame_len(buf) {
        Ok(Some(total)) => total.saturating_sub(buf.len()),
        _ => 5usize.saturating_sub(buf.len()),
    }
}

/// A cursor over untrusted bytes that fails instead of panicking.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn short(&self) -> ReplicationError {
        ReplicationError::Protocol(format!("truncated {} message", self.what))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ReplicationError> {
        if self.buf.len() < n {
            return Err(self.short());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, ReplicationError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn i16(&mut self) -> Result<i16, ReplicationError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, ReplicationError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, ReplicationError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A NUL-terminated string.
    pub fn cstr(&mut self) -> Result<&'a [u8], ReplicationError> {
        let end = self.buf.iter().position(|&b| b == 0).ok_or_else(|| self.short())?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An ErrorResponse or NoticeResponse body as a [`ReplicationError::Server`].
pub fn parse_error(body: &[u8]) -> ReplicationError {
    let mut r = Reader::new(body, "ErrorResponse");
    let (mut severity, mut localized, mut code, mut message, mut detail, mut hint) =
        (None, None, None, None, None, None);
    while let Ok(field) = r.u8() {
        if field == 0 {
            break;
        }
        let Ok(value) = r.cstr() else { break };
        let value = text(value);
        match field {
            b'V' => severity = Some(value),
            b'S' => localized = Some(value),
            b'C' => code = Some(value),
            b'M' => message = Some(value),
            b'D' => detail = Some(value),
            b'H' => hint = Some(value),
            _ => {}
        }
    }
    ReplicationError::Server {
        severity: severity.or(localized).unwrap_or_else(|| "ERROR".into()),
        code: code.unwrap_or_else(|| "XX000".into()),
        message: message.unwrap_or_else(|| "(no message)".into()),
        detail,
        hint,
    }
}

/// A DataRow body as text columns.
pub fn parse_data_row(body: &[u8]) -> Result<Vec<Option<String>>, ReplicationError> {
    let mut r = Reader::new(body, "DataRow");
    let n = r.i16()?;
    let mut row = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = r.i32()?;
        if len < 0 {
            row.push(None);
        } else {
            row.push(Some(text(r.bytes(len as usize)?)));
        }
    }
    Ok(row)
}

/// What an Authentication (`R`) message asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthRequest {
    Ok,
    Cleartext,
    Md5([u8; 4]),
    /// SASL with the offered mechanisms.
    Sasl(Vec<String>),
    SaslContinue(Bytes),
    SaslFinal(Bytes),
    /// A method xdb does not implement (Kerberos, GSS, SSPI …), by code.
    Other(i32),
}

pub fn parse_auth(body: &Bytes) -> Result<AuthRequest, ReplicationError> {
    let mut r = Reader::new(body, "Authentication");
    Ok(match r.i32()? {
        0 => AuthRequest::Ok,
        3 => AuthRequest::Cleartext,
        5 => {
            let s = r.bytes(4)?;
            AuthRequest::Md5([s[0], s[1], s[2], s[3]])
        }
        10 => {
            let mut mechs = Vec::new();
            while let Ok(m) = r.cstr() {
                if m.is_empty() {
                    break;
                }
                mechs.push(text(m));
            }
            AuthRequest::Sasl(mechs)
        }
        11 => AuthRequest::SaslContinue(body.slice(4..)),
        12 => AuthRequest::SaslFinal(body.slice(4..)),
        other => AuthRequest::Other(other),
    })
}

/// A CopyData payload received while streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyPayload {
    XLogData { wal_start: Lsn, wal_end: Lsn, server_time_micros: i64, data: Bytes },
    Keepalive { wal_end: Lsn, server_time_micros: i64, reply_requested: bool },
}

/// Parses a CopyData body; the XLogData payload is a zero-copy slice of `body`.
pub fn parse_copy_data(body: Bytes) -> Result<CopyPayload, ReplicationError> {
    let mut r = Reader::new(&body, "CopyData");
    match r.u8()? {
        b'w' => {
            r.what = "XLogData";
            let wal_start = Lsn(r.u64()?);
            let wal_end = Lsn(r.u64()?);
            let server_time_micros = r.u64()? as i64;
            Ok(CopyPayload::XLogData { wal_start, wal_end, server_time_micros, data: body.slice(25..) })
        }
        b'k' => {
            r.what = "primary keepalive";
            let wal_end = Lsn(r.u64()?);
            let server_time_micros = r.u64()? as i64;
            let reply_requested = r.u8()? != 0;
            Ok(CopyPayload::Keepalive { wal_end, server_time_micros, reply_requested })
        }
        other => Err(ReplicationError::Protocol(format!(
            "unexpected CopyData message {:?} from the walsender (expected 'w' or 'k')",
            other as char
        ))),
    }
}

/// Microseconds since 2000-01-01 UTC of the current time.
pub fn pg_now_micros() -> i64 {
    let unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    unix - PG_EPOCH_OFFSET_MICROS
}

/// Appends a CopyData frame holding a standby status update (`r`) to `out`.
pub fn encode_status_update(write: Lsn, flush: Lsn, apply: Lsn, now_micros: i64, reply: bool, out: &mut BytesMut) {
    out.reserve(1 + 4 + 34);
    out.put_u8(b'd');
    out.put_u32(4 + 34);
    out.put_u8(b'r');
    out.put_u64(write.0);
    out.put_u64(flush.0);
    out.put_u64(apply.0);
    out.put_i64(now_micros);
    out.put_u8(reply as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn splits_frames_only_when_complete() {
        let mut all = frame(b'Z', b"I");
        all.extend(frame(b'd', b"kxyz"));
        let mut buf = BytesMut::new();
        for (i, b) in all.iter().enumerate() {
            buf.put_u8(*b);
            let f = split_frame(&mut buf).unwrap();
            if i == 5 {
                let f = f.expect("first frame");
                assert_eq!((f.tag, &f.body[..]), (b'Z', &b"I"[..]));
            } else if i == all.len() - 1 {
                assert_eq!(&f.expect("second").body[..], b"kxyz");
            } else {
                assert!(f.is_none(), "at {i}");
            }
        }
        assert!(buf.is_empty());
        let mut bad = BytesMut::from(&[b'd', 0, 0, 0, 3][..]);
        assert!(split_frame(&mut bad).is_err());
        let mut huge = BytesMut::from(&[b'd', 0xff, 0xff, 0xff, 0xff][..]);
        assert!(split_frame(&mut huge).is_err());
        assert_eq!(bytes_missing(&[b'd', 0, 0, 0, 10, 1]), 5);
        assert_eq!(bytes_missing(b"d"), 4);
    }

    #[test]
    fn parses_copy_payloads_without_panicking() {
        let mut w = vec![b'w'];
        w.extend(0x10u64.to_be_bytes());
        w.extend(0x20u64.to_be_bytes());
        w.extend(7i64.to_be_bytes());
        w.extend(b"Bxyz");
        match parse_copy_data(Bytes::from(w.clone())).unwrap() {
            CopyPayload::XLogData { wal_start, wal_end, server_time_micros, data } => {
                assert_eq!((wal_start, wal_end, server_time_micros), (Lsn(0x10), Lsn(0x20), 7));
                assert_eq!(&data[..], b"Bxyz");
            }
            other => panic!("{other:?}"),
        }
        let mut k = vec![b'k'];
        k.extend(0x30u64.to_be_bytes());
        k.extend(9i64.to_be_bytes());
        k.push(1);
        assert_eq!(
            parse_copy_data(Bytes::from(k.clone())).unwrap(),
            CopyPayload::Keepalive { wal_end: Lsn(0x30), server_time_micros: 9, reply_requested: true }
        );
        for cut in 0..w.len().min(25) {
            assert!(parse_copy_data(Bytes::from(w[..cut].to_vec())).is_err());
        }
        for cut in 0..k.len() {
            assert!(parse_copy_data(Bytes::from(k[..cut].to_vec())).is_err());
        }
        assert!(parse_copy_data(Bytes::from_static(b"q")).is_err());
    }

    #[test]
    fn parses_errors_rows_and_auth() {
        let e = parse_error(b"SERROR\0VERROR\0C42710\0Mslot exists\0Hpick another\0\0");
        assert_eq!(e.sqlstate(), Some("42710"));
        assert_eq!(e.to_string(), "PostgreSQL ERROR 42710: slot exists; hint: pick another");
        // Truncated garbage still gives an error value, never a panic.
        assert!(parse_error(b"Cxx").sqlstate().is_some());
        let row = parse_data_row(&[0, 2, 0, 0, 0, 1, b'a', 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(row, vec![Some("a".to_string()), None]);
        assert!(parse_data_row(&[0, 2, 0, 0, 0, 9, b'a']).is_err());
        let sasl = Bytes::from_static(b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        assert_eq!(
            parse_auth(&sasl).unwrap(),
            AuthRequest::Sasl(vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()])
        );
        assert_eq!(parse_auth(&Bytes::from_static(b"\0\0\0\x05abcd")).unwrap(), AuthRequest::Md5(*b"abcd"));
        assert!(parse_auth(&Bytes::from_static(b"\0\0\0\x05ab")).is_err());
    }

    #[test]
    fn encodes_status_updates() {
        let mut out = BytesMut::new();
        encode_status_update(Lsn(1), Lsn(2), Lsn(3), 4, true, &mut out);
        assert_eq!(out.len(), 39);
        assert_eq!(&out[..6], &[b'd', 0, 0, 0, 38, b'r']);
        assert_eq!(&out[6..14], &1u64.to_be_bytes());
        assert_eq!(&out[30..38], &4i64.to_be_bytes());
        assert_eq!(out[38], 1);
        // 2026 is well after the PostgreSQL epoch.
        assert!(pg_now_micros() > 26 * 365 * 86_400 * 1_000_000);
    }
}
