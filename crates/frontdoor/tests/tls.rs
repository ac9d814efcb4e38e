//! The front door's TLS side on loopback, against clients that trust only the test's own CA:
//! pages over HTTPS, the HTTP→HTTPS redirect with the ACME path exempt, HSTS, the maintenance
//! page over TLS, TLS-ALPN-01, the self-signed start and certificate swaps without a restart —
//! also while clients keep requesting, new connections and keep-alive ones.

use bytes::Bytes;
use caretaker_core::mode::{Maintenance, Mode};
use caretaker_frontdoor::tls::{self, CertSlot, Http01Tokens, TlsState};
use caretaker_frontdoor::{FrontDoor, Settings, TlsSite};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The app: `/echo` answers with the request's headers, anything else with "hello".
async fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body = match req.uri().path() {
                        "/echo" => req
                            .headers()
                            .iter()
                            .map(|(k, v)| format!("{k}={}\n", v.to_str().unwrap_or("")))
                            .collect::<String>(),
                        _ => "hello".to_string(),
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    addr
}

/// The test's CA and certificates it signs.
struct Ca(rcgen::CertifiedIssuer<'static, rcgen::KeyPair>);

impl Ca {
    fn new() -> Ca {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, "caretaker test CA");
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        Ca(rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap())
    }

    /// A leaf for `names` as PEM (chain, key), as a CA would deliver it.
    fn issue_pem(&self, names: &[&str]) -> (String, String) {
        let p = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.0).unwrap();
        (format!("{}{}", cert.pem(), self.0.pem()), key.serialize_pem())
    }

    fn issue(&self, names: &[&str]) -> Arc<CertifiedKey> {
        let (chain, key) = self.issue_pem(names);
        tls::certified_key_from_pem(chain.as_bytes(), key.as_bytes()).unwrap()
    }

    /// A client that trusts this CA and nothing else.
    fn client(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.0.der().clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Full handshakes only: a resumed session shows the certificate of the session it
        // resumes, not the one served now.
        cfg.resumption = rustls::client::Resumption::disabled();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }
}

/// A client that accepts any certificate (to look at what is served, e.g. self-signed).
fn any_cert_client(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    #[derive(Debug)]
    struct AcceptAll(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAll {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            // webpki refuses to parse the TLS-ALPN-01 certificate (an unknown critical
            // extension); this client only looks at what is served.
            match rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms) {
                Err(rustls::Error::InvalidCertificate(_)) => {
                    Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
                }
                other => other,
            }
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAll(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.resumption = rustls::client::Resumption::disabled();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

struct Door {
    plain: SocketAddr,
    https: SocketAddr,
    mode: watch::Sender<Mode>,
    slot: Arc<CertSlot>,
    tokens: Http01Tokens,
    door: Arc<FrontDoor>,
}

async fn door(slot: Arc<CertSlot>, hsts: Option<&str>) -> Door {
    let (tx, rx) = watch::channel(Mode::Normal);
    let settings = Settings {
        app_name: "shop".into(),
        upstream: upstream().await.to_string(),
        max_body_bytes: 1 << 20,
        upstream_timeout: Duration::from_secs(30),
        retry_after: Duration::from_secs(30),
    };
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain_addr, https_addr) = (plain.local_addr().unwrap(), https.local_addr().unwrap());
    let tokens = Http01Tokens::default();
    let site = TlsSite {
        state: TlsState { slot: slot.clone(), tokens: tokens.clone() },
        redirect_http: true,
        https_port: https_addr.port(),
        hsts: hsts.map(|h| h.parse().unwrap()),
        default_host: "example.org".into(),
    };
    let fd = FrontDoor::with_tls(settings, rx, site);
    tokio::spawn(fd.clone().serve(plain, std::future::pending()));
    tokio::spawn(fd.clone().serve_tls(https, std::future::pending()));
    Door { plain: plain_addr, https: https_addr, mode: tx, slot, tokens, door: fd }
}

/// One HTTP/1.1 exchange over a fresh TLS connection: (status, head, body, served leaf).
async fn https_get(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    sni: &str,
    path: &str,
) -> std::io::Result<(u16, String, String, Vec<u8>)> {
    let tcp = TcpStream::connect(addr).await?;
    let mut s = connector.connect(ServerName::try_from(sni.to_string()).unwrap(), tcp).await?;
    let leaf = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    // A close without close_notify is fine for this test.
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).map(|s| s.parse().unwrap()).unwrap_or(0);
    Ok((status, head.to_string(), body.to_string(), leaf))
}

async fn plain(addr: SocketAddr, req: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.split_whitespace().nth(1).unwrap().parse().unwrap(), head.to_string(), body.to_string())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

#[tokio::test]
async fn https_with_a_client_that_trusts_only_the_test_ca() {
    let ca = Ca::new();
    let d = door(CertSlot::new(ca.issue(&["example.org", "www.example.org"]), false), None).await;
    let client = ca.client();
    // Both names of the certificate (SAN).
    for name in ["example.org", "www.example.org"] {
        let (status, _, body, _) = https_get(&client, d.https, name, "/").await.unwrap();
        assert_eq!((status, body.as_str()), (200, "hello"), "{name}");
    }
    let (_, _, body, _) = https_get(&client, d.https, "example.org", "/echo").await.unwrap();
    assert!(body.contains("x-forwarded-proto=https"), "{body}");
    assert!(body.contains("host=example.org"), "{body}");
    // A name the certificate does not hold fails verification.
    let e = https_get(&client, d.https, "other.example.net", "/").await.unwrap_err();
    assert!(e.to_string().contains("not valid for name"), "{e}");
    // No HSTS unless configured.
    let (_, head, _, _) = https_get(&client, d.https, "example.org", "/").await.unwrap();
    assert_eq!(header(&head, "strict-transport-security"), None, "{head}");
}

#[tokio::test]
async fn plain_http_redirects_to_https_except_acme_challenges() {
    let ca = Ca::new();
    let d = door(CertSlot::new(ca.issue(&["example.org"]), false), Some("max-age=31536000")).await;
    let port = d.https.port();

    let (status, head, _) =
        plain(d.plain, "GET /shop/cart?item=7 HTTP/1.1\r\nHost: example.org:8080\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 308, "{head}");
    assert_eq!(header(&head, "location"), Some(format!("https://example.org:{port}/shop/cart?item=7").as_str()));
    // A POST keeps its method through a 308; no HSTS over plain HTTP (RFC 6797 §7.2).
    let (status, head, _) = plain(
        d.plain,
        "POST /form HTTP/1.1\r\nHost: www.example.org\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert_eq!(status, 308, "{head}");
    assert_eq!(header(&head, "location"), Some(format!("https://www.example.org:{port}/form").as_str()));
    assert_eq!(header(&head, "strict-transport-security"), None);
    // HTTP/1.0 without Host: the first name.
    let (status, head, _) = plain(d.plain, "GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 308, "{head}");
    assert_eq!(header(&head, "location"), Some(format!("https://example.org:{port}/").as_str()));
    // A Host that is no authority is refused, not echoed into a Location.
    let (status, _, _) = plain(d.plain, "GET / HTTP/1.1\r\nHost: exa mple.org/x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 400);

    // ACME HTTP-01: the key authorization, on the plain port and over TLS, even in maintenance.
    d.tokens.set("tok-1", "tok-1.thumbprint");
    d.mode.send_replace(Mode::Maintenance(Maintenance {
        message: "back soon".into(),
        since: jiff::Timestamp::now(),
        by: "operator".into(),
    }));
    let (status, head, body) = plain(
        d.plain,
        "GET /.well-known/acme-challenge/tok-1 HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "tok-1.thumbprint"), "{head}");
    let (status, _, body, _) =
        https_get(&ca.client(), d.https, "example.org", "/.well-known/acme-challenge/tok-1").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "tok-1.thumbprint"));
    d.mode.send_replace(Mode::Normal);
    // An unknown token is not redirected: it goes to the app like any request.
    d.tokens.remove("tok-1");
    let (status, _, body) = plain(
        d.plain,
        "GET /.well-known/acme-challenge/tok-1 HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert!(d.door.stats.redirects.load(Ordering::Relaxed) >= 3);
}

#[tokio::test]
async fn hsts_and_the_maintenance_page_over_tls() {
    let ca = Ca::new();
    let d = door(CertSlot::new(ca.issue(&["example.org"]), false), Some("max-age=31536000; includeSubDomains")).await;
    let client = ca.client();
    let (status, head, _, _) = https_get(&client, d.https, "example.org", "/").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&head, "strict-transport-security"), Some("max-age=31536000; includeSubDomains"));

    d.mode.send_replace(Mode::Maintenance(Maintenance {
        message: "Upgrading the shop".into(),
        since: jiff::Timestamp::now(),
        by: "operator".into(),
    }));
    let (status, head, body, _) = https_get(&client, d.https, "example.org", "/").await.unwrap();
    assert_eq!(status, 503, "{head}");
    assert!(body.contains("Upgrading the shop"), "{body}");
    assert_eq!(header(&head, "retry-after"), Some("30"));
    assert_eq!(header(&head, "strict-transport-security"), Some("max-age=31536000; includeSubDomains"));
}

#[tokio::test]
async fn self_signed_at_start_then_the_real_certificate_without_restart() {
    let ca = Ca::new();
    let names = vec!["example.org".to_string(), "www.example.org".to_string()];
    // Unreadable manual files: self-signed, not an error that keeps HTTPS down.
    let slot =
        tls::initial_slot(&names, Some((std::path::Path::new("/nonexistent/c.pem"), std::path::Path::new("/x"))))
            .unwrap();
    assert!(slot.is_self_signed());
    let d = door(slot, None).await;
    let verifying = ca.client();

    // Served at once: a client that accepts anything sees the self-signed certificate, and it
    // holds a keep-alive connection across the swap.
    let loose = any_cert_client(&[b"http/1.1"]);
    let tcp = TcpStream::connect(d.https).await.unwrap();
    let tls_stream = loose.connect(ServerName::try_from("example.org").unwrap(), tcp).await.unwrap();
    let self_signed_leaf = tls_stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls_stream)).await.unwrap();
    tokio::spawn(conn);
    let get = || Request::get("/").header("host", "example.org").body(Full::new(Bytes::new())).unwrap();
    assert_eq!(sender.send_request(get()).await.unwrap().status(), 200);
    // The verifying client refuses it: not from its CA.
    let e = https_get(&verifying, d.https, "example.org", "/").await.unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");

    let real = ca.issue(&["example.org", "www.example.org"]);
    d.slot.set_certificate(real.clone());
    assert!(!d.slot.is_self_signed());
    let (status, _, body, leaf) = https_get(&verifying, d.https, "www.example.org", "/").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert_eq!(leaf, real.cert[0].to_vec());
    assert_ne!(leaf, self_signed_leaf);
    // The connection opened before the swap goes on, with the session it had.
    for _ in 0..3 {
        let resp = sender.send_request(get()).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(&resp.into_body().collect().await.unwrap().to_bytes()[..], b"hello");
    }
}

#[tokio::test]
async fn tls_alpn_01_answers_only_a_set_challenge() {
    let ca = Ca::new();
    let d = door(CertSlot::new(ca.issue(&["example.org"]), false), None).await;
    let acme = any_cert_client(&[tls::ACME_TLS_ALPN]);
    let connect = || async {
        let tcp = TcpStream::connect(d.https).await.unwrap();
        acme.connect(ServerName::try_from("example.org").unwrap(), tcp).await
    };
    assert!(connect().await.is_err(), "no challenge set: the handshake must fail");

    let challenge = tls::alpn_challenge_certificate("example.org", &[7u8; 32]).unwrap();
    d.slot.set_alpn_challenge("example.org", challenge.clone());
    let mut s = connect().await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(tls::ACME_TLS_ALPN));
    assert_eq!(s.get_ref().1.peer_certificates().unwrap()[0].as_ref(), challenge.cert[0].as_ref());
    // The critical acmeIdentifier extension (1.3.6.1.5.5.7.1.31) with the digest.
    let der = challenge.cert[0].as_ref();
    let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
    assert!(der.windows(oid.len()).any(|w| w == oid));
    assert!(der.windows(32).any(|w| w == [7u8; 32]));
    // The server closes after the handshake.
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).await.unwrap_or(0), 0);
    // Normal visitors still get the real certificate meanwhile.
    let (status, _, _, _) = https_get(&ca.client(), d.https, "example.org", "/").await.unwrap();
    assert_eq!(status, 200);

    d.slot.clear_alpn_challenge("example.org");
    assert!(connect().await.is_err());
}

/// Polls until the handshake counter passed `before` (generous deadline: a loaded machine).
async fn handshake_after(handshakes: &AtomicU64, before: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while handshakes.load(Ordering::Relaxed) <= before {
        assert!(tokio::time::Instant::now() < deadline, "no handshake within 60 s after {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// 100 certificate swaps while clients request over TLS, on new connections and on keep-alive
/// ones: no failed handshake, no failed request. Counts, not timings: each swap waits until
/// some handshake happened since the last one, so swaps and handshakes interleave on any
/// machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_hundred_swaps_under_load_fail_nothing() {
    let ca = Ca::new();
    let certs = [ca.issue(&["example.org"]), ca.issue(&["example.org"])];
    let d = door(CertSlot::new(certs[0].clone(), false), None).await;
    let client = ca.client();
    let stop = Arc::new(AtomicBool::new(false));
    let handshakes = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let seen = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);

    let mut tasks = Vec::new();
    // New connections: one handshake per request.
    for _ in 0..4 {
        let (client, stop, handshakes, failures, requests, seen, certs) = (
            client.clone(),
            stop.clone(),
            handshakes.clone(),
            failures.clone(),
            requests.clone(),
            seen.clone(),
            certs.clone(),
        );
        let addr = d.https;
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match https_get(&client, addr, "example.org", "/").await {
                    Ok((200, _, body, leaf)) if body == "hello" => {
                        handshakes.fetch_add(1, Ordering::Relaxed);
                        requests.fetch_add(1, Ordering::Relaxed);
                        let which = certs.iter().position(|c| c.cert[0].as_ref() == leaf.as_slice()).unwrap();
                        seen[which].fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("failed: {:?}", other.map(|(s, h, b, _)| (s, h, b)));
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Keep-alive: one connection each for the whole run.
    for _ in 0..2 {
        let (client, stop, failures, requests) = (client.clone(), stop.clone(), failures.clone(), requests.clone());
        let addr = d.https;
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let s = client.connect(ServerName::try_from("example.org").unwrap(), tcp).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                let req = Request::get("/").header("host", "example.org").body(Full::new(Bytes::new())).unwrap();
                match sender.send_request(req).await {
                    Ok(r) if r.status() == 200 => {
                        let body = r.into_body().collect().await.map(|b| b.to_bytes());
                        if body.as_deref().ok() == Some(&b"hello"[..]) {
                            requests.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    other => {
                        eprintln!("keep-alive request failed: {other:?}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    for i in 0..100 {
        let before = handshakes.load(Ordering::Relaxed);
        handshake_after(&handshakes, before, &format!("swap {i}")).await;
        d.slot.set_certificate(certs[(i + 1) % 2].clone());
    }
    let before = handshakes.load(Ordering::Relaxed);
    handshake_after(&handshakes, before, "the last swap").await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(d.slot.swaps(), 100);
    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed handshakes or requests");
    assert_eq!(d.door.stats.tls_handshake_errors.load(Ordering::Relaxed), 0);
    assert!(handshakes.load(Ordering::Relaxed) >= 101);
    assert!(seen[0].load(Ordering::Relaxed) > 0 && seen[1].load(Ordering::Relaxed) > 0, "both certificates served");
    eprintln!("{} requests, {} handshakes", requests.load(Ordering::Relaxed), handshakes.load(Ordering::Relaxed));
}
