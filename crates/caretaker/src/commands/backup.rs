//! `caretaker backup init|run|list|check|prune|restore`: the backup repository from the
//! command line. The engine lives in the caretaker-backup crate; this file builds requests
//! from the config, records jobs and renders results.

use crate::cli::{BackupArgs, BackupCommand, Global};
use crate::context::{open_app, AppContext};
use crate::exit::{Code, Failure};
use crate::output::{human_duration, table};
use anyhow::Result;
use caretaker_backup::{
    location, BackupEngine, BackupRequest, ErrorKind, ReadData, RestoreRequest, RestoreWhat, SafetyPolicy, TreeSpec,
};
use caretaker_core::job::{kind, Outcome, Trigger};

pub fn run(global: &Global, args: &BackupArgs) -> Result<Code> {
    let app = open_app(global)?;
    let Some(cfg) = app.config.backup.clone() else {
        return Err(Failure::new(Code::Config, "the config has no `backup:` section")
            .hint("add `backup: { repository: ..., password: ... }` (see `caretaker init`)")
            .into());
    };
    let repo = location::repository(&cfg).map_err(to_failure)?;
    match &args.command {
        BackupCommand::Init => {
            repo.init().map_err(to_failure)?;
            eprintln!("created backup repository {}", cfg.repository);
            Ok(Code::Ok)
        }
        BackupCommand::Run { json } => run_backup(&app, &repo, &cfg, *json),
        BackupCommand::List { json } => {
            let snaps = repo.snapshots().map_err(to_failure)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&snaps)?);
            } else {
                let mut rows = vec![vec![
                    "ID".into(),
                    "TIME".into(),
                    "HOST".into(),
                    "STATE".into(),
                    "FILES".into(),
                    "BYTES".into(),
                ]];
                for s in &snaps {
                    let state = if s.pending {
                        "pending"
                    } else if s.complete {
                        "complete"
                    } else {
                        "partial"
                    };
                    rows.push(vec![
                        s.short_id.clone(),
                        s.time.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                        s.hostname.clone(),
                        state.into(),
                        s.files.to_string(),
                        s.bytes.to_string(),
                    ]);
                }
                print!("{}", table(&rows));
            }
            Ok(Code::Ok)
        }
        BackupCommand::Check { read_data, read_data_subset } => {
            let read = match (read_data, read_data_subset) {
                (_, Some(p)) => ReadData::Percent(parse_percent(p)?),
                (true, None) => ReadData::All,
                (false, None) => ReadData::None,
            };
            let mut job = app.store.start_job(kind::BACKUP_CHECK, Trigger::Cli, false)?;
            let res = repo.check(read);
            match res {
                Ok(r) => {
                    for w in &r.warnings {
                        eprintln!("warning: {w}");
                        job.log(&format!("warning: {w}"));
                    }
                    for e in &r.errors {
                        eprintln!("error: {e}");
                        job.log(&format!("error: {e}"));
                    }
                    let figures = serde_json::json!({"errors": r.errors.len(), "warnings": r.warnings.len()});
                    if r.errors.is_empty() {
                        job.finish(Outcome::Succeeded, figures, None)?;
                        eprintln!("repository {} is consistent", cfg.repository);
                        Ok(Code::Ok)
                    } else {
                        job.finish(Outcome::Failed, figures, Some("check found errors"))?;
                        app.store.record_event(
                            "backup_check_failed",
                            &cfg.repository.to_string(),
                            "check found errors",
                        )?;
                        Ok(Code::Failure)
                    }
                }
                Err(e) => {
                    job.finish(Outcome::Failed, serde_json::json!({}), Some(&e.message))?;
                    Err(to_failure(e).into())
                }
            }
        }
        BackupCommand::Prune { json } => {
            let job = app.store.start_job(kind::PRUNE, Trigger::Cli, true)?;
            match repo.prune(&cfg.keep) {
                Ok(r) => {
                    let figures = serde_json::to_value(&r)?;
                    job.finish(Outcome::Succeeded, figures.clone(), None)?;
                    if *json {
                        println!("{}", serde_json::to_string_pretty(&figures)?);
                    } else {
                        eprintln!(
                            "removed {} snapshot(s), kept {}, freed {} bytes",
                            r.removed_snapshots.len(),
                            r.kept_snapshots.len(),
                            r.bytes_freed
                        );
                    }
                    Ok(Code::Ok)
                }
                Err(e) => {
                    job.finish(Outcome::Failed, serde_json::json!({}), Some(&e.message))?;
                    Err(to_failure(e).into())
                }
            }
        }
        BackupCommand::Restore { snapshot, files_only, streams_only, target, json } => {
            let what = match (files_only, streams_only) {
                (true, _) => RestoreWhat::FilesOnly,
                (false, true) => RestoreWhat::StreamsOnly,
                _ => RestoreWhat::All,
            };
            let job = app.store.start_job(kind::RESTORE, Trigger::Cli, true)?;
            let req = RestoreRequest { snapshot: snapshot.clone(), what, target: target.clone() };
            match repo.restore(&req) {
                Ok(r) => {
                    let figures = serde_json::to_value(&r)?;
                    let outcome = if r.errors.is_empty() { Outcome::Succeeded } else { Outcome::Partial };
                    job.finish(outcome, figures.clone(), r.errors.first().map(String::as_str))?;
                    if *json {
                        println!("{}", serde_json::to_string_pretty(&figures)?);
                    } else {
                        for p in &r.restored {
                            eprintln!("restored {}", p.display());
                        }
                        for (name, p, n) in &r.streams_written {
                            eprintln!("stream {name} → {} ({n} bytes)", p.display());
                        }
                        for s in &r.streams_skipped {
                            eprintln!("stream {s} not restored (give --target to write it to a file)");
                        }
                        for e in &r.errors {
                            eprintln!("error: {e}");
                        }
                    }
                    Ok(if r.errors.is_empty() { Code::Ok } else { Code::Failure })
                }
                Err(e) => {
                    job.finish(Outcome::Failed, serde_json::json!({}), Some(&e.message))?;
                    Err(to_failure(e).into())
                }
            }
        }
    }
}

fn parse_percent(s: &str) -> Result<f64> {
    s.trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or_else(|| Failure::new(Code::Usage, format!("--read-data-subset {s}: give a percentage, e.g. 10%")).into())
}

fn run_backup(
    app: &AppContext,
    repo: &caretaker_backup::ResticRepository,
    cfg: &caretaker_core::config::Backup,
    json: bool,
) -> Result<Code> {
    let config = &app.config;
    let req = BackupRequest {
        trees: config.files.iter().map(|t| TreeSpec { path: t.path.clone(), exclude: t.exclude.clone() }).collect(),
        files: vec![std::fs::canonicalize(&app.config_path).unwrap_or_else(|_| app.config_path.clone())],
        tags: vec![
            format!("app:{}", config.app.name),
            format!("caretaker:{}", crate::cli::LONG_VERSION.split(' ').next().unwrap_or("unknown")),
        ],
        host: None,
        policy: SafetyPolicy {
            allow_empty: config.files.iter().filter(|t| t.allow_empty).map(|t| t.path.clone()).collect(),
            max_shrink_percent: cfg.max_shrink_percent,
        },
    };
    let mut job = app.store.start_job(kind::BACKUP, Trigger::Cli, true)?;
    let id = job.id();
    job.log(&format!("backing up to {}", cfg.repository));
    // The database dump joins here as a StreamSource once the database adapters exist.
    match repo.backup(&req, Vec::new()) {
        Ok(r) => {
            let figures = serde_json::to_value(&r)?;
            for e in &r.read_errors {
                job.log(&format!("unreadable: {e}"));
            }
            let (outcome, code) =
                if r.complete { (Outcome::Succeeded, Code::Ok) } else { (Outcome::Partial, Code::Failure) };
            let error = (!r.complete).then(|| format!("{} file(s) could not be read", r.read_errors.len()));
            job.finish(outcome, figures.clone(), error.as_deref())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"job": id, "outcome": outcome, "figures": figures})
                    )?
                );
            } else {
                eprintln!(
                    "snapshot {} ({outcome}): {} files, {} bytes read, {} bytes added, in {}",
                    &r.snapshot_id[..8],
                    r.files,
                    r.bytes_read,
                    r.bytes_added,
                    human_duration(r.duration)
                );
                for e in &r.read_errors {
                    eprintln!("unreadable: {e}");
                }
            }
            Ok(code)
        }
        Err(e) => {
            let outcome = if e.kind == ErrorKind::Refused { Outcome::Refused } else { Outcome::Failed };
            job.log(&e.message);
            job.finish(outcome, serde_json::json!({}), Some(&e.message))?;
            if e.kind == ErrorKind::Refused {
                app.store.record_event("backup_refused", &cfg.repository.to_string(), &e.message)?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"job": id, "outcome": outcome, "error": e.message})
                    )?
                );
            }
            Err(to_failure(e).into())
        }
    }
}

/// The engine's error kinds as exit codes (docs/exit-codes.md).
pub fn to_failure(e: caretaker_backup::Error) -> Failure {
    let code = match e.kind {
        ErrorKind::Refused => Code::Refused,
        ErrorKind::Unreachable | ErrorKind::NoRepository | ErrorKind::DiskFull => Code::Unavailable,
        ErrorKind::Invalid => Code::Usage,
        _ => Code::Failure,
    };
    let f = Failure::new(code, e.message);
    match e.hint {
        Some(h) => f.hint(h),
        None => f,
    }
}
