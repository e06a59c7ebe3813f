//! `wait_for_lag` and `wait_for_catchup`: how far the target's applied
//! position (recorded by `xdb sync` on the target, per slot) is behind the
//! source.
//!
//! Lag in bytes is the source's `pg_current_wal_lsn()` minus the applied
//! LSN. Lag in seconds is measured, not guessed: the wait samples the
//! source's position over time, and the target is `t` seconds behind when
//! the newest sample it has passed was taken `t` seconds ago ([`LagTracker`]).
//! `wait_for_catchup` proves zero lag by the stream itself: a marker message
//! written into the source's WAL must come back as applied.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{fmt_duration, ActionError, Env, Outcome};
use crate::model::Lsn;

/// How often positions are polled.
const POLL: Duration = Duration::from_millis(200);

/// Time-based lag from samples of the source position (pure).
#[derive(Debug, Default)]
pub struct LagTracker {
    samples: VecDeque<(Instant, Lsn)>,
}

impl LagTracker {
    /// Records the source position at `at`.
    pub fn sample(&mut self, at: Instant, source: Lsn) {
        self.samples.push_back((at, source));
    }

    /// Seconds the target at `applied` is behind at `now`: zero when it has
    /// reached the newest sample, the age of the newest sample it passed
    /// otherwise, `None` when it has passed none yet (unknown).
    pub fn lag(&mut self, now: Instant, applied: Lsn) -> Option<Duration> {
        if self.samples.back().is_some_and(|&(_, l)| applied >= l) {
            return Some(Duration::ZERO);
        }
        // Keep the newest passed sample and everything after it.
        while self.samples.len() >= 2 && self.samples.get(1).is_some_and(|&(_, l)| applied >= l) {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some(&(t, l)) if applied >= l => Some(now.saturating_duration_since(t)),
            _ => None,
        }
    }
}

async fn source_lsn(env: &mut Env<'_>) -> Result<Lsn, ActionError> {
    let text = env.source_scalar("SELECT pg_current_wal_lsn()::text").await?.unwrap_or_default();
    text.parse().map_err(|e: crate::model::LsnParseError| ActionError::Failed(format!("source: {}", e.0)))
}

async fn applied_lsn(env: &mut Env<'_>) -> Result<Option<Lsn>, ActionError> {
    let slot = env.plan.source.slot.clone();
    let t = env.target().await?;
    // No state table yet: nothing was ever applied.
    t.read_position_if_any(&slot).await.map(|p| p.map(|p| p.applied_lsn)).map_err(ActionError::from)
}

fn no_position(slot: &str) -> String {
    format!("the target has no applied position for slot {slot}: is `xdb sync` running for this plan?")
}

/// Waits until the lag is within the limits.
pub async fn wait_for_lag(
    env: &mut Env<'_>,
    max_bytes: Option<u64>,
    max_seconds: Option<f64>,
    timeout: Duration,
) -> Result<Outcome, ActionError> {
    let start = Instant::now();
    let mut tracker = LagTracker::default();
    let mut last: String;
    loop {
        let now = Instant::now();
        let source = source_lsn(env).await?;
        tracker.sample(now, source);
        match applied_lsn(env).await? {
            None => last = no_position(&env.plan.source.slot),
            Some(applied) => {
                let bytes = source.0.saturating_sub(applied.0);
                let secs = tracker.lag(now, applied);
                let bytes_ok = max_bytes.is_none_or(|m| bytes <= m);
                let secs_ok = max_seconds.is_none_or(|m| secs.is_some_and(|s| s.as_secs_f64() <= m));
                let secs_text = secs.map(|s| format!("{:.1} s", s.as_secs_f64())).unwrap_or_else(|| "unknown s".into());
                last = format!("lag {bytes} bytes / {secs_text} (applied {applied}, source at {source})");
                if bytes_ok && secs_ok {
                    return Ok(Outcome {
                        notes: vec![format!("{last}, after {}", fmt_duration(start.elapsed()))],
                        lag: Some(format!("{bytes} bytes / {secs_text}")),
                        ..Default::default()
                    });
                }
            }
        }
        if start.elapsed() >= timeout {
            return Err(ActionError::Failed(format!("lag still too high after {}: {last}", fmt_duration(timeout))));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A marker unique enough for one cutover: process, time and a counter.
fn marker() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes a marker into the source WAL and waits until the target applied it.
pub async fn wait_for_catchup(env: &mut Env<'_>, timeout: Duration) -> Result<Outcome, ActionError> {
    let start = Instant::now();
    let m = marker();
    let marker_lsn =
        crate::source::postgres::change_stream::write_marker(env.source().await?, "xdb.catchup", &m).await?;
    let mut last = None;
    loop {
        last = applied_lsn(env).await?.or(last);
        if let Some(applied) = last {
            if applied >= marker_lsn {
                return Ok(Outcome {
                    notes: vec![format!(
                        "marker {m} at {marker_lsn} applied (target at {applied}) after {}",
                        fmt_duration(start.elapsed())
                    )],
                    lag: Some("0 bytes (marker applied)".into()),
                    ..Default::default()
                });
            }
        }
        if start.elapsed() >= timeout {
            let at = match last {
                Some(a) => format!("the target applied up to {a}, {} bytes short", marker_lsn.0.saturating_sub(a.0)),
                None => no_position(&env.plan.source.slot),
            };
            return Err(ActionError::Failed(format!(
                "the catch-up marker at {marker_lsn} was not applied within {}: {at}",
                fmt_duration(timeout)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_newest_passed_sample() {
        let t0 = Instant::now();
        let mut t = LagTracker::default();
        t.sample(t0, Lsn(100));
        t.sample(t0 + Duration::from_secs(1), Lsn(200));
        t.sample(t0 + Duration::from_secs(2), Lsn(300));
        let now = t0 + Duration::from_secs(3);
        assert_eq!(t.lag(now, Lsn(50)), None);
        assert_eq!(t.lag(now, Lsn(150)), Some(Duration::from_secs(3)));
        assert_eq!(t.lag(now, Lsn(250)), Some(Duration::from_secs(2)));
        assert_eq!(t.lag(now, Lsn(300)), Some(Duration::ZERO));
    }
}
