//! Waiting between attempts of a streaming session or a copy after a
//! transient error: 0.5 s doubling to 30 s, cut short by a signal, at most
//! `--max-retries` attempts in a row. Whether an error is transient is
//! decided by code where it arises (`error_policy`), never here.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Exponential back-off between attempts.
pub(crate) struct Backoff {
    failures: u32,
    max: Option<u32>,
}

impl Backoff {
    pub(crate) fn new(max: Option<u32>) -> Self {
        Backoff { failures: 0, max }
    }

    /// Whether another attempt is allowed.
    pub(crate) fn may_retry(&self) -> bool {
        self.max.is_none_or(|m| self.failures < m)
    }

    /// A session that ran a while before failing starts the back-off anew.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// Waits before the next attempt, saying why (`what`: "reconnecting",
    /// "retrying the copy"); false when a signal came first.
    pub(crate) async fn wait(
        &mut self,
        why: &dyn std::fmt::Display,
        what: &str,
        stop: &mut Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        self.failures += 1;
        let wait = Duration::from_millis((500u64 << self.failures.min(6)).min(30_000));
        tracing::warn!("{why}; {what} in {wait:?} (attempt {})", self.failures);
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = &mut *stop => false,
        }
    }
}

/// Runs `session` until it ends or a signal comes (both `Ok`), starting it
/// again after an error `retryable` says is transient, with [`Backoff`].
pub(crate) async fn reconnecting<E, F, Fut>(
    max_retries: Option<u32>,
    retryable: impl Fn(&E) -> bool,
    mut session: F,
) -> Result<(), E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut backoff = Backoff::new(max_retries);
    let mut stop = std::pin::pin!(crate::tail::shutdown_signal());
    loop {
        let r = tokio::select! {
            r = session() => r,
            () = &mut stop => return Ok(()),
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if retryable(&e) && backoff.may_retry() => {
                if !backoff.wait(&e, "reconnecting", &mut stop).await {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}
