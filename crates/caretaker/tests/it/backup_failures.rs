//! `caretaker backup ...` when things go wrong: each failure gives one clear message (what,
//! where, what to do) and exit code, leaves no snapshot behind and loses nothing. Wrong
//! password, unreachable targets (missing or read-only directory, S3 endpoint down, SFTP server
//! down, login or host key refused), a full disk, and a restore killed with SIGKILL.

use crate::backup_targets::listing;
use crate::{stderr_of, Scratch};
use caretaker_testkit::{wait_until, TestSshd};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PASSWORD: &str = "a long test password";

fn local_config(media: &Path, repo: &Path, password: &str) -> String {
    format!(
        "version: 1\napp:\n  name: bkfail\nfiles: [ \"{}\" ]\nbackup:\n  repository: \"{}\"\n  password: \"{password}\"\n  keep: {{ last: 3 }}\n",
        media.display(),
        repo.display()
    )
}

/// Asserts exit code 6 (`unavailable`) and that stderr says every one of `words`.
fn unavailable(out: &std::process::Output, words: &[&str]) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    for w in words {
        assert!(err.contains(w), "{w:?} missing in: {err}");
    }
}

/// Incompressible bytes (xorshift), so that sizes on disk are predictable.
pub(crate) fn noise(n: usize, seed: u64) -> Vec<u8> {
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

/// Runs `script` with `sh -e` inside a new user and mount namespace (so it may mount a tmpfs
/// or a read-only bind mount without being root; the mounts vanish with the namespace).
/// `None` when this machine has no user namespaces (a loud skip; a failure under CI).
fn in_namespace(script: &str) -> Option<std::process::Output> {
    let probe = Command::new("unshare").args(["-rm", "true"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("CI").is_none(), "`unshare -rm` does not work here: {probe:?}");
        eprintln!("SKIPPED: no user+mount namespaces (`unshare -rm true` failed)");
        return None;
    }
    Some(Command::new("unshare").args(["-rm", "sh", "-ec", script]).output().unwrap())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn wrong_password_is_named_with_the_key_to_fix() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "a").unwrap();
    let repo = s.path().join("repo");
    let ct = s.write_config(&local_config(&media, &repo, PASSWORD));
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);
    let ct = s.write_config(&local_config(&media, &repo, "not the password"));
    let out = ct.run(&["backup", "run"]);
    unavailable(&out, &["wrong password for backup repository", "hint: check backup.password"]);
    let out = ct.run(&["backup", "restore", "--target", s.path().join("t").to_str().unwrap()]);
    unavailable(&out, &["wrong password"]);
    let jobs = ct.json(&["jobs", "--json"]);
    assert_eq!(jobs[0]["kind"], "backup", "{jobs}");
    assert_eq!(jobs[0]["outcome"], "failed", "{jobs}");
}

#[test]
fn missing_or_read_only_local_repository_is_unreachable_not_a_new_repository() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "a").unwrap();

    // A repository on a disk that is not mounted: the directory is missing. Saying "run
    // `backup init`" would create a new repository on the wrong disk.
    let gone = s.path().join("usb-disk/backups");
    let ct = s.write_config(&local_config(&media, &gone, PASSWORD));
    let out = ct.run(&["backup", "run"]);
    unavailable(&out, &["backup repository directory", "does not exist", "mounted"]);
    assert!(!gone.exists(), "nothing was created");

    // A read-only repository (a read-only bind mount in a namespace: root ignores modes).
    let repo = s.path().join("repo");
    let ct = s.write_config(&local_config(&media, &repo, PASSWORD));
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);
    std::fs::write(media.join("b.txt"), "b").unwrap();
    let ct_cmd =
        format!("'{}' --config '{}' --state-dir '{}'", ct.bin.display(), ct.config.display(), ct.state_dir.display());
    let out_dir = s.path().join("ns");
    std::fs::create_dir_all(&out_dir).unwrap();
    let o = out_dir.display();
    let script = format!(
        "mount --bind '{r}' '{r}'; mount -o remount,bind,ro '{r}'\n\
         {ct_cmd} backup run >'{o}/run.out' 2>'{o}/run.err' && echo 0 >'{o}/run.rc' || echo $? >'{o}/run.rc'",
        r = repo.display()
    );
    let Some(ns) = in_namespace(&script) else { return };
    assert!(ns.status.success(), "{}", stderr_of(&ns));
    assert_eq!(read(&out_dir.join("run.rc")).trim(), "6", "{}", read(&out_dir.join("run.err")));
    let err = read(&out_dir.join("run.err"));
    assert!(err.contains("cannot write to backup target") && err.contains("read-only"), "{err}");
    assert_eq!(ct.json(&["backup", "list", "--json"]).as_array().unwrap().len(), 1, "still the one snapshot");
    ct.expect(&["backup", "check", "--read-data"], 0);
}

#[test]
fn s3_endpoint_down_is_unreachable() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "a").unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: bkfail\nfiles: [ \"{}\" ]\nbackup:\n  repository: \"s3:http://127.0.0.1:{free}/bkt/app\"\n  password: \"{PASSWORD}\"\n  s3: {{ access_key_id: AKIDTEST, secret_access_key: \"s3-SECRET-test\" }}\n  retry: {{ max_time: 3s }}\n",
        media.display()
    ));
    // Retried (connection refused is transient) for at most 3 s, then named.
    let out = ct.run(&["backup", "run"]);
    unavailable(&out, &["unreachable", &format!("127.0.0.1:{free}"), "hint: check the network"]);
    assert!(!stderr_of(&out).contains("s3-SECRET-test"), "the secret key is never printed");
}

#[test]
fn sftp_server_down_refused_login_and_unknown_host_key_are_named() {
    let Some(sshd) = TestSshd::from_env() else { return };
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "a").unwrap();
    let remote = s.path().join("remote");
    let config = |url: &str, key: &Path, known_hosts: &Path| {
        s.write_config(&format!(
            "version: 1\napp:\n  name: bkfail\nfiles: [ \"{}\" ]\nbackup:\n  repository: \"{url}\"\n  password: \"{PASSWORD}\"\n  sftp: {{ key_file: \"{}\", known_hosts_file: \"{}\" }}\n",
            media.display(),
            key.display(),
            known_hosts.display()
        ))
    };
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = format!("sftp://{}@127.0.0.1:{free}/{}", sshd.user, remote.display());
    let ct = config(&down, &sshd.key, &sshd.known_hosts);
    let out = ct.run(&["backup", "run"]);
    unavailable(&out, &["cannot reach the SFTP server", &format!("[127.0.0.1]:{free}"), "Connection refused"]);
    let jobs = ct.json(&["jobs", "--json"]);
    assert_eq!((jobs[0]["kind"].as_str(), jobs[0]["outcome"].as_str()), (Some("backup"), Some("failed")), "{jobs}");

    let stranger = s.path().join("stranger_key");
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&stranger).status().unwrap();
    assert!(st.success());
    let ct = config(&sshd.url(&remote), &stranger, &sshd.known_hosts);
    let out = ct.run(&["backup", "init"]);
    unavailable(&out, &["refused the login of user", "authorized_keys"]);

    let empty = s.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let ct = config(&sshd.url(&remote), &sshd.key, &empty);
    let out = ct.run(&["backup", "init"]);
    unavailable(&out, &["host key of", &format!("[127.0.0.1]:{}", sshd.port), "unknown", "ssh-keyscan"]);
    assert!(!remote.exists(), "nothing was written on the server");
}

/// A local repository on a 4 MiB tmpfs and 6 MiB of incompressible files: the run fails with
/// "no space left", leaves no snapshot, and the repository checks clean; once there is space
/// the next run succeeds and restores exactly what was there.
#[test]
fn full_disk_fails_clearly_and_leaves_a_consistent_repository() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(media.join("sub")).unwrap();
    std::fs::write(media.join("a.bin"), noise(3 << 20, 1)).unwrap();
    std::fs::write(media.join("sub/b.bin"), noise(3 << 20, 2)).unwrap();
    std::fs::write(media.join("note.txt"), "small").unwrap();
    let before = listing(&media);
    let repo = s.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let ct = s.write_config(&local_config(&media, &repo, PASSWORD));
    let ct_cmd =
        format!("'{}' --config '{}' --state-dir '{}'", ct.bin.display(), ct.config.display(), ct.state_dir.display());
    let o = s.path().join("ns");
    std::fs::create_dir_all(&o).unwrap();
    let step = |name: &str, args: &str| {
        let o = o.display();
        format!("{ct_cmd} {args} >'{o}/{name}.out' 2>'{o}/{name}.err' && echo 0 >'{o}/{name}.rc' || echo $? >'{o}/{name}.rc'\n")
    };
    let script = [
        format!("mount -t tmpfs -o size=4m tmpfs '{}'\n", repo.display()),
        step("init", "backup init"),
        step("run", "backup run --json"),
        step("list", "backup list --json"),
        step("check", "backup check --read-data"),
        // Space again: the same repository, now on a larger tmpfs.
        format!("mount -o remount,size=64m '{}'\n", repo.display()),
        step("run2", "backup run --json"),
        step("check2", "backup check --read-data"),
        step("restore", &format!("backup restore --target '{}'", s.path().join("restored").display())),
    ]
    .concat();
    let Some(ns) = in_namespace(&script) else { return };
    assert!(ns.status.success(), "{}", stderr_of(&ns));
    let rc = |n: &str| read(&o.join(format!("{n}.rc"))).trim().to_string();
    let err = |n: &str| read(&o.join(format!("{n}.err")));
    assert_eq!(rc("init"), "0", "{}", err("init"));
    assert_eq!(rc("run"), "6", "{}", err("run"));
    assert!(err("run").contains("no space left"), "{}", err("run"));
    assert!(err("run").contains("hint: free space on the backup target"), "{}", err("run"));
    let run: serde_json::Value = serde_json::from_str(&read(&o.join("run.out"))).unwrap();
    assert_eq!(run["outcome"], "failed", "{run}");
    assert_eq!(read(&o.join("list.out")).trim().replace([' ', '\n'], ""), "[]", "no snapshot is left");
    assert_eq!(rc("check"), "0", "the repository stays consistent: {}", err("check"));
    assert_eq!(rc("run2"), "0", "{}", err("run2"));
    assert_eq!(rc("check2"), "0", "{}", err("check2"));
    assert_eq!(rc("restore"), "0", "{}", err("restore"));
    assert_eq!(listing(&s.path().join("restored").join(media.strip_prefix("/").unwrap())), before, "nothing lost");
    assert_eq!(listing(&media), before, "the source is untouched");
}

/// Leaves a stale lock of stock restic in a local repository (a restic SIGKILLed while it
/// held one). `None` when restic is not installed (skip; a failure under CI).
fn stale_restic_lock(repo: &Path, password: &str, scratch: &Path) -> Option<()> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("restic")).find(|p| p.is_file()));
    let Some(restic) = found else {
        assert!(std::env::var_os("CI").is_none(), "restic is not installed (scripts/deps/apt.txt)");
        eprintln!("SKIPPED: restic not installed");
        return None;
    };
    let pw = scratch.join("restic-pw");
    std::fs::write(&pw, password).unwrap();
    let mut r = Command::new(restic)
        .args(["backup", "--stdin", "--stdin-filename", "x"])
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD_FILE", &pw)
        .env("RESTIC_CACHE_DIR", scratch.join("restic-cache"))
        .env_remove("RESTIC_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let locks = repo.join("locks");
    wait_until(Duration::from_secs(60), "restic to take its lock", || {
        std::fs::read_dir(&locks).ok()?.flatten().next().map(|_| ())
    });
    // restic 0.14 writes its lock file in place; let it finish before killing it.
    std::thread::sleep(Duration::from_secs(2));
    r.kill().unwrap();
    r.wait().unwrap();
    Some(())
}

/// A restore SIGKILLed half-way leaves the repository consistent (a restore only reads it),
/// the job is marked interrupted; the next restore into the same place is refused (the target
/// is not empty) and with --force keeps the partial files aside and succeeds — also with a
/// stale lock of a killed stock restic in the repository.
#[test]
fn restore_killed_with_sigkill_then_restored_again() {
    let s = Scratch::new();
    let media = s.path().join("media");
    for i in 0..40 {
        let d = media.join(format!("dir{}", i % 5));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}.bin")), noise(2 << 20, i + 1)).unwrap();
    }
    let before = listing(&media);
    let repo = s.path().join("repo");
    let ct = s.write_config(&local_config(&media, &repo, PASSWORD));
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);

    let target = s.path().join("restored");
    let written = |t: &Path| -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| {
                            let m = e.metadata().unwrap();
                            if m.is_dir() {
                                walk(&e.path())
                            } else {
                                // Allocated blocks: the restorer may create files at full length first.
                                std::os::unix::fs::MetadataExt::blocks(&m) * 512
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(t)
    };
    let mut child = ct.command(&["backup", "restore", "--target", target.to_str().unwrap()]).spawn().unwrap();
    // Polled every 5 ms (not wait_until's 50 ms): a local restore writes ~200 MB/s.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let killed_midway = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Err(st);
        }
        if written(&target) > 4 << 20 {
            break Ok(());
        }
        assert!(std::time::Instant::now() < deadline, "the restore wrote nothing in 120 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(killed_midway.is_ok(), "the restore finished before it could be killed: {killed_midway:?}");
    let partial = written(&target);
    assert!(partial < 80 << 20, "killed before the end ({partial} bytes written)");

    if stale_restic_lock(&repo, PASSWORD, s.path()).is_some() {
        assert_eq!(std::fs::read_dir(repo.join("locks")).unwrap().count(), 1, "a stale restic lock is left");
    }
    ct.expect(&["backup", "check", "--read-data"], 0);
    let jobs = ct.json(&["jobs", "--json"]);
    let restore = jobs.as_array().unwrap().iter().find(|j| j["kind"] == "restore").unwrap();
    assert_eq!(restore["outcome"], "interrupted", "{jobs}");

    let out = ct.run(&["backup", "restore", "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "the half-written target is not empty: {}", stderr_of(&out));
    assert_eq!(written(&target), partial, "nothing was written");
    let out = ct.expect(&["backup", "restore", "--json", "--force", "--target", target.to_str().unwrap()], 0);
    let figures: serde_json::Value = serde_json::from_str(&out).unwrap();
    let restored = target.join(media.strip_prefix("/").unwrap());
    assert_eq!(figures["kept_aside"][0]["what"], restored.display().to_string(), "{figures}");
    assert_eq!(listing(&restored), before);
    ct.expect(&["backup", "run"], 0);
}

/// Stock restic, or `None` when it is not installed (a loud skip; a failure under CI).
fn stock_restic() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("restic")).find(|p| p.is_file()));
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "restic is not installed (scripts/deps/apt.txt)");
        eprintln!("SKIPPED: restic not installed");
    }
    found
}

/// A `caretaker backup run` SIGKILLed (by the debug-build hook) right after `step`.
fn backup_killed_at(ct: &caretaker_testkit::Caretaker, step: &str) {
    use std::os::unix::process::ExitStatusExt;
    let out = ct.command(&["backup", "run"]).env("CARETAKER_TEST_KILL_AT_STEP", step).output().unwrap();
    assert_eq!(out.status.signal(), Some(9), "killed at {step}: {}", stderr_of(&out));
}

/// After a SIGKILL, stock restic's `latest` is never caretaker's unfinished (pending) snapshot,
/// and a run killed after its final snapshot was saved is recorded as succeeded (not
/// `interrupted`) by the next run; the one killed before stays `interrupted`.
#[test]
fn killed_backups_leave_restic_latest_on_a_complete_snapshot_and_are_reconciled() {
    let Some(restic) = stock_restic() else { return };
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("first.txt"), "first").unwrap();
    let repo = s.path().join("repo");
    let ct = s.write_config(&local_config(&media, &repo, PASSWORD));
    let pw = s.path().join("restic-pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let restic = |args: &[&str]| {
        let out = Command::new(&restic)
            .args(args)
            .env("RESTIC_REPOSITORY", &repo)
            .env("RESTIC_PASSWORD_FILE", &pw)
            .env("RESTIC_CACHE_DIR", s.path().join("restic-cache"))
            .env_remove("RESTIC_PASSWORD")
            .output()
            .unwrap();
        assert!(out.status.success(), "restic {args:?}: {}", stderr_of(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    // What stock restic restores as `latest`.
    let latest_files = |name: &str| {
        let t = s.path().join(name);
        restic(&["restore", "latest", "--target", t.to_str().unwrap()]);
        let mut v: Vec<String> = std::fs::read_dir(t.join(media.strip_prefix("/").unwrap()))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);

    // Killed with the pending snapshot saved: restic's `latest` is still the complete one.
    std::fs::write(media.join("second.txt"), "second").unwrap();
    backup_killed_at(&ct, "backup.pending_saved");
    let snaps: serde_json::Value = serde_json::from_str(&restic(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "the complete one and the pending one: {snaps}");
    assert_eq!(latest_files("latest-1"), ["first.txt"], "restic's latest is not the pending snapshot");

    // Killed right after the final snapshot was saved: it is restic's latest, complete.
    backup_killed_at(&ct, "backup.final_saved");
    assert_eq!(latest_files("latest-2"), ["first.txt", "second.txt"]);
    let snaps: serde_json::Value = serde_json::from_str(&restic(&["snapshots", "--json"])).unwrap();
    let pending =
        |v: &serde_json::Value| v["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "caretaker-pending"));
    assert!(!snaps.as_array().unwrap().iter().any(pending), "the next run removed the pending one: {snaps}");

    // The next `backup list` (or run) records the killed runs as what they achieved.
    let outcomes = || -> Vec<String> {
        let jobs = ct.json(&["jobs", "--json"]);
        jobs.as_array().unwrap().iter().map(|j| j["outcome"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(outcomes(), ["interrupted", "interrupted", "succeeded"]);
    ct.expect(&["backup", "list"], 0);
    assert_eq!(outcomes(), ["succeeded", "interrupted", "succeeded"]);
    let jobs = ct.json(&["jobs", "--json"]);
    assert!(jobs[0]["error"].as_str().unwrap().contains("killed after snapshot"), "{jobs}");
    ct.expect(&["backup", "run"], 0);
    assert_eq!(outcomes(), ["succeeded", "succeeded", "interrupted", "succeeded"]);
    let list = ct.json(&["backup", "list", "--json"]);
    assert!(list.as_array().unwrap().iter().all(|s| s["complete"] == true), "{list}");
}

/// A file tree that is a mount point (here a tmpfs in a namespace) cannot be renamed aside:
/// a forced in-place restore over it is refused before anything is written, and says why.
#[test]
fn forced_restore_over_a_mounted_tree_is_refused_before_writing() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "in the snapshot").unwrap();
    let repo = s.path().join("repo");
    let ct = s.write_config(&local_config(&media, &repo, PASSWORD));
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);
    let ct_cmd =
        format!("'{}' --config '{}' --state-dir '{}'", ct.bin.display(), ct.config.display(), ct.state_dir.display());
    let o = s.path().join("ns");
    std::fs::create_dir_all(&o).unwrap();
    let m = media.display();
    let script = format!(
        "mount -t tmpfs -o size=1m tmpfs '{m}'\necho live >'{m}/live.txt'\n\
         {ct_cmd} backup restore --force --files-only >'{o}/r.out' 2>'{o}/r.err' && echo 0 >'{o}/r.rc' || echo $? >'{o}/r.rc'\n\
         ls -A '{m}' >'{o}/after.ls'\nls -A '{s}' >'{o}/dir.ls'\n",
        o = o.display(),
        s = s.path().display()
    );
    let Some(ns) = in_namespace(&script) else { return };
    assert!(ns.status.success(), "{}", stderr_of(&ns));
    let err = read(&o.join("r.err"));
    assert_eq!(read(&o.join("r.rc")).trim(), "5", "{err}");
    assert!(err.contains("is a mount point") && err.contains("nothing was written"), "{err}");
    assert!(err.contains("unmount it"), "the hint says what to do instead of --force: {err}");
    assert_eq!(read(&o.join("after.ls")).trim(), "live.txt", "the mounted tree is untouched");
    assert!(!read(&o.join("dir.ls")).contains("from-snapshot"), "not even the config was written");
}
