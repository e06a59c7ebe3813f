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
