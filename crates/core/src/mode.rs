//! The app's mode: serving normally, in maintenance (on purpose), or in service mode (it
//! cannot run: crash loop, failed update, failed start). Stored as facts in the state store so
//! every caretaker process — CLI, daemon, front door — agrees, and a crash does not forget it.
//!
//! Service mode wins over maintenance: an operator who ends maintenance while the app is broken
//! must not expose the broken app. Service mode ends only by `caretaker reset-failed`, an
//! `up`/`restart` that gets every service healthy after a service failed, or a successful
//! update or recovery (docs/maintenance.md), like the appliance's `/run/appliance_failed` flag.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Fact key of maintenance mode (JSON of [`Maintenance`]).
pub const FACT_MAINTENANCE: &str = "mode.maintenance";
/// Fact key of the failed flag (JSON of [`Failed`]).
pub const FACT_FAILED: &str = "mode.failed";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    pub message: String,
    pub since: Timestamp,
    /// Who switched it on: `operator`, or the job (`update`, `restore`) that did.
    pub by: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    /// Why the app cannot run, for operators (the public page does not show it).
    pub reason: String,
    pub since: Timestamp,
}

/// What visitors get.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    Normal,
    Maintenance(Maintenance),
    Service(Failed),
}

impl Mode {
    /// The mode given the two stored facts (either may be absent).
    pub fn from_facts(maintenance: Option<Maintenance>, failed: Option<Failed>) -> Mode {
        match (failed, maintenance) {
            (Some(f), _) => Mode::Service(f),
            (None, Some(m)) => Mode::Maintenance(m),
            (None, None) => Mode::Normal,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Maintenance(_) => "maintenance",
            Mode::Service(_) => "service",
        }
    }

    pub fn is_normal(&self) -> bool {
        *self == Mode::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_mode_wins_over_maintenance() {
        let m = Maintenance { message: "upgrading".into(), since: Timestamp::UNIX_EPOCH, by: "operator".into() };
        let f = Failed { reason: "crash loop".into(), since: Timestamp::UNIX_EPOCH };
        assert_eq!(Mode::from_facts(Some(m.clone()), Some(f.clone())), Mode::Service(f));
        assert_eq!(Mode::from_facts(Some(m.clone()), None), Mode::Maintenance(m));
        assert_eq!(Mode::from_facts(None, None), Mode::Normal);
    }
}
