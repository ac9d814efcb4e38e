//! The scheduler's decisions: which scheduled tasks are due now, and when each runs next.
//!
//! Pure: the daemon keeps the per-task state (last run, first seen — persisted in the state
//! store), calls [`due_tasks`] on every tick, runs what it returns one after another (mutating
//! jobs also take the app lock), and records `last_run = now` for each task it started.
//!
//! Semantics (see [`crate::schedule::Schedule::next_due`]):
//! - **catch-up once**: runs missed while caretaker was down collapse into one run when it comes
//!   back, because the next due time is computed from the last run, not from the calendar;
//! - **no overlap**: a task that is still running is never due again;
//! - **random delay**: each run is pushed back by a delay in `[0, random_delay)` that is fixed
//!   per task and calendar slot (a hash, not a random draw), so repeated ticks agree on it.
//! - a task never run before counts from when it was first seen, so a fresh install does not
//!   start every task at once.
//!
//! Tasks that take the app lock (backup, prune, update, app commands) never race for it:
//! [`LockQueue`] holds the due ones and hands them out one at a time, in [`TaskKind::rank`]
//! order — backup first, then prune, update and the app commands in config order — so a
//! nightly backup and an app command on the same minute both run, one after the other. A
//! task that still finds the lock held (by an operator's command) is recorded as `skipped`
//! and retried after [`retry_delay`]; repeated skips raise the `job_skipped` alert.

use crate::config::{Config, ScheduledJob};
use crate::job::kind;
use crate::schedule::Schedule;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What a scheduled task does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum TaskKind {
    Backup,
    Prune,
    BackupCheck,
    Check,
    Update,
    /// The dependency report (`caretaker deps`).
    Deps,
    /// An app command from the config's `jobs:` section.
    Command(String),
    /// Package updates (`caretaker os update`, docs/os.md).
    OsUpdate,
}

impl TaskKind {
    /// The job kind recorded in the job log.
    pub fn job_kind(&self) -> &'static str {
        match self {
            TaskKind::Backup => kind::BACKUP,
            TaskKind::Prune => kind::PRUNE,
            TaskKind::BackupCheck => kind::BACKUP_CHECK,
            TaskKind::Check => kind::CHECK,
            TaskKind::Update => kind::UPDATE,
            TaskKind::Deps => kind::DEPS,
            TaskKind::Command(_) => kind::COMMAND,
            TaskKind::OsUpdate => crate::os::kind::OS_UPDATE,
        }
    }
}

impl TaskKind {
    /// Whether the task's command takes the app lock (a mutating job): those run one at a
    /// time, through [`LockQueue`].
    pub fn needs_app_lock(&self) -> bool {
        matches!(
            self,
            TaskKind::Backup | TaskKind::Prune | TaskKind::Update | TaskKind::Command(_) | TaskKind::OsUpdate
        )
    }

    /// The order in which due lock-taking tasks run (lower first): the backup before anything
    /// that changes the data, pruning right after it, then an update (which has a fresh
    /// backup behind it), then the app's own commands in config order.
    pub fn rank(&self) -> u8 {
        match self {
            TaskKind::Backup => 0,
            TaskKind::Prune => 1,
            TaskKind::BackupCheck => 2,
            TaskKind::Update => 3,
            TaskKind::Command(_) => 4,
            TaskKind::Check => 5,
            TaskKind::Deps => 6,
            // After the app's own update and commands: a fresh backup is behind it.
            TaskKind::OsUpdate => 4,
        }
    }
}

/// How long a skipped task waits before it is tried again: 30 s after the first skip,
/// doubling with each further one, at most 15 minutes (a long restore holding the lock is
/// not polled every few seconds).
pub fn retry_delay(skips: u32) -> Duration {
    let secs = 30u64.saturating_mul(1u64 << skips.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(15 * 60))
}

/// One task waiting for the app lock.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Waiting {
    pub run: TaskToRun,
    /// Not before this instant (a retry after a skip).
    pub not_before: Timestamp,
    /// How many times in a row it found the lock held.
    pub skips: u32,
    /// Position among equal ranks: the order tasks became due (config order within a tick).
    seq: u64,
}

/// The due tasks that take the app lock, waiting to run one at a time. Pure: the daemon feeds
/// it due tasks, asks [`LockQueue::next`] whenever nothing of its own holds the lock, and
/// reports skips with [`LockQueue::skipped`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LockQueue {
    waiting: Vec<Waiting>,
    next_seq: u64,
}

impl LockQueue {
    /// Adds due tasks (those that need the lock; others are ignored). A task already waiting
    /// is not added twice: its one run stands for every slot it waited through.
    pub fn add(&mut self, due: impl IntoIterator<Item = TaskToRun>, now: Timestamp) {
        for run in due {
            if !run.task.kind.needs_app_lock() || self.contains(&run.task.name) {
                continue;
            }
            self.waiting.push(Waiting { run, not_before: now, skips: 0, seq: self.next_seq });
            self.next_seq += 1;
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.waiting.iter().any(|w| w.run.task.name == name)
    }

    /// The names of the waiting tasks (the scheduler treats them like running ones: not due).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.waiting.iter().map(|w| w.run.task.name.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The task to start now, if the lock is free of the scheduler's own tasks: the lowest
    /// rank (then the earliest to become due) among those whose retry time has come.
    /// Returns it with its skip count so far, and removes it from the queue.
    pub fn next(&mut self, now: Timestamp, lock_task_running: bool) -> Option<(TaskToRun, u32)> {
        if lock_task_running {
            return None;
        }
        let i = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, w)| w.not_before <= now)
            .min_by_key(|(_, w)| (w.run.task.kind.rank(), w.seq))
            .map(|(i, _)| i)?;
        let w = self.waiting.remove(i);
        Some((w.run, w.skips))
    }

    /// A task started from the queue found the lock held: it waits again, [`retry_delay`]
    /// after `now`, ahead of tasks that became due later. Returns its consecutive skips and
    /// when it is retried.
    pub fn skipped(&mut self, run: TaskToRun, skips_before: u32, now: Timestamp) -> (u32, Timestamp) {
        let skips = skips_before.saturating_add(1);
        let delay = SignedDuration::try_from(retry_delay(skips)).unwrap_or(SignedDuration::MAX);
        let not_before = now.checked_add(delay).unwrap_or(Timestamp::MAX);
        // Keep its place: a retry goes before later arrivals of the same rank.
        let seq =
            self.waiting.iter().map(|w| w.seq).min().map_or(self.next_seq, |m| m.min(self.next_seq)).saturating_sub(1);
        self.waiting.retain(|w| w.run.task.name != run.task.name);
        self.waiting.push(Waiting { run, not_before, skips, seq });
        (skips, not_before)
    }
}

/// A task on a calendar schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Task {
    /// Unique and stable: the key of the persisted state (`backup`, `job:clearsessions`).
    pub name: String,
    pub kind: TaskKind,
    pub schedule: Schedule,
    #[serde(serialize_with = "ser_duration")]
    pub random_delay: Duration,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format_duration(*d))
}

/// The default schedule of the built-in deployment check task.
pub const DEFAULT_CHECK_SCHEDULE: &str = "hourly";

/// The tasks the config asks for: backup, prune, backup check, check, update (only if
/// automatic), and each app command of `jobs:`.
pub fn tasks_from_config(cfg: &Config) -> Vec<Task> {
    let delay = cfg.scheduler.random_delay;
    let mut out = Vec::new();
    let mut push = |name: String, kind: TaskKind, schedule: &Schedule| {
        out.push(Task { name, kind, schedule: schedule.clone(), random_delay: delay });
    };
    if let Some(b) = &cfg.backup {
        push("backup".into(), TaskKind::Backup, &b.schedule);
        if let Some(s) = &b.prune_schedule {
            push("prune".into(), TaskKind::Prune, s);
        }
        if let Some(s) = &b.check_schedule {
            push("backup_check".into(), TaskKind::BackupCheck, s);
        }
    }
    let check: Schedule = DEFAULT_CHECK_SCHEDULE.parse().expect("built-in schedule parses");
    push("check".into(), TaskKind::Check, &check);
    if cfg.update.automatic {
        if let Some(s) = &cfg.update.schedule {
            push("update".into(), TaskKind::Update, s);
        }
    }
    if let Some(s) = &cfg.deps.schedule {
        push("deps".into(), TaskKind::Deps, s);
    }
    for ScheduledJob { name, schedule, .. } in &cfg.jobs {
        push(format!("job:{name}"), TaskKind::Command(name.clone()), schedule);
    }
    if let Some(s) = &cfg.os.update.schedule {
        push("os_update".into(), TaskKind::OsUpdate, s);
    }
    out
}

/// What the daemon remembers about a task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TaskState {
    pub last_run: Option<Timestamp>,
    /// When the scheduler first saw the task; a never-run task counts from here.
    pub first_seen: Option<Timestamp>,
    pub running: bool,
}

/// A task to start now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskToRun {
    pub task: Task,
    /// The calendar time this run stands for (before the random delay).
    pub scheduled_for: Timestamp,
    /// Runs were missed (caretaker was down past at least one more slot); this one catches up.
    pub catch_up: bool,
}

/// The delay for one run: a hash of task name and slot, scaled into `[0, max)`.
pub fn run_delay(task: &str, slot: Timestamp, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in task.as_bytes().iter().chain(slot.as_second().to_le_bytes().iter()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let ms = max.as_millis().min(u64::MAX as u128) as u64;
    Duration::from_millis(h % ms)
}

fn reference(state: &TaskState, now: Timestamp) -> Timestamp {
    state.last_run.or(state.first_seen).unwrap_or(now)
}

/// When the task next starts (calendar slot plus its delay), given its state.
pub fn next_start(task: &Task, state: &TaskState, now: Timestamp, tz: &TimeZone) -> Option<(Timestamp, Timestamp)> {
    let slot = task.schedule.next_due(reference(state, now), tz)?;
    let delay = SignedDuration::try_from(run_delay(&task.name, slot, task.random_delay)).ok()?;
    Some((slot, slot.checked_add(delay).ok()?))
}

/// The tasks due at `now`, in the order given. Tasks without state count as first seen now
/// (so they are not due); the caller persists `first_seen` for them.
pub fn due_tasks(
    tasks: &[Task],
    states: &BTreeMap<String, TaskState>,
    now: Timestamp,
    tz: &TimeZone,
) -> Vec<TaskToRun> {
    let mut out = Vec::new();
    for task in tasks {
        let state = states.get(&task.name).copied().unwrap_or_default();
        if state.running {
            continue;
        }
        let Some((slot, start)) = next_start(task, &state, now, tz) else { continue };
        if start > now {
            continue;
        }
        // Another slot between this one and now means at least one run was missed.
        let catch_up = task.schedule.next_after(slot, tz).is_some_and(|next| next <= now);
        out.push(TaskToRun { task: task.clone(), scheduled_for: slot, catch_up });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn task(name: &str, sched: &str, delay: Duration) -> Task {
        Task { name: name.into(), kind: TaskKind::Backup, schedule: sched.parse().unwrap(), random_delay: delay }
    }

    fn vienna() -> TimeZone {
        TimeZone::get("Europe/Vienna").unwrap()
    }

    #[test]
    fn not_due_before_the_calendar_time_and_due_after() {
        let t = [task("backup", "daily 00:30", Duration::ZERO)];
        let mut st = BTreeMap::new();
        st.insert("backup".into(), TaskState { last_run: Some(ts("2026-03-01T00:30:00Z")), ..Default::default() });
        assert!(due_tasks(&t, &st, ts("2026-03-02T00:29:00Z"), &TimeZone::UTC).is_empty());
        let due = due_tasks(&t, &st, ts("2026-03-02T00:30:00Z"), &TimeZone::UTC);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].scheduled_for, ts("2026-03-02T00:30:00Z"));
        assert!(!due[0].catch_up);
    }

    #[test]
    fn missed_runs_catch_up_once() {
        let t = [task("backup", "daily 00:30", Duration::ZERO)];
        let mut st = BTreeMap::new();
        // Down for five days.
        st.insert("backup".into(), TaskState { last_run: Some(ts("2026-03-01T00:30:00Z")), ..Default::default() });
        let now = ts("2026-03-06T12:00:00Z");
        let due = due_tasks(&t, &st, now, &TimeZone::UTC);
        assert_eq!(due.len(), 1, "one run, not five");
        assert!(due[0].catch_up);
        // After it ran, nothing more is due until the next calendar slot.
        st.get_mut("backup").unwrap().last_run = Some(now);
        assert!(due_tasks(&t, &st, ts("2026-03-06T23:59:00Z"), &TimeZone::UTC).is_empty());
        assert_eq!(due_tasks(&t, &st, ts("2026-03-07T00:30:00Z"), &TimeZone::UTC).len(), 1);
    }

    #[test]
    fn a_running_task_never_overlaps() {
        let t = [task("backup", "hourly", Duration::ZERO)];
        let mut st = BTreeMap::new();
        st.insert(
            "backup".into(),
            TaskState { last_run: Some(ts("2026-03-01T00:00:00Z")), running: true, ..Default::default() },
        );
        assert!(due_tasks(&t, &st, ts("2026-03-01T05:00:00Z"), &TimeZone::UTC).is_empty());
    }

    #[test]
    fn a_new_task_waits_for_its_first_slot() {
        let t = [task("backup", "daily 00:30", Duration::ZERO)];
        let empty = BTreeMap::new();
        assert!(due_tasks(&t, &empty, ts("2026-03-01T10:00:00Z"), &TimeZone::UTC).is_empty());
        let mut st = BTreeMap::new();
        st.insert("backup".into(), TaskState { first_seen: Some(ts("2026-03-01T10:00:00Z")), ..Default::default() });
        assert!(due_tasks(&t, &st, ts("2026-03-01T23:00:00Z"), &TimeZone::UTC).is_empty());
        assert_eq!(due_tasks(&t, &st, ts("2026-03-02T00:30:00Z"), &TimeZone::UTC).len(), 1);
    }

    #[test]
    fn random_delay_is_bounded_stable_and_postpones_the_start() {
        let max = Duration::from_secs(600);
        let slot = ts("2026-03-02T00:30:00Z");
        let d = run_delay("backup", slot, max);
        assert!(d < max);
        assert_eq!(d, run_delay("backup", slot, max), "same task and slot, same delay");
        let t = [task("backup", "daily 00:30", max)];
        let mut st = BTreeMap::new();
        st.insert("backup".into(), TaskState { last_run: Some(ts("2026-03-01T00:30:00Z")), ..Default::default() });
        let start = slot.checked_add(SignedDuration::try_from(d).unwrap()).unwrap();
        if d > Duration::ZERO {
            let before = start.checked_sub(SignedDuration::from_secs(1)).unwrap();
            assert!(due_tasks(&t, &st, before, &TimeZone::UTC).is_empty());
        }
        assert_eq!(due_tasks(&t, &st, start, &TimeZone::UTC).len(), 1);
        // Different tasks spread out.
        let delays: std::collections::BTreeSet<_> =
            (0..20).map(|i| run_delay(&format!("task{i}"), slot, max)).collect();
        assert!(delays.len() > 10);
    }

    #[test]
    fn dst_spring_forward_runs_once_shifted_and_fall_back_runs_once() {
        let tz = vienna();
        // 2026-03-29: 02:00 → 03:00 in Vienna. "daily 02:30" fires once, at 03:30 local (01:30Z).
        let t = [task("backup", "daily 02:30", Duration::ZERO)];
        let mut st = BTreeMap::new();
        st.insert("backup".into(), TaskState { last_run: Some(ts("2026-03-28T01:30:00Z")), ..Default::default() });
        let (slot, _) = next_start(&t[0], &st["backup"], ts("2026-03-28T12:00:00Z"), &tz).unwrap();
        assert_eq!(slot, ts("2026-03-29T01:30:00Z"));
        // 2026-10-25: 03:00 → 02:00. "daily 02:30" happens twice locally, runs once.
        st.insert("backup".into(), TaskState { last_run: Some(ts("2026-10-24T00:30:00Z")), ..Default::default() });
        let first = due_tasks(&t, &st, ts("2026-10-25T00:30:00Z"), &tz);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].scheduled_for, ts("2026-10-25T00:30:00Z"));
        st.get_mut("backup").unwrap().last_run = Some(ts("2026-10-25T00:30:00Z"));
        // One hour later the wall clock reads 02:30 again: not due.
        assert!(due_tasks(&t, &st, ts("2026-10-25T01:30:00Z"), &tz).is_empty());
    }

    fn due_now(name: &str, kind: TaskKind, at: &str) -> TaskToRun {
        TaskToRun {
            task: Task {
                name: name.into(),
                kind,
                schedule: "daily 00:30".parse().unwrap(),
                random_delay: Duration::ZERO,
            },
            scheduled_for: ts(at),
            catch_up: false,
        }
    }

    #[test]
    fn tasks_due_on_the_same_minute_run_one_at_a_time_backup_first() {
        let at = "2026-03-02T00:30:00Z";
        let now = ts(at);
        let mut q = LockQueue::default();
        // In config order, as `tasks_from_config` lists them: check and the commands after the
        // backup; here deliberately scrambled.
        q.add(
            [
                due_now("job:clearsessions", TaskKind::Command("clearsessions".into()), at),
                due_now("check", TaskKind::Check, at),
                due_now("backup", TaskKind::Backup, at),
                due_now("job:report", TaskKind::Command("report".into()), at),
                due_now("update", TaskKind::Update, at),
            ],
            now,
        );
        assert!(!q.contains("check"), "a task without the lock does not wait");
        let mut order = Vec::new();
        let mut running = false;
        for minute in 0..10 {
            let t = now + SignedDuration::from_mins(minute);
            if let Some((run, skips)) = q.next(t, running) {
                assert_eq!(skips, 0);
                order.push(run.task.name.clone());
                running = true;
                // Nothing else starts while it runs.
                assert!(q.next(t, running).is_none());
            }
            running = false; // each task takes under a minute
        }
        assert_eq!(order, ["backup", "update", "job:clearsessions", "job:report"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_waiting_task_is_not_queued_twice() {
        let mut q = LockQueue::default();
        let now = ts("2026-03-02T00:30:00Z");
        q.add([due_now("backup", TaskKind::Backup, "2026-03-02T00:30:00Z")], now);
        q.add([due_now("backup", TaskKind::Backup, "2026-03-02T00:31:00Z")], now);
        assert_eq!(q.names().collect::<Vec<_>>(), ["backup"]);
    }

    #[test]
    fn a_skipped_task_is_retried_with_backoff_and_keeps_its_place() {
        let at = "2026-03-02T00:30:00Z";
        let now = ts(at);
        let mut q = LockQueue::default();
        q.add([due_now("backup", TaskKind::Backup, at), due_now("job:a", TaskKind::Command("a".into()), at)], now);
        let (run, skips) = q.next(now, false).unwrap();
        assert_eq!(run.task.name, "backup");
        // An operator's command held the lock.
        let (n, retry_at) = q.skipped(run, skips, now);
        assert_eq!((n, retry_at), (1, now + SignedDuration::from_secs(30)));
        // Meanwhile the next task may try.
        let (a, a_skips) = q.next(now, false).unwrap();
        assert_eq!(a.task.name, "job:a");
        q.skipped(a, a_skips, now);
        assert!(q.next(now + SignedDuration::from_secs(29), false).is_none(), "not before its retry time");
        let (again, skips) = q.next(now + SignedDuration::from_secs(30), false).unwrap();
        assert_eq!((again.task.name.as_str(), skips), ("backup", 1), "the backup still goes first");
        let (n, retry_at) = q.skipped(again, skips, now + SignedDuration::from_secs(30));
        assert_eq!((n, retry_at), (2, now + SignedDuration::from_secs(90)));
        assert_eq!([1, 2, 3, 4, 5, 6, 20].map(retry_delay).map(|d| d.as_secs()), [30, 60, 120, 240, 480, 900, 900]);
    }

    #[test]
    fn tasks_come_from_the_config() {
        let text = "version: 1\napp: { name: a }\nfiles: [/srv]\nbackup: { repository: /b, password: x, schedule: daily 00:30, prune_schedule: Sun 03:00 }\nupdate: { schedule: daily 06:30, automatic: true }\njobs: { clearsessions: { command: x, schedule: daily 04:00 } }\nscheduler: { random_delay: 10m }\ndeps: { schedule: Mon 05:00, lockfile: uv.lock, index_url: off }\n";
        let cfg = crate::config::load(text, std::path::Path::new("/etc/c.yml"), None, &crate::config::NoSecrets)
            .unwrap()
            .config;
        let names: Vec<String> = tasks_from_config(&cfg).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["backup", "prune", "check", "update", "deps", "job:clearsessions"]);
        assert_eq!(cfg.deps.lockfile.as_deref(), Some(std::path::Path::new("uv.lock")));
        assert_eq!(cfg.deps.index_url, None, "`index_url: off` turns the outdated check off");
        assert!(tasks_from_config(&cfg).iter().all(|t| t.random_delay == Duration::from_secs(600)));
    }
}
