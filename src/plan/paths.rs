//! Relative paths in a plan mean "beside the plan file", wherever xdb is
//! started from: SQLite files, mapping rules files, certificate and key
//! files named in URLs (`sslrootcert`, `sslcert`, `sslkey`, MySQL
//! `ssl-ca`, `ssl-cert`, `ssl-key`) and the working directory of `command`
//! steps. They are made absolute once, when the plan is loaded, so every
//! consumer (drivers, commands via `TARGET_URL` / `XDB_PLAN`, messages)
//! sees the same file.

use std::path::{Path, PathBuf};

/// URL query parameters that name a file.
const PATH_PARAMS: &[&str] = &["sslrootcert", "sslcert", "sslkey", "ssl-ca", "ssl-cert", "ssl-key", "sslcrl"];

/// The directory a plan's relative paths start from: the plan file's own
/// directory, absolute.
pub fn plan_dir(file: &Path) -> PathBuf {
    let parent = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let abs = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
    normalize(&abs)
}

/// `p` when absolute, else `dir/p` (with `.` and `..` folded where the
/// result stays the same file).
pub fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        normalize(&dir.join(p))
    }
}

/// Folds `.` components and `x/..` pairs lexically, so messages and
/// commands see `/repo/scripts` rather than `/repo/cutover-plans/../scripts`.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The URL with every file-naming query parameter made absolute against
/// `dir`. Other parameters, and the rest of the URL, are left byte for byte.
pub fn absolutize_url_params(url: &str, dir: &Path) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if PATH_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k)) && !v.is_empty() => {
                let decoded = super::url::percent_decode(v);
                let p = Path::new(&decoded);
                if p.is_absolute() {
                    kv.to_string()
                } else {
                    format!("{k}={}", encode_path(&resolve(dir, p).to_string_lossy()))
                }
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{head}?{}", params.join("&"))
}

/// Percent-encodes what would end a query value (`&`, `#`, `%`, space, `+`).
fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for ch in p.chars() {
        match ch {
            '&' | '#' | '%' | ' ' | '+' | '?' | '=' => out.push_str(&format!("%{:02X}", ch as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_beside_the_plan() {
        let dir = Path::new("/repo/cutover-plans");
        assert_eq!(resolve(dir, Path::new("shop.db")), Path::new("/repo/cutover-plans/shop.db"));
        assert_eq!(resolve(dir, Path::new("../scripts/x.sh")), Path::new("/repo/scripts/x.sh"));
        assert_eq!(resolve(dir, Path::new("/abs/x")), Path::new("/abs/x"));
        assert_eq!(plan_dir(Path::new("/a/b/plan.yaml")), Path::new("/a/b"));
        assert!(plan_dir(Path::new("plan.yaml")).is_absolute());
    }

    #[test]
    fn certificate_parameters_become_absolute() {
        let dir = Path::new("/repo/plans");
        assert_eq!(
            absolutize_url_params("postgres://u:p@h/db?sslmode=verify-full&sslrootcert=certs/ca.pem", dir),
            "postgres://u:p@h/db?sslmode=verify-full&sslrootcert=/repo/plans/certs/ca.pem"
        );
        assert_eq!(
            absolutize_url_params("mysql://u@h/db?ssl-ca=/etc/ca.pem&ssl-cert=c.pem", dir),
            "mysql://u@h/db?ssl-ca=/etc/ca.pem&ssl-cert=/repo/plans/c.pem"
        );
        assert_eq!(absolutize_url_params("postgres://h/db", dir), "postgres://h/db");
    }
}
