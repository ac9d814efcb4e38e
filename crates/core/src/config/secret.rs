//! Secrets: values that must never be shown.
//!
//! A [`Secret`] comes from the config file itself (`password: ...`), from a file
//! (`password_file: ...`) or from an environment variable (`password_env: ...`). Its value is
//! reachable only through [`Secret::expose`]; `Debug`, `Display` and `Serialize` print `***`
//! with where it came from, so a secret cannot leak through logs, `config show`, errors or JSON
//! by accident. Reading files and the environment is I/O, so it sits behind [`SecretSource`].

use serde::{Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret's value came from. Safe to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretOrigin {
    Inline,
    File(PathBuf),
    Env(String),
}

impl fmt::Display for SecretOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretOrigin::Inline => write!(f, "inline"),
            SecretOrigin::File(p) => write!(f, "file {}", p.display()),
            SecretOrigin::Env(v) => write!(f, "env {v}"),
        }
    }
}

/// A secret value. Prints as `***`; use [`Secret::expose`] only at the point of use.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    origin: SecretOrigin,
}

impl Secret {
    pub fn new(value: impl Into<String>, origin: SecretOrigin) -> Self {
        Secret { value: value.into(), origin }
    }

    /// The secret's value. Call this only where the value is handed to its consumer
    /// (an environment variable of a child, a file with mode 0600, a network handshake).
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn origin(&self) -> &SecretOrigin {
        &self.origin
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(*** {})", self.origin)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "*** ({})", self.origin)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The I/O a config needs to resolve secrets and check permissions. The binary implements it
/// over the real file system and environment; tests use a map.
pub trait SecretSource {
    /// Reads a whole file. The error is a short reason ("no such file", "permission denied").
    fn read_file(&self, path: &Path) -> Result<String, String>;
    /// The value of an environment variable, if set and valid UTF-8.
    fn env_var(&self, name: &str) -> Option<String>;
    /// Unix permission bits of a file, if it exists.
    fn file_mode(&self, path: &Path) -> Option<u32>;
    /// Whether a file or directory exists.
    fn exists(&self, path: &Path) -> bool;
    /// Why a file that caretaker trusts (a secret file, the status token file) is not safe:
    /// other users may write it, or a directory above it (see docs/config.md, "File
    /// permissions"). `None` when it is safe, or when this source cannot tell.
    fn insecure(&self, _path: &Path) -> Option<String> {
        None
    }
}

/// A [`SecretSource`] that resolves nothing and reports every path as present: for checking a
/// config's shape without touching the machine (templates, tests). A `*_file` or `*_env`
/// secret read through it is an error.
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn read_file(&self, _: &Path) -> Result<String, String> {
        Err("secrets are not read here".into())
    }
    fn env_var(&self, _: &str) -> Option<String> {
        None
    }
    fn file_mode(&self, _: &Path) -> Option<u32> {
        None
    }
    fn exists(&self, _: &Path) -> bool {
        true
    }
}

/// Scrubs known secret values out of text that is about to be shown or stored (child process
/// output, error messages from libraries). The last line of defence: secrets should not reach
/// such text in the first place.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut values: Vec<String> = secrets
            .into_iter()
            .map(|s| s.expose().to_string())
            // Very short values would redact ordinary words; they are rejected by `init`
            // anyway and cannot be told apart from text.
            .filter(|v| v.len() >= 4)
            .collect();
        // Longest first, so a secret containing another is redacted whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2-very-secret", SecretOrigin::File("/etc/key".into()));
        for shown in [format!("{s}"), format!("{s:?}"), format!("{s:#?}"), serde_json::to_string(&s).unwrap()] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn redactor_replaces_longest_first() {
        let a = Secret::new("abcd", SecretOrigin::Inline);
        let b = Secret::new("abcdefgh", SecretOrigin::Inline);
        let r = Redactor::new([&a, &b]);
        assert_eq!(r.redact("x abcdefgh y abcd z"), "x *** y *** z");
    }
}
