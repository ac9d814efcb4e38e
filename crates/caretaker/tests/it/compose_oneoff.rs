//! Commands inside a compose app's containers: one-off containers (`jobs:` commands,
//! migrations) that outlive their time limit — killing the compose client does not stop the
//! container, so caretaker removes it — and `command` health probes, which `caretaker check`
//! runs inside the service's container like the daemon does.

use crate::compose::{docker, write_demo_build, ComposeApp};
use crate::supervisor::free_port;
use caretaker_testkit::wait_until;

#[test]
fn a_one_off_container_past_its_time_limit_is_removed_and_check_runs_command_probes_in_the_container() {
    let Some(app) = ComposeApp::new() else { return };
    let port = free_port();
    write_demo_build(&app, &app.path("build"));
    app.write(
        "docker-compose.yml",
        &format!(
            r#"version: "3.7"
services:
  web:
    build: ./build
    entrypoint: []
    command: ["/bin/sh", "-c", "/caretaker demo-app migrate && exec /caretaker demo-app serve --listen 0.0.0.0:8000"]
    environment: {{ DEMO_DATABASE_URL: "sqlite:///tmp/demo.db", DEMO_FILES_DIR: /tmp }}
    ports: ["127.0.0.1:{port}:8000"]
"#
        ),
    );
    app.config(
        r#"compose:
  app_service: web
  services:
    # Passes only inside the container (the database file is in its /tmp).
    # A generous probe timeout: `compose exec` takes seconds on a loaded machine.
    web: { health: { command: "test -s /tmp/demo.db && echo database present", interval: 20s, timeout: 20s, start_period: 30s } }
jobs:
  hangs: { command: "echo started; /caretaker demo-app migrate && exec /caretaker demo-app serve --listen 127.0.0.1:18999", timeout: 5s, schedule: daily }
  quick: { command: "echo done", timeout: 60s, schedule: daily }
# `check` must pass whatever the host's load, memory and disk: pinned (no host rule can fire).
alerts: { rules: { filesystem_free_percent: { warning: 0, critical: 0 }, memory_used_percent: false, load_per_cpu: false } }"#,
    );
    app.ct.expect(&["up", "--timeout", "120"], 0);
    let oneoffs = || {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", app.project),
            "--filter",
            "label=com.docker.compose.oneoff=True",
        ])
    };

    let started = std::time::Instant::now();
    let out = app.ct.run(&["jobs", "run", "hangs"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(started.elapsed().as_secs() < 120, "the time limit ended the job");
    assert!(err.contains("did not finish within 5s"), "{err}");
    assert_eq!(oneoffs(), "", "the one-off container is gone");

    app.ct.expect(&["jobs", "run", "quick"], 0);
    assert_eq!(oneoffs(), "");
    let web = app.service("web");
    assert_eq!(web["state"], "running", "the app's own container is untouched: {web}");

    let check = app.ct.json(&["check", "--json"]);
    let probe = check["checks"].as_array().unwrap().iter().find(|c| c["name"] == "service web").cloned();
    let probe = probe.unwrap_or_else(|| panic!("no check of service web: {check}"));
    assert_eq!(probe["status"], "ok", "{probe}");
    assert_eq!(probe["message"], "database present", "{probe}");
}

/// Issue 17, item 7: a compose update and a rollback switch the front door to the maintenance
/// page before stopping the app, and back as soon as they return — a visitor polling through
/// the front door sees only 200 and 503, never a 502 from a stopped container.
#[test]
fn visitors_see_only_the_app_or_the_maintenance_page_during_a_compose_update_and_rollback() {
    use crate::maintenance::{runs, Visitor};
    let Some(db) = crate::compose::TestDb::new() else { return };
    let Some(app) = ComposeApp::new() else { return };
    let (port, door) = (free_port(), free_port());
    let d = app.dir.path().to_path_buf();
    let repo = d.join("repo");
    crate::compose::init_demo_repo(&app, &repo);
    std::fs::write(
        repo.join("docker-compose.yml"),
        format!(
            r#"version: "3.7"
services:
  web:
    build: .
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
    crate::update::commit_tag(&repo, "v1");
    crate::update::commit_v2_with_a_migration_and_v3(&repo);
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
  app_service: web
  services:
    web: {{ health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 20s }} }}
database: {{ kind: postgres, url: "{url}" }}
update: {{ health_timeout: 60s }}
front_door: {{ listen: "127.0.0.1:{door}", upstream: "127.0.0.1:{port}", retry_after: 5s }}"#,
            url = db.url
        ),
    );
    app.ct.expect(&["update", "--to", "v1"], 0);
    let served = || crate::supervisor::http_get(door, "/version").filter(|(s, _)| *s == 200).map(|(_, b)| b);
    wait_until(std::time::Duration::from_secs(60), "v1 through the front door", &served);

    for (args, want) in [(&["update", "--to", "v2"][..], "v2"), (&["rollback"][..], "v1")] {
        let visitor = Visitor::start(door);
        wait_until(std::time::Duration::from_secs(10), "the visitor's first page", || {
            crate::supervisor::http_get(door, "/").filter(|(s, _)| *s == 200)
        });
        app.ct.expect(args, 0);
        let right_after = crate::supervisor::http_get(door, "/").map(|r| r.0);
        let seen = visitor.finish();
        eprintln!("through the front door during {args:?}: {}", runs(&seen));
        assert_eq!(right_after, Some(200), "{args:?}: the maintenance page lingered: {}", runs(&seen));
        assert!(seen.iter().all(|s| *s == 200 || *s == 503), "{args:?}: only 200 or 503: {}", runs(&seen));
        assert!(seen.contains(&503), "{args:?}: seen in maintenance: {}", runs(&seen));
        assert_eq!(served().map(|b| b.trim().to_string()).as_deref(), Some(want));
    }
}
