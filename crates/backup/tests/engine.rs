//! The engine against real local repositories, and stock `restic` reading what it wrote.

mod common;

use caretaker_backup::location;
use caretaker_backup::*;
use common::{moto, restic, s3_target, sftp_target, PASSWORD};
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Bytes {
    name: &'static str,
    data: Vec<u8>,
}

impl StreamSource for Bytes {
    fn name(&self) -> &str {
        self.name
    }
    fn write_to(&mut self, out: &mut dyn Write) -> std::io::Result<u64> {
        // Small writes, as a dump tool's pipe gives them.
        for c in self.data.chunks(7000) {
            out.write_all(c)?;
        }
        Ok(self.data.len() as u64)
    }
}

/// Writes half its data, then fails like a dump whose database went away.
struct Failing;

impl StreamSource for Failing {
    fn name(&self) -> &str {
        "db.sql"
    }
    fn write_to(&mut self, out: &mut dyn Write) -> std::io::Result<u64> {
        out.write_all(&vec![b'x'; 3 << 20])?;
        Err(std::io::Error::other("pg_dump: connection lost"))
    }
}

fn dump(n: usize) -> Vec<u8> {
    (0..n).map(|i| format!("INSERT INTO t VALUES ({i}, 'row {i}');\n")).collect::<String>().into_bytes()
}

/// A file tree with what breaks naive backups: unicode names, symlinks, modes, empty dirs.
fn app_tree(root: &Path) -> PathBuf {
    let media = root.join("media");
    std::fs::create_dir_all(media.join("uploads/été 2024/空")).unwrap();
    std::fs::create_dir_all(media.join("empty")).unwrap();
    std::fs::write(media.join("uploads/été 2024/naïve café.txt"), "crème brûlée\n").unwrap();
    std::fs::write(media.join("uploads/big.bin"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(media.join("secret.key"), "k").unwrap();
    std::fs::set_permissions(media.join("secret.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(media.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(media.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink("uploads/été 2024/naïve café.txt", media.join("link")).unwrap();
    symlink("/nonexistent/target", media.join("dangling")).unwrap();
    media
}

fn request(trees: &[&Path], files: &[&Path]) -> BackupRequest {
    BackupRequest {
        trees: trees.iter().map(|p| TreeSpec { path: p.to_path_buf(), exclude: vec![] }).collect(),
        files: files.iter().map(|p| p.to_path_buf()).collect(),
        tags: vec!["app:test".into(), "caretaker:0.1.0".into()],
        host: Some("testhost".into()),
        policy: SafetyPolicy { allow_empty: vec![], max_shrink_percent: 50 },
    }
}

fn new_repo(dir: &Path) -> ResticRepository {
    let repo = location::local(&dir.join("repo"), PASSWORD).unwrap();
    repo.init().unwrap();
    repo
}

/// Lists a tree as (relative path, kind, mode, content or link target), for comparisons.
fn listing(root: &Path) -> Vec<(String, String, u32, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            let mode = m.permissions().mode() & 0o7777;
            if m.is_dir() {
                out.push((rel, "dir".into(), mode, vec![]));
                stack.push(p);
            } else if m.file_type().is_symlink() {
                out.push((
                    rel,
                    "link".into(),
                    0,
                    std::fs::read_link(&p).unwrap().to_string_lossy().as_bytes().to_vec(),
                ));
            } else {
                out.push((rel, "file".into(), mode, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn round_trip_of_trees_config_and_stream() {
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let config = dir.path().join("caretaker.yml");
    std::fs::write(&config, "version: 1\n").unwrap();
    let repo = new_repo(dir.path());
    let db = dump(50_000);

    let report = repo
        .backup(&request(&[&media], &[&config]), vec![Box::new(Bytes { name: "db.sql", data: db.clone() })])
        .unwrap();
    assert!(report.complete, "{:?}", report.read_errors);
    assert_eq!(report.measurement.streams["db.sql"], db.len() as u64);
    assert!(report.bytes_added > 0);

    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), 1, "exactly one snapshot, no pending leftovers");
    assert!(snaps[0].complete && !snaps[0].pending);
    assert!(snaps[0].tags.contains(&"app:test".to_string()));
    assert_eq!(snaps[0].id, report.snapshot_id);

    let target = dir.path().join("restored");
    let r = repo
        .restore(&RestoreRequest { snapshot: None, what: RestoreWhat::All, target: Some(target.clone()), skip: vec![] })
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let restored_media = target.join(media.strip_prefix("/").unwrap());
    assert_eq!(listing(&restored_media), listing(&media));
    assert_eq!(std::fs::read(target.join(config.strip_prefix("/").unwrap())).unwrap(), b"version: 1\n");
    assert_eq!(std::fs::read(target.join("caretaker-streams/db.sql")).unwrap(), db);

    // The database adapter's way: the stream into a writer.
    let mut out = Vec::new();
    assert_eq!(repo.restore_stream(None, "db.sql", &mut out).unwrap(), db.len() as u64);
    assert_eq!(out, db);

    // Files only, to the original paths.
    std::fs::remove_dir_all(&media).unwrap();
    let r = repo
        .restore(&RestoreRequest { snapshot: None, what: RestoreWhat::FilesOnly, target: None, skip: vec![] })
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.streams_written.is_empty());
    assert_eq!(listing(&media), listing(&restored_media));
}

#[test]
fn second_run_with_a_new_dump_stores_the_new_dump() {
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let repo = new_repo(dir.path());
    let first = dump(1000);
    repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: first })]).unwrap();
    let second = dump(1200);
    let r =
        repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: second.clone() })]).unwrap();
    assert_eq!(r.files_changed + r.files_new, 1, "only the dump changed: {r:?}");
    let mut out = Vec::new();
    repo.restore_stream(Some(&r.snapshot_id), "db.sql", &mut out).unwrap();
    assert_eq!(out, second, "regression: a parent's stream entry must never be reused");
    assert_eq!(repo.snapshots().unwrap().len(), 2);
}

#[test]
fn failed_stream_leaves_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let repo = new_repo(dir.path());
    let err = repo.backup(&request(&[&media], &[]), vec![Box::new(Failing)]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::StreamFailed, "{err}");
    assert!(err.message.contains("connection lost"), "{err}");
    assert!(repo.snapshots().unwrap().is_empty());
}

#[test]
fn missing_and_empty_trees_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let missing = dir.path().join("missing");
    let err = repo.backup(&request(&[&missing], &[]), vec![]).unwrap_err();
    assert!(matches!(err.refusal, Some(Refusal::TreeMissing(_))), "{err}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = repo.backup(&request(&[&empty], &[]), vec![]).unwrap_err();
    assert!(matches!(err.refusal, Some(Refusal::TreeEmpty(_))), "{err}");
    let mut req = request(&[&empty], &[]);
    req.policy.allow_empty.push(empty.clone());
    repo.backup(&req, vec![]).unwrap();
}

#[test]
fn suspicious_shrink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let repo = new_repo(dir.path());
    repo.backup(&request(&[&media], &[]), vec![]).unwrap();
    std::fs::remove_file(media.join("uploads/big.bin")).unwrap();
    let err = repo.backup(&request(&[&media], &[]), vec![]).unwrap_err();
    assert!(matches!(err.refusal, Some(Refusal::Shrunk { .. })), "{err}");
    assert_eq!(repo.snapshots().unwrap().len(), 1);
}

#[test]
fn shrunk_dump_is_refused_and_leaves_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let repo = new_repo(dir.path());
    repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: dump(10_000) })]).unwrap();
    let err =
        repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: dump(10) })]).unwrap_err();
    assert!(matches!(err.refusal, Some(Refusal::Shrunk { .. })), "{err}");
    assert_eq!(repo.snapshots().unwrap().len(), 1);
}

#[test]
fn unreadable_file_gives_a_partial_snapshot() {
    if rustix_is_root() {
        eprintln!("SKIPPED: running as root, which reads mode-000 files anyway");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let locked = media.join("locked.txt");
    std::fs::write(&locked, "no").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let repo = new_repo(dir.path());
    let r = repo.backup(&request(&[&media], &[]), vec![]).unwrap();
    assert!(!r.complete);
    assert!(r.read_errors.iter().any(|e| e.contains("locked.txt")), "{:?}", r.read_errors);
    assert!(!repo.snapshots().unwrap()[0].complete);
}

fn rustix_is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

#[test]
fn wrong_password_and_missing_repository_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // An empty directory: no repository yet, `init` is the answer.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let missing = location::local(&dir.path().join("empty"), PASSWORD).unwrap();
    let err = missing.snapshots().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NoRepository, "{err}");
    assert!(err.hint.unwrap().contains("caretaker backup init"));
    // No directory at all (an unmounted disk): unreachable, not "run init".
    let gone = location::local(&dir.path().join("nothing"), PASSWORD).unwrap();
    let err = gone.snapshots().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err}");
    assert!(err.message.contains("does not exist"), "{err}");
    new_repo(dir.path());
    let wrong = location::local(&dir.path().join("repo"), "wrong").unwrap();
    assert_eq!(wrong.snapshots().unwrap_err().kind, ErrorKind::WrongPassword);
    assert_eq!(new_repo_again(dir.path()).kind, ErrorKind::AlreadyInitialized);
}

fn new_repo_again(dir: &Path) -> Error {
    location::local(&dir.join("repo"), PASSWORD).unwrap().init().unwrap_err()
}

#[test]
fn corrupt_pack_gives_errors_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let repo = new_repo(dir.path());
    repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: dump(20_000) })]).unwrap();
    // Damage every data pack in the middle.
    let mut packs = vec![];
    let mut stack = vec![dir.path().join("repo/data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                packs.push(e.path());
            }
        }
    }
    assert!(!packs.is_empty());
    for p in &packs {
        let mut data = std::fs::read(p).unwrap();
        let mid = data.len() / 3;
        let end = mid + 64.min(data.len() - mid);
        for b in &mut data[mid..end] {
            *b ^= 0xff;
        }
        std::fs::write(p, data).unwrap();
    }
    let check = repo.check(ReadData::All).unwrap();
    assert!(!check.errors.is_empty(), "check --read-data must find the damage");
    let target = dir.path().join("restored");
    let r =
        repo.restore(&RestoreRequest { snapshot: None, what: RestoreWhat::All, target: Some(target), skip: vec![] });
    match r {
        Ok(r) => assert!(!r.errors.is_empty(), "a damaged restore must report errors"),
        Err(e) => assert_eq!(e.kind, ErrorKind::Corrupt, "{e}"),
    }
}

#[test]
fn prune_keeps_the_policy_and_the_newest_complete_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let repo = new_repo(dir.path());
    for i in 0..3 {
        std::fs::write(media.join(format!("f{i}")), vec![i as u8; 1000 + i]).unwrap();
        repo.backup(&request(&[&media], &[]), vec![]).unwrap();
    }
    let keep = caretaker_core::config::Keep { last: Some(1), ..Default::default() };
    let r = repo.prune(&keep).unwrap();
    assert_eq!(r.removed_snapshots.len(), 2);
    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert!(repo.check(ReadData::All).unwrap().errors.is_empty());
}

#[test]
fn stock_restic_lists_checks_and_restores_a_caretaker_snapshot() {
    let Some(restic) = restic() else { return };
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let repo = new_repo(dir.path());
    let db = dump(30_000);
    let report =
        repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: db.clone() })]).unwrap();
    // The password goes through a file, never argv.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&restic)
            .args(args)
            .env("RESTIC_REPOSITORY", dir.path().join("repo"))
            .env("RESTIC_PASSWORD_FILE", &pw)
            .env("RESTIC_CACHE_DIR", dir.path().join("restic-cache"))
            .env_remove("RESTIC_PASSWORD")
            .output()
            .unwrap();
        assert!(out.status.success(), "restic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let list = run(&["snapshots", "--json"]);
    assert!(list.contains(&report.snapshot_id), "{list}");
    run(&["check", "--read-data"]);
    let target = dir.path().join("restic-restored");
    run(&["restore", &report.snapshot_id, "--target", target.to_str().unwrap()]);
    assert_eq!(listing(&target.join(media.strip_prefix("/").unwrap())), listing(&media));
    assert_eq!(std::fs::read(target.join("caretaker-streams/db.sql")).unwrap(), db);
}

/// A dump that never ends: incompressible data, 1 MiB every 10 ms, until the process is killed.
struct Endless;

impl StreamSource for Endless {
    fn name(&self) -> &str {
        "db.sql"
    }
    fn write_to(&mut self, out: &mut dyn Write) -> std::io::Result<u64> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            for b in chunk.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
            }
            out.write_all(&chunk)?;
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

fn files_under(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten().map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 }).sum()
}

const SIGKILL_CHILD: &str = "CARETAKER_TEST_SIGKILL_CHILD";

/// A backup SIGKILLed while it streams a dump (a child process: this test re-run with
/// `SIGKILL_CHILD` set) leaves the repository consistent: the next run succeeds, no snapshot
/// of the killed run is left, and stock `restic check --read-data` is clean — also with a
/// stale lock left by a SIGKILLed `restic` in the repository (rustic_core takes no locks, so the
/// stale lock does not block caretaker; stock restic needs `restic unlock`, which removes only
/// stale locks).
#[test]
fn sigkill_mid_backup_leaves_a_consistent_repository() {
    if let Ok(dir) = std::env::var(SIGKILL_CHILD) {
        let dir = PathBuf::from(dir);
        let repo = location::local(&dir.join("repo"), PASSWORD).unwrap();
        let media = dir.join("media");
        let r = repo.backup(&request(&[&media], &[]), vec![Box::new(Endless)]);
        panic!("the endless backup ended: {:?}", r.map(|r| r.snapshot_id));
    }
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let repo = new_repo(dir.path());
    let db = dump(30_000);
    repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: db.clone() })]).unwrap();
    let packs_before = files_under(&dir.path().join("repo/data"));

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigkill_mid_backup_leaves_a_consistent_repository", "--nocapture", "--test-threads=1"])
        .env(SIGKILL_CHILD, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while files_under(&dir.path().join("repo/data")) < packs_before + 3 {
        assert!(child.try_wait().unwrap().is_none(), "the child backup ended before it was killed");
        assert!(std::time::Instant::now() < deadline, "the child wrote no packs in 120 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(files_under(&dir.path().join("repo/data")) > packs_before, "the killed run left packs behind");

    // A stale restic lock: a stock restic SIGKILLed while it holds one.
    let restic = restic();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let restic_cmd = |restic: &Path| {
        let mut c = Command::new(restic);
        c.env("RESTIC_REPOSITORY", dir.path().join("repo"))
            .env("RESTIC_PASSWORD_FILE", &pw)
            .env("RESTIC_CACHE_DIR", dir.path().join("restic-cache"))
            .env_remove("RESTIC_PASSWORD");
        c
    };
    if let Some(restic) = &restic {
        let mut r = restic_cmd(restic)
            .args(["backup", "--stdin", "--stdin-filename", "x"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while files_under(&dir.path().join("repo/locks")) == 0 {
            assert!(std::time::Instant::now() < deadline, "restic took no lock");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // The lock file appears before restic has finished writing it; restic then blocks on
        // stdin holding the lock, so give it a moment to complete the file.
        std::thread::sleep(std::time::Duration::from_secs(2));
        r.kill().unwrap();
        r.wait().unwrap();
        assert_eq!(files_under(&dir.path().join("repo/locks")), 1, "a stale lock is left");
    }

    // The next run succeeds and stores the new dump; the killed run left no snapshot.
    let again = dump(30_001);
    let report =
        repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: again.clone() })]).unwrap();
    assert!(report.complete);
    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(snaps.iter().all(|s| s.complete && !s.pending), "{snaps:?}");
    assert!(repo.check(ReadData::All).unwrap().errors.is_empty());
    let mut out = Vec::new();
    repo.restore_stream(None, "db.sql", &mut out).unwrap();
    assert_eq!(out, again);

    if let Some(restic) = &restic {
        // restic 0.14 itself refuses to run while the stale lock exists; `unlock` (without
        // --remove-all) removes only locks of dead processes, so it is recognised as stale.
        let out = restic_cmd(restic).arg("unlock").output().unwrap();
        assert!(out.status.success(), "restic unlock: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(files_under(&dir.path().join("repo/locks")), 0, "the stale lock is removed");
        let out = restic_cmd(restic).args(["check", "--read-data"]).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "restic check: {text}");
        assert!(text.contains("no errors were found"), "restic check: {text}");
    }
}

#[test]
fn s3_round_trip_against_a_local_s3_server_and_stock_restic_checks_it() {
    // `common::moto` creates the bucket `caretaker`.
    let Some(moto) = moto() else { return };
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let target = s3_target(&endpoint, "apps/one");
    let repo = location::s3(&target, PASSWORD).unwrap();
    repo.init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let db = dump(20_000);
    let report =
        repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: db.clone() })]).unwrap();
    assert!(report.complete);
    // A second run sees the first snapshot (reopened) and stores little.
    let again =
        repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: db.clone() })]).unwrap();
    assert!(again.bytes_added < report.bytes_added, "{} vs {}", again.bytes_added, report.bytes_added);
    assert_eq!(repo.snapshots().unwrap().len(), 2);
    assert!(repo.check(ReadData::All).unwrap().errors.is_empty());
    let out_dir = dir.path().join("restored");
    let r = repo
        .restore(&RestoreRequest {
            snapshot: None,
            what: RestoreWhat::All,
            target: Some(out_dir.clone()),
            skip: vec![],
        })
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(listing(&out_dir.join(media.strip_prefix("/").unwrap())), listing(&media));
    assert_eq!(std::fs::read(out_dir.join("caretaker-streams/db.sql")).unwrap(), db);

    if let Some(restic) = restic() {
        let pw = dir.path().join("pw");
        std::fs::write(&pw, PASSWORD).unwrap();
        let out = Command::new(restic)
            .args(["check", "--read-data"])
            .env("RESTIC_REPOSITORY", format!("s3:{endpoint}/caretaker/apps/one"))
            .env("RESTIC_PASSWORD_FILE", &pw)
            .env("RESTIC_CACHE_DIR", dir.path().join("restic-cache"))
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "test-secret-key")
            .env_remove("RESTIC_PASSWORD")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("no errors were found"), "restic check: {text}");
    }
}

/// The realistic tree and a dump through a real sshd: backup, a deduplicated second run,
/// check with data, restore; then stock `restic -r sftp:` lists, checks and restores it.
#[test]
fn sftp_round_trip_against_a_real_sshd_and_stock_restic_reads_it() {
    let Some(sshd) = caretaker_testkit::TestSshd::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let repo_path = dir.path().join("remote/apps/one");
    let repo_str = repo_path.to_str().unwrap().to_string();
    let repo = location::sftp(&sftp_target(&sshd, &repo_str, None, None), PASSWORD).unwrap();
    let err = repo.snapshots().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NoRepository, "{err}");
    repo.init().unwrap();
    assert_eq!(files_under(&repo_path.join("keys")), 1);
    assert!(repo_path.join("data/ff").is_dir(), "restic's layout: data/00..ff");

    let db = dump(40_000);
    let report =
        repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: db.clone() })]).unwrap();
    assert!(report.complete, "{:?}", report.read_errors);
    let again =
        repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: db.clone() })]).unwrap();
    assert!(again.bytes_added < report.bytes_added / 4, "{} vs {}", again.bytes_added, report.bytes_added);
    assert_eq!(repo.snapshots().unwrap().len(), 2);
    let check = repo.check(ReadData::All).unwrap();
    assert!(check.errors.is_empty(), "{:?}", check.errors);
    let tmp_left: Vec<_> = walk(&repo_path).into_iter().filter(|p| p.to_string_lossy().contains("-tmp-")).collect();
    assert!(tmp_left.is_empty(), "temporary files left: {tmp_left:?}");
    // Stock restic's modes: directories 0700, files 0400 (the key file is an offline password
    // attack for any local user who can copy it).
    for f in walk(&repo_path) {
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o400, "{}", f.display());
        let dir = f.parent().unwrap();
        assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700, "{}", dir.display());
    }
    assert_eq!(std::fs::metadata(&repo_path).unwrap().permissions().mode() & 0o777, 0o700);

    let out_dir = dir.path().join("restored");
    let r = repo
        .restore(&RestoreRequest {
            snapshot: None,
            what: RestoreWhat::All,
            target: Some(out_dir.clone()),
            skip: vec![],
        })
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(listing(&out_dir.join(media.strip_prefix("/").unwrap())), listing(&media));
    assert_eq!(std::fs::read(out_dir.join("caretaker-streams/db.sql")).unwrap(), db);
    let mut out = Vec::new();
    assert_eq!(repo.restore_stream(None, "db.sql", &mut out).unwrap(), db.len() as u64);
    assert_eq!(out, db);

    let Some(restic) = restic() else { return };
    let pw = dir.path().join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&restic)
            .args(["-o", &format!("sftp.command={}", sshd.restic_sftp_command())])
            .args(args)
            .env("RESTIC_REPOSITORY", format!("sftp:{}@127.0.0.1:{}", sshd.user, repo_str))
            .env("RESTIC_PASSWORD_FILE", &pw)
            .env("RESTIC_CACHE_DIR", dir.path().join("restic-cache"))
            .env_remove("RESTIC_PASSWORD")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "restic {args:?}: {text}");
        text
    };
    let list = run(&["snapshots", "--json"]);
    assert!(list.contains(&report.snapshot_id) && list.contains(&again.snapshot_id), "{list}");
    let checked = run(&["check", "--read-data"]);
    assert!(checked.contains("no errors were found"), "{checked}");
    let target = dir.path().join("restic-restored");
    run(&["restore", &again.snapshot_id, "--target", target.to_str().unwrap()]);
    assert_eq!(listing(&target.join(media.strip_prefix("/").unwrap())), listing(&media));
    assert_eq!(std::fs::read(target.join("caretaker-streams/db.sql")).unwrap(), db);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    rd.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}

fn ssh_keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

/// Strict host-key checking: an unknown host and a changed host key are refused with a
/// message naming the host and what to do, and nothing is written on the server.
#[test]
fn sftp_unknown_or_changed_host_key_is_refused() {
    let Some(sshd) = caretaker_testkit::TestSshd::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo_path = dir.path().join("remote");
    let repo_str = repo_path.to_str().unwrap().to_string();
    let host = format!("[127.0.0.1]:{}", sshd.port);

    let empty = dir.path().join("known_hosts_empty");
    std::fs::write(&empty, "").unwrap();
    let err = location::sftp(&sftp_target(&sshd, &repo_str, None, Some(&empty)), PASSWORD).err().expect("refused");
    assert_eq!(err.kind, ErrorKind::HostKey, "{err}");
    assert!(err.message.contains(&host) && err.message.contains("unknown"), "{}", err.message);
    let hint = err.hint.unwrap();
    assert!(hint.contains(&format!("ssh-keyscan -p {} 127.0.0.1 >> {}", sshd.port, empty.display())), "{hint}");

    // The right host name with another key: what a man in the middle looks like.
    let other = dir.path().join("other_host_key");
    ssh_keygen(&other);
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let changed = dir.path().join("known_hosts_changed");
    let key_part: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    std::fs::write(&changed, format!("{host} {}\n", key_part.join(" "))).unwrap();
    let err = location::sftp(&sftp_target(&sshd, &repo_str, None, Some(&changed)), PASSWORD).err().expect("refused");
    assert_eq!(err.kind, ErrorKind::HostKey, "{err}");
    assert!(err.message.contains(&host) && err.message.contains("CHANGED"), "{}", err.message);
    assert!(err.hint.unwrap().contains("ssh-keygen -R"));
    assert!(!repo_path.exists(), "nothing was written");
}

/// A login the server refuses and a server that is down are named as such.
#[test]
fn sftp_refused_login_and_unreachable_server_are_named() {
    let Some(sshd) = caretaker_testkit::TestSshd::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo_str = dir.path().join("remote").to_str().unwrap().to_string();
    let stranger = dir.path().join("stranger_key");
    ssh_keygen(&stranger);
    let err = location::sftp(&sftp_target(&sshd, &repo_str, Some(&stranger), None), PASSWORD).err().expect("refused");
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err}");
    assert!(err.message.contains("refused the login"), "{}", err.message);
    assert!(err.hint.unwrap().contains("authorized_keys"));

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut t = sftp_target(&sshd, &repo_str, None, None);
    t.port = Some(free);
    let err = location::sftp(&t, PASSWORD).err().expect("refused");
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err}");
    assert!(err.message.contains("cannot reach the SFTP server"), "{}", err.message);
}

const SFTP_SIGKILL_CHILD: &str = "CARETAKER_TEST_SFTP_SIGKILL_CHILD";

/// A backup to an SFTP repository SIGKILLed while it uploads (a child process: this test re-run
/// with `SFTP_SIGKILL_CHILD` set; its `ssh` dies with it) leaves the repository consistent: no
/// snapshot of the killed run, no truncated file under a valid name (uploads are renamed into
/// place), the next run succeeds, and stock `restic check --read-data` over SFTP is clean.
#[test]
fn sftp_sigkill_mid_backup_leaves_a_consistent_repository() {
    let Some(sshd) = caretaker_testkit::TestSshd::from_env() else { return };
    if let Ok(dir) = std::env::var(SFTP_SIGKILL_CHILD) {
        let dir = PathBuf::from(dir);
        let repo_str = dir.join("remote").to_str().unwrap().to_string();
        let repo = location::sftp(&sftp_target(&sshd, &repo_str, None, None), PASSWORD).unwrap();
        let r = repo.backup(&request(&[&dir.join("media")], &[]), vec![Box::new(Endless)]);
        panic!("the endless backup ended: {:?}", r.map(|r| r.snapshot_id));
    }
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    let remote = dir.path().join("remote");
    let repo_str = remote.to_str().unwrap().to_string();
    let repo = location::sftp(&sftp_target(&sshd, &repo_str, None, None), PASSWORD).unwrap();
    repo.init().unwrap();
    let db = dump(30_000);
    repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: db.clone() })]).unwrap();
    let packs_before = files_under(&remote.join("data"));

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sftp_sigkill_mid_backup_leaves_a_consistent_repository", "--nocapture", "--test-threads=1"])
        .env(SFTP_SIGKILL_CHILD, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while files_under(&remote.join("data")) < packs_before + 3 {
        assert!(child.try_wait().unwrap().is_none(), "the child backup ended before it was killed");
        assert!(std::time::Instant::now() < deadline, "the child wrote no packs in 120 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let again = dump(30_001);
    let report =
        repo.backup(&request(&[&media], &[]), vec![Box::new(Bytes { name: "db.sql", data: again.clone() })]).unwrap();
    assert!(report.complete);
    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(snaps.iter().all(|s| s.complete && !s.pending), "{snaps:?}");
    let check = repo.check(ReadData::All).unwrap();
    assert!(check.errors.is_empty(), "{:?}", check.errors);
    let mut out = Vec::new();
    repo.restore_stream(None, "db.sql", &mut out).unwrap();
    assert_eq!(out, again);
    // Every file with a valid id as its name is whole: restic reads all of them.
    let Some(restic) = restic() else { return };
    let pw = dir.path().join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let out = Command::new(&restic)
        .args(["-o", &format!("sftp.command={}", sshd.restic_sftp_command()), "check", "--read-data"])
        .env("RESTIC_REPOSITORY", format!("sftp:{}@127.0.0.1:{}", sshd.user, repo_str))
        .env("RESTIC_PASSWORD_FILE", &pw)
        .env("RESTIC_CACHE_DIR", dir.path().join("restic-cache"))
        .env_remove("RESTIC_PASSWORD")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("no errors were found"), "restic check: {text}");
}

/// The bounded-memory restorer (restore.rs) writes file contents itself: over a target left
/// by an earlier restore it must replace a symlink in a file's place (never write through it),
/// rewrite a stale file of the same size, and make a read-only leftover writable.
#[test]
fn restore_over_a_symlink_a_stale_file_and_a_read_only_file_writes_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let media = app_tree(dir.path());
    std::fs::write(media.join("readonly.txt"), "kept read-only\n").unwrap();
    std::fs::set_permissions(media.join("readonly.txt"), std::fs::Permissions::from_mode(0o444)).unwrap();
    let repo = new_repo(dir.path());
    repo.backup(&request(&[&media], &[]), vec![]).unwrap();

    let target = dir.path().join("restored");
    let req = RestoreRequest { snapshot: None, what: RestoreWhat::All, target: Some(target.clone()), skip: vec![] };
    let r = repo.restore(&req).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let restored = target.join(media.strip_prefix("/").unwrap());
    assert_eq!(listing(&restored), listing(&media));

    // Damage the restored tree: a symlink to a file outside in place of a file, a stale file
    // of the same size, and the read-only file changed.
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "must stay\n").unwrap();
    std::fs::remove_file(restored.join("run.sh")).unwrap();
    symlink(&outside, restored.join("run.sh")).unwrap();
    std::fs::write(restored.join("uploads/big.bin"), vec![8u8; 3 << 20]).unwrap();
    std::fs::set_permissions(restored.join("readonly.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(restored.join("readonly.txt"), "changed, same\n").unwrap();
    std::fs::set_permissions(restored.join("readonly.txt"), std::fs::Permissions::from_mode(0o444)).unwrap();

    let r = repo.restore(&req).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(std::fs::read(&outside).unwrap(), b"must stay\n", "restore wrote through a symlink");
    assert_eq!(listing(&restored), listing(&media));
}
