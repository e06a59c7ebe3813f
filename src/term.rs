//! The terminal shared by progress bars and log lines. While bars are
//! drawn on stderr, a log line written in between would tear them (the bar
//! redraws over half a line); the log writer hides the bars for the time
//! of its write instead, and indicatif draws them again below the line.

use std::sync::Mutex;

use indicatif::MultiProgress;

static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Registers the bars being drawn (`None` once they are finished).
pub fn set_bars(bars: Option<MultiProgress>) {
    if let Ok(mut b) = BARS.lock() {
        *b = bars;
    }
}

/// Runs `f` (a write to stderr) with the bars hidden, if any are drawn.
pub fn with_bars_hidden<R>(f: impl FnOnce() -> R) -> R {
    let bars = BARS.lock().ok().and_then(|b| b.clone());
    match bars {
        Some(m) => m.suspend(f),
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, TermLike};

    use super::*;

    /// A terminal that records what is drawn on it.
    #[derive(Debug, Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Recorder {
        fn push(&self, s: String) {
            self.0.lock().unwrap().push(s);
        }
    }

    impl TermLike for Recorder {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            self.push(format!("up {n}"));
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.push(format!("line {s}"));
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.push(format!("str {s}"));
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.push("clear".into());
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_line_is_written_with_the_bars_cleared_and_redrawn_after() {
        let term = Recorder::default();
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(term.clone())));
        let bar = multi.add(ProgressBar::new(100));
        bar.set_position(40);
        bar.tick();
        set_bars(Some(multi.clone()));
        with_bars_hidden(|| term.push("LOG".into()));
        set_bars(None);
        let ops = term.0.lock().unwrap().clone();
        let log = ops.iter().position(|o| o == "LOG").expect("the log line was written");
        let drawn_before = ops[..log].iter().any(|o| o.contains("40/100"));
        assert!(drawn_before, "the bar was drawn first: {ops:?}");
        assert!(ops[..log].iter().rev().take_while(|o| !o.contains("40/100")).any(|o| o == "clear"), "{ops:?}");
        assert!(ops[log + 1..].iter().any(|o| o.contains("40/100")), "the bar is drawn again after: {ops:?}");
    }
}
