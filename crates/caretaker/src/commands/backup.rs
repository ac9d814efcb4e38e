//! `caretaker backup init|run|list|check|prune|restore`: the backup repository from the
//! command line. The engine lives in the caretaker-backup crate; this file builds requests
//! from the config, records jobs and renders results.

use crate::cli::{BackupArgs, BackupCommand, Global};
use crate::context::{open_app, AppContext};
use crate::exit::{backup_failure, Code, Failure};
use crate::output::{human_duration, table};
use anyhow::{Context, Result};
use caretaker_backup::safety::{plan_restore, Destination, Place, RestoreObservations, RestorePlan};
use caretaker_backup::{
    location, BackupEngine, BackupRequest, ErrorKind, ReadData, RestoreRequest, RestoreWhat, SafetyPolicy,
    SnapshotInfo, TreeSpec,
};
use caretaker_core::job::figures::{
    BackupCheckFigures, BackupFigures, Figures, PruneFigures, RepositoryFigures, RestoreFigures,
};
use caretaker_core::job::{kind, Outcome, Trigger};
use caretaker_db::RestoreMode;
use std::path::{Path, PathBuf};

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
            return Err(backup_failure(e).into());
        }
    };
    let json = match &args.command {
        BackupCommand::Init => false,
        BackupCommand::Run { json, .. }
        | BackupCommand::List { json }
        | BackupCommand::KeptAside { json, .. }
        | BackupCommand::Check { json, .. }
        | BackupCommand::Prune { json }
        | BackupCommand::Restore { json, .. } => *json,
    };
    let repo = crate::progress::attach(repo, json);
    match &args.command {
        BackupCommand::Init => {
            repo.init().map_err(backup_failure)?;
            eprintln!("created backup repository {}", cfg.repository);
            Ok(Code::Ok)
        }
        BackupCommand::Run { json, allow_shrink } => run_backup(&app, &repo, &cfg, *json, *allow_shrink),
        BackupCommand::List { json } => {
            reconcile_killed_runs(&app, &repo, &mut |_| {});
            let snaps = repo.snapshots().map_err(backup_failure)?;
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
                    Err(backup_failure(e).into())
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
                    Err(backup_failure(e).into())
                }
            }
        }
        BackupCommand::Restore { snapshot, files_only, db_only, target, force, replace_config, json } => {
            let a = RestoreArgs {
                snapshot: snapshot.as_deref(),
                files_only: *files_only,
                db_only: *db_only,
                target: target.as_deref(),
                force: *force,
                replace_config: *replace_config,
                json: *json,
            };
            restore_cmd(&app, &repo, &a)
        }
        BackupCommand::KeptAside { keep, dry_run, json } => kept_aside(&app, *keep, *dry_run, *json),
    }
}

/// The snapshot `wanted` names (an id prefix), or the newest complete one (else the newest
/// that is not pending), as the engine picks it.
pub fn resolve_snapshot(repo: &dyn BackupEngine, wanted: Option<&str>) -> Result<SnapshotInfo> {
    let snaps = repo.snapshots().map_err(backup_failure)?;
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
    /// Services restarted because the database was replaced under them.
    pub restarted: Vec<String>,
}

/// Restores the snapshot's database dump into the configured database, in maintenance mode
/// (switched back off afterwards unless it was on before). A database with tables is refused
/// unless `force`, which keeps its contents aside.
pub fn restore_db(app: &AppContext, repo: &dyn BackupEngine, snapshot: &str, force: bool) -> Result<DbRestored> {
    let Some(_) = &app.config.database else {
        return Err(Failure::new(Code::Config, "the config has no `database:` section").into());
    };
    let db = app.runtime().open_database()?;
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
    // Leaves the mode as it found it: an operator's maintenance stays on.
    let maintenance = crate::appmode::ModeGuard::enter_maintenance(
        &app.store,
        &app.config,
        Some("Restoring data from a backup."),
        "restore",
    )?;
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
    // Services that run held connections to the database that was replaced.
    let restarted = match &res {
        Ok(_) => crate::dbbackup::restart_running_services(app).unwrap_or_else(|e| {
            eprintln!("warning: restarting the services failed ({e:#}): run `caretaker restart`");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    };
    maintenance.finish()?;
    let (restored, _) = res.map_err(|e| e.into_anyhow())?;
    Ok(DbRestored {
        target: db.target().to_string(),
        bytes: restored.bytes,
        kept_aside: restored.kept_aside,
        seconds: started.elapsed().as_secs_f64(),
        restarted,
    })
}

/// What `backup restore` was asked.
struct RestoreArgs<'a> {
    snapshot: Option<&'a str>,
    files_only: bool,
    db_only: bool,
    target: Option<&'a Path>,
    force: bool,
    replace_config: bool,
    json: bool,
}

/// Something live that a forced restore kept aside, for the report.
#[derive(Clone, Debug, serde::Serialize)]
struct Aside {
    /// What it was ("/srv/media", "database app", "volume p_data").
    what: String,
    /// Where it is now.
    kept_as: String,
}

/// What a restore will write, as found before writing anything.
struct Layout {
    /// Paths of the snapshot restored as files (in place: the file trees; with --target: also
    /// the config file).
    paths: Vec<PathBuf>,
    /// In place: the snapshot's config file and where it goes (next to the live config as
    /// `<name>.from-snapshot`, or over it with --replace-config).
    config: Option<(PathBuf, PathBuf)>,
    /// In place: the live config (kept aside with --replace-config).
    live_config: PathBuf,
    streams: Vec<String>,
    /// In place: restore the dump into the database.
    database: bool,
    observations: RestoreObservations,
}

/// Whether `p` is a mount point (or a bind-mounted file): on another device than its parent.
fn mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::symlink_metadata(p), p.parent()) else { return false };
    std::fs::metadata(parent).is_ok_and(|pm| pm.dev() != m.dev())
}

/// The live config's path as it is stored in snapshots.
fn live_config_path(app: &AppContext) -> PathBuf {
    std::fs::canonicalize(&app.config_path).unwrap_or_else(|_| app.config_path.clone())
}

/// Observes every place the restore would write (no writes): the input of
/// [`caretaker_backup::safety::plan_restore`].
fn observe(app: &AppContext, snap: &SnapshotInfo, a: &RestoreArgs<'_>) -> Result<Layout> {
    let live_config = live_config_path(app);
    let streams: Vec<String> =
        snap.measurement.as_ref().map(|m| m.streams.keys().cloned().collect()).unwrap_or_default();
    let has_streams = snap.paths.iter().any(|p| p == caretaker_backup::stream::STREAMS_DIR);
    // The snapshot's trees are in its manifest; its other path is the config file.
    let mut trees = Vec::new();
    let mut config_in_snapshot = None;
    for p in snap.paths.iter().filter(|p| *p != caretaker_backup::stream::STREAMS_DIR) {
        let p = PathBuf::from(p);
        let is_tree = match &snap.measurement {
            Some(m) => m.trees.contains_key(&p),
            None => p != live_config,
        };
        if is_tree || config_in_snapshot.is_some() {
            trees.push(p);
        } else {
            config_in_snapshot = Some(p);
        }
    }
    let live = |p: &Path| -> Result<Option<String>> {
        Ok(crate::keepaside::holds_data(p)?.then(|| if p.is_dir() { "is not empty" } else { "exists" }.to_string()))
    };
    let mut destinations = Vec::new();
    let mut layout = Layout {
        paths: Vec::new(),
        config: None,
        live_config: live_config.clone(),
        streams: streams.clone(),
        database: false,
        observations: RestoreObservations { destinations: vec![], target: None, force: a.force },
    };
    if let Some(t) = a.target {
        layout.observations.target = Some((t.to_path_buf(), crate::keepaside::holds_data(t)?));
        let under = |p: &Path| t.join(p.strip_prefix("/").unwrap_or(p));
        if !a.db_only {
            layout.paths = trees.iter().cloned().chain(config_in_snapshot).collect();
            for p in &layout.paths {
                let dest = under(p);
                destinations.push(Destination {
                    live: live(&dest)?,
                    mount_point: mount_point(&dest),
                    place: Place::Path(dest),
                });
            }
        }
        if !a.files_only && has_streams {
            let dest = under(Path::new(caretaker_backup::stream::STREAMS_DIR));
            destinations.push(Destination {
                live: live(&dest)?,
                mount_point: mount_point(&dest),
                place: Place::Path(dest),
            });
        }
    } else {
        if !a.db_only {
            for p in &trees {
                destinations.push(Destination {
                    live: live(p)?,
                    mount_point: mount_point(p),
                    place: Place::Path(p.clone()),
                });
            }
            layout.paths = trees;
            if let Some(c) = config_in_snapshot {
                let dest = if a.replace_config {
                    let what =
                        crate::keepaside::holds_data(&live_config)?.then(|| "is the config in force".to_string());
                    destinations.push(Destination {
                        place: Place::Path(live_config.clone()),
                        live: what,
                        mount_point: mount_point(&live_config),
                    });
                    live_config.clone()
                } else {
                    let name = live_config.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    live_config.with_file_name(format!("{name}.from-snapshot"))
                };
                layout.config = Some((c, dest));
            }
        }
        let has_dump =
            has_streams && (snap.measurement.is_none() || streams.iter().any(|s| s == crate::dbbackup::STREAM_NAME));
        if !a.files_only && app.config.database.is_some() && (has_dump || a.db_only) {
            layout.database = true;
            let db = app.runtime().open_database()?;
            let c = db.contents()?;
            let what = (c.exists && !c.is_blank()).then(|| format!("has {} tables", c.tables.len()));
            destinations.push(Destination {
                place: Place::Database(db.target().to_string()),
                live: what,
                mount_point: false,
            });
        }
        if !a.files_only {
            for (name, full) in crate::volbackup::observe(app, &streams)? {
                destinations.push(Destination {
                    place: Place::Volume(name),
                    live: full.then(|| "is not empty".into()),
                    mount_point: false,
                });
            }
        }
    }
    layout.observations.destinations = destinations;
    Ok(layout)
}

fn restore_cmd(app: &AppContext, repo: &caretaker_backup::ResticRepository, a: &RestoreArgs<'_>) -> Result<Code> {
    let snap = resolve_snapshot(repo, a.snapshot)?;
    let mut job = app.store.start_job(kind::RESTORE, Trigger::Cli, true)?;
    job.log(&format!("restoring snapshot {}", snap.id));
    // Every refusal is decided here, before anything is written.
    let layout = match observe(app, &snap, a) {
        Ok(l) => l,
        Err(e) => {
            job.log(&format!("{e:#}"));
            job.finish(Outcome::Failed, serde_json::json!({"snapshot": snap.id}), Some(&format!("{e:#}")))?;
            return Err(e);
        }
    };
    let plan = match plan_restore(&layout.observations) {
        Ok(p) => p,
        Err(r) => {
            let msg = r.to_string();
            job.log(&msg);
            job.finish(Outcome::Refused, serde_json::json!({"snapshot": snap.id, "live": r.live}), Some(&msg))?;
            app.store.record_event("restore_refused", &app.config.app.name, &msg)?;
            let hint = if a.force {
                "nothing was written; a mount point cannot be renamed aside: unmount it (or empty it yourself), or restore with --target DIR and copy from there"
            } else if a.target.is_some() {
                "nothing was written; restore into an empty or new directory, or add --force to rename what is in the way to <path>.caretaker-old-<time> first"
            } else {
                "nothing was written; add --force to keep the live data aside first (nothing is deleted: trees and files are renamed to <path>.caretaker-old-<time>, the database and volumes copied to <name>__old_<time>), or use --target DIR to look at the snapshot first"
            };
            return Err(Failure::new(Code::Refused, msg).hint(hint).into());
        }
    };
    // In place: maintenance mode throughout, and the mode found is restored afterwards.
    let in_place = a.target.is_none();
    let maintenance = match in_place {
        true => Some(crate::appmode::ModeGuard::enter_maintenance(
            &app.store,
            &app.config,
            Some("Restoring data from a backup."),
            "restore",
        )?),
        false => None,
    };
    let mut done = Restored::default();
    let res = execute(app, repo, &snap, a, &layout, &plan, &mut job, &mut done);
    if let Err(e) = &res {
        // Live data may be aside and the restore half done: never expose that silently (the
        // database and volume restores set the flag themselves).
        let changed = !done.kept_aside.is_empty() || done.files.is_some() || done.config.is_some();
        if in_place && changed && app.store.fact(caretaker_core::mode::FACT_FAILED)?.is_none() {
            crate::appmode::set_failed(&app.store, &app.config, &format!("restoring from a backup failed: {e:#}"))?;
        }
    }
    if let Some(m) = maintenance {
        m.finish()?;
    }
    let figures = RestoreFigures {
        snapshot: Some(snap.id.clone()),
        files: done.files.as_ref().map(serde_json::to_value).transpose()?,
        config: done.config.as_ref().map(|c| c.display().to_string()),
        database: done.database.as_ref().map(serde_json::to_value).transpose()?,
        volumes: done.volumes.iter().map(serde_json::to_value).collect::<serde_json::Result<_>>()?,
        kept_aside: done.kept_aside.iter().map(serde_json::to_value).collect::<serde_json::Result<_>>()?,
    }
    .to_json();
    if let Err(e) = res {
        let refused = crate::exit::classify(&e).0 == Code::Refused;
        job.log(&format!("restore failed: {e:#}"));
        job.finish(if refused { Outcome::Refused } else { Outcome::Failed }, figures, Some(&format!("{e:#}")))?;
        if !done.kept_aside.is_empty() && !a.json {
            eprintln!("kept aside before the failure (nothing was deleted):");
            for k in &done.kept_aside {
                eprintln!("  {} → {}", k.what, k.kept_as);
            }
        }
        return Err(e);
    }
    let errors: Vec<String> = done.files.as_ref().map(|r| r.errors.clone()).unwrap_or_default();
    let outcome = if errors.is_empty() { Outcome::Succeeded } else { Outcome::Partial };
    job.finish(outcome, figures.clone(), errors.first().map(String::as_str))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        eprintln!("snapshot {}", &snap.id[..8.min(snap.id.len())]);
        if let Some(r) = &done.files {
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
        if let Some(c) = &done.config {
            if *c == layout.live_config {
                eprintln!("config file restored to {} (the snapshot's)", c.display());
            } else {
                eprintln!(
                    "the snapshot's config file → {} (the config in force is unchanged; --replace-config puts it in place)",
                    c.display()
                );
            }
        }
        if let Some(d) = &done.database {
            eprintln!("database {} restored ({} bytes in {:.1} s)", d.target, d.bytes, d.seconds);
            if !d.restarted.is_empty() {
                eprintln!(
                    "restarted {} (their connections to the replaced database were ended)",
                    d.restarted.join(", ")
                );
            }
        }
        for v in &done.volumes {
            eprintln!("volume {} restored ({} bytes)", v.volume, v.bytes);
        }
        if !done.kept_aside.is_empty() {
            eprintln!("kept aside (nothing was deleted; `caretaker backup kept-aside` lists them):");
            for k in &done.kept_aside {
                eprintln!("  {} → {}", k.what, k.kept_as);
            }
        }
    }
    Ok(if errors.is_empty() { Code::Ok } else { Code::Failure })
}

/// What a restore did so far (also reported when it fails half-way).
#[derive(Default)]
struct Restored {
    files: Option<caretaker_backup::RestoreReport>,
    config: Option<PathBuf>,
    database: Option<DbRestored>,
    volumes: Vec<crate::volbackup::Restored>,
    kept_aside: Vec<Aside>,
}

/// Carries out a restore that [`plan_restore`] let go ahead: first every live path is moved
/// aside, then the files, the config file, the database and the volumes are restored (the
/// database and volumes keep their live contents aside themselves).
#[allow(clippy::too_many_arguments)]
fn execute(
    app: &AppContext,
    repo: &caretaker_backup::ResticRepository,
    snap: &SnapshotInfo,
    a: &RestoreArgs<'_>,
    layout: &Layout,
    plan: &RestorePlan,
    job: &mut caretaker_state::JobHandle<'_>,
    done: &mut Restored,
) -> Result<()> {
    let in_place = a.target.is_none();
    let stamp = crate::keepaside::stamp();
    let mut keep_db = false;
    for place in &plan.keep_aside {
        match place {
            Place::Path(p) => {
                let aside = crate::keepaside::move_aside(p, &stamp)?;
                job.log(&format!("kept aside: {} → {}", p.display(), aside.display()));
                if !a.json {
                    eprintln!("kept aside: {} → {}", p.display(), aside.display());
                }
                done.kept_aside.push(Aside { what: p.display().to_string(), kept_as: aside.display().to_string() });
            }
            Place::Database(_) => keep_db = true,
            Place::Volume(_) => {}
        }
    }
    // The files: in place the trees (the config file separately, below); with a target
    // everything asked for goes below it, the dumps as files.
    if !layout.paths.is_empty() || a.target.is_some() {
        let what = match (a.files_only, a.db_only) {
            (true, _) => RestoreWhat::FilesOnly,
            (false, true) => RestoreWhat::StreamsOnly,
            _ => RestoreWhat::All,
        };
        let all: Vec<PathBuf> = snap.paths.iter().map(PathBuf::from).collect();
        let req = RestoreRequest {
            snapshot: Some(snap.id.clone()),
            what: if in_place { RestoreWhat::FilesOnly } else { what },
            target: a.target.map(Into::into),
            skip: all.into_iter().filter(|p| !layout.paths.contains(p)).collect(),
        };
        let r = repo.restore(&req).map_err(backup_failure);
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                if in_place {
                    crate::appmode::set_failed(
                        &app.store,
                        &app.config,
                        &format!("restoring files from a backup failed: {e}"),
                    )?;
                }
                return Err(e.into());
            }
        };
        for p in &r.restored {
            job.log(&format!("restored {}", p.display()));
        }
        if in_place && !r.errors.is_empty() {
            // Some files could not be restored: the app must not serve half a file store.
            crate::appmode::set_failed(
                &app.store,
                &app.config,
                &format!("restoring files from a backup failed: {}", r.errors.join("; ")),
            )?;
        }
        done.files = Some(r);
    }
    if let Some((in_snapshot, dest)) = &layout.config {
        restore_config(repo, snap, in_snapshot, dest)?;
        job.log(&format!("the snapshot's config file {} → {}", in_snapshot.display(), dest.display()));
        done.config = Some(dest.clone());
    }
    if layout.database {
        let d = restore_db(app, repo, &snap.id, a.force && keep_db)?;
        job.log(&format!("database restored into {} ({} bytes)", d.target, d.bytes));
        if let Some(old) = &d.kept_aside {
            job.log(&format!("kept aside: database {} → {old}", d.target));
            done.kept_aside.push(Aside { what: format!("database {}", d.target), kept_as: old.clone() });
        }
        done.database = Some(d);
    }
    if in_place && !a.files_only {
        let v = crate::volbackup::restore(app, repo, &snap.id, &layout.streams, a.force)?;
        for v in &v {
            job.log(&format!("volume {} restored ({} bytes)", v.volume, v.bytes));
            if let Some(old) = &v.kept_aside {
                job.log(&format!("kept aside: volume {} → {old}", v.volume));
                done.kept_aside.push(Aside { what: format!("volume {}", v.volume), kept_as: format!("volume {old}") });
            }
        }
        done.volumes = v;
    }
    Ok(())
}

/// Restores the snapshot's config file `in_snapshot` to `dest`: below a scratch directory next
/// to `dest` first, then renamed into place (so `dest` is never half-written).
fn restore_config(
    repo: &caretaker_backup::ResticRepository,
    snap: &SnapshotInfo,
    in_snapshot: &Path,
    dest: &Path,
) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let scratch = dir.join(format!(".caretaker-restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    // 0700: the config file may hold secrets; nobody else sees it on its way.
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&scratch)
        .with_context(|| format!("creating {}", scratch.display()))?;
    let req = RestoreRequest {
        snapshot: Some(snap.id.clone()),
        what: RestoreWhat::FilesOnly,
        target: Some(scratch.clone()),
        skip: snap.paths.iter().map(PathBuf::from).filter(|p| p != in_snapshot).collect(),
    };
    let res = repo.restore(&req).map_err(|e| anyhow::Error::from(backup_failure(e))).and_then(|r| {
        if let Some(e) = r.errors.first() {
            return Err(Failure::new(Code::Failure, format!("restoring the config file: {e}")).into());
        }
        let from = scratch.join(in_snapshot.strip_prefix("/").unwrap_or(in_snapshot));
        std::fs::rename(&from, dest).with_context(|| format!("moving the restored config file to {}", dest.display()))
    });
    let _ = std::fs::remove_dir_all(&scratch);
    res
}

/// `backup kept-aside`: what forced restores and recovers kept aside, and with `keep` the
/// removal of all but the newest `keep` copies of each file tree, config file and volume.
fn kept_aside(app: &AppContext, keep: Option<usize>, dry_run: bool, json: bool) -> Result<Code> {
    #[derive(serde::Serialize)]
    struct Row {
        kind: &'static str,
        of: String,
        name: String,
    }
    let mut groups: Vec<Vec<Row>> = Vec::new();
    let mut origins: Vec<PathBuf> = app.config.files.iter().map(|t| t.path.clone()).collect();
    origins.push(live_config_path(app));
    for o in &origins {
        let found = crate::keepaside::list(o)?;
        let kind = if *o == live_config_path(app) { "config" } else { "files" };
        groups.push(
            found
                .into_iter()
                .map(|k| Row { kind, of: o.display().to_string(), name: k.path.display().to_string() })
                .collect(),
        );
    }
    let mut by_volume: std::collections::BTreeMap<String, Vec<Row>> = Default::default();
    for c in crate::volbackup::copies(app)? {
        by_volume.entry(c.volume.clone()).or_default().push(Row { kind: "volume", of: c.volume, name: c.copy });
    }
    groups.extend(by_volume.into_values());
    // Database copies are listed; `caretaker db prune` removes them by its own policy.
    let mut db_rows = Vec::new();
    if app.config.database.is_some() {
        match app.runtime().open_database().and_then(|db| {
            let copies = db.list_snapshots()?;
            Ok((db.target().to_string(), copies))
        }) {
            Ok((target, copies)) => {
                db_rows.extend(copies.into_iter().filter(|c| c.kind == caretaker_db::CopyKind::Aside).map(|c| Row {
                    kind: "database",
                    of: target.clone(),
                    name: c.name,
                }))
            }
            Err(e) => eprintln!("warning: database copies not listed: {e}"),
        }
    }
    let Some(keep) = keep else {
        let rows: Vec<&Row> = groups.iter().flatten().chain(db_rows.iter()).collect();
        if json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else if rows.is_empty() {
            eprintln!("nothing kept aside");
        } else {
            let mut t = vec![vec!["KIND".into(), "OF".into(), "KEPT AS".into()]];
            t.extend(rows.iter().map(|r| vec![r.kind.to_string(), r.of.clone(), r.name.clone()]));
            print!("{}", table(&t));
        }
        return Ok(Code::Ok);
    };
    // Each group is oldest first: all but the newest `keep` go.
    let remove: Vec<&Row> = groups.iter().flat_map(|g| g.iter().take(g.len().saturating_sub(keep))).collect();
    if dry_run {
        if json {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({"would_remove": remove}))?);
        } else {
            for r in &remove {
                println!("would remove {}", r.name);
            }
        }
        return Ok(Code::Ok);
    }
    let mut job = app.store.start_job(KIND_KEPT_ASIDE_PRUNE, Trigger::Cli, true)?;
    let mut removed = Vec::new();
    for r in remove {
        let res = match r.kind {
            "volume" => crate::volbackup::remove_copy(
                app,
                &crate::volbackup::Copy { volume: r.of.clone(), copy: r.name.clone() },
            ),
            _ => {
                let p = Path::new(&r.name);
                if p.is_dir() && !p.is_symlink() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) }
                    .with_context(|| format!("removing {}", p.display()))
            }
        };
        if let Err(e) = res {
            job.log(&format!("failed to remove {}: {e:#}", r.name));
            job.finish(Outcome::Failed, serde_json::json!({"removed": removed}), Some(&format!("{e:#}")))?;
            return Err(e);
        }
        job.log(&format!("removed {}", r.name));
        if !json {
            println!("removed {}", r.name);
        }
        removed.push(r.name.clone());
    }
    job.finish(Outcome::Succeeded, serde_json::json!({"removed": removed}), None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"removed": removed}))?);
    }
    Ok(Code::Ok)
}

/// The job kind of `backup kept-aside --keep N`.
const KIND_KEPT_ASIDE_PRUNE: &str = "kept_aside_prune";

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
    allow_shrink: bool,
) -> Result<Code> {
    let config = &app.config;
    let mut tags = vec![
        format!("app:{}", config.app.name),
        format!("caretaker:{}", crate::version::LONG_VERSION.split(' ').next().unwrap_or("unknown")),
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
            // 100 turns the shrink check off (--allow-shrink: this run only).
            max_shrink_percent: if allow_shrink { 100 } else { cfg.max_shrink_percent },
        },
    };
    let mut req = req;
    let mut job = app.store.start_job(kind::BACKUP, crate::context::trigger(), true)?;
    let id = job.id();
    // The job's id in the snapshot: a run killed after its snapshot was saved is recognised
    // by the next one (reconcile_killed_runs).
    req.tags.push(format!("{JOB_TAG_PREFIX}{id}"));
    job.log(&format!("backing up to {}", cfg.repository));
    if allow_shrink {
        job.log("--allow-shrink: the shrink check is off for this run");
    }
    reconcile_killed_runs(app, repo, &mut |l| job.log(l));
    // The database: its safety check comes before anything is written; its dump is streamed
    // into the snapshot as `/caretaker-streams/database`.
    let mut streams: Vec<Box<dyn caretaker_backup::StreamSource>> = Vec::new();
    if let Some(dbcfg) = &config.database {
        let checked = app.runtime().open_database().and_then(|db| {
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
        Err(mut e) => {
            let outcome = if e.kind == ErrorKind::Refused { Outcome::Refused } else { Outcome::Failed };
            if let (Some(caretaker_backup::Refusal::Shrunk { .. }), None) = (&e.refusal, &e.hint) {
                e.hint = Some(
                    "find out why first: a smaller backup would push good snapshots out of retention. If the data \
                     shrank on purpose (old data deleted), run `caretaker backup run --allow-shrink` once"
                        .into(),
                );
            }
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
            Err(backup_failure(e).into())
        }
    }
}

/// The tag that names the backup job which took a snapshot.
pub const JOB_TAG_PREFIX: &str = "caretaker-job:";

/// Backup runs recorded `interrupted` whose snapshot was saved complete (the process was killed
/// after the final save, before it recorded its outcome): recorded as what they achieved. Run
/// by `backup run` and `backup list`. Best effort: a failure here is logged and the run goes on.
fn reconcile_killed_runs(app: &AppContext, repo: &dyn BackupEngine, log: &mut dyn FnMut(&str)) {
    let interrupted: Vec<i64> = match app.store.jobs(Some(kind::BACKUP), 50) {
        Ok(jobs) => jobs.into_iter().filter(|j| j.outcome == Outcome::Interrupted).map(|j| j.id).collect(),
        Err(_) => return,
    };
    if interrupted.is_empty() {
        return;
    }
    let Ok(snaps) = repo.snapshots() else { return };
    for s in snaps.iter().filter(|s| !s.pending) {
        let Some(id) = s.tags.iter().find_map(|t| t.strip_prefix(JOB_TAG_PREFIX)?.parse::<i64>().ok()) else {
            continue;
        };
        if !interrupted.contains(&id) {
            continue;
        }
        let outcome = if s.complete { Outcome::Succeeded } else { Outcome::Partial };
        let note = format!(
            "the process was killed after snapshot {} was saved{}",
            s.short_id,
            if s.complete { "" } else { " (partial)" }
        );
        let figures =
            serde_json::json!({"snapshot_id": s.id, "files": s.files, "bytes_read": s.bytes, "reconciled": true});
        match app.store.reconcile_interrupted(id, outcome, figures, &note) {
            Ok(true) => log(&format!("job {id}: recorded {outcome}: {note}")),
            Ok(false) => {}
            Err(e) => log(&format!("job {id}: could not record its outcome: {e}")),
        }
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
