//! SQLite: a database file. Dumps and snapshots use SQLite's online backup API, which makes a
//! consistent copy while the app keeps writing; a dump streams that copy (a temporary file
//! next to the database, removed afterwards: the backup API needs a file to write to).
//! Restores and reverts put a complete file in place with one atomic rename, after linking the
//! old file aside. Before that, the live database's write-ahead log (`-wal`) is checkpointed
//! into the main file; a non-empty `-wal` left behind means another process still has the
//! database open, and the rename is refused — a stale `-wal` next to a replaced file would be
//! replayed into it and corrupt it.
//!
//! SQLite has no server and no sessions to end: the app must be stopped for restore and
//! revert, which the supervisor does.

use crate::error::{Error, ErrorKind, Result};
use crate::naming::{copy_name, parse_copy_name, CopyKind, Snapshot};
use crate::postgres::not_empty;
use crate::safety::{Contents, TableState};
use crate::{quote_ident, Database, RestoreMode, Restored, ServerInfo};
use caretaker_core::config::DbKind;
use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// File names are at most 255 bytes.
const MAX_NAME: usize = 255;

pub struct Sqlite {
    path: PathBuf,
    target: String,
}

impl Sqlite {
    pub fn new(path: PathBuf) -> Self {
        let target = format!("sqlite database {}", path.display());
        Sqlite { path, target }
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn copy_path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    fn err(&self, what: &str, e: rusqlite::Error) -> Error {
        let kind = match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::CannotOpen) => ErrorKind::NotFound,
            Some(rusqlite::ErrorCode::NotADatabase) => ErrorKind::Other,
            Some(rusqlite::ErrorCode::PermissionDenied | rusqlite::ErrorCode::ReadOnly) => ErrorKind::Io,
            _ => ErrorKind::Other,
        };
        Error::new(kind, &self.target, format!("{what}: {e}"))
    }

    fn missing(&self) -> Error {
        Error::new(ErrorKind::NotFound, &self.target, "the database file does not exist")
            .hint("check database.path in the config (or restore a backup into it)")
    }

    fn open_read_only(&self) -> Result<Connection> {
        if !self.path.exists() {
            return Err(self.missing());
        }
        Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| self.err("opening", e))
    }

    /// A consistent copy of `from` at `to` through the online backup API.
    fn backup_to(&self, from: &Connection, to: &Path) -> Result<()> {
        let mut dst = Connection::open(to).map_err(|e| self.err("creating the copy", e))?;
        {
            let backup =
                rusqlite::backup::Backup::new(from, &mut dst).map_err(|e| self.err("starting the backup", e))?;
            // Copy in steps so writers get the lock in between; restarts when they write.
            backup
                .run_to_completion(1024, std::time::Duration::from_millis(5), None)
                .map_err(|e| self.err("copying", e))?;
        }
        // The copy is a single self-contained file: no -wal left next to it.
        dst.pragma_update(None, "journal_mode", "DELETE").map_err(|e| self.err("finishing the copy", e))?;
        dst.close().map_err(|(_, e)| self.err("closing the copy", e))?;
        Ok(())
    }

    /// A temporary file in the database's directory (same file system, so a rename is atomic).
    fn temp_file(&self, what: &str) -> Result<tempfile::TempPath> {
        tempfile::Builder::new()
            .prefix(&format!(".{}.{what}-", self.file_name()))
            .tempfile_in(self.dir())
            .map(|f| f.into_temp_path())
            .map_err(|e| Error::io(&self.target, &format!("creating a temporary file in {}", self.dir().display()), e))
    }

    /// Folds the live database's `-wal` into the main file and makes sure nobody else has it
    /// open, so the file can be renamed away safely.
    fn quiesce(&self) -> Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        {
            let c = Connection::open(&self.path).map_err(|e| self.err("opening", e))?;
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(|e| self.err("checkpointing", e))?;
            c.close().map_err(|(_, e)| self.err("closing", e))?;
        }
        let wal = sidecar(&self.path, "-wal");
        if wal.metadata().map(|m| m.len() > 0).unwrap_or(false) {
            return Err(Error::new(
                ErrorKind::Other,
                &self.target,
                "another process still has the database open (its -wal file is not empty)",
            )
            .hint("stop the app (caretaker stop) before restoring or reverting a SQLite database"));
        }
        for s in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(sidecar(&self.path, s));
        }
        Ok(())
    }

    /// Puts the complete file `new` in place of the live database, keeping the live one (if
    /// any) aside under `aside` — via a hard link first, so there is no moment without a file.
    fn swap_in(&self, new: &Path, aside: Option<&Path>) -> Result<()> {
        self.quiesce()?;
        if let Some(aside) = aside {
            if self.path.exists() {
                std::fs::hard_link(&self.path, aside)
                    .map_err(|e| Error::io(&self.target, &format!("keeping the old file as {}", aside.display()), e))?;
            }
        }
        std::fs::rename(new, &self.path).map_err(|e| Error::io(&self.target, "renaming the new file into place", e))?;
        sync_dir(&self.dir());
        Ok(())
    }

    fn own_copy(&self, snapshot: &Snapshot) -> Result<PathBuf> {
        if parse_copy_name(&self.file_name(), &snapshot.name).is_none() {
            return Err(Error::new(
                ErrorKind::Other,
                &self.target,
                format!("`{}` is not a snapshot of {}; refusing to touch it", snapshot.name, self.file_name()),
            ));
        }
        Ok(self.copy_path(&snapshot.name))
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Database for Sqlite {
    fn kind(&self) -> DbKind {
        DbKind::Sqlite
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn check(&self) -> Result<ServerInfo> {
        let c = self.open_read_only()?;
        // Reading the schema proves it is a database, not just a file.
        c.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())).map_err(|e| self.err("reading", e))?;
        let version: String =
            c.query_row("SELECT sqlite_version()", [], |r| r.get(0)).map_err(|e| self.err("reading the version", e))?;
        Ok(ServerInfo { version, tools: vec![] })
    }

    fn size(&self) -> Result<u64> {
        let main = self.path.metadata().map_err(|_| self.missing())?.len();
        let wal = sidecar(&self.path, "-wal").metadata().map(|m| m.len()).unwrap_or(0);
        Ok(main + wal)
    }

    fn contents(&self) -> Result<Contents> {
        if !self.path.exists() {
            return Ok(Contents { exists: false, tables: vec![] });
        }
        let c = self.open_read_only()?;
        let mut stmt = c
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
            .map_err(|e| self.err("listing tables", e))?;
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err("listing tables", e))?;
        let mut tables = Vec::new();
        for name in names {
            let has: bool = c
                .query_row(&format!("SELECT EXISTS (SELECT 1 FROM {})", quote_ident(&name, '"')), [], |r| r.get(0))
                .map_err(|e| self.err(&format!("reading table {name}"), e))?;
            tables.push(TableState { name, has_rows: has });
        }
        Ok(Contents { exists: true, tables })
    }

    fn count_rows_up_to(&self, table: &str, limit: u64) -> Result<Option<u64>> {
        let c = self.open_read_only()?;
        let exists: bool = c
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type IN ('table', 'view') AND name = ?1)",
                [table],
                |r| r.get(0),
            )
            .map_err(|e| self.err("looking up a table", e))?;
        if !exists {
            return Ok(None);
        }
        let limit = limit.min(i64::MAX as u64) as i64;
        let n: i64 = c
            .query_row(
                &format!("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT ?1)", quote_ident(table, '"')),
                [limit],
                |r| r.get(0),
            )
            .map_err(|e| self.err(&format!("counting rows of {table}"), e))?;
        Ok(Some(n as u64))
    }

    fn dump(&self, out: &mut dyn Write) -> Result<u64> {
        let src = self.open_read_only()?;
        let tmp = self.temp_file("dump")?;
        self.backup_to(&src, &tmp)?;
        drop(src);
        let mut f = std::fs::File::open(&tmp).map_err(|e| Error::io(&self.target, "reading the copy", e))?;
        let n = std::io::copy(&mut f, out).map_err(|e| Error::io(&self.target, "writing the dump", e))?;
        out.flush().map_err(|e| Error::io(&self.target, "writing the dump", e))?;
        Ok(n)
    }

    fn restore(&self, input: &mut dyn Read, mode: RestoreMode) -> Result<Restored> {
        let contents = self.contents()?;
        if !contents.is_blank() && mode == RestoreMode::IntoEmpty {
            return Err(not_empty(&self.target, &contents));
        }
        let tmp = self.temp_file("restore")?;
        let bytes = {
            let mut f =
                std::fs::File::create(&tmp).map_err(|e| Error::io(&self.target, "writing the restored file", e))?;
            let n = std::io::copy(input, &mut f).map_err(|e| Error::io(&self.target, "reading the dump", e))?;
            f.sync_all().map_err(|e| Error::io(&self.target, "writing the restored file", e))?;
            n
        };
        // A truncated or foreign stream must not replace anything.
        {
            let c = Connection::open_with_flags(&tmp, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| self.err("opening the restored file", e))?;
            let ok: String = c
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| self.err("the dump is not a SQLite database", e))?;
            if ok != "ok" {
                return Err(Error::new(
                    ErrorKind::Other,
                    &self.target,
                    format!("the dump fails SQLite's quick_check: {ok}"),
                ));
            }
        }
        let aside = if contents.exists && !contents.is_blank() {
            let name = copy_name(&self.file_name(), CopyKind::Aside, Timestamp::now(), None, MAX_NAME)
                .map_err(|m| Error::new(ErrorKind::Other, &self.target, m))?;
            Some(name)
        } else {
            None
        };
        let aside_path = aside.as_ref().map(|n| self.copy_path(n));
        self.swap_in(&tmp, aside_path.as_deref())?;
        Ok(Restored { bytes, kept_aside: aside })
    }

    fn terminate_connections(&self) -> Result<u64> {
        Ok(0)
    }

    fn copy_as(&self, kind: CopyKind, label: Option<&str>) -> Result<Snapshot> {
        let src = self.open_read_only()?;
        let name = copy_name(&self.file_name(), kind, Timestamp::now(), label, MAX_NAME)
            .map_err(|m| Error::new(ErrorKind::Other, &self.target, m))?;
        let tmp = self.temp_file("snapshot")?;
        self.backup_to(&src, &tmp)?;
        let path = self.copy_path(&name);
        tmp.persist(&path).map_err(|e| Error::io(&self.target, "naming the snapshot", e.error))?;
        sync_dir(&self.dir());
        Ok(parse_copy_name(&self.file_name(), &name).expect("a name made by copy_name parses"))
    }

    fn revert(&self, snapshot: &Snapshot) -> Result<String> {
        let snap_path = self.own_copy(snapshot)?;
        if !snap_path.exists() {
            return Err(Error::new(
                ErrorKind::NotFound,
                &self.target,
                format!("snapshot {} does not exist", snapshot.name),
            )
            .hint("`caretaker db snapshots` lists the snapshots"));
        }
        let aside = copy_name(&self.file_name(), CopyKind::Aside, Timestamp::now(), None, MAX_NAME)
            .map_err(|m| Error::new(ErrorKind::Other, &self.target, m))?;
        self.swap_in(&snap_path, Some(&self.copy_path(&aside)))?;
        Ok(aside)
    }

    fn list_snapshots(&self) -> Result<Vec<Snapshot>> {
        let entries = std::fs::read_dir(self.dir()).map_err(|e| Error::io(&self.target, "listing the directory", e))?;
        let own = self.file_name();
        let mut copies: Vec<Snapshot> =
            entries.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| parse_copy_name(&own, n))).collect();
        copies.sort_by(|a, b| a.taken_at.cmp(&b.taken_at).then_with(|| a.name.cmp(&b.name)));
        Ok(copies)
    }

    fn drop_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let path = self.own_copy(snapshot)?;
        std::fs::remove_file(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(ErrorKind::NotFound, &self.target, format!("snapshot {} does not exist", snapshot.name))
            } else {
                Error::io(&self.target, &format!("removing {}", path.display()), e)
            }
        })?;
        for s in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(sidecar(&path, s));
        }
        Ok(())
    }
}
