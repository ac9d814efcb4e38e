//! Database access for SQLite (a mutex'd connection used from `spawn_blocking`) and
//! PostgreSQL (a shared client that reconnects when its connection died; migrations use a
//! dedicated connection so their transactions cannot interleave with other queries).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::config::{parse_database_url, redact_url, DatabaseUrl};
use crate::migrations::{AppliedMigration, Dialect, Migration};

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS demo_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// Arbitrary key for `pg_advisory_xact_lock`, serialising concurrent `migrate` runs.
const PG_MIGRATION_LOCK: i64 = 0x6361_7265_7461_6b72; // "caretakr"

/// A guestbook entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Row id.
    pub id: i64,
    /// Who wrote it.
    pub author: String,
    /// What they wrote.
    pub body: String,
    /// RFC 3339 UTC timestamp.
    pub created_at: String,
}

/// An uploaded file's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upload {
    /// Row id (`GET /files/{id}`).
    pub id: i64,
    /// The file name the client sent (display only).
    pub filename: String,
    /// The generated name in the files directory.
    pub stored_name: String,
    /// The content type the client sent.
    pub content_type: Option<String>,
    /// Size in bytes.
    pub size: i64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// RFC 3339 UTC timestamp.
    pub created_at: String,
}

/// Row counts of the app's tables (`None`: the table does not exist yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Rows in `entries`.
    pub entries: Option<i64>,
    /// Rows in `uploads`.
    pub uploads: Option<i64>,
}

/// A handle to the app's database; cheap to clone.
#[derive(Clone)]
pub struct Database {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Sqlite(Arc<SqliteDb>),
    Postgres(Arc<PgDb>),
}

struct SqliteDb {
    path: PathBuf,
    conn: Mutex<rusqlite::Connection>,
}

struct PgDb {
    url: String,
    client: tokio::sync::Mutex<Option<Arc<tokio_postgres::Client>>>,
}

/// The current time as RFC 3339 UTC with second precision.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Format a PostgreSQL error with the server's message (tokio-postgres' `Display` only says
/// "db error").
pub fn pg_error(e: tokio_postgres::Error) -> anyhow::Error {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" (detail: {d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!(" (hint: {h})"));
        }
        if let Some(tokio_postgres::error::ErrorPosition::Original(p)) = db.position() {
            s.push_str(&format!(" (at character {p})"));
        }
        s.push_str(&format!(" [SQLSTATE {}]", db.code().code()));
        return anyhow!(s);
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(cause) = src {
        s.push_str(&format!(": {cause}"));
        src = cause.source();
    }
    anyhow!(s)
}

fn open_sqlite(path: &Path) -> Result<rusqlite::Connection> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
    }
    let conn =
        rusqlite::Connection::open(path).with_context(|| format!("cannot open SQLite database {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .with_context(|| format!("cannot enable WAL on {}", path.display()))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

async fn connect_pg(url: &str) -> Result<tokio_postgres::Client> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| pg_error(e))
        .with_context(|| format!("invalid PostgreSQL URL {}", redact_url(url)))?;
    let (client, connection) = tokio::time::timeout(Duration::from_secs(15), config.connect(tokio_postgres::NoTls))
        .await
        .map_err(|_| anyhow!("timed out"))
        .and_then(|r| r.map_err(pg_error))
        .with_context(|| format!("cannot connect to {}", redact_url(url)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("demo-app: PostgreSQL connection closed: {:#}", pg_error(e));
        }
    });
    Ok(client)
}

fn sqlite_table_exists(conn: &rusqlite::Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n > 0)
}

async fn pg_table_exists(client: &tokio_postgres::Client, table: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1)",
            &[&table],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.get(0))
}

impl Database {
    /// Open (SQLite: create if missing) or connect (PostgreSQL) to the database.
    pub async fn open(url: &str) -> Result<Database> {
        let inner = match parse_database_url(url)? {
            DatabaseUrl::Sqlite(path) => {
                let p = path.clone();
                let conn = tokio::task::spawn_blocking(move || open_sqlite(&p)).await??;
                Inner::Sqlite(Arc::new(SqliteDb { path, conn: Mutex::new(conn) }))
            }
            DatabaseUrl::Postgres(url) => {
                let client = connect_pg(&url).await?;
                Inner::Postgres(Arc::new(PgDb { url, client: tokio::sync::Mutex::new(Some(Arc::new(client))) }))
            }
        };
        Ok(Database { inner })
    }

    /// Which engine this is.
    pub fn dialect(&self) -> Dialect {
        match &self.inner {
            Inner::Sqlite(_) => Dialect::Sqlite,
            Inner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The database location, safe to print (password redacted).
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Sqlite(db) => format!("sqlite://{}", db.path.display()),
            Inner::Postgres(db) => redact_url(&db.url),
        }
    }

    async fn sqlite<T, F>(db: &Arc<SqliteDb>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await?
    }

    async fn pg(db: &PgDb) -> Result<Arc<tokio_postgres::Client>> {
        let mut guard = db.client.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        *guard = None;
        let client = Arc::new(connect_pg(&db.url).await?);
        *guard = Some(client.clone());
        Ok(client)
    }

    /// Check that the database answers.
    pub async fn ping(&self) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(db) => Self::sqlite(db, |c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?)).await,
            Inner::Postgres(db) => {
                Self::pg(db).await?.batch_execute("SELECT 1").await.map_err(pg_error)?;
                Ok(())
            }
        }
    }

    /// The rows of `demo_migrations` (empty when the table does not exist yet).
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>> {
        const Q: &str = "SELECT version, name, applied_at FROM demo_migrations ORDER BY version";
        match &self.inner {
            Inner::Sqlite(db) => {
                Self::sqlite(db, |c| {
                    if !sqlite_table_exists(c, "demo_migrations")? {
                        return Ok(Vec::new());
                    }
                    let mut st = c.prepare(Q)?;
                    let rows = st.query_map([], |r| {
                        Ok(AppliedMigration { version: r.get(0)?, name: r.get(1)?, applied_at: r.get(2)? })
                    })?;
                    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
                })
                .await
            }
            Inner::Postgres(db) => {
                let c = Self::pg(db).await?;
                if !pg_table_exists(&c, "demo_migrations").await? {
                    return Ok(Vec::new());
                }
                let rows = c.query(Q, &[]).await.map_err(pg_error)?;
                Ok(rows
                    .iter()
                    .map(|r| AppliedMigration { version: r.get(0), name: r.get(1), applied_at: r.get(2) })
                    .collect())
            }
        }
    }

    /// Apply `migrations` in order, each in its own transaction together with its
    /// `demo_migrations` row; already recorded versions are skipped. Stops at the first
    /// failing migration (which is rolled back) and returns its error. `on_applied` is called
    /// after each committed migration. Returns the migrations applied by this call.
    pub async fn apply_migrations(
        &self,
        migrations: &[Migration],
        mut on_applied: impl FnMut(&Migration) + Send,
    ) -> Result<Vec<Migration>> {
        let mut done = Vec::new();
        match &self.inner {
            Inner::Sqlite(db) => {
                for m in migrations {
                    let m2 = m.clone();
                    let applied = Self::sqlite(db, move |c| apply_sqlite(c, &m2)).await?;
                    if applied {
                        on_applied(m);
                        done.push(m.clone());
                    }
                }
            }
            Inner::Postgres(db) => {
                // A dedicated connection: the shared client may be used concurrently.
                let mut client = connect_pg(&db.url).await?;
                if let Err(e) = client.batch_execute(CREATE_MIGRATIONS_TABLE).await {
                    // Concurrent creation may race; only fail if the table is really missing.
                    if !pg_table_exists(&client, "demo_migrations").await? {
                        return Err(pg_error(e).context("cannot create demo_migrations"));
                    }
                }
                for m in migrations {
                    if apply_pg(&mut client, m).await? {
                        on_applied(m);
                        done.push(m.clone());
                    }
                }
            }
        }
        Ok(done)
    }

    /// Row counts of `entries` and `uploads`.
    pub async fn counts(&self) -> Result<Counts> {
        match &self.inner {
            Inner::Sqlite(db) => {
                Self::sqlite(db, |c| {
                    let count = |t: &str| -> rusqlite::Result<Option<i64>> {
                        if !sqlite_table_exists(c, t)? {
                            return Ok(None);
                        }
                        c.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0)).map(Some)
                    };
                    Ok(Counts { entries: count("entries")?, uploads: count("uploads")? })
                })
                .await
            }
            Inner::Postgres(db) => {
                let c = Self::pg(db).await?;
                let mut counts = Counts { entries: None, uploads: None };
                for (t, slot) in [("entries", &mut counts.entries), ("uploads", &mut counts.uploads)] {
                    if pg_table_exists(&c, t).await? {
                        let row = c.query_one(&format!("SELECT COUNT(*) FROM {t}"), &[]).await.map_err(pg_error)?;
                        *slot = Some(row.get(0));
                    }
                }
                Ok(counts)
            }
        }
    }

    /// Entries, newest first.
    pub async fn list_entries(&self, limit: i64) -> Result<Vec<Entry>> {
        match &self.inner {
            Inner::Sqlite(db) => {
                Self::sqlite(db, move |c| {
                    let mut st = c.prepare(
                        "SELECT id, author, body, created_at FROM entries \
                         ORDER BY id DESC LIMIT ?1",
                    )?;
                    let rows = st.query_map([limit], |r| {
                        Ok(Entry { id: r.get(0)?, author: r.get(1)?, body: r.get(2)?, created_at: r.get(3)? })
                    })?;
                    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
                })
                .await
            }
            Inner::Postgres(db) => {
                let rows = Self::pg(db)
                    .await?
                    .query(
                        "SELECT id, author, body, created_at FROM entries \
                         ORDER BY id DESC LIMIT $1",
                        &[&limit],
                    )
                    .await
                    .map_err(pg_error)?;
                Ok(rows
                    .iter()
                    .map(|r| Entry { id: r.get(0), author: r.get(1), body: r.get(2), created_at: r.get(3) })
                    .collect())
            }
        }
    }

    /// Insert an entry; returns its id.
    pub async fn add_entry(&self, author: &str, body: &str) -> Result<i64> {
        let now = now_rfc3339();
        match &self.inner {
            Inner::Sqlite(db) => {
                let (author, body) = (author.to_string(), body.to_string());
                Self::sqlite(db, move |c| {
                    Ok(c.query_row(
                        "INSERT INTO entries (author, body, created_at) VALUES (?1, ?2, ?3) \
                         RETURNING id",
                        rusqlite::params![author, body, now],
                        |r| r.get(0),
                    )?)
                })
                .await
            }
            Inner::Postgres(db) => {
                let row = Self::pg(db)
                    .await?
                    .query_one(
                        "INSERT INTO entries (author, body, created_at) VALUES ($1, $2, $3) \
                         RETURNING id",
                        &[&author, &body, &now],
                    )
                    .await
                    .map_err(pg_error)?;
                Ok(row.get(0))
            }
        }
    }

    /// Uploads, newest first.
    pub async fn list_uploads(&self, limit: i64) -> Result<Vec<Upload>> {
        self.query_uploads(None, limit).await
    }

    /// One upload by id.
    pub async fn get_upload(&self, id: i64) -> Result<Option<Upload>> {
        Ok(self.query_uploads(Some(id), 1).await?.into_iter().next())
    }

    async fn query_uploads(&self, id: Option<i64>, limit: i64) -> Result<Vec<Upload>> {
        const COLS: &str = "id, filename, stored_name, content_type, size, sha256, created_at";
        match &self.inner {
            Inner::Sqlite(db) => {
                Self::sqlite(db, move |c| {
                    let sql = format!(
                        "SELECT {COLS} FROM uploads WHERE (?1 IS NULL OR id = ?1) \
                         ORDER BY id DESC LIMIT ?2"
                    );
                    let mut st = c.prepare(&sql)?;
                    let rows = st.query_map(rusqlite::params![id, limit], |r| {
                        Ok(Upload {
                            id: r.get(0)?,
                            filename: r.get(1)?,
                            stored_name: r.get(2)?,
                            content_type: r.get(3)?,
                            size: r.get(4)?,
                            sha256: r.get(5)?,
                            created_at: r.get(6)?,
                        })
                    })?;
                    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
                })
                .await
            }
            Inner::Postgres(db) => {
                let sql = format!(
                    "SELECT {COLS} FROM uploads WHERE ($1::BIGINT IS NULL OR id = $1) \
                     ORDER BY id DESC LIMIT $2"
                );
                let rows = Self::pg(db).await?.query(&sql, &[&id, &limit]).await.map_err(pg_error)?;
                Ok(rows
                    .iter()
                    .map(|r| Upload {
                        id: r.get(0),
                        filename: r.get(1),
                        stored_name: r.get(2),
                        content_type: r.get(3),
                        size: r.get(4),
                        sha256: r.get(5),
                        created_at: r.get(6),
                    })
                    .collect())
            }
        }
    }

    /// Record an upload whose file is already in place; returns its id.
    pub async fn add_upload(
        &self,
        filename: &str,
        stored_name: &str,
        content_type: Option<&str>,
        size: i64,
        sha256: &str,
    ) -> Result<i64> {
        let now = now_rfc3339();
        match &self.inner {
            Inner::Sqlite(db) => {
                let (filename, stored_name, content_type, sha256) = (
                    filename.to_string(),
                    stored_name.to_string(),
                    content_type.map(str::to_string),
                    sha256.to_string(),
                );
                Self::sqlite(db, move |c| {
                    Ok(c.query_row(
                        "INSERT INTO uploads \
                         (filename, stored_name, content_type, size, sha256, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                        rusqlite::params![filename, stored_name, content_type, size, sha256, now],
                        |r| r.get(0),
                    )?)
                })
                .await
            }
            Inner::Postgres(db) => {
                let row = Self::pg(db)
                    .await?
                    .query_one(
                        "INSERT INTO uploads \
                         (filename, stored_name, content_type, size, sha256, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        &[&filename, &stored_name, &content_type, &size, &sha256, &now],
                    )
                    .await
                    .map_err(pg_error)?;
                Ok(row.get(0))
            }
        }
    }
}

fn apply_sqlite(c: &mut rusqlite::Connection, m: &Migration) -> Result<bool> {
    c.execute_batch(CREATE_MIGRATIONS_TABLE).context("cannot create demo_migrations")?;
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let recorded: i64 =
        tx.query_row("SELECT COUNT(*) FROM demo_migrations WHERE version = ?1", [m.version], |r| r.get(0))?;
    if recorded > 0 {
        return Ok(false);
    }
    tx.execute_batch(&m.sql).map_err(|e| anyhow!("migration {} ({}) failed: {e}", m.id(), m.file.display()))?;
    tx.execute(
        "INSERT INTO demo_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![m.version, m.name, now_rfc3339()],
    )?;
    tx.commit().with_context(|| format!("cannot commit migration {}", m.id()))?;
    Ok(true)
}

async fn apply_pg(client: &mut tokio_postgres::Client, m: &Migration) -> Result<bool> {
    let tx = client.transaction().await.map_err(pg_error)?;
    let result: Result<bool> = async {
        tx.query_one("SELECT pg_advisory_xact_lock($1)::TEXT", &[&PG_MIGRATION_LOCK]).await.map_err(pg_error)?;
        let recorded: i64 = tx
            .query_one("SELECT COUNT(*) FROM demo_migrations WHERE version = $1", &[&m.version])
            .await
            .map_err(pg_error)?
            .get(0);
        if recorded > 0 {
            return Ok(false);
        }
        tx.batch_execute(&m.sql)
            .await
            .map_err(|e| anyhow!("migration {} ({}) failed: {:#}", m.id(), m.file.display(), pg_error(e)))?;
        tx.execute(
            "INSERT INTO demo_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &now_rfc3339()],
        )
        .await
        .map_err(pg_error)?;
        Ok(true)
    }
    .await;
    match result {
        Ok(applied) => {
            tx.commit().await.map_err(pg_error).with_context(|| format!("cannot commit migration {}", m.id()))?;
            Ok(applied)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}
