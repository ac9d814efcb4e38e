//! A tree restore: file contents with bounded memory (rustic_core fact 5, docs/backup.md),
//! never a damaged file under its real name, every file type.
//!
//! rustic_core's restorer reads packs on 20 threads and queues every decrypted blob as a write
//! task; nothing bounds that queue, so a 1 GiB restore buffered about 1 GB. Here each file is
//! written by [`Repository::dump`] (blob by blob, a few blobs in flight), a few files at a
//! time, under a temporary name that becomes the real one once the content is complete, and
//! its modification time is set to the snapshot's. rustic's restorer runs afterwards for
//! everything else (directories, symlinks, special files, the other names of hard-linked
//! files, modes, owners, times): it accepts a file whose size and modification time match the
//! snapshot without reading it again, so it writes no file contents itself. Only the first
//! name of a hard-linked inode is written here; rustic links the others to it, and fails with
//! "File exists" if anything is at their place already, so that is removed first.

use crate::error::{Error, ErrorKind, Result};
use rustic_core::repofile::{Node, NodeType};
use rustic_core::{IndexedFullStatus, LocalDestination, LsOptions, Repository, RestoreOptions, RusticError};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Files written at the same time. Each [`Repository::dump`] keeps a few blobs in flight, so
/// memory is about `FILES_IN_FLIGHT` × a few chunks (chunks are at most 8 MiB).
const FILES_IN_FLIGHT: usize = 4;

/// Prefix of the temporary names file contents are written under: a file gets its real name
/// only once its content is complete and verified, so a damaged pack or a killed restore never
/// leaves a partial file that looks restored (a killed restore can leave a
/// `.caretaker-restore-*` file behind; the next restore of that directory removes it).
pub(crate) const TEMP_PREFIX: &str = ".caretaker-restore-";

/// Restores the snapshot node `node` (a directory tree or one file) to `dest`.
///
/// File contents are written here with bounded memory, each under a temporary name and
/// renamed into place once verified; a file whose data is damaged is not written at all and
/// is listed in the error. rustic's restorer then creates everything else (directories,
/// symlinks, FIFOs, devices, the other names of hard-linked files) and sets the metadata; it
/// is not shown the damaged files (it would write them full-size with zeros in the holes).
pub(crate) fn tree(repo: &Repository<IndexedFullStatus>, node: &Node, dest: &Path, repo_name: &str) -> Result<()> {
    let err = |e: Box<RusticError>| Error::rustic("restoring", repo_name, &e);
    let mut dest_str = dest.to_string_lossy().to_string();
    if node.is_dir() && !dest_str.ends_with('/') {
        dest_str.push('/');
    }
    let ldest = LocalDestination::new(&dest_str, true, !node.is_dir()).map_err(err)?;
    let ls = repo.ls(node, &LsOptions::default().recursive(true)).map_err(err)?;
    let plan = plan(ls.clone(), node.is_dir(), dest).map_err(err)?;
    clear(&plan.replaced)?;
    let damaged = write_files(repo, &plan.files);
    remove_leftovers(&plan.dirs);
    // The damaged files and every other name of their inodes are left out of rustic's part.
    let mut skip = BTreeSet::new();
    for (i, _) in &damaged {
        let f = &plan.files[*i];
        skip.insert(f.rel.clone());
        if let Some(names) = hardlink_key(&f.node).and_then(|k| plan.links.get(&k)) {
            skip.extend(names.iter().cloned());
        }
    }
    let ls = ls.filter(move |e| !matches!(e, Ok((rel, _)) if skip.contains(rel)));
    let opts = RestoreOptions::default();
    let rest = catch_unwind(AssertUnwindSafe(|| {
        let prepared = repo.prepare_restore(&opts, ls.clone(), &ldest, false).map_err(err)?;
        repo.restore(prepared, &opts, ls, &ldest).map_err(err)
    }))
    .unwrap_or_else(|p| {
        Err(Error::new(
            ErrorKind::Corrupt,
            format!("the repository data is damaged ({})", crate::restic::panic_text(&*p)),
        ))
    });
    if damaged.is_empty() {
        return rest;
    }
    let n = damaged.len();
    let mut listed: Vec<String> =
        damaged.iter().take(5).map(|(i, e)| format!("{}: {e}", plan.files[*i].path.display())).collect();
    if n > 5 {
        listed.push(format!("and {} more", n - 5));
    }
    if let Err(e) = rest {
        listed.push(format!("and restoring the rest failed: {e}"));
    }
    let corrupt = damaged.iter().any(|(_, e)| e.kind == ErrorKind::Corrupt);
    let (kind, hint) = match &damaged[0].1 {
        _ if corrupt => (ErrorKind::Corrupt, Some(CHECK_HINT.to_string())),
        first => (first.kind, first.hint.clone()),
    };
    let why = if corrupt { ", their data in the repository is damaged" } else { "" };
    let err = Error::new(
        kind,
        format!("{n} file(s) not restored{why} (nothing was written under their names): {}", listed.join("; ")),
    );
    Err(match hint {
        Some(h) => err.hint(h),
        None => err,
    })
}

/// A regular file whose content is written here.
pub(crate) struct PlannedFile {
    /// The path as rustic's node stream gives it (relative to the restored node).
    pub rel: PathBuf,
    /// Where it is written.
    pub path: PathBuf,
    pub node: Node,
}

/// What [`tree`] does before rustic's restorer runs.
#[derive(Default)]
pub(crate) struct Plan {
    /// Regular files to write: every file, but only the first name of a hard-linked inode
    /// (rustic's restorer links the other names to it, as stock restic does).
    pub files: Vec<PlannedFile>,
    /// The other names of each hard-linked inode, as node-stream paths.
    pub links: BTreeMap<(u64, u64), Vec<PathBuf>>,
    /// Destination paths rustic's restorer creates anew (other names of hard-linked files,
    /// symlinks, FIFOs, devices, sockets): something other than a directory already there
    /// (left by an earlier restore) is removed first, otherwise rustic fails to create the
    /// link ("File exists") or keeps a stale symlink.
    pub replaced: Vec<PathBuf>,
    /// The directories written to, where a killed restore may have left temporary files.
    pub dirs: Vec<PathBuf>,
}

/// The same key rustic's restorer uses to find the names of one inode.
fn hardlink_key(node: &Node) -> Option<(u64, u64)> {
    (node.is_file() && node.meta.links > 1 && node.meta.device_id != 0 && node.meta.inode != 0)
        .then_some((node.meta.device_id, node.meta.inode))
}

/// Plans the restore of `entries` (the node stream of the snapshot node restored to `dest`;
/// for a directory node its entries relative to it, for a file node the file itself).
pub(crate) fn plan(
    entries: impl Iterator<Item = rustic_core::RusticResult<(PathBuf, Node)>>,
    root_is_dir: bool,
    dest: &Path,
) -> std::result::Result<Plan, Box<rustic_core::RusticError>> {
    let mut plan = Plan::default();
    let mut first_names = BTreeSet::new();
    let top = if root_is_dir { Some(dest) } else { dest.parent() };
    plan.dirs.extend(top.map(Path::to_path_buf));
    for e in entries {
        let (rel, node) = e?;
        let path = if root_is_dir { dest.join(&rel) } else { dest.to_path_buf() };
        match &node.node_type {
            NodeType::File => match hardlink_key(&node) {
                Some(key) if !first_names.insert(key) => {
                    plan.links.entry(key).or_default().push(rel);
                    plan.replaced.push(path);
                }
                _ => plan.files.push(PlannedFile { rel, path, node }),
            },
            NodeType::Dir => plan.dirs.push(path),
            _ => plan.replaced.push(path),
        }
    }
    Ok(plan)
}

/// Removes the temporary files a killed restore left in `dirs` (this restore's own are all
/// renamed or removed by now; restores of one app are serialised by its lock).
fn remove_leftovers(dirs: &[PathBuf]) {
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else { continue };
        for e in rd.flatten() {
            if e.file_name().as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes())
                && e.file_type().is_ok_and(|t| t.is_file())
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Removes what is at `paths`, unless it is a directory or missing.
fn clear(paths: &[PathBuf]) -> Result<()> {
    for p in paths {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            if !m.is_dir() {
                std::fs::remove_file(p).map_err(|e| Error::io(format!("replacing {}", p.display()), &e))?;
            }
        }
    }
    Ok(())
}

/// Bytes of small files handed to one thread at a time (see [`batches`]).
const BATCH_BYTES: u64 = 8 << 20;

/// Splits `files` (in path order) into runs of files of one directory, each up to
/// [`BATCH_BYTES`] (a larger file is a run of its own). Threads take whole runs, so two
/// threads seldom create files in the same directory at once: creating a file locks its
/// directory, and four threads filling one directory with small files spent most of the
/// restore spinning on that lock (measured: 10–15 s of system time for 20k small files,
/// against restic's 4 s; docs/benchmarks.md).
fn batches(files: &[PlannedFile]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, f) in files.iter().enumerate() {
        let size = f.node.meta.size;
        let joins = out
            .last()
            .is_some_and(|run| bytes + size <= BATCH_BYTES && files[run.start].path.parent() == f.path.parent());
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

/// Writes the contents of `files`; returns (index, error) for each file that could not be
/// written (a damaged pack gives an error for that file, the others are still written).
fn write_files(repo: &Repository<IndexedFullStatus>, files: &[PlannedFile]) -> Vec<(usize, Error)> {
    let runs = batches(files);
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..FILES_IN_FLIGHT.min(runs.len()) {
            s.spawn(|| {
                while let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    for i in run.clone() {
                        let f = &files[i];
                        if let Err(e) = write_file(repo, &f.path, &f.node) {
                            errors.lock().unwrap().push((i, e));
                        }
                    }
                }
            });
        }
    });
    let mut errors = errors.into_inner().unwrap();
    errors.sort_by_key(|(i, _)| *i);
    errors
}

/// Writes one regular file's content (a tree's file or a stream) to `path`: under a
/// temporary name in its directory, created 0600 (rustic's restorer sets the snapshot's mode
/// afterwards), renamed into place only after the whole content was read, decrypted
/// (authenticated, so damaged data fails) and has the node's size. On any failure nothing is
/// left under the temporary name and `path` is untouched.
pub(crate) fn write_file(repo: &Repository<IndexedFullStatus>, path: &Path, node: &Node) -> Result<()> {
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |e: std::io::Error| Error::io(what.clone(), &e)
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(temp_name());
    let file = match create_private(&tmp) {
        // The directory is missing (rustic's restorer creates directories afterwards): only
        // then create it, as a `mkdir` per file also locks the directory.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
            create_private(&tmp)
        }
        other => other,
    }
    .map_err(io("writing"))?;
    let written = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let cap = usize::try_from(node.meta.size).unwrap_or(0).clamp(4096, 1 << 20);
        let sparse = Sparse { file, pos: 0, file_pos: 0 };
        let mut w = Counting { inner: BufWriter::with_capacity(cap, sparse), n: 0 };
        repo.dump(node, &mut w).map_err(|e| damaged(&e))?;
        let n = w.n;
        let sparse = w.inner.into_inner().map_err(|e| e.into_error()).map_err(io("writing"))?;
        let file = sparse.finish().map_err(io("writing"))?;
        if n != node.meta.size {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("{n} bytes in the repository, {} bytes in the snapshot", node.meta.size),
            ));
        }
        if let Some(mtime) = node.meta.mtime {
            file.set_modified(mtime.into()).map_err(io("setting the modification time of"))?;
        }
        std::fs::rename(&tmp, path).map_err(io("writing"))
    }))
    .unwrap_or_else(|p| {
        Err(Error::new(
            ErrorKind::Corrupt,
            format!("the repository data is damaged ({})", crate::restic::panic_text(&*p)),
        ))
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A read failure of rustic's `dump` (a damaged or missing pack): one line, rustic's own
/// text once.
fn damaged(e: &RusticError) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("its data in the repository cannot be read ({})", crate::error::rustic_text(e)),
    )
    .hint(CHECK_HINT)
}

/// What to do about damaged data.
const CHECK_HINT: &str = "`caretaker backup check --read-data` names the damaged packs and the snapshots and files \
                          they hold; restore what is missing from an older snapshot";

fn temp_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{TEMP_PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Creates `path`, which must not exist, readable by its owner only.
fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Block size for holes: runs of whole zero blocks (aligned in the file) become holes.
const BLOCK: usize = 4096;

/// Writes zero blocks as holes, as `restic restore --sparse` does: a run of whole zero blocks
/// is skipped with a seek and the file is extended to its length at the end, so a sparse file
/// (a VM image, a database file) does not take its full size on disk, and a restore does not
/// run out of space where the original fitted. Contents and size are the same.
struct Sparse {
    file: File,
    /// The logical position: bytes written or skipped.
    pos: u64,
    /// The file's own offset.
    file_pos: u64,
}

impl Sparse {
    fn emit(&mut self, data: &[u8], zero: bool) -> std::io::Result<()> {
        if !zero {
            if self.file_pos != self.pos {
                self.file.seek(SeekFrom::Start(self.pos))?;
            }
            self.file.write_all(data)?;
            self.file_pos = self.pos + data.len() as u64;
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Extends the file over a trailing hole.
    fn finish(self) -> std::io::Result<File> {
        if self.file_pos != self.pos {
            self.file.set_len(self.pos)?;
        }
        Ok(self.file)
    }
}

impl Write for Sparse {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let base = self.pos;
        let (mut run_start, mut run_zero) = (0, None);
        let mut i = 0;
        while i < buf.len() {
            let in_block = ((base + i as u64) % BLOCK as u64) as usize;
            let end = (i + BLOCK - in_block).min(buf.len());
            let block = &buf[i..end];
            let zero = block.len() == BLOCK
                && block.chunks_exact(16).all(|c| u128::from_ne_bytes(c.try_into().unwrap_or_default()) == 0);
            match run_zero {
                Some(z) if z != zero => {
                    self.emit(&buf[run_start..i], z)?;
                    run_start = i;
                    run_zero = Some(zero);
                }
                Some(_) => {}
                None => run_zero = Some(zero),
            }
            i = end;
        }
        if let Some(z) = run_zero {
            self.emit(&buf[run_start..], z)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A writer that counts the bytes written through it (also used by `restic`'s stream restore).
pub(crate) struct Counting<W> {
    pub(crate) inner: W,
    pub(crate) n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::repofile::Metadata;

    fn file(path: &str, size: u64) -> PlannedFile {
        let meta = Metadata { size, ..Metadata::default() };
        let node = Node::new_node(std::ffi::OsStr::new("f"), NodeType::File, meta);
        PlannedFile { rel: PathBuf::from(path), path: PathBuf::from(path), node }
    }

    /// Zero blocks become holes, the rest is written: same contents and size whatever the
    /// write sizes, also with a hole at the end.
    #[test]
    fn sparse_writes_holes_and_the_same_contents() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 10 * BLOCK + 100];
        data[5] = 1; // the first block is data
        data[4 * BLOCK + 7] = 2; // block 4 too
        data[6 * BLOCK..6 * BLOCK + 10].fill(3); // block 6 too; 7.. are zeros to the end
        for chunk in [1, 1000, BLOCK, 3 * BLOCK + 5, data.len()] {
            let path = dir.path().join(format!("f{chunk}"));
            let mut w = Sparse { file: File::create(&path).unwrap(), pos: 0, file_pos: 0 };
            for c in data.chunks(chunk) {
                w.write_all(c).unwrap();
            }
            w.finish().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "writes of {chunk}");
        }
        let mut w = Sparse { file: File::create(dir.path().join("zeros")).unwrap(), pos: 0, file_pos: 0 };
        w.write_all(&[0; 3 * BLOCK]).unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(dir.path().join("zeros")).unwrap(), vec![0; 3 * BLOCK]);
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
