//! The compose runtime's glue (docs/compose.md): the app's compose project as the config
//! describes it — which compose command line, project name, directory, files, the image pins
//! of the current release and the app's environment for `${VAR}` interpolation — and the
//! settings the watcher takes from the config.

use crate::appenv::{app_env, working_dir};
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_compose::model::ProjectModel;
use caretaker_compose::run::Redact;
use caretaker_compose::watch::WatchSpec;
use caretaker_compose::{Cli, Project};
use caretaker_core::config::{Compose, Config, CrashLoop, ImageSource, Redactor};
use caretaker_supervisor::machine::HealthSpec;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The compose file caretaker writes into a release directory to pin each service to the
/// image built (or pulled) for that release; it is passed after the app's own files.
pub const IMAGES_OVERRIDE: &str = ".caretaker-images.yml";

/// The config's compose section, or a config error for commands that need it.
pub fn section(config: &Config) -> Result<&Compose> {
    config.compose.as_ref().ok_or_else(|| {
        Failure::new(Code::Config, "the config has no `compose:` section")
            .hint("this command is for compose apps")
            .into()
    })
}

/// Redaction of compose and docker output with every secret of the config.
pub fn redact(redactor: &Redactor) -> Redact {
    let r = redactor.clone();
    std::sync::Arc::new(move |s: &str| r.redact(s))
}

/// The project directory: `compose.project_dir`, else the app's working directory (with
/// `caretaker update`, `<state dir>/current`: the current release).
pub fn project_dir(config: &Config, config_path: &Path) -> PathBuf {
    let c = config.compose.as_ref();
    let dir = c.and_then(|c| c.project_dir.clone()).unwrap_or_else(|| working_dir(&config.app, config_path));
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The app's compose project, in its usual directory.
pub fn project(config: &Config, config_path: &Path, redactor: &Redactor) -> Result<Project> {
    project_at(config, config_path, redactor, &project_dir(config, config_path))
}

/// The app's compose project with `dir` as the project directory (a release being built).
pub fn project_at(config: &Config, config_path: &Path, redactor: &Redactor, dir: &Path) -> Result<Project> {
    let c = section(config)?;
    let cli = Cli::detect(c.cli)?;
    // The app's env (env files, `env:`) is compose's environment, so `${VAR}` in the compose
    // file reaches secrets without writing them anywhere.
    let env = app_env(&config.app, None, &working_dir(&config.app, config_path))?;
    let mut p = Project::new(cli, &c.project, dir, &c.files, redact(redactor)).with_env(env);
    let pins = dir.join(IMAGES_OVERRIDE);
    if pins.is_file() {
        p = p.with_override(&pins);
    }
    Ok(p)
}

/// The watcher's settings for these services (the compose file's), from `compose.services`.
pub fn watch_specs(config: &Config, names: &[String]) -> Vec<WatchSpec> {
    let c = config.compose.as_ref();
    names
        .iter()
        .map(|n| {
            let s = c.and_then(|c| c.service(n));
            WatchSpec {
                name: n.clone(),
                health: s.and_then(|s| s.health.as_ref()).map(|h| HealthSpec {
                    interval: h.interval,
                    retries: h.retries,
                    start_period: h.start_period,
                }),
                crash_loop: s
                    .map(|s| s.crash_loop)
                    .unwrap_or(CrashLoop { restarts: 5, within: Duration::from_secs(60) }),
            }
        })
        .collect()
}

/// The services an update keeps running while it stops the app: `compose.keep_running`, and
/// when images are built, every service that is not built from the app's sources (databases,
/// caches, queues use images made elsewhere).
pub fn keep_running(config: &Config, model: &ProjectModel) -> Vec<String> {
    let Some(c) = &config.compose else { return Vec::new() };
    let mut keep = c.keep_running.clone();
    if c.images == ImageSource::Build {
        keep.extend(model.services.iter().filter(|s| !s.build).map(|s| s.name.clone()));
    }
    keep.sort();
    keep.dedup();
    keep
}

/// The settings of services the config names but the compose file does not have.
pub fn unknown_services(config: &Config, model: &ProjectModel) -> Vec<String> {
    let Some(c) = &config.compose else { return Vec::new() };
    let named = c.services.iter().map(|s| &s.name).chain(c.app_service.iter()).chain(c.keep_running.iter());
    let mut out: Vec<String> = named.filter(|n| model.service(n).is_none()).cloned().collect();
    out.sort();
    out.dedup();
    out
}
