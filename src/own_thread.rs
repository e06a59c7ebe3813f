//! Work on a thread of its own, driven by a single-threaded runtime: the
//! change stream and each copy worker.
//!
//! A streamed transaction is a chain of hand-offs between tasks: the
//! replication connection's socket, the reader, the bounded channel, the
//! applier, the target connection's task and back. On the process's
//! multi-threaded runtime the tasks of one chain land on different workers,
//! and every hand-off is a wake of another thread (a futex and a context
//! switch) — under a steady load of small transactions that was most of
//! xdb's CPU, on a machine the source and the target share with it. On one
//! thread the same hand-offs are function calls between polls. Measured
//! (issue 18, 2 cores, ~3,700 single-row transactions/s into PostgreSQL):
//! xdb's CPU 291 → 202 ticks over 8 s, its own commit-to-apply p50 from
//! ≤ 10 ms to ≤ 2.5 ms; the 50,000-transaction backlog catch-up was as fast
//! or faster (the reader decodes while the applier waits on the target).
//!
//! A copy worker is the same kind of chain (the snapshot connection's
//! task, the decoder, the encoder, the target's socket), once per worker:
//! each runs on a thread of its own, so workers still encode in parallel
//! while no row batch crosses threads.

use std::future::Future;

/// Runs `make()`'s future to completion on a new thread named `name` with
/// a single-threaded runtime, and waits for its output without blocking
/// the caller's runtime. Everything the future connects to (drivers spawn
/// their connection tasks on the current runtime) lives on that thread. A
/// panic there is a panic here. Dropping the returned future cancels the
/// work: the thread drops its future (closing its connections) and ends,
/// as a future on the caller's runtime would have been dropped.
pub async fn run<T, F, Fut>(name: &str, make: F) -> std::io::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (done, output) = tokio::sync::oneshot::channel();
    // Held by this future: when it is dropped, `cancelled` resolves there.
    let (_cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name(name.to_string()).spawn(move || {
        let work = async move {
            tokio::select! {
                v = make() => Some(v),
                _ = cancelled => None,
            }
        };
        if let Some(v) = runtime.block_on(work) {
            let _ = done.send(v);
        }
    })?;
    match output.await {
        Ok(v) => Ok(v),
        // The sender is gone without a value only when the thread panicked
        // (it cannot have been cancelled: this future still holds `_cancel`).
        Err(_) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread ended without its output"),
        },
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_on_its_own_single_threaded_runtime() {
        let (flavor, name) = super::run("xdb-test-stream", || async {
            let flavor = tokio::runtime::Handle::current().runtime_flavor();
            (flavor, std::thread::current().name().map(String::from))
        })
        .await
        .unwrap();
        assert_eq!(flavor, tokio::runtime::RuntimeFlavor::CurrentThread);
        assert_eq!(name.as_deref(), Some("xdb-test-stream"));
    }

    #[tokio::test]
    #[should_panic(expected = "boom")]
    async fn a_panic_on_the_thread_is_a_panic_here() {
        let _ = super::run("xdb-test-panic", || async { panic!("boom") }).await;
    }

    #[tokio::test]
    async fn dropping_the_future_stops_the_work_on_the_thread() {
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        let work = super::run("xdb-test-cancel", move || async move {
            let _held = flag;
            std::future::pending::<()>().await
        });
        // The work never ends by itself: only the cancellation ends it.
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), work).await.is_err());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !dropped.load(std::sync::atomic::Ordering::Acquire) {
            assert!(std::time::Instant::now() < deadline, "the thread's future was not dropped");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
