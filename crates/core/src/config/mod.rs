//! The config file `caretaker.yml`: schema version 1.
//!
//! [`load`] turns the file's text into a validated [`Config`] or into [`Diagnostics`] listing
//! every problem with file:line:column. Secrets are resolved through a [`SecretSource`], the
//! only I/O, provided by the caller. The schema is documented in `docs/config.md`; every
//! example config in the repository is parsed by a test.

mod clones;
mod diagnostic;
mod model;
mod os;
mod parse;
mod reader;
mod secret;
pub mod template;
pub mod tls;

pub use clones::{Clones, MAIL_SINK_HOST, MAIL_SINK_PORT};
pub use diagnostic::{is_secret_key, mask_secrets, suggest, Diagnostic, Diagnostics, Location, Severity};
pub use model::*;
pub use os::{Os, OsUpdate, Reboot};
pub use parse::{alerts_defaults, release_pointer_problems, DEFAULT_HTTP_LISTEN};
pub use secret::{NoSecrets, Redactor, Secret, SecretOrigin, SecretSource};
pub use tls::{Acme, AcmeDirectory, CertificateFiles, Challenge, Eab, Hsts, Tls};

use reader::Cx;
use std::path::Path;

/// A loaded config together with the warnings found while loading it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Diagnostics,
}

/// Parses and validates a config file's text.
///
/// `file` is the path shown in messages and the base for relative paths in the config;
/// `file_mode` the permission bits of the config file, when known, to warn about
/// world-readable files that hold secrets.
pub fn load(text: &str, file: &Path, file_mode: Option<u32>, source: &dyn SecretSource) -> Result<Loaded, Diagnostics> {
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cx =
        Cx { file: file.display().to_string(), base_dir, source, diagnostics: Diagnostics::default(), anchor: None };
    let opts = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
    if let Some(line) = second_document(text) {
        cx.diagnostics.0.push(Diagnostic {
            severity: Severity::Error,
            file: cx.file.clone(),
            location: Some(Location { line, column: 1 }),
            path: String::new(),
            message: "a second YAML document starts here; caretaker reads one document per config file".into(),
            hint: Some("remove the `---` line and merge the two parts, or split them into two config files".into()),
        });
    }
    let root = match marked_yaml::parse_yaml_with_options(0, text, opts) {
        Ok(root) => root,
        Err(e) => {
            cx.diagnostics.0.push(yaml_error(&cx.file, &e));
            return Err(cx.diagnostics);
        }
    };
    // Problems with the file as a whole point at its start.
    cx.anchor = Some(marked_yaml::Span::new_start(marked_yaml::Marker::new(0, 0, 1, 1)));
    let config = parse::config(&mut cx, &root);
    if let Some(cfg) = &config {
        parse::cross_checks(&mut cx, cfg, &root);
        if let Some(mode) = file_mode {
            let inline: Vec<&Secret> =
                cfg.secrets().into_iter().filter(|s| *s.origin() == SecretOrigin::Inline).collect();
            if mode & 0o004 != 0 && !inline.is_empty() {
                cx.diagnostics.0.push(Diagnostic {
                    severity: Severity::Error,
                    file: cx.file.clone(),
                    location: None,
                    path: String::new(),
                    message: format!(
                        "the config file holds {} secret{} and is readable by every user on this machine",
                        inline.len(),
                        if inline.len() == 1 { "" } else { "s" }
                    ),
                    hint: Some(format!(
                        "run `chmod 600 {}` (or pass --allow-world-readable-config to accept the risk)",
                        cx.file
                    )),
                });
            }
        }
    }
    cx.diagnostics.sort();
    match config {
        Some(config) if !cx.diagnostics.has_errors() => Ok(Loaded { config, warnings: cx.diagnostics }),
        _ => {
            if !cx.diagnostics.has_errors() {
                // A reader returned None without recording why: a bug, but never a silent one.
                cx.diagnostics.0.push(Diagnostic {
                    severity: Severity::Error,
                    file: cx.file.clone(),
                    location: None,
                    path: String::new(),
                    message: "the config file could not be read (internal error: no diagnostic recorded)".into(),
                    hint: None,
                });
            }
            Err(cx.diagnostics)
        }
    }
}

/// The largest config file read: far beyond any real one, small enough that a mistaken
/// `--config /dev/zero` or a huge file cannot exhaust memory.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The config file's bytes as text; invalid UTF-8 is an error at the line and column of the
/// first bad byte.
pub fn decode<'a>(bytes: &'a [u8], file: &Path) -> Result<&'a str, Diagnostics> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() + 1;
            Err(Diagnostics(vec![Diagnostic {
                severity: Severity::Error,
                file: file.display().to_string(),
                location: Some(Location { line, column }),
                path: String::new(),
                message: format!("the config file is not valid UTF-8 (byte 0x{:02x} here)", bytes[e.valid_up_to()]),
                hint: Some("save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)".into()),
            }]))
        }
    }
}

/// The line (1-based) where a second YAML document starts: a `---` after content, or content
/// after a `...` end marker. Document markers stand at the start of a line, so an indented
/// `---` inside a block scalar is not one.
fn second_document(text: &str) -> Option<usize> {
    let mut content = false;
    let mut ended = false;
    for (i, line) in text.lines().enumerate() {
        let is_marker = |m: &str| line == m || line.strip_prefix(m).is_some_and(|r| r.starts_with([' ', '\t']));
        if is_marker("---") {
            if content || ended {
                return Some(i + 1);
            }
            continue;
        }
        if is_marker("...") {
            ended = true;
            continue;
        }
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || (!content && t.starts_with('%')) {
            continue;
        }
        if ended {
            return Some(i + 1);
        }
        content = true;
    }
    None
}

/// Downgrades the world-readable error to a warning (the operator's explicit choice).
pub fn allow_world_readable(diags: &mut Diagnostics) {
    for d in &mut diags.0 {
        if d.location.is_none() && d.message.contains("readable by every user") {
            d.severity = Severity::Warning;
        }
    }
}

fn yaml_error(file: &str, e: &marked_yaml::LoadError) -> Diagnostic {
    use marked_yaml::LoadError::*;
    let (marker, message, hint): (Option<&marked_yaml::Marker>, String, Option<String>) = match e {
        TopLevelMustBeMapping(m) => {
            (Some(m), "the config file must be a mapping of keys (version:, app:, ...)".into(), None)
        }
        TopLevelMustBeSequence(m) => (Some(m), "unexpected top-level list".into(), None),
        UnexpectedAnchor(m) => (
            Some(m),
            "YAML anchors and aliases (&name, *name) are not supported".into(),
            Some("write the values out".into()),
        ),
        MappingKeyMustBeScalar(m) => (Some(m), "keys must be plain words".into(), None),
        UnexpectedTag(m) => (Some(m), "YAML tags (!tag) are not supported".into(), None),
        ScanError(m, err) => (
            Some(m),
            format!("this is not valid YAML: {}", err.info()),
            Some("check indentation and quoting near this place".into()),
        ),
        DuplicateKey(inner) => {
            let prev = inner.prev_key.span().start().map(|m| format!("line {}", m.line())).unwrap_or_default();
            (
                inner.key.span().start(),
                format!("key `{}` appears twice in the same mapping (first at {prev})", inner.key.as_str()),
                Some("remove one of them".into()),
            )
        }
    };
    Diagnostic {
        severity: Severity::Error,
        file: file.to_string(),
        location: marker.map(|m| Location { line: m.line(), column: m.column() }),
        path: String::new(),
        message,
        hint,
    }
}

#[cfg(test)]
mod tests;
