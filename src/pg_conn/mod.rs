//! Connections to a PostgreSQL server, shared by everything that opens one:
//! the source (catalog, snapshot, validation, the walsender connection in
//! `source::postgres::replication`) and the PostgreSQL target
//! (`sink::postgres`), so that neither end borrows the other's module.
//!
//! - [`params`]: the URL parameters only xdb understands (libpq's TLS
//!   settings, `allow_insecure_password`), taken out before a driver sees
//!   the URL.
//! - [`tls`]: TLS with libpq's `sslmode` meanings on rustls, for both the
//!   SQL and the replication connection.
//! - [`auth_guard`]: refuses a cleartext or MD5 password request from a
//!   server that is not authenticated.
//! - [`client`]: SQL connections (tokio-postgres) from a plan URL.

pub mod auth_guard;
pub mod client;
pub mod params;
pub mod tls;

pub use params::{take_tls_params, SslMode, XdbParams};
pub use tls::PgTls;

/// A connection setting xdb cannot use, or TLS that could not be set up.
/// Never carries the password: messages name keys and files, not values.
#[derive(Debug, thiserror::Error)]
pub enum PgConnError {
    #[error("invalid connection settings: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
}
