//! Restores of every file type (hard links, symlinks, FIFOs, sparse and empty files, unusual
//! modes and owners) against the original and stock `restic restore`; restores from damaged
//! packs; the modes of repository files and restored dumps.

mod common;

use caretaker_backup::location;
use caretaker_backup::*;
use common::{restic, PASSWORD};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn new_repo(dir: &Path) -> ResticRepository {
    let repo = location::local(&dir.join("repo"), PASSWORD).unwrap();
    repo.init().unwrap();
    repo
}

fn request(tree: &Path, exclude: &[&str]) -> BackupRequest {
    BackupRequest {
        trees: vec![TreeSpec { path: tree.to_path_buf(), exclude: exclude.iter().map(|s| s.to_string()).collect() }],
        files: vec![],
        tags: vec!["app:test".into()],
        host: Some("testhost".into()),
        policy: SafetyPolicy { allow_empty: vec![], max_shrink_percent: 50 },
    }
}

fn restore_to(repo: &ResticRepository, target: &Path) -> RestoreReport {
    repo.restore(&RestoreRequest {
        snapshot: None,
        what: RestoreWhat::All,
        target: Some(target.to_path_buf()),
        skip: vec![],
    })
    .unwrap()
}

fn under(target: &Path, tree: &Path) -> PathBuf {
    target.join(tree.strip_prefix("/").unwrap())
}

/// One entry of a tree as a restore must reproduce it.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    /// File content or symlink target.
    content: Vec<u8>,
    mtime: (i64, i64),
    /// For a regular file: its number of names and the first of its names in this tree (a
    /// plain file is its own first name).
    links: (u64, String),
}

/// Every entry below `root` (not `root` itself) by relative path, without following symlinks.
fn listing(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut first_name: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut all = vec![];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            all.push((p.strip_prefix(root).unwrap().to_string_lossy().to_string(), p, m));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, p, m) in all {
        let ft = m.file_type();
        let (kind, content) = if ft.is_dir() {
            ("dir", vec![])
        } else if ft.is_symlink() {
            ("symlink", std::fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec())
        } else if ft.is_file() {
            ("file", std::fs::read(&p).unwrap())
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
            ("fifo", vec![])
        } else {
            ("other", vec![])
        };
        let links = if ft.is_file() {
            let first = first_name.entry((m.dev(), m.ino())).or_insert_with(|| rel.clone()).clone();
            (m.nlink(), first)
        } else {
            (0, String::new())
        };
        let size = if ft.is_dir() { 0 } else { m.size() };
        let entry = Entry {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size,
            content,
            mtime: (m.mtime(), m.mtime_nsec()),
            links,
        };
        out.insert(rel, entry);
    }
    out
}

fn assert_same(restored: &BTreeMap<String, Entry>, original: &BTreeMap<String, Entry>, what: &str) {
    let names = |m: &BTreeMap<String, Entry>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(restored), names(original), "{what}: names");
    for (name, want) in original {
        assert_eq!(&restored[name], want, "{what}: {name}");
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn mkfifo(p: &Path) {
    assert_eq!(unsafe { libc::mkfifo(cstr(p).as_ptr(), 0o640) }, 0, "mkfifo {}", p.display());
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// Sets the modification time of `p` itself (not a symlink's target).
fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let t = libc::timespec { tv_sec: secs, tv_nsec: nsec };
    let times = [t, t];
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, cstr(p).as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

/// Gives every entry below `root` a distinct, old modification time, deepest first (a
/// directory's time changes when an entry is created in it).
fn age(root: &Path) {
    let mut entries: Vec<PathBuf> = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            entries.push(p);
        }
    }
    entries.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in entries.iter().enumerate() {
        set_mtime(p, 1_600_000_000 + i as i64 * 3600, 123_456_789 + i as i64);
    }
}

/// `restic restore` of `snapshot` from the local repository in `dir` into `target`.
fn restic_restore(restic: &Path, dir: &Path, snapshot: &str, target: &Path) {
    let pw = dir.join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let out = Command::new(restic)
        .args(["restore", snapshot, "--target"])
        .arg(target)
        .env("RESTIC_REPOSITORY", dir.join("repo"))
        .env("RESTIC_PASSWORD_FILE", &pw)
        .env("RESTIC_CACHE_DIR", dir.join("restic-cache"))
        .env_remove("RESTIC_PASSWORD")
        .output()
        .unwrap();
    assert!(out.status.success(), "restic restore: {}", String::from_utf8_lossy(&out.stderr));
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Hard links inside one directory, across directories, and an inode whose other name is
/// excluded from the backup (restored as a plain file), restored as stock restic restores
/// them; a second restore over the first gives the same tree.
#[test]
fn hard_links_are_restored_as_links_inside_and_across_directories() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("files");
    std::fs::create_dir_all(tree.join("a")).unwrap();
    std::fs::create_dir_all(tree.join("b")).unwrap();
    std::fs::write(tree.join("a/f1"), "linked content\n").unwrap();
    std::fs::set_permissions(tree.join("a/f1"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::hard_link(tree.join("a/f1"), tree.join("a/f2")).unwrap();
    std::fs::hard_link(tree.join("a/f1"), tree.join("f3")).unwrap();
    std::fs::write(tree.join("b/g1"), "other name excluded\n").unwrap();
    std::fs::hard_link(tree.join("b/g1"), tree.join("b/g1.excluded")).unwrap();
    std::fs::write(tree.join("b/plain"), "plain\n").unwrap();
    age(&tree);
    let repo = new_repo(dir.path());
    let report = repo.backup(&request(&tree, &["*.excluded"]), vec![]).unwrap();
    assert!(report.complete, "{:?}", report.read_errors);

    // What the restore must give: the tree without the excluded name, whose inode then has
    // one name.
    let mut want = listing(&tree);
    want.remove("b/g1.excluded");
    want.get_mut("b/g1").unwrap().links.0 = 1;
    assert_eq!(want["a/f2"].links, (3, "a/f1".to_string()));
    assert_eq!(want["f3"].links, (3, "a/f1".to_string()));

    let target = dir.path().join("restored");
    let r = restore_to(&repo, &target);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_same(&listing(&under(&target, &tree)), &want, "restore");
    // Again over the first restore: the links are already there, and a temporary file of a
    // killed restore is removed.
    std::fs::write(under(&target, &tree).join("a/.caretaker-restore-99999-0"), "half").unwrap();
    let r = restore_to(&repo, &target);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_same(&listing(&under(&target, &tree)), &want, "second restore");

    let Some(restic) = restic() else { return };
    let by_restic = dir.path().join("restic-restored");
    restic_restore(&restic, dir.path(), &report.snapshot_id, &by_restic);
    assert_same(&listing(&under(&by_restic, &tree)), &want, "stock restic");
}

/// A tree with every file type the restore path handles: the restored tree equals the
/// original (names, types, sizes, contents, modes, owners, modification times, hard links),
/// and equals what stock `restic restore` makes of the same snapshot.
#[test]
fn every_file_type_is_restored_as_the_original_and_as_stock_restic_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("files");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    std::fs::write(tree.join("plain.txt"), "plain\n").unwrap();
    std::fs::write(tree.join("empty"), "").unwrap();
    // Sparse: a 4 MiB hole, 1 KiB of data, another hole to 6 MiB.
    {
        let mut f = std::fs::File::create(tree.join("sparse.img")).unwrap();
        f.seek(SeekFrom::Start(4 << 20)).unwrap();
        f.write_all(&[0xabu8; 1024]).unwrap();
        f.set_len(6 << 20).unwrap();
    }
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(tree.join("sub/big.bin"), &big).unwrap();
    symlink("../plain.txt", tree.join("sub/link")).unwrap();
    symlink("/nonexistent/target", tree.join("dangling")).unwrap();
    mkfifo(&tree.join("sub/fifo"));
    // Not readable by others; owned by another user and group.
    std::fs::write(tree.join("sub/private"), "private\n").unwrap();
    std::fs::set_permissions(tree.join("sub/private"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(tree.join("sub/secret"), "secret\n").unwrap();
    std::fs::set_permissions(tree.join("sub/secret"), std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::write(tree.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(tree.join("run.sh"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    // Hard links, one across directories.
    std::fs::write(tree.join("sub/deeper/linked"), "linked\n").unwrap();
    std::fs::hard_link(tree.join("sub/deeper/linked"), tree.join("sub/deeper/linked2")).unwrap();
    std::fs::hard_link(tree.join("sub/deeper/linked"), tree.join("linked3")).unwrap();
    // A directory its owner may not write to, with a file in it.
    std::fs::create_dir(tree.join("readonly-dir")).unwrap();
    std::fs::write(tree.join("readonly-dir/inside"), "inside\n").unwrap();
    if is_root() {
        chown(&tree.join("sub/private"), 1234, 2345);
        chown(&tree.join("sub/deeper"), 1234, 1234);
        chown(&tree.join("dangling"), 4321, 4321);
    }
    age(&tree);
    std::fs::set_permissions(tree.join("readonly-dir"), std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(tree.join("sub/deeper"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let original = listing(&tree);
    assert_eq!(original["sub/fifo"].kind, "fifo");
    assert_eq!(original["sparse.img"].size, 6 << 20);

    let repo = new_repo(dir.path());
    let report = repo.backup(&request(&tree, &[]), vec![]).unwrap();
    assert!(report.complete, "{:?}", report.read_errors);
    let target = dir.path().join("restored");
    let r = restore_to(&repo, &target);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_same(&listing(&under(&target, &tree)), &original, "restore");
    // Holes stay holes (where the file system has them): the 6 MiB file holds 1 KiB of data.
    let blocks = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
    if blocks(&tree.join("sparse.img")) < 1 << 20 {
        assert!(blocks(&under(&target, &tree).join("sparse.img")) < 1 << 20, "the sparse file was restored dense");
    }
    // Over the first restore (existing symlinks, FIFO, links, read-only entries).
    let r = restore_to(&repo, &target);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_same(&listing(&under(&target, &tree)), &original, "second restore");

    let Some(restic) = restic() else { return };
    let by_restic = dir.path().join("restic-restored");
    restic_restore(&restic, dir.path(), &report.snapshot_id, &by_restic);
    assert_same(&listing(&under(&target, &tree)), &listing(&under(&by_restic, &tree)), "against stock restic");
}

/// Every data pack written after `before` and larger than `min` bytes (data packs of big
/// files; tree packs of a small tree stay smaller), damaged in every blob.
fn damage_new_packs(repo_dir: &Path, before: &[PathBuf], min: u64) -> usize {
    let mut n = 0;
    for p in walk(&repo_dir.join("data")) {
        if before.contains(&p) || std::fs::metadata(&p).unwrap().len() < min {
            continue;
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut data = std::fs::read(&p).unwrap();
        // Every 256 KiB (chunks are at least 512 KiB: every blob is hit), not the header.
        for at in (1000..data.len() - 8192).step_by(256 << 10) {
            for b in &mut data[at..at + 64] {
                *b ^= 0xff;
            }
        }
        std::fs::write(&p, data).unwrap();
        n += 1;
    }
    n
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    let mut out: Vec<PathBuf> =
        rd.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect();
    out.sort();
    out
}

struct Bytes(Vec<u8>);

impl StreamSource for Bytes {
    fn name(&self) -> &str {
        "db.sql"
    }
    fn write_to(&mut self, out: &mut dyn Write) -> std::io::Result<u64> {
        out.write_all(&self.0)?;
        Ok(self.0.len() as u64)
    }
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A damaged pack: the files and the stream whose data it holds are not written at all (no
/// full-size file with zeros in it, no temporary file left), a file already at such a name
/// is left as it was, the intact files are restored, and the errors name the damaged files
/// once each with what to do. `check --read-data` names the snapshot and files affected.
#[test]
fn a_damaged_pack_leaves_no_damaged_file_under_its_real_name() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("files");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("intact.txt"), "intact\n").unwrap();
    let repo = new_repo(dir.path());
    let first = repo.backup(&request(&tree, &[]), vec![]).unwrap();
    let before = walk(&dir.path().join("repo/data"));
    // The second snapshot adds a big file and a stream: their data is in new packs.
    std::fs::write(tree.join("big.bin"), noise(5 << 20, 7)).unwrap();
    let second = repo.backup(&request(&tree, &[]), vec![Box::new(Bytes(noise(3 << 20, 11)))]).unwrap();
    assert!(damage_new_packs(&dir.path().join("repo"), &before, 1 << 20) > 0);

    let target = dir.path().join("restored");
    let restored = under(&target, &tree);
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::write(restored.join("big.bin"), "an older copy\n").unwrap();
    let r = restore_to(&repo, &target);
    assert_eq!(std::fs::read(restored.join("intact.txt")).unwrap(), b"intact\n");
    assert_eq!(std::fs::read(restored.join("big.bin")).unwrap(), b"an older copy\n", "a damaged file replaced a file");
    assert!(!target.join("caretaker-streams/db.sql").exists(), "a damaged stream was left under its name");
    let left: Vec<_> =
        walk(&target).into_iter().filter(|p| p.to_string_lossy().contains(".caretaker-restore")).collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let text = r.errors.join("\n");
    assert!(text.contains("big.bin") && text.contains("db.sql"), "{text}");
    assert!(text.contains("check --read-data"), "no hint: {text}");

    // Into an empty target: nothing at all under the damaged names.
    let empty = dir.path().join("restored-empty");
    restore_to(&repo, &empty);
    assert!(under(&empty, &tree).join("intact.txt").exists());
    assert!(!under(&empty, &tree).join("big.bin").exists(), "a damaged file was left under its name");

    let check = repo.check(ReadData::All).unwrap();
    let text = check.errors.join("\n");
    assert!(text.contains(&second.snapshot_id[..8]), "check does not name the snapshot: {text}");
    assert!(!text.contains(&first.snapshot_id[..8]), "check names an intact snapshot: {text}");
    assert!(text.contains(&format!("{}/big.bin", tree.display())), "check does not name the file: {text}");
    assert!(text.contains("/caretaker-streams/db.sql"), "check does not name the stream: {text}");
    for e in r.errors.iter().chain(&check.errors) {
        // rustic's text once per file, on one line, not repeated, without a backtrace.
        assert!(e.matches("MAC check failed").count() <= 1, "{e}");
        assert!(!e.contains("Backtrace") && !e.contains("Caused by"), "{e}");
    }
}

/// Repository directories 0700 and files 0400, as stock restic makes them (the key file is
/// an offline password attack for whoever can copy it); a restored dump is 0600.
#[test]
fn repository_files_and_restored_dumps_get_restics_modes() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("files");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a.txt"), "a\n").unwrap();
    let repo = new_repo(dir.path());
    repo.backup(&request(&tree, &[]), vec![Box::new(Bytes(b"CREATE TABLE t ();\n".to_vec()))]).unwrap();
    let keep = caretaker_core::config::Keep { last: Some(1), ..Default::default() };
    repo.backup(&request(&tree, &[]), vec![Box::new(Bytes(b"CREATE TABLE u ();\n".to_vec()))]).unwrap();
    repo.prune(&keep).unwrap();
    let root = dir.path().join("repo");
    let mut dirs = vec![root.clone()];
    let mut files = vec![];
    while let Some(d) = dirs.pop() {
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700, "{}", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(files.iter().any(|f| f.starts_with(root.join("keys"))), "{files:?}");
    assert!(files.iter().any(|f| f == &root.join("config")), "{files:?}");
    for f in &files {
        assert_eq!(std::fs::metadata(f).unwrap().mode() & 0o777, 0o400, "{}", f.display());
    }
    assert!(repo.check(ReadData::All).unwrap().errors.is_empty());

    let target = dir.path().join("restored");
    let r = restore_to(&repo, &target);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let dump = target.join("caretaker-streams/db.sql");
    assert_eq!(std::fs::read(&dump).unwrap(), b"CREATE TABLE u ();\n");
    assert_eq!(std::fs::metadata(&dump).unwrap().mode() & 0o777, 0o600);
}
