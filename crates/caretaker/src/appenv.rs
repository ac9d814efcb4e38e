//! The app's environment: what a service or one-off command of the app sees — config `env`,
//! `env_files`, working directory and user. Shared by `jobs run`, and later by the supervisor
//! and `exec`, so every process of the app gets the same environment.

use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_core::config::{App, EnvValue};
use caretaker_core::envfile::parse_env_file;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Variables for the app's processes: env files first (in order), then `env:` (which wins),
/// then the service's own `env:` when given.
pub fn app_env(
    app: &App,
    service_env: Option<&BTreeMap<String, EnvValue>>,
    working_dir: &Path,
) -> Result<Vec<(String, String)>> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for f in &app.env_files {
        let path: PathBuf = if f.is_absolute() { f.clone() } else { working_dir.join(f) };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Failure::new(Code::Config, format!("cannot read env file {}: {e}", path.display()))
                .hint("env_files are relative to the app's working_dir; create the file or remove it from the config")
        })?;
        let pairs = parse_env_file(&text)
            .map_err(|e| Failure::new(Code::Config, format!("env file {}: {e}", path.display())))?;
        vars.extend(pairs);
    }
    for (k, v) in &app.env {
        vars.insert(k.clone(), v.expose().to_string());
    }
    if let Some(env) = service_env {
        for (k, v) in env {
            vars.insert(k.clone(), v.expose().to_string());
        }
    }
    Ok(vars.into_iter().collect())
}

/// The working directory of the app's processes: `app.working_dir`, else the config's directory
/// — as an absolute path, also for a config given without a directory part (`caretaker.yml`,
/// whose parent is the empty path, which no process can run in).
pub fn working_dir(app: &App, config_path: &Path) -> PathBuf {
    app.working_dir.clone().unwrap_or_else(|| config_dir(config_path))
}

/// The directory holding the config file, absolute when the current directory is known.
pub fn config_dir(config_path: &Path) -> PathBuf {
    let absolute = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    match absolute.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The message for a working directory that does not exist, with the next step: under the
/// release pointer (`<state dir>/current`) it means no release is deployed yet.
pub fn missing_working_dir(cwd: &Path, state_dir: &Path) -> String {
    let current = caretaker_state::Layout::new(state_dir).current();
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if abs(cwd).starts_with(abs(&current)) && std::fs::symlink_metadata(&current).is_err() {
        format!(
            "working directory {} does not exist: no release is deployed yet — run `caretaker update` first",
            cwd.display()
        )
    } else {
        format!("working directory {} does not exist: create it, or correct `working_dir` in the config", cwd.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_without_a_directory_part_runs_in_the_current_directory() {
        let here = std::env::current_dir().unwrap();
        assert_eq!(config_dir(Path::new("caretaker.yml")), here);
        assert_eq!(config_dir(Path::new("./caretaker.yml")), here);
        assert_eq!(config_dir(Path::new("/etc/caretaker/caretaker.yml")), PathBuf::from("/etc/caretaker"));
    }
}
