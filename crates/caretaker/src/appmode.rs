//! Reading and switching the app's mode (normal / maintenance / service), stored as facts in
//! the state store, and keeping the maintenance page file for nginx in step with it.
//!
//! Any process may switch the mode (the CLI, an update job, the supervisor on a crash loop);
//! the front door follows the stored facts. See `caretaker_core::mode` for the rules.

use anyhow::{Context, Result};
use caretaker_core::config::Config;
use caretaker_core::mode::{Failed, Maintenance, Mode, FACT_FAILED, FACT_MAINTENANCE};
use caretaker_state::Store;
use jiff::Timestamp;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

pub const PAGE_FILE: &str = "maintenance.html";

pub fn maintenance_on(store: &Store, cfg: &Config, message: Option<&str>, by: &str) -> Result<Mode> {
    let m = Maintenance {
        message: message.unwrap_or(&cfg.maintenance.default_message).to_string(),
        since: Timestamp::now(),
        by: by.to_string(),
    };
    store.set_fact(FACT_MAINTENANCE, &serde_json::to_string(&m)?)?;
    store.record_event("maintenance_on", by, &m.message)?;
    sync_page(store, cfg)
}

pub fn maintenance_off(store: &Store, cfg: &Config, by: &str) -> Result<Mode> {
    store.clear_fact(FACT_MAINTENANCE)?;
    store.record_event("maintenance_off", by, "")?;
    sync_page(store, cfg)
}

/// Sets the failed flag: the app enters service mode until `reset-failed`.
pub fn set_failed(store: &Store, cfg: &Config, reason: &str) -> Result<Mode> {
    let f = Failed { reason: reason.to_string(), since: Timestamp::now() };
    store.set_fact(FACT_FAILED, &serde_json::to_string(&f)?)?;
    store.record_event("service_mode", &cfg.app.name, reason)?;
    sync_page(store, cfg)
}

pub fn reset_failed(store: &Store, cfg: &Config) -> Result<Mode> {
    store.clear_fact(FACT_FAILED)?;
    store.record_event("reset_failed", &cfg.app.name, "")?;
    sync_page(store, cfg)
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
