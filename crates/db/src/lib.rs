//! caretaker's database adapters: one small trait, [`Database`], and one implementation per
//! supported server — PostgreSQL ([`postgres`]), MariaDB/MySQL ([`mariadb`]) and SQLite
//! ([`sqlite`]). Everything that needs the database (backups, updates, clones, recovery,
//! checks) goes through this trait; [`open`] picks the adapter from the config.
//!
//! The decisions are pure and live in their own modules: connection URLs ([`url`]), copy names
//! and retention ([`naming`]), the safety check ([`safety`]). The adapters observe and act.
//!
//! All calls are blocking (they run client tools and wait on the server); async callers use
//! `spawn_blocking`. Architecture invariants:
//! - a password never appears on a command line or in a message: children get it through
//!   their environment or a 0600 file, and tool output is passed through the [`Redactor`];
//! - nothing here drops a live database: restores and reverts keep the previous contents
//!   aside under a name [`naming::parse_copy_name`] recognises, and `drop_snapshot` only drops
//!   such names.

pub mod error;
pub mod mariadb;
pub mod naming;
pub mod postgres;
mod process;
pub mod safety;
pub mod sqlite;
pub mod url;

pub use error::{Error, ErrorKind, Result};
pub use naming::{select_for_removal, CopyKind, Snapshot, SnapshotPolicy};
pub use safety::{Contents, Problem, TableState};

use caretaker_core::config::{self, DbKind, Redactor};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// What `check` learned about the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's version as it reports it (`15.18`, `10.11.19-MariaDB-0+deb12u1`).
    pub version: String,
    /// The client tools that dump and restore will use, with their versions.
    pub tools: Vec<String>,
}

/// What a restore does when the target database already holds tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreMode {
    /// Refuse with [`ErrorKind::NotEmpty`] unless the target is missing or has no tables.
    IntoEmpty,
    /// Move the current contents aside (a copy named `<db>__old_<time>`) and restore into a
    /// fresh database. Nothing is dropped.
    ReplaceKeepingOld,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// Bytes read from the stream.
    pub bytes: u64,
    /// Where the previous contents went, when there were any and they were replaced.
    pub kept_aside: Option<String>,
}

/// One database, as configured. Each method is one step an operation can take; none of them
/// asks questions or prints.
pub trait Database: Send + Sync {
    fn kind(&self) -> DbKind;

    /// The database in words, without secrets (`postgres database app on 127.0.0.1:5432`).
    fn target(&self) -> &str;

    /// Connects, returns the server version, and checks the client tools dump/restore need
    /// (present, and for PostgreSQL not older than the server).
    fn check(&self) -> Result<ServerInfo>;

    /// Size in bytes as the server counts it (files for SQLite).
    fn size(&self) -> Result<u64>;

    /// Which user tables exist and whether each has rows. A missing database is not an error
    /// here: it is `exists: false`.
    fn contents(&self) -> Result<Contents>;

    /// The number of rows of `table` (`table` or `schema.table`), counting at most `limit`;
    /// `None` when the table does not exist.
    fn count_rows_up_to(&self, table: &str, limit: u64) -> Result<Option<u64>>;

    /// The backup safety check: fails with [`ErrorKind::SafetyCheck`] when the database is
    /// missing, has no tables, only empty tables, or fewer rows than `min_rows` asks for.
    fn safety_check(&self, min_rows: &BTreeMap<String, u64>) -> Result<Contents> {
        let contents = self.contents()?;
        let mut counts = BTreeMap::new();
        if contents.exists {
            for (table, want) in min_rows {
                counts.insert(table.clone(), self.count_rows_up_to(table, *want)?);
            }
        }
        let problems = safety::judge(&contents, min_rows, &counts);
        if problems.is_empty() {
            return Ok(contents);
        }
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        Err(Error::new(ErrorKind::SafetyCheck, self.target(), format!("safety check failed: {}", list.join("; ")))
            .hint("a database that lost its data must not overwrite good backups: check the database URL and the server's volume; if the database is new and empty on purpose, take no backup yet"))
    }

    /// Writes a consistent dump to `out` as it is produced; returns the bytes written.
    /// PostgreSQL: `pg_dump -Fc`; MariaDB: `mariadb-dump` SQL; SQLite: a database file.
    fn dump(&self, out: &mut dyn Write) -> Result<u64>;

    /// Restores a dump made by [`Database::dump`] of the same kind, creating the database if
    /// it does not exist.
    fn restore(&self, input: &mut dyn Read, mode: RestoreMode) -> Result<Restored>;

    /// Ends every other session on this database (for restore and migration windows);
    /// returns how many. SQLite has no sessions to end: the app must be stopped (returns 0).
    fn terminate_connections(&self) -> Result<u64>;

    /// Takes a snapshot to revert to; `label` (`[a-z0-9-]{1,24}`) is kept in its name.
    fn snapshot(&self, label: Option<&str>) -> Result<Snapshot> {
        self.copy_as(CopyKind::Snapshot, label)
    }

    /// A consistent copy of the live database named as a copy of `kind` (a snapshot, or a
    /// staging clone's database): PostgreSQL `CREATE DATABASE … TEMPLATE`, MariaDB a schema
    /// copy, SQLite the online backup API. The copy is dropped with [`Database::drop_snapshot`].
    fn copy_as(&self, kind: CopyKind, label: Option<&str>) -> Result<Snapshot>;

    /// Makes `snapshot` the live database again. The current contents are kept aside (their
    /// name is returned) and the snapshot is consumed.
    fn revert(&self, snapshot: &Snapshot) -> Result<String>;

    /// Snapshots and kept-aside copies of this database, oldest first.
    fn list_snapshots(&self) -> Result<Vec<Snapshot>>;

    /// Removes one snapshot or kept-aside copy of this database.
    fn drop_snapshot(&self, snapshot: &Snapshot) -> Result<()>;

    /// Whether the database user may read everything the dump writes (routines, views and
    /// events owned by other users), so a backup does not first fail on the night it runs.
    /// `Ok` holds warnings (e.g. routines left out of the backup by config); `Err` names what
    /// cannot be read and, in its hint, the grant to ask for. Nothing to check by default.
    fn check_dump_privileges(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// Where an adapter runs its client tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Tools {
    /// Installed on this machine (found on `PATH`, and PostgreSQL's per-version directories).
    #[default]
    Host,
    /// Inside this running container — the database server's own (`docker exec -i`): the
    /// tools match the server's version and need nothing installed on the machine. Secrets
    /// reach them as `-e NAME`, the value taken from docker's own environment, never argv.
    Container(String),
}

/// The adapter for a configured database. Fails only when the config cannot describe a
/// database (no URL, an unparsable URL, no path).
pub fn open(cfg: &config::Database, redactor: &Redactor) -> Result<Box<dyn Database>> {
    open_with(cfg, redactor, None)
}

/// The adapter for a database whose server runs in `container` (a compose service): SQL goes
/// to `address` (the container's IP) instead of the URL's host, which names the service on the
/// compose network, and the client tools run inside the container.
pub fn open_in_container(
    cfg: &config::Database,
    redactor: &Redactor,
    container: &str,
    address: &str,
) -> Result<Box<dyn Database>> {
    open_with(cfg, redactor, Some((container, address)))
}

fn open_with(cfg: &config::Database, redactor: &Redactor, inside: Option<(&str, &str)>) -> Result<Box<dyn Database>> {
    let tools = inside.map(|(c, _)| Tools::Container(c.to_string())).unwrap_or_default();
    let relocate = |mut u: url::DbUrl| {
        if let Some((_, address)) = inside {
            u.host = Some(address.to_string());
        }
        u
    };
    let url = || {
        let secret = cfg.url.as_ref().ok_or_else(|| {
            Error::new(ErrorKind::Other, "database", "no database URL configured")
                .hint("set database.url (or url_file / url_env)")
        })?;
        url::parse_url(secret.expose()).map_err(|e| {
            Error::new(ErrorKind::Other, format!("database url ({})", secret.origin()), e).hint(
                "the URL looks like postgres://user:password@host:5432/name or mysql://user:password@host:3306/name",
            )
        })
    };
    Ok(match cfg.kind {
        DbKind::Postgres => {
            let admin = match &cfg.admin_url {
                Some(secret) => Some(url::parse_url(secret.expose()).map_err(|e| {
                    Error::new(ErrorKind::Other, format!("database admin_url ({})", secret.origin()), e)
                        .hint("the URL looks like postgres://postgres:password@host:5432/postgres")
                })?),
                None => None,
            };
            Box::new(
                postgres::Postgres::new(relocate(url()?), redactor.clone())?
                    .with_admin(admin.map(relocate))
                    .with_tools(tools),
            )
        }
        DbKind::Mariadb => Box::new(
            mariadb::Mariadb::new(relocate(url()?), redactor.clone())?
                .with_tools(tools)
                .with_dump_routines(cfg.dump_routines),
        ),
        DbKind::Sqlite if inside.is_some() => {
            return Err(Error::new(
                ErrorKind::Other,
                "database",
                "a SQLite database cannot run in a container of its own",
            )
            .hint("remove database.compose_service; back up the volume holding the file with compose.volumes"))
        }
        DbKind::Sqlite => {
            let path = cfg.path.clone().ok_or_else(|| {
                Error::new(ErrorKind::Other, "database", "no SQLite database path configured").hint("set database.path")
            })?;
            Box::new(sqlite::Sqlite::new(path))
        }
    })
}

/// Quotes an SQL identifier with `quote` (`"` for PostgreSQL, `` ` `` for MariaDB), doubling
/// it inside.
pub(crate) fn quote_ident(name: &str, quote: char) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push(quote);
    for c in name.chars() {
        if c == quote {
            s.push(quote);
        }
        s.push(c);
    }
    s.push(quote);
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_identifiers() {
        assert_eq!(super::quote_ident(r#"a"b"#, '"'), r#""a""b""#);
        assert_eq!(super::quote_ident("a`b", '`'), "`a``b`");
    }
}
