//! The job model: every operation caretaker performs is a job with a kind, a trigger and an
//! outcome. The records live in the state store; this module only names things.

pub mod figures;

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a job ended (or that it has not yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Succeeded,
    Failed,
    /// The process running the job died (SIGKILL, power loss); found by the next caretaker.
    Interrupted,
    /// A safety check refused to proceed (empty database, suspicious shrink, non-empty target).
    Refused,
    /// A change failed and was undone: the app runs its previous version on its previous data.
    RolledBack,
    /// Finished, but not everything was done (e.g. unreadable files skipped).
    Partial,
    /// Never started: a scheduled task found the app lock held (the reason says by which
    /// job); the daemon retries it soon (docs/daemon.md).
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Running,
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::Interrupted,
        Outcome::Refused,
        Outcome::RolledBack,
        Outcome::Partial,
        Outcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Refused => "refused",
            Outcome::RolledBack => "rolled_back",
            Outcome::Partial => "partial",
            Outcome::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    pub fn is_success(self) -> bool {
        self == Outcome::Succeeded
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An operator ran a command.
    Cli,
    /// The daemon's scheduler.
    Schedule,
    /// caretaker itself, e.g. finishing an interrupted update on start.
    Recovery,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Schedule => "schedule",
            Trigger::Recovery => "recovery",
        }
    }

    pub fn parse(s: &str) -> Option<Trigger> {
        [Trigger::Cli, Trigger::Schedule, Trigger::Recovery].into_iter().find(|t| t.as_str() == s)
    }
}

/// Job kinds. A kind is a short word stored as text, so later kinds need no schema change.
pub mod kind {
    pub const BACKUP: &str = "backup";
    pub const PRUNE: &str = "prune";
    pub const BACKUP_CHECK: &str = "backup_check";
    pub const RESTORE: &str = "restore";
    pub const RECOVER: &str = "recover";
    pub const UPDATE: &str = "update";
    pub const ROLLBACK: &str = "rollback";
    pub const CHECK: &str = "check";
    pub const DRILL: &str = "drill";
    pub const CLONE: &str = "clone";
    /// A scheduled app command from the `jobs:` section of the config.
    pub const COMMAND: &str = "command";
    pub const DEMO: &str = "demo";
    /// The dependency report (`caretaker deps`).
    pub const DEPS: &str = "deps";
    /// One ACME order for the front door's certificate (docs/certificates.md).
    pub const CERTIFICATE: &str = "certificate";
}
