//! The database's snapshots by hand (`caretaker db snapshot`, `revert`, `prune`): each a
//! recorded job holding the app lock (no snapshot in the middle of a backup or migration).
//! The database adapter is the caller's: the app's runtime says where its tools run.

use crate::{Class, Error, Progress, Result};
use caretaker_core::job::figures::{DbSnapshotFigures, Figures};
use caretaker_core::job::{Outcome, Trigger};
use caretaker_db::{Database, Snapshot, SnapshotPolicy};
use caretaker_state::Store;

pub const KIND_SNAPSHOT: &str = "db_snapshot";
pub const KIND_REVERT: &str = "db_revert";
pub const KIND_PRUNE: &str = "db_prune";

/// A snapshot taken.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SnapshotReport {
    pub job: i64,
    pub name: String,
    pub seconds: f64,
}

/// Takes a snapshot of the database (`label` goes into its name).
pub fn snapshot(store: &Store, db: &dyn Database, label: Option<&str>, trigger: Trigger) -> Result<SnapshotReport> {
    let mut job = store.start_job(KIND_SNAPSHOT, trigger, true)?;
    let id = job.id();
    job.log(&format!("snapshot of {}", db.target()));
    let started = std::time::Instant::now();
    match db.snapshot(label) {
        Ok(s) => {
            let seconds = started.elapsed().as_secs_f64();
            job.log(&format!("took snapshot {} in {seconds:.2} s", s.name));
            let figures =
                DbSnapshotFigures { name: Some(s.name.clone()), duration_seconds: Some(seconds), ..Default::default() };
            job.finish(Outcome::Succeeded, figures.to_json(), None)?;
            Ok(SnapshotReport { job: id, name: s.name, seconds })
        }
        Err(e) => {
            job.log(&format!("failed: {e}"));
            job.finish(Outcome::Failed, serde_json::Value::Object(Default::default()), Some(&e.to_string()))?;
            Err(e.into())
        }
    }
}

/// The snapshot named `name`, or an [`Class::Invalid`] error naming the way to list them.
pub fn find(db: &dyn Database, name: &str) -> Result<Snapshot> {
    let copies = db.list_snapshots()?;
    copies.into_iter().find(|c| c.name == name).ok_or_else(|| {
        Error::new(Class::Invalid, format!("no snapshot named `{name}` of {}", db.target()))
            .hint("`caretaker db snapshots` lists them")
    })
}

/// A revert done.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RevertReport {
    pub job: i64,
    pub name: String,
    /// Where the contents before the revert are kept.
    pub kept_aside: String,
    pub seconds: f64,
    /// The services restarted because their connections went to the replaced database.
    pub restarted: Vec<String>,
}

/// Reverts the database to the snapshot `name`; its contents before are kept aside. Ends the
/// database's sessions, so it is refused unless `confirmed`. `restart_services` then restarts
/// the app's running services (their pooled connections went to the replaced database) and
/// says which; its failure is a warning, not a failed revert.
pub fn revert(
    store: &Store,
    db: &dyn Database,
    name: &str,
    confirmed: bool,
    trigger: Trigger,
    restart_services: &mut dyn FnMut() -> Result<Vec<String>, String>,
    progress: &mut dyn Progress,
) -> Result<RevertReport> {
    let snap = find(db, name)?;
    if !confirmed {
        return Err(Error::new(Class::Refused, format!("reverting {} to {name} ends its sessions", db.target()))
            .hint("stop the app first, then run again with --yes (the current contents are kept aside)"));
    }
    let mut job = store.start_job(KIND_REVERT, trigger, true)?;
    let id = job.id();
    job.log(&format!("revert {} to {name}", db.target()));
    let started = std::time::Instant::now();
    let aside = match db.revert(&snap) {
        Ok(aside) => aside,
        Err(e) => {
            job.log(&format!("failed: {e}"));
            let figures = DbSnapshotFigures { name: Some(name.to_string()), ..Default::default() };
            job.finish(Outcome::Failed, figures.to_json(), Some(&e.to_string()))?;
            return Err(e.into());
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    job.log(&format!("reverted in {seconds:.2} s; previous contents kept as {aside}"));
    progress.line(&format!("reverted to {name}; the previous contents are kept as {aside}"));
    let restarted = match restart_services() {
        Ok(r) => r,
        Err(e) => {
            job.log(&format!("restarting the services: {e}"));
            progress.warning(&format!("restarting the services failed ({e}): run `caretaker restart`"));
            Vec::new()
        }
    };
    if !restarted.is_empty() {
        job.log(&format!("restarted {}", restarted.join(", ")));
    }
    let figures = DbSnapshotFigures {
        name: Some(name.to_string()),
        kept_aside: Some(aside.to_string()),
        duration_seconds: Some(seconds),
        restarted: restarted.clone(),
        ..Default::default()
    };
    job.finish(Outcome::Succeeded, figures.to_json(), None)?;
    Ok(RevertReport { job: id, name: name.to_string(), kept_aside: aside.to_string(), seconds, restarted })
}

/// What a prune removed (or, dry, would remove).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PruneReport {
    /// `None` for a dry run (no job).
    pub job: Option<i64>,
    pub dry_run: bool,
    pub removed: Vec<String>,
    pub kept: usize,
}

/// Removes the snapshots (and kept-aside copies) `policy` does not keep at `now`. A dry run
/// removes nothing and records no job. Each removal goes to `progress` as it happens.
pub fn prune(
    store: &Store,
    db: &dyn Database,
    policy: &SnapshotPolicy,
    now: jiff::Timestamp,
    dry_run: bool,
    trigger: Trigger,
    progress: &mut dyn Progress,
) -> Result<PruneReport> {
    let copies = db.list_snapshots()?;
    let remove = caretaker_db::select_for_removal(&copies, policy, now);
    let kept = copies.len() - remove.len();
    if dry_run {
        let removed: Vec<String> = remove.iter().map(|c| c.name.clone()).collect();
        return Ok(PruneReport { job: None, dry_run, removed, kept });
    }
    let mut job = store.start_job(KIND_PRUNE, trigger, true)?;
    let id = job.id();
    let mut removed = Vec::new();
    for c in &remove {
        if let Err(e) = db.drop_snapshot(c) {
            job.log(&format!("failed to remove {}: {e}", c.name));
            let figures = DbSnapshotFigures { removed: removed.clone(), ..Default::default() }.to_json();
            job.finish(Outcome::Failed, figures, Some(&e.to_string()))?;
            return Err(e.into());
        }
        job.log(&format!("removed {}", c.name));
        progress.line(&format!("removed {}", c.name));
        removed.push(c.name.clone());
    }
    let figures = DbSnapshotFigures { removed: removed.clone(), kept: Some(kept), ..Default::default() };
    job.finish(Outcome::Succeeded, figures.to_json(), None)?;
    Ok(PruneReport { job: Some(id), dry_run, removed, kept })
}
