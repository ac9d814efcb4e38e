//! `caretaker check`: the deployment checks, as a table (coloured on a terminal) or JSON, with
//! Nagios exit codes. The run is recorded as a `check` job.

use crate::cli::{CheckArgs, Global};
use crate::context::open_app;
use crate::exit::{nagios, Code};
use crate::output::table;
use anyhow::Result;
use caretaker_core::job::figures::{CheckFigures, Figures};
use caretaker_core::job::{kind, Outcome};
use caretaker_observe::check::{overall, run_checks, CheckStatus};
use std::io::IsTerminal;

fn paint(status: CheckStatus, text: &str, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match status {
        CheckStatus::Ok => "32",
        CheckStatus::Warning => "33",
        CheckStatus::Critical => "31",
        CheckStatus::Unknown => "35",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// "Reachable and not empty", through the database adapter: the same safety check that
/// backups run (tables with rows, and `min_rows` when configured).
fn database_contents(app: &crate::context::AppContext) -> Vec<caretaker_observe::check::CheckResult> {
    let Some(cfg) = &app.config.database else { return Vec::new() };
    let outcome =
        crate::compose::open_database(&app.config, &app.redactor).and_then(|db| db.safety_check(&cfg.min_rows));
    let (status, message) = match outcome {
        Ok(_) => (CheckStatus::Ok, "reachable, has tables with rows (the backup safety check passes)".to_string()),
        Err(e) => (CheckStatus::Critical, e.to_string()),
    };
    vec![caretaker_observe::check::CheckResult { name: "database contents".into(), status, message }]
}

/// The `command` health probes of compose services, run inside each service's container
/// (`compose exec -T`), as the daemon runs them.
fn compose_command_probes(app: &crate::context::AppContext) -> Vec<caretaker_observe::check::CheckResult> {
    use caretaker_core::config::Probe;
    let Some(c) = &app.config.compose else { return Vec::new() };
    let probes: Vec<_> = c
        .services
        .iter()
        .filter_map(|s| s.health.as_ref().map(|h| (&s.name, h)))
        .filter_map(|(name, h)| match &h.probe {
            Probe::Command { command } => Some((name, command, h.timeout)),
            _ => None,
        })
        .collect();
    if probes.is_empty() {
        return Vec::new();
    }
    let project = crate::compose::project(&app.config, &app.config_path, &app.redactor);
    probes
        .into_iter()
        .map(|(name, command, timeout)| {
            let outcome = match &project {
                Ok(p) => caretaker_observe::probe::command(p.exec_command(name, &command.argv(), false), timeout),
                Err(e) => Err(format!("{e:#}")),
            };
            let (status, message) = match outcome {
                Ok(m) => (CheckStatus::Ok, m),
                Err(e) => (CheckStatus::Critical, format!("in its container: {}", app.redactor.redact(&e))),
            };
            caretaker_observe::check::CheckResult { name: format!("service {name}"), status, message }
        })
        .collect()
}

pub fn run(global: &Global, args: &CheckArgs) -> Result<Code> {
    let app = open_app(global)?;
    let now = jiff::Timestamp::now();
    let mut extra = database_contents(&app);
    extra.extend(compose_command_probes(&app));
    let results = run_checks(&app.config, &app.store, extra, now)?;
    let worst = overall(&results);
    // Recording is best effort: a check must answer even when another job holds the lock.
    if let Ok(mut job) = app.store.start_job(kind::CHECK, crate::context::trigger(), false) {
        for r in &results {
            job.log(&format!("{:<8} {}: {}", r.status.as_str(), r.name, r.message));
        }
        let outcome = if worst == CheckStatus::Ok { Outcome::Succeeded } else { Outcome::Failed };
        let figures =
            CheckFigures { status: Some(worst.as_str().to_string()), checks: Some(results.len() as u64) }.to_json();
        let bad: Vec<String> = results
            .iter()
            .filter(|r| r.status != CheckStatus::Ok)
            .map(|r| format!("{}: {}", r.name, r.message))
            .collect();
        let _ = job.finish(outcome, figures, (!bad.is_empty()).then(|| bad.join("; ")).as_deref());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"status": worst, "checks": results}))?);
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let mut rows = vec![vec!["STATUS".into(), "CHECK".into(), "DETAIL".into()]];
        for r in &results {
            rows.push(vec![r.status.as_str().to_uppercase(), r.name.clone(), r.message.clone()]);
        }
        // Pad before colouring so escape codes do not break the alignment.
        let text = table(&rows);
        for (line, r) in text.lines().zip(std::iter::once(None).chain(results.iter().map(Some))) {
            match r {
                Some(r) => {
                    let w = r.status.as_str().len();
                    println!("{}{}", paint(r.status, &line[..w], color), &line[w..]);
                }
                None => println!("{line}"),
            }
        }
        println!("\n{}: {} checks", paint(worst, &worst.as_str().to_uppercase(), color), results.len());
    }
    Ok(nagios(worst as u8))
}
