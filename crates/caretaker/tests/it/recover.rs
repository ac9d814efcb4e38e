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
http: {{ listen: "127.0.0.1:{http_port}" }}
"#,
        http_port = crate::supervisor::free_port()
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

/// Children of `pid` whose command name is `comm`.
fn children_named(pid: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = &stat[open + 1..close];
        let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if name == comm && rest.first() != Some(&"Z") && rest.get(1) == Some(&pid.to_string().as_str()) {
            out.push(p);
        }
    }
    out
}

/// `caretaker backup run` SIGKILLed while `pg_dump` streams into the snapshot: the job is
/// marked interrupted, the next run succeeds, and the repository checks clean (caretaker's
/// check and stock restic's).
#[test]
fn backup_run_killed_while_pg_dump_streams_leaves_a_consistent_repository() {
    let Some(base) = require_service("CARETAKER_TEST_PG_URL") else { return };
    let (server, _) = base.rsplit_once('/').unwrap();
    let name = unique_name("bk_kill");
    psql(&base, &format!("CREATE DATABASE {name}"));
    let url = format!("{server}/{name}");
    // ~60 MB of barely compressible rows: pg_dump takes seconds.
    psql(
        &url,
        "CREATE TABLE t (id int PRIMARY KEY, a text); INSERT INTO t SELECT g, md5(random()::text) || md5(random()::text) || md5(random()::text) FROM generate_series(1, 600000) g",
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("files")).unwrap();
    std::fs::write(d.join("files/a.txt"), "a file").unwrap();
    let cfg = d.join("caretaker.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 1\napp:\n  name: bkkill\ndatabase: {{ kind: postgres, url: \"{url}\" }}\nfiles: [ \"{f}\" ]\nbackup:\n  repository: \"{r}\"\n  password: \"a long test password\"\n  schedule: daily\n  keep: {{ last: 3 }}\n",
            f = d.join("files").display(),
            r = d.join("repo").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ct = Caretaker::new(BIN, &cfg, &d.join("state"));
    ct.expect(&["backup", "init"], 0);

    let mut run = ct.command(&["backup", "run"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let started = std::time::Instant::now();
    let dumper = loop {
        if let Some(p) = children_named(run.id(), "pg_dump").first() {
            break *p;
        }
        assert!(run.try_wait().unwrap().is_none(), "backup run ended before pg_dump was seen");
        assert!(started.elapsed() < Duration::from_secs(60), "no pg_dump within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(run.try_wait().unwrap().is_none(), "the dump was too quick to be interrupted");
    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();
    // pg_dump loses its reader and ends.
    let gone = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{dumper}")).exists()
        && !std::fs::read_to_string(format!("/proc/{dumper}/stat")).unwrap_or_default().contains(") Z")
    {
        assert!(gone.elapsed() < Duration::from_secs(30), "pg_dump outlived the killed backup");
        std::thread::sleep(Duration::from_millis(50));
    }

    assert_eq!(ct.json(&["backup", "list", "--json"]).as_array().unwrap().len(), 0, "no snapshot of the killed run");
    let next = ct.json(&["backup", "run", "--json"]);
    assert_eq!(next["outcome"], "succeeded", "{next}");
    let jobs = ct.json(&["jobs", "--json"]);
    let outcomes: Vec<&str> = jobs.as_array().unwrap().iter().map(|j| j["outcome"].as_str().unwrap()).collect();
    assert!(outcomes.contains(&"interrupted"), "the killed job is marked interrupted: {jobs}");
    ct.expect(&["backup", "check", "--read-data"], 0);

    if let Some(restic) =
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|p| p.join("restic")).find(|p| p.is_file()))
    {
        let pw = d.join("pw");
        std::fs::write(&pw, "a long test password").unwrap();
        let out = std::process::Command::new(restic)
            .args(["check", "--read-data"])
            .env("RESTIC_REPOSITORY", d.join("repo"))
            .env("RESTIC_PASSWORD_FILE", &pw)
            .env("RESTIC_CACHE_DIR", d.join("restic-cache"))
            .env_remove("RESTIC_PASSWORD")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("no errors were found"), "restic check: {text}");
    }
    psql(&base, &format!("DROP DATABASE {name}"));
}

/// Every file below `dir`: relative path → (mode, contents).
fn tree_state(dir: &Path) -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let contents = if meta.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            out.insert(rel, (meta.permissions().mode(), contents));
        }
    }
    out
}

fn psql_out(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql").args([url, "-XAtqc", sql]).output().unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The rows of the database in one digest (the demo app's entries and a larger table).
fn db_digest(url: &str) -> String {
    psql_out(
        url,
        "SELECT (SELECT count(*) || ':' || md5(string_agg(author || body, ',' ORDER BY id)) FROM entries) || '/' || \
         (SELECT count(*) || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM bulk)",
    )
}

/// `recover` SIGKILLed at each of its steps (and half-way through the database's stream, and
/// between the database's rename into place and recording it), then a plain `recover` (no
/// `--force`): it finishes the job, the data is identical to the backup's, and nothing is left
/// behind — no kept-aside trees, no staging directories, no copies of the database.
#[test]
fn recover_killed_at_each_step_is_finished_by_the_next_recover_without_force() {
    let Some(base) = require_service("CARETAKER_TEST_PG_URL") else { return };
    let (server, _) = base.rsplit_once('/').unwrap();
    let db1 = unique_name("reck_old");
    psql(&base, &format!("CREATE DATABASE {db1}"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    caretaker_demo_app::write_default_release(&d.join("release")).unwrap();
    for i in 0..50 {
        let sub = d.join(format!("files/d{}", i % 5));
        std::fs::create_dir_all(&sub).unwrap();
        let f = sub.join(format!("f{i}.bin"));
        std::fs::write(&f, format!("file {i} ").repeat(200 + i * 37)).unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600 + (i as u32 % 2) * 0o40))
            .unwrap();
    }
    let port = free_port();
    let cfg = d.join("caretaker.yml");
    let write_cfg = |db: &str| {
        std::fs::write(&cfg, config(d, &format!("{server}/{db}"), port)).unwrap();
        std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    };
    write_cfg(&db1);
    let old = Caretaker::new(BIN, &cfg, &d.join("state-old"));
    let mut states = vec![d.join("state-old")];
    let steps = [
        "recover.inspect",
        "recover.code",
        "recover.files",
        "recover.files.staged",
        "recover.database",
        "database.streaming",
        "recover.database.restored",
        "recover.migrate",
        "recover.start",
    ];
    for i in 0..steps.len() {
        states.push(d.join(format!("state-{i}")));
    }
    let _down = Down(cfg.clone(), states);
    let out = std::process::Command::new(BIN)
        .args(["demo-app", "migrate"])
        .env("DEMO_DATABASE_URL", format!("{server}/{db1}"))
        .current_dir(d.join("release"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // A table large enough that its dump is still streaming when the restore is killed.
    psql(
        &format!("{server}/{db1}"),
        "CREATE TABLE bulk (id int PRIMARY KEY, v text); \
         INSERT INTO bulk SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 200000) g",
    );
    old.expect(&["up"], 0);
    let body = "author=alice&body=written-before-the-backup";
    let post = format!(
        "POST /entries HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(http(port, &post).map(|r| r.0), Some(303));
    old.expect(&["backup", "init"], 0);
    let run = old.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    old.expect(&["down", "--daemon"], 0);
    let want_files = tree_state(&d.join("files"));
    let want_db = db_digest(&format!("{server}/{db1}"));
    assert!(want_db.starts_with("1:") && want_db.contains("/200000:"), "{want_db}");

    for (i, step) in steps.iter().enumerate() {
        eprintln!("--- kill at {step}");
        // A new machine: an empty database, an emptied tree, a new state directory.
        let db = unique_name("reck_new");
        psql(&base, &format!("CREATE DATABASE {db}"));
        std::fs::remove_dir_all(d.join("files")).unwrap();
        std::fs::create_dir_all(d.join("files")).unwrap();
        write_cfg(&db);
        let new = Caretaker::new(BIN, &cfg, &d.join(format!("state-{i}")));
        let out = new.command(&["recover"]).env("CARETAKER_TEST_KILL_AT_STEP", step).output().unwrap();
        assert_eq!(out.status.code(), None, "killed at {step}: {}", stderr_of(&out));
        if *step == "recover.files.staged" {
            // The daemon, on start, finishes the job itself (and leaves starting the app to it).
            let killed = new.json(&["jobs", "--kind", "recover", "-n", "1", "--json"])[0]["id"].clone();
            let _ = new.run(&["up", "--timeout", "5"]);
            let job = caretaker_testkit::wait_until(Duration::from_secs(120), "the daemon's recover to end", || {
                let j = new.json(&["jobs", "--kind", "recover", "-n", "1", "--json"])[0].clone();
                (j["id"] != killed && !matches!(j["outcome"].as_str(), None | Some("running"))).then_some(j)
            });
            assert_eq!(job["outcome"], "succeeded", "{job}");
            assert!(job["figures"]["resumed_job"].is_number(), "{job}");
        } else {
            let out = new.run(&["recover"]);
            assert_eq!(out.status.code(), Some(0), "after a kill at {step}: {}", stderr_of(&out));
            if *step != "recover.inspect" {
                assert!(stderr_of(&out).contains("finishing interrupted recover job"), "{}", stderr_of(&out));
            }
        }
        let url = format!("{server}/{db}");
        assert_eq!(db_digest(&url), want_db, "database after a kill at {step}");
        assert_eq!(tree_state(&d.join("files")), want_files, "files after a kill at {step}");
        let left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("caretaker-old") || n.contains("caretaker-recover"))
            .collect();
        assert!(left.is_empty(), "left behind after a kill at {step}: {left:?}");
        let copies = psql_out(
            &base,
            &format!("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '{db}\\_\\_%'"),
        );
        assert_eq!(copies, "", "database copies left after a kill at {step}");
        let (status, entries) = http(port, "GET /api/entries HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(status, 200);
        assert!(entries.contains("written-before-the-backup"), "{entries}");
        let mode = new.json(&["maintenance", "status", "--json"]).to_string();
        assert!(!mode.contains("maintenance") && !mode.contains("failed"), "{step}: {mode}");
        // The job is done: another recover finds live data again.
        new.expect(&["down", "--daemon"], 0);
        assert_eq!(new.run(&["recover"]).status.code(), Some(5));
        psql(&base, &format!("DROP DATABASE {db} WITH (FORCE)"));
    }
    psql(&base, &format!("DROP DATABASE {db1} WITH (FORCE)"));
}

/// A fresh PostgreSQL server without the app's role or database. With `database.admin_url`,
/// `recover` (and `backup restore --db-only`) inspect through the administrator, create the
/// role and the database and restore; without it, `recover` says plainly that the role may be
/// missing and how to fix it, before anything is restored.
#[test]
fn recover_on_a_fresh_server_creates_the_apps_role_with_admin_url() {
    let Some(base) = require_service("CARETAKER_TEST_PG_URL") else { return };
    let (server, _) = base.rsplit_once('/').unwrap();
    let hostport = server.rsplit_once('@').unwrap().1;
    let role = unique_name("recrole");
    let db = unique_name("recrole_db");
    let pw = "role-pw-4411";
    let app_url = format!("postgres://{role}:{pw}@{hostport}/{db}");
    psql(&base, &format!("CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{pw}'"));
    psql(&base, &format!("CREATE DATABASE {db} OWNER {role}"));
    psql(&app_url, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g");
    let want = psql_out(&app_url, "SELECT count(*) || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM t");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("release")).unwrap();
    std::fs::write(d.join("release/app.txt"), "the release").unwrap();
    std::fs::create_dir_all(d.join("files")).unwrap();
    std::fs::write(d.join("files/a.txt"), "a file").unwrap();
    let cfg = d.join("caretaker.yml");
    let write_cfg = |admin: bool| {
        let admin = if admin { format!("\n  admin_url: \"{base}\"") } else { String::new() };
        std::fs::write(
            &cfg,
            format!(
                "version: 1\napp:\n  name: recrole\n  working_dir: \"{d}/release\"\ndatabase:\n  kind: postgres\n  url: \"{app_url}\"{admin}\nfiles: [ \"{d}/files\" ]\nbackup:\n  repository: \"{d}/repo\"\n  password: \"a long test password\"\n  schedule: daily\n  keep: {{ last: 3 }}\n",
                d = d.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    };
    write_cfg(true);
    let old = Caretaker::new(BIN, &cfg, &d.join("state-old"));
    old.expect(&["backup", "init"], 0);
    let run = old.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    let fresh_server = || {
        psql(&base, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        psql(&base, &format!("DROP ROLE IF EXISTS {role}"));
    };
    fresh_server();
    std::fs::remove_dir_all(d.join("files")).unwrap();

    // Without admin_url: the missing role is named as a possible cause, with the fix.
    write_cfg(false);
    let out = Caretaker::new(BIN, &cfg, &d.join("state-1")).run(&["recover"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains(&format!("the role {role} may not exist yet")) && err.contains("admin_url"), "{err}");
    assert!(!d.join("files").exists(), "nothing restored before the database was inspected");

    // With admin_url: role, database and data come back.
    write_cfg(true);
    let new = Caretaker::new(BIN, &cfg, &d.join("state-2"));
    let out = new.run(&["recover"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(psql_out(&app_url, "SELECT count(*) || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM t"), want);
    assert_eq!(std::fs::read_to_string(d.join("files/a.txt")).unwrap(), "a file");

    // `backup restore --db-only` onto a fresh server, likewise.
    fresh_server();
    let out = new.run(&["backup", "restore", "--db-only"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(psql_out(&app_url, "SELECT count(*) || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM t"), want);
    fresh_server();
}

/// `recover` with the config at another path than on the old machine: the snapshot's config
/// file is not restored to its old path, and the summary says so.
#[test]
fn recover_with_the_config_elsewhere_does_not_restore_the_snapshots_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("release")).unwrap();
    std::fs::write(d.join("release/app.txt"), "the release").unwrap();
    std::fs::create_dir_all(d.join("files")).unwrap();
    std::fs::write(d.join("files/a.txt"), "a file").unwrap();
    let text = format!(
        "version: 1\napp:\n  name: recconf\n  working_dir: \"{d}/release\"\nfiles: [ \"{d}/files\" ]\nbackup:\n  repository: \"{d}/repo\"\n  password: \"a long test password\"\n",
        d = d.display()
    );
    let write = |p: &Path| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &text).unwrap();
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    };
    let old_cfg = d.join("old/caretaker.yml");
    write(&old_cfg);
    let old = Caretaker::new(BIN, &old_cfg, &d.join("state-old"));
    old.expect(&["backup", "init"], 0);
    assert_eq!(old.json(&["backup", "run", "--json"])["outcome"], "succeeded");
    std::fs::remove_dir_all(d.join("old")).unwrap();
    std::fs::remove_dir_all(d.join("files")).unwrap();

    let new_cfg = d.join("elsewhere/caretaker.yml");
    write(&new_cfg);
    let out = Caretaker::new(BIN, &new_cfg, &d.join("state-new")).run(&["recover"]);
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(!old_cfg.exists(), "the snapshot's config file was restored to its old path: {printed}");
    assert!(printed.contains(&format!("{} not restored", old_cfg.display())), "{printed}");
    assert_eq!(std::fs::read_to_string(d.join("files/a.txt")).unwrap(), "a file");
}

/// The database replaced while the app runs under the daemon (`db revert`, `backup restore
/// --db-only --force`): its services held connections to the old database, so they are
/// restarted (new pids), the output says so, and requests succeed right after.
#[test]
fn database_swapped_under_the_running_app_restarts_its_services() {
    let Some(base) = require_service("CARETAKER_TEST_PG_URL") else { return };
    let (server, _) = base.rsplit_once('/').unwrap();
    let db = unique_name("swap");
    psql(&base, &format!("CREATE DATABASE {db}"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    caretaker_demo_app::write_default_release(&d.join("release")).unwrap();
    std::fs::create_dir_all(d.join("files")).unwrap();
    std::fs::write(d.join("files/a.txt"), "a file").unwrap();
    let port = free_port();
    let cfg = d.join("caretaker.yml");
    std::fs::write(&cfg, config(d, &format!("{server}/{db}"), port)).unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ct = Caretaker::new(BIN, &cfg, &d.join("state"));
    let _down = Down(cfg.clone(), vec![d.join("state")]);
    let out = std::process::Command::new(BIN)
        .args(["demo-app", "migrate"])
        .env("DEMO_DATABASE_URL", format!("{server}/{db}"))
        .current_dir(d.join("release"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    ct.expect(&["up"], 0);
    let post = |body: &str| {
        let form = format!("author=a&body={body}");
        let req = format!(
            "POST /entries HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        );
        assert_eq!(http(port, &req).map(|r| r.0), Some(303));
    };
    let web_pid = || ct.json(&["status", "--json"])["services"][0]["pid"].as_u64().unwrap();
    let entries = || {
        let (status, body) = http(port, "GET /api/entries HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(status, 200, "{body}");
        body
    };
    // Web runs again with a new pid, and requests right after see the swapped-in data: with
    // the entry posted before the snapshot, without `missing`.
    let restarted_and_without = |pid: u64, missing: &str| {
        caretaker_testkit::wait_until(Duration::from_secs(30), "web to be running again", || {
            let s = ct.json(&["status", "--json"]);
            (s["services"][0]["state"] == "running").then_some(())
        });
        assert_ne!(web_pid(), pid, "web was restarted");
        for _ in 0..3 {
            let e = entries();
            assert!(e.contains("before-the-snapshot") && !e.contains(missing), "{e}");
        }
    };
    post("before-the-snapshot");
    let snap = ct.json(&["db", "snapshot", "--json"])["name"].as_str().unwrap().to_string();
    post("after-the-snapshot");

    let pid = web_pid();
    let out = ct.expect(&["db", "revert", &snap, "--yes"], 0);
    assert!(out.contains("restarted web"), "{out}");
    restarted_and_without(pid, "after-the-snapshot");

    ct.expect(&["backup", "init"], 0);
    assert_eq!(ct.json(&["backup", "run", "--json"])["outcome"], "succeeded");
    post("after-the-backup");
    let pid = web_pid();
    let out = ct.run(&["backup", "restore", "--db-only", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("restarted web"), "{}", stderr_of(&out));
    restarted_and_without(pid, "after-the-backup");
    ct.expect(&["down", "--daemon"], 0);
    let copies =
        psql_out(&base, &format!("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '{db}%'"));
    for c in copies.split(',') {
        psql(&base, &format!("DROP DATABASE IF EXISTS \"{c}\" WITH (FORCE)"));
    }
}

/// An interrupted recover pins its snapshot: another `--snapshot` is refused, and with
/// `--force` starts over from it, moving the interrupted job's data aside like live data.
#[test]
fn an_interrupted_recover_pins_its_snapshot_until_forced_to_start_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("release")).unwrap();
    std::fs::write(d.join("release/app.txt"), "the release").unwrap();
    std::fs::create_dir_all(d.join("files")).unwrap();
    let cfg = d.join("caretaker.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 1\napp:\n  name: recpin\n  working_dir: \"{d}/release\"\nfiles: [ \"{d}/files\" ]\nbackup:\n  repository: \"{d}/repo\"\n  password: \"a long test password\"\n",
            d = d.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let old = Caretaker::new(BIN, &cfg, &d.join("state-old"));
    old.expect(&["backup", "init"], 0);
    std::fs::write(d.join("files/a.txt"), "first").unwrap();
    let first = old.json(&["backup", "run", "--json"])["figures"]["snapshot_id"].as_str().unwrap().to_string();
    std::fs::write(d.join("files/a.txt"), "second").unwrap();
    let second = old.json(&["backup", "run", "--json"])["figures"]["snapshot_id"].as_str().unwrap().to_string();
    std::fs::remove_dir_all(d.join("files")).unwrap();

    let new = Caretaker::new(BIN, &cfg, &d.join("state-new"));
    let out = new.command(&["recover"]).env("CARETAKER_TEST_KILL_AT_STEP", "recover.files.staged").output().unwrap();
    assert_eq!(out.status.code(), None, "{}", stderr_of(&out));
    // The killed run had staged the newest snapshot; another one is refused...
    let out = new.run(&["recover", "--snapshot", &first[..8]]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("was interrupted") && stderr_of(&out).contains("--force"), "{}", stderr_of(&out));
    // ...and with --force starts over from it.
    let out = new.run(&["recover", "--snapshot", &first[..8], "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("starting over"), "{}", stderr_of(&out));
    assert_eq!(std::fs::read_to_string(d.join("files/a.txt")).unwrap(), "first");
    assert_ne!(first, second);
    assert!(!d.join(".files.caretaker-recover").exists(), "the killed run's staging directory is removed");
}
