//! `caretaker recover` rebuilding the app's code: a snapshot records the commit the app ran
//! (`app-commit:` tag); on a machine without the release, recover fetches that commit from
//! `app.source` and builds it as `update` does. Without a release and without a source it
//! refuses and changes nothing.

use crate::supervisor::http_get;
use crate::update::{commit_tag, commit_v2_with_a_migration_and_v3, drop_pg_database, free_port, git, psql};
use crate::{stderr_of, BIN};
use caretaker_testkit::{require_service, unique_name, wait_until, Caretaker};
use std::path::Path;
use std::time::Duration;

fn post_entry(port: u16, body: &str) {
    let form = format!("author=t&body={body}");
    let req = format!(
        "POST /entries HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
    let mut buf = String::new();
    std::io::Read::read_to_string(&mut s, &mut buf).unwrap();
    assert!(buf.starts_with("HTTP/1.0 303") || buf.starts_with("HTTP/1.1 303"), "{buf}");
}

/// The database, dropped at the end with every copy caretaker made of it.
struct Pg {
    admin: String,
    name: String,
    url: String,
}

impl Pg {
    fn new(prefix: &str) -> Option<Pg> {
        let admin = require_service("CARETAKER_TEST_PG_URL")?;
        let name = unique_name(prefix);
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
        Some(Pg { admin, name, url })
    }

    /// A new machine's database: empty.
    fn recreate_empty(&self) {
        psql(&self.admin, &format!("DROP DATABASE {} WITH (FORCE)", self.name));
        psql(&self.admin, &format!("CREATE DATABASE {}", self.name));
    }

    fn tables(&self) -> String {
        psql(&self.url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").trim().to_string()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        drop_pg_database(&self.admin, &self.name);
    }
}

struct Down(Caretaker);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = self.0.run(&["down", "--daemon"]);
    }
}

fn write_config(d: &Path, app_keys: &str, db_url: &str, port: u16) -> Caretaker {
    let cfg = d.join("caretaker.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"version: 1
app:
  name: reccode
{app_keys}
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
database: {{ kind: postgres, url: "{db_url}" }}
files:
  - {{ path: "{d}/files" }}
backup:
  repository: "{d}/repo"
  password: "a long test password"
update: {{ health_timeout: 20s }}
http: {{ listen: "127.0.0.1:{http_port}" }}
"#,
            d = d.display(),
            http_port = free_port()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    Caretaker::new(BIN, &cfg, &d.join("state"))
}

#[test]
fn recover_rebuilds_the_code_of_the_snapshots_commit_from_git() {
    let Some(db) = Pg::new("reccode") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // v1; v2 adds a migration (a column); v3, the branch's head, is newer code.
    let repo = d.join("repo-src");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    caretaker_demo_app::write_release(&repo, "v1").unwrap();
    commit_tag(&repo, "v1");
    commit_v2_with_a_migration_and_v3(&repo);
    let rev = |r: &str| {
        let out = std::process::Command::new("git").args(["rev-parse", r]).current_dir(&repo).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let v2 = rev("v2");
    std::fs::create_dir_all(d.join("files")).unwrap();
    std::fs::write(d.join("files/upload.txt"), "an uploaded file").unwrap();
    let port = free_port();
    let app_keys = format!(
        "  working_dir: \"{d}/state/current\"\n  source: {{ git: \"{d}/repo-src\", branch: main }}",
        d = d.display()
    );
    let ct = write_config(d, &app_keys, &db.url, port);
    let _down = Down(Caretaker::new(BIN, &d.join("caretaker.yml"), &d.join("state")));
    let version = || {
        wait_until(Duration::from_secs(20), "the app to answer /version", || {
            http_get(port, "/version").filter(|(s, _)| *s == 200).map(|(_, b)| b.trim().to_string())
        })
    };

    // The old machine runs v2 (deployed through v1), with data; the snapshot records v2.
    ct.expect(&["update", "--to", "v1"], 0);
    ct.expect(&["update", "--to", "v2"], 0);
    assert_eq!(version(), "v2");
    post_entry(port, "written-at-v2");
    ct.expect(&["backup", "init"], 0);
    let run = ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    let list = ct.json(&["backup", "list", "--json"]);
    assert!(list.to_string().contains(&format!("app-commit:{v2}")), "the snapshot records v2's commit: {list}");
    ct.expect(&["down", "--daemon"], 0);

    // Disaster: the releases, the git cache, the database and the files are gone.
    for p in ["state/releases", "state/cache", "files"] {
        std::fs::remove_dir_all(d.join(p)).unwrap();
    }
    std::fs::remove_file(d.join("state/current")).unwrap();
    std::fs::create_dir_all(d.join("files")).unwrap();
    db.recreate_empty();

    let out = ct.run(&["recover", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = &summary["figures"]["code"];
    assert_eq!(code["action"], "built", "{summary}");
    assert_eq!(code["commit"], v2, "{summary}");
    assert_eq!(code["origin"], "snapshot", "{summary}");
    let steps: Vec<&str> =
        summary["figures"]["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["snapshot", "inspect", "code", "files", "database", "migrate", "start"], "{summary}");
    assert!(summary["figures"]["steps"][2]["seconds"].as_f64().unwrap() > 0.0);

    // v2's code serves the old data (not v3, the branch's head).
    assert_eq!(version(), "v2");
    let (_, entries) = http_get(port, "/api/entries").unwrap();
    assert!(entries.contains("written-at-v2"), "{entries}");
    assert_eq!(std::fs::read_to_string(d.join("files/upload.txt")).unwrap(), "an uploaded file");
    let releases = ct.json(&["releases", "--json"]);
    assert!(releases.to_string().contains(&v2[..12]), "the release is recorded: {releases}");
    let jobs = ct.json(&["jobs", "--kind", "recover", "-n", "1", "--json"]);
    let log = ct.expect(&["jobs", "show", &jobs[0]["id"].to_string()], 0);
    assert!(log.contains("code: built release"), "the code step is in the job log: {log}");

    // --ref deploys another reference over the present release (live data: --force).
    ct.expect(&["down", "--daemon"], 0);
    let out = ct.run(&["recover", "--force", "--ref", "v3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--ref v3"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(version(), "v3");
    let (_, entries) = http_get(port, "/api/entries").unwrap();
    assert!(entries.contains("written-at-v2"), "{entries}");

    // The release present (v3) is not at the snapshot's commit (v2): a plain warning, not a
    // line that reads as if they matched. The app runs meanwhile: the database is replaced
    // under it, so its services are restarted, and it serves right after.
    let v3 = rev("v3");
    let out = ct.run(&["recover", "--force"]);
    let (err, printed) = (stderr_of(&out), String::from_utf8_lossy(&out.stdout).to_string());
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: release present")
            && err.contains(&format!("is at commit {}", &v3[..12]))
            && err.contains(&format!("the snapshot was taken at {}", &v2[..12])),
        "{err}"
    );
    assert!(!printed.contains("(the snapshot's commit:"), "{printed}");
    assert!(printed.contains("restarted"), "the running services were restarted: {printed}");
    for _ in 0..5 {
        let (status, entries) = http_get(port, "/api/entries").unwrap();
        assert_eq!(status, 200, "{entries}");
        assert!(entries.contains("written-at-v2"), "{entries}");
    }
}

#[test]
fn recover_without_a_release_or_a_source_refuses_and_changes_nothing() {
    let Some(db) = Pg::new("recnosrc") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    caretaker_demo_app::write_default_release(&d.join("release")).unwrap();
    std::fs::create_dir_all(d.join("files")).unwrap();
    std::fs::write(d.join("files/upload.txt"), "an uploaded file").unwrap();
    let ct = write_config(d, &format!("  working_dir: \"{}/release\"", d.display()), &db.url, free_port());
    let out = std::process::Command::new(BIN)
        .args(["demo-app", "migrate"])
        .env("DEMO_DATABASE_URL", &db.url)
        .current_dir(d.join("release"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    ct.expect(&["backup", "init"], 0);
    let run = ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");

    // A present release without a source: --redeploy has nothing to build from.
    let out = ct.run(&["recover", "--redeploy"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("--redeploy needs app.source"), "{}", stderr_of(&out));

    // A new machine without the release and without a source.
    std::fs::remove_dir_all(d.join("release")).unwrap();
    std::fs::remove_dir_all(d.join("files")).unwrap();
    std::fs::create_dir_all(d.join("files")).unwrap();
    db.recreate_empty();
    let out = ct.run(&["recover"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("not on this machine") && err.contains("app.source"), "{err}");
    // Nothing changed: no release, no files, an empty database, no service started.
    assert!(!d.join("release").exists());
    assert!(!d.join("state/releases").exists() && !d.join("state/current").exists());
    assert_eq!(std::fs::read_dir(d.join("files")).unwrap().count(), 0);
    assert_eq!(db.tables(), "0");
    let jobs = ct.json(&["jobs", "--kind", "recover", "--json"]);
    assert!(jobs.as_array().unwrap().iter().all(|j| j["outcome"] == "refused"), "{jobs}");
}
