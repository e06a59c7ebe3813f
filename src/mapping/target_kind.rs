//! Which target a mapping is for, with what MySQL/MariaDB flavour and
//! version: the few places where the SQL differs (collations) read it.

use std::fmt;

use crate::plan::naming::SqlDialect;

/// MySQL or MariaDB: they share the protocol but not every feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MysqlFlavour {
    Mysql,
    Mariadb,
}

/// The kind of target database, as far as type mapping cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Mysql { flavour: MysqlFlavour, version: (u32, u32, u32) },
    Sqlite,
    Postgres,
}

impl TargetKind {
    /// A MySQL-family target from the server's `SELECT VERSION()` text:
    /// `10.11.6-MariaDB-0+deb12u1` is MariaDB 10.11.6, `8.4.3` is MySQL
    /// 8.4.3. The `5.5.5-` prefix old MariaDB servers put in the handshake is
    /// skipped. Missing parts read as 0.
    pub fn mysql_from_version_string(v: &str) -> TargetKind {
        let mariadb = v.to_ascii_lowercase().contains("mariadb");
        let v = if mariadb { v.strip_prefix("5.5.5-").unwrap_or(v) } else { v };
        let numeric: String = v.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let mut parts = numeric.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        let flavour = if mariadb { MysqlFlavour::Mariadb } else { MysqlFlavour::Mysql };
        TargetKind::Mysql { flavour, version }
    }

    /// The SQL dialect used for statements on this target.
    pub fn dialect(&self) -> SqlDialect {
        match self {
            TargetKind::Mysql { .. } => SqlDialect::Mysql,
            TargetKind::Sqlite => SqlDialect::Sqlite,
            TargetKind::Postgres => SqlDialect::Postgres,
        }
    }

    /// The rule-file `target:` name (`mysql`, `sqlite`, `postgres`).
    pub fn rule_target(&self) -> &'static str {
        match self {
            TargetKind::Mysql { .. } => "mysql",
            TargetKind::Sqlite => "sqlite",
            TargetKind::Postgres => "postgres",
        }
    }

    /// True for MySQL and MariaDB targets.
    pub fn is_mysql(&self) -> bool {
        matches!(self, TargetKind::Mysql { .. })
    }

    /// The utf8mb4 collation that compares like PostgreSQL's default
    /// (deterministic, byte-wise, trailing spaces significant): MariaDB's
    /// `utf8mb4_nopad_bin`, MySQL 8's `utf8mb4_0900_bin`. Older MySQL only has
    /// the PAD SPACE `utf8mb4_bin` (then 'a' and 'a ' collide as keys).
    pub fn mysql_collation(&self) -> &'static str {
        match self {
            TargetKind::Mysql { flavour: MysqlFlavour::Mariadb, version } if *version >= (10, 2, 0) => {
                "utf8mb4_nopad_bin"
            }
            TargetKind::Mysql { flavour: MysqlFlavour::Mysql, version } if *version >= (8, 0, 0) => "utf8mb4_0900_bin",
            _ => "utf8mb4_bin",
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetKind::Mysql { flavour: MysqlFlavour::Mysql, version: (a, b, c) } => write!(f, "MySQL {a}.{b}.{c}"),
            TargetKind::Mysql { flavour: MysqlFlavour::Mariadb, version: (a, b, c) } => {
                write!(f, "MariaDB {a}.{b}.{c}")
            }
            TargetKind::Sqlite => f.write_str("SQLite"),
            TargetKind::Postgres => f.write_str("PostgreSQL"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_versions() {
        assert_eq!(
            TargetKind::mysql_from_version_string("10.11.6-MariaDB-0+deb12u1"),
            TargetKind::Mysql { flavour: MysqlFlavour::Mariadb, version: (10, 11, 6) }
        );
        assert_eq!(
            TargetKind::mysql_from_version_string("5.5.5-10.6.2-MariaDB"),
            TargetKind::Mysql { flavour: MysqlFlavour::Mariadb, version: (10, 6, 2) }
        );
        let m = TargetKind::mysql_from_version_string("8.4.3");
        assert_eq!(m, TargetKind::Mysql { flavour: MysqlFlavour::Mysql, version: (8, 4, 3) });
        assert_eq!(m.mysql_collation(), "utf8mb4_0900_bin");
        assert_eq!(TargetKind::mysql_from_version_string("5.7.44-log").mysql_collation(), "utf8mb4_bin");
        assert_eq!(TargetKind::mysql_from_version_string("garbage").to_string(), "MySQL 0.0.0");
    }
}
