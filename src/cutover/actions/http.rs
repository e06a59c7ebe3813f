//! A minimal HTTP/1.1 GET for health checks (`http://` only, no TLS): one
//! request on a fresh TCP connection, only the status line is read.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Host, port and path of an `http://` URL.
pub fn split_url(url: &str) -> Result<(String, u16, String), String> {
    if url.starts_with("https://") {
        return Err(format!("{url}: https is not supported by the built-in check; use a command (curl) instead"));
    }
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        // [v6]:port
        let (h, p) = stripped.split_once(']').ok_or_else(|| format!("{url}: bad IPv6 host"))?;
        (h.to_string(), p.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| format!("{url}: bad port {p:?}"))?,
        None => 80,
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((host, port, path))
}

/// The status code from a response's first line (`HTTP/1.1 200 OK`).
pub fn parse_status(head: &[u8]) -> Option<u16> {
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split_whitespace();
    let proto = parts.next()?;
    if !proto.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

/// GETs `url` and returns the status code.
pub async fn get_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let (host, port, path) = split_url(url)?;
    let work = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("GET {url}: cannot connect: {e}"))?;
        let host_header = if port == 80 { host.clone() } else { format!("{host}:{port}") };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: xdb-cutover\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.map_err(|e| format!("GET {url}: {e}"))?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 8192 {
            let n = stream.read(&mut buf).await.map_err(|e| format!("GET {url}: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        parse_status(&head).ok_or_else(|| format!("GET {url}: the answer is not an HTTP response"))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("GET {url}: no answer within {} s", timeout.as_secs_f64())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(split_url("http://127.0.0.1:8080/health").unwrap(), ("127.0.0.1".into(), 8080, "/health".into()));
        assert_eq!(split_url("http://example").unwrap(), ("example".into(), 80, "/".into()));
        assert_eq!(split_url("http://h?x=1").unwrap(), ("h".into(), 80, "/?x=1".into()));
        assert_eq!(split_url("http://[::1]:81/a").unwrap(), ("::1".into(), 81, "/a".into()));
        assert!(split_url("https://h/").unwrap_err().contains("https"));
        assert!(split_url("http://h:x/").is_err());
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(parse_status(b"HTTP/1.0 200\r\n"), Some(200));
        assert_eq!(parse_status(b"SSH-2.0\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2000 x\r\n"), None);
    }

    #[tokio::test]
    async fn gets_a_status_from_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").await;
        });
        let url = format!("http://127.0.0.1:{port}/health");
        assert_eq!(get_status(&url, Duration::from_secs(5)).await, Ok(204));
    }
}
