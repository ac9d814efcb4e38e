//! Reading and switching the app's mode (normal / maintenance / service), stored as facts in
//! the state store, and keeping the maintenance page file for nginx in step with it.
//!
//! Any process may switch the mode (the CLI, an update job, the supervisor on a crash loop);
//! the front door follows the stored facts. See `caretaker_core::mode` for the rules.
//!
//! **A switch is acknowledged.** After writing the facts, every function here (except
//! [`record_failed`], the daemon's own) tells the running daemon (`ModeChanged` on the control
//! socket) and returns only once it answered: its front door then serves the new mode to every
//! request it takes. So a job may stop the app right after [`maintenance_on`] without a visitor
//! ever reaching the stopped app (502), and the site is back the moment [`maintenance_off`]
//! returns. Without a daemon there is no front door, and nothing to wait for.
//!
//! [`ModeGuard`] is maintenance for the length of a job that leaves the mode as it found it: an
//! operator's maintenance stays on.

use crate::exit::{Code, Failure};
use anyhow::{Context, Result};
use caretaker_core::config::Config;
use caretaker_core::mode::{Failed, Maintenance, Mode, FACT_FAILED, FACT_MAINTENANCE};
use caretaker_state::Store;
use caretaker_supervisor::protocol::Request;
use jiff::Timestamp;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

pub const PAGE_FILE: &str = "maintenance.html";

/// How long a switch waits for the daemon's answer. The daemon answers from its event loop at
/// once; past this, the switch goes on (the front door reads the store every second anyway).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

pub fn maintenance_on(store: &Store, cfg: &Config, message: Option<&str>, by: &str) -> Result<Mode> {
    let m = Maintenance {
        message: message.unwrap_or(&cfg.maintenance.default_message).to_string(),
        since: Timestamp::now(),
        by: by.to_string(),
    };
    store.set_fact(FACT_MAINTENANCE, &serde_json::to_string(&m)?)?;
    store.record_event("maintenance_on", by, &m.message)?;
    let mode = sync_page(store, cfg)?;
    announce(store);
    Ok(mode)
}

pub fn maintenance_off(store: &Store, cfg: &Config, by: &str) -> Result<Mode> {
    store.clear_fact(FACT_MAINTENANCE)?;
    store.record_event("maintenance_off", by, "")?;
    let mode = sync_page(store, cfg)?;
    announce(store);
    Ok(mode)
}

/// Sets the failed flag: the app enters service mode until it is cleared (docs/maintenance.md:
/// `reset-failed`, an `up`/`restart` that gets every service healthy, a successful `update` or
/// `recover`).
pub fn set_failed(store: &Store, cfg: &Config, reason: &str) -> Result<Mode> {
    let mode = record_failed(store, cfg, reason)?;
    announce(store);
    Ok(mode)
}

/// How the supervisors word the failed flag they set: `service <name> failed: <reason>`.
pub fn service_failed_reason(service: &str, reason: &str) -> String {
    format!("service {service} failed: {reason}")
}

/// Whether service mode was set by a failed service (then an `up`/`restart` that gets every
/// service healthy ends it), not by a failed update or restore.
pub fn set_by_a_service(f: &Failed) -> bool {
    f.reason.starts_with("service ") && f.reason.contains(" failed: ")
}

/// [`set_failed`] for the daemon itself: it publishes the mode to its own front door (asking
/// itself over its socket would wait for its own event loop).
pub fn record_failed(store: &Store, cfg: &Config, reason: &str) -> Result<Mode> {
    let f = Failed { reason: reason.to_string(), since: Timestamp::now() };
    store.set_fact(FACT_FAILED, &serde_json::to_string(&f)?)?;
    store.record_event("service_mode", &cfg.app.name, reason)?;
    sync_page(store, cfg)
}

pub fn reset_failed(store: &Store, cfg: &Config) -> Result<Mode> {
    store.clear_fact(FACT_FAILED)?;
    store.record_event("reset_failed", &cfg.app.name, "")?;
    let mode = sync_page(store, cfg)?;
    announce(store);
    Ok(mode)
}

/// Clears the failed flag after `by` (`up`, `restart`, `update`, `recover`) got the app serving
/// and healthy. Returns what was cleared (`None`: the flag was not set), for the command to say
/// so.
pub fn clear_failed_after(store: &Store, cfg: &Config, by: &str) -> Result<Option<Failed>> {
    let Some(text) = store.fact(FACT_FAILED)? else { return Ok(None) };
    let was: Option<Failed> = serde_json::from_str(&text).ok();
    store.clear_fact(FACT_FAILED)?;
    let reason = was.as_ref().map(|f| f.reason.as_str()).unwrap_or("");
    store.record_event("service_mode_cleared", by, &format!("{by} succeeded; was: {reason}"))?;
    sync_page(store, cfg)?;
    announce(store);
    Ok(Some(was.unwrap_or(Failed { reason: String::new(), since: Timestamp::now() })))
}

/// Tells the running daemon that the mode changed and waits for its answer (its front door then
/// serves the new mode). No daemon: no front door, nothing to wait for. A daemon that does not
/// answer in time is reported; its front door still picks the mode up from the store.
pub fn announce(store: &Store) {
    match crate::control::request(store.dir(), &Request::ModeChanged, ACK_TIMEOUT) {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!("the daemon did not confirm the mode switch: {e:#}");
            eprintln!(
                "warning: the daemon did not confirm the mode switch ({e:#}); its front door follows the stored mode within a second"
            );
        }
    }
}

/// Maintenance for the length of a job (`update`, `backup restore`, `recover`) that leaves the
/// mode as the job found it: if an operator had switched maintenance on, it stays on, with the
/// operator's message; otherwise the job switches it on and [`ModeGuard::finish`] switches it
/// off. Dropped without `finish` (an error path), it restores the mode it found,
/// best effort. Service mode is not touched: it wins over maintenance either way.
///
/// The update flow, which persists its progress, keeps an operator's maintenance differently:
/// its plan has no maintenance steps when maintenance was on (`core::update`).
pub struct ModeGuard<'a> {
    store: &'a Store,
    cfg: &'a Config,
    by: String,
    was_on: bool,
    done: bool,
}

impl<'a> ModeGuard<'a> {
    /// Switches maintenance on for job `by` unless it is on already; acknowledged like
    /// [`maintenance_on`], so the app may be stopped as soon as this returns.
    pub fn enter_maintenance(store: &'a Store, cfg: &'a Config, message: Option<&str>, by: &str) -> Result<Self> {
        let was_on = store.fact(FACT_MAINTENANCE)?.is_some();
        if !was_on {
            maintenance_on(store, cfg, message, by)?;
        }
        Ok(ModeGuard { store, cfg, by: by.to_string(), was_on, done: false })
    }

    /// Ends the job's maintenance: off, unless it was on before the job. Returns the mode now.
    pub fn finish(mut self) -> Result<Mode> {
        self.done = true;
        if self.was_on {
            return Ok(self.store.mode()?);
        }
        maintenance_off(self.store, self.cfg, &self.by)
    }
}

impl Drop for ModeGuard<'_> {
    fn drop(&mut self) {
        if self.done || self.was_on {
            return;
        }
        if let Err(e) = maintenance_off(self.store, self.cfg, &self.by) {
            tracing::error!("{}: cannot switch maintenance off again: {e:#}", self.by);
        }
    }
}

/// Writes (or removes) `<maintenance.page_dir>/maintenance.html` to match the mode, for sites
/// where nginx serves the 503 page (docs/maintenance.md). Written atomically: nginx never sees
/// a half-written page.
pub fn sync_page(store: &Store, cfg: &Config) -> Result<Mode> {
    let mode = store.mode()?;
    let Some(dir) = &cfg.maintenance.page_dir else { return Ok(mode) };
    let page = dir.join(PAGE_FILE);
    let retry = cfg.front_door.as_ref().map(|f| f.retry_after.as_secs()).unwrap_or(30);
    let html = match &mode {
        Mode::Normal => {
            match std::fs::remove_file(&page) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", page.display())),
            }
            return Ok(mode);
        }
        Mode::Maintenance(m) => caretaker_frontdoor::pages::maintenance(&cfg.app.name, &m.message, retry),
        Mode::Service(_) => caretaker_frontdoor::pages::service_unavailable(&cfg.app.name, retry),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{PAGE_FILE}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(html.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &page).with_context(|| format!("writing {}", page.display()))?;
    Ok(mode)
}

/// After `up` or `restart` (`by`) got its services running and healthy: says what the site
/// now serves, and keeps the rule of docs/maintenance.md — service mode that a failed service
/// set is cleared once every service runs and is healthy (and the command says so); service
/// mode set by anything else (a failed update or restore) stays until `reset-failed`, and the
/// command fails, so it never leaves the site on the service page with exit code 0.
pub fn settle_mode(app: &crate::context::AppContext, by: &str) -> Result<Code> {
    use caretaker_core::mode::Mode;
    let state_dir = app.store.dir();
    if let Mode::Service(f) = app.store.mode()? {
        if !set_by_a_service(&f) {
            return Err(Failure::new(
                Code::Failure,
                format!("the services run, but the app stays in service mode (since {}): {}", f.since, f.reason),
            )
            .hint("that was not a service failure: once its cause is dealt with, `caretaker reset-failed` ends it")
            .into());
        }
        let report = crate::control::status(state_dir)?.ok_or_else(|| crate::control::no_daemon(state_dir))?;
        if let Some(s) = report.services.iter().find(|s| !crate::control::service_up(s)) {
            return Err(Failure::new(
                Code::Failure,
                format!("the app stays in service mode: service {} is {} ({})", s.name, s.state, f.reason),
            )
            .hint("`caretaker up` starts every service; once all are healthy, service mode ends")
            .into());
        }
        if let Some(was) = clear_failed_after(&app.store, &app.config, by)? {
            println!("service mode cleared: every service runs and is healthy (was: {})", was.reason);
        }
    }
    match app.store.mode()? {
        Mode::Normal => {}
        Mode::Maintenance(m) => eprintln!(
            "note: maintenance mode is on (since {}, by {}): visitors see the maintenance page; `caretaker maintenance off` ends it",
            m.since, m.by
        ),
        Mode::Service(f) => {
            return Err(Failure::new(Code::Failure, format!("the app is in service mode: {}", f.reason))
                .hint("`caretaker status` shows why")
                .into())
        }
    }
    Ok(Code::Ok)
}
