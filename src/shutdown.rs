//! SIGINT/SIGTERM as a stop request that long-running commands observe.
//!
//! The handlers are installed once, as the process starts, so a signal that
//! arrives while a command is still connecting is a clean stop rather than
//! the default action (immediate exit with nothing confirmed).
//!
//! Commands that stop on a signal before their work is done (the copy,
//! `validate`, `schema --scan`) exit with [`interrupted_exit_code`]: 130
//! after SIGINT, 143 after SIGTERM, as a shell reports a process the signal
//! killed, so scripts see that the work is unfinished.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use tokio::sync::watch;

static STOP: OnceLock<watch::Receiver<bool>> = OnceLock::new();
static REQUEST: OnceLock<watch::Sender<bool>> = OnceLock::new();
/// The number of the signal that asked to stop; 0 before one arrived.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

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
                        let signal = tokio::select! {
                            _ = term.recv() => SIGTERM,
                            _ = int.recv() => SIGINT,
                        };
                        SIGNAL.store(signal, Ordering::SeqCst);
                    }
                    _ => {
                        let _ = tokio::signal::ctrl_c().await;
                        SIGNAL.store(SIGINT, Ordering::SeqCst);
                    }
                }
                let _ = tx.send(true);
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            SIGNAL.store(SIGINT, Ordering::SeqCst);
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

/// True once a stop was requested (by a signal or [`request`]).
pub fn is_requested() -> bool {
    STOP.get().is_some_and(|rx| *rx.borrow())
}

/// The exit code of a command a stop request cut short: 128 + the signal
/// number (130 SIGINT, 143 SIGTERM); 1 when no signal asked (a stop
/// requested from within, e.g. by a finished `sync --cutover`).
pub fn interrupted_exit_code() -> u8 {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => 1,
        n => u8::try_from(128 + n).unwrap_or(1),
    }
}
