//! Which PostgreSQL database a connection reaches, independent of how the
//! URL spells it: the cluster's `system_identifier` (pg_control_system(),
//! fixed at initdb, copied by physical replicas and restored base backups)
//! plus the database name. Two URLs with the same identity are the same
//! database — `localhost` and `127.0.0.1`, a DNS alias, a pooler in front.
//!
//! Used to key local state (the cutover journal and its freeze record) and
//! to refuse a plan whose target is its own source.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::plan::{SecretUrl, TargetUrl};

/// A PostgreSQL database, identified by its cluster and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceIdentity {
    /// `pg_control_system().system_identifier`, as decimal text (a u64
    /// does not fit PostgreSQL's bigint, and text compares exactly).
    pub system_identifier: String,
    pub database: String,
}

impl fmt::Display for SourceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "database {} on PostgreSQL system {}", self.database, self.system_identifier)
    }
}

/// Reads the identity of the database `c` is connected to.
pub async fn read(c: &tokio_postgres::Client) -> Result<SourceIdentity, tokio_postgres::Error> {
    let row =
        c.query_one("SELECT system_identifier::text, current_database()::text FROM pg_control_system()", &[]).await?;
    Ok(SourceIdentity { system_identifier: row.get(0), database: row.get(1) })
}

/// The identity of a URL's database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Connect(#[from] crate::pg_conn::client::ConnectError),
    #[error("reading the identity of {server} (pg_control_system()): {}", crate::error_policy::pg_error_text(.source))]
    Query {
        server: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl IdentityError {
    /// True when a later attempt may succeed (the server is away for a
    /// while), by code: [`crate::error_policy`].
    pub fn is_retryable(&self) -> bool {
        match self {
            IdentityError::Connect(e) => e.retryable,
            IdentityError::Query { source, .. } => crate::error_policy::postgres(source).is_transient(),
        }
    }
}

/// Connects to `url` and reads its identity.
pub async fn of_url(url: &SecretUrl) -> Result<SourceIdentity, IdentityError> {
    let c = crate::pg_conn::client::connect(url, "xdb identity").await?;
    read(&c).await.map_err(|source| IdentityError::Query { server: url.redacted(), source })
}

/// The identity of the plan's target when it is a PostgreSQL database
/// (`None` for other target kinds, which can never be the source).
pub async fn target_identity(target: &TargetUrl) -> Result<Option<SourceIdentity>, IdentityError> {
    match target {
        TargetUrl::Postgres(url) => of_url(url).await.map(Some),
        TargetUrl::Mysql(_) | TargetUrl::Sqlite(_) | TargetUrl::Nats(_) => Ok(None),
    }
}

/// The plan's target is the source database itself: replicating into it
/// would create the slot, publication and `xdb` schema in the source and
/// then apply every change onto itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the target is the source: target.url reaches {0}, the very database the plan replicates from \
     (compared by the server's system identifier and database name, not by URL); point target.url at \
     another database"
)]
pub struct TargetIsSource(pub SourceIdentity);

/// `Err` when the plan's target is the database `source` identifies.
pub async fn refuse_target_is_source(source: &SourceIdentity, target: &TargetUrl) -> Result<(), TargetCheckError> {
    match target_identity(target).await? {
        Some(t) if t == *source => Err(TargetIsSource(t).into()),
        _ => Ok(()),
    }
}

/// [`refuse_target_is_source`] failed: the target is the source, or its
/// identity could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TargetCheckError {
    #[error(transparent)]
    Same(#[from] TargetIsSource),
    #[error("target: {0}")]
    Identity(#[from] IdentityError),
}

impl TargetCheckError {
    /// The target being the source is for good; not reaching it may not be.
    pub fn is_retryable(&self) -> bool {
        match self {
            TargetCheckError::Same(_) => false,
            TargetCheckError::Identity(e) => e.is_retryable(),
        }
    }
}
