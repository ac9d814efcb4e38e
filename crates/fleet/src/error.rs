//! The fleet's one error type: what went wrong, on which server, and what to do about it.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// fleet.yml or an Ansible inventory is wrong.
    Inventory,
    /// A host key is unknown or changed: never retried, a human must compare fingerprints.
    HostKey,
    /// The server could not be reached (down, network, refused): waiting may help.
    Unreachable,
    /// Login refused, or ssh is misconfigured: a human must act.
    Login,
    /// Connect or run timeout.
    Timeout,
    /// The remote caretaker failed or printed something that is not its JSON.
    Remote,
    /// The controller's own state store.
    Store,
    /// Local files and processes.
    Io,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// Whether running again later may succeed without a human doing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Unreachable | ErrorKind::Timeout)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::new(ErrorKind::Store, format!("fleet state database: {e}"))
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Error {
        Error::new(ErrorKind::Store, format!("fleet PostgreSQL store: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
