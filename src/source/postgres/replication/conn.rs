//! The socket under the walsender connection: buffered frame reading,
//! cancel-safe writing, startup and authentication.

use bytes::BytesMut;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::config::ChannelBindingMode;
use super::wire::{self, AuthRequest, Frame};
use super::{ReplicationConfig, ReplicationError};

/// Read granularity: big enough that a fast stream needs few syscalls.
const READ_CHUNK: usize = 256 * 1024;

/// Settings the walsender must print values under: pgoutput's text values
/// are produced with the session's GUCs, and xdb's value decoder expects these.
pub const SESSION_OPTIONS: &str =
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3 -c lc_monetary=C";

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub struct Conn {
    io: Box<dyn Stream>,
    pub rbuf: BytesMut,
    /// Encoded messages not yet written; kept here so that a cancelled write resumes.
    pub wbuf: BytesMut,
    /// `host:port`, for messages.
    pub server: String,
    /// `server_version` as reported at startup.
    pub server_version: Option<String>,
    /// The TLS session's tls-server-end-point data, for SCRAM-SHA-256-PLUS.
    end_point: Option<Vec<u8>>,
    /// TLS with the server's certificate verified (verify-ca / verify-full).
    server_authenticated: bool,
}

impl Conn {
    /// Opens the socket, negotiates TLS as `sslmode` asks, and logs in,
    /// within the configured connect timeout.
    pub async fn connect(config: &ReplicationConfig) -> Result<Conn, ReplicationError> {
        let server = config.server_label();
        let fut = Self::connect_inner(config, server.clone());
        match config.connect_timeout {
            Some(after) => {
                tokio::time::timeout(after, fut).await.map_err(|_| ReplicationError::Timeout { server, after })?
            }
            None => fut.await,
        }
    }

    async fn connect_inner(config: &ReplicationConfig, server: String) -> Result<Conn, ReplicationError> {
        let tls = config.tls();
        tls.warn_if_unauthenticated(&config.host, &server);
        // Read the CA file before connecting: a bad sslrootcert is a configuration error, not a network one.
        let tls_config = if tls.attempts_tls() { Some(tls.client_config()?) } else { None };
        let mut end_point = None;
        let io: Box<dyn Stream> = if config.host.starts_with('/') {
            // The server never offers TLS on a Unix socket (it answers 'N'); only ask when TLS is mandatory,
            // so that the refusal is reported.
            let mut s = Self::connect_unix(config, &server).await?;
            if tls.mode.requires_tls() {
                if !ssl_request(&mut s, &server).await? {
                    return Err(no_tls(&tls, &server));
                }
                return Err(ReplicationError::Tls(format!(
                    "the server at {server} accepted TLS on a Unix socket, which xdb does not expect"
                )));
            }
            s
        } else {
            let mut tcp = tokio::net::TcpStream::connect((config.host.as_str(), config.port))
                .await
                .map_err(|e| ReplicationError::io(&server, "cannot connect", e))?;
            // Status updates are tiny and must not wait for Nagle.
            let _ = tcp.set_nodelay(true);
            match tls_config {
                Some(tls_config) if ssl_request(&mut tcp, &server).await? => {
                    let stream = tls.handshake(tls_config, tcp, &config.host, &server).await?;
                    end_point = crate::pg_conn::tls::server_end_point(&stream);
                    Box::new(stream)
                }
                Some(_) if tls.mode.requires_tls() => return Err(no_tls(&tls, &server)),
                _ => Box::new(tcp),
            }
        };
        let mut conn = Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(1024),
            server,
            server_version: None,
            server_authenticated: end_point.is_some() && tls.verify() != crate::pg_conn::tls::Verify::Nothing,
            end_point,
        };
        conn.startup(config).await?;
        Ok(conn)
    }

    /// A connection over an already logged-in stream (tests with a fake server).
    #[cfg(test)]
    pub fn from_stream(io: Box<dyn Stream>, server: &str) -> Conn {
        Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::new(),
            server: server.to_string(),
            server_version: None,
            end_point: None,
            server_authenticated: false,
        }
    }

    #[cfg(unix)]
    async fn connect_unix(config: &ReplicationConfig, server: &str) -> Result<Box<dyn Stream>, ReplicationError> {
        let path = format!("{}/.s.PGSQL.{}", config.host.trim_end_matches('/'), config.port);
        let s = tokio::net::UnixStream::connect(&path)
            .await
            .map_err(|e| ReplicationError::io(server, format!("cannot connect to socket {path}"), e))?;
        Ok(Box::new(s))
    }

    #[cfg(not(unix))]
    async fn connect_unix(_: &ReplicationConfig, _: &str) -> Result<Box<dyn Stream>, ReplicationError> {
        Err(ReplicationError::Config("Unix-domain sockets are not available on this platform".into()))
    }

    async fn startup(&mut self, config: &ReplicationConfig) -> Result<(), ReplicationError> {
        let options = match &config.options {
            Some(extra) => format!("{SESSION_OPTIONS} {extra}"),
            None => SESSION_OPTIONS.to_string(),
        };
        let params = [
            ("user", config.user.as_str()),
            ("database", config.dbname.as_str()),
            ("replication", "database"),
            ("application_name", config.application_name.as_str()),
            ("client_encoding", "UTF8"),
            ("options", options.as_str()),
        ];
        frontend::startup_message(params.iter().copied(), &mut self.wbuf)
            .map_err(|e| ReplicationError::Config(format!("startup parameters: {e}")))?;
        self.flush().await?;
        self.authenticate(config).await?;
        loop {
            let f = self.read_frame().await?;
            match f.tag {
                b'Z' => return Ok(()),
                b'S' => {
                    let mut r = wire::Reader::new(&f.body, "ParameterStatus");
                    if r.cstr()? == b"server_version" {
                        self.server_version = Some(String::from_utf8_lossy(r.cstr()?).into_owned());
                    }
                }
                b'K' | b'N' => {}
                b'E' => return Err(wire::parse_error(&f.body)),
                other => return Err(unexpected(other, "after authentication")),
            }
        }
    }

    async fn authenticate(&mut self, config: &ReplicationConfig) -> Result<(), ReplicationError> {
        let password = || {
            config.password.as_deref().ok_or_else(|| {
                ReplicationError::Auth(format!(
                    "the server asks user {:?} for a password, but the URL has none",
                    config.user
                ))
            })
        };
        let mut scram: Option<sasl::ScramSha256> = None;
        loop {
            let f = self.read_frame().await?;
            match f.tag {
                b'R' => {}
                b'E' => return Err(wire::parse_error(&f.body)),
                b'N' => continue,
                other => return Err(unexpected(other, "during authentication")),
            }
            let encode_err =
                |e: std::io::Error| ReplicationError::Protocol(format!("encoding a password message: {e}"));
            match wire::parse_auth(&f.body)? {
                AuthRequest::Ok if config.channel_binding == ChannelBindingMode::Require && scram.is_none() => {
                    return Err(ReplicationError::Auth(
                        "channel_binding=require, but the server logged in without SCRAM".into(),
                    ));
                }
                AuthRequest::Ok => return Ok(()),
                AuthRequest::Cleartext if config.channel_binding == ChannelBindingMode::Require => {
                    return Err(ReplicationError::Auth(
                        "channel_binding=require, but the server asks for a cleartext password".into(),
                    ));
                }
                AuthRequest::Md5(_) if config.channel_binding == ChannelBindingMode::Require => {
                    return Err(ReplicationError::Auth(
                        "channel_binding=require, but the server asks for an MD5 password".into(),
                    ));
                }
                AuthRequest::Cleartext | AuthRequest::Md5(_)
                    if refuse_insecure_password(config, self.server_authenticated) =>
                {
                    return Err(ReplicationError::Auth(format!(
                        "the server at {} asks for {} password over a connection that does not authenticate it \
                         ({}): whoever answers there would get the password. Use sslmode=verify-full with \
                         sslrootcert, switch the login to scram-sha-256 in pg_hba.conf, or accept the risk with \
                         allow_insecure_password=true in the URL",
                        self.server,
                        if matches!(wire::parse_auth(&f.body)?, AuthRequest::Cleartext) {
                            "a cleartext"
                        } else {
                            "an MD5"
                        },
                        config.tls().describe()
                    )));
                }
                AuthRequest::Cleartext => {
                    frontend::password_message(password()?.as_bytes(), &mut self.wbuf).map_err(encode_err)?;
                }
                AuthRequest::Md5(salt) => {
                    let hash = md5_hash(config.user.as_bytes(), password()?.as_bytes(), salt);
                    frontend::password_message(hash.as_bytes(), &mut self.wbuf).map_err(encode_err)?;
                }
                AuthRequest::Sasl(mechanisms) => {
                    let (mechanism, cb) = self.scram_binding(config, &mechanisms)?;
                    let s = sasl::ScramSha256::new(password()?.as_bytes(), cb);
                    frontend::sasl_initial_response(mechanism, s.message(), &mut self.wbuf).map_err(encode_err)?;
                    scram = Some(s);
                }
                AuthRequest::SaslContinue(data) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| ReplicationError::Protocol("SASLContinue before SASL started".into()))?;
                    s.update(&data).map_err(|e| ReplicationError::Auth(format!("SCRAM exchange: {e}")))?;
                    frontend::sasl_response(s.message(), &mut self.wbuf).map_err(encode_err)?;
                }
                AuthRequest::SaslFinal(data) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| ReplicationError::Protocol("SASLFinal before SASL started".into()))?;
                    s.finish(&data)
                        .map_err(|e| ReplicationError::Auth(format!("the server's SCRAM signature is invalid: {e}")))?;
                    continue;
                }
                AuthRequest::Other(code) => {
                    return Err(ReplicationError::Auth(format!(
                        "the server asks for authentication method {code} (e.g. GSS, SSPI, Kerberos), which xdb does not \
                         support: use scram-sha-256, md5, password or trust in pg_hba.conf"
                    )));
                }
            }
            self.flush().await?;
        }
    }

    /// The SCRAM mechanism to use among those the server offers, with the
    /// channel binding `channel_binding` asks for.
    fn scram_binding(
        &self,
        config: &ReplicationConfig,
        mechanisms: &[String],
    ) -> Result<(&'static str, sasl::ChannelBinding), ReplicationError> {
        let plus = mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256_PLUS);
        if !plus && !mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256) {
            return Err(ReplicationError::Auth(format!(
                "the server offers SASL mechanisms {mechanisms:?}; xdb supports SCRAM-SHA-256(-PLUS)"
            )));
        }
        // Over TLS, SCRAM-SHA-256-PLUS binds the login to this
        // session (what postgres-protocol implements; xdb only
        // hands it the certificate hash). Without TLS flag 'n';
        // with TLS but no PLUS offered flag 'y', so a server that
        // does support it cannot be downgraded unnoticed.
        let binding = match (&self.end_point, plus, config.channel_binding) {
            (_, _, ChannelBindingMode::Disable) => None,
            (Some(hash), true, _) => Some(hash.clone()),
            _ => None,
        };
        if binding.is_none() && config.channel_binding == ChannelBindingMode::Require {
            return Err(ReplicationError::Auth(format!(
                "channel_binding=require, but {}",
                if self.end_point.is_none() {
                    "the connection is not TLS (use sslmode=verify-full)"
                } else {
                    "the server does not offer SCRAM-SHA-256-PLUS (scram-sha-256 in pg_hba.conf, over hostssl)"
                }
            )));
        }
        Ok(match binding {
            Some(hash) => (sasl::SCRAM_SHA_256_PLUS, sasl::ChannelBinding::tls_server_end_point(hash)),
            None if self.end_point.is_some() && config.channel_binding != ChannelBindingMode::Disable => {
                (sasl::SCRAM_SHA_256, sasl::ChannelBinding::unrequested())
            }
            None => (sasl::SCRAM_SHA_256, sasl::ChannelBinding::unsupported()),
        })
    }

    /// The next complete frame, reading as needed. Cancel-safe.
    pub async fn read_frame(&mut self) -> Result<Frame, ReplicationError> {
        loop {
            if let Some(f) = wire::split_frame(&mut self.rbuf)? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// Reads at least one more byte into the buffer. Cancel-safe; end of stream is an error.
    pub async fn fill(&mut self) -> Result<(), ReplicationError> {
        let missing = wire::bytes_missing(&self.rbuf);
        self.rbuf.reserve(missing.max(READ_CHUNK));
        let n = self
            .io
            .read_buf(&mut self.rbuf)
            .await
            .map_err(|e| ReplicationError::io(&self.server, "reading from the server", e))?;
        if n == 0 {
            return Err(ReplicationError::io(
                &self.server,
                "the server closed the connection",
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        Ok(())
    }

    /// Writes everything queued in `wbuf`. Cancel-safe: unwritten bytes stay queued.
    pub async fn flush(&mut self) -> Result<(), ReplicationError> {
        while !self.wbuf.is_empty() {
            let n = self
                .io
                .write_buf(&mut self.wbuf)
                .await
                .map_err(|e| ReplicationError::io(&self.server, "writing to the server", e))?;
            if n == 0 {
                return Err(ReplicationError::io(
                    &self.server,
                    "writing to the server",
                    std::io::ErrorKind::WriteZero.into(),
                ));
            }
        }
        self.io.flush().await.map_err(|e| ReplicationError::io(&self.server, "writing to the server", e))
    }

    /// Sends Terminate and closes the socket, ignoring errors: the session is over either way.
    pub async fn terminate(mut self) {
        frontend::terminate(&mut self.wbuf);
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }

    /// Queues a simple Query.
    pub fn queue_query(&mut self, sql: &str) -> Result<(), ReplicationError> {
        frontend::query(sql, &mut self.wbuf)
            .map_err(|e| ReplicationError::Config(format!("cannot send query (NUL byte in it?): {e}")))
    }

    /// Runs a simple query and collects the text rows of all its statements.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ReplicationError> {
        self.queue_query(sql)?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let f = self.read_frame().await?;
            match f.tag {
                b'T' | b'C' | b'I' | b'N' | b'S' => {}
                b'D' => {
                    if error.is_none() {
                        rows.push(wire::parse_data_row(&f.body)?);
                    }
                }
                b'E' => error = Some(wire::parse_error(&f.body)),
                b'Z' => {
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    }
                }
                b'G' | b'H' | b'W' => {
                    return Err(ReplicationError::Protocol(format!(
                        "{sql:?} started a COPY; use start_replication for streaming"
                    )))
                }
                other => return Err(unexpected(other, "in a query result")),
            }
        }
    }
}

/// Sends SSLRequest; true when the server answers 'S' (go ahead with the TLS handshake).
async fn ssl_request<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, server: &str) -> Result<bool, ReplicationError> {
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    s.write_all(&buf).await.map_err(|e| ReplicationError::io(server, "sending SSLRequest", e))?;
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).await.map_err(|e| ReplicationError::io(server, "reading the answer to SSLRequest", e))?;
    match answer[0] {
        b'S' => Ok(true),
        b'N' => Ok(false),
        // A server older than 7.0 would send an ErrorResponse here; nothing else is valid.
        other => Err(ReplicationError::Protocol(format!(
            "unexpected answer {:?} to SSLRequest from {server}",
            other as char
        ))),
    }
}

fn no_tls(tls: &crate::pg_conn::tls::PgTls, server: &str) -> ReplicationError {
    ReplicationError::Tls(format!(
        "the server at {server} does not support TLS but {} (enable ssl on the server, or use sslmode=prefer)",
        tls.describe()
    ))
}

pub fn unexpected(tag: u8, when: &str) -> ReplicationError {
    ReplicationError::Protocol(format!("unexpected message {:?} {when}", tag as char))
}

/// A cleartext or MD5 password is refused when it would go to a server that
/// is not authenticated, over the network: a machine in the middle gets
/// the password itself (cleartext) or a replayable hash of it (MD5). Loopback
/// and Unix sockets have no middle; the URL can accept the risk.
fn refuse_insecure_password(config: &ReplicationConfig, server_authenticated: bool) -> bool {
    !server_authenticated && !config.allow_insecure_password && !crate::net::is_local(&config.host)
}

#[cfg(test)]
mod insecure_password_tests {
    use super::*;

    #[test]
    fn refused_only_over_the_network_to_an_unauthenticated_server() {
        let mut c = ReplicationConfig::parse("postgres://u:p@db.example.com/d").unwrap();
        assert!(refuse_insecure_password(&c, false));
        assert!(!refuse_insecure_password(&c, true));
        c.allow_insecure_password = true;
        assert!(!refuse_insecure_password(&c, false));
        for local in ["127.0.0.1", "127.0.0.2", "localhost", "::1", "/var/run/postgresql"] {
            let mut c = ReplicationConfig::parse("postgres://u:p@h/d").unwrap();
            c.host = local.into();
            assert!(!refuse_insecure_password(&c, false), "{local}");
        }
        let c = ReplicationConfig::parse("postgres://u:p@10.0.0.5/d?allow_insecure_password=true").unwrap();
        assert!(c.allow_insecure_password);
        assert!(ReplicationConfig::parse("postgres://u:p@h/d?allow_insecure_password=maybe").is_err());
    }
}
