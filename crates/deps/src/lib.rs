//! The app's dependency report, the pure part (docs/deps.md): reading resolved dependencies
//! from a freeze or a lockfile ([`read`]), matching them against OSV advisories ([`osv`]) and
//! judging which are outdated ([`outdated`]). No I/O: the binary reads files, runs
//! `pip freeze`, opens the OSV zip and asks the package index.
//!
//! Names are compared PEP 503-normalised (through `pep508_rs::PackageName`), versions with PEP
//! 440 semantics (`pep440_rs::Version`).

pub mod osv;
pub mod outdated;
pub mod read;

use pep508_rs::PackageName;
use std::str::FromStr;

/// A name normalised as PEP 503 says (`Django_Foo.bar` → `django-foo-bar`); `None` if it is
/// not a valid package name at all.
pub fn normalize(name: &str) -> Option<String> {
    PackageName::from_str(name.trim()).ok().map(|n| n.to_string())
}

/// One resolved dependency: its name as written, its normalised name and its version.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Installed {
    pub name: String,
    pub normalized: String,
    pub version: String,
}
