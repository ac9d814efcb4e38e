//! Commands inside a compose app's containers: one-off containers (`jobs:` commands,
//! migrations) that outlive their time limit — killing the compose client does not stop the
//! container, so caretaker removes it — and `command` health probes, which `caretaker check`
//! runs inside the service's container like the daemon does.

use crate::compose::{docker, write_demo_build, ComposeApp};
use crate::supervisor::free_port;

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
    web: { health: { command: "test -s /tmp/demo.db && echo database present", interval: 2s, timeout: 2s, start_period: 30s } }
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
