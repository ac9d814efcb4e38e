//! End-to-end tests of the demo app against SQLite and (when `CARETAKER_TEST_PG_URL` is set)
//! PostgreSQL.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use caretaker_demo_app::{migrate, pending_migrations, serve_on, status, App, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------- a tiny HTTP client

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw)).await.expect("response timed out").unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no header end");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let chunked =
        headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().split(';').next().unwrap(), 16)
                .unwrap();
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Resp { status, headers, body }
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, None, b"").await
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

fn multipart(filename: &str, content_type: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----caretakerTestBoundary7MA4YWxk";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

// ---------------------------------------------------------------- running the server

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(config: Config) -> Server {
        let app = App::open(config, false).await.expect("app opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_on(listener, app, async move {
            let _ = rx.await;
        }));
        Server { addr, stop: Some(tx), task }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("graceful shutdown").unwrap().unwrap();
    }
}

// ---------------------------------------------------------------- shared scenarios

fn config_for(dir: &Path, database_url: &str) -> Config {
    Config { database_url: database_url.to_string(), ..Config::in_dir(dir) }
}

fn ids(ms: &[caretaker_demo_app::Migration]) -> Vec<String> {
    ms.iter().map(|m| m.id()).collect()
}

/// v1: migrate, serve, add an entry and a file, see them; health checks.
async fn full_flow(dir: &Path, database_url: &str) {
    caretaker_demo_app::write_default_release(dir).unwrap();
    let config = config_for(dir, database_url);

    assert_eq!(ids(&pending_migrations(&config).await.unwrap()), ["0001_entries", "0002_uploads"]);
    let err = App::open(config.clone(), false).await.err().expect("refuses pending migrations");
    assert!(format!("{err:#}").contains("refusing to serve"), "{err:#}");
    assert_eq!(ids(&migrate(&config).await.unwrap()), ["0001_entries", "0002_uploads"]);
    assert!(pending_migrations(&config).await.unwrap().is_empty());
    assert!(migrate(&config).await.unwrap().is_empty(), "idempotent");

    let server = Server::start(config.clone()).await;
    let addr = server.addr;

    let r = get(addr, "/healthz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(get(addr, "/version").await.text(), "v1\n");
    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("No entries yet."));

    let form = form_encode(&[("author", "<Alice> & \"Bob\""), ("body", "Hello <script>alert(1)</script>")]);
    let r = request(addr, "POST", "/entries", Some("application/x-www-form-urlencoded"), form.as_bytes()).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/"));
    let form = form_encode(&[("author", "Carol"), ("body", "second")]);
    request(addr, "POST", "/entries", Some("application/x-www-form-urlencoded"), form.as_bytes()).await;
    // Missing body: 400.
    let r = request(addr, "POST", "/entries", Some("application/x-www-form-urlencoded"), b"author=x").await;
    assert_eq!(r.status, 400);

    let data = b"hello file\n\x00\x01binary".to_vec();
    let (ct, body) = multipart("../notes <1>.txt", "text/plain", &data);
    let r = request(addr, "POST", "/upload", Some(&ct), &body).await;
    assert_eq!(r.status, 303, "{}", r.text());

    let page = get(addr, "/").await.text();
    assert!(page.contains("&lt;Alice&gt; &amp; &quot;Bob&quot;"), "{page}");
    assert!(page.contains("Hello &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>"));
    assert!(page.contains("notes &lt;1&gt;.txt"), "{page}");
    assert!(page.find("Carol").unwrap() < page.find("&lt;Alice&gt;").unwrap(), "newest first");

    let entries: serde_json::Value = serde_json::from_slice(&get(addr, "/api/entries").await.body).unwrap();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["author"], "Carol");
    assert_eq!(entries[1]["body"], "Hello <script>alert(1)</script>");

    let uploads = App::open(config.clone(), false).await.unwrap().database().list_uploads(10).await.unwrap();
    assert_eq!(uploads.len(), 1);
    let up = &uploads[0];
    assert_eq!(up.filename, "notes <1>.txt");
    assert_eq!(up.size, data.len() as i64);
    assert_eq!(up.sha256.len(), 64);
    assert!(page.contains(&format!("href=\"/files/{}\"", up.id)));
    let stored = config.files_dir.join(&up.stored_name);
    assert_eq!(std::fs::read(&stored).unwrap(), data);
    let r = get(addr, &format!("/files/{}", up.id)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(get(addr, "/files/999999").await.status, 404);

    let s = status(&config).await.unwrap();
    assert_eq!(s["counts"]["entries"], 2);
    assert_eq!(s["counts"]["uploads"], 1);
    assert_eq!(s["applied"].as_array().unwrap().len(), 2);
    assert_eq!(s["up_to_date"], true);
    assert_eq!(s["version"], "v1");

    // v4: a HEALTH_FAIL file in the release makes /healthz fail.
    std::fs::write(dir.join("HEALTH_FAIL"), "broken on purpose\n").unwrap();
    let r = get(addr, "/healthz").await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("broken on purpose"));
    std::fs::remove_file(dir.join("HEALTH_FAIL")).unwrap();
    assert_eq!(get(addr, "/healthz").await.status, 200);

    server.stop().await;

    // DEMO_HEALTH_FAIL=1 does the same.
    let server = Server::start(Config { health_fail: true, ..config.clone() }).await;
    assert_eq!(get(server.addr, "/healthz").await.status, 500);
    server.stop().await;

    // Served with --allow-pending, /healthz reports the pending migration.
    std::fs::write(dir.join("migrations/0003_entry_tags.sql"), "ALTER TABLE entries ADD COLUMN tags TEXT;\n").unwrap();
    let app = App::open(config.clone(), true).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_on(listener, app, async move {
        let _ = rx.await;
    }));
    let r = get(addr, "/healthz").await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("0003_entry_tags"), "{}", r.text());
    // v2: migrating makes it healthy, without restarting.
    assert_eq!(ids(&migrate(&config).await.unwrap()), ["0003_entry_tags"]);
    assert_eq!(get(addr, "/healthz").await.status, 200);
    assert_eq!(get(addr, "/").await.status, 200);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

/// v2 then v3: a new migration applies; a failing one is rolled back and not recorded.
async fn failing_migration(dir: &Path, database_url: &str, table_exists: impl AsyncTableCheck) {
    caretaker_demo_app::write_default_release(dir).unwrap();
    let config = config_for(dir, database_url);
    migrate(&config).await.unwrap();

    std::fs::write(
        dir.join("migrations/0003_entry_tags.sql"),
        "ALTER TABLE entries ADD COLUMN tags TEXT;\nCREATE TABLE tags (name TEXT PRIMARY KEY);\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("migrations/0004_broken.sql"),
        "CREATE TABLE half_done (id BIGINT);\nINSERT INTO half_done VALUES (1);\n\
         INSERT INTO no_such_table VALUES (1);\n",
    )
    .unwrap();
    assert_eq!(ids(&pending_migrations(&config).await.unwrap()), ["0003_entry_tags", "0004_broken"]);
    let err = migrate(&config).await.expect_err("0004 fails");
    let msg = format!("{err:#}");
    assert!(msg.contains("0004_broken"), "{msg}");
    assert!(msg.contains("no_such_table"), "{msg}");

    let s = status(&config).await.unwrap();
    let applied: Vec<i64> = s["applied"].as_array().unwrap().iter().map(|a| a["version"].as_i64().unwrap()).collect();
    assert_eq!(applied, [1, 2, 3], "earlier migrations stay applied");
    assert_eq!(s["pending"], serde_json::json!(["0004_broken"]));
    assert!(table_exists.exists(database_url, "tags").await);
    assert!(!table_exists.exists(database_url, "half_done").await, "the failing migration was rolled back");

    // Fixing the file lets it apply.
    std::fs::write(dir.join("migrations/0004_broken.sql"), "CREATE TABLE half_done (id BIGINT);\n").unwrap();
    assert_eq!(ids(&migrate(&config).await.unwrap()), ["0004_broken"]);
    assert!(table_exists.exists(database_url, "half_done").await);
}

trait AsyncTableCheck {
    fn exists(&self, url: &str, table: &str) -> impl std::future::Future<Output = bool>;
}

struct SqliteTables;
impl AsyncTableCheck for SqliteTables {
    async fn exists(&self, url: &str, table: &str) -> bool {
        let path = url.strip_prefix("sqlite://").unwrap();
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
            > 0
    }
}

struct PgTables;
impl AsyncTableCheck for PgTables {
    async fn exists(&self, url: &str, table: &str) -> bool {
        let client = pg_connect(url).await;
        client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1)",
                &[&table],
            )
            .await
            .unwrap()
            .get(0)
    }
}

// ---------------------------------------------------------------- SQLite

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("data/demo.db").display())
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    full_flow(dir.path(), &sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_failing_migration_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    failing_migration(dir.path(), &sqlite_url(dir.path()), SqliteTables).await;
}

#[test]
fn write_default_release_lays_out_v1() {
    let dir = tempfile::tempdir().unwrap();
    caretaker_demo_app::write_default_release(dir.path()).unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("VERSION")).unwrap(), "v1\n");
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "0001_entries.postgres.sql",
            "0001_entries.sqlite.sql",
            "0002_uploads.postgres.sql",
            "0002_uploads.sqlite.sql"
        ]
    );
}

// ---------------------------------------------------------------- the binary

fn bin(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_caretaker-demo-app"));
    c.args(args).current_dir(dir);
    for v in [
        "DEMO_DATABASE_URL",
        "DEMO_FILES_DIR",
        "DEMO_MIGRATIONS_DIR",
        "DEMO_RELEASE_DIR",
        "DEMO_LISTEN",
        "DEMO_HEALTH_FAIL",
        "PORT",
    ] {
        c.env_remove(v);
    }
    c
}

#[test]
fn binary_migrate_check_status_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    caretaker_demo_app::write_default_release(d).unwrap();

    let out = bin(d, &["migrate", "--check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0001_entries") && stdout.contains("0002_uploads"), "{stdout}");

    let out = bin(d, &["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to serve"));

    let out = bin(d, &["migrate"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(d.join("demo.db").exists(), "default database is ./demo.db");
    let out = bin(d, &["migrate", "--check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let out = bin(d, &["status"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["applied"].as_array().unwrap().len(), 2);
    assert_eq!(s["counts"]["entries"], 0);
    assert_eq!(s["database"]["backend"], "sqlite");

    // Flags override the environment.
    let out = bin(d, &["migrate", "--check", "--database-url", "other.db"])
        .env("DEMO_DATABASE_URL", "sqlite://./demo.db")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // The password never shows.
    let out = bin(d, &["status"])
        .env("DEMO_DATABASE_URL", "postgres://someone:supersecret@127.0.0.1:1/nodb")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("supersecret"), "{stderr}");
    assert!(stderr.contains("someone:***@127.0.0.1:1"), "{stderr}");

    // serve on port 0 (PORT is ignored when DEMO_LISTEN is set), then SIGTERM.
    let mut child = bin(d, &["serve"])
        .env("DEMO_LISTEN", "127.0.0.1:0")
        .env("PORT", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let addr: SocketAddr = loop {
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("server announces its address");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let r = rt.block_on(get(addr, "/healthz"));
    assert_eq!(r.status, 200);
    let r = rt.block_on(get(addr, "/version"));
    assert_eq!(r.text(), "v1\n");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().all(|l| !l.contains("/healthz")), "/healthz is not logged: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("GET /version 200")), "{rest:?}");
}

// ---------------------------------------------------------------- PostgreSQL

async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL: {e}"));
    tokio::spawn(conn);
    client
}

/// Replace the database name in a `postgres://` URL.
fn with_dbname(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").expect("postgres:// URL") + 3;
    let after = &url[scheme_end..];
    let auth_end = after.find(['/', '?']).unwrap_or(after.len());
    let rest = &after[auth_end..];
    let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
    format!("{}{}/{db}{query}", &url[..scheme_end], &after[..auth_end])
}

struct PgDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDb {
    /// A fresh database, or None (skip) when `CARETAKER_TEST_PG_URL` is not set.
    async fn create(test: &str) -> Option<PgDb> {
        let Some(admin_url) = std::env::var("CARETAKER_TEST_PG_URL").ok().filter(|s| !s.is_empty()) else {
            if std::env::var_os("CI").is_some() {
                panic!("CARETAKER_TEST_PG_URL not set: the test script starts PostgreSQL");
            }
            eprintln!("skipping {test}: CARETAKER_TEST_PG_URL not set");
            return None;
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("caretaker_demo_{test}_{}_{nanos}", std::process::id());
        let admin = pg_connect(&admin_url).await;
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
        let url = with_dbname(&admin_url, &name);
        Some(PgDb { admin_url, name, url })
    }

    async fn drop_db(self) {
        let admin = pg_connect(&self.admin_url).await;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).await.unwrap();
    }
}

#[test]
fn with_dbname_replaces_the_path() {
    assert_eq!(
        with_dbname("postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable", "x"),
        "postgres://u:p@127.0.0.1:5432/x?sslmode=disable"
    );
    assert_eq!(with_dbname("postgres://h:1", "x"), "postgres://h:1/x");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_end_to_end() {
    let Some(db) = PgDb::create("e2e").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    full_flow(dir.path(), &db.url).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_failing_migration_is_rolled_back() {
    let Some(db) = PgDb::create("failmig").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    failing_migration(dir.path(), &db.url, PgTables).await;
    db.drop_db().await;
}
