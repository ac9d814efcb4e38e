//! Maintenance mode through the CLI, and the documented nginx snippet against real nginx.

use crate::{stderr_of, Scratch};
use caretaker_testkit::{require_service, wait_until};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A tiny app on loopback that answers every request with 200 "app".
fn tiny_app() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\napp");
        }
    });
    port
}

fn get(port: u16) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /some/page HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0);
    (status, out)
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL would orphan them on the port.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[test]
fn maintenance_mode_switches_the_nginx_page_on_and_off() {
    let Some(nginx) = require_service("CARETAKER_TEST_NGINX") else { return };
    let s = Scratch::new();
    let www = s.path().join("www");
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: site\nmaintenance:\n  page_dir: \"{}\"\n  message: \"Back soon <3\"\n",
        www.display()
    ));
    let app_port = tiny_app();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let snippet = include_str!("../../../../docs/nginx/caretaker-maintenance.conf")
        .replace("/var/lib/caretaker/www", &www.display().to_string());
    let dir = s.path();
    std::fs::write(dir.join("snippet.conf"), snippet).unwrap();
    let user = if unsafe { libc::geteuid() } == 0 { "user root;" } else { "" };
    let conf = format!(
        "{user}\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  server {{\n    listen 127.0.0.1:{port};\n    include {d}/snippet.conf;\n    location / {{ proxy_pass http://127.0.0.1:{app_port}; }}\n  }}\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let _nginx = Nginx(
        Command::new(&nginx)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(dir)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(10), "nginx to listen", || TcpStream::connect(("127.0.0.1", port)).ok());

    assert_eq!(get(port).0, 200);
    let out = ct.expect(&["maintenance", "on"], 0);
    assert!(out.contains("mode: maintenance"), "{out}");
    let (status, resp) = get(port);
    assert_eq!(status, 503, "{resp}");
    assert!(resp.contains("Retry-After: 30"), "{resp}");
    assert!(resp.contains("Back soon &lt;3"), "{resp}");

    let status_json = ct.json(&["maintenance", "status", "--json"]);
    assert_eq!(status_json["mode"], "maintenance");
    assert_eq!(status_json["by"], "operator");

    let out = ct.run(&["maintenance", "off"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(get(port).0, 200);
    assert!(!www.join("maintenance.html").exists());

    // Every switch is an event in the state store.
    ct.expect(&["maintenance", "on", "--message", "second"], 0);
    assert!(get(port).1.contains("second"));
    ct.expect(&["maintenance", "off"], 0);
}

/// The demo app deployed from a local git repository (tags v1, v2 with a migration, v3) with
/// caretaker's front door in front of it: for what visitors see during updates.
pub(crate) struct Site {
    _dir: tempfile::TempDir,
    pub(crate) ct: caretaker_testkit::Caretaker,
    /// The front door's port.
    pub(crate) door: u16,
}

impl Site {
    pub(crate) fn new() -> Site {
        use crate::supervisor::free_port;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let repo = d.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        crate::update::git(&repo, &["init", "-q", "-b", "main"]);
        caretaker_demo_app::write_release(&repo, "v1").unwrap();
        crate::update::commit_tag(&repo, "v1");
        crate::update::commit_v2_with_a_migration_and_v3(&repo);
        std::fs::create_dir_all(d.join("data/files")).unwrap();
        let (port, door, http) = (free_port(), free_port(), free_port());
        let config = d.join("caretaker.yml");
        std::fs::write(
            &config,
            format!(
                r#"version: 1
app:
  name: doortest
  working_dir: "{d}/state/current"
  source: {{ git: "{d}/repo", tag: v1 }}
  migrate:
    - ["{bin}", "demo-app", "migrate"]
  env:
    DEMO_DATABASE_URL: "sqlite://{d}/data/demo.db"
    DEMO_FILES_DIR: "{d}/data/files"
    DEMO_LISTEN: "127.0.0.1:{port}"
services:
  web:
    command: ["{bin}", "demo-app", "serve"]
    health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 20s }}
    stop_timeout: 5s
database:
  kind: sqlite
  path: "{d}/data/demo.db"
update:
  health_timeout: 30s
front_door: {{ listen: "127.0.0.1:{door}", upstream: "127.0.0.1:{port}", retry_after: 5s }}
http: {{ listen: "127.0.0.1:{http}" }}
"#,
                d = d.display(),
                bin = crate::BIN,
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let ct = caretaker_testkit::Caretaker::new(crate::BIN, &config, &d.join("state"));
        Site { _dir: dir, ct, door }
    }

    /// What the app at the front door says its version is.
    pub(crate) fn version(&self) -> Option<String> {
        crate::supervisor::http_get(self.door, "/version").filter(|(s, _)| *s == 200).map(|(_, b)| b.trim().to_string())
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.ct.run(&["down", "--daemon"]);
    }
}

/// A visitor asking the front door for a page every 20 ms until stopped: the status of every
/// answer in order (0: no answer at all).
pub(crate) struct Visitor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u16>>,
}

impl Visitor {
    pub(crate) fn start(door: u16) -> Visitor {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                seen.push(crate::supervisor::http_get(door, "/").map(|r| r.0).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        Visitor { stop, thread }
    }

    pub(crate) fn finish(self) -> Vec<u16> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// `200×10, 503×27, 200`: runs of equal statuses, for messages.
pub(crate) fn runs(seen: &[u16]) -> String {
    let mut out: Vec<(u16, usize)> = Vec::new();
    for s in seen {
        match out.last_mut() {
            Some((last, n)) if last == s => *n += 1,
            _ => out.push((*s, 1)),
        }
    }
    out.iter().map(|(s, n)| format!("{s}×{n}")).collect::<Vec<_>>().join(", ")
}

#[test]
fn visitors_see_only_the_app_or_the_maintenance_page_during_an_update() {
    let site = Site::new();
    site.ct.expect(&["update"], 0);
    wait_until(Duration::from_secs(30), "v1 through the front door", || site.version().filter(|v| v == "v1"));

    let visitor = Visitor::start(site.door);
    // Let the visitor see the app before the update starts.
    wait_until(Duration::from_secs(10), "the visitor's first pages", || {
        crate::supervisor::http_get(site.door, "/").filter(|(s, _)| *s == 200)
    });
    site.ct.expect(&["update", "--to", "v2"], 0);
    // The switch back is acknowledged too: the app serves the moment the update returns.
    let right_after = crate::supervisor::http_get(site.door, "/").map(|r| r.0);
    let seen = visitor.finish();
    eprintln!("through the front door during the update: {}", runs(&seen));
    assert_eq!(right_after, Some(200), "the maintenance page lingered after the update: {}", runs(&seen));
    assert!(seen.iter().all(|s| *s == 200 || *s == 503), "only the app or the maintenance page: {}", runs(&seen));
    assert!(seen.contains(&503), "the update was seen in maintenance: {}", runs(&seen));
    assert_eq!(site.version().as_deref(), Some("v2"));
}

#[test]
fn check_takes_the_backup_age_from_the_repository_when_the_job_log_has_none() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "a").unwrap();
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: bk\nfiles: [ {} ]\nbackup:\n  repository: {}\n  password: \"a long test password\"\n  schedule: daily\n\
         alerts: {{ rules: {{ filesystem_free_percent: {{ warning: 0, critical: 0 }}, memory_used_percent: false, load_per_cpu: false }} }}\n",
        media.display(),
        s.path().join("repo").display()
    ));
    let backup_check = |ct: &caretaker_testkit::Caretaker| {
        let v = ct.json(&["check", "--json"]);
        v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "backup").cloned().unwrap()
    };
    ct.expect(&["backup", "init"], 0);
    let out = ct.run(&["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let none = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "backup").cloned().unwrap();
    assert_eq!(none["status"], "warning", "{none}");
    assert!(none["message"].as_str().unwrap().contains("the repository holds no snapshot"), "{none}");
    ct.expect(&["backup", "run"], 0);
    assert_eq!(backup_check(&ct)["status"], "ok");
    // A fresh state directory, as after a recover onto a new machine: the job log is empty,
    // the repository is not.
    std::fs::rename(s.path().join("state"), s.path().join("state.old")).unwrap();
    let c = backup_check(&ct);
    assert_eq!(c["status"], "ok", "{c}");
    assert!(c["message"].as_str().unwrap().contains("newest snapshot in the repository"), "{c}");
}

#[test]
fn a_successful_update_ends_service_mode_and_says_so() {
    let site = Site::new();
    site.ct.expect(&["update"], 0);
    wait_until(Duration::from_secs(30), "v1 through the front door", || site.version().filter(|v| v == "v1"));
    // Service mode left by a crash loop of the release before (as the supervisor words it).
    {
        let store =
            caretaker_state::Store::open(&site.ct.state_dir, caretaker_core::config::Redactor::default()).unwrap();
        let failed = serde_json::json!({"reason": "service web failed: crash loop", "since": "2026-12-04T10:00:00Z"});
        store.set_fact(caretaker_core::mode::FACT_FAILED, &failed.to_string()).unwrap();
    }
    site.ct.expect(&["maintenance", "status"], 0);
    wait_until(Duration::from_secs(5), "the service page", || {
        crate::supervisor::http_get(site.door, "/").filter(|(s, _)| *s == 503)
    });
    let out = site.ct.expect(&["update", "--to", "v2"], 0);
    assert!(out.contains("service mode cleared") && out.contains("crash loop"), "{out}");
    assert_eq!(site.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");
    assert_eq!(crate::supervisor::http_get(site.door, "/").map(|r| r.0), Some(200), "serving at once");
}

/// `appmode::ModeGuard`: a restore switches maintenance on and off for its length, but leaves
/// maintenance an operator had switched on (and its message) as it found it.
#[test]
fn a_database_restore_leaves_an_operators_maintenance_on() {
    let s = Scratch::new();
    let db = s.path().join("app.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('a');")
        .unwrap();
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: guard\ndatabase: {{ kind: sqlite, path: {} }}\nbackup:\n  repository: {}\n  password: \"a long test password\"\n  schedule: daily\n",
        db.display(),
        s.path().join("repo").display()
    ));
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);
    ct.expect(&["maintenance", "on", "--message", "Moving servers"], 0);
    ct.expect(&["backup", "restore", "--db-only", "--force"], 0);
    let mode = ct.json(&["maintenance", "status", "--json"]);
    assert_eq!(mode["mode"], "maintenance", "{mode}");
    assert_eq!((mode["message"].as_str(), mode["by"].as_str()), (Some("Moving servers"), Some("operator")), "{mode}");
    // Without it, the restore's own maintenance ends with the restore.
    ct.expect(&["maintenance", "off"], 0);
    ct.expect(&["backup", "restore", "--db-only", "--force"], 0);
    assert_eq!(ct.json(&["maintenance", "status", "--json"])["mode"], "normal");
}
