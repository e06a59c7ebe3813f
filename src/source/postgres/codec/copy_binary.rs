//! A streaming reader of `COPY … TO STDOUT (FORMAT binary)` output, sans
//! I/O: feed it the CopyData chunks as they arrive (any split, rows may
//! straddle chunks) and take decoded rows out.
//!
//! Format: the 11-byte signature `PGCOPY\n\xff\r\n\0`, a 32-bit flags word,
//! a 32-bit header-extension length and that many bytes; then per row a
//! 16-bit field count and per field a 32-bit length (-1 = NULL) and the
//! value's binary form; the trailer is a field count of -1.

use bytes::{Buf, Bytes, BytesMut};

use super::value_binary::decode_binary;
use super::value_text::ValueError;
use crate::model::{PgType, Row, Value};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Signature, flags and extension length.
const HEADER_LEN: usize = 11 + 4 + 4;

/// What went wrong reading COPY binary data. Row numbers count data rows
/// from 1; column indexes count from 0.
#[derive(Debug, thiserror::Error)]
pub enum CopyBinaryError {
    #[error("COPY binary data does not start with the PGCOPY signature")]
    BadSignature,
    #[error("COPY binary header: {0}")]
    BadHeader(String),
    #[error("COPY binary row {row}: expected {expected} fields, found {found}")]
    FieldCount { row: u64, expected: usize, found: i16 },
    #[error("COPY binary row {row}, column {column}: invalid field length {len}")]
    BadLength { row: u64, column: usize, len: i32 },
    #[error("COPY binary row {row}, column {column}: {source}")]
    Value {
        row: u64,
        column: usize,
        #[source]
        source: ValueError,
    },
    #[error("COPY binary data ended inside {0}")]
    Truncated(String),
    #[error("COPY binary data ended without the end-of-data trailer")]
    MissingTrailer,
    #[error("COPY binary data has {0} bytes after the end-of-data trailer")]
    TrailingData(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Rows,
    Done,
}

/// Decodes COPY binary rows of known column types. Bytes in ([`feed`]),
/// rows out ([`next_row`]), then [`finish`] to check the stream was whole.
///
/// [`feed`]: CopyBinaryReader::feed
/// [`next_row`]: CopyBinaryReader::next_row
/// [`finish`]: CopyBinaryReader::finish
#[derive(Debug)]
pub struct CopyBinaryReader {
    types: Vec<PgType>,
    buf: BytesMut,
    state: State,
    rows: u64,
    bytes: u64,
}

impl CopyBinaryReader {
    /// A reader for rows whose columns have these types, in order.
    pub fn new(types: Vec<PgType>) -> Self {
        CopyBinaryReader { types, buf: BytesMut::new(), state: State::Header, rows: 0, bytes: 0 }
    }

    /// Appends the next piece of the stream (any size, any split).
    pub fn feed(&mut self, chunk: Bytes) {
        if self.buf.is_empty() {
            // Common case: the previous chunk was used up; reuse no copy.
            self.buf = BytesMut::from(chunk);
        } else {
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next complete row; `Ok(None)` when more input is needed or the
    /// trailer has been read (see [`finish`](Self::finish) and
    /// [`is_done`](Self::is_done)).
    pub fn next_row(&mut self) -> Result<Option<Row>, CopyBinaryError> {
        let Some(end) = self.next_extent()? else { return Ok(None) };
        let row_no = self.rows + 1;
        let mut row = Vec::with_capacity(self.types.len());
        let mut pos = 2;
        for (column, ty) in self.types.iter().enumerate() {
            // Bounds were checked by the scan; `get` keeps it panic-free anyway.
            let len = self.buf.get(pos..pos + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(-1);
            pos += 4;
            if len < 0 {
                row.push(Value::Null);
                continue;
            }
            let field = self.buf.get(pos..pos + len as usize).unwrap_or_default();
            pos += len as usize;
            let v =
                decode_binary(ty, field).map_err(|source| CopyBinaryError::Value { row: row_no, column, source })?;
            row.push(v);
        }
        self.consume(end);
        self.rows += 1;
        Ok(Some(row))
    }

    /// Checks the framing of the next complete row and steps over it without
    /// decoding its values (a byte-for-byte copy only needs the row count);
    /// false when more input is needed or the trailer has been read.
    pub fn skip_row(&mut self) -> Result<bool, CopyBinaryError> {
        let Some(end) = self.next_extent()? else { return Ok(false) };
        self.consume(end);
        self.rows += 1;
        Ok(true)
    }

    /// The length of the next row once it is wholly buffered, after the
    /// header and before the trailer.
    fn next_extent(&mut self) -> Result<Option<usize>, CopyBinaryError> {
        if self.state == State::Header && !self.read_header()? {
            return Ok(None);
        }
        if self.state == State::Done {
            if !self.buf.is_empty() {
                return Err(CopyBinaryError::TrailingData(self.buf.len()));
            }
            return Ok(None);
        }
        let Some(count) = self.buf.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else { return Ok(None) };
        let row_no = self.rows + 1;
        if count == -1 {
            self.consume(2);
            self.state = State::Done;
            if !self.buf.is_empty() {
                return Err(CopyBinaryError::TrailingData(self.buf.len()));
            }
            return Ok(None);
        }
        if count < 0 || count as usize != self.types.len() {
            return Err(CopyBinaryError::FieldCount { row: row_no, expected: self.types.len(), found: count });
        }
        // A row split across chunks is simply waited for.
        let mut end = 2;
        for column in 0..self.types.len() {
            let Some(len) = self.buf.get(end..end + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])) else {
                return Ok(None);
            };
            end += 4;
            if len == -1 {
                continue;
            }
            let len = usize::try_from(len).map_err(|_| CopyBinaryError::BadLength { row: row_no, column, len })?;
            end += len;
            if self.buf.len() < end {
                // Reserve for the rest of a big field now rather than by doubling.
                self.buf.reserve(end - self.buf.len());
                return Ok(None);
            }
        }
        Ok(Some(end))
    }

    /// Reads the header when it is all buffered; false when more is needed.
    fn read_header(&mut self) -> Result<bool, CopyBinaryError> {
        let have = self.buf.len().min(SIGNATURE.len());
        if self.buf.get(..have) != SIGNATURE.get(..have) {
            return Err(CopyBinaryError::BadSignature);
        }
        let Some(fixed) = self.buf.get(..HEADER_LEN) else { return Ok(false) };
        let flags = u32::from_be_bytes([fixed[11], fixed[12], fixed[13], fixed[14]]);
        let ext = u32::from_be_bytes([fixed[15], fixed[16], fixed[17], fixed[18]]) as usize;
        if flags & (1 << 16) != 0 {
            return Err(CopyBinaryError::BadHeader("rows carry OIDs (WITH OIDS), which xdb does not read".into()));
        }
        if flags & 0xFFFE_0000 != 0 {
            return Err(CopyBinaryError::BadHeader(format!("unknown critical flags {flags:#x}")));
        }
        if self.buf.len() < HEADER_LEN + ext {
            return Ok(false);
        }
        self.consume(HEADER_LEN + ext);
        self.state = State::Rows;
        Ok(true)
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.bytes += n as u64;
    }

    /// Checks that the stream ended cleanly: header, whole rows, trailer,
    /// nothing after it. Call after the last chunk's rows were taken.
    pub fn finish(&self) -> Result<(), CopyBinaryError> {
        match self.state {
            State::Done if self.buf.is_empty() => Ok(()),
            State::Done => Err(CopyBinaryError::TrailingData(self.buf.len())),
            State::Header => Err(CopyBinaryError::Truncated("the header".into())),
            State::Rows if self.buf.is_empty() => Err(CopyBinaryError::MissingTrailer),
            State::Rows => Err(CopyBinaryError::Truncated(format!("row {}", self.rows + 1))),
        }
    }

    /// True once the end-of-data trailer has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Data rows decoded so far.
    pub fn rows_read(&self) -> u64 {
        self.rows
    }

    /// Bytes consumed so far (header, rows and trailer; not what is buffered).
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for f in row {
                match f {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(b) => {
                        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                        out.extend_from_slice(b);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn sample() -> Vec<u8> {
        stream(&[
            vec![Some(7i32.to_be_bytes().to_vec()), Some(b"hello".to_vec())],
            vec![None, Some(Vec::new())],
            vec![Some((-1i32).to_be_bytes().to_vec()), None],
        ])
    }

    fn read_all(data: &[u8], split: usize) -> Result<Vec<Row>, CopyBinaryError> {
        let mut r = CopyBinaryReader::new(vec![PgType::Int4, PgType::Text]);
        let mut rows = Vec::new();
        for chunk in data.chunks(split.max(1)) {
            r.feed(Bytes::copy_from_slice(chunk));
            while let Some(row) = r.next_row()? {
                rows.push(row);
            }
        }
        r.finish()?;
        assert_eq!(r.bytes_read(), data.len() as u64);
        assert_eq!(r.rows_read(), rows.len() as u64);
        Ok(rows)
    }

    #[test]
    fn any_chunking_gives_the_same_rows() {
        let data = sample();
        let want = vec![
            vec![Value::Int4(7), Value::Text("hello".into())],
            vec![Value::Null, Value::Text(String::new())],
            vec![Value::Int4(-1), Value::Null],
        ];
        for split in 1..=data.len() {
            assert_eq!(read_all(&data, split).unwrap(), want, "split {split}");
        }
    }

    #[test]
    fn rejects_broken_streams() {
        let data = sample();
        assert!(matches!(read_all(&data[..data.len() - 2], 7), Err(CopyBinaryError::MissingTrailer)));
        assert!(matches!(read_all(&data[..data.len() - 5], 7), Err(CopyBinaryError::Truncated(_))));
        assert!(matches!(read_all(&data[..5], 7), Err(CopyBinaryError::Truncated(_))));
        assert!(matches!(read_all(b"PGCOPX\n", 7), Err(CopyBinaryError::BadSignature)));
        let mut extra = data.clone();
        extra.push(0);
        assert!(matches!(read_all(&extra, 7), Err(CopyBinaryError::TrailingData(1))));
        let three = stream(&[vec![None, None, None]]);
        assert!(matches!(read_all(&three, 7), Err(CopyBinaryError::FieldCount { row: 1, expected: 2, found: 3 })));
        let bad = stream(&[vec![None, None], vec![Some(vec![1, 2]), None]]);
        match read_all(&bad, 100) {
            Err(e @ CopyBinaryError::Value { row: 2, column: 0, .. }) => {
                assert!(e.to_string().contains("row 2, column 0"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200), split in 1usize..50) {
            let mut data = sample()[..HEADER_LEN].to_vec();
            data.extend_from_slice(&tail);
            let _ = read_all(&data, split);
            let _ = read_all(&tail, split);
        }
    }
}
