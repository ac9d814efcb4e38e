//! What a server's `caretaker tasks run-due --json` says, read by the controller, and what the
//! controller decides from it. Pure.
//!
//! The server prints its results either as one JSON document at the end
//! (`{"schema": ..., "tasks": [...]}`) or as JSON lines, one per task as it finishes, the last
//! line being that document. The controller reads stdout line by line and stores each task's
//! result the moment it is complete, so a controller killed mid-run keeps everything finished
//! before (docs/fleet.md, "State").

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    /// Due but not run (a job of it was running, the app lock was held): stays due.
    Skipped,
    /// Not due: nothing happened.
    NotDue,
    /// The server ended it unfinished (timeout, interrupted).
    Interrupted,
}

impl Outcome {
    pub fn parse(s: &str) -> Outcome {
        match s.to_ascii_lowercase().as_str() {
            "ok" | "success" | "succeeded" | "done" | "completed" => Outcome::Ok,
            "skipped" | "held" | "deferred" => Outcome::Skipped,
            "not_due" | "not-due" => Outcome::NotDue,
            "interrupted" | "timeout" | "timed_out" | "cancelled" => Outcome::Interrupted,
            _ => Outcome::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::NotDue => "not_due",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// One task's result as the controller keeps it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskResult {
    pub task: String,
    /// The server's kind of task (`backup`, `reboot`, ...), when it says.
    pub kind: Option<String>,
    pub outcome: Outcome,
    pub message: Option<String>,
    /// Whatever figures the server reported (sizes, counts, durations), kept as JSON.
    pub figures: serde_json::Value,
    pub needs_human: bool,
    pub reboot_pending: bool,
}

/// Lenient reading of one task object: the field names of the server's schema and a few
/// synonyms, so a server one minor version apart still reports.
fn task_from_value(v: &serde_json::Value) -> Option<TaskResult> {
    let o = v.as_object()?;
    let name = ["task", "name", "id"].iter().find_map(|k| o.get(*k)?.as_str())?;
    let outcome = ["outcome", "status", "result"].iter().find_map(|k| o.get(*k)?.as_str())?;
    let message = ["message", "error", "summary"].iter().find_map(|k| o.get(*k)?.as_str()).map(str::to_string);
    let figures = o.get("figures").cloned().unwrap_or(serde_json::Value::Null);
    let flag = |k: &str| o.get(k).and_then(serde_json::Value::as_bool).unwrap_or(false);
    let mut outcome = Outcome::parse(outcome);
    if o.get("ran").and_then(serde_json::Value::as_bool) == Some(false) && outcome == Outcome::Ok {
        outcome = Outcome::NotDue;
    }
    Some(TaskResult {
        task: name.to_string(),
        kind: o.get("kind").and_then(|k| k.as_str()).map(str::to_string),
        outcome,
        message,
        figures,
        needs_human: flag("needs_human") || flag("needs_attention"),
        reboot_pending: flag("reboot_pending") || flag("reboot_required"),
    })
}

impl TaskResult {
    /// The figures of a `deps` task that ran and found vulnerable packages (docs/deps.md):
    /// such a server needs a human (an upgrade), though the task itself succeeded.
    pub fn vulnerable_deps(&self) -> Option<caretaker_core::job::figures::DepsFigures> {
        let deps = self.kind.as_deref().map_or(self.task == "deps", |k| k == "deps");
        if !deps || self.outcome != Outcome::Ok {
            return None;
        }
        let f: caretaker_core::job::figures::DepsFigures = serde_json::from_value(self.figures.clone()).ok()?;
        (f.vulnerable.unwrap_or(0) > 0).then_some(f)
    }
}

/// One line of the server's output, read.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// One task finished.
    Task(TaskResult),
    /// The whole report: its tasks (some may have been streamed before).
    Report { schema: Option<String>, tasks: Vec<TaskResult>, reboot_pending: bool },
    /// Not JSON of the schema (a banner, a warning): kept for the error message.
    Other,
}

pub fn read_line(line: &str) -> Line {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
        return Line::Other;
    };
    // `results` is schema 1 of `tasks run-due` (docs/tasks.md); `tasks` is `tasks due`.
    if let Some(tasks) = v.get("results").or_else(|| v.get("tasks")).and_then(|t| t.as_array()) {
        let schema = ["schema", "schema_version", "version"]
            .iter()
            .find_map(|k| v.get(*k).map(|s| s.as_str().map(str::to_string).unwrap_or_else(|| s.to_string())));
        return Line::Report {
            schema,
            tasks: tasks.iter().filter_map(task_from_value).collect(),
            reboot_pending: v.get("reboot_pending").and_then(|b| b.as_bool()).unwrap_or(false),
        };
    }
    match task_from_value(&v) {
        Some(t) => Line::Task(t),
        None => Line::Other,
    }
}

/// Reads a whole output at once (pretty-printed JSON spans lines).
pub fn read_all(out: &str) -> Vec<Line> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(out.trim()) {
        return vec![read_line(&v.to_string())];
    }
    out.lines().filter(|l| !l.trim().is_empty()).map(read_line).collect()
}

/// Whether a `tasks due --json` document says a task of kind `reboot` is due now.
pub fn reboot_due(doc: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(doc.trim()) else {
        return false;
    };
    v.get("tasks").and_then(|t| t.as_array()).is_some_and(|tasks| {
        tasks.iter().any(|t| {
            t.get("kind").and_then(|k| k.as_str()) == Some("reboot")
                && t.get("due").and_then(|d| d.as_bool()) == Some(true)
        })
    })
}

/// How long to wait before retrying a task that failed `failures` times in a row:
/// 5 min, doubling, at most 6 h. A fleet run retries a failed task only after it.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let secs = 300u64.saturating_mul(1u64 << (failures - 1).min(16));
    Duration::from_secs(secs.min(6 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_streamed_lines_and_the_report() {
        let t = read_line(r#"{"task":"backup","outcome":"ok","figures":{"bytes":10}}"#);
        let Line::Task(t) = t else { panic!() };
        assert_eq!((t.task.as_str(), t.outcome), ("backup", Outcome::Ok));
        assert_eq!(t.figures["bytes"], 10);
        let r = read_line(
            r#"{"schema":"caretaker.tasks/1","tasks":[{"name":"os","status":"failed","message":"apt","needs_human":true},{"name":"prune","status":"ok","ran":false}]}"#,
        );
        let Line::Report { schema, tasks, .. } = r else { panic!() };
        assert_eq!(schema.as_deref(), Some("caretaker.tasks/1"));
        assert_eq!(tasks[0].outcome, Outcome::Failed);
        assert!(tasks[0].needs_human);
        assert_eq!(tasks[1].outcome, Outcome::NotDue);
        assert_eq!(read_line("Welcome to host"), Line::Other);
        assert_eq!(read_all("{\n \"tasks\": []\n}\n").len(), 1);
    }

    /// The example of docs/tasks.md (schema 1), as the server prints it.
    #[test]
    fn reads_schema_1_of_run_due() {
        let doc = r#"{"schema":1,"caretaker_version":"0.1.0","app":"demo","started_at":"2026-03-04T12:00:00Z","finished_at":"2026-03-04T12:00:10Z",
          "results":[{"kind":"backup","name":"backup","job_kind":"backup","outcome":"succeeded","reason":"catch_up","job_id":7,"figures":{"bytes_added":4096}},
            {"kind":"command","name":"job:report","job_kind":"command","outcome":"failed","reason":"slot","error":"`report` exited with code 3"},
            {"kind":"check","name":"check","job_kind":"check","outcome":"not_due","reason":"not_yet"}],
          "summary":{"due":2,"ran":2,"succeeded":1,"failed":1,"skipped":0,"not_due":1}}"#;
        let Line::Report { schema, tasks, .. } = &read_all(doc)[0] else { panic!() };
        assert_eq!(schema.as_deref(), Some("1"));
        let o: Vec<_> = tasks.iter().map(|t| (t.task.as_str(), t.outcome)).collect();
        assert_eq!(o, [("backup", Outcome::Ok), ("job:report", Outcome::Failed), ("check", Outcome::NotDue)]);
        assert_eq!(tasks[1].message.as_deref(), Some("`report` exited with code 3"));
        assert_eq!(tasks[0].kind.as_deref(), Some("backup"));
    }

    /// Documents written by the server's own types (`caretaker_core::tasks`, schema 1) read
    /// as the server means them.
    #[test]
    fn reads_what_the_servers_types_write() {
        use caretaker_core::tasks::{
            DueReason, DueReport, DueTask, Kind, RunReport, Summary, TaskOutcome, TaskResult as Server,
        };
        let t0: jiff::Timestamp = "2026-03-04T12:00:00Z".parse().unwrap();
        let result = |kind: Kind, name: &str, outcome: TaskOutcome, error: Option<&str>| Server {
            kind,
            name: name.into(),
            job_kind: "backup".into(),
            outcome,
            reason: if outcome == TaskOutcome::NotDue { DueReason::NotYet } else { DueReason::Slot },
            scheduled_for: None,
            next_run: None,
            started_at: (outcome != TaskOutcome::NotDue).then_some(t0),
            finished_at: None,
            job_id: Some(7),
            job_outcome: None,
            exit_code: Some(0),
            figures: serde_json::json!({"bytes_added": 4096}),
            error: error.map(str::to_string),
        };
        let results = vec![
            result(Kind::Backup, "backup", TaskOutcome::Succeeded, None),
            result(Kind::Command, "job:report", TaskOutcome::Failed, Some("`report` exited with code 3")),
            result(Kind::Prune, "prune", TaskOutcome::Skipped, None),
            result(Kind::Check, "check", TaskOutcome::NotDue, None),
        ];
        let report = RunReport {
            schema: 1,
            caretaker_version: "0.1.0".into(),
            app: "shop".into(),
            started_at: t0,
            finished_at: t0,
            summary: Summary::of(&results),
            results,
        };
        let text = serde_json::to_string_pretty(&report).unwrap();
        let Line::Report { schema, tasks, .. } = &read_all(&text)[0] else { panic!("{text}") };
        assert_eq!(schema.as_deref(), Some("1"));
        let got: Vec<_> = tasks.iter().map(|t| (t.task.as_str(), t.kind.as_deref(), t.outcome)).collect();
        assert_eq!(
            got,
            [
                ("backup", Some("backup"), Outcome::Ok),
                ("job:report", Some("command"), Outcome::Failed),
                ("prune", Some("prune"), Outcome::Skipped),
                ("check", Some("check"), Outcome::NotDue)
            ]
        );
        assert_eq!(tasks[0].figures["bytes_added"], 4096);
        assert_eq!(tasks[1].message.as_deref(), Some("`report` exited with code 3"));
        let due = |d: bool| DueReport {
            schema: 1,
            caretaker_version: "0.1.0".into(),
            app: "shop".into(),
            now: t0,
            tasks: vec![DueTask {
                kind: Kind::Reboot,
                name: "reboot".into(),
                job_kind: "reboot".into(),
                schedule: "daily 03:00".into(),
                due: d,
                reason: if d { DueReason::Slot } else { DueReason::NotYet },
                scheduled_for: None,
                next_run: None,
                last_run: None,
                last_attempt: None,
                last_success: None,
                running_job: None,
            }],
        };
        assert!(reboot_due(&serde_json::to_string(&due(true)).unwrap()));
        assert!(!reboot_due(&serde_json::to_string(&due(false)).unwrap()));
    }

    #[test]
    fn reboot_due_reads_tasks_due() {
        assert!(reboot_due(
            r#"{"schema":1,"tasks":[{"kind":"backup","name":"backup","due":true},{"kind":"reboot","name":"reboot","due":true}]}"#
        ));
        assert!(!reboot_due(r#"{"schema":1,"tasks":[{"kind":"reboot","name":"reboot","due":false}]}"#));
        assert!(!reboot_due("nonsense"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_secs(300));
        assert_eq!(backoff(3), Duration::from_secs(1200));
        assert_eq!(backoff(40), Duration::from_secs(6 * 3600));
    }
}
