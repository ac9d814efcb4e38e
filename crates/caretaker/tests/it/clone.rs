//! Staging clones (docs/clones.md) of the demo app on a real PostgreSQL: same data on the
//! clone's own port, writes that stay in the clone, mail pointed away from production's SMTP,
//! limits, and a TTL honoured across a SIGKILLed daemon (nothing left behind).

use crate::supervisor::{free_port, http_get};
use crate::update::{drop_pg_database, psql};
use crate::{stderr_of, BIN};
use caretaker_testkit::{wait_until, Caretaker};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

struct App {
    dir: tempfile::TempDir,
    ct: Caretaker,
    port: u16,
    smtp_port: u16,
    admin: String,
    name: String,
}

impl App {
    fn new(clones: &str) -> Option<App> {
        let admin = caretaker_testkit::require_service("CARETAKER_TEST_PG_URL")?;
        let name = caretaker_testkit::unique_name("ctclone");
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let release = d.join("release");
        caretaker_demo_app::write_default_release(&release).unwrap();
        std::fs::create_dir_all(d.join("files")).unwrap();
        std::fs::write(d.join("files/readme.txt"), "production file\n").unwrap();
        let port = free_port();
        // Production's SMTP: a listener of the test's own, which the clone must never reach.
        let smtp_port = free_port();
        let lo = 20000 + (std::process::id() % 2000) as u16 * 20;
        let config = d.join("caretaker.yml");
        std::fs::write(
            &config,
            format!(
                r#"version: 1
app:
  name: clonetest
  working_dir: "{r}"
  env:
    DEMO_DATABASE_URL: "{url}"
    DEMO_FILES_DIR: "{d}/files"
    DEMO_LISTEN: "127.0.0.1:{port}"
    EMAIL_HOST: "127.0.0.1"
    EMAIL_PORT: "{smtp_port}"
services:
  web:
    command: ["sh", "-c", "'{BIN}' demo-app migrate && exec '{BIN}' demo-app serve"]
    health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 30s }}
    stop_timeout: 5s
database:
  kind: postgres
  url: "{url}"
files:
  - path: "{d}/files"
update:
  health_timeout: 60s
http: {{ listen: "127.0.0.1:{http}" }}
clones:
  port_range: {lo}-{hi}
{clones}
"#,
                r = release.display(),
                d = d.display(),
                http = free_port(),
                hi = lo + 19,
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let ct = Caretaker::new(BIN, &config, &d.join("state"));
        Some(App { dir, ct, port, smtp_port, admin, name })
    }

    fn rows(&self, db: &str) -> String {
        let url = format!("{}/{db}", &self.admin[..self.admin.rfind('/').unwrap()]);
        psql(&url, "SELECT id, author, body, created_at FROM entries ORDER BY id")
    }

    fn copies(&self) -> Vec<String> {
        psql(
            &self.admin,
            &format!("SELECT datname FROM pg_database WHERE datname LIKE '{}\\_\\_clone\\_%' ORDER BY 1", self.name),
        )
        .lines()
        .map(str::to_string)
        .collect()
    }

    fn clones(&self) -> Vec<Value> {
        self.ct.json(&["clone", "list", "--json"]).as_array().unwrap().clone()
    }

    fn clone_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("state/clones").join(name)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let out = self.ct.run(&["clone", "list", "--json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        for c in list.as_array().into_iter().flatten() {
            let _ = self.ct.run(&["clone", "destroy", c["name"].as_str().unwrap_or_default()]);
        }
        let _ = self.ct.run(&["down", "--daemon"]);
        drop_pg_database(&self.admin, &self.name);
    }
}

fn post_entry(port: u16, author: &str, body: &str) {
    let form = format!("author={author}&body={body}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /entries HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status: u16 = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(status < 400, "POST /entries on {port}: {buf}");
}

fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s[s.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => false,
    }
}

/// pids of the services the clone's daemon recorded (`services.json` of its state dir).
fn service_pids(clone_dir: &Path) -> Vec<u64> {
    let Ok(b) = std::fs::read(clone_dir.join("state/services.json")) else { return vec![] };
    let v: Value = serde_json::from_slice(&b).unwrap();
    v.as_array().unwrap().iter().map(|r| r["pid"].as_u64().unwrap()).collect()
}

#[test]
fn clone_serves_the_same_data_on_its_own_port_and_its_writes_and_mail_stay_in_the_clone() {
    let Some(app) = App::new("  max_count: 1\n  max_ttl: 2d\n  env: { BANNER: \"staging clone\" }") else { return };
    app.ct.expect(&["up"], 0);
    post_entry(app.port, "alice", "first");
    post_entry(app.port, "bob", "second");
    let before = app.rows(&app.name);
    assert_eq!(before.lines().count(), 2, "{before}");

    let c = app.ct.json(&["clone", "create", "try", "--ttl", "1h", "--json"]);
    assert_eq!(c["phase"], "running", "{c}");
    let port = c["web_port"].as_u64().unwrap() as u16;
    assert_ne!(port, app.port);
    let db = c["database"].as_str().unwrap().to_string();
    assert!(db.starts_with(&format!("{}__clone_", app.name)) && db.ends_with("_try"), "{db}");
    assert!(c["time_left_seconds"].as_u64().unwrap() > 3500, "{c}");

    // The same data, served by the clone on its own port.
    let api = |p: u16| http_get(p, "/api/entries").filter(|(s, _)| *s == 200).map(|(_, b)| b).unwrap();
    assert_eq!(api(port), api(app.port));
    assert_eq!(app.rows(&db), before);

    // Writes to the clone stay in the clone: production is unchanged row by row.
    post_entry(port, "carol", "only-in-the-clone");
    assert_eq!(app.rows(&db).lines().count(), 3);
    assert_eq!(app.rows(&app.name), before);
    assert!(!api(app.port).contains("only-in-the-clone"));
    // Files too: the clone has its own copy.
    let files = PathBuf::from(c["files"][0][1].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(files.join("readme.txt")).unwrap(), "production file\n");
    std::fs::write(files.join("readme.txt"), "clone file\n").unwrap();
    assert_eq!(std::fs::read_to_string(app.dir.path().join("files/readme.txt")).unwrap(), "production file\n");

    // Mail: the clone's processes get the sink, not production's SMTP; the banner; their name.
    let out = app.ct.expect(&["clone", "exec", "try", "--", "env"], 0);
    let env: Vec<&str> = out.lines().collect();
    for want in ["EMAIL_HOST=127.0.0.1", "EMAIL_PORT=1", "CARETAKER_CLONE=try", "BANNER=staging clone"] {
        assert!(env.contains(&want), "{want} missing in:\n{out}");
    }
    assert!(!out.contains(&format!("={}\n", app.smtp_port)), "production's SMTP port leaked:\n{out}");
    assert!(out.contains(&format!("DEMO_DATABASE_URL={}", "postgres")) && out.contains(&db), "{out}");
    // Nothing listens on the sink: a message has nowhere to go.
    assert!(std::net::TcpStream::connect(("127.0.0.1", 1)).is_err());

    // Limits, refused with the reason.
    let out = app.ct.run(&["clone", "create", "second"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("1 clone(s) exist (try), the most clones.max_count allows (1)"),
        "{}",
        stderr_of(&out)
    );
    let out = app.ct.run(&["clone", "create", "second", "--ttl", "3d"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("the TTL 3d is longer than clones.max_ttl (2d)"), "{}", stderr_of(&out));
    let out = app.ct.run(&["clone", "create", "Bad_Name"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("clone name `Bad_Name`"), "{}", stderr_of(&out));
    let list = app.ct.expect(&["clone", "list"], 0);
    assert!(list.contains("try") && list.contains("running"), "{list}");

    // Destroy: no process, no database copy, no directory.
    let daemon = c["daemon"]["pid"].as_u64().unwrap();
    let services = service_pids(&app.clone_dir("try"));
    assert!(!services.is_empty());
    app.ct.expect(&["clone", "destroy", "try"], 0);
    assert!(!alive(daemon));
    assert!(services.iter().all(|p| !alive(*p)), "{services:?}");
    assert!(app.copies().is_empty(), "{:?}", app.copies());
    assert!(!app.clone_dir("try").exists());
    assert!(http_get(port, "/healthz").is_none());
    assert_eq!(app.rows(&app.name), before);
}

/// The clone's TTL runs out while no production daemon runs and after its own daemon was
/// SIGKILLed (its services orphaned); the next daemon's start destroys it completely.
#[test]
fn a_short_ttl_is_honoured_across_a_sigkilled_daemon() {
    let Some(app) = App::new("") else { return };
    app.ct.expect(&["up"], 0);
    post_entry(app.port, "alice", "first");
    let pid = app.ct.json(&["status", "--json"])["daemon_pid"].as_i64().expect("a daemon runs") as i32;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until(Duration::from_secs(20), "the daemon to die", || (!alive(pid as u64)).then_some(()));

    let c = app.ct.json(&["clone", "create", "brief", "--ttl", "3s", "--json"]);
    let dir = app.clone_dir("brief");
    let clone_daemon = c["daemon"]["pid"].as_u64().unwrap();
    let services = service_pids(&dir);
    assert!(!services.is_empty());
    unsafe { libc::kill(clone_daemon as i32, libc::SIGKILL) };
    wait_until(Duration::from_secs(20), "the clone's daemon to die", || (!alive(clone_daemon)).then_some(()));
    // Past its time, with no daemon to act: the clone (its orphaned services) is still there.
    wait_until(Duration::from_secs(30), "the clone's time to run out", || {
        (app.clones()[0]["time_left_seconds"] == 0).then_some(())
    });
    assert!(services.iter().all(|p| alive(*p)), "the orphaned services run until a daemon sweeps");
    assert_eq!(app.copies().len(), 1);

    // The next daemon destroys it at its start: no process, database copy or directory.
    app.ct.expect(&["up"], 0);
    wait_until(Duration::from_secs(60), "the expired clone to be destroyed", || (!dir.exists()).then_some(()));
    assert!(services.iter().all(|p| !alive(*p)), "{services:?}");
    assert!(app.copies().is_empty(), "{:?}", app.copies());
    assert!(app.clones().is_empty());
    assert_eq!(app.rows(&app.name).lines().count(), 1);
}

/// `clone create` SIGKILLed after the database copy, while the clone's daemon starts: the
/// daemon's sweep finds the half-made clone (its creator is gone) and removes all of it.
#[test]
fn a_sigkilled_clone_create_is_cleaned_up_by_the_sweep() {
    let Some(app) = App::new("") else { return };
    app.ct.expect(&["up"], 0);
    let dir = app.clone_dir("half");
    let mut create = app.ct.command(&["clone", "create", "half"]);
    let mut child = create.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Killed once the record names the database copy and before the clone is running.
    wait_until(Duration::from_secs(60), "the clone's database copy to be recorded", || {
        let rec: Value = serde_json::from_slice(&std::fs::read(dir.join("clone.json")).ok()?).ok()?;
        (rec["phase"] == "creating" && rec["database"].is_string()).then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until(Duration::from_secs(60), "the half-made clone to be removed", || (!dir.exists()).then_some(()));
    assert!(app.copies().is_empty(), "{:?}", app.copies());
    // Nothing of the clone keeps running: no caretaker with its state directory.
    let needle = dir.join("state").display().to_string();
    wait_until(Duration::from_secs(30), "no process of the clone", || {
        let procs: Vec<u64> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(&needle))
                    && alive(*pid)
            })
            .collect();
        procs.is_empty().then_some(())
    });
}

/// SQLite: the clone's database is a copy next to the live file, and goes with the clone.
#[test]
fn a_sqlite_app_clone_has_its_own_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let release = d.join("release");
    caretaker_demo_app::write_default_release(&release).unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    let port = free_port();
    let lo = 30000 + (std::process::id() % 2000) as u16 * 10;
    let config = d.join("caretaker.yml");
    std::fs::write(
        &config,
        format!(
            r#"version: 1
app:
  name: clonesqlite
  working_dir: "{r}"
  env:
    DEMO_DATABASE_URL: "sqlite://{d}/data/demo.db"
    DEMO_FILES_DIR: "{d}/data"
    DEMO_LISTEN: "127.0.0.1:{port}"
services:
  web:
    command: ["sh", "-c", "'{BIN}' demo-app migrate && exec '{BIN}' demo-app serve"]
    health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 30s }}
    stop_timeout: 5s
database: {{ kind: sqlite, path: "{d}/data/demo.db" }}
update: {{ health_timeout: 60s }}
http: {{ listen: "127.0.0.1:{http}" }}
clones: {{ port_range: {lo}-{hi} }}
"#,
            r = release.display(),
            d = d.display(),
            http = free_port(),
            hi = lo + 9,
        ),
    )
    .unwrap();
    /// Stops the daemons and clones even when an assertion fails.
    struct Down(Caretaker);
    impl Drop for Down {
        fn drop(&mut self) {
            for name in ["clone-1", "watched"] {
                let _ = self.0.run(&["clone", "destroy", name]);
            }
            let _ = self.0.run(&["down", "--daemon"]);
        }
    }
    let guard = Down(Caretaker::new(BIN, &config, &d.join("state")));
    let ct = &guard.0;
    ct.expect(&["up"], 0);
    post_entry(port, "alice", "first");
    let c = ct.json(&["clone", "create", "--json"]);
    assert_eq!(c["name"], "clone-1");
    let copy = PathBuf::from(c["database"].as_str().unwrap());
    assert_eq!(copy.parent(), Some(d.join("data").as_path()));
    assert!(copy.file_name().unwrap().to_str().unwrap().starts_with("demo.db__clone_"), "{copy:?}");
    let cport = c["web_port"].as_u64().unwrap() as u16;
    post_entry(cport, "bob", "clone-only");
    let count = |p: &Path| -> i64 {
        rusqlite::Connection::open(p).unwrap().query_row("SELECT count(*) FROM entries", [], |r| r.get(0)).unwrap()
    };
    assert_eq!((count(&d.join("data/demo.db")), count(&copy)), (1, 2));
    ct.expect(&["clone", "destroy", "clone-1"], 0);
    assert!(!copy.exists());
    // Both are jobs in the log: create, then destroy.
    let jobs = ct.json(&["jobs", "--json"]);
    let clone_jobs: Vec<&Value> = jobs.as_array().unwrap().iter().filter(|j| j["kind"] == "clone").collect();
    assert_eq!(clone_jobs.len(), 2, "{jobs}");
    assert!(clone_jobs.iter().all(|j| j["outcome"] == "succeeded"), "{jobs}");
    assert_eq!(count(&d.join("data/demo.db")), 1);

    // A clone daemon whose record is gone (its clone destroyed while it was starting) stops
    // itself and its services — with no production daemon to sweep; `clone destroy` then
    // removes the rest.
    ct.expect(&["down", "--daemon"], 0);
    let w = ct.json(&["clone", "create", "watched", "--json"]);
    let wdir = d.join("state/clones/watched");
    let daemon = w["daemon"]["pid"].as_u64().unwrap();
    let services = service_pids(&wdir);
    assert!(!services.is_empty());
    std::fs::remove_file(wdir.join("clone.json")).unwrap();
    wait_until(Duration::from_secs(30), "the clone's daemon to stop itself", || (!alive(daemon)).then_some(()));
    assert!(services.iter().all(|p| !alive(*p)), "{services:?}");
    ct.expect(&["clone", "destroy", "watched"], 0);
    assert!(!wdir.exists());
    let left: Vec<_> = std::fs::read_dir(d.join("data"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("__clone_"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
