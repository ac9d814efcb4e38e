//! A minimal blocking HTTP GET for health probes of local services (loopback, plain HTTP).
//! Only what a health check needs: status code and a bounded body.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// GET `url` (http:// only) with a total timeout.
pub fn http_get(url: &str, timeout: Duration) -> Result<HttpResponse, String> {
    let rest =
        url.strip_prefix("http://").ok_or_else(|| format!("only http:// URLs are probed directly, not {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {addr}"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: caretaker\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.take(1 << 20).read_to_end(&mut buf).map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr} did not answer with HTTP"))?;
    Ok(HttpResponse { status, body: body.to_string() })
}
