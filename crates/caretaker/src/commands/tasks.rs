//! `caretaker tasks due` and `caretaker tasks run-due`: the maintenance tasks this server's
//! config makes due, and running them, for a fleet controller or an Ansible job
//! (docs/tasks.md). The decision is `core::tasks::plan` over the daemon scheduler's own
//! task state; each task runs as the daemon would run it (`scheduled::Invocation`: a child
//! `caretaker` with its own job and lock), one after another; a failing task never stops the
//! others. `--json` prints exactly one document on stdout; every log goes to stderr.

use crate::cli::{Global, TasksArgs, TasksCommand};
use crate::context::{open_app, AppContext};
use crate::exit::Code;
use crate::output::table;
use crate::scheduled::{command_exists, task_argv, Invocation};
use anyhow::{Context, Result};
use caretaker_core::scheduler::{tasks_from_config, Task, TaskKind};
use caretaker_core::tasks::{
    plan, run_order, DueReport, DueTask, JobRef, Observed, RunReport, Summary, TaskOutcome, TaskResult, SCHEMA_VERSION,
};
use caretaker_observe::scheduler::time_zone;
use caretaker_state::JobRecord;
use jiff::Timestamp;
use std::collections::BTreeMap;

pub fn run(global: &Global, args: &TasksArgs) -> Result<Code> {
    match &args.command {
        TasksCommand::Due { json } => due(global, *json),
        TasksCommand::RunDue { json } => run_due(global, *json),
    }
}

fn command_name(task: &Task) -> Option<&str> {
    match &task.kind {
        TaskKind::Command(name) => Some(name),
        _ => None,
    }
}

fn job_ref(j: &JobRecord) -> JobRef {
    JobRef { job_id: j.id, started_at: j.started_at, ended_at: j.ended_at, outcome: j.outcome }
}

/// What the state store knows of each task. `seen`: record never-seen tasks as first seen
/// now (what the daemon's tick does; `run-due` is a scheduler too), else report them `new`.
fn observe(app: &AppContext, tasks: &[Task], now: Timestamp, seen: bool) -> Result<BTreeMap<String, Observed>> {
    if seen {
        for t in tasks {
            app.store.task_seen(&t.name, now)?;
        }
    }
    let states = app.store.task_states()?;
    let mut out = BTreeMap::new();
    for t in tasks {
        let jobs = app.store.task_jobs(t.kind.job_kind(), command_name(t))?;
        out.insert(
            t.name.clone(),
            Observed {
                state: states.get(&t.name).copied(),
                running_job: jobs.running.as_ref().map(|j| j.id),
                last_attempt: jobs.last_attempt.as_ref().map(job_ref),
                last_success: jobs.last_success.as_ref().map(job_ref),
            },
        );
    }
    Ok(out)
}

fn print_json<T: serde::Serialize>(doc: &T) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, doc)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

fn when(t: Option<Timestamp>) -> String {
    t.map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "-".into())
}

fn due(global: &Global, json: bool) -> Result<Code> {
    let app = open_app(global)?;
    let now = Timestamp::now();
    let tasks = tasks_from_config(&app.config);
    let observed = observe(&app, &tasks, now, false)?;
    let report = DueReport {
        schema: SCHEMA_VERSION,
        caretaker_version: env!("CARGO_PKG_VERSION").into(),
        app: app.config.app.name.clone(),
        now,
        tasks: plan(&tasks, &observed, now, &time_zone(&app.config)),
    };
    if json {
        print_json(&report)?;
        return Ok(Code::Ok);
    }
    let mut rows = vec![vec![
        "TASK".to_string(),
        "KIND".into(),
        "SCHEDULE".into(),
        "DUE".into(),
        "WHY".into(),
        "NEXT RUN".into(),
        "LAST SUCCESS".into(),
    ]];
    for t in &report.tasks {
        rows.push(vec![
            t.name.clone(),
            t.kind.to_string(),
            t.schedule.clone(),
            if t.due { "yes".into() } else { "no".into() },
            serde_json::to_value(t.reason)?.as_str().unwrap_or_default().to_string(),
            when(t.next_run),
            when(t.last_success.as_ref().map(|j| j.started_at)),
        ]);
    }
    print!("{}", table(&rows));
    Ok(Code::Ok)
}

fn run_due(global: &Global, json: bool) -> Result<Code> {
    let app = open_app(global)?;
    let started_at = Timestamp::now();
    let tasks = tasks_from_config(&app.config);
    let observed = observe(&app, &tasks, started_at, true)?;
    let planned = plan(&tasks, &observed, started_at, &time_zone(&app.config));
    let inv = Invocation {
        exe: std::env::current_exe().context("finding caretaker's own executable")?,
        config_path: std::path::absolute(&app.config_path).unwrap_or(app.config_path.clone()),
        state_dir: std::path::absolute(app.store.dir()).unwrap_or(app.store.dir().to_path_buf()),
        allow_world_readable_config: global.allow_world_readable_config,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a tokio runtime")?;
    let mut results = Vec::new();
    let order = run_order(&tasks, &planned);
    for &i in &order {
        let (task, due) = (&tasks[i], &planned[i]);
        let seen = observed.get(&task.name).and_then(|o| o.state).and_then(|s| s.last_run);
        results.push(run_one(&app, &rt, &inv, task, due, seen));
    }
    for (task, due) in tasks.iter().zip(&planned).filter(|(_, d)| !d.due) {
        // Its slot has come but a job of it is running (an operator's): skipped, stays due.
        let outcome = if due.scheduled_for.is_some() { TaskOutcome::Skipped } else { TaskOutcome::NotDue };
        let mut r = TaskResult::not_run(due, outcome);
        if outcome == TaskOutcome::Skipped {
            r.error = Some(format!("job #{} of this task is running", due.running_job.unwrap_or_default()));
            tracing::info!(task = %task.name, "skipped: {}", r.error.as_deref().unwrap_or_default());
        }
        results.push(r);
    }
    let summary = Summary::of(&results);
    let report = RunReport {
        schema: SCHEMA_VERSION,
        caretaker_version: env!("CARGO_PKG_VERSION").into(),
        app: app.config.app.name.clone(),
        started_at,
        finished_at: Timestamp::now(),
        results,
        summary,
    };
    if json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(exit_code(&summary))
}

/// 0: every task that ran succeeded (or nothing was due); 1: a task failed; 4: none failed
/// but a due task was skipped (a job held the app lock) and stays due.
fn exit_code(s: &Summary) -> Code {
    if s.failed > 0 {
        Code::Failure
    } else if s.skipped > 0 {
        Code::Busy
    } else {
        Code::Ok
    }
}

fn print_human(r: &RunReport) {
    let mut rows = vec![vec![
        "TASK".to_string(),
        "KIND".into(),
        "OUTCOME".into(),
        "JOB".into(),
        "WHY / NEXT RUN".into(),
        "ERROR".into(),
    ]];
    for t in &r.results {
        let why = match t.outcome {
            TaskOutcome::NotDue => when(t.next_run),
            _ => serde_json::to_value(t.reason).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        };
        rows.push(vec![
            t.name.clone(),
            t.kind.to_string(),
            t.outcome.to_string(),
            t.job_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            why,
            t.error.clone().unwrap_or_default(),
        ]);
    }
    print!("{}", table(&rows));
    let s = &r.summary;
    println!(
        "\n{} due: {} succeeded, {} failed, {} skipped; {} not due",
        s.due, s.succeeded, s.failed, s.skipped, s.not_due
    );
}

/// Runs one due task as the daemon would and reports it. Never fails: whatever goes wrong
/// becomes the task's `failed` result, so the other tasks still run.
fn run_one(
    app: &AppContext,
    rt: &tokio::runtime::Runtime,
    inv: &Invocation,
    task: &Task,
    due: &DueTask,
    seen: Option<Timestamp>,
) -> TaskResult {
    let mut r = TaskResult::not_run(due, TaskOutcome::Skipped);
    let argv = task_argv(&task.kind);
    if !command_exists(&argv) {
        r.error = Some(format!("this caretaker has no `{}` command", argv.join(" ")));
        tracing::warn!(task = %task.name, "skipped: {}", r.error.as_deref().unwrap_or_default());
        return r;
    }
    let now = Timestamp::now();
    // Claim the slot as the daemon's tick does (recorded as run before it starts, so a crash
    // does not repeat it in a loop); a scheduler that claimed it first runs it instead.
    match app.store.claim_task_run(&task.name, seen, now) {
        Ok(true) => {}
        Ok(false) => {
            r.error = Some("the daemon's scheduler started it meanwhile".into());
            tracing::info!(task = %task.name, "skipped: {}", r.error.as_deref().unwrap_or_default());
            return r;
        }
        Err(e) => return failed(app, r, format!("cannot record the task's run: {e}")),
    }
    let before = match app.store.last_job_id() {
        Ok(id) => id,
        Err(e) => return failed(app, r, format!("cannot read the job log: {e}")),
    };
    tracing::info!(task = %task.name, "running due task: caretaker {}", argv.join(" "));
    r.started_at = Some(now);
    let status = rt.block_on(async { inv.command(&argv).status().await });
    r.finished_at = Some(Timestamp::now());
    let status = match status {
        Ok(s) => s,
        Err(e) => return failed(app, r, format!("cannot start `caretaker {}`: {e}", argv.join(" "))),
    };
    r.exit_code = status.code();
    let job = app.store.job_after(task.kind.job_kind(), command_name(task), before).ok().flatten();
    if let Some(j) = &job {
        r.job_id = Some(j.id);
        r.job_outcome = Some(j.outcome);
        r.figures = j.figures.clone();
        r.error = j.error.clone();
    }
    if task.kind.needs_app_lock() && status.code() == Some(Code::Busy as i32) {
        // Another job held the app lock: recorded as the daemon records it, and its slot
        // stays due.
        let holder = match app.store.lock_holder() {
            Ok(Some(j)) => format!("job #{} ({}, started {}) held the app lock", j.id, j.kind, j.started_at),
            _ => "another job held the app lock".to_string(),
        };
        let reason = format!("{holder}; `caretaker tasks run-due` tries again on its next run");
        r.job_id = app.store.record_skipped(task.kind.job_kind(), &task.name, &reason).ok();
        r.job_outcome = Some(caretaker_core::job::Outcome::Skipped);
        r.figures = serde_json::Value::Null;
        r.error = Some(app.redactor.redact(&reason));
        let slot = due.scheduled_for.unwrap_or(now);
        let before_slot = slot.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap_or(slot);
        if let Err(e) = app.store.task_ran(&task.name, before_slot) {
            tracing::warn!(task = %task.name, "cannot keep the skipped slot due: {e}");
        }
        tracing::warn!(task = %task.name, "skipped: {reason}");
        return r;
    }
    let ok = match &job {
        Some(j) => status.success() && j.outcome.is_success(),
        // A task that records no job (an update skipped in maintenance mode) ends on its exit.
        None => status.success(),
    };
    if ok {
        r.outcome = TaskOutcome::Succeeded;
        tracing::info!(task = %task.name, "due task succeeded");
    } else {
        r.outcome = TaskOutcome::Failed;
        if r.error.is_none() {
            r.error = Some(format!("`caretaker {}` exited with {status}", argv.join(" ")));
        }
        r.error = r.error.map(|e| app.redactor.redact(&e));
        tracing::warn!(task = %task.name, "due task failed: {}", r.error.as_deref().unwrap_or_default());
    }
    r
}

fn failed(app: &AppContext, mut r: TaskResult, error: String) -> TaskResult {
    tracing::error!(task = %r.name, "{error}");
    r.outcome = TaskOutcome::Failed;
    r.error = Some(app.redactor.redact(&error));
    r
}
