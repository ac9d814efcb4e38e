//! `caretaker status [--json]`: each service's state, pid, uptime, restarts, health and last
//! exit, as the daemon sees it; and whether the app is in service mode.

use crate::cli::{Global, StatusArgs};
use crate::context::open_app;
use crate::control::status;
use crate::exit::Code;
use crate::output::table;
use anyhow::Result;
use caretaker_supervisor::machine::Health;
use caretaker_supervisor::protocol::StatusReport;

pub fn run(global: &Global, args: &StatusArgs) -> Result<Code> {
    let app = open_app(global)?;
    match status(app.store.dir())? {
        Some(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render(&report));
            }
        }
        None if app.config.compose.is_some() => {
            // Docker runs a compose app's containers with or without a daemon: show them.
            let project = crate::compose::project(&app.config, &app.config_path, &app.redactor)?;
            let docker = caretaker_compose::Docker::new(crate::compose::redact(&app.redactor));
            let model = project.model()?;
            let mut watch = caretaker_compose::watch::ComposeWatch::new(crate::compose::watch_specs(
                &app.config,
                &model.service_names(),
            ));
            watch.observed(std::time::Instant::now(), 1, &docker.project_containers(&project.name)?);
            let report = StatusReport {
                app: app.config.app.name.clone(),
                daemon_pid: 0,
                service_mode: match app.store.mode()? {
                    caretaker_core::mode::Mode::Service(f) => Some(f.reason),
                    _ => None,
                },
                services: watch.statuses(jiff::Timestamp::now()),
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render(&report));
            }
        }
        None => {
            let service_mode = match app.store.mode()? {
                caretaker_core::mode::Mode::Service(f) => Some(f.reason),
                _ => None,
            };
            if args.json {
                let services: Vec<_> = app
                    .config
                    .services
                    .iter()
                    .map(|s| serde_json::json!({"name": s.name, "state": "stopped"}))
                    .collect();
                let v = serde_json::json!({
                    "app": app.config.app.name, "daemon_pid": null,
                    "service_mode": service_mode, "services": services,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("app {}: no daemon running (start with `caretaker up`)", app.config.app.name);
                if let Some(m) = service_mode {
                    println!("SERVICE MODE: {m}");
                }
            }
        }
    }
    Ok(Code::Ok)
}

pub fn render(r: &StatusReport) -> String {
    let mut out = if r.daemon_pid == 0 {
        format!("app {} (no daemon running: containers as docker reports them)\n", r.app)
    } else {
        format!("app {} (daemon pid {})\n", r.app, r.daemon_pid)
    };
    if let Some(m) = &r.service_mode {
        out.push_str(&format!("SERVICE MODE: {m}\n  (visitors see the service page until you fix the cause and run `caretaker reset-failed`)\n"));
    }
    let mut rows = vec![["SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "HEALTH", "LAST EXIT / REASON"]
        .map(String::from)
        .to_vec()];
    for s in &r.services {
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
            s.reason.clone().or(s.last_exit.clone()).unwrap_or_default(),
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
