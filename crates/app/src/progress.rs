//! Where an operation's progress goes: the CLI shows it (lines on a terminal, JSON-lines
//! events under `--json`), the daemon logs it, a test collects it.

/// A sink for an operation's progress. Every call is a note for people; none is needed for
/// the operation's result, which is its report.
pub trait Progress {
    /// One thing the operation did or is about to do ("removed pre-update-20261204…").
    fn line(&mut self, line: &str);

    /// A warning: something went wrong that did not fail the operation.
    fn warning(&mut self, warning: &str) {
        self.line(&format!("warning: {warning}"));
    }
}

/// Progress nobody follows.
pub struct NoProgress;

impl Progress for NoProgress {
    fn line(&mut self, _line: &str) {}
}

impl<F: FnMut(&str)> Progress for F {
    fn line(&mut self, line: &str) {
        self(line)
    }
}
