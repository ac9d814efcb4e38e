//! The server side of fleet mode: which maintenance tasks this server's own config makes due
//! (`caretaker tasks due`), and the results of running them (`caretaker tasks run-due`), as a
//! **versioned JSON schema** (docs/tasks.md) that the fleet controller — or an Ansible job —
//! reads.
//!
//! Pure: the binary loads the scheduler's task state and the job log, calls [`plan`] with
//! the time, runs what is due and fills in [`TaskResult`]s. "Due" is the daemon scheduler's
//! own decision ([`crate::scheduler::due_tasks`] on [`crate::scheduler::tasks_from_config`]),
//! so the daemon and `run-due` never disagree about what is due; this module adds no second
//! schedule interpreter.
//!
//! **Schema stability.** Every document carries `"schema": 1` ([`SCHEMA_VERSION`]). Within a
//! version, fields are only ever *added*: readers ignore fields they do not know and read a
//! missing optional field as absent, so an older controller reads a newer server's report
//! and the other way round. Removing or changing the meaning of a field, or a new
//! [`TaskOutcome`], raises the version. Task kinds are an open set ([`Kind::Other`]): a kind a
//! reader does not know still round-trips with its name.

use crate::job::figures::{
    BackupCheckFigures, BackupFigures, CheckFigures, CommandFigures, DepsFigures, Figures, PruneFigures, UpdateFigures,
};
use crate::job::{self, kind};
use crate::scheduler::{self, Task, TaskKind, TaskState};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The version of the documents below. Readers refuse a document whose `schema` is newer
/// than the one they know only if they need a field whose meaning changed; see the module
/// docs for what bumps it.
pub const SCHEMA_VERSION: u32 = 1;

/// What kind of maintenance a task is: the registry of task kinds, one entry each.
///
/// Serialized as its name (`"backup"`). A kind this caretaker does not know reads as
/// [`Kind::Other`] with the name kept, so a controller can store and show results of kinds
/// added by newer servers.
///
/// Certificate renewal and OS updates / the reboot window are kinds of the schema; a server
/// reports them when its config has their section (their scheduling comes from that
/// section, added to [`crate::scheduler::tasks_from_config`] like every other task; see
/// [`Kind::of`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Kind {
    /// `backup run`: a snapshot of the app's data (`backup.schedule`).
    Backup,
    /// `backup prune`: the retention policy (`backup.prune_schedule`).
    Prune,
    /// `backup check`: the repository's integrity (`backup.check_schedule`).
    BackupCheck,
    /// `check`: the deployment checks (built in, hourly).
    Check,
    /// `update --scheduled`: the app's safe update (`update.schedule` with `automatic: true`).
    Update,
    /// `deps`: the dependency report (`deps.schedule`).
    Deps,
    /// `jobs run NAME`: a custom command from the config's `jobs:` section.
    Command,
    /// Certificate renewal (its config section's schedule).
    Certificates,
    /// OS package updates (its config section's schedule).
    OsUpdates,
    /// A reboot in the configured window.
    Reboot,
    /// A kind this caretaker does not know (written by a newer one); its name as written.
    Other(String),
}

impl Kind {
    /// Every known kind, in the order the schema lists them.
    pub const KNOWN: [Kind; 10] = [
        Kind::Backup,
        Kind::Prune,
        Kind::BackupCheck,
        Kind::Check,
        Kind::Update,
        Kind::Deps,
        Kind::Command,
        Kind::Certificates,
        Kind::OsUpdates,
        Kind::Reboot,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Kind::Backup => "backup",
            Kind::Prune => "prune",
            Kind::BackupCheck => "backup_check",
            Kind::Check => "check",
            Kind::Update => "update",
            Kind::Deps => "deps",
            Kind::Command => "command",
            Kind::Certificates => "certificates",
            Kind::OsUpdates => "os_updates",
            Kind::Reboot => "reboot",
            Kind::Other(s) => s,
        }
    }

    /// The schema kind of a scheduler task. This match is the one place a new scheduler
    /// task kind (certificate renewal, OS updates, reboot) joins the schema.
    pub fn of(k: &TaskKind) -> Kind {
        match k {
            TaskKind::Backup => Kind::Backup,
            TaskKind::Prune => Kind::Prune,
            TaskKind::BackupCheck => Kind::BackupCheck,
            TaskKind::Check => Kind::Check,
            TaskKind::Update => Kind::Update,
            TaskKind::Deps => Kind::Deps,
            TaskKind::Command(_) => Kind::Command,
        }
    }
}

impl From<String> for Kind {
    fn from(s: String) -> Kind {
        Kind::KNOWN.into_iter().find(|k| k.as_str() == s).unwrap_or(Kind::Other(s))
    }
}

impl From<Kind> for String {
    fn from(k: Kind) -> String {
        k.as_str().to_string()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task is due, or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DueReason {
    /// Due: its calendar slot (plus its random delay) has come since it last ran.
    Slot,
    /// Due: more than one slot passed since it last ran (nothing ran tasks meanwhile); one
    /// run catches up on all of them.
    CatchUp,
    /// Not due: its next start is in the future (`next_run`).
    NotYet,
    /// Not due: a job of this task is running now (the daemon's or an operator's).
    Running,
    /// Not due: never seen before on this server. Like the daemon, caretaker counts a new
    /// task from when it first sees it, so it first runs at its next slot (`next_run`).
    New,
    /// Not due: its schedule never fires again (e.g. a date in the past).
    Never,
}

impl DueReason {
    pub fn is_due(self) -> bool {
        matches!(self, DueReason::Slot | DueReason::CatchUp)
    }
}

/// A job of the job log, as the reports refer to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRef {
    /// The job's id (`caretaker jobs show ID`).
    pub job_id: i64,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// The job log's outcome (`succeeded`, `failed`, `partial`, `refused`, `skipped`, ...).
    pub outcome: job::Outcome,
}

/// One configured task as `caretaker tasks due` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DueTask {
    pub kind: Kind,
    /// Unique and stable per server: `backup`, `prune`, `check`, `deps`, `job:NAME`. The
    /// key a controller stores results under.
    pub name: String,
    /// The job kind it runs as in the job log (`caretaker jobs --kind`).
    pub job_kind: String,
    /// The schedule as written in the config.
    pub schedule: String,
    /// Whether `run-due` would run it now.
    pub due: bool,
    pub reason: DueReason,
    /// Due (or `running` while its slot has come): the calendar slot this run stands for
    /// (before the random delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<Timestamp>,
    /// Not due: when it next becomes due (slot plus random delay); absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Timestamp>,
    /// When the scheduler (daemon or `run-due`) last started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Timestamp>,
    /// Its newest finished job, whatever the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<JobRef>,
    /// Its newest successful job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<JobRef>,
    /// The id of its job running now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_job: Option<i64>,
}

/// The document `caretaker tasks due --json` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DueReport {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The caretaker version that wrote it.
    pub caretaker_version: String,
    /// `app.name` of the config.
    pub app: String,
    /// The time the decision was made for.
    pub now: Timestamp,
    /// Every task the config schedules, in config order (the daemon's order).
    pub tasks: Vec<DueTask>,
}

/// How a task fared in `run-due`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    /// It ran and its job succeeded.
    Succeeded,
    /// It ran and failed (or could not be started); `error` says why.
    Failed,
    /// It was due but did not run: a job of it was running, or another job held the app
    /// lock. Its slot stays due: the next `run-due` or the daemon tries it again.
    Skipped,
    /// Not due; `reason` and `next_run` say why and when.
    NotDue,
}

impl TaskOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskOutcome::Succeeded => "succeeded",
            TaskOutcome::Failed => "failed",
            TaskOutcome::Skipped => "skipped",
            TaskOutcome::NotDue => "not_due",
        }
    }
}

impl fmt::Display for TaskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One task's result in `caretaker tasks run-due`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub kind: Kind,
    /// As in [`DueTask::name`].
    pub name: String,
    pub job_kind: String,
    pub outcome: TaskOutcome,
    /// Why it was due (`slot`, `catch_up`) or not (`not_yet`, `running`, `new`, `never`).
    pub reason: DueReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<Timestamp>,
    /// Not due: when it next becomes due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Timestamp>,
    /// When `run-due` started and finished it (absent for tasks not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// The job it ran as (or the `skipped` job recorded for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
    /// The job log's own outcome, finer than `outcome` (`partial`, `refused`, `rolled_back`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_outcome: Option<job::Outcome>,
    /// The exit code of the task's `caretaker` child process (docs/exit-codes.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The job's figures exactly as the job log stores them: the job kind's type of
    /// `core::job::figures` (read them typed with [`TaskResult::typed_figures`]).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub figures: serde_json::Value,
    /// One line saying what went wrong (secrets redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A task's figures, typed by its job kind.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskFigures {
    Backup(BackupFigures),
    Prune(PruneFigures),
    BackupCheck(BackupCheckFigures),
    Check(CheckFigures),
    Update(UpdateFigures),
    Command(CommandFigures),
    Deps(DepsFigures),
    /// A job kind without a figures type here (or none at all): the JSON as stored.
    Other(serde_json::Value),
}

impl TaskFigures {
    /// Reads stored figures by job kind (tolerant, like every figures reader).
    pub fn read(job_kind: &str, v: &serde_json::Value) -> TaskFigures {
        match job_kind {
            kind::BACKUP => TaskFigures::Backup(BackupFigures::from_json(v)),
            kind::PRUNE => TaskFigures::Prune(PruneFigures::from_json(v)),
            kind::BACKUP_CHECK => TaskFigures::BackupCheck(BackupCheckFigures::from_json(v)),
            kind::CHECK => TaskFigures::Check(CheckFigures::from_json(v)),
            kind::UPDATE => TaskFigures::Update(UpdateFigures::from_json(v)),
            kind::COMMAND => TaskFigures::Command(CommandFigures::from_json(v)),
            kind::DEPS => TaskFigures::Deps(DepsFigures::from_json(v)),
            _ => TaskFigures::Other(v.clone()),
        }
    }
}

impl TaskResult {
    pub fn typed_figures(&self) -> TaskFigures {
        TaskFigures::read(&self.job_kind, &self.figures)
    }

    /// The result of a task that is not run: not due, or skipped for a running job.
    pub fn not_run(task: &DueTask, outcome: TaskOutcome) -> TaskResult {
        TaskResult {
            kind: task.kind.clone(),
            name: task.name.clone(),
            job_kind: task.job_kind.clone(),
            outcome,
            reason: task.reason,
            scheduled_for: task.scheduled_for,
            next_run: task.next_run,
            started_at: None,
            finished_at: None,
            job_id: task.running_job,
            job_outcome: None,
            exit_code: None,
            figures: serde_json::Value::Null,
            error: None,
        }
    }
}

/// Counts of a `run-due`'s results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// Tasks that were due (run or skipped).
    pub due: u32,
    /// Tasks started.
    pub ran: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub skipped: u32,
    pub not_due: u32,
}

impl Summary {
    pub fn of(results: &[TaskResult]) -> Summary {
        let mut s = Summary::default();
        for r in results {
            match r.outcome {
                TaskOutcome::Succeeded => s.succeeded += 1,
                TaskOutcome::Failed => s.failed += 1,
                TaskOutcome::Skipped => s.skipped += 1,
                TaskOutcome::NotDue => s.not_due += 1,
            }
            if r.outcome != TaskOutcome::NotDue {
                s.due += 1;
            }
            if r.started_at.is_some() {
                s.ran += 1;
            }
        }
        s
    }

    /// Whether `run-due` exits 0: every task it ran succeeded (nothing due counts as success).
    /// A skipped task is not a failure: it stays due and runs next time.
    pub fn all_ok(&self) -> bool {
        self.failed == 0
    }
}

/// The document `caretaker tasks run-due --json` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    pub caretaker_version: String,
    pub app: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// Every configured task, in the order they were considered: the due ones in the order
    /// they ran (the daemon's order: backup first), then the others.
    pub results: Vec<TaskResult>,
    pub summary: Summary,
}

/// What the state store knows of one task, the input of [`plan`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The scheduler's memory (`None`: never seen on this server).
    pub state: Option<TaskState>,
    /// A job of this task running now.
    pub running_job: Option<i64>,
    pub last_attempt: Option<JobRef>,
    pub last_success: Option<JobRef>,
}

/// Which of `tasks` are due at `now`, and why (not). The due decision is the daemon
/// scheduler's ([`scheduler::due_tasks`]); a never-seen task counts from `now` exactly as in
/// the daemon's tick, so it is not due.
pub fn plan(tasks: &[Task], observed: &BTreeMap<String, Observed>, now: Timestamp, tz: &TimeZone) -> Vec<DueTask> {
    let none = Observed::default();
    tasks
        .iter()
        .map(|task| {
            let o = observed.get(&task.name).unwrap_or(&none);
            // The calendar decision without the running flag: a running task is reported as
            // such (the scheduler would simply not return it).
            let state = TaskState {
                running: false,
                ..o.state.unwrap_or(TaskState { first_seen: Some(now), ..Default::default() })
            };
            let states = BTreeMap::from([(task.name.clone(), state)]);
            let due = scheduler::due_tasks(std::slice::from_ref(task), &states, now, tz).into_iter().next();
            let next = scheduler::next_start(task, &state, now, tz);
            let (reason, scheduled_for) = match (&due, o.running_job) {
                (_, Some(_)) => (DueReason::Running, due.as_ref().map(|d| d.scheduled_for)),
                (Some(d), None) => {
                    (if d.catch_up { DueReason::CatchUp } else { DueReason::Slot }, Some(d.scheduled_for))
                }
                (None, None) if o.state.is_none() => (DueReason::New, None),
                (None, None) if next.is_none() => (DueReason::Never, None),
                (None, None) => (DueReason::NotYet, None),
            };
            DueTask {
                kind: Kind::of(&task.kind),
                name: task.name.clone(),
                job_kind: task.kind.job_kind().to_string(),
                schedule: task.schedule.to_string(),
                due: reason.is_due(),
                reason,
                scheduled_for,
                next_run: if reason.is_due() { None } else { next.map(|(_, start)| start) },
                last_run: o.state.and_then(|s| s.last_run),
                last_attempt: o.last_attempt.clone(),
                last_success: o.last_success.clone(),
                running_job: o.running_job,
            }
        })
        .collect()
}

/// The due tasks in the order `run-due` runs them: the lock-taking ones in the daemon's
/// [`scheduler::LockQueue`] order (backup, prune, update, commands), then the rest in config
/// order. One after another, never in parallel, so nothing races for the app lock.
pub fn run_order(tasks: &[Task], due: &[DueTask]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..tasks.len()).filter(|&i| due.get(i).is_some_and(|d| d.due)).collect();
    // Stable sort: equal ranks keep config order, as in the daemon's queue.
    idx.sort_by_key(|&i| {
        let k = &tasks[i].kind;
        (!k.needs_app_lock(), if k.needs_app_lock() { k.rank() } else { 0 })
    });
    idx
}

#[cfg(test)]
mod tests;
