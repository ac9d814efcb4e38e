//! One error type for every operation: what happened, for people, with a class that says
//! what kind of failure it is (and so the CLI's exit code), a hint and whether trying again
//! later may succeed.

use std::fmt;

/// What kind of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The operation would lose or harm something and was not done (nothing changed).
    Refused,
    /// Something it needs is not there or not reachable now: a server, a tool, the app lock.
    Unavailable,
    /// The request itself is wrong: a name that does not exist, a bad argument.
    Invalid,
    /// It was tried and did not work.
    Failed,
}

/// An operation's failure.
#[derive(Debug)]
pub struct Error {
    pub class: Class,
    pub message: String,
    pub hint: Option<String>,
    /// Whether the same request may succeed later without anyone changing anything (a busy
    /// lock, an unreachable server).
    pub retryable: bool,
    cause: Option<Box<Cause>>,
}

/// The library error an [`Error`] was made from, for callers that classify those themselves.
#[derive(Debug)]
pub enum Cause {
    Database(caretaker_db::Error),
    State(caretaker_state::StateError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(class: Class, message: impl Into<String>) -> Error {
        Error { class, message: message.into(), hint: None, retryable: class == Class::Unavailable, cause: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// The library error this one was made from, if any.
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<caretaker_db::Error> for Error {
    fn from(e: caretaker_db::Error) -> Error {
        use caretaker_db::ErrorKind as K;
        let (class, retryable) = match e.kind() {
            K::Unreachable => (Class::Unavailable, true),
            K::ToolMissing | K::AuthFailed | K::NotFound | K::VersionMismatch => (Class::Unavailable, false),
            K::NotEmpty | K::SafetyCheck => (Class::Refused, false),
            K::Io | K::Other => (Class::Failed, false),
        };
        Error {
            class,
            message: e.to_string(),
            hint: e.what_to_do().map(str::to_string),
            retryable,
            cause: Some(Box::new(Cause::Database(e))),
        }
    }
}

impl From<caretaker_state::StateError> for Error {
    fn from(e: caretaker_state::StateError) -> Error {
        use caretaker_state::StateError as S;
        let (class, retryable) = match &e {
            S::Busy { .. } => (Class::Unavailable, true),
            S::NoSuchJob(_) => (Class::Invalid, false),
            _ => (Class::Failed, false),
        };
        Error { class, message: e.to_string(), hint: None, retryable, cause: Some(Box::new(Cause::State(e))) }
    }
}
