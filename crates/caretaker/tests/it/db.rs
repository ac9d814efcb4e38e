use crate::{stderr_of, Scratch};

fn config(db: &std::path::Path) -> String {
    format!(
        "version: 1\napp:\n  name: dbapp\ndatabase:\n  kind: sqlite\n  path: {}\n  min_rows: {{ items: 2 }}\n",
        db.display()
    )
}

#[test]
fn db_commands_check_snapshot_and_revert_a_sqlite_database() {
    let s = Scratch::new();
    let db = s.path().join("app.sqlite3");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE items (v TEXT); INSERT INTO items VALUES ('a');").unwrap();
    drop(conn);
    let ct = s.write_config(&config(&db));

    // One row where min_rows asks for two: the safety check refuses (exit 5) and says why.
    let out = ct.run(&["db", "check"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("table `items` has 1 rows, fewer than the 2"), "{}", stderr_of(&out));

    rusqlite::Connection::open(&db).unwrap().execute("INSERT INTO items VALUES ('b')", []).unwrap();
    let out = ct.expect(&["db", "check"], 0);
    assert!(out.contains("safety    ok (1 tables)"), "{out}");

    let snap = ct.json(&["db", "snapshot", "--label", "pre-update", "--json"]);
    let name = snap["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("app.sqlite3__snap_") && name.ends_with("_pre-update"), "{name}");
    rusqlite::Connection::open(&db).unwrap().execute("DROP TABLE items", []).unwrap();

    // Revert needs --yes (it ends the app's sessions), then brings the table back.
    assert_eq!(ct.run(&["db", "revert", &name]).status.code(), Some(5));
    let out = ct.expect(&["db", "revert", &name, "--yes"], 0);
    assert!(out.contains("kept as app.sqlite3__old_"), "{out}");
    let n: i64 =
        rusqlite::Connection::open(&db).unwrap().query_row("SELECT count(*) FROM items", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 2);

    let copies = ct.json(&["db", "snapshots", "--json"]);
    assert_eq!(copies.as_array().unwrap().len(), 1, "{copies}");
    assert_eq!(copies[0]["kind"], "kept-aside");
    // Within the policy: `db prune` says that it removes nothing, and why.
    let out = ct.expect(&["db", "prune"], 0);
    assert!(out.contains("nothing to remove: 1 copy kept (the newest 3 of each kind"), "{out}");
    let out = ct.expect(&["db", "prune", "--dry-run"], 0);
    assert!(out.contains("nothing to remove"), "{out}");
    let out = ct.expect(&["db", "prune", "--keep-last", "0", "--max-age", "0s"], 0);
    assert!(out.contains("removed app.sqlite3__old_") && out.contains("removed 1; 0 copies kept"), "{out}");
    assert!(ct.json(&["db", "snapshots", "--json"]).as_array().unwrap().is_empty());

    let jobs = ct.json(&["jobs", "--json"]);
    let kinds: Vec<&str> = jobs.as_array().unwrap().iter().map(|j| j["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["db_prune", "db_prune", "db_revert", "db_snapshot"]);
}

#[test]
fn db_check_of_a_missing_database_is_unavailable_with_a_hint() {
    let s = Scratch::new();
    let ct = s.write_config(&config(&s.path().join("missing.sqlite3")));
    let out = ct.run(&["db", "check"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("hint: check database.path"), "{}", stderr_of(&out));
}

/// `caretaker check` runs the database's safety check ("reachable and not empty"), like the
/// backups do, and a failure is critical (exit 2, Nagios style).
#[test]
fn deployment_check_reports_an_empty_database_as_critical() {
    let s = Scratch::new();
    let db = s.path().join("app.sqlite3");
    rusqlite::Connection::open(&db).unwrap().execute_batch("CREATE TABLE items (v TEXT);").unwrap();
    let ct = s.write_config(&config(&db));
    let contents = |v: &serde_json::Value| {
        v.as_array()
            .or_else(|| v["checks"].as_array())
            .unwrap()
            .iter()
            .find(|c| c["name"] == "database contents")
            .cloned()
            .unwrap_or_else(|| panic!("no database contents check in {v}"))
    };
    let out = ct.run(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(contents(&v)["status"], "critical", "{v}");

    rusqlite::Connection::open(&db).unwrap().execute_batch("INSERT INTO items VALUES ('a'), ('b');").unwrap();
    let out = ct.run(&["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(contents(&v)["status"], "ok", "{v}");
}
