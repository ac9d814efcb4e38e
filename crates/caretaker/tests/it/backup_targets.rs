//! `caretaker backup ...` round trips of a realistic app on the targets and databases not
//! covered in backup.rs: PostgreSQL + file trees on an SFTP repository (a real sshd on
//! loopback, started by scripts/services), and MariaDB on a local repository.

use crate::{stderr_of, Scratch};
use caretaker_testkit::{require_service, unique_name, TestSshd};
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A file tree with what breaks naive backups: unicode names, symlinks, modes, empty dirs.
pub fn app_tree(root: &Path) -> PathBuf {
    let media = root.join("media");
    std::fs::create_dir_all(media.join("uploads/été 2024/空")).unwrap();
    std::fs::create_dir_all(media.join("empty")).unwrap();
    std::fs::write(media.join("uploads/été 2024/naïve café.txt"), "crème brûlée\n").unwrap();
    std::fs::write(media.join("uploads/big.bin"), (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>())
        .unwrap();
    std::fs::write(media.join("secret.key"), "k").unwrap();
    std::fs::set_permissions(media.join("secret.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(media.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(media.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink("uploads/été 2024/naïve café.txt", media.join("link")).unwrap();
    symlink("/nonexistent/target", media.join("dangling")).unwrap();
    media
}

/// (relative path, kind, mode, content or link target) of every entry, sorted.
pub fn listing(root: &Path) -> Vec<(String, String, u32, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
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
                    std::fs::read_link(&p).unwrap().as_os_str().as_encoded_bytes().to_vec(),
                ));
            } else {
                out.push((rel, "file".into(), mode, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-qtAc", sql]).output().unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn backup_run_check_and_restore_postgres_and_files_on_an_sftp_repository() {
    let Some(sshd) = TestSshd::from_env() else { return };
    let Some(base) = require_service("CARETAKER_TEST_PG_URL") else { return };
    let (server, _) = base.rsplit_once('/').unwrap();
    let name = unique_name("bk_sftp");
    psql(&base, &format!("CREATE DATABASE {name}"));
    let db_url = format!("{server}/{name}");
    psql(&db_url, "CREATE TABLE notes (id serial PRIMARY KEY, body text); INSERT INTO notes (body) VALUES ('über SFTP'), ('second')");

    let s = Scratch::new();
    let media = app_tree(s.path());
    let remote = s.path().join("remote/backups");
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: bksftp\ndatabase: {{ kind: postgres, url: \"{db_url}\" }}\nfiles: [ \"{}\" ]\nbackup:\n  repository: \"{}\"\n  password: \"a long test password\"\n  sftp: {{ key_file: \"{}\", known_hosts_file: \"{}\" }}\n  keep: {{ last: 2 }}\n",
        media.display(),
        sshd.url(&remote),
        sshd.key.display(),
        sshd.known_hosts.display(),
    ));
    // Before init: the missing repository names the command to run.
    let out = ct.run(&["backup", "list"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("caretaker backup init"), "{}", stderr_of(&out));
    ct.expect(&["backup", "init"], 0);
    assert!(remote.join("config").is_file() && remote.join("data/00").is_dir(), "restic's layout on the server");

    let run = ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    let list = ct.json(&["backup", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let paths = list[0]["paths"].as_array().unwrap();
    assert!(paths.iter().any(|p| p == "/caretaker-streams"), "{paths:?}");
    ct.expect(&["backup", "check", "--read-data"], 0);

    // Files back to their paths.
    let before = listing(&media);
    std::fs::remove_dir_all(&media).unwrap();
    ct.expect(&["backup", "restore", "--files-only"], 0);
    assert_eq!(listing(&media), before);

    // The database: a non-empty one is refused; an emptied one gets the dump.
    let out = ct.run(&["backup", "restore", "--db-only"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    psql(&db_url, "DROP TABLE notes");
    ct.expect(&["backup", "restore", "--db-only"], 0);
    assert_eq!(psql(&db_url, "SELECT string_agg(body, '|' ORDER BY id) FROM notes"), "über SFTP|second");

    // Retention over SFTP (keep: last 2): the third run's prune removes the first snapshot and
    // its unreferenced data, and the repository stays consistent.
    psql(&db_url, "INSERT INTO notes (body) VALUES ('third')");
    ct.expect(&["backup", "run"], 0);
    std::fs::write(media.join("new.txt"), "after the first snapshot").unwrap();
    ct.expect(&["backup", "run"], 0);
    let pruned = ct.json(&["backup", "prune", "--json"]);
    assert_eq!(pruned["removed_snapshots"].as_array().unwrap().len(), 1, "{pruned}");
    assert_eq!(ct.json(&["backup", "list", "--json"]).as_array().unwrap().len(), 2);
    ct.expect(&["backup", "check", "--read-data"], 0);
    psql(&base, &format!("DROP DATABASE {name}"));
}

/// Runs SQL on the test MariaDB server; the password goes through a 0600 defaults file.
fn mariadb(url: &str, database: Option<&str>, sql: &str) -> String {
    let rest = url.strip_prefix("mysql://").unwrap();
    let (cred, hostpart) = rest.split_once('@').unwrap();
    let (user, password) = cred.split_once(':').unwrap();
    let (hostport, _) = hostpart.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap();
    let mut opts = tempfile::NamedTempFile::new().unwrap();
    writeln!(opts, "[client]\nuser={user}\npassword={password}\nhost={host}\nport={port}\nprotocol=tcp").unwrap();
    let mut c = Command::new("mariadb");
    c.arg(format!("--defaults-extra-file={}", opts.path().display())).args(["--batch", "--skip-column-names"]);
    if let Some(d) = database {
        c.arg(format!("--database={d}"));
    }
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mariadb: {sql}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn backup_run_and_restore_of_a_mariadb_database() {
    let Some(base) = require_service("CARETAKER_TEST_MARIADB_URL") else { return };
    let name = unique_name("bk_maria");
    mariadb(&base, None, &format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"));
    mariadb(
        &base,
        Some(&name),
        "CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(100) NOT NULL) CHARACTER SET utf8mb4;
         INSERT INTO notes (body) VALUES ('mariadb ünïcode'), ('second');
         CREATE VIEW note_count AS SELECT count(*) AS n FROM notes;",
    );
    let (server, _) = base.rsplit_once('/').unwrap();
    let db_url = format!("{server}/{name}");

    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "file data").unwrap();
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: bkmaria\ndatabase: {{ kind: mariadb, url: \"{db_url}\" }}\nfiles: [ \"{}\" ]\nbackup:\n  repository: \"{}\"\n  password: \"a long test password\"\n  keep: {{ last: 2 }}\n",
        media.display(),
        s.path().join("repo").display(),
    ));
    ct.expect(&["backup", "init"], 0);
    let run = ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert!(run["figures"]["measurement"]["streams"]["database"].as_u64().unwrap() > 0, "{run}");
    ct.expect(&["backup", "check", "--read-data"], 0);

    // The dump as a file: a mariadb-dump script with the rows.
    let target = s.path().join("out");
    ct.expect(&["backup", "restore", "--db-only", "--target", target.to_str().unwrap()], 0);
    let dump = std::fs::read_to_string(target.join("caretaker-streams/database")).unwrap();
    assert!(
        dump.contains("CREATE TABLE `notes`") && dump.contains("mariadb ünïcode"),
        "{}",
        &dump[..dump.len().min(2000)]
    );

    // Into the database: refused while it has tables, restored once emptied.
    let out = ct.run(&["backup", "restore", "--db-only"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    mariadb(&base, None, &format!("DROP DATABASE {name}"));
    ct.expect(&["backup", "restore", "--db-only"], 0);
    assert_eq!(
        mariadb(&base, Some(&name), "SELECT group_concat(body ORDER BY id SEPARATOR '|') FROM notes"),
        "mariadb ünïcode|second"
    );
    assert_eq!(mariadb(&base, Some(&name), "SELECT n FROM note_count"), "2");
    mariadb(&base, None, &format!("DROP DATABASE {name}"));
}
