//! The daemon's scheduler with tasks that take the app lock: due on the same minute they run
//! one after another in the stated order (backup first, then the app commands in config
//! order), and a task that finds the lock held by someone else is recorded as `skipped` and
//! retried. Every wait polls with a deadline; load-based alert rules are switched off.

use crate::supervisor::App;
use caretaker_core::config::Redactor;
use caretaker_core::job::{Outcome, Trigger};
use caretaker_state::Store;
use caretaker_testkit::wait_until;
use serde_json::Value;
use std::time::Duration;

/// Alert rules that read the host are off: these tests must not depend on its load or disk.
const QUIET_HOST_RULES: &str =
    "alerts: { rules: { load_per_cpu: false, memory_used_percent: false, filesystem_free_percent: false } }";

/// Marks tasks as last run two hours ago, so they are due at the daemon's first tick.
fn due_now(app: &App, tasks: &[&str]) {
    let store = Store::open(&app.path("state"), Redactor::default()).unwrap();
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
    for t in tasks {
        store.task_seen(t, past).unwrap();
        store.task_ran(t, past).unwrap();
    }
}

fn finished_jobs(app: &App) -> Vec<Value> {
    let jobs = app.ct.json(&["jobs", "--json"]);
    let mut v: Vec<Value> = jobs.as_array().unwrap().iter().filter(|j| j["outcome"] != "running").cloned().collect();
    v.sort_by_key(|j| j["id"].as_i64());
    v
}

fn ts(v: &Value) -> jiff::Timestamp {
    v.as_str().unwrap_or_else(|| panic!("a timestamp: {v}")).parse().unwrap()
}

/// A job command that notes when it starts and ends (and takes a moment, so overlapping runs
/// would show).
fn noting(name: &str) -> String {
    format!(
        "{{ command: \"echo {name} start >> order.txt; sleep 1; echo {name} end >> order.txt\", schedule: hourly }}"
    )
}

#[test]
fn tasks_due_on_the_same_minute_all_run_one_after_another_backup_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    std::fs::write(dir.path().join("files/a.txt"), "data").unwrap();
    let app = App::new(
        "  idle: \"exec sleep 3175\"",
        &format!(
            "timezone: UTC\nfiles: [ \"{files}\" ]\nbackup:\n  repository: \"{repo}\"\n  password: \"a long test password\"\n  schedule: hourly\n  keep: {{ last: 2 }}\njobs:\n  report: {r}\n  clearsessions: {c}\n{QUIET_HOST_RULES}",
            files = dir.path().join("files").display(),
            repo = dir.path().join("repo").display(),
            r = noting("report"),
            c = noting("clearsessions"),
        ),
    );
    // It holds the repository password.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(app.path("caretaker.yml"), std::fs::Permissions::from_mode(0o600)).unwrap();
    app.ct.expect(&["backup", "init"], 0);
    due_now(&app, &["backup", "job:report", "job:clearsessions"]);
    let _d = app.daemon();
    let jobs = wait_until(Duration::from_secs(180), "the backup and both commands to finish", || {
        let jobs: Vec<Value> =
            finished_jobs(&app).into_iter().filter(|j| j["kind"] == "backup" || j["kind"] == "command").collect();
        (jobs.len() >= 3).then_some(jobs)
    });
    let summary: Vec<String> =
        jobs.iter().map(|j| format!("{} {} {}", j["kind"], j["outcome"], j["trigger"])).collect();
    assert_eq!(
        summary,
        [
            r#""backup" "succeeded" "schedule""#,
            r#""command" "succeeded" "schedule""#,
            r#""command" "succeeded" "schedule""#
        ],
        "every task ran, none was skipped: {jobs:#?}"
    );
    // One after another, in the stated order: each starts after the previous one ended.
    for pair in jobs.windows(2) {
        assert!(ts(&pair[1]["started_at"]) >= ts(&pair[0]["ended_at"]), "overlap: {pair:#?}");
    }
    let order = std::fs::read_to_string(app.path("order.txt")).unwrap();
    assert_eq!(order, "report start\nreport end\nclearsessions start\nclearsessions end\n");
}

#[test]
fn a_task_that_finds_the_lock_held_is_recorded_skipped_and_retried() {
    let app = App::new(
        "  idle: \"exec sleep 3176\"",
        &format!("timezone: UTC\njobs:\n  report: {{ command: \"echo ran > report.txt\", schedule: hourly }}\n{QUIET_HOST_RULES}"),
    );
    due_now(&app, &["job:report"]);
    // An operator's long job holds the app lock while the task comes due.
    let store = Store::open(&app.path("state"), Redactor::default()).unwrap();
    let holder = store.start_job("restore", Trigger::Cli, true).unwrap();
    let holder_id = holder.id();
    let _d = app.daemon();
    let skipped = wait_until(Duration::from_secs(60), "the skipped attempt to be recorded", || {
        finished_jobs(&app).into_iter().find(|j| j["kind"] == "command")
    });
    assert_eq!(skipped["outcome"], "skipped", "{skipped}");
    assert_eq!(skipped["trigger"], "schedule", "{skipped}");
    let why = skipped["error"].as_str().unwrap();
    assert!(why.contains(&format!("job #{holder_id} (restore")) && why.contains("held the app lock"), "{why}");
    assert!(!app.path("report.txt").exists());
    // The lock is free again: the retry runs it (first retry 30 s after the skip).
    holder.finish(Outcome::Succeeded, serde_json::json!({}), None).unwrap();
    let ran = wait_until(Duration::from_secs(120), "the retried task to run", || {
        finished_jobs(&app).into_iter().find(|j| j["kind"] == "command" && j["outcome"] != "skipped")
    });
    assert_eq!(ran["outcome"], "succeeded", "{ran}");
    assert_eq!(std::fs::read_to_string(app.path("report.txt")).unwrap(), "ran\n");
    // The skip streak ended with the run: nothing for the job_skipped alert to see.
    assert!(store.skipped_tasks().unwrap().is_empty());
}
