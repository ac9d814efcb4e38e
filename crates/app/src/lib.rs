//! caretaker's operations on an app, as a library (issue 18): each operation is a function
//! that does its work, records its job, reports progress to a [`Progress`] sink and returns a
//! typed report or a typed [`Error`]. It prints nothing and chooses no exit code: the CLI
//! renders the report (text or JSON) and maps the error's class to an exit code in its
//! `exit.rs`; the daemon or a remote caller use the same functions.
//!
//! Moved here so far: the database snapshot operations (`db`). The others (backup, restore,
//! recover, update, checks) still live in the binary.

pub mod db;
mod error;
mod progress;

pub use error::{Cause, Class, Error, Result};
pub use progress::{NoProgress, Progress};
