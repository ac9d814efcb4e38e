//! `caretaker db`: the app's database by hand — check, snapshot, list snapshots, revert,
//! prune. Snapshot, revert and prune change the server, so they are recorded jobs holding the
//! app lock (no snapshot in the middle of a backup or migration).

use crate::cli::{DbCommand, Global};
use crate::context::{open_app, AppContext};
use crate::exit::{Code, Failure};
use crate::output::table;
use anyhow::Result;
use caretaker_core::job::figures::{DbSnapshotFigures, Figures};
use caretaker_core::job::{Outcome, Trigger};
use caretaker_db::{Database, Snapshot, SnapshotPolicy};
use serde_json::json;

const KIND_SNAPSHOT: &str = "db_snapshot";
const KIND_REVERT: &str = "db_revert";
const KIND_PRUNE: &str = "db_prune";

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
    let mut job = app.store.start_job(KIND_SNAPSHOT, Trigger::Cli, true)?;
    job.log(&format!("snapshot of {}", db.target()));
    let started = std::time::Instant::now();
    match db.snapshot(label) {
        Ok(s) => {
            let seconds = started.elapsed().as_secs_f64();
            job.log(&format!("took snapshot {} in {seconds:.2} s", s.name));
            job.finish(
                Outcome::Succeeded,
                DbSnapshotFigures { name: Some(s.name.clone()), duration_seconds: Some(seconds), ..Default::default() }
                    .to_json(),
                None,
            )?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&json!({"name": s.name, "seconds": seconds}))?);
            } else {
                println!("{}", s.name);
            }
            Ok(Code::Ok)
        }
        Err(e) => {
            job.log(&format!("failed: {e}"));
            job.finish(Outcome::Failed, json!({}), Some(&e.to_string()))?;
            Err(e.into())
        }
    }
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

fn find(db: &dyn Database, name: &str) -> Result<Snapshot> {
    let copies = db.list_snapshots()?;
    copies.into_iter().find(|c| c.name == name).ok_or_else(|| {
        Failure::new(Code::Usage, format!("no snapshot named `{name}` of {}", db.target()))
            .hint("`caretaker db snapshots` lists them")
            .into()
    })
}

fn revert(app: &AppContext, db: &dyn Database, name: &str, yes: bool) -> Result<Code> {
    let snap = find(db, name)?;
    if !yes {
        return Err(Failure::new(Code::Refused, format!("reverting {} to {name} ends its sessions", db.target()))
            .hint("stop the app first, then run again with --yes (the current contents are kept aside)")
            .into());
    }
    let mut job = app.store.start_job(KIND_REVERT, Trigger::Cli, true)?;
    job.log(&format!("revert {} to {name}", db.target()));
    let started = std::time::Instant::now();
    match db.revert(&snap) {
        Ok(aside) => {
            let seconds = started.elapsed().as_secs_f64();
            job.log(&format!("reverted in {seconds:.2} s; previous contents kept as {aside}"));
            println!("reverted to {name}; the previous contents are kept as {aside}");
            // Services that run held connections to the database now kept aside.
            let restarted = match crate::dbbackup::restart_running_services(app) {
                Ok(r) => r,
                Err(e) => {
                    job.log(&format!("restarting the services: {e:#}"));
                    eprintln!("warning: restarting the services failed ({e:#}): run `caretaker restart`");
                    Vec::new()
                }
            };
            if !restarted.is_empty() {
                job.log(&format!("restarted {}", restarted.join(", ")));
                println!("restarted {} (their connections to the replaced database were ended)", restarted.join(", "));
            }
            job.finish(
                Outcome::Succeeded,
                DbSnapshotFigures {
                    name: Some(name.to_string()),
                    kept_aside: Some(aside.to_string()),
                    duration_seconds: Some(seconds),
                    restarted: restarted.clone(),
                    ..Default::default()
                }
                .to_json(),
                None,
            )?;
            Ok(Code::Ok)
        }
        Err(e) => {
            job.log(&format!("failed: {e}"));
            job.finish(
                Outcome::Failed,
                DbSnapshotFigures { name: Some(name.to_string()), ..Default::default() }.to_json(),
                Some(&e.to_string()),
            )?;
            Err(e.into())
        }
    }
}

fn prune(app: &AppContext, db: &dyn Database, keep_last: usize, max_age: &str, dry_run: bool) -> Result<Code> {
    let max_age = caretaker_core::duration::parse_duration(max_age)
        .map_err(|e| Failure::new(Code::Usage, format!("--max-age: {e}")))?;
    let policy = SnapshotPolicy { keep_last, max_age: Some(jiff::SignedDuration::try_from(max_age)?) };
    let copies = db.list_snapshots()?;
    let remove = caretaker_db::select_for_removal(&copies, &policy, jiff::Timestamp::now());
    let kept = copies.len() - remove.len();
    if dry_run {
        for c in &remove {
            println!("would remove {}", c.name);
        }
        if remove.is_empty() {
            println!("nothing to remove: {}", kept_line(kept, &policy));
        }
        return Ok(Code::Ok);
    }
    let mut job = app.store.start_job(KIND_PRUNE, Trigger::Cli, true)?;
    let mut removed = Vec::new();
    for c in &remove {
        if let Err(e) = db.drop_snapshot(c) {
            job.log(&format!("failed to remove {}: {e}", c.name));
            let figures = DbSnapshotFigures { removed: removed.clone(), ..Default::default() }.to_json();
            job.finish(Outcome::Failed, figures, Some(&e.to_string()))?;
            return Err(e.into());
        }
        job.log(&format!("removed {}", c.name));
        println!("removed {}", c.name);
        removed.push(c.name.clone());
    }
    if removed.is_empty() {
        println!("nothing to remove: {}", kept_line(kept, &policy));
    } else {
        println!("removed {}; {}", removed.len(), kept_line(kept, &policy));
    }
    job.finish(
        Outcome::Succeeded,
        DbSnapshotFigures { removed, kept: Some(kept), ..Default::default() }.to_json(),
        None,
    )?;
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
