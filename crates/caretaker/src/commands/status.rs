//! `caretaker status [--json]`: each service's state, pid, uptime, restarts, health and last
//! exit, as the daemon sees it; and the app's mode (maintenance or service mode), which decides
//! what visitors see.

use crate::cli::{Global, StatusArgs};
use crate::context::open_app;
use crate::control::status;
use crate::exit::Code;
use crate::output::table;
use anyhow::Result;
use caretaker_core::mode::Mode;
use caretaker_supervisor::machine::{Health, Phase};
use caretaker_supervisor::protocol::StatusReport;

pub fn run(global: &Global, args: &StatusArgs) -> Result<Code> {
    let app = open_app(global)?;
    let mode = app.store.mode()?;
    if !args.json {
        if let Some(line) = update_under_way(&app.store)? {
            println!("{line}");
        }
    }
    match status(app.store.dir())? {
        Some(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&with_mode(&report, &mode)?)?);
            } else {
                print!("{}", render(&report, &mode));
            }
        }
        None => {
            let service_mode = match &mode {
                Mode::Service(f) => Some(f.reason.clone()),
                _ => None,
            };
            // What runs without a daemon (docker runs a compose app's containers anyway).
            if let Some(report) = app.runtime().status_without_daemon(service_mode.clone())? {
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&with_mode(&report, &mode)?)?);
                } else {
                    print!("{}", render(&report, &mode));
                }
                return Ok(Code::Ok);
            }
            // Nothing can start without the working directory: say so before `up` finds out.
            let cwd = crate::appenv::working_dir(&app.config.app, &app.config_path);
            let missing = (!cwd.is_dir()).then(|| crate::appenv::missing_working_dir(&cwd, app.store.dir()));
            if args.json {
                let services: Vec<_> = app
                    .config
                    .services
                    .iter()
                    .map(|s| serde_json::json!({"name": s.name, "state": "stopped"}))
                    .collect();
                let v = serde_json::json!({
                    "app": app.config.app.name, "daemon_pid": null,
                    "service_mode": service_mode, "mode": mode, "services": services,
                    "cannot_start": missing,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("app {}: no daemon running (start with `caretaker up`)", app.config.app.name);
                print!("{}", render_mode(&mode));
                if let Some(m) = missing {
                    println!("cannot start: {m}");
                }
            }
        }
    }
    Ok(Code::Ok)
}

/// A line about an update whose progress is stored: under way, or interrupted and waiting to
/// be resumed (services of a half-done update may be stopped on purpose).
fn update_under_way(store: &caretaker_state::Store) -> Result<Option<String>> {
    let Some(progress) = store.fact(crate::update::FACT_PROGRESS)? else { return Ok(None) };
    let job = serde_json::from_str::<serde_json::Value>(&progress).ok().and_then(|v| v["job_id"].as_i64());
    let lock = store.layout().app_lock();
    let busy = crate::control::lock_is_held(&lock);
    let job = job.map(|j| format!(" (job {j})")).unwrap_or_default();
    Ok(Some(if busy {
        format!("UPDATE UNDER WAY{job}: services may be stopped on purpose; `caretaker jobs` shows it")
    } else {
        format!("UPDATE INTERRUPTED{job}: `caretaker update --resume` finishes it (`caretaker up` does so first)")
    }))
}

/// The report as JSON with the app's `mode` next to it.
fn with_mode(report: &StatusReport, mode: &Mode) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(report)?;
    v["mode"] = serde_json::to_value(mode)?;
    Ok(v)
}

/// What visitors get, when it is not the app itself.
fn render_mode(mode: &Mode) -> String {
    match mode {
        Mode::Normal => String::new(),
        Mode::Maintenance(m) => format!(
            "MAINTENANCE MODE since {} (by {}): \"{}\"\n  (visitors see the maintenance page; `caretaker maintenance off` ends it)\n",
            m.since, m.by, m.message
        ),
        Mode::Service(f) => format!(
            "SERVICE MODE since {}: {}\n  (visitors see the service page; {})\n",
            f.since,
            f.reason,
            if crate::appmode::set_by_a_service(f) {
                "fix the cause, then `caretaker up` or `restart`: service mode ends once every service is healthy"
            } else {
                "fix the cause, then `caretaker reset-failed`"
            }
        ),
    }
}

pub fn render(r: &StatusReport, mode: &Mode) -> String {
    let mut out = if r.daemon_pid == 0 {
        format!("app {} (no daemon running: containers as docker reports them)\n", r.app)
    } else {
        format!("app {} (daemon pid {})\n", r.app, r.daemon_pid)
    };
    out.push_str(&render_mode(mode));
    let mut rows = vec![["SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "HEALTH", "LAST EXIT / REASON"]
        .map(String::from)
        .to_vec()];
    for s in &r.services {
        // A running service's last exit is history (a planned restart, a crash it recovered
        // from; RESTARTS counts those): only a current problem is shown.
        let last = if s.state == Phase::Running { s.reason.clone() } else { s.reason.clone().or(s.last_exit.clone()) };
        rows.push(vec![
            s.name.clone(),
            if s.waiting { format!("{} (waiting)", s.state) } else { s.state.to_string() },
            s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            s.uptime_seconds.map(human_secs).unwrap_or_else(|| "-".into()),
            s.restarts.to_string(),
            match s.health {
                Health::None => "-",
                Health::Unknown => "unknown",
                Health::Healthy => "healthy",
                Health::Unhealthy => "unhealthy",
            }
            .into(),
            last.unwrap_or_default(),
        ]);
    }
    out.push_str(&table(&rows));
    out
}

fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_core::mode::{Failed, Maintenance};
    use caretaker_supervisor::protocol::ServiceStatus;
    use expect_test::expect;

    fn svc(name: &str, state: Phase, last_exit: Option<&str>, reason: Option<&str>) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            state,
            pid: (state == Phase::Running).then_some(42),
            uptime_seconds: (state == Phase::Running).then_some(75),
            restarts: 1,
            health: Health::None,
            last_exit: last_exit.map(str::to_string),
            reason: reason.map(str::to_string),
            waiting: false,
        }
    }

    fn report(services: Vec<ServiceStatus>) -> StatusReport {
        StatusReport { app: "site".into(), daemon_pid: 7, service_mode: None, services }
    }

    #[test]
    fn maintenance_mode_is_shown() {
        let mode = Mode::Maintenance(Maintenance {
            message: "Back soon".into(),
            since: "2026-12-04T10:00:00Z".parse().unwrap(),
            by: "operator".into(),
        });
        expect![[r#"
            app site (daemon pid 7)
            MAINTENANCE MODE since 2026-12-04T10:00:00Z (by operator): "Back soon"
              (visitors see the maintenance page; `caretaker maintenance off` ends it)
            SERVICE  STATE    PID  UPTIME  RESTARTS  HEALTH  LAST EXIT / REASON
            web      running  42   1m15s   1         -
        "#]]
        .assert_eq(&render(&report(vec![svc("web", Phase::Running, None, None)]), &mode));
    }

    #[test]
    fn a_running_service_shows_no_stale_exit_but_a_stopped_one_does() {
        let r = report(vec![
            svc("web", Phase::Running, Some("killed by signal 15"), None),
            svc("worker", Phase::Stopped, Some("exited with status 3"), None),
        ]);
        expect![[r#"
            app site (daemon pid 7)
            SERVICE  STATE    PID  UPTIME  RESTARTS  HEALTH  LAST EXIT / REASON
            web      running  42   1m15s   1         -
            worker   stopped  -    -       1         -       exited with status 3
        "#]]
        .assert_eq(&render(&r, &Mode::Normal));
    }

    #[test]
    fn service_mode_says_how_it_ends() {
        let since = "2026-12-04T10:00:00Z".parse().unwrap();
        let by_service = Mode::Service(Failed { reason: "service web failed: crash loop".into(), since });
        expect![[r#"
            SERVICE MODE since 2026-12-04T10:00:00Z: service web failed: crash loop
              (visitors see the service page; fix the cause, then `caretaker up` or `restart`: service mode ends once every service is healthy)
        "#]]
        .assert_eq(&render_mode(&by_service));
        let by_update =
            Mode::Service(Failed { reason: "update to 3-abc failed and the rollback failed".into(), since });
        expect![[r#"
            SERVICE MODE since 2026-12-04T10:00:00Z: update to 3-abc failed and the rollback failed
              (visitors see the service page; fix the cause, then `caretaker reset-failed`)
        "#]]
        .assert_eq(&render_mode(&by_update));
    }
}
