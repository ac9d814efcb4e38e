//! `caretaker recover` of a compose app on a machine without its project directory: the
//! release (compose files, Dockerfile) comes from git at the snapshot's commit, its images are
//! built as `update` builds them, the database's service is started in its container before
//! the dump is restored and the migration runs in a one-off container.

use crate::compose::{docker, init_demo_repo, post_entry, postgres_service, ComposeApp};
use crate::stderr_of;
use crate::supervisor::{free_port, http_get};
use crate::update::{commit_tag, commit_v2_with_a_migration_and_v3};
use caretaker_testkit::wait_until;
use std::time::Duration;

#[test]
fn compose_recover_on_a_machine_without_the_project_directory_builds_the_release_from_git() {
    let Some(app) = ComposeApp::new() else { return };
    let Some(pg_image) = app.build_postgres_image() else { return };
    let port = free_port();
    let password = "pw-compose-recover-5521";
    let d = app.dir.path().to_path_buf();
    let repo = d.join("src");
    init_demo_repo(&app, &repo);
    let db = postgres_service(&pg_image);
    std::fs::write(
        repo.join("docker-compose.yml"),
        format!(
            r#"version: "3.7"
services:
{db}
  web:
    build: .
    command: ["/caretaker", "demo-app", "serve", "--listen", "0.0.0.0:8000"]
    environment:
      DEMO_DATABASE_URL: "postgres://app:${{DB_PASSWORD}}@db:5432/app"
      DEMO_FILES_DIR: /tmp
    depends_on: [db]
    ports: ["127.0.0.1:{port}:8000"]
    restart: unless-stopped
volumes:
  pgdata:
"#
        ),
    )
    .unwrap();
    commit_tag(&repo, "v1");
    commit_v2_with_a_migration_and_v3(&repo);
    app.config_with(
        &format!(
            r#"  working_dir: "{d}/state/current"
  source: {{ git: "{d}/src", branch: main }}
  migrate: [["/caretaker", "demo-app", "migrate"]]
  env: {{ DB_PASSWORD: {{ secret: "{password}" }} }}"#,
            d = d.display()
        ),
        &format!(
            r#"compose:
  app_service: web
  services:
    web: {{ health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 60s }}, crash_loop: {{ restarts: 30, within: 60s }} }}
database:
  kind: postgres
  url: "postgres://app:{password}@db:5432/app"
  compose_service: db
update: {{ health_timeout: 90s }}
backup:
  repository: "{repo}"
  password: "a long enough test password""#,
            repo = app.path("repo").display()
        ),
    );
    let version = || {
        wait_until(Duration::from_secs(60), "the app to answer /version", || {
            http_get(port, "/version").filter(|(s, _)| *s == 200).map(|(_, b)| b.trim().to_string())
        })
    };

    // The first deployment on an empty machine: the database's service must start before
    // the migration's one-off container runs.
    let out = app.ct.run(&["update", "--to", "v1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    app.ct.expect(&["update", "--to", "v2"], 0);
    assert_eq!(version(), "v2");
    post_entry(port, "written-at-v2");
    app.ct.expect(&["backup", "init"], 0);
    let run = app.ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");

    // A new machine: no containers, no volumes, no release images, no state directory.
    app.ct.expect(&["down", "--daemon"], 0);
    let label = format!("label=com.docker.compose.project={}", app.project);
    let ids = docker(&["ps", "-aq", "--filter", &label]);
    let ids: Vec<&str> = ids.lines().collect();
    if !ids.is_empty() {
        assert!(std::process::Command::new("docker").args(["rm", "-f"]).args(&ids).output().unwrap().status.success());
    }
    docker(&["volume", "rm", &format!("{}_pgdata", app.project)]);
    let images = docker(&[
        "image",
        "ls",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        &format!("reference=caretaker/{}/*", app.project),
    ]);
    for i in images.lines() {
        docker(&["image", "rm", "-f", i]);
    }
    std::fs::remove_dir_all(d.join("state")).unwrap();

    let out = app.ct.run(&["recover", "--timeout", "180"]);
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}\n{printed}", stderr_of(&out));
    assert!(printed.contains("built release") && printed.contains("the snapshot's commit"), "{printed}");
    assert_eq!(version(), "v2");
    let (_, entries) = http_get(port, "/api/entries").unwrap();
    assert!(entries.contains("written-at-v2"), "{entries}");
    let image = docker(&["inspect", "--format", "{{.Config.Image}}", &format!("{}_web_1", app.project)]);
    assert!(image.starts_with(&format!("caretaker/{}/web:", app.project)), "a release image runs: {image}");
}
