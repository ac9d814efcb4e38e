//! Shared by the repository tests: a moto S3 server, stock restic, and a fault-injecting HTTP
//! proxy in front of moto.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const PASSWORD: &str = "correct horse battery staple";

/// A moto S3 server on loopback, killed when dropped.
pub struct Moto {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `python3 -m moto.server` (pip package `moto[server]`) with a bucket `caretaker`;
/// `None` (a loud skip) when it is not installed, outside CI.
pub fn moto() -> Option<Moto> {
    let ok = Command::new("python3")
        .args(["-c", "import moto.server, flask"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("moto is not installed: pip install 'moto[server]'");
        }
        eprintln!("SKIPPED: moto not installed (pip install 'moto[server]')");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let m = Moto { child, port };
    caretaker_testkit::wait_until(Duration::from_secs(60), "moto to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok().then_some(())
    });
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "PUT /caretaker HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"), "{reply}");
    Some(m)
}

/// The `ssh` processes this test process started (children whose command is `ssh`).
pub fn ssh_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else { continue };
        let comm = &stat[stat.find('(').unwrap_or(0) + 1..close];
        let ppid = stat[close + 1..].split_whitespace().nth(1).unwrap_or("");
        if comm == "ssh" && ppid == me {
            out.push(pid);
        }
    }
    out
}

/// The `restic` binary; `None` (a loud skip) when it is not installed, outside CI.
pub fn restic() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("restic")).find(|p| p.is_file()));
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("restic is not installed: scripts/install-deps installs it (scripts/deps/apt.txt)");
        }
        eprintln!("SKIPPED: restic not installed (apt-get install restic)");
    }
    found
}

/// What the proxy does to the requests whose request line contains `matching`: the first
/// `fail_503` get `503 Slow Down` (moto never sees them), the next `delayed` ones reach moto
/// but their responses are held back for `delay`. Everything else passes through.
#[derive(Clone, Debug)]
pub struct Faults {
    pub matching: String,
    pub fail_503: u32,
    pub delayed: u32,
    pub delay: Duration,
}

/// A tiny HTTP/1.1 proxy in front of moto (one request per connection), injecting [`Faults`].
pub struct FaultProxy {
    pub port: u16,
    /// 503s answered and responses delayed so far.
    pub answered_503: Arc<AtomicU32>,
    pub delayed: Arc<AtomicU32>,
}

impl FaultProxy {
    pub fn start(upstream: u16, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answered_503 = Arc::new(AtomicU32::new(0));
        let delayed = Arc::new(AtomicU32::new(0));
        let seen = Arc::new(AtomicU32::new(0));
        let (a, d) = (answered_503.clone(), delayed.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (faults, seen, a, d) = (faults.clone(), seen.clone(), a.clone(), d.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &faults, &seen, &a, &d);
                });
            }
        });
        FaultProxy { port, answered_503, delayed }
    }
}

fn serve(
    mut client: TcpStream,
    upstream: u16,
    faults: &Faults,
    seen: &AtomicU32,
    answered_503: &AtomicU32,
    delayed: &AtomicU32,
) -> std::io::Result<()> {
    // The request head, then its body (Content-Length; the S3 client sends no chunked bodies).
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut byte)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut length = 0usize;
    for l in lines.filter(|l| !l.is_empty()) {
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        assert!(!lower.starts_with("transfer-encoding:"), "the proxy handles no chunked request: {l}");
        if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
            continue;
        }
        headers.push(l.to_string());
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = client.read(&mut byte)?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&byte[..n]);
    }

    let mut hold = None;
    if request_line.contains(&faults.matching) {
        let nth = seen.fetch_add(1, Ordering::SeqCst);
        if nth < faults.fail_503 {
            answered_503.fetch_add(1, Ordering::SeqCst);
            let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                       <Message>Please reduce your request rate.</Message></Error>";
            write!(
                client,
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            )?;
            return Ok(());
        }
        if nth < faults.fail_503 + faults.delayed {
            delayed.fetch_add(1, Ordering::SeqCst);
            hold = Some(faults.delay);
        }
    }

    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut req = format!("{request_line}\r\n");
    for h in &headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes())?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    if let Some(d) = hold {
        std::thread::sleep(d);
    }
    client.write_all(&response)?;
    client.flush()
}

/// An SFTP target on the test sshd for a repository at `path`, with the test's key and
/// known_hosts file unless given others.
pub fn sftp_target<'a>(
    sshd: &'a caretaker_testkit::TestSshd,
    path: &'a str,
    key: Option<&'a std::path::Path>,
    known_hosts: Option<&'a std::path::Path>,
) -> caretaker_backup::sftp::SftpTarget<'a> {
    caretaker_backup::sftp::SftpTarget {
        user: Some(&sshd.user),
        host: "127.0.0.1",
        port: Some(sshd.port),
        path,
        key_file: Some(key.unwrap_or(&sshd.key)),
        known_hosts_file: Some(known_hosts.unwrap_or(&sshd.known_hosts)),
    }
}

/// An S3 target for the bucket `caretaker` that [`moto`] creates, at `endpoint` (moto or a
/// proxy in front of it), with the test credentials, for a repository under `prefix`.
pub fn s3_target<'a>(endpoint: &'a str, prefix: &'a str) -> caretaker_backup::s3::S3Target<'a> {
    caretaker_backup::s3::S3Target {
        endpoint,
        bucket: "caretaker",
        prefix,
        region: "us-east-1",
        access_key_id: "AKIDTEST",
        secret_access_key: "test-secret-key",
    }
}
