//! `nats://host:port[,host2:port…]?stream=NAME&replicas=3[&subject_prefix=…][&schemas=true|false]
//! [&duplicate_window_secs=N]`: a JetStream stream as the target of `sync`.

use crate::plan::SecretUrl;

/// The parsed options of a log target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTarget {
    /// `nats://host:port` per server (user-info kept: the client reads it).
    pub servers: Vec<String>,
    pub user: Option<(String, String)>,
    pub stream: String,
    pub replicas: usize,
    /// Subjects are `<prefix>.<schema>.<table>` and `<prefix>.transaction`.
    pub prefix: String,
    /// Inline Kafka Connect schemas in every message.
    pub schemas: bool,
    /// JetStream's duplicate window for `Nats-Msg-Id`, when xdb creates the stream.
    pub duplicate_window_secs: u64,
}

const DEFAULT_DUPLICATE_WINDOW_SECS: u64 = 600;

impl NatsTarget {
    /// Parses the URL; `plan_name` gives the defaults of stream and prefix.
    pub fn parse(url: &SecretUrl, plan_name: &str) -> Result<NatsTarget, String> {
        let raw = url.expose();
        let rest = raw
            .strip_prefix("nats://")
            .ok_or_else(|| format!("a log target URL starts with nats://, got {}", url.redacted()))?;
        let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
        let hosts = hosts.trim_end_matches('/');
        let (user, hosts) = match hosts.rsplit_once('@') {
            Some((ui, h)) => {
                let (u, p) = ui.split_once(':').unwrap_or((ui, ""));
                (Some((crate::plan::percent_decode_text(u), crate::plan::percent_decode_text(p))), h)
            }
            None => (None, hosts),
        };
        let servers: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| if h.contains(':') { format!("nats://{h}") } else { format!("nats://{h}:4222") })
            .collect();
        if servers.is_empty() {
            return Err(format!("{} names no server: write nats://host:4222[,host2:4222]", url.redacted()));
        }
        let default = sanitize(plan_name);
        let mut t = NatsTarget {
            servers,
            user,
            stream: default.clone(),
            replicas: 1,
            prefix: default,
            schemas: true,
            duplicate_window_secs: DEFAULT_DUPLICATE_WINDOW_SECS,
        };
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = crate::plan::percent_decode_text(v);
            match k {
                "stream" => t.stream = v,
                "replicas" => {
                    t.replicas = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=5).contains(n))
                        .ok_or_else(|| format!("replicas={v}: JetStream keeps 1 to 5 replicas of a stream"))?
                }
                "subject_prefix" => t.prefix = v,
                "schemas" => {
                    t.schemas = match v.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(format!("schemas={v}: write schemas=true or schemas=false")),
                    }
                }
                "duplicate_window_secs" => {
                    t.duplicate_window_secs = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| format!("duplicate_window_secs={v}: a number of seconds, at least 1"))?
                }
                "password" | "pass" | "user" => {}
                other => {
                    return Err(format!(
                        "unknown option {other:?} in {}: expected stream, replicas, subject_prefix, schemas, \
                         duplicate_window_secs",
                        url.redacted()
                    ))
                }
            }
        }
        if t.stream.is_empty() || t.stream.contains(['.', ' ', '*', '>', '/', '\\']) {
            return Err(format!("stream={:?}: a JetStream stream name has no '.', ' ', '*', '>', '/'", t.stream));
        }
        if t.prefix.is_empty() || t.prefix.split('.').any(|tok| !subject_token_ok(tok)) {
            return Err(format!("subject_prefix={:?}: dot-separated tokens without spaces, '*' or '>'", t.prefix));
        }
        Ok(t)
    }

    /// The subject of a table's events.
    pub fn table_subject(&self, schema: &str, table: &str) -> Result<String, String> {
        if !subject_token_ok(schema) || !subject_token_ok(table) {
            return Err(format!(
                "table {schema}.{table} cannot be a NATS subject token (it holds '.', a space, '*' or '>'): \
                 leave it out of this plan or rename it"
            ));
        }
        Ok(format!("{}.{schema}.{table}", self.prefix))
    }

    /// A table's schema-change events (`debezium/schema.rs`): four
    /// tokens, so no table subject can be one.
    pub fn schema_subject(&self, schema: &str, table: &str) -> Result<String, String> {
        self.table_subject(schema, table)?;
        Ok(format!("{}.xdb_schema.{schema}.{table}", self.prefix))
    }

    /// Debezium's transaction-metadata subject.
    pub fn transaction_subject(&self) -> String {
        format!("{}.transaction", self.prefix)
    }

    /// xdb's snapshot markers (start/end, with the copied tables): not Debezium's.
    pub fn control_subject(&self) -> String {
        format!("{}.xdb", self.prefix)
    }

    /// xdb's heartbeats (one token, so no table subject can be it).
    pub fn heartbeat_subject(&self) -> String {
        format!("{}.xdb_heartbeat", self.prefix)
    }
}

fn subject_token_ok(t: &str) -> bool {
    !t.is_empty() && !t.contains(['.', ' ', '\t', '*', '>', '\r', '\n'])
}

/// A plan name reduced to what a stream name and a subject token may hold.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_servers_and_options() {
        let u = SecretUrl::new("nats://a:1,b:2?stream=S&replicas=3&subject_prefix=x.y&schemas=false");
        let t = NatsTarget::parse(&u, "p").unwrap();
        assert_eq!(t.servers, vec!["nats://a:1", "nats://b:2"]);
        assert_eq!((t.stream.as_str(), t.replicas, t.prefix.as_str(), t.schemas), ("S", 3, "x.y", false));
        assert_eq!(t.table_subject("public", "orders").unwrap(), "x.y.public.orders");
        assert!(t.table_subject("public", "a.b").is_err());
        let d = NatsTarget::parse(&SecretUrl::new("nats://u:s3cret@h"), "my plan").unwrap();
        assert_eq!((d.stream.as_str(), d.prefix.as_str(), d.replicas), ("my_plan", "my_plan", 1));
        assert_eq!(d.user, Some(("u".into(), "s3cret".into())));
        let e = NatsTarget::parse(&SecretUrl::new("nats://u:s3cret@h?replicas=9"), "p").unwrap_err();
        assert!(e.contains("1 to 5"), "{e}");
        let e = NatsTarget::parse(&SecretUrl::new("nats://u:s3cret@h?bogus=1"), "p").unwrap_err();
        assert!(e.contains("bogus") && !e.contains("s3cret"), "{e}");
    }
}
