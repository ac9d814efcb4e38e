//! End-to-end tests of watching and telling: a threshold that trips on this machine sends an
//! email to a real SMTP server (Python aiosmtpd on loopback) and a webhook POST to a receiver
//! in this test; resolving follows when the condition clears. `/metrics` and the exported
//! rules pass promtool.

use caretaker_testkit::{wait_until, Caretaker};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(crate::BIN)
}

/// A tool the tests need: under CI its absence fails the test, elsewhere it skips loudly.
fn require_tool(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing: scripts/install-deps installs it (scripts/deps/apt.txt)");
    }
    eprintln!("SKIPPED: {what} is missing; run scripts/install-deps");
    false
}

/// Python with aiosmtpd: Debian's (python3-aiosmtpd), which may differ from the first
/// `python3` on PATH.
fn python_with_aiosmtpd() -> Option<String> {
    ["/usr/bin/python3", "python3"].into_iter().map(String::from).find(|py| {
        Command::new(py).args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real SMTP server writing every message into a Maildir.
struct SmtpSink {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl SmtpSink {
    fn start(python: &str, dir: &Path) -> SmtpSink {
        let maildir = dir.join("maildir");
        let port = free_port();
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        wait_until(Duration::from_secs(20), "the SMTP sink to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        SmtpSink { child, port, maildir }
    }

    fn messages(&self) -> Vec<String> {
        let mut out: Vec<(std::time::SystemTime, String)> = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in rd.flatten() {
                    let t = e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                    out.push((t, std::fs::read_to_string(e.path()).unwrap_or_default()));
                }
            }
        }
        out.sort();
        out.into_iter().map(|(_, m)| m).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook receiver: answers 200 to every POST and hands the JSON bodies over.
fn webhook_receiver() -> (String, mpsc::Receiver<serde_json::Value>) {
    let (url, rx) = http_receiver();
    let (tx2, rx2) = mpsc::channel();
    std::thread::spawn(move || {
        for (_, body) in rx {
            let _ = tx2.send(body);
        }
    });
    (format!("{url}/hooks/caretaker?token=s3cret"), rx2)
}

/// An HTTP server that answers 200 to everything and hands over (path, JSON body).
fn http_receiver() -> (String, mpsc::Receiver<(String, serde_json::Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut r = BufReader::new(stream);
            let mut len = 0usize;
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let mut s = r.into_inner();
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            if let Ok(v) = serde_json::from_slice(&body) {
                let _ = tx.send((path, v));
            }
        }
    });
    (url, rx)
}

fn write_config(path: &Path, app: &str, smtp_port: u16, webhook: &str, warning: u32, critical: u32) {
    write_config_with(path, app, smtp_port, webhook, "", warning, critical)
}

fn write_config_with(path: &Path, app: &str, smtp_port: u16, webhook: &str, more: &str, warning: u32, critical: u32) {
    let text = format!(
        "version: 1\napp: {{ name: {app} }}\nalerts:\n  smtp: {{ host: 127.0.0.1, port: {smtp_port}, tls: none, from: caretaker@example.org }}\n  notify:\n    - email: ops@example.org\n    - webhook: \"{webhook}\"\n{more}  rules:\n    filesystem_free_percent: {{ warning: {warning}, critical: {critical}, for: 0s }}\n    memory_used_percent: false\n    load_per_cpu: false\n    job_failed: false\n"
    );
    std::fs::write(path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_tripped_threshold_emails_and_posts_then_resolves() {
    let Some(python) = python_with_aiosmtpd() else {
        require_tool(false, "python3 with aiosmtpd (Debian package python3-aiosmtpd)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpSink::start(&python, dir.path());
    let (hook, hooks) = webhook_receiver();
    let (am, am_rx) = http_receiver();
    let am_line = format!("    - alertmanager: \"{am}\"\n");
    let config = dir.path().join("caretaker.yml");
    // Free space is always at most 100 %: the warning trips on any machine.
    write_config_with(&config, "watchtest", smtp.port, &hook, &am_line, 100, 0);
    let ct = Caretaker::new(bin(), &config, &dir.path().join("state"));

    let out = ct.json(&["alerts", "evaluate", "--json"]);
    assert_eq!(out["delivered"], 3, "{out:#}");
    let mails = wait_until(Duration::from_secs(10), "the firing email", || {
        let m = smtp.messages();
        (!m.is_empty()).then_some(m)
    });
    let mail = &mails[0];
    assert!(mail.contains("Subject: [watchtest] WARNING: filesystem_free_percent//"), "{mail}");
    assert!(mail.contains("To: ops@example.org"), "{mail}");
    assert!(mail.contains("Alert filesystem_free_percent// is firing on watchtest"), "{mail}");
    assert!(mail.contains("caretaker silence add filesystem_free_percent// --for 2h"), "{mail}");
    let firing = hooks.recv_timeout(Duration::from_secs(10)).expect("webhook for firing");
    assert_eq!(firing["kind"], "firing");
    assert_eq!(firing["app"], "watchtest");
    assert_eq!(firing["rule"], "filesystem_free_percent");
    assert_eq!(firing["subject"], "/");
    assert_eq!(firing["severity"], "warning");
    let (path, pushed) = am_rx.recv_timeout(Duration::from_secs(10)).expect("alertmanager push");
    assert_eq!(path, "/api/v2/alerts");
    assert_eq!(pushed[0]["labels"]["alertname"], "CaretakerFilesystemFreeLow", "{pushed:#}");
    assert_eq!(pushed[0]["labels"]["mountpoint"].as_str(), None);
    assert_eq!(pushed[0]["labels"]["subject"], "/");

    // Still firing: deduplicated, nothing new.
    let out = ct.json(&["alerts", "evaluate", "--json"]);
    assert_eq!(out["notifications"].as_array().unwrap().len(), 0, "{out:#}");
    let states = ct.json(&["alerts", "--json"]);
    assert_eq!(states[0]["status"], "firing");

    // The condition clears: resolved, told once.
    write_config_with(&config, "watchtest", smtp.port, &hook, &am_line, 1, 0);
    let out = ct.json(&["alerts", "evaluate", "--json"]);
    assert_eq!(out["notifications"][0]["kind"], "resolved", "{out:#}");
    let mails = wait_until(Duration::from_secs(10), "the resolved email", || {
        let m = smtp.messages();
        (m.len() >= 2).then_some(m)
    });
    let resolved = mails.iter().find(|m| m.contains("RESOLVED")).expect("a resolved mail");
    assert!(resolved.contains("Subject: [watchtest] RESOLVED: filesystem_free_percent//"), "{resolved}");
    assert!(resolved.contains("is resolved"), "{resolved}");
    let r = hooks.recv_timeout(Duration::from_secs(10)).expect("webhook for resolved");
    assert_eq!(r["kind"], "resolved");
    assert_eq!(r["status"], "resolved");
    let (_, pushed) = am_rx.recv_timeout(Duration::from_secs(10)).expect("alertmanager push of the resolve");
    assert_eq!(pushed[0]["labels"]["alertname"], "CaretakerFilesystemFreeLow");
    let ends: jiff::Timestamp = pushed[0]["endsAt"].as_str().unwrap().parse().unwrap();
    assert!(ends <= jiff::Timestamp::now());
    let out = ct.json(&["alerts", "evaluate", "--json"]);
    assert_eq!(out["notifications"].as_array().unwrap().len(), 0);

    // `notify test` reaches both channels.
    let out = ct.json(&["notify", "test", "--json"]);
    assert!(out.as_array().unwrap().iter().all(|r| r["ok"] == true), "{out:#}");
    assert!(hooks.recv_timeout(Duration::from_secs(10)).unwrap()["kind"] == "test");
    // The webhook URL carries a token: it never appears in output.
    let text = String::from_utf8(ct.run(&["notify", "test"]).stdout).unwrap();
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn silenced_alerts_are_not_sent() {
    let Some(python) = python_with_aiosmtpd() else {
        require_tool(false, "python3 with aiosmtpd (Debian package python3-aiosmtpd)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpSink::start(&python, dir.path());
    let (hook, hooks) = webhook_receiver();
    let config = dir.path().join("caretaker.yml");
    write_config(&config, "silencetest", smtp.port, &hook, 100, 0);
    let ct = Caretaker::new(bin(), &config, &dir.path().join("state"));
    ct.expect(&["silence", "add", "filesystem_free_percent", "--for", "2h", "--comment", "disk work"], 0);
    let out = ct.json(&["alerts", "evaluate", "--json"]);
    assert_eq!(out["alerts"][0]["status"], "firing");
    assert_eq!(out["notifications"].as_array().unwrap().len(), 0, "{out:#}");
    assert!(hooks.recv_timeout(Duration::from_millis(300)).is_err());
    let list = ct.json(&["silence", "list", "--json"]);
    assert_eq!(list[0]["comment"], "disk work");
    ct.expect(&["silence", "remove", "1"], 0);
    // The silence is over: the alert that nobody heard of is sent now.
    let out = ct.json(&["alerts", "evaluate", "--json"]);
    assert_eq!(out["notifications"][0]["kind"], "firing", "{out:#}");
    assert_eq!(hooks.recv_timeout(Duration::from_secs(10)).unwrap()["kind"], "firing");
    // Unknown rule names are refused.
    let bad = ct.run(&["silence", "add", "disk", "--for", "1h"]);
    assert_eq!(bad.status.code(), Some(2));
}

fn promtool() -> bool {
    require_tool(
        Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success()),
        "promtool (Debian package prometheus)",
    )
}

fn minimal_config(dir: &Path, extra: &str) -> Caretaker {
    let config = dir.join("caretaker.yml");
    std::fs::write(&config, format!("version: 1\napp: {{ name: guestbook }}\nfiles: [{}]\n{extra}", dir.display()))
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    Caretaker::new(bin(), &config, &dir.join("state"))
}

#[test]
fn metrics_pass_promtool_check_metrics() {
    if !promtool() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ct = minimal_config(
        dir.path(),
        &format!(
            "alerts: {{ rules: {{ filesystem_free_percent: {{ warning: 100, critical: 0, for: 0s }}, load_per_cpu: false, memory_used_percent: false }} }}\nservices: {{ web: {{ command: \"true\", health: {{ tcp: \"127.0.0.1:1\", timeout: 1s }} }} }}\nbackup: {{ repository: {}/repo, password: correct-horse-battery, schedule: daily 00:30 }}\n",
            dir.path().display()
        ),
    );
    ct.expect(&["alerts", "evaluate"], 0);
    ct.expect(&["check"], 2); // service web is down: critical; records a check job for job metrics
    let metrics = ct.expect(&["metrics"], 0);
    for name in [
        "caretaker_filesystem_avail_bytes{",
        "caretaker_memory_available_bytes ",
        "caretaker_load5 ",
        "caretaker_boot_time_seconds ",
        "caretaker_job_last_end_timestamp_seconds{kind=\"check\"}",
        "caretaker_jobs_total{kind=\"check\",outcome=\"failed\"} 1",
        "caretaker_alert_active{rule=\"filesystem_free_percent\",subject=\"/\",severity=\"warning\",state=\"firing\"} 1",
        "caretaker_service_up{service=\"web\"} 0",
        "caretaker_service_healthy{service=\"web\"} 0",
        "caretaker_alert_active{rule=\"service_down\",subject=\"web\",severity=\"critical\",state=\"pending\"} 1",
    ] {
        assert!(metrics.contains(name), "{name} missing in\n{metrics}");
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_are_served_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let ct = minimal_config(dir.path(), "");
    let port = free_port();
    let mut child =
        ct.command(&["metrics", "--serve", &format!("127.0.0.1:{port}")]).stderr(Stdio::null()).spawn().unwrap();
    let body = wait_until(Duration::from_secs(20), "metrics over HTTP", || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        Some(r)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("content-type: text/plain; version=0.0.4"), "{body}");
    assert!(body.contains("caretaker_build_info{"), "{body}");
}

#[test]
fn exported_rules_pass_promtool_check_and_test_rules() {
    if !promtool() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ct = minimal_config(dir.path(), "");
    let rules = dir.path().join("caretaker.rules.yml");
    ct.expect(&["alerts", "export", "--prometheus", "-o", rules.to_str().unwrap()], 0);
    let out = Command::new("promtool").args(["check", "rules"]).arg(&rules).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // Free space 15 %: warning (20 %) after `for: 5m`, not critical (10 %); a failed backup job.
    let test = r#"rule_files: [caretaker.rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'caretaker_filesystem_avail_bytes{mountpoint="/",device="/dev/sda1",fstype="ext4"}'
        values: '15x10'
      - series: 'caretaker_filesystem_size_bytes{mountpoint="/",device="/dev/sda1",fstype="ext4"}'
        values: '100x10'
      - series: 'caretaker_job_last_succeeded{kind="backup"}'
        values: '1 1 0 0'
    alert_rule_test:
      - eval_time: 4m
        alertname: CaretakerFilesystemFreeLow
        exp_alerts: []
      - eval_time: 6m
        alertname: CaretakerFilesystemFreeLow
        exp_alerts:
          - exp_labels: { severity: warning, rule: filesystem_free_percent, app: guestbook, mountpoint: "/", device: /dev/sda1, fstype: ext4 }
            exp_annotations: { summary: "filesystem / has 15.0% free" }
      - eval_time: 1m
        alertname: CaretakerJobFailed
        exp_alerts: []
      - eval_time: 3m
        alertname: CaretakerJobFailed
        exp_alerts:
          - exp_labels: { severity: warning, rule: job_failed, app: guestbook, kind: backup }
            exp_annotations: { summary: "the last backup job failed" }
"#;
    let test_file = dir.path().join("caretaker.rules.test.yml");
    std::fs::write(&test_file, test).unwrap();
    let out =
        Command::new("promtool").args(["test", "rules"]).arg(&test_file).current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn schedule_lists_default_tasks_and_check_exits_like_nagios() {
    let dir = tempfile::tempdir().unwrap();
    let ct = minimal_config(
        dir.path(),
        "jobs: { clearsessions: { command: \"true\", schedule: \"daily 04:00\" } }\ntimezone: Europe/Vienna\n",
    );
    let out = ct.json(&["schedule", "--json", "-n", "2"]);
    let names: Vec<&str> = out.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["check", "job:clearsessions"]);
    assert_eq!(out[1]["next_runs"].as_array().unwrap().len(), 2);
    // Everything fine → 0; a critical custom check → 2.
    let ok = minimal_config(
        dir.path(),
        "alerts: { rules: { filesystem_free_percent: { warning: 0, critical: 0 }, memory_used_percent: false, load_per_cpu: false } }\n",
    );
    let v = ok.json(&["check", "--json"]);
    assert_eq!(v["status"], "ok", "{v:#}");
    let bad = minimal_config(dir.path(), "checks: { nothing: { tcp: \"127.0.0.1:1\" } }\n");
    let out = bad.run(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "critical");
    assert!(v["checks"].as_array().unwrap().iter().any(|c| c["name"] == "nothing" && c["status"] == "critical"));
}
