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

use crate::appenv::{app_env, working_dir};
use crate::cli::{Global, RecoverArgs};
use crate::commands::backup::{resolve_snapshot, restore_db, to_failure};
use crate::context::open_app;
use crate::control::{request, start_background_daemon, wait_until_up};
use crate::exit::{Code, Failure};
use crate::runner::run_logged;
use crate::update::Updater;
use anyhow::{Context, Result};
use caretaker_backup::{location, BackupEngine, RestoreRequest, RestoreWhat};
use caretaker_core::config::GitRef;
use caretaker_core::job::figures::{Figures, RecoverFigures, RecoverStep};
use caretaker_core::job::{kind, Outcome, Trigger};
use caretaker_core::recover::{plan_code, snapshot_commit, CodeObservations, CodePlan, DeployReason, RefOrigin};
use caretaker_state::JobHandle;
use caretaker_supervisor::protocol::Request;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    let repo = crate::progress::attach(location::repository(&cfg).map_err(to_failure)?, args.json);
    let all = Instant::now();
    let mut job = app.store.start_job(kind::RECOVER, Trigger::Cli, true)?;
    let job_id = job.id();
    let mut steps = Steps { done: Vec::new() };
    let res = recover(global, &app, &repo, args, &mut job, &mut steps);
    let total = all.elapsed().as_secs_f64();
    let mut figures = RecoverFigures {
        steps: steps
            .done
            .iter()
            .map(|(step, seconds, what)| RecoverStep { step: step.clone(), seconds: *seconds, what: what.clone() })
            .collect(),
        seconds: Some(total),
        ..Default::default()
    };
    match res {
        Ok(Recovered { snapshot, release }) => {
            figures.snapshot = Some(snapshot.clone());
            figures.code = Some(release);
            let figures = figures.to_json();
            job.finish(Outcome::Succeeded, figures.clone(), None)?;
            if app.store.fact(caretaker_core::mode::FACT_FAILED)?.is_some() {
                crate::appmode::reset_failed(&app.store, &app.config)?;
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&json!({"job": job_id, "figures": figures}))?);
            } else {
                println!("recovered {} from snapshot {} (job {job_id})", app.config.app.name, &snapshot[..8]);
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
            Err(e)
        }
    }
}

fn recover(
    global: &Global,
    app: &crate::context::AppContext,
    repo: &caretaker_backup::ResticRepository,
    args: &RecoverArgs,
    job: &mut JobHandle<'_>,
    steps: &mut Steps,
) -> Result<Recovered> {
    // 1. The snapshot.
    let t = Instant::now();
    let snap = resolve_snapshot(repo, args.snapshot.as_deref())?;
    if !snap.complete && args.snapshot.is_none() {
        return Err(Failure::new(Code::Failure, format!("the newest snapshot {} is partial", snap.short_id))
            .hint("name a snapshot with --snapshot ID to recover from it anyway")
            .into());
    }
    steps.record(job, "snapshot", t, format!("{} of {}", snap.short_id, snap.time));

    // 2. Where the code comes from: decided before anything is touched.
    let code_dir = code_dir(app);
    let release_present = non_empty(&code_dir)?;
    let obs = CodeObservations {
        release_present,
        has_source: app.config.app.source.is_some(),
        configured_ref: app.config.app.source.as_ref().map(|s| match &s.reference {
            GitRef::Branch(r) | GitRef::Tag(r) | GitRef::Commit(r) => r.clone(),
        }),
        snapshot_commit: snapshot_commit(&snap.tags).map(str::to_string),
        requested_ref: args.reference.clone(),
        redeploy: args.redeploy,
    };
    let code_plan = plan_code(&obs);
    job.log(&format!("code: {} (release {}present)", code_dir.display(), if release_present { "" } else { "not " }));
    if let CodePlan::Refuse { reason, hint } = &code_plan {
        return Err(Failure::new(Code::Refused, reason.clone()).hint(hint.clone()).into());
    }

    // 3. Live data? (A database in a compose service must run first: start only it — from the
    // release present, or, on a machine without one, once the code step has built it.)
    let t = Instant::now();
    let db_in_service = app.config.database.as_ref().is_some_and(|d| d.compose_service.is_some());
    let db_after_code = db_in_service && !release_present;
    let mut live = Vec::new();
    if app.config.database.is_some() && !db_after_code {
        crate::compose::start_database_service(&app.config, &app.config_path, &app.redactor)?;
        live.extend(live_database(app)?);
    }
    let trees: Vec<PathBuf> = app.config.files.iter().map(|t| t.path.clone()).collect();
    let mut live_trees = Vec::new();
    for p in &trees {
        if non_empty(p)? {
            live.push(format!("{} is not empty", p.display()));
            live_trees.push(p.clone());
        }
    }
    // A compose app's named volumes (a forced restore keeps their contents aside, below).
    live.extend(crate::volbackup::live(app)?);
    refuse_live_data(&live, args.force)?;
    let stamp = jiff::Zoned::now().strftime("%Y%m%d-%H%M%S").to_string();
    for p in &live_trees {
        let aside = PathBuf::from(format!("{}.caretaker-old-{stamp}", p.display()));
        std::fs::rename(p, &aside).with_context(|| format!("moving {} aside to {}", p.display(), aside.display()))?;
        job.log(&format!("moved {} aside to {}", p.display(), aside.display()));
        eprintln!("moved {} aside to {}", p.display(), aside.display());
    }
    steps.record(
        job,
        "inspect",
        t,
        if live.is_empty() { "no live data".into() } else { format!("forced over: {}", live.join("; ")) },
    );

    // 4. The code: the release present, or a release built from the source.
    let t = Instant::now();
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
            let what = match snapshot_commit(&snap.tags) {
                Some(c) => format!("release present in {} (the snapshot's commit: {})", code_dir.display(), short(c)),
                None => format!("release present in {}", code_dir.display()),
            };
            steps.record(job, "code", t, what);
            json!({"action": "present", "dir": code_dir})
        }
    };

    // 4a. A database in a compose service on a machine that had no release: it can start now.
    if db_after_code {
        let t = Instant::now();
        crate::compose::start_database_service(&app.config, &app.config_path, &app.redactor)?;
        let found = live_database(app)?;
        refuse_live_data(&found, args.force)?;
        steps.record(job, "inspect", t, if found.is_empty() { "database empty".into() } else { found.join("; ") });
    }

    // 5. Files, to their own paths; the config file in force stays as it is.
    let t = Instant::now();
    let config_path = std::fs::canonicalize(&app.config_path).unwrap_or_else(|_| app.config_path.clone());
    let req = RestoreRequest {
        snapshot: Some(snap.id.clone()),
        what: RestoreWhat::FilesOnly,
        target: None,
        skip: vec![config_path],
    };
    let r = repo.restore(&req).map_err(to_failure)?;
    if !r.errors.is_empty() {
        return Err(Failure::new(Code::Failure, format!("restoring files: {}", r.errors.join("; "))).into());
    }
    let listed: Vec<String> = r.restored.iter().map(|p| p.display().to_string()).collect();
    steps.record(job, "files", t, if listed.is_empty() { "none".into() } else { listed.join(", ") });

    // 6. The database.
    if app.config.database.is_some() {
        let t = Instant::now();
        let d = restore_db(app, repo, &snap.id, args.force)?;
        let mut what = format!("{} ({} bytes)", d.target, d.bytes);
        if let Some(old) = &d.kept_aside {
            what.push_str(&format!(", previous contents kept as {old}"));
        }
        steps.record(job, "database", t, what);
    }

    // 6b. A compose app's named volumes.
    let streams: Vec<String> =
        snap.measurement.as_ref().map(|m| m.streams.keys().cloned().collect()).unwrap_or_default();
    if streams.iter().any(|s| s.starts_with(crate::volbackup::STREAM_PREFIX)) {
        let t = Instant::now();
        let v = crate::volbackup::restore(app, repo, &snap.id, &streams, args.force)?;
        let what: Vec<String> = v
            .iter()
            .map(|v| match &v.kept_aside {
                Some(old) => format!("{} ({} bytes; previous contents kept as {old})", v.volume, v.bytes),
                None => format!("{} ({} bytes)", v.volume, v.bytes),
            })
            .collect();
        steps.record(job, "volumes", t, if what.is_empty() { "none".into() } else { what.join(", ") });
    }

    // 7. Migrations (a compose app's in one-off containers).
    if !app.config.app.migrate.is_empty() && app.config.compose.is_some() {
        let t = Instant::now();
        let dir = crate::compose::project_dir(&app.config, &app.config_path);
        let (cfg, path, r) = (&app.config, &app.config_path, &app.redactor);
        crate::compose::run_one_off_commands(cfg, path, r, &dir, &cfg.app.migrate, "migrate", &mut |l| job.log(l))?;
        steps.record(job, "migrate", t, format!("{} command(s)", app.config.app.migrate.len()));
    } else if !app.config.app.migrate.is_empty() {
        let t = Instant::now();
        let cwd = working_dir(&app.config.app, &app.config_path);
        let env = app_env(&app.config.app, None, &cwd)?;
        let redactor = app.redactor.clone();
        for cmd in &app.config.app.migrate {
            job.log(&format!("$ {cmd}"));
            let ended = run_logged(cmd, &env, &cwd, Duration::from_secs(3600), job, &|s| redactor.redact(s), false)?;
            if !ended.success() {
                return Err(Failure::new(Code::Failure, format!("migration `{cmd}` {}", ended.describe())).into());
            }
        }
        steps.record(job, "migrate", t, format!("{} command(s)", app.config.app.migrate.len()));
    }

    // 8. Start the app and wait until every health check passes.
    if !app.config.services.is_empty() || app.config.compose.is_some() {
        let t = Instant::now();
        let state_dir = app.store.dir().to_path_buf();
        if request(&state_dir, &Request::Up, Duration::from_secs(10))?.is_none() {
            start_background_daemon(global, &app.config_path, &state_dir)?;
        }
        let report = wait_until_up(&state_dir, None, Duration::from_secs(args.timeout))?;
        steps.record(job, "start", t, format!("{} service(s) healthy", report.services.len()));
    }
    Ok(Recovered { snapshot: snap.id, release })
}

/// What a successful recover restored from, for the summary.
struct Recovered {
    snapshot: String,
    release: serde_json::Value,
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// Where the app's code must be: a compose app's project directory, else its working
/// directory (with `caretaker update`, `<state dir>/current`).
fn code_dir(app: &crate::context::AppContext) -> PathBuf {
    if app.config.compose.is_some() {
        crate::compose::project_dir(&app.config, &app.config_path)
    } else {
        let dir = working_dir(&app.config.app, &app.config_path);
        std::path::absolute(&dir).unwrap_or(dir)
    }
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
    let db = crate::compose::open_database(&app.config, &app.redactor)?;
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
