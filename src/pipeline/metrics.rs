//! What `xdb sync` tells operators about itself: lag in bytes and seconds,
//! throughput, per-table counts, retained WAL and how long until the slot
//! hits `max_slot_wal_keep_size`, and a commit-to-apply latency histogram —
//! rendered in Prometheus text format for `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Histogram bucket bounds for commit-to-apply latency, in seconds.
/// Starts at 1 ms: an idle stream applies in a few milliseconds.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A Prometheus-style cumulative histogram.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    total: u64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.total += 1;
    }

    /// The smallest bucket bound holding at least `q` of the observations.
    #[cfg(test)]
    pub fn quantile_upper_bound(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let want = (q * self.total as f64).ceil() as u64;
        LATENCY_BUCKETS.iter().zip(self.counts).find(|(_, c)| *c >= want).map(|(b, _)| *b).or(Some(f64::INFINITY))
    }
}

/// The live numbers of one sync process.
#[derive(Debug, Clone, Default)]
pub struct SyncMetrics {
    pub slot: String,
    /// Source WAL position (bytes) last seen.
    pub source_wal_lsn: u64,
    /// End LSN of the last transaction committed on the target.
    pub applied_lsn: u64,
    /// Commit time (unix µs) of the last applied transaction.
    pub applied_commit_time_us: i64,
    pub applied_transactions: u64,
    pub applied_rows: u64,
    pub rows_by_table: BTreeMap<String, u64>,
    /// WAL the slot keeps on the source, bytes.
    pub retained_wal_bytes: Option<u64>,
    /// `max_slot_wal_keep_size` in bytes (None: unlimited).
    pub max_slot_wal_keep_bytes: Option<u64>,
    /// Growth of retained WAL, bytes per second, recent average.
    pub retained_wal_growth_bps: Option<f64>,
    pub latency: Histogram,
}

impl SyncMetrics {
    /// The periodic progress line of `xdb sync`. Before the first streamed
    /// commit there is no applied position to show (0/0 would read as a
    /// real one): the line says so.
    pub fn status_line(&self, rows_per_sec: f64, now_us: i64) -> String {
        if self.applied_lsn == 0 {
            return "no streamed change applied yet (copying, or nothing changed on the source since the snapshot)"
                .into();
        }
        format!(
            "applied up to {} ({} transactions, {} rows, {rows_per_sec:.0} rows/s), lag {} bytes / {:.1} s",
            crate::model::Lsn(self.applied_lsn),
            self.applied_transactions,
            self.applied_rows,
            self.lag_bytes(),
            self.lag_seconds(now_us)
        )
    }

    /// What `xdb sync` says when it stops cleanly.
    pub fn stopped_line(&self) -> String {
        if self.applied_lsn == 0 {
            "sync stopped cleanly; no streamed change was applied in this run".into()
        } else {
            format!("sync stopped cleanly; applied up to {}", crate::model::Lsn(self.applied_lsn))
        }
    }

    /// Bytes of WAL the target is behind.
    pub fn lag_bytes(&self) -> u64 {
        self.source_wal_lsn.saturating_sub(self.applied_lsn)
    }

    /// Seconds between now and the commit time of the last applied
    /// transaction (0 when caught up with an idle source).
    pub fn lag_seconds(&self, now_us: i64) -> f64 {
        if self.applied_commit_time_us == 0 || self.lag_bytes() == 0 {
            return 0.0;
        }
        (now_us - self.applied_commit_time_us).max(0) as f64 / 1e6
    }

    /// Seconds until retained WAL reaches `max_slot_wal_keep_size` at the
    /// current growth rate, when both are known and WAL is growing.
    pub fn seconds_until_slot_limit(&self) -> Option<f64> {
        let (retained, limit, rate) =
            (self.retained_wal_bytes?, self.max_slot_wal_keep_bytes?, self.retained_wal_growth_bps?);
        if rate <= 0.0 {
            return None;
        }
        Some(limit.saturating_sub(retained) as f64 / rate)
    }

    /// Prometheus text exposition.
    pub fn render(&self, now_us: i64) -> String {
        let mut o = String::new();
        let slot = escape(&self.slot);
        let mut gauge = |name: &str, help: &str, v: f64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{slot=\"{slot}\"}} {v}");
        };
        gauge(
            "xdb_lag_bytes",
            "Source WAL position minus the last position applied on the target.",
            self.lag_bytes() as f64,
        );
        gauge(
            "xdb_lag_seconds",
            "Now minus the commit time of the last applied transaction.",
            self.lag_seconds(now_us),
        );
        gauge("xdb_applied_lsn", "End LSN of the last source commit applied on the target.", self.applied_lsn as f64);
        gauge("xdb_source_wal_lsn", "Latest source WAL position seen.", self.source_wal_lsn as f64);
        if let Some(r) = self.retained_wal_bytes {
            gauge("xdb_slot_retained_wal_bytes", "WAL the replication slot keeps on the source.", r as f64);
        }
        if let Some(s) = self.seconds_until_slot_limit() {
            gauge(
                "xdb_slot_seconds_until_wal_limit",
                "Estimated seconds until retained WAL reaches max_slot_wal_keep_size (then the slot is invalidated).",
                s,
            );
        }
        let _ = writeln!(
            o,
            "# HELP xdb_applied_transactions_total Source transactions applied.\n# TYPE xdb_applied_transactions_total counter\nxdb_applied_transactions_total{{slot=\"{slot}\"}} {}",
            self.applied_transactions
        );
        let _ = writeln!(
            o,
            "# HELP xdb_applied_rows_total Row changes applied, by table.\n# TYPE xdb_applied_rows_total counter"
        );
        for (t, n) in &self.rows_by_table {
            let _ = writeln!(o, "xdb_applied_rows_total{{slot=\"{slot}\",table=\"{}\"}} {n}", escape(t));
        }
        let _ = writeln!(
            o,
            "# HELP xdb_commit_to_apply_seconds Time from source commit to target commit.\n# TYPE xdb_commit_to_apply_seconds histogram"
        );
        for (b, c) in LATENCY_BUCKETS.iter().zip(self.latency.counts) {
            let _ = writeln!(o, "xdb_commit_to_apply_seconds_bucket{{slot=\"{slot}\",le=\"{b}\"}} {c}");
        }
        let _ = writeln!(o, "xdb_commit_to_apply_seconds_bucket{{slot=\"{slot}\",le=\"+Inf\"}} {}", self.latency.total);
        let _ = writeln!(o, "xdb_commit_to_apply_seconds_sum{{slot=\"{slot}\"}} {}", self.latency.sum);
        let _ = writeln!(o, "xdb_commit_to_apply_seconds_count{{slot=\"{slot}\"}} {}", self.latency.total);
        o
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Metrics shared between the sync loop and the `/metrics` server.
pub type SharedMetrics = std::sync::Arc<Mutex<SyncMetrics>>;

/// Serves `GET /metrics` on `addr` until the task is dropped.
pub async fn serve(addr: std::net::SocketAddr, metrics: SharedMetrics) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (mut sock, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics") {
                let now = chrono::Utc::now().timestamp_micros();
                let body = match metrics.lock() {
                    Ok(m) => m.render(now),
                    Err(p) => p.into_inner().render(now),
                };
                ("200 OK", body)
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lag_and_histogram() {
        let mut m = SyncMetrics { slot: "s".into(), source_wal_lsn: 1000, applied_lsn: 400, ..Default::default() };
        assert!(m.status_line(0.0, 0).contains("applied up to 0/190"));
        assert!(SyncMetrics::default().status_line(0.0, 0).contains("no streamed change applied yet"));
        assert!(!SyncMetrics::default().stopped_line().contains("0/0"));
        m.applied_commit_time_us = 1_000_000;
        m.latency.observe(0.02);
        m.latency.observe(0.3);
        m.rows_by_table.insert("public.t".into(), 7);
        m.retained_wal_bytes = Some(1000);
        m.max_slot_wal_keep_bytes = Some(3000);
        m.retained_wal_growth_bps = Some(100.0);
        let text = m.render(3_000_000);
        assert!(text.contains("xdb_lag_bytes{slot=\"s\"} 600"), "{text}");
        assert!(text.contains("xdb_lag_seconds{slot=\"s\"} 2"), "{text}");
        assert!(text.contains("xdb_applied_rows_total{slot=\"s\",table=\"public.t\"} 7"), "{text}");
        assert!(text.contains("xdb_commit_to_apply_seconds_bucket{slot=\"s\",le=\"0.025\"} 1"), "{text}");
        assert!(text.contains("xdb_slot_seconds_until_wal_limit{slot=\"s\"} 20"), "{text}");
        assert_eq!(m.latency.quantile_upper_bound(0.5), Some(0.025));
        assert_eq!(m.latency.quantile_upper_bound(0.99), Some(0.5));
    }
}
