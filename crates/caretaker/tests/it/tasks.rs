//! `caretaker tasks due` / `tasks run-due` on the demo app's config (docs/tasks.md): nothing
//! due, a due backup with its figures, a failing custom command that does not stop the other
//! tasks, a second run that performs nothing, a task skipped because the app lock is held,
//! and every document checked against schema 1 as docs/tasks.md documents it.
//!
//! Which tasks are due is set through the scheduler's memory in the state store (a task's
//! last run), never by waiting for the clock.

use caretaker_core::config::Redactor;
use caretaker_core::job::{Outcome, Trigger};
use caretaker_core::tasks::{DueReason, DueReport, Kind, RunReport, TaskFigures, TaskOutcome};
use caretaker_state::Store;
use caretaker_testkit::Caretaker;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The demo's directory after `caretaker demo --exit-when-ready` (config, migrated database,
/// initialised backup repository; its daemon stopped again), with one more `jobs:` entry
/// that fails, listed before the demo's own `status` job.
fn demo() -> (tempfile::TempDir, Caretaker, PathBuf) {
    away_from_slots();
    let dir = tempfile::tempdir().unwrap();
    let listen =
        format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let demo = dir.path().join("demo");
    let out = Command::new(crate::BIN)
        .args(["demo", "--exit-when-ready", "--listen", &listen, "--dir"])
        .arg(&demo)
        .env_remove("CARETAKER_STATE_DIR")
        .env_remove("CARETAKER_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::stderr_of(&out));
    let config = demo.join("caretaker.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\njobs:\n"), "{text}");
    let text = text.replace(
        "\njobs:\n",
        "\njobs:\n  broken: { command: \"echo the report server is gone >&2; exit 3\", schedule: hourly }\n",
    );
    std::fs::write(&config, text).unwrap();
    let state = demo.join("state");
    (dir, Caretaker::new(crate::BIN, &config, &state), state)
}

/// Waits (polling) while the wall clock is in the minute before a slot of the demo config's
/// schedules (`hourly`, `daily 00:30`), so a test of a few seconds never sees a slot come
/// between its steps (e.g. "nothing due right after").
fn away_from_slots() {
    caretaker_testkit::wait_until(
        std::time::Duration::from_secs(120),
        "the clock to leave the minute before a slot",
        || {
            let minute = jiff::Zoned::now().minute();
            (minute != 59 && minute != 29).then_some(())
        },
    );
}

/// Sets the tasks' last runs: `Some(hours)` in the past makes a task due (its slot has long
/// come, whatever the random delay); `None` makes it not due for the next ~50 minutes (a
/// last run a few minutes ahead: the next hourly slot is at least 50 minutes away, so the
/// test cannot cross it).
fn last_runs(state: &Path, tasks: &[(&str, Option<i64>)]) {
    let store = Store::open(state, Redactor::default()).unwrap();
    let now = jiff::Timestamp::now();
    for (name, hours_ago) in tasks {
        let at = match hours_ago {
            Some(h) => now - jiff::SignedDuration::from_hours(*h),
            None => now + jiff::SignedDuration::from_mins(10),
        };
        store.task_seen(name, at).unwrap();
        store.task_ran(name, at).unwrap();
    }
}

const ALL: [&str; 4] = ["backup", "check", "job:broken", "job:status"];

fn none_due(state: &Path) {
    last_runs(state, &ALL.map(|t| (t, None)));
}

/// Runs `args` expecting `code`; stdout must be exactly one JSON document.
fn json_doc(ct: &Caretaker, args: &[&str], code: i32) -> Value {
    let out = ct.run(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(code), "{args:?}\n--- stdout\n{stdout}\n--- stderr\n{}", crate::stderr_of(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"))
}

/// The field names docs/tasks.md documents: the backticked names in the first column of its
/// field tables (`.name` rows are fields of the list's entries).
fn documented_fields() -> BTreeSet<String> {
    let doc = include_str!("../../../../docs/tasks.md");
    let mut out = BTreeSet::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap_or_default();
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                out.insert(part.trim_start_matches('.').trim_end_matches("[]").to_string());
            }
        }
    }
    out
}

/// Every field of the document (at every level that the schema defines) is documented,
/// and the document reads back through the schema's types.
fn check_schema(v: &Value) {
    assert_eq!(v["schema"], 1, "{v}");
    let documented = documented_fields();
    let mut objects: Vec<(&str, &Value)> = vec![("document", v)];
    for list in ["tasks", "results"] {
        for item in v[list].as_array().into_iter().flatten() {
            objects.push((list, item));
            for sub in ["last_attempt", "last_success"] {
                if item[sub].is_object() {
                    objects.push((sub, &item[sub]));
                }
            }
        }
    }
    if v["summary"].is_object() {
        objects.push(("summary", &v["summary"]));
    }
    for (what, obj) in objects {
        for key in obj.as_object().unwrap().keys() {
            let ok = documented.contains(key.as_str())
                // `last_attempt` / `last_success` carry `job_id`, `started_at`, `ended_at`,
                // `outcome`, named in the table's text.
                || matches!(what, "last_attempt" | "last_success");
            assert!(ok, "field `{key}` of {what} is not documented in docs/tasks.md: {obj}");
        }
    }
    if v.get("tasks").is_some() {
        serde_json::from_value::<DueReport>(v.clone()).unwrap();
    } else {
        serde_json::from_value::<RunReport>(v.clone()).unwrap();
    }
}

fn result<'a>(r: &'a RunReport, name: &str) -> &'a caretaker_core::tasks::TaskResult {
    r.results.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no result for {name}: {r:#?}"))
}

#[test]
fn run_due_runs_what_is_due_reports_each_task_and_a_second_run_does_nothing() {
    let (_dir, ct, state) = demo();

    // Nothing due: every task reported not due, nothing ran, exit 0.
    none_due(&state);
    let v = json_doc(&ct, &["tasks", "run-due", "--json"], 0);
    check_schema(&v);
    let r: RunReport = serde_json::from_value(v).unwrap();
    assert_eq!(r.app, "demo");
    assert_eq!(r.summary.ran, 0, "{r:#?}");
    assert!(r.results.iter().all(|t| t.outcome == TaskOutcome::NotDue && t.next_run.is_some()), "{r:#?}");
    let names: BTreeSet<&str> = r.results.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ALL.into_iter().collect(), "every scheduled task of the demo config");

    // The backup and both commands due; the check not.
    last_runs(&state, &[("backup", Some(72)), ("job:broken", Some(3)), ("job:status", Some(3))]);
    let due = json_doc(&ct, &["tasks", "due", "--json"], 0);
    check_schema(&due);
    let due: DueReport = serde_json::from_value(due).unwrap();
    let d: Vec<(&str, bool)> = due.tasks.iter().map(|t| (t.name.as_str(), t.due)).collect();
    assert_eq!(d, [("backup", true), ("check", false), ("job:broken", true), ("job:status", true)]);
    let backup = due.tasks.iter().find(|t| t.name == "backup").unwrap();
    assert_eq!(backup.reason, DueReason::CatchUp, "three days of daily slots: one catch-up run");
    // The demo's own backup is the backup task's last success.
    let demo_backup = backup.last_success.as_ref().expect("the demo's backup").job_id;

    let before = jiff::Timestamp::now();
    let v = json_doc(&ct, &["tasks", "run-due", "--json"], 1);
    check_schema(&v);
    let r: RunReport = serde_json::from_value(v).unwrap();
    let order: Vec<(&str, TaskOutcome)> =
        r.results.iter().filter(|t| t.started_at.is_some()).map(|t| (t.name.as_str(), t.outcome)).collect();
    assert_eq!(
        order,
        [
            ("backup", TaskOutcome::Succeeded),
            ("job:broken", TaskOutcome::Failed),
            ("job:status", TaskOutcome::Succeeded)
        ],
        "the failing command did not stop the task after it: {r:#?}"
    );
    assert_eq!(result(&r, "check").outcome, TaskOutcome::NotDue);
    assert_eq!(
        (r.summary.due, r.summary.ran, r.summary.succeeded, r.summary.failed, r.summary.not_due),
        (3, 3, 2, 1, 1)
    );
    // The backup ran as a backup job of its own, with its figures.
    let b = result(&r, "backup");
    assert_eq!((b.kind.clone(), b.job_kind.as_str(), b.exit_code), (Kind::Backup, "backup", Some(0)));
    assert!(b.started_at.unwrap() >= before && b.finished_at.unwrap() >= b.started_at.unwrap());
    let job_id = b.job_id.expect("the backup's job");
    assert!(job_id > demo_backup);
    match b.typed_figures() {
        TaskFigures::Backup(f) => {
            assert!(f.snapshot_id.as_deref().is_some_and(|s| !s.is_empty()), "{f:?}");
            assert!(f.bytes_read.unwrap_or(0) > 0, "{f:?}");
            assert_eq!(f.repository.snapshots, Some(2), "the demo's snapshot and this one: {f:?}");
        }
        other => panic!("{other:?}"),
    }
    let jobs = ct.json(&["jobs", "--json"]);
    let job = jobs.as_array().unwrap().iter().find(|j| j["id"] == job_id).unwrap();
    assert_eq!(
        (job["kind"].as_str(), job["trigger"].as_str(), job["outcome"].as_str()),
        (Some("backup"), Some("schedule"), Some("succeeded"))
    );
    assert_eq!(job["figures"], serde_json::to_value(&b.figures).unwrap());
    // The failing command: its job, exit and error.
    let f = result(&r, "job:broken");
    assert_eq!((f.kind.clone(), f.job_outcome, f.exit_code), (Kind::Command, Some(Outcome::Failed), Some(1)));
    assert!(f.error.as_deref().is_some_and(|e| e.contains("broken") && e.contains('3')), "{f:?}");
    match f.typed_figures() {
        TaskFigures::Command(c) => assert_eq!(c.name.as_deref(), Some("broken")),
        other => panic!("{other:?}"),
    }
    // The password of the backup repository is nowhere in the report.
    let key = std::fs::read_to_string(state.parent().unwrap().join("backup.key")).unwrap();
    assert!(!serde_json::to_string(&r).unwrap().contains(key.trim()));

    // Right after: nothing is due any more, nothing runs.
    let v = json_doc(&ct, &["tasks", "run-due", "--json"], 0);
    let again: RunReport = serde_json::from_value(v).unwrap();
    assert_eq!(again.summary.ran, 0, "{again:#?}");
    assert!(again.results.iter().all(|t| t.outcome == TaskOutcome::NotDue));
    // And `due` says when the backup runs next and what it did last.
    let due: DueReport = serde_json::from_value(json_doc(&ct, &["tasks", "due", "--json"], 0)).unwrap();
    let backup = due.tasks.iter().find(|t| t.name == "backup").unwrap();
    assert_eq!((backup.due, backup.reason), (false, DueReason::NotYet));
    assert_eq!(backup.last_success.as_ref().map(|j| j.job_id), Some(job_id));
    let broken = due.tasks.iter().find(|t| t.name == "job:broken").unwrap();
    assert_eq!(broken.last_attempt.as_ref().map(|j| j.outcome), Some(Outcome::Failed));
    assert_eq!(broken.last_success, None);

    // Without --json: a table on stdout, the same exit code.
    none_due(&state);
    let text = ct.expect(&["tasks", "run-due"], 0);
    assert!(text.contains("0 due: 0 succeeded, 0 failed, 0 skipped; 4 not due"), "{text}");
}

#[test]
fn a_due_task_that_finds_the_app_lock_held_is_skipped_and_stays_due() {
    let (_dir, ct, state) = demo();
    none_due(&state);
    last_runs(&state, &[("job:status", Some(3))]);
    // An operator's restore holds the app lock.
    let store = Store::open(&state, Redactor::default()).unwrap();
    let holder = store.start_job("restore", Trigger::Cli, true).unwrap();
    let v = json_doc(&ct, &["tasks", "run-due", "--json"], 4);
    check_schema(&v);
    let r: RunReport = serde_json::from_value(v).unwrap();
    let s = result(&r, "job:status");
    assert_eq!((s.outcome, s.job_outcome), (TaskOutcome::Skipped, Some(Outcome::Skipped)), "{s:#?}");
    assert!(s.error.as_deref().is_some_and(|e| e.contains(&format!("job #{} (restore", holder.id()))), "{s:?}");
    let skipped = store.job(s.job_id.unwrap()).unwrap();
    assert_eq!((skipped.kind.as_str(), skipped.outcome), ("command", Outcome::Skipped));
    // Still due; once the lock is free it runs.
    holder.finish(Outcome::Succeeded, serde_json::json!({}), None).unwrap();
    let due: DueReport = serde_json::from_value(json_doc(&ct, &["tasks", "due", "--json"], 0)).unwrap();
    assert!(due.tasks.iter().find(|t| t.name == "job:status").unwrap().due);
    let r: RunReport = serde_json::from_value(json_doc(&ct, &["tasks", "run-due", "--json"], 0)).unwrap();
    assert_eq!(result(&r, "job:status").outcome, TaskOutcome::Succeeded, "{r:#?}");
}
