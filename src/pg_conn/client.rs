//! Plain SQL connections (tokio-postgres) to a PostgreSQL server given by a
//! plan URL: catalog, COPY, validation and checks. The replication protocol
//! has its own connection in `source::postgres::replication`.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::SslMode as PgClientSslMode;
use tokio_postgres::{Client, Config};

use super::auth_guard::{AuthWatch, Guarded, InsecurePasswordRequest};
use super::tls::{PgTlsConnector, Verify};
use super::{take_tls_params, SslMode, XdbParams};
use crate::net::is_local;
use crate::plan::SecretUrl;

/// Connecting failed; the message names the server, never the password.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to PostgreSQL at {server}: {reason}")]
pub struct ConnectError {
    pub server: String,
    pub reason: String,
    /// True when a later attempt may succeed (network, server starting).
    pub retryable: bool,
}

/// `host:port/db` of a URL, for messages.
pub fn server_label(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(config.get_user().unwrap_or("")))
}

/// Opens a connection and spawns its driver task. TLS follows the URL's
/// `sslmode` and `sslrootcert` with libpq's meaning, exactly as the
/// replication connection does (see [`super::tls`]).
pub async fn connect(url: &SecretUrl, application_name: &str) -> Result<Client, ConnectError> {
    connect_with(url, application_name, PasswordGuard::Auto).await
}

/// When the SQL connection refuses cleartext and MD5 password requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordGuard {
    /// When the server is reached over the network and its certificate is
    /// not verified, unless the URL says `allow_insecure_password=true`.
    Auto,
    /// As if the server were across the network even on loopback (tests
    /// use it to exercise the guarded path; `verify-full`/`verify-ca` and
    /// `allow_insecure_password=true` still lift it).
    TreatAsRemote,
}

/// [`connect`] with an explicit [`PasswordGuard`].
pub async fn connect_with(
    url: &SecretUrl,
    application_name: &str,
    password_guard: PasswordGuard,
) -> Result<Client, ConnectError> {
    let invalid =
        |reason: String| ConnectError { server: url.redacted(), reason: scrub(&reason, url), retryable: false };
    // tokio-postgres knows neither verify-ca/verify-full nor sslrootcert: xdb handles them.
    let XdbParams { rest, tls, allow_insecure_password } =
        take_tls_params(url.expose()).map_err(|e| invalid(e.to_string()))?;
    let mut config = Config::from_str(&rest).map_err(|e| invalid(format!("invalid URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name(application_name);
    config.ssl_mode(match tls.mode {
        SslMode::Disable | SslMode::Allow => PgClientSslMode::Disable,
        SslMode::Prefer => PgClientSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgClientSslMode::Require,
    });
    let server = server_label(&config);
    let remote_host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => Some(host.clone()),
        _ => None,
    };
    if let Some(host) = &remote_host {
        tls.warn_if_unauthenticated(host, &server);
    }
    let connector = PgTlsConnector::new(tls.clone()).map_err(|e| ConnectError {
        server: server.clone(),
        reason: e.to_string(),
        retryable: false,
    })?;
    let connect_error = |e: tokio_postgres::Error| {
        if let Some(refused) = InsecurePasswordRequest::find(&e) {
            return ConnectError {
                server: server.clone(),
                reason: format!(
                    "{refused} ({}): whoever answers there would get the password. Use sslmode=verify-full with \
                     sslrootcert, switch the login to scram-sha-256 in pg_hba.conf, or accept the risk with \
                     allow_insecure_password=true in the URL",
                    tls.describe()
                ),
                retryable: false,
            };
        }
        let mut reason = scrub(&crate::error_policy::pg_error_text(&e), url);
        if reason.contains("server does not support TLS") {
            reason = format!(
                "the server does not support TLS but {} (enable ssl on the server, or use sslmode=prefer)",
                tls.describe()
            );
        }
        // By code: a wrong password or a refused certificate stays wrong
        // until someone changes the server or the URL.
        let retryable = crate::error_policy::postgres_login(&e).is_transient();
        ConnectError { server: server.clone(), reason, retryable }
    };
    // A server reached over the network whose certificate is not verified
    // could be anyone: never hand it a cleartext or MD5 password.
    let guard = tls.verify() == Verify::Nothing
        && !allow_insecure_password
        && remote_host.as_deref().is_some_and(|h| password_guard == PasswordGuard::TreatAsRemote || !is_local(h));
    let client = if guard {
        let (client, connection) = connect_guarded(&config, connector.guarded()).await.map_err(|e| match e {
            GuardedConnectError::Socket(io) => {
                ConnectError { server: server.clone(), reason: scrub(&io.to_string(), url), retryable: true }
            }
            GuardedConnectError::Postgres(e) => connect_error(e),
        })?;
        spawn_driver(connection);
        client
    } else {
        let (client, connection) = config.connect(connector).await.map_err(connect_error)?;
        spawn_driver(connection);
        client
    };
    Ok(client)
}

fn spawn_driver<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection closed: {e}");
        }
    });
}

#[derive(Debug)]
enum GuardedConnectError {
    Socket(std::io::Error),
    Postgres(tokio_postgres::Error),
}

type GuardedConnection =
    tokio_postgres::Connection<Guarded<tokio::net::TcpStream>, super::tls::PgTlsStream<Guarded<tokio::net::TcpStream>>>;

/// tokio-postgres's connect, with the socket opened here so that it can be
/// wrapped in the password guard ([`super::auth_guard`]): each host in
/// turn, the URL's connect timeout, TCP_NODELAY and keepalives as
/// tokio-postgres sets them.
async fn connect_guarded(
    config: &Config,
    connector: PgTlsConnector,
) -> Result<(Client, GuardedConnection), GuardedConnectError> {
    use tokio_postgres::tls::MakeTlsConnect;
    let hosts = config.get_hosts();
    let ports = config.get_ports();
    let timeout = config.get_connect_timeout().copied().unwrap_or(Duration::from_secs(10));
    let mut connector = connector;
    let mut last = None;
    for (i, host) in hosts.iter().enumerate() {
        let tokio_postgres::config::Host::Tcp(name) = host else { continue };
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let socket = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((name.as_str(), port))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                last = Some(GuardedConnectError::Socket(e));
                continue;
            }
            Err(_) => {
                last = Some(GuardedConnectError::Socket(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer from {name}:{port} within {timeout:?}"),
                )));
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        if config.get_keepalives() {
            let keepalive = socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
            let _ = socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive);
        }
        let tls =
            <PgTlsConnector as MakeTlsConnect<Guarded<tokio::net::TcpStream>>>::make_tls_connect(&mut connector, name)
                .map_err(|e| GuardedConnectError::Socket(std::io::Error::other(e)))?;
        match config.connect_raw(Guarded::new(socket, AuthWatch::raw()), tls).await {
            Ok(pair) => return Ok(pair),
            Err(e) => last = Some(GuardedConnectError::Postgres(e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        GuardedConnectError::Socket(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the URL names no TCP host"))
    }))
}

fn scrub(text: &str, url: &SecretUrl) -> String {
    // The one scrubber (crate::secrets); this URL's password is registered
    // first in case the URL did not come from a loaded plan.
    for pw in [url.password(), url.query_password()].into_iter().flatten() {
        crate::secrets::register(&pw);
    }
    crate::secrets::scrub(text)
}
