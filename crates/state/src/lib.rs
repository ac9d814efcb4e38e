//! caretaker's state directory: everything caretaker remembers, crash-safe.
//!
//! Layout (see docs/state.md):
//!
//! ```text
//! <state dir>/            mode 0700
//!   state.db              SQLite (WAL): jobs, events, key/value facts
//!   jobs/<id>.log         one log file per job, mode 0600
//!   locks/app.lock        flock()ed while a mutating job runs
//! ```
//!
//! Architecture invariant: a job's record is written *before* the job does anything, and its
//! outcome *after*; a process that dies in between leaves a `running` record that the next
//! caretaker turns into `interrupted` (see [`Store::open`]). The per-app lock is an `flock`,
//! which the kernel releases when its holder dies, so a crash can never leave it stuck.

mod lock;
mod observe;
mod process;
mod store;
mod tasks;

pub use lock::{AppLock, LockError};
pub use observe::JobKindStats;
pub use process::ProcessIdentity;
pub use store::{Event, JobHandle, JobRecord, StateError, Store};
pub use tasks::TaskJobs;
