//! TLS for MySQL/MariaDB connections, set in the target URL the way the
//! `mysql` client's options read: `ssl-mode=DISABLED|PREFERRED|REQUIRED|
//! VERIFY_CA|VERIFY_IDENTITY` and `ssl-ca=/path/ca.pem` (underscored
//! spellings and any letter case accepted). mysql_async's own parameters
//! (`require_ssl`, `verify_ca`, `verify_identity`, `built_in_roots`) still
//! work when `ssl-mode` is absent.
//!
//! | ssl-mode          | encrypted         | certificate checked             |
//! |-------------------|-------------------|---------------------------------|
//! | `DISABLED`        | never             | —                               |
//! | `PREFERRED` (default) | if the server can | no                          |
//! | `REQUIRED`        | always            | no                              |
//! | `VERIFY_CA`       | always            | chain to `ssl-ca` (see below)   |
//! | `VERIFY_IDENTITY` | always            | chain and host name             |
//!
//! Without `ssl-ca` the verifying modes trust the Mozilla roots built into
//! mysql_async. mysql_async 0.37 cannot skip the host-name check with this
//! rustls (it looks for the text "NotValidForName" in an error that no longer
//! says so), so for `VERIFY_CA` a name mismatch is answered by reconnecting
//! with the expected name set to one the certificate presents: the chain is
//! verified again on that connection, so only a CA-signed certificate passes.

use std::path::Path;

use mysql_async::{Opts, OptsBuilder, SslOpts};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::error_policy::{self, Retry};
use crate::plan::SecretUrl;

/// The `ssl-mode` of a MySQL URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlSslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl MysqlSslMode {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "DISABLED" => MysqlSslMode::Disabled,
            "PREFERRED" => MysqlSslMode::Preferred,
            "REQUIRED" => MysqlSslMode::Required,
            "VERIFY_CA" => MysqlSslMode::VerifyCa,
            "VERIFY_IDENTITY" => MysqlSslMode::VerifyIdentity,
            _ => {
                return Err(format!(
                    "unknown ssl-mode {s:?}: expected DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY"
                ))
            }
        })
    }

    /// The MySQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MysqlSslMode::Disabled => "DISABLED",
            MysqlSslMode::Preferred => "PREFERRED",
            MysqlSslMode::Required => "REQUIRED",
            MysqlSslMode::VerifyCa => "VERIFY_CA",
            MysqlSslMode::VerifyIdentity => "VERIFY_IDENTITY",
        }
    }
}

/// The TLS settings taken from a MySQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlTls {
    /// `None`: the URL used mysql_async's own TLS parameters, left as they are.
    pub mode: Option<MysqlSslMode>,
    /// `ssl-ca` as written.
    pub ca: Option<String>,
}

impl MysqlTls {
    /// `ssl-mode=…[, ssl-ca=…]`, for messages.
    pub fn describe(&self) -> String {
        let mode = self.mode.map_or("(mysql_async parameters)", MysqlSslMode::as_str);
        match &self.ca {
            Some(ca) => format!("ssl-mode={mode}, ssl-ca={ca}"),
            None => format!("ssl-mode={mode}"),
        }
    }
}

/// Parses a `mysql://` URL into mysql_async options with TLS set from
/// `ssl-mode` / `ssl-ca` (the CA file is read here, so a bad path is reported
/// before any connection). Errors never contain the password.
pub fn opts_from_url(url: &SecretUrl) -> Result<(Opts, MysqlTls), String> {
    if let Some(p) = url.password() {
        crate::secrets::register(&p);
    }
    let scrub = |text: String| crate::secrets::scrub(&text);
    let (rest, mode, ca, identity) = take_tls_params(url.expose()).map_err(scrub)?;
    let opts = Opts::from_url(&rest).map_err(|e| scrub(e.to_string()))?;
    let mode = match mode {
        Some(m) => Some(m),
        None if opts.ssl_opts().is_some() => None,
        None => Some(MysqlSslMode::Preferred),
    };
    let tls = MysqlTls { mode, ca };
    let Some(mode) = tls.mode else { return Ok((opts, tls)) };
    let ssl = match mode {
        MysqlSslMode::Disabled => None,
        // Encrypt without checking who answers (MySQL's own meaning of these
        // modes): protects against eavesdropping, not against a man in the middle.
        MysqlSslMode::Preferred | MysqlSslMode::Required => {
            let server = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
            let local = crate::net::is_local(opts.ip_or_hostname());
            if !local && crate::net::first_warning(&format!("mysql {server}")) {
                tracing::warn!(
                    "the MySQL/MariaDB server at {server} is not authenticated (ssl-mode={}): its certificate is not \
                     checked; use ssl-mode=VERIFY_IDENTITY&ssl-ca=/path/ca.pem",
                    mode.as_str()
                );
            }
            Some(SslOpts::default().with_danger_accept_invalid_certs(true))
        }
        MysqlSslMode::VerifyCa | MysqlSslMode::VerifyIdentity => {
            let mut ssl = SslOpts::default().with_danger_skip_domain_validation(mode == MysqlSslMode::VerifyCa);
            if let Some(ca) = &tls.ca {
                // Only the given CA: the built-in public roots must not vouch for a private server.
                ssl = ssl.with_root_certs(vec![read_ca(Path::new(ca))?.into()]).with_disable_built_in_roots(true);
            }
            Some(ssl)
        }
    };
    // ssl-cert / ssl-key: the client's certificate for REQUIRE X509 /
    // SUBJECT users; mysql_async reads the PEM files at connect time.
    let ssl = match (ssl, identity) {
        (Some(ssl), Some((cert, key))) => Some(ssl.with_client_identity(Some(mysql_async::ClientIdentity::new(
            std::path::PathBuf::from(cert).into(),
            std::path::PathBuf::from(key).into(),
        )))),
        (None, Some(_)) => return Err("ssl-cert/ssl-key need TLS, but ssl-mode=DISABLED".into()),
        (ssl, None) => ssl,
    };
    Ok((OptsBuilder::from_opts(opts).ssl_opts(ssl).into(), tls))
}

fn read_ca(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read ssl-ca {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem).filter(Result::is_ok).count();
    if certs == 0 {
        return Err(format!("ssl-ca {shown} holds no PEM certificate"));
    }
    Ok(pem)
}

/// `ssl-cert` and `ssl-key`, both given.
type ClientCert = Option<(String, String)>;

/// Takes `ssl-mode`, `ssl-ca`, `ssl-cert` and `ssl-key` out of the URL's
/// query (mysql_async rejects unknown parameters).
fn take_tls_params(url: &str) -> Result<(String, Option<MysqlSslMode>, Option<String>, ClientCert), String> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), None, None, None)) };
    let (mut mode, mut ca, mut cert, mut key) = (None, None, None, None);
    let mut kept = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k.to_ascii_lowercase().replace('_', "-").as_str() {
            "ssl-mode" => mode = Some(MysqlSslMode::parse(&percent_decode(v)?)?),
            "ssl-ca" => ca = Some(percent_decode(v)?).filter(|c| !c.is_empty()),
            "ssl-cert" => cert = Some(percent_decode(v)?).filter(|c| !c.is_empty()),
            "ssl-key" => key = Some(percent_decode(v)?).filter(|c| !c.is_empty()),
            _ => kept.push(kv),
        }
    }
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => return Err("ssl-cert is given without ssl-key: add ssl-key=/path/client.key".into()),
        (None, Some(_)) => return Err("ssl-key is given without ssl-cert: add ssl-cert=/path/client.pem".into()),
    };
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, mode, ca, identity))
}

fn percent_decode(s: &str) -> Result<String, String> {
    crate::plan::percent_decode_strict(s).map_err(|why| format!("a TLS parameter of the URL: {why}"))
}

/// Connecting to MySQL/MariaDB failed: the reason for people, the retry
/// decision from the driver's error.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct MysqlConnectError {
    pub reason: String,
    pub retry: Retry,
}

/// Connects with `opts` (from [`opts_from_url`], possibly extended). With
/// `PREFERRED`, a server without TLS gets a second, plaintext attempt, as the
/// `mysql` client does. Errors explain TLS failures (mode, CA, server).
pub async fn connect(opts: impl Into<Opts>, tls: &MysqlTls) -> Result<mysql_async::Conn, MysqlConnectError> {
    let opts: Opts = opts.into();
    let fail = |e: &mysql_async::Error, reason: String| MysqlConnectError { reason, retry: error_policy::mysql(e) };
    let server = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
    match mysql_async::Conn::new(opts.clone()).await {
        Ok(c) => Ok(c),
        Err(mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)) => {
            if tls.mode == Some(MysqlSslMode::Preferred) {
                let plain = OptsBuilder::from_opts(opts).ssl_opts(None::<SslOpts>);
                return mysql_async::Conn::new(plain).await.map_err(|e| fail(&e, e.to_string()));
            }
            Err(MysqlConnectError {
                retry: Retry::Fatal,
                reason: format!(
                    "the server at {server} does not support TLS but {} (start it with --ssl-cert, --ssl-key and \
                 --ssl-ca, or use ssl-mode=PREFERRED)",
                    tls.describe()
                ),
            })
        }
        Err(e) => match verify_ca_retry_name(&e, tls) {
            Some(name) => {
                let ssl = opts.ssl_opts().cloned().map(|s| s.with_danger_tls_hostname_override(Some(name)));
                let retry = OptsBuilder::from_opts(opts).ssl_opts(ssl);
                mysql_async::Conn::new(retry).await.map_err(|e| fail(&e, describe_error(&e, tls, &server)))
            }
            None => Err(fail(&e, describe_error(&e, tls, &server))),
        },
    }
}

/// For `VERIFY_CA` refused only for its host name: a name the certificate
/// does present (from rustls' error context), to check the chain against.
fn verify_ca_retry_name(e: &mysql_async::Error, tls: &MysqlTls) -> Option<String> {
    if tls.mode != Some(MysqlSslMode::VerifyCa) {
        return None;
    }
    let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { presented, .. })) =
        find_rustls_error(e)
    else {
        return None;
    };
    presented.iter().find_map(|p| usable_name(p))
}

/// webpki lists presented names as `DnsName("db.example")` / `IpAddress(10.0.0.1)`.
/// Anything else (or a format change) yields nothing, and the connection fails closed.
fn usable_name(presented: &str) -> Option<String> {
    if let Some(dns) = presented.strip_prefix("DnsName(\"").and_then(|r| r.strip_suffix("\")")) {
        // A wildcard covers any single label.
        let name = match dns.strip_prefix("*.") {
            Some(rest) => format!("xdb.{rest}"),
            None => dns.to_string(),
        };
        return rustls::pki_types::ServerName::try_from(name.as_str()).is_ok().then_some(name);
    }
    let ip = presented.strip_prefix("IpAddress(")?.strip_suffix(')')?;
    ip.parse::<std::net::IpAddr>().ok().map(|_| ip.to_string())
}

/// A connection error in words; TLS failures name the server, the mode and the CA.
fn describe_error(e: &mysql_async::Error, tls: &MysqlTls, server: &str) -> String {
    let Some(rustls_err) = find_rustls_error(e) else { return e.to_string() };
    let ca = tls.ca.as_deref().unwrap_or("the built-in roots");
    let what = match rustls_err {
        rustls::Error::InvalidCertificate(c) => match c {
            rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature => {
                format!("the server's certificate is not signed by a CA in {ca}")
            }
            rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's certificate is not valid for host {:?} (VERIFY_IDENTITY compares the URL's host \
                     with the certificate's names; use that name or ssl-mode=VERIFY_CA): {c}",
                    server.rsplit_once(':').map_or(server, |(h, _)| h)
                )
            }
            other => format!("the server's certificate was rejected: {other}"),
        },
        other => other.to_string(),
    };
    format!("TLS handshake with MySQL at {server} failed ({}): {what}", tls.describe())
}

fn find_rustls_error(e: &mysql_async::Error) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(r);
            }
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_ssl_params_out_of_the_url() {
        let (rest, mode, ca, _) =
            take_tls_params("mysql://u:p@h:3306/db?ssl-mode=verify_ca&ssl_ca=%2Fetc%2Fca.pem&pool_min=1").unwrap();
        assert_eq!(rest, "mysql://u:p@h:3306/db?pool_min=1");
        assert_eq!(mode, Some(MysqlSslMode::VerifyCa));
        assert_eq!(ca.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(take_tls_params("mysql://h/db").unwrap(), ("mysql://h/db".into(), None, None, None));
        let (_, _, _, id) = take_tls_params("mysql://h/db?ssl-cert=/c.pem&ssl-key=/c.key").unwrap();
        assert_eq!(id, Some(("/c.pem".into(), "/c.key".into())));
        assert!(take_tls_params("mysql://h/db?ssl-cert=/c.pem").is_err());
        assert!(take_tls_params("mysql://h/db?ssl-mode=sometimes").is_err());
    }

    #[test]
    fn names_from_webpki_context() {
        assert_eq!(usable_name("DnsName(\"db.example\")").as_deref(), Some("db.example"));
        assert_eq!(usable_name("DnsName(\"*.example.com\")").as_deref(), Some("xdb.example.com"));
        assert_eq!(usable_name("IpAddress(127.0.0.1)").as_deref(), Some("127.0.0.1"));
        assert_eq!(usable_name("DirectoryName"), None);
        assert_eq!(usable_name("DnsName(\"bad name\")"), None);
    }

    #[test]
    fn builds_ssl_opts_per_mode() {
        let url = |q: &str| SecretUrl::new(format!("mysql://u:hunter2@127.0.0.1:3306/db{q}"));
        let (o, t) = opts_from_url(&url("")).unwrap();
        assert_eq!(t.mode, Some(MysqlSslMode::Preferred));
        assert!(o.ssl_opts().is_some_and(|s| s.accept_invalid_certs()));
        let (o, _) = opts_from_url(&url("?ssl-mode=DISABLED")).unwrap();
        assert!(o.ssl_opts().is_none());
        let (o, t) = opts_from_url(&url("?require_ssl=true")).unwrap();
        assert!(t.mode.is_none() && o.ssl_opts().is_some_and(|s| !s.accept_invalid_certs()));
        let (o, _) = opts_from_url(&url("?ssl-mode=VERIFY_IDENTITY")).unwrap();
        let s = o.ssl_opts().unwrap();
        assert!(!s.accept_invalid_certs() && !s.skip_domain_validation() && !s.disable_built_in_roots());
        let e = opts_from_url(&url("?ssl-mode=VERIFY_CA&ssl-ca=/nonexistent/ca.pem")).unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem") && !e.contains("hunter2"), "{e}");
        let e = opts_from_url(&url("?ssl-mode=bogus")).unwrap_err();
        assert!(e.contains("bogus") && !e.contains("hunter2"), "{e}");
    }
}
