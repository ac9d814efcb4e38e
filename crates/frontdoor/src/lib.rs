//! caretaker's front door: a reverse proxy in front of the app's web service.
//!
//! While the app serves normally, requests stream through to it (bodies both ways, websocket
//! upgrades, `X-Forwarded-*` headers, keep-alive connections to the app). In maintenance mode
//! visitors get a 503 page that reloads itself and a `Retry-After`; in service mode a
//! "service unavailable" page. When the app does not answer, a 502/504 page instead of a
//! connection error.
//!
//! The mode comes in through a `watch` channel: the daemon reads it from the state store (so a
//! `caretaker maintenance on` in another process takes effect within a second) and this crate
//! only reacts to it. Architecture invariant: the front door never decides the mode.
//!
//! With `tls:` configured ([`FrontDoor::with_tls`]) the same front door also serves HTTPS
//! ([`FrontDoor::serve_tls`], certificates from [`tls::CertSlot`]); both ports answer ACME
//! HTTP-01 challenges, the plain port redirects to HTTPS, and HTTPS responses carry HSTS.
//! Requests take one code path on both ports: pages, proxying and limits are the same.

pub mod pages;
pub mod tls;

use bytes::Bytes;
use caretaker_core::mode::Mode;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// How the front door behaves; built from the config's `front_door` section.
#[derive(Clone, Debug)]
pub struct Settings {
    pub app_name: String,
    /// `host:port` of the app's web service.
    pub upstream: String,
    pub max_body_bytes: u64,
    pub upstream_timeout: Duration,
    pub retry_after: Duration,
}

impl Settings {
    pub fn from_config(app_name: &str, fd: &caretaker_core::config::FrontDoor) -> Self {
        Settings {
            app_name: app_name.to_string(),
            upstream: fd.upstream.clone(),
            max_body_bytes: fd.max_body_bytes,
            upstream_timeout: fd.upstream_timeout,
            retry_after: fd.retry_after,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub proxied: AtomicU64,
    pub maintenance_pages: AtomicU64,
    pub service_pages: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub upgrades: AtomicU64,
    /// Plain-HTTP requests redirected to HTTPS.
    pub redirects: AtomicU64,
    /// ACME challenges answered (HTTP-01 requests, TLS-ALPN-01 handshakes).
    pub acme_challenges: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_errors: AtomicU64,
}

/// How long a client may take to complete its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct FrontDoor {
    settings: Settings,
    client: Client<HttpConnector, Body>,
    mode: watch::Receiver<Mode>,
    tls: Option<TlsSite>,
    pub stats: Stats,
}

/// The front door's HTTPS side, from the config's `tls` section.
#[derive(Clone, Debug)]
pub struct TlsSite {
    /// The certificate slot and HTTP-01 answers, shared with whoever renews certificates.
    pub state: tls::TlsState,
    /// The plain port redirects to HTTPS (ACME's challenge path exempt).
    pub redirect_http: bool,
    /// The port redirects point at (omitted from the URL when 443).
    pub https_port: u16,
    /// The `Strict-Transport-Security` value for HTTPS responses.
    pub hsts: Option<HeaderValue>,
    /// The host redirects name when a request has no `Host` header (HTTP/1.0).
    pub default_host: String,
}

impl TlsSite {
    pub fn from_config(t: &caretaker_core::config::Tls, state: tls::TlsState) -> Self {
        let https_port = t.listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(443);
        TlsSite {
            state,
            redirect_http: t.redirect_http,
            https_port,
            hsts: t.hsts.and_then(|h| HeaderValue::from_str(&h.header_value()).ok()),
            default_host: t.names.first().cloned().unwrap_or_default(),
        }
    }
}

/// Headers that describe one connection and must not be forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

impl FrontDoor {
    pub fn new(settings: Settings, mode: watch::Receiver<Mode>) -> Arc<Self> {
        Self::build(settings, mode, None)
    }

    /// A front door that also serves HTTPS (through [`FrontDoor::serve_tls`]).
    pub fn with_tls(settings: Settings, mode: watch::Receiver<Mode>, site: TlsSite) -> Arc<Self> {
        Self::build(settings, mode, Some(site))
    }

    fn build(settings: Settings, mode: watch::Receiver<Mode>, tls: Option<TlsSite>) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Arc::new(FrontDoor { settings, client, mode, tls, stats: Stats::default() })
    }

    /// Accepts connections until `shutdown` resolves. Connections in flight finish on their own.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("front door: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(self.clone().connection(stream, peer, false));
        }
    }

    /// Accepts TLS connections until `shutdown` resolves, with the certificate of the
    /// [`TlsSite`]'s slot at the moment of each handshake. Needs [`FrontDoor::with_tls`].
    pub async fn serve_tls(self: Arc<Self>, listener: TcpListener, shutdown: impl std::future::Future<Output = ()>) {
        let Some(site) = &self.tls else {
            tracing::error!("front door: serve_tls without a TLS site");
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(site.state.slot.server_config());
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("front door (TLS): accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        this.stats.tls_handshake_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("front door: TLS handshake with {peer}: {e}");
                        return;
                    }
                    Err(_) => {
                        this.stats.tls_handshake_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("front door: TLS handshake with {peer} timed out");
                        return;
                    }
                };
                if stream.get_ref().1.alpn_protocol() == Some(tls::ACME_TLS_ALPN) {
                    // TLS-ALPN-01: the handshake was the answer (RFC 8737 §3).
                    this.stats.acme_challenges.fetch_add(1, Ordering::Relaxed);
                    let mut stream = stream;
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
                    return;
                }
                this.connection(stream, peer, true).await;
            });
        }
    }

    /// Serves one connection's requests (plain or TLS, `secure` says which).
    async fn connection<IO>(self: Arc<Self>, io: IO, peer: SocketAddr, secure: bool)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        let svc = hyper::service::service_fn(move |req| {
            let this = this.clone();
            async move { Ok::<_, std::convert::Infallible>(this.respond(req, peer, secure).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        if let Err(e) = conn.await {
            tracing::debug!("front door: connection from {peer}: {e}");
        }
    }

    /// [`FrontDoor::handle`] plus what TLS adds: ACME answers, the redirect, HSTS.
    async fn respond(&self, req: Request<Incoming>, peer: SocketAddr, secure: bool) -> Response<Body> {
        let Some(site) = &self.tls else { return self.handle(req, peer, secure).await };
        let path = req.uri().path();
        if path.starts_with(tls::ACME_CHALLENGE_PATH) && req.method() == hyper::Method::GET {
            if let Some(answer) = site.state.tokens.answer(path) {
                self.stats.acme_challenges.fetch_add(1, Ordering::Relaxed);
                let mut r = page(StatusCode::OK, answer, None);
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                return r;
            }
        }
        if !secure && site.redirect_http && !path.starts_with(tls::ACME_CHALLENGE_PATH) {
            return self.redirect(&req, site);
        }
        let mut resp = self.handle(req, peer, secure).await;
        if let (true, Some(hsts)) = (secure, &site.hsts) {
            resp.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        resp
    }

    /// 308 to the same path on HTTPS: the method and body are kept (a POST stays a POST).
    fn redirect<B>(&self, req: &Request<B>, site: &TlsSite) -> Response<Body> {
        if let Some(why) = host_problem(req) {
            return page(StatusCode::BAD_REQUEST, format!("bad request: {why}\n"), None);
        }
        let host = match req.headers().get(header::HOST) {
            Some(h) => match h.to_str().ok().and_then(|h| h.parse::<hyper::http::uri::Authority>().ok()) {
                Some(a) => a.host().to_string(),
                None => return page(StatusCode::BAD_REQUEST, "bad request: invalid Host header\n".into(), None),
            },
            None => site.default_host.clone(),
        };
        let port = if site.https_port == 443 { String::new() } else { format!(":{}", site.https_port) };
        let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let location = format!("https://{host}{port}{path}");
        let Ok(location) = HeaderValue::from_str(&location) else {
            return page(StatusCode::BAD_REQUEST, "bad request\n".into(), None);
        };
        self.stats.redirects.fetch_add(1, Ordering::Relaxed);
        let mut r = page(StatusCode::PERMANENT_REDIRECT, String::new(), None);
        r.headers_mut().insert(header::LOCATION, location);
        r
    }

    async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr, secure: bool) -> Response<Body> {
        if let Some(why) = host_problem(&req) {
            return page(StatusCode::BAD_REQUEST, format!("bad request: {why}\n"), None);
        }
        let mode = self.mode.borrow().clone();
        let retry = self.settings.retry_after.as_secs().max(1);
        match mode {
            Mode::Normal => {}
            Mode::Maintenance(m) => {
                self.stats.maintenance_pages.fetch_add(1, Ordering::Relaxed);
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::maintenance(&self.settings.app_name, &m.message, retry),
                    Some(retry),
                );
            }
            Mode::Service(_) => {
                self.stats.service_pages.fetch_add(1, Ordering::Relaxed);
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::service_unavailable(&self.settings.app_name, retry),
                    Some(retry),
                );
            }
        }
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.settings.max_body_bytes) {
            return page(StatusCode::PAYLOAD_TOO_LARGE, pages::too_large(self.settings.max_body_bytes), None);
        }
        let upgrade = is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let (parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let uri = match format!("http://{}{path}", self.settings.upstream).parse::<hyper::Uri>() {
            Ok(u) => u,
            Err(_) => return page(StatusCode::BAD_REQUEST, "bad request\n".into(), None),
        };
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        forwarded_headers(&mut headers, peer, secure);
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        } else {
            headers.remove(header::UPGRADE);
        }
        let body: Body = Limited::new(body, self.settings.max_body_bytes as usize).boxed();
        let mut up = Request::new(body);
        *up.method_mut() = parts.method;
        *up.uri_mut() = uri;
        *up.version_mut() = hyper::Version::HTTP_11;
        *up.headers_mut() = headers;

        let sent = tokio::time::timeout(self.settings.upstream_timeout, self.client.request(up)).await;
        let mut resp = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                if error_chain_has::<http_body_util::LengthLimitError>(&e) {
                    return page(StatusCode::PAYLOAD_TOO_LARGE, pages::too_large(self.settings.max_body_bytes), None);
                }
                self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("front door: upstream {}: {e:?}", self.settings.upstream);
                return page(StatusCode::BAD_GATEWAY, pages::bad_gateway(&self.settings.app_name, false), None);
            }
            Err(_) => {
                self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                return page(StatusCode::GATEWAY_TIMEOUT, pages::bad_gateway(&self.settings.app_name, true), None);
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                self.stats.upgrades.fetch_add(1, Ordering::Relaxed);
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    match tokio::join!(client_upgrade, upstream_upgrade) {
                        (Ok(c), Ok(u)) => {
                            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(u)).await;
                        }
                        (c, u) => {
                            tracing::debug!("front door: upgrade failed: client {:?}, app {:?}", c.err(), u.err())
                        }
                    }
                });
                let (parts, _) = resp.into_parts();
                return Response::from_parts(parts, Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
            }
        }
        self.stats.proxied.fetch_add(1, Ordering::Relaxed);
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
    }
}

/// RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request without `Host` and to any
/// request with more than one: which one the app would read is anybody's guess, and a proxy
/// that forwards both invites cache poisoning and routing confusion.
fn host_problem<B>(req: &Request<B>) -> Option<&'static str> {
    match req.headers().get_all(header::HOST).iter().count() {
        0 if req.version() == hyper::Version::HTTP_11 => Some("an HTTP/1.1 request needs a Host header"),
        0 | 1 => None,
        _ => Some("more than one Host header"),
    }
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
}

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .filter(|t| t != "upgrade")
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
}

fn forwarded_headers(h: &mut HeaderMap, peer: SocketAddr, secure: bool) {
    let ip = peer.ip().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    if let Some(host) = h.get(header::HOST).cloned() {
        h.insert("x-forwarded-host", host);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static(if secure { "https" } else { "http" }));
}

fn error_chain_has<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<E>() {
            return true;
        }
        cur = err.source();
    }
    false
}

fn page(status: StatusCode, html: String, retry_after: Option<u64>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(html)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(s) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}
