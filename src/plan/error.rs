use std::fmt;
use std::path::Path;

/// A plan that cannot be used: where (`file:line:column` when known) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{}:{}: {}", self.file, l, c, self.message),
            (Some(l), None) => write!(f, "{}:{}: {}", self.file, l, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl PlanError {
    pub(crate) fn io(file: &Path, message: String) -> Self {
        PlanError { file: file.display().to_string(), line: None, column: None, message }
    }

    /// Turns a YAML/serde error into a located message, adding the closest
    /// valid key or value when the error is about an unknown one.
    pub(crate) fn from_yaml(file: &Path, text: &str, e: &serde_yaml_ng::Error) -> Self {
        let mut message = e.to_string();
        // The location is reported separately as file:line:column.
        if let Some(pos) = message.rfind(" at line ") {
            if message[pos..].contains(" column ") {
                message.truncate(pos);
            }
        }
        for rust_type in ["usize", "u64", "u32", "u16", "u8"] {
            message = message.replace(&format!("expected {rust_type}"), "expected a whole number (0 or more)");
        }
        if let Some(hint) = suggestion(&message) {
            message.push_str(&hint);
        }
        let (mut line, mut column) = match e.location() {
            Some(l) => (Some(l.line()), Some(l.column())),
            None => (None, None),
        };
        // serde reports a missing field at the enclosing mapping; point at
        // the section by name when the message names a path.
        if message.contains("missing field") && line.is_none() {
            line = Some(1);
            column = Some(1);
        }
        if text.trim().is_empty() {
            message = "the plan file is empty: it needs at least name, source, target and tables".into();
            line = None;
            column = None;
        }
        PlanError { file: file.display().to_string(), line, column, message }
    }

    /// An error about the value of `key`, located at the first line where
    /// `key:` appears in the text (or the file when it does not).
    pub(crate) fn at_key(file: &Path, text: &str, key: &str, message: String) -> Self {
        let mut line = None;
        let mut column = None;
        for (i, l) in text.lines().enumerate() {
            let trimmed = l.trim_start().trim_start_matches("- ");
            let unquoted = trimmed.trim_start_matches(['"', '\'']);
            if let Some(rest) = unquoted.strip_prefix(key) {
                if rest.trim_start_matches(['"', '\'']).trim_start().starts_with(':') {
                    line = Some(i + 1);
                    column = Some(l.len() - l.trim_start().len() + 1);
                    break;
                }
            }
        }
        PlanError { file: file.display().to_string(), line, column, message }
    }
}

/// For "unknown field `x`, expected one of `a`, `b`" (and unknown variants),
/// a " — did you mean `a`?" when one candidate is close.
fn suggestion(message: &str) -> Option<String> {
    let (bad, candidates) = if let Some(rest) = message.split("unknown field `").nth(1) {
        let bad = rest.split('`').next()?;
        (bad, rest)
    } else if let Some(rest) = message.split("unknown variant `").nth(1) {
        let bad = rest.split('`').next()?;
        (bad, rest)
    } else {
        return None;
    };
    let expected = candidates.split_once("expected")?.1;
    let s = crate::suggest::did_you_mean(bad, expected.split('`').skip(1).step_by(2));
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::suggestion;

    #[test]
    fn suggests_the_closest_key() {
        assert_eq!(
            suggestion("copy: unknown field `paralelism`, expected one of `parallelism`, `chunk_rows`").as_deref(),
            Some(" — did you mean `parallelism`?")
        );
        assert_eq!(suggestion("unknown field `zzzzzz`, expected `url`"), None);
    }
}
