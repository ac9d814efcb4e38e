//! `caretaker backup ...` end to end on a local repository.

use crate::{stderr_of, Scratch};

#[test]
fn backup_init_run_list_check_restore_and_refusal() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(media.join("été")).unwrap();
    std::fs::write(media.join("été/photo.txt"), "x".repeat(5000)).unwrap();
    let repo = s.path().join("repo");
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: bk\nfiles: [ {} ]\nbackup:\n  repository: {}\n  password: \"a long test password\"\n  schedule: daily\n  keep: {{ last: 2 }}\n",
        media.display(),
        repo.display()
    ));
    let out = ct.run(&["backup", "list"]);
    assert_eq!(out.status.code(), Some(6), "missing repository: {}", stderr_of(&out));
    assert!(stderr_of(&out).contains("caretaker backup init"), "{}", stderr_of(&out));
    ct.expect(&["backup", "init"], 0);
    let run = ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    let list = ct.json(&["backup", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    ct.expect(&["backup", "check", "--read-data-subset", "50%"], 0);
    let target = s.path().join("restored");
    ct.expect(&["backup", "restore", "--target", target.to_str().unwrap()], 0);
    let restored = target.join(media.strip_prefix("/").unwrap()).join("été/photo.txt");
    assert_eq!(std::fs::read_to_string(restored).unwrap().len(), 5000);

    // An emptied file store is refused (exit 5), not backed up.
    std::fs::remove_dir_all(media.join("été")).unwrap();
    let out = ct.run(&["backup", "run"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    ct.expect(&["backup", "prune"], 0);
}

fn sqlite_rows(db: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT body FROM notes ORDER BY id").unwrap();
    st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn database_dump_is_in_the_snapshot_and_restores_into_an_empty_database() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "file data").unwrap();
    let release = s.path().join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(release.join("VERSION"), "1.4.2\n").unwrap();
    let db = s.path().join("app.db");
    let repo = s.path().join("repo");
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: bkdb\n  working_dir: {}\ndatabase: {{ kind: sqlite, path: {} }}\nfiles: [ {} ]\nbackup:\n  repository: {}\n  password: \"a long test password\"\n  schedule: daily\n  keep: {{ last: 2 }}\n",
        release.display(),
        db.display(),
        media.display(),
        repo.display()
    ));
    ct.expect(&["backup", "init"], 0);

    // An empty database is refused before anything is written (exit 5, event recorded).
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        .unwrap();
    let out = ct.run(&["backup", "run"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("safety check"), "{}", stderr_of(&out));
    assert_eq!(ct.json(&["backup", "list", "--json"]).as_array().unwrap().len(), 0);
    let jobs = ct.json(&["jobs", "--json"]);
    assert_eq!(jobs[0]["outcome"], "refused", "{jobs}");

    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("INSERT INTO notes (body) VALUES ('before the backup'), ('ünïcode')")
        .unwrap();
    let run = ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    let list = ct.json(&["backup", "list", "--json"]);
    let snap = &list[0];
    assert!(snap["paths"].as_array().unwrap().iter().any(|p| p == "/caretaker-streams"), "{snap}");
    let tags: Vec<&str> = snap["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tags.contains(&"app-version:1.4.2"), "{tags:?}");
    assert!(tags.contains(&"app:bkdb"), "{tags:?}");

    // The dump as a file below --target.
    let target = s.path().join("out");
    ct.expect(&["backup", "restore", "--db-only", "--target", target.to_str().unwrap()], 0);
    assert_eq!(sqlite_rows(&target.join("caretaker-streams/database")), ["before the backup", "ünïcode"]);

    // Into the database: a database with tables is refused, --force keeps it aside.
    rusqlite::Connection::open(&db).unwrap().execute_batch("INSERT INTO notes (body) VALUES ('after')").unwrap();
    let out = ct.run(&["backup", "restore", "--db-only"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert_eq!(sqlite_rows(&db).len(), 3, "nothing changed");
    ct.expect(&["backup", "restore", "--db-only", "--force"], 0);
    assert_eq!(sqlite_rows(&db), ["before the backup", "ünïcode"]);
    let kept: Vec<_> = std::fs::read_dir(s.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("__old_"))
        .collect();
    assert_eq!(kept.len(), 1, "the replaced contents are kept aside");
    assert_eq!(sqlite_rows(&kept[0].path()).len(), 3);
    let mode = ct.json(&["maintenance", "status", "--json"]);
    assert_eq!(mode["mode"], "normal", "maintenance is switched off again: {mode}");

    // Into a missing database.
    std::fs::remove_file(&db).unwrap();
    ct.expect(&["backup", "restore", "--db-only"], 0);
    assert_eq!(sqlite_rows(&db), ["before the backup", "ünïcode"]);
}
