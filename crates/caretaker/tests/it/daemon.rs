//! What `caretaker daemon` runs around the supervisor: the HTTP listener (`/metrics`), the
//! front door following the app's mode, and the scheduler running due tasks as child
//! processes. Every wait polls (`wait_until`); nothing relies on a fixed sleep.

use crate::supervisor::{demo_web, free_port, http_get, App};
use caretaker_testkit::wait_until;
use std::time::Duration;

#[test]
fn daemon_serves_metrics_on_its_http_listener() {
    let port = free_port();
    let app = App::new("  idle: \"exec sleep 3172\"", &format!("http: {{ listen: \"127.0.0.1:{port}\" }}"));
    let _d = app.daemon();
    let body = wait_until(Duration::from_secs(20), "/metrics to show the service up", || {
        let (status, body) = http_get(port, "/metrics")?;
        assert_eq!(status, 200, "{body}");
        body.lines().any(|l| l == "caretaker_service_up{service=\"idle\"} 1").then_some(body)
    });
    assert!(body.contains("caretaker_service_restarts_total{service=\"idle\"} 0"), "{body}");
    assert!(body.lines().any(|l| l.starts_with("caretaker_build_info{")), "{body}");
    assert_eq!(http_get(port, "/nothing-here").unwrap().0, 404);
}

#[test]
fn a_port_in_use_stops_the_daemon_with_exit_code_6() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let app = App::new("  idle: \"exec sleep 3173\"", &format!("http: {{ listen: \"{addr}\" }}"));
    let out = app.ct.command(&["daemon"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains(&addr) && err.contains("http.listen") && err.contains("already in use"), "{err}");
    // Nothing was started.
    assert!(!std::fs::read_to_string(app.path("state/logs/idle.log")).unwrap_or_default().contains("started"));
}

#[test]
fn front_door_follows_maintenance_mode_set_by_another_process_before_the_command_returns() {
    let app_port = free_port();
    let door = free_port();
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(
        &demo_web(dir.path(), app_port),
        &format!("front_door: {{ listen: \"127.0.0.1:{door}\", upstream: \"127.0.0.1:{app_port}\", retry_after: 5s }}"),
    );
    let _d = app.daemon();
    wait_until(Duration::from_secs(30), "the app through the front door", || {
        http_get(door, "/healthz").filter(|(s, _)| *s == 200)
    });

    // The switch is acknowledged by the daemon: the front door follows it before the command
    // returns, not at its next look at the state store.
    app.ct.expect(&["maintenance", "on", "--message", "Back at noon"], 0);
    let (status, body) = http_get(door, "/").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Back at noon"), "{body}");

    app.ct.expect(&["maintenance", "off"], 0);
    assert_eq!(http_get(door, "/healthz").map(|r| r.0), Some(200));
    // And again, both ways, with no pause in between.
    app.ct.expect(&["maintenance", "on"], 0);
    assert_eq!(http_get(door, "/").map(|r| r.0), Some(503));
    app.ct.expect(&["maintenance", "off"], 0);
    assert_eq!(http_get(door, "/healthz").map(|r| r.0), Some(200));
}

#[test]
fn a_crash_loop_puts_the_front_door_into_service_mode() {
    let door = free_port();
    let upstream = free_port();
    let app = App::new(
        r#"  broken:
    command: "echo 'cannot open settings.py' >&2; exit 2"
    backoff: { initial: 50ms, max: 100ms }
    crash_loop: { restarts: 2, within: 30s }"#,
        &format!("front_door: {{ listen: \"127.0.0.1:{door}\", upstream: \"127.0.0.1:{upstream}\" }}"),
    );
    let _d = app.daemon();
    let body = wait_until(Duration::from_secs(20), "the service page", || {
        http_get(door, "/").filter(|(s, b)| *s == 503 && b.contains("Service temporarily unavailable")).map(|x| x.1)
    });
    assert!(!body.contains("settings.py"), "visitors do not see internals: {body}");
    // It stays until an operator clears the flag; then at once the bad-gateway page (nothing
    // listens upstream).
    app.ct.expect(&["reset-failed"], 0);
    assert_eq!(http_get(door, "/").map(|r| r.0), Some(502));
}

#[test]
fn a_due_scheduled_job_runs_as_a_recorded_job() {
    let app = App::new(
        "  idle: \"exec sleep 3174\"",
        "timezone: UTC\njobs:\n  report: { command: \"echo report ran > report.txt\", schedule: hourly }",
    );
    // The task last ran two hours ago, so it is due as soon as the daemon's scheduler ticks.
    ran_two_hours_ago(&app, "job:report");
    let _d = app.daemon();
    let job = wait_until(Duration::from_secs(30), "the scheduled job to finish", || {
        let jobs = app.ct.json(&["jobs", "--json"]);
        jobs.as_array()?.iter().find(|j| j["kind"] == "command" && j["outcome"] != "running").cloned()
    });
    assert_eq!(job["outcome"], "succeeded", "{job}");
    assert_eq!(job["trigger"], "schedule", "{job}");
    assert_eq!(std::fs::read_to_string(app.path("report.txt")).unwrap(), "report ran\n");
    // Recorded as run now: not due again.
    let store = caretaker_state::Store::open(&app.path("state"), caretaker_core::config::Redactor::default()).unwrap();
    let last = store.task_states().unwrap()["job:report"].last_run.unwrap();
    assert!(jiff::Timestamp::now().duration_since(last) < jiff::SignedDuration::from_mins(5), "{last}");
}

#[test]
fn daemon_serves_the_status_page_with_live_services_behind_auth() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("status.token");
    std::fs::write(&token_file, "a-long-random-status-token\n").unwrap();
    // Other users must not read it (a world-readable token file is refused).
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let app = App::new(
        "  idle: \"exec sleep 3174\"",
        &format!("http: {{ listen: \"127.0.0.1:{port}\" }}\nstatus: {{ token_file: \"{}\" }}", token_file.display()),
    );
    let _d = app.daemon();
    let api = wait_until(Duration::from_secs(20), "the status API to show the service running", || {
        let (status, body) = http_get(port, "/status/api?token=a-long-random-status-token")?;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v.to_string().contains("\"idle\"") && v.to_string().contains("running")).then_some(v)
    });
    assert!(api.to_string().contains("normal"), "the mode is shown: {api}");
    assert_eq!(http_get(port, "/status").unwrap().0, 401, "no credentials, no page");
    assert_eq!(http_get(port, "/status?token=wrong").unwrap().0, 401);
    let (status, html) = http_get(port, "/status?token=a-long-random-status-token").unwrap();
    assert_eq!(status, 200);
    assert!(html.contains("<svg") && html.contains("idle"), "{html}");
}

#[test]
fn up_waits_for_the_resume_of_an_update_interrupted_with_its_daemon() {
    let site = crate::maintenance::Site::new();
    site.ct.expect(&["update"], 0);
    wait_until(Duration::from_secs(30), "v1 through the front door", || site.version().filter(|v| v == "v1"));
    // The update and the daemon both die mid-update: the app is stopped, maintenance is on.
    let out =
        site.ct.command(&["update", "--to", "v2"]).env("CARETAKER_TEST_KILL_AT_STEP", "migrate").output().unwrap();
    assert_eq!(out.status.code(), None, "killed at migrate: {}", crate::stderr_of(&out));
    let daemon = site.ct.json(&["status", "--json"])["daemon_pid"].as_i64().expect("a daemon runs") as i32;
    unsafe { libc::kill(daemon, libc::SIGKILL) };
    wait_until(Duration::from_secs(10), "the daemon to be gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap_or_default();
        (stat.is_empty() || stat[stat.rfind(')').unwrap() + 2..].starts_with('Z')).then_some(())
    });

    let st = site.ct.expect(&["status"], 0);
    assert!(st.contains("UPDATE INTERRUPTED") && st.contains("update --resume"), "{st}");

    let out = site.ct.run(&["up", "--timeout", "60"]);
    let err = crate::stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("resuming interrupted update job"), "{err}");
    assert!(err.contains("rolled_back"), "how the resume ended is reported: {err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("healthy"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(site.version().as_deref(), Some("v1"), "rolled back to what served before");
    assert_eq!(site.ct.json(&["maintenance", "status", "--json"])["mode"], "normal");
}

/// Records in the app's state that `task` was seen and last ran two hours ago, so an hourly
/// task is due at the daemon scheduler's first tick.
pub(crate) fn ran_two_hours_ago(app: &App, task: &str) {
    let store = caretaker_state::Store::open(&app.path("state"), caretaker_core::config::Redactor::default()).unwrap();
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
    store.task_seen(task, past).unwrap();
    store.task_ran(task, past).unwrap();
}
