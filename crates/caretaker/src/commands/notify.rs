//! `caretaker notify test`: a test message through every configured notifier.

use crate::cli::{Global, NotifyCommand};
use crate::context::load_config;
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_observe::notify::{channels, send_test, Sender};

pub fn run(global: &Global, cmd: &NotifyCommand) -> Result<Code> {
    let NotifyCommand::Test { json } = cmd;
    let (_, cfg) = load_config(global.config.as_deref(), global.allow_world_readable_config)?;
    let chans = channels(&cfg.alerts);
    if chans.is_empty() {
        return Err(Failure::new(Code::Config, "no notifiers configured")
            .hint("add `alerts: { notify: [ { email: ops@example.org } ], smtp: {...} }` or a webhook")
            .into());
    }
    let sender = Sender::new(&cfg.app.name);
    let mut results = Vec::new();
    for ch in &chans {
        let r = send_test(ch, &sender);
        if !*json {
            match &r {
                Ok(()) => println!("sent: {}", ch.describe()),
                Err(e) => println!("FAILED: {}: {e}", ch.describe()),
            }
        }
        results.push(serde_json::json!({"channel": ch.describe(), "ok": r.is_ok(), "error": r.err()}));
    }
    let failed = results.iter().filter(|r| r["ok"] == false).count();
    if *json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(if failed == 0 { Code::Ok } else { Code::Unavailable })
}
