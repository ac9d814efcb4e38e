//! Test support: a real Pebble (and pebble-challtestsrv as its DNS, every name → 127.0.0.1)
//! on loopback with its own test CA, and a small TLS "front door" (a swappable resolver, the
//! TLS-ALPN-01 hook and the HTTP-01 token map) like the real one.
#![allow(dead_code)]

use caretaker_certs::challenge::HTTP01_PREFIX;
use caretaker_certs::{AlpnResponder, Install, TokenMap};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The Pebble binaries, or `None` (skip) outside CI.
pub fn pebble_bins() -> Option<(PathBuf, PathBuf)> {
    let pebble = caretaker_testkit::require_service("CARETAKER_TEST_PEBBLE")?;
    let chall = std::env::var("CARETAKER_TEST_PEBBLE_CHALLTESTSRV").unwrap_or_else(|_| "pebble-challtestsrv".into());
    Some((pebble.into(), chall.into()))
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test CA and a certificate for 127.0.0.1/localhost signed by it (Pebble's listener).
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn test_ca() -> TestCa {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "caretaker test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let cert = p.signed_by(&key, &issuer).unwrap();
    TestCa { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

/// A running Pebble.
pub struct Pebble {
    pub dir: PathBuf,
    pub port: u16,
    pub mgmt_port: u16,
    pub dns_port: u16,
    pub http_port: u16,
    pub tls_port: u16,
    pub ca_file: PathBuf,
    procs: Vec<Killed>,
}

impl Pebble {
    /// Chooses ports and writes the config; `start` runs it. `http_port`/`tls_port`: where
    /// Pebble's validation connects (the test's front door).
    pub fn prepare(dir: &Path, http_port: u16, tls_port: u16) -> Pebble {
        let ca = test_ca();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.ca_pem).unwrap();
        std::fs::write(dir.join("cert.pem"), &ca.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &ca.key_pem).unwrap();
        let (port, mgmt_port, dns_port) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                // 90 days, like Let's Encrypt.
                "certificateValidityPeriod": 7776000u64
            }
        });
        std::fs::write(dir.join("pebble.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        Pebble {
            dir: dir.to_path_buf(),
            port,
            mgmt_port,
            dns_port,
            http_port,
            tls_port,
            ca_file: dir.join("ca.pem"),
            procs: vec![],
        }
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    pub fn start(&mut self, bins: &(PathBuf, PathBuf)) {
        let log = |name: &str| std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(name)).unwrap();
        let dns = Command::new(&bins.1)
            .args(["-dns01", &format!("127.0.0.1:{}", self.dns_port), "-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args([
                "-management",
                &format!("127.0.0.1:{}", free_port()),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ])
            .stdout(log("dns.log"))
            .stderr(log("dns.log"))
            .spawn()
            .expect("start pebble-challtestsrv");
        self.procs.push(Killed(dns));
        let pebble = Command::new(&bins.0)
            .arg("-config")
            .arg(self.dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start pebble");
        self.procs.push(Killed(pebble));
        let port = self.port;
        caretaker_testkit::wait_until(Duration::from_secs(30), "pebble to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    pub fn stop(&mut self) {
        self.procs.clear();
    }

    /// Pebble's root (management API `/roots/0`), fetched over TLS trusting the test CA only.
    pub async fn root(&self) -> CertificateDer<'static> {
        let pem = https_get(&self.ca_file, self.mgmt_port, "/roots/0").await;
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("Pebble's root PEM")
    }

    /// New orders Pebble received, counted from its own log.
    pub fn orders(&self) -> usize {
        let log = std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default();
        log.lines().filter(|l| l.contains("There are now") && l.contains("orders")).count()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }
}

async fn https_get(ca_file: &Path, port: u16, path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = vec![];
    let _ = tls.read_to_end(&mut out).await;
    let s = String::from_utf8_lossy(&out).to_string();
    s.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(s)
}

/// The test's front door: a TLS listener with a swappable certificate and the TLS-ALPN-01
/// hook, and a plain HTTP listener answering HTTP-01 from a token map.
#[derive(Default)]
pub struct Front {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    pub installs: Mutex<u32>,
    pub tokens: TokenMap,
    pub alpn_sets: Mutex<u32>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Front")
    }
}

impl Install for Front {
    fn install(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap() = Some(key);
        *self.installs.lock().unwrap() += 1;
    }
}

impl AlpnResponder for Front {
    fn set(&self, name: &str, key: Arc<CertifiedKey>) {
        self.alpn.write().unwrap().insert(name.to_string(), key);
        *self.alpn_sets.lock().unwrap() += 1;
    }
    fn clear(&self, name: &str) {
        self.alpn.write().unwrap().remove(name);
    }
}

impl ResolvesServerCert for Front {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut a| a.any(|p| p == b"acme-tls/1"));
        if acme {
            return self.alpn.read().unwrap().get(hello.server_name()?).cloned();
        }
        self.current.read().unwrap().clone()
    }
}

impl Front {
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().unwrap().clone()
    }

    /// Serves TLS on `tls` and HTTP-01 on `http` (both 127.0.0.1) until the runtime ends.
    pub fn serve(self: &Arc<Self>, http_port: u16, tls_port: u16) {
        let me = self.clone();
        let http = std::net::TcpListener::bind(("127.0.0.1", http_port)).unwrap();
        http.set_nonblocking(true).unwrap();
        let http = tokio::net::TcpListener::from_std(http).unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = http.accept().await else { continue };
                let tokens = me.tokens.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let rsp = match tokens.answer(&path) {
                        Some(a) => format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{a}", a.len()),
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                    };
                    let _ = s.write_all(rsp.as_bytes()).await;
                    let _ = path.starts_with(HTTP01_PREFIX);
                });
            }
        });
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"acme-tls/1".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let tls = std::net::TcpListener::bind(("127.0.0.1", tls_port)).unwrap();
        tls.set_nonblocking(true).unwrap();
        let tls = tokio::net::TcpListener::from_std(tls).unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = tls.accept().await else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut t) = acceptor.accept(s).await {
                        let mut buf = [0u8; 1024];
                        let _ = t.read(&mut buf).await;
                        let _ =
                            t.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
                        let _ = t.shutdown().await;
                    }
                });
            }
        });
    }
}

/// Connects to the front door as `name`, verifying the chain against `root` only; returns the
/// end-entity certificate the server presented, or the handshake error.
pub async fn verified_handshake(
    port: u16,
    name: &str,
    root: &CertificateDer<'static>,
) -> Result<CertificateDer<'static>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.map_err(|e| e.to_string())?;
    let mut out = vec![];
    let _ = tls.read_to_end(&mut out).await;
    let (_, conn) = tls.get_ref();
    Ok(conn.peer_certificates().ok_or("no certificate")?[0].clone().into_owned())
}

/// The serial (hex, as x509-parser prints it) of the certificate the front door serves.
pub fn serial_of(ck: &CertifiedKey) -> String {
    caretaker_certs::x509::info(&ck.cert[0]).unwrap().serial
}

/// A blocking HTTP GET on loopback (nginx tests).
pub fn http_get(port: u16, path: &str, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}
