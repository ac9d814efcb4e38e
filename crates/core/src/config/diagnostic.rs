//! Config problems as values: where (file:line:column and key path), what, and what to do.
//!
//! Validation collects every [`Diagnostic`] instead of stopping at the first, so an operator
//! fixes a config file in one round. [`Diagnostics::render`] prints them like a compiler,
//! with the offending line of the file underneath — with secret values masked
//! ([`mask_secrets`]): a diagnostic is printed to terminals and the journal, where the config's
//! secrets must never appear.

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
                    if let Some(raw) = l.line.checked_sub(1).and_then(|i| lines.get(i)) {
                        let prev = l.line.checked_sub(2).and_then(|i| lines.get(i)).copied();
                        let masks = secret_ranges(raw, prev);
                        let text = &apply_masks(raw, &masks);
                        let column = masked_column(raw, &masks, l.column);
                        let num = l.line.to_string();
                        let pad = " ".repeat(num.len());
                        let caret_pad: String = text
                            .chars()
                            .take(column.saturating_sub(1))
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

/// The words of key names whose values are secrets, or look like they could be: a key is
/// secret-like when one of its words (split at `_`, `-`, `.`) contains one of [`SECRET_PARTS`],
/// is one of [`SECRET_WORDS`], or is a likely misspelling of [`SECRET_SPELLINGS`] (a typo such
/// as `pasword:` is exactly when the value ends up quoted in an "unknown key" error).
const SECRET_PARTS: &[&str] = &["pass", "pwd", "secret", "token", "cred", "auth", "priv", "key"];
const SECRET_WORDS: &[&str] = &["url", "uri", "dsn", "webhook"];
const SECRET_SPELLINGS: &[&str] = &["password", "passwd", "secret", "token", "webhook", "credentials"];

/// Whether the value of `key` is (or may be) a secret. `*_file` and `*_env` keys hold a path
/// or a variable name, which are shown.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.trim_matches(|c| c == '"' || c == '\'').to_ascii_lowercase();
    if k.ends_with("_file") || k.ends_with("_env") {
        return false;
    }
    k.split(['_', '-', '.']).filter(|w| !w.is_empty()).any(|w| {
        SECRET_PARTS.iter().any(|p| w.contains(p))
            || SECRET_WORDS.contains(&w)
            || (w.len() >= 4 && SECRET_SPELLINGS.iter().any(|s| strsim::osa_distance(w, s) <= 2))
    })
}

/// A source line with every secret value masked as `***`: values of secret-like keys (see
/// [`is_secret_key`]), in block (`password: x`) and flow (`{ url: "x", kind: y }`) style, and
/// the credentials inside URLs (`scheme://user:***@host`). `prev` is the line before, for a
/// value written on the line after its key.
pub fn mask_secrets(line: &str, prev: Option<&str>) -> String {
    apply_masks(line, &secret_ranges(line, prev))
}

/// The byte ranges of `line` that [`mask_secrets`] replaces, in order, not overlapping.
fn secret_ranges(line: &str, prev: Option<&str>) -> Vec<std::ops::Range<usize>> {
    let mut ranges = key_value_ranges(line);
    // A value alone on its line, under a secret-like key that ends the line before.
    if let Some(prev) = prev {
        let p = prev.trim_end();
        let own = line.trim();
        let key = p.strip_suffix(':').map(|k| k.trim().trim_start_matches("- ").trim());
        if key.is_some_and(is_secret_key) && !own.is_empty() && !own.starts_with('#') && key_at(own, 0).is_none() {
            let indent = line.len() - line.trim_start().len();
            ranges.push(indent..line.trim_end().len());
        }
    }
    ranges.extend(url_credential_ranges(line));
    ranges.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<std::ops::Range<usize>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

fn apply_masks(line: &str, ranges: &[std::ops::Range<usize>]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    for r in ranges {
        out.push_str(&line[at..r.start]);
        out.push_str("***");
        at = r.end;
    }
    out.push_str(&line[at..]);
    out
}

/// The 1-based column in the masked line of `column` in `line`: shifted left by what masks
/// before it removed; inside a masked value, the mask's start.
fn masked_column(line: &str, ranges: &[std::ops::Range<usize>], column: usize) -> usize {
    let byte = line.char_indices().nth(column.saturating_sub(1)).map_or(line.len(), |(i, _)| i);
    let mut shift: isize = 0;
    for r in ranges {
        if r.end <= byte {
            shift += line[r.clone()].chars().count() as isize - 3;
        } else if r.start <= byte {
            return (line[..r.start].chars().count() as isize - shift + 1).max(1) as usize;
        }
    }
    (column as isize - shift).max(1) as usize
}

/// The key starting at byte `i` of `s`, if `s[i..]` reads `key:` followed by a space or the end.
fn key_at(s: &str, i: usize) -> Option<(usize, &str)> {
    let b = s.as_bytes();
    let mut j = i;
    if j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
        let q = b[j];
        let end = s[j + 1..].find(q as char)? + j + 1;
        j = end + 1;
    } else {
        while j < b.len() && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'-' | b'.')) {
            j += 1;
        }
    }
    if j == i || j >= b.len() || b[j] != b':' {
        return None;
    }
    if j + 1 < b.len() && b[j + 1] != b' ' && b[j + 1] != b'\t' {
        return None;
    }
    Some((j + 1, &s[i..j]))
}

/// The end (exclusive) of the value starting at byte `i`: a quoted string, or plain text up to
/// `,` / `}` / `]` inside a flow collection (`depth > 0`) or to a comment / the line's end.
fn value_end(s: &str, i: usize, depth: usize) -> usize {
    let b = s.as_bytes();
    match b.get(i) {
        Some(b'"') => {
            let mut j = i + 1;
            while j < b.len() {
                match b[j] {
                    b'\\' => j += 2,
                    b'"' => return j + 1,
                    _ => j += 1,
                }
            }
            b.len()
        }
        Some(b'\'') => {
            let mut j = i + 1;
            while j < b.len() {
                if b[j] == b'\'' {
                    if b.get(j + 1) == Some(&b'\'') {
                        j += 2;
                        continue;
                    }
                    return j + 1;
                }
                j += 1;
            }
            b.len()
        }
        _ => {
            let mut j = i;
            while j < b.len() {
                if depth > 0 && matches!(b[j], b',' | b'}' | b']') {
                    break;
                }
                if b[j] == b'#' && j > i && (b[j - 1] == b' ' || b[j - 1] == b'\t') {
                    break;
                }
                j += 1;
            }
            // Trailing spaces are not part of the value.
            while j > i && (b[j - 1] == b' ' || b[j - 1] == b'\t') {
                j -= 1;
            }
            j
        }
    }
}

fn key_value_ranges(line: &str) -> Vec<std::ops::Range<usize>> {
    let b = line.as_bytes();
    let mut ranges = Vec::new();
    let mut i = 0;
    let mut depth = 0usize;
    // Where a key may start: the line's first word (after `- `), or after `{`, `[` or `,`.
    let mut key_may_start = true;
    while i < b.len() {
        let c = b[i];
        if c == b' ' || c == b'\t' || (c == b'-' && key_may_start && b.get(i + 1) == Some(&b' ')) {
            i += 1;
            continue;
        }
        if c == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') {
            break;
        }
        if key_may_start {
            if let Some((after_colon, key)) = key_at(line, i) {
                let mut v = after_colon;
                while v < b.len() && (b[v] == b' ' || b[v] == b'\t') {
                    v += 1;
                }
                let nested = matches!(b.get(v), Some(b'{' | b'[' | b'|' | b'>' | b'#') | None);
                if is_secret_key(key) && !nested {
                    let end = value_end(line, v, depth);
                    ranges.push(v..end);
                    i = end;
                } else {
                    i = v;
                }
                key_may_start = false;
                continue;
            }
        }
        match c {
            b'{' | b'[' => {
                depth += 1;
                key_may_start = true;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                key_may_start = false;
            }
            b',' if depth > 0 => key_may_start = true,
            b'"' | b'\'' => {
                // Skip a quoted scalar whole: its commas and colons are text.
                i = value_end(line, i, depth);
                key_may_start = false;
                continue;
            }
            _ => key_may_start = false,
        }
        i += line[i..].chars().next().map(char::len_utf8).unwrap_or(1);
    }
    ranges
}

/// The credentials of every `scheme://user:password@host` in `text`: the password, or a lone
/// user part (often a token, as in `https://TOKEN@github.com/...`).
fn url_credential_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find("://") {
        let start = from + pos + 3;
        let tail = &text[start..];
        // The URL runs to whitespace or a quote; its userinfo ends at the last `@` in it.
        let end = tail.find(|c: char| c.is_whitespace() || c == '"' || c == '\'').unwrap_or(tail.len());
        let url = &tail[..end];
        let authority_end = url.find(['/', '?', '#']).map(|slash| {
            // A password may hold `/`: an `@` after the slash still ends the userinfo.
            url.rfind('@').filter(|at| *at > slash).map(|at| at + 1).unwrap_or(slash)
        });
        let authority = &url[..authority_end.unwrap_or(url.len())];
        match authority.rfind('@') {
            Some(at) => {
                let secret_from = authority[..at].find(':').map_or(0, |c| c + 1);
                ranges.push(start + secret_from..start + at);
                from = start + at;
            }
            None => from = start,
        }
    }
    ranges
}

#[cfg(test)]
mod mask_tests {
    use super::*;

    #[test]
    fn secret_values_are_masked_in_quoted_lines() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("  password: \"hunter2-secret\"", None, "  password: ***"),
            ("  pasword: \"hunter2-secret\"", None, "  pasword: ***"),
            ("  passwrd: hunter2", None, "  passwrd: ***"),
            ("  secert: 'it''s secret'  # old", None, "  secert: ***  # old"),
            ("  password_file: /etc/caretaker/key", None, "  password_file: /etc/caretaker/key"),
            ("  url_env: DATABASE_URL", None, "  url_env: DATABASE_URL"),
            (
                "database: { kind: postgrs, url: \"postgres://app:pw-123@db/app\" }",
                None,
                "database: { kind: postgrs, url: *** }",
            ),
            ("smtp: { host: mail, password: p4ss, from: a@b }", None, "smtp: { host: mail, password: ***, from: a@b }"),
            ("    API_TOKEN: { secret: \"abc,def\" }", None, "    API_TOKEN: { secret: *** }"),
            ("    SECRET_KEY: plain-value", None, "    SECRET_KEY: ***"),
            ("  - webhook: https://hooks.example.org/T0K3N", None, "  - webhook: ***"),
            ("  git: https://ghp_T0K3N@github.com/o/r.git", None, "  git: https://***@github.com/o/r.git"),
            ("  repo: \"s3://id:k3y/with/slash@host/bucket\"", None, "  repo: \"s3://id:***@host/bucket\""),
            ("  schedul: \"daily 00:30\"", None, "  schedul: \"daily 00:30\""),
            ("  keep: { daily: 7 }", None, "  keep: { daily: 7 }"),
            ("    \"hunter2-secret\"", Some("  password:"), "    ***"),
            ("  url: postgres://u:pw@h/d", Some("  - webhook:"), "  url: ***"),
            ("    other: x", Some("  password:"), "    other: x"),
            ("  kind: postgres  # password: none", None, "  kind: postgres  # password: none"),
        ];
        for (line, prev, want) in cases {
            assert_eq!(&mask_secrets(line, *prev), want, "{line:?}");
        }
    }

    #[test]
    fn secret_like_keys() {
        for k in ["password", "pasword", "PASSWD", "secret", "secret_access_key", "access_key_id", "url", "admin_url"] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["schedule", "keep", "kind", "host", "name", "password_file", "url_env", "from", "retries"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn caret_moves_with_masked_values() {
        let line = "    admin: { password_hash: hunter2, password: x }";
        let ranges = secret_ranges(line, None);
        let masked = apply_masks(line, &ranges);
        assert_eq!(masked, "    admin: { password_hash: ***, password: *** }");
        // `password` starts at column 38 of the file's line, 34 of the masked one.
        assert_eq!(masked_column(line, &ranges, 38), 34);
        assert_eq!(&masked[33..41], "password");
        // Inside a masked value: the mask's start. Before any mask: unchanged.
        assert_eq!(masked_column(line, &ranges, 31), 29);
        assert_eq!(masked_column(line, &ranges, 5), 5);
    }
}
