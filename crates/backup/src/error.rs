//! The crate's one public error type: a kind the binary maps to an exit code, a message for
//! people, and a hint saying what to do.

use crate::safety::Refusal;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The repository password does not open any key.
    WrongPassword,
    /// Nothing (no restic `config` file) at the repository location.
    NoRepository,
    /// `init` on a location that already holds a repository.
    AlreadyInitialized,
    /// The target cannot be reached (network, permissions, missing mount).
    Unreachable,
    /// An SSH server's host key is unknown or has changed: strict host-key checking refused it.
    HostKey,
    /// No space left on the target or restore destination.
    DiskFull,
    /// A safety check refused the backup.
    Refused,
    /// A stream (database dump) failed; no snapshot was left behind.
    StreamFailed,
    /// The repository holds damaged or missing data.
    Corrupt,
    /// No snapshot (or no entry) matched.
    NotFound,
    /// Invalid request (bad snapshot id, bad percentage, nested trees).
    Invalid,
    /// Anything else.
    Other,
}

#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    /// Set for [`ErrorKind::Refused`].
    pub refusal: Option<Refusal>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), hint: None, refusal: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn refused(r: Refusal) -> Self {
        Error { kind: ErrorKind::Refused, message: format!("backup refused: {r}"), hint: None, refusal: Some(r) }
    }

    /// Maps a rustic_core error to caretaker's kinds, with `what` saying what was being done.
    pub(crate) fn rustic(what: &str, repo: &str, e: &rustic_core::RusticError) -> Self {
        let text = e.to_string();
        let log = e.display_log();
        let lower = format!("{text} {log}").to_lowercase();
        if e.is_incorrect_password() {
            return Error::new(ErrorKind::WrongPassword, format!("wrong password for backup repository {repo}")).hint(
                "check backup.password in the config (it must be the password the repository was initialised with)",
            );
        }
        if lower.contains("no space left") || lower.contains("disk full") || lower.contains("quota exceeded") {
            return Error::new(ErrorKind::DiskFull, format!("{what}: no space left ({})", one_line(&log)))
                .hint("free space on the backup target (or prune old snapshots: `caretaker backup prune`)");
        }
        if lower.contains("permission denied") || lower.contains("read-only file system") {
            return Error::new(ErrorKind::Unreachable, format!("{what}: cannot write to backup target {repo} ({})", one_line(&log)))
                .hint("check that caretaker's user may write there (owner, mode, a read-only mount or a full quota), then run again");
        }
        let unreachable = [
            "connection refused",
            "timed out",
            "timeout",
            "no route to host",
            "network is unreachable",
            "dns error",
            "failed to lookup address",
            "connection reset",
            "connection was lost",
            "error sending request",
        ];
        if unreachable.iter().any(|s| lower.contains(s)) {
            return Error::new(
                ErrorKind::Unreachable,
                format!("{what}: backup target {repo} unreachable ({})", one_line(&log)),
            )
            .hint("check the network, the credentials and that the target is up, then run again");
        }
        Error::new(ErrorKind::Other, format!("{what} ({repo}): {}", rustic_text(e)))
    }

    pub(crate) fn io(what: impl fmt::Display, e: &std::io::Error) -> Self {
        let kind = match e.raw_os_error() {
            Some(28) => ErrorKind::DiskFull, // ENOSPC
            _ => ErrorKind::Other,
        };
        let err = Error::new(kind, format!("{what}: {e}"));
        if kind == ErrorKind::DiskFull {
            err.hint("free space on the destination, then run again")
        } else {
            err
        }
    }
}

/// A rustic_core error as one line: each message of its chain once. rustic's `Display` spans
/// many lines with a backtrace, and its `display_log` repeats the cause's own cause.
pub(crate) fn rustic_text(e: &rustic_core::RusticError) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let text = match as_rustic(err) {
            Some(r) => {
                let log = r.display_log();
                let log = log.strip_prefix("Error: ").unwrap_or(&log);
                log[..log.find(" (kind: related to").unwrap_or(log.len())].to_string()
            }
            None => err.to_string(),
        };
        let text = one_line(&text);
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// `e` as a rustic_core error: rustic boxes its causes once more (`Box<RusticError>` inside
/// the `Box<dyn Error>`), so both are tried.
pub(crate) fn as_rustic<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustic_core::RusticError> {
    e.downcast_ref::<rustic_core::RusticError>()
        .or_else(|| e.downcast_ref::<Box<rustic_core::RusticError>>().map(|b| &**b))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
