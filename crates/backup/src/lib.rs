//! caretaker's backup engine: restic-format repositories (readable by stock `restic`) written
//! through rustic_core, behind the small [`BackupEngine`] trait.
//!
//! - [`engine`]: the trait and its request/report types;
//! - [`restic`]: the one implementation;
//! - `restore`: a tree restore: file contents with bounded memory, every file type, never a
//!   damaged file under its real name;
//! - `damage`: the snapshots and files that damaged packs found by `check` hold;
//! - [`local`]: local repositories, with restic's file and directory modes;
//! - [`location`]: from the config's `backup.repository` to a storage backend;
//! - [`retry`]: the decorator that retries a remote repository's transient failures;
//! - [`s3`]: S3-compatible repositories over opendal's S3 service;
//! - [`sftp`]: SFTP repositories through the system's `ssh`;
//! - [`source`]: the snapshot source (file trees + config file + streams) that records errors;
//! - [`stream`]: [`StreamSource`], what the database adapter implements;
//! - [`safety`], [`retention`]: pure decisions, no I/O.

mod damage;
pub mod engine;
pub mod error;
pub mod local;
pub mod location;
pub mod restic;
mod restore;
pub mod retention;
pub mod retry;
pub mod s3;
pub mod safety;
pub mod sftp;
mod source;
pub mod stream;

pub use engine::*;
pub use error::{Error, ErrorKind, Result};
pub use restic::ResticRepository;
/// rustic_core's progress hook ([`ResticRepository::with_progress`]): the binary implements it
/// with terminal bars.
pub use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};
pub use safety::{Measurement, Refusal, SafetyPolicy};
pub use stream::StreamSource;
