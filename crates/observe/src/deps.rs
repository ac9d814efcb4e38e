//! The dependency report's findings as observations: the figures of the newest successful
//! `deps` job (written by `caretaker deps`, docs/deps.md).

use caretaker_core::alert::DependenciesObs;
use caretaker_core::job::kind;
use caretaker_state::{StateError, Store};

/// The newest successful report's counts; `None` when no report succeeded yet (or its figures
/// are not a report's).
pub fn newest_report(store: &Store) -> Result<Option<DependenciesObs>, StateError> {
    let Some(job) = store.last_success(kind::DEPS)? else { return Ok(None) };
    Ok(serde_json::from_value(job.figures.clone()).ok())
}
