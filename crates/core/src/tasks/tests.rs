//! The due logic with a fake clock, and the schema's round trip.

use super::*;
use crate::config::{load, NoSecrets};
use crate::scheduler::tasks_from_config;
use jiff::SignedDuration;
use serde_json::json;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn config(text: &str) -> crate::config::Config {
    load(text, std::path::Path::new("/etc/c.yml"), None, &NoSecrets).unwrap().config
}

const CFG: &str = "version: 1\napp: { name: a }\ntimezone: UTC\nfiles: [/srv]\n\
    backup: { repository: /b, password: x, schedule: daily 00:30, prune_schedule: Sun 03:00 }\n\
    deps: { schedule: Mon 05:00, lockfile: uv.lock, index_url: off }\n\
    jobs: { report: { command: x, schedule: daily 04:00 }, clear: { command: y, schedule: hourly } }\n";

fn seen(at: &str, last: Option<&str>) -> Observed {
    Observed {
        state: Some(TaskState { first_seen: Some(ts(at)), last_run: last.map(ts), running: false }),
        ..Default::default()
    }
}

fn by_name<'a>(plan: &'a [DueTask], name: &str) -> &'a DueTask {
    plan.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no task {name}"))
}

#[test]
fn a_fresh_server_has_nothing_due_and_says_when_each_task_first_runs() {
    let cfg = config(CFG);
    let tasks = tasks_from_config(&cfg);
    let now = ts("2026-03-04T10:00:00Z"); // a Wednesday
    let plan = plan(&tasks, &BTreeMap::new(), now, &TimeZone::UTC);
    assert_eq!(
        plan.iter().map(|t| (t.name.as_str(), t.kind.as_str())).collect::<Vec<_>>(),
        [
            ("backup", "backup"),
            ("prune", "prune"),
            ("check", "check"),
            ("deps", "deps"),
            ("job:report", "command"),
            ("job:clear", "command")
        ]
    );
    assert!(plan.iter().all(|t| !t.due && t.reason == DueReason::New), "{plan:#?}");
    assert_eq!(by_name(&plan, "backup").next_run, Some(ts("2026-03-05T00:30:00Z")));
    assert_eq!(by_name(&plan, "deps").next_run, Some(ts("2026-03-09T05:00:00Z")));
    assert_eq!(by_name(&plan, "job:clear").job_kind, "command");
}

#[test]
fn due_follows_the_daemon_scheduler_as_the_fake_clock_moves() {
    let cfg = config(CFG);
    let tasks = tasks_from_config(&cfg);
    let mut obs: BTreeMap<String, Observed> =
        tasks.iter().map(|t| (t.name.clone(), seen("2026-03-01T00:00:00Z", Some("2026-03-04T00:30:00Z")))).collect();
    let tz = TimeZone::UTC;
    // Before the backup's next slot: not due; its next run is the slot.
    let p = plan(&tasks, &obs, ts("2026-03-05T00:29:59Z"), &tz);
    let b = by_name(&p, "backup");
    assert_eq!((b.due, b.reason, b.next_run), (false, DueReason::NotYet, Some(ts("2026-03-05T00:30:00Z"))));
    // At the slot: due, standing for that slot.
    let p = plan(&tasks, &obs, ts("2026-03-05T00:30:00Z"), &tz);
    let b = by_name(&p, "backup");
    assert_eq!((b.due, b.reason, b.scheduled_for), (true, DueReason::Slot, Some(ts("2026-03-05T00:30:00Z"))));
    assert_eq!(b.next_run, None);
    assert_eq!(b.last_run, Some(ts("2026-03-04T00:30:00Z")));
    // Agrees with the daemon's own decision for every task at every hour of a week.
    let mut t = ts("2026-03-04T00:00:00Z");
    while t < ts("2026-03-11T00:00:00Z") {
        let states: BTreeMap<String, TaskState> = obs.iter().map(|(k, v)| (k.clone(), v.state.unwrap())).collect();
        let daemon: Vec<String> =
            scheduler::due_tasks(&tasks, &states, t, &tz).into_iter().map(|d| d.task.name).collect();
        let ours: Vec<String> = plan(&tasks, &obs, t, &tz).into_iter().filter(|d| d.due).map(|d| d.name).collect();
        assert_eq!(ours, daemon, "at {t}");
        // Run what is due, as `run-due` does (recorded as run now).
        for name in ours {
            obs.get_mut(&name).unwrap().state.as_mut().unwrap().last_run = Some(t);
        }
        t = t + SignedDuration::from_mins(37);
    }
}

#[test]
fn missed_slots_are_one_catch_up_run_and_a_running_job_is_not_run_again() {
    let cfg = config(CFG);
    let tasks = tasks_from_config(&cfg);
    let mut obs = BTreeMap::new();
    obs.insert("backup".to_string(), seen("2026-03-01T00:00:00Z", Some("2026-03-01T00:30:00Z")));
    obs.insert("job:report".to_string(), seen("2026-03-01T00:00:00Z", Some("2026-03-04T04:00:00Z")));
    let now = ts("2026-03-04T12:00:00Z");
    let p = plan(&tasks, &obs, now, &TimeZone::UTC);
    let b = by_name(&p, "backup");
    assert_eq!((b.due, b.reason, b.scheduled_for), (true, DueReason::CatchUp, Some(ts("2026-03-02T00:30:00Z"))));
    assert!(!by_name(&p, "job:report").due);
    // An operator's `backup run` is running: reported, not due.
    obs.get_mut("backup").unwrap().running_job = Some(41);
    let p = plan(&tasks, &obs, now, &TimeZone::UTC);
    let b = by_name(&p, "backup");
    assert_eq!((b.due, b.reason, b.running_job), (false, DueReason::Running, Some(41)));
    assert_eq!(b.scheduled_for, Some(ts("2026-03-02T00:30:00Z")), "its slot has come all the same");
}

#[test]
fn the_random_delay_counts_like_in_the_daemon() {
    let cfg = config(&format!("{CFG}scheduler: {{ random_delay: 30m }}\n"));
    let tasks = tasks_from_config(&cfg);
    let b = tasks.iter().find(|t| t.name == "backup").unwrap();
    let state = TaskState { first_seen: None, last_run: Some(ts("2026-03-04T00:30:00Z")), running: false };
    let (slot, start) = scheduler::next_start(b, &state, ts("2026-03-04T01:00:00Z"), &TimeZone::UTC).unwrap();
    assert_eq!(slot, ts("2026-03-05T00:30:00Z"));
    let obs = BTreeMap::from([("backup".to_string(), Observed { state: Some(state), ..Default::default() })]);
    if start > slot {
        let p = plan(&tasks, &obs, start - SignedDuration::from_secs(1), &TimeZone::UTC);
        assert_eq!(by_name(&p, "backup").next_run, Some(start));
        assert!(!by_name(&p, "backup").due);
    }
    assert!(by_name(&plan(&tasks, &obs, start, &TimeZone::UTC), "backup").due);
}

#[test]
fn due_tasks_run_backup_first_then_the_other_lock_takers_then_the_rest() {
    let cfg = config(CFG);
    let tasks = tasks_from_config(&cfg);
    let obs: BTreeMap<String, Observed> =
        tasks.iter().map(|t| (t.name.clone(), seen("2026-01-01T00:00:00Z", Some("2026-01-01T00:00:00Z")))).collect();
    let p = plan(&tasks, &obs, ts("2026-03-04T12:00:00Z"), &TimeZone::UTC);
    assert!(p.iter().all(|t| t.due));
    let order: Vec<&str> = run_order(&tasks, &p).into_iter().map(|i| tasks[i].name.as_str()).collect();
    assert_eq!(order, ["backup", "prune", "job:report", "job:clear", "check", "deps"]);
}

#[test]
fn kinds_round_trip_including_ones_this_caretaker_does_not_know() {
    for k in Kind::KNOWN {
        let v = serde_json::to_value(&k).unwrap();
        assert_eq!(serde_json::from_value::<Kind>(v).unwrap(), k);
    }
    let k: Kind = serde_json::from_value(json!("firmware")).unwrap();
    assert_eq!(k, Kind::Other("firmware".into()));
    assert_eq!(serde_json::to_value(&k).unwrap(), json!("firmware"));
    assert_eq!(Kind::of(&TaskKind::Command("x".into())), Kind::Command);
}

fn sample_run() -> RunReport {
    let results = vec![
        TaskResult {
            kind: Kind::Backup,
            name: "backup".into(),
            job_kind: "backup".into(),
            outcome: TaskOutcome::Succeeded,
            reason: DueReason::CatchUp,
            scheduled_for: Some(ts("2026-03-02T00:30:00Z")),
            next_run: None,
            started_at: Some(ts("2026-03-04T12:00:00Z")),
            finished_at: Some(ts("2026-03-04T12:00:09Z")),
            job_id: Some(7),
            job_outcome: Some(job::Outcome::Succeeded),
            exit_code: Some(0),
            figures: json!({"snapshot_id": "ab12", "bytes_added": 4096, "snapshots": 3}),
            error: None,
        },
        TaskResult {
            kind: Kind::Command,
            name: "job:report".into(),
            job_kind: "command".into(),
            outcome: TaskOutcome::Failed,
            reason: DueReason::Slot,
            scheduled_for: Some(ts("2026-03-04T04:00:00Z")),
            next_run: None,
            started_at: Some(ts("2026-03-04T12:00:09Z")),
            finished_at: Some(ts("2026-03-04T12:00:10Z")),
            job_id: Some(8),
            job_outcome: Some(job::Outcome::Failed),
            exit_code: Some(1),
            figures: json!({"name": "report", "exit": "exit 3", "duration_seconds": 0.5}),
            error: Some("`report` exited with 3".into()),
        },
        TaskResult {
            kind: Kind::Other("certificates_v2".into()),
            name: "certs".into(),
            job_kind: "certs".into(),
            outcome: TaskOutcome::NotDue,
            reason: DueReason::NotYet,
            scheduled_for: None,
            next_run: Some(ts("2026-03-05T00:00:00Z")),
            started_at: None,
            finished_at: None,
            job_id: None,
            job_outcome: None,
            exit_code: None,
            figures: serde_json::Value::Null,
            error: None,
        },
    ];
    RunReport {
        schema: SCHEMA_VERSION,
        caretaker_version: "0.1.0".into(),
        app: "a".into(),
        started_at: ts("2026-03-04T12:00:00Z"),
        finished_at: ts("2026-03-04T12:00:10Z"),
        summary: Summary::of(&results),
        results,
    }
}

#[test]
fn reports_round_trip_through_json() {
    let run = sample_run();
    let text = serde_json::to_string(&run).unwrap();
    assert_eq!(serde_json::from_str::<RunReport>(&text).unwrap(), run);
    assert_eq!(run.summary, Summary { due: 2, ran: 2, succeeded: 1, failed: 1, skipped: 0, not_due: 1 });
    assert!(!run.summary.all_ok());
    let cfg = config(CFG);
    let tasks = tasks_from_config(&cfg);
    let mut obs = BTreeMap::new();
    let mut o = seen("2026-03-01T00:00:00Z", Some("2026-03-01T00:30:00Z"));
    o.last_attempt = Some(JobRef {
        job_id: 3,
        started_at: ts("2026-03-01T00:30:00Z"),
        ended_at: Some(ts("2026-03-01T00:31:00Z")),
        outcome: job::Outcome::Partial,
    });
    obs.insert("backup".to_string(), o);
    let due = DueReport {
        schema: SCHEMA_VERSION,
        caretaker_version: "0.1.0".into(),
        app: "a".into(),
        now: ts("2026-03-04T12:00:00Z"),
        tasks: plan(&tasks, &obs, ts("2026-03-04T12:00:00Z"), &TimeZone::UTC),
    };
    let text = serde_json::to_string_pretty(&due).unwrap();
    assert_eq!(serde_json::from_str::<DueReport>(&text).unwrap(), due);
}

#[test]
fn the_documented_shape_is_stable() {
    // Field names are the interface (docs/tasks.md): a rename here must be a schema bump.
    let v = serde_json::to_value(sample_run()).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&v), ["schema", "caretaker_version", "app", "started_at", "finished_at", "results", "summary"]);
    assert_eq!(v["schema"], 1);
    assert_eq!(
        keys(&v["results"][1]),
        [
            "kind",
            "name",
            "job_kind",
            "outcome",
            "reason",
            "scheduled_for",
            "started_at",
            "finished_at",
            "job_id",
            "job_outcome",
            "exit_code",
            "figures",
            "error"
        ]
    );
    assert_eq!(v["results"][2]["outcome"], "not_due");
    assert_eq!(v["results"][2]["kind"], "certificates_v2");
    assert_eq!(keys(&v["summary"]), ["due", "ran", "succeeded", "failed", "skipped", "not_due"]);
}

#[test]
fn a_newer_server_report_with_more_fields_still_reads() {
    let mut v = serde_json::to_value(sample_run()).unwrap();
    v["fleet_hint"] = json!("later");
    v["results"][0]["attempt"] = json!(2);
    v["summary"]["retried"] = json!(1);
    let r: RunReport = serde_json::from_value(v).unwrap();
    assert_eq!(r.results.len(), 3);
    match r.results[0].typed_figures() {
        TaskFigures::Backup(b) => {
            assert_eq!(b.snapshot_id.as_deref(), Some("ab12"));
            assert_eq!(b.repository.snapshots, Some(3));
        }
        other => panic!("{other:?}"),
    }
    match r.results[1].typed_figures() {
        TaskFigures::Command(c) => assert_eq!(c.exit.as_deref(), Some("exit 3")),
        other => panic!("{other:?}"),
    }
}
