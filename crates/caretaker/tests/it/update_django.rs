//! Safe updates of a real Django project (Django, gunicorn and psycopg from PyPI, installed by
//! `scripts/install-deps`), the fixture in `tests/fixtures/django-app`: v1 is deployed, notes
//! are written through the app, v1 → v2 runs a schema and a data migration, v2 → v3 fails
//! partway through a non-atomic migration and is rolled back with every row of every table as
//! before (django_migrations included), v2 → v4 migrates and then fails its health check, and
//! `caretaker rollback` returns to v1's code on v2's (compatible) schema.
//!
//! On PostgreSQL the migration detection is Django's own `manage.py migrate --check`; on SQLite
//! it is the default `paths` rule (`**/migrations`).

use caretaker_testkit::{wait_until, Caretaker};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::update::{commit_tag, drop_pg_database, free_port, git, pg_rows, psql, sqlite_rows};
use crate::BIN;

pub(crate) const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/django-app");
const SECRET_KEY: &str = "django-insecure-test-key-7f3a9c1e5b2d8604";

/// The Python interpreter that has the pinned Django, gunicorn and psycopg importable (its
/// absolute path, so no shell or version manager is needed at run time). `None` with a loud
/// skip when they are missing, a failure under CI (`scripts/install-deps` installs them).
pub(crate) fn django_python() -> Option<String> {
    let out =
        Command::new("python3").args(["-c", "import sys, django, gunicorn, psycopg; print(sys.executable)"]).output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => format!("python3: {e}"),
            };
            if std::env::var_os("CI").is_some() {
                panic!("Django, gunicorn or psycopg is not installed ({why}): scripts/install-deps installs them");
            }
            eprintln!("SKIPPED: Django, gunicorn or psycopg not installed ({why}); run scripts/install-deps");
            None
        }
    }
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() == "__pycache__" {
                continue;
            }
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The fixture's releases as tags of one repository: v1, v2 = v1 + overlay v2, v3 = v2 + v3,
/// and v4 = v2 + v4 (on a branch of its own, so it does not carry v3's migrations).
fn django_repo(repo: &Path) {
    let fixture = Path::new(FIXTURE);
    std::fs::create_dir_all(repo).unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
    for v in ["v1", "v2", "v3"] {
        copy_tree(&fixture.join(v), repo);
        commit_tag(repo, v);
    }
    git(repo, &["checkout", "-q", "-b", "v4-line", "v2"]);
    copy_tree(&fixture.join("v4"), repo);
    commit_tag(repo, "v4");
    git(repo, &["checkout", "-q", "main"]);
}

enum Db {
    Sqlite,
    Postgres { admin: String, url: String, name: String },
}

struct DjangoApp {
    dir: tempfile::TempDir,
    ct: Caretaker,
    port: u16,
    db: Db,
}

impl Drop for DjangoApp {
    fn drop(&mut self) {
        let _ = self.ct.run(&["down", "--daemon"]);
        if let Db::Postgres { admin, name, .. } = &self.db {
            drop_pg_database(admin, name);
        }
    }
}

impl DjangoApp {
    fn postgres() -> Option<DjangoApp> {
        let admin = caretaker_testkit::require_service("CARETAKER_TEST_PG_URL")?;
        let python = django_python()?;
        let name = caretaker_testkit::unique_name("ctdjango");
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
        Some(DjangoApp::new(&python, Db::Postgres { admin, url, name }))
    }

    fn sqlite() -> Option<DjangoApp> {
        Some(DjangoApp::new(&django_python()?, Db::Sqlite))
    }

    fn new(python: &str, db: Db) -> DjangoApp {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        django_repo(&d.join("repo"));
        std::fs::create_dir_all(d.join("data")).unwrap();
        let sqlite_path = d.join("data/notes.sqlite3");
        let (db_url, db_section, detect) = match &db {
            Db::Sqlite => (
                format!("sqlite://{}", sqlite_path.display()),
                format!("  kind: sqlite\n  path: \"{}\"", sqlite_path.display()),
                // The default rule: a file added under a `migrations` directory.
                String::new(),
            ),
            Db::Postgres { url, .. } => (
                url.clone(),
                format!("  kind: postgres\n  url: \"{url}\""),
                format!("  migrations: {{ command: [\"{python}\", \"manage.py\", \"migrate\", \"--check\"] }}\n"),
            ),
        };
        let key_file = d.join("django-secret-key");
        std::fs::write(&key_file, SECRET_KEY).unwrap();
        std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let port = free_port();
        let http_port = free_port();
        let config = d.join("caretaker.yml");
        // gunicorn ≥ 25.1 opens a control socket at one path per user ($HOME/.gunicorn) by
        // default: parallel tests would take it over from each other (docs/updates.md).
        std::fs::write(
            &config,
            format!(
                r#"version: 1
app:
  name: djnotes
  working_dir: "{d}/state/current"
  source: {{ git: "{d}/repo", tag: v1 }}
  build:
    - ["{python}", "manage.py", "check"]
  migrate:
    - ["{python}", "manage.py", "migrate", "--noinput"]
  env:
    DJANGO_SECRET_KEY: {{ secret_file: "{key}" }}
    DATABASE_URL: {{ secret: "{db_url}" }}
    DJANGO_ALLOWED_HOSTS: "127.0.0.1"
services:
  web:
    command: ["{python}", "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--workers", "2", "--no-control-socket", "notes_site.wsgi"]
    health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 30s }}
    stop_timeout: 10s
database:
{db_section}
update:
{detect}  health_timeout: 8s
http: {{ listen: "127.0.0.1:{http_port}" }}
"#,
                d = d.display(),
                key = key_file.display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let ct = Caretaker::new(BIN, &config, &d.join("state"));
        DjangoApp { dir, ct, port, db }
    }

    /// One HTTP/1.0 request to the app (Host 127.0.0.1, which `ALLOWED_HOSTS` accepts).
    fn http(&self, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, String)> {
        http_json(self.port, method, path, body)
    }

    fn version(&self) -> String {
        wait_until(Duration::from_secs(30), "the Django app to answer /version", || {
            self.http("GET", "/version", None).filter(|(s, _)| *s == 200).map(|(_, b)| b.trim().to_string())
        })
    }

    fn healthy(&self) -> bool {
        self.http("GET", "/healthz", None).is_some_and(|(s, _)| s == 200)
    }

    fn notes(&self) -> Value {
        let (status, body) = self.http("GET", "/notes", None).expect("GET /notes");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn add_note(&self, title: &str, body: &str) -> Value {
        let (status, reply) =
            self.http("POST", "/notes", Some(&serde_json::json!({"title": title, "body": body}))).expect("POST /notes");
        assert_eq!(status, 201, "{reply}");
        serde_json::from_str(&reply).unwrap()
    }

    /// Every row of every table, django_migrations included, with the tables' columns.
    fn rows(&self) -> Vec<String> {
        match &self.db {
            Db::Postgres { url, .. } => pg_rows(url),
            Db::Sqlite => sqlite_rows(&self.dir.path().join("data/notes.sqlite3")),
        }
    }

    /// The answer of one SQL query, rows as lines of `|`-separated values.
    fn query(&self, sql: &str) -> Vec<String> {
        match &self.db {
            Db::Postgres { url, .. } => psql(url, sql).lines().map(str::to_string).collect(),
            Db::Sqlite => {
                let c = rusqlite::Connection::open(self.dir.path().join("data/notes.sqlite3")).unwrap();
                let mut st = c.prepare(sql).unwrap();
                let n = st.column_count();
                st.query_map([], |r| {
                    Ok((0..n)
                        .map(|i| match r.get_ref(i).unwrap() {
                            rusqlite::types::ValueRef::Null => String::new(),
                            rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                            rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                            other => format!("{other:?}"),
                        })
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            }
        }
    }

    fn applied_migrations(&self) -> Vec<String> {
        self.query("SELECT name FROM django_migrations WHERE app = 'notes' ORDER BY id")
    }

    fn releases(&self) -> Value {
        self.ct.json(&["releases", "--json"])
    }

    /// `reference=state` of every release (sorted), and the deployment history by reference.
    fn release_states(&self) -> (Vec<String>, Vec<String>) {
        let rel = self.releases();
        let list = rel["releases"].as_array().unwrap();
        let states =
            list.iter().map(|r| format!("{}={}", r["reference"].as_str().unwrap(), r["state"].as_str().unwrap()));
        let reference = |name: &Value| {
            list.iter().find(|r| r["name"] == *name).map(|r| r["reference"].as_str().unwrap().to_string()).unwrap()
        };
        let history = rel["history"].as_array().unwrap().iter().map(reference).collect();
        let mut states: Vec<String> = states.collect();
        states.sort();
        (states, history)
    }

    fn last_update_job(&self) -> Value {
        let jobs = self.ct.json(&["jobs", "--json"]);
        let list = jobs.as_array().cloned().or_else(|| jobs["jobs"].as_array().cloned()).unwrap();
        list.into_iter().find(|j| j["kind"] == "update").unwrap()
    }

    fn mode(&self) -> String {
        self.ct.json(&["maintenance", "status", "--json"]).to_string()
    }

    /// Rewrites the config file with `edit` (before the daemon reads it).
    fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.ct.config).unwrap();
        let new = edit(text.clone());
        assert_ne!(new, text, "the edit changed nothing");
        std::fs::write(&self.ct.config, new).unwrap();
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    /// `reference=state` of every release, sorted by release number.
    fn releases_in_order(&self) -> Vec<String> {
        let rel = self.releases();
        let mut list: Vec<(u64, String)> = rel["releases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let name = r["name"].as_str().unwrap();
                let n = name.split('-').next().unwrap().parse().unwrap();
                (n, format!("{}={}", r["reference"].as_str().unwrap(), r["state"].as_str().unwrap()))
            })
            .collect();
        list.sort();
        list.into_iter().map(|(_, s)| s).collect()
    }

    fn python(&self) -> String {
        django_python().unwrap()
    }

    /// The app's environment for running `manage.py` by hand, as an operator would before
    /// caretaker (the Django settings read it).
    fn manage(&self, dir: &Path, args: &[&str]) {
        let Db::Postgres { url, .. } = &self.db else { panic!("PostgreSQL only") };
        let out = Command::new(self.python())
            .arg("manage.py")
            .args(args)
            .current_dir(dir)
            .env("DJANGO_SECRET_KEY", SECRET_KEY)
            .env("DATABASE_URL", url)
            .env("DJANGO_ALLOWED_HOSTS", "127.0.0.1")
            .output()
            .unwrap();
        assert!(out.status.success(), "manage.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn django_project_on_postgres_updates_migrates_and_rolls_back() {
    if let Some(app) = DjangoApp::postgres() {
        scenario(&app);
    }
}

#[test]
fn django_project_on_sqlite_updates_migrates_and_rolls_back() {
    if let Some(app) = DjangoApp::sqlite() {
        scenario(&app);
    }
}

fn scenario(app: &DjangoApp) {
    // v1: the first deployment runs every initial migration (contenttypes, auth, notes).
    app.ct.expect(&["update"], 0);
    assert_eq!(app.version(), "v1");
    assert!(app.healthy());
    assert_eq!(app.applied_migrations(), ["0001_initial"]);
    // Notes written through the app; "lonely" is the one-word body v3's migration chokes on.
    for (title, body) in [("a", "alpha beta"), ("b", "gamma delta epsilon"), ("c", "lonely"), ("d", "zeta eta")] {
        app.add_note(title, body);
    }
    let v1_notes = app.notes();
    assert_eq!(v1_notes["notes"].as_array().unwrap().len(), 4, "{v1_notes}");
    assert!(v1_notes["notes"][0].get("word_count").is_none(), "{v1_notes}");
    let (states, history) = app.release_states();
    assert_eq!((states, history), (vec!["v1=deployed".to_string()], vec!["v1".to_string()]));

    // v2: a schema migration (a new column) and a data migration filling it.
    let plan = app.ct.expect(&["update", "--to", "v2", "--dry-run"], 0);
    assert!(plan.contains("snapshot") && plan.contains("migrate"), "{plan}");
    app.ct.expect(&["update", "--to", "v2"], 0);
    assert_eq!(app.version(), "v2");
    let job = app.last_update_job();
    assert_eq!(job["outcome"], "succeeded", "{job}");
    assert_eq!(job["figures"]["migrations"], true, "{job}");
    assert!(job["figures"]["snapshot"].is_string(), "the pre-migration snapshot: {job}");
    assert_eq!(app.applied_migrations(), ["0001_initial", "0002_note_word_count", "0003_fill_word_count"]);
    assert_eq!(app.query("SELECT word_count FROM notes_note ORDER BY id"), ["2", "3", "1", "2"]);
    let counts: Vec<i64> =
        app.notes()["notes"].as_array().unwrap().iter().map(|n| n["word_count"].as_i64().unwrap()).collect();
    assert_eq!(counts, [2, 3, 1, 2], "v2 serves the new field");
    // v2's code keeps it up to date for new notes.
    assert_eq!(app.add_note("e", "written by version two")["word_count"], 4);
    let (states, history) = app.release_states();
    assert_eq!(states, ["v1=deployed", "v2=deployed"]);
    assert_eq!(history, ["v1", "v2"]);

    // v3: 0004 adds a column and archives notes (applied and recorded), then the non-atomic
    // 0005 rewrites two notes and fails on the third. The snapshot is reverted: the database
    // is row by row as before, django_migrations included, and v2 serves again.
    let before = app.rows();
    assert!(before.iter().any(|r| r.starts_with("django_migrations:")), "{before:#?}");
    let notes_before = app.notes();
    let out = app.ct.run(&["update", "--to", "v3"]);
    let stderr = crate::stderr_of(&out);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("failed at migrate"), "{stderr}");
    let job = app.last_update_job();
    assert_eq!(job["outcome"], "rolled_back", "{job}");
    assert_eq!(job["figures"]["database_reverted"], true, "{job}");
    // The migration's own traceback is in the job log.
    let log = app.ct.expect(&["jobs", "show", &job["id"].to_string()], 0);
    assert!(log.contains("ValueError: note 3 has a one-word body"), "{log}");
    assert!(log.contains("Applying notes.0004_note_archived... OK"), "0004 was applied before 0005 failed: {log}");
    assert_eq!(app.rows(), before, "the database is exactly as before the update");
    assert_eq!(app.version(), "v2");
    assert!(app.healthy());
    assert_eq!(app.notes(), notes_before);
    let mode = app.mode();
    assert!(!mode.contains("maintenance") && !mode.contains("failed"), "{mode}");

    // v4: migrates (a new column), then never becomes healthy: rolled back likewise.
    let out = app.ct.run(&["update", "--to", "v4"]);
    let stderr = crate::stderr_of(&out);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("failed at health_gate"), "{stderr}");
    assert_eq!(app.rows(), before, "the database is exactly as before v4");
    assert_eq!(app.version(), "v2");
    assert!(app.healthy());
    let (states, history) = app.release_states();
    assert_eq!(states, ["v1=deployed", "v2=deployed", "v3=failed", "v4=failed"]);
    assert_eq!(history, ["v1", "v2"]);

    // rollback: back to v1's code, and only the code (docs/updates.md): the database keeps
    // v2's schema and data — django_migrations still lists 0002 and 0003, word_count stays.
    // v2's migration is backwards compatible (a nullable column), so v1 runs on it: it reads
    // every note and writes new ones, whose word_count v1 does not know and leaves NULL.
    // A release whose migrations are not compatible would need the snapshot kept for v2
    // (`caretaker releases` names it) reverted by hand with `caretaker db revert`.
    app.ct.expect(&["rollback"], 0);
    assert_eq!(app.version(), "v1");
    assert!(app.healthy());
    assert_eq!(app.rows(), before, "rollback does not touch the database");
    assert_eq!(app.applied_migrations(), ["0001_initial", "0002_note_word_count", "0003_fill_word_count"]);
    let notes = app.notes();
    assert_eq!(notes["notes"].as_array().unwrap().len(), 5, "{notes}");
    assert!(notes["notes"][0].get("word_count").is_none(), "v1's view: {notes}");
    let id = app.add_note("f", "written by version one")["id"].to_string();
    assert_eq!(app.query(&format!("SELECT word_count FROM notes_note WHERE id = {id}")), [""]);
    let (states, history) = app.release_states();
    assert_eq!(states, ["v1=deployed", "v2=rolled_back", "v3=failed", "v4=failed"]);
    assert_eq!(history, ["v1"]);
    let rel = app.releases();
    let v2 = rel["releases"].as_array().unwrap().iter().find(|r| r["reference"] == "v2").unwrap();
    assert!(v2["snapshot"].is_string(), "the snapshot taken before v2 is named: {rel}");
    let text = app.ct.expect(&["releases"], 0);
    assert!(text.contains("v2") && text.contains("rolled_back"), "{text}");

    // Django's SECRET_KEY went to the app through its environment only.
    assert_secret_absent(&app.dir.path().join("state"));
}

/// No file under `dir` holds the Django secret key.
fn assert_secret_absent(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            assert_secret_absent(&e.path());
        } else if e.file_type().unwrap().is_file() {
            let bytes = std::fs::read(e.path()).unwrap();
            assert!(
                !bytes.windows(SECRET_KEY.len()).any(|w| w == SECRET_KEY.as_bytes()),
                "the secret key is in {}",
                e.path().display()
            );
        }
    }
}

/// Issue 15.2: with `app.working_dir` outside the release pointer (what `caretaker init` used to
/// write), an update migrated the database for v2 and reported success while v1's code kept
/// serving. `config check` says so, with the line to write, and `update` refuses before it
/// touches anything.
#[test]
fn django_update_refuses_a_working_dir_outside_the_release_pointer() {
    let Some(app) = DjangoApp::postgres() else { return };
    let d = app.dir.path();
    let live = d.join("srv/djnotes/current");
    std::fs::create_dir_all(&live).unwrap();
    copy_tree(&Path::new(FIXTURE).join("v1"), &live);
    app.edit_config(|t| {
        t.replace(
            &format!("working_dir: \"{}/state/current\"", d.display()),
            &format!("working_dir: \"{}\"", live.display()),
        )
    });
    let out = app.ct.run(&["config", "check"]);
    let stderr = crate::stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let line = format!("working_dir: \"{}/state/current\"", d.display());
    assert!(stderr.contains("`app.working_dir` is") && stderr.contains(&line), "{stderr}");
    assert!(stderr.contains(":4:3"), "points at app.working_dir: {stderr}");
    let out = app.ct.run(&["update"]);
    let stderr = crate::stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&line), "{stderr}");
    // Nothing ran: no release, no migration.
    assert!(app.releases()["releases"].as_array().unwrap().is_empty());
    assert!(app.query("SELECT to_regclass('django_migrations') IS NULL") == ["t"], "nothing was migrated");
}

/// Issue 15.2: a service that passes its health check on code outside the new release (here its
/// command `cd`s into v1's release directory) fails the update, which is rolled back — code and
/// database — instead of reporting success.
#[test]
fn django_update_rolls_back_when_the_services_run_another_release() {
    let Some(app) = DjangoApp::postgres() else { return };
    let d = app.dir.path();
    let pinned = d.join("pinned");
    // First the link follows `current`, so v1 deploys normally.
    std::os::unix::fs::symlink(app.state().join("current"), &pinned).unwrap();
    let python = app.python();
    app.edit_config(|t| {
        let start = t.find("    command: [").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        let argv: Vec<String> = serde_json::from_str(&t[start + "    command: ".len()..end]).unwrap();
        assert_eq!(argv[0], python);
        let line = format!("    command: \"cd {} && exec {}\"", pinned.display(), argv.join(" "));
        format!("{}{}{}", &t[..start], line, &t[end..])
    });
    app.ct.expect(&["update"], 0);
    assert_eq!(app.version(), "v1");
    app.add_note("a", "alpha beta");
    // Now the service is pinned to v1's directory, whatever `current` says.
    let v1_dir = std::fs::canonicalize(app.state().join("current")).unwrap();
    std::fs::remove_file(&pinned).unwrap();
    std::os::unix::fs::symlink(&v1_dir, &pinned).unwrap();
    let before = app.rows();
    let out = app.ct.run(&["update", "--to", "v2"]);
    let stderr = crate::stderr_of(&out);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("failed at health_gate") && stderr.contains("do not run the new release"), "{stderr}");
    assert!(stderr.contains(&format!("web in {}", v1_dir.display())), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("updated to"), "no success reported");
    assert_eq!(app.rows(), before, "v2's migrations were reverted");
    assert_eq!(app.version(), "v1");
    assert_eq!(app.releases_in_order(), ["v1=deployed", "v2=failed"]);
}

/// Issue 15.3: the first deployment onto a database that already holds the app's tables and data
/// (an existing app adopted) takes a snapshot before migrating; a failing migration is reverted,
/// and the message says what happened instead of "nothing was changed".
#[test]
fn django_first_deployment_onto_an_existing_database_is_snapshotted_and_reverted() {
    let Some(app) = DjangoApp::postgres() else { return };
    // The app as it ran before caretaker: v1's schema, migrated by hand, with notes.
    let before_caretaker = app.dir.path().join("before-caretaker");
    std::fs::create_dir_all(&before_caretaker).unwrap();
    copy_tree(&Path::new(FIXTURE).join("v1"), &before_caretaker);
    app.manage(&before_caretaker, &["migrate", "--noinput"]);
    for (i, body) in ["alpha beta", "gamma delta", "lonely", "eta theta"].iter().enumerate() {
        app.query(&format!("INSERT INTO notes_note (title, body, created_at) VALUES ('n{i}', '{body}', now())"));
    }
    let before = app.rows();
    assert!(before.iter().any(|r| r.contains("lonely")), "{before:#?}");

    let plan = app.ct.expect(&["update", "--to", "v3", "--dry-run"], 0);
    assert!(plan.contains("snapshot") && plan.contains("already holds"), "{plan}");
    // v3 migrates 0002..0004 and fails partway through 0005: a first deployment, so nothing to
    // roll back to, but the database is reverted.
    let out = app.ct.run(&["update", "--to", "v3"]);
    let stderr = crate::stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed at migrate"), "{stderr}");
    assert!(!stderr.contains("nothing was changed"), "{stderr}");
    assert!(
        stderr.contains("the database was reverted to snapshot") && stderr.contains("nothing is deployed"),
        "{stderr}"
    );
    assert_eq!(app.rows(), before, "the database is exactly as before the first deployment");
    let job = app.last_update_job();
    assert_eq!(job["outcome"], "failed", "{job}");
    assert_eq!(job["figures"]["database_reverted"], true, "{job}");
    assert!(app.releases()["current"].is_null());

    // A good first deployment keeps its snapshot, named in the job and the release.
    app.ct.expect(&["update", "--to", "v2"], 0);
    assert_eq!(app.version(), "v2");
    let job = app.last_update_job();
    assert!(job["figures"]["snapshot"].is_string(), "{job}");
    assert_eq!(app.query("SELECT word_count FROM notes_note ORDER BY id"), ["2", "2", "1", "2"]);
}

/// Issue 15.8 (update part) and 15.12: maintenance mode that the operator switched on stays on
/// through successful, failed and rolled-back updates and `caretaker rollback`; and failed
/// releases are pruned before good ones, so `keep_releases` never pushes out a release that
/// `rollback` walks back to.
#[test]
fn django_updates_keep_the_operators_maintenance_and_prune_failed_releases_first() {
    let Some(app) = DjangoApp::postgres() else { return };
    app.edit_config(|t| t.replace("  health_timeout: 8s\n", "  health_timeout: 8s\n  keep_releases: 3\n"));
    app.ct.expect(&["update"], 0);
    app.add_note("a", "alpha beta");
    app.add_note("c", "lonely");
    app.ct.expect(&["update", "--to", "v2"], 0);
    app.ct.expect(&["maintenance", "on", "--message", "moving the server"], 0);
    let operators = app.mode();
    assert!(operators.contains("moving the server"), "{operators}");
    assert!(operators.contains("\"by\":\"operator\""), "{operators}");
    // Exactly the mode the operator set: message, author and time.
    let mode_is_the_operators = |after: &str| assert_eq!(app.mode(), operators, "after {after}");

    // Three failed updates, each rolled back: maintenance stays on.
    for to in ["v3", "v4", "v3"] {
        let out = app.ct.run(&["update", "--to", to]);
        assert_eq!(out.status.code(), Some(7), "{to}: {}", crate::stderr_of(&out));
        mode_is_the_operators(to);
    }
    assert_eq!(app.version(), "v2");
    // A good update (v2 again, forced): maintenance stays on, and says so.
    let out = app.ct.expect(&["update", "--to", "v2", "--force"], 0);
    assert!(out.contains("stays on"), "{out}");
    mode_is_the_operators("update --to v2");
    // keep_releases 3: the three failed releases went, both older good ones stayed.
    assert_eq!(app.releases_in_order(), ["v1=deployed", "v2=deployed", "v2=deployed"]);
    let present = app.releases()["releases"].as_array().unwrap().iter().all(|r| r["present"] == true);
    assert!(present, "{}", app.releases());

    // `rollback` twice reaches v1; maintenance stays on throughout.
    app.ct.expect(&["rollback"], 0);
    mode_is_the_operators("rollback");
    app.ct.expect(&["rollback"], 0);
    mode_is_the_operators("the second rollback");
    assert_eq!(app.version(), "v1");
    app.ct.expect(&["maintenance", "off"], 0);
    assert!(app.healthy());
}

/// One HTTP/1.0 request with an optional JSON body to 127.0.0.1:`port` (Host 127.0.0.1);
/// the status and the body of the reply, `None` when it could not be had.
pub(crate) fn http_json(port: u16, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default()))
}
