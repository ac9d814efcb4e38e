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

/// A moto S3 server on a free local port, stopped when dropped; `None` (the test is skipped)
/// when moto is not installed, which CI does not allow.
pub(crate) fn start_moto() -> Option<Moto> {
    use std::process::{Command, Stdio};
    let ok = Command::new("python3")
        .args(["-c", "import moto.server, flask"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "moto is not installed: pip install 'moto[server]'");
        eprintln!("SKIPPED: moto not installed (pip install 'moto[server]')");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let moto = Moto { child, port };
    caretaker_testkit::wait_until(std::time::Duration::from_secs(60), "moto to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    Some(moto)
}

/// A running moto server (see `start_moto`).
pub(crate) struct Moto {
    child: std::process::Child,
    pub(crate) port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CLI on an S3 repository (`s3:http://…` + `backup.s3` keys) against a moto server.
#[test]
fn backup_run_list_and_restore_on_an_s3_repository() {
    use std::io::{Read, Write};
    let Some(moto) = start_moto() else { return };
    let port = moto.port;
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

/// Every file below `root` (but the state directory and the repository) with its content: a
/// restore that is refused must leave this unchanged.
fn fingerprint(root: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == "state" || rel == "repo" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{rel}/"), vec![]);
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The files of a tree as (relative path, content), for comparing restored trees.
fn tree_files(root: &std::path::Path) -> Vec<(String, String)> {
    fingerprint(root)
        .into_iter()
        .filter(|(k, _)| !k.ends_with('/'))
        .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
        .collect()
}

/// How often a restore switched maintenance mode on (events in the state database).
fn maintenance_switches(scratch: &std::path::Path) -> usize {
    let c = rusqlite::Connection::open(scratch.join("state/state.db")).unwrap();
    c.query_row("SELECT count(*) FROM events WHERE kind = 'maintenance_on' AND subject = 'restore'", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap() as usize
}

/// Names in `dir` containing `part`.
fn names_with(dir: &std::path::Path, part: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter(|e| e.file_name().to_string_lossy().contains(part)).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The restore matrix (issue #16): in place and `--target`, with and without `--force`, for
/// files-only, db-only and all, with and without live data. Each case is either "refused,
/// nothing written" (every file of the scratch directory unchanged — live trees, live config,
/// database, target — and the job recorded `refused`) or "done, live data kept aside and
/// listed" (with the kept-aside copies holding exactly the live data). The snapshot's config
/// never replaces the live one: it is written next to it as `caretaker.yml.from-snapshot`.
#[test]
fn restore_matrix_refuses_before_writing_anything_and_keeps_live_data_aside_when_forced() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(media.join("sub")).unwrap();
    std::fs::write(media.join("a.txt"), "snapshot a").unwrap();
    std::fs::write(media.join("sub/b.txt"), "snapshot b").unwrap();
    let snapshot_media = tree_files(&media);
    let db = s.path().join("app.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('in the snapshot')")
        .unwrap();
    let config_text = format!(
        "version: 1\napp:\n  name: matrix\ndatabase: {{ kind: sqlite, path: {} }}\nfiles: [ {} ]\nbackup:\n  repository: {}\n  password: \"a long test password\"\n  keep: {{ last: 2 }}\n",
        db.display(),
        media.display(),
        s.path().join("repo").display()
    );
    let ct = s.write_config(&config_text);
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);
    // The live config differs from the snapshot's from now on.
    let live_config = format!("{config_text}# edited after the backup\n");
    std::fs::write(s.config(), &live_config).unwrap();
    let from_snapshot = s.path().join("caretaker.yml.from-snapshot");

    let live_media = [("a.txt", "live a"), ("c.txt", "live only")];
    let mut case = 0;
    for in_place in [true, false] {
        for force in [false, true] {
            for what in ["files", "db", "all"] {
                for live in [false, true] {
                    case += 1;
                    let name = format!(
                        "case {case}: {} {what}{} {} live data",
                        if in_place { "in place" } else { "--target" },
                        if force { " --force" } else { "" },
                        if live { "with" } else { "without" }
                    );
                    // The live state of this case; leftovers of earlier cases go.
                    for p in names_with(s.path(), "caretaker-old").into_iter().chain(names_with(s.path(), "__old_")) {
                        if p.is_dir() {
                            std::fs::remove_dir_all(&p).unwrap();
                        } else {
                            std::fs::remove_file(&p).unwrap();
                        }
                    }
                    let _ = std::fs::remove_file(&from_snapshot);
                    let _ = std::fs::remove_dir_all(&media);
                    let _ = std::fs::remove_file(&db);
                    if live || !in_place {
                        std::fs::create_dir_all(&media).unwrap();
                        for (f, text) in live_media {
                            std::fs::write(media.join(f), text).unwrap();
                        }
                        rusqlite::Connection::open(&db)
                            .unwrap()
                            .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('live 1'), ('live 2')")
                            .unwrap();
                    }
                    let target = s.path().join(format!("target-{case}"));
                    let target_media = target.join(media.strip_prefix("/").unwrap());
                    if !in_place && live {
                        std::fs::create_dir_all(&target_media).unwrap();
                        std::fs::write(target_media.join("a.txt"), "an earlier restore").unwrap();
                        std::fs::write(target.join("unrelated.txt"), "not caretaker's").unwrap();
                    }
                    let before = fingerprint(s.path());
                    let switches_before = maintenance_switches(s.path());
                    let mut args = vec!["backup", "restore", "--json"];
                    match what {
                        "files" => args.push("--files-only"),
                        "db" => args.push("--db-only"),
                        _ => {}
                    }
                    if force {
                        args.push("--force");
                    }
                    if !in_place {
                        args.extend(["--target", target.to_str().unwrap()]);
                    }
                    let out = ct.run(&args);
                    let err = stderr_of(&out);
                    let jobs = ct.json(&["jobs", "--json"]);
                    let mode = ct.json(&["maintenance", "status", "--json"]);
                    assert_eq!(mode["mode"], "normal", "{name}: the mode found is restored: {mode}");
                    let refused = live && !force;
                    let in_maintenance = in_place && !refused;
                    assert_eq!(
                        maintenance_switches(s.path()) - switches_before,
                        usize::from(in_maintenance),
                        "{name}: an in-place restore runs in maintenance mode (switched on once), no other"
                    );

                    if refused {
                        assert_eq!(out.status.code(), Some(5), "{name}: refused: {err}");
                        assert!(err.contains("refusing to restore over live data"), "{name}: {err}");
                        assert!(err.contains("nothing was written") && err.contains("--force"), "{name}: {err}");
                        assert_eq!(fingerprint(s.path()), before, "{name}: nothing was written");
                        assert_eq!(
                            (&jobs[0]["kind"], &jobs[0]["outcome"]),
                            (&"restore".into(), &"refused".into()),
                            "{name}: {jobs}"
                        );
                        continue;
                    }
                    assert_eq!(out.status.code(), Some(0), "{name}: {err}");
                    assert_eq!(jobs[0]["outcome"], "succeeded", "{name}: {jobs}");
                    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                    let kept: Vec<(String, String)> = figures["kept_aside"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|k| (k["what"].as_str().unwrap().to_string(), k["kept_as"].as_str().unwrap().to_string()))
                        .collect();
                    let files = what != "db";
                    let dbs = what != "files";
                    if in_place {
                        let mut expected_kept = 0;
                        if files {
                            assert_eq!(tree_files(&media), snapshot_media, "{name}: the files are the snapshot's");
                            assert_eq!(std::fs::read_to_string(&from_snapshot).unwrap(), config_text, "{name}");
                            if live {
                                let (_, aside) = kept
                                    .iter()
                                    .find(|(w, _)| *w == media.display().to_string())
                                    .unwrap_or_else(|| panic!("{name}: media not listed: {kept:?}"));
                                assert!(aside.contains(".caretaker-old-"), "{name}: {aside}");
                                let aside_files = tree_files(std::path::Path::new(aside));
                                assert_eq!(
                                    aside_files,
                                    live_media.map(|(f, t)| (f.to_string(), t.to_string())),
                                    "{name}: the live files are kept aside whole"
                                );
                                expected_kept += 1;
                            }
                        } else {
                            if live {
                                assert_eq!(
                                    std::fs::read(media.join("a.txt")).unwrap(),
                                    b"live a",
                                    "{name}: files untouched by --db-only"
                                );
                            } else {
                                assert!(!media.exists(), "{name}: --db-only restores no files");
                            }
                            assert!(!from_snapshot.exists(), "{name}");
                        }
                        if dbs {
                            assert_eq!(sqlite_rows(&db), ["in the snapshot"], "{name}");
                            if live {
                                let (_, aside) = kept
                                    .iter()
                                    .find(|(w, _)| w.starts_with("database "))
                                    .unwrap_or_else(|| panic!("{name}: database not listed: {kept:?}"));
                                let copy = names_with(s.path(), "__old_");
                                assert_eq!(copy.len(), 1, "{name}: {copy:?}");
                                let copy_name = copy[0].file_name().unwrap().to_string_lossy().into_owned();
                                assert!(
                                    aside.contains(&copy_name) || copy[0].to_string_lossy().contains(aside.as_str()),
                                    "{name}: {aside} vs {copy:?}"
                                );
                                assert_eq!(sqlite_rows(&copy[0]), ["live 1", "live 2"], "{name}");
                                expected_kept += 1;
                            }
                        } else if live {
                            assert_eq!(
                                sqlite_rows(&db),
                                ["live 1", "live 2"],
                                "{name}: database untouched by --files-only"
                            );
                        }
                        assert_eq!(kept.len(), expected_kept, "{name}: {kept:?}");
                    } else {
                        // The live data is never touched by a restore below a target.
                        for k in ["media/a.txt", "media/c.txt", "app.db"] {
                            assert_eq!(fingerprint(s.path()).get(k), before.get(k), "{name}: {k} untouched");
                        }
                        assert_eq!(std::fs::read_to_string(s.config()).unwrap(), live_config, "{name}");
                        if files {
                            assert_eq!(tree_files(&target_media), snapshot_media, "{name}");
                            let config_below =
                                target.join(s.config().canonicalize().unwrap().strip_prefix("/").unwrap());
                            assert_eq!(std::fs::read_to_string(config_below).unwrap(), config_text, "{name}");
                        }
                        if dbs {
                            assert_eq!(
                                sqlite_rows(&target.join("caretaker-streams/database")),
                                ["in the snapshot"],
                                "{name}"
                            );
                        }
                        if live {
                            assert_eq!(
                                std::fs::read_to_string(target.join("unrelated.txt")).unwrap(),
                                "not caretaker's",
                                "{name}"
                            );
                        }
                        if live && files {
                            assert_eq!(kept.len(), 1, "{name}: {kept:?}");
                            assert_eq!(kept[0].0, target_media.display().to_string(), "{name}");
                            assert_eq!(
                                std::fs::read_to_string(std::path::Path::new(&kept[0].1).join("a.txt")).unwrap(),
                                "an earlier restore",
                                "{name}"
                            );
                        } else {
                            assert!(kept.is_empty(), "{name}: {kept:?}");
                        }
                    }
                }
            }
        }
    }
    assert_eq!(case, 24);

    // --replace-config puts the snapshot's config in place: refused over the live config
    // without --force, which keeps it aside.
    let before = fingerprint(s.path());
    let out = ct.run(&["backup", "restore", "--files-only", "--replace-config"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert_eq!(fingerprint(s.path()), before, "nothing was written");
    ct.expect(&["backup", "restore", "--files-only", "--replace-config", "--force"], 0);
    assert_eq!(std::fs::read_to_string(s.config()).unwrap(), config_text);
    let kept = names_with(s.path(), "caretaker.yml.caretaker-old-");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), live_config);
}

/// A database dump that shrank suspiciously is refused with a hint naming the override;
/// `backup run --allow-shrink` lets that one run through, and the check is back for the next.
#[test]
fn shrink_refusal_has_a_hint_and_allow_shrink_overrides_it_for_one_run() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "file data").unwrap();
    let db = s.path().join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)").unwrap();
    for i in 0..200 {
        c.execute("INSERT INTO notes (body) VALUES (?1)", [format!("{i:04}{}", "x".repeat(1000))]).unwrap();
    }
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: shrink\ndatabase: {{ kind: sqlite, path: {} }}\nfiles: [ {} ]\nbackup:\n  repository: {}\n  password: \"a long test password\"\n  max_shrink_percent: 50\n  keep: {{ last: 5 }}\n",
        db.display(),
        media.display(),
        s.path().join("repo").display()
    ));
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);
    c.execute_batch("DELETE FROM notes WHERE id > 1; VACUUM").unwrap();
    drop(c);
    let out = ct.run(&["backup", "run"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("stream database shrank by"), "{err}");
    assert!(err.contains("hint:") && err.contains("caretaker backup run --allow-shrink"), "{err}");
    assert_eq!(ct.json(&["jobs", "--json"])[0]["outcome"], "refused");
    assert_eq!(ct.json(&["backup", "list", "--json"]).as_array().unwrap().len(), 1, "no snapshot was added");

    let run = ct.json(&["backup", "run", "--allow-shrink", "--json"]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(ct.json(&["backup", "list", "--json"]).as_array().unwrap().len(), 2);
    // The next run compares with the new, smaller snapshot.
    ct.expect(&["backup", "run"], 0);
}

/// What forced restores kept aside is listed by `backup kept-aside`, and `--keep N` removes all
/// but the newest N copies of each file tree and config file (`--dry-run` only shows them).
#[test]
fn kept_aside_copies_are_listed_and_pruned_on_request() {
    let s = Scratch::new();
    let media = s.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("a.txt"), "snapshot").unwrap();
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: aside\nfiles: [ {} ]\nbackup:\n  repository: {}\n  password: \"a long test password\"\n  keep: {{ last: 2 }}\n",
        media.display(),
        s.path().join("repo").display()
    ));
    ct.expect(&["backup", "init"], 0);
    ct.expect(&["backup", "run"], 0);
    assert_eq!(ct.json(&["backup", "kept-aside", "--json"]), serde_json::json!([]));
    for i in 0..3 {
        std::fs::write(media.join("a.txt"), format!("live {i}")).unwrap();
        ct.expect(&["backup", "restore", "--files-only", "--replace-config", "--force"], 0);
    }
    let listed = ct.json(&["backup", "kept-aside", "--json"]);
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 6, "three copies of the tree and of the config: {listed}");
    assert_eq!(rows.iter().filter(|r| r["kind"] == "files").count(), 3, "{listed}");
    assert_eq!(rows.iter().filter(|r| r["kind"] == "config").count(), 3, "{listed}");

    let dry = ct.expect(&["backup", "kept-aside", "--keep", "1", "--dry-run"], 0);
    assert_eq!(dry.lines().filter(|l| l.starts_with("would remove ")).count(), 4, "{dry}");
    assert_eq!(names_with(s.path(), ".caretaker-old-").len(), 6, "a dry run removes nothing");

    ct.expect(&["backup", "kept-aside", "--keep", "1"], 0);
    let left = names_with(s.path(), "media.caretaker-old-");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(std::fs::read_to_string(left[0].join("a.txt")).unwrap(), "live 2", "the newest copy stays");
    assert_eq!(names_with(s.path(), "caretaker.yml.caretaker-old-").len(), 1);
    assert_eq!(ct.json(&["backup", "kept-aside", "--json"]).as_array().unwrap().len(), 2);
    assert_eq!(std::fs::read_to_string(media.join("a.txt")).unwrap(), "snapshot", "the live tree is untouched");
}
