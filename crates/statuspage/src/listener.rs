//! Serving an axum router to clients that may be hostile: the daemon's HTTP listener
//! (`http.listen`: `/metrics`, the status page) and `caretaker status-page --serve`.
//!
//! `axum::serve` has neither a limit on connections nor a deadline for a request's headers,
//! so a client that opens connections and sends a byte a minute (slowloris) holds each one
//! forever. Here:
//!
//! - at most `max_connections` connections are served at once. The next one is not accepted
//!   until one ends: it waits in the kernel's listen backlog, costing this process nothing;
//! - a client must send a request's headers within `header_timeout`, counted from the moment
//!   the connection is accepted or from the end of its previous response (hyper's
//!   `header_read_timeout`); otherwise the connection is closed;
//! - each request carries the client's address (`ConnectInfo<SocketAddr>`, as with axum's
//!   `into_make_service_with_connect_info`), which the status page's login limits use.

use axum::extract::ConnectInfo;
use axum::Router;
use caretaker_core::config::Config;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The listener's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Limits {
    /// From the config's `http` section.
    pub fn from_config(cfg: &Config) -> Limits {
        Limits { max_connections: cfg.http.max_connections.max(1), header_timeout: cfg.http.header_timeout }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes. Then it stops
/// accepting; connections in flight end on their own (or with the runtime).
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        // A slot first: without one, the next client stays in the kernel's backlog.
        let slot = tokio::select! {
            _ = &mut shutdown => return,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("http listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("http listener: connection from {peer}: {e}");
            }
        });
    }
}
