//! File contents of a tree restore, with bounded memory (rustic_core fact 5, docs/backup.md).
//!
//! rustic_core's restorer reads packs on 20 threads and queues every decrypted blob as a write
//! task; nothing bounds that queue, so a 1 GiB restore buffered about 1 GB. Here each file is
//! written by [`Repository::dump`] (blob by blob, a few blobs in flight), a few files at a
//! time, and its modification time is set to the snapshot's. rustic's restorer runs afterwards
//! for everything else (directories, symlinks, special files, modes, owners, times): it accepts
//! a file whose size and modification time match the snapshot without reading it again, so it
//! writes no file contents itself.

use crate::error::{Error, ErrorKind, Result};
use rustic_core::repofile::Node;
use rustic_core::{IndexedFullStatus, Repository};
use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Files written at the same time. Each [`Repository::dump`] keeps a few blobs in flight, so
/// memory is about `FILES_IN_FLIGHT` × a few chunks (chunks are at most 8 MiB).
const FILES_IN_FLIGHT: usize = 4;

/// The regular files below `root` (the snapshot node restored to `dest`), as (destination,
/// node): for a directory node its entries, for a file node the file itself.
pub(crate) fn files_of(
    entries: impl Iterator<Item = rustic_core::RusticResult<(PathBuf, Node)>>,
    root_is_dir: bool,
    dest: &Path,
) -> std::result::Result<Vec<(PathBuf, Node)>, Box<rustic_core::RusticError>> {
    let mut files = Vec::new();
    for e in entries {
        let (rel, node) = e?;
        if node.is_file() {
            let path = if root_is_dir { dest.join(rel) } else { dest.to_path_buf() };
            files.push((path, node));
        }
    }
    Ok(files)
}

/// Writes the contents of `files`; returns one message per file that could not be written
/// (a damaged pack gives an error for that file, the others are still written).
pub(crate) fn write_files(repo: &Repository<IndexedFullStatus>, files: &[(PathBuf, Node)]) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..FILES_IN_FLIGHT.min(files.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((path, node)) = files.get(i) else { break };
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_file(repo, path, node)))
                    .unwrap_or_else(|p| {
                        Err(Error::new(
                            ErrorKind::Corrupt,
                            format!("the repository data is damaged ({})", crate::restic::panic_text(&*p)),
                        ))
                    });
                if let Err(e) = res {
                    errors.lock().unwrap().push(format!("{}: {e}", path.display()));
                }
            });
        }
    });
    errors.into_inner().unwrap()
}

fn write_file(repo: &Repository<IndexedFullStatus>, path: &Path, node: &Node) -> Result<()> {
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |e: std::io::Error| Error::io(what.clone(), &e)
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating the directory of"))?;
    }
    let file = open_for_writing(path).map_err(io("writing"))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    repo.dump(node, &mut w).map_err(|e| Error::rustic("restoring", &path.display().to_string(), &e))?;
    let file = w.into_inner().map_err(|e| e.into_error()).map_err(io("writing"))?;
    if let Some(mtime) = node.meta.mtime {
        file.set_modified(mtime.into()).map_err(io("setting the modification time of"))?;
    }
    Ok(())
}

/// Creates or truncates `path` without following a symlink there (a symlink or other
/// non-file in the way is replaced; a read-only file left by an earlier restore is made
/// writable first — rustic sets the snapshot's mode afterwards).
fn open_for_writing(path: &Path) -> std::io::Result<File> {
    let open = || OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_NOFOLLOW).open(path);
    match open() {
        Ok(f) => Ok(f),
        Err(e) => match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Err(e),
            Ok(m) if m.is_file() => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(m.permissions().mode() | 0o600))?;
                open()
            }
            Ok(_) => {
                std::fs::remove_file(path)?;
                open()
            }
            Err(_) => Err(e),
        },
    }
}
