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
use std::ops::Range;
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

/// Bytes of small files handed to one thread at a time (see [`batches`]).
const BATCH_BYTES: u64 = 8 << 20;

/// Splits `files` (in path order) into runs of files of one directory, each up to
/// [`BATCH_BYTES`] (a larger file is a run of its own). Threads take whole runs, so two
/// threads seldom create files in the same directory at once: creating a file locks its
/// directory, and four threads filling one directory with small files spent most of the
/// restore spinning on that lock (measured: 10–15 s of system time for 20k small files,
/// against restic's 4 s; docs/benchmarks.md).
fn batches(files: &[(PathBuf, Node)]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, (path, node)) in files.iter().enumerate() {
        let size = node.meta.size;
        let joins =
            out.last().is_some_and(|run| bytes + size <= BATCH_BYTES && files[run.start].0.parent() == path.parent());
        match out.last_mut() {
            Some(run) if joins => {
                run.end = i + 1;
                bytes += size;
            }
            _ => {
                out.push(i..i + 1);
                bytes = size;
            }
        }
    }
    out
}

/// Writes the contents of `files`; returns one message per file that could not be written
/// (a damaged pack gives an error for that file, the others are still written).
pub(crate) fn write_files(repo: &Repository<IndexedFullStatus>, files: &[(PathBuf, Node)]) -> Vec<String> {
    let runs = batches(files);
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..FILES_IN_FLIGHT.min(runs.len()) {
            s.spawn(|| {
                while let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    for (path, node) in &files[run.clone()] {
                        write_one(repo, path, node, &errors);
                    }
                }
            });
        }
    });
    errors.into_inner().unwrap()
}

/// Writes one file, recording its error.
fn write_one(repo: &Repository<IndexedFullStatus>, path: &Path, node: &Node, errors: &Mutex<Vec<String>>) {
    let res =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_file(repo, path, node))).unwrap_or_else(|p| {
            Err(Error::new(
                ErrorKind::Corrupt,
                format!("the repository data is damaged ({})", crate::restic::panic_text(&*p)),
            ))
        });
    if let Err(e) = res {
        errors.lock().unwrap().push(format!("{}: {e}", path.display()));
    }
}

fn write_file(repo: &Repository<IndexedFullStatus>, path: &Path, node: &Node) -> Result<()> {
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |e: std::io::Error| Error::io(what.clone(), &e)
    };
    let file = match open_for_writing(path) {
        // The directory is missing (rustic's restorer creates directories afterwards): only
        // then create it, as a `mkdir` per file also locks the directory.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating the directory of"))?;
            }
            open_for_writing(path)
        }
        other => other,
    }
    .map_err(io("writing"))?;
    let mut w = BufWriter::with_capacity(usize::try_from(node.meta.size).unwrap_or(0).clamp(4096, 1 << 20), file);
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::repofile::{Metadata, NodeType};

    fn file(path: &str, size: u64) -> (PathBuf, Node) {
        let meta = Metadata { size, ..Metadata::default() };
        (PathBuf::from(path), Node::new_node(std::ffi::OsStr::new("f"), NodeType::File, meta))
    }

    #[test]
    fn runs_keep_to_one_directory_and_a_size() {
        let files = vec![
            file("/r/a/1", 100),
            file("/r/a/2", 100),
            file("/r/b/1", 100),
            file("/r/b/big", 20 << 20),
            file("/r/b/2", 5 << 20),
            file("/r/b/3", 3 << 20),
            file("/r/b/4", 1),
            file("/r/c/1", 0),
        ];
        assert_eq!(batches(&files), vec![0..2, 2..3, 3..4, 4..6, 6..7, 7..8]);
        assert_eq!(batches(&[]), Vec::<Range<usize>>::new());
    }
}
