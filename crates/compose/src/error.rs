//! The one error type of this crate: a kind the binary maps to an exit code, what went wrong,
//! the compose project (or docker object) it concerns, and what the operator can do.

use std::fmt;

/// What kind of failure this is; decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `docker` or the compose command line is not installed.
    ToolMissing,
    /// The docker engine does not answer (not running, no permission on its socket).
    Unreachable,
    /// A service, container, image or volume does not exist.
    NotFound,
    /// A named volume to restore into holds data and replacing it was not asked for.
    NotEmpty,
    /// A compose or docker command failed (bad compose file, build error, ...).
    Failed,
    /// Reading or writing a stream failed.
    Io,
}

/// A compose/docker failure for people: what, where and what to do.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    target: String,
    message: String,
    hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, target: impl Into<String>, message: impl Into<String>) -> Self {
        Error { kind, target: target.into(), message: message.into(), hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn what_to_do(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.message)
    }
}

impl std::error::Error for Error {}
