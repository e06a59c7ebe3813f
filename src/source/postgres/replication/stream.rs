//! The CopyBoth phase after START_REPLICATION: XLogData and keepalives in,
//! standby status updates out, with the positions the caller confirmed.

use std::time::Duration;

use bytes::Bytes;
use postgres_protocol::message::frontend;
use tokio::time::Instant;

use super::conn::{self, Conn};
use super::wire::{self, CopyPayload};
use super::ReplicationError;
use crate::model::Lsn;

/// How long [`ReplicationStream::stop`] waits for the server to end the copy.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One message of the replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationEvent {
    /// One pgoutput message (`data`, starting with its type byte), a slice of the read buffer.
    XLogData { wal_start: Lsn, wal_end: Lsn, server_time_micros: i64, data: Bytes },
    /// The server's heartbeat. One with `reply_requested` has already been
    /// answered (with the positions set so far) when it is returned.
    Keepalive { wal_end: Lsn, reply_requested: bool },
}

/// A walsender connection in streaming mode.
pub struct ReplicationStream {
    conn: Conn,
    status_interval: Duration,
    next_status: Instant,
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    server_wal_end: Lsn,
    /// The server has ended the copy; the connection is back at ReadyForQuery or gone.
    done: bool,
}

impl std::fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("server", &self.conn.server)
            .field("flush", &self.flush)
            .field("server_wal_end", &self.server_wal_end)
            .finish()
    }
}

impl ReplicationStream {
    pub(super) fn new(conn: Conn, status_interval: Duration) -> Self {
        // A zero interval would spin; one millisecond is as eager as makes sense.
        let status_interval = status_interval.max(Duration::from_millis(1));
        ReplicationStream {
            conn,
            status_interval,
            next_status: Instant::now() + status_interval,
            write: Lsn::ZERO,
            flush: Lsn::ZERO,
            apply: Lsn::ZERO,
            server_wal_end: Lsn::ZERO,
            done: false,
        }
    }

    /// The next message; `None` once the server has ended the copy. Answers
    /// keepalives that request a reply and sends a status update every
    /// `status_interval`, also while the server is silent.
    ///
    /// Cancel-safe in the sense that matters for `select!`: no XLogData is
    /// lost and queued status updates are written on the next call.
    pub async fn next(&mut self) -> Result<Option<ReplicationEvent>, ReplicationError> {
        if self.done {
            return Ok(None);
        }
        if !self.conn.wbuf.is_empty() {
            self.conn.flush().await?;
        }
        loop {
            if let Some(f) = wire::split_frame(&mut self.conn.rbuf)? {
                match f.tag {
                    b'd' => match wire::parse_copy_data(f.body)? {
                        CopyPayload::XLogData { wal_start, wal_end, server_time_micros, data } => {
                            self.server_wal_end = self.server_wal_end.max(wal_end);
                            return Ok(Some(ReplicationEvent::XLogData {
                                wal_start,
                                wal_end,
                                server_time_micros,
                                data,
                            }));
                        }
                        CopyPayload::Keepalive { wal_end, reply_requested, .. } => {
                            self.server_wal_end = self.server_wal_end.max(wal_end);
                            if reply_requested {
                                self.queue_status(false);
                                self.conn.flush().await?;
                            }
                            return Ok(Some(ReplicationEvent::Keepalive { wal_end, reply_requested }));
                        }
                    },
                    b'c' => {
                        self.finish_copy().await?;
                        return Ok(None);
                    }
                    b'N' | b'S' => continue,
                    // The walsender ended the copy on its own (a shutting-down
                    // server may skip CopyDone): the stream is over.
                    b'C' | b'Z' => {
                        self.done = true;
                        return Ok(None);
                    }
                    b'E' => {
                        self.done = true;
                        return Err(wire::parse_error(&f.body));
                    }
                    other => return Err(conn::unexpected(other, "while streaming")),
                }
            }
            // Buffer drained: honour the status timer, then wait for bytes or the timer.
            if Instant::now() >= self.next_status {
                self.queue_status(false);
                self.conn.flush().await?;
            }
            let deadline = self.next_status;
            tokio::select! {
                r = self.conn.fill() => r?,
                _ = tokio::time::sleep_until(deadline) => {
                    self.queue_status(false);
                    self.conn.flush().await?;
                }
            }
        }
    }

    /// Sets the positions reported in status updates. `flush` becomes the
    /// slot's `confirmed_flush_lsn`: only pass what the target has committed.
    /// Positions never move backwards (a smaller value is ignored).
    pub fn set_positions(&mut self, write: Lsn, flush: Lsn, apply: Lsn) {
        self.write = self.write.max(write);
        self.flush = self.flush.max(flush);
        self.apply = self.apply.max(apply);
    }

    /// The positions last set: (write, flush, apply).
    pub fn positions(&self) -> (Lsn, Lsn, Lsn) {
        (self.write, self.flush, self.apply)
    }

    /// Sends a status update now; with `reply_requested` the server answers with a keepalive.
    pub async fn send_status_update(&mut self, reply_requested: bool) -> Result<(), ReplicationError> {
        self.queue_status(reply_requested);
        self.conn.flush().await
    }

    /// True when bytes read from the server wait in the buffer (a whole
    /// frame, or part of one whose rest is on its way): the next
    /// [`next`](Self::next) will not wait for the server to send anything new.
    ///
    /// An empty buffer is topped up with what the socket already holds (one
    /// read that does not wait): under a backlog the walsender refills the
    /// socket while the last read is being handed over, and that is data
    /// waiting just as much as bytes in the buffer.
    pub fn has_buffered(&mut self) -> bool {
        if !self.conn.rbuf.is_empty() {
            return true;
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let fill = std::pin::pin!(self.conn.fill());
        // Ready with an error counts as "something to read": the next real
        // read meets the same error and reports it (`fill` is cancel-safe).
        std::future::Future::poll(fill, &mut cx).is_ready()
    }

    /// The highest WAL end the server has reported.
    pub fn server_wal_end(&self) -> Lsn {
        self.server_wal_end
    }

    /// Ends streaming: a last status update, CopyDone, waits for the server
    /// to finish (CommandComplete, ReadyForQuery), then Terminate.
    pub async fn stop(mut self) -> Result<(), ReplicationError> {
        if self.done {
            self.conn.terminate().await;
            return Ok(());
        }
        self.queue_status(false);
        frontend::copy_done(&mut self.conn.wbuf);
        let conn = &mut self.conn;
        let drain = async {
            conn.flush().await?;
            let mut error = None;
            loop {
                let f = conn.read_frame().await?;
                match f.tag {
                    b'Z' => return error.map_or(Ok(()), Err),
                    b'E' => error = Some(wire::parse_error(&f.body)),
                    // Data still in flight, the server's CopyDone, CommandComplete, notices.
                    _ => {}
                }
            }
        };
        let result = match tokio::time::timeout(STOP_TIMEOUT, drain).await {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!("server {} did not end the copy within {STOP_TIMEOUT:?}", self.conn.server);
                Ok(())
            }
        };
        self.conn.terminate().await;
        result
    }

    fn queue_status(&mut self, reply_requested: bool) {
        wire::encode_status_update(
            self.write,
            self.flush,
            self.apply,
            wire::pg_now_micros(),
            reply_requested,
            &mut self.conn.wbuf,
        );
        self.next_status = Instant::now() + self.status_interval;
    }

    /// The server sent CopyDone: answer with ours and read up to ReadyForQuery.
    async fn finish_copy(&mut self) -> Result<(), ReplicationError> {
        self.done = true;
        frontend::copy_done(&mut self.conn.wbuf);
        self.conn.flush().await?;
        loop {
            let f = self.conn.read_frame().await?;
            match f.tag {
                b'Z' => return Ok(()),
                b'E' => return Err(wire::parse_error(&f.body)),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(tag: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(tag);
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(body);
    }

    fn xlog(lsn: u64, payload_len: usize, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(25 + payload_len);
        body.push(b'w');
        body.put_u64(lsn);
        body.put_u64(lsn);
        body.put_i64(0);
        body.push(b'I');
        body.resize(25 + payload_len, b'x');
        frame(b'd', &body, out);
    }

    /// A fake walsender on loopback TCP: `rounds` copies of a block of XLogData
    /// frames of mixed sizes (one bigger than the read chunk), then the end of
    /// the copy. Checks every frame arrives intact and in order, and prints the rate.
    async fn stream_from_fake_server(rounds: usize) -> (u64, Duration) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut block = Vec::new();
        let sizes = [60usize, 120, 250, 33, 1000, 80, 4000, 150];
        let mut lsn = 0u64;
        for i in 0..4096 {
            lsn += 1;
            xlog(lsn, sizes[i % sizes.len()], &mut block);
        }
        lsn += 1;
        xlog(lsn, 300_000, &mut block);
        let per_block = lsn;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for _ in 0..rounds {
                s.write_all(&block).await.unwrap();
            }
            let mut tail = Vec::new();
            let mut ka = vec![b'k'];
            ka.put_u64(per_block * rounds as u64);
            ka.put_i64(0);
            ka.push(1);
            frame(b'd', &ka, &mut tail);
            frame(b'c', b"", &mut tail);
            frame(b'C', b"COPY 0\0", &mut tail);
            frame(b'Z', b"I", &mut tail);
            s.write_all(&tail).await.unwrap();
            // Whatever the client sends: status updates, then CopyDone.
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
            got
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut stream = ReplicationStream::new(Conn::from_stream(Box::new(tcp), "fake"), Duration::from_secs(60));
        stream.set_positions(Lsn(5), Lsn(4), Lsn(3));
        let started = std::time::Instant::now();
        let (mut bytes, mut expect, mut keepalives) = (0u64, 1u64, 0);
        while let Some(ev) = stream.next().await.unwrap() {
            match ev {
                ReplicationEvent::XLogData { wal_start, data, .. } => {
                    assert_eq!(wal_start, Lsn((expect - 1) % per_block + 1));
                    assert_eq!(data.first(), Some(&b'I'));
                    bytes += data.len() as u64;
                    expect += 1;
                }
                ReplicationEvent::Keepalive { reply_requested, .. } => {
                    assert!(reply_requested);
                    keepalives += 1;
                }
            }
        }
        let elapsed = started.elapsed();
        assert_eq!(expect - 1, per_block * rounds as u64);
        assert_eq!(keepalives, 1);
        assert_eq!(stream.server_wal_end(), Lsn(per_block * rounds as u64));
        stream.stop().await.unwrap();
        let sent = server.await.unwrap();
        // The keepalive's answer carries exactly the positions set, then CopyDone and Terminate.
        let mut want = BytesMut::new();
        wire::encode_status_update(Lsn(5), Lsn(4), Lsn(3), 0, false, &mut want);
        assert_eq!(sent.len(), 39 + 5 + 5, "{sent:?}");
        assert_eq!(&sent[..30], &want[..30]);
        assert_eq!(&sent[39..], &[b'c', 0, 0, 0, 4, b'X', 0, 0, 0, 4]);
        (bytes, elapsed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_frames_intact_across_reads() {
        stream_from_fake_server(3).await;
    }

    /// `cargo test --release --lib stream_throughput -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "throughput measurement"]
    async fn stream_throughput() {
        let (bytes, elapsed) = stream_from_fake_server(400).await;
        let mb = bytes as f64 / 1e6;
        println!("{mb:.0} MB of XLogData payload in {elapsed:?}: {:.0} MB/s", mb / elapsed.as_secs_f64());
    }
}
