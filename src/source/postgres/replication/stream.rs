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
