//! Local repositories: rustic_backend's `LocalBackend` for reading and removing, with the
//! files and directories created as stock restic creates them: directories 0700, files 0400
//! (the key files hold the master key, encrypted with the password: no other local user may
//! copy them for an offline password attack). rustic_backend creates them 0755/0644.
//!
//! Modes of an existing repository are left as they are; only what is created gets restic's.

use rustic_backend::local::LocalBackend;
use rustic_core::{BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend};
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of the repository's directories, as restic's local backend.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the repository's files, as restic's local backend (read-only: written once).
pub const FILE_MODE: u32 = 0o400;

#[derive(Debug)]
pub struct PrivateLocalBackend {
    inner: LocalBackend,
    root: PathBuf,
}

impl PrivateLocalBackend {
    pub fn new(root: &Path) -> RusticResult<Self> {
        let inner = LocalBackend::new(root.to_string_lossy(), Vec::<(String, String)>::new())?;
        Ok(PrivateLocalBackend { inner, root: root.to_path_buf() })
    }

    fn path(&self, tpe: FileType, id: &Id) -> PathBuf {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => self.root.join("config"),
            FileType::Pack => self.root.join("data").join(&hex[..2]).join(hex.as_str()),
            _ => self.root.join(tpe.dirname()).join(hex.as_str()),
        }
    }
}

fn io_err(what: &'static str, path: &Path, err: std::io::Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::InputOutput, what, err).attach_context("path", path.display().to_string())
}

fn mkdir(path: &Path) -> RusticResult<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|e| io_err("Failed to create the directory `{path}`.", path, e))
}

impl ReadBackend for PrivateLocalBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }
    fn list(&self, tpe: FileType) -> RusticResult<Vec<Id>> {
        self.inner.list(tpe)
    }
    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<bytes::Bytes> {
        self.inner.read_full(tpe, id)
    }
    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<bytes::Bytes> {
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }
    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for PrivateLocalBackend {
    /// The repository's directories, as restic creates them (also `data/00` … `data/ff`).
    fn create(&self) -> RusticResult<()> {
        mkdir(&self.root)?;
        for d in ["keys", "snapshots", "index", "locks", "data"] {
            mkdir(&self.root.join(d))?;
        }
        for i in 0..=255u8 {
            mkdir(&self.root.join("data").join(format!("{i:02x}")))?;
        }
        Ok(())
    }

    /// Writes under a temporary name created 0400, synced, then renamed into place (as
    /// rustic_backend does, with restic's mode).
    fn write_bytes(&self, tpe: FileType, id: &Id, _cacheable: bool, content: BytesList) -> RusticResult<()> {
        let path = self.path(tpe, id);
        let dir = path.parent().unwrap_or(&self.root);
        mkdir(dir)?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!("{name}-tmp-{}-{n}", std::process::id()));
        // A leftover of a killed run is read-only: remove it rather than open it.
        let _ = std::fs::remove_file(&tmp);
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&tmp)
                .map_err(|e| io_err("Failed to create the file `{path}`.", &tmp, e))?;
            for b in content.into_vec() {
                f.write_all(&b).map_err(|e| io_err("Failed to write the file `{path}`.", &tmp, e))?;
            }
            f.sync_all().map_err(|e| io_err("Failed to sync the file `{path}`.", &tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io_err("Failed to rename a file to `{path}`.", &path, e))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.inner.remove(tpe, id, cacheable)
    }
}
