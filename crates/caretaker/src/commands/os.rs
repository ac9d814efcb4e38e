//! `caretaker os status|update|reboot` and the daemon's periodic `os tick` (docs/os.md):
//! operating system maintenance carried out from `caretaker_core::os`'s decisions with the
//! `caretaker_os` adapter.

use crate::cli::{Global, OsCommand};
use crate::context::{open_app, trigger, AppContext};
use crate::exit::{Code, Failure};
use anyhow::{Context, Result};
use caretaker_core::job::figures::Figures;
use caretaker_core::job::{Outcome, Trigger};
use caretaker_core::mode::Mode;
use caretaker_core::os::{
    self as decide, facts, kind, Blocked, CameBack, LastReboot, OsRebootFigures, OsSummary, OsUpdateFigures,
    PendingReboot, RebootFacts, RebootVerdict, Skip,
};
use caretaker_os::{HostFacts, OsError, PackageManager, PackageStatus, System, UpgradeOptions};
use caretaker_state::{JobHandle, StateError, Store};
use caretaker_supervisor::protocol::Request;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::time::{Duration, Instant};

pub fn run(global: &Global, cmd: &OsCommand) -> Result<Code> {
    let app = open_app(global)?;
    let system = System::from_env();
    match cmd {
        OsCommand::Status { json, no_refresh } => status(&app, &system, *json, !*no_refresh),
        OsCommand::Update { dry_run, security_only } => update(global, &app, &system, *dry_run, *security_only),
        OsCommand::Reboot { if_needed, now } => reboot(global, &app, &system, *if_needed, *now, trigger()),
        OsCommand::Tick => tick(global, &app, &system),
    }
}

fn tz(app: &AppContext) -> TimeZone {
    app.config.timezone.as_deref().and_then(|z| TimeZone::get(z).ok()).unwrap_or_else(TimeZone::system)
}

fn os_failure(e: OsError) -> anyhow::Error {
    let code = match &e {
        OsError::Unsupported | OsError::Spawn { .. } => Code::Unavailable,
        _ => Code::Failure,
    };
    Failure::new(code, e.to_string()).into()
}

fn manager(system: &System) -> Result<Box<dyn PackageManager>> {
    caretaker_os::detect(system).map_err(os_failure)
}

fn offset(app: &AppContext, system: &System) -> Duration {
    app.config.os.reboot.as_ref().map(|r| decide::host_offset(&system.host_id(), r.jitter)).unwrap_or_default()
}

/// Saves what metrics and the status page show.
fn save_summary(
    app: &AppContext,
    system: &System,
    pkgs: Option<&PackageStatus>,
    host: &HostFacts,
) -> Result<OsSummary> {
    let old: OsSummary = load_fact(&app.store, facts::SUMMARY)?.unwrap_or_default();
    let now = Timestamp::now();
    let last_job = app.store.last_success(kind::OS_UPDATE)?.and_then(|j| j.ended_at);
    let s = OsSummary {
        checked_at: Some(now),
        updates_pending: pkgs.map_or(old.updates_pending, |p| p.upgradable.len() as u64),
        security_updates_pending: pkgs
            .map_or(old.security_updates_pending, |p| p.upgradable.iter().filter(|u| u.is_security()).count() as u64),
        held: pkgs.map_or(old.held, |p| p.held.clone()),
        kept_back: pkgs.map_or(old.kept_back, |p| p.kept_back.clone()),
        reboot_required: host.reboot_needed(),
        reboot_required_packages: host.reboot_required_packages.clone(),
        last_os_update: [host.last_package_change, last_job].into_iter().flatten().max(),
        boot_id: host.boot_id.clone(),
        boot_time: host.boot_time,
        next_reboot_slot: app
            .config
            .os
            .reboot
            .as_ref()
            .and_then(|r| decide::next_slot(r, offset(app, system), now, &tz(app)))
            .map(|s| s.start),
    };
    save_fact(&app.store, facts::SUMMARY, &s)?;
    Ok(s)
}

fn load_fact<T: serde::de::DeserializeOwned>(store: &Store, name: &str) -> Result<Option<T>> {
    Ok(store.fact(name)?.and_then(|v| serde_json::from_str(&v).ok()))
}

fn save_fact<T: serde::Serialize>(store: &Store, name: &str, v: &T) -> Result<()> {
    store.set_fact(name, &serde_json::to_string(v)?)?;
    Ok(())
}

fn status(app: &AppContext, system: &System, json: bool, refresh: bool) -> Result<Code> {
    let pm = manager(system)?;
    if refresh {
        if let Err(e) = pm.refresh(&mut |_| {}) {
            eprintln!("warning: refreshing the package lists failed; showing what is known: {e}");
        }
    }
    let pkgs = pm.status().map_err(os_failure)?;
    let host = system.facts();
    let summary = save_summary(app, system, Some(&pkgs), &host)?;
    if json {
        let v = serde_json::json!({
            "package_manager": pm.name(),
            "upgradable": pkgs.upgradable.iter().map(|u| serde_json::json!({
                "name": u.name, "installed": u.installed, "candidate": u.candidate,
                "security": u.is_security(), "origins": u.origins,
                "held": pkgs.held.contains(&u.name), "kept_back": pkgs.kept_back.contains(&u.name),
            })).collect::<Vec<_>>(),
            "held": pkgs.held,
            "kept_back": pkgs.kept_back,
            "interrupted": pkgs.interrupted,
            "reboot": {
                "needed": host.reboot_needed(),
                "required": host.reboot_required,
                "packages": host.reboot_required_packages,
                "running_kernel": host.running_kernel,
                "newer_kernel": host.newer_kernel,
                "next_slot": summary.next_reboot_slot,
                "pending": load_fact::<PendingReboot>(&app.store, facts::PENDING_REBOOT)?,
                "last": load_fact::<LastReboot>(&app.store, facts::LAST_REBOOT)?,
            },
            "needrestart": host.needrestart,
            "boot_id": host.boot_id,
            "boot_time": host.boot_time,
            "last_os_update": summary.last_os_update,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Code::Ok);
    }
    let sec = summary.security_updates_pending;
    println!("{} updates pending ({} security)", pkgs.upgradable.len(), sec);
    for u in &pkgs.upgradable {
        let mut marks = Vec::new();
        if u.is_security() {
            marks.push("security");
        }
        if pkgs.held.contains(&u.name) {
            marks.push("held");
        }
        if pkgs.kept_back.contains(&u.name) {
            marks.push("kept back");
        }
        let origin = u.origins.iter().map(|o| format!("{}/{}", o.origin, o.archive)).collect::<Vec<_>>().join(", ");
        let marks = if marks.is_empty() { String::new() } else { format!("  [{}]", marks.join(", ")) };
        println!("  {} {} -> {} ({origin}){marks}", u.name, u.installed, u.candidate);
    }
    if !pkgs.interrupted.is_empty() {
        println!("dpkg was interrupted: {} (run `dpkg --configure -a`)", pkgs.interrupted.join(", "));
    }
    if host.reboot_needed() {
        let mut why = Vec::new();
        if host.reboot_required {
            why.push(if host.reboot_required_packages.is_empty() {
                "reboot-required".to_string()
            } else {
                format!("requested by {}", host.reboot_required_packages.join(", "))
            });
        }
        if let Some(k) = &host.newer_kernel {
            why.push(format!("kernel {k} installed, {} running", host.running_kernel.as_deref().unwrap_or("?")));
        }
        println!("reboot needed: {}", why.join("; "));
    } else {
        println!("no reboot needed");
    }
    if let Some(t) = summary.next_reboot_slot {
        println!("next reboot slot: {t}");
    }
    if let Some(n) = &host.needrestart {
        if !n.services.is_empty() {
            println!("services running deleted libraries: {}", n.services.join(", "));
        }
    }
    println!(
        "boot: {} (id {})",
        host.boot_time.map(|t| t.to_string()).unwrap_or_else(|| "unknown".into()),
        host.boot_id.as_deref().unwrap_or("unknown")
    );
    println!("last OS update: {}", summary.last_os_update.map(|t| t.to_string()).unwrap_or_else(|| "unknown".into()));
    Ok(Code::Ok)
}

/// Stops the app through the daemon; `false` when no daemon runs (nothing to stop).
fn stop_app(app: &AppContext) -> Result<bool> {
    let timeout = app.config.stop_timeout_total() + Duration::from_secs(30);
    Ok(crate::control::request(app.store.dir(), &Request::StopApp, timeout)?.is_some())
}

fn start_app(global: &Global, app: &AppContext) -> Result<()> {
    let dir = app.store.dir();
    if crate::control::request(dir, &Request::Up, Duration::from_secs(10))?.is_none() {
        crate::control::start_background_daemon(global, &app.config_path, dir)?;
    }
    Ok(())
}

fn fail(
    mut job: JobHandle<'_>,
    outcome: Outcome,
    figures: &OsUpdateFigures,
    started: Instant,
    msg: String,
) -> Result<Code> {
    let mut f = figures.clone();
    f.seconds = Some(started.elapsed().as_secs_f64());
    job.log(&msg);
    // The job's error is one line (listings show it); the log has it line by line.
    let line = msg.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("; ");
    job.finish(outcome, f.to_json(), Some(&line))?;
    let code = if outcome == Outcome::Refused { Code::Refused } else { Code::Failure };
    Err(Failure::new(code, msg).into())
}

fn update(global: &Global, app: &AppContext, system: &System, dry_run: bool, security_only: bool) -> Result<Code> {
    let cfg = &app.config;
    let trig = trigger();
    let pm = manager(system)?;
    let security_only = security_only || cfg.os.update.security_only;
    if !dry_run && trig == Trigger::Schedule && !app.store.mode()?.is_normal() {
        println!("skipped: the app is in maintenance or service mode");
        return Ok(Code::Ok);
    }
    let started = Instant::now();
    let mut job = if dry_run { None } else { Some(app.store.start_job(kind::OS_UPDATE, trig, true).map_err(busy)?) };
    let mut log = |l: &str| {
        if let Some(j) = job.as_mut() {
            j.log(l);
        }
    };
    let mut figures = OsUpdateFigures::default();
    macro_rules! bail_job {
        ($outcome:expr, $msg:expr) => {{
            let msg: String = $msg;
            return match job {
                Some(j) => fail(j, $outcome, &figures, started, msg),
                None => Err(Failure::new(Code::Failure, msg).into()),
            };
        }};
    }
    if let Err(e) = pm.refresh(&mut log) {
        bail_job!(Outcome::Failed, format!("refreshing the package lists: {e}"));
    }
    if let Err(e) = pm.preflight() {
        if let OsError::Interrupted { packages, .. } = &e {
            figures.interrupted = packages.clone();
        }
        bail_job!(Outcome::Failed, format!("{e}\nhint: repair it by hand (`dpkg --configure -a`, `apt-get -f install`), then run `caretaker os update` again"));
    }
    let pkgs = match pm.status() {
        Ok(p) => p,
        Err(e) => bail_job!(Outcome::Failed, e.to_string()),
    };
    let sel = decide::select(&pkgs.upgradable, &pkgs.held, &pkgs.kept_back, &cfg.os, security_only);
    let chosen = sel.names();
    figures.security = sel.upgrade.iter().filter(|u| u.is_security()).map(|u| u.name.clone()).collect();
    figures.held = sel.skipped_for(&Skip::Held);
    figures.kept_back = sel.skipped_for(&Skip::KeptBack);
    let simulated = match pm.simulate(&chosen) {
        Ok(s) => s,
        Err(e) => bail_job!(Outcome::Failed, e.to_string()),
    };
    let extra = decide::unplanned(&chosen, &simulated);
    let touched = decide::touches_app(&chosen, &decide::app_packages(cfg));
    figures.app_packages = touched.clone();
    if dry_run {
        println!(
            "{} to upgrade{}: {}",
            chosen.len(),
            if security_only { " (security only)" } else { "" },
            if chosen.is_empty() { "nothing".to_string() } else { chosen.join(", ") }
        );
        for (why, what) in [
            (Skip::Held, "held"),
            (Skip::KeptBack, "kept back (needs new packages or removals: upgrade by hand)"),
            (Skip::Origin, "from an origin not in os.origins"),
            (Skip::NotSecurity, "not security updates"),
        ] {
            let names = sel.skipped_for(&why);
            if !names.is_empty() {
                println!("{what}: {}", names.join(", "));
            }
        }
        if !extra.is_empty() {
            println!("refused: the upgrade would also change {}", extra.join(", "));
        }
        if touched.is_empty() {
            println!("the app keeps running (no package it depends on)");
        } else {
            println!(
                "the app depends on {}: maintenance on, app stopped, database snapshot, upgrade, start, health gate",
                touched.join(", ")
            );
        }
        return Ok(Code::Ok);
    }
    if !extra.is_empty() {
        bail_job!(
            Outcome::Refused,
            format!(
                "the upgrade of {} would also change {} (held, from an origin not allowed, or new): nothing was changed",
                chosen.join(", "),
                extra.join(", ")
            )
        );
    }
    let Some(mut j) = job else { unreachable!("not a dry run") };
    j.log(&format!(
        "upgrading {}; held: {}; kept back: {}",
        if chosen.is_empty() { "nothing".to_string() } else { chosen.join(", ") },
        figures.held.join(", "),
        figures.kept_back.join(", ")
    ));
    let mut upgrade_error = None;
    let mut report = caretaker_os::UpgradeReport::default();
    if !chosen.is_empty() {
        let opts = UpgradeOptions { lock_timeout: cfg.os.update.lock_timeout };
        // Precautions when the app depends on what changes.
        let guard = if touched.is_empty() {
            None
        } else {
            j.log(&format!("the app depends on {}: maintenance on, stopping the app", touched.join(", ")));
            let g = crate::appmode::ModeGuard::enter_maintenance(&app.store, cfg, None, "os update")?;
            figures.app_stopped = stop_app(app)?;
            if cfg.database.is_some() {
                match crate::compose::open_database(cfg, &app.redactor)
                    .and_then(|db| db.snapshot(Some("pre-os-update")))
                {
                    Ok(s) => {
                        j.log(&format!("database snapshot {}", s.name));
                        figures.snapshot = Some(s.name);
                    }
                    Err(e) => {
                        let fresh = last_backup_fresh(app)?;
                        if !fresh {
                            let _ = start_app(global, app);
                            drop(g);
                            return fail(
                                j,
                                Outcome::Refused,
                                &figures,
                                started,
                                format!("no database snapshot ({e:#}) and no fresh backup: nothing was changed"),
                            );
                        }
                        j.log(&format!("no database snapshot ({e:#}); the last backup is fresh"));
                    }
                }
            }
            Some(g)
        };
        match pm.upgrade(&chosen, &opts, &mut |l| j.log(l)) {
            Ok(r) => report = r,
            Err(e) => upgrade_error = Some(e.to_string()),
        }
        if let Some(g) = guard {
            j.log("starting the app");
            let healthy = start_app(global, app).and_then(|_| {
                crate::control::wait_until_up(app.store.dir(), None, cfg.update.health_timeout).map(|_| ())
            });
            match healthy {
                Ok(()) => {
                    j.log("the app is healthy: maintenance off");
                    g.finish()?;
                }
                Err(e) => {
                    let reason = format!("the app did not come back healthy after the OS update: {e:#}");
                    j.log(&reason);
                    crate::appmode::set_failed(&app.store, cfg, &reason)?;
                    // Service mode wins over maintenance; the guard switches maintenance off.
                    drop(g);
                    upgrade_error = Some(upgrade_error.map_or(reason.clone(), |u| format!("{u}; {reason}")));
                }
            }
        }
    }
    figures.upgraded = report.upgraded.clone();
    figures.conffiles_kept = report.conffiles_kept.iter().map(|c| (c.package.clone(), c.path.clone())).collect();
    let host = system.facts();
    figures.reboot_required = host.reboot_needed();
    if let Ok(after) = pm.status() {
        figures.interrupted = after.interrupted.clone();
        let _ = save_summary(app, system, Some(&after), &host);
    }
    if host.reboot_needed() && app.store.fact(facts::REBOOT_NEEDED_SINCE)?.is_none() {
        app.store.set_fact(facts::REBOOT_NEEDED_SINCE, &Timestamp::now().to_string())?;
    }
    let mut problems = Vec::new();
    if let Some(e) = upgrade_error {
        problems.push(e);
    }
    if !figures.interrupted.is_empty() {
        problems.push(format!("dpkg left these packages unfinished: {}", figures.interrupted.join(", ")));
    }
    if !report.conffiles_kept.is_empty() {
        problems.push(format!(
            "conffiles you edited were kept, the packages' new versions are next to them as .dpkg-dist — merge them: {}",
            report.conffiles_kept.iter().map(|c| format!("{} ({})", c.path, c.package)).collect::<Vec<_>>().join(", ")
        ));
    }
    if !figures.kept_back.is_empty() {
        problems.push(format!(
            "kept back (they need new packages or removals; upgrade them by hand or hold them in os.hold): {}",
            figures.kept_back.join(", ")
        ));
    }
    if problems.is_empty() {
        figures.seconds = Some(started.elapsed().as_secs_f64());
        j.finish(Outcome::Succeeded, figures.to_json(), None)?;
        println!(
            "upgraded {}{}",
            if figures.upgraded.is_empty() { "nothing".to_string() } else { figures.upgraded.join(", ") },
            if figures.reboot_required { "; a reboot is needed" } else { "" }
        );
        return Ok(Code::Ok);
    }
    if !figures.upgraded.is_empty() {
        println!("upgraded {}", figures.upgraded.join(", "));
    }
    fail(j, Outcome::Failed, &figures, started, problems.join("\n"))
}

fn busy(e: StateError) -> anyhow::Error {
    e.into()
}

fn last_backup_fresh(app: &AppContext) -> Result<bool> {
    let max = app.config.os.reboot.as_ref().map(|r| r.max_backup_age).unwrap_or(Duration::from_secs(26 * 3600));
    let last = app.store.last_success(caretaker_core::job::kind::BACKUP)?.and_then(|j| j.ended_at);
    Ok(last
        .is_some_and(|t| Timestamp::now().duration_since(t) <= jiff::SignedDuration::try_from(max).unwrap_or_default()))
}

fn reboot_facts(app: &AppContext, host: &HostFacts, if_needed: bool) -> Result<RebootFacts> {
    Ok(RebootFacts {
        needed: !if_needed || host.reboot_needed(),
        job_running: None,
        backups_configured: app.config.backup.is_some(),
        last_backup: app.store.last_success(caretaker_core::job::kind::BACKUP)?.and_then(|j| j.ended_at),
        service_mode: matches!(app.store.mode()?, Mode::Service(_)),
    })
}

fn run_backup(global: &Global, app: &AppContext) -> Result<()> {
    let exe = std::env::current_exe().context("finding caretaker's own executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config").arg(&app.config_path).arg("--state-dir").arg(app.store.dir());
    if global.allow_world_readable_config {
        cmd.arg("--allow-world-readable-config");
    }
    let st = cmd.args(["backup", "run"]).status().context("running caretaker backup")?;
    if !st.success() {
        return Err(Failure::new(Code::Failure, "the backup before the reboot failed: no reboot").into());
    }
    Ok(())
}

fn reboot(
    global: &Global,
    app: &AppContext,
    system: &System,
    if_needed: bool,
    now_flag: bool,
    trig: Trigger,
) -> Result<Code> {
    let cfg = &app.config;
    let host = system.facts();
    let off = offset(app, system);
    let tzone = tz(app);
    let mut facts = reboot_facts(app, &host, if_needed)?;
    let mut verdict = decide::decide_reboot(cfg.os.reboot.as_ref(), off, &facts, Timestamp::now(), &tzone, now_flag);
    if verdict == RebootVerdict::BackupFirst {
        println!("the last backup is too old: backing up before the reboot");
        run_backup(global, app)?;
        facts = reboot_facts(app, &host, if_needed)?;
        verdict = decide::decide_reboot(cfg.os.reboot.as_ref(), off, &facts, Timestamp::now(), &tzone, now_flag);
    }
    match verdict {
        RebootVerdict::Reboot => {}
        RebootVerdict::Wait(Blocked::NotNeeded) => {
            println!("no reboot needed");
            return Ok(Code::Ok);
        }
        RebootVerdict::Wait(b) => {
            let code = if trig == Trigger::Schedule { Code::Ok } else { Code::Refused };
            if code == Code::Ok {
                println!("no reboot now: {b}");
                return Ok(code);
            }
            return Err(Failure::new(code, format!("no reboot: {b}")).into());
        }
        RebootVerdict::BackupFirst => {
            return Err(Failure::new(Code::Refused, "no reboot: the backup just taken is not recorded as fresh").into())
        }
    }
    let mut job = match app.store.start_job(kind::OS_REBOOT, trig, true) {
        Ok(j) => j,
        Err(StateError::Busy { .. }) if trig == Trigger::Schedule => {
            println!("no reboot now: another job holds the app lock");
            return Ok(Code::Ok);
        }
        Err(e) => return Err(Failure::new(Code::Refused, format!("no reboot: {e}")).into()),
    };
    let started = Instant::now();
    let Some(boot_id) = system.boot_id() else {
        let msg = format!("cannot read the boot id ({}): no reboot", system.boot_id_file.display());
        job.finish(Outcome::Failed, serde_json::Value::Null, Some(&msg))?;
        return Err(Failure::new(Code::Failure, msg).into());
    };
    let mut figures =
        OsRebootFigures { boot_id_before: Some(boot_id.clone()), verdict: Some("reboot".into()), ..Default::default() };
    let why = if host.reboot_required_packages.is_empty() {
        if host.reboot_needed() {
            "the system asks for it".to_string()
        } else {
            "the operator asked for it".to_string()
        }
    } else {
        format!("requested by {}", host.reboot_required_packages.join(", "))
    };
    job.log(&format!("rebooting ({why}); boot id {boot_id}"));
    let pending = PendingReboot {
        boot_id: boot_id.clone(),
        requested_at: Timestamp::now(),
        job: Some(job.id()),
        back_seen_at: None,
    };
    save_fact(&app.store, facts::PENDING_REBOOT, &pending)?;
    crate::appmode::maintenance_on(&app.store, cfg, None, "os reboot")?;
    job.log("maintenance on; stopping the app");
    let stopped = stop_app(app)?;
    job.log(if stopped { "the app is stopped" } else { "no daemon runs: nothing to stop" });
    let argv =
        cfg.os.reboot.as_ref().map(|r| r.command.argv()).unwrap_or_else(|| vec!["systemctl".into(), "reboot".into()]);
    job.log(&format!("$ {}", argv.join(" ")));
    let out = std::process::Command::new(&argv[0]).args(&argv[1..]).stdin(std::process::Stdio::null()).output();
    let ok = match &out {
        Ok(o) => {
            for l in String::from_utf8_lossy(&o.stdout).lines().chain(String::from_utf8_lossy(&o.stderr).lines()) {
                job.log(l);
            }
            o.status.success()
        }
        Err(e) => {
            job.log(&format!("cannot run {}: {e}", argv[0]));
            false
        }
    };
    figures.seconds = Some(started.elapsed().as_secs_f64());
    if !ok {
        // Nothing rebooted: put the app back.
        app.store.clear_fact(facts::PENDING_REBOOT)?;
        let _ = start_app(global, app);
        crate::appmode::maintenance_off(&app.store, cfg, "os reboot")?;
        let msg = format!("the reboot command `{}` failed; the app was started again", argv.join(" "));
        figures.verdict = Some("failed".into());
        job.finish(Outcome::Failed, figures.to_json(), Some(&msg))?;
        return Err(Failure::new(Code::Failure, msg).into());
    }
    job.finish(Outcome::Succeeded, figures.to_json(), None)?;
    println!("reboot requested (boot id {boot_id}); caretaker checks after the boot that the app came back");
    Ok(Code::Ok)
}

/// Problems that keep the app from counting as back: services not up (from the daemon) and
/// critical deployment checks.
fn problems_now(app: &AppContext) -> Vec<String> {
    let mut out = Vec::new();
    match crate::control::status(app.store.dir()) {
        Ok(Some(report)) => {
            for s in &report.services {
                if !crate::control::service_up(s) {
                    out.push(format!("service {} is not up ({:?}, {:?})", s.name, s.state, s.health));
                }
            }
            if let Some(r) = report.service_mode {
                out.push(format!("service mode: {r}"));
            }
        }
        Ok(None) => out.push("the daemon does not run".into()),
        Err(e) => out.push(format!("the daemon does not answer: {e:#}")),
    }
    if let Ok(results) = caretaker_observe::check::run_checks(&app.config, &app.store, Vec::new(), Timestamp::now()) {
        for r in results {
            // The load right after a boot says nothing about whether the app came back.
            if r.status == caretaker_observe::check::CheckStatus::Critical && r.name != "load" {
                out.push(format!("check {}: {}", r.name, r.message));
            }
        }
    }
    out
}

fn record_boot(app: &AppContext, host: &HostFacts) -> Result<()> {
    let (Some(id), Some(t)) = (&host.boot_id, host.boot_time) else { return Ok(()) };
    let mut boots: Vec<(String, Timestamp)> = load_fact(&app.store, facts::BOOTS)?.unwrap_or_default();
    if !boots.iter().any(|(b, _)| b == id) {
        boots.push((id.clone(), t));
        let keep = boots.len().saturating_sub(200);
        boots.drain(..keep);
        save_fact(&app.store, facts::BOOTS, &boots)?;
    }
    Ok(())
}

/// The daemon's periodic check (every minute).
fn tick(global: &Global, app: &AppContext, system: &System) -> Result<Code> {
    let cfg = &app.config;
    let host = system.quick_facts();
    record_boot(app, &host)?;
    let now = Timestamp::now();
    // 1. A reboot caretaker started: did the machine come back?
    if let Some(p) = load_fact::<PendingReboot>(&app.store, facts::PENDING_REBOOT)? {
        let current = host.boot_id.clone().unwrap_or_default();
        let mut p = p;
        if current != p.boot_id && p.back_seen_at.is_none() {
            // The first look after the boot: the app starts (a no-op when the daemon started
            // it already), and the time to come back runs from now at the latest.
            p.back_seen_at = Some(now);
            save_fact(&app.store, facts::PENDING_REBOOT, &p)?;
            let _ = start_app(global, app);
        }
        let within = cfg.os.reboot.as_ref().map(|r| r.came_back_within).unwrap_or(Duration::from_secs(15 * 60));
        // After the boot this check stays until the verdict (the daemon does not wait a
        // minute between looks); before it, one look.
        loop {
            let now = Timestamp::now();
            let problems = if current != p.boot_id { problems_now(app) } else { Vec::new() };
            let verdict = decide::came_back(&p, &current, host.boot_time, &problems, now, within);
            if verdict.is_final() {
                judge(global, app, &p, &current, &verdict)?;
                return Ok(Code::Ok);
            }
            if current == p.boot_id {
                return Ok(Code::Ok);
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    // 2. A needed reboot: since when, and has it waited too many windows?
    if !host.reboot_needed() {
        app.store.clear_fact(facts::REBOOT_NEEDED_SINCE)?;
        app.store.clear_fact(facts::REBOOT_WINDOWS_ALERTED)?;
        let _ = save_summary(app, system, None, &host);
        return Ok(Code::Ok);
    }
    let since: Timestamp = match app.store.fact(facts::REBOOT_NEEDED_SINCE)?.and_then(|s| s.parse().ok()) {
        Some(t) => t,
        None => {
            app.store.set_fact(facts::REBOOT_NEEDED_SINCE, &now.to_string())?;
            now
        }
    };
    let _ = save_summary(app, system, None, &host);
    let Some(r) = &cfg.os.reboot else { return Ok(Code::Ok) };
    let off = offset(app, system);
    let missed = decide::windows_missed(r, off, since, now, &tz(app));
    let alerted: u32 = app.store.fact(facts::REBOOT_WINDOWS_ALERTED)?.and_then(|s| s.parse().ok()).unwrap_or(0);
    if missed >= r.alert_after_windows && missed > alerted {
        // A refused job: the job_failed rule alerts until a reboot succeeds.
        let facts_now = reboot_facts(app, &host, true)?;
        let reason = match decide::decide_reboot(Some(r), off, &facts_now, now, &tz(app), true) {
            RebootVerdict::Wait(b) => b.to_string(),
            _ => "nothing blocks it now (did the daemon run during the windows?)".into(),
        };
        let msg = format!("a needed reboot has waited through {missed} reboot windows since {since}: {reason}");
        if let Ok(job) = app.store.start_job(kind::OS_REBOOT, Trigger::Schedule, false) {
            let f = OsRebootFigures {
                verdict: Some("refused".into()),
                reason: Some(reason),
                windows_missed: Some(missed),
                ..Default::default()
            };
            job.finish(Outcome::Refused, f.to_json(), Some(&msg))?;
        }
        app.store.set_fact(facts::REBOOT_WINDOWS_ALERTED, &missed.to_string())?;
    }
    // 3. Inside this host's slot: reboot if everything allows it.
    if decide::slot_at(r, off, now, &tz(app)).is_some() {
        return reboot(global, app, system, true, false, Trigger::Schedule);
    }
    Ok(Code::Ok)
}

/// Records the final "came back" verdict: an event, an `os_reboot_check` job (a failed one
/// alerts through `job_failed`), and the mode: maintenance off when healthy, service mode when
/// the app did not come back.
fn judge(global: &Global, app: &AppContext, p: &PendingReboot, current: &str, verdict: &CameBack) -> Result<()> {
    let cfg = &app.config;
    let now = Timestamp::now();
    let (outcome, word, message) = match verdict {
        CameBack::Healthy { seconds } => (
            Outcome::Succeeded,
            "healthy",
            format!("the machine rebooted and the app was healthy {seconds}s after the boot"),
        ),
        CameBack::NotRebooted => {
            (Outcome::Failed, "not_rebooted", format!("the machine did not reboot: the boot id is still {}", p.boot_id))
        }
        CameBack::Unhealthy { problems } => (
            Outcome::Failed,
            "unhealthy",
            format!("the machine rebooted but the app did not come back: {}", problems.join("; ")),
        ),
        CameBack::Waiting => return Ok(()),
    };
    app.store.record_event("os_reboot", word, &message)?;
    let f = OsRebootFigures {
        boot_id_before: Some(p.boot_id.clone()),
        boot_id_after: Some(current.to_string()),
        verdict: Some(word.into()),
        seconds: Some(now.duration_since(p.requested_at).as_secs_f64()),
        ..Default::default()
    };
    let job = app.store.start_job(kind::OS_REBOOT_CHECK, Trigger::Schedule, false)?;
    job.finish(outcome, f.to_json(), (outcome != Outcome::Succeeded).then_some(message.as_str()))?;
    save_fact(
        &app.store,
        facts::LAST_REBOOT,
        &LastReboot {
            requested_at: Some(p.requested_at),
            judged_at: Some(now),
            outcome: word.into(),
            message: message.clone(),
        },
    )?;
    app.store.clear_fact(facts::PENDING_REBOOT)?;
    match verdict {
        CameBack::Healthy { .. } => {
            app.store.clear_fact(facts::REBOOT_NEEDED_SINCE)?;
            app.store.clear_fact(facts::REBOOT_WINDOWS_ALERTED)?;
            if app.store.fact(caretaker_core::mode::FACT_MAINTENANCE)?.is_some() {
                crate::appmode::maintenance_off(&app.store, cfg, "os reboot")?;
            }
        }
        CameBack::NotRebooted => {
            let _ = start_app(global, app);
            if app.store.fact(caretaker_core::mode::FACT_MAINTENANCE)?.is_some() {
                crate::appmode::maintenance_off(&app.store, cfg, "os reboot")?;
            }
        }
        CameBack::Unhealthy { .. } => {
            crate::appmode::set_failed(&app.store, cfg, &message)?;
        }
        CameBack::Waiting => {}
    }
    println!("{message}");
    Ok(())
}
