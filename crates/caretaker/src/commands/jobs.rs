//! `caretaker jobs`: the job log, one job's record and log, and running a scheduled app
//! command now.

use crate::appenv::{app_env, working_dir};
use crate::cli::{Global, JobsArgs, JobsCommand};
use crate::context::open_app;
use crate::exit::{Code, Failure};
use crate::output::{human_duration, table};
use anyhow::Result;
use caretaker_core::job::figures::{CommandFigures, DbSnapshotFigures, Figures};
use caretaker_core::job::{kind, Outcome};
use caretaker_state::JobRecord;

pub fn run(global: &Global, args: &JobsArgs) -> Result<Code> {
    match &args.command {
        None => list(global, args),
        Some(JobsCommand::Show { id, json }) => show(global, *id, *json),
        Some(JobsCommand::Run { name, json }) => run_named(global, name, *json),
    }
}

fn list(global: &Global, args: &JobsArgs) -> Result<Code> {
    let app = open_app(global)?;
    let jobs = app.store.jobs(args.kind.as_deref(), args.limit)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(Code::Ok);
    }
    if jobs.is_empty() {
        println!("no jobs recorded yet in {}", app.store.dir().display());
        return Ok(Code::Ok);
    }
    let mut rows = vec![vec![
        "ID".into(),
        "KIND".into(),
        "TRIGGER".into(),
        "STARTED".into(),
        "DURATION".into(),
        "OUTCOME".into(),
        "NOTE".into(),
    ]];
    for j in &jobs {
        rows.push(vec![
            j.id.to_string(),
            label(j),
            j.trigger.as_str().into(),
            j.started_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            j.duration().map(human_duration).unwrap_or_else(|| "-".into()),
            j.outcome.to_string(),
            j.error.clone().unwrap_or_default(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(Code::Ok)
}

fn label(j: &JobRecord) -> String {
    // A scheduled command's or a database snapshot's name.
    let name = match j.kind.as_str() {
        kind::COMMAND => CommandFigures::from_json(&j.figures).name,
        _ => DbSnapshotFigures::from_json(&j.figures).name,
    };
    match name {
        Some(name) => format!("{} {name}", j.kind),
        None => j.kind.clone(),
    }
}

fn show(global: &Global, id: i64, json: bool) -> Result<Code> {
    let app = open_app(global)?;
    let j = app.store.job(id)?;
    let log = std::fs::read_to_string(&j.log_path).unwrap_or_else(|e| format!("(log unavailable: {e})\n"));
    if json {
        let mut v = serde_json::to_value(&j)?;
        v["log"] = serde_json::Value::String(log);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Code::Ok);
    }
    println!("job {}: {} ({}), {}", j.id, label(&j), j.trigger.as_str(), j.outcome);
    println!("started   {}", j.started_at);
    if let Some(end) = j.ended_at {
        println!("ended     {end} ({})", j.duration().map(human_duration).unwrap_or_default());
    }
    if let Some(e) = &j.error {
        println!("error     {e}");
    }
    if j.figures.as_object().is_some_and(|o| !o.is_empty()) {
        println!("figures   {}", j.figures);
    }
    println!("log       {}", j.log_path.display());
    println!("---");
    print!("{log}");
    Ok(Code::Ok)
}

/// Runs a command from the config's `jobs:` section now. It takes the app lock: an app
/// command may write to the database, which must not happen during a migration or restore.
fn run_named(global: &Global, name: &str, json: bool) -> Result<Code> {
    let app = open_app(global)?;
    let Some(spec) = app.config.jobs.iter().find(|j| j.name == name) else {
        let names: Vec<&str> = app.config.jobs.iter().map(|j| j.name.as_str()).collect();
        let hint = match caretaker_core::config::suggest(name, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if names.is_empty() => "the config has no `jobs:` section".into(),
            None => format!("configured jobs: {}", names.join(", ")),
        };
        return Err(Failure::new(Code::Usage, format!("no job named `{name}` in the config")).hint(hint).into());
    };
    // A compose app's commands run in a one-off container of `compose.app_service`.
    let runtime = app.runtime();
    let cwd = runtime.code_dir();
    // The app's environment must be readable (env files) before a job is recorded.
    app_env(&app.config.app, None, &working_dir(&app.config.app, &app.config_path))?;
    let mut job = app.store.start_job(kind::COMMAND, crate::context::trigger(), true)?;
    let id = job.id();
    job.log(&format!("running job `{name}`: {} (in {})", spec.command, cwd.display()));
    let started = std::time::Instant::now();
    let ended = runtime
        .run_one_off(&cwd, &spec.command, name, spec.timeout, &mut |l| {
            job.log(l);
            if !json {
                println!("{l}");
            }
        })
        .map_err(|e| format!("{e:#}"));
    let seconds = started.elapsed().as_secs_f64();
    let (outcome, error, code) = match &ended {
        Ok(e) if e.success() => (Outcome::Succeeded, None, Code::Ok),
        Ok(e) => (Outcome::Failed, Some(format!("`{name}` {}", e.describe())), Code::Failure),
        Err(e) => (Outcome::Failed, Some(format!("cannot start `{name}`: {e}")), Code::Unavailable),
    };
    job.log(&format!("finished: {outcome}"));
    let figures = CommandFigures {
        name: Some(name.to_string()),
        duration_seconds: Some(seconds),
        exit: ended.as_ref().ok().map(|e| e.describe()),
    }
    .to_json();
    job.finish(outcome, figures.clone(), error.as_deref())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"job": id, "outcome": outcome, "error": error, "figures": figures})
            )?
        );
    } else if let Some(e) = &error {
        eprintln!("job {id} failed: {e} (log: caretaker jobs show {id})");
    } else {
        eprintln!("job {id} succeeded in {}", human_duration(std::time::Duration::from_secs_f64(seconds)));
    }
    Ok(code)
}
