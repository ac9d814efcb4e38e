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

/// The largest secret file read (`*_file` keys): a password, a URL, a key.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

impl SecretSource for RealSecrets {
    fn read_file(&self, path: &Path) -> Result<String, String> {
        let bytes = read_regular_file(path, MAX_SECRET_FILE_BYTES).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        })?;
        String::from_utf8(bytes).map_err(|_| "the file is not valid UTF-8".to_string())
    }
    fn insecure(&self, path: &Path) -> Option<String> {
        insecure_file(path)
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

/// Reads a whole file that must be a regular file of at most `max` bytes: a device such as
/// /dev/zero would never end, a FIFO would block the open until some writer came.
pub fn read_regular_file(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = || Error::new(ErrorKind::InvalidInput, "not a regular file");
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    // O_NONBLOCK: should the path have become a FIFO since, the open does not wait.
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let too_large = || Error::new(ErrorKind::InvalidData, format!("larger than {max} bytes"));
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Why a file caretaker trusts (its config: the commands it runs, as root under the generated
/// unit; a secret file; the status token file) is not safe, as OpenSSH's StrictModes judges
/// it: the file and every directory above it must be owned by root or the user caretaker runs
/// as and not writable by group or others — except a directory with the sticky bit owned by
/// root (/tmp). `None` when it is safe, or when it cannot be looked at or is no regular file
/// (reading it then fails with its own message).
pub fn insecure_file(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let real = std::fs::canonicalize(path).ok()?;
    let me = unsafe { libc::geteuid() };
    let owner_ok = |uid: u32| uid == 0 || uid == me;
    let meta = std::fs::metadata(&real).ok()?;
    if !meta.is_file() {
        // Not ours to judge: reading it fails with "not a regular file".
        return None;
    }
    if !owner_ok(meta.uid()) {
        return Some(format!("{} is owned by another user (uid {}), who could change it", real.display(), meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "{} is writable by {} (mode {:04o})",
            real.display(),
            if meta.mode() & 0o002 != 0 { "every user" } else { "its group" },
            meta.mode() & 0o7777
        ));
    }
    for dir in real.ancestors().skip(1) {
        let Ok(m) = std::fs::metadata(dir) else { continue };
        if !owner_ok(m.uid()) {
            return Some(format!(
                "it is in directory {}, owned by another user (uid {}), who could replace it",
                dir.display(),
                m.uid()
            ));
        }
        let sticky_root = m.mode() & 0o1000 != 0 && m.uid() == 0;
        if m.mode() & 0o022 != 0 && !sticky_root {
            return Some(format!(
                "it is in directory {}, writable by {} (mode {:04o}), who could replace it",
                dir.display(),
                if m.mode() & 0o002 != 0 { "every user" } else { "its group" },
                m.mode() & 0o7777
            ));
        }
    }
    None
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
    if let Some(why) = insecure_file(path) {
        return Err(Failure::new(Code::Config, format!("refusing config file {}: {why}", path.display()))
            .hint("the config names the commands caretaker runs; make the file and its directories writable only by their owner (root or the user caretaker runs as), e.g. `chmod go-w FILE DIR`")
            .into());
    }
    let bytes = read_regular_file(path, config::MAX_CONFIG_BYTES).map_err(|e| {
        Failure::new(Code::Config, format!("cannot read config file {}: {e}", path.display()))
            .hint("check the path and that caretaker runs as a user who may read it")
    })?;
    let text = match config::decode(&bytes, path) {
        Ok(text) => text.to_string(),
        Err(diags) => return Ok(ConfigFile { text: String::from_utf8_lossy(&bytes).into_owned(), result: Err(diags) }),
    };
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
            // A staging clone's daemon and commands run the clone's config (docs/clones.md).
            Ok((path, crate::clonecfg::as_clone(loaded.config)?))
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
