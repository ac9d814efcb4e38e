//! The per-app lock for mutating jobs: an exclusive `flock` on `locks/app.lock`.
//!
//! Why flock and not a row in the database: the kernel drops an flock when the holding
//! process dies, however it dies, so there is no stale lock to detect or break. The database
//! records *which job* holds it, for messages and for marking that job `interrupted`.

use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another caretaker job holds the lock {path}")]
    Busy { path: PathBuf },
    #[error("cannot open lock file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Held while a mutating job runs; released on drop (or by the kernel if the process dies).
#[derive(Debug)]
pub struct AppLock {
    _file: File,
    path: PathBuf,
}

impl AppLock {
    /// Takes the lock without waiting.
    pub fn try_acquire(path: &Path) -> Result<AppLock, LockError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| LockError::Io { path: path.to_path_buf(), source })?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(AppLock { _file: file, path: path.to_path_buf() }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(LockError::Busy { path: path.to_path_buf() }),
            Err(e) => Err(LockError::Io { path: path.to_path_buf(), source: e.into() }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.lock");
        let a = AppLock::try_acquire(&p).unwrap();
        assert!(matches!(AppLock::try_acquire(&p), Err(LockError::Busy { .. })));
        drop(a);
        AppLock::try_acquire(&p).unwrap();
    }
}
