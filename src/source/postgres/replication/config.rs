//! Connection settings of the walsender connection, parsed from a
//! `postgres://` / `postgresql://` URL or a libpq `key=value` conninfo string.
//! Pure: no I/O apart from the `PGUSER`/`USER` fallback for a missing user.

use std::fmt;
use std::time::Duration;

use super::ReplicationError;
use crate::pg_conn::params::{client_cert_pair, conninfo_pairs, decode, parse_allow_insecure};
use crate::pg_conn::{PgTls, SslMode};
use crate::plan::SecretUrl;

/// Where and as whom the walsender connection logs in. `Debug` masks the password.
/// libpq's `channel_binding`: SCRAM-SHA-256-PLUS over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChannelBindingMode {
    Disable,
    /// Used when TLS is on and the server offers it (the default).
    #[default]
    Prefer,
    /// The login fails unless it was channel-bound.
    Require,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// Host name or IP address; a value starting with `/` is a Unix-socket directory.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub application_name: String,
    pub ssl_mode: SslMode,
    /// `sslrootcert`: PEM file of the CAs that verify the server (or `system`).
    pub ssl_root_cert: Option<String>,
    /// `None`: wait forever (libpq's `connect_timeout=0`).
    pub connect_timeout: Option<Duration>,
    /// Extra `options` from the URL, appended after xdb's own `-c` settings.
    pub options: Option<String>,
    /// `channel_binding`: SCRAM-SHA-256-PLUS when TLS is on.
    pub channel_binding: ChannelBindingMode,
    /// `sslcert` and `sslkey` (both or neither).
    pub ssl_client_cert: Option<(String, String)>,
    /// `allow_insecure_password=true` (xdb's own parameter): send a
    /// cleartext or MD5 password to a server that is not authenticated.
    pub allow_insecure_password: bool,
}

impl fmt::Debug for ReplicationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("connect_timeout", &self.connect_timeout)
            .field("options", &self.options)
            .finish()
    }
}

/// Settings collected before defaults are applied.
#[derive(Default)]
struct Parts {
    host: Option<String>,
    port: Option<String>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    application_name: Option<String>,
    fallback_application_name: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    connect_timeout: Option<String>,
    options: Option<String>,
    channel_binding: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
    allow_insecure_password: Option<String>,
}

/// libpq keys xdb accepts and ignores (they do not change what the walsender sees).
const IGNORED_KEYS: &[&str] = &[
    "client_encoding", // xdb always asks for UTF8
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "gssencmode",
    "krbsrvname",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslcompression",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requirepeer",
    "replication", // xdb always uses replication=database
];

impl Parts {
    fn set(&mut self, key: &str, value: String) -> Result<(), ReplicationError> {
        let slot = match key {
            "host" | "hostaddr" => &mut self.host,
            "port" => &mut self.port,
            "user" => &mut self.user,
            "password" => &mut self.password,
            "dbname" => &mut self.dbname,
            "application_name" => &mut self.application_name,
            "fallback_application_name" => &mut self.fallback_application_name,
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "connect_timeout" => &mut self.connect_timeout,
            "options" => &mut self.options,
            "allow_insecure_password" => &mut self.allow_insecure_password,
            "channel_binding" => &mut self.channel_binding,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            "sslpassword" => {
                return Err(ReplicationError::Config(
                    "sslpassword: encrypted client keys are not supported; give sslkey an unencrypted PEM key \
                     readable only by xdb's user"
                        .into(),
                ));
            }
            k if IGNORED_KEYS.contains(&k) => return Ok(()),
            other => {
                return Err(ReplicationError::Config(format!("unknown connection parameter {other:?}")));
            }
        };
        *slot = Some(value);
        Ok(())
    }

    fn finish(self) -> Result<ReplicationConfig, ReplicationError> {
        let host = self.host.filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into());
        if host.contains(',') {
            return Err(ReplicationError::Config(format!(
                "several hosts ({host}) are not supported for replication: give one"
            )));
        }
        let port = match self.port.filter(|p| !p.is_empty()) {
            None => 5432,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                ReplicationError::Config(format!("invalid port {p:?}: expected a number from 1 to 65535"))
            })?,
        };
        let user = match self.user.filter(|u| !u.is_empty()) {
            Some(u) => u,
            None => std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .map_err(|_| ReplicationError::Config("no user in the connection URL".into()))?,
        };
        let dbname = self.dbname.filter(|d| !d.is_empty()).unwrap_or_else(|| user.clone());
        let ssl_mode = match self.sslmode {
            Some(m) => SslMode::parse(&m)?,
            None => SslMode::Prefer,
        };
        let connect_timeout = match self.connect_timeout.filter(|t| !t.is_empty()) {
            None => Some(Duration::from_secs(10)),
            Some(t) => {
                let secs: i64 = t.trim().parse().map_err(|_| {
                    ReplicationError::Config(format!("invalid connect_timeout {t:?}: expected whole seconds"))
                })?;
                // libpq: zero or negative waits forever; anything else at least 2 s.
                (secs > 0).then(|| Duration::from_secs(secs.max(2) as u64))
            }
        };
        Ok(ReplicationConfig {
            host,
            port,
            user,
            password: self.password,
            dbname,
            application_name: self.application_name.or(self.fallback_application_name).unwrap_or_else(|| "xdb".into()),
            ssl_mode,
            ssl_root_cert: self.sslrootcert.filter(|r| !r.is_empty()),
            connect_timeout,
            options: self.options.filter(|o| !o.trim().is_empty()),
            ssl_client_cert: client_cert_pair(self.sslcert, self.sslkey)?,
            allow_insecure_password: parse_allow_insecure(self.allow_insecure_password.as_deref())?,
            channel_binding: match self.channel_binding.as_deref() {
                None | Some("") | Some("prefer") => ChannelBindingMode::Prefer,
                Some("disable") => ChannelBindingMode::Disable,
                Some("require") => ChannelBindingMode::Require,
                Some(other) => {
                    return Err(ReplicationError::Config(format!(
                        "unknown channel_binding {other:?}: expected disable, prefer or require"
                    )))
                }
            },
        })
    }
}

impl ReplicationConfig {
    /// Parses a `postgres://` or `postgresql://` URL (query parameters
    /// included, percent-decoded) or a `key=value` conninfo string.
    pub fn from_url(url: &SecretUrl) -> Result<Self, ReplicationError> {
        Self::parse(url.expose())
    }

    /// [`ReplicationConfig::from_url`] on plain text. Errors never contain the password.
    pub fn parse(text: &str) -> Result<Self, ReplicationError> {
        let text = text.trim();
        let lower = text.get(..14).unwrap_or(text).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            parse_url(text)?.finish()
        } else if text.contains("://") {
            Err(ReplicationError::Config(format!(
                "{} is not a PostgreSQL URL: expected postgres:// or postgresql://",
                SecretUrl::new(text).redacted()
            )))
        } else if text.contains('=') {
            parse_conninfo(text)?.finish()
        } else {
            Err(ReplicationError::Config("expected a postgres:// URL or a key=value connection string".into()))
        }
    }

    /// The TLS settings (`sslmode`, `sslrootcert`).
    pub fn tls(&self) -> PgTls {
        PgTls { mode: self.ssl_mode, root_cert: self.ssl_root_cert.clone(), client_cert: self.ssl_client_cert.clone() }
    }

    /// `host:port`, for messages.
    pub fn server_label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn parse_url(url: &str) -> Result<Parts, ReplicationError> {
    let (_, rest) = url.split_once("://").unwrap_or(("", url));
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let mut parts = Parts::default();
    // A password may contain '/' or '@' unescaped: the last '@' ends user-info.
    let host_and_path = match before_query.rfind('@') {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.split_once(':') {
                Some((u, p)) => {
                    parts.user = Some(decode(u, "user")?);
                    parts.password = Some(decode(p, "password")?);
                }
                None => parts.user = Some(decode(userinfo, "user")?),
            }
            &before_query[at + 1..]
        }
        None => before_query,
    };
    let (hostport, path) = match host_and_path.find('/') {
        Some(s) => (&host_and_path[..s], Some(&host_and_path[s + 1..])),
        None => (host_and_path, None),
    };
    if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) =
            v6.split_once(']').ok_or_else(|| ReplicationError::Config("unterminated '[' in the URL's host".into()))?;
        parts.host = Some(h.to_string());
        if let Some(p) = after.strip_prefix(':') {
            parts.port = Some(p.to_string());
        } else if !after.is_empty() {
            return Err(ReplicationError::Config(format!("unexpected {after:?} after the IPv6 host")));
        }
    } else if !hostport.is_empty() {
        match hostport.rsplit_once(':') {
            Some((h, p)) => {
                parts.host = Some(decode(h, "host")?);
                parts.port = Some(p.to_string());
            }
            None => parts.host = Some(decode(hostport, "host")?),
        }
    }
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        parts.dbname = Some(decode(p, "database name")?);
    }
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let key = decode(k, "parameter name")?;
        let what = if key == "password" { "password" } else { "parameter value" };
        parts.set(&key, decode(v, what)?)?;
    }
    Ok(parts)
}

/// libpq's `key=value key2='quoted \' value'` format.
fn parse_conninfo(text: &str) -> Result<Parts, ReplicationError> {
    let mut parts = Parts::default();
    for (key, value) in conninfo_pairs(text)? {
        parts.set(&key, value)?;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ReplicationConfig {
        ReplicationConfig::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_urls_with_params_and_percent_encoding() {
        let c = parse(
            "postgresql://rep%40l:p%40ss/w@rd@db.example:6543/my%20db?sslmode=disable&application_name=a%20b&connect_timeout=0",
        );
        assert_eq!(c.user, "rep@l");
        assert_eq!(c.password.as_deref(), Some("p@ss/w@rd"));
        assert_eq!((c.host.as_str(), c.port, c.dbname.as_str()), ("db.example", 6543, "my db"));
        assert_eq!(c.ssl_mode, SslMode::Disable);
        assert_eq!(c.application_name, "a b");
        assert_eq!(c.connect_timeout, None);
        let d = parse("postgres://u@[::1]/x");
        assert_eq!((d.host.as_str(), d.port, d.ssl_mode), ("::1", 5432, SslMode::Prefer));
        assert_eq!(d.server_label(), "[::1]:5432");
        assert_eq!(d.connect_timeout, Some(Duration::from_secs(10)));
        let e = parse("postgres://u@h?dbname=other&password=s3&port=7&connect_timeout=1");
        assert_eq!((e.dbname.as_str(), e.password.as_deref(), e.port), ("other", Some("s3"), 7));
        assert_eq!(e.connect_timeout, Some(Duration::from_secs(2)));
        let f = parse("postgres://u@%2Ftmp%2Fsock/db");
        assert_eq!(f.host, "/tmp/sock");
        assert_eq!(parse("postgres://u@h").dbname, "u");
    }

    #[test]
    fn parses_conninfo() {
        let c = parse("host=h port=1 user=u password='a \\' b' dbname = d sslmode=require");
        assert_eq!((c.host.as_str(), c.port, c.user.as_str(), c.dbname.as_str()), ("h", 1, "u", "d"));
        assert_eq!(c.password.as_deref(), Some("a ' b"));
        assert!(c.ssl_mode.requires_tls());
    }

    #[test]
    fn tls_settings_come_from_the_url() {
        let c = parse("postgres://u@h/d?sslmode=verify-ca&sslrootcert=/etc/ca.pem");
        assert_eq!(
            c.tls(),
            PgTls { mode: SslMode::VerifyCa, root_cert: Some("/etc/ca.pem".into()), client_cert: None }
        );
        let rest = crate::pg_conn::take_tls_params("host=h password='a \\' b\\\\' sslmode=verify-ca").unwrap().rest;
        assert_eq!(parse(&format!("{rest} user=u")).password.as_deref(), Some("a ' b\\"));
    }

    #[test]
    fn errors_and_debug_never_show_the_password() {
        let c = parse("postgres://u:hunter2@h/d");
        assert!(!format!("{c:?}").contains("hunter2"));
        for bad in [
            "postgres://u:hunter2@h:notaport/d",
            "postgres://u:hunter2@h/d?sslmode=sometimes",
            "postgres://u:hunter2@h/d?bogus=1",
            "postgres://u:hunter2%zz@h/d",
            "mysql://u:hunter2@h/d",
            "postgres://u:hunter2@h1,h2/d",
            "host=h password='hunter2",
        ] {
            let e = ReplicationConfig::parse(bad).expect_err(bad).to_string();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }
}
