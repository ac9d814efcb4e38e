//! `caretaker backup init|run|list|check|prune|restore`: the backup repository from the
//! command line. The engine lives in the caretaker-backup crate; this file builds requests
//! from the config, records jobs and renders results.

use crate::cli::{BackupArgs, BackupCommand, Global};
use crate::context::{open_app, AppContext};
use crate::exit::{Code, Failure};
use crate::output::{human_duration, table};
use anyhow::Result;
use caretaker_backup::{
    location, BackupEngine, BackupRequest, ErrorKind, ReadData, RestoreRequest, RestoreWhat, SafetyPolicy,
    SnapshotInfo, TreeSpec,
};
use caretaker_core::job::figures::{
    BackupCheckFigures, BackupFigures, Figures, PruneFigures, RepositoryFigures, RestoreFigures,
};
use caretaker_core::job::{kind, Outcome, Trigger};
use caretaker_db::RestoreMode;

pub fn run(global: &Global, args: &BackupArgs) -> Result<Code> {
    let app = open_app(global)?;
    let Some(cfg) = app.config.backup.clone() else {
        return Err(Failure::new(Code::Config, "the config has no `backup:` section")
            .hint("add `backup: { repository: ..., password: ... }` (see `caretaker init`)")
            .into());
    };
    let repo = match location::repository(&cfg) {
        Ok(r) => r,
        Err(e) => {
            // An SFTP target is reached here: a backup that cannot start is still a failed job.
            if matches!(args.command, BackupCommand::Run { .. }) {
                let job = app.store.start_job(kind::BACKUP, crate::context::trigger(), true)?;
                job.finish(Outcome::Failed, serde_json::json!({}), Some(&e.message))?;
            }
            return Err(to_failure(e).into());
        }
    };
    let json = match &args.command {
        BackupCommand::Init => false,
        BackupCommand::Run { json }
        | BackupCommand::List { json }
        | BackupCommand::Check { json, .. }
        | BackupCommand::Prune { json }
        | BackupCommand::Restore { json, .. } => *json,
    };
    let repo = crate::progress::attach(repo, json);
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
        BackupCommand::Check { read_data, read_data_subset, json } => {
            let read = match (read_data, read_data_subset) {
                (_, Some(p)) => ReadData::Percent(parse_percent(p)?),
                (true, None) => ReadData::All,
                (false, None) => ReadData::None,
            };
            let mut job = app.store.start_job(kind::BACKUP_CHECK, crate::context::trigger(), false)?;
            let job_id = job.id();
            let res = repo.check(read);
            match res {
                Ok(r) => {
                    for w in &r.warnings {
                        if !json {
                            eprintln!("warning: {w}");
                        }
                        job.log(&format!("warning: {w}"));
                    }
                    for e in &r.errors {
                        if !json {
                            eprintln!("error: {e}");
                        }
                        job.log(&format!("error: {e}"));
                    }
                    let figures = BackupCheckFigures {
                        errors: Some(r.errors.len() as u64),
                        warnings: Some(r.warnings.len() as u64),
                    }
                    .to_json();
                    if *json {
                        let summary = serde_json::json!({
                            "job": job_id,
                            "repository": cfg.repository.to_string(),
                            "consistent": r.errors.is_empty(),
                            "errors": r.errors,
                            "warnings": r.warnings,
                        });
                        println!("{}", serde_json::to_string_pretty(&summary)?);
                    }
                    if r.errors.is_empty() {
                        job.finish(Outcome::Succeeded, figures, None)?;
                        if !json {
                            eprintln!("repository {} is consistent", cfg.repository);
                        }
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
            let mut job = app.store.start_job(kind::PRUNE, crate::context::trigger(), true)?;
            match repo.prune(&cfg.keep) {
                Ok(r) => {
                    let figures = prune_figures(&r, repository_figures(&repo, &mut job)).to_json();
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
        BackupCommand::Restore { snapshot, files_only, db_only, target, force, json } => {
            restore_cmd(&app, &repo, snapshot.as_deref(), *files_only, *db_only, target.as_deref(), *force, *json)
        }
    }
}

/// The snapshot `wanted` names (an id prefix), or the newest complete one (else the newest
/// that is not pending), as the engine picks it.
pub fn resolve_snapshot(repo: &dyn BackupEngine, wanted: Option<&str>) -> Result<SnapshotInfo> {
    let snaps = repo.snapshots().map_err(to_failure)?;
    let found = match wanted {
        Some(w) if w != "latest" => {
            let found: Vec<_> = snaps.into_iter().filter(|s| s.id.starts_with(w)).collect();
            if found.len() > 1 {
                return Err(Failure::new(Code::Usage, format!("snapshot id {w} is ambiguous"))
                    .hint("give more characters of the id")
                    .into());
            }
            found.into_iter().next()
        }
        _ => snaps.iter().rev().find(|s| s.complete).or_else(|| snaps.iter().rev().find(|s| !s.pending)).cloned(),
    };
    found.ok_or_else(|| {
        Failure::new(Code::Unavailable, format!("no snapshot {}", wanted.unwrap_or("to restore")))
            .hint("`caretaker backup list` shows the snapshots")
            .into()
    })
}

/// What restoring the database did.
#[derive(serde::Serialize)]
pub struct DbRestored {
    pub target: String,
    pub bytes: u64,
    pub kept_aside: Option<String>,
    pub seconds: f64,
}

/// Restores the snapshot's database dump into the configured database, in maintenance mode
/// (switched back off afterwards unless it was on before). A database with tables is refused
/// unless `force`, which keeps its contents aside.
pub fn restore_db(app: &AppContext, repo: &dyn BackupEngine, snapshot: &str, force: bool) -> Result<DbRestored> {
    let Some(_) = &app.config.database else {
        return Err(Failure::new(Code::Config, "the config has no `database:` section").into());
    };
    let db = crate::compose::open_database(&app.config, &app.redactor)?;
    let contents = db.contents()?;
    if contents.exists && !contents.is_blank() && !force {
        return Err(Failure::new(
            Code::Refused,
            format!("{} is not empty ({} tables): refusing to restore over it", db.target(), contents.tables.len()),
        )
        .hint(
            "restore into an empty database, or add --force to keep its contents aside as <db>__old_<time> and restore",
        )
        .into());
    }
    let mode = if force { RestoreMode::ReplaceKeepingOld } else { RestoreMode::IntoEmpty };
    let was_on = app.store.fact(caretaker_core::mode::FACT_MAINTENANCE)?.is_some();
    if !was_on {
        crate::appmode::maintenance_on(&app.store, &app.config, Some("Restoring data from a backup."), "restore")?;
    }
    let started = std::time::Instant::now();
    let res = crate::dbbackup::restore_database(repo, snapshot, db.as_ref(), mode);
    if let Err(e) = &res {
        // The database may now be empty or partly restored: never expose that silently.
        // Service mode keeps visitors on the service page until an operator clears it.
        crate::appmode::set_failed(
            &app.store,
            &app.config,
            &format!("restoring the database from a backup failed: {e}"),
        )?;
    }
    if !was_on {
        crate::appmode::maintenance_off(&app.store, &app.config, "restore")?;
    }
    let (restored, _) = res.map_err(|e| e.into_anyhow())?;
    Ok(DbRestored {
        target: db.target().to_string(),
        bytes: restored.bytes,
        kept_aside: restored.kept_aside,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[allow(clippy::too_many_arguments)]
fn restore_cmd(
    app: &AppContext,
    repo: &caretaker_backup::ResticRepository,
    snapshot: Option<&str>,
    files_only: bool,
    db_only: bool,
    target: Option<&std::path::Path>,
    force: bool,
    json: bool,
) -> Result<Code> {
    let snap = resolve_snapshot(repo, snapshot)?;
    let mut job = app.store.start_job(kind::RESTORE, Trigger::Cli, true)?;
    job.log(&format!("restoring snapshot {}", snap.id));
    let what = match (files_only, db_only) {
        (true, _) => RestoreWhat::FilesOnly,
        (false, true) => RestoreWhat::StreamsOnly,
        _ => RestoreWhat::All,
    };
    // With a target everything goes below it, the dump as a file; without one the files go
    // to their paths and the dump into the database.
    let files = if target.is_some() || !db_only {
        let what = if target.is_some() { what } else { RestoreWhat::FilesOnly };
        let req =
            RestoreRequest { snapshot: Some(snap.id.clone()), what, target: target.map(Into::into), skip: vec![] };
        match repo.restore(&req) {
            Ok(r) => Some(r),
            Err(e) => {
                job.finish(Outcome::Failed, serde_json::json!({}), Some(&e.message))?;
                return Err(to_failure(e).into());
            }
        }
    } else {
        None
    };
    let streams: Vec<String> =
        snap.measurement.as_ref().map(|m| m.streams.keys().cloned().collect()).unwrap_or_default();
    let has_dump = snap.paths.iter().any(|p| p == caretaker_backup::stream::STREAMS_DIR)
        && (snap.measurement.is_none() || streams.iter().any(|s| s == crate::dbbackup::STREAM_NAME));
    let db = if target.is_none() && !files_only && app.config.database.is_some() && (has_dump || db_only) {
        match restore_db(app, repo, &snap.id, force) {
            Ok(d) => {
                job.log(&format!("database restored into {} ({} bytes)", d.target, d.bytes));
                Some(d)
            }
            Err(e) => {
                job.log(&format!("database restore failed: {e:#}"));
                let figures = restore_figures(&snap.id, files.as_ref(), None, &[])?;
                job.finish(Outcome::Failed, figures, Some(&format!("{e:#}")))?;
                return Err(e);
            }
        }
    } else {
        None
    };
    let volumes = if target.is_none() && !files_only {
        match crate::volbackup::restore(app, repo, &snap.id, &streams, force) {
            Ok(v) => v,
            Err(e) => {
                job.log(&format!("volume restore failed: {e:#}"));
                let figures = restore_figures(&snap.id, files.as_ref(), db.as_ref(), &[])?;
                job.finish(Outcome::Failed, figures, Some(&format!("{e:#}")))?;
                return Err(e);
            }
        }
    } else {
        Vec::new()
    };
    for v in &volumes {
        job.log(&format!("volume {} restored ({} bytes)", v.volume, v.bytes));
    }
    let errors: Vec<String> = files.as_ref().map(|r| r.errors.clone()).unwrap_or_default();
    let figures = restore_figures(&snap.id, files.as_ref(), db.as_ref(), &volumes)?;
    let outcome = if errors.is_empty() { Outcome::Succeeded } else { Outcome::Partial };
    job.finish(outcome, figures.clone(), errors.first().map(String::as_str))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        eprintln!("snapshot {}", &snap.id[..8.min(snap.id.len())]);
        if let Some(r) = &files {
            for p in &r.restored {
                eprintln!("restored {}", p.display());
            }
            for (name, p, n) in &r.streams_written {
                eprintln!("stream {name} → {} ({n} bytes)", p.display());
            }
            for e in &r.errors {
                eprintln!("error: {e}");
            }
        }
        if let Some(d) = &db {
            eprintln!("database {} restored ({} bytes in {:.1} s)", d.target, d.bytes, d.seconds);
            if let Some(old) = &d.kept_aside {
                eprintln!("previous contents kept aside as {old}");
            }
        }
        for v in &volumes {
            eprintln!("volume {} restored ({} bytes)", v.volume, v.bytes);
            if let Some(old) = &v.kept_aside {
                eprintln!("previous contents kept aside as volume {old}");
            }
        }
    }
    Ok(if errors.is_empty() { Code::Ok } else { Code::Failure })
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
    let mut tags = vec![
        format!("app:{}", config.app.name),
        format!("caretaker:{}", crate::cli::LONG_VERSION.split(' ').next().unwrap_or("unknown")),
    ];
    if let Some(v) = crate::dbbackup::app_version(config, &app.config_path) {
        tags.push(format!("app-version:{v}"));
    }
    // The code the data belongs to, so that `recover` can rebuild it on a fresh machine.
    if let Some(c) = crate::update::deployed_commit(&app.store, config, &app.config_path) {
        tags.push(caretaker_core::recover::commit_tag(&c));
    }
    let req = BackupRequest {
        trees: config.files.iter().map(|t| TreeSpec { path: t.path.clone(), exclude: t.exclude.clone() }).collect(),
        files: vec![std::fs::canonicalize(&app.config_path).unwrap_or_else(|_| app.config_path.clone())],
        tags,
        host: None,
        policy: SafetyPolicy {
            allow_empty: config.files.iter().filter(|t| t.allow_empty).map(|t| t.path.clone()).collect(),
            max_shrink_percent: cfg.max_shrink_percent,
        },
    };
    let mut job = app.store.start_job(kind::BACKUP, crate::context::trigger(), true)?;
    let id = job.id();
    job.log(&format!("backing up to {}", cfg.repository));
    // The database: its safety check comes before anything is written; its dump is streamed
    // into the snapshot as `/caretaker-streams/database`.
    let mut streams: Vec<Box<dyn caretaker_backup::StreamSource>> = Vec::new();
    if let Some(dbcfg) = &config.database {
        let checked = crate::compose::open_database(config, &app.redactor).and_then(|db| {
            db.safety_check(&dbcfg.min_rows)?;
            Ok(db)
        });
        match checked {
            Ok(db) => {
                job.log(&format!("database safety check passed: {}", db.target()));
                streams.push(Box::new(crate::dbbackup::DumpStream::new(db)));
            }
            Err(e) => {
                let refused = e.kind() == caretaker_db::ErrorKind::SafetyCheck;
                let outcome = if refused { Outcome::Refused } else { Outcome::Failed };
                job.log(&e.to_string());
                job.finish(outcome, serde_json::json!({}), Some(&e.to_string()))?;
                if refused {
                    app.store.record_event("backup_refused", &cfg.repository.to_string(), &e.to_string())?;
                }
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"job": id, "outcome": outcome, "error": e.to_string()})
                        )?
                    );
                }
                return Err(e.into());
            }
        }
    }
    // A compose app's named volumes (docs/compose.md): refused like empty trees.
    match crate::volbackup::prepare(app) {
        Ok(v) => streams.extend(v),
        Err(e) => {
            let refused = crate::exit::classify(&e).0 == Code::Refused;
            job.log(&format!("{e:#}"));
            job.finish(
                if refused { Outcome::Refused } else { Outcome::Failed },
                serde_json::json!({}),
                Some(&format!("{e:#}")),
            )?;
            if refused {
                app.store.record_event("backup_refused", &cfg.repository.to_string(), &format!("{e:#}"))?;
            }
            return Err(e);
        }
    }
    match repo.backup(&req, streams) {
        Ok(r) => {
            let figures = backup_figures(&r, repository_figures(repo, &mut job))?.to_json();
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
        ErrorKind::Unreachable
        | ErrorKind::NoRepository
        | ErrorKind::DiskFull
        | ErrorKind::WrongPassword
        | ErrorKind::HostKey => Code::Unavailable,
        ErrorKind::Invalid => Code::Usage,
        _ => Code::Failure,
    };
    let f = Failure::new(code, e.message);
    match e.hint {
        Some(h) => f.hint(h),
        None => f,
    }
}

/// The repository's totals after a backup or a prune. Measuring is best effort: a listing
/// that fails is logged and leaves the figures out, the job keeps its outcome.
fn repository_figures(
    repo: &caretaker_backup::ResticRepository,
    job: &mut caretaker_state::JobHandle,
) -> RepositoryFigures {
    repo.totals().unwrap_or_else(|e| {
        job.log(&format!("could not measure the repository: {}", e.message));
        RepositoryFigures::default()
    })
}

/// A backup job's figures: the engine's report and the repository's totals after it.
fn backup_figures(r: &caretaker_backup::BackupReport, repository: RepositoryFigures) -> Result<BackupFigures> {
    Ok(BackupFigures {
        snapshot_id: Some(r.snapshot_id.clone()),
        complete: Some(r.complete),
        read_errors: r.read_errors.clone(),
        bytes_read: Some(r.bytes_read),
        bytes_added: Some(r.bytes_added),
        files: Some(r.files),
        files_new: Some(r.files_new),
        files_changed: Some(r.files_changed),
        duration: Some(r.duration.as_secs_f64()),
        measurement: Some(serde_json::to_value(&r.measurement)?),
        repository,
    })
}

/// A restore job's figures: the reports of the parts restored so far.
fn restore_figures(
    snapshot: &str,
    files: Option<&caretaker_backup::RestoreReport>,
    database: Option<&DbRestored>,
    volumes: &[crate::volbackup::Restored],
) -> Result<serde_json::Value> {
    Ok(RestoreFigures {
        snapshot: Some(snapshot.to_string()),
        files: files.map(serde_json::to_value).transpose()?,
        database: database.map(serde_json::to_value).transpose()?,
        volumes: volumes.iter().map(serde_json::to_value).collect::<serde_json::Result<_>>()?,
    }
    .to_json())
}

/// A prune job's figures: what the retention policy removed and the totals after it.
fn prune_figures(r: &caretaker_backup::PruneReport, repository: RepositoryFigures) -> PruneFigures {
    PruneFigures {
        removed_snapshots: r.removed_snapshots.clone(),
        kept_snapshots: r
            .kept_snapshots
            .iter()
            .map(|(id, why)| (id.clone(), why.iter().map(|w| w.to_string()).collect()))
            .collect(),
        packs_removed: Some(r.packs_removed),
        bytes_freed: Some(r.bytes_freed),
        repository,
    }
}
