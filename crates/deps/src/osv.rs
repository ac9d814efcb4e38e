//! OSV advisories × installed versions → findings.
//!
//! The traps of the data, each handled here: an affected package may have several ranges and
//! several `introduced`/`fixed` pairs in one range; `last_affected` closes a range inclusively;
//! `withdrawn` advisories are skipped; the same vulnerability appears under several IDs
//! (PYSEC, GHSA, CVE) linked by `aliases`, and becomes one finding carrying all of them.

use crate::Installed;
use pep440_rs::Version;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

/// The part of an OSV record the report needs.
#[derive(Clone, Debug, Deserialize)]
pub struct Advisory {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub modified: Option<String>,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub affected: Vec<Affected>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Affected {
    #[serde(default)]
    pub package: Option<Package>,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Package {
    #[serde(default)]
    pub ecosystem: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Range {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Event {
    pub introduced: Option<String>,
    pub fixed: Option<String>,
    pub last_affected: Option<String>,
    pub limit: Option<String>,
}

/// The advisories of one ecosystem (PyPI), indexed by normalised package name. Withdrawn
/// advisories and other ecosystems are dropped as they are added.
#[derive(Default)]
pub struct Database {
    advisories: Vec<Advisory>,
    by_package: HashMap<String, Vec<usize>>,
    /// The newest `modified` of any record: the database's date.
    pub newest_modified: Option<String>,
    /// Records read, and of those withdrawn (skipped).
    pub records: usize,
    pub withdrawn: usize,
}

impl Database {
    /// Parses one OSV JSON record and keeps it if it is a live PyPI advisory.
    pub fn add_json(&mut self, bytes: &[u8]) -> Result<(), String> {
        let a: Advisory = serde_json::from_slice(bytes).map_err(|e| format!("not an OSV record: {e}"))?;
        self.add(a);
        Ok(())
    }

    pub fn add(&mut self, a: Advisory) {
        self.records += 1;
        if let Some(m) = &a.modified {
            if self.newest_modified.as_ref().is_none_or(|n| m > n) {
                self.newest_modified = Some(m.clone());
            }
        }
        if a.withdrawn.is_some() {
            self.withdrawn += 1;
            return;
        }
        let idx = self.advisories.len();
        let mut names = BTreeSet::new();
        for af in &a.affected {
            if let Some(p) = &af.package {
                if p.ecosystem == "PyPI" {
                    if let Some(n) = crate::normalize(&p.name) {
                        names.insert(n);
                    }
                }
            }
        }
        if names.is_empty() {
            return;
        }
        for n in names {
            self.by_package.entry(n).or_default().push(idx);
        }
        self.advisories.push(a);
    }

    pub fn advisories(&self) -> usize {
        self.advisories.len()
    }
}

/// One vulnerability of one installed package: every ID it is known by (merged through
/// aliases), and the versions that fix it (above the installed one).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub package: String,
    pub version: String,
    /// Sorted; the first is the finding's name in the report.
    pub ids: Vec<String>,
    pub summary: Option<String>,
    /// Sorted by version, lowest first.
    pub fixed_in: Vec<String>,
}

fn parse(v: &str) -> Option<Version> {
    Version::from_str(v.trim()).ok()
}

/// Whether `v` falls in one ECOSYSTEM range: events sorted by version (`introduced: "0"`
/// first) and walked in order; `introduced` at or below `v` opens, `fixed` at or below `v`
/// closes, `last_affected` below `v` closes. Events whose version does not parse are ignored.
pub fn in_range(v: &Version, events: &[Event]) -> bool {
    #[derive(Clone, Copy)]
    enum K {
        Introduced,
        Fixed,
        LastAffected,
    }
    let mut evs: Vec<(Option<Version>, K)> = Vec::new();
    for e in events {
        if let Some(i) = &e.introduced {
            if i == "0" {
                evs.push((None, K::Introduced));
            } else if let Some(x) = parse(i) {
                evs.push((Some(x), K::Introduced));
            }
        }
        if let Some(x) = e.fixed.as_deref().and_then(parse) {
            evs.push((Some(x), K::Fixed));
        }
        if let Some(x) = e.last_affected.as_deref().and_then(parse) {
            evs.push((Some(x), K::LastAffected));
        }
    }
    // None (= "0") sorts before every version; the sort is stable for equal versions.
    evs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut affected = false;
    for (ver, k) in evs {
        match (k, ver) {
            (K::Introduced, None) => affected = true,
            (K::Introduced, Some(x)) if *v >= x => affected = true,
            (K::Fixed, Some(x)) if *v >= x => affected = false,
            (K::LastAffected, Some(x)) if *v > x => affected = false,
            _ => {}
        }
    }
    affected
}

/// Whether `v` of `package` (normalised) is affected by `a`, and the fixed versions above it.
fn affects(a: &Advisory, package: &str, v: &Version) -> Option<Vec<Version>> {
    let mut hit = false;
    let mut fixed = Vec::new();
    for af in &a.affected {
        let Some(p) = &af.package else { continue };
        if p.ecosystem != "PyPI" || crate::normalize(&p.name).as_deref() != Some(package) {
            continue;
        }
        if af.versions.iter().any(|x| parse(x).as_ref() == Some(v)) {
            hit = true;
        }
        for r in af.ranges.iter().filter(|r| r.kind == "ECOSYSTEM") {
            if in_range(v, &r.events) {
                hit = true;
                fixed.extend(r.events.iter().filter_map(|e| e.fixed.as_deref().and_then(parse)).filter(|f| f > v));
            }
        }
    }
    hit.then_some(fixed)
}

/// Every vulnerability affecting the installed packages: one finding per vulnerability and
/// package, advisories linked by an ID or alias merged into one. Sorted by package, then ID.
pub fn findings(db: &Database, installed: &[Installed]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for pkg in installed {
        if !seen.insert((pkg.normalized.clone(), pkg.version.clone())) {
            continue;
        }
        let Some(v) = parse(&pkg.version) else { continue };
        let Some(idxs) = db.by_package.get(&pkg.normalized) else { continue };
        // Matching advisories, then groups of them sharing any ID (union–find over IDs).
        let mut hits: Vec<(&Advisory, Vec<Version>)> = Vec::new();
        for &i in idxs {
            let a = &db.advisories[i];
            if let Some(f) = affects(a, &pkg.normalized, &v) {
                hits.push((a, f));
            }
        }
        let mut parent: Vec<usize> = (0..hits.len()).collect();
        fn root(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        let mut owner: HashMap<&str, usize> = HashMap::new();
        for (i, (a, _)) in hits.iter().enumerate() {
            for id in std::iter::once(&a.id).chain(a.aliases.iter()) {
                match owner.get(id.as_str()) {
                    Some(&j) => {
                        let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                        parent[ri] = rj;
                    }
                    None => {
                        owner.insert(id, i);
                    }
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..hits.len() {
            let r = root(&mut parent, i);
            groups.entry(r).or_default().push(i);
        }
        let mut found: Vec<Finding> = groups
            .into_values()
            .map(|members| {
                let mut ids = BTreeSet::new();
                let mut fixed = BTreeSet::new();
                let mut summary = None;
                for &m in &members {
                    let (a, f) = &hits[m];
                    ids.insert(a.id.clone());
                    ids.extend(a.aliases.iter().cloned());
                    fixed.extend(f.iter().cloned());
                    if summary.is_none() {
                        summary = a.summary.clone();
                    }
                }
                Finding {
                    package: pkg.normalized.clone(),
                    version: pkg.version.clone(),
                    ids: ids.into_iter().collect(),
                    summary,
                    fixed_in: fixed.into_iter().map(|v| v.to_string()).collect(),
                }
            })
            .collect();
        found.sort_by(|a, b| a.ids.cmp(&b.ids));
        out.extend(found);
    }
    out.sort_by(|a, b| (&a.package, &a.version, &a.ids).cmp(&(&b.package, &b.version, &b.ids)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: &str, v: &str) -> Event {
        let mut e = Event::default();
        match kind {
            "i" => e.introduced = Some(v.into()),
            "f" => e.fixed = Some(v.into()),
            _ => e.last_affected = Some(v.into()),
        }
        e
    }

    #[test]
    fn ranges_with_several_fixed_events_and_last_affected() {
        // Written out of order on purpose: the walk sorts them.
        let multi =
            [ev("f", "4.2.11"), ev("i", "0"), ev("f", "3.2.25"), ev("i", "4.0"), ev("i", "5.0"), ev("f", "5.0.3")];
        let cases = [
            ("3.2.24", true),
            ("3.2.25", false),
            ("3.3", false),
            ("4.0rc1", false),
            ("4.0", true),
            ("4.2.10", true),
            ("4.2.11", false),
            ("5.0.2", true),
            ("5.0.3", false),
            ("5.1", false),
        ];
        for (v, want) in cases {
            assert_eq!(in_range(&parse(v).unwrap(), &multi), want, "{v}");
        }
        let last = [ev("i", "1.0"), ev("l", "1.4")];
        for (v, want) in [("0.9", false), ("1.0", true), ("1.4", true), ("1.4.post1", false), ("1.5", false)] {
            assert_eq!(in_range(&parse(v).unwrap(), &last), want, "{v}");
        }
    }

    fn adv(v: serde_json::Value) -> Advisory {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn aliases_merge_withdrawn_skip_names_normalise() {
        let mut db = Database::default();
        let aff = |name: &str| json!([{"package": {"ecosystem": "PyPI", "name": name}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}]);
        db.add(adv(json!({"id": "PYSEC-1", "aliases": ["CVE-1"], "affected": aff("Foo_Bar")})));
        db.add(adv(json!({"id": "GHSA-1", "aliases": ["CVE-1"], "affected": aff("foo.bar")})));
        db.add(adv(json!({"id": "GHSA-2", "withdrawn": "2024-01-01T00:00:00Z", "affected": aff("foo-bar")})));
        db.add(adv(json!({"id": "GHSA-3", "affected": json!([{"package": {"ecosystem": "npm", "name": "foo-bar"}, "versions": ["1.0"]}])})));
        let inst = [Installed { name: "FOO-bar".into(), normalized: "foo-bar".into(), version: "1.0".into() }];
        let f = findings(&db, &inst);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].ids, ["CVE-1", "GHSA-1", "PYSEC-1"]);
        assert_eq!(f[0].fixed_in, ["2.0"]);
        assert_eq!((db.records, db.withdrawn, db.advisories()), (4, 1, 2));
    }
}
