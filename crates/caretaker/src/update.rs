//! Safe updates, the effects: release directories and the `current` symlink, fetching from git,
//! and carrying out the steps `caretaker_core::update` plans — persisting the progress in the
//! state store before every step so that a killed caretaker can be resumed (docs/updates.md).

use crate::cli::Global;
use crate::control::{request, start_background_daemon, wait_until_up};
use crate::exit::{Code, Failure};
use anyhow::{anyhow, bail, Context, Result};
use caretaker_core::config::{Config, GitRef, MigrationDetect, Redactor};
use caretaker_core::job::figures::{Figures, UpdateFigures};
use caretaker_core::job::{kind, Outcome, Trigger};
use caretaker_core::update::{
    self as plan, failure_consequence, migrations_from_added_files, plan_rollback, plan_update, release_name,
    releases_to_remove, Migrations, Observations, Phase, Progress, Resume, RollbackStep, Step,
};
use caretaker_state::{JobHandle, Store};
use caretaker_supervisor::protocol::{Request, StatusReport};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The fact holding the [`Progress`] of an unfinished update.
pub const FACT_PROGRESS: &str = "update.progress";
/// The fact holding the [`Registry`] of releases.
pub const FACT_RELEASES: &str = "update.releases";
/// Debug builds only: SIGKILL caretaker itself right after persisting the progress for this
/// step (a forward step name such as `migrate`, or `rollback.<step>`). For the fault-injection
/// tests; release builds ignore it.
#[cfg(debug_assertions)]
pub const KILL_HOOK_ENV: &str = "CARETAKER_TEST_KILL_AT_STEP";

/// Where releases live: `<state dir>/releases/<n>-<commit>`, and `<state dir>/current`, the
/// symlink `app.working_dir` should name.
pub fn releases_dir(state_dir: &Path) -> PathBuf {
    caretaker_state::Layout::new(state_dir).releases()
}

pub fn current_link(state_dir: &Path) -> PathBuf {
    caretaker_state::Layout::new(state_dir).current()
}

/// The release `current` points at, by directory name.
pub fn current_release(state_dir: &Path) -> Option<String> {
    let target = std::fs::read_link(current_link(state_dir)).ok()?;
    target.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Points `current` at `release` atomically: a new symlink under a temporary name, renamed over
/// the old one.
pub fn switch_current(state_dir: &Path, release: &str) -> Result<()> {
    let target = releases_dir(state_dir).join(release);
    if !target.is_dir() {
        bail!("release directory {} is missing", target.display());
    }
    let tmp = caretaker_state::Layout::new(state_dir).current_tmp();
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp).with_context(|| format!("creating {}", tmp.display()))?;
    std::fs::rename(&tmp, current_link(state_dir)).context("switching the current symlink")?;
    if let Ok(d) = std::fs::File::open(state_dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// One release as caretaker remembers it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseRecord {
    pub name: String,
    pub commit: String,
    pub reference: String,
    pub created_at: String,
    /// `building`, `deployed`, `failed` (rolled back or never served), `rolled_back` (left by
    /// `caretaker rollback`).
    pub state: String,
    /// The database snapshot taken just before this release was switched in (the data of the
    /// release before it).
    pub snapshot: Option<String>,
}

/// Every release and the order in which releases became current.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Registry {
    pub releases: Vec<ReleaseRecord>,
    /// Release names in the order they were successfully deployed; the last one is current.
    pub history: Vec<String>,
    /// Snapshots to drop once `update.snapshot_keep` has passed: (name, unix seconds).
    pub expiring_snapshots: Vec<(String, i64)>,
    pub next_number: u64,
}

impl Registry {
    pub fn load(store: &Store) -> Result<Registry> {
        Ok(match store.fact(FACT_RELEASES)? {
            Some(s) => serde_json::from_str(&s).context("reading the release registry")?,
            None => Registry { next_number: 1, ..Default::default() },
        })
    }

    pub fn save(&self, store: &Store) -> Result<()> {
        store.set_fact(FACT_RELEASES, &serde_json::to_string(self)?)?;
        Ok(())
    }

    /// Records a new release of `commit` (asked for as `reference`) in state `building` and
    /// returns its name; the caller saves the registry.
    fn start_release(&mut self, commit: &str, reference: &str) -> String {
        let number = self.next_number.max(1);
        let name = release_name(number, commit);
        self.next_number = number + 1;
        self.releases.retain(|r| r.name != name);
        self.releases.push(ReleaseRecord {
            name: name.clone(),
            commit: commit.to_string(),
            reference: reference.to_string(),
            created_at: jiff::Timestamp::now().to_string(),
            state: "building".into(),
            snapshot: None,
        });
        name
    }

    fn record_mut(&mut self, name: &str) -> Option<&mut ReleaseRecord> {
        self.releases.iter_mut().find(|r| r.name == name)
    }

    pub fn record(&self, name: &str) -> Option<&ReleaseRecord> {
        self.releases.iter().find(|r| r.name == name)
    }

    /// The release deployed before the current one.
    pub fn previous(&self) -> Option<&str> {
        self.history.len().checked_sub(2).map(|i| self.history[i].as_str())
    }
}

fn load_progress(store: &Store) -> Result<Option<Progress>> {
    load_json_fact(store, FACT_PROGRESS, "reading the update progress")
}

fn save_progress(store: &Store, p: &Progress) -> Result<()> {
    save_json_fact(store, FACT_PROGRESS, p)
}

/// The JSON value of the fact `name` (the progress of an update or a recover), if it is set;
/// `what` names it in the error when it cannot be read.
pub(crate) fn load_json_fact<T: serde::de::DeserializeOwned>(
    store: &Store,
    name: &str,
    what: &'static str,
) -> Result<Option<T>> {
    Ok(match store.fact(name)? {
        Some(s) => Some(serde_json::from_str(&s).context(what)?),
        None => None,
    })
}

/// Sets the fact `name` to `value` as JSON.
pub(crate) fn save_json_fact<T: serde::Serialize>(store: &Store, name: &str, value: &T) -> Result<()> {
    store.set_fact(name, &serde_json::to_string(value)?)?;
    Ok(())
}

/// For the daemon, on start (once its control socket listens): when an update was interrupted
/// (caretaker killed mid-update), start `caretaker update --resume` as a separate process,
/// which finishes the rollback or, if the health gate had passed, finishes forward. A separate
/// process because resuming talks to the daemon over its control socket. Returns whether it
/// started one; then the daemon leaves starting the services to it.
pub fn spawn_resume_if_interrupted(
    allow_world_readable_config: bool,
    config_path: &Path,
    store: &Store,
) -> Result<bool> {
    if load_progress(store)?.is_none() {
        return Ok(false);
    }
    spawn_resume_unless_locked(
        allow_world_readable_config,
        config_path,
        store,
        &["update", "--resume", "--recovery"],
        "starting `caretaker update --resume`",
    )
}

/// Shared by the resumes of `update` and `recover`: unless a process holds the app lock, start
/// caretaker with `args` (after the global `--config`/`--state-dir` options) as a separate
/// process. Returns whether it started one. Progress while a process holds the app lock is a
/// job under way (it may be the one that started this daemon), not an interrupted one.
pub(crate) fn spawn_resume_unless_locked(
    allow_world_readable_config: bool,
    config_path: &Path,
    store: &Store,
    args: &[&str],
    what: &str,
) -> Result<bool> {
    let lock = store.layout().app_lock();
    if matches!(caretaker_state::AppLock::try_acquire(&lock), Err(caretaker_state::LockError::Busy { .. })) {
        return Ok(false);
    }
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--config").arg(std::path::absolute(config_path)?).arg("--state-dir").arg(store.dir());
    if allow_world_readable_config {
        cmd.arg("--allow-world-readable-config");
    }
    cmd.args(args).stdin(std::process::Stdio::null());
    cmd.spawn().context(what.to_string())?;
    Ok(true)
}

/// Debug builds only: SIGKILL caretaker itself when the env var `KILL_HOOK_ENV` names `step`,
/// for the fault-injection tests; release builds ignore it.
#[cfg(debug_assertions)]
pub(crate) fn kill_hook(step: &str) {
    if std::env::var(KILL_HOOK_ENV).is_ok_and(|v| v == step) {
        // SAFETY: plain syscalls.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(not(debug_assertions))]
pub(crate) fn kill_hook(_step: &str) {}

// ---------------------------------------------------------------------------------------------
// git

fn git(args: &[&str], cwd: Option<&Path>) -> Result<String> {
    let mut c = Command::new("git");
    c.args(args).env("GIT_TERMINAL_PROMPT", "0");
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let out = c.output().with_context(|| "running git (is it installed?)")?;
    if !out.status.success() {
        bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The bare repository caching fetched commits.
fn git_cache(state_dir: &Path) -> Result<PathBuf> {
    let dir = caretaker_state::Layout::new(state_dir).cache().join("git");
    if !dir.join("HEAD").exists() {
        std::fs::create_dir_all(&dir)?;
        git(&["init", "--bare", "--quiet"], Some(&dir))?;
    }
    Ok(dir)
}

/// A local path becomes an absolute `file://` URL (so shallow fetches work); URLs stay.
fn source_url(src: &str, config_path: &Path) -> String {
    if src.contains("://") || src.contains('@') {
        return src.to_string();
    }
    let p = Path::new(src);
    let p = if p.is_absolute() { p.to_path_buf() } else { config_path.parent().unwrap_or(Path::new(".")).join(p) };
    format!("file://{}", std::path::absolute(&p).unwrap_or(p).display())
}

/// Fetches `reference` (branch, tag or commit) shallowly into the cache; returns the commit.
fn fetch(cache: &Path, url: &str, reference: &str) -> Result<String> {
    let shallow = git(&["fetch", "--quiet", "--depth", "1", "--no-tags", url, reference], Some(cache));
    if let Err(e) = shallow {
        // Servers that refuse a commit id in a want line: fetch everything, then look it up.
        if git(
            &["fetch", "--quiet", url, "+refs/heads/*:refs/remotes/source/*", "+refs/tags/*:refs/tags/*"],
            Some(cache),
        )
        .is_err()
        {
            return Err(e);
        }
        return git(&["rev-parse", "--verify", &format!("{reference}^{{commit}}")], Some(cache))
            .map_err(|_| anyhow!("{e}"));
    }
    git(&["rev-parse", "FETCH_HEAD^{commit}"], Some(cache))
}

fn has_commit(cache: &Path, commit: &str) -> bool {
    git(&["cat-file", "-e", &format!("{commit}^{{commit}}")], Some(cache)).is_ok()
}

/// Files added between two commits.
fn added_files(cache: &Path, from: &str, to: &str) -> Result<Vec<String>> {
    let out = git(&["diff", "--name-only", "--no-renames", "--diff-filter=A", from, to], Some(cache))?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Writes the tree of `commit` into `dir` (created anew).
fn export(cache: &Path, commit: &str, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let archive = Command::new("git")
        .args(["archive", "--format=tar", commit])
        .current_dir(cache)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running git archive")?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir)
        .stdin(archive.stdout.ok_or_else(|| anyhow!("no pipe from git archive"))?)
        .output()
        .context("running tar")?;
    if !tar.status.success() {
        bail!("unpacking commit {commit}: {}", String::from_utf8_lossy(&tar.stderr).trim());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the update

/// A release `recover` built.
pub struct RecoveredRelease {
    pub name: String,
    pub commit: String,
}

/// The commit the app runs: the current release's (as the release registry records it), else
/// the `HEAD` of a git checkout in the app's working directory. `None` when unknown.
pub fn deployed_commit(store: &Store, config: &Config, config_path: &Path) -> Option<String> {
    let registry = Registry::load(store).ok()?;
    if let Some(c) = current_release(store.dir()).and_then(|n| registry.record(&n).map(|r| r.commit.clone())) {
        return Some(c);
    }
    let dir = crate::appenv::working_dir(&config.app, config_path);
    if !dir.join(".git").exists() {
        return None;
    }
    git(&["rev-parse", "--verify", "HEAD^{commit}"], Some(&dir)).ok().filter(|c| c.len() >= 7)
}

/// What `caretaker update` was asked.
pub struct UpdateRequest {
    pub to: Option<String>,
    pub dry_run: bool,
    pub force: bool,
    pub trigger: Trigger,
}

/// The running command's view of the app.
pub struct Updater<'a> {
    pub global: &'a Global,
    pub config_path: &'a Path,
    pub config: &'a Config,
    pub store: &'a Store,
    pub redactor: &'a Redactor,
}

impl Updater<'_> {
    fn state_dir(&self) -> PathBuf {
        self.store.dir().to_path_buf()
    }

    /// How the app runs (the runtime carries out builds, migrations and clean-up).
    fn runtime(&self) -> Box<dyn crate::runtime::AppRuntime> {
        crate::runtime::for_app(crate::runtime::Placement {
            config: self.config.clone(),
            config_path: self.config_path.to_path_buf(),
            state_dir: self.state_dir(),
            redactor: self.redactor.clone(),
        })
    }

    fn source_reference(&self, to: Option<&str>) -> Result<(String, String)> {
        let Some(src) = &self.config.app.source else {
            return Err(Failure::new(Code::Config, "the config has no app.source")
                .hint("add app: { source: { git: <url or path>, branch: main } }")
                .into());
        };
        let reference = match (to, &src.reference) {
            (Some(r), _) => r.to_string(),
            (None, GitRef::Branch(b)) => b.clone(),
            (None, GitRef::Tag(t)) => t.clone(),
            (None, GitRef::Commit(c)) => c.clone(),
        };
        Ok((source_url(&src.git, self.config_path), reference))
    }

    /// `caretaker update`: plans, prints (dry run) or carries out the update.
    pub fn update(&self, req: &UpdateRequest) -> Result<Code> {
        if let Some(p) = load_progress(self.store)? {
            return Err(Failure::new(
                Code::Busy,
                format!("update job {} to {} was interrupted at step {}", p.job_id, p.to, step_label(&p)),
            )
            .hint("run `caretaker update --resume` to finish it (roll back, or forward if it was already healthy)")
            .into());
        }
        let state_dir = self.state_dir();
        let (url, reference) = self.source_reference(req.to.as_deref())?;
        self.check_release_pointer(&state_dir)?;
        let cache = git_cache(&state_dir)?;
        let target = fetch(&cache, &url, &reference).with_context(|| format!("fetching {reference} from {url}"))?;
        let mut registry = Registry::load(self.store)?;
        let from = current_release(&state_dir);
        let from_commit = from.as_deref().and_then(|f| registry.record(f)).map(|r| r.commit.clone());
        let migrations = match &self.config.update.migrations {
            MigrationDetect::Command(_) => Migrations::AskCommand,
            MigrationDetect::Paths(globs) => match &from_commit {
                None => Migrations::Needed,
                Some(fc) => {
                    if !has_commit(&cache, fc) {
                        let _ = fetch(&cache, &url, fc);
                    }
                    match added_files(&cache, fc, &target) {
                        Ok(added) if migrations_from_added_files(&added, globs) => Migrations::Needed,
                        Ok(_) => Migrations::NotNeeded,
                        // Cannot tell: be safe.
                        Err(_) => Migrations::Needed,
                    }
                }
            },
        };
        // A first deployment onto a database that already holds tables (an existing app
        // adopted) migrates data worth a snapshot; asked only when nothing was deployed yet.
        let (database_has_tables, tables_note) = match (&from, &self.config.database) {
            (None, Some(_)) => self.database_has_tables(),
            _ => (false, None),
        };
        let obs = Observations {
            migrations,
            has_database: self.config.database.is_some(),
            // A compose app always makes its release's images (docs/compose.md).
            has_build: !self.config.app.build.is_empty() || self.runtime().always_builds(),
            has_migrate: !self.config.app.migrate.is_empty(),
            database_has_tables,
            // Maintenance the operator switched on stays on: the update does not touch it.
            maintenance_already_on: self.store.fact(caretaker_core::mode::FACT_MAINTENANCE)?.is_some(),
            force: req.force,
        };
        // A release serves but its commit is unknown (registry lost): still a redeployment,
        // so the database is protected by a snapshot.
        let running = from_commit.clone().or_else(|| from.as_ref().map(|_| String::new()));
        let steps = plan_update(running.as_deref(), &target, &obs);
        let short = &target[..12.min(target.len())];
        if steps.is_empty() {
            println!("already at {reference} ({short}); nothing to do (--force updates anyway)");
            return Ok(Code::Ok);
        }
        if req.dry_run {
            println!(
                "update {} -> {reference} ({short}); migrations: {}",
                from.as_deref().unwrap_or("(nothing deployed)"),
                match migrations {
                    Migrations::Needed => "needed",
                    Migrations::NotNeeded => "none",
                    Migrations::AskCommand => "decided by the detection command",
                }
            );
            if let Some(note) = &tables_note {
                println!("  ({note})");
            }
            for (i, s) in steps.iter().enumerate() {
                println!("  {:>2}. {}", i + 1, s.name());
            }
            if obs.maintenance_already_on {
                println!("  (maintenance mode is on and stays on)");
            }
            return Ok(Code::Ok);
        }
        if req.trigger == Trigger::Schedule && !self.store.mode()?.is_normal() {
            println!("skipped: the app is in maintenance or service mode");
            return Ok(Code::Ok);
        }
        let mut job = self.store.start_job(kind::UPDATE, req.trigger, true)?;
        let name = registry.start_release(&target, &reference);
        registry.save(self.store)?;
        job.log(&format!(
            "update {} -> {name} ({reference}, {target}); plan: {}",
            from.as_deref().unwrap_or("(nothing deployed)"),
            steps.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
        ));
        if let Some(note) = &tables_note {
            job.log(note);
        }
        if obs.maintenance_already_on {
            job.log("maintenance mode was on before the update: it stays on");
        }
        let mut p = Progress {
            job_id: job.id(),
            from,
            from_commit,
            to: name,
            to_commit: target,
            reference,
            plan: steps,
            next: 0,
            snapshot: None,
            migrations_needed: match migrations {
                Migrations::Needed => Some(true),
                Migrations::NotNeeded => Some(false),
                Migrations::AskCommand => None,
            },
            phase: Phase::Forward,
            rollback_done: 0,
        };
        self.drive(&mut p, &mut job, Resume::Forward { next: 0 }).map(|(code, outcome, figures, error)| {
            let _ = job.finish(outcome, figures, error.as_deref());
            code
        })
    }

    /// `caretaker update --resume`: finishes an interrupted update.
    pub fn resume(&self, trigger: Trigger) -> Result<Code> {
        let mut job = self.store.start_job(kind::UPDATE, trigger, true)?;
        // Read under the lock: a concurrent resume may just have finished it.
        let Some(mut p) = load_progress(self.store)? else {
            println!("no interrupted update to resume");
            job.finish(
                Outcome::Succeeded,
                UpdateFigures { resumed: Some(false), ..Default::default() }.to_json(),
                None,
            )?;
            return Ok(Code::Ok);
        };
        job.log(&format!("resuming update job {} to {} at step {}", p.job_id, p.to, step_label(&p)));
        println!("resuming update job {} to {} (stopped at {})", p.job_id, p.to, step_label(&p));
        p.job_id = job.id();
        let how = plan::resume(&p);
        if let (Resume::RollBack { .. }, Phase::Forward) = (&how, &p.phase) {
            let step = step_label(&p);
            p.phase = Phase::RollingBack { step: step.clone(), reason: "caretaker was interrupted".into() };
            save_progress(self.store, &p)?;
        }
        let (code, outcome, figures, error) = self.drive(&mut p, &mut job, how)?;
        job.finish(outcome, figures, error.as_deref())?;
        Ok(code)
    }

    /// Runs forward from `how`, rolling back on failure. Returns the exit code and what to
    /// record; the progress fact is cleared when done.
    fn drive(
        &self,
        p: &mut Progress,
        job: &mut JobHandle<'_>,
        how: Resume,
    ) -> Result<(Code, Outcome, serde_json::Value, Option<String>)> {
        let started = std::time::Instant::now();
        if let Resume::Forward { next } = how {
            p.next = next;
            while let Some(step) = p.current_step() {
                save_progress(self.store, p)?;
                kill_hook(step.name());
                job.log(&format!("step {}: {}", p.next + 1, step.name()));
                println!("  {}", step.name());
                match self.forward_step(step, p, job) {
                    Ok(()) => p.next += 1,
                    Err(e) => {
                        let reason = format!("{e:#}");
                        job.log(&format!("step {} failed: {reason}", step.name()));
                        eprintln!("step {} failed: {reason}", step.name());
                        if p.health_passed() {
                            // The new release serves and is healthy: nothing to undo.
                            self.store.clear_fact(FACT_PROGRESS)?;
                            return Ok((
                                Code::Failure,
                                Outcome::Failed,
                                UpdateFigures {
                                    release: Some(p.to.clone()),
                                    failed_step: Some(step.name().into()),
                                    ..Default::default()
                                }
                                .to_json(),
                                Some(format!("step {} failed after the health gate: {reason}", step.name())),
                            ));
                        }
                        p.phase = Phase::RollingBack { step: step.name().into(), reason };
                        p.rollback_done = 0;
                        save_progress(self.store, p)?;
                        break;
                    }
                }
            }
            if p.phase == Phase::Forward {
                self.store.clear_fact(FACT_PROGRESS)?;
                // (mode-supervisor) A successful update ends service mode (docs/maintenance.md).
                if let Some(was) = crate::appmode::clear_failed_after(self.store, self.config, "update")? {
                    println!("service mode cleared: the update succeeded (was: {})", was.reason);
                }
                println!("updated to {} ({}) in {:.1}s", p.to, p.reference, started.elapsed().as_secs_f64());
                if !p.plan.contains(&Step::MaintenanceOn) {
                    println!(
                        "maintenance mode was on before the update and stays on (`caretaker maintenance off` ends it)"
                    );
                }
                job.log(&format!("updated to {}", p.to));
                return Ok((
                    Code::Ok,
                    Outcome::Succeeded,
                    UpdateFigures {
                        release: Some(p.to.clone()),
                        commit: Some(p.to_commit.clone()),
                        migrations: p.migrations_needed,
                        snapshot: p.snapshot.clone(),
                        seconds: Some(started.elapsed().as_secs_f64()),
                        ..Default::default()
                    }
                    .to_json(),
                    None,
                ));
            }
        }
        // Rolling back.
        let Phase::RollingBack { step: failed_step, reason } = p.phase.clone() else { unreachable!() };
        let steps = plan_rollback(p);
        let rb_started = std::time::Instant::now();
        job.log(&format!("rolling back: {}", steps.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")));
        let mut rollback_error = None;
        while p.rollback_done < steps.len() {
            let s = steps[p.rollback_done];
            save_progress(self.store, p)?;
            kill_hook(&format!("rollback.{}", s.name()));
            job.log(&format!("rollback step: {}", s.name()));
            println!("  rollback: {}", s.name());
            if let Err(e) = self.rollback_step(s, p, job) {
                let msg = format!("{e:#}");
                job.log(&format!("rollback step {} failed: {msg}", s.name()));
                rollback_error = Some(format!("{}: {msg}", s.name()));
                break;
            }
            p.rollback_done += 1;
        }
        if p.from.is_none() && p.reached(Step::Switch) && rollback_error.is_none() {
            // A failed first deployment: nothing is current.
            let _ = std::fs::remove_file(current_link(&self.state_dir()));
        }
        let mut registry = Registry::load(self.store)?;
        if let Some(r) = registry.record_mut(&p.to) {
            r.state = "failed".into();
        }
        registry.save(self.store)?;
        let figures = UpdateFigures {
            release: Some(p.to.clone()),
            failed_step: Some(failed_step.to_string()),
            rolled_back_to: p.from.clone(),
            database_reverted: Some(p.snapshot.is_some()),
            rollback_seconds: Some(rb_started.elapsed().as_secs_f64()),
            ..Default::default()
        }
        .to_json();
        let log_hint = format!("the job log: caretaker jobs show {}", job.id());
        self.store.clear_fact(FACT_PROGRESS)?;
        if let Some(err) = rollback_error {
            let why = format!("update to {} failed at {failed_step} ({reason}) and the rollback failed at {err}", p.to);
            let _ = crate::appmode::set_failed(self.store, self.config, &why);
            let _ = self.store.record_event("update_failed", &self.config.app.name, &why);
            eprintln!("{why}; the app is in service mode\n  {log_hint}");
            return Ok((Code::Failure, Outcome::Failed, figures, Some(why)));
        }
        // What the failure left behind, from the steps that ran (never "nothing was changed"
        // after a step that can change data).
        let consequence = failure_consequence(p);
        if p.from.is_none() || !p.reached(Step::Stop) {
            let why = format!("update to {} failed at {failed_step}: {reason}", p.to);
            let _ = self.store.record_event("update_failed", &self.config.app.name, &format!("{why}; {consequence}"));
            job.log(&consequence);
            eprintln!("{why}\n  {consequence}\n  {log_hint}");
            return Ok((Code::Failure, Outcome::Failed, figures, Some(why)));
        }
        let why = format!(
            "update to {} failed at {failed_step} ({reason}); rolled back to {}{}",
            p.to,
            p.from.as_deref().unwrap_or("-"),
            if p.snapshot.is_some() { " and the database snapshot" } else { "" }
        );
        let _ = self.store.record_event("update_rolled_back", &self.config.app.name, &why);
        job.log(&consequence);
        eprintln!("{why}\n  {consequence}\n  {log_hint}");
        Ok((Code::RolledBack, Outcome::RolledBack, figures, Some(why)))
    }

    /// Builds the release exported into `release` (directory name `name`): `app.build` in it,
    /// and for a compose app its images under the release's tags. The one build of `update`
    /// and `recover`.
    pub fn build(&self, release: &Path, name: &str, job: &mut JobHandle<'_>) -> Result<()> {
        self.runtime().build_release(release, name, &mut |l| job.log(l))
    }

    /// For `recover`: fetches `reference` from the source, exports and builds a new release
    /// exactly as `update` does (no services run, nothing to stop or roll back), points
    /// `current` at it and records it as deployed. Releases whose directories are gone are
    /// forgotten. A failed build leaves `current` as it was.
    pub fn deploy_for_recover(&self, reference: &str, job: &mut JobHandle<'_>) -> Result<RecoveredRelease> {
        let state_dir = self.state_dir();
        let (url, _) = self.source_reference(Some(reference))?;
        let cache = git_cache(&state_dir)?;
        let commit = fetch(&cache, &url, reference)
            .with_context(|| format!("fetching {reference} from {url}"))
            .map_err(|e| {
                Failure::new(Code::Failure, format!("{e:#}"))
                    .hint("is the source reachable, and does it still have this commit? `--ref REF` deploys another")
            })?;
        job.log(&format!("fetched {reference}: commit {commit}"));
        let mut registry = Registry::load(self.store)?;
        let dir = releases_dir(&state_dir);
        registry.releases.retain(|r| dir.join(&r.name).is_dir());
        registry.history.retain(|n| dir.join(n).is_dir());
        let name = registry.start_release(&commit, reference);
        registry.save(self.store)?;
        let release = dir.join(&name);
        let built = export(&cache, &commit, &release).and_then(|()| self.build(&release, &name, job));
        if let Err(e) = built {
            if let Some(r) = registry.record_mut(&name) {
                r.state = "failed".into();
            }
            registry.save(self.store)?;
            return Err(e.context(format!("building release {name}")));
        }
        switch_current(&state_dir, &name)?;
        if let Some(r) = registry.record_mut(&name) {
            r.state = "deployed".into();
        }
        registry.history.push(name.clone());
        registry.save(self.store)?;
        job.log(&format!("release {name} built; current -> {name}"));
        Ok(RecoveredRelease { name, commit })
    }

    fn forward_step(&self, step: Step, p: &mut Progress, job: &mut JobHandle<'_>) -> Result<()> {
        let state_dir = self.state_dir();
        let release = releases_dir(&state_dir).join(&p.to);
        match step {
            Step::Fetch => export(&git_cache(&state_dir)?, &p.to_commit, &release),
            Step::Build => self.build(&release, &p.to, job),
            Step::DetectMigrations => {
                let MigrationDetect::Command(c) = &self.config.update.migrations else {
                    p.migrations_needed = Some(true);
                    return Ok(());
                };
                let limit = crate::runtime::ONE_OFF_TIMEOUT;
                let ended = self.runtime().run_one_off(&release, c, "detect", limit, &mut |l| job.log(l))?;
                p.migrations_needed = Some(!ended.success());
                job.log(&format!("migrations needed: {}", !ended.success()));
                Ok(())
            }
            Step::MaintenanceOn => crate::appmode::maintenance_on(self.store, self.config, None, "update").map(|_| ()),
            Step::Stop => {
                request(&state_dir, &Request::StopApp, self.stop_timeout())?;
                Ok(())
            }
            Step::Snapshot => {
                if p.migrations_needed == Some(false) {
                    job.log("no migrations: no snapshot");
                    return Ok(());
                }
                let db = self.database()?;
                let t = std::time::Instant::now();
                let snap = db.snapshot(Some("pre-update"))?;
                job.log(&format!("snapshot {} in {:.2}s", snap.name, t.elapsed().as_secs_f64()));
                p.snapshot = Some(snap.name);
                save_progress(self.store, p)
            }
            Step::Switch => switch_current(&state_dir, &p.to),
            Step::Migrate => self.runtime().migrate(&release, &mut |l| job.log(l)),
            Step::Start => self.start_services(),
            Step::HealthGate => {
                let report = wait_until_up(&state_dir, None, self.config.update.health_timeout)?;
                // Healthy is not enough: the services must run the new release's code.
                self.verify_release(&report, &release, job)
            }
            Step::MaintenanceOff => crate::appmode::maintenance_off(self.store, self.config, "update").map(|_| ()),
            Step::Finish => self.finish(p, job),
        }
    }

    fn rollback_step(&self, s: RollbackStep, p: &Progress, job: &mut JobHandle<'_>) -> Result<()> {
        let state_dir = self.state_dir();
        match s {
            RollbackStep::StopNew => {
                request(&state_dir, &Request::StopApp, self.stop_timeout())?;
                self.runtime().remove_one_offs(&mut |l| job.log(l))
            }
            RollbackStep::RevertDatabase => {
                let name = p.snapshot.as_deref().expect("planned only with a snapshot");
                let db = self.database()?;
                let t = std::time::Instant::now();
                let Some(snap) = db.list_snapshots()?.into_iter().find(|s| s.name == name) else {
                    // A crash right after a revert consumed it: the live database is the snapshot.
                    job.log(&format!("snapshot {name} is gone: already reverted"));
                    return Ok(());
                };
                let aside = db.revert(&snap)?;
                job.log(&format!("reverted the database to {name} in {:.3}s", t.elapsed().as_secs_f64()));
                // The failed state is the snapshot's data plus the failed migration, served to
                // nobody (the app was stopped, then in maintenance mode): not kept, or every
                // rolled-back update would leave a copy (docs/databases.md).
                match db.list_snapshots().map(|all| all.into_iter().find(|c| c.name == aside)) {
                    Ok(Some(c)) => match db.drop_snapshot(&c) {
                        Ok(()) => job.log(&format!("dropped the failed state {aside}")),
                        Err(e) => job.log(&format!("the failed state is kept as {aside}: dropping it failed: {e}")),
                    },
                    Ok(None) => {}
                    Err(e) => job.log(&format!("the failed state is kept as {aside}: {e}")),
                }
                Ok(())
            }
            RollbackStep::SwitchBack => {
                switch_current(&state_dir, p.from.as_deref().expect("planned only with a previous release"))
            }
            RollbackStep::StartOld => self.start_services(),
            RollbackStep::VerifyOld => wait_until_up(&state_dir, None, self.config.update.health_timeout).map(|_| ()),
            RollbackStep::MaintenanceOff => {
                crate::appmode::maintenance_off(self.store, self.config, "update").map(|_| ())
            }
        }
    }

    /// Refuses an update whose services would not run the releases it deploys (`app.working_dir`
    /// not the release pointer `<state dir>/current`): it would migrate the database for code
    /// that never serves. The same check as `caretaker config check`.
    fn check_release_pointer(&self, state_dir: &Path) -> Result<()> {
        let text = std::fs::read_to_string(self.config_path).unwrap_or_default();
        let cwd = std::env::current_dir().unwrap_or_default();
        let problems =
            caretaker_core::config::release_pointer_problems(self.config, &text, self.config_path, state_dir, &cwd);
        let Some(first) = problems.first() else { return Ok(()) };
        let more = match problems.len() {
            1 => String::new(),
            n => format!(" (and {} more: `caretaker config check` lists them)", n - 1),
        };
        let mut f = Failure::new(Code::Config, format!("{}: {}{more}", self.config_path.display(), first.message));
        if let Some(h) = &first.hint {
            f = f.hint(h.clone());
        }
        Err(f.into())
    }

    /// Whether the database holds tables, for a first deployment (and a note for the log when
    /// that could not be found out). Unknown counts as yes — a snapshot too many costs
    /// seconds, one too few the data — except for a database in a compose service, which does
    /// not run before the project's first start.
    fn database_has_tables(&self) -> (bool, Option<String>) {
        let contents = self.database().and_then(|db| Ok(db.contents()?));
        match contents {
            Ok(c) if c.exists && !c.is_blank() => (
                true,
                Some(format!(
                    "the database already holds {} table{}: the first deployment takes a snapshot before migrating",
                    c.tables.len(),
                    if c.tables.len() == 1 { "" } else { "s" }
                )),
            ),
            Ok(_) => (false, None),
            Err(e) if self.runtime().database_service().is_some() => {
                (false, Some(format!("the database service does not run yet ({e:#}): no snapshot before migrating")))
            }
            Err(e) => (
                true,
                Some(format!(
                    "could not tell whether the database holds tables ({e:#}): a snapshot is planned to be safe"
                )),
            ),
        }
    }

    /// After the health gate: the services run the new release (the runtime says how it
    /// knows: a process's working directory, a container's pinned image).
    fn verify_release(&self, report: &StatusReport, release: &Path, job: &mut JobHandle<'_>) -> Result<()> {
        self.runtime().verify_release(report, release, &mut |l| job.log(l))
    }

    fn stop_timeout(&self) -> Duration {
        self.config.stop_timeout_total() + Duration::from_secs(30)
    }

    fn start_services(&self) -> Result<()> {
        let state_dir = self.state_dir();
        if request(&state_dir, &Request::Up, Duration::from_secs(10))?.is_none() {
            start_background_daemon(self.global, self.config_path, &state_dir)?;
        }
        Ok(())
    }

    fn database(&self) -> Result<Box<dyn caretaker_db::Database>> {
        self.config.database.as_ref().ok_or_else(|| anyhow!("no database configured"))?;
        Ok(self.runtime().open_database()?)
    }

    /// Records the release as deployed, schedules its snapshot's removal, drops expired
    /// snapshots and prunes old release directories.
    fn finish(&self, p: &Progress, job: &mut JobHandle<'_>) -> Result<()> {
        let state_dir = self.state_dir();
        let mut registry = Registry::load(self.store)?;
        let now = jiff::Timestamp::now().as_second();
        if let Some(r) = registry.record_mut(&p.to) {
            r.state = "deployed".into();
            r.snapshot = p.snapshot.clone();
        }
        if registry.history.last() != Some(&p.to) {
            registry.history.push(p.to.clone());
        }
        if let Some(s) = &p.snapshot {
            if !registry.expiring_snapshots.iter().any(|(n, _)| n == s) {
                registry.expiring_snapshots.push((s.clone(), now + self.config.update.snapshot_keep.as_secs() as i64));
            }
        }
        // Expired snapshots.
        let (expired, kept): (Vec<_>, Vec<_>) = registry.expiring_snapshots.drain(..).partition(|(_, t)| *t <= now);
        registry.expiring_snapshots = kept;
        if !expired.is_empty() {
            if let Ok(db) = self.database() {
                let all = db.list_snapshots().unwrap_or_default();
                for (name, _) in expired {
                    if let Some(s) = all.iter().find(|s| s.name == name) {
                        match db.drop_snapshot(s) {
                            Ok(()) => job.log(&format!("dropped expired snapshot {name}")),
                            Err(e) => job.log(&format!("could not drop snapshot {name}: {e}")),
                        }
                    }
                }
            }
        }
        // Old releases.
        let names: Vec<String> = std::fs::read_dir(releases_dir(&state_dir))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        let remove = releases_to_remove(
            &names,
            self.config.update.keep_releases as usize,
            &registry.history,
            Some(&p.to),
            registry.previous(),
        );
        for r in &remove {
            job.log(&format!("removing old release {r}"));
            let _ = std::fs::remove_dir_all(releases_dir(&state_dir).join(r));
            registry.releases.retain(|x| &x.name != r);
            registry.history.retain(|x| x != r);
        }
        // What the runtime keeps per release (a compose app's images) of releases that are gone.
        let keep: Vec<String> = names.iter().filter(|n| !remove.contains(n)).cloned().collect();
        if let Err(e) = self.runtime().clean_up(&keep, &mut |l| job.log(l)) {
            job.log(&format!("cleaning up after the update: {e:#}"));
        }
        registry.save(self.store)
    }

    /// `caretaker rollback`: back to the release deployed before the current one, code only.
    pub fn rollback(&self) -> Result<Code> {
        if load_progress(self.store)?.is_some() {
            return Err(Failure::new(Code::Busy, "an update was interrupted")
                .hint("run `caretaker update --resume` first")
                .into());
        }
        let mut job = self.store.start_job(kind::ROLLBACK, Trigger::Cli, true)?;
        let state_dir = self.state_dir();
        let mut registry = Registry::load(self.store)?;
        let current = current_release(&state_dir);
        let Some(prev) = registry.previous().map(str::to_string) else {
            job.finish(Outcome::Refused, serde_json::json!({}), Some("no previous release"))?;
            return Err(Failure::new(Code::Refused, "there is no previous release to roll back to").into());
        };
        if !releases_dir(&state_dir).join(&prev).is_dir() {
            job.finish(Outcome::Refused, serde_json::json!({}), Some("previous release directory missing"))?;
            return Err(Failure::new(Code::Refused, format!("the previous release {prev} was removed")).into());
        }
        job.log(&format!("rollback {} -> {prev} (code only)", current.as_deref().unwrap_or("-")));
        // Maintenance the operator switched on stays on, as with `update`.
        let maintenance_was_on = self.store.fact(caretaker_core::mode::FACT_MAINTENANCE)?.is_some();
        let maintenance_off = || -> Result<()> {
            if maintenance_was_on {
                return Ok(());
            }
            crate::appmode::maintenance_off(self.store, self.config, "rollback").map(|_| ())
        };
        let attempt = (|| -> Result<()> {
            if !maintenance_was_on {
                crate::appmode::maintenance_on(self.store, self.config, None, "rollback")?;
            }
            request(&state_dir, &Request::StopApp, self.stop_timeout())?;
            switch_current(&state_dir, &prev)?;
            self.start_services()?;
            let report = wait_until_up(&state_dir, None, self.config.update.health_timeout)?;
            self.verify_release(&report, &releases_dir(&state_dir).join(&prev), &mut job)?;
            Ok(())
        })();
        if let Err(e) = attempt {
            let why = format!("rollback to {prev} failed: {e:#}");
            job.log(&why);
            // Back to what served before.
            let back = (|| -> Result<()> {
                let cur = current.as_deref().ok_or_else(|| anyhow!("nothing was current"))?;
                request(&state_dir, &Request::StopApp, self.stop_timeout())?;
                switch_current(&state_dir, cur)?;
                self.start_services()?;
                wait_until_up(&state_dir, None, self.config.update.health_timeout)?;
                Ok(())
            })();
            match back {
                Ok(()) => {
                    maintenance_off()?;
                    job.finish(
                        Outcome::RolledBack,
                        UpdateFigures { release: current.clone(), ..Default::default() }.to_json(),
                        Some(&why),
                    )?;
                    return Err(Failure::new(
                        Code::RolledBack,
                        format!("{why}; {} serves again", current.unwrap_or_default()),
                    )
                    .into());
                }
                Err(e2) => {
                    let why = format!("{why}; returning to the current release failed too: {e2:#}");
                    let _ = crate::appmode::set_failed(self.store, self.config, &why);
                    job.finish(Outcome::Failed, serde_json::json!({}), Some(&why))?;
                    return Err(Failure::new(Code::Failure, why).into());
                }
            }
        }
        maintenance_off()?;
        if let Some(cur) = &current {
            if let Some(r) = registry.record_mut(cur) {
                r.state = "rolled_back".into();
            }
        }
        registry.history.pop();
        registry.save(self.store)?;
        let _ = self.store.record_event("rollback", &self.config.app.name, &format!("rolled back to {prev}"));
        job.finish(
            Outcome::Succeeded,
            UpdateFigures { release: Some(prev.to_string()), from: current.clone(), ..Default::default() }.to_json(),
            None,
        )?;
        println!("rolled back to {prev} (code only; the database was not changed)");
        if maintenance_was_on {
            println!("maintenance mode was on before the rollback and stays on (`caretaker maintenance off` ends it)");
        }
        Ok(Code::Ok)
    }
}

fn step_label(p: &Progress) -> String {
    match &p.phase {
        Phase::Forward => p.current_step().map(|s| s.name().to_string()).unwrap_or_else(|| "end".into()),
        Phase::RollingBack { step, .. } => format!("rollback after {step}"),
    }
}

/// An update that was interrupted (its progress is stored) is finished before `up` starts
/// anything: by the `update --resume` a new daemon starts, or one started here when a daemon
/// already runs. Waits for it and reports how it ended. `Ok(false)`: no interrupted update.
pub fn finish_interrupted_update(global: &Global, app: &crate::context::AppContext) -> Result<bool> {
    let store = &app.store;
    let Some(progress) = store.fact(FACT_PROGRESS)? else { return Ok(false) };
    let job = serde_json::from_str::<serde_json::Value>(&progress).ok().and_then(|v| v["job_id"].as_i64());
    let state_dir = store.dir();
    if crate::control::status(state_dir)?.is_none() {
        // A new daemon starts the resume itself (and no services before it ends).
        crate::control::start_background_daemon(global, &app.config_path, state_dir)?;
    } else {
        spawn_resume_if_interrupted(global.allow_world_readable_config, &app.config_path, store)?;
    }
    let label = job.map(|j| format!("job {j}")).unwrap_or_else(|| "job".into());
    eprintln!("resuming interrupted update {label}: waiting for it to finish (`caretaker jobs` shows it)");
    let started = Instant::now();
    let mut idle_since: Option<Instant> = None;
    let lock = store.layout().app_lock();
    while store.fact(FACT_PROGRESS)?.is_some() {
        // The resume holds the app lock while it works; progress without a holder for a while
        // (after the resume had time to start) means it ended without finishing.
        if crate::control::lock_is_held(&lock) {
            idle_since = None;
        } else if started.elapsed() > Duration::from_secs(10) {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(3) {
                return Err(Failure::new(Code::Failure, format!("the interrupted update {label} was not finished"))
                    .hint("run `caretaker update --resume`; its output says why")
                    .into());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The progress is cleared just before the job's record is finished: wait for the record
    // (the resume holds the app lock until then).
    let newest = || store.jobs(Some(caretaker_core::job::kind::UPDATE), 1).map(|j| j.into_iter().next());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = newest()?;
    while last.as_ref().is_some_and(|j| j.outcome == caretaker_core::job::Outcome::Running)
        && Instant::now() < deadline
        && crate::control::lock_is_held(&lock)
    {
        std::thread::sleep(Duration::from_millis(100));
        last = newest()?;
    }
    if let Some(j) = newest()? {
        let why = j.error.map(|e| format!(": {e}")).unwrap_or_default();
        eprintln!("update job {} (resuming {label}) ended: {}{why}", j.id, j.outcome.as_str());
    }
    Ok(true)
}
