//! The front door alone, in normal mode, for benchmarks (bench/frontdoor, bench/frontdoor-tls):
//!
//!     cargo run --release -p caretaker-frontdoor --example serve -- LISTEN UPSTREAM [TLS_LISTEN CERT KEY]
//!
//! e.g. `serve 127.0.0.1:8080 127.0.0.1:8000`, or with HTTPS on 127.0.0.1:8443 from PEM files
//! (no redirect on the plain port, no HSTS). Runs until Ctrl-C.

use caretaker_core::mode::Mode;
use caretaker_frontdoor::tls::{self, CertSlot, TlsState};
use caretaker_frontdoor::{FrontDoor, Settings, TlsSite};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, tls_args) = match args.as_slice() {
        [l, u] => (l.clone(), u.clone(), None),
        [l, u, t, c, k] => (l.clone(), u.clone(), Some((t.clone(), c.clone(), k.clone()))),
        _ => {
            eprintln!("usage: serve LISTEN UPSTREAM [TLS_LISTEN CERT_PEM KEY_PEM]   (host:port each)");
            std::process::exit(2);
        }
    };
    let settings = Settings {
        app_name: "bench".into(),
        upstream: upstream.clone(),
        max_body_bytes: 100 << 20,
        upstream_timeout: Duration::from_secs(60),
        retry_after: Duration::from_secs(30),
    };
    // Like the daemon: a multi-threaded runtime with one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let (_tx, rx) = tokio::sync::watch::channel(Mode::Normal);
        let listener = tokio::net::TcpListener::bind(listen.as_str()).await.expect("listen");
        eprintln!("front door on {listen} → {upstream}");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let Some((tls_listen, cert, key)) = tls_args else {
            FrontDoor::new(settings, rx).serve(listener, shutdown).await;
            return;
        };
        let key = tls::certified_key_from_files(cert.as_ref(), key.as_ref()).expect("certificate");
        let state = TlsState { slot: CertSlot::new(key, false), tokens: Default::default() };
        let site =
            TlsSite { state, redirect_http: false, https_port: 443, hsts: None, default_host: "localhost".into() };
        let door = FrontDoor::with_tls(settings, rx, site);
        let tls_listener = tokio::net::TcpListener::bind(tls_listen.as_str()).await.expect("listen (TLS)");
        eprintln!("front door (TLS) on {tls_listen}");
        tokio::spawn(door.clone().serve_tls(tls_listener, std::future::pending()));
        door.serve(listener, shutdown).await;
    });
}
