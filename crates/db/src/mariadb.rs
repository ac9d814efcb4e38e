//! MariaDB / MySQL through their client tools: `mariadb` (or `mysql`) for SQL and restores,
//! `mariadb-dump` (or `mysqldump`) for dumps. The credentials go to every tool in a 0600
//! option file (`--defaults-extra-file`), never argv; no client library is linked.
//!
//! MariaDB has no `CREATE DATABASE ... TEMPLATE` and no `RENAME DATABASE`, so a snapshot is a
//! server-to-server stream `mariadb-dump --single-transaction --routines --triggers --events
//! app | mariadb app__snap_...` into a new schema — the fastest method that copies everything
//! (views, triggers, routines, events) without access to the server's data directory; see
//! docs/databases.md for the measurements. A revert streams the live schema aside, recreates
//! it and streams the snapshot back.

use crate::error::{Error, ErrorKind, Result};
use crate::naming::{copy_name, parse_copy_name, CopyKind, Snapshot};
use crate::postgres::not_empty;
use crate::process::{self, SecretFile, ToolFailure};
use crate::safety::{Contents, TableState};
use crate::url::DbUrl;
use crate::{quote_ident, Database, RestoreMode, Restored, ServerInfo, Tools};
use caretaker_core::config::{DbKind, Redactor};
use jiff::Timestamp;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;

/// MariaDB database names are at most 64 characters.
const MAX_NAME: usize = 64;

pub struct Mariadb {
    url: DbUrl,
    database: String,
    target: String,
    redactor: Redactor,
    tools: Tools,
    /// `--routines` in dumps (config `database.dump_routines`, default true).
    dump_routines: bool,
}

fn q(name: &str) -> String {
    quote_ident(name, '`')
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A value in a MySQL option file: double-quoted with `\` and `"` escaped.
fn option_value(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Undoes `--batch` escaping (`\t`, `\n`, `\\`, `\0`) of one output field.
fn unescape_field(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('0') => out.push('\0'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Mariadb {
    pub fn new(url: DbUrl, redactor: Redactor) -> Result<Self> {
        let host = url.host.clone().unwrap_or_else(|| "localhost".into());
        let database = url.database.clone().ok_or_else(|| {
            Error::new(ErrorKind::Other, format!("mariadb on {host}"), "the database URL names no database")
                .hint("end the URL with /<database>, e.g. mysql://app:password@127.0.0.1:3306/app")
        })?;
        let port = url.port.unwrap_or(3306);
        let target = if host.starts_with('/') {
            format!("mariadb database {database} on {host}")
        } else {
            format!("mariadb database {database} on {host}:{port}")
        };
        Ok(Mariadb { url, database, target, redactor, tools: Tools::Host, dump_routines: true })
    }

    /// Runs the client tools where `tools` says (the server's container, for a database in a
    /// compose project). There the password reaches them as `MYSQL_PWD` (an option file on
    /// this machine is out of the container's reach).
    pub fn with_tools(mut self, tools: Tools) -> Self {
        if let Tools::Container(c) = &tools {
            self.target = format!("{} (container {})", self.target, &c[..c.len().min(12)]);
        }
        self.tools = tools;
        self
    }

    /// Leaves stored procedures and functions out of dumps (and so out of backups and
    /// snapshots) when `false`: for a user that cannot be granted the right to read routines
    /// it does not own (docs/databases.md, "MariaDB privileges").
    pub fn with_dump_routines(mut self, dump_routines: bool) -> Self {
        self.dump_routines = dump_routines;
        self
    }

    /// A client tool (`names[0]`, or the first found on the host) connected as the URL says:
    /// on the host through the option file (`--defaults-extra-file` must come first), in a
    /// container through arguments and `MYSQL_PWD`.
    fn tool(&self, names: &[&str], opts: &SecretFile) -> Result<Command> {
        match &self.tools {
            Tools::Host => {
                let mut c = Command::new(self.program(names)?);
                c.arg(format!("--defaults-extra-file={}", opts.path().display()));
                c.env_remove("MYSQL_PWD").env_remove("MYSQL_HOST").env_remove("MYSQL_TCP_PORT");
                Ok(c)
            }
            Tools::Container(ctr) => {
                let mut c = process::in_container(ctr, names[0], &["MYSQL_PWD"]);
                if let Some(u) = &self.url.user {
                    c.arg(format!("--user={u}"));
                }
                if let Some(h) = &self.url.host {
                    c.arg(format!("--host={h}")).arg(format!("--port={}", self.url.port.unwrap_or(3306)));
                    c.arg("--protocol=tcp");
                }
                c.arg("--default-character-set=utf8mb4");
                c.env_remove("MYSQL_PWD");
                if let Some(p) = &self.url.password {
                    c.env("MYSQL_PWD", p);
                }
                Ok(c)
            }
        }
    }

    /// The option file every tool reads first: who we are and where the server is.
    fn option_file(&self) -> Result<SecretFile> {
        let mut s = String::from("[client]\n");
        if let Some(u) = &self.url.user {
            s.push_str(&format!("user={}\n", option_value(u)));
        }
        if let Some(p) = &self.url.password {
            s.push_str(&format!("password={}\n", option_value(p)));
        }
        match self.url.host.as_deref() {
            Some(h) if h.starts_with('/') => s.push_str(&format!("socket={}\nprotocol=socket\n", option_value(h))),
            Some(h) => {
                s.push_str(&format!("host={}\nport={}\nprotocol=tcp\n", option_value(h), self.url.port.unwrap_or(3306)))
            }
            None => {}
        }
        s.push_str("default-character-set=utf8mb4\n");
        SecretFile::new(&s).map_err(|e| Error::io(&self.target, "writing the client option file", e))
    }

    fn program(&self, names: &[&str]) -> Result<PathBuf> {
        process::find_program(names).ok_or_else(|| {
            Error::new(ErrorKind::ToolMissing, &self.target, format!("{} is not installed", names[0]))
                .hint("install the MariaDB client tools (Debian: apt-get install mariadb-client)")
        })
    }

    /// The server's version and the connected account as a GRANT names it (`'app'@'%'`).
    fn version_and_user(&self) -> Result<(String, String)> {
        let who = self.sql(Some(&self.database), "SELECT VERSION(), CURRENT_USER()")?;
        let (version, current) = match who.first().map(|r| r.as_slice()) {
            Some([v, u, ..]) => (v.clone(), u.clone()),
            _ => (String::new(), String::new()),
        };
        let user = match current.rsplit_once('@') {
            Some((u, h)) => format!("{}@{}", literal(u), literal(h)),
            None => literal(&current),
        };
        Ok((version, user))
    }

    /// What to do about routines the dump cannot read, for this server and user.
    fn routine_remedy(&self) -> String {
        match self.version_and_user() {
            Ok((version, user)) => routine_remedy(&version, &user, &self.database),
            Err(_) => routine_remedy("", "<the app's user>", &self.database),
        }
    }

    /// `mariadb` (or `mysql`) with the option file; `--defaults-extra-file` must come first.
    fn client(&self, opts: &SecretFile) -> Result<Command> {
        self.tool(&["mariadb", "mysql"], opts)
    }

    fn dump_command(&self, opts: &SecretFile, database: &str) -> Result<Command> {
        let mut c = self.tool(&["mariadb-dump", "mysqldump"], opts)?;
        // A consistent snapshot of InnoDB tables without locking the app out, with everything
        // that is not a table; no CREATE DATABASE / USE, so it restores under any name.
        c.arg(if self.dump_routines { "--routines" } else { "--skip-routines" });
        c.args([
            "--single-transaction",
            "--triggers",
            "--events",
            "--hex-blob",
            "--no-tablespaces",
            "--skip-lock-tables",
        ]);
        c.arg("--").arg(database);
        Ok(c)
    }

    /// Runs SQL (on `database`, if given) and returns the rows of its output.
    fn sql(&self, database: Option<&str>, sql: &str) -> Result<Vec<Vec<String>>> {
        let opts = self.option_file()?;
        let mut c = self.client(&opts)?;
        c.args(["--batch", "--skip-column-names"]);
        if let Some(d) = database {
            c.arg(format!("--database={d}"));
        }
        let out = process::capture(c, Some(sql.as_bytes()), &self.redactor).map_err(|f| self.tool_error(f))?;
        Ok(out.lines().filter(|l| !l.is_empty()).map(|l| l.split('\t').map(unescape_field).collect()).collect())
    }

    fn tool_error(&self, f: ToolFailure) -> Error {
        if f.status.is_none() && f.io_error.as_ref().is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            return Error::new(ErrorKind::ToolMissing, &self.target, f.describe())
                .hint("install the MariaDB client tools (Debian: apt-get install mariadb-client)");
        }
        let text = f.describe();
        let (kind, hint) = classify_client_error(&text);
        let e = Error::new(kind, &self.target, text);
        match hint {
            Some(h) => e.hint(h),
            None => e,
        }
    }

    fn schema_exists(&self, name: &str) -> Result<bool> {
        let rows = self
            .sql(None, &format!("SELECT 1 FROM information_schema.schemata WHERE schema_name = {}", literal(name)))?;
        Ok(!rows.is_empty())
    }

    /// `CREATE DATABASE name` with the character set and collation of `like`.
    fn create_schema_like(&self, name: &str, like: &str) -> Result<()> {
        let rows = self.sql(
            None,
            &format!(
                "SELECT default_character_set_name, default_collation_name FROM information_schema.schemata \
                 WHERE schema_name = {}",
                literal(like)
            ),
        )?;
        let mut sql = format!("CREATE DATABASE {}", q(name));
        if let Some(r) = rows.first() {
            if r.len() == 2 {
                sql.push_str(&format!(" CHARACTER SET {} COLLATE {}", r[0], r[1]));
            }
        }
        self.sql(None, &sql).map(|_| ())
    }

    /// Streams schema `from` into the (existing, empty) schema `to`, inside the server.
    fn copy_schema(&self, from: &str, to: &str) -> Result<()> {
        let opts = self.option_file()?;
        let dump = self.dump_command(&opts, from)?;
        let mut load = self.client(&opts)?;
        load.args(["--binary-mode", &format!("--database={to}")]);
        process::pipe(dump, load, &self.redactor).map_err(|f| self.tool_error(f))
    }

    fn own_copy(&self, snapshot: &Snapshot) -> Result<()> {
        if parse_copy_name(&self.database, &snapshot.name).is_none() {
            return Err(Error::new(
                ErrorKind::Other,
                &self.target,
                format!("`{}` is not a snapshot of database {}; refusing to touch it", snapshot.name, self.database),
            ));
        }
        Ok(())
    }

    fn terminate_on(&self, database: &str) -> Result<u64> {
        let rows = self.sql(
            None,
            &format!(
                "SELECT id FROM information_schema.processlist WHERE db = {} AND id <> CONNECTION_ID()",
                literal(database)
            ),
        )?;
        let mut n = 0;
        for r in rows {
            // A session may end by itself between the two statements: ignore "unknown thread".
            if let Some(id) = r.first().and_then(|id| id.parse::<u64>().ok()) {
                if self.sql(None, &format!("KILL CONNECTION {id}")).is_ok() {
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

/// The server as `SELECT VERSION()` names it: MariaDB (`11.4.3-MariaDB-1`) or MySQL (`8.0.36`),
/// with its major and minor version.
fn server_flavour(version: &str) -> (bool, u32, u32) {
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    let mut nums = version.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    // Old MariaDB packages report `5.5.5-10.x.y-MariaDB`: the real version follows.
    if mariadb && major == 5 && minor == 5 && version.starts_with("5.5.5-") {
        return server_flavour(&version["5.5.5-".len()..]);
    }
    (mariadb, major, minor)
}

/// The grant that lets `user` (`'app'@'%'`) read the definitions of routines it does not own,
/// which `mariadb-dump --routines` needs: it differs between servers and versions.
pub fn routine_grant(version: &str, user: &str, database: &str) -> String {
    let (mariadb, major, minor) = server_flavour(version);
    let patch = version.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok()).nth(2).unwrap_or(0);
    if mariadb {
        if (major, minor) >= (11, 3) {
            format!("GRANT SHOW CREATE ROUTINE ON {}.* TO {user}; (MariaDB 11.3 and later)", q(database))
        } else {
            format!("GRANT SELECT ON mysql.proc TO {user}; (MariaDB before 11.3)")
        }
    } else if (major, minor, patch) >= (8, 0, 20) {
        format!("GRANT SHOW_ROUTINE ON *.* TO {user}; (MySQL 8.0.20 and later)")
    } else {
        format!("GRANT SELECT ON *.* TO {user}; (MySQL before 8.0.20: a global SELECT)")
    }
}

/// The grant to ask for, or the config switch that leaves routines out (with its cost).
pub fn routine_remedy(version: &str, user: &str, database: &str) -> String {
    format!(
        "ask the database administrator for: {} — or set `database.dump_routines: false` to back up without \
         stored procedures and functions (they are then NOT in the backup; recreate them by hand after a restore)",
        routine_grant(version, user, database)
    )
}

/// The kind of a `mariadb` client error from its message (`ERROR 1045 (28000): Access denied`).
pub fn classify_client_error(text: &str) -> (ErrorKind, Option<&'static str>) {
    let code = text
        .split("ERROR ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse::<u32>().ok());
    match code {
        Some(1045) | Some(1044) | Some(1698) => {
            (ErrorKind::AuthFailed, Some("check the user and password in the database URL"))
        }
        Some(1049) => (ErrorKind::NotFound, Some("create the database, or fix its name in the database URL")),
        Some(2002) | Some(2003) | Some(2005) | Some(2013) => {
            (ErrorKind::Unreachable, Some("is MariaDB running and listening where the database URL says?"))
        }
        _ if text.contains("Access denied") => {
            (ErrorKind::AuthFailed, Some("check the user and password in the database URL"))
        }
        _ if text.contains("Unknown database") => {
            (ErrorKind::NotFound, Some("create the database, or fix its name in the database URL"))
        }
        _ => (ErrorKind::Other, None),
    }
}

impl Database for Mariadb {
    fn kind(&self) -> DbKind {
        DbKind::Mariadb
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn check(&self) -> Result<ServerInfo> {
        let rows = self.sql(Some(&self.database), "SELECT VERSION()")?;
        let version = rows.first().and_then(|r| r.first()).cloned().unwrap_or_default();
        let mut tools = Vec::new();
        if let Tools::Container(c) = &self.tools {
            tools.push(format!("mariadb-dump, mariadb (in container {})", &c[..c.len().min(12)]));
            return Ok(ServerInfo { version, tools });
        }
        for names in [&["mariadb-dump", "mysqldump"][..], &["mariadb", "mysql"][..]] {
            let p = self.program(names)?;
            let v = Command::new(&p).arg("--version").output().ok();
            let v = v.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
            tools.push(format!("{} ({v})", p.display()));
        }
        Ok(ServerInfo { version, tools })
    }

    fn check_dump_privileges(&self) -> Result<Vec<String>> {
        let db = &self.database;
        let (version, user) = self.version_and_user()?;
        let routines = self.sql(
            None,
            &format!(
                "SELECT ROUTINE_TYPE, ROUTINE_NAME, DEFINER FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA = {} ORDER BY ROUTINE_NAME",
                literal(db)
            ),
        )?;
        let mut unreadable = Vec::new();
        let mut warnings = Vec::new();
        if !self.dump_routines {
            if !routines.is_empty() {
                warnings.push(format!(
                    "{} stored routine(s) are NOT backed up (database.dump_routines: false): {}",
                    routines.len(),
                    routines.iter().map(|r| r.get(1).cloned().unwrap_or_default()).collect::<Vec<_>>().join(", ")
                ));
            }
        } else {
            for r in &routines {
                let [kind, name, definer, ..] = r.as_slice() else { continue };
                // What the dump runs: its third column is NULL for a user who may run the
                // routine but not read its body (mariadb-dump then fails with "has
                // insufficient privileges to SHOW CREATE PROCEDURE").
                let sql = format!("SHOW CREATE {kind} {}.{}", q(db), q(name));
                let readable = match self.sql(Some(db), &sql) {
                    Ok(rows) => rows.first().and_then(|row| row.get(2)).is_some_and(|body| body != "NULL"),
                    Err(_) => false,
                };
                if !readable {
                    unreadable.push(format!("{} {} (DEFINER={definer})", kind.to_lowercase(), q(name)));
                }
            }
        }
        let mut problems = Vec::new();
        if !unreadable.is_empty() {
            problems.push(format!(
                "the dump cannot read {} owned by another user: {}",
                if unreadable.len() == 1 { "a routine" } else { "routines" },
                unreadable.join(", ")
            ));
        }
        // Views and events: `SHOW CREATE VIEW` needs SHOW VIEW, `SHOW EVENTS` needs EVENT.
        let views = self.sql(
            None,
            &format!("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {}", literal(db)),
        )?;
        for v in views.iter().filter_map(|r| r.first()) {
            if let Err(e) = self.sql(Some(db), &format!("SHOW CREATE VIEW {}.{}", q(db), q(v))) {
                problems.push(format!("the dump cannot read view {}: {}", q(v), e.message()));
            }
        }
        if let Err(e) = self.sql(Some(db), &format!("SHOW EVENTS FROM {}", q(db))) {
            problems.push(format!("the dump cannot list events: {}", e.message()));
        }
        if problems.is_empty() {
            return Ok(warnings);
        }
        let mut hint = Vec::new();
        if !unreadable.is_empty() {
            hint.push(routine_remedy(&version, &user, db));
        }
        if problems.len() > usize::from(!unreadable.is_empty()) {
            hint.push(format!("views and events need: GRANT SHOW VIEW, EVENT ON {}.* TO {user};", q(db)));
        }
        Err(Error::new(ErrorKind::AuthFailed, &self.target, problems.join("; ")).hint(hint.join("; ")))
    }

    fn size(&self) -> Result<u64> {
        if !self.schema_exists(&self.database)? {
            return Err(Error::new(ErrorKind::NotFound, &self.target, "the database does not exist"));
        }
        let rows = self.sql(
            None,
            &format!(
                "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables \
                 WHERE table_schema = {}",
                literal(&self.database)
            ),
        )?;
        Ok(rows.first().and_then(|r| r.first()).and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    fn contents(&self) -> Result<Contents> {
        if !self.schema_exists(&self.database)? {
            return Ok(Contents { exists: false, tables: vec![] });
        }
        let tables = self.sql(
            None,
            &format!(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = {} \
                 AND table_type = 'BASE TABLE' ORDER BY table_name",
                literal(&self.database)
            ),
        )?;
        if tables.is_empty() {
            return Ok(Contents { exists: true, tables: vec![] });
        }
        let probes: Vec<String> = tables
            .iter()
            .map(|r| format!("SELECT EXISTS (SELECT 1 FROM {}.{})", q(&self.database), q(&r[0])))
            .collect();
        let has = self.sql(None, &(probes.join(";\n") + ";"))?;
        let tables = tables
            .into_iter()
            .zip(has)
            .map(|(t, h)| TableState { name: t[0].clone(), has_rows: h.first().is_some_and(|v| v == "1") })
            .collect();
        Ok(Contents { exists: true, tables })
    }

    fn count_rows_up_to(&self, table: &str, limit: u64) -> Result<Option<u64>> {
        let rows = self.sql(
            None,
            &format!(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
                literal(&self.database),
                literal(table)
            ),
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let rows = self.sql(
            None,
            &format!("SELECT COUNT(*) FROM (SELECT 1 FROM {}.{} LIMIT {limit}) x", q(&self.database), q(table)),
        )?;
        Ok(rows.first().and_then(|r| r.first()).and_then(|v| v.parse().ok()))
    }

    fn dump(&self, out: &mut dyn Write) -> Result<u64> {
        if !self.schema_exists(&self.database)? {
            return Err(Error::new(ErrorKind::NotFound, &self.target, "the database does not exist")
                .hint("create the database, or fix its name in the database URL"));
        }
        let opts = self.option_file()?;
        let cmd = self.dump_command(&opts, &self.database)?;
        process::stream_out(cmd, out, &self.redactor).map_err(|f| {
            let e = self.tool_error(f);
            if !e.message().contains("insufficient privileges to SHOW CREATE") {
                return e;
            }
            // A routine owned by another user (DEFINER=root): say which grant to ask for, in
            // the message too, since a backup quotes the dump's message but not its hint.
            let remedy = self.routine_remedy();
            Error::new(ErrorKind::AuthFailed, &self.target, format!("{} — {remedy}", e.message())).hint(remedy)
        })
    }

    fn restore(&self, input: &mut dyn Read, mode: RestoreMode) -> Result<Restored> {
        let mut kept_aside = None;
        let contents = self.contents()?;
        if !contents.exists {
            self.sql(None, &format!("CREATE DATABASE {}", q(&self.database)))?;
        } else if !contents.is_blank() {
            if mode == RestoreMode::IntoEmpty {
                return Err(not_empty(&self.target, &contents));
            }
            let aside = copy_name(&self.database, CopyKind::Aside, Timestamp::now(), None, MAX_NAME)
                .map_err(|m| Error::new(ErrorKind::Other, &self.target, m))?;
            self.terminate_on(&self.database)?;
            self.create_schema_like(&aside, &self.database)?;
            self.copy_schema(&self.database, &aside)?;
            self.sql(None, &format!("DROP DATABASE {}", q(&self.database)))?;
            self.create_schema_like(&self.database, &aside)?;
            kept_aside = Some(aside);
        }
        let opts = self.option_file()?;
        let mut cmd = self.client(&opts)?;
        cmd.args(["--binary-mode", &format!("--database={}", self.database)]);
        let bytes = process::stream_in(cmd, input, &self.redactor).map_err(|f| self.tool_error(f))?;
        Ok(Restored { bytes, kept_aside })
    }

    fn terminate_connections(&self) -> Result<u64> {
        self.terminate_on(&self.database)
    }

    fn copy_as(&self, kind: CopyKind, label: Option<&str>) -> Result<Snapshot> {
        if !self.schema_exists(&self.database)? {
            return Err(Error::new(
                ErrorKind::NotFound,
                &self.target,
                "the database does not exist; nothing to snapshot",
            ));
        }
        let name = copy_name(&self.database, kind, Timestamp::now(), label, MAX_NAME)
            .map_err(|m| Error::new(ErrorKind::Other, &self.target, m))?;
        self.create_schema_like(&name, &self.database)?;
        if let Err(e) = self.copy_schema(&self.database, &name) {
            // A half-copied snapshot must not be mistaken for a good one later.
            let _ = self.sql(None, &format!("DROP DATABASE IF EXISTS {}", q(&name)));
            return Err(e);
        }
        Ok(parse_copy_name(&self.database, &name).expect("a name made by copy_name parses"))
    }

    fn revert(&self, snapshot: &Snapshot) -> Result<String> {
        self.own_copy(snapshot)?;
        if !self.schema_exists(&snapshot.name)? {
            return Err(Error::new(
                ErrorKind::NotFound,
                &self.target,
                format!("snapshot {} does not exist", snapshot.name),
            )
            .hint("`caretaker db snapshots` lists the snapshots"));
        }
        let aside = copy_name(&self.database, CopyKind::Aside, Timestamp::now(), None, MAX_NAME)
            .map_err(|m| Error::new(ErrorKind::Other, &self.target, m))?;
        self.terminate_on(&self.database)?;
        // Keep the current contents aside first: nothing is lost if a later step fails.
        if self.schema_exists(&self.database)? {
            self.create_schema_like(&aside, &self.database)?;
            self.copy_schema(&self.database, &aside)?;
            self.sql(None, &format!("DROP DATABASE {}", q(&self.database)))?;
        } else {
            self.create_schema_like(&aside, &snapshot.name)?;
        }
        self.create_schema_like(&self.database, &snapshot.name)?;
        self.copy_schema(&snapshot.name, &self.database).map_err(|e| {
            let msg = format!("{} (the previous contents are intact in database {aside})", e.message());
            Error::new(e.kind(), &self.target, msg)
        })?;
        // The snapshot's contents are live now; like PostgreSQL's rename, it is consumed.
        self.sql(None, &format!("DROP DATABASE {}", q(&snapshot.name)))?;
        Ok(aside)
    }

    fn list_snapshots(&self) -> Result<Vec<Snapshot>> {
        let rows = self.sql(None, "SELECT schema_name FROM information_schema.schemata")?;
        let mut copies: Vec<Snapshot> =
            rows.iter().filter_map(|r| r.first().and_then(|n| parse_copy_name(&self.database, n))).collect();
        copies.sort_by(|a, b| a.taken_at.cmp(&b.taken_at).then_with(|| a.name.cmp(&b.name)));
        Ok(copies)
    }

    fn drop_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        self.own_copy(snapshot)?;
        if !self.schema_exists(&snapshot.name)? {
            return Err(Error::new(
                ErrorKind::NotFound,
                &self.target,
                format!("snapshot {} does not exist", snapshot.name),
            ));
        }
        self.terminate_on(&snapshot.name)?;
        self.sql(None, &format!("DROP DATABASE {}", q(&snapshot.name))).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_grant_for_routines_per_server_and_version() {
        let g = |v: &str| routine_grant(v, "'app'@'%'", "shop");
        assert_eq!(
            g("11.4.3-MariaDB-ubu2404"),
            "GRANT SHOW CREATE ROUTINE ON `shop`.* TO 'app'@'%'; (MariaDB 11.3 and later)"
        );
        assert_eq!(g("11.3.2-MariaDB"), "GRANT SHOW CREATE ROUTINE ON `shop`.* TO 'app'@'%'; (MariaDB 11.3 and later)");
        assert_eq!(g("10.11.6-MariaDB-0+deb12u1"), "GRANT SELECT ON mysql.proc TO 'app'@'%'; (MariaDB before 11.3)");
        assert_eq!(g("5.5.5-10.6.12-MariaDB"), "GRANT SELECT ON mysql.proc TO 'app'@'%'; (MariaDB before 11.3)");
        assert_eq!(g("8.0.36"), "GRANT SHOW_ROUTINE ON *.* TO 'app'@'%'; (MySQL 8.0.20 and later)");
        assert_eq!(g("8.4.0"), "GRANT SHOW_ROUTINE ON *.* TO 'app'@'%'; (MySQL 8.0.20 and later)");
        assert_eq!(g("8.0.19"), "GRANT SELECT ON *.* TO 'app'@'%'; (MySQL before 8.0.20: a global SELECT)");
        assert_eq!(g("5.7.44-log"), "GRANT SELECT ON *.* TO 'app'@'%'; (MySQL before 8.0.20: a global SELECT)");
    }

    #[test]
    fn classifies_client_errors() {
        let cases = [
            (
                "ERROR 1045 (28000): Access denied for user 'root'@'127.0.0.1' (using password: YES)",
                ErrorKind::AuthFailed,
            ),
            ("mariadb failed (exit status: 1): ERROR 1049 (42000): Unknown database 'x'", ErrorKind::NotFound),
            ("ERROR 2002 (HY000): Can't connect to local server through socket", ErrorKind::Unreachable),
            ("mariadb-dump: Got error: 1045: \"Access denied for user\"", ErrorKind::AuthFailed),
            ("ERROR 1064 (42000): You have an error in your SQL syntax", ErrorKind::Other),
        ];
        for (text, kind) in cases {
            assert_eq!(classify_client_error(text).0, kind, "{text}");
        }
    }

    #[test]
    fn escapes_option_values_and_literals() {
        assert_eq!(option_value(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(literal(r"it's\"), r"'it\'s\\'");
        assert_eq!(unescape_field(r"a\tb\\c\n"), "a\tb\\c\n");
    }
}
