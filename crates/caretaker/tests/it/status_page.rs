//! The status page in a real browser: headless Chromium (Debian `chromium`) loads it with
//! credentials, saves a screenshot as a test artifact and the DOM is checked for every
//! section; without credentials the page is refused.

use crate::{stderr_of, Scratch, BIN};
use caretaker_core::alert::{AlertState, Severity, Status};
use caretaker_core::config::Redactor;
use caretaker_core::job::{Outcome, Trigger};
use caretaker_core::mode::{Maintenance, FACT_MAINTENANCE};
use caretaker_state::Store;
use caretaker_testkit::{require_service, wait_until};
use jiff::{SignedDuration, Timestamp};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A week of history: nightly backups growing the repository, checks, a failed and a
/// rolled-back job, maintenance on, one alert firing and one resolved.
fn seed(state_dir: &Path) {
    let mut store = Store::open(state_dir, Redactor::new(Vec::new())).unwrap();
    let now = Timestamp::now();
    let mut times = Vec::new();
    let mut add = |store: &Store,
                   kind: &str,
                   outcome: Outcome,
                   figures: serde_json::Value,
                   err: Option<&str>,
                   ago_h: i64,
                   secs: i64| {
        let mut j = store.start_job(kind, Trigger::Schedule, false).unwrap();
        j.log(&format!("{kind}: started"));
        j.log(&format!("{kind}: {}", outcome.as_str()));
        let id = j.id();
        j.finish(outcome, figures, err).unwrap();
        let start = now - SignedDuration::from_hours(ago_h);
        times.push((id, start, start + SignedDuration::from_secs(secs)));
    };
    for day in (0..8).rev() {
        let added = 40_000_000 + day as u64 * 3_000_000;
        add(
            &store,
            "backup",
            Outcome::Succeeded,
            serde_json::json!({"snapshot_id": format!("{day:02}c0ffee0123456789"), "bytes_read": 900_000_000u64 + 10_000_000 * (8 - day) as u64, "bytes_added": added, "files": 1200,
                "snapshots": 8 - day, "repository_size_bytes": 800_000_000u64 + 30_000_000 * (8 - day) as u64}),
            None,
            day * 24 + 5,
            40 + (8 - day) * 6,
        );
        add(&store, "check", Outcome::Succeeded, serde_json::json!({}), None, day * 24 + 3, 2);
    }
    add(
        &store,
        "update",
        Outcome::RolledBack,
        serde_json::json!({}),
        Some("migration 0042 failed: column <email> exists"),
        30,
        95,
    );
    add(&store, "command", Outcome::Failed, serde_json::json!({}), Some("exit status 1"), 2, 12);
    let conn = rusqlite::Connection::open(state_dir.join("state.db")).unwrap();
    for (id, start, end) in times {
        conn.execute(
            "UPDATE jobs SET started_at = ?1, ended_at = ?2 WHERE id = ?3",
            rusqlite::params![start.to_string(), end.to_string(), id],
        )
        .unwrap();
    }
    store
        .set_fact(
            FACT_MAINTENANCE,
            &serde_json::to_string(&Maintenance {
                message: "Upgrading the database <v16>".into(),
                since: now - SignedDuration::from_mins(12),
                by: "operator".into(),
            })
            .unwrap(),
        )
        .unwrap();
    let alert = |rule: &str, status, severity, summary: &str| AlertState {
        rule: rule.into(),
        subject: String::new(),
        severity,
        status,
        summary: summary.into(),
        value: None,
        active_since: now - SignedDuration::from_hours(3),
        fired_at: Some(now - SignedDuration::from_hours(2)),
        resolved_at: None,
        last_notified: None,
        notified_severity: None,
    };
    store
        .replace_alert_states(&[
            alert("filesystem_free_percent", Status::Firing, Severity::Warning, "/ has 8% free"),
            alert("backup_age", Status::Resolved, Severity::Critical, "newest backup is 5 h old"),
        ])
        .unwrap();
    store.task_seen("backup", now - SignedDuration::from_hours(200)).unwrap();
}

fn chromium(bin: &str, profile: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(bin);
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = Killed(cmd.spawn().unwrap());
    let mut out = String::new();
    let mut stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "chromium did not finish in 90 s: {args:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    out.push_str(&reader.join().unwrap());
    out
}

fn raw_get(port: u16, path: &str, auth: Option<&str>) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    r
}

fn artifact_dir() -> PathBuf {
    // BIN is <target>/<profile>/caretaker.
    let target = Path::new(BIN).parent().and_then(Path::parent).unwrap();
    let d = target.join("test-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn status_page_in_headless_chromium() {
    let Some(chromium_bin) = require_service("CARETAKER_TEST_CHROMIUM") else { return };
    let s = Scratch::new();

    // The operator hashes the password; the config holds only the hash.
    let mut hasher = s.caretaker().command(&["status-page", "hash-password"]);
    hasher.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = hasher.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret pass\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let ct = s.write_config(&format!(
        "version: 1\napp: {{ name: guestbook }}\nservices:\n  web: {{ command: \"sleep 1000\" }}\n  worker: {{ command: \"sleep 1000\", after: [web] }}\nfiles: [\"{files}\"]\nbackup:\n  repository: \"{repo}\"\n  password: \"a long enough backup password\"\n  schedule: \"daily 02:00\"\nstatus:\n  users:\n    admin: {{ password_hash: \"{hash}\" }}\n  token_file: \"{token}\"\n",
        files = s.path().display(),
        repo = s.path().join("repo").display(),
        token = s.write("status.token", "tok-0123456789\n", 0o600).display(),
    ));
    ct.expect(&["config", "check"], 0);
    seed(&s.path().join("state"));

    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut serve = ct.command(&["status-page", "--serve", &addr]);
    serve.stdout(Stdio::null()).stderr(Stdio::null());
    let _server = Killed(serve.spawn().unwrap());
    wait_until(Duration::from_secs(20), "the status page to listen", || TcpStream::connect(&addr).ok());

    // Refused without (or with wrong) credentials, with a Basic challenge.
    let r = raw_get(port, "/status", None);
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(r.to_ascii_lowercase().contains("www-authenticate: basic realm="), "{r}");
    let r = raw_get(port, "/status/api", Some("Bearer wrong"));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = raw_get(port, "/status/api", Some("Bearer tok-0123456789"));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("\"app\":\"guestbook\""), "{r}");

    let profile = s.path().join("chromium");
    let refused = chromium(&chromium_bin, &profile, &["--dump-dom", &format!("http://{addr}/status")]);
    assert!(!refused.contains("id=\"jobs\""), "the page was served without credentials: {refused}");
    assert!(!refused.contains("guestbook"), "{refused}");

    let url = format!("http://admin:s3cret%20pass@{addr}/status");
    let dom = chromium(&chromium_bin, &profile, &["--dump-dom", &url]);
    for needle in [
        "data-mode=\"maintenance\"",
        "Upgrading the database &lt;v16&gt;",
        "id=\"services\"",
        ">web<",
        ">worker<",
        "id=\"backups\"",
        "current RPO",
        "id=\"alerts\"",
        "filesystem_free_percent",
        "firing",
        "id=\"schedule\"",
        "daily 02:00",
        "id=\"jobs\"",
        "rolled_back",
        "column &lt;email&gt; exists",
        "/status/jobs/1/log",
        "id=\"chart-repository\"",
        "id=\"chart-durations\"",
    ] {
        assert!(dom.contains(needle), "missing {needle:?} in the DOM:\n{dom}");
    }
    assert_eq!(dom.matches("<svg").count(), 2, "{dom}");
    assert!(dom.matches("<rect class=\"bar-").count() >= 18, "{dom}");

    // The token works in the URL too, and links keep it.
    let dom = chromium(&chromium_bin, &profile, &["--dump-dom", &format!("http://{addr}/status?token=tok-0123456789")]);
    assert!(dom.contains("/status/jobs/1/log?token=tok-0123456789"), "{dom}");

    let shot = artifact_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&chromium_bin, &profile, &[&format!("--screenshot={}", shot.display()), "--window-size=1280,2000", &url]);
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "no screenshot at {}", shot.display());
    eprintln!("status page screenshot: {}", shot.display());
}
