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
    let outcome = app.runtime().open_database().and_then(|db| db.safety_check(&cfg.min_rows));
    let (status, message) = match outcome {
        Ok(_) => (CheckStatus::Ok, "reachable, has tables with rows (the backup safety check passes)".to_string()),
        Err(e) => (CheckStatus::Critical, e.to_string()),
    };
    let mut out = vec![caretaker_observe::check::CheckResult { name: "database contents".into(), status, message }];
    // What the nightly dump needs to read (MariaDB: routines owned by other users).
    if let Ok(db) = app.runtime().open_database() {
        let privileges = db.check_dump_privileges().map_err(|e| (e.to_string(), e.what_to_do().map(str::to_string)));
        out.push(caretaker_observe::check::dump_privileges(privileges));
    }
    out
}

/// The last line: the overall status, said as what it is — the worst of the results.
fn summary_line(worst: CheckStatus, results: &[caretaker_observe::check::CheckResult]) -> String {
    let n = results.len();
    let at = results.iter().filter(|r| r.status == worst).count();
    match worst {
        CheckStatus::Ok => format!("OK — all {n} checks passed"),
        _ => format!("{} — the worst of {n} check results ({at} {})", worst.as_str().to_uppercase(), worst.as_str()),
    }
}

/// Without a successful backup in this state directory's job log (a recover onto a fresh
/// machine, a new state directory), the repository may still hold this app's snapshots: their
/// newest complete one tells the backup's age.
fn backup_age_from_repository(
    app: &crate::context::AppContext,
    results: &mut [caretaker_observe::check::CheckResult],
    now: jiff::Timestamp,
) {
    let (Some(cfg), Some(max)) = (&app.config.backup, app.config.alerts.rules.backup_max_age) else { return };
    let Some(r) = results.iter_mut().find(|r| r.name == "backup") else { return };
    if r.status == CheckStatus::Ok || app.store.last_success(kind::BACKUP).ok().flatten().is_some() {
        return;
    }
    use caretaker_backup::BackupEngine;
    let newest = caretaker_backup::location::repository(cfg)
        .map_err(|e| e.to_string())
        .and_then(|repo| repo.snapshots().map_err(|e| e.to_string()))
        .map(|snaps| snaps.into_iter().filter(|s| s.complete).map(|s| s.time).max());
    match newest {
        Ok(Some(t)) => {
            let mut c = caretaker_observe::check::age_check("backup", "backup", max, Some(t), now);
            c.message = format!("{} (newest snapshot in the repository; none in this job log)", c.message);
            *r = c;
        }
        Ok(None) => r.message = "no successful backup recorded yet, and the repository holds no snapshot".into(),
        Err(e) => r.message = format!("no successful backup recorded yet (the repository cannot be read: {e})"),
    }
}

pub fn run(global: &Global, args: &CheckArgs) -> Result<Code> {
    let app = open_app(global)?;
    let now = jiff::Timestamp::now();
    let mut extra = database_contents(&app);
    extra.extend(app.runtime().service_checks());
    let mut results = run_checks(&app.config, &app.store, extra, now)?;
    backup_age_from_repository(&app, &mut results, now);
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
        println!("\n{}", paint(worst, &summary_line(worst, &results), color));
    }
    Ok(nagios(worst as u8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_observe::check::CheckResult;
    use expect_test::expect;

    #[test]
    fn the_summary_says_the_worst_result_not_a_count_of_warnings() {
        let r = |status| CheckResult { name: "x".into(), status, message: String::new() };
        let all = [r(CheckStatus::Ok), r(CheckStatus::Warning), r(CheckStatus::Ok), r(CheckStatus::Ok)];
        expect!["WARNING — the worst of 4 check results (1 warning)"].assert_eq(&summary_line(overall(&all), &all));
        let crit = [r(CheckStatus::Critical), r(CheckStatus::Warning), r(CheckStatus::Critical)];
        expect!["CRITICAL — the worst of 3 check results (2 critical)"].assert_eq(&summary_line(overall(&crit), &crit));
        let ok = [r(CheckStatus::Ok), r(CheckStatus::Ok)];
        expect!["OK — all 2 checks passed"].assert_eq(&summary_line(overall(&ok), &ok));
    }
}
