//! caretaker's fleet controller: one caretaker maintains many servers over SSH (docs/fleet.md).
//!
//! Pure parts (no I/O, time is an argument): [`inventory`] (fleet.yml and Ansible inventories),
//! [`edit`] (text edits of fleet.yml that keep its comments), [`hostkey`] (fingerprints),
//! [`sshconfig`] (the generated OpenSSH config), [`results`] (the servers' `tasks run-due`
//! JSON and what a run means for each task: backoff, what needs a human), [`digest`].
//!
//! Effects: [`ssh`] (the system OpenSSH client with one master connection per host),
//! [`store`] (controller state behind the [`store::FleetStore`] trait: SQLite by default,
//! PostgreSQL with leases for several controllers), [`run`] (a fleet run: bounded
//! parallelism, capped connection starts, per-host timeouts, a result stored after each task).

pub mod digest;
pub mod edit;
pub mod error;
pub mod hostkey;
pub mod install;
pub mod inventory;
pub mod metrics;
pub mod results;
pub mod run;
pub mod ssh;
pub mod sshconfig;
pub mod store;

pub use error::{Error, ErrorKind, Result};
