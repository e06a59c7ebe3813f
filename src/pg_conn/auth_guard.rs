//! Refusing to send a cleartext or MD5 password to a server that is not
//! authenticated, on tokio-postgres connections.
//!
//! The replication connection speaks the startup protocol itself and refuses
//! such a request where it reads it (see `replication::conn`). tokio-postgres
//! answers authentication requests on its own and has no option to refuse a
//! method, so the SQL connections get the same rule one layer down: the
//! stream under tokio-postgres is wrapped in [`Guarded`], which reads the
//! server's messages as they pass until authentication is over and turns an
//! `AuthenticationCleartextPassword` (code 3) or `AuthenticationMD5Password`
//! (code 5) into an I/O error before tokio-postgres sees it — so the
//! password is never written. Whoever answers at a network address over a
//! connection that does not verify the server's certificate would otherwise
//! get the password (cleartext) or a hash that logs in anywhere the same
//! password is used (MD5). SCRAM needs no guard: it never reveals the password.
//!
//! Below TLS the guard sees the SSLRequest answer and then ciphertext: it
//! stops at the server's `S` and the TLS stream's own guard takes over (see
//! `tls::PgTlsStream`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The 8 bytes of an SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The server asked for a password method that gives the password away.
#[derive(Debug, thiserror::Error)]
#[error("the server asks for {method} password over a connection that does not authenticate it")]
pub struct InsecurePasswordRequest {
    /// "a cleartext" or "an MD5".
    pub method: &'static str,
}

impl InsecurePasswordRequest {
    /// The refusal inside a tokio-postgres error, if that is what it is.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a InsecurePasswordRequest> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<InsecurePasswordRequest>() {
                return Some(found);
            }
            if let Some(found) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
                if let Some(found) = found.downcast_ref::<InsecurePasswordRequest>() {
                    return Some(found);
                }
            }
            next = e.source();
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing written yet: the first write says whether TLS is requested.
    Start,
    /// An SSLRequest went out: the next byte is `S` (TLS follows) or `N`.
    SslAnswer,
    /// Reading backend messages until authentication ends.
    Messages,
    /// Authentication is over, or TLS took over: bytes pass unread.
    Passive,
}

/// The sans-I/O part: follows the bytes each way and says when to refuse.
#[derive(Debug)]
pub struct AuthWatch {
    state: State,
    /// A message header being collected: tag, length and, for `R`, the code.
    header: Vec<u8>,
    /// Body bytes of the current message still to skip.
    skip: usize,
}

impl AuthWatch {
    /// For the raw socket: the first write may be an SSLRequest.
    pub fn raw() -> Self {
        AuthWatch { state: State::Start, header: Vec::with_capacity(9), skip: 0 }
    }

    /// For a TLS stream: backend messages from the first byte.
    pub fn messages() -> Self {
        AuthWatch { state: State::Messages, header: Vec::with_capacity(9), skip: 0 }
    }

    /// Bytes the client is about to write.
    pub fn wrote(&mut self, bytes: &[u8]) {
        if self.state == State::Start && !bytes.is_empty() {
            self.state = if bytes.starts_with(&SSL_REQUEST) { State::SslAnswer } else { State::Messages };
        }
    }

    /// Bytes read from the server; an error means they must not reach the client.
    pub fn read(&mut self, mut bytes: &[u8]) -> Result<(), InsecurePasswordRequest> {
        while !bytes.is_empty() {
            match self.state {
                State::Passive => return Ok(()),
                // The server never speaks first; be strict anyway.
                State::Start => self.state = State::Messages,
                State::SslAnswer => {
                    self.state = if bytes[0] == b'S' { State::Passive } else { State::Messages };
                    bytes = &bytes[1..];
                }
                State::Messages if self.skip > 0 => {
                    let n = self.skip.min(bytes.len());
                    self.skip -= n;
                    bytes = &bytes[n..];
                }
                State::Messages => {
                    let want = if self.header.first() == Some(&b'R') { 9 } else { 5 };
                    let n = (want - self.header.len()).min(bytes.len());
                    self.header.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if self.header.len() == 5 && self.header[0] == b'R' {
                        continue; // collect the authentication code too
                    }
                    if self.header.len() < want {
                        return Ok(());
                    }
                    let len = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                    let len = len as usize;
                    if self.header[0] == b'R' {
                        let code = i32::from_be_bytes([self.header[5], self.header[6], self.header[7], self.header[8]]);
                        match code {
                            3 => return Err(InsecurePasswordRequest { method: "a cleartext" }),
                            5 => return Err(InsecurePasswordRequest { method: "an MD5" }),
                            0 => self.state = State::Passive,
                            _ => self.skip = len.saturating_sub(8),
                        }
                    } else {
                        self.skip = len.saturating_sub(4);
                    }
                    self.header.clear();
                }
            }
        }
        Ok(())
    }

    /// Applies [`Self::read`] to what a `poll_read` just filled.
    fn check_filled(&mut self, buf: &ReadBuf<'_>, before: usize) -> io::Result<()> {
        self.read(&buf.filled()[before..]).map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))
    }
}

/// A stream whose server messages are watched by an [`AuthWatch`].
pub struct Guarded<S> {
    inner: S,
    watch: AuthWatch,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, watch: AuthWatch) -> Self {
        Guarded { inner, watch }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => Poll::Ready(this.watch.check_filled(buf, before)),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.watch.wrote(buf);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads a password request through the guard in `AuthWatch` from the
/// stream, for TLS streams that embed one (`PgTlsStream`).
pub(crate) fn poll_read_watched<S: AsyncRead + Unpin>(
    inner: Pin<&mut S>,
    watch: Option<&mut AuthWatch>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    let before = buf.filled().len();
    match (inner.poll_read(cx, buf), watch) {
        (Poll::Ready(Ok(())), Some(w)) => Poll::Ready(w.check_filled(buf, before)),
        (other, _) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(code: i32, extra: &[u8]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&((8 + extra.len()) as u32).to_be_bytes());
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(extra);
        m
    }

    fn feed_bytewise(w: &mut AuthWatch, bytes: &[u8]) -> Result<(), InsecurePasswordRequest> {
        for b in bytes {
            w.read(std::slice::from_ref(b))?;
        }
        Ok(())
    }

    #[test]
    fn cleartext_and_md5_requests_are_refused_however_the_bytes_arrive() {
        for (code, extra) in [(3, &b""[..]), (5, &b"salt"[..])] {
            let mut w = AuthWatch::raw();
            w.wrote(b"\0\0\0\x09startup");
            assert!(w.read(&auth(code, extra)).is_err());
            let mut w = AuthWatch::raw();
            w.wrote(b"\0\0\0\x09startup");
            assert!(feed_bytewise(&mut w, &auth(code, extra)).is_err());
        }
    }

    #[test]
    fn scram_and_trust_pass_and_the_guard_then_steps_aside() {
        // SASL (10) with its mechanism list, SASLContinue (11), SASLFinal
        // (12), then AuthenticationOk: all pass; after Ok even bytes that
        // look like a cleartext request are data.
        let mut stream = auth(10, b"SCRAM-SHA-256\0\0");
        stream.extend(auth(11, b"r=abc,s=xyz,i=4096"));
        stream.extend(auth(12, b"v=proof"));
        stream.extend(auth(0, b""));
        stream.extend(auth(3, b""));
        let mut w = AuthWatch::raw();
        w.wrote(b"\0\0\0\x09startup");
        assert!(w.read(&stream).is_ok());
        let mut w = AuthWatch::raw();
        w.wrote(b"\0\0\0\x09startup");
        assert!(feed_bytewise(&mut w, &stream).is_ok());
        // An error message before authentication is skipped whole.
        let mut e = vec![b'E'];
        e.extend_from_slice(&(4 + 6u32).to_be_bytes());
        e.extend_from_slice(b"SFATAL");
        e.extend(auth(3, b""));
        let mut w = AuthWatch::messages();
        assert!(w.read(&e).is_err(), "the request after the notice is still seen");
    }

    #[test]
    fn below_tls_the_guard_stops_at_the_servers_yes() {
        let mut w = AuthWatch::raw();
        w.wrote(&SSL_REQUEST);
        // 'S', then ciphertext that happens to look like a request.
        let mut bytes = vec![b'S'];
        bytes.extend(auth(3, b""));
        assert!(w.read(&bytes).is_ok());
        // 'N': the server refused TLS, the messages follow in the clear.
        let mut w = AuthWatch::raw();
        w.wrote(&SSL_REQUEST);
        let mut bytes = vec![b'N'];
        bytes.extend(auth(3, b""));
        assert!(w.read(&bytes).is_err());
    }

    /// tokio-postgres itself, over the guard, against a server that asks
    /// for a cleartext password: the connection fails with the refusal and
    /// the server receives no password message.
    #[tokio::test]
    async fn tokio_postgres_never_writes_the_password() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client_side, mut server_side) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut len = [0u8; 4];
            server_side.read_exact(&mut len).await.unwrap();
            let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
            server_side.read_exact(&mut startup).await.unwrap();
            server_side.write_all(&auth(3, b"")).await.unwrap();
            let mut rest = Vec::new();
            let _ = server_side.read_to_end(&mut rest).await;
            rest
        });
        let mut config = tokio_postgres::Config::new();
        config.user("u").password("hunter2").dbname("d").ssl_mode(tokio_postgres::config::SslMode::Disable);
        let e = config
            .connect_raw(Guarded::new(client_side, AuthWatch::raw()), tokio_postgres::NoTls)
            .await
            .map(|_| ())
            .unwrap_err();
        let found = InsecurePasswordRequest::find(&e).expect("the refusal is findable in the error");
        assert_eq!(found.method, "a cleartext");
        let after = server.await.unwrap();
        assert!(!after.starts_with(b"p"), "no PasswordMessage was written: {after:?}");
        assert!(!after.windows(7).any(|w| w == b"hunter2"));
    }
}
