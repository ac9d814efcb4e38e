//! caretaker's core: everything that decides, nothing that touches the world.
//!
//! This crate holds the config model and its validation, durations and calendar schedules,
//! the job model and redaction of secrets. It performs no I/O: reading files and
//! environment variables happens behind the [`config::SecretSource`] trait that the binary
//! implements.
//!
//! Architecture invariant: no `std::fs`, `std::net`, `std::process` or clock reads in this
//! crate. Time comes in as an argument.

pub mod alert;
pub mod cert;
pub mod clone;
pub mod config;
pub mod duration;
pub mod envfile;
pub mod job;
pub mod metrics;
pub mod mode;
pub mod os;
pub mod recover;
pub mod reload;
pub mod schedule;
pub mod scheduler;
pub mod supervision;
pub mod tasks;
pub mod update;
