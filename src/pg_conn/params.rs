//! The connection parameters only xdb understands, taken out of a
//! PostgreSQL URL or conninfo string before a driver sees it: libpq's TLS
//! settings (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`), which
//! tokio-postgres knows only in part, and xdb's `allow_insecure_password`.
//! One reading for both connections (SQL and replication). Errors never
//! show the password.

use super::tls::PgTls;
use super::PgConnError;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub(crate) fn parse(s: &str) -> Result<SslMode, PgConnError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(PgConnError::Config(format!(
                    "unknown sslmode {other:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// True when a plaintext connection is not acceptable.
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// What [`take_tls_params`] takes out of a URL: the parameters only xdb
/// understands, and the rest of the text for tokio-postgres.
#[derive(Debug)]
pub struct XdbParams {
    /// The URL or conninfo without them, everything else as written.
    pub rest: String,
    pub tls: PgTls,
    /// `allow_insecure_password=true`: send a cleartext or MD5 password to a
    /// server that is not authenticated (see the replication connection's `ReplicationConfig`).
    pub allow_insecure_password: bool,
}

/// Takes libpq's TLS settings (`sslmode`, `sslrootcert`, `sslcert`,
/// `sslkey`) and xdb's `allow_insecure_password` out of a URL or conninfo
/// string, for clients such as tokio-postgres that only know
/// `disable`/`prefer`/`require` and no `sslrootcert`. Errors never show the
/// password.
pub fn take_tls_params(text: &str) -> Result<XdbParams, PgConnError> {
    let text = text.trim();
    let mut allow_insecure = None;
    let mut mode = None;
    let mut root_cert = None;
    let (mut cert, mut key) = (None, None);
    let lower = text.get(..14).unwrap_or(text).to_ascii_lowercase();
    let rest = if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let Some((base, query)) = text.split_once('?') else {
            return Ok(XdbParams {
                rest: text.to_string(),
                tls: PgTls { mode: SslMode::Prefer, root_cert: None, client_cert: None },
                allow_insecure_password: false,
            });
        };
        let mut kept = Vec::new();
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match decode(k, "parameter name")?.as_str() {
                "sslmode" => mode = Some(decode(v, "parameter value")?),
                "sslrootcert" => root_cert = Some(decode(v, "parameter value")?),
                "sslcert" => cert = Some(decode(v, "parameter value")?),
                "sslkey" => key = Some(decode(v, "parameter value")?),
                "allow_insecure_password" => allow_insecure = Some(decode(v, "parameter value")?),
                _ => kept.push(kv),
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = Vec::new();
        for (k, v) in conninfo_pairs(text)? {
            match k.as_str() {
                "sslmode" => mode = Some(v),
                "sslrootcert" => root_cert = Some(v),
                "sslcert" => cert = Some(v),
                "sslkey" => key = Some(v),
                "allow_insecure_password" => allow_insecure = Some(v),
                _ => kept.push(format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))),
            }
        }
        kept.join(" ")
    };
    let mode = match mode.filter(|m| !m.is_empty()) {
        Some(m) => SslMode::parse(&m)?,
        None => SslMode::Prefer,
    };
    let client_cert = client_cert_pair(cert, key)?;
    Ok(XdbParams {
        rest,
        tls: PgTls { mode, root_cert: root_cert.filter(|r| !r.is_empty()), client_cert },
        allow_insecure_password: parse_allow_insecure(allow_insecure.as_deref())?,
    })
}

/// `allow_insecure_password`'s values, one rule for both connections.
pub(crate) fn parse_allow_insecure(value: Option<&str>) -> Result<bool, PgConnError> {
    match value {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(PgConnError::Config(format!("allow_insecure_password={other:?}: expected true or false"))),
    }
}

/// `sslcert` and `sslkey` go together: one without the other is a mistake
/// worth stopping on (libpq would silently skip the certificate).
pub(crate) fn client_cert_pair(
    cert: Option<String>,
    key: Option<String>,
) -> Result<Option<(String, String)>, PgConnError> {
    match (cert.filter(|c| !c.is_empty()), key.filter(|k| !k.is_empty())) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err(PgConnError::Config("sslcert is given without sslkey: add sslkey=/path/client.key".into()))
        }
        (None, Some(_)) => {
            Err(PgConnError::Config("sslkey is given without sslcert: add sslcert=/path/client.pem".into()))
        }
    }
}

/// Percent-decoding; `what` names the part in errors (the value itself is never shown).
pub(crate) fn decode(s: &str, what: &str) -> Result<String, PgConnError> {
    crate::plan::percent_decode_strict(s).map_err(|why| PgConnError::Config(format!("the URL's {what}: {why}")))
}

/// The `key=value` pairs of a conninfo string, unquoted.
pub(crate) fn conninfo_pairs(text: &str) -> Result<Vec<(String, String)>, PgConnError> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(PgConnError::Config(format!("missing '=' after {key:?} in the connection string")));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(PgConnError::Config(format!("unterminated quoted value of {key:?}")));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_tls_params_out() {
        let XdbParams { rest, tls, allow_insecure_password } =
            take_tls_params("postgres://u:p@h:1/d?sslmode=verify-full&application_name=a&sslrootcert=%2Fca.pem")
                .unwrap();
        assert!(!allow_insecure_password);
        assert_eq!(rest, "postgres://u:p@h:1/d?application_name=a");
        assert_eq!((tls.mode, tls.root_cert.as_deref()), (SslMode::VerifyFull, Some("/ca.pem")));
        let XdbParams { rest, tls, .. } = take_tls_params("postgres://u@h/d?sslmode=require").unwrap();
        assert_eq!((rest.as_str(), tls.mode), ("postgres://u@h/d", SslMode::Require));
        assert_eq!(take_tls_params("postgres://u@h/d").unwrap().tls.mode, SslMode::Prefer);
        let XdbParams { rest, tls, .. } =
            take_tls_params("host=h password='a \\' b\\\\' sslmode=verify-ca sslrootcert=/c").unwrap();
        assert_eq!(rest, "host='h' password='a \\' b\\\\'");
        assert_eq!((tls.mode, tls.root_cert.as_deref()), (SslMode::VerifyCa, Some("/c")));
        let p = take_tls_params("postgres://u@h/d?allow_insecure_password=true&sslmode=disable").unwrap();
        assert!(p.allow_insecure_password && p.rest == "postgres://u@h/d");
        assert!(take_tls_params("host=h allow_insecure_password=1").unwrap().allow_insecure_password);
        assert!(take_tls_params("postgres://u@h/d?allow_insecure_password=maybe").is_err());
        let e = take_tls_params("postgres://u:hunter2@h/d?sslmode=bogus").unwrap_err().to_string();
        assert!(e.contains("bogus") && !e.contains("hunter2"), "{e}");
    }
}
