//! Remote repositories survive the failures of a night on a real network: an S3 server that
//! answers `503 Slow Down` and is slow, an SSH connection that drops in the middle of an
//! upload. Both through the public `location` API, so the same tests ran against the code
//! before retries existed (and failed there).

mod common;

use caretaker_backup::*;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

struct Data {
    name: &'static str,
    data: Vec<u8>,
}

impl StreamSource for Data {
    fn name(&self) -> &str {
        self.name
    }
    fn write_to(&mut self, out: &mut dyn Write) -> std::io::Result<u64> {
        for c in self.data.chunks(64 << 10) {
            out.write_all(c)?;
        }
        Ok(self.data.len() as u64)
    }
}

/// Incompressible, deterministic bytes (xorshift): every chunk is new to the repository.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn request(tree: &Path) -> BackupRequest {
    BackupRequest {
        trees: vec![TreeSpec { path: tree.to_path_buf(), exclude: vec![] }],
        files: vec![],
        tags: vec!["app:test".into()],
        host: Some("testhost".into()),
        policy: SafetyPolicy { allow_empty: vec![], max_shrink_percent: 50 },
    }
}

/// A small tree to back up next to the stream.
fn tree(root: &Path) -> std::path::PathBuf {
    let media = root.join("media");
    std::fs::create_dir_all(media.join("uploads")).unwrap();
    std::fs::write(media.join("uploads/a.txt"), "hello\n").unwrap();
    std::fs::write(media.join("uploads/b.bin"), noise(300 << 10, 7)).unwrap();
    media
}

fn restic_check(restic: &Path, repo: &str, extra: &[&str], env: &[(&str, &str)], dir: &Path) {
    let pw = dir.join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let out = Command::new(restic)
        .args(extra)
        .args(["check", "--read-data"])
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD_FILE", &pw)
        .env("RESTIC_CACHE_DIR", dir.join("restic-cache"))
        .envs(env.iter().copied())
        .env_remove("RESTIC_PASSWORD")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("no errors were found"), "restic check: {text}");
}

/// Three `503 Slow Down` answers to the first pack uploads (one upload retried three times, or
/// parallel uploads each retried) and a pack upload whose answer comes 3 s late: the backup completes, every pack is there, stock restic
/// verifies every byte.
#[test]
fn s3_backup_survives_three_503s_and_a_slow_response() {
    let Some(moto) = moto() else { return };
    let proxy = FaultProxy::start(
        moto.port,
        Faults {
            matching: "PUT /caretaker/apps/one/data/".into(),
            fail_503: 3,
            delayed: 1,
            delay: Duration::from_secs(3),
        },
    );
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let target = s3_target(&endpoint, "apps/one");
    let repo = location::s3(&target, PASSWORD).unwrap();
    repo.init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let media = tree(dir.path());
    let db = noise(12 << 20, 42);
    let report = repo.backup(&request(&media), vec![Box::new(Data { name: "db.sql", data: db.clone() })]).unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(proxy.answered_503.load(Ordering::SeqCst), 3, "the proxy answered three 503s");
    assert_eq!(proxy.delayed.load(Ordering::SeqCst), 1, "the proxy delayed one answer");
    assert!(repo.check(ReadData::All).unwrap().errors.is_empty());
    let mut out = Vec::new();
    repo.restore_stream(None, "db.sql", &mut out).unwrap();
    assert!(out == db, "the restored dump differs");
    if let Some(restic) = restic() {
        let direct = format!("s3:http://127.0.0.1:{}/caretaker/apps/one", moto.port);
        let keys = [("AWS_ACCESS_KEY_ID", "AKIDTEST"), ("AWS_SECRET_ACCESS_KEY", "test-secret-key")];
        restic_check(&restic, &direct, &[], &keys, dir.path());
    }
}

fn files_under(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten().map(|e| if e.path().is_dir() { files_under(&e.path()) } else { usize::from(e.path().is_file()) }).sum()
}

/// The ssh process of an SFTP repository is killed while the backup uploads packs: the next
/// request starts a new ssh, the failed upload is retried, the backup completes and stock
/// `restic check --read-data` finds every byte.
#[test]
fn sftp_backup_survives_its_ssh_connection_killed_mid_upload() {
    let Some(sshd) = caretaker_testkit::TestSshd::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let media = tree(dir.path());
    let repo_path = dir.path().join("remote/apps/one");
    let repo_str = repo_path.to_str().unwrap().to_string();
    let target = sftp_target(&sshd, &repo_str, None, None);
    let repo = location::sftp(&target, PASSWORD).unwrap();
    repo.init().unwrap();
    let first = ssh_children();
    assert_eq!(first.len(), 1, "one ssh process: {first:?}");
    let packs_before = files_under(&repo_path.join("data"));

    let db = noise(96 << 20, 1234);
    let expected = db.clone();
    let backup = std::thread::scope(|s| {
        let job = s.spawn(|| repo.backup(&request(&media), vec![Box::new(Data { name: "db.sql", data: db })]));
        // Kill ssh once the upload of packs is under way.
        caretaker_testkit::wait_until(Duration::from_secs(300), "the first pack upload", || {
            (files_under(&repo_path.join("data")) > packs_before || job.is_finished()).then_some(())
        });
        assert!(!job.is_finished(), "the backup finished before ssh could be killed");
        let packs_at_kill = files_under(&repo_path.join("data"));
        // SAFETY: kill(2) on a child process of this test.
        assert_eq!(unsafe { libc::kill(first[0], libc::SIGKILL) }, 0);
        let report = job.join().unwrap();
        (report, packs_at_kill)
    });
    let (report, packs_at_kill) = backup;
    let report = report.expect("the backup survives the lost connection");
    assert!(report.complete, "{report:?}");
    let now = ssh_children();
    assert!(now.len() == 1 && now[0] != first[0], "a new ssh process replaced the killed one: {first:?} → {now:?}");
    assert!(files_under(&repo_path.join("data")) > packs_at_kill, "packs were uploaded after the kill");

    assert!(repo.check(ReadData::All).unwrap().errors.is_empty());
    let mut out = Vec::new();
    repo.restore_stream(None, "db.sql", &mut out).unwrap();
    assert!(out == expected, "the restored dump differs");
    if let Some(restic) = restic() {
        let cmd = format!("sftp.command={}", sshd.restic_sftp_command());
        restic_check(&restic, &format!("sftp:{}@127.0.0.1:{}", sshd.user, repo_str), &["-o", &cmd], &[], dir.path());
    }
}
