//! `caretaker clone create|list|destroy|exec|logs`: staging clones of a process app
//! (docs/clones.md). A clone is the app run by the same runtime — its own caretaker daemon
//! supervising its services — with other ports, a copy of the database and copies of the file
//! trees, all decided by `core::clone`; this module carries it out.
//!
//! Everything a clone owns is found from its record, `<state dir>/clones/<name>/clone.json`,
//! written (atomically) before each step: the database copy is also found by its name
//! (`db::naming`, kind `clone`, labelled with the clone's name), the processes by the clone's
//! own state directory (its daemon lock and `services.json`). So an interrupted create or
//! destroy — a SIGKILL included — is finished by the next sweep, which the daemon runs at its
//! start and every few seconds (destroying the clones whose time is up).
//!
//! [`create`] and [`destroy`] are the entry points other flows (a rehearsed update, a restore
//! drill) reuse: a clone from a given source, returned as a [`CloneHandle`].

use crate::cli::{CloneCommand, CloneCreateArgs, Global};
use crate::clonecfg::{plan_of, read_record, CLONE_DIR_ENV, RECORD};
use crate::context::{open_app, AppContext};
use crate::exit::{Code, Failure};
use anyhow::{Context, Result};
use caretaker_core::clone::{self as plan, CloneRecord, Phase, Pid, SweepAction};
use caretaker_core::config::{Config, DbKind, Redactor};
use caretaker_core::duration::{format_duration, parse_duration};
use caretaker_core::job::Outcome;
use caretaker_db::CopyKind;
use caretaker_state::{AppLock, Layout, LockError, ProcessIdentity};
use jiff::Timestamp;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a clone comes from. Only `live` for now (a backup snapshot comes with restore drills).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloneSource {
    Live,
}

/// What to create.
#[derive(Clone, Debug)]
pub struct CloneRequest {
    pub name: Option<String>,
    pub source: CloneSource,
    pub ttl: Option<Duration>,
}

/// A created, running clone.
#[derive(Clone, Debug)]
pub struct CloneHandle {
    pub record: CloneRecord,
    /// `<state dir>/clones/<name>`.
    pub dir: PathBuf,
    /// The clone's own state directory (its daemon's).
    pub state_dir: PathBuf,
    /// The clone's config, as its daemon runs it.
    #[allow(dead_code)] // for the flows that boot a clone and check it (rehearsals, drills)
    pub config: Config,
}

pub fn run(global: &Global, cmd: &CloneCommand) -> Result<Code> {
    let app = open_app(global)?;
    match cmd {
        CloneCommand::Create(a) => create_cmd(global, &app, a),
        CloneCommand::List { json } => list_cmd(&app, *json),
        CloneCommand::Destroy { name } => {
            let layout = Layout::new(app.store.dir());
            let _lock = clones_lock(&layout)?;
            if !layout.clone_dir(name).exists() {
                return Err(Failure::new(Code::Config, format!("no clone named `{name}`"))
                    .hint("`caretaker clone list` shows the clones")
                    .into());
            }
            let mut job = app.store.start_job(caretaker_core::job::kind::CLONE, crate::context::trigger(), false)?;
            job.log(&format!("clone destroy {name}"));
            match destroy(&app.config, &app.redactor, app.store.dir(), name) {
                Ok(lines) => {
                    for line in &lines {
                        job.log(line);
                        println!("{line}");
                    }
                    job.finish(Outcome::Succeeded, serde_json::json!({ "action": "destroy", "name": name }), None)?;
                    println!("clone {name} destroyed");
                    Ok(Code::Ok)
                }
                Err(e) => {
                    job.log(&format!("failed: {e:#}"));
                    job.finish(Outcome::Failed, serde_json::json!({ "action": "destroy" }), Some(&format!("{e:#}")))?;
                    Err(e)
                }
            }
        }
        CloneCommand::Exec { name, command } => {
            let mut args: Vec<std::ffi::OsString> = vec!["exec".into(), "--".into()];
            args.extend(command.iter().cloned());
            rerun_as_clone(global, &app, name, args)
        }
        CloneCommand::Logs { name, service, follow, lines } => {
            let mut args: Vec<std::ffi::OsString> = vec!["logs".into(), "-n".into(), lines.to_string().into()];
            if *follow {
                args.push("-f".into());
            }
            args.extend(service.iter().map(Into::into));
            rerun_as_clone(global, &app, name, args)
        }
    }
}

fn create_cmd(global: &Global, app: &AppContext, a: &CloneCreateArgs) -> Result<Code> {
    let source = match a.from.as_str() {
        "live" => CloneSource::Live,
        other => {
            return Err(Failure::new(Code::Config, format!("--from {other}: only `live` is supported"))
                .hint("clones from backup snapshots come with restore drills (docs/clones.md)")
                .into())
        }
    };
    let ttl = match &a.ttl {
        Some(t) => {
            Some(parse_duration(t).map_err(|e| Failure::new(Code::Config, format!("--ttl {t}: {}", e.message)))?)
        }
        None => None,
    };
    // Recorded as a job, holding the app lock like `db snapshot`: the database copy ends the
    // app's sessions for a moment, which must not hit an update's migration.
    let mut job = app.store.start_job(caretaker_core::job::kind::CLONE, crate::context::trigger(), true)?;
    job.log(&format!("clone create {} from {}", a.name.as_deref().unwrap_or("(next free name)"), a.from));
    let handle = match create(global, app, &CloneRequest { name: a.name.clone(), source, ttl }) {
        Ok(h) => {
            job.log(&format!("clone {} running, expires at {}", h.record.name, h.record.expires_at));
            let figures = serde_json::json!({
                "action": "create",
                "name": h.record.name,
                "database": h.record.database,
                "disk_bytes": h.record.disk_bytes,
            });
            job.finish(Outcome::Succeeded, figures, None)?;
            h
        }
        Err(e) => {
            let refused = e.downcast_ref::<Failure>().is_some_and(|f| f.code == Code::Refused);
            job.log(&format!("failed: {e:#}"));
            let outcome = if refused { Outcome::Refused } else { Outcome::Failed };
            job.finish(outcome, serde_json::json!({ "action": "create" }), Some(&format!("{e:#}")))?;
            return Err(e);
        }
    };
    let now = Timestamp::now();
    if a.json {
        let mut v = record_json(&handle.record, &app.config, now);
        v["dir"] = handle.dir.display().to_string().into();
        v["state_dir"] = handle.state_dir.display().to_string().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let r = &handle.record;
        let url = r.web_port(&app.config).map(|p| format!(" on http://127.0.0.1:{p}")).unwrap_or_default();
        println!(
            "clone {} is up{url}; it is destroyed in {} (at {})",
            r.name,
            format_duration(round_secs(r.time_left(now))),
            r.expires_at
        );
    }
    Ok(Code::Ok)
}

fn list_cmd(app: &AppContext, json: bool) -> Result<Code> {
    let records = load_records(&Layout::new(app.store.dir()));
    let now = Timestamp::now();
    if json {
        let v: Vec<_> = records.iter().map(|r| record_json(r, &app.config, now)).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Code::Ok);
    }
    if records.is_empty() {
        println!("no clones");
        return Ok(Code::Ok);
    }
    println!("{:<24} {:<10} {:<12} {:<7} DATABASE", "NAME", "PHASE", "TIME LEFT", "PORT");
    for r in &records {
        println!(
            "{:<24} {:<10} {:<12} {:<7} {}",
            r.name,
            phase_word(r.phase),
            format_duration(round_secs(r.time_left(now))),
            r.web_port(&app.config).map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            r.database.as_deref().unwrap_or("-")
        );
    }
    Ok(Code::Ok)
}

fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Creating => "creating",
        Phase::Running => "running",
        Phase::Destroying => "destroying",
    }
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

fn record_json(r: &CloneRecord, cfg: &Config, now: Timestamp) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("a record serializes");
    v["time_left_seconds"] = r.time_left(now).as_secs().into();
    v["web_port"] = r.web_port(cfg).into();
    v
}

/// Runs this caretaker again as the clone `name` (its config, its state directory).
fn rerun_as_clone(global: &Global, app: &AppContext, name: &str, args: Vec<std::ffi::OsString>) -> Result<Code> {
    let dir = Layout::new(app.store.dir()).clone_dir(name);
    let rec = read_record(&dir).ok_or_else(|| {
        Failure::new(Code::Config, format!("no clone named `{name}`")).hint("`caretaker clone list` shows the clones")
    })?;
    let exe = std::env::current_exe().context("finding caretaker's own executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config").arg(std::path::absolute(&app.config_path)?).arg("--state-dir").arg(dir.join("state"));
    if global.allow_world_readable_config {
        cmd.arg("--allow-world-readable-config");
    }
    cmd.args(args).env(CLONE_DIR_ENV, &dir);
    // Replaces this process: the command owns the terminal and its exit status is ours.
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    Err(anyhow::Error::new(err).context(format!("running a command in clone {}", rec.name)))
}

/// Creates a clone of the app from `req.source` and starts it; returns once its services are
/// healthy. On any failure everything made so far is destroyed again.
pub fn create(global: &Global, app: &AppContext, req: &CloneRequest) -> Result<CloneHandle> {
    let cfg = &app.config;
    let refuse = |m: String| -> anyhow::Error { Failure::new(Code::Config, m).into() };
    if let Err(why) = app.runtime().can_clone() {
        return Err(Failure::new(Code::Config, why).hint("docs/clones.md lists what clones support").into());
    }
    if std::env::var_os(CLONE_DIR_ENV).is_some() {
        return Err(refuse("a clone cannot be cloned".into()));
    }
    let CloneSource::Live = req.source;
    let ttl = plan::choose_ttl(cfg, req.ttl).map_err(|m| Failure::new(Code::Refused, m))?;
    let state = app.store.dir().to_path_buf();
    let layout = Layout::new(&state);
    std::fs::create_dir_all(layout.clones()).with_context(|| format!("creating {}", layout.clones().display()))?;
    set_mode(&layout.clones(), 0o700)?;
    let _lock = clones_lock(&layout)?;
    let existing = load_records(&layout);
    let names: Vec<String> = existing.iter().map(|r| r.name.clone()).collect();
    let name = match &req.name {
        Some(n) => {
            plan::validate_name(n).map_err(refuse)?;
            n.clone()
        }
        None => plan::next_name(&names),
    };
    let dir = layout.clone_dir(&name);
    if dir.exists() {
        return Err(Failure::new(Code::Config, format!("a clone named `{name}` exists already"))
            .hint(format!("pick another name, or `caretaker clone destroy {name}` first"))
            .into());
    }
    let db = match &cfg.database {
        Some(d) => Some(caretaker_db::open(d, &app.redactor)?),
        None => None,
    };
    let mut estimate = match &db {
        Some(d) => d.size()?,
        None => 0,
    };
    for t in &cfg.files {
        estimate = estimate.saturating_add(tree_size(&t.path));
    }
    plan::check_limits(cfg, &existing, estimate).map_err(|m| Failure::new(Code::Refused, m))?;
    let taken: BTreeSet<u16> = existing.iter().flat_map(|r| r.ports.values().copied()).collect();
    let ports = free_ports(cfg, &taken).map_err(refuse)?;

    // The record first: from here on, a crash leaves something the sweep finds and removes.
    let now = Timestamp::now();
    let expires_at = now
        .checked_add(jiff::SignedDuration::try_from(ttl).context("the TTL")?)
        .map_err(|e| refuse(format!("the TTL: {e}")))?;
    let me = ProcessIdentity::current();
    let mut rec = CloneRecord {
        name: name.clone(),
        phase: Phase::Creating,
        source: "live".into(),
        created_at: now,
        expires_at,
        ports,
        database: None,
        files: Vec::new(),
        release: None,
        disk_bytes: estimate,
        creator: Some(Pid { pid: me.pid, start_ticks: me.start_ticks }),
        daemon: None,
    };
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(&dir, 0o700)?;
    write_record(&dir, &rec)?;
    match build(global, app, db.as_deref(), &dir, &mut rec) {
        Ok(handle) => Ok(handle),
        Err(e) => {
            tracing::warn!("creating clone {name} failed; removing what was made");
            if let Err(d) = destroy(cfg, &app.redactor, &state, &name) {
                tracing::error!("removing the half-made clone {name}: {d:#}");
            }
            Err(e)
        }
    }
}

/// The steps after the record: database copy, file copies, the clone's daemon.
fn build(
    global: &Global,
    app: &AppContext,
    db: Option<&dyn caretaker_db::Database>,
    dir: &Path,
    rec: &mut CloneRecord,
) -> Result<CloneHandle> {
    let cfg = &app.config;
    if let (Some(db), Some(dcfg)) = (db, &cfg.database) {
        let copy = db.copy_as(CopyKind::Clone, Some(&rec.name))?;
        rec.database = Some(match dcfg.kind {
            DbKind::Sqlite => {
                let live = dcfg.path.as_deref().expect("a validated SQLite config has a path");
                live.with_file_name(&copy.name).to_string_lossy().into_owned()
            }
            _ => copy.name,
        });
        write_record(dir, rec)?;
    }
    let files_dir = dir.join("files");
    for (i, t) in cfg.files.iter().enumerate() {
        let base = t.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root".into());
        let to = files_dir.join(format!("{i}-{base}"));
        // Recorded before copying: a half-made copy is inside the clone's directory anyway.
        rec.files.push((t.path.clone(), to.clone()));
        write_record(dir, rec)?;
        std::fs::create_dir_all(&files_dir)?;
        copy_tree(&t.path, &to).with_context(|| format!("copying {} for the clone", t.path.display()))?;
    }
    let current = Layout::new(app.store.dir()).current();
    if std::fs::symlink_metadata(&current).is_ok() {
        if let Ok(target) = std::fs::canonicalize(&current) {
            rec.release = Some((current, target));
        }
    }
    write_record(dir, rec)?;
    let clone_cfg = plan::clone_config(cfg, &plan_of(rec, dir));
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir)?;
    set_mode(&state_dir, 0o700)?;
    let pid = crate::control::start_background_daemon_with(
        global,
        &app.config_path,
        &state_dir,
        &[(CLONE_DIR_ENV, dir.as_os_str())],
    )?;
    let id = process_identity(pid);
    rec.daemon = Some(Pid { pid: id.pid, start_ticks: id.start_ticks });
    write_record(dir, rec)?;
    crate::control::wait_until_up(&state_dir, None, cfg.update.health_timeout)?;
    rec.phase = Phase::Running;
    rec.creator = None;
    write_record(dir, rec)?;
    Ok(CloneHandle { record: rec.clone(), dir: dir.to_path_buf(), state_dir, config: clone_cfg })
}

/// Ports for the clone from `clones.port_range`, past other clones' and any in use.
fn free_ports(cfg: &Config, taken: &BTreeSet<u16>) -> Result<std::collections::BTreeMap<u16, u16>, String> {
    let wanted = plan::app_ports(cfg);
    let mut taken = taken.clone();
    loop {
        let ports = plan::assign_ports(cfg, &wanted, &taken)?;
        let busy: Vec<u16> =
            ports.values().copied().filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err()).collect();
        if busy.is_empty() {
            return Ok(ports);
        }
        taken.extend(busy);
    }
}

/// Destroys clone `name` of the app with production config `cfg` and state directory
/// `state`: stops its daemon and services, drops its database copy, removes its directory
/// (the record last). Idempotent: finishes an interrupted create or destroy. Returns what it
/// did, one line each.
pub fn destroy(cfg: &Config, redactor: &Redactor, state: &Path, name: &str) -> Result<Vec<String>> {
    let dir = Layout::new(state).clone_dir(name);
    let mut done = Vec::new();
    let mut rec = read_record(&dir);
    if let Some(r) = &mut rec {
        if r.phase != Phase::Destroying {
            r.phase = Phase::Destroying;
            write_record(&dir, r)?;
        }
    }
    // The processes: the daemon asked to stop, then anything left killed.
    let clone_state = dir.join("state");
    if clone_state.exists() {
        match crate::control::stop_daemon(&clone_state, Duration::from_secs(30)) {
            Ok(true) => done.push("stopped the clone's daemon and services".to_string()),
            Ok(false) => {}
            Err(e) => tracing::warn!("stopping clone {name}'s daemon: {e:#}"),
        }
        if let Some(d) = rec.as_ref().and_then(|r| r.daemon) {
            let id = ProcessIdentity { pid: d.pid, start_ticks: d.start_ticks };
            if id.is_alive() {
                unsafe { libc::kill(d.pid as i32, libc::SIGKILL) };
                done.push(format!("killed the clone's daemon (pid {})", d.pid));
            }
        }
        let records = caretaker_supervisor::process::Records::new(&clone_state).load();
        for line in caretaker_supervisor::process::stop_leftovers(&records, Duration::from_secs(10)) {
            done.push(format!("stopped leftover service {line}"));
        }
    }
    // The database copy: found by name, so also one made just before a crash.
    if let Some(dcfg) = &cfg.database {
        let db = caretaker_db::open(dcfg, redactor)?;
        for copy in db.list_snapshots()? {
            if copy.kind == CopyKind::Clone && copy.label.as_deref() == Some(name) {
                db.drop_snapshot(&copy)?;
                done.push(format!("dropped database {}", copy.name));
            }
        }
    }
    // The directory, the record last.
    if dir.exists() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_name() == RECORD {
                continue;
            }
            let p = e.path();
            let r = if e.file_type()?.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            r.with_context(|| format!("removing {}", p.display()))?;
        }
        let _ = std::fs::remove_file(dir.join(RECORD));
        std::fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))?;
        done.push(format!("removed {}", dir.display()));
    }
    Ok(done)
}

/// One sweep: destroys the clones whose time is up and finishes interrupted creates and
/// destroys. Returns one line per clone destroyed. Skips the round when a create or destroy
/// holds the clones lock.
pub fn sweep(cfg: &Config, redactor: &Redactor, state: &Path, now: Timestamp) -> Result<Vec<String>> {
    let layout = Layout::new(state);
    if !layout.clones().exists() {
        return Ok(Vec::new());
    }
    let _lock = match AppLock::try_acquire(&layout.clones_lock()) {
        Ok(l) => l,
        Err(LockError::Busy { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(Failure::new(Code::State, e.to_string()).into()),
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(layout.clones())?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        let why = match read_record(&e.path()) {
            Some(r) => {
                let alive =
                    r.creator.is_some_and(|c| ProcessIdentity { pid: c.pid, start_ticks: c.start_ticks }.is_alive());
                match plan::sweep_action(&r, now, alive) {
                    SweepAction::Keep => continue,
                    SweepAction::Destroy(why) => why,
                }
            }
            // A directory without a record is what a destroy interrupted after removing it.
            None => "its destruction was interrupted",
        };
        match destroy(cfg, redactor, state, &name) {
            Ok(_) => out.push(format!("destroyed clone {name}: {why}")),
            Err(err) => tracing::warn!("destroying clone {name} ({why}): {err:#}"),
        }
    }
    Ok(out)
}

/// The daemon's task: a sweep at the start, then every few seconds.
pub async fn expiry_loop(
    config: std::sync::Arc<Config>,
    redactor: Redactor,
    state: PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    // A clone's own daemon has no clones; it watches its own record instead.
    if let Some(dir) = std::env::var_os(CLONE_DIR_ENV) {
        return clone_watchdog(PathBuf::from(dir), shutdown).await;
    }
    loop {
        let (c, r, s) = (config.clone(), redactor.clone(), state.clone());
        match tokio::task::spawn_blocking(move || sweep(&c, &r, &s, Timestamp::now())).await {
            Ok(Ok(lines)) => {
                for l in lines {
                    tracing::info!("{l}");
                }
            }
            Ok(Err(e)) => tracing::warn!("clone sweep: {e:#}"),
            Err(e) => tracing::warn!("clone sweep: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// A clone's daemon ends itself (SIGTERM: services stopped, then exit) once its record is
/// gone or says `destroying`. This closes the one gap the sweep cannot: a daemon still
/// starting (no control socket yet, pid not recorded) when its clone was destroyed.
async fn clone_watchdog(dir: PathBuf, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let gone = match read_record(&dir) {
            None => true,
            Some(r) => r.phase == Phase::Destroying,
        };
        if gone {
            tracing::warn!("clone {} is being destroyed or gone: this clone daemon stops", dir.display());
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// The clones of the app, by name.
pub fn load_records(layout: &Layout) -> Vec<CloneRecord> {
    let Ok(rd) = std::fs::read_dir(layout.clones()) else { return Vec::new() };
    let mut out: Vec<CloneRecord> = rd.flatten().filter_map(|e| read_record(&e.path())).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Replaces the record atomically (write, fsync, rename, fsync the directory).
fn write_record(dir: &Path, rec: &CloneRecord) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!("{RECORD}.tmp"));
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(rec)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(RECORD))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn clones_lock(layout: &Layout) -> Result<AppLock> {
    std::fs::create_dir_all(layout.clones())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match AppLock::try_acquire(&layout.clones_lock()) {
            Ok(l) => return Ok(l),
            Err(LockError::Busy { .. }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(Failure::new(Code::Busy, format!("another clone command is under way: {e}")).into()),
        }
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {}", p.display()))
}

fn process_identity(pid: u32) -> ProcessIdentity {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| {
        let rest = s[s.rfind(')')? + 2..].to_string();
        rest.split(' ').nth(19)?.parse().ok()
    });
    ProcessIdentity { pid, start_ticks: ticks }
}

/// Apparent size of the regular files under `p`.
fn tree_size(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else { return 0 };
    if meta.is_dir() {
        std::fs::read_dir(p).map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum()).unwrap_or(0)
    } else if meta.is_file() {
        meta.len()
    } else {
        0
    }
}

/// Copies a file tree: every regular file on its own (a reflink where the file system shares
/// blocks copy-on-write, `FICLONE`; a byte copy otherwise) — never a hard link, which the
/// clone could write through into production. Directories and files keep their modes (and
/// owners, as root); symbolic links are recreated; sockets, FIFOs and devices are skipped.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(from).with_context(|| format!("reading {}", from.display()))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        std::fs::create_dir(to).with_context(|| format!("creating {}", to.display()))?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else if ft.is_file() {
        copy_file(from, to)?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
    } else {
        tracing::warn!("not copying {} into the clone: not a file, directory or link", from.display());
        return Ok(());
    }
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    }
    Ok(())
}

/// One file: `FICLONE` (shared blocks, copy-on-write) or, where the file system cannot, a copy
/// of the bytes (`copy_file_range` through `std::io::copy`).
fn copy_file(from: &Path, to: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let src = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    // FICLONE = _IOW(0x94, 9, int)
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: both descriptors are open for the duration of the call.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) };
    if rc == 0 {
        return Ok(());
    }
    let mut src = src;
    std::io::copy(&mut src, &mut dst).with_context(|| format!("copying {}", from.display()))?;
    dst.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_tree_copies_contents_modes_and_links_and_never_shares_an_inode() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a.txt"), "alpha").unwrap();
        std::fs::write(src.join("sub/b.bin"), vec![7u8; 100_000]).unwrap();
        std::fs::set_permissions(src.join("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
        // A hard link in the source becomes two independent files in the copy.
        std::fs::hard_link(src.join("a.txt"), src.join("a-link.txt")).unwrap();
        std::os::unix::fs::symlink("a.txt", src.join("sym")).unwrap();
        let dst = t.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("a.txt")).unwrap(), "alpha");
        assert_eq!(std::fs::read(dst.join("sub/b.bin")).unwrap(), vec![7u8; 100_000]);
        assert_eq!(std::fs::metadata(dst.join("a.txt")).unwrap().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_link(dst.join("sym")).unwrap(), Path::new("a.txt"));
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_ne!(ino(&src.join("a.txt")), ino(&dst.join("a.txt")));
        assert_ne!(ino(&dst.join("a.txt")), ino(&dst.join("a-link.txt")));
        std::fs::write(dst.join("a.txt"), "changed in the clone").unwrap();
        assert_eq!(std::fs::read_to_string(src.join("a.txt")).unwrap(), "alpha");
        assert_eq!(std::fs::read_to_string(dst.join("a-link.txt")).unwrap(), "alpha");
    }
}
