//! The front door against a real upstream server on loopback: streaming both ways, websocket
//! upgrades, forwarded headers, limits, timeouts, and the maintenance and service pages.

use bytes::Bytes;
use caretaker_core::mode::{Failed, Maintenance, Mode};
use caretaker_frontdoor::{FrontDoor, Settings};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The app: /echo answers with the request's size and headers, /stream sends 4 chunks 200 ms
/// apart, /slow waits 2 s, /ws upgrades and echoes raw bytes.
async fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn app(mut req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let full = |s: String| Full::new(Bytes::from(s)).boxed();
    Ok(match req.uri().path() {
        "/echo" => {
            let headers: Vec<String> =
                req.headers().iter().map(|(k, v)| format!("{}={}", k, v.to_str().unwrap_or(""))).collect();
            let mut n = 0usize;
            let mut body = req.into_body();
            while let Some(f) = body.frame().await {
                if let Ok(d) = f.unwrap().into_data() {
                    n += d.len();
                }
            }
            Response::new(full(format!("bytes={n}\n{}\n", headers.join("\n"))))
        }
        "/stream" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tokio::spawn(async move {
                for i in 0..4 {
                    let _ = tx.send(Ok(Frame::data(Bytes::from(format!("chunk{i};"))))).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            let stream = tokio_stream_from(rx);
            Response::new(StreamBody::new(stream).boxed())
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Response::new(full("slow".into()))
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(on.await.unwrap());
                let mut buf = [0u8; 64];
                loop {
                    let n = io.read(&mut buf).await.unwrap_or(0);
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let mut r = Response::new(full(String::new()));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut().insert("connection", "upgrade".parse().unwrap());
            r
        }
        _ => Response::new(full("hello".into())),
    })
}

/// A `Stream` over an mpsc receiver.
fn tokio_stream_from<T: Send + 'static>(rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_core::Stream<Item = T> {
    struct S<T>(tokio::sync::mpsc::Receiver<T>);
    impl<T> futures_core::Stream for S<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
    S(rx)
}

struct Door {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

async fn front_door(upstream: SocketAddr, timeout: Duration, max_body: u64) -> Door {
    let (tx, rx) = watch::channel(Mode::Normal);
    let settings = Settings {
        app_name: "testapp".into(),
        upstream: upstream.to_string(),
        max_body_bytes: max_body,
        upstream_timeout: timeout,
        retry_after: Duration::from_secs(30),
    };
    let fd = FrontDoor::new(settings, rx);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(fd.serve(l, std::future::pending()));
    Door { addr, mode: tx }
}

/// A raw HTTP/1.1 request; returns (status, headers, body).
async fn raw(addr: SocketAddr, req: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.example.org\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn proxies_with_forwarded_headers_and_original_host() {
    let door = front_door(upstream().await, Duration::from_secs(5), 1 << 20).await;
    let (status, _, body) = raw(door.addr, &get("/echo")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("host=app.example.org"), "{body}");
    assert!(body.contains("x-forwarded-for=127.0.0.1"), "{body}");
    assert!(body.contains("x-forwarded-host=app.example.org"), "{body}");
    assert!(body.contains("x-forwarded-proto=http"), "{body}");
    assert!(!body.contains("connection=close"), "hop-by-hop header forwarded: {body}");
}

#[tokio::test]
async fn request_bodies_stream_up_and_responses_stream_down() {
    let door = front_door(upstream().await, Duration::from_secs(5), 64 << 20).await;
    // Up: a 16 MiB chunked upload produced while it is being sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    tokio::spawn(async move {
        for _ in 0..256 {
            tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 64 << 10])))).await.unwrap();
        }
    });
    let body = StreamBody::new(tokio_stream_from(rx));
    let stream = TcpStream::connect(door.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post("/echo").header("host", "app").body(body).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.starts_with(&format!("bytes={}", 16 << 20)), "{text}");

    // Down: the first chunk arrives long before the last is produced.
    let stream = TcpStream::connect(door.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let started = Instant::now();
    let resp = sender
        .send_request(Request::get("/stream").header("host", "app").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let first_at = started.elapsed();
    assert_eq!(&first[..], b"chunk0;");
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"chunk1;chunk2;chunk3;");
    assert!(first_at < Duration::from_millis(400), "first chunk after {first_at:?}: not streamed");
    assert!(started.elapsed() >= Duration::from_millis(600));
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    let door = front_door(upstream().await, Duration::from_secs(5), 1 << 20).await;
    let mut s = TcpStream::connect(door.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
    for msg in [&b"ping"[..], b"second message"] {
        s.write_all(msg).await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], msg);
    }
}

#[tokio::test]
async fn maintenance_and_service_mode_answer_503_with_retry_after() {
    let door = front_door(upstream().await, Duration::from_secs(5), 1 << 20).await;
    let m =
        Maintenance { message: "Upgrading to v2 <now>".into(), since: jiff::Timestamp::now(), by: "operator".into() };
    door.mode.send(Mode::Maintenance(m)).unwrap();
    let (status, head, body) = raw(door.addr, &get("/anything")).await;
    assert_eq!(status, 503);
    assert!(head.to_ascii_lowercase().contains("retry-after: 30"), "{head}");
    assert!(body.contains("Upgrading to v2 &lt;now&gt;"), "{body}");
    assert!(body.contains("http-equiv=\"refresh\""), "{body}");

    door.mode
        .send(Mode::Service(Failed { reason: "crash loop in web".into(), since: jiff::Timestamp::now() }))
        .unwrap();
    let (status, head, body) = raw(door.addr, &get("/")).await;
    assert_eq!(status, 503);
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    assert!(body.contains("Service temporarily unavailable"), "{body}");
    assert!(!body.contains("crash loop"), "internals must not reach visitors: {body}");

    door.mode.send(Mode::Normal).unwrap();
    let (status, _, body) = raw(door.addr, &get("/")).await;
    assert_eq!((status, body.as_str()), (200, "hello"));
}

#[tokio::test]
async fn app_down_slow_or_oversized_gets_a_clear_page() {
    // Nothing listens on the upstream port.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let door = front_door(dead, Duration::from_secs(5), 1 << 20).await;
    let (status, _, body) = raw(door.addr, &get("/")).await;
    assert_eq!(status, 502);
    assert!(body.contains("not answering"), "{body}");

    let door = front_door(upstream().await, Duration::from_millis(300), 1024).await;
    let (status, _, body) = raw(door.addr, &get("/slow")).await;
    assert_eq!(status, 504);
    assert!(body.contains("took too long"), "{body}");

    let big = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n{}",
        "x".repeat(4096)
    );
    let (status, _, _) = raw(door.addr, &big).await;
    assert_eq!(status, 413);
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1000\r\n{}\r\n0\r\n\r\n",
        "x".repeat(4096)
    );
    let (status, _, _) = raw(door.addr, &chunked).await;
    assert_eq!(status, 413);
}

/// RFC 9112 §3.2: a request with more than one `Host`, or an HTTP/1.1 request without one, is
/// answered 400 and never reaches the app.
#[tokio::test]
async fn duplicate_or_missing_host_is_a_bad_request() {
    let door = front_door(upstream().await, Duration::from_secs(5), 1 << 20).await;
    let (status, _, body) = raw(
        door.addr,
        "GET /echo HTTP/1.1\r\nHost: app.example.org\r\nHost: evil.example.org\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("bytes="), "forwarded to the app: {body}");
    let (status, _, body) = raw(door.addr, "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("bytes="), "forwarded to the app: {body}");
    // HTTP/1.0 does not require Host; one Host is fine.
    let (status, _, body) = raw(door.addr, "GET /echo HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = raw(door.addr, &get("/echo")).await;
    assert_eq!(status, 200, "{body}");
}
