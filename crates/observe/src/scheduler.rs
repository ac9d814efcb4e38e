//! The scheduler's tick against the state store: the daemon calls [`tick`] every few seconds
//! and starts what it returns. Decisions are `caretaker_core::scheduler::due_tasks`; this only
//! loads and stores the per-task state.

use caretaker_core::config::Config;
use caretaker_core::scheduler::{due_tasks, tasks_from_config, TaskToRun};
use caretaker_state::{StateError, Store};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::collections::BTreeSet;

/// How often the daemon should call [`tick`]; schedules have minute resolution.
pub const TICK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// The zone schedules are read in: the config's `timezone`, else the machine's.
pub fn time_zone(cfg: &Config) -> TimeZone {
    cfg.timezone.as_deref().and_then(|z| TimeZone::get(z).ok()).unwrap_or_else(TimeZone::system)
}

/// The tasks to start now. `running`: names of tasks whose job has not finished (never
/// started twice). Each returned task is recorded as run at `now` *before* the caller starts
/// it, so a crash during the run does not repeat it in a loop; missed runs collapse into one.
/// The record is a claim ([`Store::claim_task_run`]): a slot that `caretaker tasks run-due`
/// claimed first is not returned.
pub fn tick(
    cfg: &Config,
    store: &Store,
    running: &BTreeSet<String>,
    now: Timestamp,
) -> Result<Vec<TaskToRun>, StateError> {
    let tasks = tasks_from_config(cfg);
    for t in &tasks {
        store.task_seen(&t.name, now)?;
    }
    let mut states = store.task_states()?;
    for name in running {
        if let Some(s) = states.get_mut(name) {
            s.running = true;
        }
    }
    let mut due = Vec::new();
    for d in due_tasks(&tasks, &states, now, &time_zone(cfg)) {
        // A compare-and-set on the last run this tick read: `caretaker tasks run-due` may
        // have claimed the same slot meanwhile, and then it runs it, not the daemon.
        let seen = states.get(&d.task.name).and_then(|s| s.last_run);
        if store.claim_task_run(&d.task.name, seen, now)? {
            due.push(d);
        }
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_core::config::Redactor;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn ticks_persist_first_seen_and_last_run_and_catch_up_once() {
        let text = "version: 1\napp: { name: t }\ntimezone: UTC\njobs: { report: { command: x, schedule: \"daily 04:00\" } }\n";
        let cfg = caretaker_core::config::load(
            text,
            std::path::Path::new("/c.yml"),
            None,
            &caretaker_core::config::NoSecrets,
        )
        .unwrap()
        .config;
        let dir = tempfile::tempdir().unwrap();
        let none = BTreeSet::new();
        {
            let store = Store::open(dir.path(), Redactor::default()).unwrap();
            assert!(tick(&cfg, &store, &none, ts("2026-03-01T03:00:00Z")).unwrap().is_empty());
            let due = tick(&cfg, &store, &none, ts("2026-03-01T04:00:10Z")).unwrap();
            let names: Vec<&str> = due.iter().map(|d| d.task.name.as_str()).collect();
            assert_eq!(names, ["check", "job:report"]);
            assert!(tick(&cfg, &store, &none, ts("2026-03-01T04:00:25Z")).unwrap().is_empty());
        }
        // caretaker was down for three days: one catch-up run each, after a restart.
        let store = Store::open(dir.path(), Redactor::default()).unwrap();
        let running: BTreeSet<String> = ["check".to_string()].into();
        let due = tick(&cfg, &store, &running, ts("2026-03-04T12:00:00Z")).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].task.name, "job:report");
        assert!(due[0].catch_up);
        assert!(tick(&cfg, &store, &none, ts("2026-03-04T12:00:00Z")).unwrap().iter().all(|d| d.task.name == "check"));
    }
}
