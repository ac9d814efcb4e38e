//! The compose command line: finding it (`docker compose` v2 first, then `docker-compose` v1)
//! and running it on one project with fixed `-p`, `--project-directory` and `-f` arguments, so
//! every command caretaker runs names the same project whatever the current directory is.
//!
//! Everything that *changes* the project (up, stop, restart, build, pull, run) goes through
//! the compose CLI: only it knows the compose file format (docs/decisions.md).

use crate::error::{Error, ErrorKind, Result};
use crate::model::{parse_config, ProjectModel};
use crate::run::{self, Ended, Redact};
use caretaker_core::config::ComposeCli;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long a compose command that starts or stops containers may take beyond the stop
/// timeout (image pulls for `up` are not expected: caretaker builds or pulls first).
pub const OP_SLACK: Duration = Duration::from_secs(300);
/// Builds and pulls.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);
const QUICK: Duration = Duration::from_secs(60);

/// Which compose is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `docker compose` (v2 plugin).
    V2,
    /// `docker-compose` (v1, Python).
    V1,
}

/// A compose command line that was found to work.
#[derive(Clone, Debug)]
pub struct Cli {
    pub flavour: Flavour,
    pub version: String,
    program: PathBuf,
    prefix: Vec<String>,
}

impl Cli {
    /// Finds the compose command line `choice` asks for. `auto` tries `docker compose` first.
    pub fn detect(choice: ComposeCli) -> Result<Cli> {
        let v2 = || probe("docker", &["compose"], Flavour::V2);
        let v1 = || probe("docker-compose", &[], Flavour::V1);
        let found = match choice {
            ComposeCli::Auto => v2().or_else(v1),
            ComposeCli::DockerCompose => v2(),
            ComposeCli::DockerDashCompose => v1(),
        };
        found.ok_or_else(|| {
            let which = match choice {
                ComposeCli::Auto => "neither `docker compose` nor `docker-compose` works",
                ComposeCli::DockerCompose => "`docker compose` (the v2 plugin) does not work",
                ComposeCli::DockerDashCompose => "`docker-compose` does not work",
            };
            Error::new(ErrorKind::ToolMissing, "compose", which).hint(
                "install the compose plugin (`docker-compose-plugin`) or Debian's `docker-compose`, or choose the other one with `compose.cli`",
            )
        })
    }

    /// The command line as text (`docker compose` / `docker-compose`).
    pub fn name(&self) -> &'static str {
        match self.flavour {
            Flavour::V2 => "docker compose",
            Flavour::V1 => "docker-compose",
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.prefix);
        c
    }
}

fn probe(program: &str, prefix: &[&str], flavour: Flavour) -> Option<Cli> {
    let out = Command::new(program).args(prefix).args(["version", "--short"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().trim_start_matches('v').to_string();
    // An old docker CLI treats `compose` as an unknown command but may still exit 0 with help.
    if !version.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(Cli {
        flavour,
        version,
        program: PathBuf::from(program),
        prefix: prefix.iter().map(|s| s.to_string()).collect(),
    })
}

/// One compose project: the CLI and the arguments that name the project.
#[derive(Clone)]
pub struct Project {
    pub cli: Cli,
    pub name: String,
    /// The project directory (compose files and build contexts are relative to it).
    pub dir: PathBuf,
    /// Compose files, absolute; empty: compose's default file in `dir`.
    pub files: Vec<PathBuf>,
    /// The environment compose runs with (for `${VAR}` in compose files): the app's env.
    pub env: Vec<(String, String)>,
    /// A compose file passed last *if it exists when a command runs* (caretaker's image pins
    /// in the project directory: a release switch changes them under a running daemon).
    pub pins: Option<PathBuf>,
    pub redact: Redact,
    /// Why the project directory may be missing and what to do, for the error when it is.
    pub missing_dir: (String, String),
}

impl Project {
    /// `files` relative to `dir` are made absolute; an override file, when it exists, comes last.
    pub fn new(cli: Cli, name: &str, dir: &Path, files: &[PathBuf], redact: Redact) -> Project {
        let files = files.iter().map(|f| if f.is_absolute() { f.clone() } else { dir.join(f) }).collect();
        Project {
            cli,
            name: name.to_string(),
            dir: dir.to_path_buf(),
            files,
            env: Vec::new(),
            pins: None,
            redact,
            missing_dir: (String::new(), "create it, or point the config at the directory of the compose files".into()),
        }
    }

    /// What the error for a missing project directory says after "does not exist", and its
    /// hint (a release directory not deployed yet needs `caretaker update`, not docker).
    pub fn with_missing_dir(mut self, why: &str, hint: &str) -> Project {
        self.missing_dir = (why.to_string(), hint.to_string());
        self
    }

    /// Fails when the project directory is missing: compose cannot run there.
    pub fn require_dir(&self) -> Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        let (why, hint) = &self.missing_dir;
        Err(Error::new(
            ErrorKind::NotFound,
            format!("compose project {}", self.name),
            format!("project directory {} does not exist{why}", self.dir.display()),
        )
        .hint(hint.clone()))
    }

    /// Passes `file` after the others whenever it exists (see [`Project::pins`]).
    pub fn with_pins(mut self, file: &Path) -> Project {
        self.pins = Some(file.to_path_buf());
        self
    }

    pub fn with_env(mut self, env: Vec<(String, String)>) -> Project {
        self.env = env;
        self
    }

    /// `compose -p NAME --project-directory DIR -f F... ARGS`, run in `DIR`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.cli.command();
        c.arg("-p").arg(&self.name).arg("--project-directory").arg(&self.dir);
        let pins: Vec<&PathBuf> = self.pins.iter().filter(|p| p.is_file()).collect();
        // With any `-f`, compose no longer looks for its default files: name them.
        let defaults = if self.files.is_empty() && !pins.is_empty() { default_files(&self.dir) } else { Vec::new() };
        for f in self.files.iter().chain(&defaults).chain(pins) {
            c.arg("-f").arg(f);
        }
        c.args(args).current_dir(&self.dir).envs(self.env.iter().map(|(k, v)| (k, v)));
        // No colours or progress bars in logs.
        c.env("COMPOSE_INTERACTIVE_NO_CLI", "1").env("NO_COLOR", "1");
        c
    }

    fn what(&self, sub: &str) -> String {
        format!("{} {sub} (project {})", self.cli.name(), self.name)
    }

    fn checked(&self, args: &[&str], limit: Duration, each_line: &mut dyn FnMut(&str)) -> Result<Ended> {
        self.require_dir()?;
        let what = self.what(args[0]);
        let ended = run::run(self.command(args), &what, limit, &self.redact, true, each_line)?;
        if !ended.success() {
            return Err(run::failure(&what, &ended));
        }
        Ok(ended)
    }

    /// The project as `compose config` sees it (files merged, variables interpolated).
    pub fn model(&self) -> Result<ProjectModel> {
        let out = self.checked(&["config"], QUICK, &mut |_| {})?;
        parse_config(&out.stdout, &self.name).map_err(|e| Error::new(ErrorKind::Failed, self.what("config"), e))
    }

    /// `up -d --remove-orphans [SERVICES]`: creates or recreates what changed and starts it.
    pub fn up(&self, services: &[String], stop_timeout: Duration, each_line: &mut dyn FnMut(&str)) -> Result<()> {
        let mut args = vec!["up", "-d", "--remove-orphans"];
        args.extend(services.iter().map(String::as_str));
        self.checked(&args, stop_timeout + OP_SLACK, each_line).map(|_| ())
    }

    /// `stop -t SECS [SERVICES]`.
    pub fn stop(&self, services: &[String], stop_timeout: Duration, each_line: &mut dyn FnMut(&str)) -> Result<()> {
        let t = stop_timeout.as_secs().to_string();
        let mut args = vec!["stop", "-t", &t];
        args.extend(services.iter().map(String::as_str));
        self.checked(&args, stop_timeout + OP_SLACK, each_line).map(|_| ())
    }

    /// `restart -t SECS [SERVICES]`.
    pub fn restart(&self, services: &[String], stop_timeout: Duration, each_line: &mut dyn FnMut(&str)) -> Result<()> {
        let t = stop_timeout.as_secs().to_string();
        let mut args = vec!["restart", "-t", &t];
        args.extend(services.iter().map(String::as_str));
        self.checked(&args, stop_timeout + OP_SLACK, each_line).map(|_| ())
    }

    /// `build [SERVICES]`.
    pub fn build(&self, services: &[String], each_line: &mut dyn FnMut(&str)) -> Result<()> {
        let mut args = vec!["build"];
        args.extend(services.iter().map(String::as_str));
        self.checked(&args, BUILD_TIMEOUT, each_line).map(|_| ())
    }

    /// `pull [SERVICES]`.
    pub fn pull(&self, services: &[String], each_line: &mut dyn FnMut(&str)) -> Result<()> {
        let mut args = vec!["pull"];
        args.extend(services.iter().map(String::as_str));
        self.checked(&args, BUILD_TIMEOUT, each_line).map(|_| ())
    }

    /// `run --rm --no-deps -T SERVICE ARGV...`: a one-off container of the service's image,
    /// with the service's environment and volumes (migrations). Returns how it ended.
    pub fn run_oneoff(
        &self,
        service: &str,
        argv: &[String],
        limit: Duration,
        each_line: &mut dyn FnMut(&str),
    ) -> Result<Ended> {
        // A name of its own: when the time limit passes, killing the compose client does not
        // stop the container, so caretaker removes it by this name.
        self.require_dir()?;
        let name = oneoff_name(&self.name, service);
        let mut args: Vec<&str> = vec!["run", "--rm", "--no-deps", "-T", "--name", &name, service];
        args.extend(argv.iter().map(String::as_str));
        let started = std::time::Instant::now();
        let ended = run::run(self.command(&args), &self.what("run"), limit, &self.redact, false, each_line);
        if !matches!(&ended, Ok(e) if e.success()) {
            // `--rm` removed a container that ended by itself; one still running is stopped and
            // removed (a missing one is no error).
            let docker = crate::Docker::new(self.redact.clone());
            let _ =
                run::run(docker.command(&["rm", "-f", &name]), "docker rm", QUICK, &self.redact, false, &mut |_| {});
        }
        ended.map_err(|e| match e.kind() {
            ErrorKind::Failed if started.elapsed() >= limit => Error::new(
                ErrorKind::Failed,
                self.what("run"),
                format!(
                    "`{}` in a one-off container of {service} did not finish within {}s; the container was removed",
                    argv.join(" "),
                    limit.as_secs()
                ),
            )
            .hint("raise the command's timeout, or find out why it hangs (`caretaker logs`)"),
            _ => e,
        })
    }

    /// `exec [-T] SERVICE ARGV...` as a command for the caller to run (interactive `exec`).
    pub fn exec_command(&self, service: &str, argv: &[String], tty: bool) -> Command {
        let mut args: Vec<&str> = vec!["exec"];
        if !tty {
            args.push("-T");
        }
        args.push(service);
        args.extend(argv.iter().map(String::as_str));
        self.command(&args)
    }

    /// `logs [-f] --tail N [-t] [SERVICE]` as a command for the caller to run.
    pub fn logs_command(&self, service: Option<&str>, follow: bool, tail: usize) -> Command {
        let tail = tail.to_string();
        let mut args: Vec<&str> = vec!["logs", "--no-color", "--timestamps", "--tail", &tail];
        if follow {
            args.push("--follow");
        }
        if let Some(s) = service {
            args.push(s);
        }
        self.command(&args)
    }
}

/// The files compose reads by default in `dir` (the first of its default names, and that
/// file's `.override` companion when present).
pub fn default_files(dir: &Path) -> Vec<PathBuf> {
    for (name, over) in [
        ("compose.yaml", "compose.override.yaml"),
        ("compose.yml", "compose.override.yml"),
        ("docker-compose.yml", "docker-compose.override.yml"),
        ("docker-compose.yaml", "docker-compose.override.yaml"),
    ] {
        if dir.join(name).is_file() {
            let mut v = vec![dir.join(name)];
            if dir.join(over).is_file() {
                v.push(dir.join(over));
            }
            return v;
        }
    }
    Vec::new()
}

/// A container name for a one-off run of `service`, unique on this host: the project and
/// service (as compose names them) plus the process id and the time.
fn oneoff_name(project: &str, service: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{project}_{service}_run_caretaker_{}_{:x}", std::process::id(), nanos % (1 << 40))
}
