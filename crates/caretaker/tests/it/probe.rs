//! One health probe, one verdict: the daemon and `caretaker check` run the same probe, so an
//! https health URL or a redirecting `/healthz` cannot pass one and fail the other
//! (docs/supervisor.md, "Health probes"). Every wait polls (`wait_until`).

use caretaker_testkit::wait_until;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::supervisor::{free_port, App};

/// A long start period: failed probes are reported (the service's `reason`) but never restart
/// the service, so the daemon's verdict can be read without a crash loop in the way.
const HEALTH_TIMING: &str = "interval: 500ms, timeout: 500ms, start_period: 10m";

/// The daemon's verdict on service `web` once its server answers: `Ok` once healthy,
/// `Err(reason)` once a probe that reached the server failed (a refused connection only means
/// the service is still starting).
fn daemon_verdict(app: &App) -> Result<(), String> {
    wait_until(Duration::from_secs(30), "the daemon's verdict on web", || {
        let web = app.service("web");
        if web["health"] == "healthy" {
            return Some(Ok(()));
        }
        let reason = web["reason"].as_str().unwrap_or_default();
        (reason.contains("health check failed") && !reason.contains("cannot connect")).then(|| Err(reason.to_string()))
    })
}

/// `caretaker check`'s verdict on service `web`: `Ok(message)` or `Err(message)`.
fn check_verdict(app: &App) -> Result<String, String> {
    let out = app.ct.run(&["check", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json: {e}\n{}", String::from_utf8_lossy(&out.stderr)));
    let c = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "service web").cloned();
    let c = c.unwrap_or_else(|| panic!("no check of service web: {v:#}"));
    let message = c["message"].as_str().unwrap_or_default().to_string();
    if c["status"] == "ok" {
        Ok(message)
    } else {
        Err(message)
    }
}

/// A plain HTTP server in the test: `/healthz` redirects (302) to `/login`, which answers 200.
/// Checks that follow redirects see a healthy service; the documented rule does not.
fn redirecting_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let resp = if req.starts_with("GET /healthz ") {
                "HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nlogin page"
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    port
}

/// A self-signed certificate for 127.0.0.1 (as `openssl req -x509` makes them: CA:TRUE, so a
/// server presenting it is trusted by pinning it through `ca_file`). Returns (cert, key).
fn self_signed(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (the test makes its certificate with the openssl command)");
    assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn https_health_gets_the_same_verdict_from_the_daemon_and_check() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let port = free_port();
    // The service itself speaks TLS only: `openssl s_server -www` answers any GET with 200.
    let app = App::new(
        &format!(
            r#"  web:
    command: ["openssl", "s_server", "-quiet", "-www", "-accept", "127.0.0.1:{port}", "-cert", "{cert}", "-key", "{key}"]
    health: {{ http: "https://127.0.0.1:{port}/healthz", ca_file: "{cert}", {HEALTH_TIMING} }}
    stop_timeout: 5s"#
        ),
        "",
    );
    let _daemon = app.daemon();
    assert_eq!(daemon_verdict(&app), Ok(()), "the daemon probes https");
    let check = check_verdict(&app);
    assert!(check.as_ref().is_ok_and(|m| m.contains("answered 200")), "check agrees with the daemon: {check:?}");
}

#[test]
fn redirecting_healthz_gets_the_same_verdict_from_the_daemon_and_check() {
    let port = redirecting_server();
    let app = App::new(
        &format!(
            r#"  web:
    command: ["sleep", "3600"]
    health: {{ http: "http://127.0.0.1:{port}/healthz", {HEALTH_TIMING} }}
    stop_timeout: 5s"#
        ),
        "",
    );
    let _daemon = app.daemon();
    let daemon = daemon_verdict(&app);
    let check = check_verdict(&app);
    assert!(daemon.as_ref().is_err_and(|e| e.contains("answered 302")), "a 3xx is not 2xx: {daemon:?}");
    let check = check.expect_err("check must not pass what the daemon fails (it followed the redirect)");
    assert!(check.contains("answered 302") && check.contains("not followed"), "{check}");
}

#[test]
fn expect_status_accepts_a_redirect_in_the_daemon_and_check() {
    let port = redirecting_server();
    let app = App::new(
        &format!(
            r#"  web:
    command: ["sleep", "3600"]
    health: {{ http: "http://127.0.0.1:{port}/healthz", expect_status: ["2xx", 302], {HEALTH_TIMING} }}
    stop_timeout: 5s"#
        ),
        "",
    );
    let _daemon = app.daemon();
    assert_eq!(daemon_verdict(&app), Ok(()));
    let check = check_verdict(&app);
    assert!(check.as_ref().is_ok_and(|m| m.contains("answered 302")), "{check:?}");
}
