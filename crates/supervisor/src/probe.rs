//! Health probes: an HTTP GET (status and optional body match), a TCP connect, or a command
//! that must exit 0. Each returns `Err(reason)` worded for the operator's status output.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// GET `url` (plain `http://` only: probes talk to the service's local port, not to the TLS
/// front end) and check the status (default: any 2xx) and, when given, that the body contains
/// `expect_body`.
pub async fn http(
    url: &str,
    expect_status: Option<u16>,
    expect_body: Option<&str>,
    limit: Duration,
) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url}: the built-in probe speaks plain http:// only; probe the service's local port")
    })?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
    let exchange = async {
        let mut s = TcpStream::connect(&addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let req =
            format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: caretaker\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.take(1 << 20).read_to_end(&mut buf).await.map_err(|e| format!("reading from {addr}: {e}"))?;
        Ok::<Vec<u8>, String>(buf)
    };
    let buf = timeout(limit, exchange).await.map_err(|_| format!("{url} did not answer within {limit:?}"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr} did not answer with HTTP"))?;
    let status_ok = match expect_status {
        Some(want) => status == want,
        None => (200..300).contains(&status),
    };
    if !status_ok {
        let want = expect_status.map(|s| s.to_string()).unwrap_or_else(|| "2xx".into());
        return Err(format!("{url} answered {status}, expected {want}"));
    }
    if let Some(want) = expect_body {
        if !body.contains(want) {
            return Err(format!("{url} answered without the expected text {want:?}"));
        }
    }
    Ok(())
}

/// Connects to `address` (host:port).
pub async fn tcp(address: &str, limit: Duration) -> Result<(), String> {
    match timeout(limit, TcpStream::connect(address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot connect to {address}: {e}")),
        Err(_) => Err(format!("connecting to {address} took longer than {limit:?}")),
    }
}

/// Runs a probe command (already set up by [`crate::process::command`], so in its own process
/// group) and requires exit status 0 within `limit`; on timeout the whole group is killed.
pub async fn command(mut cmd: std::process::Command, limit: Duration) -> Result<(), String> {
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("cannot run the probe command: {e}"))?;
    let pid = child.id();
    let mut stderr = child.stderr.take();
    let wait = async {
        let mut err = String::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(4096).read_to_string(&mut err).await;
        }
        (child.wait().await, err)
    };
    match timeout(limit, wait).await {
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), err)) => {
            let err = err.lines().last().unwrap_or("").trim().to_string();
            let sep = if err.is_empty() { "" } else { ": " };
            Err(format!("probe command {status}{sep}{err}"))
        }
        Ok((Err(e), _)) => Err(format!("probe command: {e}")),
        Err(_) => {
            if let Some(pid) = pid {
                crate::process::signal_group(pid, libc::SIGKILL);
            }
            Err(format!("probe command took longer than {limit:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_probe_checks_status_and_body() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let resp = if req.starts_with("GET /ok ") {
                    "HTTP/1.0 200 OK\r\n\r\nall ok"
                } else {
                    "HTTP/1.0 503 Unavailable\r\n\r\nmaintenance"
                };
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        let t = Duration::from_secs(2);
        assert_eq!(http(&format!("http://{addr}/ok"), None, Some("ok"), t).await, Ok(()));
        let e = http(&format!("http://{addr}/ok"), None, Some("ready"), t).await.unwrap_err();
        assert!(e.contains("expected text"), "{e}");
        let e = http(&format!("http://{addr}/down"), None, None, t).await.unwrap_err();
        assert!(e.contains("answered 503, expected 2xx"), "{e}");
        assert_eq!(http(&format!("http://{addr}/down"), Some(503), None, t).await, Ok(()));
        assert_eq!(tcp(&addr.to_string(), t).await, Ok(()));
    }

    #[tokio::test]
    async fn closed_port_and_failing_command_are_reported() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let t = Duration::from_secs(2);
        assert!(tcp(&addr.to_string(), t).await.unwrap_err().contains("cannot connect"));
        let mut c = std::process::Command::new("sh");
        c.args(["-c", "echo not ready >&2; exit 3"]);
        let e = command(c, t).await.unwrap_err();
        assert!(e.contains("not ready"), "{e}");
        let mut c = std::process::Command::new("sleep");
        c.arg("10");
        assert!(command(c, Duration::from_millis(200)).await.unwrap_err().contains("longer than"));
    }
}
