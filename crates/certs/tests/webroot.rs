//! Webroot mode with real nginx: nginx serves the challenge files through the documented
//! snippet (docs/nginx/caretaker-acme.conf) and TLS from caretaker's certificate files; after
//! the renewal the reload command (retried once here) makes nginx serve the new certificate.

mod common;

use caretaker_certs::manager::Manager;
use caretaker_certs::{Install, Settings, Solver};
use caretaker_core::cert::{Policy, Urgency};
use caretaker_core::config::{Command, Redactor};
use caretaker_core::job::{kind, Outcome, Trigger};
use caretaker_state::Store;
use common::*;
use jiff::Timestamp;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

struct Nginx(std::process::Child);
impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM: the master stops its workers too (KILL would leave them running).
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

struct Nobody;
impl Install for Nobody {
    fn install(&self, _key: Arc<rustls::sign::CertifiedKey>) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webroot_mode_with_real_nginx() {
    let Some(bins) = pebble_bins() else { return };
    let Some(nginx) = caretaker_testkit::require_service("CARETAKER_TEST_NGINX") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (http_port, tls_port) = (free_port(), free_port());
    let mut pebble = Pebble::prepare(&d.join("pebble"), http_port, tls_port);
    pebble.start(&bins);
    let root = pebble.root().await;
    let state = d.join("state");
    let webroot = d.join("acme");
    let names = ["web.caretaker.test"];
    std::fs::create_dir_all(d.join("tmp")).unwrap();
    // The reload command fails once (then is retried) and reloads nginx.
    let reload = format!(
        "if [ ! -e {d}/failed-once ]; then touch {d}/failed-once; echo 'not yet' >&2; exit 1; fi; kill -HUP $(cat {d}/nginx.pid) && touch {d}/reloaded",
        d = d.display()
    );
    let settings = Settings {
        names: names.iter().map(|s| s.to_string()).collect(),
        directory: pebble.directory(),
        email: None,
        ca_file: Some(pebble.ca_file.clone()),
        eab: None,
        reload_command: Some(Command::Shell(reload)),
        policy: Policy::default(),
    };
    let mut m = Manager::new(&state, settings, Solver::Webroot(webroot.clone()), Arc::new(Nobody), Redactor::default())
        .unwrap();
    // The placeholder lets nginx start before the first certificate.
    m.serve_initial(Timestamp::now()).unwrap();
    let certs = state.join("certs/web.caretaker.test");
    let snippet = include_str!("../../../docs/nginx/caretaker-acme.conf")
        .replace("/var/lib/caretaker/acme", &webroot.display().to_string());
    std::fs::write(d.join("acme.conf"), snippet).unwrap();
    let user = if rustix::process::geteuid().is_root() { "user root;" } else { "" };
    let conf = format!(
        "{user}\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  server {{\n    listen 127.0.0.1:{http_port};\n    include {d}/acme.conf;\n    location / {{ return 301 https://$host$request_uri; }}\n  }}\n  server {{\n    listen 127.0.0.1:{tls_port} ssl;\n    ssl_certificate {c}/fullchain.pem;\n    ssl_certificate_key {c}/privkey.pem;\n    location / {{ return 200 ok; }}\n  }}\n}}\n",
        d = d.display(),
        c = certs.display(),
    );
    std::fs::write(d.join("nginx.conf"), conf).unwrap();
    let _nginx = Nginx(
        std::process::Command::new(&nginx)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-p")
            .arg(d)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    caretaker_testkit::wait_until(Duration::from_secs(10), "nginx to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).ok()
    });
    assert!(verified_handshake(tls_port, names[0], &root).await.is_err(), "the placeholder is not trusted");
    // The snippet serves challenge files and nothing else.
    caretaker_certs::challenge::write_webroot(&webroot, "probe-token", "probe-token.thumb").unwrap();
    assert_eq!(
        http_get(http_port, "/.well-known/acme-challenge/probe-token", names[0]),
        (200, "probe-token.thumb".into())
    );
    assert_eq!(http_get(http_port, "/.well-known/acme-challenge/other", names[0]).0, 404);
    assert_eq!(http_get(http_port, "/", names[0]).0, 301);

    m.tick(Timestamp::now(), Urgency::Scheduled, Trigger::Schedule).await;
    let st = m.status(Timestamp::now());
    assert_eq!(st.last_error, None, "{st:?}\n{}", pebble.log());
    assert!(!st.reload_pending);
    assert!(d.join("reloaded").exists());
    // nginx serves the new certificate after its reload.
    let served = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = verified_handshake(tls_port, names[0], &root).await {
                break c;
            }
            assert!(std::time::Instant::now() < deadline, "nginx never served the new certificate");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(caretaker_certs::x509::info(&served).unwrap().serial, st.serial.unwrap());
    // The challenge files are gone (only the probe this test wrote is left).
    let left: Vec<_> = std::fs::read_dir(webroot.join(".well-known/acme-challenge"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["probe-token"]);
    let store = Store::open(&state, Redactor::default()).unwrap();
    let j = store.jobs(Some(kind::CERTIFICATE), 10).unwrap();
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].outcome, Outcome::Succeeded);
    let log = std::fs::read_to_string(&j[0].log_path).unwrap();
    assert!(log.contains("reload command (attempt 2)"), "{log}");
    assert!(log.contains("not yet"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_reload_command_fails_the_job_and_is_retried_later() {
    let Some(bins) = pebble_bins() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let http_port = free_port();
    let mut pebble = Pebble::prepare(&d.join("pebble"), http_port, free_port());
    pebble.start(&bins);
    // Challenge files served by a plain server reading the webroot.
    let front = Arc::new(Front::default());
    let webroot = d.join("acme");
    let state = d.join("state");
    let mut settings = Settings {
        names: vec!["reload.caretaker.test".into()],
        directory: pebble.directory(),
        email: None,
        ca_file: Some(pebble.ca_file.clone()),
        eab: None,
        reload_command: Some(Command::Shell(format!("echo attempt >> {}/attempts; exit 3", d.display()))),
        policy: Policy::default(),
    };
    serve_dir(webroot.clone(), http_port);
    let mut m =
        Manager::new(&state, settings.clone(), Solver::Webroot(webroot.clone()), front.clone(), Redactor::default())
            .unwrap();
    m.serve_initial(Timestamp::now()).unwrap();
    let now = Timestamp::now();
    let next = m.tick(now, Urgency::Scheduled, Trigger::Schedule).await;
    let st = m.status(Timestamp::now());
    // The certificate is renewed and served; the reload failed three times: a failed job
    // (which fires `job_failed`), retried a minute later without a new order.
    assert!(!st.self_signed);
    assert!(st.reload_pending);
    assert_eq!(std::fs::read_to_string(d.join("attempts")).unwrap().lines().count(), 3);
    assert!(next <= Timestamp::now() + jiff::SignedDuration::from_mins(1), "{next}");
    let store = Store::open(&state, Redactor::default()).unwrap();
    let j = store.jobs(Some(kind::CERTIFICATE), 10).unwrap();
    assert_eq!(j[0].outcome, Outcome::Failed);
    assert!(j[0].error.as_deref().unwrap().contains("reload command failed"), "{:?}", j[0].error);
    // A restart keeps the pending reload; the next step retries it (now it works).
    drop(m);
    settings.reload_command = Some(Command::Shell(format!("echo ok >> {}/attempts", d.display())));
    let mut m = Manager::new(&state, settings, Solver::Webroot(webroot), front, Redactor::default()).unwrap();
    m.serve_initial(Timestamp::now()).unwrap();
    m.tick(next, Urgency::Scheduled, Trigger::Schedule).await;
    assert!(!m.status(Timestamp::now()).reload_pending);
    assert_eq!(pebble.orders(), 1, "the reload retry does not order");
    let j = store.jobs(Some(kind::CERTIFICATE), 10).unwrap();
    assert_eq!(j.len(), 2);
    assert_eq!(j[0].outcome, Outcome::Succeeded);
}

/// A plain HTTP server answering from files under `root` (a stand-in web server).
fn serve_dir(root: std::path::PathBuf, port: u16) {
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            use std::io::{Read, Write};
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let rsp = match std::fs::read_to_string(root.join(&path)) {
                Ok(b) if !path.contains("..") => {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len())
                }
                _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            };
            let _ = s.write_all(rsp.as_bytes());
        }
    });
}
