//! The one scrubber every output channel goes through: logs (the tracing
//! writer), errors printed by the commands, the cutover journal, dry runs,
//! `command` step output and `status`.
//!
//! Two layers, because a secret reaches text in two ways:
//! - **known secrets**: every password the plan holds (URL user-info,
//!   `password=` parameters, `${file:…}` password files, `${VAR}` values of
//!   variables whose name says they are secret) is registered when the plan
//!   is loaded, with its percent-encoded and decoded forms, and replaced by
//!   `***` wherever it appears — also inside a driver's error message or a
//!   script's output that xdb never parsed;
//! - **shapes**: a `scheme://user:password@host` user-info and a
//!   `password=…` (`pass=`, `passwd=`, `pwd=`) value are masked even when the
//!   secret was never registered (a URL typed into a runbook command, a
//!   script that echoes its own connection string).

use std::io::Write;
use std::sync::{OnceLock, RwLock};

/// Secrets shorter than this are not replaced as plain text: masking every
/// "ab" in a log would destroy it, and the shape rules still catch them in
/// URLs and `password=` parameters.
const MIN_LEN: usize = 3;

fn registry() -> &'static RwLock<Vec<String>> {
    static R: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    R.get_or_init(|| RwLock::new(Vec::new()))
}

/// Registers a secret: from now on it, its percent-encoded forms and its
/// percent-decoded form never appear in scrubbed text.
pub fn register(secret: &str) {
    let mut forms = vec![secret.to_string(), percent_encode(secret, false), percent_encode(secret, true)];
    let decoded = percent_encoding::percent_decode_str(secret).decode_utf8_lossy().into_owned();
    if decoded != secret {
        forms.push(decoded);
    }
    let Ok(mut r) = registry().write() else { return };
    for f in forms {
        if f.len() >= MIN_LEN && !r.contains(&f) {
            r.push(f);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    r.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// True when an environment variable's name says its value is a secret
/// (`SOURCE_PASSWORD`, `API_TOKEN`, `PGPASS`, `DB_SECRET`, …).
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "PASS", "PWD", "SECRET", "TOKEN", "CREDENTIAL", "APIKEY", "API_KEY", "PRIVATE"]
        .iter()
        .any(|w| n.contains(w))
}

/// `text` with every registered secret and every secret-shaped part
/// (URL user-info password, `password=` value) replaced by `***`.
pub fn scrub(text: &str) -> String {
    let mut out = text.to_string();
    if let Ok(r) = registry().read() {
        for s in r.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
    }
    mask_password_params(&mask_userinfo(&out))
}

/// Masks the password of every `scheme://user:password@` in `text`.
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (before, after) = rest.split_at(pos + 3);
        out.push_str(before);
        // The URL runs to the first blank or quoting character.
        let end = after.find(|c: char| c.is_whitespace() || "\"'<>`".contains(c)).unwrap_or(after.len());
        let url = &after[..end];
        let query = url.find('?').unwrap_or(url.len());
        match url[..query].rfind('@') {
            Some(at) => match url[..at].split_once(':') {
                Some((user, pw)) if !pw.is_empty() && pw != "***" => {
                    out.push_str(user);
                    out.push_str(":***");
                    out.push_str(&url[at..end]);
                }
                _ => out.push_str(url),
            },
            None => out.push_str(url),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Masks the value of every `password=`, `pass=`, `passwd=`, `pwd=` (any
/// case, also as the end of a longer name such as `PGPASSWORD=`).
fn mask_password_params(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < text.len() {
        let hit =
            ["password=", "passwd=", "pass=", "pwd="].iter().find_map(|k| lower[i..].starts_with(k).then_some(k.len()));
        match hit {
            Some(klen) if !inside_a_word(bytes, i, klen) => {
                out.push_str(&text[i..i + klen]);
                let v_start = i + klen;
                let quoted = text[v_start..].starts_with(['\'', '"']);
                let v_end = if quoted {
                    let q = &text[v_start..v_start + 1];
                    text[v_start + 1..].find(q).map(|e| v_start + 1 + e + 1).unwrap_or(text.len())
                } else {
                    text[v_start..]
                        .find(|c: char| c.is_whitespace() || "&;,)\"'".contains(c))
                        .map(|e| v_start + e)
                        .unwrap_or(text.len())
                };
                if v_end > v_start && &text[v_start..v_end] != "***" {
                    out.push_str("***");
                } else {
                    out.push_str(&text[v_start..v_end]);
                }
                i = v_end;
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

/// `pass=` inside `bypass=` is not a password; `password=` inside
/// `PGPASSWORD=` is. The short keys (`pass=`, `pwd=`) must start a word.
fn inside_a_word(bytes: &[u8], i: usize, klen: usize) -> bool {
    klen <= "pass=".len() && i > 0 && bytes[i - 1].is_ascii_alphanumeric()
}

/// Percent-encodes every byte outside RFC 3986's unreserved set (`upper`
/// picks the hex case: drivers and people write both).
fn percent_encode(s: &str, upper: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Log output (tracing) through the scrubber: each formatted event is
/// scrubbed before it reaches stderr.
#[derive(Clone, Copy, Default)]
pub struct ScrubbedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ScrubbedStderr {
    type Writer = ScrubbedWriter<std::io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedWriter::new(std::io::stderr())
    }
}

/// Buffers one event, scrubs it on flush or drop, then writes it to `W`.
pub struct ScrubbedWriter<W: Write> {
    buf: Vec<u8>,
    out: W,
}

impl<W: Write> ScrubbedWriter<W> {
    pub fn new(out: W) -> Self {
        ScrubbedWriter { buf: Vec::new(), out }
    }
}

impl<W: Write> Write for ScrubbedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let text = scrub(&String::from_utf8_lossy(&self.buf));
            self.buf.clear();
            let out = &mut self.out;
            crate::term::with_bars_hidden(|| {
                out.write_all(text.as_bytes())?;
                out.flush()
            })?;
        }
        Ok(())
    }
}

impl<W: Write> Drop for ScrubbedWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_in_every_form() {
        register("Tr1cky p@ss/w#rd");
        let t = scrub("a Tr1cky p@ss/w#rd b Tr1cky%20p%40ss%2Fw%23rd c Tr1cky%20p%40ss%2fw%23rd");
        assert!(!t.contains("Tr1cky"), "{t}");
    }

    #[test]
    fn shapes_without_registration() {
        assert_eq!(
            scrub("connect postgres://bob:unknown-1@db:5432/x?sslmode=require failed"),
            "connect postgres://bob:***@db:5432/x?sslmode=require failed"
        );
        assert_eq!(scrub("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(scrub("http://h:8080/health"), "http://h:8080/health");
        assert_eq!(scrub("host=h password=hunter22 user=x"), "host=h password=*** user=x");
        assert_eq!(scrub("postgres://h/db?user=a&password=zz9&x=1"), "postgres://h/db?user=a&password=***&x=1");
        assert_eq!(scrub("PGPASSWORD='a b' psql"), "PGPASSWORD=*** psql");
        assert_eq!(scrub("bypass=1"), "bypass=1");
        assert_eq!(scrub("u:***@h password=***"), "u:***@h password=***");
    }

    /// The log channel: an event that carries a password (a driver error, a
    /// URL) reaches the output masked, in text and JSON logs alike.
    #[test]
    fn log_events_are_scrubbed() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        register("L0g-s3cret-pw");
        let sink = Sink::default();
        let make = {
            let sink = sink.clone();
            move || ScrubbedWriter::new(sink.clone())
        };
        let subscriber = tracing_subscriber::fmt().with_writer(make).json().finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(url = "postgres://u:unregistered-pw@h/db", "driver said: password L0g-s3cret-pw rejected");
        });
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(out.contains("driver said") && out.contains("u:***@h"), "{out}");
        assert!(!out.contains("L0g-s3cret-pw") && !out.contains("unregistered-pw"), "{out}");
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("SOURCE_PASSWORD") && is_secret_name("api_token") && is_secret_name("PGPASS"));
        assert!(!is_secret_name("SOURCE_HOST") && !is_secret_name("TARGET_DB"));
    }
}
