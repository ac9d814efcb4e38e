//! The job log and event log in SQLite, and the job life cycle.

use crate::lock::{AppLock, LockError};
use crate::process::ProcessIdentity;
use caretaker_core::config::Redactor;
use caretaker_core::job::{Outcome, Trigger};
use caretaker_core::mode::{Failed, Maintenance, Mode, FACT_FAILED, FACT_MAINTENANCE};
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot use state directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("state database {path}: {source}")]
    Db { path: PathBuf, source: rusqlite::Error },
    #[error(
        "state database {path} was written by a newer caretaker (schema {found}, this caretaker knows up to {known})"
    )]
    NewerSchema { path: PathBuf, found: i64, known: i64 },
    #[error("job {holder_id} ({holder_kind}, started {holder_started}) is running; {wanted} waits for no one")]
    Busy { holder_id: i64, holder_kind: String, holder_started: String, wanted: String },
    #[error("{0}")]
    Lock(#[from] LockError),
    #[error("no job with id {0}")]
    NoSuchJob(i64),
}

impl StateError {
    fn db(path: &Path) -> impl FnOnce(rusqlite::Error) -> StateError + '_ {
        move |source| StateError::Db { path: path.to_path_buf(), source }
    }
}

/// One row of the job log.
#[derive(Clone, Debug, Serialize)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub trigger: Trigger,
    pub mutating: bool,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub outcome: Outcome,
    /// Figures of the run (bytes, files, durations, ids), as JSON.
    pub figures: serde_json::Value,
    /// One line saying what went wrong, for failed, refused, rolled back and interrupted jobs.
    pub error: Option<String>,
    pub log_path: PathBuf,
    pub pid: u32,
    pub caretaker_version: String,
}

impl JobRecord {
    pub fn duration(&self) -> Option<Duration> {
        let end = self.ended_at?;
        Some(Duration::from_millis(end.duration_since(self.started_at).as_millis().max(0) as u64))
    }
}

/// Something that happened which alerting may care about (service mode entered, a safety
/// check refused a backup).
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub id: i64,
    pub at: Timestamp,
    pub kind: String,
    pub subject: String,
    pub message: String,
}

/// The schema, one step per version. Never edit a released step; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: jobs and events
    "CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        trigger TEXT NOT NULL,
        mutating INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        outcome TEXT NOT NULL,
        figures TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        log_path TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pid_start_ticks INTEGER,
        caretaker_version TEXT NOT NULL
     );
     CREATE INDEX jobs_kind_started ON jobs(kind, started_at);
     CREATE INDEX jobs_outcome ON jobs(outcome);
     CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        message TEXT NOT NULL
     );
     CREATE TABLE facts (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL);",
    // 2: alerting and scheduling (see observe.rs)
    "CREATE TABLE alert_states (
        rule TEXT NOT NULL,
        subject TEXT NOT NULL,
        status TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (rule, subject)
     );
     CREATE TABLE silences (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        matcher TEXT NOT NULL,
        created_at TEXT NOT NULL,
        until TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT ''
     );
     CREATE TABLE task_runs (
        name TEXT PRIMARY KEY,
        first_seen TEXT NOT NULL,
        last_run TEXT
     );
     CREATE TABLE boots (boot_time INTEGER PRIMARY KEY, seen_at TEXT NOT NULL);",
];

/// The state store of one app.
pub struct Store {
    dir: PathBuf,
    pub(crate) db_path: PathBuf,
    pub(crate) conn: Connection,
    redactor: Redactor,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// Switches the database to WAL. SQLite may answer SQLITE_BUSY for the journal mode change
/// without calling the busy handler when another connection is mid-change, so retry briefly.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mut attempt = 0;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && attempt < 200 =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

/// Creates `path` (mode 0700) or tightens an existing one to 0700: the state directory holds
/// job logs of operations on secrets-bearing data, so other users must not read it.
fn create_private_dir(path: &Path) -> Result<(), StateError> {
    let err = |source| StateError::Dir { path: path.to_path_buf(), source };
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(err)?;
    let mode = fs::metadata(path).map_err(err)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the state directory, brings the schema up to date and marks
    /// jobs whose process died as `interrupted`.
    pub fn open(dir: &Path, redactor: Redactor) -> Result<Store, StateError> {
        let layout = crate::Layout::new(dir);
        create_private_dir(dir)?;
        create_private_dir(&layout.jobs())?;
        create_private_dir(&layout.locks())?;
        let db_path = layout.database();
        let conn = Connection::open(&db_path).map_err(StateError::db(&db_path))?;
        let _ = fs::set_permissions(&db_path, fs::Permissions::from_mode(0o600));
        // WAL: readers (status page, CLI) never block the writer; synchronous=NORMAL in WAL
        // mode is durable against process crashes, which is what SIGKILL safety needs.
        // The busy timeout first: several caretaker processes (daemon, CLI) may open a new
        // state directory at the same moment, and switching it to WAL needs a short exclusive
        // lock that the others must wait for rather than fail on.
        conn.busy_timeout(Duration::from_secs(10)).map_err(StateError::db(&db_path))?;
        set_wal(&conn).map_err(StateError::db(&db_path))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(StateError::db(&db_path))?;
        let mut store = Store { dir: dir.to_path_buf(), db_path, conn, redactor };
        store.migrate()?;
        store.mark_dead_jobs_interrupted()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The paths inside the state directory.
    pub fn layout(&self) -> crate::Layout {
        crate::Layout::new(&self.dir)
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let path = self.db_path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StateError::db(&path))?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(StateError::db(&path))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StateError::NewerSchema { path, found: version, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(StateError::db(&path))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(StateError::db(&path))?;
        }
        tx.commit().map_err(StateError::db(&path))
    }

    /// A `running` job whose process is gone was interrupted.
    fn mark_dead_jobs_interrupted(&mut self) -> Result<usize, StateError> {
        let running: Vec<(i64, u32, Option<u64>)> = {
            let mut st = self
                .conn
                .prepare("SELECT id, pid, pid_start_ticks FROM jobs WHERE outcome = 'running'")
                .map_err(StateError::db(&self.db_path))?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, Option<i64>>(2)?.map(|v| v as u64))))
                .map_err(StateError::db(&self.db_path))?;
            rows.collect::<Result<_, _>>().map_err(StateError::db(&self.db_path))?
        };
        let mut n = 0;
        for (id, pid, start_ticks) in running {
            if !(ProcessIdentity { pid, start_ticks }).is_alive() {
                self.mark_interrupted(
                    id,
                    &format!("the caretaker process (pid {pid}) running this job died before it finished"),
                )?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn mark_interrupted(&self, id: i64, why: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE jobs SET outcome = 'interrupted', ended_at = ?2, error = ?3 WHERE id = ?1 AND outcome = 'running'",
                params![id, Timestamp::now().to_string(), why],
            )
            .map_err(StateError::db(&self.db_path))?;
        Ok(())
    }

    /// Records what an `interrupted` job turned out to have achieved (a backup killed after
    /// its snapshot was saved): its outcome, figures, and `note` as its error text. Only an
    /// interrupted job changes; returns whether it did.
    pub fn reconcile_interrupted(
        &self,
        id: i64,
        outcome: Outcome,
        figures: serde_json::Value,
        note: &str,
    ) -> Result<bool, StateError> {
        let figures = self.redactor.redact(&figures.to_string());
        let n = self
            .conn
            .execute(
                "UPDATE jobs SET outcome = ?2, figures = ?3, error = ?4 WHERE id = ?1 AND outcome = 'interrupted'",
                params![id, outcome.as_str(), figures, self.redactor.redact(note)],
            )
            .map_err(StateError::db(&self.db_path))?;
        Ok(n == 1)
    }

    /// Starts a job: records it, opens its log and, for mutating jobs, takes the app lock.
    /// A mutating job fails with [`StateError::Busy`] while another one runs.
    pub fn start_job(&self, kind: &str, trigger: Trigger, mutating: bool) -> Result<JobHandle<'_>, StateError> {
        let lock = if mutating {
            match AppLock::try_acquire(&self.layout().app_lock()) {
                Ok(l) => {
                    // We hold the lock, so any job recorded as holding it is dead.
                    let stale: Vec<i64> = {
                        let mut st = self
                            .conn
                            .prepare("SELECT id FROM jobs WHERE outcome = 'running' AND mutating = 1")
                            .map_err(StateError::db(&self.db_path))?;
                        let rows = st.query_map([], |r| r.get(0)).map_err(StateError::db(&self.db_path))?;
                        rows.collect::<Result<_, _>>().map_err(StateError::db(&self.db_path))?
                    };
                    for id in stale {
                        self.mark_interrupted(id, "the process running this job died while holding the app lock")?;
                    }
                    Some(l)
                }
                Err(LockError::Busy { .. }) => {
                    let holder = self
                        .conn
                        .query_row(
                            "SELECT id, kind, started_at FROM jobs WHERE outcome = 'running' AND mutating = 1 ORDER BY id DESC LIMIT 1",
                            [],
                            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
                        )
                        .optional()
                        .map_err(StateError::db(&self.db_path))?
                        .unwrap_or((0, "unknown".into(), "just now".into()));
                    return Err(StateError::Busy {
                        holder_id: holder.0,
                        holder_kind: holder.1,
                        holder_started: holder.2,
                        wanted: kind.to_string(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let me = ProcessIdentity::current();
        let started_at = Timestamp::now();
        self.conn
            .execute(
                "INSERT INTO jobs (kind, trigger, mutating, started_at, outcome, log_path, pid, pid_start_ticks, caretaker_version)
                 VALUES (?1, ?2, ?3, ?4, 'running', '', ?5, ?6, ?7)",
                params![kind, trigger.as_str(), mutating, started_at.to_string(), me.pid, me.start_ticks.map(|t| t as i64), env!("CARGO_PKG_VERSION")],
            )
            .map_err(StateError::db(&self.db_path))?;
        let id = self.conn.last_insert_rowid();
        let log_path = self.layout().job_log(id);
        self.conn
            .execute("UPDATE jobs SET log_path = ?2 WHERE id = ?1", params![id, log_path.to_string_lossy()])
            .map_err(StateError::db(&self.db_path))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(|source| StateError::Dir { path: log_path.clone(), source })?;
        Ok(JobHandle { store: self, id, log, lock, finished: false })
    }

    pub fn job(&self, id: i64) -> Result<JobRecord, StateError> {
        self.conn
            .query_row(&format!("{SELECT_JOB} WHERE id = ?1"), params![id], row_to_job)
            .optional()
            .map_err(StateError::db(&self.db_path))?
            .ok_or(StateError::NoSuchJob(id))
    }

    /// The newest jobs first, optionally only of one kind.
    pub fn jobs(&self, kind: Option<&str>, limit: usize) -> Result<Vec<JobRecord>, StateError> {
        let mut st = self
            .conn
            .prepare(&format!("{SELECT_JOB} WHERE (?1 IS NULL OR kind = ?1) ORDER BY id DESC LIMIT ?2"))
            .map_err(StateError::db(&self.db_path))?;
        let rows = st.query_map(params![kind, limit as i64], row_to_job).map_err(StateError::db(&self.db_path))?;
        rows.collect::<Result<_, _>>().map_err(StateError::db(&self.db_path))
    }

    /// The newest successful job of a kind (for freshness checks and metrics).
    pub fn last_success(&self, kind: &str) -> Result<Option<JobRecord>, StateError> {
        self.conn
            .query_row(
                &format!("{SELECT_JOB} WHERE kind = ?1 AND outcome = 'succeeded' ORDER BY id DESC LIMIT 1"),
                params![kind],
                row_to_job,
            )
            .optional()
            .map_err(StateError::db(&self.db_path))
    }

    pub fn record_event(&self, kind: &str, subject: &str, message: &str) -> Result<i64, StateError> {
        self.conn
            .execute(
                "INSERT INTO events (at, kind, subject, message) VALUES (?1, ?2, ?3, ?4)",
                params![Timestamp::now().to_string(), kind, subject, self.redactor.redact(message)],
            )
            .map_err(StateError::db(&self.db_path))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn events(&self, limit: usize) -> Result<Vec<Event>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT id, at, kind, subject, message FROM events ORDER BY id DESC LIMIT ?1")
            .map_err(StateError::db(&self.db_path))?;
        let rows = st
            .query_map(params![limit as i64], |r| {
                Ok(Event {
                    id: r.get(0)?,
                    at: parse_ts(r.get::<_, String>(1)?),
                    kind: r.get(2)?,
                    subject: r.get(3)?,
                    message: r.get(4)?,
                })
            })
            .map_err(StateError::db(&self.db_path))?;
        rows.collect::<Result<_, _>>().map_err(StateError::db(&self.db_path))
    }

    /// Small named facts that must survive restarts (the app's failed flag, the running
    /// release, ...).
    pub fn set_fact(&self, key: &str, value: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO facts (key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![key, value, Timestamp::now().to_string()],
            )
            .map_err(StateError::db(&self.db_path))?;
        Ok(())
    }

    pub fn fact(&self, key: &str) -> Result<Option<String>, StateError> {
        self.conn
            .query_row("SELECT value FROM facts WHERE key = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(StateError::db(&self.db_path))
    }

    /// The app's mode from the maintenance and failed facts (see `caretaker_core::mode`).
    /// A fact that cannot be parsed counts as set: better a maintenance page than exposing an
    /// app someone meant to hide.
    pub fn mode(&self) -> Result<Mode, StateError> {
        let maintenance = self.fact(FACT_MAINTENANCE)?.map(|v| {
            serde_json::from_str::<Maintenance>(&v).unwrap_or(Maintenance {
                message: String::new(),
                since: Timestamp::UNIX_EPOCH,
                by: "unknown".into(),
            })
        });
        let failed = self
            .fact(FACT_FAILED)?
            .map(|v| serde_json::from_str::<Failed>(&v).unwrap_or(Failed { reason: v, since: Timestamp::UNIX_EPOCH }));
        Ok(Mode::from_facts(maintenance, failed))
    }

    pub fn clear_fact(&self, key: &str) -> Result<(), StateError> {
        self.conn.execute("DELETE FROM facts WHERE key = ?1", params![key]).map_err(StateError::db(&self.db_path))?;
        Ok(())
    }
}

const SELECT_JOB: &str = "SELECT id, kind, trigger, mutating, started_at, ended_at, outcome, figures, error, log_path, pid, caretaker_version FROM jobs";

pub(crate) fn parse_ts(s: String) -> Timestamp {
    s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        id: r.get(0)?,
        kind: r.get(1)?,
        trigger: Trigger::parse(&r.get::<_, String>(2)?).unwrap_or(Trigger::Cli),
        mutating: r.get(3)?,
        started_at: parse_ts(r.get(4)?),
        ended_at: r.get::<_, Option<String>>(5)?.map(parse_ts),
        outcome: Outcome::parse(&r.get::<_, String>(6)?).unwrap_or(Outcome::Failed),
        figures: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or(serde_json::Value::Null),
        error: r.get(8)?,
        log_path: PathBuf::from(r.get::<_, String>(9)?),
        pid: r.get(10)?,
        caretaker_version: r.get(11)?,
    })
}

/// A running job. Finish it with [`JobHandle::finish`]; dropping it unfinished (a panic, an
/// early return) records it as failed, so no job stays `running` while its process lives on.
pub struct JobHandle<'s> {
    store: &'s Store,
    id: i64,
    log: File,
    lock: Option<AppLock>,
    finished: bool,
}

impl JobHandle<'_> {
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn holds_lock(&self) -> bool {
        self.lock.is_some()
    }

    /// Appends a timestamped line to the job's log (secrets redacted).
    pub fn log(&mut self, line: &str) {
        let line = self.store.redactor.redact(line);
        let now = Timestamp::now();
        for l in line.lines() {
            // A full disk must not turn a successful job into a failed one; the outcome in the
            // database is what counts.
            let _ = writeln!(self.log, "{now} {l}");
        }
    }

    /// Records the outcome and figures, then releases the lock.
    pub fn finish(
        mut self,
        outcome: Outcome,
        figures: serde_json::Value,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        self.finished = true;
        self.write_outcome(outcome, &figures, error)
    }

    fn write_outcome(
        &mut self,
        outcome: Outcome,
        figures: &serde_json::Value,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        let _ = self.log.sync_all();
        let error = error.map(|e| self.store.redactor.redact(e));
        let figures = self.store.redactor.redact(&figures.to_string());
        self.store
            .conn
            .execute(
                "UPDATE jobs SET outcome = ?2, ended_at = ?3, figures = ?4, error = ?5 WHERE id = ?1",
                params![self.id, outcome.as_str(), Timestamp::now().to_string(), figures, error],
            )
            .map_err(StateError::db(&self.store.db_path))?;
        Ok(())
    }
}

impl Drop for JobHandle<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let why = if std::thread::panicking() {
                "caretaker panicked during this job"
            } else {
                "the job ended without recording an outcome"
            };
            let _ = self.write_outcome(Outcome::Failed, &serde_json::json!({}), Some(why));
        }
        // The lock is released after the outcome is written: the next job sees a finished
        // record, never a dead holder.
        self.lock.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Store {
        Store::open(dir, Redactor::default()).unwrap()
    }

    #[test]
    fn job_life_cycle_is_recorded() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let mut j = s.start_job("backup", Trigger::Cli, true).unwrap();
        let id = j.id();
        j.log("dumping database");
        assert_eq!(s.job(id).unwrap().outcome, Outcome::Running);
        j.finish(Outcome::Succeeded, serde_json::json!({"bytes_added": 42}), None).unwrap();
        let r = s.job(id).unwrap();
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert_eq!(r.figures["bytes_added"], 42);
        assert!(r.duration().is_some());
        assert!(fs::read_to_string(&r.log_path).unwrap().contains("dumping database"));
        assert_eq!(s.last_success("backup").unwrap().unwrap().id, id);
        let mode = fs::metadata(d.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn second_mutating_job_is_busy_and_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let s2 = store(d.path());
        let j = s.start_job("update", Trigger::Cli, true).unwrap();
        match s2.start_job("backup", Trigger::Schedule, true) {
            Err(StateError::Busy { holder_id, holder_kind, .. }) => {
                assert_eq!(holder_id, j.id());
                assert_eq!(holder_kind, "update");
            }
            other => panic!("expected busy, got {other:?}", other = other.map(|h| h.id())),
        }
        // Read-only jobs do not need the lock.
        s2.start_job("check", Trigger::Cli, false)
            .unwrap()
            .finish(Outcome::Succeeded, serde_json::json!({}), None)
            .unwrap();
        drop(j);
        assert_eq!(s.jobs(Some("update"), 10).unwrap()[0].outcome, Outcome::Failed, "dropped without finish");
        s2.start_job("backup", Trigger::Schedule, true)
            .unwrap()
            .finish(Outcome::Succeeded, serde_json::json!({}), None)
            .unwrap();
    }

    #[test]
    fn secrets_are_redacted_from_logs_and_errors() {
        use caretaker_core::config::{Secret, SecretOrigin};
        let d = tempfile::tempdir().unwrap();
        let secret = Secret::new("s3cr3t-value", SecretOrigin::Inline);
        let s = Store::open(d.path(), Redactor::new([&secret])).unwrap();
        let mut j = s.start_job("backup", Trigger::Cli, true).unwrap();
        j.log("connecting with s3cr3t-value");
        let id = j.id();
        j.finish(Outcome::Failed, serde_json::json!({"url": "x:s3cr3t-value@h"}), Some("auth failed for s3cr3t-value"))
            .unwrap();
        let r = s.job(id).unwrap();
        let all = format!("{} {} {}", fs::read_to_string(&r.log_path).unwrap(), r.figures, r.error.unwrap());
        assert!(!all.contains("s3cr3t-value"), "{all}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let d = tempfile::tempdir().unwrap();
        drop(store(d.path()));
        let c = Connection::open(d.path().join("state.db")).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(Store::open(d.path(), Redactor::default()), Err(StateError::NewerSchema { .. })));
    }
}
