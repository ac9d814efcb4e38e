//! The CLI side of the control socket: asking the daemon, starting one in the background when
//! `up` finds none, and waiting for the app to come up.

use crate::cli::Global;
use crate::exit::{Code, Failure};
use anyhow::{Context, Result};
use caretaker_supervisor::logfile;
use caretaker_supervisor::machine::{Health, Phase};
use caretaker_supervisor::protocol::{call, Request, Response, StatusReport};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The daemon's control socket.
fn socket_path(state_dir: &Path) -> std::path::PathBuf {
    caretaker_state::Layout::new(state_dir).socket()
}

/// Sends a request; `Ok(None)` when no daemon listens.
pub fn request(state_dir: &Path, req: &Request, timeout: Duration) -> Result<Option<Response>> {
    let sock = socket_path(state_dir);
    match call(&sock, req, timeout) {
        Ok(Response::Error { message }) => {
            Err(Failure::new(Code::Failure, format!("the daemon says: {message}")).into())
        }
        Ok(r) => Ok(Some(r)),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => Ok(None),
        Err(e) => Err(Failure::new(Code::Unavailable, format!("talking to the daemon at {}: {e}", sock.display()))
            .hint("check `caretaker status`; the daemon's own log says more")
            .into()),
    }
}

/// The flock a running daemon holds (one daemon per app).
pub fn daemon_lock_path(state_dir: &Path) -> std::path::PathBuf {
    caretaker_state::Layout::new(state_dir).daemon_lock()
}

/// Asks the daemon to stop its services and exit, and returns once it has exited (its lock is
/// free), so a new daemon can start right away. `Ok(false)`: no daemon was running.
pub fn stop_daemon(state_dir: &Path, timeout: Duration) -> Result<bool> {
    if request(state_dir, &Request::Down { exit_daemon: true }, timeout)?.is_none() {
        return Ok(false);
    }
    let deadline = Instant::now() + timeout;
    loop {
        match caretaker_state::AppLock::try_acquire(&daemon_lock_path(state_dir)) {
            Ok(_) => return Ok(true),
            Err(caretaker_state::LockError::Busy { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                return Err(Failure::new(Code::Unavailable, format!("the daemon did not exit: {e}")).into());
            }
        }
    }
}

/// Like [`request`], but no daemon is an error with the command to run.
pub fn request_running(state_dir: &Path, req: &Request, timeout: Duration) -> Result<Response> {
    request(state_dir, req, timeout)?.ok_or_else(|| no_daemon(state_dir))
}

pub fn no_daemon(state_dir: &Path) -> anyhow::Error {
    Failure::new(
        Code::Unavailable,
        format!("no caretaker daemon runs for this app (state dir {})", state_dir.display()),
    )
    .hint("start it with `caretaker up` (background) or `caretaker daemon` (foreground, e.g. under systemd)")
    .into()
}

pub fn status(state_dir: &Path) -> Result<Option<StatusReport>> {
    match request(state_dir, &Request::Status, Duration::from_secs(10))? {
        Some(Response::Status(s)) => Ok(Some(s)),
        Some(other) => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
        None => Ok(None),
    }
}

/// Starts `caretaker daemon` in the background (own session, output to
/// `<state dir>/daemon.log`) and waits until its socket answers.
pub fn start_background_daemon(global: &Global, config_path: &Path, state_dir: &Path) -> Result<()> {
    start_background_daemon_with(global, config_path, state_dir, &[]).map(|_| ())
}

/// [`start_background_daemon`] with extra environment variables for the daemon (a staging
/// clone's: `commands::clone`); returns the daemon's pid.
pub fn start_background_daemon_with(
    global: &Global,
    config_path: &Path,
    state_dir: &Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<u32> {
    let exe = std::env::current_exe().context("finding caretaker's own executable")?;
    let log_path = caretaker_state::Layout::new(state_dir).daemon_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config").arg(std::path::absolute(config_path)?).arg("--state-dir").arg(state_dir);
    if global.allow_world_readable_config {
        cmd.arg("--allow-world-readable-config");
    }
    cmd.arg("daemon").stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    // SAFETY: setsid is async-signal-safe. A new session: the daemon outlives this terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the daemon")?;
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            let tail = logfile::tail(&log_path, 10).join("\n");
            return Err(Failure::new(Code::Failure, format!("the daemon exited at once ({st}); its log:\n{tail}"))
                .hint(format!("the full log is {}", log_path.display()))
                .into());
        }
        if status(state_dir)?.is_some() {
            eprintln!("started the caretaker daemon (pid {}, log {})", child.id(), log_path.display());
            return Ok(child.id());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(Failure::new(Code::Failure, "the daemon did not open its control socket within 30s")
                .hint(format!("see {}", log_path.display()))
                .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a service counts as up for `up`.
pub fn service_up(s: &caretaker_supervisor::protocol::ServiceStatus) -> bool {
    s.state == Phase::Running && matches!(s.health, Health::Healthy | Health::None)
}

/// Polls the daemon until every service (or `only`) runs and is healthy. On failure the error
/// names the service, the reason and the last lines of its log.
pub fn wait_until_up(state_dir: &Path, only: Option<&str>, timeout: Duration) -> Result<StatusReport> {
    let started = Instant::now();
    loop {
        let report = status(state_dir)?.ok_or_else(|| no_daemon(state_dir))?;
        let wanted: Vec<_> = report.services.iter().filter(|s| only.is_none_or(|o| o == s.name)).collect();
        if wanted.iter().all(|s| service_up(s)) {
            return Ok(report);
        }
        let bad = wanted
            .iter()
            .find(|s| s.state == Phase::Failed || (s.state == Phase::Stopped && !s.waiting && s.last_exit.is_some()));
        let timed_out = started.elapsed() > timeout;
        if bad.is_some() || timed_out {
            let s = bad.or_else(|| wanted.iter().find(|s| !service_up(s))).expect("some service is not up");
            let why = s.reason.clone().or(s.last_exit.clone()).unwrap_or_else(|| format!("still {}", s.state));
            let head = if timed_out && bad.is_none() {
                format!("service {} did not become healthy within {}s: {why}", s.name, timeout.as_secs())
            } else {
                format!("service {} is {}: {why}", s.name, s.state)
            };
            let log = logfile::path(state_dir, &s.name);
            let tail = logfile::tail(&log, 15);
            let mut msg = head;
            if !tail.is_empty() {
                msg.push_str(&format!("\nlast lines of its log ({}):\n", log.display()));
                for l in tail {
                    msg.push_str("  ");
                    msg.push_str(&l);
                    msg.push('\n');
                }
            }
            return Err(Failure::new(Code::Failure, msg.trim_end().to_string())
                .hint(format!("`caretaker logs {}` shows more; fix it, then `caretaker up` again", s.name))
                .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether some process holds the `flock` on `path`, found in /proc/locks — without taking it:
/// a probe that took the lock, however briefly, could make the job that wants it fail as busy.
pub fn lock_is_held(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else { return false };
    let dev = meta.dev();
    // /proc/locks: "1: FLOCK  ADVISORY  WRITE 1234 08:01:123456 0 EOF" (major:minor in hex).
    let id = format!("{:02x}:{:02x}:{}", libc::major(dev), libc::minor(dev), meta.ino());
    std::fs::read_to_string("/proc/locks")
        .map(|text| text.lines().any(|l| l.contains("FLOCK") && l.split_whitespace().any(|f| f == id)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_held_flock_is_seen_without_taking_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.lock");
        let lock = caretaker_state::AppLock::try_acquire(&path).unwrap();
        assert!(super::lock_is_held(&path));
        drop(lock);
        assert!(!super::lock_is_held(&path));
        assert!(!super::lock_is_held(&dir.path().join("missing.lock")));
    }
}
