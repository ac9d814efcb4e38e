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

/// The CLI on an S3 repository (`s3:http://…` + `backup.s3` keys) against a moto server.
#[test]
fn backup_run_list_and_restore_on_an_s3_repository() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let ok = Command::new("python3")
        .args(["-c", "import moto.server, flask"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "moto is not installed: pip install 'moto[server]'");
        eprintln!("SKIPPED: moto not installed (pip install 'moto[server]')");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _moto = Kill(
        Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    caretaker_testkit::wait_until(std::time::Duration::from_secs(60), "moto to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "PUT /bkt HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.contains(" 200 "), "{reply}");

    let sc = Scratch::new();
    let media = sc.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "file data").unwrap();
    let db = sc.path().join("app.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('in s3')",
        )
        .unwrap();
    let ct = sc.write_config(&format!(
        "version: 1\napp:\n  name: bks3\ndatabase: {{ kind: sqlite, path: {} }}\nfiles: [ {} ]\nbackup:\n  repository: \"s3:http://127.0.0.1:{port}/bkt/app\"\n  password: \"a long test password\"\n  s3: {{ access_key_id: AKIDTEST, secret_access_key: \"s3-SECRET-test\" }}\n  schedule: daily\n  keep: {{ last: 2 }}\n",
        db.display(),
        media.display(),
    ));
    ct.expect(&["backup", "init"], 0);
    let run = ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(ct.json(&["backup", "list", "--json"]).as_array().unwrap().len(), 1);
    ct.expect(&["backup", "check", "--read-data"], 0);
    std::fs::remove_file(&db).unwrap();
    ct.expect(&["backup", "restore", "--db-only"], 0);
    assert_eq!(sqlite_rows(&db), ["in s3"]);
}

/// Runs caretaker under a pseudo-terminal (`script`), returning what the terminal showed.
fn on_a_terminal(ct: &caretaker_testkit::Caretaker, args: &str) -> String {
    let cmd = format!(
        "'{}' --config '{}' --state-dir '{}' {args}",
        ct.bin.display(),
        ct.config.display(),
        ct.state_dir.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("COLUMNS", "120")
        .env("LINES", "40")
        .output()
        .expect("`script` (util-linux) runs commands under a pseudo-terminal");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "caretaker {args} on a terminal: {shown}");
    shown
}

/// Progress bars show on a terminal (backup run, check with data, restore of files and of the
/// database, prune) and stay
/// away from pipes and JSON output; `check --json` prints a summary.
#[test]
fn progress_bars_on_a_terminal_and_quiet_otherwise() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(media.join("data.bin"), data).unwrap();
    let db = s.path().join("app.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('x')")
        .unwrap();
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: bars\ndatabase: {{ kind: sqlite, path: {} }}\nfiles: [ {} ]\nbackup:\n  repository: {}\n  password: \"a long test password\"\n  keep: {{ last: 1 }}\n",
        db.display(),
        media.display(),
        s.path().join("repo").display()
    ));
    ct.expect(&["backup", "init"], 0);
    let shown = on_a_terminal(&ct, "backup run");
    assert!(shown.contains("backing up") && shown.contains("\x1b[2K"), "no progress bar on the terminal: {shown:?}");
    assert!(shown.contains("backing up: ") && shown.contains("MiB in "), "no summary line of the bar: {shown:?}");
    let shown = on_a_terminal(&ct, "backup check --read-data");
    assert!(shown.contains("reading pack data"), "{shown:?}");
    let shown = on_a_terminal(&ct, &format!("backup restore --target '{}'", s.path().join("t").display()));
    assert!(shown.contains("restoring file contents"), "{shown:?}");
    let shown = on_a_terminal(&ct, "backup restore --db-only --force");
    assert!(shown.contains("restoring the database: "), "{shown:?}");
    on_a_terminal(&ct, "backup run");
    let shown = on_a_terminal(&ct, "backup prune");
    assert!(shown.contains("removed 1 snapshot(s)"), "{shown:?}");

    // Not on a terminal: no bars, no escape sequences, no engine chatter.
    let out = ct.run(&["backup", "run"]);
    assert_eq!(out.status.code(), Some(0));
    let err = stderr_of(&out);
    assert!(!err.contains("backing up") && !err.contains('\x1b') && !err.contains("INFO"), "{err}");
    let check = ct.json(&["backup", "check", "--json"]);
    assert_eq!(check["consistent"], true, "{check}");
    assert!(check["errors"].as_array().unwrap().is_empty(), "{check}");
}
