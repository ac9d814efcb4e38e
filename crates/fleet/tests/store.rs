//! One conformance suite for both [`FleetStore`] implementations (SQLite, PostgreSQL), and the
//! race tests: controllers working at once never run one server's tasks twice in a round and
//! never let more than k servers hold a reboot token.

use caretaker_fleet::results::{Outcome, TaskResult};
use caretaker_fleet::store::{Contact, FleetStore, PgStore, SqliteStore};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn task(name: &str, outcome: Outcome) -> TaskResult {
    TaskResult {
        task: name.into(),
        kind: None,
        outcome,
        message: None,
        figures: serde_json::json!({"bytes": 1}),
        needs_human: false,
        reboot_pending: false,
    }
}

fn ok_contact() -> Contact {
    Contact { outcome: "ok".into(), message: None, transient: false, reboot_pending: false }
}

/// What every store must do.
fn conformance(s: &mut dyn FleetStore) {
    let run = s.begin_run("c1", 1000, 3600).unwrap();
    assert!(!run.resumed);
    // A second controller (or a restarted one) joins the unfinished run.
    let again = s.begin_run("c2", 1001, 3600).unwrap();
    assert_eq!((again.id, again.resumed), (run.id, true));
    assert!(!s.server_done(run.id, "a").unwrap());
    s.record_task(run.id, "a", &TaskResult { kind: Some("backup".into()), ..task("backup", Outcome::Ok) }, 1002)
        .unwrap();
    s.record_task(run.id, "a", &task("prune", Outcome::Failed), 1002).unwrap();
    s.record_task(run.id, "a", &task("check", Outcome::NotDue), 1002).unwrap();
    assert!(!s.server_done(run.id, "a").unwrap(), "tasks alone do not mark the server done");
    s.record_contact(run.id, "a", &ok_contact(), 1003).unwrap();
    assert!(s.server_done(run.id, "a").unwrap());
    let st = s.status().unwrap();
    let a = st.iter().find(|x| x.server == "a").unwrap();
    assert_eq!(a.last_ok_contact, Some(1003));
    let t = |n: &str| a.tasks.iter().find(|t| t.task == n).unwrap().clone();
    assert_eq!((t("backup").outcome.as_str(), t("backup").last_success), ("ok", Some(1002)));
    assert_eq!(t("backup").figures["bytes"], 1);
    assert_eq!((t("backup").kind.as_deref(), t("prune").kind.as_deref()), (Some("backup"), None));
    assert_eq!((t("prune").outcome.as_str(), t("prune").failures, t("prune").retry_after), ("failed", 1, Some(1302)));
    assert_eq!((t("check").outcome.as_str(), t("check").last_attempt), ("not_due", None));
    assert_eq!(s.backing_off("a", 1100).unwrap(), vec![("prune".to_string(), 1302)]);
    assert!(s.backing_off("a", 1400).unwrap().is_empty());
    // A second failure doubles the backoff; a success clears it and keeps the last success.
    s.record_task(run.id, "a", &task("prune", Outcome::Failed), 2000).unwrap();
    let p = s.status().unwrap()[0].tasks.iter().find(|t| t.task == "prune").unwrap().clone();
    assert_eq!((p.failures, p.retry_after), (2, Some(2600)));
    s.record_task(run.id, "a", &task("prune", Outcome::Ok), 3000).unwrap();
    s.record_task(run.id, "a", &task("backup", Outcome::Failed), 3000).unwrap();
    let st = s.status().unwrap();
    let p = st[0].tasks.iter().find(|t| t.task == "prune").unwrap();
    assert_eq!((p.failures, p.retry_after, p.last_success), (0, None, Some(3000)));
    let b = st[0].tasks.iter().find(|t| t.task == "backup").unwrap();
    assert_eq!((b.outcome.as_str(), b.last_success, b.last_attempt), ("failed", Some(1002), Some(3000)));
    // Run entries for the digest (not-due tasks are not listed).
    let e = s.run_entries(run.id).unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].tasks.len(), 5);
    assert_eq!(e[0].tasks.iter().find(|t| t.task == "backup").unwrap().kind.as_deref(), Some("backup"));
    assert_eq!(e[0].contact.as_ref().unwrap().outcome, "ok");
    s.finish_run(run.id, 4000).unwrap();
    let next = s.begin_run("c1", 4001, 3600).unwrap();
    assert!(next.id != run.id && !next.resumed);
    assert_eq!(s.last_run().unwrap(), Some(next.id));
    // An unfinished run older than the window is closed, not resumed.
    let later = s.begin_run("c1", 4001 + 7200, 3600).unwrap();
    assert!(later.id != next.id && !later.resumed);
    // Leases: one holder at a time, until it expires or is released.
    assert!(s.lease("a", "c1", 5000, 100).unwrap());
    assert!(s.lease("a", "c1", 5001, 100).unwrap(), "the holder renews");
    assert!(!s.lease("a", "c2", 5050, 100).unwrap());
    assert!(s.lease("a", "c2", 5102, 100).unwrap(), "expired");
    s.release("a", "c1").unwrap();
    assert!(!s.lease("a", "c1", 5103, 100).unwrap(), "only the holder releases");
    s.release("a", "c2").unwrap();
    assert!(s.lease("a", "c1", 5104, 100).unwrap());
    // Reboot tokens: at most k.
    assert!(s.reboot_token("a", 2, 6000, 100).unwrap());
    assert!(s.reboot_token("a", 2, 6000, 100).unwrap(), "held already");
    assert!(s.reboot_token("b", 2, 6000, 100).unwrap());
    assert!(!s.reboot_token("c", 2, 6000, 100).unwrap());
    s.release_reboot_token("a").unwrap();
    assert!(s.reboot_token("c", 2, 6001, 100).unwrap());
    assert!(!s.reboot_token("d", 2, 6050, 100).unwrap());
    assert!(s.reboot_token("d", 2, 6101, 100).unwrap(), "expired tokens are free");
}

#[test]
fn sqlite_store_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(&dir.path().join("fleet.db")).unwrap();
    conformance(&mut s);
    // Reopening keeps everything (and the schema is not recreated).
    drop(s);
    let mut s = SqliteStore::open(&dir.path().join("fleet.db")).unwrap();
    assert_eq!(s.status().unwrap().len(), 1);
}

/// A `fleet.db` of schema 1 (before the tasks' `kind`) is migrated on open and keeps its rows.
#[test]
fn sqlite_store_migrates_schema_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.db");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE fleet_runs (id INTEGER PRIMARY KEY, controller TEXT NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER);
             CREATE TABLE fleet_servers (server TEXT PRIMARY KEY, last_contact INTEGER, last_ok_contact INTEGER, contact TEXT, message TEXT,
               reboot_pending INTEGER NOT NULL DEFAULT 0, lease_holder TEXT, lease_until INTEGER);
             CREATE TABLE fleet_tasks (server TEXT NOT NULL, task TEXT NOT NULL, last_attempt INTEGER, last_success INTEGER, outcome TEXT NOT NULL,
               message TEXT, figures TEXT, failures INTEGER NOT NULL DEFAULT 0, retry_after INTEGER, needs_human INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (server, task));
             CREATE TABLE fleet_task_log (run INTEGER NOT NULL, server TEXT NOT NULL, task TEXT NOT NULL, at INTEGER NOT NULL, outcome TEXT NOT NULL,
               message TEXT, figures TEXT, needs_human INTEGER NOT NULL, reboot_pending INTEGER NOT NULL);
             INSERT INTO fleet_servers (server, contact) VALUES ('a', 'ok');
             INSERT INTO fleet_tasks (server, task, outcome, last_success) VALUES ('a', 'backup', 'ok', 5);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let mut s = SqliteStore::open(&path).unwrap();
    let t = s.status().unwrap()[0].tasks[0].clone();
    assert_eq!((t.task.as_str(), t.kind, t.last_success), ("backup", None, Some(5)));
    s.record_task(1, "a", &TaskResult { kind: Some("backup".into()), ..task("backup", Outcome::NotDue) }, 10).unwrap();
    assert_eq!(s.status().unwrap()[0].tasks[0].kind.as_deref(), Some("backup"), "a not-due result fills the kind in");
    drop(s);
    // Reopening the migrated file does not migrate again.
    SqliteStore::open(&path).unwrap();
}

/// A fresh database on the test PostgreSQL server.
fn pg_url() -> Option<String> {
    let url = caretaker_testkit::require_service("CARETAKER_TEST_PG_URL")?;
    let name = caretaker_testkit::unique_name("fleet");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let base = url.rsplit_once('/').unwrap().0;
    Some(format!("{base}/{name}"))
}

/// A PostgreSQL store made before the tasks' `kind` gets the column on connect.
#[test]
fn pg_store_migrates_schema_1() {
    let Some(url) = pg_url() else { return };
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute(
        "CREATE TABLE fleet_tasks (server TEXT NOT NULL, task TEXT NOT NULL, last_attempt BIGINT, last_success BIGINT, outcome TEXT NOT NULL,
           message TEXT, figures TEXT, failures INTEGER NOT NULL DEFAULT 0, retry_after BIGINT, needs_human BOOLEAN NOT NULL DEFAULT false, PRIMARY KEY (server, task));
         CREATE TABLE fleet_task_log (run BIGINT NOT NULL, server TEXT NOT NULL, task TEXT NOT NULL, at BIGINT NOT NULL, outcome TEXT NOT NULL,
           message TEXT, figures TEXT, needs_human BOOLEAN NOT NULL, reboot_pending BOOLEAN NOT NULL);
         INSERT INTO fleet_tasks (server, task, outcome, last_success) VALUES ('a', 'backup', 'ok', 5);",
    )
    .unwrap();
    let mut s = PgStore::connect(&url).unwrap();
    s.record_contact(1, "a", &ok_contact(), 6).unwrap();
    s.record_task(1, "a", &TaskResult { kind: Some("backup".into()), ..task("backup", Outcome::Ok) }, 7).unwrap();
    let t = s.status().unwrap()[0].tasks[0].clone();
    assert_eq!((t.kind.as_deref(), t.last_success), (Some("backup"), Some(7)));
    assert_eq!(s.run_entries(1).unwrap()[0].tasks[0].kind.as_deref(), Some("backup"));
    drop(s);
    PgStore::connect(&url).unwrap();
}

#[test]
fn pg_store_conformance() {
    let Some(url) = pg_url() else { return };
    let mut s = PgStore::connect(&url).unwrap();
    conformance(&mut s);
}

/// Controllers racing over one round of servers: each server is worked on exactly once, and
/// never by two at once.
fn race_round(open: &(dyn Fn() -> Box<dyn FleetStore> + Sync)) {
    let servers: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    let runs: Mutex<HashMap<String, usize>> = Mutex::new(HashMap::new());
    let busy: Mutex<HashMap<String, bool>> = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        for c in 0..3 {
            let (servers, runs, busy) = (&servers, &runs, &busy);
            scope.spawn(move || {
                let mut s = open();
                let controller = format!("c{c}");
                let run = s.begin_run(&controller, 1000, 3600).unwrap();
                // Each controller walks the list from another place.
                let mut order = servers.clone();
                order.rotate_left(c * 13);
                for srv in &order {
                    if s.server_done(run.id, srv).unwrap() || !s.lease(srv, &controller, 1000, 600).unwrap() {
                        continue;
                    }
                    if s.server_done(run.id, srv).unwrap() {
                        s.release(srv, &controller).unwrap();
                        continue;
                    }
                    assert!(
                        !busy.lock().unwrap().insert(srv.clone(), true).unwrap_or(false),
                        "{srv} worked on by two controllers at once"
                    );
                    *runs.lock().unwrap().entry(srv.clone()).or_default() += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    s.record_task(run.id, srv, &task("backup", Outcome::Ok), 1001).unwrap();
                    busy.lock().unwrap().insert(srv.clone(), false);
                    s.record_contact(run.id, srv, &ok_contact(), 1001).unwrap();
                    s.release(srv, &controller).unwrap();
                }
            });
        }
    });
    let runs = runs.into_inner().unwrap();
    // Every server whose lease was free ran once; none twice.
    for srv in &servers {
        assert!(runs.get(srv).copied().unwrap_or(0) <= 1, "{srv} ran {:?} times", runs.get(srv));
    }
    assert_eq!(runs.len(), servers.len(), "every server was worked on in the round: {runs:?}");
}

/// Servers wanting to reboot, k tokens: never more than k at once, everyone gets one.
fn race_reboots(open: &(dyn Fn() -> Box<dyn FleetStore> + Sync), k: u32) {
    let now_rebooting = AtomicUsize::new(0);
    let max_seen = AtomicUsize::new(0);
    let rebooted = Arc::new(Mutex::new(Vec::<String>::new()));
    std::thread::scope(|scope| {
        for c in 0..4 {
            let (now_rebooting, max_seen, rebooted) = (&now_rebooting, &max_seen, rebooted.clone());
            scope.spawn(move || {
                let mut s = open();
                let mine: Vec<String> = (0..6).map(|i| format!("r{c}-{i}")).collect();
                let mut left = mine.clone();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                while !left.is_empty() {
                    assert!(std::time::Instant::now() < deadline, "reboots did not finish");
                    let srv = left[0].clone();
                    if s.reboot_token(&srv, k, 1000, 3600).unwrap() {
                        let n = now_rebooting.fetch_add(1, Ordering::SeqCst) + 1;
                        max_seen.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(3));
                        now_rebooting.fetch_sub(1, Ordering::SeqCst);
                        s.release_reboot_token(&srv).unwrap();
                        rebooted.lock().unwrap().push(srv);
                        left.remove(0);
                    } else {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            });
        }
    });
    assert!(
        max_seen.load(Ordering::SeqCst) <= k as usize,
        "{} reboots at once, k = {k}",
        max_seen.load(Ordering::SeqCst)
    );
    assert_eq!(rebooted.lock().unwrap().len(), 24);
}

#[test]
fn pg_two_controllers_never_run_one_server_twice_and_never_exceed_k_reboots() {
    let Some(url) = pg_url() else { return };
    PgStore::connect(&url).unwrap();
    let open = || -> Box<dyn FleetStore> { Box::new(PgStore::connect(&url).unwrap()) };
    race_round(&open);
    race_reboots(&open, 2);
}

#[test]
fn sqlite_controllers_on_one_file_never_run_one_server_twice_and_never_exceed_k_reboots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.db");
    SqliteStore::open(&path).unwrap();
    let open = || -> Box<dyn FleetStore> { Box::new(SqliteStore::open(&path).unwrap()) };
    race_round(&open);
    race_reboots(&open, 1);
}
