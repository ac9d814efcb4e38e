//! The backup metrics of docs/observe.md from real jobs: backup, prune, backup again on a
//! local repository, `caretaker metrics` after each. The repository figures are checked
//! against the repository directory itself.

use crate::Scratch;
use caretaker_testkit::Caretaker;
use std::path::Path;

/// Every `caretaker_backup_*` name docs/observe.md lists (its "Metric names" section).
fn documented_backup_metrics() -> Vec<String> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/observe.md")).unwrap();
    let section = doc.split("## Metric names").nth(1).expect("docs/observe.md has a Metric names section");
    let mut names: Vec<String> = section
        .split('`')
        .filter(|w| w.starts_with("caretaker_backup_"))
        .map(|w| w.split('{').next().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The value of an unlabelled metric, or `None` when it is missing.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// All bytes of the repository's files (config, keys, snapshots, index, packs).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// Incompressible bytes (xorshift), different for each seed, so every version is new data.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    crate::backup_failures::noise(len, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Runs a backup of `data` rewritten from `seed`; returns its `--json` figures.
fn backup(ct: &Caretaker, data: &Path, seed: u64) -> serde_json::Value {
    std::fs::write(data, noise(seed, 300_000)).unwrap();
    let run = ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    run["figures"].clone()
}

/// Checks every documented backup metric; returns the repository's size as `stored` says.
fn check_metrics(ct: &Caretaker, stored: &dyn Fn() -> u64, snapshots: u64, last: &serde_json::Value) -> u64 {
    let text = ct.expect(&["metrics"], 0);
    for name in documented_backup_metrics() {
        assert!(metric(&text, &name).is_some(), "{name} (docs/observe.md) missing in\n{text}");
    }
    let listed = ct.json(&["backup", "list", "--json"]).as_array().map(Vec::len);
    assert_eq!(listed, Some(snapshots as usize), "snapshots in the repository");
    let size = stored();
    assert_eq!(metric(&text, "caretaker_backup_snapshots"), Some(snapshots as f64), "{text}");
    assert_eq!(metric(&text, "caretaker_backup_repository_size_bytes"), Some(size as f64), "{text}");
    assert_eq!(metric(&text, "caretaker_backup_last_added_bytes"), last["bytes_added"].as_f64(), "{text}");
    assert_eq!(metric(&text, "caretaker_backup_last_size_bytes"), last["bytes_read"].as_f64(), "{text}");
    size
}

/// Three backups, a prune keeping one, a backup again: the metrics after each step.
fn backups_then_prune(ct: &Caretaker, data: &Path, stored: &dyn Fn() -> u64) {
    ct.expect(&["backup", "init"], 0);
    backup(ct, data, 1);
    backup(ct, data, 2);
    let third = backup(ct, data, 3);
    let before = check_metrics(ct, stored, 3, &third);

    // Keeping the last one removes two snapshots and the data only they referenced.
    let pruned = ct.json(&["backup", "prune", "--json"]);
    assert_eq!(pruned["removed_snapshots"].as_array().map(Vec::len), Some(2), "{pruned}");
    assert_eq!(pruned["snapshots"], 1, "{pruned}");
    // Unused packs went at once; everything the kept snapshot needs is still there.
    ct.expect(&["backup", "check", "--read-data"], 0);
    let after = check_metrics(ct, stored, 1, &third);
    assert!(after + 400_000 < before, "prune freed the two old versions: {before} → {after} bytes");

    let fourth = backup(ct, data, 4);
    let last = check_metrics(ct, stored, 2, &fourth);
    assert!(last > after && last < before, "one new version: {after} → {last} bytes (before the prune {before})");
}

#[test]
fn backup_metrics_follow_backups_and_prune() {
    let names = documented_backup_metrics();
    assert!(names.len() >= 4, "docs/observe.md lists the backup metrics: {names:?}");
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let data = media.join("upload.bin");
    let repo = s.path().join("repo");
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: bkm\nfiles: [ {} ]\nbackup:\n  repository: {}\n  password: \"a long test password\"\n  schedule: daily\n  keep: {{ last: 1 }}\n",
        media.display(),
        repo.display()
    ));
    backups_then_prune(&ct, &data, &|| dir_bytes(&repo));
    // Stock restic agrees that the pruned repository is whole.
    match std::process::Command::new("restic")
        .args(["--no-cache", "-r"])
        .arg(&repo)
        .args(["check", "--read-data"])
        .env("RESTIC_PASSWORD", "a long test password")
        .output()
    {
        Ok(out) => assert!(out.status.success(), "restic check: {}", crate::stderr_of(&out)),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "restic is missing: {e} (scripts/install-deps)");
            eprintln!("SKIPPED: restic check (restic is missing: {e})");
        }
    }
}

/// The same on an S3 repository (moto), its size checked against the bucket's listing.
#[test]
fn backup_metrics_follow_backups_and_prune_on_s3() {
    use std::io::{Read, Write};
    let Some(moto) = crate::backup::start_moto() else { return };
    let port = moto.port;
    let http = |req: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "{req} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.contains(" 200 "), "{reply}");
        reply
    };
    http("PUT /bkt");
    // Every object below the repository's prefix (fewer than the 1000 of one listing page).
    let stored = || -> u64 {
        let reply = http("GET /bkt?list-type=2&prefix=app/");
        assert!(!reply.contains("<IsTruncated>true"), "{reply}");
        reply.split("<Size>").skip(1).map(|r| r.split('<').next().unwrap().parse::<u64>().unwrap()).sum()
    };

    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: bkm3\nfiles: [ {} ]\nbackup:\n  repository: \"s3:http://127.0.0.1:{port}/bkt/app\"\n  password: \"a long test password\"\n  s3: {{ access_key_id: AKIDTEST, secret_access_key: \"s3-SECRET-test\" }}\n  schedule: daily\n  keep: {{ last: 1 }}\n",
        media.display(),
    ));
    backups_then_prune(&ct, &media.join("upload.bin"), &stored);
}
