//! The one error type of this crate: a kind the binary maps to an exit code, what went wrong,
//! which database it concerns (never with a password), and what the operator can do.

use std::fmt;

/// What kind of failure this is; decides the exit code and whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A client tool (`pg_dump`, `mariadb-dump`, ...) is not installed.
    ToolMissing,
    /// The server rejected the credentials.
    AuthFailed,
    /// The database (or snapshot, or file) does not exist.
    NotFound,
    /// The server could not be reached (refused, timed out, no route).
    Unreachable,
    /// A client tool is too old for the server (e.g. `pg_dump` 13 against PostgreSQL 15).
    VersionMismatch,
    /// The target of a restore already holds data and replacing it was not asked for.
    NotEmpty,
    /// The safety check failed: the database is missing, has no tables, or too few rows.
    SafetyCheck,
    /// Reading or writing a stream or file failed.
    Io,
    /// Anything else (a failed SQL statement, a tool exiting non-zero).
    Other,
}

/// A database failure for people: what, where and what to do.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    target: String,
    message: String,
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `target` names the database without secrets (e.g. `postgres app on 127.0.0.1:5432`).
    pub fn new(kind: ErrorKind, target: impl Into<String>, message: impl Into<String>) -> Self {
        Error { kind, target: target.into(), message: message.into(), hint: None, source: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the operator can do about it, if we know.
    pub fn what_to_do(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Whether trying again later can help (the server may come back).
    pub fn retryable(&self) -> bool {
        self.kind == ErrorKind::Unreachable
    }

    pub(crate) fn io(target: &str, what: &str, e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, target, format!("{what}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}
