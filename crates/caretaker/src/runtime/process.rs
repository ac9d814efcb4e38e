//! The built-in supervisor's runtime: the app's services are processes caretaker's daemon
//! starts (`services:`), one-off commands run on the host in the app's environment, and the
//! database's client tools run on the host.

use super::{AppRuntime, Engine, ExecCommand, MachineCheck, Placement, ONE_OFF_TIMEOUT};
use crate::appenv::{app_env, working_dir};
use crate::exit::{Code, Failure};
use crate::runner::{run_lines, Ended};
use anyhow::{anyhow, bail, Context, Result};
use caretaker_core::config::{Command as AppCommand, Config};
use caretaker_observe::check::CheckResult;
use caretaker_supervisor::logfile::{self, Follower};
use caretaker_supervisor::process::{lookup_user, stop_leftovers, Records, INHERITED_VARS};
use caretaker_supervisor::protocol::StatusReport;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct ProcessRuntime {
    p: Placement,
}

impl ProcessRuntime {
    pub fn new(placement: Placement) -> ProcessRuntime {
        ProcessRuntime { p: placement }
    }

    fn config(&self) -> &Config {
        &self.p.config
    }
}

/// Runs `cmds` on the host in the app's environment with `dir` as the working directory, one
/// after the other; the first that fails ends the run. The one runner of `app.build` (both
/// runtimes build on the host) and of a process app's migrations.
pub fn run_on_host(
    p: &Placement,
    dir: &Path,
    cmds: &[AppCommand],
    what: &str,
    line: &mut dyn FnMut(&str),
) -> Result<()> {
    let env = app_env(&p.config.app, None, dir)?;
    for c in cmds {
        line(&format!("{what}: {}", c.argv().join(" ")));
        let ended = run_lines(c, &env, dir, ONE_OFF_TIMEOUT, &|s| p.redactor.redact(s), line)
            .with_context(|| format!("starting {what} command {}", c.argv().join(" ")))?;
        if !ended.success() {
            bail!("{what} command `{}` {}", c.argv().join(" "), ended.describe());
        }
    }
    Ok(())
}

impl AppRuntime for ProcessRuntime {
    fn describe(&self) -> String {
        let n = self.config().services.len();
        format!("{n} service{}", if n == 1 { "" } else { "s" })
    }

    fn code_dir(&self) -> PathBuf {
        let dir = working_dir(&self.config().app, &self.p.config_path);
        std::path::absolute(&dir).unwrap_or(dir)
    }

    fn has_services(&self) -> bool {
        !self.config().services.is_empty()
    }

    fn check_service_name(&self, name: &str) -> Result<()> {
        if self.config().service(name).is_some() {
            return Ok(());
        }
        let names: Vec<&str> = self.config().services.iter().map(|s| s.name.as_str()).collect();
        Err(Failure::new(Code::Usage, format!("no service named {name}"))
            .hint(format!("services: {}", names.join(", ")))
            .into())
    }

    fn what_stops(&self) -> String {
        format!("{} service(s)", self.config().services.len())
    }

    fn stop_without_daemon(&self) -> Result<String> {
        let records = Records::new(&self.p.state_dir);
        let grace = self.config().services.iter().map(|s| s.stop_timeout).max().unwrap_or_default();
        let found = stop_leftovers(&records.load(), grace);
        records.save(&[])?;
        Ok(if found.is_empty() {
            format!("no daemon runs for {}; nothing to stop", self.config().app.name)
        } else {
            format!("no daemon ran; stopped what a previous one left running: {}", found.join(", "))
        })
    }

    fn status_without_daemon(&self, _service_mode: Option<String>) -> Result<Option<StatusReport>> {
        Ok(None)
    }

    fn logs(&self, service: Option<&str>, follow: bool, lines: usize, out: &mut dyn FnMut(&str) -> bool) -> Result<()> {
        let names: Vec<String> = match service {
            Some(s) => {
                self.check_service_name(s)?;
                vec![s.to_string()]
            }
            None => self.config().services.iter().map(|s| s.name.clone()).collect(),
        };
        let dir = &self.p.state_dir;
        let prefix = names.len() > 1;
        let width = names.iter().map(String::len).max().unwrap_or(0);
        let fmt = |name: &str, line: &str| if prefix { format!("{name:<width$} | {line}") } else { line.to_string() };
        let mut all: Vec<(String, String)> = Vec::new();
        for n in &names {
            for l in logfile::tail(&logfile::path(dir, n), lines) {
                all.push((n.clone(), l));
            }
        }
        // Lines start with an RFC 3339 UTC timestamp, so text order of that is time order; the
        // sort is stable, so lines of one service within the same millisecond keep their order.
        let stamp = |l: &str| l.split(' ').next().unwrap_or("").to_string();
        all.sort_by_cached_key(|(_, l)| stamp(l));
        let skip = all.len().saturating_sub(lines);
        for (n, l) in &all[skip..] {
            if !out(&fmt(n, l)) {
                return Ok(());
            }
        }
        if !follow {
            return Ok(());
        }
        let mut followers: Vec<(String, Follower)> =
            names.iter().map(|n| (n.clone(), Follower::from_end(&logfile::path(dir, n)))).collect();
        loop {
            for (n, f) in &mut followers {
                for l in f.poll() {
                    if !out(&fmt(n, &l)) {
                        return Ok(()); // reader went away (`| head`)
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn exec_command(&self, service: Option<&str>, argv: &[std::ffi::OsString]) -> Result<ExecCommand> {
        if service.is_some() {
            return Err(Failure::new(Code::Usage, "--service is for compose apps").into());
        }
        let config = self.config();
        let cwd = working_dir(&config.app, &self.p.config_path);
        let env = app_env(&config.app, None, &cwd)?;
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(&cwd).env_clear();
        for key in INHERITED_VARS {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        if let Some(name) = &config.app.user {
            if unsafe { libc::geteuid() } == 0 {
                let u = lookup_user(name).map_err(|e| Failure::new(Code::Config, e))?;
                cmd.uid(u.uid).gid(u.gid).env("USER", &u.name).env("LOGNAME", &u.name).env("HOME", &u.home);
            }
        }
        cmd.envs(env);
        let hint = format!("the command runs in {}, with the app's PATH", cwd.display());
        Ok((cmd, argv[0].to_string_lossy().into_owned(), Some(hint)))
    }

    fn run_one_off(
        &self,
        dir: &Path,
        cmd: &AppCommand,
        _what: &str,
        limit: Duration,
        line: &mut dyn FnMut(&str),
    ) -> Result<Ended> {
        let env = app_env(&self.config().app, None, dir)?;
        Ok(run_lines(cmd, &env, dir, limit, &|s| self.p.redactor.redact(s), line)?)
    }

    fn migrate(&self, dir: &Path, line: &mut dyn FnMut(&str)) -> Result<()> {
        run_on_host(&self.p, dir, &self.config().app.migrate, "migrate", line)
    }

    fn always_builds(&self) -> bool {
        false
    }

    fn build_release(&self, dir: &Path, _name: &str, line: &mut dyn FnMut(&str)) -> Result<()> {
        run_on_host(&self.p, dir, &self.config().app.build, "build", line)
    }

    /// Every service of the app runs inside the new release directory (its process's working
    /// directory, `/proc/<pid>/cwd`, symlinks resolved). A service that runs elsewhere — `cd`
    /// in its command, a `working_dir` pinned to a path — would pass the health gate on the old
    /// code.
    fn verify_release(&self, report: &StatusReport, release: &Path, line: &mut dyn FnMut(&str)) -> Result<()> {
        let release = std::fs::canonicalize(release).with_context(|| format!("resolving {}", release.display()))?;
        let mut cwds = Vec::new();
        for s in &report.services {
            let Some(pid) = s.pid else { continue };
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(|e| {
                anyhow!("cannot tell which release service {} runs (reading /proc/{pid}/cwd: {e})", s.name)
            })?;
            line(&format!("service {} (pid {pid}) runs in {}", s.name, cwd.display()));
            cwds.push((s.name.clone(), cwd));
        }
        let outside = caretaker_core::update::outside_release(&cwds, &release);
        if outside.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = outside.iter().map(|(n, d)| format!("{n} in {}", d.display())).collect();
        bail!(
            "the services passed their health check but do not run the new release {}: {} — check `app.working_dir` and the services' commands and `working_dir` (`caretaker config check`)",
            release.display(),
            list.join(", ")
        )
    }

    fn clean_up(&self, _keep: &[String], _line: &mut dyn FnMut(&str)) -> Result<()> {
        Ok(())
    }

    fn remove_one_offs(&self, _line: &mut dyn FnMut(&str)) -> Result<()> {
        // One-off commands run in caretaker's own process group with PR_SET_PDEATHSIG: none
        // outlives the caretaker that ran it.
        Ok(())
    }

    fn open_database(&self) -> caretaker_db::Result<Box<dyn caretaker_db::Database>> {
        match &self.config().database {
            Some(db) => caretaker_db::open(db, &self.p.redactor),
            None => Err(caretaker_db::Error::new(caretaker_db::ErrorKind::Other, "database", "no database configured")),
        }
    }

    fn database_service(&self) -> Option<&str> {
        None
    }

    fn start_database(&self, _dir: Option<&Path>) -> Result<()> {
        Ok(())
    }

    fn volumes_come_with_code(&self) -> bool {
        false
    }

    /// A service's working directory that does not exist (the supervisor cannot start it).
    fn check_machine(&self) -> MachineCheck {
        let cfg = self.config();
        let app_dir = working_dir(&cfg.app, &self.p.config_path);
        let mut dirs: Vec<PathBuf> = Vec::new();
        for s in &cfg.services {
            let d = s.working_dir.clone().unwrap_or_else(|| app_dir.clone());
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        let observed: Vec<String> = dirs
            .into_iter()
            .filter(|d| !d.is_dir())
            .map(|d| format!("services cannot start: {}", crate::appenv::missing_working_dir(&d, &self.p.state_dir)))
            .collect();
        MachineCheck {
            ok: true,
            lines: observed.iter().map(|w| format!("warning: {w}")).collect(),
            compose_json: None,
            observed,
        }
    }

    fn service_checks(&self) -> Vec<CheckResult> {
        Vec::new()
    }

    fn systemd_after(&self) -> Option<&'static str> {
        None
    }

    fn reload_refusals(&self, new: &Config) -> Vec<String> {
        if new.compose.is_some() {
            return vec!["the app switched between `services` and `compose`: that takes a daemon restart".to_string()];
        }
        Vec::new()
    }

    fn engine(&self) -> Engine {
        Engine::Processes
    }
}
