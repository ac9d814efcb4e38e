//! The database snapshot operations against a real SQLite database: typed reports, recorded
//! jobs, typed errors with their class.

use caretaker_app::{db, Class};
use caretaker_core::config::{NoSecrets, Redactor};
use caretaker_core::job::{Outcome, Trigger};
use std::path::Path;

fn setup(dir: &Path) -> (caretaker_state::Store, Box<dyn caretaker_db::Database>, std::path::PathBuf) {
    let path = dir.join("app.sqlite3");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1);").unwrap();
    let text = format!("version: 1\napp: {{ name: ops }}\ndatabase: {{ kind: sqlite, path: {} }}\n", path.display());
    let config = caretaker_core::config::load(&text, &dir.join("caretaker.yml"), None, &NoSecrets).unwrap().config;
    let redactor = Redactor::new(config.secrets());
    let db = caretaker_db::open(config.database.as_ref().unwrap(), &redactor).unwrap();
    let store = caretaker_state::Store::open(&dir.join("state"), redactor).unwrap();
    (store, db, path)
}

fn value(path: &Path) -> i64 {
    rusqlite::Connection::open(path).unwrap().query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap()
}

#[test]
fn snapshot_revert_and_prune_return_reports_and_record_their_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db, path) = setup(dir.path());
    let snap = db::snapshot(&store, db.as_ref(), Some("before"), Trigger::Cli).unwrap();
    assert!(snap.name.contains("before"), "{}", snap.name);
    rusqlite::Connection::open(&path).unwrap().execute("UPDATE t SET v = 2", []).unwrap();

    // Not confirmed: refused, nothing recorded, nothing changed.
    let mut lines = Vec::new();
    let e = db::revert(&store, db.as_ref(), &snap.name, false, Trigger::Cli, &mut || Ok(vec![]), &mut |l: &str| {
        lines.push(l.to_string())
    })
    .unwrap_err();
    assert_eq!(e.class, Class::Refused);
    assert!(e.hint.is_some() && value(&path) == 2);
    let e = db::revert(&store, db.as_ref(), "no-such", true, Trigger::Cli, &mut || Ok(vec![]), &mut |_: &str| {})
        .unwrap_err();
    assert_eq!(e.class, Class::Invalid);

    let mut restarted_called = false;
    let r = db::revert(
        &store,
        db.as_ref(),
        &snap.name,
        true,
        Trigger::Cli,
        &mut || {
            restarted_called = true;
            Err("no daemon".to_string())
        },
        &mut |l: &str| lines.push(l.to_string()),
    )
    .unwrap();
    assert_eq!(value(&path), 1, "the snapshot's contents are back");
    assert!(restarted_called && r.restarted.is_empty());
    assert!(lines.iter().any(|l| l.starts_with("reverted to")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("warning: restarting the services failed (no daemon)")), "{lines:?}");

    // Keep nothing: the kept-aside copy (and no snapshot: the revert consumed it) goes.
    let policy = caretaker_db::SnapshotPolicy { keep_last: 0, max_age: None };
    let now = jiff::Timestamp::now();
    let dry = db::prune(&store, db.as_ref(), &policy, now, true, Trigger::Cli, &mut caretaker_app::NoProgress).unwrap();
    assert!(dry.job.is_none() && dry.removed.contains(&r.kept_aside), "{dry:?}");
    let done =
        db::prune(&store, db.as_ref(), &policy, now, false, Trigger::Cli, &mut caretaker_app::NoProgress).unwrap();
    assert_eq!(done.removed, dry.removed);
    assert!(db.list_snapshots().unwrap().is_empty());

    let jobs = store.jobs(None, 10).unwrap();
    let kinds: Vec<(&str, Outcome)> = jobs.iter().map(|j| (j.kind.as_str(), j.outcome)).collect();
    assert!(kinds.contains(&(db::KIND_SNAPSHOT, Outcome::Succeeded)), "{kinds:?}");
    assert!(kinds.contains(&(db::KIND_REVERT, Outcome::Succeeded)), "{kinds:?}");
    assert!(kinds.contains(&(db::KIND_PRUNE, Outcome::Succeeded)), "{kinds:?}");
    assert_eq!(jobs.iter().filter(|j| j.kind == db::KIND_REVERT).count(), 1, "the refused reverts recorded no job");
}

#[test]
fn a_busy_app_lock_is_an_unavailable_retryable_error() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db, _) = setup(dir.path());
    let _held = store.start_job("backup", Trigger::Cli, true).unwrap();
    let other = caretaker_state::Store::open(store.dir(), Redactor::new(vec![])).unwrap();
    let e = db::snapshot(&other, db.as_ref(), None, Trigger::Cli).unwrap_err();
    assert_eq!(e.class, Class::Unavailable);
    assert!(e.retryable);
    assert!(matches!(e.cause(), Some(caretaker_app::Cause::State(caretaker_state::StateError::Busy { .. }))));
}
