//! Plain SQL connections (tokio-postgres) to a PostgreSQL server given by a
//! plan URL: catalog, COPY, validation and checks. The replication protocol
//! has its own connection in [`super::replication`].

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::SslMode as PgClientSslMode;
use tokio_postgres::{Client, Config};

use super::replication::tls::PgTlsConnector;
use super::replication::{take_tls_params, SslMode};
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
/// replication connection does (see [`super::replication::tls`]).
pub async fn connect(url: &SecretUrl, application_name: &str) -> Result<Client, ConnectError> {
    let invalid =
        |reason: String| ConnectError { server: url.redacted(), reason: scrub(&reason, url), retryable: false };
    // tokio-postgres knows neither verify-ca/verify-full nor sslrootcert: xdb handles them.
    let (rest, tls) = take_tls_params(url.expose()).map_err(|e| invalid(e.to_string()))?;
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
    if let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() {
        tls.warn_if_unauthenticated(host, &server);
    }
    let connector = PgTlsConnector::new(tls.clone()).map_err(|e| ConnectError {
        server: server.clone(),
        reason: e.to_string(),
        retryable: false,
    })?;
    let (client, connection) = config.connect(connector).await.map_err(|e| {
        let mut reason = scrub(&error_text(&e), url);
        if reason.contains("server does not support TLS") {
            reason = format!(
                "the server does not support TLS but {} (enable ssl on the server, or use sslmode=prefer)",
                tls.describe()
            );
        }
        // By code: a wrong password or a refused certificate stays wrong
        // until someone changes the server or the URL.
        let retryable = crate::error_policy::postgres(&e).is_transient();
        ConnectError { server: server.clone(), reason, retryable }
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection closed: {e}");
        }
    });
    Ok(client)
}

/// The whole message of a tokio-postgres error, including the server's
/// message and SQLSTATE, which `Display` alone hides for DbErrors.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(&format!("; detail: {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

fn scrub(text: &str, url: &SecretUrl) -> String {
    // The one scrubber (crate::secrets); this URL's password is registered
    // first in case the URL did not come from a loaded plan.
    for pw in [url.password(), url.query_password()].into_iter().flatten() {
        crate::secrets::register(&pw);
    }
    crate::secrets::scrub(text)
}
