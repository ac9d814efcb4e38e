//! The database adapters against real servers (PostgreSQL and MariaDB started by
//! `scripts/services`, SQLite in a temp dir). Every scenario runs on every adapter through the
//! [`Backend`] helpers; each test uses its own uniquely named databases and drops them at the
//! end, so tests run in parallel against one server.

use caretaker_core::config::{self, DbKind, Redactor, Secret, SecretOrigin};
use caretaker_db::{CopyKind, Database, ErrorKind, RestoreMode};
use caretaker_testkit::{require_service, unique_name};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// One database under test and how to clean it up.
struct Handle {
    name: String,
    db: Box<dyn Database>,
    cleanup: Vec<Box<dyn Fn()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Ok(copies) = self.db.list_snapshots() {
            for c in copies {
                let _ = self.db.drop_snapshot(&c);
            }
        }
        for c in &self.cleanup {
            c();
        }
    }
}

trait Backend {
    /// A handle on a new, uniquely named database; created empty when `create`.
    fn fresh(&self, create: bool) -> Handle;
    /// The same database reached with a wrong password (`None` where there are none).
    fn wrong_password(&self, h: &Handle) -> Option<Box<dyn Database>>;
    fn exec(&self, h: &Handle, sql: &str);
    /// The first column of the first row, as text ("" for none / NULL).
    fn query(&self, h: &Handle, sql: &str) -> String;
    /// Schema and data covering tables, indexes, sequences, views, triggers.
    fn schema(&self) -> &'static str;
    /// Queries whose answers must survive a dump/restore or snapshot/revert unchanged.
    fn fingerprint_queries(&self) -> &'static [&'static str];
    /// Inserts one more item (firing the trigger, using the sequence) and returns its id.
    fn insert_item(&self, h: &Handle) -> String;
    fn destructive_migration(&self) -> &'static str;
}

fn fingerprint(b: &dyn Backend, h: &Handle) -> Vec<String> {
    b.fingerprint_queries().iter().map(|q| format!("{q} => {}", b.query(h, q))).collect()
}

fn db_config(kind: DbKind, url: Option<String>, path: Option<PathBuf>) -> config::Database {
    config::Database {
        kind,
        url: url.map(|u| Secret::new(u, SecretOrigin::Inline)),
        admin_url: None,
        path,
        min_rows: BTreeMap::new(),
        compose_service: None,
        dump_routines: true,
    }
}

fn url_with(base: &str, password: Option<&str>, database: &str) -> String {
    let u = caretaker_db::url::parse_url(base).unwrap();
    let pw = password.or(u.password.as_deref()).unwrap_or("");
    format!(
        "{}://{}:{}@{}:{}/{}",
        u.scheme,
        u.user.as_deref().unwrap_or(""),
        pw,
        u.host.as_deref().unwrap(),
        u.port.unwrap(),
        database
    )
}

// ---------------------------------------------------------------- PostgreSQL

struct Pg {
    url: String,
}

fn pg() -> Option<Pg> {
    require_service("CARETAKER_TEST_PG_URL").map(|url| Pg { url })
}

impl Pg {
    fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&url_with(&self.url, None, db), postgres::NoTls).unwrap()
    }
    fn open(&self, url: String) -> Box<dyn Database> {
        caretaker_db::open(&db_config(DbKind::Postgres, Some(url), None), &Redactor::default()).unwrap()
    }
}

impl Backend for Pg {
    fn fresh(&self, create: bool) -> Handle {
        let name = unique_name("ct_pg");
        if create {
            self.client("postgres").batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        }
        let url = self.url.clone();
        let n = name.clone();
        Handle {
            db: self.open(url_with(&self.url, None, &name)),
            name,
            cleanup: vec![Box::new(move || {
                if let Ok(mut c) = postgres::Client::connect(&url_with(&url, None, "postgres"), postgres::NoTls) {
                    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"));
                }
            })],
        }
    }
    fn wrong_password(&self, h: &Handle) -> Option<Box<dyn Database>> {
        Some(self.open(url_with(&self.url, Some("wrong-password"), &h.name)))
    }
    fn exec(&self, h: &Handle, sql: &str) {
        self.client(&h.name).batch_execute(sql).unwrap();
    }
    fn query(&self, h: &Handle, sql: &str) -> String {
        let rows = self.client(&h.name).simple_query(sql).unwrap();
        rows.iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
                _ => None,
            })
            .unwrap_or_default()
    }
    fn schema(&self) -> &'static str {
        r#"
        CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, qty int NOT NULL DEFAULT 0);
        CREATE INDEX items_lower_name ON items (lower(name));
        CREATE TABLE audit (item_id int, action text);
        CREATE FUNCTION audit_item() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN INSERT INTO audit VALUES (NEW.id, TG_OP); RETURN NEW; END $$;
        CREATE TRIGGER items_audit AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION audit_item();
        CREATE VIEW item_totals AS SELECT name, sum(qty) AS total FROM items GROUP BY name;
        CREATE SEQUENCE tickets START 100;
        SELECT nextval('tickets'), nextval('tickets');
        INSERT INTO items (name, qty) VALUES ('apple', 3), ('pear', 5), ('plum', 7);
        UPDATE items SET qty = qty + 1 WHERE name = 'pear';
        SELECT lo_from_bytea(0, 'large object payload');
        "#
    }
    fn fingerprint_queries(&self) -> &'static [&'static str] {
        &[
            "SELECT string_agg(format('%s|%s|%s', id, name, qty), ',' ORDER BY id) FROM items",
            "SELECT string_agg(format('%s|%s', item_id, action), ',' ORDER BY item_id, action) FROM audit",
            "SELECT string_agg(format('%s|%s', name, total), ',' ORDER BY name) FROM item_totals",
            "SELECT format('%s|%s', last_value, is_called) FROM items_id_seq",
            "SELECT format('%s|%s', last_value, is_called) FROM tickets",
            "SELECT string_agg(indexdef, ';' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public'",
            "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal",
            "SELECT string_agg(encode(lo_get(oid), 'escape'), ',' ORDER BY oid) FROM pg_largeobject_metadata",
        ]
    }
    fn insert_item(&self, h: &Handle) -> String {
        self.query(h, "INSERT INTO items (name, qty) VALUES ('fig', 1) RETURNING id")
    }
    fn destructive_migration(&self) -> &'static str {
        "DROP VIEW item_totals; ALTER TABLE items DROP COLUMN qty; DELETE FROM items WHERE id > 1; \
         DROP TABLE audit CASCADE; SELECT nextval('tickets'); SELECT lo_unlink(oid) FROM pg_largeobject_metadata;"
    }
}

// ---------------------------------------------------------------- MariaDB

struct Maria {
    url: String,
}

fn maria() -> Option<Maria> {
    require_service("CARETAKER_TEST_MARIADB_URL").map(|url| Maria { url })
}

impl Maria {
    fn open(&self, url: String) -> Box<dyn Database> {
        caretaker_db::open(&db_config(DbKind::Mariadb, Some(url), None), &Redactor::default()).unwrap()
    }
    fn run(url: &str, database: Option<&str>, sql: &str) -> String {
        let u = caretaker_db::url::parse_url(url).unwrap();
        let mut opts = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            opts,
            "[client]\nuser={}\npassword={}\nhost={}\nport={}\nprotocol=tcp",
            u.user.unwrap(),
            u.password.unwrap(),
            u.host.unwrap(),
            u.port.unwrap()
        )
        .unwrap();
        let mut c = Command::new("mariadb");
        c.arg(format!("--defaults-extra-file={}", opts.path().display())).args(["--batch", "--skip-column-names"]);
        if let Some(d) = database {
            c.arg(format!("--database={d}"));
        }
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "mariadb: {sql}\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Backend for Maria {
    fn fresh(&self, create: bool) -> Handle {
        let name = unique_name("ct_maria");
        if create {
            Maria::run(&self.url, None, &format!("CREATE DATABASE {name}"));
        }
        let url = self.url.clone();
        let n = name.clone();
        Handle {
            db: self.open(url_with(&self.url, None, &name)),
            name,
            cleanup: vec![Box::new(move || {
                Maria::run(&url, None, &format!("DROP DATABASE IF EXISTS {n}"));
            })],
        }
    }
    fn wrong_password(&self, h: &Handle) -> Option<Box<dyn Database>> {
        Some(self.open(url_with(&self.url, Some("wrong-password"), &h.name)))
    }
    fn exec(&self, h: &Handle, sql: &str) {
        Maria::run(&self.url, Some(&h.name), sql);
    }
    fn query(&self, h: &Handle, sql: &str) -> String {
        let out = Maria::run(&self.url, Some(&h.name), sql);
        let v = out.lines().next().unwrap_or("").to_string();
        if v == "NULL" {
            String::new()
        } else {
            v
        }
    }
    fn schema(&self) -> &'static str {
        r#"
        CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL,
          qty INT NOT NULL DEFAULT 0, KEY items_name (name)) ENGINE=InnoDB;
        CREATE TABLE audit (item_id INT, action VARCHAR(10)) ENGINE=InnoDB;
        CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW INSERT INTO audit VALUES (NEW.id, 'INSERT');
        CREATE VIEW item_totals AS SELECT name, SUM(qty) AS total FROM items GROUP BY name;
        CREATE SEQUENCE tickets START WITH 100 NOCACHE;
        SELECT NEXTVAL(tickets), NEXTVAL(tickets);
        CREATE PROCEDURE add_item(n VARCHAR(100)) INSERT INTO items (name) VALUES (n);
        INSERT INTO items (name, qty) VALUES ('apple', 3), ('pear', 5), ('plum', 7);
        UPDATE items SET qty = qty + 1 WHERE name = 'pear';
        "#
    }
    fn fingerprint_queries(&self) -> &'static [&'static str] {
        &[
            "SELECT GROUP_CONCAT(CONCAT_WS('|', id, name, qty) ORDER BY id) FROM items",
            "SELECT GROUP_CONCAT(CONCAT_WS('|', item_id, action) ORDER BY item_id) FROM audit",
            "SELECT GROUP_CONCAT(CONCAT_WS('|', name, total) ORDER BY name) FROM item_totals",
            "SELECT next_not_cached_value FROM tickets",
            "SELECT GROUP_CONCAT(CONCAT_WS('|', index_name, column_name) ORDER BY index_name) FROM information_schema.statistics WHERE table_schema = DATABASE()",
            "SELECT GROUP_CONCAT(trigger_name) FROM information_schema.triggers WHERE trigger_schema = DATABASE()",
            "SELECT GROUP_CONCAT(routine_name) FROM information_schema.routines WHERE routine_schema = DATABASE()",
        ]
    }
    fn insert_item(&self, h: &Handle) -> String {
        let out = Maria::run(&self.url, Some(&h.name), "CALL add_item('fig'); SELECT MAX(id) FROM items;");
        out.lines().last().unwrap_or("").to_string()
    }
    fn destructive_migration(&self) -> &'static str {
        "DROP VIEW item_totals; ALTER TABLE items DROP COLUMN qty; DELETE FROM items WHERE id > 1; \
         DROP TABLE audit; SELECT NEXTVAL(tickets); DROP PROCEDURE add_item;"
    }
}

// ---------------------------------------------------------------- SQLite

struct Lite {
    dir: tempfile::TempDir,
}

fn lite() -> Option<Lite> {
    Some(Lite { dir: tempfile::tempdir().unwrap() })
}

impl Lite {
    fn path(&self, h: &Handle) -> PathBuf {
        self.dir.path().join(&h.name)
    }
    fn conn(&self, h: &Handle) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.path(h)).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c
    }
}

impl Backend for Lite {
    fn fresh(&self, create: bool) -> Handle {
        let name = unique_name("ct_lite") + ".sqlite3";
        let path = self.dir.path().join(&name);
        if create {
            rusqlite::Connection::open(&path).unwrap();
        }
        Handle {
            db: caretaker_db::open(&db_config(DbKind::Sqlite, None, Some(path)), &Redactor::default()).unwrap(),
            name,
            cleanup: vec![],
        }
    }
    fn wrong_password(&self, _h: &Handle) -> Option<Box<dyn Database>> {
        None
    }
    fn exec(&self, h: &Handle, sql: &str) {
        self.conn(h).execute_batch(sql).unwrap();
    }
    fn query(&self, h: &Handle, sql: &str) -> String {
        use rusqlite::types::Value;
        match self.conn(h).query_row(sql, [], |r| r.get::<_, Value>(0)).unwrap() {
            Value::Null => String::new(),
            Value::Integer(i) => i.to_string(),
            Value::Real(f) => f.to_string(),
            Value::Text(t) => t,
            Value::Blob(b) => format!("{b:?}"),
        }
    }
    fn schema(&self) -> &'static str {
        r#"
        CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, qty INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX items_lower_name ON items (lower(name));
        CREATE TABLE audit (item_id INTEGER, action TEXT);
        CREATE TRIGGER items_audit AFTER INSERT ON items BEGIN INSERT INTO audit VALUES (NEW.id, 'INSERT'); END;
        CREATE VIEW item_totals AS SELECT name, sum(qty) AS total FROM items GROUP BY name;
        INSERT INTO items (name, qty) VALUES ('apple', 3), ('pear', 5), ('plum', 7);
        UPDATE items SET qty = qty + 1 WHERE name = 'pear';
        "#
    }
    fn fingerprint_queries(&self) -> &'static [&'static str] {
        &[
            "SELECT group_concat(id || '|' || name || '|' || qty, ',') FROM (SELECT * FROM items ORDER BY id)",
            "SELECT group_concat(item_id || '|' || action, ',') FROM (SELECT * FROM audit ORDER BY item_id)",
            "SELECT group_concat(name || '|' || total, ',') FROM (SELECT * FROM item_totals ORDER BY name)",
            "SELECT group_concat(name || '|' || seq) FROM sqlite_sequence",
            "SELECT group_concat(type || '|' || name || '|' || sql, ';') FROM (SELECT * FROM sqlite_schema ORDER BY name)",
        ]
    }
    fn insert_item(&self, h: &Handle) -> String {
        self.query(h, "INSERT INTO items (name, qty) VALUES ('fig', 1) RETURNING id")
    }
    fn destructive_migration(&self) -> &'static str {
        "DROP VIEW item_totals; ALTER TABLE items DROP COLUMN qty; DELETE FROM items WHERE id > 1; DROP TABLE audit;"
    }
}

// ---------------------------------------------------------------- scenarios

fn dump_restore_round_trip_preserves_everything(b: &dyn Backend) {
    let src = b.fresh(true);
    b.exec(&src, b.schema());
    let before = fingerprint(b, &src);
    assert!(before[0].ends_with("1|apple|3,2|pear|6,3|plum|7"), "{before:?}");
    assert!(before.iter().all(|f| !f.ends_with("=> ")), "every fingerprint query sees something: {before:?}");
    let mut dump = Vec::new();
    let n = src.db.dump(&mut dump).unwrap();
    assert_eq!(n, dump.len() as u64);
    assert!(n > 0);

    // Into a database that does not exist yet: the restore creates it.
    let dst = b.fresh(false);
    let restored = dst.db.restore(&mut dump.as_slice(), RestoreMode::IntoEmpty).unwrap();
    assert_eq!(restored.kept_aside, None);
    assert_eq!(fingerprint(b, &dst), before);
    // The sequence continues where it was and the trigger fires in the copy.
    assert_eq!(b.insert_item(&dst), "4");
    assert!(b.query(&dst, "SELECT count(*) FROM audit").parse::<u32>().unwrap() >= 4);
    // The source was not touched by dumping.
    assert_eq!(fingerprint(b, &src), before);
}

fn snapshot_then_destructive_migration_then_revert_gives_back_the_old_data(b: &dyn Backend) {
    let h = b.fresh(true);
    b.exec(&h, b.schema());
    let before = fingerprint(b, &h);
    let snap = h.db.snapshot(Some("pre-update")).unwrap();
    assert_eq!(snap.kind, CopyKind::Snapshot);
    assert_eq!(snap.label.as_deref(), Some("pre-update"));
    assert_eq!(h.db.list_snapshots().unwrap(), vec![snap.clone()]);

    b.exec(&h, b.destructive_migration());
    assert_ne!(b.query(&h, "SELECT count(*) FROM items"), "3");

    let aside = h.db.revert(&snap).unwrap();
    assert_eq!(fingerprint(b, &h), before);
    assert_eq!(b.insert_item(&h), "4");

    // The migrated contents are kept aside, the snapshot is consumed.
    let copies = h.db.list_snapshots().unwrap();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!((copies[0].kind, copies[0].name.as_str()), (CopyKind::Aside, aside.as_str()));
    h.db.drop_snapshot(&copies[0]).unwrap();
    assert!(h.db.list_snapshots().unwrap().is_empty());
    // Reverting to a consumed snapshot says so.
    assert_eq!(h.db.revert(&snap).unwrap_err().kind(), ErrorKind::NotFound);
}

fn emptiness_and_safety_check(b: &dyn Backend) {
    let h = b.fresh(true);
    let c = h.db.contents().unwrap();
    assert!(c.exists && c.is_blank() && !c.has_data(), "{c:?}");
    let none = BTreeMap::new();
    let e = h.db.safety_check(&none).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SafetyCheck);
    assert!(e.message().contains("no tables"), "{e}");

    b.exec(&h, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
    let e = h.db.safety_check(&none).unwrap_err();
    assert!(e.message().contains("all 1 tables are empty"), "{e}");

    b.exec(&h, "INSERT INTO t (id) VALUES (1), (2), (3)");
    assert!(h.db.safety_check(&none).unwrap().has_data());
    let enough: BTreeMap<String, u64> = [("t".to_string(), 3)].into();
    h.db.safety_check(&enough).unwrap();
    let too_many: BTreeMap<String, u64> = [("t".to_string(), 4), ("missing".to_string(), 1)].into();
    let e = h.db.safety_check(&too_many).unwrap_err();
    assert!(e.message().contains("table `t` has 3 rows, fewer than the 4"), "{e}");
    assert!(e.message().contains("table `missing` (from min_rows) does not exist"), "{e}");
    assert!(h.db.size().unwrap() > 0);
}

fn restore_refuses_a_non_empty_target_unless_replacing(b: &dyn Backend) {
    let src = b.fresh(true);
    b.exec(&src, b.schema());
    let want = fingerprint(b, &src);
    let mut dump = Vec::new();
    src.db.dump(&mut dump).unwrap();

    let dst = b.fresh(true);
    b.exec(&dst, "CREATE TABLE precious (v INTEGER); INSERT INTO precious VALUES (42);");
    let e = dst.db.restore(&mut dump.as_slice(), RestoreMode::IntoEmpty).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotEmpty);
    assert!(e.message().contains("precious"), "{e}");
    assert_eq!(b.query(&dst, "SELECT v FROM precious"), "42");

    let r = dst.db.restore(&mut dump.as_slice(), RestoreMode::ReplaceKeepingOld).unwrap();
    assert_eq!(fingerprint(b, &dst), want);
    let aside = r.kept_aside.expect("old contents kept aside");
    let copies = dst.db.list_snapshots().unwrap();
    assert_eq!(
        copies.iter().map(|c| (c.kind, c.name.as_str())).collect::<Vec<_>>(),
        vec![(CopyKind::Aside, aside.as_str())]
    );
}

fn wrong_password_and_missing_database_are_named(b: &dyn Backend) {
    let missing = b.fresh(false);
    let e = missing.db.check().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.what_to_do().is_some());
    assert!(!missing.db.contents().unwrap().exists);
    assert_eq!(missing.db.dump(&mut Vec::new()).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(missing.db.snapshot(None).unwrap_err().kind(), ErrorKind::NotFound);

    let h = b.fresh(true);
    let info = h.db.check().unwrap();
    assert!(!info.version.is_empty());
    if let Some(wrong) = b.wrong_password(&h) {
        for e in [wrong.check().unwrap_err(), wrong.dump(&mut Vec::new()).unwrap_err()] {
            assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
            assert!(!e.to_string().contains("wrong-password"), "{e}");
            assert!(e.what_to_do().unwrap().contains("password"));
        }
    }
}

macro_rules! scenarios {
    ($($backend:ident),*) => {
        $(
            mod $backend {
                #[test]
                fn dump_restore_round_trip_preserves_everything() {
                    if let Some(b) = super::$backend() { super::dump_restore_round_trip_preserves_everything(&b) }
                }
                #[test]
                fn snapshot_then_destructive_migration_then_revert_gives_back_the_old_data() {
                    if let Some(b) = super::$backend() { super::snapshot_then_destructive_migration_then_revert_gives_back_the_old_data(&b) }
                }
                #[test]
                fn emptiness_and_safety_check() {
                    if let Some(b) = super::$backend() { super::emptiness_and_safety_check(&b) }
                }
                #[test]
                fn restore_refuses_a_non_empty_target_unless_replacing() {
                    if let Some(b) = super::$backend() { super::restore_refuses_a_non_empty_target_unless_replacing(&b) }
                }
                #[test]
                fn wrong_password_and_missing_database_are_named() {
                    if let Some(b) = super::$backend() { super::wrong_password_and_missing_database_are_named(&b) }
                }
            }
        )*
    };
}

scenarios!(pg, maria, lite);

/// A snapshot needs the other sessions gone (PostgreSQL copies from a template); the adapter
/// ends them rather than failing.
#[test]
fn postgres_snapshot_ends_other_sessions() {
    let Some(b) = pg() else { return };
    let h = b.fresh(true);
    b.exec(&h, b.schema());
    let mut other = b.client(&h.name);
    let snap = h.db.snapshot(None).unwrap();
    assert!(other.simple_query("SELECT 1").is_err(), "the other session was ended");
    h.db.drop_snapshot(&snap).unwrap();
}

/// The adapter refuses to drop anything that is not a copy of its own database.
#[test]
fn drop_snapshot_refuses_the_live_database() {
    let Some(b) = lite() else { return };
    let h = b.fresh(true);
    b.exec(&h, b.schema());
    let fake = caretaker_db::Snapshot {
        name: h.name.clone(),
        kind: CopyKind::Snapshot,
        taken_at: jiff::Timestamp::now(),
        label: None,
    };
    assert!(h.db.drop_snapshot(&fake).is_err());
    assert!(h.db.revert(&fake).is_err());
    assert_eq!(b.query(&h, "SELECT count(*) FROM items"), "3");
}

/// Disaster recovery on a fresh server: the app's role and database do not exist yet. With
/// `admin_url`, restore creates the role (with the password from the app's URL) and a database
/// it owns, and the app can then log in and read its data.
#[test]
fn postgres_restore_creates_the_role_and_database_with_admin_url() {
    let Some(pg) = pg() else { return };
    // A source database with some data, dumped.
    let src = pg.fresh(true);
    pg.exec(&src, "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'kept');");
    let mut dump = Vec::new();
    src.db.dump(&mut dump).unwrap();

    let role = unique_name("ct_role");
    let dbname = unique_name("ct_fresh");
    let app_url = {
        let u = caretaker_db::url::parse_url(&pg.url).unwrap();
        format!("postgres://{role}:app-pw-123@{}:{}/{dbname}", u.host.unwrap(), u.port.unwrap())
    };
    let mut cfg = db_config(DbKind::Postgres, Some(app_url.clone()), None);
    // Without admin_url the app's role cannot even log in on the fresh server.
    let plain = caretaker_db::open(&cfg, &Redactor::default()).unwrap();
    assert!(plain.restore(&mut &dump[..], RestoreMode::IntoEmpty).is_err());

    cfg.admin_url = Some(Secret::new(pg.url.clone(), SecretOrigin::Inline));
    let db = caretaker_db::open(&cfg, &Redactor::default()).unwrap();
    let restored = db.restore(&mut &dump[..], RestoreMode::IntoEmpty);
    let cleanup = || {
        let mut c = pg.client("postgres");
        let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"));
        let _ = c.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        restored.unwrap();
        // The app logs in with its own password, owns its database and reads its data.
        let owner = pg
            .client("postgres")
            .query_one("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", &[&dbname])
            .unwrap()
            .get::<_, String>(0);
        assert_eq!(owner, role);
        let mut app = postgres::Client::connect(&app_url, postgres::NoTls).unwrap();
        let body: String = app.query_one("SELECT body FROM notes", &[]).unwrap().get(0);
        assert_eq!(body, "kept");
    }));
    cleanup();
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

/// A procedure owned by another user (DEFINER=root) in the app's schema: `mariadb-dump
/// --routines` fails on it every night. The privilege check says so before, naming the grant
/// for the server's version; with that grant the dump works, and `dump_routines: false`
/// leaves the routine out with a warning.
#[test]
fn mariadb_dump_privileges_are_checked_and_name_the_grant() {
    let Some(m) = maria() else { return };
    let h = m.fresh(true);
    let user = unique_name("ct_app");
    let password = "app-password-for-tests";
    Maria::run(
        &m.url,
        None,
        &format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; GRANT ALL ON `{}`.* TO '{user}'@'%';", h.name),
    );
    let drop_user = format!("DROP USER IF EXISTS '{user}'@'%'");
    m.exec(
        &h,
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2);
         CREATE DEFINER=CURRENT_USER PROCEDURE root_owned() SELECT COUNT(*) FROM t;
         CREATE DEFINER=CURRENT_USER VIEW root_view AS SELECT id FROM t;",
    );
    let u = caretaker_db::url::parse_url(&m.url).unwrap();
    let app_url = format!("mysql://{user}:{password}@{}:{}/{}", u.host.unwrap(), u.port.unwrap(), h.name);
    let app = m.open(app_url.clone());
    let version = app.check().unwrap().version;

    let e = app.check_dump_privileges().unwrap_err();
    assert!(e.message().contains("procedure `root_owned` (DEFINER=root@"), "{e}");
    let hint = e.what_to_do().unwrap();
    let grant = caretaker_db::mariadb::routine_grant(&version, &format!("'{user}'@'%'"), &h.name);
    assert!(hint.contains(&grant) && hint.contains("database.dump_routines: false"), "{hint}");
    // Right: the dump itself fails, and says what to ask for.
    let dump = app.dump(&mut Vec::new()).unwrap_err();
    assert!(dump.message().contains("insufficient privileges") && dump.message().contains(&grant), "{dump}");

    // Leaving routines out: a warning that they are not backed up, and the dump works.
    let mut cfg = db_config(DbKind::Mariadb, Some(app_url), None);
    cfg.dump_routines = false;
    let without = caretaker_db::open(&cfg, &Redactor::default()).unwrap();
    let warnings = without.check_dump_privileges().unwrap();
    assert_eq!(warnings, ["1 stored routine(s) are NOT backed up (database.dump_routines: false): root_owned"]);
    let mut out = Vec::new();
    without.dump(&mut out).unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("root_owned`()"), "routine left out");

    // The grant the hint names is enough.
    Maria::run(&m.url, None, grant.split(';').next().unwrap());
    assert_eq!(app.check_dump_privileges().unwrap(), Vec::<String>::new());
    let mut out = Vec::new();
    app.dump(&mut out).unwrap();
    assert!(String::from_utf8_lossy(&out).contains("PROCEDURE `root_owned`"));
    Maria::run(&m.url, None, &drop_user);
}
