//! Connection URLs of the plan, kept so that their secrets cannot leak:
//! `Display` and `Debug` print the URL with its password replaced by `***`;
//! only [`SecretUrl::expose`] gives the real text, for drivers.

use std::fmt;
use std::path::PathBuf;

/// A URL that may carry a password.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The full URL, password included: hand it to a driver, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password (user-info or `password=` parameter) masked.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    /// The password in the URL, if any (percent-decoded), so that error
    /// text from drivers can be scrubbed of it.
    pub fn password(&self) -> Option<String> {
        let (_, rest) = self.0.split_once("://")?;
        let userinfo = &rest[..authority_end(rest)];
        let at = userinfo.rfind('@')?;
        let (_, pw) = userinfo[..at].split_once(':')?;
        (!pw.is_empty()).then(|| percent_decode(pw))
    }

    /// Refuses a user-info whose password holds a character that ends it
    /// in a URL (`@ : / # ?`): drivers then read another host, user or
    /// database and fail with "invalid connection string" or "host not
    /// found", which sends people to their firewall. The message never
    /// shows the password.
    pub fn check_userinfo(&self, field: &str) -> Result<(), String> {
        let Some((_, rest)) = self.0.split_once("://") else { return Ok(()) };
        let query = rest.find('?').unwrap_or(rest.len());
        let Some(at) = rest[..query].rfind('@') else { return Ok(()) };
        let Some((user, pw)) = rest[..at].split_once(':') else { return Ok(()) };
        let bad: Vec<char> = ['@', ':', '/', '#', '?'].into_iter().filter(|c| pw.contains(*c)).collect();
        if bad.is_empty() && !user.contains('/') {
            return Ok(());
        }
        let list: Vec<String> = bad.iter().map(|c| format!("`{c}` → %{:02X}", *c as u32)).collect();
        Err(format!(
            "the password in {field} contains {}, which a URL reads as the end of the password: percent-encode it ({}), or put it in a file and write ${{file:/path/to/password}} percent-encoded",
            bad.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
            list.join(", ")
        ))
    }

    /// The value of a `password=` (or `pass=`) query parameter, if any
    /// (percent-decoded).
    pub fn query_password(&self) -> Option<String> {
        let (_, query) = self.0.split_once('?')?;
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass")).then(|| percent_decode(v))
        })
    }

    /// The URL's scheme (`postgres`, `mysql`, `sqlite` …), lower-cased.
    pub fn scheme(&self) -> Option<String> {
        self.0.split_once(':').map(|(s, _)| s.to_ascii_lowercase())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

/// Where the authority (user-info and host) of `rest` (text after `://`) ends:
/// at the last `@` before the path, or the first `/`, `?` when there is none.
fn authority_end(rest: &str) -> usize {
    // A password may contain '/', '?' or '#' unescaped; the last '@' before the
    // query decides where user-info ends.
    let query = rest.find('?').unwrap_or(rest.len());
    match rest[..query].rfind('@') {
        Some(at) => at + 1 + rest[at + 1..].find(['/', '?']).unwrap_or(rest.len() - at - 1),
        None => rest.find(['/', '?']).unwrap_or(rest.len()),
    }
}

fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let query = rest.find('?').unwrap_or(rest.len());
    let mut out = format!("{scheme}://");
    let (auth_and_path, params) = rest.split_at(query);
    match auth_and_path.rfind('@') {
        Some(at) => {
            let userinfo = &auth_and_path[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&auth_and_path[at..]);
        }
        None => out.push_str(auth_and_path),
    }
    if !params.is_empty() {
        let redacted: Vec<String> = params[1..]
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass") => {
                    format!("{k}=***")
                }
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&redacted.join("&"));
    }
    out
}

/// Percent-decoding as people write URLs: a `%` not followed by two hex
/// digits stays as it is, invalid UTF-8 becomes U+FFFD.
pub(crate) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Percent-decoding for values xdb hands on (TLS files and modes,
/// connection parameters), where a guess would connect differently than
/// asked: a `%` not followed by two hex digits, or a result that is not
/// UTF-8, is an error (the value itself is never shown).
pub(crate) fn percent_decode_strict(s: &str) -> Result<String, &'static str> {
    let malformed =
        s.split('%').skip(1).any(|rest| !rest.as_bytes().get(..2).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)));
    if malformed {
        return Err("invalid percent-encoding");
    }
    percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| "not valid UTF-8")
}

/// The target database, by URL scheme.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TargetUrl {
    /// `mysql://` or `mariadb://`: MySQL or MariaDB (told apart at connect time).
    Mysql(SecretUrl),
    /// `sqlite://path` (relative to the plan file's directory once the plan
    /// is loaded) or `sqlite:///abs/path`.
    Sqlite(PathBuf),
    /// `postgres://` or `postgresql://`.
    Postgres(SecretUrl),
    /// `nats://host:port[,host2…]?stream=…`: a NATS JetStream stream, the
    /// change stream as Debezium events (`crate::nats`); not a database.
    Nats(SecretUrl),
}

/// Schemes a target URL may use, for error messages.
pub const TARGET_SCHEMES: &str = "mysql://, mariadb://, sqlite://, postgres://, nats://";

impl TargetUrl {
    /// Classifies a target URL by scheme.
    pub fn parse(url: &str) -> Result<TargetUrl, String> {
        let secret = SecretUrl::new(url);
        let scheme = secret.scheme().unwrap_or_default();
        match scheme.as_str() {
            "mysql" | "mariadb" => Ok(TargetUrl::Mysql(secret)),
            "postgres" | "postgresql" => Ok(TargetUrl::Postgres(secret)),
            "nats" => Ok(TargetUrl::Nats(secret)),
            "sqlite" => {
                let path = url["sqlite:".len()..].trim_start_matches("//");
                let path = path.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(
                        "sqlite target URL has no file path: use sqlite://shop.db or sqlite:///abs/path/shop.db".into(),
                    );
                }
                Ok(TargetUrl::Sqlite(PathBuf::from(path)))
            }
            _ => Err(format!(
                "unknown target URL scheme {:?} in {}: expected one of {TARGET_SCHEMES}",
                scheme,
                secret.redacted()
            )),
        }
    }

    /// A short name of the target kind: `mysql`, `sqlite` or `postgres`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            TargetUrl::Mysql(_) => "mysql",
            TargetUrl::Sqlite(_) => "sqlite",
            TargetUrl::Postgres(_) => "postgres",
            TargetUrl::Nats(_) => "nats",
        }
    }

    /// The URL for display, password masked.
    pub fn redacted(&self) -> String {
        match self {
            TargetUrl::Mysql(u) | TargetUrl::Postgres(u) | TargetUrl::Nats(u) => u.redacted(),
            TargetUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
        }
    }

    /// The password in the URL, if any.
    pub fn password(&self) -> Option<String> {
        match self {
            TargetUrl::Mysql(u) | TargetUrl::Postgres(u) | TargetUrl::Nats(u) => u.password(),
            TargetUrl::Sqlite(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape_and_never_panics() {
        assert_eq!(percent_decode("p%40ss%2Fw"), "p@ss/w");
        // A `%` before a multi-byte character once sliced the string in
        // the middle of it (a panic on such a password).
        assert_eq!(percent_decode("p%aé%"), "p%aé%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9%FF"), "é\u{FFFD}");
        assert_eq!(percent_decode_strict("ca%2Fcert.pem"), Ok("ca/cert.pem".to_string()));
        assert_eq!(percent_decode_strict("p%aé"), Err("invalid percent-encoding"));
        assert_eq!(percent_decode_strict("p%"), Err("invalid percent-encoding"));
        assert_eq!(percent_decode_strict("%FF"), Err("not valid UTF-8"));
    }

    #[test]
    fn redacts_passwords() {
        let u = SecretUrl::new("postgres://xdb:p%40ss/w@rd@127.0.0.1:5432/shop?sslmode=require");
        assert_eq!(u.redacted(), "postgres://xdb:***@127.0.0.1:5432/shop?sslmode=require");
        assert_eq!(u.password().as_deref(), Some("p@ss/w@rd"));
        assert!(!format!("{u:?}").contains("rd@"));
        let q = SecretUrl::new("postgres://h/db?user=a&password=zz");
        assert_eq!(q.redacted(), "postgres://h/db?user=a&password=***");
        assert_eq!(SecretUrl::new("mysql://root@h/db").redacted(), "mysql://root@h/db");
    }

    #[test]
    fn unencoded_password_characters_are_refused_without_showing_the_password() {
        let e = SecretUrl::new("postgres://u:p@ss#w0rd@h/db").check_userinfo("source.url").unwrap_err();
        assert!(e.contains("percent-encode") && e.contains("%40") && e.contains("%23") && !e.contains("w0rd"), "{e}");
        assert!(SecretUrl::new("postgres://u:p%40ss@h/db?x=/y").check_userinfo("source.url").is_ok());
        assert!(SecretUrl::new("postgres://h/db").check_userinfo("source.url").is_ok());
    }

    #[test]
    fn classifies_targets() {
        assert!(matches!(TargetUrl::parse("mysql://a:b@h/db"), Ok(TargetUrl::Mysql(_))));
        assert!(matches!(TargetUrl::parse("postgresql://h/db"), Ok(TargetUrl::Postgres(_))));
        assert_eq!(TargetUrl::parse("sqlite://shop.db"), Ok(TargetUrl::Sqlite("shop.db".into())));
        assert_eq!(TargetUrl::parse("sqlite:///tmp/x.db"), Ok(TargetUrl::Sqlite("/tmp/x.db".into())));
        let e = TargetUrl::parse("oracle://u:secret@h/db").unwrap_err();
        assert!(e.contains("oracle") && !e.contains("secret"), "{e}");
    }
}
