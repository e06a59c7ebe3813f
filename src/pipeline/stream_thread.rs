//! The change stream on a thread of its own, driven by a single-threaded
//! runtime.
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
//! The copy keeps the multi-threaded runtime, where tables are encoded in
//! parallel.

use std::future::Future;

/// Runs `make()`'s future to completion on a new thread named `name` with
/// a single-threaded runtime, and waits for its output without blocking
/// the caller's runtime. Everything the future connects to (drivers spawn
/// their connection tasks on the current runtime) lives on that thread. A
/// panic there is a panic here.
pub async fn run<T, F, Fut>(name: &str, make: F) -> std::io::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (done, output) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new().name(name.to_string()).spawn(move || {
        let _ = done.send(runtime.block_on(make()));
    })?;
    match output.await {
        Ok(v) => Ok(v),
        // The sender is gone without a value only when the thread panicked.
        Err(_) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the stream thread ended without its output"),
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
    async fn a_panic_on_the_stream_thread_is_a_panic_here() {
        let _ = super::run("xdb-test-panic", || async { panic!("boom") }).await;
    }
}
