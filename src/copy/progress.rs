//! Copy progress for people: a bar per table on a terminal (rows, rows/s,
//! ETA from `pg_class.reltuples`), plain periodic log lines otherwise, and a
//! summary table at the end.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::sink::load::LoadCounters;

/// One table's progress.
pub struct TableProgress {
    pub name: String,
    /// Estimated rows (reltuples); 0 when unknown.
    pub estimate: u64,
    pub counters: Arc<LoadCounters>,
    started: Mutex<Option<Instant>>,
    finished: Mutex<Option<Instant>>,
}

impl TableProgress {
    pub fn new(name: String, estimate: u64) -> Arc<Self> {
        Arc::new(TableProgress {
            name,
            estimate,
            counters: Arc::default(),
            started: Mutex::new(None),
            finished: Mutex::new(None),
        })
    }

    pub fn start(&self) {
        if let Ok(mut s) = self.started.lock() {
            s.get_or_insert_with(Instant::now);
        }
    }

    pub fn finish(&self) {
        if let Ok(mut f) = self.finished.lock() {
            *f = Some(Instant::now());
        }
    }

    fn rows(&self) -> u64 {
        self.counters.rows.load(Ordering::Relaxed)
    }

    /// Seconds spent so far (or in all, once finished).
    pub fn seconds(&self) -> f64 {
        let started = self.started.lock().ok().and_then(|s| *s);
        let finished = self.finished.lock().ok().and_then(|f| *f);
        match (started, finished) {
            (Some(s), Some(f)) => f.duration_since(s).as_secs_f64(),
            (Some(s), None) => s.elapsed().as_secs_f64(),
            _ => 0.0,
        }
    }

    fn is_active(&self) -> bool {
        self.started.lock().ok().and_then(|s| *s).is_some() && self.finished.lock().ok().and_then(|f| *f).is_none()
    }
}

/// A size for people: small copies are not "0.0 MB".
pub fn size_text(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 1000 {
        format!("{bytes} B")
    } else if b < 1e6 {
        format!("{:.1} kB", b / 1e3)
    } else if b < 1e9 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.2} GB", b / 1e9)
    }
}

/// A copy rate for people: whole rows per second, thousands as `k`.
pub fn rate_text(rows_per_sec: f64) -> String {
    if !rows_per_sec.is_finite() || rows_per_sec <= 0.0 {
        "- rows/s".into()
    } else if rows_per_sec >= 10_000.0 {
        format!("{:.0}k rows/s", rows_per_sec / 1000.0)
    } else {
        format!("{rows_per_sec:.0} rows/s")
    }
}

/// Displays progress until dropped.
pub struct ProgressDisplay {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressDisplay {
    /// Starts bars when stderr is a terminal, log lines every `interval` otherwise.
    pub fn start(tables: Vec<Arc<TableProgress>>, terminal: bool, interval: Duration) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if terminal {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                // Log lines written meanwhile hide the bars while they print.
                crate::term::set_bars(Some(multi.clone()));
                // indicatif's own {per_sec} prints four decimals
                // ("1234.5678/s"); a whole number of rows per second reads better.
                let style = ProgressStyle::with_template(
                    "{prefix:>24} {bar:30.cyan/blue} {pos:>10}/{len:10} rows {rate:>12} ETA {eta}",
                )
                .map(|s| {
                    s.with_key("rate", |st: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&rate_text(st.per_sec()));
                    })
                })
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                let bars: Vec<ProgressBar> = tables
                    .iter()
                    .map(|t| {
                        let b = multi.add(ProgressBar::new(t.estimate.max(1)));
                        b.set_style(style.clone());
                        b.set_prefix(t.name.clone());
                        b
                    })
                    .collect();
                loop {
                    for (t, b) in tables.iter().zip(&bars) {
                        let rows = t.rows();
                        if rows > b.length().unwrap_or(0) {
                            b.set_length(rows);
                        }
                        b.set_position(rows);
                    }
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
                for (t, b) in tables.iter().zip(&bars) {
                    b.set_length(t.rows().max(1));
                    b.set_position(t.rows());
                    b.finish();
                }
                crate::term::set_bars(None);
            } else {
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tokio::time::sleep(interval) => {}
                    }
                    for t in tables.iter().filter(|t| t.is_active()) {
                        let rows = t.rows();
                        let secs = t.seconds().max(0.001);
                        let rate = rows as f64 / secs;
                        let eta = if t.estimate > rows && rate > 0.0 {
                            format!(", ETA {:.0}s", (t.estimate - rows) as f64 / rate)
                        } else {
                            String::new()
                        };
                        tracing::info!("copy {}: {rows} of ~{} rows, {rate:.0} rows/s{eta}", t.name, t.estimate);
                    }
                }
            }
        });
        ProgressDisplay { stop: Some(stop), task: Some(task) }
    }

    /// Stops the display and waits for its last redraw.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The end-of-copy summary: rows, bytes, seconds, rows/s per table.
pub fn summary_table(tables: &[Arc<TableProgress>]) -> String {
    let mut out = format!("{:<32} {:>12} {:>10} {:>9} {:>12}\n", "table", "rows", "size", "seconds", "rows/s");
    let (mut rows_all, mut bytes_all) = (0u64, 0u64);
    for t in tables {
        let rows = t.rows();
        let bytes = t.counters.bytes.load(Ordering::Relaxed);
        rows_all += rows;
        bytes_all += bytes;
        let secs = t.seconds();
        let rate = if secs > 0.0 { rows as f64 / secs } else { 0.0 };
        out.push_str(&format!("{:<32} {:>12} {:>10} {:>9.2} {:>12.0}\n", t.name, rows, size_text(bytes), secs, rate));
    }
    out.push_str(&format!("{:<32} {:>12} {:>10}\n", "total", rows_all, size_text(bytes_all)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_numbers() {
        assert_eq!(rate_text(1234.5678), "1235 rows/s");
        assert_eq!(rate_text(123_456.7), "123k rows/s");
        assert_eq!(rate_text(0.0), "- rows/s");
    }

    #[test]
    fn sqlite_rows_have_a_size() {
        use rusqlite::types::Value;
        let row = [Value::Integer(1), Value::Text("abc".into()), Value::Null, Value::Blob(vec![0; 5])];
        assert_eq!(crate::sink::sqlite::load::row_bytes(&row), 16);
        assert_eq!(size_text(32_480), "32.5 kB");
        assert_eq!(size_text(12), "12 B");
    }
}
