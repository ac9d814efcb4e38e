//! `caretaker recover`: disaster recovery on a fresh machine that has only the config file.
//!
//! Steps, each timed and logged to one `recover` job: pick the snapshot (the newest complete
//! one, or `--snapshot`); plan where the code comes from (`caretaker_core::recover::plan_code`:
//! the release present, or the snapshot's commit — `--ref` another — fetched from `app.source`
//! and built as `update` builds a release; refused, with nothing changed, when there is no
//! release and no source); refuse if live data exists (a database with tables, a non-empty file
//! tree, a non-empty compose volume) unless `--force`, which moves it aside (`<db>__old_<time>`,
//! `<path>.caretaker-old-<time>`, volume `<name>__old_<time>`) and never deletes; restore the file
//! trees to their paths (not the config file: the one given is the one in force), the database
//! dump into the database and a compose app's volumes; run `app.migrate`; start the
//! app (a background daemon unless one runs) and wait until every health check passes; clear
//! the failed flag.
//!
//! Crash-resumable: the progress (`caretaker_core::recover::Progress`) is persisted in the
//! state store before and after each step, from the inspection until success. What a killed run
//! wrote after its inspection passed is its own data: the next `recover` (or the daemon on
//! start) finishes the job with the same snapshot, without `--force`. File trees are restored
//! into a staging directory next to each tree and renamed into place; the database adapters
//! restore into a fresh database renamed into place (docs/databases.md), so a partial restore
//! never looks like live data.

use crate::cli::{Global, RecoverArgs};
use crate::commands::backup::{resolve_snapshot, restore_db};
use crate::context::open_app;
use crate::control::{request, start_background_daemon, wait_until_up};
use crate::exit::backup_failure;
use crate::exit::{Code, Failure};

use crate::update::Updater;
use anyhow::{Context, Result};
use caretaker_backup::{location, BackupEngine, RestoreRequest, RestoreWhat};
use caretaker_core::config::GitRef;
use caretaker_core::job::figures::{Figures, RecoverFigures, RecoverStep};
use caretaker_core::job::{kind, Outcome, Trigger};
use caretaker_core::recover::{
    plan_code, snapshot_commit, CodeObservations, CodePlan, DatabasePlan, DeployReason, Progress, RefOrigin,
};
use caretaker_state::{JobHandle, Store};
use caretaker_supervisor::protocol::Request;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The fact holding the [`Progress`] of an unfinished `recover`.
pub const FACT_PROGRESS: &str = "recover.progress";

fn load_progress(store: &Store) -> Result<Option<Progress>> {
    crate::update::load_json_fact(store, FACT_PROGRESS, "reading the recover progress")
}

fn save_progress(store: &Store, p: &Progress) -> Result<()> {
    crate::update::save_json_fact(store, FACT_PROGRESS, p)
}

/// Debug builds only: SIGKILL caretaker itself at `recover.<step>` (the env var of
/// `update::KILL_HOOK_ENV`), for the fault-injection tests; release builds ignore it.
fn kill_hook(step: &str) {
    crate::update::kill_hook(&format!("recover.{step}"));
}

/// For the daemon, on start: when a `recover` was interrupted (its progress is there and no
/// process holds the app lock), start `caretaker recover` as a separate process to finish it;
/// it starts the app at its end. Returns whether it started one; then the daemon leaves
/// starting the services to it — the data may be half restored.
pub fn spawn_resume_if_interrupted(
    allow_world_readable_config: bool,
    config_path: &Path,
    store: &Store,
) -> Result<bool> {
    if load_progress(store)?.is_none() {
        return Ok(false);
    }
    crate::update::spawn_resume_unless_locked(
        allow_world_readable_config,
        config_path,
        store,
        &["recover"],
        "starting `caretaker recover`",
    )
}

struct Steps {
    done: Vec<(String, f64, String)>,
}

impl Steps {
    fn record(&mut self, job: &mut JobHandle<'_>, step: &str, started: Instant, what: String) {
        let secs = started.elapsed().as_secs_f64();
        job.log(&format!("{step}: {what} ({secs:.2} s)"));
        self.done.push((step.to_string(), secs, what));
    }
}

pub fn run(global: &Global, args: &RecoverArgs) -> Result<Code> {
    let app = open_app(global)?;
    let Some(cfg) = app.config.backup.clone() else {
        return Err(Failure::new(Code::Config, "the config has no `backup:` section: nothing to recover from").into());
    };
    let repo = crate::progress::attach(location::repository(&cfg).map_err(backup_failure)?, args.json);
    let all = Instant::now();
    let mut job = app.store.start_job(kind::RECOVER, Trigger::Cli, true)?;
    let job_id = job.id();
    let mut steps = Steps { done: Vec::new() };
    // Read under the app lock: a concurrent recover may just have finished it.
    let resumed = load_progress(&app.store)?;
    let resumed_job = resumed.as_ref().map(|p| p.job_id);
    let res = recover(global, &app, &repo, args, resumed, &mut job, &mut steps);
    let total = all.elapsed().as_secs_f64();
    let mut figures = RecoverFigures {
        steps: steps
            .done
            .iter()
            .map(|(step, seconds, what)| RecoverStep { step: step.clone(), seconds: *seconds, what: what.clone() })
            .collect(),
        seconds: Some(total),
        resumed_job,
        ..Default::default()
    };
    match res {
        Ok(Recovered { snapshot, release }) => {
            figures.snapshot = Some(snapshot.clone());
            figures.code = Some(release);
            app.store.clear_fact(FACT_PROGRESS)?;
            let figures = figures.to_json();
            job.finish(Outcome::Succeeded, figures.clone(), None)?;
            // (mode-supervisor) A successful recover ends service mode, and says so.
            if let Some(was) = crate::appmode::clear_failed_after(&app.store, &app.config, "recover")? {
                eprintln!("service mode cleared: the recover succeeded (was: {})", was.reason);
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&json!({"job": job_id, "figures": figures}))?);
            } else {
                let resumed = resumed_job.map(|j| format!(", finishing interrupted job {j}")).unwrap_or_default();
                println!(
                    "recovered {} from snapshot {} (job {job_id}{resumed})",
                    app.config.app.name,
                    &snapshot[..8.min(snapshot.len())]
                );
                for (step, secs, what) in &steps.done {
                    println!("  {step:<10} {secs:>7.2} s  {what}");
                }
                println!("  {:<10} {total:>7.2} s", "total");
            }
            Ok(Code::Ok)
        }
        Err(e) => {
            let code = crate::exit::classify(&e).0;
            let outcome = if code == Code::Refused { Outcome::Refused } else { Outcome::Failed };
            job.log(&format!("{e:#}"));
            job.finish(outcome, figures.to_json(), Some(&format!("{e:#}")))?;
            if outcome == Outcome::Refused {
                app.store.record_event("recover_refused", &app.config.app.name, &format!("{e:#}"))?;
            }
            if load_progress(&app.store)?.is_some() {
                eprintln!("recover is unfinished: once the cause is fixed, `caretaker recover` finishes it (no --force needed for its own data)");
            }
            Err(e)
        }
    }
}

fn recover(
    global: &Global,
    app: &crate::context::AppContext,
    repo: &caretaker_backup::ResticRepository,
    args: &RecoverArgs,
    resumed: Option<Progress>,
    job: &mut JobHandle<'_>,
    steps: &mut Steps,
) -> Result<Recovered> {
    // 1. The snapshot: an interrupted recover's, when finishing one. Another snapshot with
    // --force starts over: the interrupted job's data is then live data, moved aside.
    let t = Instant::now();
    let other = |p: &Progress| args.snapshot.as_deref().filter(|w| *w != "latest" && !p.snapshot.starts_with(*w));
    let resumed = match resumed {
        Some(p) if other(&p).is_some() && args.force => {
            let line = format!(
                "starting over from another snapshot: interrupted recover job {} is abandoned, its data moved aside",
                p.job_id
            );
            job.log(&line);
            eprintln!("{line}");
            app.store.clear_fact(FACT_PROGRESS)?;
            None
        }
        r => r,
    };
    let snap = match &resumed {
        Some(p) => {
            if let Some(w) = other(p) {
                return Err(Failure::new(
                    Code::Refused,
                    format!(
                        "recover job {} from snapshot {} was interrupted; refusing to mix in snapshot {w}",
                        p.job_id,
                        &p.snapshot[..8.min(p.snapshot.len())]
                    ),
                )
                .hint("run `caretaker recover` without --snapshot to finish it, or add --force to start over from this snapshot (moving the interrupted job's data aside)")
                .into());
            }
            let s = resolve_snapshot(repo, Some(&p.snapshot))?;
            let line = format!(
                "finishing interrupted recover job {} (done: {})",
                p.job_id,
                if p.done.is_empty() { "nothing".to_string() } else { p.done.join(", ") }
            );
            job.log(&line);
            eprintln!("{line}");
            s
        }
        None => resolve_snapshot(repo, args.snapshot.as_deref())?,
    };
    if !snap.complete && args.snapshot.is_none() && resumed.is_none() {
        return Err(Failure::new(Code::Failure, format!("the newest snapshot {} is partial", snap.short_id))
            .hint("name a snapshot with --snapshot ID to recover from it anyway")
            .into());
    }
    steps.record(job, "snapshot", t, format!("{} of {}", snap.short_id, snap.time));
    let mut p =
        resumed.unwrap_or_else(|| Progress { job_id: job.id(), snapshot: snap.id.clone(), ..Default::default() });
    p.force |= args.force;
    let force = p.force;

    // 2. Where the code comes from: decided before anything is touched. A release an
    // interrupted run built is the one to use.
    let runtime = app.runtime();
    let code_dir = runtime.code_dir();
    let release_present = non_empty(&code_dir)?;
    let code_done = p.is_done("code");
    let obs = CodeObservations {
        release_present,
        has_source: app.config.app.source.is_some(),
        configured_ref: app.config.app.source.as_ref().map(|s| match &s.reference {
            GitRef::Branch(r) | GitRef::Tag(r) | GitRef::Commit(r) => r.clone(),
        }),
        snapshot_commit: snapshot_commit(&snap.tags).map(str::to_string),
        requested_ref: if code_done { None } else { args.reference.clone() },
        redeploy: args.redeploy && !code_done,
    };
    let code_plan = plan_code(&obs);
    job.log(&format!("code: {} (release {}present)", code_dir.display(), if release_present { "" } else { "not " }));
    if let CodePlan::Refuse { reason, hint } = &code_plan {
        return Err(Failure::new(Code::Refused, reason.clone()).hint(hint.clone()).into());
    }

    // 3. Live data? (A database in a compose service must run first: start only it — from the
    // release present, or, on a machine without one, once the code step has built it. A compose
    // app's volumes are known from its compose file, which comes with the release too.)
    let db_in_service = runtime.database_service().is_some();
    let db_after_code = db_in_service && !release_present;
    let volumes_after_code = runtime.volumes_come_with_code() && !release_present;
    let inspected_now = !p.is_done("inspect");
    if inspected_now {
        let t = Instant::now();
        p.begin("inspect");
        save_progress(&app.store, &p)?;
        kill_hook("inspect");
        let mut live = Vec::new();
        if app.config.database.is_some() && !db_after_code {
            runtime.start_database(None)?;
            live.extend(live_database(app)?);
        }
        let trees: Vec<PathBuf> = app.config.files.iter().map(|t| t.path.clone()).collect();
        let mut live_trees = Vec::new();
        for tree in &trees {
            if non_empty(tree)? {
                live.push(format!("{} is not empty", tree.display()));
                live_trees.push(tree.clone());
            }
        }
        // A compose app's named volumes (a forced restore keeps their contents aside, below).
        if !volumes_after_code {
            live.extend(crate::volbackup::live(app)?);
        }
        if let Err(e) = refuse_live_data(&live, force) {
            // Nothing was written: there is nothing of this job's to finish.
            app.store.clear_fact(FACT_PROGRESS)?;
            return Err(e);
        }
        let stamp = crate::keepaside::stamp();
        for tree in &live_trees {
            let aside = crate::keepaside::move_aside(tree, &stamp)?;
            job.log(&format!("moved {} aside to {}", tree.display(), aside.display()));
            eprintln!("moved {} aside to {}", tree.display(), aside.display());
        }
        p.finish("inspect");
        save_progress(&app.store, &p)?;
        steps.record(
            job,
            "inspect",
            t,
            if live.is_empty() { "no live data".into() } else { format!("forced over: {}", live.join("; ")) },
        );
    }

    // 4. The code: the release present, or a release built from the source.
    let t = Instant::now();
    p.begin("code");
    save_progress(&app.store, &p)?;
    kill_hook("code");
    let release = match &code_plan {
        CodePlan::Deploy { reference, origin, reason } => {
            let updater = Updater {
                global,
                config_path: &app.config_path,
                config: &app.config,
                store: &app.store,
                redactor: &app.redactor,
            };
            let r = updater.deploy_for_recover(reference, job)?;
            if !non_empty(&code_dir)? {
                return Err(Failure::new(
                    Code::Config,
                    format!(
                        "release {} was built in {} but the app runs in {}, which is still missing",
                        r.name,
                        crate::update::releases_dir(app.store.dir()).display(),
                        code_dir.display()
                    ),
                )
                .hint(format!(
                    "point app.working_dir (and compose.project_dir, if set) at {}",
                    crate::update::current_link(app.store.dir()).display()
                ))
                .into());
            }
            let why = match reason {
                DeployReason::Missing => "no release on this machine",
                DeployReason::Redeploy => "--redeploy",
                DeployReason::Requested => "--ref",
            };
            let from = match origin {
                RefOrigin::Snapshot => "the snapshot's commit".to_string(),
                RefOrigin::Requested => format!("--ref {reference}"),
                RefOrigin::Configured => format!("{reference} (the snapshot records no commit)"),
            };
            steps.record(
                job,
                "code",
                t,
                format!("built release {} at {} from {from} ({why})", r.name, short(&r.commit)),
            );
            json!({"action": "built", "release": r.name, "commit": r.commit, "reference": reference,
                "origin": origin, "reason": reason})
        }
        _ => {
            let deployed = crate::update::deployed_commit(&app.store, &app.config, &app.config_path);
            let (what, matches) = present_release(&code_dir, deployed.as_deref(), snapshot_commit(&snap.tags));
            if matches == Some(false) {
                eprintln!("warning: {what}");
                job.log(&format!("warning: {what}"));
            }
            steps.record(job, "code", t, what);
            json!({"action": "present", "dir": code_dir, "commit": deployed, "matches_snapshot": matches})
        }
    };
    p.finish("code");
    save_progress(&app.store, &p)?;

    // 4a. On a machine that had no release: the database's service can start now, and a
    // compose app's volumes are known.
    if inspected_now && (db_after_code || volumes_after_code) {
        let t = Instant::now();
        let mut found = Vec::new();
        if db_after_code && app.config.database.is_some() {
            runtime.start_database(None)?;
            found.extend(live_database(app)?);
        }
        if volumes_after_code {
            found.extend(crate::volbackup::live(app)?);
        }
        if let Err(e) = refuse_live_data(&found, force) {
            app.store.clear_fact(FACT_PROGRESS)?;
            return Err(e);
        }
        steps.record(job, "inspect", t, if found.is_empty() { "no live data".into() } else { found.join("; ") });
    }

    // From here on data is written: maintenance mode until the app is up again (a killed run
    // leaves it on; the run that finishes the job switches it off).
    if app.store.fact(caretaker_core::mode::FACT_MAINTENANCE)?.is_none() {
        crate::appmode::maintenance_on(&app.store, &app.config, Some("Restoring data from a backup."), "recover")?;
    }

    // 5. Files, to their own paths, each through a staging directory next to it; the config
    // file in force stays as it is.
    if !p.is_done("files") {
        let t = Instant::now();
        p.begin("files");
        save_progress(&app.store, &p)?;
        kill_hook("files");
        let what = restore_trees(app, repo, &snap, job)?;
        p.finish("files");
        save_progress(&app.store, &p)?;
        steps.record(job, "files", t, what);
    }

    // 6. The database.
    let mut restarted: Vec<String> = Vec::new();
    if app.config.database.is_some() && !p.is_done("database") {
        let t = Instant::now();
        if db_in_service {
            // Finishing a job after a restart of the machine: the service may not run yet.
            runtime.start_database(None)?;
        }
        let live_now = !live_database(app)?.is_empty();
        if !p.was_begun("database") {
            p.database_was_live = live_now;
        }
        let plan = p.database_plan(live_now);
        p.begin("database");
        save_progress(&app.store, &p)?;
        kill_hook("database");
        let d = restore_db(app, repo, &snap.id, plan != DatabasePlan::IntoEmpty)?;
        kill_hook("database.restored");
        let mut what = format!("{} ({} bytes)", d.target, d.bytes);
        match (&d.kept_aside, plan) {
            (Some(own), DatabasePlan::ReplaceOwn) => {
                // The interrupted run's restore: this job's own data, not worth keeping.
                let db = app.runtime().open_database()?;
                if let Some(c) = db.list_snapshots()?.into_iter().find(|c| &c.name == own) {
                    db.drop_snapshot(&c)?;
                }
                what.push_str(", replacing what the interrupted run had restored");
            }
            (Some(old), _) => what.push_str(&format!(", previous contents kept as {old}")),
            (None, _) => {}
        }
        restarted = d.restarted.clone();
        p.finish("database");
        save_progress(&app.store, &p)?;
        steps.record(job, "database", t, what);
    }

    // 6b. A compose app's named volumes. A volume an interrupted run restored into is its own:
    // replaced, and the copy of it that the forced restore keeps aside removed.
    let streams: Vec<String> =
        snap.measurement.as_ref().map(|m| m.streams.keys().cloned().collect()).unwrap_or_default();
    if streams.iter().any(|s| s.starts_with(crate::volbackup::STREAM_PREFIX)) && !p.is_done("volumes") {
        let t = Instant::now();
        let own = p.was_begun("volumes") && !force;
        p.begin("volumes");
        save_progress(&app.store, &p)?;
        kill_hook("volumes");
        let v = crate::volbackup::restore(app, repo, &snap.id, &streams, force || own)?;
        let mut what = Vec::new();
        for v in &v {
            match (&v.kept_aside, own) {
                (Some(aside), true) => {
                    crate::volbackup::remove_copy(
                        app,
                        &crate::volbackup::Copy { volume: v.volume.clone(), copy: aside.clone() },
                    )?;
                    what.push(format!("{} ({} bytes; replacing the interrupted run's)", v.volume, v.bytes));
                }
                (Some(old), false) => {
                    what.push(format!("{} ({} bytes; previous contents kept as {old})", v.volume, v.bytes))
                }
                (None, _) => what.push(format!("{} ({} bytes)", v.volume, v.bytes)),
            }
        }
        p.finish("volumes");
        save_progress(&app.store, &p)?;
        steps.record(job, "volumes", t, if what.is_empty() { "none".into() } else { what.join(", ") });
    }

    // 7. Migrations (a compose app's in one-off containers); run again after an interruption.
    if !app.config.app.migrate.is_empty() {
        let t = Instant::now();
        p.begin("migrate");
        save_progress(&app.store, &p)?;
        kill_hook("migrate");
        runtime.migrate(&code_dir, &mut |l| job.log(l))?;
        p.finish("migrate");
        save_progress(&app.store, &p)?;
        steps.record(job, "migrate", t, format!("{} command(s)", app.config.app.migrate.len()));
    }

    // 8. Start the app and wait until every health check passes. (Services already running held
    // connections to the database that was replaced: the database step restarted them.)
    if runtime.has_services() {
        let t = Instant::now();
        p.begin("start");
        save_progress(&app.store, &p)?;
        kill_hook("start");
        let state_dir = app.store.dir().to_path_buf();
        if request(&state_dir, &Request::Up, Duration::from_secs(10))?.is_none() {
            start_background_daemon(global, &app.config_path, &state_dir)?;
        }
        let report = wait_until_up(&state_dir, None, Duration::from_secs(args.timeout))?;
        let mut what = format!("{} service(s) healthy", report.services.len());
        if !restarted.is_empty() {
            what.push_str(&format!(
                " ({} restarted: the database they were connected to was replaced)",
                restarted.join(", ")
            ));
        }
        steps.record(job, "start", t, what);
    }
    // Maintenance mode switched on by this job, or by a restore it ran that was killed.
    if let Some(m) = app.store.fact(caretaker_core::mode::FACT_MAINTENANCE)? {
        let by = serde_json::from_str::<serde_json::Value>(&m).ok().and_then(|v| v["by"].as_str().map(str::to_string));
        if matches!(by.as_deref(), Some("recover" | "restore")) {
            crate::appmode::maintenance_off(&app.store, &app.config, "recover")?;
        }
    }
    Ok(Recovered { snapshot: snap.id, release })
}

/// The code step's line for a release that is present, and whether its commit is the
/// snapshot's (`None`: one of the two is unknown).
fn present_release(dir: &Path, deployed: Option<&str>, snapshot: Option<&str>) -> (String, Option<bool>) {
    let same = |a: &str, b: &str| {
        let n = a.len().min(b.len());
        n >= 7 && a[..n].eq_ignore_ascii_case(&b[..n])
    };
    match (deployed, snapshot) {
        (Some(d), Some(s)) if same(d, s) => {
            (format!("release present in {} at {}, the snapshot's commit", dir.display(), short(d)), Some(true))
        }
        (Some(d), Some(s)) => (
            format!(
                "release present in {} is at commit {}, but the snapshot was taken at {}: the restored data may not \
                 fit this code (`caretaker recover --redeploy --force` builds the snapshot's commit)",
                dir.display(),
                short(d),
                short(s)
            ),
            Some(false),
        ),
        (None, Some(s)) => (
            format!(
                "release present in {} (its commit is unknown; the snapshot was taken at {})",
                dir.display(),
                short(s)
            ),
            None,
        ),
        (Some(d), None) => {
            (format!("release present in {} at {} (the snapshot records no commit)", dir.display(), short(d)), None)
        }
        (None, None) => (format!("release present in {}", dir.display()), None),
    }
}

/// The staging directory a tree is restored into before it is renamed into place: next to it,
/// on the same file system.
fn staging_dir(tree: &Path) -> PathBuf {
    let name = tree.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "tree".into());
    tree.with_file_name(format!(".{name}.caretaker-recover"))
}

/// Restores the configured file trees the snapshot holds, each into its staging directory and
/// then renamed into place (a missing or empty tree is replaced in one step). A tree that is
/// not empty any more was renamed into place by an interrupted run of this job: kept. Paths
/// of the snapshot that are no file tree of this config (its config file) are not restored.
fn restore_trees(
    app: &crate::context::AppContext,
    repo: &caretaker_backup::ResticRepository,
    snap: &caretaker_backup::SnapshotInfo,
    job: &mut JobHandle<'_>,
) -> Result<String> {
    let trees: Vec<PathBuf> = app.config.files.iter().map(|t| t.path.clone()).collect();
    let paths: Vec<PathBuf> = snap
        .paths
        .iter()
        .map(PathBuf::from)
        .filter(|p| p != Path::new(caretaker_backup::stream::STREAMS_DIR))
        .collect();
    let mut restored = Vec::new();
    let mut notes = Vec::new();
    for tree in &trees {
        if !paths.contains(tree) {
            notes.push(format!("{} is not in the snapshot", tree.display()));
            continue;
        }
        if non_empty(tree)? {
            job.log(&format!("{} was restored before the interruption", tree.display()));
            restored.push(format!("{} (restored before the interruption)", tree.display()));
            continue;
        }
        let staging = staging_dir(tree);
        remove_staging(&staging)?;
        let req = RestoreRequest {
            snapshot: Some(snap.id.clone()),
            what: RestoreWhat::FilesOnly,
            target: Some(staging.clone()),
            skip: paths.iter().filter(|p| *p != tree).cloned().collect(),
        };
        let r = repo.restore(&req).map_err(backup_failure)?;
        if !r.errors.is_empty() {
            return Err(Failure::new(Code::Failure, format!("restoring files: {}", r.errors.join("; "))).into());
        }
        kill_hook("files.staged");
        let staged = staging.join(tree.strip_prefix("/").unwrap_or(tree));
        if let Some(parent) = tree.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        // Over a missing or empty directory: rename(2) replaces an empty one.
        std::fs::rename(&staged, tree)
            .with_context(|| format!("renaming {} into place at {}", staged.display(), tree.display()))?;
        if let Some(parent) = tree.parent() {
            if let Ok(d) = std::fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        remove_staging(&staging)?;
        restored.push(tree.display().to_string());
    }
    for p in paths.iter().filter(|p| !trees.contains(p)) {
        let config = std::fs::canonicalize(&app.config_path).unwrap_or_else(|_| app.config_path.clone());
        let why = if *p == config {
            "the config file: the one given stays in force".to_string()
        } else {
            format!("not a file tree of this config (the config in force is {})", app.config_path.display())
        };
        let line = format!("{} not restored: {why}", p.display());
        job.log(&line);
        notes.push(line);
    }
    let mut what = if restored.is_empty() { "none".to_string() } else { restored.join(", ") };
    if !notes.is_empty() {
        what.push_str(&format!("; {}", notes.join("; ")));
    }
    Ok(what)
}

/// Removes a staging directory (a killed run's, or this run's once emptied by the rename).
fn remove_staging(staging: &Path) -> Result<()> {
    match std::fs::remove_dir_all(staging) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing the staging directory {}", staging.display())),
    }
}

/// What a successful recover restored from, for the summary.
struct Recovered {
    snapshot: String,
    release: serde_json::Value,
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// Live data (`live`: what was found) is refused unless `--force`.
fn refuse_live_data(live: &[String], force: bool) -> Result<()> {
    if live.is_empty() || force {
        return Ok(());
    }
    Err(Failure::new(Code::Refused, format!("live data exists: {}", live.join("; ")))
        .hint("recover is for a fresh machine; add --force to move the live data aside (nothing is deleted)")
        .into())
}

/// The database as live data: it exists and holds tables.
fn live_database(app: &crate::context::AppContext) -> Result<Vec<String>> {
    let db = app.runtime().open_database()?;
    let c = db.contents()?;
    Ok(if c.exists && !c.is_blank() { vec![format!("{} has {} tables", db.target(), c.tables.len())] } else { vec![] })
}

/// A tree counts as live data when it holds anything.
fn non_empty(p: &Path) -> Result<bool> {
    match std::fs::read_dir(p) {
        Ok(mut d) => Ok(d.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}
