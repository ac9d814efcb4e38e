//! Configuration: environment variables (the way Django apps are configured), overridden by
//! command-line flags.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Default database when `DEMO_DATABASE_URL` is not set (relative to the working directory).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./demo.db";
/// Default listen address when neither `DEMO_LISTEN` nor `PORT` is set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// Everything the app needs to know about where its state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `sqlite:///abs/path.db`, `sqlite://./rel.db`, a path ending in `.db`/`.sqlite`/`.sqlite3`,
    /// or `postgres://user:pass@host:port/db`. May contain a password: log it only through
    /// [`redact_url`].
    pub database_url: String,
    /// Where uploaded files are stored.
    pub files_dir: PathBuf,
    /// Where the `NNNN_name.sql` migration files are.
    pub migrations_dir: PathBuf,
    /// The release directory: holds `VERSION` and, to fail health checks on purpose,
    /// `HEALTH_FAIL`.
    pub release_dir: PathBuf,
    /// `DEMO_HEALTH_FAIL=1`: `/healthz` answers 500.
    pub health_fail: bool,
}

impl Config {
    /// A configuration with everything inside `dir`: `dir/demo.db`, `dir/files`,
    /// `dir/migrations`, release dir `dir`. Handy for tests.
    pub fn in_dir(dir: &Path) -> Config {
        Config {
            database_url: format!("sqlite://{}", dir.join("demo.db").display()),
            files_dir: dir.join("files"),
            migrations_dir: dir.join("migrations"),
            release_dir: dir.to_path_buf(),
            health_fail: false,
        }
    }

    /// Resolve the configuration from optional overrides (CLI flags, which clap already
    /// filled from `DEMO_*` variables) and the defaults.
    pub fn resolve(
        database_url: Option<String>,
        files_dir: Option<PathBuf>,
        migrations_dir: Option<PathBuf>,
        release_dir: Option<PathBuf>,
    ) -> Config {
        let release_dir = release_dir.unwrap_or_else(|| PathBuf::from("."));
        let migrations_dir = migrations_dir.unwrap_or_else(|| release_dir.join("migrations"));
        Config {
            database_url: database_url
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()),
            files_dir: files_dir.unwrap_or_else(|| PathBuf::from("./files")),
            migrations_dir,
            release_dir,
            health_fail: env_flag("DEMO_HEALTH_FAIL"),
        }
    }

    /// The configuration from the environment alone (`DEMO_DATABASE_URL`, `DEMO_FILES_DIR`,
    /// `DEMO_MIGRATIONS_DIR`, `DEMO_RELEASE_DIR`, `DEMO_HEALTH_FAIL`).
    pub fn from_env() -> Config {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Config::resolve(
            var("DEMO_DATABASE_URL").map(|v| v.to_string_lossy().into_owned()),
            var("DEMO_FILES_DIR").map(PathBuf::from),
            var("DEMO_MIGRATIONS_DIR").map(PathBuf::from),
            var("DEMO_RELEASE_DIR").map(PathBuf::from),
        )
    }

    /// The database URL with any password replaced by `***`.
    pub fn redacted_database_url(&self) -> String {
        redact_url(&self.database_url)
    }

    /// The trimmed content of the release's `VERSION` file, or `"unknown"`.
    pub fn read_version(&self) -> String {
        match std::fs::read_to_string(self.release_dir.join("VERSION")) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => "unknown".to_string(),
        }
    }
}

/// The listen address: an explicit value (flag or `DEMO_LISTEN`), else `127.0.0.1:$PORT`,
/// else [`DEFAULT_LISTEN`].
pub fn resolve_listen(explicit: Option<String>) -> Result<String> {
    if let Some(l) = explicit.filter(|s| !s.trim().is_empty()) {
        return Ok(l.trim().to_string());
    }
    match std::env::var("PORT") {
        Ok(p) if !p.trim().is_empty() => {
            let port: u16 = p.trim().parse().with_context(|| format!("PORT={p:?} is not a port number"))?;
            Ok(format!("127.0.0.1:{port}"))
        }
        _ => Ok(DEFAULT_LISTEN.to_string()),
    }
}

fn env_flag(name: &str) -> bool {
    match std::env::var(name) {
        Ok(v) => !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "no" | "off"),
        Err(_) => false,
    }
}

/// Which database engine a URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://` or `postgresql://`).
    Postgres(String),
}

/// Parse `DEMO_DATABASE_URL`.
pub fn parse_database_url(url: &str) -> Result<DatabaseUrl> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DatabaseUrl::Postgres(url.to_string()));
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        // sqlite:///abs/path.db -> /abs/path.db ; sqlite://./rel.db -> ./rel.db ;
        // sqlite://rel.db and sqlite:rel.db -> rel.db
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            bail!("database URL {url:?} names no file");
        }
        return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
    }
    if !url.contains("://") && [".db", ".sqlite", ".sqlite3"].iter().any(|ext| url.ends_with(ext)) {
        return Ok(DatabaseUrl::Sqlite(PathBuf::from(url)));
    }
    bail!(
        "unsupported database URL {:?}: use sqlite:///path/to/file.db, a path ending in .db, \
         or postgres://user:password@host:port/dbname",
        redact_url(url)
    )
}

/// Replace the password in a URL (`scheme://user:password@host/...`) or a key/value
/// connection string (`password=...`) by `***`.
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let after = &url[scheme_end + 3..];
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let authority = &after[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!("{}://{}:***{}", &url[..scheme_end], &userinfo[..colon], &after[at..]);
            }
        }
        // Query parameters may carry a password too (`?password=...`).
        return redact_kv(url);
    }
    redact_kv(url)
}

fn redact_kv(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let Some(pos) = lower.find("password=") else {
        return s.to_string();
    };
    let start = pos + "password=".len();
    let end = s[start..].find(['&', ' ', '#']).map(|e| start + e).unwrap_or(s.len());
    format!("{}***{}", &s[..start], &s[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_database_urls() {
        assert_eq!(parse_database_url("sqlite:///abs/x.db").unwrap(), DatabaseUrl::Sqlite("/abs/x.db".into()));
        assert_eq!(parse_database_url("sqlite://./demo.db").unwrap(), DatabaseUrl::Sqlite("./demo.db".into()));
        assert_eq!(parse_database_url("sqlite:rel.sqlite").unwrap(), DatabaseUrl::Sqlite("rel.sqlite".into()));
        assert_eq!(
            parse_database_url("/var/lib/app/app.sqlite3").unwrap(),
            DatabaseUrl::Sqlite("/var/lib/app/app.sqlite3".into())
        );
        assert!(matches!(parse_database_url("postgres://u:p@127.0.0.1:5432/db").unwrap(), DatabaseUrl::Postgres(_)));
        let err = parse_database_url("mysql://u:secret@h/db").unwrap_err();
        assert!(!format!("{err:#}").contains("secret"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db.example:5432/app?sslmode=disable"),
            "postgres://app:***@db.example:5432/app?sslmode=disable"
        );
        assert_eq!(redact_url("postgres://app@localhost/app"), "postgres://app@localhost/app");
        assert_eq!(
            redact_url("postgres://localhost/app?user=a&password=xyz&x=1"),
            "postgres://localhost/app?user=a&password=***&x=1"
        );
        assert_eq!(redact_url("host=localhost password=xyz dbname=app"), "host=localhost password=*** dbname=app");
        assert_eq!(redact_url("sqlite:///a/b.db"), "sqlite:///a/b.db");
    }
}
