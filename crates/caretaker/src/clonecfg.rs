//! How a staging clone's daemon and commands read the clone's config (docs/clones.md): the
//! app's config rewritten by `caretaker_core::clone` from the clone's record, found through
//! `CARETAKER_CLONE_DIR`. Its own module so that config discovery (`context`) and the clone
//! commands share it without importing each other.

use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_core::clone::{self as plan, CloneRecord};
use caretaker_core::config::Config;
use std::path::{Path, PathBuf};

/// Set on a clone's daemon (and inherited by everything it starts): the clone's directory.
/// Loading the config under it yields the clone's config ([`as_clone`]).
pub const CLONE_DIR_ENV: &str = "CARETAKER_CLONE_DIR";
pub const RECORD: &str = "clone.json";

/// The config as the clone of [`CLONE_DIR_ENV`] runs it, or `cfg` unchanged outside a clone.
pub fn as_clone(cfg: Config) -> Result<Config> {
    let Some(dir) = std::env::var_os(CLONE_DIR_ENV).filter(|v| !v.is_empty()) else { return Ok(cfg) };
    let dir = PathBuf::from(dir);
    let rec = read_record(&dir).ok_or_else(|| {
        Failure::new(Code::Config, format!("{CLONE_DIR_ENV}={}: no clone record there", dir.display()))
    })?;
    Ok(plan::clone_config(&cfg, &plan_of(&rec, &dir)))
}

pub fn plan_of(rec: &CloneRecord, dir: &Path) -> plan::ClonePlan {
    plan::ClonePlan {
        name: rec.name.clone(),
        state_dir: dir.join("state"),
        ports: rec.ports.clone(),
        database: rec.database.clone(),
        files: rec.files.clone(),
        release: rec.release.clone(),
    }
}

pub fn read_record(dir: &Path) -> Option<CloneRecord> {
    serde_json::from_slice(&std::fs::read(dir.join(RECORD)).ok()?).ok()
}
