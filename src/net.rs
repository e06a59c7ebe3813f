//! Where a server is, as every driver's TLS handling needs to know it:
//! whether anything can sit between xdb and the server, and the warning
//! about an unauthenticated server given once per server, not once per
//! connection.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// A Unix socket, `localhost` or a loopback address (also IPv4-mapped, as
/// `::ffff:127.0.0.1`): nothing sits between xdb and the server.
pub fn is_local(host: &str) -> bool {
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// True the first time a server is named in this process (so a warning
/// about its connection settings is given once, not for every connection
/// a copy opens).
pub fn first_warning(server: &str) -> bool {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    SEEN.get_or_init(|| Mutex::new(HashSet::new())).lock().map(|mut s| s.insert(server.to_string())).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_and_sockets_are_local() {
        for local in ["localhost", "LocalHost", "127.0.0.1", "127.0.0.2", "::1", "[::1]", "::ffff:127.0.0.1", "/run/pg"]
        {
            assert!(is_local(local), "{local}");
        }
        for remote in ["10.0.0.5", "db.example.com", "::ffff:10.0.0.5", "192.0.2.1", "localhost.example.com"] {
            assert!(!is_local(remote), "{remote}");
        }
    }

    #[test]
    fn a_server_is_warned_about_once() {
        assert!(first_warning("net-test-a:5432"));
        assert!(!first_warning("net-test-a:5432"));
        assert!(first_warning("net-test-b:5432"));
    }
}
