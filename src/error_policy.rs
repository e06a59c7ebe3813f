//! Whether a failed operation is worth retrying, decided once, from the
//! error's code: SQLSTATE for PostgreSQL, the error number for
//! MySQL/MariaDB, the result code for SQLite, the kind for I/O errors.
//! Never from message text: a data error that happens to contain the word
//! "connection" (`Data too long for column 'connection_note'`) is a data
//! error, and a wrong password stays wrong however often it is tried.
//!
//! [`DriverError`] keeps the driver's own error as the source, so callers
//! add context as fields and the decision travels with the error.

use std::fmt;
use std::io::ErrorKind;

/// What to do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The server or the network is away for a while (restart, lost
    /// connection, lock timeout, deadlock): the same work may succeed later.
    Transient,
    /// Retrying cannot help (bad data, constraint, privilege, syntax,
    /// authentication): stop and say why.
    Fatal,
}

impl Retry {
    pub fn is_transient(self) -> bool {
        self == Retry::Transient
    }
}

/// PostgreSQL, by SQLSTATE class (see the PostgreSQL manual's appendix A).
pub fn sqlstate(code: &str) -> Retry {
    let transient = code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too many connections, disk full)
        || code.starts_with("57P") // admin/crash shutdown, cannot connect now
        || code == "55006" // object in use (a slot's previous walsender is still exiting)
        || code == "55P03" // lock not available
        || code == "40001" // serialization failure
        || code == "40P01" // deadlock detected
        || code == "58030"; // I/O error
    if transient {
        Retry::Transient
    } else {
        Retry::Fatal
    }
}

/// A tokio-postgres error: by SQLSTATE when the server sent one; a closed
/// connection or a socket error is transient; anything else (a type that
/// does not convert, a protocol surprise) is not.
pub fn postgres(e: &tokio_postgres::Error) -> Retry {
    if let Some(code) = e.code() {
        return sqlstate(code.code());
    }
    if e.is_closed() {
        return Retry::Transient;
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return io_kind(io.kind());
        }
        src = inner.source();
    }
    Retry::Fatal
}

/// A tokio-postgres error while logging in: as [`postgres`], except that
/// SQLSTATE 55000 is transient here. At login the server sends it for one
/// thing, a database whose connections an administrator has switched off
/// for a while (`ALTER DATABASE … ALLOW_CONNECTIONS false`, a maintenance
/// window); after login the same code means a missing prerequisite
/// (`wal_level`), which no retry fixes.
pub fn postgres_login(e: &tokio_postgres::Error) -> Retry {
    match e.code() {
        Some(code) if code.code() == "55000" => Retry::Transient,
        _ => postgres(e),
    }
}

/// MySQL/MariaDB server error numbers that mean "try again later".
const MYSQL_TRANSIENT: &[u16] = &[
    1040, // ER_CON_COUNT_ERROR: too many connections
    1053, // ER_SERVER_SHUTDOWN
    1077, // ER_NORMAL_SHUTDOWN
    1152, // ER_ABORTING_CONNECTION
    1158, // ER_NET_READ_ERROR
    1159, // ER_NET_READ_INTERRUPTED
    1160, // ER_NET_ERROR_ON_WRITE
    1161, // ER_NET_WRITE_INTERRUPTED
    1205, // ER_LOCK_WAIT_TIMEOUT
    1213, // ER_LOCK_DEADLOCK
    1927, // ER_CONNECTION_KILLED (MariaDB)
    2002, // CR_CONNECTION_ERROR
    2003, // CR_CONN_HOST_ERROR
    2006, // CR_SERVER_GONE_ERROR
    2013, // CR_SERVER_LOST
];

/// A mysql_async error: by error number when the server sent one; socket
/// errors and a closed connection are transient; TLS, URL and conversion
/// errors are not.
pub fn mysql(e: &mysql_async::Error) -> Retry {
    match e {
        mysql_async::Error::Server(s) if MYSQL_TRANSIENT.contains(&s.code) => Retry::Transient,
        mysql_async::Error::Server(_) => Retry::Fatal,
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io_kind(io.kind()),
        mysql_async::Error::Io(mysql_async::IoError::Tls(_)) => Retry::Fatal,
        mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed)
        | mysql_async::Error::Driver(mysql_async::DriverError::PoolDisconnected) => Retry::Transient,
        _ => Retry::Fatal,
    }
}

/// A rusqlite error: a busy or locked database and I/O failures are
/// transient; constraints, types and everything else are not.
pub fn sqlite(e: &rusqlite::Error) -> Retry {
    use rusqlite::ffi::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::SystemIoFailure) => Retry::Transient,
        _ => Retry::Fatal,
    }
}

/// An I/O error: the network kinds are transient.
pub fn io_kind(kind: ErrorKind) -> Retry {
    match kind {
        ErrorKind::ConnectionRefused
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::NotConnected
        | ErrorKind::BrokenPipe
        | ErrorKind::TimedOut
        | ErrorKind::UnexpectedEof
        | ErrorKind::Interrupted
        | ErrorKind::WouldBlock
        | ErrorKind::AddrNotAvailable => Retry::Transient,
        _ => Retry::Fatal,
    }
}

/// A database driver's error, kept whole, with its retry decision.
#[derive(Debug)]
pub enum DriverError {
    Postgres(tokio_postgres::Error),
    Mysql(mysql_async::Error),
    Sqlite(rusqlite::Error),
}

impl DriverError {
    pub fn retry(&self) -> Retry {
        match self {
            DriverError::Postgres(e) => postgres(e),
            DriverError::Mysql(e) => mysql(e),
            DriverError::Sqlite(e) => sqlite(e),
        }
    }

    /// The statement named a column or table the database does not have
    /// (PostgreSQL 42703 / 42P01, MySQL 1054 / 1146). SQLite reports both
    /// as its generic SQLITE_ERROR, which says nothing more: `false`.
    pub fn is_missing_column_or_table(&self) -> bool {
        match self {
            DriverError::Postgres(e) => matches!(e.code().map(|c| c.code()), Some("42703" | "42P01")),
            DriverError::Mysql(mysql_async::Error::Server(s)) => matches!(s.code, 1054 | 1146),
            _ => false,
        }
    }

    /// The PostgreSQL SQLSTATE, MySQL error number or SQLite extended result
    /// code, for messages and tests.
    pub fn code(&self) -> Option<String> {
        match self {
            DriverError::Postgres(e) => e.code().map(|c| c.code().to_string()),
            DriverError::Mysql(mysql_async::Error::Server(s)) => Some(s.code.to_string()),
            DriverError::Mysql(_) => None,
            DriverError::Sqlite(e) => e.sqlite_error().map(|s| s.extended_code.to_string()),
        }
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Display alone hides the server's message, SQLSTATE and detail.
            DriverError::Postgres(e) => f.write_str(&crate::error_policy::pg_error_text(e)),
            DriverError::Mysql(e) => write!(f, "{e}"),
            DriverError::Sqlite(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DriverError::Postgres(e) => Some(e),
            DriverError::Mysql(e) => Some(e),
            DriverError::Sqlite(e) => Some(e),
        }
    }
}

impl From<tokio_postgres::Error> for DriverError {
    fn from(e: tokio_postgres::Error) -> Self {
        DriverError::Postgres(e)
    }
}

impl From<mysql_async::Error> for DriverError {
    fn from(e: mysql_async::Error) -> Self {
        DriverError::Mysql(e)
    }
}

impl From<rusqlite::Error> for DriverError {
    fn from(e: rusqlite::Error) -> Self {
        DriverError::Sqlite(e)
    }
}

/// A JetStream publish, by the client's error kind: a timeout, a broken
/// connection or a full ack window pass with a leader election or a
/// reconnect; a wrong last sequence means a message before this one was
/// not stored (lost with a failed node) and the publisher restarts from
/// the stream's tail. No stream for the subject is a configuration error.
pub fn nats_publish(kind: async_nats::jetstream::context::PublishErrorKind) -> Retry {
    use async_nats::jetstream::context::PublishErrorKind as K;
    match kind {
        K::TimedOut | K::BrokenPipe | K::MaxAckPending | K::WrongLastSequence | K::WrongLastMessageId | K::Other => {
            Retry::Transient
        }
        K::StreamNotFound => Retry::Fatal,
    }
}

/// Connecting to NATS, by kind: refused, unreachable or timed out is worth
/// another try; bad credentials, TLS setup or an unparsable address is not.
pub fn nats_connect(kind: async_nats::ConnectErrorKind) -> Retry {
    use async_nats::ConnectErrorKind as K;
    match kind {
        K::TimedOut | K::Io | K::Dns => Retry::Transient,
        _ => Retry::Fatal,
    }
}

/// The whole message of a tokio-postgres error, including the server's
/// message and SQLSTATE, which `Display` alone hides for DbErrors.
pub fn pg_error_text(e: &tokio_postgres::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        for code in ["08006", "08001", "57P01", "57P03", "53300", "40P01", "40001", "55006"] {
            assert_eq!(sqlstate(code), Retry::Transient, "{code}");
        }
        // Data, constraint, privilege, authentication, syntax: never retried.
        for code in ["22001", "22P02", "23505", "23503", "42501", "28P01", "28000", "42601", "42P01", "3D000"] {
            assert_eq!(sqlstate(code), Retry::Fatal, "{code}");
        }
    }

    #[test]
    fn mysql_numbers() {
        let server = |code: u16, message: &str| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: message.into(),
                state: "HY000".into(),
            })
        };
        // The reproduction from the field: the word "connection" in a data error.
        assert_eq!(mysql(&server(1406, "Data too long for column 'connection_note' at row 1")), Retry::Fatal);
        assert_eq!(mysql(&server(1062, "Duplicate entry '1' for key 'PRIMARY'")), Retry::Fatal);
        assert_eq!(mysql(&server(1045, "Access denied for user")), Retry::Fatal);
        assert_eq!(mysql(&server(1213, "Deadlock found")), Retry::Transient);
        assert_eq!(mysql(&server(1205, "Lock wait timeout exceeded")), Retry::Transient);
        assert_eq!(mysql(&server(1927, "Connection was killed")), Retry::Transient);
        let io = mysql_async::Error::Io(mysql_async::IoError::Io(ErrorKind::ConnectionReset.into()));
        assert_eq!(mysql(&io), Retry::Transient);
        assert_eq!(mysql(&mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed)), Retry::Transient);
    }

    #[test]
    fn sqlite_codes() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert_eq!(sqlite(&busy), Retry::Transient);
        let unique = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE),
            Some("UNIQUE constraint failed: t.connection".into()),
        );
        assert_eq!(sqlite(&unique), Retry::Fatal);
    }

    #[test]
    fn io_kinds() {
        assert_eq!(io_kind(ErrorKind::ConnectionRefused), Retry::Transient);
        assert_eq!(io_kind(ErrorKind::PermissionDenied), Retry::Fatal);
        assert_eq!(io_kind(ErrorKind::NotFound), Retry::Fatal);
    }
}
