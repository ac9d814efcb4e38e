//! `caretaker recover` of a compose app on a machine without its project directory: the
//! release (compose files, Dockerfile) comes from git at the snapshot's commit, its images are
//! built as `update` builds them, the database's service is started in its container before
//! the dump is restored, a named volume (`compose.volumes`, known only from the release's
//! compose file) is restored with its files' contents, owners and modes, and the migration runs
//! in a one-off container.

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
    volumes: ["media:/media"]
    restart: unless-stopped
volumes:
  pgdata:
  media:
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
  volumes: [media]
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
    // Files of several owners and modes in the volume, copied in with their ownership.
    let media = format!("{}_media", app.project);
    let src = d.join("media-src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let files: [(&str, &[u8], u32, u32); 3] =
        [("a.txt", b"one", 0o640, 1234), ("sub/b.bin", &[7u8; 70_000], 0o600, 70), ("sub/c", b"", 0o755, 0)];
    for (name, data, mode, uid) in files {
        let f = src.join(name);
        std::fs::write(&f, data).unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&f, Some(uid), Some(uid + 1)).unwrap();
    }
    std::os::unix::fs::chown(src.join("sub"), Some(1234), Some(1235)).unwrap();
    docker_cp_volume(&app, &media, &format!("{}/.", src.display()), "/v", true);
    let entries_before = http_get(port, "/api/entries").unwrap().1;
    let media_before = volume_state(&app, &media, &d.join("media-before"));
    assert_eq!(media_before.len(), 4, "{media_before:?}");
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
    docker(&["volume", "rm", &media]);
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
    assert_eq!(entries, entries_before, "the database's rows are identical");
    assert_eq!(volume_state(&app, &media, &d.join("media-after")), media_before, "the volume is identical");
    let image = docker(&["inspect", "--format", "{{.Config.Image}}", &format!("{}_web_1", app.project)]);
    assert!(image.starts_with(&format!("caretaker/{}/web:", app.project)), "a release image runs: {image}");
}

/// Copies between this machine and volume `volume` (mounted at `/v` in a never-started helper
/// container), with owners (`docker cp -a`); `into`: from `from` on this machine to `to`.
fn docker_cp_volume(app: &crate::compose::ComposeApp, volume: &str, from: &str, to: &str, into: bool) {
    let name = format!("{}-cp", app.project);
    let _ = std::process::Command::new("docker").args(["rm", "-f", &name]).output();
    docker(&["create", "--name", &name, "-v", &format!("{volume}:/v"), &app.base]);
    let (a, b) =
        if into { (from.to_string(), format!("{name}:{to}")) } else { (format!("{name}:{from}"), to.to_string()) };
    let out = std::process::Command::new("docker").args(["cp", "-a", &a, &b]).output().unwrap();
    let _ = std::process::Command::new("docker").args(["rm", "-f", &name]).output();
    assert!(out.status.success(), "docker cp {a} {b}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every entry of a volume: relative path → (mode, uid, gid, contents), read out with owners.
fn volume_state(
    app: &crate::compose::ComposeApp,
    volume: &str,
    scratch: &std::path::Path,
) -> std::collections::BTreeMap<String, (u32, u32, u32, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(scratch).unwrap();
    docker_cp_volume(app, volume, "/v/.", &scratch.display().to_string(), false);
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![scratch.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let data = if m.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            let rel = p.strip_prefix(scratch).unwrap().display().to_string();
            out.insert(rel, (m.mode(), m.uid(), m.gid(), data));
        }
    }
    out
}
