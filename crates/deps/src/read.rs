//! Reading resolved dependencies: `pip freeze` output and pinned `requirements.txt` (PEP 508
//! lines through `pep508_rs`), `uv.lock` and `poetry.lock` (TOML), `Pipfile.lock` (JSON).

use crate::Installed;
use pep440_rs::Operator;
use pep508_rs::{Requirement, VersionOrUrl};
use std::str::FromStr;

/// What a source yielded: pinned packages, and what was left out with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Read {
    pub packages: Vec<Installed>,
    /// `"line 3: flask>=2 (not pinned to one version)"` and the like.
    pub skipped: Vec<String>,
}

/// The kinds of source, by the file name that identifies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `pip freeze` output or a `requirements.txt` with `==` pins.
    Requirements,
    UvLock,
    PoetryLock,
    PipfileLock,
}

impl Format {
    /// The format a lockfile's name says: `uv.lock`, `poetry.lock`, `Pipfile.lock`, else
    /// requirements (`requirements.txt`, `requirements/prod.txt`, a freeze saved to a file).
    pub fn from_file_name(name: &str) -> Format {
        match name {
            "uv.lock" => Format::UvLock,
            "poetry.lock" => Format::PoetryLock,
            "Pipfile.lock" => Format::PipfileLock,
            _ => Format::Requirements,
        }
    }
}

/// Reads `text` in `format`. An unreadable file (bad TOML/JSON) is an error; a line or entry
/// that names no single version is skipped and listed.
pub fn read(format: Format, text: &str) -> Result<Read, String> {
    match format {
        Format::Requirements => Ok(requirements(text)),
        Format::UvLock => toml_lock(text, true),
        Format::PoetryLock => toml_lock(text, false),
        Format::PipfileLock => pipfile_lock(text),
    }
}

fn installed(name: &str, version: &str) -> Option<Installed> {
    let normalized = crate::normalize(name)?;
    Some(Installed { name: name.to_string(), normalized, version: version.trim().to_string() })
}

/// `pip freeze` output or a requirements file: one PEP 508 requirement per logical line,
/// pinned with `==` or `===`. Comments, options (`--hash`, `-i`, `-r`), editable and direct
/// URL installs are skipped and listed.
pub fn requirements(text: &str) -> Read {
    let mut out = Read::default();
    // Join continuation lines, remembering where each logical line started.
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        let line = raw.trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            acc.push_str(head);
            acc.push(' ');
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(line);
        logical.push((start, acc));
    }
    if let Some(p) = pending {
        logical.push(p);
    }
    for (n, line) in logical {
        // A comment starts at `#` at the line's start or after whitespace (PEP 508 allows `#`
        // only in URLs, where it follows no space).
        let mut content = line.as_str();
        if let Some(pos) = content.find(" #").or(if content.trim_start().starts_with('#') { Some(0) } else { None }) {
            content = &content[..pos];
        }
        // Per-requirement options such as `--hash=sha256:...` follow the requirement.
        let content = match content.find(" --") {
            Some(pos) => &content[..pos],
            None => content,
        };
        let content = content.trim();
        if content.is_empty() {
            continue;
        }
        if content.starts_with('-') {
            out.skipped.push(format!("line {n}: {content} (an option, not a package)"));
            continue;
        }
        let req = match Requirement::<pep508_rs::VerbatimUrl>::from_str(content) {
            Ok(r) => r,
            Err(e) => {
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                out.skipped.push(format!("line {n}: {content} (not a requirement: {first})"));
                continue;
            }
        };
        let pinned = match &req.version_or_url {
            Some(VersionOrUrl::VersionSpecifier(specs)) if specs.len() == 1 => {
                let s = specs.iter().next().expect("one specifier");
                matches!(s.operator(), Operator::Equal | Operator::ExactEqual).then(|| s.version().to_string())
            }
            _ => None,
        };
        match pinned {
            Some(v) => out.packages.push(Installed {
                name: req.name.to_string(),
                normalized: req.name.to_string(),
                version: v,
            }),
            None => out.skipped.push(format!("line {n}: {content} (not pinned to one version)")),
        }
    }
    out
}

#[derive(serde::Deserialize)]
struct TomlLock {
    #[serde(default)]
    package: Vec<TomlPackage>,
}

#[derive(serde::Deserialize)]
struct TomlPackage {
    name: String,
    version: Option<String>,
    source: Option<toml::Value>,
}

/// `uv.lock` / `poetry.lock`: `[[package]]` tables with `name` and `version`. In `uv.lock`
/// the project itself (and workspace members) have an `editable` or `virtual` source: not a
/// dependency, skipped.
fn toml_lock(text: &str, uv: bool) -> Result<Read, String> {
    let lock: TomlLock = toml::from_str(text).map_err(|e| format!("not a valid lockfile: {e}"))?;
    let mut out = Read::default();
    for p in lock.package {
        if uv {
            let local = p
                .source
                .as_ref()
                .and_then(|s| s.as_table())
                .is_some_and(|t| t.contains_key("editable") || t.contains_key("virtual"));
            if local {
                out.skipped.push(format!("{} (the project itself)", p.name));
                continue;
            }
        }
        match p.version.as_deref().and_then(|v| installed(&p.name, v)) {
            Some(i) => out.packages.push(i),
            None => out.skipped.push(format!("{} (no version or not a package name)", p.name)),
        }
    }
    Ok(out)
}

/// `Pipfile.lock`: `default` and `develop` sections mapping names to `{"version": "==1.2"}`.
fn pipfile_lock(text: &str) -> Result<Read, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut out = Read::default();
    for section in ["default", "develop"] {
        let Some(map) = v.get(section).and_then(|s| s.as_object()) else { continue };
        for (name, entry) in map {
            let pin = entry.get("version").and_then(|x| x.as_str()).and_then(|s| s.strip_prefix("=="));
            match pin.and_then(|p| installed(name, p.trim_start_matches('='))) {
                Some(i) => out.packages.push(i),
                None => out.skipped.push(format!("{section}: {name} (no `==` version: a VCS or path install)")),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(r: &Read) -> Vec<String> {
        r.packages.iter().map(|p| format!("{}={}", p.normalized, p.version)).collect()
    }

    #[test]
    fn requirements_lines_with_extras_markers_hashes_and_continuations() {
        let text = "# top comment\nDjango==4.2.10  # LTS\npsycopg[binary]==3.3.9 ; python_version >= \"3.8\"\n\
                    Jinja2==3.1.2 \\\n    --hash=sha256:abc \\\n    --hash=sha256:def\nflask>=2\n-r base.txt\n\
                    -e git+https://example.invalid/x.git#egg=x\nzope.interface===6.0\n";
        let r = requirements(text);
        assert_eq!(names(&r), ["django=4.2.10", "psycopg=3.3.9", "jinja2=3.1.2", "zope-interface=6.0"]);
        assert_eq!(r.skipped.len(), 3, "{:?}", r.skipped);
        assert!(r.skipped[0].starts_with("line 7: flask>=2 (not pinned"), "{:?}", r.skipped);
    }

    #[test]
    fn uv_lock_skips_the_project_itself() {
        let text = "version = 1\n[[package]]\nname = \"myapp\"\nversion = \"0.1.0\"\nsource = { editable = \".\" }\n\
                    [[package]]\nname = \"Django\"\nversion = \"5.2.19\"\nsource = { registry = \"https://pypi.org/simple\" }\n";
        let r = read(Format::UvLock, text).unwrap();
        assert_eq!(names(&r), ["django=5.2.19"]);
        assert_eq!(r.skipped, ["myapp (the project itself)"]);
    }

    #[test]
    fn pipfile_lock_reads_both_sections_and_skips_vcs() {
        let text = r#"{"_meta": {}, "default": {"requests": {"version": "==2.31.0"}, "x": {"git": "https://e.invalid"}},
                       "develop": {"pytest": {"version": "==8.0.0"}}}"#;
        let r = read(Format::PipfileLock, text).unwrap();
        assert_eq!(names(&r), ["requests=2.31.0", "pytest=8.0.0"]);
        assert_eq!(r.skipped.len(), 1);
    }

    #[test]
    fn broken_lockfiles_are_errors() {
        assert!(read(Format::PoetryLock, "[[package]\n").is_err());
        assert!(read(Format::PipfileLock, "{").is_err());
    }
}
