//! `caretaker recover`: disaster recovery of the demo app on PostgreSQL with a file tree, from
//! only the config, into a new empty database and empty directories.

use crate::{stderr_of, BIN};
use caretaker_testkit::{require_service, unique_name, Caretaker};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

fn psql(url: &str, sql: &str) {
    let out = std::process::Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql]).output().unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

fn http(port: u16, req: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Stops the background daemons of the caretakers when the test ends, however it ends.
struct Down(std::path::PathBuf, Vec<std::path::PathBuf>);

impl Drop for Down {
    fn drop(&mut self) {
        for state in &self.1 {
            let _ = Caretaker::new(BIN, &self.0, state).run(&["down", "--daemon"]);
        }
    }
}

fn config(dir: &Path, db_url: &str, port: u16) -> String {
    let d = dir.display();
    format!(
        r#"version: 1
app:
  name: rec
  working_dir: "{d}/release"
  migrate:
    - ["{BIN}", "demo-app", "migrate"]
  env:
    DEMO_DATABASE_URL: "{db_url}"
    DEMO_FILES_DIR: "{d}/files"
    DEMO_LISTEN: "127.0.0.1:{port}"
services:
  web:
    command: ["{BIN}", "demo-app", "serve"]
    health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 20s }}
    stop_timeout: 5s
database:
  kind: postgres
  url: "{db_url}"
files:
  - {{ path: "{d}/files" }}
backup:
  repository: "{d}/repo"
  password: "a long test password"
  schedule: daily
  keep: {{ last: 3 }}
"#
    )
}

#[test]
fn recover_from_only_the_config_serves_the_old_data() {
    let Some(base) = require_service("CARETAKER_TEST_PG_URL") else { return };
    let (server, _) = base.rsplit_once('/').unwrap();
    let db1 = unique_name("rec_old");
    let db2 = unique_name("rec_new");
    psql(&base, &format!("CREATE DATABASE {db1}"));
    psql(&base, &format!("CREATE DATABASE {db2}"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    caretaker_demo_app::write_default_release(&d.join("release")).unwrap();
    std::fs::create_dir_all(d.join("files/sous-dossier")).unwrap();
    std::fs::write(d.join("files/sous-dossier/reçu.txt"), "kept in the file tree").unwrap();
    let port = free_port();
    let cfg = d.join("caretaker.yml");
    let write_cfg = |db: &str| {
        std::fs::write(&cfg, config(d, &format!("{server}/{db}"), port)).unwrap();
        std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    };

    // The old machine: migrate, start, add an entry, back up, stop.
    write_cfg(&db1);
    let old = Caretaker::new(BIN, &cfg, &d.join("state-old"));
    let new = Caretaker::new(BIN, &cfg, &d.join("state-new"));
    let _down = Down(cfg.clone(), vec![d.join("state-old"), d.join("state-new")]);
    let body = "author=alice&body=written-before-the-backup";
    let out = std::process::Command::new(BIN)
        .args(["demo-app", "migrate"])
        .env("DEMO_DATABASE_URL", format!("{server}/{db1}"))
        .current_dir(d.join("release"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    old.expect(&["up"], 0);
    let post = format!(
        "POST /entries HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(http(port, &post).map(|r| r.0), Some(303));
    old.expect(&["backup", "init"], 0);
    let run = old.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    old.expect(&["down", "--daemon"], 0);

    // The new machine: only the config (pointing at a new, empty database), empty directories.
    std::fs::remove_dir_all(d.join("files")).unwrap();
    std::fs::create_dir_all(d.join("files")).unwrap();
    write_cfg(&db2);
    let out = new.run(&["recover"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    for step in ["files", "database", "migrate", "start"] {
        assert!(printed.contains(step), "{printed}");
    }
    let (status, entries) = http(port, "GET /api/entries HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(status, 200);
    assert!(entries.contains("written-before-the-backup"), "{entries}");
    assert_eq!(std::fs::read_to_string(d.join("files/sous-dossier/reçu.txt")).unwrap(), "kept in the file tree");
    let jobs = new.json(&["jobs", "--json"]);
    let job = jobs.as_array().unwrap().iter().find(|j| j["kind"] == "recover").unwrap().clone();
    assert_eq!(job["outcome"], "succeeded", "{job}");

    // Live data now exists: a second recover refuses (exit 5) and changes nothing.
    new.expect(&["down", "--daemon"], 0);
    let out = new.run(&["recover"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("live data"), "{}", stderr_of(&out));
    // --force moves the tree aside (never deleted) and keeps the database aside.
    let out = new.run(&["recover", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let aside: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("files.caretaker-old-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(aside[0].path().join("sous-dossier/reçu.txt").exists());
    let (_, entries) = http(port, "GET /api/entries HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    assert!(entries.contains("written-before-the-backup"), "{entries}");
}
