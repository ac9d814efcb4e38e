//! What `caretaker tasks` reads and writes of the scheduler's memory: claiming a task's slot
//! atomically (so the daemon and `tasks run-due` never both start the same run), and a
//! task's jobs in the job log (running now, last attempt, last success).

use crate::store::{StateError, Store};
use crate::JobRecord;
use jiff::Timestamp;
use rusqlite::{params, OptionalExtension};

/// A scheduled task's jobs in the job log.
#[derive(Clone, Debug, Default)]
pub struct TaskJobs {
    /// A job of the task that is running now (its process is alive: dead ones were marked
    /// `interrupted` when the store was opened).
    pub running: Option<JobRecord>,
    /// The newest finished job, whatever its outcome; a skipped attempt is not an attempt.
    pub last_attempt: Option<JobRecord>,
    pub last_success: Option<JobRecord>,
}

impl Store {
    /// Records that a task starts now, `at`, only if its last run is still `seen` (what the
    /// caller read when it found the task due): a compare-and-set, so of two schedulers that
    /// find the same slot due (the daemon's tick and `tasks run-due`) exactly one wins.
    /// Returns whether this caller won. A task without a row yet is inserted.
    pub fn claim_task_run(&self, name: &str, seen: Option<Timestamp>, at: Timestamp) -> Result<bool, StateError> {
        let err = |source| StateError::Db { path: self.db_path.clone(), source };
        let n = self
            .conn
            .execute(
                "UPDATE task_runs SET last_run = ?3 WHERE name = ?1 AND last_run IS ?2",
                params![name, seen.map(|t| t.to_string()), at.to_string()],
            )
            .map_err(err)?;
        if n == 1 {
            return Ok(true);
        }
        let inserted = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO task_runs (name, first_seen, last_run) VALUES (?1, ?2, ?2)",
                params![name, at.to_string()],
            )
            .map_err(err)?;
        Ok(inserted == 1 && seen.is_none())
    }

    /// The jobs of a task: by job kind, and for app commands (`command` jobs) by the command's
    /// name in their figures. A running `command` job has no name yet (its figures are written
    /// when it ends), so it is not found here; it holds the app lock, which keeps another
    /// command from starting.
    pub fn task_jobs(&self, kind: &str, command: Option<&str>) -> Result<TaskJobs, StateError> {
        let err = |source| StateError::Db { path: self.db_path.clone(), source };
        let pick = |cond: &str| -> Result<Option<JobRecord>, StateError> {
            let id: Option<i64> = self
                .conn
                .query_row(
                    &format!(
                        "SELECT id FROM jobs WHERE kind = ?1 AND (?2 IS NULL OR json_extract(figures, '$.name') = ?2)
                         AND {cond} ORDER BY id DESC LIMIT 1"
                    ),
                    params![kind, command],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            id.map(|id| self.job(id)).transpose()
        };
        Ok(TaskJobs {
            running: if command.is_some() { None } else { pick("outcome = 'running'")? },
            last_attempt: pick("outcome NOT IN ('running', 'skipped')")?,
            last_success: pick("outcome = 'succeeded'")?,
        })
    }

    /// The highest job id so far (0 for none): jobs a child process records later have
    /// higher ids.
    pub fn last_job_id(&self) -> Result<i64, StateError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM jobs", [], |r| r.get(0))
            .map_err(|source| StateError::Db { path: self.db_path.clone(), source })
    }

    /// The newest job of `kind` (and command name) after `after_id`: the one a task's child
    /// process recorded.
    pub fn job_after(&self, kind: &str, command: Option<&str>, after_id: i64) -> Result<Option<JobRecord>, StateError> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM jobs WHERE kind = ?1 AND (?2 IS NULL OR json_extract(figures, '$.name') = ?2)
                 AND id > ?3 ORDER BY id DESC LIMIT 1",
                params![kind, command, after_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|source| StateError::Db { path: self.db_path.clone(), source })?;
        id.map(|id| self.job(id)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_core::config::Redactor;
    use caretaker_core::job::{Outcome, Trigger};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn of_two_claims_on_one_slot_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), Redactor::default()).unwrap();
        let last = ts("2026-03-01T00:30:00Z");
        s.task_seen("backup", ts("2026-02-01T00:00:00Z")).unwrap();
        s.task_ran("backup", last).unwrap();
        let other = Store::open(dir.path(), Redactor::default()).unwrap();
        assert!(s.claim_task_run("backup", Some(last), ts("2026-03-02T00:30:00Z")).unwrap());
        assert!(!other.claim_task_run("backup", Some(last), ts("2026-03-02T00:30:01Z")).unwrap());
        assert_eq!(s.task_states().unwrap()["backup"].last_run, Some(ts("2026-03-02T00:30:00Z")));
        // Seen but never run: the first claim wins, the second loses.
        s.task_seen("check", ts("2026-02-01T00:00:00Z")).unwrap();
        assert!(s.claim_task_run("check", None, ts("2026-03-02T01:00:00Z")).unwrap());
        assert!(!other.claim_task_run("check", None, ts("2026-03-02T01:00:00Z")).unwrap());
        // Never seen at all.
        assert!(s.claim_task_run("deps", None, ts("2026-03-02T01:00:00Z")).unwrap());
        assert!(!other.claim_task_run("deps", None, ts("2026-03-02T01:00:00Z")).unwrap());
    }

    #[test]
    fn a_tasks_jobs_are_found_by_kind_and_command_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), Redactor::default()).unwrap();
        let before = s.last_job_id().unwrap();
        let cmd = |name: &str, outcome: Outcome| {
            let j = s.start_job("command", Trigger::Schedule, true).unwrap();
            let id = j.id();
            j.finish(outcome, serde_json::json!({"name": name}), None).unwrap();
            id
        };
        let ok = cmd("report", Outcome::Succeeded);
        let failed = cmd("report", Outcome::Failed);
        cmd("other", Outcome::Succeeded);
        s.record_skipped("command", "job:report", "held").unwrap();
        let r = s.task_jobs("command", Some("report")).unwrap();
        assert_eq!(r.last_attempt.unwrap().id, failed);
        assert_eq!(r.last_success.unwrap().id, ok);
        assert!(r.running.is_none());
        assert_eq!(s.job_after("command", Some("report"), before).unwrap().unwrap().outcome, Outcome::Skipped);
        let running = s.start_job("check", Trigger::Cli, false).unwrap();
        let c = s.task_jobs("check", None).unwrap();
        assert_eq!(c.running.unwrap().id, running.id());
        assert!(c.last_attempt.is_none());
        running.finish(Outcome::Succeeded, serde_json::json!({}), None).unwrap();
        assert!(s.task_jobs("check", None).unwrap().running.is_none());
    }
}
