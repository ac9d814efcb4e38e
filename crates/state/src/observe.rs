//! What alerting and the scheduler remember: alert states, silences, scheduled task runs and
//! boot times (for the reboots rule). Schema step 2 in [`crate::store`].
//!
//! Alert states are replaced as a whole after each evaluation, in one transaction, so a crash
//! leaves either the old or the new set, never a mix (which could re-send or lose a
//! notification).

use crate::store::{parse_ts, StateError, Store};
use caretaker_core::alert::{AlertState, Silence, SkippedTaskObs};
use caretaker_core::scheduler::TaskState;
use jiff::Timestamp;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use std::collections::BTreeMap;

/// A job kind's record for metrics and alerts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JobKindStats {
    pub kind: String,
    /// Finished runs by outcome.
    pub runs: Vec<(String, u64)>,
}

impl Store {
    fn err(&self) -> impl FnOnce(rusqlite::Error) -> StateError + '_ {
        move |source| StateError::Db { path: self.db_path.clone(), source }
    }

    /// The alert states stored by the last evaluation.
    pub fn alert_states(&self) -> Result<Vec<AlertState>, StateError> {
        let mut st = self.conn.prepare("SELECT state FROM alert_states ORDER BY rule, subject").map_err(self.err())?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(self.err())?;
        let mut out = Vec::new();
        for json in rows {
            // A row this caretaker cannot read (written by another version) is skipped, not fatal.
            if let Ok(s) = serde_json::from_str::<AlertState>(&json.map_err(self.err())?) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Replaces all alert states, atomically.
    pub fn replace_alert_states(&mut self, states: &[AlertState]) -> Result<(), StateError> {
        let path = self.db_path.clone();
        let e = |source| StateError::Db { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute("DELETE FROM alert_states", []).map_err(e)?;
        let now = Timestamp::now().to_string();
        for s in states {
            tx.execute(
                "INSERT INTO alert_states (rule, subject, status, severity, state, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s.rule,
                    s.subject,
                    s.status.as_str(),
                    s.severity.as_str(),
                    serde_json::to_string(s).unwrap_or_default(),
                    now
                ],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    pub fn add_silence(
        &self,
        matcher: &str,
        created_at: Timestamp,
        until: Timestamp,
        comment: &str,
    ) -> Result<Silence, StateError> {
        self.conn
            .execute(
                "INSERT INTO silences (matcher, created_at, until, comment) VALUES (?1, ?2, ?3, ?4)",
                params![matcher, created_at.to_string(), until.to_string(), comment],
            )
            .map_err(self.err())?;
        Ok(Silence {
            id: self.conn.last_insert_rowid(),
            matcher: matcher.into(),
            created_at,
            until,
            comment: comment.into(),
        })
    }

    /// Silences that have not expired at `now` (all of them with `None`).
    pub fn silences(&self, now: Option<Timestamp>) -> Result<Vec<Silence>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT id, matcher, created_at, until, comment FROM silences ORDER BY id")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok(Silence {
                    id: r.get(0)?,
                    matcher: r.get(1)?,
                    created_at: parse_ts(r.get(2)?),
                    until: parse_ts(r.get(3)?),
                    comment: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        let all: Vec<Silence> = rows.collect::<Result<_, _>>().map_err(self.err())?;
        Ok(all.into_iter().filter(|s| now.is_none_or(|n| s.until > n)).collect())
    }

    /// Removes a silence; `false` if there was none with that id.
    pub fn remove_silence(&self, id: i64) -> Result<bool, StateError> {
        Ok(self.conn.execute("DELETE FROM silences WHERE id = ?1", params![id]).map_err(self.err())? > 0)
    }

    /// The scheduler's memory of each task, by task name.
    pub fn task_states(&self) -> Result<BTreeMap<String, TaskState>, StateError> {
        let mut st = self.conn.prepare("SELECT name, first_seen, last_run FROM task_runs").map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    TaskState {
                        first_seen: Some(parse_ts(r.get(1)?)),
                        last_run: r.get::<_, Option<String>>(2)?.map(parse_ts),
                        running: false,
                    },
                ))
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Notes a task the scheduler sees for the first time (no-op if known).
    pub fn task_seen(&self, name: &str, now: Timestamp) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO task_runs (name, first_seen) VALUES (?1, ?2)",
                params![name, now.to_string()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Records that a task was started at `at` (its catch-up reference).
    pub fn task_ran(&self, name: &str, at: Timestamp) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO task_runs (name, first_seen, last_run) VALUES (?1, ?2, ?2)
                 ON CONFLICT(name) DO UPDATE SET last_run = excluded.last_run",
                params![name, at.to_string()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Remembers a boot time (seconds since the epoch); returns every boot seen since `since`.
    pub fn record_boot(&self, boot_time: Timestamp, since: Timestamp) -> Result<Vec<Timestamp>, StateError> {
        // Boot time read from /proc/stat can wobble by a second between reads (clock
        // adjustments): treat boots within 60 s as the same one.
        let b = boot_time.as_second();
        let known: Option<i64> = self
            .conn
            .query_row("SELECT boot_time FROM boots WHERE boot_time BETWEEN ?1 AND ?2", params![b - 60, b + 60], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        if known.is_none() {
            self.conn
                .execute(
                    "INSERT OR IGNORE INTO boots (boot_time, seen_at) VALUES (?1, ?2)",
                    params![b, Timestamp::now().to_string()],
                )
                .map_err(self.err())?;
        }
        let mut st = self
            .conn
            .prepare("SELECT boot_time FROM boots WHERE boot_time >= ?1 ORDER BY boot_time")
            .map_err(self.err())?;
        let rows = st.query_map(params![since.as_second()], |r| r.get::<_, i64>(0)).map_err(self.err())?;
        let secs: Vec<i64> = rows.collect::<Result<_, _>>().map_err(self.err())?;
        Ok(secs.into_iter().filter_map(|s| Timestamp::from_second(s).ok()).collect())
    }

    /// Finished jobs counted by kind and outcome.
    pub fn job_stats(&self) -> Result<Vec<JobKindStats>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT kind, outcome, COUNT(*) FROM jobs WHERE outcome != 'running' GROUP BY kind, outcome ORDER BY kind, outcome")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .map_err(self.err())?;
        let mut out: Vec<JobKindStats> = Vec::new();
        for row in rows {
            let (kind, outcome, n) = row.map_err(self.err())?;
            match out.last_mut() {
                Some(k) if k.kind == kind => k.runs.push((outcome, n as u64)),
                _ => out.push(JobKindStats { kind, runs: vec![(outcome, n as u64)] }),
            }
        }
        Ok(out)
    }

    /// The newest finished job of a kind, whatever its outcome; a skipped attempt (never
    /// started) is not a run and does not count.
    pub fn last_finished(&self, kind: &str) -> Result<Option<crate::JobRecord>, StateError> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM jobs WHERE kind = ?1 AND outcome NOT IN ('running', 'skipped') ORDER BY id DESC LIMIT 1",
                params![kind],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        id.map(|id| self.job(id)).transpose()
    }
}

impl Store {
    /// Records that the scheduler could not start a task (outcome `skipped`, trigger
    /// `schedule`): a finished job with the reason as its error and first log line, and the
    /// task's name in its figures (`{"task": ..., "name": ...}`) for [`Store::skipped_tasks`].
    pub fn record_skipped(&self, kind: &str, task: &str, reason: &str) -> Result<i64, StateError> {
        let mut job = self.start_job(kind, caretaker_core::job::Trigger::Schedule, false)?;
        let id = job.id();
        job.log(&format!("skipped: {reason}"));
        let name = task.strip_prefix("job:");
        job.finish(
            caretaker_core::job::Outcome::Skipped,
            serde_json::json!({"task": task, "name": name}),
            Some(reason),
        )?;
        Ok(id)
    }

    /// The running job that holds the app lock, if any (a mutating job still running).
    pub fn lock_holder(&self) -> Result<Option<crate::JobRecord>, StateError> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM jobs WHERE outcome = 'running' AND mutating = 1 ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        id.map(|id| self.job(id)).transpose()
    }

    /// Scheduled tasks whose latest attempts were skipped: the skips of each task since its
    /// job last ran (any outcome but `skipped`, from the scheduler or an operator). A command
    /// task `job:<name>` matches `command` jobs of that name.
    pub fn skipped_tasks(&self) -> Result<Vec<SkippedTaskObs>, StateError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT s.kind, json_extract(s.figures, '$.task'), s.started_at, s.error FROM jobs s
                 WHERE s.outcome = 'skipped' AND json_extract(s.figures, '$.task') IS NOT NULL
                   AND s.id > COALESCE((SELECT MAX(r.id) FROM jobs r
                        WHERE r.kind = s.kind AND r.outcome NOT IN ('skipped', 'running')
                          AND (json_extract(s.figures, '$.name') IS NULL
                               OR json_extract(r.figures, '$.name') = json_extract(s.figures, '$.name'))), 0)
                 ORDER BY s.id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(1)?, parse_ts(r.get(2)?), r.get::<_, Option<String>>(3)?)))
            .map_err(self.err())?;
        let mut out: Vec<SkippedTaskObs> = Vec::new();
        for row in rows {
            let (task, at, reason) = row.map_err(self.err())?;
            match out.iter_mut().find(|t| t.task == task) {
                Some(t) => {
                    t.skips += 1;
                    t.reason = reason;
                }
                None => out.push(SkippedTaskObs { task, skips: 1, since: at, reason }),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_core::alert::{Severity, Status};
    use caretaker_core::config::Redactor;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn alert_states_silences_tasks_and_boots_persist() {
        let dir = tempfile::tempdir().unwrap();
        let t = ts("2026-03-01T12:00:00Z");
        {
            let mut s = Store::open(dir.path(), Redactor::default()).unwrap();
            let a = AlertState {
                rule: "filesystem_free_percent".into(),
                subject: "/".into(),
                severity: Severity::Warning,
                status: Status::Firing,
                summary: "x".into(),
                value: Some(1.0),
                active_since: t,
                fired_at: Some(t),
                resolved_at: None,
                last_notified: Some(t),
                notified_severity: Some(Severity::Warning),
            };
            s.replace_alert_states(std::slice::from_ref(&a)).unwrap();
            s.replace_alert_states(&[a]).unwrap();
            let sil = s.add_silence("service_down/*", t, ts("2026-03-01T14:00:00Z"), "deploy").unwrap();
            assert_eq!(sil.id, 1);
            s.task_seen("backup", t).unwrap();
            s.task_seen("backup", ts("2026-03-02T00:00:00Z")).unwrap();
            s.task_ran("check", t).unwrap();
            s.record_boot(ts("2026-02-28T00:00:00Z"), t).unwrap();
            let boots = s.record_boot(ts("2026-02-28T00:00:30Z"), ts("2026-01-01T00:00:00Z")).unwrap();
            assert_eq!(boots.len(), 1, "same boot within a minute");
        }
        let s = Store::open(dir.path(), Redactor::default()).unwrap();
        assert_eq!(s.alert_states().unwrap().len(), 1);
        assert_eq!(s.silences(Some(ts("2026-03-01T13:00:00Z"))).unwrap().len(), 1);
        assert!(s.silences(Some(ts("2026-03-01T14:00:00Z"))).unwrap().is_empty());
        let tasks = s.task_states().unwrap();
        assert_eq!(tasks["backup"].first_seen, Some(t));
        assert_eq!(tasks["backup"].last_run, None);
        assert_eq!(tasks["check"].last_run, Some(t));
        assert!(s.remove_silence(1).unwrap());
        assert!(!s.remove_silence(1).unwrap());
    }

    #[test]
    fn skipped_attempts_count_until_the_task_runs_and_are_not_runs() {
        use caretaker_core::job::{Outcome, Trigger};
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), Redactor::default()).unwrap();
        s.start_job("backup", Trigger::Schedule, true)
            .unwrap()
            .finish(Outcome::Succeeded, serde_json::json!({}), None)
            .unwrap();
        s.record_skipped("backup", "backup", "job #3 (restore) held the app lock").unwrap();
        s.record_skipped("command", "job:report", "held").unwrap();
        s.record_skipped("backup", "backup", "job #4 (restore) held the app lock").unwrap();
        let t = s.skipped_tasks().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].task.as_str(), t[0].skips), ("backup", 2));
        assert_eq!(t[0].reason.as_deref(), Some("job #4 (restore) held the app lock"));
        assert_eq!((t[1].task.as_str(), t[1].skips), ("job:report", 1));
        // A skip is not a run: the last finished backup is still the successful one.
        assert_eq!(s.last_finished("backup").unwrap().unwrap().outcome, Outcome::Succeeded);
        let skipped = s.jobs(Some("backup"), 1).unwrap().remove(0);
        assert_eq!((skipped.outcome, skipped.trigger), (Outcome::Skipped, Trigger::Schedule));
        // Another command running does not end report's streak; report running does.
        let done = |name: &str| {
            s.start_job("command", Trigger::Schedule, true)
                .unwrap()
                .finish(Outcome::Succeeded, serde_json::json!({"name": name}), None)
                .unwrap()
        };
        done("other");
        assert_eq!(s.skipped_tasks().unwrap().len(), 2);
        done("report");
        let t = s.skipped_tasks().unwrap();
        assert_eq!(t.iter().map(|t| t.task.as_str()).collect::<Vec<_>>(), ["backup"]);
        assert!(s.lock_holder().unwrap().is_none());
        let _running = s.start_job("restore", Trigger::Cli, true).unwrap();
        assert_eq!(s.lock_holder().unwrap().unwrap().kind, "restore");
    }
}
