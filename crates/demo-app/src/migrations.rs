//! Versioned SQL migrations read from a directory.
//!
//! File names: `NNNN_name.sql` (portable SQL, used for every database), optionally
//! `NNNN_name.sqlite.sql` / `NNNN_name.postgres.sql` (used instead of the portable file for
//! that database). A migration is identified by its number; all files of one number must
//! share the name. Other files (README, ...) are ignored; a `.sql` file whose name does not
//! follow the pattern is an error, so that typos do not silently skip a migration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// The two supported database engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// SQLite (bundled).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// `"sqlite"` or `"postgres"`: also the infix of dialect-specific migration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

/// One migration, with the SQL for the chosen dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The number (`0003_add_tags.sql` → 3).
    pub version: i64,
    /// The name (`0003_add_tags.sql` → `add_tags`).
    pub name: String,
    /// The file the SQL comes from.
    pub file: PathBuf,
    /// The SQL (one or more statements, no transaction control).
    pub sql: String,
}

impl Migration {
    /// `0003_add_tags`.
    pub fn id(&self) -> String {
        migration_id(self.version, &self.name)
    }
}

/// `0003_add_tags` from `(3, "add_tags")`.
pub fn migration_id(version: i64, name: &str) -> String {
    format!("{version:04}_{name}")
}

/// A row of `demo_migrations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedMigration {
    /// Migration number.
    pub version: i64,
    /// Migration name.
    pub name: String,
    /// When it was applied (RFC 3339, UTC).
    pub applied_at: String,
}

/// Parsed file name: (version, name, dialect or None for portable).
pub(crate) fn parse_file_name(file_name: &str) -> Option<(i64, String, Option<Dialect>)> {
    let stem = file_name.strip_suffix(".sql")?;
    let (stem, dialect) = if let Some(s) = stem.strip_suffix(".sqlite") {
        (s, Some(Dialect::Sqlite))
    } else if let Some(s) = stem.strip_suffix(".postgres") {
        (s, Some(Dialect::Postgres))
    } else {
        (stem, None)
    };
    let (num, name) = stem.split_once('_')?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 12 {
        return None;
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return None;
    }
    Some((num.parse().ok()?, name.to_string(), dialect))
}

/// Read the migrations for `dialect` from `dir`, sorted by version.
pub fn load_dir(dir: &Path, dialect: Dialect) -> Result<Vec<Migration>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read migrations directory {}", dir.display()))?;
    // version -> (name, portable file, dialect-specific file)
    type Files = (String, Option<PathBuf>, Option<PathBuf>);
    let mut by_version: BTreeMap<i64, Files> = BTreeMap::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if !file_name.ends_with(".sql") || file_name.starts_with('.') {
            continue;
        }
        let Some((version, name, file_dialect)) = parse_file_name(file_name) else {
            bail!("migration file {} does not follow the NNNN_name.sql pattern", entry.path().display());
        };
        let slot = by_version.entry(version).or_insert_with(|| (name.clone(), None, None));
        if slot.0 != name {
            bail!(
                "two migrations numbered {version:04} in {}: {} and {}",
                dir.display(),
                migration_id(version, &slot.0),
                migration_id(version, &name)
            );
        }
        match file_dialect {
            None => slot.1 = Some(entry.path()),
            Some(d) if d == dialect => slot.2 = Some(entry.path()),
            Some(_) => {}
        }
    }
    let mut out = Vec::with_capacity(by_version.len());
    for (version, (name, portable, specific)) in by_version {
        let Some(file) = specific.or(portable) else {
            bail!(
                "migration {} has no SQL for {} (add {} or {})",
                migration_id(version, &name),
                dialect.as_str(),
                format_args!("{}.sql", migration_id(version, &name)),
                format_args!("{}.{}.sql", migration_id(version, &name), dialect.as_str()),
            );
        };
        let sql =
            std::fs::read_to_string(&file).with_context(|| format!("cannot read migration {}", file.display()))?;
        out.push(Migration { version, name, file, sql });
    }
    Ok(out)
}

/// Migrations of `available` that are not recorded in `applied`.
pub fn pending<'a>(available: &'a [Migration], applied: &[AppliedMigration]) -> Vec<&'a Migration> {
    available.iter().filter(|m| !applied.iter().any(|a| a.version == m.version)).collect()
}

/// Applied migrations that the migrations directory does not know (the database is newer
/// than the code, e.g. after a code-only rollback).
pub fn unknown<'a>(available: &[Migration], applied: &'a [AppliedMigration]) -> Vec<&'a AppliedMigration> {
    applied.iter().filter(|a| !available.iter().any(|m| m.version == a.version)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!(parse_file_name("0001_entries.sql"), Some((1, "entries".into(), None)));
        assert_eq!(
            parse_file_name("0012_add-tags.postgres.sql"),
            Some((12, "add-tags".into(), Some(Dialect::Postgres)))
        );
        assert_eq!(parse_file_name("0002_uploads.sqlite.sql"), Some((2, "uploads".into(), Some(Dialect::Sqlite))));
        assert_eq!(parse_file_name("entries.sql"), None);
        assert_eq!(parse_file_name("0001_.sql"), None);
        assert_eq!(parse_file_name("0001_a b.sql"), None);
    }

    #[test]
    fn loads_with_dialect_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let w = |n: &str, s: &str| std::fs::write(dir.path().join(n), s).unwrap();
        w("0001_a.sqlite.sql", "-- sqlite a");
        w("0001_a.postgres.sql", "-- pg a");
        w("0002_b.sql", "-- portable b");
        w("0002_b.postgres.sql", "-- pg b");
        w("README.md", "ignored");
        let s = load_dir(dir.path(), Dialect::Sqlite).unwrap();
        assert_eq!(s.iter().map(|m| m.sql.as_str()).collect::<Vec<_>>(), ["-- sqlite a", "-- portable b"]);
        let p = load_dir(dir.path(), Dialect::Postgres).unwrap();
        assert_eq!(p.iter().map(|m| m.sql.as_str()).collect::<Vec<_>>(), ["-- pg a", "-- pg b"]);
        w("0003_c.postgres.sql", "-- pg only");
        let err = load_dir(dir.path(), Dialect::Sqlite).unwrap_err();
        assert!(err.to_string().contains("no SQL for sqlite"), "{err}");
        std::fs::remove_file(dir.path().join("0003_c.postgres.sql")).unwrap();
        w("0002_other.sql", "");
        let err = load_dir(dir.path(), Dialect::Sqlite).unwrap_err();
        assert!(err.to_string().contains("two migrations numbered 0002"), "{err}");
    }
}
