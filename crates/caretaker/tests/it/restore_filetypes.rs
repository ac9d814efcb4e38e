//! `caretaker backup restore` of file trees with hard links, from a damaged repository, and the
//! modes of what it writes (issue 15 item 4, issue 16 items 5 and 6).

use crate::{stderr_of, Scratch};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn config(s: &Scratch, media: &Path, db: Option<&Path>) -> caretaker_testkit::Caretaker {
    let database = db.map(|d| format!("database: {{ kind: sqlite, path: {} }}\n", d.display())).unwrap_or_default();
    s.write_config(&format!(
        "version: 1\napp:\n  name: ft\n  working_dir: {}\n{database}files: [ {} ]\nbackup:\n  repository: {}\n  password: \"a long test password\"\n  schedule: daily\n  keep: {{ last: 2 }}\n",
        s.path().display(),
        media.display(),
        s.path().join("repo").display()
    ))
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    rd.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}

/// The reported case: `a/f1`, a hard link `a/f2` to it and another link `f3`; `restore
/// --files-only --target` failed with "Failed to recreate the hardlink … File exists" and
/// left a partial tree.
#[test]
fn a_tree_with_hard_links_restores_with_the_links() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(media.join("a")).unwrap();
    std::fs::write(media.join("a/f1"), "one inode, three names\n").unwrap();
    std::fs::set_permissions(media.join("a/f1"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::hard_link(media.join("a/f1"), media.join("a/f2")).unwrap();
    std::fs::hard_link(media.join("a/f1"), media.join("f3")).unwrap();
    std::fs::write(media.join("z-after"), "restored after the links\n").unwrap();
    let ct = config(&s, &media, None);
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);
    let target = s.path().join("restored");
    let out = ct.run(&["backup", "restore", "--files-only", "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let r = target.join(media.strip_prefix("/").unwrap());
    let f1 = std::fs::metadata(r.join("a/f1")).unwrap();
    for name in ["a/f2", "f3"] {
        let m = std::fs::metadata(r.join(name)).unwrap();
        assert_eq!((m.dev(), m.ino()), (f1.dev(), f1.ino()), "{name} is not a link to a/f1");
    }
    assert_eq!(f1.nlink(), 3);
    assert_eq!(f1.mode() & 0o777, 0o640);
    assert_eq!(f1.mtime(), std::fs::metadata(media.join("a/f1")).unwrap().mtime());
    assert_eq!(std::fs::read_to_string(r.join("f3")).unwrap(), "one inode, three names\n");
    assert_eq!(std::fs::read_to_string(r.join("z-after")).unwrap(), "restored after the links\n");
}

/// The repository is private to its owner as with stock restic (directories 0700, files
/// 0400), and the plaintext dump `restore --target` writes is 0600.
#[test]
fn the_repository_and_a_restored_dump_are_private() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "a\n").unwrap();
    let db = s.path().join("app.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('secret row')")
        .unwrap();
    let ct = config(&s, &media, Some(&db));
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);
    let repo = s.path().join("repo");
    let files = walk(&repo);
    assert!(files.iter().any(|f| f.starts_with(repo.join("keys"))), "{files:?}");
    for f in &files {
        assert_eq!(std::fs::metadata(f).unwrap().mode() & 0o777, 0o400, "{}", f.display());
        let dir = f.parent().unwrap();
        assert_eq!(std::fs::metadata(dir).unwrap().mode() & 0o777, 0o700, "{}", dir.display());
    }
    let target = s.path().join("restored");
    ct.expect(&["backup", "restore", "--target", target.to_str().unwrap()], 0);
    let dumps = walk(&target.join("caretaker-streams"));
    assert!(!dumps.is_empty(), "no dump restored");
    for d in &dumps {
        assert_eq!(std::fs::metadata(d).unwrap().mode() & 0o777, 0o600, "{}", d.display());
    }
}

/// A damaged pack: `restore` exits 1 and leaves no file under the damaged file's name (not a
/// full-size file with zeros), says it once with a hint; `check --read-data` names the
/// snapshot and the file.
#[test]
fn a_damaged_pack_is_named_and_leaves_no_damaged_file() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let big: Vec<u8> = (0..5 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(media.join("big.bin"), &big).unwrap();
    let ct = config(&s, &media, None);
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);
    let snap = ct.json(&["backup", "list", "--json"])[0]["short_id"].as_str().unwrap().to_string();
    // Damage every blob of the big data packs (tree packs are small).
    for p in walk(&s.path().join("repo/data")) {
        if std::fs::metadata(&p).unwrap().len() < 1 << 20 {
            continue;
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut data = std::fs::read(&p).unwrap();
        for at in (1000..data.len() - 8192).step_by(256 << 10) {
            for b in &mut data[at..at + 64] {
                *b ^= 0xff;
            }
        }
        std::fs::write(&p, data).unwrap();
    }
    let target = s.path().join("restored");
    let out = ct.run(&["backup", "restore", "--files-only", "--target", target.to_str().unwrap()]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!target.join(media.strip_prefix("/").unwrap()).join("big.bin").exists(), "damaged file left: {err}");
    assert!(err.contains("big.bin") && err.contains("hint:"), "{err}");
    assert_eq!(err.matches("MAC check failed").count(), 1, "rustic's text once: {err}");
    assert!(!err.contains("Backtrace"), "{err}");

    let out = ct.run(&["backup", "check", "--read-data"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("snapshot {snap}")), "{err}");
    assert!(err.contains(&format!("{}/big.bin", media.display())), "{err}");
}
