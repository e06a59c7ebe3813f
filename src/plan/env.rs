//! `${VAR}` interpolation in plan strings.
//!
//! Values come from the process environment at load time, or with
//! `${file:/path}` from a file (a password file: its content, without the
//! trailing newline). A missing variable or unreadable file is an error
//! naming it; the substituted value never appears in an error.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

thread_local! {
    /// The directory a relative `${file:…}` path starts from while a plan
    /// is being read (the plan file's directory).
    static BASE: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Runs `f` with relative `${file:…}` paths resolved against `dir`.
pub fn with_base<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
    let prev = BASE.with(|b| b.replace(Some(dir.to_path_buf())));
    let out = f();
    BASE.with(|b| *b.borrow_mut() = prev);
    out
}

/// Replaces every `${NAME}` (and `${NAME:-default}`) in `input` with the
/// environment variable's value. `$$` stands for a literal `$`.
pub fn interpolate(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| "unterminated ${...}: add the closing `}`".to_string())?;
            let expr = &body[..end];
            if let Some(path) = expr.strip_prefix("file:") {
                let full = BASE.with(|b| match &*b.borrow() {
                    Some(dir) => super::paths::resolve(dir, Path::new(path)),
                    None => PathBuf::from(path),
                });
                let text = std::fs::read_to_string(&full)
                    .map_err(|e| format!("password file {path} (in ${{file:...}}) cannot be read: {e}"))?;
                let secret = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                // A password file holds a secret by definition.
                crate::secrets::register(secret);
                out.push_str(secret);
                rest = &body[end + 1..];
                continue;
            }
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?} in ${{...}}: use letters, digits and _"));
            }
            match lookup(name).or_else(|| default.map(str::to_string)) {
                Some(v) => {
                    if crate::secrets::is_secret_name(name) {
                        crate::secrets::register(&v);
                    }
                    out.push_str(&v)
                }
                None => {
                    return Err(format!(
                        "environment variable {name} is not set (export {name}=... before running xdb)"
                    ))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_reports_missing() {
        assert_eq!(interpolate("a:${PW}@h", env).unwrap(), "a:s3cr3t@h");
        assert_eq!(interpolate("${EMPTY}x", env).unwrap(), "x");
        assert_eq!(interpolate("${NOPE:-dflt}", env).unwrap(), "dflt");
        assert_eq!(interpolate("cost $5 $$", env).unwrap(), "cost $5 $");
        let e = interpolate("x${NOPE}", env).unwrap_err();
        assert!(e.contains("NOPE is not set"), "{e}");
        assert!(interpolate("${PW", env).is_err());
        assert!(interpolate("${A B}", env).is_err());
    }

    #[test]
    fn reads_password_files() {
        let dir = std::env::temp_dir().join(format!("xdb-env-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "fil3-s3cret\n").unwrap();
        let url = interpolate(&format!("postgres://u:${{file:{}}}@h/db", f.display()), env).unwrap();
        assert_eq!(url, "postgres://u:fil3-s3cret@h/db");
        let e = interpolate("${file:/nonexistent/xdb-pw}", env).unwrap_err();
        assert!(e.contains("password file /nonexistent/xdb-pw") && e.contains("cannot be read"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
