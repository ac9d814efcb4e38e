//! The docker compose runtime (docs/compose.md): docker runs the app's containers, caretaker's
//! daemon watches them (`daemon/compose.rs`); one-off commands run in containers of
//! `compose.app_service`; a release is its images; the database may run in a service of the
//! project, its client tools inside that container. The project itself — files, directory,
//! images, one-off containers — is `crate::compose`'s.

use super::process::run_on_host;
use super::{AppRuntime, Engine, ExecCommand, MachineCheck, Placement};
use crate::exit::{Code, Failure};
use crate::runner::Ended;
use anyhow::Result;
use caretaker_core::config::{Command as AppCommand, Compose, Config, Probe};
use caretaker_observe::check::{CheckResult, CheckStatus};
use caretaker_supervisor::machine::{Health, Phase};
use caretaker_supervisor::protocol::StatusReport;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct ComposeRuntime {
    p: Placement,
}

impl ComposeRuntime {
    /// `placement.config` has a `compose:` section ([`super::for_app`] checks).
    pub fn new(placement: Placement) -> ComposeRuntime {
        ComposeRuntime { p: placement }
    }

    fn config(&self) -> &Config {
        &self.p.config
    }

    fn section(&self) -> &Compose {
        self.p.config.compose.as_ref().expect("a compose runtime is made for a config with `compose:`")
    }

    fn project(&self) -> Result<caretaker_compose::Project> {
        crate::compose::project(&self.p.config, &self.p.config_path, &self.p.redactor)
    }
}

fn ended(status: std::process::ExitStatus) -> Ended {
    match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(c), _) => Ended::Exited(c),
        (None, Some(s)) => Ended::Signalled(s),
        (None, None) => Ended::Exited(-1),
    }
}

/// Without a daemon, the containers are observed once: one without a health check that has
/// run for [`SETTLE`](caretaker_compose::watch::SETTLE) already (docker's start time) is
/// running, not starting.
fn settle_by_uptime(report: &mut StatusReport) {
    let settle = caretaker_compose::watch::SETTLE.as_secs().max(1);
    for s in &mut report.services {
        if s.state == Phase::Starting && s.health == Health::None && s.uptime_seconds.is_some_and(|u| u >= settle) {
            s.state = Phase::Running;
        }
    }
}

impl AppRuntime for ComposeRuntime {
    fn describe(&self) -> String {
        format!("compose project {}", self.section().project)
    }

    fn can_clone(&self) -> Result<(), &'static str> {
        Err("clones of compose apps are not supported yet")
    }

    fn code_dir(&self) -> PathBuf {
        crate::compose::project_dir(&self.p.config, &self.p.config_path)
    }

    fn has_services(&self) -> bool {
        true
    }

    fn check_service_name(&self, _name: &str) -> Result<()> {
        // A compose app's services are the compose file's: the daemon checks the name.
        Ok(())
    }

    fn what_stops(&self) -> String {
        "the compose project".to_string()
    }

    fn stop_without_daemon(&self) -> Result<String> {
        // Docker keeps a compose app's containers running without a daemon: stop them.
        let project = self.project()?;
        project.stop(&[], self.config().stop_timeout_total(), &mut |_| {})?;
        Ok(format!("no daemon runs for {}; stopped the compose project {}", self.config().app.name, project.name))
    }

    /// Docker runs a compose app's containers with or without a daemon: observed once.
    fn status_without_daemon(&self, service_mode: Option<String>) -> Result<Option<StatusReport>> {
        let project = self.project()?;
        let docker = caretaker_compose::Docker::new(crate::compose::redact(&self.p.redactor));
        let model = project.model()?;
        let mut watch = caretaker_compose::watch::ComposeWatch::new(crate::compose::watch_specs(
            self.config(),
            &model.service_names(),
        ));
        watch.observed(std::time::Instant::now(), 1, &docker.project_containers(&project.name)?);
        let mut report = StatusReport {
            app: self.config().app.name.clone(),
            daemon_pid: 0,
            service_mode,
            services: watch.statuses(jiff::Timestamp::now()),
        };
        settle_by_uptime(&mut report);
        Ok(Some(report))
    }

    /// `compose logs --timestamps --tail N [-f] [SERVICE]`, its output passed through (redacted).
    fn logs(&self, service: Option<&str>, follow: bool, lines: usize, out: &mut dyn FnMut(&str) -> bool) -> Result<()> {
        let project = self.project()?;
        let mut cmd = project.logs_command(service, follow, lines);
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().expect("piped");
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if !out(&self.p.redactor.redact(&line)) {
                let _ = child.kill();
                break; // reader went away (`| head`)
            }
        }
        let status = child.wait()?;
        if !status.success() {
            return Err(Failure::new(Code::Failure, format!("`{} logs` failed ({status})", project.cli.name()))
                .hint("its message is above; check the service name with `caretaker status`")
                .into());
        }
        Ok(())
    }

    /// `compose exec`, with a terminal when caretaker has one.
    fn exec_command(&self, service: Option<&str>, argv: &[std::ffi::OsString]) -> Result<ExecCommand> {
        let Some(service) = service.map(str::to_string).or(self.section().app_service.clone()) else {
            return Err(Failure::new(Code::Usage, "which service's container should the command run in?")
                .hint("pass --service NAME, or set compose.app_service in the config")
                .into());
        };
        let project = self.project()?;
        let argv: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let tty = unsafe { libc::isatty(0) == 1 && libc::isatty(1) == 1 };
        Ok((project.exec_command(&service, &argv, tty), project.cli.name().to_string(), None))
    }

    fn run_one_off(
        &self,
        dir: &Path,
        cmd: &AppCommand,
        what: &str,
        limit: Duration,
        line: &mut dyn FnMut(&str),
    ) -> Result<Ended> {
        let (c, p, r) = (&self.p.config, &self.p.config_path, &self.p.redactor);
        Ok(ended(crate::compose::run_one_off(c, p, r, dir, cmd, what, limit, line)?))
    }

    fn run_one_offs(&self, dir: &Path, cmds: &[AppCommand], what: &str, line: &mut dyn FnMut(&str)) -> Result<()> {
        let (c, p, r) = (&self.p.config, &self.p.config_path, &self.p.redactor);
        crate::compose::run_one_off_commands(c, p, r, dir, cmds, what, line)
    }

    fn migrate(&self, dir: &Path, line: &mut dyn FnMut(&str)) -> Result<()> {
        // On a first deployment nothing runs yet, and one-off containers start no
        // dependencies (`--no-deps`): the database's service must be up first.
        self.start_database(Some(dir))?;
        self.run_one_offs(dir, &self.config().app.migrate, "migrate", line)
    }

    fn always_builds(&self) -> bool {
        true
    }

    fn build_release(&self, dir: &Path, name: &str, line: &mut dyn FnMut(&str)) -> Result<()> {
        run_on_host(&self.p, dir, &self.config().app.build, "build", line)?;
        let (c, p, r) = (&self.p.config, &self.p.config_path, &self.p.redactor);
        let pins = crate::compose::prepare_release_images(c, p, r, dir, name, line)?;
        for (service, image) in pins {
            line(&format!("service {service}: image {image}"));
        }
        Ok(())
    }

    /// A compose app's services run its release's images (pinned by the release's override
    /// file): nothing more to verify.
    fn verify_release(&self, _report: &StatusReport, _release: &Path, _line: &mut dyn FnMut(&str)) -> Result<()> {
        Ok(())
    }

    /// Images and containers of releases that are gone; the remaining ones' stay.
    fn clean_up(&self, keep: &[String], line: &mut dyn FnMut(&str)) -> Result<()> {
        crate::compose::clean_up(&self.p.config, &self.p.redactor, keep, line)
    }

    fn remove_one_offs(&self, line: &mut dyn FnMut(&str)) -> Result<()> {
        crate::compose::remove_one_off_containers(&self.p.config, &self.p.redactor, line)
    }

    fn open_database(&self) -> caretaker_db::Result<Box<dyn caretaker_db::Database>> {
        crate::compose::open_database(&self.p.config, &self.p.redactor)
    }

    fn database_service(&self) -> Option<&str> {
        self.config().database.as_ref().and_then(|d| d.compose_service.as_deref())
    }

    fn start_database(&self, dir: Option<&Path>) -> Result<()> {
        let (c, p, r) = (&self.p.config, &self.p.config_path, &self.p.redactor);
        match dir {
            Some(dir) => crate::compose::start_database_service_at(c, p, r, dir),
            None => crate::compose::start_database_service(c, p, r),
        }
    }

    fn volumes_come_with_code(&self) -> bool {
        true
    }

    /// The config's compose names against the compose file (docs/compose.md).
    fn check_machine(&self) -> MachineCheck {
        let names = crate::compose::check_names_report(&self.p.config, &self.p.config_path);
        MachineCheck { ok: names.ok, lines: names.lines, compose_json: Some(names.json), observed: Vec::new() }
    }

    /// The `command` health probes of compose services, run inside each service's container
    /// (`compose exec -T`), as the daemon runs them.
    fn service_checks(&self) -> Vec<CheckResult> {
        let probes: Vec<_> = self
            .section()
            .services
            .iter()
            .filter_map(|s| s.health.as_ref().map(|h| (&s.name, h)))
            .filter_map(|(name, h)| match &h.probe {
                Probe::Command { command } => Some((name, command, h.timeout)),
                _ => None,
            })
            .collect();
        if probes.is_empty() {
            return Vec::new();
        }
        let project = self.project();
        probes
            .into_iter()
            .map(|(name, command, timeout)| {
                let outcome = match &project {
                    Ok(p) => caretaker_observe::probe::command(p.exec_command(name, &command.argv(), false), timeout),
                    Err(e) => Err(format!("{e:#}")),
                };
                let (status, message) = match outcome {
                    Ok(m) => (CheckStatus::Ok, m),
                    Err(e) => (CheckStatus::Critical, format!("in its container: {}", self.p.redactor.redact(&e))),
                };
                CheckResult { name: format!("service {name}"), status, message }
            })
            .collect()
    }

    /// A compose app's containers are docker's: start after it.
    fn systemd_after(&self) -> Option<&'static str> {
        Some("docker.service")
    }

    fn reload_refusals(&self, new: &Config) -> Vec<String> {
        let Some(b) = &new.compose else {
            return vec!["the app switched between `services` and `compose`: that takes a daemon restart".to_string()];
        };
        let project =
            |c: &Compose| serde_json::to_value((&c.files, &c.project, &c.project_dir, &c.cli)).unwrap_or_default();
        if project(self.section()) != project(b) {
            return vec![
                "compose.files, compose.project, compose.project_dir or compose.cli changed: that takes a daemon restart"
                    .to_string(),
            ];
        }
        Vec::new()
    }

    fn engine(&self) -> Engine {
        Engine::Compose
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_supervisor::protocol::ServiceStatus;

    #[test]
    fn without_a_daemon_settled_containers_are_running() {
        let svc = |name: &str, uptime| ServiceStatus {
            name: name.into(),
            state: Phase::Starting,
            pid: None,
            uptime_seconds: Some(uptime),
            restarts: 0,
            health: Health::None,
            last_exit: None,
            reason: None,
            waiting: false,
        };
        let mut r = StatusReport {
            app: "site".into(),
            daemon_pid: 0,
            service_mode: None,
            services: vec![svc("web", 30), svc("worker", 0)],
        };
        settle_by_uptime(&mut r);
        assert_eq!(r.services[0].state, Phase::Running);
        assert_eq!(r.services[1].state, Phase::Starting, "just started: not settled yet");
    }
}
