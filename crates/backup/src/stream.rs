//! Named streams: data produced on the fly (a database dump) and stored as one file entry of
//! the snapshot under `/caretaker-streams/<name>`, never through a temporary file.

use std::io::Write;

/// A producer of one stream. The database adapter implements it (`pg_dump` piped into `out`).
///
/// `write_to` runs on its own thread while the backup reads from the other end; returning an
/// error (or panicking) fails the whole backup and no snapshot is left behind.
pub trait StreamSource: Send + 'static {
    /// File name inside the snapshot: `[A-Za-z0-9._-]+`, unique within a backup.
    fn name(&self) -> &str;
    /// Writes the whole stream; returns the number of bytes written.
    fn write_to(&mut self, out: &mut dyn Write) -> std::io::Result<u64>;
}

/// Directory of the snapshot that holds the streams.
pub const STREAMS_DIR: &str = "/caretaker-streams";

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
