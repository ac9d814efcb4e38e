//! The database inside backups: its dump as a [`StreamSource`] of the snapshot (named
//! [`STREAM_NAME`]), and restoring that stream into the database through the adapter — both
//! streamed, never through a temporary file or memory.

use caretaker_backup::{BackupEngine, StreamSource};
use caretaker_db::{Database, RestoreMode, Restored};
use std::io::Write;

/// The name of the database dump inside a snapshot (`/caretaker-streams/database`).
pub const STREAM_NAME: &str = "database";

/// The database dump, produced on the fly while the archiver reads it.
pub struct DumpStream {
    db: Box<dyn Database>,
}

impl DumpStream {
    pub fn new(db: Box<dyn Database>) -> Self {
        DumpStream { db }
    }
}

impl StreamSource for DumpStream {
    fn name(&self) -> &str {
        STREAM_NAME
    }

    fn write_to(&mut self, out: &mut dyn Write) -> std::io::Result<u64> {
        self.db.dump(out).map_err(|e| std::io::Error::other(format!("database dump: {e}")))
    }
}

/// Why restoring the database stream failed: the engine (reading the snapshot) or the
/// adapter (writing the database). When both fail, the adapter's error is the cause (the
/// engine then only saw the pipe close).
pub enum RestoreDbError {
    Engine(caretaker_backup::Error),
    Db(caretaker_db::Error),
    Io(std::io::Error),
}

/// Streams the snapshot's database dump into the database: the engine writes into a pipe on
/// this thread, the adapter reads the other end on its own thread.
pub fn restore_database(
    repo: &dyn BackupEngine,
    snapshot: &str,
    db: &dyn Database,
    mode: RestoreMode,
) -> Result<(Restored, u64), RestoreDbError> {
    let (mut reader, writer) = std::io::pipe().map_err(RestoreDbError::Io)?;
    std::thread::scope(|s| {
        let restorer = s.spawn(move || db.restore(&mut reader, mode));
        let writer = KillAfterFirstWrite { inner: writer };
        let mut writer =
            crate::progress::writer(std::io::BufWriter::with_capacity(1 << 20, writer), "restoring the database");
        let streamed = repo.restore_stream(Some(snapshot), STREAM_NAME, &mut writer).and_then(|n| {
            writer.flush().map_err(|e| {
                caretaker_backup::Error::new(
                    caretaker_backup::ErrorKind::Other,
                    format!("writing the dump to the database: {e}"),
                )
            })?;
            Ok(n)
        });
        // Closing our end tells the adapter the dump has ended (or was cut short: a
        // PostgreSQL restore then fails and rolls back; it is one transaction).
        drop(writer);
        let restored = restorer.join().unwrap_or_else(|_| {
            Err(caretaker_db::Error::new(caretaker_db::ErrorKind::Other, db.target(), "the restore thread panicked"))
        });
        match (streamed, restored) {
            (Ok(n), Ok(r)) => Ok((r, n)),
            (_, Err(e)) => Err(RestoreDbError::Db(e)),
            (Err(e), Ok(_)) => Err(RestoreDbError::Engine(e)),
        }
    })
}

/// The pipe into the adapter. Debug builds: with the kill hook set to `database.streaming`
/// (`update::KILL_HOOK_ENV`), caretaker SIGKILLs itself once the first bytes of the dump are in
/// the pipe — a restore killed half-way, for the fault-injection tests.
struct KillAfterFirstWrite<W: Write> {
    inner: W,
}

impl<W: Write> Write for KillAfterFirstWrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        #[cfg(debug_assertions)]
        if std::env::var(crate::update::KILL_HOOK_ENV).is_ok_and(|v| v == "database.streaming") {
            let _ = self.inner.flush();
            // SAFETY: plain syscalls.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl std::fmt::Display for RestoreDbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreDbError::Engine(e) => write!(f, "{}", e.message),
            RestoreDbError::Db(e) => write!(f, "{e}"),
            RestoreDbError::Io(e) => write!(f, "creating a pipe for the database restore: {e}"),
        }
    }
}

impl RestoreDbError {
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            RestoreDbError::Engine(e) => crate::exit::backup_failure(e).into(),
            RestoreDbError::Db(e) => e.into(),
            RestoreDbError::Io(e) => anyhow::Error::new(e).context("creating a pipe for the database restore"),
        }
    }
}

/// The app's version for snapshot tags: the first line of `VERSION` in the app's working
/// directory (the current release), when there is one.
pub fn app_version(cfg: &caretaker_core::config::Config, config_path: &std::path::Path) -> Option<String> {
    let dir = crate::appenv::working_dir(&cfg.app, config_path);
    let text = std::fs::read_to_string(dir.join("VERSION")).ok()?;
    let v = text.lines().next()?.trim();
    let ok = !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_graphic() && c != ',');
    ok.then(|| v.to_string())
}

/// After the app's database was replaced under it (a restore, a revert): the running services
/// held connections to the database that was renamed away or ended, and a pooled connection
/// would fail its next request. Restarts every service the daemon runs (not the database's own
/// compose service), so each opens fresh connections; returns their names. No daemon, or
/// nothing running: nothing to do.
pub fn restart_running_services(app: &crate::context::AppContext) -> anyhow::Result<Vec<String>> {
    use caretaker_supervisor::machine::Phase;
    use caretaker_supervisor::protocol::{Request, Response};
    let state_dir = app.store.dir();
    let timeout = std::time::Duration::from_secs(10);
    let Some(Response::Status(report)) = crate::control::request(state_dir, &Request::Status, timeout)? else {
        return Ok(Vec::new());
    };
    let runtime = app.runtime();
    let db_service = runtime.database_service().map(str::to_string);
    let running: Vec<String> = report
        .services
        .iter()
        .filter(|s| matches!(s.state, Phase::Running | Phase::Starting))
        .filter(|s| Some(&s.name) != db_service.as_ref())
        .map(|s| s.name.clone())
        .collect();
    let old_pids: std::collections::BTreeMap<String, Option<u32>> =
        report.services.iter().map(|s| (s.name.clone(), s.pid)).collect();
    for s in &running {
        crate::control::request(state_dir, &Request::Restart { service: Some(s.clone()) }, timeout)?;
    }
    // Return once they serve again (a new process, running and healthy), so whoever restored the
    // database hands back an app that answers, not one that is still restarting.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let Some(Response::Status(now)) = crate::control::request(state_dir, &Request::Status, timeout)? else {
            break;
        };
        let restarted = |name: &String| {
            now.services.iter().find(|s| &s.name == name).is_some_and(|s| {
                crate::control::service_up(s) && (s.pid.is_none() || s.pid != old_pids.get(name).copied().flatten())
            })
        };
        if running.iter().all(restarted) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let slow: Vec<&String> = running.iter().filter(|n| !restarted(n)).collect();
            anyhow::bail!("restarted services are not healthy again within 120 s: {slow:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(running)
}
