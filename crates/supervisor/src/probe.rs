//! Health probes: an HTTP(S) GET (status and optional body match), a TCP connect, or a command
//! that must exit 0. Each returns `Err(reason)` worded for the operator's status output.
//!
//! This is the one probe implementation: the daemon, the compose watcher and `caretaker check`
//! (through [`blocking`]) all run it, so they cannot disagree about a service's health. The
//! success rule (docs/supervisor.md, "Health probes"): the status must be in `expect_status`
//! (default any 2xx); redirects are not followed, so a 3xx fails unless listed.

use caretaker_core::config::HttpProbe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// GET the probe's URL and check it; `Ok(())` when it passes.
pub async fn http(probe: &HttpProbe, limit: Duration) -> Result<(), String> {
    http_status(probe, limit).await.map(drop)
}

/// GET the probe's URL (`http://` or `https://`, HTTP/1.0, no redirects followed) and check
/// the status against `expect_status` (default any 2xx) and, when given, that the body contains
/// `expect_body`. `Ok(status)` when it passes.
pub async fn http_status(probe: &HttpProbe, limit: Duration) -> Result<u16, String> {
    let url = probe.url.as_str();
    let target = Target::parse(url)?;
    let tls = if target.tls { Some(tls_connector(probe.ca_file.as_deref())?) } else { None };
    let addr = target.addr();
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: caretaker\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    let exchange = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        match tls {
            None => send(tcp, req.as_bytes(), &addr).await,
            Some(connector) => {
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|e| format!("{url}: \"{}\" is not a valid TLS server name: {e}", target.host))?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {addr} failed: {e}{}", ca_hint(probe)))?;
                send(stream, req.as_bytes(), &addr).await
            }
        }
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
    if !probe.expect_status.accepts(status) {
        let location = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.trim());
        let redirect = match location {
            Some(to) if (300..400).contains(&status) => {
                format!(" (a redirect to {to}: not followed; list {status} in `expect_status` to accept it)")
            }
            _ => String::new(),
        };
        return Err(format!("{url} answered {status}{redirect}, expected {}", probe.expect_status));
    }
    if let Some(want) = &probe.expect_body {
        if !body.contains(want.as_str()) {
            return Err(format!("{url} answered {status} without the expected text {want:?}"));
        }
    }
    Ok(status)
}

fn ca_hint(probe: &HttpProbe) -> &'static str {
    if probe.ca_file.is_some() {
        ""
    } else {
        " (for a self-signed or private-CA certificate, set the probe's `ca_file`)"
    }
}

/// Writes the request and reads the answer (at most 1 MiB) until the server closes.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, req: &[u8], addr: &str) -> Result<Vec<u8>, String> {
    s.write_all(req).await.map_err(|e| format!("writing to {addr}: {e}"))?;
    s.flush().await.map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut buf = Vec::new();
    match (&mut s).take(1 << 20).read_to_end(&mut buf).await {
        Ok(_) => Ok(buf),
        // Many TLS servers close without close_notify; the answer is complete all the same.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => Ok(buf),
        Err(e) => Err(format!("reading from {addr}: {e}")),
    }
}

/// The parts of a probe URL.
#[derive(Debug)]
struct Target {
    tls: bool,
    /// Without IPv6 brackets.
    host: String,
    port: u16,
    /// `host[:port]` as written, for the Host header.
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("{url}: a probe URL starts with http:// or https://"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let default = if tls { 443 } else { 80 };
        let bad_port = |p: &str| format!("{url}: \"{p}\" is not a port");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, tail) = v6.split_once(']').ok_or_else(|| format!("{url}: unclosed [ in the host"))?;
            match tail.strip_prefix(':') {
                Some(p) => (h, p.parse().map_err(|_| bad_port(p))?),
                None => (h, default),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad_port(p))?),
                None => (authority, default),
            }
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Target { tls, host: host.to_string(), port, authority: authority.to_string(), path })
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// rustls with the ring provider, trusting the public web roots plus the certificates in
/// `ca_file` (as CAs, and pinned: a server presenting exactly one of them is trusted, which
/// covers self-signed certificates that are not valid CAs).
fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut pinned = Vec::new();
    if let Some(path) = ca_file {
        let what = |e: &dyn std::fmt::Display| format!("cannot read the probe's ca_file {}: {e}", path.display());
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| what(&e))? {
            let cert = cert.map_err(|e| what(&e))?;
            // Not every certificate is a valid trust anchor; it is still pinned.
            let _ = roots.add(cert.clone());
            pinned.push(cert);
        }
        if pinned.is_empty() {
            return Err(what(&"no PEM certificate in it"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { webpki, pinned }))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// WebPKI verification, except that a server presenting exactly a certificate from `ca_file`
/// is trusted (the handshake signatures are still checked against its key).
#[derive(Debug)]
struct Pinned {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
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

/// The same probes for callers without a runtime (`caretaker check`, standalone gathering).
pub mod blocking {
    use caretaker_core::config::HttpProbe;
    use std::io::Read;
    use std::net::{TcpStream, ToSocketAddrs};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// [`super::http_status`] on a private single-thread runtime (on a thread of its own when
    /// called from inside a runtime).
    pub fn http(probe: &HttpProbe, limit: Duration) -> Result<u16, String> {
        let go = || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(super::http_status(probe, limit)),
            Err(e) => Err(format!("cannot start the probe: {e}")),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(go).join().unwrap_or_else(|_| Err("the probe panicked".into())))
        } else {
            go()
        }
    }

    pub fn tcp(address: &str, timeout: Duration) -> Result<(), String> {
        let addrs: Vec<_> = address.to_socket_addrs().map_err(|e| format!("cannot resolve {address}: {e}"))?.collect();
        let mut last = format!("no address for {address}");
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("cannot connect to {address}: {e}"),
            }
        }
        Err(last)
    }

    /// A command probe of a command the caller built (e.g. `compose exec -T SERVICE ...`):
    /// passes when it exits 0 within `timeout`; the detail is its last line of output.
    pub fn command(mut cmd: Command, timeout: Duration) -> Result<String, String> {
        let prog = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {prog}: {e}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let mut out = String::new();
                    if let Some(mut o) = child.stdout.take() {
                        let _ = o.read_to_string(&mut out);
                    }
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut out);
                    }
                    let line = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
                    return if status.success() {
                        Ok(if line.is_empty() { "exited 0".into() } else { line })
                    } else {
                        Err(format!("{status}{}", if line.is_empty() { String::new() } else { format!(": {line}") }))
                    };
                }
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("no answer within {}s", timeout.as_secs()));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_core::config::ExpectStatus;

    // Multi-threaded: the blocking wrapper below holds one worker while the server answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        let probe = |path: &str, status: &[(u16, u16)], body: Option<&str>| HttpProbe {
            url: format!("http://{addr}{path}"),
            expect_status: ExpectStatus(status.to_vec()),
            expect_body: body.map(str::to_string),
            ca_file: None,
        };
        assert_eq!(http(&probe("/ok", &[], Some("ok")), t).await, Ok(()));
        let e = http(&probe("/ok", &[], Some("ready")), t).await.unwrap_err();
        assert!(e.contains("expected text"), "{e}");
        let e = http(&probe("/down", &[], None), t).await.unwrap_err();
        assert!(e.contains("answered 503, expected 2xx"), "{e}");
        assert_eq!(http(&probe("/down", &[(503, 503)], None), t).await, Ok(()));
        assert_eq!(blocking::http(&probe("/down", &[(500, 599)], None), t), Ok(503));
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

    fn openssl(dir: &std::path::Path, args: &[&str]) {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A self-signed certificate (`name`.pem / `name`.key) as `openssl req -x509` makes them,
    /// for `subject`, with `extra` arguments (e.g. `-addext` for the names it serves).
    fn self_signed_as(dir: &std::path::Path, name: &str, subject: &str, extra: &[&str]) {
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        let mut args = vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            subject,
            "-keyout",
            &key,
            "-out",
            &cert,
        ];
        args.extend_from_slice(extra);
        openssl(dir, &args);
    }

    /// A self-signed server certificate for localhost and 127.0.0.1.
    fn self_signed(dir: &std::path::Path, name: &str) {
        self_signed_as(dir, name, "/CN=localhost", &["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]);
    }

    /// `openssl s_server -www` (any GET answers 200) on a free port; killed when dropped.
    struct TlsServer(std::process::Child, u16);
    impl Drop for TlsServer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    async fn tls_server(dir: &std::path::Path, cert: &str, key: &str) -> TlsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}"), "-cert", cert, "-key", key])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let server = TlsServer(child, port);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "openssl s_server did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    #[tokio::test]
    async fn https_probe_trusts_the_ca_file_as_a_ca_or_a_pinned_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        self_signed(d, "server");
        self_signed(d, "other");
        // A private CA and a leaf it signed: trusted as a CA, not by pinning.
        self_signed_as(d, "ca", "/CN=test CA", &[]);
        openssl(
            d,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=leaf",
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
            ],
        );
        std::fs::write(d.join("leaf.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
                "-out",
                "leaf.pem",
            ],
        );
        let t = Duration::from_secs(5);
        let probe = |port: u16, ca: Option<&str>| HttpProbe {
            url: format!("https://127.0.0.1:{port}/healthz"),
            expect_status: ExpectStatus::default(),
            expect_body: None,
            ca_file: ca.map(|c| d.join(c)),
        };
        let pinned = tls_server(d, "server.pem", "server.key").await;
        let e = http_status(&probe(pinned.1, None), t).await.unwrap_err();
        assert!(e.contains("TLS handshake") && e.contains("ca_file"), "not a public certificate: {e}");
        let e = http_status(&probe(pinned.1, Some("other.pem")), t).await.unwrap_err();
        assert!(e.contains("TLS handshake"), "another certificate: {e}");
        assert_eq!(http_status(&probe(pinned.1, Some("server.pem")), t).await, Ok(200));
        let signed = tls_server(d, "leaf.pem", "leaf.key").await;
        assert_eq!(http_status(&probe(signed.1, Some("ca.pem")), t).await, Ok(200));
        assert!(http_status(&probe(signed.1, Some("other.pem")), t).await.is_err());
        let e = http_status(&probe(signed.1, Some("missing.pem")), t).await.unwrap_err();
        assert!(e.contains("cannot read the probe's ca_file"), "{e}");
    }

    #[test]
    fn probe_urls_are_split_into_host_port_and_path() {
        let cases = [
            ("http://127.0.0.1:8001/healthz", false, "127.0.0.1", 8001, "/healthz", "127.0.0.1:8001"),
            ("https://example.org", true, "example.org", 443, "/", "example.org:443"),
            ("http://example.org?x=1", false, "example.org", 80, "/?x=1", "example.org:80"),
            ("https://[::1]:8443/up?deep=1", true, "::1", 8443, "/up?deep=1", "[::1]:8443"),
        ];
        for (url, tls, host, port, path, addr) in cases {
            let t = Target::parse(url).unwrap();
            assert_eq!(
                (t.tls, t.host.as_str(), t.port, t.path.as_str(), t.addr()),
                (tls, host, port, path, addr.into())
            );
        }
        assert!(Target::parse("ftp://h/").is_err());
        assert!(Target::parse("http://h:port/").unwrap_err().contains("not a port"));
    }
}
