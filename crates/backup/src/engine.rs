//! caretaker's backup engine interface: what the rest of caretaker may ask of a repository.
//! One real implementation ([`crate::restic::ResticRepository`], restic format through
//! rustic_core); the database adapter only needs [`StreamSource`] and
//! [`BackupEngine::restore_stream`].

use crate::error::Result;
use crate::safety::{Measurement, SafetyPolicy};
use crate::stream::StreamSource;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// One file tree to back up.
#[derive(Clone, Debug)]
pub struct TreeSpec {
    pub path: PathBuf,
    pub exclude: Vec<String>,
}

/// What one backup run saves.
#[derive(Clone, Debug, Default)]
pub struct BackupRequest {
    pub trees: Vec<TreeSpec>,
    /// Single files stored at their own path, like the config file (so that it can be restored).
    pub files: Vec<PathBuf>,
    /// Tags on the snapshot (app name, app version, caretaker version).
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot; `None` = this machine's.
    pub host: Option<String>,
    pub policy: SafetyPolicy,
}

impl Default for SafetyPolicy {
    fn default() -> Self {
        SafetyPolicy { allow_empty: Vec::new(), max_shrink_percent: 100 }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    pub snapshot_id: String,
    /// False when files could not be read: the snapshot is kept but marked partial.
    pub complete: bool,
    pub read_errors: Vec<String>,
    pub bytes_read: u64,
    pub bytes_added: u64,
    pub files: u64,
    pub files_new: u64,
    pub files_changed: u64,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    pub measurement: Measurement,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub short_id: String,
    pub time: jiff::Timestamp,
    pub hostname: String,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
    /// Complete and verified by caretaker (not partial, not left over by a crash).
    pub complete: bool,
    /// Written by caretaker but not yet verified: left by a crash, removed by the next run.
    pub pending: bool,
    pub bytes: u64,
    pub files: u64,
    pub measurement: Option<Measurement>,
}

/// How much of the pack data `check` reads back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    /// Structure only: index, snapshots and trees.
    None,
    All,
    /// A random subset of this percentage of the data.
    Percent(f64),
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreWhat {
    All,
    FilesOnly,
    StreamsOnly,
}

#[derive(Clone, Debug)]
pub struct RestoreRequest {
    /// Snapshot id or prefix; `None` = the newest complete snapshot.
    pub snapshot: Option<String>,
    pub what: RestoreWhat,
    /// Restore below this directory (keeping absolute paths) instead of to the original paths.
    /// Streams are written to `<target>/caretaker-streams/<name>`; without a target they are
    /// left to the database adapter ([`BackupEngine::restore_stream`]).
    pub target: Option<PathBuf>,
    /// Paths of the snapshot not to restore (`recover` keeps the config file it was given).
    pub skip: Vec<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub snapshot_id: String,
    pub restored: Vec<PathBuf>,
    pub streams_written: Vec<(String, PathBuf, u64)>,
    /// Streams in the snapshot not restored (no target given: the database adapter's job).
    pub streams_skipped: Vec<String>,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PruneReport {
    pub removed_snapshots: Vec<String>,
    pub kept_snapshots: Vec<(String, Vec<&'static str>)>,
    pub packs_removed: u64,
    pub bytes_freed: u64,
}

/// The backup repository, as caretaker uses it.
pub trait BackupEngine {
    /// Creates the repository; fails with `AlreadyInitialized` if there is one.
    fn init(&self) -> Result<()>;
    /// Every snapshot, oldest first.
    fn snapshots(&self) -> Result<Vec<SnapshotInfo>>;
    /// Safety checks, then one snapshot of the trees, files and streams. A failed stream
    /// leaves no snapshot; unreadable files give a snapshot marked partial (`complete: false`).
    fn backup(&self, req: &BackupRequest, streams: Vec<Box<dyn StreamSource>>) -> Result<BackupReport>;
    fn check(&self, read: ReadData) -> Result<CheckReport>;
    /// Applies the retention policy (never removing the newest complete snapshot), then
    /// removes unreferenced data.
    fn prune(&self, keep: &caretaker_core::config::Keep) -> Result<PruneReport>;
    fn restore(&self, req: &RestoreRequest) -> Result<RestoreReport>;
    /// Writes one stream of a snapshot to `out` (for the database adapter); returns its size.
    fn restore_stream(&self, snapshot: Option<&str>, name: &str, out: &mut dyn Write) -> Result<u64>;
}
