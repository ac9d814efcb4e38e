//! The front door alone, in normal mode, for benchmarks (bench/frontdoor):
//!
//!     cargo run --release -p caretaker-frontdoor --example serve -- LISTEN UPSTREAM
//!
//! e.g. `serve 127.0.0.1:8080 127.0.0.1:8000`. Runs until Ctrl-C.

use caretaker_core::mode::Mode;
use caretaker_frontdoor::{FrontDoor, Settings};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream] = args.as_slice() else {
        eprintln!("usage: serve LISTEN UPSTREAM   (host:port each)");
        std::process::exit(2);
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
        FrontDoor::new(settings, rx).serve(listener, shutdown).await;
    });
}
