//! A MariaDB server inside a compose service (`database.compose_service`): the dump, the
//! restore, snapshots and reverts all go through its container, with no MariaDB client needed
//! on the host side of caretaker. The server image is made from this machine's MariaDB
//! (no image can be pulled here).

use crate::compose::{copy_libraries, docker, import_root, ComposeApp};
use caretaker_testkit::require_service;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A MariaDB server image from this machine's `mariadbd`, `mariadb` and `mariadb-dump`, their
/// libraries, `/bin/sh`, and a data directory initialised here with `mariadb-install-db`. Its
/// entry script creates the database `MARIADB_DATABASE` and the user `MARIADB_USER` (password
/// `MARIADB_PASSWORD`, all privileges: snapshots are new schemas) on each start, idempotently.
fn build_mariadb_image(app: &ComposeApp) -> Option<String> {
    require_service("CARETAKER_TEST_MARIADB_URL")?;
    let tag = format!("{}-mariadb:1", app.project);
    let root = app.path("mariadbroot");
    for d in ["tmp", "bin", "etc", "usr/sbin", "usr/bin", "usr/share", "var/lib/mysql", "run/mysqld"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let which = |name: &str| -> String {
        let out = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let mut exes = vec![sh.clone()];
    std::fs::copy(&sh, root.join("bin/sh")).unwrap();
    for (name, dir) in [("mariadbd", "usr/sbin"), ("mariadb", "usr/bin"), ("mariadb-dump", "usr/bin")] {
        let mut path = which(name);
        if path.is_empty() && name == "mariadbd" {
            path = "/usr/sbin/mariadbd".into();
        }
        std::fs::copy(&path, root.join(dir).join(name)).unwrap();
        exes.push(path.into());
    }
    assert!(Command::new("cp")
        .args(["-r", "/usr/share/mysql"])
        .arg(root.join("usr/share"))
        .status()
        .unwrap()
        .success());
    copy_libraries(&root, &exes);
    let install = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", root.join("var/lib/mysql").display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db", "--user=root"])
        .arg("--innodb-log-file-size=4M")
        .output()
        .unwrap();
    assert!(install.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&install.stderr));
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nmysql:x:999:999::/var/lib/mysql:/bin/sh\n")
        .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nmysql:x:999:\n").unwrap();
    let entry = r#"#!/bin/sh
set -e
printf "CREATE DATABASE IF NOT EXISTS \`%s\`;\nCREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s';\nGRANT ALL ON *.* TO '%s'@'%%' WITH GRANT OPTION;\n" \
  "$MARIADB_DATABASE" "$MARIADB_USER" "$MARIADB_PASSWORD" "$MARIADB_USER" > /tmp/init.sql
exec mariadbd --no-defaults --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock --port=3306 \
  --bind-address=0.0.0.0 --skip-name-resolve --innodb-log-file-size=4M --init-file=/tmp/init.sql
"#;
    std::fs::write(root.join("entry.sh"), entry).unwrap();
    for (p, mode) in [("entry.sh", 0o755), ("tmp", 0o1777)] {
        std::fs::set_permissions(root.join(p), std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    for d in ["var/lib/mysql", "run/mysqld"] {
        assert!(Command::new("chown").args(["-R", "999:999"]).arg(root.join(d)).status().unwrap().success());
    }
    import_root(&root, &tag, &["ENTRYPOINT [\"/entry.sh\"]", "USER 999", "ENV PATH=/usr/sbin:/usr/bin:/bin"]);
    Some(tag)
}

/// `sql` run by the app's user inside the server's container (the password in its environment).
fn try_sql(container: &str, password: &str, sql: &str) -> std::process::Output {
    Command::new("docker")
        .args(["exec", "-e", "MYSQL_PWD", container, "mariadb", "-uapp", "-N", "-B", "app", "-e", sql])
        .env("MYSQL_PWD", password)
        .output()
        .unwrap()
}

fn sql_in(container: &str, password: &str, sql: &str) -> String {
    let out = try_sql(container, password, sql);
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn job_logs(dir: &Path) -> String {
    let mut logs = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        logs.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    logs
}

#[test]
fn a_mariadb_in_a_compose_service_is_dumped_restored_snapshotted_and_reverted_through_its_container() {
    let Some(app) = ComposeApp::new() else { return };
    let Some(image) = build_mariadb_image(&app) else { return };
    let password = "maria-pw-in-the-container-only-4471";
    app.write(
        "docker-compose.yml",
        &format!(
            r#"version: "3.7"
services:
  db:
    image: {image}
    environment:
      MARIADB_USER: app
      MARIADB_DATABASE: app
      MARIADB_PASSWORD: "${{DB_PASSWORD}}"
    volumes: ["dbdata:/var/lib/mysql"]
    restart: unless-stopped
volumes:
  dbdata:
"#
        ),
    );
    app.config_with(
        &format!("  env: {{ DB_PASSWORD: {{ secret: \"{password}\" }} }}"),
        &format!(
            r#"compose: {{}}
database:
  kind: mariadb
  url: "mysql://app:{password}@db:3306/app"
  compose_service: db
backup:
  repository: "{repo}"
  password: "a long enough test password""#,
            repo = app.path("repo").display()
        ),
    );
    app.ct.expect(&["up", "--timeout", "120"], 0);
    let container = format!("{}_db_1", app.project);
    assert!(!docker(&["ps", "-q", "--filter", &format!("name=^{container}$")]).is_empty(), "{container} runs");
    // The server starts; the app's user exists once it answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !try_sql(&container, password, "SELECT 1").status.success() {
        if std::time::Instant::now() > deadline {
            let logs = Command::new("docker").args(["logs", "--tail", "30", &container]).output().unwrap();
            panic!("MariaDB in its container does not answer: {}", String::from_utf8_lossy(&logs.stderr));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    sql_in(
        &container,
        password,
        "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT CHARACTER SET utf8mb4); \
         INSERT INTO notes VALUES (1, 'before-the-backup'), (2, 'zwölf Boxkämpfer ✓');",
    );
    let rows = || sql_in(&container, password, "SELECT id, body FROM notes ORDER BY id");
    let before = rows();
    let check = app.ct.json(&["db", "check", "--json"]);
    assert!(check.to_string().contains("in container"), "{check}");

    app.ct.expect(&["backup", "init"], 0);
    let run = app.ct.json(&["backup", "run", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert!(run["figures"]["measurement"]["streams"]["database"].as_u64().unwrap() > 0, "{run}");

    // Over live data: refused without --force; with it the old contents are kept aside.
    sql_in(&container, password, "INSERT INTO notes VALUES (3, 'after-the-backup')");
    let refused = app.ct.run(&["backup", "restore", "--db-only"]);
    assert_eq!(refused.status.code(), Some(5), "{}", String::from_utf8_lossy(&refused.stderr));
    app.ct.expect(&["backup", "restore", "--db-only", "--force"], 0);
    assert_eq!(rows(), before, "the restored rows");
    let snaps = app.ct.json(&["db", "snapshots", "--json"]);
    assert!(snaps.to_string().contains("app__old_"), "the previous contents are kept: {snaps}");

    // Snapshot and revert.
    let snap = app.ct.json(&["db", "snapshot", "--label", "t", "--json"]);
    let name = snap["name"].as_str().unwrap().to_string();
    sql_in(&container, password, "INSERT INTO notes VALUES (4, 'after-the-snapshot')");
    assert_ne!(rows(), before);
    app.ct.expect(&["db", "revert", &name, "--yes"], 0);
    assert_eq!(rows(), before, "the reverted rows");

    assert!(!job_logs(&app.path("state/jobs")).contains(password), "a job log holds the password");
}
