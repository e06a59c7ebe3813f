//! Errors of the replication connection. None of them ever carries the
//! password: configuration errors name keys, not values, and server messages
//! come from PostgreSQL, which does not echo passwords.

use std::time::Duration;

/// Anything that went wrong on the walsender connection.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// Reading from or writing to the socket failed (including connection
    /// refused and the server closing the connection).
    #[error("{context} (PostgreSQL replication connection to {server}): {source}")]
    Io {
        /// `host:port` of the server.
        server: String,
        /// What xdb was doing.
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Connecting (TCP and authentication) took longer than `connect_timeout`.
    #[error("connecting to PostgreSQL at {server} for replication timed out after {after:?}")]
    Timeout { server: String, after: Duration },
    /// The server answered with an ErrorResponse.
    #[error("{}", server_text(.severity, .code, .message, .detail.as_deref(), .hint.as_deref()))]
    Server {
        /// Non-localized severity (`ERROR`, `FATAL`, `PANIC`).
        severity: String,
        /// SQLSTATE, e.g. `42710` (slot exists), `55006` (slot in use), `28P01` (wrong password).
        code: String,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    /// The server sent something the protocol does not allow here.
    #[error("replication protocol error: {0}")]
    Protocol(String),
    /// Authentication could not be carried out by xdb (no password, unsupported method, bad SCRAM proof).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The connection settings are invalid or ask for something unsupported.
    #[error("invalid replication connection settings: {0}")]
    Config(String),
    /// TLS negotiation failed.
    #[error("TLS: {0}")]
    Tls(String),
}

/// The settings and TLS errors shared with the SQL connection keep their
/// variants here (callers and tests match on `Tls`).
impl From<crate::pg_conn::PgConnError> for ReplicationError {
    fn from(e: crate::pg_conn::PgConnError) -> Self {
        match e {
            crate::pg_conn::PgConnError::Config(m) => ReplicationError::Config(m),
            crate::pg_conn::PgConnError::Tls(m) => ReplicationError::Tls(m),
        }
    }
}

fn server_text(severity: &str, code: &str, message: &str, detail: Option<&str>, hint: Option<&str>) -> String {
    let mut s = format!("PostgreSQL {severity} {code}: {message}");
    if let Some(d) = detail {
        s.push_str("; detail: ");
        s.push_str(d);
    }
    if let Some(h) = hint {
        s.push_str("; hint: ");
        s.push_str(h);
    }
    s
}

impl ReplicationError {
    /// True when reconnecting later may succeed: network trouble, server
    /// restarts, too many connections, a slot still held by a walsender that
    /// is exiting. False for configuration, authentication and protocol errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReplicationError::Io { .. } | ReplicationError::Timeout { .. } => true,
            ReplicationError::Server { code, .. } => {
                code.starts_with("08") // connection exception
                    || code.starts_with("53") // insufficient resources (too many connections, out of memory/disk)
                    || code.starts_with("57P") // admin/crash shutdown, cannot connect now
                    || code == "55006" // object in use: the slot's previous walsender has not exited yet
                    || code == "40001"
                    || code == "40P01"
            }
            ReplicationError::Protocol(_)
            | ReplicationError::Auth(_)
            | ReplicationError::Config(_)
            | ReplicationError::Tls(_) => false,
        }
    }

    /// The SQLSTATE of a server error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ReplicationError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn io(server: &str, context: impl Into<String>, source: std::io::Error) -> Self {
        ReplicationError::Io { server: server.to_string(), context: context.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_show_code_detail_and_hint() {
        let e = ReplicationError::Server {
            severity: "ERROR".into(),
            code: "42710".into(),
            message: "replication slot \"s\" already exists".into(),
            detail: Some("d".into()),
            hint: None,
        };
        assert_eq!(e.to_string(), "PostgreSQL ERROR 42710: replication slot \"s\" already exists; detail: d");
        assert_eq!(e.sqlstate(), Some("42710"));
        assert!(!e.is_retryable());
        let busy = ReplicationError::Server {
            severity: "ERROR".into(),
            code: "55006".into(),
            message: "in use".into(),
            detail: None,
            hint: None,
        };
        assert!(busy.is_retryable());
        let io = ReplicationError::io("h:1", "connecting", std::io::ErrorKind::ConnectionRefused.into());
        assert!(io.is_retryable() && io.to_string().contains("h:1"));
        assert!(!ReplicationError::Config("x".into()).is_retryable());
    }
}
