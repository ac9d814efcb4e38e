//! Safe updates with the demo app in a local git repository with tags: v1 → v2 migrates,
//! v3 (a migration that changes data, then one that fails) and v4 (migrates, then fails its
//! health check) are rolled back with the database exactly as before, `rollback` returns to the
//! previous release, and an update SIGKILLed at any step is finished by `update --resume`.

use caretaker_testkit::{wait_until, Caretaker};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::supervisor::http_get;
use crate::BIN;

pub(crate) fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub(crate) fn commit_tag(repo: &Path, tag: &str) {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", tag]);
    git(repo, &["tag", tag]);
}

/// On top of a committed v1 of the demo app: tag v2 adds a migration (a `tags` column), tag v3
/// is newer code without one.
pub(crate) fn commit_v2_with_a_migration_and_v3(repo: &Path) {
    std::fs::write(repo.join("migrations/0003_entry_tags.sql"), "ALTER TABLE entries ADD COLUMN tags TEXT;\n").unwrap();
    std::fs::write(repo.join("VERSION"), "v2\n").unwrap();
    commit_tag(repo, "v2");
    std::fs::write(repo.join("VERSION"), "v3\n").unwrap();
    commit_tag(repo, "v3");
}

/// The demo app's releases as tags v1..v4 of one repository.
fn demo_repo(repo: &Path) {
    std::fs::create_dir_all(repo).unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
    caretaker_demo_app::write_release(repo, "v1").unwrap();
    commit_tag(repo, "v1");
    // v2: a new column, filled by the migration.
    std::fs::write(
        repo.join("migrations/0003_entry_tags.sql"),
        "ALTER TABLE entries ADD COLUMN tags TEXT;\nUPDATE entries SET tags = 'migrated';\n",
    )
    .unwrap();
    std::fs::write(repo.join("VERSION"), "v2\n").unwrap();
    commit_tag(repo, "v2");
    // v3: one migration that changes data (and stays applied), then one that fails.
    std::fs::write(repo.join("migrations/0004_rewrite.sql"), "UPDATE entries SET body = 'clobbered';\n").unwrap();
    std::fs::write(repo.join("migrations/0005_broken.sql"), "SELECT * FROM no_such_table;\n").unwrap();
    std::fs::write(repo.join("VERSION"), "v3\n").unwrap();
    commit_tag(repo, "v3");
    // v4: migrates fine, then fails its health check.
    std::fs::remove_file(repo.join("migrations/0004_rewrite.sql")).unwrap();
    std::fs::remove_file(repo.join("migrations/0005_broken.sql")).unwrap();
    std::fs::write(
        repo.join("migrations/0004_v4.sql"),
        "ALTER TABLE entries ADD COLUMN v4 TEXT;\nUPDATE entries SET author = 'v4';\n",
    )
    .unwrap();
    std::fs::write(repo.join("HEALTH_FAIL"), "").unwrap();
    std::fs::write(repo.join("VERSION"), "v4\n").unwrap();
    commit_tag(repo, "v4");
    // v5: a plain good release (no migrations) after v2.
    std::fs::remove_file(repo.join("migrations/0004_v4.sql")).unwrap();
    std::fs::remove_file(repo.join("HEALTH_FAIL")).unwrap();
    std::fs::write(repo.join("VERSION"), "v5\n").unwrap();
    commit_tag(repo, "v5");
}

enum Db {
    Sqlite,
    /// A fresh database `url` on the test server reachable through `admin`.
    Postgres {
        admin: String,
        url: String,
        name: String,
    },
}

struct App {
    dir: tempfile::TempDir,
    ct: Caretaker,
    port: u16,
    db: Db,
}

pub(crate) fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql]).output().unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.ct.run(&["down", "--daemon"]);
        if let Db::Postgres { admin, name, .. } = &self.db {
            drop_pg_database(admin, name);
        }
    }
}

/// Drops a test database and every copy caretaker made of it (`<name>__snap_...` snapshots,
/// `<name>__old_...` failed states kept aside by a revert).
pub(crate) fn drop_pg_database(admin: &str, name: &str) {
    let Ok(out) = Command::new("psql")
        .args([
            admin,
            "-X",
            "-At",
            "-c",
            &format!("SELECT datname FROM pg_database WHERE datname LIKE '{name}\\_\\_%'"),
        ])
        .output()
    else {
        return;
    };
    let copies = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>();
    for db in std::iter::once(name.to_string()).chain(copies) {
        let _ = Command::new("psql")
            .args([admin, "-c", &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")])
            .output();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl App {
    fn new() -> App {
        App::with(Db::Sqlite, "")
    }

    fn postgres() -> Option<App> {
        let admin = caretaker_testkit::require_service("CARETAKER_TEST_PG_URL")?;
        let name = caretaker_testkit::unique_name("ctupd");
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
        Some(App::with(Db::Postgres { admin, url, name }, ""))
    }

    /// `update_extra`: more lines for the `update:` section (indented by two spaces).
    fn with(db: Db, update_extra: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (db_url, db_section) = match &db {
            Db::Sqlite => (
                format!("sqlite://{}/data/demo.db", d.display()),
                format!("  kind: sqlite\n  path: \"{}/data/demo.db\"", d.display()),
            ),
            Db::Postgres { url, .. } => (url.clone(), format!("  kind: postgres\n  url: \"{url}\"")),
        };
        demo_repo(&d.join("repo"));
        std::fs::create_dir_all(d.join("data/files")).unwrap();
        let port = free_port();
        // The daemon's own HTTP listener: a port of this test's own (tests run in parallel).
        let http_port = free_port();
        let config = d.join("caretaker.yml");
        std::fs::write(
            &config,
            format!(
                r#"version: 1
app:
  name: updtest
  working_dir: "{d}/state/current"
  source: {{ git: "{d}/repo", tag: v1 }}
  build:
    - "test -f VERSION"
  migrate:
    - ["{BIN}", "demo-app", "migrate"]
  env:
    DEMO_DATABASE_URL: "{db_url}"
    DEMO_FILES_DIR: "{d}/data/files"
    DEMO_LISTEN: "127.0.0.1:{port}"
services:
  web:
    command: ["{BIN}", "demo-app", "serve"]
    health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 20s }}
    stop_timeout: 5s
database:
{db_section}
update:
  health_timeout: 6s
  keep_releases: 3
{update_extra}
http: {{ listen: "127.0.0.1:{http_port}" }}
"#,
                d = d.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let ct = Caretaker::new(BIN, &config, &d.join("state"));
        App { dir, ct, port, db }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("data/demo.db")
    }

    fn version(&self) -> String {
        wait_until(Duration::from_secs(20), "the app to answer /version", || {
            http_get(self.port, "/version").filter(|(s, _)| *s == 200).map(|(_, b)| b.trim().to_string())
        })
    }

    fn healthy(&self) -> bool {
        http_get(self.port, "/healthz").is_some_and(|(s, _)| s == 200)
    }

    fn add_entries(&self) {
        if let Db::Postgres { url, .. } = &self.db {
            for i in 0..5 {
                psql(
                    url,
                    &format!("INSERT INTO entries (author, body, created_at) VALUES ('author{i}', 'body {i}', '2026-01-01T00:00:00Z')"),
                );
            }
            return;
        }
        let c = rusqlite::Connection::open(self.db()).unwrap();
        for i in 0..5 {
            c.execute(
                "INSERT INTO entries (author, body, created_at) VALUES (?1, ?2, '2026-01-01T00:00:00Z')",
                (format!("author{i}"), format!("body {i}")),
            )
            .unwrap();
        }
    }

    /// Every row of every table, as text, in a stable order.
    fn rows(&self) -> Vec<String> {
        match &self.db {
            Db::Postgres { url, .. } => pg_rows(url),
            Db::Sqlite => sqlite_rows(&self.db()),
        }
    }

    fn releases(&self) -> serde_json::Value {
        self.ct.json(&["releases", "--json"])
    }

    fn last_update_job(&self) -> serde_json::Value {
        let jobs = self.ct.json(&["jobs", "--json"]);
        let list = jobs.as_array().cloned().or_else(|| jobs["jobs"].as_array().cloned()).unwrap();
        list.into_iter().find(|j| j["kind"] == "update").unwrap()
    }

    fn mode(&self) -> String {
        self.ct.json(&["maintenance", "status", "--json"]).to_string()
    }
}

fn show(v: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
        other => format!("{other:?}"),
    }
}

/// Every table of the `public` schema with its columns, then every row, as text in a stable
/// order: two calls compare equal only if schema and data are the same.
pub(crate) fn pg_rows(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in psql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").lines() {
        let cols = psql(
            url,
            &format!(
                "SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', ' ORDER BY ordinal_position) \
                 FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{t}'"
            ),
        );
        out.push(format!("table {t} ({})", cols.trim()));
        for r in psql(url, &format!("SELECT row_to_json(x)::text FROM \"{t}\" x ORDER BY 1")).lines() {
            out.push(format!("{t}: {r}"));
        }
    }
    out
}

/// The same for an SQLite database file.
pub(crate) fn sqlite_rows(path: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    tables.retain(|t| t != "sqlite_sequence");
    let mut out = Vec::new();
    for t in tables {
        let mut st = c.prepare(&format!("SELECT * FROM \"{t}\" ORDER BY rowid")).unwrap();
        let n = st.column_count();
        let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
        out.push(format!("table {t} ({})", names.join(", ")));
        let rows = st
            .query_map([], |r| {
                let vals: Vec<String> = (0..n).map(|i| show(r.get_ref(i).unwrap())).collect::<Vec<_>>();
                Ok(vals.join(" | "))
            })
            .unwrap();
        for r in rows {
            out.push(format!("{t}: {}", r.unwrap()));
        }
    }
    out
}

fn deploy_v2(app: &App) {
    app.ct.expect(&["update"], 0);
    assert_eq!(app.version(), "v1");
    app.add_entries();
    let plan = app.ct.expect(&["update", "--to", "v2", "--dry-run"], 0);
    assert!(plan.contains("migrations: needed") && plan.contains("snapshot"), "{plan}");
    app.ct.expect(&["update", "--to", "v2"], 0);
    assert_eq!(app.version(), "v2");
}

#[test]
fn updates_migrate_and_failures_roll_back_code_and_data() {
    scenario(&App::new());
}

#[test]
fn updates_and_rollbacks_on_postgres() {
    if let Some(app) = App::postgres() {
        scenario(&app);
    }
}

fn scenario(app: &App) {
    deploy_v2(app);
    let rows = app.rows();
    assert!(rows.iter().any(|r| r.contains("\"migrated\"")), "v2's data migration ran: {rows:#?}");
    assert_eq!(app.ct.expect(&["update", "--to", "v2"], 0).trim(), {
        let s = app.ct.expect(&["update", "--to", "v2", "--dry-run"], 0);
        s.trim().to_string()
    });

    // v3: the failing migration is rolled back, data row by row as before, v2 serving.
    let out = app.ct.run(&["update", "--to", "v3"]);
    assert_eq!(out.status.code(), Some(7), "{}", crate::stderr_of(&out));
    assert!(crate::stderr_of(&out).contains("failed at migrate"), "{}", crate::stderr_of(&out));
    assert_eq!(app.rows(), rows, "the database is exactly as before the update");
    assert_eq!(app.version(), "v2");
    assert!(app.healthy());
    let job = app.last_update_job();
    assert_eq!(job["outcome"], "rolled_back", "{job}");
    assert!(!app.mode().contains("maintenance") && !app.mode().contains("failed"), "{}", app.mode());

    // v4: migrates, then fails its health check: rolled back as well.
    let out = app.ct.run(&["update", "--to", "v4"]);
    assert_eq!(out.status.code(), Some(7), "{}", crate::stderr_of(&out));
    assert!(crate::stderr_of(&out).contains("failed at health_gate"), "{}", crate::stderr_of(&out));
    assert_eq!(app.rows(), rows, "the database is exactly as before v4");
    assert_eq!(app.version(), "v2");
    assert!(app.healthy());
    // The failed states of the two rolled-back updates are not kept as copies.
    let copies = app.ct.json(&["db", "snapshots", "--json"]);
    assert!(!copies.to_string().contains("kept-aside"), "{copies}");

    let rel = app.releases();
    let states: Vec<String> =
        rel["releases"].as_array().unwrap().iter().map(|r| format!("{}={}", r["reference"], r["state"])).collect();
    assert!(states.contains(&"\"v3\"=\"failed\"".to_string()), "{states:?}");
    assert_eq!(rel["history"].as_array().unwrap().len(), 2, "{rel}");

    // rollback: back to v1's code (the database keeps v2's compatible schema).
    app.ct.expect(&["rollback"], 0);
    assert_eq!(app.version(), "v1");
    assert!(app.healthy());
    let rel = app.releases();
    assert_eq!(rel["history"].as_array().unwrap().len(), 1, "{rel}");
    assert_eq!(app.rows(), rows);
}

#[test]
fn detection_by_command_and_scheduled_updates_skip_maintenance() {
    let app = App::with(
        Db::Sqlite,
        &format!("  migrations: {{ command: [\"{BIN}\", \"demo-app\", \"migrate\", \"--check\"] }}"),
    );
    app.ct.expect(&["update"], 0);
    app.add_entries();
    let plan = app.ct.expect(&["update", "--to", "v2", "--dry-run"], 0);
    assert!(plan.contains("detect_migrations") && plan.contains("snapshot"), "{plan}");
    app.ct.expect(&["update", "--to", "v2"], 0);
    let job = app.last_update_job();
    assert_eq!(job["figures"]["migrations"], true, "{job}");
    assert!(job["figures"]["snapshot"].is_string(), "{job}");
    // v5 adds no migration: the command says so, no snapshot.
    app.ct.expect(&["update", "--to", "v5"], 0);
    let job = app.last_update_job();
    assert_eq!(job["figures"]["migrations"], false, "{job}");
    assert!(job["figures"]["snapshot"].is_null(), "{job}");
    assert_eq!(app.version(), "v5");
    // A scheduled update is skipped in maintenance mode.
    app.ct.expect(&["maintenance", "on"], 0);
    let out = app.ct.expect(&["update", "--to", "v2", "--scheduled", "--force"], 0);
    assert!(out.contains("skipped"), "{out}");
    app.ct.expect(&["maintenance", "off"], 0);
    assert_eq!(app.version(), "v5");
    let text = app.ct.expect(&["releases"], 0);
    assert!(text.contains("RELEASE") && text.contains("v5") && text.contains("deployed"), "{text}");
}

#[test]
fn a_failed_first_deployment_leaves_nothing_current() {
    let app = App::new();
    let out = app.ct.run(&["update", "--to", "v3"]);
    assert_eq!(out.status.code(), Some(1), "{}", crate::stderr_of(&out));
    let rel = app.releases();
    assert!(rel["current"].is_null(), "{rel}");
    assert_eq!(app.last_update_job()["outcome"], "failed");
    app.ct.expect(&["update", "--to", "v2"], 0);
    assert_eq!(app.version(), "v2");
}

/// SIGKILL caretaker right after it persisted its progress for `step`, then `update --resume`.
fn kill_and_resume(step: &str) {
    let app = App::new();
    deploy_v2(&app);
    let rows = app.rows();
    // v3 fails (rollback path), v5 succeeds (forward path); pick by where the step is.
    let (to, forward) = match step {
        s if s.starts_with("rollback.") || s == "snapshot" => ("v3", false),
        _ => ("v5", true),
    };
    let out = app.ct.command(&["update", "--to", to]).env("CARETAKER_TEST_KILL_AT_STEP", step).output().unwrap();
    assert_eq!(out.status.code(), None, "killed at {step}: {}", crate::stderr_of(&out));
    // A second update refuses until resumed.
    let refused = app.ct.run(&["update", "--to", "v2"]);
    assert_eq!(refused.status.code(), Some(4), "{}", crate::stderr_of(&refused));
    let out = app.ct.run(&["update", "--resume"]);
    let code = out.status.code();
    let health_passed = matches!(step, "maintenance_off" | "finish");
    if forward && health_passed {
        assert_eq!(code, Some(0), "{}", crate::stderr_of(&out));
        assert_eq!(app.version(), "v5");
    } else if forward && matches!(step, "fetch" | "build" | "maintenance_on") {
        // Nothing served had changed: resume only tidies up.
        assert!(matches!(code, Some(1) | Some(7)), "{}", crate::stderr_of(&out));
        assert_eq!(app.version(), "v2");
    } else {
        assert_eq!(code, Some(7), "step {step}: {}", crate::stderr_of(&out));
        assert_eq!(app.version(), "v2");
    }
    assert!(app.healthy(), "serving after resume at {step}");
    if !(forward && health_passed) {
        assert_eq!(app.rows(), rows, "database as before after resume at {step}");
    }
    let mode = app.mode();
    assert!(!mode.contains("maintenance") && !mode.contains("failed"), "{step}: {mode}");
    // And a new update works afterwards.
    app.ct.run(&["update", "--resume"]);
    assert!(app.ct.json(&["releases", "--json"])["current"].is_string());
}

#[test]
fn killed_at_each_forward_step_then_resumed() {
    for step in [
        "fetch",
        "build",
        "maintenance_on",
        "stop",
        "snapshot",
        "switch",
        "migrate",
        "start",
        "health_gate",
        "maintenance_off",
        "finish",
    ] {
        eprintln!("--- kill at {step}");
        kill_and_resume(step);
    }
}

#[test]
fn killed_during_rollback_then_resumed() {
    for step in [
        "rollback.stop_new",
        "rollback.revert_database",
        "rollback.switch_back",
        "rollback.start_old",
        "rollback.verify_old",
        "rollback.maintenance_off",
    ] {
        eprintln!("--- kill at {step}");
        kill_and_resume(step);
    }
}
