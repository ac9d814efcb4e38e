//! `caretaker db`: the app's database by hand — check, snapshot, list snapshots, revert,
//! prune. Snapshot, revert and prune are `caretaker_app::db`'s operations (recorded jobs
//! holding the app lock); this module parses, calls and renders.

use crate::cli::{DbCommand, Global};
use crate::context::{open_app, AppContext};
use crate::exit::{Code, Failure};
use crate::output::table;
use anyhow::Result;
use caretaker_db::{Database, SnapshotPolicy};
use serde_json::json;

pub fn run(global: &Global, cmd: &DbCommand) -> Result<Code> {
    let app = open_app(global)?;
    let db = open_db(&app)?;
    match cmd {
        DbCommand::Check { json } => check(&app, db.as_ref(), *json),
        DbCommand::Snapshot { label, json } => snapshot(&app, db.as_ref(), label.as_deref(), *json),
        DbCommand::Snapshots { json } => list(db.as_ref(), *json),
        DbCommand::Revert { name, yes } => revert(&app, db.as_ref(), name, *yes),
        DbCommand::Prune { keep_last, max_age, dry_run } => prune(&app, db.as_ref(), *keep_last, max_age, *dry_run),
    }
}

fn open_db(app: &AppContext) -> Result<Box<dyn Database>> {
    let Some(_) = &app.config.database else {
        return Err(Failure::new(Code::Config, "the config has no `database:` section")
            .hint("add database: { kind: postgres, url_file: ... } (see caretaker init)")
            .into());
    };
    Ok(app.runtime().open_database()?)
}

fn check(app: &AppContext, db: &dyn Database, as_json: bool) -> Result<Code> {
    let info = db.check()?;
    let size = db.size()?;
    let min_rows = app.config.database.as_ref().map(|d| d.min_rows.clone()).unwrap_or_default();
    let safety = db.safety_check(&min_rows);
    // What the nightly dump needs to read, checked before the night it fails.
    let privileges = db.check_dump_privileges();
    if as_json {
        let v = json!({
            "target": db.target(),
            "version": info.version,
            "tools": info.tools,
            "size_bytes": size,
            "safety_check": match &safety { Ok(_) => "ok".to_string(), Err(e) => e.message().to_string() },
            "dump_privileges": match &privileges { Ok(w) if w.is_empty() => "ok".to_string(), Ok(w) => w.join("; "), Err(e) => e.message().to_string() },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", db.target());
        println!("server    {}", info.version);
        for t in &info.tools {
            println!("tool      {t}");
        }
        println!("size      {:.1} MiB", size as f64 / (1024.0 * 1024.0));
        match &safety {
            Ok(c) => println!("safety    ok ({} tables)", c.tables.len()),
            Err(e) => println!("safety    REFUSED: {}", e.message()),
        }
        match &privileges {
            Ok(w) if w.is_empty() => println!("dump      ok (the user can read routines, views and events)"),
            Ok(w) => println!("dump      WARNING: {}", w.join("; ")),
            Err(e) => println!("dump      CANNOT READ EVERYTHING: {}", e.message()),
        }
    }
    safety?;
    privileges?;
    Ok(Code::Ok)
}

fn snapshot(app: &AppContext, db: &dyn Database, label: Option<&str>, as_json: bool) -> Result<Code> {
    let r = caretaker_app::db::snapshot(&app.store, db, label, crate::context::trigger())?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json!({"name": r.name, "seconds": r.seconds}))?);
    } else {
        println!("{}", r.name);
    }
    Ok(Code::Ok)
}

fn list(db: &dyn Database, as_json: bool) -> Result<Code> {
    let copies = db.list_snapshots()?;
    if as_json {
        let v: Vec<_> = copies
            .iter()
            .map(|c| json!({"name": c.name, "kind": c.kind.as_str(), "taken_at": c.taken_at.to_string(), "label": c.label}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Code::Ok);
    }
    if copies.is_empty() {
        println!("no snapshots of {}", db.target());
        return Ok(Code::Ok);
    }
    let mut rows = vec![vec!["NAME".into(), "KIND".into(), "TAKEN (UTC)".into(), "LABEL".into()]];
    for c in &copies {
        rows.push(vec![
            c.name.clone(),
            c.kind.as_str().into(),
            c.taken_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            c.label.clone().unwrap_or_default(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(Code::Ok)
}

fn revert(app: &AppContext, db: &dyn Database, name: &str, yes: bool) -> Result<Code> {
    // Services that run held connections to the database now kept aside.
    let mut restart = || crate::dbbackup::restart_running_services(app).map_err(|e| format!("{e:#}"));
    let r = caretaker_app::db::revert(
        &app.store,
        db,
        name,
        yes,
        crate::context::trigger(),
        &mut restart,
        &mut crate::output::TerminalProgress,
    )?;
    if !r.restarted.is_empty() {
        println!("restarted {} (their connections to the replaced database were ended)", r.restarted.join(", "));
    }
    Ok(Code::Ok)
}

fn prune(app: &AppContext, db: &dyn Database, keep_last: usize, max_age: &str, dry_run: bool) -> Result<Code> {
    let max_age = caretaker_core::duration::parse_duration(max_age)
        .map_err(|e| Failure::new(Code::Usage, format!("--max-age: {e}")))?;
    let policy = SnapshotPolicy { keep_last, max_age: Some(jiff::SignedDuration::try_from(max_age)?) };
    let now = jiff::Timestamp::now();
    let trigger = crate::context::trigger();
    let r =
        caretaker_app::db::prune(&app.store, db, &policy, now, dry_run, trigger, &mut crate::output::TerminalProgress)?;
    if r.dry_run {
        for name in &r.removed {
            println!("would remove {name}");
        }
    }
    if r.removed.is_empty() {
        println!("nothing to remove: {}", kept_line(r.kept, &policy));
    } else if !r.dry_run {
        println!("removed {}; {}", r.removed.len(), kept_line(r.kept, &policy));
    }
    Ok(Code::Ok)
}

/// `3 copies kept (the newest 3 of each kind, and any younger than 7d)`.
fn kept_line(kept: usize, policy: &SnapshotPolicy) -> String {
    let young = match policy.max_age {
        Some(a) if !a.is_zero() => format!(", and any younger than {}", humantime_secs(a.as_secs())),
        _ => String::new(),
    };
    format!(
        "{kept} cop{} kept (the newest {} of each kind{young})",
        if kept == 1 { "y" } else { "ies" },
        policy.keep_last
    )
}

fn humantime_secs(s: i64) -> String {
    match s {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
