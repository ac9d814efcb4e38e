//! The HTTP side of observing: a router with `/metrics`, for the daemon's listener or
//! `caretaker metrics --serve`.

use crate::MetricsSource;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// The Prometheus text format's content type.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`. Rendering reads files and SQLite, so it runs on the blocking pool.
pub fn router(source: Arc<MetricsSource>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let source = source.clone();
            async move {
                let body = tokio::task::spawn_blocking(move || source.render())
                    .await
                    .unwrap_or_else(|e| format!("# caretaker: rendering failed: {e}\n"));
                ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], body)
            }
        }),
    )
}

/// Serves the router on `listener` until the future `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: Arc<MetricsSource>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(source)).with_graceful_shutdown(shutdown).await
}
