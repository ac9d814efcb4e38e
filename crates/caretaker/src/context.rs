//! Finding and loading the config, and opening the state store: what every command that works
//! on an app needs first.

use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_core::config::{self, Config, Diagnostics, Redactor, SecretSource};
use caretaker_state::Store;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Secrets from the real file system and environment.
pub struct RealSecrets;

impl SecretSource for RealSecrets {
    fn read_file(&self, path: &Path) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        })
    }
    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn file_mode(&self, path: &Path) -> Option<u32> {
        std::fs::metadata(path).ok().map(|m| m.permissions().mode())
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Where to look for the config, in order.
pub fn config_candidates(explicit: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
    if let Some(p) = explicit {
        return vec![(p.to_path_buf(), "--config")];
    }
    if let Some(p) = std::env::var_os("CARETAKER_CONFIG").filter(|v| !v.is_empty()) {
        return vec![(PathBuf::from(p), "$CARETAKER_CONFIG")];
    }
    vec![
        (PathBuf::from("caretaker.yml"), "current directory"),
        (PathBuf::from("/etc/caretaker/caretaker.yml"), "system default"),
    ]
}

/// The config file to use; an explicit choice that does not exist is an error, not a fallback.
pub fn find_config(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidates = config_candidates(explicit);
    for (p, _) in &candidates {
        if p.exists() {
            return Ok(p.clone());
        }
    }
    let looked: Vec<String> = candidates.iter().map(|(p, why)| format!("{} ({why})", p.display())).collect();
    Err(Failure::new(Code::Config, format!("no config file found; looked at: {}", looked.join(", ")))
        .hint("write one with `caretaker init --app NAME`, or point to it with --config FILE")
        .into())
}

/// A config file read and parsed: the text (for rendering diagnostics) and the outcome.
pub struct ConfigFile {
    pub text: String,
    pub result: Result<config::Loaded, Diagnostics>,
}

pub fn read_config(path: &Path, allow_world_readable: bool) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(Code::Config, format!("cannot read config file {}: {e}", path.display()))
            .hint("check the path and that caretaker runs as a user who may read it")
    })?;
    let mode = std::fs::metadata(path).ok().map(|m| m.permissions().mode());
    let mut result = config::load(&text, path, mode, &RealSecrets);
    if allow_world_readable {
        result = match result {
            Err(mut d) => {
                config::allow_world_readable(&mut d);
                if d.has_errors() {
                    Err(d)
                } else {
                    config::load(&text, path, None, &RealSecrets).map(|mut l| {
                        l.warnings.0.extend(d.0);
                        l
                    })
                }
            }
            ok => ok,
        };
    }
    Ok(ConfigFile { text, result })
}

/// Loads a valid config or fails with every problem rendered. Warnings go to stderr.
pub fn load_config(explicit: Option<&Path>, allow_world_readable: bool) -> Result<(PathBuf, Config)> {
    let path = find_config(explicit)?;
    let file = read_config(&path, allow_world_readable)?;
    match file.result {
        Ok(loaded) => {
            if !loaded.warnings.is_empty() {
                eprint!("{}", loaded.warnings.render(&file.text));
            }
            Ok((path, loaded.config))
        }
        Err(diags) => {
            eprint!("{}", diags.render(&file.text));
            Err(Failure::new(Code::Config, format!("config file {} is invalid", path.display()))
                .hint("fix the problems above; `caretaker config check` shows them again")
                .into())
        }
    }
}

/// The state directory for an app: --state-dir / $CARETAKER_STATE_DIR, then the config's
/// `state_dir`, then /var/lib/caretaker/<app>.
pub fn state_dir(explicit: Option<&Path>, cfg: &Config) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| cfg.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from("/var/lib/caretaker").join(&cfg.app.name))
}

/// Everything a command that works on the app needs.
/// Set to `schedule` by the daemon's scheduler on the `caretaker` processes it starts.
pub const TRIGGER_ENV: &str = "CARETAKER_TRIGGER";

/// What started this command, for the job log: `schedule` when the daemon's scheduler did
/// (it sets [`TRIGGER_ENV`]), else `cli`. Commands that record jobs pass this to `start_job`.
pub fn trigger() -> caretaker_core::job::Trigger {
    std::env::var(TRIGGER_ENV)
        .ok()
        .and_then(|s| caretaker_core::job::Trigger::parse(&s))
        .unwrap_or(caretaker_core::job::Trigger::Cli)
}

pub struct AppContext {
    pub config_path: PathBuf,
    pub config: Config,
    pub store: Store,
    pub redactor: Redactor,
}

pub fn open_app(global: &crate::cli::Global) -> Result<AppContext> {
    let (config_path, config) = load_config(global.config.as_deref(), global.allow_world_readable_config)?;
    let redactor = Redactor::new(config.secrets());
    let dir = state_dir(global.state_dir.as_deref(), &config);
    let store = Store::open(&dir, redactor.clone())?;
    Ok(AppContext { config_path, config, store, redactor })
}
