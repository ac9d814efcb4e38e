//! The built-in supervisor with real processes: the daemon, `up`/`down`/`restart`/`status`/
//! `logs`/`exec`, crash handling, health gating, log rotation, and what happens when the daemon
//! itself is SIGKILLed. Every wait polls (`wait_until`); nothing relies on a fixed sleep.

use caretaker_testkit::{wait_until, Caretaker};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::BIN;

/// An app directory with a config and a state dir.
pub(crate) struct App {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ct: Caretaker,
}

impl App {
    /// `services` is the YAML body of the `services:` section (indented by two spaces).
    pub(crate) fn new(services: &str, extra: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("caretaker.yml");
        // Every daemon gets its own HTTP port (the default one would collide between tests).
        let http = if extra.contains("\nhttp:") || extra.starts_with("http:") {
            String::new()
        } else {
            format!("http: {{ listen: \"127.0.0.1:{}\" }}\n", free_port())
        };
        let text = format!(
            "version: 1\napp:\n  name: suptest\n  working_dir: \"{d}\"\nservices:\n{services}\n{extra}\n{http}",
            d = dir.path().display()
        );
        std::fs::write(&config, text).unwrap();
        let ct = Caretaker::new(BIN, &config, &dir.path().join("state"));
        App { dir, ct }
    }

    pub(crate) fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub(crate) fn status(&self) -> Value {
        self.ct.json(&["status", "--json"])
    }

    pub(crate) fn service(&self, name: &str) -> Value {
        let s = self.status();
        s["services"].as_array().unwrap().iter().find(|v| v["name"] == name).cloned().unwrap()
    }

    /// Starts `caretaker daemon` in the foreground; stopped (SIGTERM) when dropped.
    pub(crate) fn daemon(&self) -> Daemon {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.path("daemon.stderr")).unwrap();
        let child = self
            .ct
            .command(&["daemon"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Daemon { child: Some(child) };
        wait_until(Duration::from_secs(20), "the daemon's socket", || {
            if let Ok(Some(status)) = d.child.as_mut().unwrap().try_wait() {
                let log = std::fs::read_to_string(self.path("daemon.stderr")).unwrap_or_default();
                panic!("the daemon exited ({status}) before it answered:\n{log}");
            }
            self.ct
                .run(&["status", "--json"])
                .status
                .success()
                .then_some(())
                .filter(|_| self.status()["daemon_pid"].as_u64() == Some(d.pid() as u64))
        });
        d
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Whatever a test left running (a background daemon from `up`) goes too.
        let _ = self.ct.run(&["down", "--daemon"]);
    }
}

pub(crate) struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
    fn sigkill(mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            wait_until(Duration::from_secs(30), "the daemon to exit", || c.try_wait().unwrap());
        }
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A process is gone when /proc has no entry or only a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s[s.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => false,
    }
}

/// Live processes whose command line contains `needle` (arguments joined by spaces).
fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default()))
}

/// The demo app as a service on `port`, with an HTTP health check.
pub(crate) fn demo_web(dir: &Path, port: u16) -> String {
    let release = dir.join("release");
    caretaker_demo_app::write_default_release(&release).unwrap();
    format!(
        r#"  web:
    command: ["sh", "-c", "'{BIN}' demo-app migrate && exec '{BIN}' demo-app serve"]
    working_dir: "{r}"
    env:
      DEMO_DATABASE_URL: "sqlite://{d}/demo.db"
      DEMO_FILES_DIR: "{d}"
      DEMO_LISTEN: "127.0.0.1:{port}"
    health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 20s }}
    stop_timeout: 5s"#,
        d = dir.display(),
        r = release.display()
    )
}

#[test]
fn crash_is_restarted_with_exponential_backoff() {
    let app = App::new(
        r#"  flaky:
    command: "echo attempt; exit 1"
    backoff: { initial: 200ms, max: 5s }
    crash_loop: { restarts: 100, within: 60s }"#,
        "",
    );
    let _d = app.daemon();
    wait_until(Duration::from_secs(20), "three restarts", || {
        (app.service("flaky")["restarts"].as_u64().unwrap() >= 3).then_some(())
    });
    // The daemon's own lines in the service log carry the start times.
    let log = std::fs::read_to_string(app.path("state/logs/flaky.log")).unwrap();
    let starts: Vec<jiff::Timestamp> = log
        .lines()
        .filter(|l| l.contains(" caretaker started "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(starts.len() >= 4, "{log}");
    let gaps: Vec<f64> = starts.windows(2).map(|w| (w[1] - w[0]).total(jiff::Unit::Millisecond).unwrap()).collect();
    assert!(gaps[0] >= 190.0 && gaps[1] >= 390.0 && gaps[2] >= 790.0, "delays double: {gaps:?}");
    assert!(log.contains(" out attempt"), "output is captured: {log}");
}

#[test]
fn crash_loop_fails_the_service_and_enters_service_mode() {
    let app = App::new(
        r#"  broken:
    command: "echo 'cannot open settings.py' >&2; exit 2"
    backoff: { initial: 50ms, max: 100ms }
    crash_loop: { restarts: 2, within: 30s }"#,
        "",
    );
    let out = app.ct.run(&["up", "--timeout", "30"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("service broken is failed: crash loop: 3 crashes"), "{err}");
    assert!(err.contains("cannot open settings.py"), "the last log lines are shown: {err}");
    let st = app.status();
    assert_eq!(st["services"][0]["state"], "failed");
    assert!(st["service_mode"].as_str().unwrap().contains("broken failed"), "{st}");
    // Still failed a while later: nothing restarts it behind the operator's back.
    assert_eq!(app.service("broken")["restarts"], 2);
    // The failed flag is the app's mode (front door, alerts, check) until an operator clears it.
    let mode = app.ct.json(&["maintenance", "status", "--json"]);
    assert_eq!(mode["mode"], "service", "{mode}");
    assert!(mode["reason"].as_str().unwrap().contains("crash loop"), "{mode}");
    let out = app.ct.expect(&["reset-failed"], 0);
    assert!(out.contains("cleared the failed flag"), "{out}");
    assert_eq!(app.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");
}

#[test]
fn down_kills_grandchildren() {
    let app = App::new(
        r#"  forker:
    command: "sh -c 'sleep 3131 & echo $! > grandchild.pid'; echo forked; exec sleep 3132"
    stop_timeout: 5s"#,
        "",
    );
    app.ct.expect(&["up", "--timeout", "30"], 0);
    let gc_file = app.path("grandchild.pid");
    let gc: u32 = wait_until(Duration::from_secs(10), "the grandchild's pid", || {
        std::fs::read_to_string(&gc_file).ok()?.trim().parse().ok()
    });
    assert!(alive(gc));
    app.ct.expect(&["down"], 0);
    assert!(!alive(gc), "the orphaned grandchild was stopped with its group");
    assert_eq!(app.service("forker")["state"], "stopped");
}

#[test]
fn up_returns_when_healthy_and_restart_replaces_the_process() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(
        &format!("{}\n  worker:\n    command: \"exec sleep 3141\"\n    after: [web]", demo_web(dir.path(), port)),
        "",
    );
    let out = app.ct.expect(&["up", "--timeout", "60"], 0);
    assert!(out.contains("web") && out.contains("healthy"), "{out}");
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));
    let web = app.service("web");
    assert_eq!((web["state"].as_str(), web["health"].as_str()), (Some("running"), Some("healthy")));
    let old = web["pid"].as_u64().unwrap();
    app.ct.expect(&["restart", "web"], 0);
    let new = app.service("web")["pid"].as_u64().unwrap();
    assert_ne!(old, new);
    assert!(!alive(old as u32));
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));
    // A full restart and a down/up cycle: dependants wait for web again, none is reported as
    // failed while it waits.
    app.ct.expect(&["restart"], 0);
    app.ct.expect(&["down"], 0);
    assert_eq!(app.service("worker")["state"], "stopped");
    app.ct.expect(&["up", "--timeout", "60"], 0);
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));
    let logs = app.ct.expect(&["logs", "-n", "200"], 0);
    assert!(logs.contains("web    | ") && logs.contains("worker | "), "{logs}");
}

#[test]
fn up_fails_with_the_reason_and_last_log_lines_when_unhealthy() {
    let port = free_port();
    let app = App::new(
        &format!(
            r#"  api:
    command: "echo 'binding to port {port} failed: no permission'; exec sleep 3151"
    health: {{ tcp: "127.0.0.1:{port}", interval: 200ms, timeout: 100ms, retries: 2, start_period: 500ms }}
    backoff: {{ initial: 50ms, max: 50ms }}
    crash_loop: {{ restarts: 1, within: 60s }}
    stop_timeout: 2s"#
        ),
        "",
    );
    let out = app.ct.run(&["up", "--timeout", "60"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("service api is failed"), "{err}");
    assert!(err.contains("unhealthy") && err.contains(&format!("cannot connect to 127.0.0.1:{port}")), "{err}");
    assert!(err.contains("binding to port"), "{err}");
    assert!(processes_with("sleep 3151").is_empty(), "an unhealthy service is stopped");
}

#[test]
fn logs_are_rotated_by_size() {
    let app = App::new(
        r#"  chatty:
    command: "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done; echo done-writing; exec sleep 3161""#,
        "logs: { max_size: 2KiB, keep: 2 }",
    );
    let _d = app.daemon();
    let logs = app.path("state/logs");
    wait_until(Duration::from_secs(20), "all output captured", || {
        std::fs::read_to_string(logs.join("chatty.log")).ok()?.contains("done-writing").then_some(())
    });
    // caretaker writes lines of its own into the service's log (started, healthy...), which
    // may rotate it while we look: read the three files until a look sees no rotation under way.
    wait_until(Duration::from_secs(10), "three log files of at most 2 KiB", || {
        let lens: Vec<u64> = ["chatty.log", "chatty.log.1", "chatty.log.2"]
            .iter()
            .map(|f| std::fs::metadata(logs.join(f)).map(|m| m.len()).ok())
            .collect::<Option<_>>()?;
        lens.iter().all(|&len| len <= 2048 && len > 0).then_some(())
    });
    assert!(!logs.join("chatty.log.3").exists(), "keeps 2 rotated files");
    let tail = app.ct.expect(&["logs", "chatty", "-n", "3"], 0);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 3, "{tail}");
    assert!(lines[0].ends_with("out line-298") && lines[2].ends_with("out done-writing"), "{tail}");
}

#[test]
fn logs_follow_prints_new_lines() {
    let app = App::new("  ticker:\n    command: \"while true; do echo tick-$(date +%s%N); sleep 0.1; done\"", "");
    let _d = app.daemon();
    let mut follow = app.ct.command(&["logs", "ticker", "-f", "-n", "0"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = follow.stdout.take().unwrap();
    let mut buf = [0u8; 256];
    let n = out.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("out tick-"));
    follow.kill().unwrap();
    follow.wait().unwrap();
}

#[test]
fn exec_runs_in_the_app_environment_and_passes_the_exit_code() {
    let app = App::new("  idle: \"exec sleep 3171\"", "");
    std::fs::write(app.path(".env"), "FROM_FILE=file-value\nOVERRIDDEN=from-file\n").unwrap();
    let cfg = std::fs::read_to_string(&app.ct.config).unwrap().replace(
        "  name: suptest\n",
        "  name: suptest\n  env_files: [\".env\"]\n  env: { OVERRIDDEN: from-config, DJANGO_SETTINGS_MODULE: app.settings }\n",
    );
    std::fs::write(&app.ct.config, cfg).unwrap();
    let out = app
        .ct
        .command(&["exec", "--", "sh", "-c", "echo $FROM_FILE $OVERRIDDEN $DJANGO_SETTINGS_MODULE; pwd; exit 7"])
        .env("CARETAKER_TEST_LEAK", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("file-value from-config app.settings"));
    assert_eq!(Path::new(lines.next().unwrap()).canonicalize().unwrap(), app.dir.path().canonicalize().unwrap());
    let out = app
        .ct
        .command(&["exec", "--", "sh", "-c", "echo ${CARETAKER_TEST_LEAK:-clean}"])
        .env("CARETAKER_TEST_LEAK", "x")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "clean", "only the app's environment");
    let out = app.ct.run(&["exec", "--", "no-such-program-here"]);
    assert_eq!(out.status.code(), Some(6));
}

#[test]
fn a_new_daemon_after_sigkill_runs_exactly_one_instance_of_each_service() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("sleep 31{}", std::process::id() % 10000);
    let app = App::new(
        &format!(
            "{}\n  sleeper:\n    command: \"sh -c '{marker}1 &'; exec {marker}2\"\n    stop_timeout: 2s",
            demo_web(dir.path(), port)
        ),
        "",
    );
    let first = app.daemon();
    wait_until(Duration::from_secs(60), "web healthy", || (app.service("web")["health"] == "healthy").then_some(()));
    let old_web = app.service("web")["pid"].as_u64().unwrap() as u32;
    wait_until(Duration::from_secs(10), "sleeper and its grandchild", || {
        (processes_with(&format!("{marker}1")).len() == 1 && processes_with(&format!("{marker}2")).len() == 1)
            .then_some(())
    });
    first.sigkill();
    assert!(alive(old_web), "services outlive a SIGKILLed daemon");
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));

    let second = app.daemon();
    wait_until(Duration::from_secs(60), "web healthy again", || {
        let w = app.service("web");
        (w["health"] == "healthy" && w["pid"].as_u64() != Some(old_web as u64)).then_some(())
    });
    assert!(!alive(old_web), "the old instance was replaced, not duplicated");
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200), "the port is served by the new instance");
    wait_until(Duration::from_secs(10), "one sleeper", || {
        (processes_with(&format!("{marker}2")).len() == 1).then_some(())
    });
    assert_eq!(processes_with(&format!("{marker}1")).len(), 1, "the old grandchild was stopped too");
    assert_eq!(processes_with(&format!("{marker}2")).len(), 1);
    drop(second);
    assert!(processes_with(&marker).is_empty(), "a stopped daemon leaves nothing behind");
    assert!(http_get(port, "/healthz").is_none(), "port free after the daemon stopped");
}

#[test]
fn a_second_daemon_is_refused() {
    let app = App::new("  idle: \"exec sleep 3181\"", "");
    let _d = app.daemon();
    let out = app.ct.run(&["daemon"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn commands_without_a_daemon_say_what_to_do() {
    let app = App::new("  idle: \"exec sleep 3191\"", "");
    let out = app.ct.run(&["restart"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("caretaker up"));
    let st = app.status();
    assert!(st["daemon_pid"].is_null());
    assert!(app.ct.expect(&["down"], 0).contains("nothing to stop"));
}

#[test]
fn generated_systemd_unit_passes_systemd_analyze_verify() {
    let app = App::new("  idle: \"exec sleep 3199\"", "");
    let unit = app.path("caretaker-suptest.service");
    app.ct.expect(&["install-systemd", "--output", unit.to_str().unwrap()], 0);
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains(&format!("ExecStart={BIN} --config ")), "{text}");
    let verify = |path: &Path| {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(path)
            .output()
            .expect("systemd-analyze (Debian package systemd, installed by scripts/install-deps)");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = verify(&unit);
    let complaints: Vec<&str> = err.lines().filter(|l| l.contains("caretaker-suptest.service")).collect();
    assert!(ok && complaints.is_empty(), "{err}");
    // The check can fail: systemd-analyze only warns on stderr about a broken unit.
    let bad = app.path("broken.service");
    std::fs::write(&bad, text.replace("Type=simple", "Type=simple\nNoSuchKey=1")).unwrap();
    assert!(verify(&bad).1.contains("NoSuchKey"));
    // Re-running is idempotent; a different file is not overwritten without --force.
    assert!(app.ct.expect(&["install-systemd", "--output", unit.to_str().unwrap()], 0).contains("up to date"));
    std::fs::write(&unit, "something else").unwrap();
    app.ct.expect(&["install-systemd", "--output", unit.to_str().unwrap()], 5);
}

#[test]
fn up_and_restart_that_get_a_failed_service_healthy_end_service_mode_and_say_so() {
    // Fails until the file `fixed` exists.
    let app = App::new(
        r#"  flaky:
    command: "test -f fixed || { echo 'settings missing' >&2; exit 2; }; exec sleep 3137"
    backoff: { initial: 50ms, max: 100ms }
    crash_loop: { restarts: 1, within: 30s }"#,
        "",
    );
    assert_eq!(app.ct.run(&["up", "--timeout", "30"]).status.code(), Some(1));
    assert_eq!(app.ct.json(&["maintenance", "status", "--json"])["mode"], "service");
    // Fixed; the same daemon restarts the service: once it is up, service mode ends.
    std::fs::write(app.path("fixed"), "").unwrap();
    let out = app.ct.expect(&["restart", "flaky", "--timeout", "30"], 0);
    assert!(out.contains("service mode cleared") && out.contains("flaky failed"), "{out}");
    assert_eq!(app.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");

    // Broken again, with a new daemon after the fix: `up` ends it too.
    app.ct.expect(&["down", "--daemon"], 0);
    std::fs::remove_file(app.path("fixed")).unwrap();
    assert_eq!(app.ct.run(&["up", "--timeout", "30"]).status.code(), Some(1));
    app.ct.expect(&["down", "--daemon"], 0);
    std::fs::write(app.path("fixed"), "").unwrap();
    let out = app.ct.expect(&["up", "--timeout", "30"], 0);
    assert!(out.contains("service mode cleared"), "{out}");
    assert_eq!(app.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");

    // Maintenance an operator switched on stays on, and `up` says so rather than nothing.
    app.ct.expect(&["maintenance", "on"], 0);
    let out = app.ct.run(&["up", "--timeout", "30"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(crate::stderr_of(&out).contains("maintenance mode is on"), "{}", crate::stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("MAINTENANCE MODE"));
}

#[test]
fn up_before_any_release_fails_at_once_with_the_next_step() {
    let app = App::new("  web: \"exec sleep 3138\"", "");
    // The release pointer an update creates, before any update ran.
    let cfg = std::fs::read_to_string(&app.ct.config).unwrap();
    let current = app.path("state/current");
    std::fs::write(
        &app.ct.config,
        cfg.replace(
            &format!("working_dir: \"{}\"", app.dir.path().display()),
            &format!("working_dir: \"{}\"", current.display()),
        ),
    )
    .unwrap();
    let check = app.ct.run(&["config", "check"]);
    assert_eq!(check.status.code(), Some(0));
    assert!(
        crate::stderr_of(&check).contains("warning: services cannot start")
            && crate::stderr_of(&check).contains("no release is deployed yet"),
        "{}",
        crate::stderr_of(&check)
    );
    let st = app.ct.expect(&["status"], 0);
    assert!(st.contains("cannot start") && st.contains("caretaker update"), "{st}");

    let out = app.ct.run(&["up", "--timeout", "60"]);
    let err = crate::stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no release is deployed yet") && err.contains("run `caretaker update` first"), "{err}");
    assert!(!err.contains("No such file or directory"), "{err}");
    let web = app.service("web");
    assert_eq!(web["state"], "failed");
    assert_eq!(web["restarts"], 0, "not retried as a crash loop: {web}");
    assert!(app.ct.expect(&["status"], 0).contains("no release is deployed yet"));
}

#[test]
fn a_missing_program_fails_at_once() {
    let app = App::new("  web:\n    command: [\"no-such-program-3139\", \"--serve\"]", "");
    let out = app.ct.run(&["up", "--timeout", "60"]);
    let err = crate::stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("program `no-such-program-3139` not found"), "{err}");
    assert_eq!(app.service("web")["restarts"], 0);
}

#[test]
fn a_service_that_exits_at_once_is_never_reported_up() {
    // `exit 2` with restarts allowed for a while: `up` must not see it "running" in between.
    let app = App::new(
        r#"  quick:
    command: "exit 2"
    backoff: { initial: 50ms, max: 50ms }
    crash_loop: { restarts: 3, within: 60s }
    start_seconds: 0.5"#,
        "",
    );
    let out = app.ct.run(&["up", "--timeout", "30"]);
    let err = crate::stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("before it had run for 0.5s"), "{err}");
}

/// Waits (up to 90 s: the daemon evaluates alert rules every 30 s) until `caretaker alerts`
/// lists `rule` for `subject` as firing.
pub(crate) fn wait_for_firing_alert(ct: &caretaker_testkit::Caretaker, rule: &str, subject: &str) {
    wait_until(Duration::from_secs(90), &format!("the {rule} alert of {subject} to fire"), || {
        let alerts = ct.json(&["alerts", "--json"]);
        alerts
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == rule && a["subject"] == subject && a["status"] == "firing")
            .cloned()
    });
}
