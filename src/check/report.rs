use std::fmt::Write as _;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Pass,
    /// Blocks the migration until fixed.
    Fail,
    /// Works, but worth knowing (and perhaps fixing).
    Warn,
    /// Information only.
    Info,
}

/// One line of the checklist, with the exact fix when it is not a pass.
#[derive(Debug, Clone)]
pub struct CheckItem {
    pub status: Status,
    pub title: String,
    pub fix: Option<String>,
}

/// A heading and its items (source, each table, target …).
#[derive(Debug, Clone)]
pub struct CheckSection {
    pub heading: String,
    pub items: Vec<CheckItem>,
}

impl CheckSection {
    pub fn new(heading: impl Into<String>) -> Self {
        CheckSection { heading: heading.into(), items: Vec::new() }
    }
    pub fn pass(&mut self, title: impl Into<String>) {
        self.items.push(CheckItem { status: Status::Pass, title: title.into(), fix: None });
    }
    pub fn info(&mut self, title: impl Into<String>) {
        self.items.push(CheckItem { status: Status::Info, title: title.into(), fix: None });
    }
    pub fn warn(&mut self, title: impl Into<String>, fix: impl Into<String>) {
        self.items.push(CheckItem { status: Status::Warn, title: title.into(), fix: Some(fix.into()) });
    }
    pub fn fail(&mut self, title: impl Into<String>, fix: impl Into<String>) {
        self.items.push(CheckItem { status: Status::Fail, title: title.into(), fix: Some(fix.into()) });
    }
}

/// The whole preflight result.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub sections: Vec<CheckSection>,
    /// `check --reverse`: the way back is what a failure blocks.
    pub way_back: bool,
}

impl CheckReport {
    /// How many items block the migration.
    pub fn failures(&self) -> usize {
        self.sections.iter().flat_map(|s| &s.items).filter(|i| i.status == Status::Fail).count()
    }

    pub fn warnings(&self) -> usize {
        self.sections.iter().flat_map(|s| &s.items).filter(|i| i.status == Status::Warn).count()
    }

    /// The checklist as text; `color` adds ANSI colours for terminals.
    pub fn render(&self, color: bool) -> String {
        let paint = |code: &str, s: &str| {
            if color {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_string()
            }
        };
        let mut out = String::new();
        for s in &self.sections {
            let _ = writeln!(out, "{}", paint("1", &s.heading));
            for i in &s.items {
                let mark = match i.status {
                    Status::Pass => paint("32", "✔"),
                    Status::Fail => paint("31", "✘"),
                    Status::Warn => paint("33", "!"),
                    Status::Info => paint("2", "·"),
                };
                let _ = writeln!(out, "  {mark} {}", i.title);
                if let Some(fix) = &i.fix {
                    for (n, line) in fix.lines().enumerate() {
                        let lead = if n == 0 { "fix: " } else { "     " };
                        let _ = writeln!(out, "      {lead}{line}");
                    }
                }
            }
            out.push('\n');
        }
        let f = self.failures();
        let w = self.warnings();
        let (what, again) =
            if self.way_back { ("the way back", "xdb check --reverse") } else { ("the migration", "xdb check") };
        if f == 0 {
            let _ = writeln!(out, "{} nothing blocks {what} ({w} warning{})", paint("32", "✔"), plural(w));
        } else {
            let _ = writeln!(
                out,
                "{} {f} problem{} block{} {what} ({w} warning{}): apply the fixes above and run {again} again",
                paint("31", "✘"),
                plural(f),
                if f == 1 { "s" } else { "" },
                plural(w)
            );
        }
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
