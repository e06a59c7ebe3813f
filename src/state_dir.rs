//! Where xdb keeps local state that belongs to one machine and one source —
//! today the cutover journals with their freeze records. Never beside the
//! plan: plans live in repositories, and a journal committed with one told a
//! fresh clone about a freeze on another machine.
//!
//! The directory is `$XDB_STATE_DIR`, else `$XDG_STATE_HOME/xdb`, else
//! `$HOME/.local/state/xdb`.

use std::path::PathBuf;

/// No state directory could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no state directory for xdb: set XDB_STATE_DIR (or XDG_STATE_HOME or HOME)")]
pub struct NoStateDir;

/// The state directory (not created here).
pub fn root() -> Result<PathBuf, NoStateDir> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("XDB_STATE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return Ok(dir.join("xdb"));
    }
    var("HOME").map(|h| h.join(".local/state/xdb")).ok_or(NoStateDir)
}

/// A name safe as one path component: letters, digits, `-`, `_`, `.`
/// kept, anything else (and a leading dot) as `_`.
pub fn component(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    match s.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None if s.is_empty() => "_".into(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn components_cannot_escape_the_directory() {
        assert_eq!(super::component("shop-db"), "shop-db");
        assert_eq!(super::component("../x/y"), "_._x_y");
        assert_eq!(super::component(""), "_");
    }
}
