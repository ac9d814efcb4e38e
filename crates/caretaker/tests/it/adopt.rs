//! docs/adopt.md, followed to the letter on the Django fixture with PostgreSQL: the test reads
//! the page, takes its config (paths, ports and the repository replaced by this test's) and
//! runs the commands of its `sh` blocks in order. Lines that are not `caretaker` commands are
//! emulated: the old deployment (gunicorn from a checkout, started before the walkthrough with
//! notes written through it) is stopped at `systemctl disable --now notes-gunicorn`, `systemctl
//! enable --now caretaker-notes` runs the `ExecStart` of the unit `install-systemd` wrote, and
//! `git push` commits v2. A line the test does not know fails it, so the page cannot drift
//! from what works.

use caretaker_testkit::{wait_until, Caretaker};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use crate::update::{commit_tag, drop_pg_database, free_port, git, pg_rows, psql};
use crate::update_django::{copy_tree, django_python, http_json, FIXTURE};
use crate::BIN;

const DOC: &str = include_str!("../../../../docs/adopt.md");
const SECRET_KEY: &str = "django-insecure-adopt-test-4c1d9e7a02b5f863";

/// The fenced blocks of the page with the given info string, in order.
fn blocks(info: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in DOC.lines() {
        match &mut current {
            None if line == format!("```{info}") => current = Some(Vec::new()),
            Some(b) if line == "```" => {
                out.push(std::mem::take(b));
                current = None;
            }
            Some(b) => b.push(line.to_string()),
            None => {}
        }
    }
    out
}

struct Adoption {
    dir: tempfile::TempDir,
    ct: Caretaker,
    admin: String,
    db_name: String,
    db_url: String,
    python: String,
    port: u16,
    old_app: Option<Child>,
    daemon: Option<Child>,
}

impl Drop for Adoption {
    fn drop(&mut self) {
        let _ = self.ct.run(&["down", "--daemon"]);
        for child in [self.old_app.take(), self.daemon.take()].into_iter().flatten() {
            stop(child);
        }
        drop_pg_database(&self.admin, &self.db_name);
    }
}

fn stop(mut child: Child) {
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Adoption {
    fn d(&self) -> &Path {
        self.dir.path()
    }

    /// One HTTP/1.0 request to the site.
    fn http(&self, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, String)> {
        http_json(self.port, method, path, body)
    }

    fn version(&self) -> String {
        wait_until(Duration::from_secs(60), "the site to answer /version", || {
            self.http("GET", "/version", None).filter(|(s, _)| *s == 200).map(|(_, b)| b.trim().to_string())
        })
    }

    fn note_titles(&self) -> Vec<String> {
        let (status, body) = self.http("GET", "/notes", None).expect("GET /notes");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["notes"].as_array().unwrap().iter().map(|n| n["title"].as_str().unwrap().to_string()).collect()
    }

    /// The old deployment: v1 checked out in /srv/notes/app, migrated by hand and served by
    /// gunicorn (what `notes-gunicorn` ran), with notes written through the site.
    fn start_old_deployment(&mut self) {
        let checkout = self.d().join("srv/notes/app");
        std::fs::create_dir_all(&checkout).unwrap();
        copy_tree(&Path::new(FIXTURE).join("v1"), &checkout);
        let env = [
            ("DJANGO_SECRET_KEY", SECRET_KEY.to_string()),
            ("DATABASE_URL", self.db_url.clone()),
            ("DJANGO_ALLOWED_HOSTS", "127.0.0.1".to_string()),
        ];
        let out = Command::new(&self.python)
            .args(["manage.py", "migrate", "--noinput"])
            .current_dir(&checkout)
            .envs(env.clone())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let child = Command::new(&self.python)
            .args(["-m", "gunicorn", "--bind", &format!("127.0.0.1:{}", self.port), "--workers", "1"])
            .args(["--no-control-socket", "notes_site.wsgi"])
            .current_dir(&checkout)
            .envs(env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.old_app = Some(child);
        assert_eq!(self.version(), "v1");
        for (title, body) in [("before", "written before caretaker"), ("lonely", "one")] {
            let (status, reply) = self
                .http("POST", "/notes", Some(&serde_json::json!({"title": title, "body": body})))
                .expect("POST /notes");
            assert_eq!(status, 201, "{reply}");
        }
        std::fs::create_dir_all(self.d().join("srv/notes/media")).unwrap();
        std::fs::write(self.d().join("srv/notes/media/upload.txt"), "an uploaded file\n").unwrap();
    }

    /// The page's config with this test's paths, ports and repository.
    fn config_from_the_page(&self, http_port: u16) -> String {
        let yaml = blocks("yaml");
        assert_eq!(yaml.len(), 1, "docs/adopt.md has one config");
        let mut text = yaml[0].join("\n") + "\n";
        let d = self.d().display().to_string();
        for (from, to) in [
            ("https://git.example.org/notes.git", format!("{d}/repo")),
            ("/var/lib/caretaker/notes", format!("{d}/state")),
            ("/etc/caretaker/notes", format!("{d}/etc/notes")),
            ("/srv/notes/venv/bin/python", self.python.clone()),
            ("/srv/notes/media", format!("{d}/srv/notes/media")),
            ("/var/backups/caretaker/notes", format!("{d}/backups")),
            ("127.0.0.1:8001", format!("127.0.0.1:{}", self.port)),
            ("127.0.0.1:9720", format!("127.0.0.1:{http_port}")),
        ] {
            assert!(text.contains(from), "the page's config no longer mentions {from}");
            text = text.replace(from, &to);
        }
        text
    }

    fn put_secrets_in_place(&self) {
        let dir = self.d().join("etc/notes");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, value) in [
            ("secret_key", SECRET_KEY),
            ("database_url", self.db_url.as_str()),
            ("backup_password", "correct horse battery staple 42"),
        ] {
            std::fs::write(dir.join(name), value).unwrap();
            std::fs::set_permissions(dir.join(name), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        }
    }

    fn last_update_job(&self) -> Value {
        let jobs = self.ct.json(&["jobs", "--json"]);
        let list = jobs.as_array().cloned().or_else(|| jobs["jobs"].as_array().cloned()).unwrap();
        list.into_iter().find(|j| j["kind"] == "update").unwrap()
    }
}

#[test]
fn the_adoption_walkthrough_works_as_written() {
    let Some(admin) = caretaker_testkit::require_service("CARETAKER_TEST_PG_URL") else { return };
    let Some(python) = django_python() else { return };
    let db_name = caretaker_testkit::unique_name("ctadopt");
    psql(&admin, &format!("CREATE DATABASE {db_name}"));
    let db_url = format!("{}/{db_name}", &admin[..admin.rfind('/').unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::create_dir_all(d.join("etc/caretaker")).unwrap();
    let ct = Caretaker::new(BIN, &d.join("etc/caretaker/notes.yml"), &d.join("state"));
    let mut a = Adoption { dir, ct, admin, db_name, db_url, python, port: free_port(), old_app: None, daemon: None };

    // The app's repository: v1 on main (v2 comes with `git push`).
    let repo = d.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    copy_tree(&Path::new(FIXTURE).join("v1"), &repo);
    commit_tag(&repo, "v1");
    a.start_old_deployment();
    let before = pg_rows(&a.db_url);

    let unit = d.join("caretaker-notes.service");
    let http_port = free_port();
    let mut updates = 0;
    let mut ran = Vec::new();
    for line in blocks("sh").into_iter().flatten() {
        let line = line.split(" #").next().unwrap().trim().to_string();
        if line.is_empty() {
            continue;
        }
        eprintln!("--- {line}");
        ran.push(line.clone());
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["export", var] => {
                assert_eq!(*var, "CARETAKER_CONFIG=/etc/caretaker/notes.yml", "the test passes --config")
            }
            ["caretaker", "init", rest @ ..] => {
                let mut args = vec!["init"];
                args.extend(rest);
                a.ct.expect(&args, 0);
                let written = std::fs::read_to_string(&a.ct.config).unwrap();
                assert!(written.contains("working_dir: /var/lib/caretaker/notes/current"), "{written}");
                // "Edit it until it describes the app", and "put the secrets in place".
                std::fs::write(&a.ct.config, a.config_from_the_page(http_port)).unwrap();
                a.put_secrets_in_place();
            }
            ["caretaker", "install-systemd"] => {
                a.ct.expect(&["install-systemd", "--output", unit.to_str().unwrap()], 0);
            }
            ["caretaker", "update"] => {
                let out = a.ct.expect(&["update"], 0);
                updates += 1;
                let job = a.last_update_job();
                assert_eq!(job["outcome"], "succeeded", "{job}");
                if updates == 1 {
                    // The branch is at the version the old deployment ran: Django finds no
                    // migration due, so the planned snapshot is skipped, and the data is as it was.
                    assert_eq!(job["figures"]["migrations"], false, "{job}");
                    assert_eq!(a.version(), "v1");
                    assert_eq!(pg_rows(&a.db_url), before, "the first deployment left the data as it was");
                } else {
                    // v2's migrations, behind a snapshot.
                    assert!(job["figures"]["snapshot"].is_string(), "{job}");
                    assert_eq!(a.version(), "v2", "{out}");
                }
                assert_eq!(a.note_titles(), ["before", "lonely"]);
            }
            ["caretaker", "update", "--dry-run"] => {
                let plan = a.ct.expect(&["update", "--dry-run"], 0);
                if updates == 0 {
                    assert!(plan.contains("snapshot") && plan.contains("already holds"), "{plan}");
                }
            }
            ["caretaker", args @ ..] => {
                a.ct.expect(args, 0);
            }
            ["systemctl", "disable", "--now", "notes-gunicorn"] => {
                stop(a.old_app.take().expect("the old deployment runs"));
                wait_until(Duration::from_secs(20), "the old deployment to let go of its port", || {
                    a.http("GET", "/version", None).is_none().then_some(())
                });
                assert_eq!(pg_rows(&a.db_url), before, "the old deployment wrote nothing more");
            }
            ["systemctl", "daemon-reload"] => {}
            ["systemctl", "enable", "--now", "caretaker-notes"] => {
                let text = std::fs::read_to_string(&unit).unwrap();
                let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
                let argv: Vec<&str> = exec.split_whitespace().collect();
                let child = Command::new(argv[0])
                    .args(&argv[1..])
                    .env_remove("CARETAKER_CONFIG")
                    .env_remove("CARETAKER_STATE_DIR")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                a.daemon = Some(child);
                assert_eq!(a.version(), "v1");
            }
            ["git", "push", "origin", "main"] => {
                copy_tree(&Path::new(FIXTURE).join("v2"), &repo);
                commit_tag(&repo, "v2");
            }
            _ => panic!("docs/adopt.md has a step this test does not know how to follow: {line}"),
        }
    }
    // The page's order: config → backup → first update → daemon → later updates.
    let pos = |l: &str| ran.iter().position(|r| r == l).unwrap_or_else(|| panic!("the page lost `{l}`: {ran:#?}"));
    assert!(pos("caretaker config check") < pos("caretaker backup init"));
    assert!(pos("caretaker backup run") < pos("caretaker update"));
    assert!(pos("caretaker update") < pos("caretaker install-systemd"));
    assert_eq!(updates, 2, "{ran:#?}");
    // v2's migrations ran on the data from before caretaker.
    assert_eq!(psql(&a.db_url, "SELECT word_count FROM notes_note ORDER BY id").trim(), "3\n1");
    // The backup of step 2 holds the data as the old deployment left it.
    let list = a.ct.expect(&["backup", "list"], 0);
    assert!(!list.trim().is_empty(), "{list}");
}
