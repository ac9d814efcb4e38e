//! The daemon in production, with the built-in supervisor: listening sockets held by systemd
//! survive a daemon restart (socket activation, docs/daemon.md), the units `install-systemd`
//! writes for that, and a non-critical service whose crash loop does not take the site down.

use crate::supervisor::{demo_web, free_port, http_get, App};
use crate::BIN;
use caretaker_testkit::wait_until;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts `caretaker daemon` as systemd would for a socket unit: `listeners` as file
/// descriptors 3, 4, ... with `LISTEN_FDS`, `LISTEN_PID` (the daemon's own pid: a shell that
/// sets it to `$$` and `exec`s the daemon) and `LISTEN_FDNAMES`.
fn daemon_with_sockets(app: &App, listeners: &[(&std::net::TcpListener, &str)]) -> Child {
    let fds: Vec<i32> = listeners.iter().map(|(l, _)| l.as_raw_fd()).collect();
    let names: Vec<&str> = listeners.iter().map(|(_, n)| *n).collect();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(app.path("daemon.stderr")).unwrap();
    let script =
        format!("export LISTEN_PID=$$ LISTEN_FDS={} LISTEN_FDNAMES={}; exec \"$0\" \"$@\"", fds.len(), names.join(":"));
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script).arg(BIN);
    cmd.arg("--config").arg(app.path("caretaker.yml")).arg("--state-dir").arg(app.path("state")).arg("daemon");
    cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
    // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first, so that placing one cannot overwrite another.
            let high: Vec<i32> = fds.iter().map(|fd| libc::fcntl(*fd, libc::F_DUPFD, 100)).collect();
            for (i, fd) in high.iter().enumerate() {
                if *fd < 0 || libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(*fd);
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// What one poll through the front door got: a status code, or a connection error.
type Poll = Result<u16, String>;

/// Polls `GET /healthz` through 127.0.0.1:`port` every 100 ms (a new connection each time, as
/// a visitor's browser or a monitoring probe does) until `stop` is set.
fn poll_front_door(port: u16, stop: Arc<AtomicBool>, results: Arc<Mutex<Vec<Poll>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let result = (|| -> Result<u16, String> {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
                // Long enough for the whole restart: a queued connection waits for the next daemon.
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| format!("write: {e}"))?;
                let mut buf = String::new();
                s.read_to_string(&mut buf).map_err(|e| format!("read: {e}"))?;
                buf.split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| format!("no response: {buf:?}"))
            })();
            results.lock().unwrap().push(result);
            std::thread::sleep(Duration::from_millis(100).saturating_sub(started.elapsed()));
        }
    })
}

fn sigterm_and_wait(child: &mut Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_until(Duration::from_secs(60), "the daemon to exit", || child.try_wait().unwrap());
}

#[test]
fn the_front_door_answers_every_connection_while_the_daemon_restarts_on_sockets_from_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let app_port = free_port();
    // The test holds the sockets as systemd's socket unit would.
    let door = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let door_port = door.local_addr().unwrap().port();
    let app = App::new(
        &demo_web(dir.path(), app_port),
        &format!(
            "http: {{ listen: \"{}\" }}\nfront_door: {{ listen: \"127.0.0.1:{door_port}\", upstream: \"127.0.0.1:{app_port}\" }}",
            http.local_addr().unwrap()
        ),
    );
    // As `install-systemd`'s socket unit passes them: both named after the unit.
    let sockets = [(&http, "caretaker-suptest.socket"), (&door, "caretaker-suptest.socket")];
    let mut first = daemon_with_sockets(&app, &sockets);
    wait_until(Duration::from_secs(60), "the app through the front door", || {
        http_get(door_port, "/healthz").filter(|(s, _)| *s == 200)
    });
    let log = std::fs::read_to_string(app.path("daemon.stderr")).unwrap();
    assert!(log.contains("front_door.listen: using the socket passed by systemd"), "{log}");

    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::new()));
    let poller = poll_front_door(door_port, stop.clone(), results.clone());
    wait_until(Duration::from_secs(10), "polls before the restart", || {
        (results.lock().unwrap().len() >= 10).then_some(())
    });
    let before = results.lock().unwrap().len();
    sigterm_and_wait(&mut first);
    let mut second = daemon_with_sockets(&app, &sockets);
    // The new daemon serves the app again, for a while.
    wait_until(Duration::from_secs(60), "20 answers of the restarted app", || {
        let r = results.lock().unwrap();
        (r[before..].iter().filter(|p| matches!(p, Ok(200))).count() >= 20).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    poller.join().unwrap();
    sigterm_and_wait(&mut second);

    let r = results.lock().unwrap();
    let errors: Vec<&String> = r.iter().filter_map(|p| p.as_ref().err()).collect();
    let mut codes: Vec<u16> = r.iter().filter_map(|p| p.as_ref().ok().copied()).collect();
    codes.sort();
    let counts: Vec<(u16, usize)> = codes.chunk_by(|a, b| a == b).map(|c| (c[0], c.len())).collect();
    codes.dedup();
    eprintln!("{} polls across the restart; (status, count): {counts:?}", r.len());
    assert!(errors.is_empty(), "{} of {} polls failed to connect or got no answer: {errors:?}", errors.len(), r.len());
    // Every answer is the app's, or a page of the front door while the app was away.
    assert!(codes.iter().all(|c| [200, 502, 503].contains(c)), "{codes:?}");
    let log = std::fs::read_to_string(app.path("daemon.stderr")).unwrap();
    assert_eq!(log.matches("front_door.listen: using the socket passed by systemd").count(), 2, "{log}");
}

#[test]
fn install_systemd_writes_a_socket_unit_for_the_daemons_ports_that_systemd_analyze_accepts() {
    let door = free_port();
    let app = App::new(
        "  idle: \"exec sleep 3301\"",
        &format!("front_door: {{ listen: \"0.0.0.0:{door}\", upstream: \"127.0.0.1:1\" }}"),
    );
    let unit = app.path("caretaker-suptest.service");
    let out = app.ct.expect(&["install-systemd", "--output", unit.to_str().unwrap()], 0);
    let socket = app.path("caretaker-suptest.socket");
    assert!(out.contains(&socket.display().to_string()), "{out}");
    let service = std::fs::read_to_string(&unit).unwrap();
    let sockets = std::fs::read_to_string(&socket).unwrap();
    assert!(service.contains("Sockets=caretaker-suptest.socket"), "{service}");
    assert!(service.contains("Requires=caretaker-suptest.socket"), "{service}");
    assert!(!service.contains("example.invalid"), "no invented address: {service}");
    // Documentation= names a file that exists (or there is none).
    for line in service.lines().filter(|l| l.starts_with("Documentation=")) {
        let path = line.trim_start_matches("Documentation=file://");
        assert!(Path::new(path).is_file(), "{line}");
    }
    assert!(sockets.contains(&format!("ListenStream=0.0.0.0:{door}")), "{sockets}");
    assert!(sockets.contains("ListenStream=127.0.0.1:"), "the http listener too: {sockets}");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .arg(&socket)
        .output()
        .expect("systemd-analyze (Debian package systemd, installed by scripts/install-deps)");
    let err = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = err.lines().filter(|l| l.contains("caretaker-suptest.")).collect();
    assert!(out.status.success() && complaints.is_empty(), "{err}");
    // Idempotent over both files; a changed socket unit is not overwritten without --force.
    assert!(app.ct.expect(&["install-systemd", "--output", unit.to_str().unwrap()], 0).contains("up to date"));
    std::fs::write(&socket, "changed").unwrap();
    app.ct.expect(&["install-systemd", "--output", unit.to_str().unwrap()], 5);
    app.ct.expect(&["install-systemd", "--output", unit.to_str().unwrap(), "--force"], 0);
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), sockets);
}

#[test]
fn a_non_critical_service_in_a_crash_loop_alerts_but_the_site_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let app_port = free_port();
    let door = free_port();
    let app = App::new(
        &format!(
            r#"{}
  worker:
    command: "echo 'celery: cannot reach the broker' >&2; exit 1"
    backoff: {{ initial: 50ms, max: 100ms }}
    crash_loop: {{ restarts: 2, within: 30s }}
    critical: false"#,
            demo_web(dir.path(), app_port)
        ),
        &format!(
            "front_door: {{ listen: \"127.0.0.1:{door}\", upstream: \"127.0.0.1:{app_port}\" }}\nalerts: {{ rules: {{ service_down_for: 1s }} }}"
        ),
    );
    let _d = app.daemon();
    wait_until(Duration::from_secs(30), "the worker to fail", || {
        (app.service("worker")["state"] == "failed").then_some(())
    });
    wait_until(Duration::from_secs(60), "the app through the front door", || {
        http_get(door, "/healthz").filter(|(s, _)| *s == 200)
    });
    let st = app.status();
    assert!(st["service_mode"].is_null(), "a non-critical failure is no service mode: {st}");
    assert_eq!(app.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");
    // The front door answers as soon as the process serves; the supervisor counts web as
    // running once its health gate (or `start_seconds`) passed: wait for that, don't race it.
    wait_until(Duration::from_secs(30), "web to count as running", || {
        (app.service("web")["state"] == "running").then_some(())
    });
    let log = std::fs::read_to_string(app.path("state/logs/worker.log")).unwrap();
    assert!(log.contains("failed: crash loop"), "{log}");
    // The daemon's alert evaluation (every 30 s) fires `service_down` for the worker.
    crate::supervisor::wait_for_firing_alert(&app.ct, "service_down", "worker");
    // Still serving the app, not the service page.
    assert_eq!(http_get(door, "/healthz").map(|r| r.0), Some(200));
}
