//! `caretaker schedule`: the scheduled tasks and their next runs.

use crate::cli::{Global, ScheduleArgs};
use crate::context::open_app;
use crate::exit::Code;
use crate::output::table;
use anyhow::Result;
use caretaker_core::scheduler::{next_start, tasks_from_config};
use caretaker_observe::scheduler::time_zone;
use jiff::Timestamp;

pub fn run(global: &Global, args: &ScheduleArgs) -> Result<Code> {
    let app = open_app(global)?;
    let tz = time_zone(&app.config);
    let now = Timestamp::now();
    let states = app.store.task_states()?;
    let mut out = Vec::new();
    for task in tasks_from_config(&app.config) {
        let state = states.get(&task.name).copied().unwrap_or_default();
        let mut runs = Vec::new();
        if let Some((_, start)) = next_start(&task, &state, now, &tz) {
            runs.push(start);
            let mut after = start;
            while runs.len() < args.count {
                match task.schedule.next_after(after, &tz) {
                    Some(n) => {
                        runs.push(n);
                        after = n;
                    }
                    None => break,
                }
            }
        }
        out.push((task, state, runs));
    }
    if args.json {
        let v: Vec<_> = out
            .iter()
            .map(|(t, s, runs)| {
                serde_json::json!({
                    "name": t.name, "task": t.kind, "schedule": t.schedule.to_string(),
                    "last_run": s.last_run.map(|x| x.to_string()),
                    "next_runs": runs.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Code::Ok);
    }
    let fmt = |t: Timestamp| t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string();
    let mut rows = vec![vec!["TASK".into(), "SCHEDULE".into(), "LAST RUN".into(), "NEXT RUN".into()]];
    for (t, s, runs) in &out {
        rows.push(vec![
            t.name.clone(),
            t.schedule.to_string(),
            s.last_run.map(fmt).unwrap_or_else(|| "never".into()),
            runs.iter().map(|r| fmt(*r)).collect::<Vec<_>>().join(", "),
        ]);
    }
    print!("{}", table(&rows));
    if app.config.scheduler.random_delay > std::time::Duration::ZERO {
        println!(
            "\nnext runs include each run's random delay (up to {})",
            caretaker_core::duration::format_duration(app.config.scheduler.random_delay)
        );
    }
    Ok(Code::Ok)
}
