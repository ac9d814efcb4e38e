//! Job figures: what a finished job measured, one type per job kind. The operation writes
//! them (as JSON, the `figures` column of the job log) and every reader — `/metrics`,
//! alerting, the status page, `caretaker jobs` — reads them back through the same type.
//!
//! Reading tolerates rows written by older caretakers: every field is optional or defaults
//! to empty, unknown fields are ignored, and a row that does not decode at all reads as the
//! default (no figures) rather than failing the reader.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Figures of a job, as they are stored.
pub trait Figures: Serialize + DeserializeOwned + Default {
    /// The JSON stored in the job log.
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Reads stored figures; missing or unreadable ones read as the default.
    fn from_json(v: &serde_json::Value) -> Self {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }
}

/// The repository as a whole, measured after a backup or a prune.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RepositoryFigures {
    /// Snapshots in the repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<u64>,
    /// Bytes of all the repository's files (packs, index, snapshots, keys, config) as its
    /// storage lists them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_size_bytes: Option<u64>,
}

/// `backup`: one snapshot taken. `bytes_read` is the snapshot's size (all its files and
/// streams), `bytes_added` what it added to the repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupFigures {
    pub snapshot_id: Option<String>,
    /// False when files could not be read (the snapshot is kept, marked partial).
    pub complete: Option<bool>,
    pub read_errors: Vec<String>,
    pub bytes_read: Option<u64>,
    pub bytes_added: Option<u64>,
    pub files: Option<u64>,
    pub files_new: Option<u64>,
    pub files_changed: Option<u64>,
    /// Seconds.
    pub duration: Option<f64>,
    /// The safety measurement stored with the snapshot (the backup engine's type).
    pub measurement: Option<serde_json::Value>,
    #[serde(flatten)]
    pub repository: RepositoryFigures,
}

/// `prune`: snapshots removed by the retention policy, data freed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PruneFigures {
    pub removed_snapshots: Vec<String>,
    /// Kept snapshots with the rules that kept them.
    pub kept_snapshots: Vec<(String, Vec<String>)>,
    pub packs_removed: Option<u64>,
    pub bytes_freed: Option<u64>,
    #[serde(flatten)]
    pub repository: RepositoryFigures,
}

/// `backup_check`: problems found in the repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupCheckFigures {
    pub errors: Option<u64>,
    pub warnings: Option<u64>,
}

/// `restore`: what came back from which snapshot. The parts are the reports of the file,
/// database and volume restores.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestoreFigures {
    pub snapshot: Option<String>,
    pub files: Option<serde_json::Value>,
    /// Where the snapshot's config file was written (next to the live one unless replaced).
    pub config: Option<String>,
    pub database: Option<serde_json::Value>,
    pub volumes: Vec<serde_json::Value>,
    /// What a forced restore kept aside (what, kept_as).
    pub kept_aside: Vec<serde_json::Value>,
}

/// One step of `recover`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecoverStep {
    pub step: String,
    pub seconds: f64,
    pub what: String,
}

/// `recover`: a machine rebuilt from the backup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecoverFigures {
    pub steps: Vec<RecoverStep>,
    pub seconds: Option<f64>,
    /// The interrupted recover job this run finished, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_job: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The code that was rebuilt (release, commit), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<serde_json::Value>,
}

/// `check`: the deployment checks' worst status and how many ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckFigures {
    pub status: Option<String>,
    pub checks: Option<u64>,
}

/// `update` and `rollback`: the release, and for a failed update where it failed and what
/// the rollback did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateFigures {
    /// The release updated to (`rollback`: the release rolled back to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Whether migrations were needed (`None`: not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations: Option<bool>,
    /// The database snapshot taken before the switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// `rollback`: the release that served before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `update --resume` that found nothing to resume: `Some(false)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_reverted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_seconds: Option<f64>,
}

/// `db_snapshot`, `db_revert`, `db_prune`: the database's own snapshots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DbSnapshotFigures {
    /// The snapshot taken or reverted to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// `db_revert`: where the previous contents were kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_aside: Option<String>,
    /// `db_prune`: the snapshots removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// `db_prune`: how many copies the policy kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<usize>,
    /// `db_revert`: services restarted because the database was replaced under them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restarted: Vec<String>,
}

/// `command`: one of the config's scheduled app commands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandFigures {
    /// The command's name in the config's `jobs:` section.
    pub name: Option<String>,
    pub duration_seconds: Option<f64>,
    /// How it ended ("exit 0", "killed by signal 9"); `None` when it could not start.
    pub exit: Option<String>,
}

/// `deps`: the dependency report (docs/deps.md). The counts feed `/metrics` and the
/// `dependencies_vulnerable` rule; the lists feed the status page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DepsFigures {
    /// Resolved dependencies read.
    pub packages: Option<u64>,
    /// Vulnerable packages (a package with several vulnerabilities counts once); `None` when
    /// vulnerabilities were not checked (no OSV database yet).
    pub vulnerable: Option<u64>,
    /// Vulnerabilities found (one per advisory after merging aliases).
    pub vulnerabilities: Option<u64>,
    pub vulnerable_packages: Vec<String>,
    /// Outdated packages; `None` when no package index was asked or reachable.
    pub outdated: Option<u64>,
    /// The date of the OSV database the report used.
    pub database_date: Option<String>,
    /// Each vulnerability with all its advisory IDs (written since the status page shows them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<DepsFinding>,
    /// Each outdated package.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outdated_packages: Vec<OutdatedPackage>,
    /// Why vulnerabilities were not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vulnerabilities_not_checked: Option<String>,
    /// Why outdated packages were not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outdated_not_checked: Option<String>,
}

/// One vulnerability of an installed package in [`DepsFigures`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DepsFinding {
    pub package: String,
    pub version: String,
    /// Every ID the vulnerability is known by (OSV id and aliases), sorted.
    pub ids: Vec<String>,
    pub summary: Option<String>,
    /// Versions that fix it, lowest first.
    pub fixed_in: Vec<String>,
}

/// One outdated package in [`DepsFigures`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutdatedPackage {
    pub package: String,
    pub version: String,
    /// The version it is compared with (the newest of its line).
    pub compared_with: Option<String>,
    /// The newest release overall.
    pub latest: Option<String>,
    /// Its release line (`"4.2 LTS"`, `"3"`).
    pub line: String,
}

impl Figures for RepositoryFigures {}
impl Figures for BackupFigures {}
impl Figures for PruneFigures {}
impl Figures for BackupCheckFigures {}
impl Figures for RestoreFigures {}
impl Figures for RecoverFigures {}
impl Figures for CheckFigures {}
impl Figures for UpdateFigures {}
impl Figures for DbSnapshotFigures {}
impl Figures for CommandFigures {}
impl Figures for DepsFigures {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backup_figures_keep_the_stored_json_shape() {
        let f = BackupFigures {
            snapshot_id: Some("abc".into()),
            bytes_read: Some(10),
            bytes_added: Some(4),
            repository: RepositoryFigures { snapshots: Some(3), repository_size_bytes: Some(99) },
            ..Default::default()
        };
        let v = f.to_json();
        assert_eq!(v["snapshots"], 3);
        assert_eq!(v["repository_size_bytes"], 99);
        assert_eq!(v["bytes_added"], 4);
        assert_eq!(BackupFigures::from_json(&v), f);
    }

    #[test]
    fn old_rows_read_with_what_they_have() {
        // A backup row from before repository figures were recorded, with an unknown key.
        let old = json!({"snapshot_id": "abc", "bytes_read": 10, "bytes_added": 4, "duration": 1.5, "later": [1]});
        let f = BackupFigures::from_json(&old);
        assert_eq!(f.bytes_added, Some(4));
        assert_eq!(f.repository, RepositoryFigures::default());
        // Empty or mistyped figures read as none rather than failing the reader.
        assert_eq!(PruneFigures::from_json(&json!({})), PruneFigures::default());
        assert_eq!(PruneFigures::from_json(&serde_json::Value::Null), PruneFigures::default());
        assert_eq!(BackupFigures::from_json(&json!({"bytes_added": "many"})), BackupFigures::default());
    }

    #[test]
    fn prune_figures_read_the_engine_report() {
        let v = json!({"removed_snapshots": ["a"], "kept_snapshots": [["b", ["last"]]], "packs_removed": 2,
                       "bytes_freed": 500, "snapshots": 1, "repository_size_bytes": 800});
        let f = PruneFigures::from_json(&v);
        assert_eq!(f.kept_snapshots, vec![("b".to_string(), vec!["last".to_string()])]);
        assert_eq!(f.repository.snapshots, Some(1));
        assert_eq!(f.to_json(), v);
    }
}
