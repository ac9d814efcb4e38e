//! PostgreSQL: SQL through the `postgres` crate, dump and restore through `pg_dump -Fc` and
//! `pg_restore` as child processes (the password goes in their environment, never argv).
//!
//! Snapshots are `CREATE DATABASE snap TEMPLATE db` — `STRATEGY FILE_COPY` on PostgreSQL 15+
//! (a file-level copy after one checkpoint, much faster than the default WAL_LOG for large
//! databases) — after ending the other sessions, which a template copy requires. A revert
//! renames the live database aside and the snapshot into its place in one transaction.

use crate::error::{Error, ErrorKind, Result};
use crate::naming::{copy_name, parse_copy_name, CopyKind, Snapshot};
use crate::process::{self, ToolFailure};
use crate::safety::{Contents, TableState};
use crate::url::DbUrl;
use crate::{quote_ident, Database, RestoreMode, Restored, ServerInfo, Tools};
use caretaker_core::config::{DbKind, Redactor};
use jiff::Timestamp;
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// PostgreSQL identifiers are at most 63 bytes.
const MAX_NAME: usize = 63;

pub struct Postgres {
    url: DbUrl,
    database: String,
    user: String,
    host: String,
    port: u16,
    target: String,
    redactor: Redactor,
    /// Administrator credentials (`database.admin_url`) for creating the app's role and
    /// database and for copies; `None`: the app's own role does everything.
    admin_url: Option<DbUrl>,
    tools: Tools,
}

fn q(name: &str) -> String {
    quote_ident(name, '"')
}

impl Postgres {
    pub fn new(url: DbUrl, redactor: Redactor) -> Result<Self> {
        let user = url.user.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "postgres".into());
        let database = url.database.clone().unwrap_or_else(|| user.clone());
        let host =
            url.host.clone().or_else(|| url.param("host").map(str::to_string)).unwrap_or_else(|| "localhost".into());
        let port = url.port.or_else(|| url.param("port").and_then(|p| p.parse().ok())).unwrap_or(5432);
        let target = format!("postgres database {database} on {host}:{port}");
        match url.param("sslmode") {
            None | Some("disable" | "allow" | "prefer") => {}
            Some(mode) => {
                return Err(Error::new(
                    ErrorKind::Other,
                    target,
                    format!("sslmode={mode} needs TLS, which the PostgreSQL adapter does not support yet"),
                )
                .hint("connect over a Unix socket or the loopback interface with sslmode=disable (or prefer)"))
            }
        }
        Ok(Postgres { url, database, user, host, port, target, redactor, admin_url: None, tools: Tools::Host })
    }

    /// Runs `pg_dump`/`pg_restore` where `tools` says (the server's container, for a database
    /// in a compose project).
    pub fn with_tools(mut self, tools: Tools) -> Self {
        if let Tools::Container(c) = &tools {
            self.target = format!("{} (container {})", self.target, &c[..c.len().min(12)]);
        }
        self.tools = tools;
        self
    }

    /// Uses an administrator's credentials for CREATE ROLE / CREATE DATABASE and copies.
    pub fn with_admin(mut self, admin_url: Option<DbUrl>) -> Self {
        self.admin_url = admin_url;
        self
    }

    /// ` OWNER "app"` when databases are created by an administrator, so the app's role owns
    /// its database (and snapshots of it) exactly as if it had created them itself.
    fn owner_clause(&self) -> String {
        if self.admin_url.is_some() {
            format!(" OWNER {}", q(&self.user))
        } else {
            String::new()
        }
    }

    /// On a fresh server the app's role may not exist yet: create it (LOGIN, with the password
    /// from the app's URL). Only with `admin_url`; without it the role must exist.
    fn ensure_role(&self, admin: &mut Client) -> Result<()> {
        if self.admin_url.is_none() {
            return Ok(());
        }
        let exists = admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&self.user])
            .map_err(|e| self.sql_error(e, "looking up the app's role"))?
            .is_some();
        if exists {
            return Ok(());
        }
        let mut sql = format!("CREATE ROLE {} LOGIN", q(&self.user));
        if let Some(pw) = &self.url.password {
            sql.push_str(&format!(" PASSWORD {}", literal(pw)));
        }
        admin.batch_execute(&sql).map_err(|e| self.sql_error(e, &format!("creating role {}", self.user)))
    }

    /// The maintenance database used for CREATE/ALTER/DROP DATABASE (never the app's own).
    fn admin_database(&self) -> &'static str {
        if self.database == "postgres" {
            "template1"
        } else {
            "postgres"
        }
    }

    fn connect_to(&self, dbname: &str) -> Result<Client> {
        self.connect_as(&self.url, &self.user, self.port, &self.host, dbname)
    }

    fn connect_as(&self, url: &DbUrl, user: &str, port: u16, host: &str, dbname: &str) -> Result<Client> {
        let mut c = postgres::Config::new();
        c.user(user).dbname(dbname).port(port).connect_timeout(Duration::from_secs(10)).application_name("caretaker");
        if host.starts_with('/') {
            c.host_path(host);
        } else {
            c.host(host);
        }
        if let Some(pw) = &url.password {
            c.password(pw);
        }
        c.connect(NoTls).map_err(|e| self.sql_error(e, &format!("connecting to database {dbname} as {user}")))
    }

    /// A connection to the maintenance database, as the administrator when one is configured.
    fn admin(&self) -> Result<Client> {
        match &self.admin_url {
            Some(a) => {
                let user = a.user.clone().unwrap_or_else(|| "postgres".into());
                let host = a.host.clone().unwrap_or_else(|| self.host.clone());
                self.connect_as(a, &user, a.port.unwrap_or(self.port), &host, self.admin_database())
            }
            None => self.connect_to(self.admin_database()),
        }
    }

    /// A `postgres` error in words: authentication, missing database, unreachable server.
    fn sql_error(&self, e: postgres::Error, what: &str) -> Error {
        if let Some(db) = e.as_db_error() {
            let msg = self.redactor.redact(db.message());
            let code = db.code();
            if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
                return Error::new(ErrorKind::AuthFailed, &self.target, format!("{what}: {msg}"))
                    .hint(self.auth_hint());
            }
            if *code == SqlState::INVALID_CATALOG_NAME || *code == SqlState::UNDEFINED_DATABASE {
                return Error::new(ErrorKind::NotFound, &self.target, format!("{what}: {msg}"))
                    .hint("create the database, or fix its name in the database URL");
            }
            if *code == SqlState::INSUFFICIENT_PRIVILEGE {
                return Error::new(ErrorKind::Other, &self.target, format!("{what}: {msg}"))
                    .hint("the URL's user needs to own the database and have CREATEDB for restores and snapshots");
            }
            return Error::new(ErrorKind::Other, &self.target, format!("{what}: {msg}"));
        }
        let text = self.redactor.redact(&e.to_string());
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
        while let Some(s) = source {
            if s.is::<std::io::Error>() {
                return Error::new(ErrorKind::Unreachable, &self.target, format!("{what}: {text}"))
                    .hint(format!("is PostgreSQL running and listening on {}:{}?", self.host, self.port));
            }
            source = s.source();
        }
        if text.contains("timed out") || text.contains("error connecting") {
            return Error::new(ErrorKind::Unreachable, &self.target, format!("{what}: {text}"))
                .hint(format!("is PostgreSQL running and listening on {}:{}?", self.host, self.port));
        }
        Error::new(ErrorKind::Other, &self.target, format!("{what}: {text}"))
    }

    /// What to do when the server refuses the app's role. PostgreSQL reports a role that does
    /// not exist the same way as a wrong password, so both are named.
    fn auth_hint(&self) -> String {
        if self.admin_url.is_some() {
            "check the user and password in the database URL (and in database.admin_url)".into()
        } else {
            format!(
                "check the user and password in the database URL; on a fresh server the role {u} may not exist yet: \
                 create it (CREATE ROLE \"{u}\" LOGIN CREATEDB PASSWORD '...'), or set database.admin_url so that \
                 caretaker creates the role and the database",
                u = self.user
            )
        }
    }

    fn server_version_num(&self, c: &mut Client) -> Result<u32> {
        let row = c
            .query_one("SELECT current_setting('server_version_num')", &[])
            .map_err(|e| self.sql_error(e, "reading the server version"))?;
        let v: String = row.get(0);
        Ok(v.parse().unwrap_or(0))
    }

    fn database_exists(&self, c: &mut Client, name: &str) -> Result<bool> {
        c.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .map(|r| r.is_some())
            .map_err(|e| self.sql_error(e, "listing databases"))
    }

    /// Runs `f` after ending the sessions on `databases`, again while another session slips
    /// in between (`55006 object in use`), for up to ~5 s.
    fn with_sessions_ended<T>(
        &self,
        admin: &mut Client,
        databases: &[&str],
        what: &str,
        mut f: impl FnMut(&mut Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            self.terminate_on(admin, databases)?;
            match f(admin) {
                Ok(v) => return Ok(v),
                Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && attempt < 50 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(self.sql_error(e, what));
                }
            }
        }
    }

    fn terminate_on(&self, admin: &mut Client, databases: &[&str]) -> Result<u64> {
        let names: Vec<String> = databases.iter().map(|s| s.to_string()).collect();
        let row = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
                &[&names],
            )
            .map_err(|e| self.sql_error(e, "ending other sessions"))?;
        let n: i64 = row.get(0);
        Ok(n as u64)
    }

    /// The `pg_dump` / `pg_restore` to use for a server of `server_major`.
    fn tool(&self, name: &str, server_major: u32) -> Result<PgTool> {
        // The server's own container has the tools of its version.
        if let Tools::Container(_) = self.tools {
            return Ok(PgTool { major: server_major, path: PathBuf::from(name) });
        }
        let candidates = tool_candidates(name);
        choose_tool(server_major, &candidates).map_err(|newest| match newest {
            None => Error::new(ErrorKind::ToolMissing, &self.target, format!("{name} is not installed"))
                .hint(format!("install the PostgreSQL client tools (Debian: apt-get install postgresql-client-{server_major}, or postgresql-client)")),
            Some(found) => Error::new(
                ErrorKind::VersionMismatch,
                &self.target,
                format!("{name} {found} is older than the server (PostgreSQL {server_major}) and cannot dump or restore it"),
            )
            .hint(format!(
                "install postgresql-client-{server_major} (from the PostgreSQL apt repository if Debian's is older)"
            )),
        })
    }

    /// A command for a client tool connected to `dbname`, with the password in its
    /// environment and nothing of the caller's PG* environment leaking in.
    fn tool_command(&self, tool: &Path, dbname: &str) -> Command {
        let mut c = match &self.tools {
            Tools::Host => Command::new(tool),
            Tools::Container(ctr) => process::in_container(
                ctr,
                &tool.to_string_lossy(),
                &["PGHOST", "PGPORT", "PGUSER", "PGCONNECT_TIMEOUT", "PGAPPNAME", "PGSSLMODE", "PGPASSWORD"],
            ),
        };
        for v in [
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGPASSFILE",
            "PGPASSWORD",
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGOPTIONS",
            "PGSSLMODE",
            "PGTARGETSESSIONATTRS",
        ] {
            c.env_remove(v);
        }
        c.env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGAPPNAME", "caretaker")
            .env("PGSSLMODE", self.url.param("sslmode").unwrap_or("prefer"));
        if let Some(pw) = &self.url.password {
            c.env("PGPASSWORD", pw);
        }
        // A conninfo string naming only the database: a plain name containing `=` would be
        // taken for a conninfo itself.
        c.arg("--no-password").arg(format!("--dbname=dbname={}", conninfo_quote(dbname)));
        c
    }

    fn tool_error(&self, f: ToolFailure) -> Error {
        if f.status.is_none() && f.io_error.as_ref().is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            return Error::new(ErrorKind::ToolMissing, &self.target, f.describe())
                .hint("install the PostgreSQL client tools (Debian: postgresql-client)");
        }
        let text = f.describe();
        if text.contains("password authentication failed")
            || text.contains("no password supplied")
            || (text.contains("role") && text.contains("does not exist"))
        {
            return Error::new(ErrorKind::AuthFailed, &self.target, text).hint(self.auth_hint());
        }
        let (kind, hint) = if text.contains("does not exist") && text.contains("database") {
            (ErrorKind::NotFound, "create the database, or fix its name in the database URL")
        } else if text.contains("server version mismatch") || text.contains("unsupported version") {
            (ErrorKind::VersionMismatch, "install the PostgreSQL client tools matching the server's major version")
        } else if text.contains("Connection refused")
            || text.contains("could not connect")
            || text.contains("timeout expired")
        {
            (ErrorKind::Unreachable, "is PostgreSQL running and listening there?")
        } else {
            (ErrorKind::Other, "see the tool's message above")
        };
        Error::new(kind, &self.target, text).hint(hint)
    }

    fn create_database(&self, admin: &mut Client, name: &str, like: Option<(String, String, String)>) -> Result<()> {
        let mut sql = format!("CREATE DATABASE {} TEMPLATE template0{}", q(name), self.owner_clause());
        if let Some((enc, collate, ctype)) = like {
            sql.push_str(&format!(
                " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
                literal(&enc),
                literal(&collate),
                literal(&ctype)
            ));
        }
        admin.batch_execute(&sql).map_err(|e| self.sql_error(e, &format!("creating database {name}")))
    }

    /// `pg_restore` of the dump on `input` into database `dbname`.
    fn pg_restore(&self, tool: &PgTool, dbname: &str, input: &mut dyn Read) -> Result<u64> {
        let mut cmd = self.tool_command(&tool.path, dbname);
        // One transaction: a failed restore leaves the database empty, not half restored.
        // Objects are owned by the URL's user (the app's role), whatever role owned them before.
        cmd.args(["--no-owner", "--exit-on-error", "--single-transaction"]);
        process::stream_in(cmd, input, &self.redactor).map_err(|f| self.tool_error(f))
    }

    /// Encoding, collation and ctype of database `name`.
    fn settings_of(&self, admin: &mut Client, name: &str) -> Result<(String, String, String)> {
        let r = admin
            .query_one(
                "SELECT pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text \
                 FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .map_err(|e| self.sql_error(e, "reading the database's settings"))?;
        Ok((r.get(0), r.get(1), r.get(2)))
    }

    /// Whether the connection's role may create databases (an administrator, or CREATEDB).
    fn may_create_databases(&self, admin: &mut Client) -> Result<bool> {
        if self.admin_url.is_some() {
            return Ok(true);
        }
        let row = admin
            .query_one("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user", &[])
            .map_err(|e| self.sql_error(e, "reading the role's privileges"))?;
        Ok(row.get(0))
    }

    /// Drops database `name` (a copy of this database's only), ending its sessions first.
    fn drop_database(&self, admin: &mut Client, name: &str) -> Result<()> {
        if parse_copy_name(&self.database, name).is_none() {
            return Err(Error::new(
                ErrorKind::Other,
                &self.target,
                format!("`{name}` is not a copy of database {}; refusing to drop it", self.database),
            ));
        }
        let version = self.server_version_num(admin)?;
        let force = if version >= 130000 { " WITH (FORCE)" } else { "" };
        let sql = format!("DROP DATABASE IF EXISTS {}{force}", q(name));
        self.with_sessions_ended(admin, &[name], &format!("dropping {name}"), |c| c.batch_execute(&sql))
    }

    /// Drops the databases of restores that never finished (a killed caretaker's), after
    /// ending their sessions: a `pg_restore` of the killed run may still be connected.
    fn drop_unfinished_restores(&self, admin: &mut Client) -> Result<()> {
        let rows = admin
            .query("SELECT datname::text FROM pg_database", &[])
            .map_err(|e| self.sql_error(e, "listing databases"))?;
        for r in rows {
            let name: String = r.get(0);
            if parse_copy_name(&self.database, &name).is_some_and(|c| c.kind == CopyKind::Restoring) {
                self.drop_database(admin, &name)?;
            }
        }
        Ok(())
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
}

impl Database for Postgres {
    fn kind(&self) -> DbKind {
        DbKind::Postgres
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn check(&self) -> Result<ServerInfo> {
        let mut c = self.connect_to(&self.database)?;
        let row = c
            .query_one("SELECT current_setting('server_version')", &[])
            .map_err(|e| self.sql_error(e, "reading the server version"))?;
        let version: String = row.get(0);
        let major = self.server_version_num(&mut c)? / 10000;
        let mut tools = Vec::new();
        for name in ["pg_dump", "pg_restore"] {
            let t = self.tool(name, major)?;
            match &self.tools {
                Tools::Host => tools.push(format!("{name} {} ({})", t.major, t.path.display())),
                Tools::Container(c) => tools.push(format!("{name} (in container {})", &c[..c.len().min(12)])),
            }
        }
        Ok(ServerInfo { version, tools })
    }

    fn size(&self) -> Result<u64> {
        let mut c = self.connect_to(&self.database)?;
        let row = c
            .query_one("SELECT pg_database_size(current_database())", &[])
            .map_err(|e| self.sql_error(e, "reading the database size"))?;
        let n: i64 = row.get(0);
        Ok(n as u64)
    }

    fn contents(&self) -> Result<Contents> {
        // With an administrator, inspect through it: on a fresh server the app's role may not
        // exist yet (PostgreSQL reports that as an authentication failure), and the restore
        // that follows creates it.
        let connected = match &self.admin_url {
            Some(a) => {
                let user = a.user.clone().unwrap_or_else(|| "postgres".into());
                let host = a.host.clone().unwrap_or_else(|| self.host.clone());
                self.connect_as(a, &user, a.port.unwrap_or(self.port), &host, &self.database)
            }
            None => self.connect_to(&self.database),
        };
        let mut c = match connected {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Contents { exists: false, tables: vec![] }),
            Err(e) => return Err(e),
        };
        // User tables: not the system's, not an extension's, not partitions (their parent
        // counts for them).
        let rows = c
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                                   AND d.objid = c.oid AND d.deptype = 'e') \
                 ORDER BY 1, 2",
                &[],
            )
            .map_err(|e| self.sql_error(e, "listing tables"))?;
        let mut tables = Vec::new();
        for r in rows {
            let (schema, table): (String, String) = (r.get(0), r.get(1));
            let has: bool = c
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {}.{})", q(&schema), q(&table)), &[])
                .map_err(|e| self.sql_error(e, &format!("reading table {schema}.{table}")))?
                .get(0);
            let name = if schema == "public" { table } else { format!("{schema}.{table}") };
            tables.push(TableState { name, has_rows: has });
        }
        Ok(Contents { exists: true, tables })
    }

    fn count_rows_up_to(&self, table: &str, limit: u64) -> Result<Option<u64>> {
        let (schema, name) = table.split_once('.').unwrap_or(("public", table));
        let mut c = self.connect_to(&self.database)?;
        let exists = c
            .query_opt(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm')",
                &[&schema, &name],
            )
            .map_err(|e| self.sql_error(e, "looking up a table"))?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let limit = limit.min(i64::MAX as u64);
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM (SELECT 1 FROM {}.{} LIMIT {limit}) x", q(schema), q(name)), &[])
            .map_err(|e| self.sql_error(e, &format!("counting rows of {table}")))?
            .get(0);
        Ok(Some(n as u64))
    }

    fn dump(&self, out: &mut dyn Write) -> Result<u64> {
        // Connect first: a wrong password or a missing database reads better from the server
        // than from pg_dump's stderr, and the server's version picks the pg_dump.
        let mut c = self.connect_to(&self.database)?;
        let major = self.server_version_num(&mut c)? / 10000;
        drop(c);
        let tool = self.tool("pg_dump", major)?;
        let mut cmd = self.tool_command(&tool.path, &self.database);
        cmd.arg("--format=custom");
        process::stream_out(cmd, out, &self.redactor).map_err(|f| self.tool_error(f))
    }

    fn restore(&self, input: &mut dyn Read, mode: RestoreMode) -> Result<Restored> {
        let mut admin = self.admin()?;
        self.ensure_role(&mut admin)?;
        let major = self.server_version_num(&mut admin)? / 10000;
        let tool = self.tool("pg_restore", major)?;
        // What a killed restore left: its sessions are ended and its database dropped.
        self.drop_unfinished_restores(&mut admin)?;
        let live_exists = self.database_exists(&mut admin, &self.database)?;
        let contents = if live_exists { self.contents()? } else { Contents { exists: false, tables: vec![] } };
        if !contents.is_blank() && mode == RestoreMode::IntoEmpty {
            return Err(not_empty(&self.target, &contents));
        }
        if live_exists && contents.is_blank() && !self.may_create_databases(&mut admin)? {
            // A role that may not create databases restores into the empty database it was
            // given, as before: a killed restore then leaves tables there.
            drop(admin);
            let bytes = self.pg_restore(&tool, &self.database, input)?;
            return Ok(Restored { bytes, kept_aside: None });
        }
        // The dump goes into a fresh database under a temporary name, renamed into place once
        // complete: a partial restore never looks like the live database, and never collides
        // with one.
        let settings = if live_exists { Some(self.settings_of(&mut admin, &self.database)?) } else { None };
        let temp = copy_name(&self.database, CopyKind::Restoring, Timestamp::now(), None, MAX_NAME)
            .map_err(|m| Error::new(ErrorKind::Other, &self.target, m))?;
        self.create_database(&mut admin, &temp, settings)?;
        drop(admin);
        let bytes = match self.pg_restore(&tool, &temp, input) {
            Ok(n) => n,
            Err(e) => {
                if let Ok(mut admin) = self.admin() {
                    let _ = self.drop_database(&mut admin, &temp);
                }
                return Err(e);
            }
        };
        let mut admin = self.admin()?;
        // The live database may have changed while the dump streamed in: judge it again.
        let live_exists = self.database_exists(&mut admin, &self.database)?;
        let contents = if live_exists { self.contents()? } else { Contents { exists: false, tables: vec![] } };
        if !contents.is_blank() && mode == RestoreMode::IntoEmpty {
            let _ = self.drop_database(&mut admin, &temp);
            return Err(not_empty(&self.target, &contents));
        }
        let aside = copy_name(&self.database, CopyKind::Aside, Timestamp::now(), None, MAX_NAME)
            .map_err(|m| Error::new(ErrorKind::Other, &self.target, m))?;
        let mut sql = String::new();
        if live_exists {
            sql.push_str(&format!("ALTER DATABASE {} RENAME TO {};", q(&self.database), q(&aside)));
        }
        sql.push_str(&format!("ALTER DATABASE {} RENAME TO {};", q(&temp), q(&self.database)));
        self.with_sessions_ended(
            &mut admin,
            &[&self.database, &temp],
            "renaming the restored database into place",
            |c| {
                let mut tx = c.transaction()?;
                tx.batch_execute(&sql)?;
                tx.commit()
            },
        )?;
        let kept_aside = if !live_exists {
            None
        } else if contents.is_blank() {
            // It had no tables: nothing to keep.
            self.drop_database(&mut admin, &aside)?;
            None
        } else {
            Some(aside)
        };
        Ok(Restored { bytes, kept_aside })
    }

    fn terminate_connections(&self) -> Result<u64> {
        let mut admin = self.admin()?;
        self.terminate_on(&mut admin, &[&self.database])
    }

    fn copy_as(&self, kind: CopyKind, label: Option<&str>) -> Result<Snapshot> {
        let mut admin = self.admin()?;
        if !self.database_exists(&mut admin, &self.database)? {
            return Err(Error::new(
                ErrorKind::NotFound,
                &self.target,
                "the database does not exist; nothing to snapshot",
            ));
        }
        let version = self.server_version_num(&mut admin)?;
        let now = Timestamp::now();
        let name = copy_name(&self.database, kind, now, label, MAX_NAME)
            .map_err(|m| Error::new(ErrorKind::Other, &self.target, m))?;
        let strategy = if version >= 150000 { " STRATEGY FILE_COPY" } else { "" };
        let sql =
            format!("CREATE DATABASE {} TEMPLATE {}{strategy}{}", q(&name), q(&self.database), self.owner_clause());
        self.with_sessions_ended(&mut admin, &[&self.database], "taking a snapshot", |c| c.batch_execute(&sql))?;
        Ok(parse_copy_name(&self.database, &name).expect("a name made by copy_name parses"))
    }

    fn revert(&self, snapshot: &Snapshot) -> Result<String> {
        self.own_copy(snapshot)?;
        let mut admin = self.admin()?;
        if !self.database_exists(&mut admin, &snapshot.name)? {
            return Err(Error::new(
                ErrorKind::NotFound,
                &self.target,
                format!("snapshot {} does not exist", snapshot.name),
            )
            .hint("`caretaker db snapshots` lists the snapshots"));
        }
        let aside = copy_name(&self.database, CopyKind::Aside, Timestamp::now(), None, MAX_NAME)
            .map_err(|m| Error::new(ErrorKind::Other, &self.target, m))?;
        let live_exists = self.database_exists(&mut admin, &self.database)?;
        let mut sql = String::new();
        if live_exists {
            sql.push_str(&format!("ALTER DATABASE {} RENAME TO {};", q(&self.database), q(&aside)));
        }
        sql.push_str(&format!("ALTER DATABASE {} RENAME TO {};", q(&snapshot.name), q(&self.database)));
        self.with_sessions_ended(&mut admin, &[&self.database, &snapshot.name], "reverting to the snapshot", |c| {
            let mut tx = c.transaction()?;
            tx.batch_execute(&sql)?;
            tx.commit()
        })?;
        Ok(aside)
    }

    fn list_snapshots(&self) -> Result<Vec<Snapshot>> {
        let mut admin = self.admin()?;
        let rows = admin
            .query("SELECT datname::text FROM pg_database", &[])
            .map_err(|e| self.sql_error(e, "listing databases"))?;
        let mut copies: Vec<Snapshot> =
            rows.iter().filter_map(|r| parse_copy_name(&self.database, r.get::<_, &str>(0))).collect();
        copies.sort_by(|a, b| a.taken_at.cmp(&b.taken_at).then_with(|| a.name.cmp(&b.name)));
        Ok(copies)
    }

    fn drop_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        self.own_copy(snapshot)?;
        let mut admin = self.admin()?;
        let version = self.server_version_num(&mut admin)?;
        let force = if version >= 130000 { " WITH (FORCE)" } else { "" };
        let sql = format!("DROP DATABASE {}{force}", q(&snapshot.name));
        self.with_sessions_ended(&mut admin, &[&snapshot.name], &format!("dropping {}", snapshot.name), |c| {
            c.batch_execute(&sql)
        })
    }
}

pub(crate) fn not_empty(target: &str, contents: &Contents) -> Error {
    let names: Vec<&str> = contents.tables.iter().take(5).map(|t| t.name.as_str()).collect();
    let more = if contents.tables.len() > 5 { ", ..." } else { "" };
    Error::new(
        ErrorKind::NotEmpty,
        target,
        format!(
            "the target already holds {} tables ({}{more}); restoring into it would mix two databases",
            contents.tables.len(),
            names.join(", ")
        ),
    )
    .hint(
        "restore into an empty database, or ask to replace it (the current contents are then kept aside, not dropped)",
    )
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn conninfo_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A client tool and its major version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTool {
    pub major: u32,
    pub path: PathBuf,
}

/// Installed copies of a client tool: Debian's per-version directories, then `PATH`.
fn tool_candidates(name: &str) -> Vec<PgTool> {
    let mut found = Vec::new();
    if let Ok(dirs) = std::fs::read_dir("/usr/lib/postgresql") {
        for d in dirs.flatten() {
            let path = d.path().join("bin").join(name);
            if let Some(major) = d.file_name().to_str().and_then(|v| v.parse().ok()) {
                if process::is_executable(&path) {
                    found.push(PgTool { major, path });
                }
            }
        }
    }
    if let Some(path) = process::find_program(&[name]) {
        let version = Command::new(&path).arg("--version").output().ok();
        let major = version.and_then(|o| parse_tool_major(&String::from_utf8_lossy(&o.stdout)));
        if let Some(major) = major {
            found.push(PgTool { major, path });
        }
    }
    found
}

/// The major version in `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
pub fn parse_tool_major(version_output: &str) -> Option<u32> {
    let v = version_output.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The newest candidate, if it is at least the server's major version (a newer `pg_dump`
/// reads older servers; an older one refuses). `Err(Some(newest))` when all are too old,
/// `Err(None)` when there are none.
pub fn choose_tool(server_major: u32, candidates: &[PgTool]) -> std::result::Result<PgTool, Option<u32>> {
    let newest = candidates.iter().max_by_key(|t| t.major).ok_or(None)?;
    if newest.major >= server_major {
        Ok(newest.clone())
    } else {
        Err(Some(newest.major))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tool_versions() {
        assert_eq!(parse_tool_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), Some(15));
        assert_eq!(parse_tool_major("pg_restore (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(parse_tool_major("garbage"), None);
    }

    #[test]
    fn chooses_newest_tool_not_older_than_server() {
        let t = |major: u32| PgTool { major, path: PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/pg_dump")) };
        assert_eq!(choose_tool(15, &[t(13), t(16), t(15)]), Ok(t(16)));
        assert_eq!(choose_tool(15, &[t(15)]), Ok(t(15)));
        assert_eq!(choose_tool(16, &[t(13), t(15)]), Err(Some(15)));
        assert_eq!(choose_tool(16, &[]), Err(None));
    }

    #[test]
    fn conninfo_values_are_quoted() {
        assert_eq!(conninfo_quote(r"a'b\c"), r"'a\'b\\c'");
    }

    #[test]
    fn refuses_tls_modes_it_cannot_honour() {
        let url = crate::url::parse_url("postgres://u:p@h/d?sslmode=verify-full").unwrap();
        let e = Postgres::new(url, Redactor::default()).err().unwrap();
        assert!(e.message().contains("sslmode=verify-full"), "{e}");
    }
}
