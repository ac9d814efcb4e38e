//! Compose apps in production (issue 17): honest errors before the first deployment, names in
//! the config checked against the compose file, env files kept outside git, a non-critical
//! worker, and docs/compose.md's walkthrough for a cookiecutter-django / TopoBank-style
//! project followed step by step.

use crate::compose::{docker, http_raw, post_entry, ComposeApp};
use crate::supervisor::{free_port, http_get};
use crate::update::commit_tag;
use crate::BIN;
use caretaker_testkit::{require_service, wait_until, Caretaker};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// A compose config whose project directory is the (not yet deployed) current release.
fn undeployed_app(dir: &Path) -> Caretaker {
    let config = dir.join("caretaker.yml");
    std::fs::write(
        &config,
        format!(
            "version: 1\napp:\n  name: ctundeployed\n  working_dir: \"{d}/state/current\"\n  source: {{ git: \"{d}/repo\", tag: v1 }}\nhttp: {{ listen: \"127.0.0.1:{p}\" }}\ncompose:\n  app_service: web\n  services:\n    web: {{ critical: false }}\n",
            d = dir.display(),
            p = free_port()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    Caretaker::new(BIN, &config, &dir.join("state"))
}

#[test]
fn up_before_the_first_deployment_says_no_release_is_deployed_not_install_docker() {
    if require_service("CARETAKER_TEST_DOCKER").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ct = undeployed_app(dir.path());
    let out = ct.run(&["up", "--timeout", "30"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    let current = dir.path().join("state/current");
    assert!(
        err.contains(&format!(
            "project directory {} does not exist: no release deployed yet — run `caretaker update`",
            current.display()
        )),
        "{err}"
    );
    assert!(!err.contains("not installed") && !err.contains("install docker"), "{err}");
    // `config check` says what it could not check, and why.
    let out = ct.run(&["config", "check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("project directory {} does not exist", current.display())), "{err}");
    assert!(err.contains("were not checked against the compose file"), "{err}");
}

#[test]
fn config_check_finds_service_volume_and_database_names_the_compose_file_does_not_have() {
    let Some(app) = ComposeApp::new() else { return };
    app.write(
        "docker-compose.yml",
        &format!(
            "version: \"3.7\"\nservices:\n  django: {{ image: {b} }}\n  postgres: {{ image: {b} }}\n  celeryworker: {{ image: {b} }}\nvolumes:\n  production_media: {{}}\n",
            b = app.base
        ),
    );
    let body = |service: &str, db: &str, volume: &str| {
        format!(
            "compose:\n  app_service: django\n  services:\n    {service}: {{ critical: false }}\n  volumes: [{volume}]\ndatabase: {{ kind: postgres, url: \"postgres://app:pw@postgres/app\", compose_service: {db} }}\n"
        )
    };
    app.config(&body("celeryworker", "postgres", "production_media"));
    let out = app.ct.expect(&["config", "check"], 0);
    assert!(out.contains("ok"), "{out}");
    let json = app.ct.json(&["config", "check", "--json"]);
    assert_eq!(json["compose"]["checked"], true, "{json}");

    app.config(&body("celery_worker", "db", "media"));
    let out = app.ct.run(&["config", "check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    for expected in [
        "`compose.services.celery_worker`: the compose file has no service `celery_worker`",
        "`database.compose_service`: the compose file has no service `db`",
        "`compose.volumes`: the compose file has no named volume `media` (it has: production_media)",
    ] {
        assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
    }
    assert!(err.contains("celeryworker"), "the file's services are listed: {err}");
    let out = app.ct.run(&["config", "check", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false, "{json}");
    assert_eq!(json["compose"]["problems"].as_array().unwrap().len(), 3, "{json}");
}

/// The cookiecutter-django layout of docs/compose.md's walkthrough: `production.yml` with
/// `env_file: ./.envs/.production/...` (kept out of git), Django, PostgreSQL and a celery
/// worker. The demo app plays Django and the worker; the worker crash-loops when its env
/// file says `CELERY_BROKER_URL=broken`.
fn topobank_repo(app: &ComposeApp, repo: &Path, pg_image: &str, port: u16) {
    crate::compose::init_demo_repo(app, repo);
    // As TopoBank's: the templates are in git, the filled-in files are not.
    std::fs::write(repo.join(".gitignore"), ".envs/.production/.django\n.envs/.production/.postgres\n").unwrap();
    std::fs::write(
        repo.join("production.yml"),
        format!(
            r#"version: "3.7"
volumes:
  production_postgres_data: {{}}
  production_media: {{}}
services:
  django:
    build: .
    command: ["/caretaker", "demo-app", "serve", "--listen", "0.0.0.0:5000"]
    env_file: [./.envs/.production/.django]
    volumes: ["production_media:/app/media"]
    ports: ["127.0.0.1:{port}:5000"]
    depends_on: [postgres]
    restart: unless-stopped
  postgres:
    image: {pg_image}
    env_file: [./.envs/.production/.postgres]
    volumes: ["production_postgres_data:/var/lib/postgresql"]
    restart: unless-stopped
  celeryworker:
    build: .
    command: ["/bin/sh", "-c", "if [ \"$$CELERY_BROKER_URL\" = broken ]; then echo 'celery: cannot reach the broker' >&2; exit 1; fi; exec /caretaker demo-app serve --listen 127.0.0.1:5001"]
    env_file: [./.envs/.production/.django]
    depends_on: [postgres]
    restart: unless-stopped
"#
        ),
    )
    .unwrap();
    // A developer's checkout has the env files too; git must not take them.
    std::fs::create_dir_all(repo.join(".envs/.production")).unwrap();
    std::fs::write(repo.join(".envs/.production/.django.template"), "DEMO_DATABASE_URL=postgres://...\n").unwrap();
    std::fs::write(repo.join(".envs/.production/.django"), "DEMO_DATABASE_URL=postgres://dev@localhost/dev\n").unwrap();
    commit_tag(repo, "v1");
    let tracked = std::process::Command::new("git").arg("-C").arg(repo).arg("ls-files").output().unwrap();
    let tracked = String::from_utf8_lossy(&tracked.stdout);
    assert!(tracked.lines().any(|l| l == ".envs/.production/.django.template"), "{tracked}");
    assert!(!tracked.lines().any(|l| l == ".envs/.production/.django"), "{tracked}");
}

/// Writes the server's env file `name` (mode 0600) in `dir/.envs/.production`.
fn write_env(dir: &Path, name: &str, text: &str) {
    let envs = dir.join(".envs/.production");
    std::fs::create_dir_all(&envs).unwrap();
    let p = envs.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn docs_walkthrough_moves_a_cookiecutter_django_project_with_env_files_outside_git_and_a_non_critical_worker() {
    let Some(app) = ComposeApp::new() else { return };
    let Some(pg_image) = app.build_postgres_image() else { return };
    let (port, door) = (free_port(), free_port());
    let d = app.dir.path().to_path_buf();
    topobank_repo(&app, &d.join("repo"), &pg_image, port);
    let password = "walkthrough-db-secret";
    let db_url = format!("postgres://app:{password}@postgres:5432/app");

    // Step 1: the env files go next to caretaker.yml on the server, mode 0600, out of git.
    write_env(
        &d,
        ".django",
        &format!("DEMO_DATABASE_URL={db_url}\nDEMO_FILES_DIR=/app/media\nCELERY_BROKER_URL=redis://redis:6379/0\n"),
    );
    write_env(&d, ".postgres", &format!("POSTGRES_USER=app\nPOSTGRES_PASSWORD={password}\n"));

    // Step 2: caretaker.yml.
    app.config_with(
        &format!(
            r#"  working_dir: "{d}/state/current"
  source: {{ git: "{d}/repo", tag: v1 }}
  migrate: [["/caretaker", "demo-app", "migrate"]]"#,
            d = d.display()
        ),
        &format!(
            r#"front_door: {{ listen: "127.0.0.1:{door}", upstream: "127.0.0.1:{port}" }}
compose:
  files: [production.yml]
  app_service: django
  outside_files: [.envs/.production/.django, .envs/.production/.postgres]
  services:
    django: {{ health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 30s }} }}
    celeryworker: {{ critical: false, crash_loop: {{ restarts: 2, within: 60s }} }}
  volumes: [production_media]
database: {{ kind: postgres, url: "{db_url}", compose_service: postgres }}
update: {{ health_timeout: 60s }}
alerts: {{ rules: {{ service_down_for: 1s }} }}"#
        ),
    );

    // Step 3: config check, before anything is deployed.
    let out = app.ct.run(&["config", "check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("does not exist") && err.contains("were not checked"), "{err}");

    // Step 4: the first deployment.
    let out = app.ct.run(&["update", "--to", "v1"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let current = d.join("state/current");
    let link = std::fs::read_link(current.join(".envs/.production/.django")).unwrap();
    assert_eq!(link, d.join(".envs/.production/.django"), "the release links the env files kept outside it");
    assert!(current.join(".envs/.production/.django.template").is_file(), "the release's own files stay");
    let mode = std::fs::metadata(current.join(".envs/.production/.django")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the env file keeps its mode");
    let (code, _) = wait_until(Duration::from_secs(60), "the app through the front door", || {
        http_get(door, "/healthz").filter(|(s, _)| *s == 200)
    });
    assert_eq!(code, 200);
    post_entry(port, "stored-in-postgres");
    let (_, entries) = http_raw(door, "GET /api/entries HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    assert!(entries.contains("stored-in-postgres"), "{entries}");
    // The env file reached the containers, and no image holds it.
    let env = docker(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &format!("{}_django_1", app.project),
    ]);
    assert!(env.contains("CELERY_BROKER_URL=redis://redis:6379/0"), "{env}");
    let job = app.ct.json(&["jobs", "--kind", "update", "-n", "1", "--json"]);
    let log = app.ct.expect(&["jobs", "show", &job[0]["id"].to_string()], 0);
    assert!(log.contains("migrate: compose run --rm django"), "{log}");
    assert!(!log.contains(password), "no secret in the job log");
    // Each line is `<time> <text>`; no text is a bare number (issue 17: a stray `1`).
    let bare_number = |t: &str| !t.trim().is_empty() && t.trim().chars().all(|c| c.is_ascii_digit());
    let stray: Vec<&str> = log.lines().filter(|l| l.split_once(' ').is_some_and(|(_, t)| bare_number(t))).collect();
    assert!(stray.is_empty(), "a stray line in the job log: {stray:?}\n{log}");

    // Step 5: config check again, now against the release's compose file.
    let json = app.ct.json(&["config", "check", "--json"]);
    assert_eq!((json["valid"].as_bool(), json["compose"]["checked"].as_bool()), (Some(true), Some(true)), "{json}");

    // Step 6: the worker breaks (its broker is gone): alerts, no service mode.
    write_env(
        &d,
        ".django",
        &format!("DEMO_DATABASE_URL={db_url}\nDEMO_FILES_DIR=/app/media\nCELERY_BROKER_URL=broken\n"),
    );
    // `restart` waits for the worker and reports its crash loop (exit 1).
    let out = app.ct.run(&["restart", "celeryworker", "--timeout", "60"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("service celeryworker is failed: crash loop") && err.contains("cannot reach the broker"),
        "{err}"
    );
    wait_until(Duration::from_secs(60), "the worker to fail", || {
        (app.service("celeryworker")["state"] == "failed").then_some(())
    });
    let st = app.status();
    assert!(st["service_mode"].is_null(), "{st}");
    assert_eq!(app.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");
    assert_eq!(http_get(door, "/healthz").map(|r| r.0), Some(200), "the site keeps serving");
    let log = std::fs::read_to_string(app.path("state/logs/celeryworker.log")).unwrap();
    assert!(log.contains("cannot reach the broker"), "{log}");
    crate::supervisor::wait_for_firing_alert(&app.ct, "service_down", "celeryworker");

    // Step 7: fixed; `restart` recreates the failed worker with the env file as it is now.
    write_env(
        &d,
        ".django",
        &format!("DEMO_DATABASE_URL={db_url}\nDEMO_FILES_DIR=/app/media\nCELERY_BROKER_URL=redis://redis:6379/0\n"),
    );
    app.ct.expect(&["restart", "celeryworker", "--timeout", "60"], 0);
    wait_until(Duration::from_secs(60), "the worker to run", || {
        (app.service("celeryworker")["state"] == "running").then_some(())
    });
}

#[test]
fn a_file_of_the_release_is_not_hidden_by_an_outside_file() {
    if require_service("CARETAKER_TEST_DOCKER").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("project/.envs")).unwrap();
    std::fs::write(d.join("project/.envs/.django"), "FROM_THE_REPOSITORY=1\n").unwrap();
    std::fs::write(
        d.join("project/docker-compose.yml"),
        "version: \"3.7\"\nservices:\n  web: { image: busybox, env_file: [.envs/.django] }\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("outside")).unwrap();
    write_env(&d.join("outside"), ".django", "X=1\n");
    let config = d.join("caretaker.yml");
    let text = |from: &str| {
        format!(
            "version: 1\napp: {{ name: ctoutside }}\nhttp: {{ listen: \"127.0.0.1:{p}\" }}\ncompose:\n  project_dir: project\n  outside_files: [{{ path: .envs, from: {from} }}]\n",
            p = free_port()
        )
    };
    std::fs::write(&config, text("outside/.envs/.production")).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ct = Caretaker::new(BIN, &config, &d.join("state"));
    let out = ct.run(&["config", "check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("exists in the project directory") && err.contains("keep `.envs` out of the repository"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("project/.envs/.django")).unwrap(),
        "FROM_THE_REPOSITORY=1\n",
        "nothing replaced"
    );
    // A missing outside file is named with its config key.
    std::fs::remove_dir_all(d.join("project/.envs")).unwrap();
    std::fs::write(&config, text("nowhere")).unwrap();
    let out = ct.run(&["config", "check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!("{} (config key `compose.outside_files`) does not exist", d.join("nowhere").display())),
        "{err}"
    );
}
