//! The controller's state: per server, per task, the last attempt, last success, outcome and
//! figures; per server the last contact; the runs; leases and reboot tokens. Behind
//! [`FleetStore`], with two implementations passing the same conformance tests
//! (tests/store.rs): [`SqliteStore`], the embedded default, and [`PgStore`] for fleets run by
//! several controllers.
//!
//! Every task result is written in its own transaction the moment it arrives, never at the end
//! of a run: a controller killed mid-run keeps every result it had received.
//!
//! Times are unix seconds (`i64`): compared in SQL by both databases the same way.

use crate::results::{backoff, Outcome, TaskResult};
use crate::{Error, ErrorKind, Result};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use std::path::Path;

/// How contacting a server went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contact {
    /// `ok`, `unreachable`, `host_key`, `login`, `timeout`, `remote_error`, `leased`.
    pub outcome: String,
    pub message: Option<String>,
    pub transient: bool,
    pub reboot_pending: bool,
}

/// One fleet run; `resumed` when it continues a run a killed controller left unfinished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Run {
    pub id: i64,
    pub resumed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskStatus {
    pub task: String,
    /// The server's kind of task (`backup`, `command`, `deps`, ...), when it said.
    pub kind: Option<String>,
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    pub outcome: String,
    pub message: Option<String>,
    pub figures: serde_json::Value,
    /// Failures in a row; the task is retried after `retry_after`.
    pub failures: u32,
    pub retry_after: Option<i64>,
    pub needs_human: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerStatus {
    pub server: String,
    pub last_contact: Option<i64>,
    pub last_ok_contact: Option<i64>,
    pub contact: Option<String>,
    pub message: Option<String>,
    pub reboot_pending: bool,
    pub tasks: Vec<TaskStatus>,
}

/// One result of a run, for the digest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunEntry {
    pub server: String,
    pub contact: Option<Contact>,
    pub tasks: Vec<TaskResult>,
}

/// The controller's state store.
pub trait FleetStore: Send {
    /// Starts a run, or joins the newest unfinished run started within `resume_within`
    /// seconds — one a killed controller left, or one another controller works on now, so
    /// no server is worked on twice in a round. Older unfinished runs are closed.
    fn begin_run(&mut self, controller: &str, now: i64, resume_within: i64) -> Result<Run>;
    fn finish_run(&mut self, run: i64, now: i64) -> Result<()>;
    /// Whether `server` was already dealt with completely in `run` (a resumed run skips it).
    fn server_done(&mut self, run: i64, server: &str) -> Result<bool>;
    /// Takes the lease on `server` for `holder` until `now + ttl`; false when another holder
    /// has it. Two controllers never work on one server at once.
    fn lease(&mut self, server: &str, holder: &str, now: i64, ttl: i64) -> Result<bool>;
    fn release(&mut self, server: &str, holder: &str) -> Result<()>;
    /// Stores one task's result (one transaction).
    fn record_task(&mut self, run: i64, server: &str, r: &TaskResult, now: i64) -> Result<()>;
    /// Stores how the contact went and marks the server done in `run` (one transaction).
    fn record_contact(&mut self, run: i64, server: &str, c: &Contact, now: i64) -> Result<()>;
    /// A reboot token for `server`: at most `k` servers hold one at once. Holding one already
    /// is true again; tokens expire at `now + ttl`.
    fn reboot_token(&mut self, server: &str, k: u32, now: i64, ttl: i64) -> Result<bool>;
    fn release_reboot_token(&mut self, server: &str) -> Result<()>;
    /// Tasks of `server` in backoff at `now`: (task, retry after).
    fn backing_off(&mut self, server: &str, now: i64) -> Result<Vec<(String, i64)>>;
    fn status(&mut self) -> Result<Vec<ServerStatus>>;
    fn run_entries(&mut self, run: i64) -> Result<Vec<RunEntry>>;
    /// The newest run's id.
    fn last_run(&mut self) -> Result<Option<i64>>;
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fleet_runs (id INTEGER PRIMARY KEY, controller TEXT NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER);
CREATE TABLE IF NOT EXISTS fleet_servers (server TEXT PRIMARY KEY, last_contact INTEGER, last_ok_contact INTEGER, contact TEXT, message TEXT,
  reboot_pending INTEGER NOT NULL DEFAULT 0, lease_holder TEXT, lease_until INTEGER);
CREATE TABLE IF NOT EXISTS fleet_contacts (run INTEGER NOT NULL, server TEXT NOT NULL, at INTEGER NOT NULL, outcome TEXT NOT NULL, message TEXT,
  transient INTEGER NOT NULL, reboot_pending INTEGER NOT NULL, PRIMARY KEY (run, server));
CREATE TABLE IF NOT EXISTS fleet_tasks (server TEXT NOT NULL, task TEXT NOT NULL, last_attempt INTEGER, last_success INTEGER, outcome TEXT NOT NULL,
  message TEXT, figures TEXT, failures INTEGER NOT NULL DEFAULT 0, retry_after INTEGER, needs_human INTEGER NOT NULL DEFAULT 0, kind TEXT, PRIMARY KEY (server, task));
CREATE TABLE IF NOT EXISTS fleet_task_log (run INTEGER NOT NULL, server TEXT NOT NULL, task TEXT NOT NULL, at INTEGER NOT NULL, outcome TEXT NOT NULL,
  message TEXT, figures TEXT, needs_human INTEGER NOT NULL, reboot_pending INTEGER NOT NULL, kind TEXT);
CREATE INDEX IF NOT EXISTS fleet_task_log_run ON fleet_task_log (run);
CREATE TABLE IF NOT EXISTS fleet_reboot_tokens (slot INTEGER PRIMARY KEY, server TEXT, until INTEGER);
";

/// The embedded default: `fleet.db` (SQLite, WAL) in the fleet's state dir.
pub struct SqliteStore {
    db: rusqlite::Connection,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let mut db = rusqlite::Connection::open(path)
            .map_err(|e| Error::new(ErrorKind::Store, format!("cannot open {}: {e}", path.display())))?;
        db.busy_timeout(std::time::Duration::from_secs(30))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // A committed transaction is in the WAL file when the commit returns: it survives the
        // controller's death (SIGKILL). NORMAL skips the fsync per commit, which on a busy disk
        // would serialise a fleet run; an OS crash may lose the last results, and the next run
        // then finds those tasks (and servers) not done (docs/decisions.md).
        db.pragma_update(None, "synchronous", "NORMAL")?;
        // Schema 1 lacked the tasks' `kind`; schema 2 adds it. Migrated in one transaction, so
        // two controllers opening an old file at once do not both add the column.
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > 2 {
            return Err(Error::new(
                ErrorKind::Store,
                format!("{} was written by a newer caretaker (schema {version})", path.display()),
            ));
        }
        tx.execute_batch(SQLITE_SCHEMA)?;
        if version == 1 {
            tx.execute_batch(
                "ALTER TABLE fleet_tasks ADD COLUMN kind TEXT; ALTER TABLE fleet_task_log ADD COLUMN kind TEXT;",
            )?;
        }
        tx.pragma_update(None, "user_version", 2)?;
        tx.commit()?;
        Ok(SqliteStore { db })
    }

    fn immediate<T>(&mut self, f: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T>) -> Result<T> {
        let tx = self.db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let v = f(&tx)?;
        tx.commit()?;
        Ok(v)
    }
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    (!v.is_null()).then(|| v.to_string())
}

fn json_value(s: Option<String>) -> serde_json::Value {
    s.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(serde_json::Value::Null)
}

/// The new row of `fleet_tasks` after `r`, given the old failures count.
fn next_task_state(old_failures: u32, r: &TaskResult, now: i64) -> (u32, Option<i64>) {
    match r.outcome {
        Outcome::Ok => (0, None),
        Outcome::Skipped | Outcome::NotDue => (old_failures, None),
        Outcome::Failed | Outcome::Interrupted => {
            let f = old_failures + 1;
            (f, Some(now + backoff(f).as_secs() as i64))
        }
    }
}

impl FleetStore for SqliteStore {
    fn begin_run(&mut self, controller: &str, now: i64, resume_within: i64) -> Result<Run> {
        self.immediate(|tx| {
            tx.execute(
                "UPDATE fleet_runs SET finished_at = ?1 WHERE finished_at IS NULL AND started_at < ?2",
                params![now, now - resume_within],
            )?;
            let open: Option<i64> = tx
                .query_row("SELECT id FROM fleet_runs WHERE finished_at IS NULL ORDER BY id DESC LIMIT 1", [], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(id) = open {
                return Ok(Run { id, resumed: true });
            }
            tx.execute("INSERT INTO fleet_runs (controller, started_at) VALUES (?1, ?2)", params![controller, now])?;
            Ok(Run { id: tx.last_insert_rowid(), resumed: false })
        })
    }

    fn finish_run(&mut self, run: i64, now: i64) -> Result<()> {
        self.db.execute("UPDATE fleet_runs SET finished_at = ?2 WHERE id = ?1", params![run, now])?;
        Ok(())
    }

    fn server_done(&mut self, run: i64, server: &str) -> Result<bool> {
        Ok(self
            .db
            .query_row("SELECT 1 FROM fleet_contacts WHERE run = ?1 AND server = ?2", params![run, server], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn lease(&mut self, server: &str, holder: &str, now: i64, ttl: i64) -> Result<bool> {
        self.immediate(|tx| {
            tx.execute("INSERT OR IGNORE INTO fleet_servers (server) VALUES (?1)", [server])?;
            let (h, until): (Option<String>, Option<i64>) =
                tx.query_row("SELECT lease_holder, lease_until FROM fleet_servers WHERE server = ?1", [server], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            if h.is_some_and(|h| h != holder) && until.is_some_and(|u| u > now) {
                return Ok(false);
            }
            tx.execute(
                "UPDATE fleet_servers SET lease_holder = ?2, lease_until = ?3 WHERE server = ?1",
                params![server, holder, now + ttl],
            )?;
            Ok(true)
        })
    }

    fn release(&mut self, server: &str, holder: &str) -> Result<()> {
        self.db.execute(
            "UPDATE fleet_servers SET lease_holder = NULL, lease_until = NULL WHERE server = ?1 AND lease_holder = ?2",
            params![server, holder],
        )?;
        Ok(())
    }

    fn record_task(&mut self, run: i64, server: &str, r: &TaskResult, now: i64) -> Result<()> {
        self.immediate(|tx| {
            let old: u32 = tx
                .query_row("SELECT failures FROM fleet_tasks WHERE server = ?1 AND task = ?2", params![server, r.task], |x| x.get(0))
                .optional()?
                .unwrap_or(0);
            let (failures, retry_after) = next_task_state(old, r, now);
            let figures = json_text(&r.figures);
            if matches!(r.outcome, Outcome::Skipped | Outcome::NotDue) {
                tx.execute(
                    "INSERT INTO fleet_tasks (server, task, outcome, message, kind) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (server, task) DO UPDATE SET kind = COALESCE(excluded.kind, fleet_tasks.kind)",
                    params![server, r.task, r.outcome.as_str(), r.message, r.kind],
                )?;
                if r.outcome == Outcome::NotDue {
                    return Ok(());
                }
            } else {
                tx.execute(
                    "INSERT INTO fleet_tasks (server, task, last_attempt, last_success, outcome, message, figures, failures, retry_after, needs_human, kind)
                     VALUES (?1, ?2, ?3, CASE WHEN ?4 = 'ok' THEN ?3 END, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (server, task) DO UPDATE SET last_attempt = excluded.last_attempt,
                       last_success = COALESCE(excluded.last_success, fleet_tasks.last_success), outcome = excluded.outcome,
                       message = excluded.message, figures = COALESCE(excluded.figures, fleet_tasks.figures), failures = excluded.failures,
                       retry_after = excluded.retry_after, needs_human = excluded.needs_human,
                       kind = COALESCE(excluded.kind, fleet_tasks.kind)",
                    params![server, r.task, now, r.outcome.as_str(), r.message, figures, failures, retry_after, r.needs_human, r.kind],
                )?;
            }
            tx.execute(
                "INSERT INTO fleet_task_log (run, server, task, at, outcome, message, figures, needs_human, reboot_pending, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![run, server, r.task, now, r.outcome.as_str(), r.message, figures, r.needs_human, r.reboot_pending, r.kind],
            )?;
            Ok(())
        })
    }

    fn record_contact(&mut self, run: i64, server: &str, c: &Contact, now: i64) -> Result<()> {
        self.immediate(|tx| {
            tx.execute("INSERT OR IGNORE INTO fleet_servers (server) VALUES (?1)", [server])?;
            tx.execute(
                "UPDATE fleet_servers SET last_contact = ?2, contact = ?3, message = ?4,
                   last_ok_contact = CASE WHEN ?3 = 'ok' THEN ?2 ELSE last_ok_contact END,
                   reboot_pending = CASE WHEN ?3 = 'ok' THEN ?5 ELSE reboot_pending END
                 WHERE server = ?1",
                params![server, now, c.outcome, c.message, c.reboot_pending],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO fleet_contacts (run, server, at, outcome, message, transient, reboot_pending)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![run, server, now, c.outcome, c.message, c.transient, c.reboot_pending],
            )?;
            Ok(())
        })
    }

    fn reboot_token(&mut self, server: &str, k: u32, now: i64, ttl: i64) -> Result<bool> {
        self.immediate(|tx| {
            for slot in 0..k {
                tx.execute("INSERT OR IGNORE INTO fleet_reboot_tokens (slot) VALUES (?1)", [slot])?;
            }
            let held: Option<i64> = tx
                .query_row("SELECT slot FROM fleet_reboot_tokens WHERE server = ?1 AND until > ?2", params![server, now], |r| r.get(0))
                .optional()?;
            if held.is_some() {
                return Ok(true);
            }
            let free: Option<i64> = tx
                .query_row(
                    "SELECT slot FROM fleet_reboot_tokens WHERE slot < ?1 AND (server IS NULL OR until <= ?2) ORDER BY slot LIMIT 1",
                    params![k, now],
                    |r| r.get(0),
                )
                .optional()?;
            match free {
                Some(slot) => {
                    tx.execute(
                        "UPDATE fleet_reboot_tokens SET server = ?2, until = ?3 WHERE slot = ?1",
                        params![slot, server, now + ttl],
                    )?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
    }

    fn release_reboot_token(&mut self, server: &str) -> Result<()> {
        self.db.execute("UPDATE fleet_reboot_tokens SET server = NULL, until = NULL WHERE server = ?1", [server])?;
        Ok(())
    }

    fn backing_off(&mut self, server: &str, now: i64) -> Result<Vec<(String, i64)>> {
        let mut st = self.db.prepare(
            "SELECT task, retry_after FROM fleet_tasks WHERE server = ?1 AND retry_after IS NOT NULL AND retry_after > ?2 ORDER BY task",
        )?;
        let rows = st
            .query_map(params![server, now], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn status(&mut self) -> Result<Vec<ServerStatus>> {
        let mut servers: Vec<ServerStatus> = self
            .db
            .prepare("SELECT server, last_contact, last_ok_contact, contact, message, reboot_pending FROM fleet_servers ORDER BY server")?
            .query_map([], |r| {
                Ok(ServerStatus {
                    server: r.get(0)?,
                    last_contact: r.get(1)?,
                    last_ok_contact: r.get(2)?,
                    contact: r.get(3)?,
                    message: r.get(4)?,
                    reboot_pending: r.get(5)?,
                    tasks: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut st = self.db.prepare(
            "SELECT task, last_attempt, last_success, outcome, message, figures, failures, retry_after, needs_human, kind
             FROM fleet_tasks WHERE server = ?1 ORDER BY task",
        )?;
        for s in &mut servers {
            s.tasks = st
                .query_map([&s.server], |r| {
                    Ok(TaskStatus {
                        task: r.get(0)?,
                        last_attempt: r.get(1)?,
                        last_success: r.get(2)?,
                        outcome: r.get(3)?,
                        message: r.get(4)?,
                        figures: json_value(r.get(5)?),
                        failures: r.get(6)?,
                        retry_after: r.get(7)?,
                        needs_human: r.get(8)?,
                        kind: r.get(9)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
        }
        Ok(servers)
    }

    fn run_entries(&mut self, run: i64) -> Result<Vec<RunEntry>> {
        let contacts: Vec<(String, Contact)> = self
            .db
            .prepare("SELECT server, outcome, message, transient, reboot_pending FROM fleet_contacts WHERE run = ?1 ORDER BY server")?
            .query_map([run], |r| {
                Ok((r.get(0)?, Contact { outcome: r.get(1)?, message: r.get(2)?, transient: r.get(3)?, reboot_pending: r.get(4)? }))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let tasks: Vec<(String, TaskResult)> = self
            .db
            .prepare("SELECT server, task, outcome, message, figures, needs_human, reboot_pending, kind FROM fleet_task_log WHERE run = ?1 ORDER BY server, at")?
            .query_map([run], |r| {
                Ok((
                    r.get(0)?,
                    TaskResult {
                        task: r.get(1)?,
                        kind: r.get(7)?,
                        outcome: Outcome::parse(&r.get::<_, String>(2)?),
                        message: r.get(3)?,
                        figures: json_value(r.get(4)?),
                        needs_human: r.get(5)?,
                        reboot_pending: r.get(6)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(entries(contacts, tasks))
    }

    fn last_run(&mut self) -> Result<Option<i64>> {
        Ok(self.db.query_row("SELECT max(id) FROM fleet_runs", [], |r| r.get(0))?)
    }
}

fn entries(contacts: Vec<(String, Contact)>, tasks: Vec<(String, TaskResult)>) -> Vec<RunEntry> {
    let mut out: Vec<RunEntry> = Vec::new();
    for (s, c) in contacts {
        out.push(RunEntry { server: s, contact: Some(c), tasks: Vec::new() });
    }
    for (s, t) in tasks {
        match out.iter_mut().find(|e| e.server == s) {
            Some(e) => e.tasks.push(t),
            None => out.push(RunEntry { server: s, contact: None, tasks: vec![t] }),
        }
    }
    out.sort_by(|a, b| a.server.cmp(&b.server));
    out
}

const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fleet_runs (id BIGSERIAL PRIMARY KEY, controller TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT);
CREATE TABLE IF NOT EXISTS fleet_servers (server TEXT PRIMARY KEY, last_contact BIGINT, last_ok_contact BIGINT, contact TEXT, message TEXT,
  reboot_pending BOOLEAN NOT NULL DEFAULT false, lease_holder TEXT, lease_until BIGINT);
CREATE TABLE IF NOT EXISTS fleet_contacts (run BIGINT NOT NULL, server TEXT NOT NULL, at BIGINT NOT NULL, outcome TEXT NOT NULL, message TEXT,
  transient BOOLEAN NOT NULL, reboot_pending BOOLEAN NOT NULL, PRIMARY KEY (run, server));
CREATE TABLE IF NOT EXISTS fleet_tasks (server TEXT NOT NULL, task TEXT NOT NULL, last_attempt BIGINT, last_success BIGINT, outcome TEXT NOT NULL,
  message TEXT, figures TEXT, failures INTEGER NOT NULL DEFAULT 0, retry_after BIGINT, needs_human BOOLEAN NOT NULL DEFAULT false, kind TEXT, PRIMARY KEY (server, task));
CREATE TABLE IF NOT EXISTS fleet_task_log (run BIGINT NOT NULL, server TEXT NOT NULL, task TEXT NOT NULL, at BIGINT NOT NULL, outcome TEXT NOT NULL,
  message TEXT, figures TEXT, needs_human BOOLEAN NOT NULL, reboot_pending BOOLEAN NOT NULL, kind TEXT);
CREATE INDEX IF NOT EXISTS fleet_task_log_run ON fleet_task_log (run);
CREATE TABLE IF NOT EXISTS fleet_reboot_tokens (slot INTEGER PRIMARY KEY, server TEXT, until BIGINT);
";

/// PostgreSQL, for fleets run by several controllers: leases through
/// `SELECT … FOR UPDATE SKIP LOCKED`, reboot tokens likewise.
pub struct PgStore {
    db: postgres::Client,
}

impl PgStore {
    /// Connects (the URL comes from the environment or a 0600 file, never the command line).
    pub fn connect(url: &str) -> Result<PgStore> {
        let mut db = postgres::Client::connect(url, postgres::NoTls).map_err(|e| {
            Error::new(ErrorKind::Store, format!("cannot connect to the fleet's PostgreSQL store: {e}"))
        })?;
        // Two controllers starting at once: the schema is created under an advisory lock.
        let mut tx = db.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock(725100722)", &[])?;
        tx.batch_execute(PG_SCHEMA)?;
        // A store made before the tasks' `kind`: add the column, only when missing (an ALTER
        // takes the table's exclusive lock, which other controllers' transactions would wait on).
        for table in ["fleet_tasks", "fleet_task_log"] {
            let has = tx
                .query_opt(
                    "SELECT 1 FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'kind'",
                    &[&table],
                )?
                .is_some();
            if !has {
                tx.batch_execute(&format!("ALTER TABLE {table} ADD COLUMN kind TEXT"))?;
            }
        }
        tx.commit()?;
        Ok(PgStore { db })
    }
}

impl FleetStore for PgStore {
    fn begin_run(&mut self, controller: &str, now: i64, resume_within: i64) -> Result<Run> {
        let mut tx = self.db.transaction()?;
        // Two controllers starting at once join one run: serialised by an advisory lock.
        tx.execute("SELECT pg_advisory_xact_lock(725100723)", &[])?;
        tx.execute(
            "UPDATE fleet_runs SET finished_at = $1 WHERE finished_at IS NULL AND started_at < $2",
            &[&now, &(now - resume_within)],
        )?;
        let open = tx.query_opt("SELECT id FROM fleet_runs WHERE finished_at IS NULL ORDER BY id DESC LIMIT 1", &[])?;
        let run = match open {
            Some(r) => Run { id: r.get(0), resumed: true },
            None => {
                let r = tx.query_one(
                    "INSERT INTO fleet_runs (controller, started_at) VALUES ($1, $2) RETURNING id",
                    &[&controller, &now],
                )?;
                Run { id: r.get(0), resumed: false }
            }
        };
        tx.commit()?;
        Ok(run)
    }

    fn finish_run(&mut self, run: i64, now: i64) -> Result<()> {
        self.db.execute("UPDATE fleet_runs SET finished_at = $2 WHERE id = $1", &[&run, &now])?;
        Ok(())
    }

    fn server_done(&mut self, run: i64, server: &str) -> Result<bool> {
        Ok(self
            .db
            .query_opt("SELECT 1 FROM fleet_contacts WHERE run = $1 AND server = $2", &[&run, &server])?
            .is_some())
    }

    fn lease(&mut self, server: &str, holder: &str, now: i64, ttl: i64) -> Result<bool> {
        let mut tx = self.db.transaction()?;
        tx.execute("INSERT INTO fleet_servers (server) VALUES ($1) ON CONFLICT DO NOTHING", &[&server])?;
        // A row another controller is taking right now is skipped, not waited for.
        let row = tx.query_opt(
            "SELECT lease_holder, lease_until FROM fleet_servers WHERE server = $1 FOR UPDATE SKIP LOCKED",
            &[&server],
        )?;
        let Some(row) = row else {
            return Ok(false);
        };
        let h: Option<String> = row.get(0);
        let until: Option<i64> = row.get(1);
        if h.is_some_and(|h| h != holder) && until.is_some_and(|u| u > now) {
            return Ok(false);
        }
        tx.execute(
            "UPDATE fleet_servers SET lease_holder = $2, lease_until = $3 WHERE server = $1",
            &[&server, &holder, &(now + ttl)],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn release(&mut self, server: &str, holder: &str) -> Result<()> {
        self.db.execute(
            "UPDATE fleet_servers SET lease_holder = NULL, lease_until = NULL WHERE server = $1 AND lease_holder = $2",
            &[&server, &holder],
        )?;
        Ok(())
    }

    fn record_task(&mut self, run: i64, server: &str, r: &TaskResult, now: i64) -> Result<()> {
        let mut tx = self.db.transaction()?;
        let old: i32 = tx
            .query_opt(
                "SELECT failures FROM fleet_tasks WHERE server = $1 AND task = $2 FOR UPDATE",
                &[&server, &r.task],
            )?
            .map(|x| x.get(0))
            .unwrap_or(0);
        let (failures, retry_after) = next_task_state(old as u32, r, now);
        let figures = json_text(&r.figures);
        if matches!(r.outcome, Outcome::Skipped | Outcome::NotDue) {
            tx.execute(
                "INSERT INTO fleet_tasks (server, task, outcome, message, kind) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (server, task) DO UPDATE SET kind = COALESCE(excluded.kind, fleet_tasks.kind)",
                &[&server, &r.task, &r.outcome.as_str(), &r.message, &r.kind],
            )?;
            if r.outcome == Outcome::NotDue {
                tx.commit()?;
                return Ok(());
            }
        } else {
            let success = (r.outcome == Outcome::Ok).then_some(now);
            tx.execute(
                "INSERT INTO fleet_tasks (server, task, last_attempt, last_success, outcome, message, figures, failures, retry_after, needs_human, kind)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (server, task) DO UPDATE SET last_attempt = excluded.last_attempt,
                   last_success = COALESCE(excluded.last_success, fleet_tasks.last_success), outcome = excluded.outcome,
                   message = excluded.message, figures = COALESCE(excluded.figures, fleet_tasks.figures), failures = excluded.failures,
                   retry_after = excluded.retry_after, needs_human = excluded.needs_human,
                   kind = COALESCE(excluded.kind, fleet_tasks.kind)",
                &[&server, &r.task, &now, &success, &r.outcome.as_str(), &r.message, &figures, &(failures as i32), &retry_after, &r.needs_human, &r.kind],
            )?;
        }
        tx.execute(
            "INSERT INTO fleet_task_log (run, server, task, at, outcome, message, figures, needs_human, reboot_pending, kind)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &run,
                &server,
                &r.task,
                &now,
                &r.outcome.as_str(),
                &r.message,
                &figures,
                &r.needs_human,
                &r.reboot_pending,
                &r.kind,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn record_contact(&mut self, run: i64, server: &str, c: &Contact, now: i64) -> Result<()> {
        let mut tx = self.db.transaction()?;
        tx.execute("INSERT INTO fleet_servers (server) VALUES ($1) ON CONFLICT DO NOTHING", &[&server])?;
        tx.execute(
            "UPDATE fleet_servers SET last_contact = $2, contact = $3, message = $4,
               last_ok_contact = CASE WHEN $3 = 'ok' THEN $2 ELSE last_ok_contact END,
               reboot_pending = CASE WHEN $3 = 'ok' THEN $5 ELSE reboot_pending END
             WHERE server = $1",
            &[&server, &now, &c.outcome, &c.message, &c.reboot_pending],
        )?;
        tx.execute(
            "INSERT INTO fleet_contacts (run, server, at, outcome, message, transient, reboot_pending) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (run, server) DO UPDATE SET at = excluded.at, outcome = excluded.outcome, message = excluded.message,
               transient = excluded.transient, reboot_pending = excluded.reboot_pending",
            &[&run, &server, &now, &c.outcome, &c.message, &c.transient, &c.reboot_pending],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn reboot_token(&mut self, server: &str, k: u32, now: i64, ttl: i64) -> Result<bool> {
        let mut tx = self.db.transaction()?;
        tx.execute(
            "INSERT INTO fleet_reboot_tokens (slot) SELECT generate_series(0, $1::INTEGER - 1) ON CONFLICT DO NOTHING",
            &[&(k as i32)],
        )?;
        if tx
            .query_opt("SELECT slot FROM fleet_reboot_tokens WHERE server = $1 AND until > $2", &[&server, &now])?
            .is_some()
        {
            return Ok(true);
        }
        // A slot another controller is taking right now is skipped; no free slot: no token.
        let free = tx.query_opt(
            "SELECT slot FROM fleet_reboot_tokens WHERE slot < $1 AND (server IS NULL OR until <= $2)
             ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&(k as i32), &now],
        )?;
        let Some(free) = free else {
            return Ok(false);
        };
        let slot: i32 = free.get(0);
        tx.execute(
            "UPDATE fleet_reboot_tokens SET server = $2, until = $3 WHERE slot = $1",
            &[&slot, &server, &(now + ttl)],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn release_reboot_token(&mut self, server: &str) -> Result<()> {
        self.db.execute("UPDATE fleet_reboot_tokens SET server = NULL, until = NULL WHERE server = $1", &[&server])?;
        Ok(())
    }

    fn backing_off(&mut self, server: &str, now: i64) -> Result<Vec<(String, i64)>> {
        Ok(self
            .db
            .query(
                "SELECT task, retry_after FROM fleet_tasks WHERE server = $1 AND retry_after IS NOT NULL AND retry_after > $2 ORDER BY task",
                &[&server, &now],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn status(&mut self) -> Result<Vec<ServerStatus>> {
        let mut servers: Vec<ServerStatus> = self
            .db
            .query("SELECT server, last_contact, last_ok_contact, contact, message, reboot_pending FROM fleet_servers ORDER BY server", &[])?
            .iter()
            .map(|r| ServerStatus {
                server: r.get(0),
                last_contact: r.get(1),
                last_ok_contact: r.get(2),
                contact: r.get(3),
                message: r.get(4),
                reboot_pending: r.get(5),
                tasks: Vec::new(),
            })
            .collect();
        for s in &mut servers {
            s.tasks = self
                .db
                .query(
                    "SELECT task, last_attempt, last_success, outcome, message, figures, failures, retry_after, needs_human, kind
                     FROM fleet_tasks WHERE server = $1 ORDER BY task",
                    &[&s.server],
                )?
                .iter()
                .map(|r| TaskStatus {
                    task: r.get(0),
                    last_attempt: r.get(1),
                    last_success: r.get(2),
                    outcome: r.get(3),
                    message: r.get(4),
                    figures: json_value(r.get(5)),
                    failures: r.get::<_, i32>(6) as u32,
                    retry_after: r.get(7),
                    needs_human: r.get(8),
                    kind: r.get(9),
                })
                .collect();
        }
        Ok(servers)
    }

    fn run_entries(&mut self, run: i64) -> Result<Vec<RunEntry>> {
        let contacts = self
            .db
            .query("SELECT server, outcome, message, transient, reboot_pending FROM fleet_contacts WHERE run = $1 ORDER BY server", &[&run])?
            .iter()
            .map(|r| (r.get(0), Contact { outcome: r.get(1), message: r.get(2), transient: r.get(3), reboot_pending: r.get(4) }))
            .collect();
        let tasks = self
            .db
            .query(
                "SELECT server, task, outcome, message, figures, needs_human, reboot_pending, kind FROM fleet_task_log WHERE run = $1 ORDER BY server, at",
                &[&run],
            )?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    TaskResult {
                        task: r.get(1),
                        kind: r.get(7),
                        outcome: Outcome::parse(r.get(2)),
                        message: r.get(3),
                        figures: json_value(r.get(4)),
                        needs_human: r.get(5),
                        reboot_pending: r.get(6),
                    },
                )
            })
            .collect();
        Ok(entries(contacts, tasks))
    }

    fn last_run(&mut self) -> Result<Option<i64>> {
        Ok(self.db.query_one("SELECT max(id) FROM fleet_runs", &[])?.get(0))
    }
}
