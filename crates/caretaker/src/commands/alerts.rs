//! `caretaker alerts`: alert states; `alerts evaluate` (one round of observe → evaluate →
//! notify → persist, what the daemon does every 30 s); `alerts export --prometheus`.

use crate::cli::{AlertsArgs, AlertsCommand, Global};
use crate::context::{load_config, open_app};
use crate::exit::{Code, Failure};
use crate::output::table;
use anyhow::Result;
use caretaker_core::alert::{export::prometheus_rules, AlertState};

pub fn run(global: &Global, args: &AlertsArgs) -> Result<Code> {
    match &args.command {
        None => list(global, args.json),
        Some(AlertsCommand::Evaluate { json }) => evaluate(global, *json),
        Some(AlertsCommand::Export { prometheus: _, output }) => {
            let (_, cfg) = load_config(global.config.as_deref(), global.allow_world_readable_config)?;
            let text = prometheus_rules(&cfg.app.name, &cfg.alerts.rules);
            match output {
                Some(p) => std::fs::write(p, text)
                    .map_err(|e| Failure::new(Code::Failure, format!("cannot write {}: {e}", p.display())))?,
                None => print!("{text}"),
            }
            Ok(Code::Ok)
        }
    }
}

fn rows(states: &[AlertState]) -> String {
    let mut rows = vec![vec!["STATE".into(), "SEVERITY".into(), "ALERT".into(), "SINCE".into(), "SUMMARY".into()]];
    for s in states {
        let since = match s.status {
            caretaker_core::alert::Status::Resolved => s.resolved_at.unwrap_or(s.active_since),
            _ => s.active_since,
        };
        rows.push(vec![
            s.status.as_str().into(),
            s.severity.as_str().into(),
            s.key(),
            since.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            s.summary.clone(),
        ]);
    }
    table(&rows)
}

fn list(global: &Global, json: bool) -> Result<Code> {
    let app = open_app(global)?;
    let states = app.store.alert_states()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&states)?);
    } else if states.is_empty() {
        println!("no alerts (run `caretaker alerts evaluate`, or let the daemon do it)");
    } else {
        print!("{}", rows(&states));
    }
    Ok(Code::Ok)
}

fn evaluate(global: &Global, json: bool) -> Result<Code> {
    let mut app = open_app(global)?;
    let report = caretaker_observe::evaluate_once(&app.config, &mut app.store, None, jiff::Timestamp::now())?;
    let sent: Vec<_> = report
        .evaluation
        .notifications
        .iter()
        .map(|n| serde_json::json!({"kind": n.kind, "alert": n.alert.key(), "severity": n.alert.severity}))
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "alerts": report.evaluation.states, "notifications": sent,
                "delivered": report.delivered, "failures": report.failures,
            }))?
        );
    } else {
        if report.evaluation.states.is_empty() {
            println!("no alerts");
        } else {
            print!("{}", rows(&report.evaluation.states));
        }
        for n in &report.evaluation.notifications {
            println!("notification: {} {}", n.kind.as_str(), n.alert.key());
        }
        for f in &report.failures {
            eprintln!("notification of {} via {} failed: {}", f.alert, f.channel, f.error);
        }
    }
    if report.failures.is_empty() {
        Ok(Code::Ok)
    } else {
        Ok(Code::Unavailable)
    }
}
