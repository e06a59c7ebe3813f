//! TLS for xdb's PostgreSQL connections, with libpq's `sslmode` semantics,
//! on rustls with the ring provider. Used by the walsender connection (after
//! its SSLRequest) and, through [`PgTlsConnector`], by the tokio-postgres
//! client of catalog, COPY and checks, so both verify certificates alike.
//!
//! | sslmode       | encrypted          | certificate checked                      |
//! |---------------|--------------------|------------------------------------------|
//! | `disable`     | never              | —                                        |
//! | `allow`       | never (see below)  | —                                        |
//! | `prefer`      | if the server can  | no                                       |
//! | `require`     | always             | no; chain only when `sslrootcert` is set |
//! | `verify-ca`   | always             | chain to `sslrootcert`                   |
//! | `verify-full` | always             | chain and host name                      |
//!
//! `allow` (plaintext first, TLS only if the server insists) is treated as
//! plaintext: a server that insists on TLS is better served by `prefer`.
//! `sslrootcert=system` uses the operating system's CA store.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::auth_guard::{poll_read_watched, AuthWatch};
use super::{PgConnError, SslMode};
use crate::net::{first_warning, is_local};

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypt, accept any certificate (`prefer`, `require` without a CA).
    Nothing,
    /// The chain must lead to a trusted CA; the host name is not compared.
    Chain,
    /// Chain and host name (`verify-full`).
    Full,
}

/// The TLS settings of one PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted CAs, or `system`.
    pub root_cert: Option<String>,
    /// `sslcert` / `sslkey`: the client's certificate (chain) and private
    /// key, PEM, for `cert` authentication in pg_hba.conf.
    pub client_cert: Option<(String, String)>,
}

impl PgTls {
    /// True when xdb asks the server for TLS at all.
    pub fn attempts_tls(&self) -> bool {
        !matches!(self.mode, SslMode::Disable | SslMode::Allow)
    }

    /// What is verified, libpq's way: `require` with an explicit `sslrootcert` verifies the chain.
    pub fn verify(&self) -> Verify {
        match self.mode {
            SslMode::VerifyFull => Verify::Full,
            SslMode::VerifyCa => Verify::Chain,
            SslMode::Require if self.root_cert.is_some() => Verify::Chain,
            _ => Verify::Nothing,
        }
    }

    /// `sslmode=…[, sslrootcert=…]`, for messages.
    pub fn describe(&self) -> String {
        match &self.root_cert {
            Some(r) => format!("sslmode={}, sslrootcert={r}", self.mode.as_str()),
            None => format!("sslmode={}", self.mode.as_str()),
        }
    }

    /// The rustls configuration for these settings (reads the CA file).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, PgConnError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PgConnError::Tls(format!("TLS setup: {e}")))?;
        let verify = self.verify();
        let config = if verify == Verify::Nothing {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider.signature_verification_algorithms)))
        } else {
            let roots = Arc::new(self.root_store()?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| PgConnError::Tls(format!("TLS setup: {e}")))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(WebPki {
                inner: webpki,
                check_name: verify == Verify::Full,
            }))
        };
        let config = match &self.client_cert {
            None => config.with_no_client_auth(),
            Some((cert, key)) => {
                let (chain, key_der) = load_client_identity(cert, key)?;
                config.with_client_auth_cert(chain, key_der).map_err(|e| {
                    PgConnError::Tls(format!("sslcert={cert} / sslkey={key}: the key does not fit: {e}"))
                })?
            }
        };
        Ok(Arc::new(config))
    }

    /// Warns, once per server and process, that these settings do not
    /// authenticate the server: anyone on the path can present a
    /// certificate (or none) and read the password exchange's outcome and
    /// every row.
    /// Loopback and Unix sockets have no path to be in the middle of, so
    /// they get no warning (and local development no noise).
    pub fn warn_if_unauthenticated(&self, host: &str, server: &str) {
        if self.verify() != Verify::Nothing || is_local(host) {
            return;
        }
        // host:port, whichever client names it (the SQL one adds /db).
        let key = server.split('/').next().unwrap_or(server);
        if first_warning(key) {
            tracing::warn!(
                "the PostgreSQL server at {key} is not authenticated ({}): its certificate is not checked, so \
                 a machine in the middle would not be noticed; use sslmode=verify-full&sslrootcert=/path/ca.pem",
                self.describe()
            );
        }
    }

    fn root_store(&self) -> Result<RootCertStore, PgConnError> {
        let mut store = RootCertStore::empty();
        match self.root_cert.as_deref() {
            Some("system") => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(PgConnError::Tls(format!(
                        "sslrootcert=system, but no CA certificates were found in the system's store ({} errors)",
                        found.errors.len()
                    )));
                }
            }
            Some(path) => add_pem_file(&mut store, Path::new(path))?,
            None => {
                // libpq's default CA file; without it verification cannot work.
                let default = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt"));
                match default.filter(|p| p.is_file()) {
                    Some(p) => add_pem_file(&mut store, &p)?,
                    None => {
                        return Err(PgConnError::Tls(format!(
                            "sslmode={} needs the CA certificate to verify the server: add \
                             sslrootcert=/path/to/ca.pem (or sslrootcert=system for the system's CAs) to the URL",
                            self.mode.as_str()
                        )))
                    }
                }
            }
        }
        Ok(store)
    }

    /// The name the handshake presents (SNI) and, with `verify-full`, checks.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, PgConnError> {
        match ServerName::try_from(host.to_string()) {
            Ok(n) => Ok(n),
            Err(_) if self.verify() != Verify::Full => {
                // Nothing compares the name: any syntactically valid one will do.
                Ok(ServerName::try_from("postgres").expect("a valid DNS name"))
            }
            Err(e) => Err(PgConnError::Tls(format!(
                "host {host:?} is not a DNS name or IP address, so sslmode=verify-full cannot check it: {e}"
            ))),
        }
    }

    /// Performs the handshake over `stream` (the server has already answered 'S' to SSLRequest).
    pub async fn handshake<S>(
        &self,
        config: Arc<ClientConfig>,
        stream: S,
        host: &str,
        server: &str,
    ) -> Result<tokio_rustls::client::TlsStream<S>, PgConnError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.server_name(host)?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| PgConnError::Tls(self.handshake_error(&e, host, server)))
    }

    /// A handshake failure in words: which server, which check, what to do.
    pub fn handshake_error(&self, e: &io::Error, host: &str, server: &str) -> String {
        let rustls_err = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let ca = self.root_cert.as_deref().unwrap_or("the CA file");
        let what = match rustls_err {
            Some(rustls::Error::InvalidCertificate(c)) => match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    format!("the server's certificate is not signed by a CA in {ca}")
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    format!(
                        "the server's certificate is not valid for host {host:?} (sslmode=verify-full compares \
                         the URL's host with the certificate's names; use that name or sslmode=verify-ca)"
                    )
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "the server's certificate has expired".to_string()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "the server's certificate is not valid yet".to_string()
                }
                other => format!("the server's certificate was rejected: {other:?}"),
            },
            Some(other) => other.to_string(),
            None => e.to_string(),
        };
        format!("handshake with PostgreSQL at {server} failed ({}): {what}", self.describe())
    }
}

fn add_pem_file(store: &mut RootCertStore, path: &Path) -> Result<(), PgConnError> {
    let shown = path.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PgConnError::Tls(format!("cannot read the CA certificates in sslrootcert {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(PgConnError::Tls(format!("sslrootcert {shown} holds no PEM certificate")));
    }
    for c in certs {
        store.add(c).map_err(|e| PgConnError::Tls(format!("sslrootcert {shown}: unusable CA certificate: {e}")))?;
    }
    Ok(())
}

/// `sslmode=prefer` / `require` (without a CA): libpq encrypts but does not
/// check who is at the other end, so a certificate is accepted as it comes.
/// This protects against passive eavesdropping only; `verify-ca` and
/// `verify-full` are the modes that stop a man in the middle. The handshake
/// signatures are still verified so the session keys belong to the presented key.
#[derive(Debug)]
struct AcceptAnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The WebPKI verifier; for `verify-ca` a name mismatch is forgiven. webpki
/// checks the chain before the name, so a name error means the chain was good.
#[derive(Debug)]
struct WebPki {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for WebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// tokio-postgres' TLS hook on the same configuration: the plain SQL client
/// verifies the server exactly as the replication connection does.
#[derive(Clone)]
pub struct PgTlsConnector {
    tls: PgTls,
    config: Arc<ClientConfig>,
    /// Watch the TLS stream for cleartext/MD5 password requests
    /// (`crate::pg_conn::auth_guard`).
    guard: bool,
}

impl PgTlsConnector {
    /// Builds the connector (reads the CA file once).
    pub fn new(tls: PgTls) -> Result<Self, PgConnError> {
        let config = tls.client_config()?;
        Ok(PgTlsConnector { tls, config, guard: false })
    }

    /// The same, refusing cleartext and MD5 password requests inside TLS.
    pub fn guarded(mut self) -> Self {
        self.guard = true;
        self
    }
}

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for PgTlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, io::Error> {
        Ok(PgTlsConnect {
            tls: self.tls.clone(),
            config: self.config.clone(),
            host: domain.to_string(),
            guard: self.guard,
        })
    }
}

/// One handshake of [`PgTlsConnector`].
pub struct PgTlsConnect {
    tls: PgTls,
    config: Arc<ClientConfig>,
    host: String,
    guard: bool,
}

type HandshakeFuture<S> = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

impl<S> tokio_postgres::tls::TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = HandshakeFuture<S>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let PgTlsConnect { tls, config, host, guard } = self;
            let watch = guard.then(AuthWatch::messages);
            tls.handshake(config, stream, &host, &host).await.map(|s| PgTlsStream(s, watch)).map_err(|e| match e {
                // tokio-postgres says "error performing TLS handshake" itself.
                PgConnError::Tls(text) => io::Error::other(text),
                other => io::Error::other(other.to_string()),
            })
        })
    }
}

/// A TLS stream for tokio-postgres, with the password guard when asked.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>, Option<AuthWatch>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        poll_read_watched(Pin::new(&mut this.0), this.1.as_mut(), cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        // SCRAM-SHA-256-PLUS binds the password exchange to this TLS session,
        // so a man in the middle that terminated TLS cannot relay the login
        // (tokio-postgres offers it whenever the server does).
        match server_end_point(&self.0) {
            Some(hash) => tokio_postgres::tls::ChannelBinding::tls_server_end_point(hash),
            None => tokio_postgres::tls::ChannelBinding::none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: SslMode, root: Option<&str>) -> PgTls {
        PgTls { mode, root_cert: root.map(str::to_string), client_cert: None }
    }

    #[test]
    fn libpq_verification_rules() {
        assert!(!tls(SslMode::Disable, None).attempts_tls());
        assert!(!tls(SslMode::Allow, None).attempts_tls());
        assert!(tls(SslMode::Prefer, None).attempts_tls());
        assert_eq!(tls(SslMode::Prefer, Some("/ca.pem")).verify(), Verify::Nothing);
        assert_eq!(tls(SslMode::Require, None).verify(), Verify::Nothing);
        assert_eq!(tls(SslMode::Require, Some("/ca.pem")).verify(), Verify::Chain);
        assert_eq!(tls(SslMode::VerifyCa, Some("/ca.pem")).verify(), Verify::Chain);
        assert_eq!(tls(SslMode::VerifyFull, Some("/ca.pem")).verify(), Verify::Full);
    }

    #[test]
    fn missing_or_bad_ca_files_are_clear_errors() {
        assert!(tls(SslMode::Require, None).client_config().is_ok());
        let e = tls(SslMode::VerifyFull, Some("/nonexistent/ca.pem")).client_config().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("xdb-tls-empty-{}.pem", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let e = tls(SslMode::VerifyCa, dir.to_str()).client_config().unwrap_err().to_string();
        let _ = std::fs::remove_file(&dir);
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn server_names() {
        let full = tls(SslMode::VerifyFull, Some("/ca.pem"));
        assert!(matches!(full.server_name("127.0.0.1"), Ok(ServerName::IpAddress(_))));
        assert!(full.server_name("db.example").is_ok());
        assert!(full.server_name("bad host").is_err());
        assert!(tls(SslMode::Require, None).server_name("bad host").is_ok());
    }
}

/// RFC 5929 `tls-server-end-point` channel binding data of a session: the
/// hash of the server's certificate, with the certificate signature's hash
/// (SHA-256 for MD5, SHA-1 and SHA-256 signatures). None when there is no
/// certificate or its algorithm defines no such hash (Ed25519): SCRAM then
/// runs without channel binding, as libpq does.
pub fn server_end_point<S>(stream: &tokio_rustls::client::TlsStream<S>) -> Option<Vec<u8>> {
    let (_, conn) = stream.get_ref();
    let cert = conn.peer_certificates()?.first()?;
    end_point_hash(cert.as_ref())
}

/// The tls-server-end-point hash of one DER certificate.
fn end_point_hash(der: &[u8]) -> Option<Vec<u8>> {
    use ring::digest;
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    let (_, cert, _) = der_item(der)?;
    let (_, _, rest) = der_item(cert)?;
    let (_, alg, _) = der_item(rest)?;
    let (tag, oid, _) = der_item(alg)?;
    if tag != 0x06 {
        return None;
    }
    const SHA384_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0C];
    const SHA512_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0D];
    const SHA384_ECDSA: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03];
    const SHA512_ECDSA: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x04];
    const ED25519: &[u8] = &[0x2B, 0x65, 0x70];
    const ED448: &[u8] = &[0x2B, 0x65, 0x71];
    let alg = match oid {
        o if o == SHA384_RSA || o == SHA384_ECDSA => &digest::SHA384,
        o if o == SHA512_RSA || o == SHA512_ECDSA => &digest::SHA512,
        o if o == ED25519 || o == ED448 => return None,
        _ => &digest::SHA256,
    };
    Some(digest::digest(alg, der).as_ref().to_vec())
}

/// One DER item: (tag, content, what follows).
fn der_item(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, head) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((tag, b.get(head..end)?, b.get(end..)?))
}

#[cfg(test)]
mod end_point_tests {
    use super::*;

    #[test]
    fn hash_follows_the_signature_algorithm() {
        // SEQUENCE { SEQUENCE {}, SEQUENCE { OID sha384WithRSAEncryption }, BIT STRING {} }
        let mut cert = vec![0x30, 0x13, 0x30, 0x00, 0x30, 0x0B, 0x06, 0x09];
        cert.extend_from_slice(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0C]);
        cert.extend_from_slice(&[0x03, 0x02, 0x00, 0x00]);
        assert_eq!(end_point_hash(&cert).map(|h| h.len()), Some(48));
        let ed = [0x30, 0x0B, 0x30, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x00];
        assert_eq!(end_point_hash(&ed), None);
        assert_eq!(end_point_hash(&[0x30]), None);
    }
}

/// The client certificate chain and key of `sslcert` / `sslkey`.
fn load_client_identity(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>), PgConnError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PgConnError::Tls(format!("sslcert={cert}: cannot read a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(PgConnError::Tls(format!("sslcert={cert}: no certificate in the file")));
    }
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
        .map_err(|e| PgConnError::Tls(format!("sslkey={key}: cannot read a PEM private key: {e}")))?;
    Ok((chain, key_der))
}
