//! `caretaker update`, `caretaker rollback`, `caretaker releases`: safe updates with automatic
//! rollback (the work is in `crate::update`; docs/updates.md).

use crate::cli::{Global, ReleasesArgs, UpdateArgs};
use crate::context::{open_app, AppContext};
use crate::exit::Code;
use crate::output::table;
use crate::update::{current_release, releases_dir, Registry, UpdateRequest, Updater};
use anyhow::Result;
use caretaker_core::job::Trigger;

fn updater<'a>(global: &'a Global, app: &'a AppContext) -> Updater<'a> {
    Updater { global, config_path: &app.config_path, config: &app.config, store: &app.store, redactor: &app.redactor }
}

pub fn update(global: &Global, args: &UpdateArgs) -> Result<Code> {
    let app = open_app(global)?;
    let u = updater(global, &app);
    let trigger = if args.recovery {
        Trigger::Recovery
    } else if args.scheduled {
        Trigger::Schedule
    } else {
        Trigger::Cli
    };
    if args.resume {
        return u.resume(trigger);
    }
    u.update(&UpdateRequest { to: args.to.clone(), dry_run: args.dry_run, force: args.force, trigger })
}

pub fn rollback(global: &Global) -> Result<Code> {
    let app = open_app(global)?;
    updater(global, &app).rollback()
}

pub fn releases(global: &Global, args: &ReleasesArgs) -> Result<Code> {
    let app = open_app(global)?;
    let state_dir = app.store.dir().to_path_buf();
    let registry = Registry::load(&app.store)?;
    let current = current_release(&state_dir);
    let mut rows = Vec::new();
    for r in registry.releases.iter().rev() {
        let present = releases_dir(&state_dir).join(&r.name).is_dir();
        rows.push(serde_json::json!({
            "name": r.name,
            "commit": r.commit,
            "reference": r.reference,
            "created_at": r.created_at,
            "state": r.state,
            "current": current.as_deref() == Some(r.name.as_str()),
            "snapshot": r.snapshot,
            "present": present,
        }));
    }
    if args.json {
        let v = serde_json::json!({"current": current, "releases": rows, "history": registry.history});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Code::Ok);
    }
    if rows.is_empty() {
        println!("no releases yet; `caretaker update` makes the first one");
        return Ok(Code::Ok);
    }
    let mut body: Vec<Vec<String>> =
        vec![["", "RELEASE", "REF", "STATE", "CREATED", "SNAPSHOT"].iter().map(|s| s.to_string()).collect()];
    body.extend(registry.releases.iter().rev().map(|r| {
        vec![
            if current.as_deref() == Some(r.name.as_str()) { "*".into() } else { String::new() },
            r.name.clone(),
            r.reference.clone(),
            r.state.clone(),
            r.created_at.clone(),
            r.snapshot.clone().unwrap_or_default(),
        ]
    }));
    print!("{}", table(&body));
    Ok(Code::Ok)
}
