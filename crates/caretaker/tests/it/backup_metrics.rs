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
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs a backup of `data` rewritten from `seed`; returns its `--json` figures.
fn backup(ct: &Caretaker, data: &Path, seed: u64) -> serde_json::Value {
    std::fs::write(data, noise(seed, 300_000)).unwrap();
    let run = ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    run["figures"].clone()
}

fn check_metrics(ct: &Caretaker, repo: &Path, snapshots: u64, last: &serde_json::Value) -> (String, u64) {
    let text = ct.expect(&["metrics"], 0);
    for name in documented_backup_metrics() {
        assert!(metric(&text, &name).is_some(), "{name} (docs/observe.md) missing in\n{text}");
    }
    let size = dir_bytes(repo);
    assert_eq!(metric(&text, "caretaker_backup_snapshots"), Some(snapshots as f64), "{text}");
    assert_eq!(metric(&text, "caretaker_backup_repository_size_bytes"), Some(size as f64), "{text}");
    assert_eq!(metric(&text, "caretaker_backup_last_added_bytes"), last["bytes_added"].as_f64(), "{text}");
    assert_eq!(metric(&text, "caretaker_backup_last_size_bytes"), last["bytes_read"].as_f64(), "{text}");
    (text, size)
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
    ct.expect(&["backup", "init"], 0);
    backup(&ct, &data, 1);
    backup(&ct, &data, 2);
    let third = backup(&ct, &data, 3);
    let (_, before) = check_metrics(&ct, &repo, 3, &third);

    // Keeping the last one removes two snapshots and the data only they referenced.
    let pruned = ct.json(&["backup", "prune", "--json"]);
    assert_eq!(pruned["removed_snapshots"].as_array().map(Vec::len), Some(2), "{pruned}");
    let (_, after) = check_metrics(&ct, &repo, 1, &third);
    assert!(after + 400_000 < before, "prune freed the two old versions: {before} → {after} bytes");

    let fourth = backup(&ct, &data, 4);
    let (_, last) = check_metrics(&ct, &repo, 2, &fourth);
    assert!(last > after && last < before, "one new version: {after} → {last} bytes (before the prune {before})");
}
