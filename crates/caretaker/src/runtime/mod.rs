//! How this app runs: one trait, [`AppRuntime`], for everything that differs between an app
//! whose services caretaker's own supervisor runs as processes ([`process::ProcessRuntime`])
//! and an app that runs as a docker compose project ([`compose::ComposeRuntime`]): its
//! services without a daemon (stop, status, logs, a command in their environment), one-off
//! commands with a time limit, building and checking a release, where the database and its
//! client tools run, cleaning up after an update, and which supervision engine the daemon
//! runs.
//!
//! [`for_app`] is the one place that chooses between the two, from the config. Every other
//! module asks the runtime it is given; none looks at `config.compose` to decide
//! (docs/decisions.md, 2026-12-04).
//!
//! A runtime owns what it works on — the config, the config's path, the state directory and the
//! redactor — and borrows nothing from the command that made it. A staging clone (another
//! database, other ports, other file trees, another state directory) gets its own instance by
//! calling [`for_app`] with its own config and state directory.

pub mod compose;
pub mod process;

use crate::context::AppContext;
use crate::runner::Ended;
use anyhow::Result;
use caretaker_core::config::{Command as AppCommand, Config, Redactor};
use caretaker_observe::check::CheckResult;
use caretaker_supervisor::protocol::StatusReport;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one-off commands of an update or recover (build, migrations, the migration
/// check) may run.
pub const ONE_OFF_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a runtime works on. A clone makes one with its own config and state directory.
#[derive(Clone)]
pub struct Placement {
    pub config: Config,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub redactor: Redactor,
}

/// The daemon's supervision engine for a runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The built-in supervisor's state machines over child processes (`daemon::process`).
    Processes,
    /// The compose watcher over docker's containers (`daemon::compose`).
    Compose,
}

/// What `config check` learned from this machine about the config (beyond the pure
/// validation): lines for people (`error:`/`note:`/`warning:` prefixed), JSON, and whether
/// the config is still valid.
pub struct MachineCheck {
    pub ok: bool,
    pub lines: Vec<String>,
    /// Under `compose` in `config check --json` (compose apps only).
    pub compose_json: Option<serde_json::Value>,
    /// Warnings listed under `observed` in `config check --json`.
    pub observed: Vec<String>,
}

/// A command line for `exec`, the program's name and a hint for when it cannot be run.
pub type ExecCommand = (std::process::Command, String, Option<String>);

/// How this app runs. See the module documentation.
pub trait AppRuntime {
    /// For summaries: "compose project gb" or "3 services".
    fn describe(&self) -> String;
    /// Whether a staging clone of the app can be made on this runtime (docs/clones.md); the
    /// reason when not.
    fn can_clone(&self) -> Result<(), &'static str> {
        Ok(())
    }

    /// Where the app's code must be: a compose app's project directory, else the app's working
    /// directory (with `caretaker update`, `<state dir>/current`), absolute.
    fn code_dir(&self) -> PathBuf;

    /// Whether the app has services to start (a process app may have none).
    fn has_services(&self) -> bool;

    /// Whether `name` is a service of the app, as far as it can tell without a daemon; an error
    /// naming the services when it is not.
    fn check_service_name(&self, name: &str) -> Result<()>;

    /// What `down` stopped, for its message: "the compose project" / "3 service(s)".
    fn what_stops(&self) -> String;

    /// Stops what runs without a daemon (docker keeps a compose app's containers running; a
    /// SIGKILLed daemon leaves processes behind). The message says what was done.
    fn stop_without_daemon(&self) -> Result<String>;

    /// The services' status when no daemon answers: observed (compose: docker runs them
    /// anyway), or `None` when nothing runs without a daemon.
    fn status_without_daemon(&self, service_mode: Option<String>) -> Result<Option<StatusReport>>;

    /// The last `lines` lines of one service's output or all of them (merged by time), then
    /// with `follow` the new ones as they come; each goes to `out`, which returns `false` to
    /// end (the reader went away).
    fn logs(&self, service: Option<&str>, follow: bool, lines: usize, out: &mut dyn FnMut(&str) -> bool) -> Result<()>;

    /// The command line that runs `argv` in the app's environment (a compose app: in the
    /// container of `service`, default `compose.app_service`), for `exec` to replace itself
    /// with; the program's name and a hint for when it cannot be run.
    fn exec_command(&self, service: Option<&str>, argv: &[std::ffi::OsString]) -> Result<ExecCommand>;

    /// Runs one app command to its end or `limit` (a compose app: in a one-off container of
    /// `compose.app_service`), the code in `dir`; each output line (redacted) goes to `line`.
    /// `what` names the command in messages. `Err` when it could not be started.
    fn run_one_off(
        &self,
        dir: &Path,
        cmd: &AppCommand,
        what: &str,
        limit: Duration,
        line: &mut dyn FnMut(&str),
    ) -> Result<Ended>;

    /// Runs `cmds` one after the other with [`ONE_OFF_TIMEOUT`] each; the first that fails ends
    /// the run with an error.
    fn run_one_offs(&self, dir: &Path, cmds: &[AppCommand], what: &str, line: &mut dyn FnMut(&str)) -> Result<()> {
        for cmd in cmds {
            line(&format!("{what}: {}", cmd.argv().join(" ")));
            let ended = self.run_one_off(dir, cmd, what, ONE_OFF_TIMEOUT, line)?;
            if !ended.success() {
                anyhow::bail!("{what} command `{}` {}", cmd.argv().join(" "), ended.describe());
            }
        }
        Ok(())
    }

    /// Runs the app's migrations (`app.migrate`) against the code in `dir`, starting what they
    /// need first (a compose app's database service: one-off containers start no dependencies).
    fn migrate(&self, dir: &Path, line: &mut dyn FnMut(&str)) -> Result<()>;

    /// Whether every release has a build step (a compose app always makes its images), even
    /// with no `app.build`.
    fn always_builds(&self) -> bool;

    /// Builds the release exported into `dir` (directory name `name`): `app.build` in it, and
    /// for a compose app its images under the release's tags.
    fn build_release(&self, dir: &Path, name: &str, line: &mut dyn FnMut(&str)) -> Result<()>;

    /// After an update's health gate: that the services run the new release in `release`.
    fn verify_release(&self, report: &StatusReport, release: &Path, line: &mut dyn FnMut(&str)) -> Result<()>;

    /// Removes what updates leave behind and no rollback needs (`keep`: the releases that
    /// remain). Problems go to `line`: the update itself succeeded.
    fn clean_up(&self, keep: &[String], line: &mut dyn FnMut(&str)) -> Result<()>;

    /// Stops and removes one-off commands an interrupted run left running (before the
    /// database is reverted under them).
    fn remove_one_offs(&self, line: &mut dyn FnMut(&str)) -> Result<()>;

    /// The app's database adapter, with its client tools where the database runs (on the host,
    /// or inside the container of `database.compose_service`).
    fn open_database(&self) -> caretaker_db::Result<Box<dyn caretaker_db::Database>>;

    /// The service the database runs in, when the app runs it (`database.compose_service`).
    fn database_service(&self) -> Option<&str>;

    /// Starts the database where the app runs it (and only it), with the code in `dir`
    /// (default: the project's usual directory), and waits until it answers. Nothing to do for
    /// a database outside the app.
    fn start_database(&self, dir: Option<&Path>) -> Result<()>;

    /// Whether the app's named volumes are known only from the code (a compose file): on a
    /// machine without a release, not before the code is deployed.
    fn volumes_come_with_code(&self) -> bool;

    /// What `config check` sees on this machine about the config.
    fn check_machine(&self) -> MachineCheck;

    /// `caretaker check`'s results about the services themselves (a compose app's `command`
    /// probes inside the containers).
    fn service_checks(&self) -> Vec<CheckResult>;

    /// A unit systemd must start first (`docker.service` for compose).
    fn systemd_after(&self) -> Option<&'static str>;

    /// What a live reload to `new` cannot do without a daemon restart.
    fn reload_refusals(&self, new: &Config) -> Vec<String>;

    /// The daemon's supervision engine for this runtime.
    fn engine(&self) -> Engine;
}

/// The runtime the config chooses: the one place that looks at whether the app has a
/// `compose:` section.
pub fn for_app(placement: Placement) -> Box<dyn AppRuntime> {
    if placement.config.compose.is_some() {
        Box::new(compose::ComposeRuntime::new(placement))
    } else {
        Box::new(process::ProcessRuntime::new(placement))
    }
}

/// [`for_app`] from a config alone (its state directory as `--state-dir`, the environment or
/// the config say), for commands that open no state store (`config check`, `exec`).
pub fn for_config(config: &Config, config_path: &Path, state_dir: &Path) -> Box<dyn AppRuntime> {
    for_app(Placement {
        config: config.clone(),
        config_path: config_path.to_path_buf(),
        state_dir: state_dir.to_path_buf(),
        redactor: Redactor::new(config.secrets()),
    })
}

impl AppContext {
    /// This app's runtime.
    pub fn runtime(&self) -> Box<dyn AppRuntime> {
        for_app(Placement {
            config: self.config.clone(),
            config_path: self.config_path.clone(),
            state_dir: self.store.dir().to_path_buf(),
            redactor: self.redactor.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        let text = format!("version: 1\napp: {{ name: gb }}\n{yaml}");
        caretaker_core::config::load(
            &text,
            Path::new("/srv/gb/caretaker.yml"),
            None,
            &caretaker_core::config::NoSecrets,
        )
        .unwrap()
        .config
    }

    #[test]
    fn the_config_chooses_the_runtime_once() {
        let (state, path) = (Path::new("/var/lib/caretaker/gb"), Path::new("/srv/gb/caretaker.yml"));
        let process_config = config("services: { web: { command: [sleep, '9'] } }\n");
        let compose_config = config("compose: { project: gb }\n");
        let process = for_config(&process_config, path, state);
        assert_eq!(process.engine(), Engine::Processes);
        assert_eq!(process.describe(), "1 service");
        assert!(!process.always_builds() && process.systemd_after().is_none());
        assert!(process.check_service_name("web").is_ok() && process.check_service_name("db").is_err());
        assert_eq!(process.code_dir(), Path::new("/srv/gb"));
        let compose = for_config(&compose_config, path, state);
        assert_eq!(compose.engine(), Engine::Compose);
        assert_eq!(compose.describe(), "compose project gb");
        assert!(compose.always_builds() && compose.systemd_after() == Some("docker.service"));
        // Switching engines takes a daemon restart, both ways.
        assert_eq!(process.reload_refusals(&compose_config).len(), 1);
        assert_eq!(compose.reload_refusals(&process_config).len(), 1);
        assert!(process.reload_refusals(&process_config).is_empty());
        assert!(compose.reload_refusals(&compose_config).is_empty());
    }

    #[test]
    fn a_runtime_works_on_its_own_state_directory() {
        // A clone: the same app with another state directory (and its own database, ports
        // and file trees in its config) gets a runtime of its own.
        let live = tempfile::tempdir().unwrap();
        let clone = tempfile::tempdir().unwrap();
        let config = config("services: { web: { command: [sleep, '9'] } }\n");
        for (dir, text) in [(live.path(), "live"), (clone.path(), "clone")] {
            let p = caretaker_supervisor::logfile::path(dir, "web");
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let mut log = caretaker_supervisor::logfile::RotatingLog::open(&p, 1 << 20, 1).unwrap();
            log.write_line("out", text).unwrap();
        }
        let r = for_config(&config, Path::new("/srv/gb/caretaker.yml"), clone.path());
        let mut lines = Vec::new();
        r.logs(Some("web"), false, 10, &mut |l| {
            lines.push(l.to_string());
            true
        })
        .unwrap();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with("clone"), "{lines:?}");
    }

    #[test]
    fn the_state_layout_agrees_with_the_supervisors_own_names() {
        let d = Path::new("/var/lib/caretaker/gb");
        let l = caretaker_state::Layout::new(d);
        assert_eq!(l.service_logs(), caretaker_supervisor::logfile::dir(d));
        assert_eq!(l.socket(), d.join(caretaker_supervisor::protocol::SOCKET_NAME));
    }
}
