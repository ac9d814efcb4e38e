//! `compose.images: pull` against a real registry: the images are built here, pushed to the
//! private registry of `scripts/services` (Debian's docker-registry on loopback) and removed
//! locally, so caretaker's update really pulls them. Each release is pinned to the pulled image
//! under caretaker's own tag, so a rollback runs the previous image without the registry.

use crate::compose::{app_version, docker, running_image, ComposeApp, TestDb};
use crate::supervisor::free_port;
use crate::update::{commit_tag, git, psql};
use caretaker_testkit::require_service;
use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The images this test pushed, removed locally when it ends (the registry's storage goes
/// with the services directory).
struct Published {
    remote: String,
}

impl Published {
    /// Builds the demo app at `version` with `extra` migrations on the test's base image,
    /// pushes it as `<remote>:<version>` and removes it locally: only a pull brings it back.
    fn push(&self, app: &ComposeApp, version: &str, extra: &[(&str, &str)]) {
        let ctx = app.path(&format!("image-{version}"));
        caretaker_demo_app::write_release(&ctx, version).unwrap();
        for (name, sql) in extra {
            std::fs::write(ctx.join("migrations").join(name), sql).unwrap();
        }
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {}\nCOPY . /app\nENV DEMO_RELEASE_DIR=/app\nENTRYPOINT []\n", app.base),
        )
        .unwrap();
        let reference = format!("{}:{version}", self.remote);
        run(&["build", "-q", "-t", &reference, ctx.to_str().unwrap()]);
        run(&["push", &reference]);
        run(&["image", "rm", &reference]);
        assert!(!self.present(version), "{reference} is only in the registry now");
    }

    fn present(&self, version: &str) -> bool {
        !docker(&["image", "ls", "-q", &format!("{}:{version}", self.remote)]).is_empty()
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        let all = docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
        let mine: Vec<&str> = all.lines().filter(|r| r.starts_with(&format!("{}:", self.remote))).collect();
        if !mine.is_empty() {
            let _ = Command::new("docker").args(["image", "rm", "-f"]).args(&mine).output();
        }
    }
}

/// The compose project in git: each tag names the image of its version (`image: <remote>:vN`).
fn pull_repo(repo: &Path, remote: &str, port: u16) {
    std::fs::create_dir_all(repo).unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
    for version in ["v1", "v2", "v3"] {
        std::fs::write(
            repo.join("docker-compose.yml"),
            format!(
                r#"version: "3.7"
services:
  web:
    image: {remote}:{version}
    command: ["/caretaker", "demo-app", "serve", "--listen", "127.0.0.1:{port}"]
    network_mode: host
    environment:
      DEMO_DATABASE_URL: "${{DATABASE_URL}}"
      DEMO_FILES_DIR: /tmp
    restart: unless-stopped
"#
            ),
        )
        .unwrap();
        commit_tag(repo, version);
    }
}

#[test]
fn compose_update_pulls_images_from_a_registry_pins_them_and_rolls_back_without_it() {
    let Some(registry) = require_service("CARETAKER_TEST_DOCKER_REGISTRY") else { return };
    let Some(db) = TestDb::new() else { return };
    let Some(app) = ComposeApp::new() else { return };
    let published = Published { remote: format!("{registry}/{}/web", app.project) };
    let port = free_port();
    let d = app.dir.path().to_path_buf();
    published.push(&app, "v1", &[]);
    published.push(
        &app,
        "v2",
        &[(
            "0003_entry_tags.sql",
            "ALTER TABLE entries ADD COLUMN tags TEXT;\nUPDATE entries SET tags = 'migrated';\n",
        )],
    );
    published.push(
        &app,
        "v3",
        &[
            (
                "0003_entry_tags.sql",
                "ALTER TABLE entries ADD COLUMN tags TEXT;\nUPDATE entries SET tags = 'migrated';\n",
            ),
            ("0004_rewrite.sql", "UPDATE entries SET body = 'clobbered';\n"),
            ("0005_broken.sql", "SELECT * FROM no_such_table;\n"),
        ],
    );
    pull_repo(&d.join("repo"), &published.remote, port);
    // The migrations come with the images, not with the git tree: the new image's own
    // `migrate --check` tells whether a snapshot is needed.
    app.config_with(
        &format!(
            r#"  working_dir: "{d}/state/current"
  source: {{ git: "{d}/repo", tag: v1 }}
  migrate: [["/caretaker", "demo-app", "migrate"]]
  env: {{ DATABASE_URL: "{url}" }}"#,
            d = d.display(),
            url = db.url
        ),
        &format!(
            r#"compose:
  images: pull
  app_service: web
  services:
    web: {{ health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 20s }} }}
database: {{ kind: postgres, url: "{url}" }}
update:
  health_timeout: 30s
  migrations: {{ command: ["/caretaker", "demo-app", "migrate", "--check"] }}"#,
            url = db.url
        ),
    );
    let version = || app_version(port);

    // v1: pulled, pinned under the release's tag, migrated in a one-off container, serving.
    let out = app.ct.run(&["update", "--to", "v1"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(version(), "v1");
    assert!(published.present("v1"), "the update pulled v1");
    let v1_image = running_image(&app);
    assert!(v1_image.starts_with(&format!("caretaker/{}/web:1-", app.project)), "{v1_image}");
    let pins = std::fs::read_to_string(d.join("state/current/.caretaker-images.yml")).unwrap();
    assert!(pins.contains(&v1_image), "{pins}");
    for i in 0..5 {
        psql(
            &db.url,
            &format!("INSERT INTO entries (author, body, created_at) VALUES ('a{i}', 'b{i}', '2026-01-01T00:00:00Z')"),
        );
    }

    // v2: the image's migration runs after a snapshot; v1's pinned image stays.
    app.ct.expect(&["update", "--to", "v2"], 0);
    assert_eq!(version(), "v2");
    let v2_image = running_image(&app);
    assert!(v2_image.starts_with(&format!("caretaker/{}/web:2-", app.project)), "{v2_image}");
    assert_eq!(psql(&db.url, "SELECT DISTINCT tags FROM entries").trim(), "migrated");
    let job = app.ct.json(&["jobs", "--kind", "update", "-n", "1", "--json"]);
    let log = app.ct.expect(&["jobs", "show", &job[0]["id"].to_string()], 0);
    assert!(log.contains(&format!("{}:v2 → {v2_image}", published.remote)), "{log}");
    let rows = psql(&db.url, "SELECT id, author, body, tags FROM entries ORDER BY id");

    // v3's image has a data-changing migration and a broken one: rolled back, data as before.
    let out = app.ct.run(&["update", "--to", "v3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "rolled back: {err}");
    assert!(err.contains("failed at migrate"), "{err}");
    assert_eq!(version(), "v2");
    assert_eq!(running_image(&app), v2_image);
    assert_eq!(psql(&db.url, "SELECT id, author, body, tags FROM entries ORDER BY id"), rows);

    // Without the registry's names (as after `docker image prune` or on a registry outage),
    // `rollback` runs v1's pinned image: nothing is pulled.
    run(&["image", "rm", &format!("{}:v1", published.remote), &format!("{}:v2", published.remote)]);
    app.ct.expect(&["rollback"], 0);
    assert_eq!(version(), "v1");
    assert_eq!(running_image(&app), v1_image);
    assert!(!published.present("v1"), "the rollback pulled nothing");
    assert_eq!(app.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");
}
