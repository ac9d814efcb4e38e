//! Exit codes: the one place where failures become numbers. Documented in docs/exit-codes.md;
//! a test keeps the two in step.

use caretaker_state::StateError;
use std::fmt;

/// caretaker's exit codes. Stable: scripts and monitoring depend on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Everything worked.
    Ok = 0,
    /// The operation ran and failed.
    Failure = 1,
    /// The command line was wrong (unknown flag, missing argument).
    Usage = 2,
    /// The config file is missing or invalid.
    Config = 3,
    /// Another job holds the app lock; try again later.
    Busy = 4,
    /// A safety check refused to go on (empty database, existing file, non-empty target).
    Refused = 5,
    /// Something caretaker needs is missing or unreachable (a tool, a server, a target).
    Unavailable = 6,
    /// A change failed and was rolled back; the previous version runs.
    RolledBack = 7,
    /// The state directory is unusable (permissions, disk, written by a newer caretaker).
    State = 8,
    /// Interrupted by the operator (Ctrl-C).
    #[allow(dead_code)] // returned once long-running commands handle SIGINT themselves
    Interrupted = 130,
}

impl Code {
    #[cfg(test)]
    pub const ALL: [Code; 10] = [
        Code::Ok,
        Code::Failure,
        Code::Usage,
        Code::Config,
        Code::Busy,
        Code::Refused,
        Code::Unavailable,
        Code::RolledBack,
        Code::State,
        Code::Interrupted,
    ];

    pub fn number(self) -> i32 {
        self as i32
    }

    #[cfg(test)]
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::Failure => "failure",
            Code::Usage => "usage",
            Code::Config => "config",
            Code::Busy => "busy",
            Code::Refused => "refused",
            Code::Unavailable => "unavailable",
            Code::RolledBack => "rolled-back",
            Code::State => "state",
            Code::Interrupted => "interrupted",
        }
    }
}

/// `caretaker check` exits like a Nagios plugin: 0 ok, 1 warning, 2 critical, 3 unknown. Those
/// numbers coincide with `ok`, `failure`, `usage` and `config`; this returns the code whose
/// number is the plugin state (see docs/exit-codes.md).
pub fn nagios(state: u8) -> Code {
    match state {
        0 => Code::Ok,
        1 => Code::Failure,
        2 => Code::Usage,
        _ => Code::Config,
    }
}

/// An error for people: what went wrong, what to do, and the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Failure { code, message: message.into(), hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code and hint for any error that reaches `main`.
pub fn classify(err: &anyhow::Error) -> (Code, Option<String>) {
    if let Some(f) = err.downcast_ref::<Failure>() {
        return (f.code, f.hint.clone());
    }
    if let Some(e) = err.downcast_ref::<caretaker_app::Error>() {
        return app_error(e);
    }
    if let Some(s) = err.downcast_ref::<StateError>() {
        return state_error(s);
    }
    if let Some(d) = err.downcast_ref::<caretaker_db::Error>() {
        return db_error(d);
    }
    if let Some(c) = err.downcast_ref::<caretaker_compose::Error>() {
        use caretaker_compose::ErrorKind as K;
        let code = match c.kind() {
            K::ToolMissing | K::Unreachable | K::NotFound => Code::Unavailable,
            K::NotEmpty => Code::Refused,
            K::Failed | K::Io => Code::Failure,
        };
        return (code, c.what_to_do().map(str::to_string));
    }
    (Code::Failure, None)
}

/// An operation's error: by the library error it was made from (the same code as when that
/// error reaches `main` itself), else by its class.
fn app_error(e: &caretaker_app::Error) -> (Code, Option<String>) {
    use caretaker_app::{Cause, Class};
    match e.cause() {
        Some(Cause::Database(d)) => db_error(d),
        Some(Cause::State(s)) => state_error(s),
        None => {
            let code = match e.class {
                Class::Refused => Code::Refused,
                Class::Unavailable => Code::Unavailable,
                Class::Invalid => Code::Usage,
                Class::Failed => Code::Failure,
            };
            (code, e.hint.clone())
        }
    }
}

fn state_error(s: &StateError) -> (Code, Option<String>) {
    match s {
        StateError::Busy { .. } => {
            (Code::Busy, Some("wait for that job to finish (`caretaker jobs`), then try again".into()))
        }
        StateError::NoSuchJob(_) => (Code::Failure, Some("`caretaker jobs` lists the job ids".into())),
        StateError::NewerSchema { .. } => (Code::State, Some("use the newer caretaker that wrote it".into())),
        _ => (Code::State, Some("check that the state directory is writable (or choose one with --state-dir)".into())),
    }
}

fn db_error(d: &caretaker_db::Error) -> (Code, Option<String>) {
    use caretaker_db::ErrorKind as K;
    let code = match d.kind() {
        K::ToolMissing | K::AuthFailed | K::NotFound | K::Unreachable | K::VersionMismatch => Code::Unavailable,
        K::NotEmpty | K::SafetyCheck => Code::Refused,
        K::Io | K::Other => Code::Failure,
    };
    (code, d.what_to_do().map(str::to_string))
}

/// The backup engine's error kinds as exit codes (docs/exit-codes.md).
pub fn backup_failure(e: caretaker_backup::Error) -> Failure {
    let code = match e.kind {
        caretaker_backup::ErrorKind::Refused => Code::Refused,
        caretaker_backup::ErrorKind::Unreachable
        | caretaker_backup::ErrorKind::NoRepository
        | caretaker_backup::ErrorKind::DiskFull
        | caretaker_backup::ErrorKind::WrongPassword
        | caretaker_backup::ErrorKind::HostKey => Code::Unavailable,
        caretaker_backup::ErrorKind::Invalid => Code::Usage,
        _ => Code::Failure,
    };
    let f = Failure::new(code, e.message);
    match e.hint {
        Some(h) => f.hint(h),
        None => f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_map_to_exit_codes() {
        use caretaker_db::{Error, ErrorKind};
        let cases = [
            (ErrorKind::AuthFailed, Code::Unavailable),
            (ErrorKind::ToolMissing, Code::Unavailable),
            (ErrorKind::NotFound, Code::Unavailable),
            (ErrorKind::VersionMismatch, Code::Unavailable),
            (ErrorKind::NotEmpty, Code::Refused),
            (ErrorKind::SafetyCheck, Code::Refused),
            (ErrorKind::Other, Code::Failure),
        ];
        for (kind, code) in cases {
            let err = anyhow::Error::new(Error::new(kind, "postgres database app", "boom").hint("do this"));
            assert_eq!(classify(&err), (code, Some("do this".to_string())), "{kind:?}");
        }
    }

    /// docs/exit-codes.md is the documentation operators read; it must list every code.
    #[test]
    fn exit_codes_are_documented() {
        let doc = include_str!("../../../docs/exit-codes.md");
        for code in Code::ALL {
            let row = format!("| {} | `{}` |", code.number(), code.name());
            assert!(doc.contains(&row), "docs/exit-codes.md lacks the row starting `{row}`");
        }
    }
}
