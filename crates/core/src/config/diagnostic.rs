//! Config problems as values: where (file:line:column and key path), what, and what to do.
//!
//! Validation collects every [`Diagnostic`] instead of stopping at the first, so an operator
//! fixes a config file in one round. [`Diagnostics::render`] prints them like a compiler,
//! with the offending line of the file underneath.

use serde::Serialize;
use std::fmt::{self, Write as _};

/// How bad a problem is: errors make the config unusable, warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A position in the config file (1-based line and column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// Where in the file; `None` for problems with the file as a whole.
    #[serde(flatten)]
    pub location: Option<Location>,
    /// Dotted key path, e.g. `backup.keep.daily` or `services.web.after[0]`.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.location {
            Some(l) => write!(f, "{}:{}:{}: {sev}: {}", self.file, l.line, l.column, self.message)?,
            None => write!(f, "{}: {sev}: {}", self.file, self.message)?,
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// All problems of one config file, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn sort(&mut self) {
        self.0.sort_by_key(|d| {
            let l = d.location.unwrap_or_default();
            (l.line, l.column)
        });
    }

    /// Renders every problem like a compiler diagnostic, quoting the source line:
    ///
    /// ```text
    /// error: unknown key `schedul` in `backup`
    ///   --> caretaker.yml:12:3
    ///    |
    /// 12 |   schedul: "daily 00:30"
    ///    |   ^
    ///    = hint: did you mean `schedule`?
    /// ```
    pub fn render(&self, source: &str) -> String {
        let lines: Vec<&str> = source.lines().collect();
        let mut out = String::new();
        for d in &self.0 {
            let sev = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = writeln!(out, "{sev}: {}", d.message);
            match d.location {
                Some(l) => {
                    let _ = writeln!(out, "  --> {}:{}:{}", d.file, l.line, l.column);
                    if let Some(text) = l.line.checked_sub(1).and_then(|i| lines.get(i)) {
                        let num = l.line.to_string();
                        let pad = " ".repeat(num.len());
                        let caret_pad: String = text
                            .chars()
                            .take(l.column.saturating_sub(1))
                            .map(|c| if c == '\t' { '\t' } else { ' ' })
                            .collect();
                        let _ = writeln!(out, "{pad} |");
                        let _ = writeln!(out, "{num} | {text}");
                        let _ = writeln!(out, "{pad} | {caret_pad}^");
                    }
                }
                None => {
                    let _ = writeln!(out, "  --> {}", d.file);
                }
            }
            if let Some(hint) = &d.hint {
                let _ = writeln!(out, "   = hint: {hint}");
            }
            out.push('\n');
        }
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        if errors > 0 || warnings > 0 {
            let _ = writeln!(
                out,
                "{} error{}, {} warning{}",
                errors,
                if errors == 1 { "" } else { "s" },
                warnings,
                if warnings == 1 { "" } else { "s" }
            );
        }
        out
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo:
/// at most two edits (transpositions count as one), or a shared long prefix.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let max_edits = if word.chars().count() <= 3 { 1 } else { 2 };
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::osa_distance(word, c), strsim::jaro_winkler(word, c), c))
        .filter(|(d, jw, _)| *d <= max_edits || *jw >= 0.88)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c)
}
