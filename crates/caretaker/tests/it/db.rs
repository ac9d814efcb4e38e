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

/// SQL on the test MariaDB server as `user:password`; the password goes through a 0600
/// defaults file.
fn maria_sql(url: &str, database: Option<&str>, sql: &str) -> String {
    use std::io::Write;
    let u = caretaker_db::url::parse_url(url).unwrap();
    let mut opts = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        opts,
        "[client]\nuser={}\npassword={}\nhost={}\nport={}\nprotocol=tcp\ndefault-character-set=utf8mb4",
        u.user.unwrap(),
        u.password.unwrap(),
        u.host.unwrap(),
        u.port.unwrap()
    )
    .unwrap();
    let mut c = std::process::Command::new("mariadb");
    c.arg(format!("--defaults-extra-file={}", opts.path().display())).args(["--batch", "--skip-column-names"]);
    if let Some(d) = database {
        c.arg(format!("--database={d}"));
    }
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mariadb: {sql}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A MariaDB app whose schema holds views, a procedure, a trigger, 4-byte UTF-8 text and
/// binary blobs, all owned by the app's own user (no administrator rights): `caretaker check`
/// finds the dump privileges in order, and a recover onto an emptied database on a fresh
/// state directory gives identical `CHECKSUM TABLE` results and working routines.
#[test]
fn mariadb_recover_keeps_views_routines_triggers_utf8mb4_and_blobs_identical() {
    let Some(root) = caretaker_testkit::require_service("CARETAKER_TEST_MARIADB_URL") else { return };
    let (server, _) = root.rsplit_once('/').unwrap();
    let name = caretaker_testkit::unique_name("rec_maria");
    let user = caretaker_testkit::unique_name("ct_app");
    let password = "app-password-for-recover";
    maria_sql(
        &root,
        None,
        &format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
             CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';
             GRANT ALL ON `{name}`.* TO '{user}'@'%';"
        ),
    );
    let app_url =
        format!("{}/{name}", server.replacen("root:caretaker-test-mariadb", &format!("{user}:{password}"), 1));
    assert!(app_url.contains(&user), "{app_url}");
    // Everything created by the app's user, so it is the DEFINER of each.
    maria_sql(
        &app_url,
        Some(&name),
        "CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(200) NOT NULL, data LONGBLOB) ENGINE=InnoDB;
         CREATE TABLE audit (note_id INT, action VARCHAR(10)) ENGINE=InnoDB;
         CREATE TRIGGER notes_audit AFTER INSERT ON notes FOR EACH ROW INSERT INTO audit VALUES (NEW.id, 'insert');
         CREATE VIEW note_lengths AS SELECT id, CHAR_LENGTH(body) AS chars, LENGTH(data) AS bytes FROM notes;
         CREATE PROCEDURE add_note(b VARCHAR(200)) INSERT INTO notes (body, data) VALUES (b, UNHEX(SHA2(b, 256)));
         INSERT INTO notes (body, data) VALUES
           ('emoji 😀🚀 and 𝄞 clef', UNHEX('00FF00FE7F80')),
           ('ünïcödé ✓', REPEAT(UNHEX('DEADBEEF00'), 20000)),
           ('empty blob', ''), ('null blob', NULL);
         CALL add_note('from the procedure 🦀');",
    );
    let checksums = |db: &str| maria_sql(&app_url, Some(db), "CHECKSUM TABLE notes, audit EXTENDED");
    let before = checksums(&name);
    let counts = "SELECT (SELECT COUNT(*) FROM notes), (SELECT COUNT(*) FROM audit), \
                  (SELECT GROUP_CONCAT(chars, '/', IFNULL(bytes, 'null') ORDER BY id) FROM note_lengths)";
    let before_counts = maria_sql(&app_url, Some(&name), counts);

    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "file data").unwrap();
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: recmaria\ndatabase: {{ kind: mariadb, url: \"{app_url}\" }}\nfiles: [ \"{}\" ]\nbackup:\n  repository: \"{}\"\n  password: \"a long test password\"\n  keep: {{ last: 2 }}\nalerts: {{ rules: {{ load_per_cpu: false, memory_used_percent: false, filesystem_free_percent: false }} }}\n",
        media.display(),
        s.path().join("repo").display(),
    ));
    let out = ct.run(&["db", "check"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("dump      ok"), "{}", String::from_utf8_lossy(&out.stdout));
    ct.expect(&["backup", "init"], 0);
    let run = ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");

    // Disaster: the schema is emptied by the server's administrator and the state is gone.
    maria_sql(
        &root,
        None,
        &format!("DROP DATABASE {name}; CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"),
    );
    std::fs::remove_dir_all(&media).unwrap();
    std::fs::create_dir_all(&media).unwrap();
    let fresh = caretaker_testkit::Caretaker::new(crate::BIN, &s.config(), &s.path().join("state-new"));
    let out = fresh.run(&["recover"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    assert_eq!(checksums(&name), before, "CHECKSUM TABLE after recover");
    assert_eq!(maria_sql(&app_url, Some(&name), counts), before_counts);
    assert_eq!(maria_sql(&app_url, Some(&name), "SELECT body FROM notes WHERE id = 1"), "emoji 😀🚀 and 𝄞 clef");
    // The trigger and the procedure came back and work.
    maria_sql(&app_url, Some(&name), "CALL add_note('after the recover');");
    assert_eq!(maria_sql(&app_url, Some(&name), "SELECT COUNT(*) FROM audit"), "6");
    assert_eq!(std::fs::read_to_string(media.join("a.txt")).unwrap(), "file data");
    maria_sql(&root, None, &format!("DROP DATABASE {name}; DROP USER '{user}'@'%';"));
}

/// A procedure owned by root in the app's schema: `caretaker check` and `caretaker db check`
/// say before the night the backup fails that the dump cannot read it, and name the grant.
#[test]
fn check_names_the_grant_for_a_routine_owned_by_another_user() {
    let Some(root) = caretaker_testkit::require_service("CARETAKER_TEST_MARIADB_URL") else { return };
    let (server, _) = root.rsplit_once('/').unwrap();
    let name = caretaker_testkit::unique_name("chk_maria");
    let user = caretaker_testkit::unique_name("ct_app");
    let password = "app-password-for-check";
    maria_sql(
        &root,
        None,
        &format!(
            "CREATE DATABASE {name}; CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';
             GRANT ALL ON `{name}`.* TO '{user}'@'%';
             CREATE TABLE {name}.t (id INT); INSERT INTO {name}.t VALUES (1);
             CREATE DEFINER=CURRENT_USER PROCEDURE {name}.it_managed() SELECT 1;"
        ),
    );
    let app_url =
        format!("{}/{name}", server.replacen("root:caretaker-test-mariadb", &format!("{user}:{password}"), 1));
    let s = Scratch::new();
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: chkmaria\ndatabase: {{ kind: mariadb, url: \"{app_url}\" }}\nalerts: {{ rules: {{ load_per_cpu: false, memory_used_percent: false, filesystem_free_percent: false }} }}\n"
    ));
    let out = ct.run(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v.as_array().or_else(|| v["checks"].as_array()).unwrap();
    let dump = checks.iter().find(|c| c["name"] == "database dump").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(dump["status"], "critical", "{dump}");
    let msg = dump["message"].as_str().unwrap();
    assert!(msg.contains("procedure `it_managed` (DEFINER=root@") && msg.contains("GRANT "), "{msg}");
    assert!(msg.contains("database.dump_routines: false"), "{msg}");

    let out = ct.run(&["db", "check"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("dump      CANNOT READ EVERYTHING"), "{out:?}");
    assert!(stderr_of(&out).contains("GRANT "), "{}", stderr_of(&out));
    maria_sql(&root, None, &format!("DROP DATABASE {name}; DROP USER '{user}'@'%';"));
}
