//! SIGINT/SIGTERM as a stop request that long-running commands observe.
//!
//! The handlers are installed once, as the process starts, so a signal that
//! arrives while a command is still connecting is a clean stop rather than
//! the default action (immediate exit with nothing confirmed).

use std::sync::OnceLock;

use tokio::sync::watch;

static STOP: OnceLock<watch::Receiver<bool>> = OnceLock::new();
static REQUEST: OnceLock<watch::Sender<bool>> = OnceLock::new();

/// Installs the handlers (idempotent). Must run inside a tokio runtime.
pub fn install() {
    STOP.get_or_init(|| {
        let (tx, rx) = watch::channel(false);
        let _ = REQUEST.set(tx.clone());
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            // Registered here, synchronously: from now on the default
            // action no longer applies.
            let term = signal(SignalKind::terminate());
            let int = signal(SignalKind::interrupt());
            tokio::spawn(async move {
                match (term, int) {
                    (Ok(mut term), Ok(mut int)) => {
                        tokio::select! {
                            _ = term.recv() => {}
                            _ = int.recv() => {}
                        }
                    }
                    _ => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
                let _ = tx.send(true);
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(true);
        });
        rx
    });
}

/// Completes once a stop was requested (installing the handlers if needed).
pub async fn requested() {
    install();
    let Some(rx) = STOP.get() else { return };
    let mut rx = rx.clone();
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Asks everything waiting in [`requested`] to stop, as a signal would (a
/// finished `sync --cutover` stops its sync this way).
pub fn request() {
    install();
    if let Some(tx) = REQUEST.get() {
        let _ = tx.send(true);
    }
}
