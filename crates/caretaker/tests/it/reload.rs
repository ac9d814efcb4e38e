//! Live reload (docs/daemon.md, "Reload"): `caretaker reload` and SIGHUP make the running
//! daemon follow a changed config — changed services restarted, the others left alone, an
//! invalid config refused with every problem while the old one keeps running, and the
//! listeners, schedules and status page following the new config. Every wait polls
//! (`wait_until`); nothing relies on a fixed sleep.

use crate::supervisor::{demo_web, free_port, http_get, App};
use caretaker_testkit::wait_until;
use std::time::Duration;

/// Writes the app's config anew, in the shape `App::new` writes it (`extra` names `http:`).
fn rewrite(app: &App, services: &str, extra: &str) {
    let text = format!(
        "version: 1\napp:\n  name: suptest\n  working_dir: \"{d}\"\nservices:\n{services}\n{extra}\n",
        d = app.dir.path().display()
    );
    std::fs::write(app.path("caretaker.yml"), text).unwrap();
}

/// The pid of a service once it runs (and, with a health check, is healthy).
fn running_pid(app: &App, name: &str) -> u64 {
    wait_until(Duration::from_secs(60), &format!("{name} to run"), || {
        let s = app.service(name);
        (s["state"] == "running").then(|| s["pid"].as_u64()).flatten()
    })
}

fn daemon_log(app: &App) -> String {
    std::fs::read_to_string(app.path("daemon.stderr")).unwrap_or_default()
}

const WORKER: &str = "  worker: { command: \"exec sleep 3301\", after: [web] }";

#[test]
fn reload_restarts_only_the_service_whose_definition_changed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let web = demo_web(dir.path(), port);
    let http = format!("http: {{ listen: \"127.0.0.1:{}\" }}", free_port());
    let app = App::new(&format!("{web}\n{WORKER}"), &http);
    let _d = app.daemon();
    let (web_pid, worker_pid) = (running_pid(&app, "web"), running_pid(&app, "worker"));

    // A changed worker command: the worker restarts, the web service keeps its process.
    rewrite(&app, &format!("{web}\n{}", WORKER.replace("3301", "3302")), &http);
    let out = app.ct.expect(&["reload"], 0);
    assert!(out.contains("restarted: worker\n") && out.contains("unchanged: web\n"), "{out}");
    let new_worker = running_pid(&app, "worker");
    assert_ne!(new_worker, worker_pid, "{out}");
    let cmdline = std::fs::read(format!("/proc/{new_worker}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("3302"), "runs the new command");
    assert_eq!(app.service("web")["pid"].as_u64(), Some(web_pid), "web was left alone");
    assert_eq!(app.service("web")["restarts"], 0);

    // A changed environment of the demo app: it restarts (and is healthy again before the
    // command returns); the worker keeps its new process.
    let web2 = web.replace("      DEMO_LISTEN", "      RELOADED: \"yes\"\n      DEMO_LISTEN");
    rewrite(&app, &format!("{web2}\n{}", WORKER.replace("3301", "3302")), &http);
    let out = app.ct.expect(&["reload"], 0);
    assert!(out.contains("restarted: web\n") && out.contains("unchanged: worker\n"), "{out}");
    let s = app.service("web");
    assert_eq!(s["state"], "running", "healthy before `reload` returned: {s}");
    assert_ne!(s["pid"].as_u64(), Some(web_pid));
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(app.service("worker")["pid"].as_u64(), Some(new_worker));

    // Reloading the same config again changes nothing.
    let out = app.ct.expect(&["reload"], 0);
    assert!(out.contains("unchanged: web, worker\n") && !out.contains("restarted"), "{out}");
}

#[test]
fn reload_of_an_invalid_config_changes_nothing_and_lists_every_problem() {
    let http = format!("http: {{ listen: \"127.0.0.1:{}\" }}", free_port());
    let services = "  db: \"exec sleep 3311\"\n  web: { command: \"exec sleep 3312\", after: [db] }";
    let app = App::new(services, &http);
    let _d = app.daemon();
    let (db, web) = (running_pid(&app, "db"), running_pid(&app, "web"));
    let daemon_pid = app.status()["daemon_pid"].as_u64().unwrap() as i32;

    // Two problems: an unknown key and a dependency on a service that does not exist.
    let bad = "  db: \"exec sleep 3313\"\n  web: { command: \"exec sleep 3314\", after: [nosuch], restrat: always }";
    rewrite(&app, bad, &http);
    let out = app.ct.run(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("restrat") && err.contains("nosuch"), "every problem is listed: {err}");

    // The same through SIGHUP: the daemon refuses it, says why, and keeps running the old one.
    unsafe { libc::kill(daemon_pid, libc::SIGHUP) };
    wait_until(Duration::from_secs(20), "the daemon to refuse the new config", || {
        daemon_log(&app).contains("SIGHUP: the new config was refused").then_some(())
    });
    assert!(daemon_log(&app).contains("restrat"), "{}", daemon_log(&app));

    // A valid config the running daemon cannot take (another app name) is refused by it.
    rewrite(&app, &services.replace("3312", "3315"), &http);
    let text = std::fs::read_to_string(app.path("caretaker.yml")).unwrap().replace("name: suptest", "name: other");
    std::fs::write(app.path("caretaker.yml"), text).unwrap();
    let out = app.ct.run(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("app.name changed") && err.contains("refused"), "{err}");

    // Nothing changed: the same processes, running the old commands (the CLI reads the
    // config too, so it gets the running one back first).
    rewrite(&app, services, &http);
    assert_eq!(app.service("db")["pid"].as_u64(), Some(db));
    assert_eq!(app.service("web")["pid"].as_u64(), Some(web));
    assert_eq!(app.service("web")["state"], "running");
    assert_eq!(app.status()["daemon_pid"].as_u64(), Some(daemon_pid as u64));
}

#[test]
fn sighup_reloads_like_the_command() {
    let http = format!("http: {{ listen: \"127.0.0.1:{}\" }}", free_port());
    let services = "  db: \"exec sleep 3321\"\n  web: { command: \"exec sleep 3322\", after: [db] }";
    let app = App::new(services, &http);
    let _d = app.daemon();
    let (db, web) = (running_pid(&app, "db"), running_pid(&app, "web"));

    // `web` changes and `extra` is new; a second SIGHUP removes `extra` again.
    let added = format!("{}\n  extra: \"exec sleep 3324\"", services.replace("3322", "3323"));
    rewrite(&app, &added, &http);
    let daemon_pid = app.status()["daemon_pid"].as_u64().unwrap() as i32;
    unsafe { libc::kill(daemon_pid, libc::SIGHUP) };
    let new_web = wait_until(Duration::from_secs(30), "web to run its new command", || {
        let s = app.service("web");
        (s["state"] == "running" && s["pid"].as_u64() != Some(web)).then(|| s["pid"].as_u64()).flatten()
    });
    let extra = running_pid(&app, "extra");
    assert_eq!(app.service("db")["pid"].as_u64(), Some(db), "db was left alone");
    wait_until(Duration::from_secs(20), "the daemon to log the reload", || {
        daemon_log(&app).contains("SIGHUP: done — restarted [web], started [extra]").then_some(())
    });

    rewrite(&app, &services.replace("3322", "3323"), &http);
    unsafe { libc::kill(daemon_pid, libc::SIGHUP) };
    wait_until(Duration::from_secs(30), "the removed service to stop", || {
        let gone = !std::path::Path::new(&format!("/proc/{extra}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{extra}/stat")).is_ok_and(|s| s.contains(") Z"));
        (gone && app.status()["services"].as_array().unwrap().len() == 2).then_some(())
    });
    assert_eq!(app.service("web")["pid"].as_u64(), Some(new_web));
    assert_eq!(app.service("db")["pid"].as_u64(), Some(db));
}

#[test]
fn reload_moves_the_listener_and_follows_new_schedules_and_status_users() {
    let (old_port, new_port) = (free_port(), free_port());
    let services = "  idle: \"exec sleep 3331\"";
    let app = App::new(services, &format!("http: {{ listen: \"127.0.0.1:{old_port}\" }}"));
    // The job the new config adds last ran two hours ago: due at the scheduler's first tick.
    crate::daemon::ran_two_hours_ago(&app, "job:report");
    let _d = app.daemon();
    let idle = running_pid(&app, "idle");
    wait_until(Duration::from_secs(20), "/metrics on the old port", || {
        http_get(old_port, "/metrics").filter(|(s, _)| *s == 200)
    });
    assert_eq!(http_get(old_port, "/status/api?token=a-long-random-status-token").map(|r| r.0), Some(401));

    let token_file = app.path("status.token");
    std::fs::write(&token_file, "a-long-random-status-token\n").unwrap();
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let extra = format!(
        "http: {{ listen: \"127.0.0.1:{new_port}\" }}\nstatus: {{ token_file: \"{}\" }}\ntimezone: UTC\njobs:\n  report: {{ command: \"echo report ran > report.txt\", schedule: hourly }}",
        token_file.display()
    );
    rewrite(&app, services, &extra);
    let out = app.ct.expect(&["reload"], 0);
    assert!(out.contains("unchanged: idle\n") && out.contains("listeners: bound on their new addresses"), "{out}");
    assert!(out.contains("http") && out.contains("jobs") && out.contains("status"), "{out}");

    // The listener moved: the new address serves, the old one is let go.
    assert_eq!(http_get(new_port, "/metrics").map(|r| r.0), Some(200));
    wait_until(Duration::from_secs(20), "the old port to be closed", || {
        std::net::TcpStream::connect(("127.0.0.1", old_port)).is_err().then_some(())
    });
    // The status page's new credentials work.
    let (status, body) = http_get(new_port, "/status/api?token=a-long-random-status-token").unwrap();
    assert_eq!(status, 200, "{body}");
    // The new schedule runs its job.
    let job = wait_until(Duration::from_secs(60), "the newly scheduled job to finish", || {
        let jobs = app.ct.json(&["jobs", "--json"]);
        jobs.as_array()?.iter().find(|j| j["kind"] == "command" && j["outcome"] != "running").cloned()
    });
    assert_eq!(job["outcome"], "succeeded", "{job}");
    assert_eq!(job["trigger"], "schedule", "{job}");
    assert_eq!(app.service("idle")["pid"].as_u64(), Some(idle), "the service was left alone");
}

#[test]
fn the_systemd_unit_reloads_through_caretaker_reload() {
    let app = App::new("  idle: \"exec sleep 3341\"", "");
    let unit = app.path("caretaker-suptest.service");
    app.ct.expect(&["install-systemd", "--output", unit.to_str().unwrap()], 0);
    let text = std::fs::read_to_string(&unit).unwrap();
    let reload = text.lines().find_map(|l| l.strip_prefix("ExecReload=")).expect(&text);
    assert!(reload.starts_with(crate::BIN) && reload.ends_with(" reload"), "{reload}");
}

#[test]
fn a_compose_app_follows_reloaded_service_settings_and_listeners_without_recreating_containers() {
    let Some(mut app) = crate::compose::ComposeApp::new() else { return };
    let port = free_port();
    app.write(
        "docker-compose.yml",
        &format!(
            r#"version: "3.7"
services:
  web:
    image: {base}
    command: ["demo-app", "serve", "--listen", "0.0.0.0:8000", "--allow-pending"]
    ports: ["127.0.0.1:{port}:8000"]
    restart: unless-stopped
"#,
            base = app.base
        ),
    );
    app.config("compose: {}");
    app.ct.expect(&["up", "--timeout", "120"], 0);
    let web = app.service("web");
    assert_eq!((web["state"].as_str(), web["health"].as_str()), (Some("running"), Some("none")), "{web}");
    let container = crate::compose::docker(&["inspect", "--format", "{{.Id}}", &format!("{}_web_1", app.project)]);

    // A health check for the service and a new HTTP listener.
    let old_port = app.http_port;
    app.http_port = free_port();
    app.config(&format!(
        "compose:\n  services:\n    web: {{ health: {{ http: \"http://127.0.0.1:{port}/healthz\", interval: 1s, timeout: 1s }} }}"
    ));
    let out = app.ct.expect(&["reload"], 0);
    assert!(out.contains("compose") && out.contains("http") && out.contains("listeners: bound"), "{out}");
    wait_until(Duration::from_secs(30), "the new health check to pass", || {
        (app.service("web")["health"] == "healthy").then_some(())
    });
    assert_eq!(http_get(app.http_port, "/metrics").map(|r| r.0), Some(200));
    wait_until(Duration::from_secs(20), "the old port to be closed", || {
        std::net::TcpStream::connect(("127.0.0.1", old_port)).is_err().then_some(())
    });
    let same = crate::compose::docker(&["inspect", "--format", "{{.Id}}", &format!("{}_web_1", app.project)]);
    assert_eq!(same, container, "the container was not recreated");
}
