//! Which installed versions are outdated, given the versions an index offers.
//!
//! The rule: pre-releases and dev releases on the index are ignored. Django on an LTS line
//! (1.8, 1.11, and every `x.2` from 2.2 on) is compared within that line: 4.2.10 is outdated
//! when 4.2.20 exists, never because of 5.x — staying on an LTS is a choice, not a delay.
//! Every other package (and Django off an LTS line) is compared with the newest release
//! overall; the newest of its own major line is shown beside it, as the step that is usually
//! safe to take.

use pep440_rs::Version;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub package: String,
    pub version: String,
    /// The version it is compared with (the newest of the LTS line, or the newest overall).
    pub compared_with: Option<String>,
    /// The newest release overall.
    pub latest: Option<String>,
    /// The newest release of the installed major line (of the LTS line for Django LTS).
    pub latest_in_line: Option<String>,
    /// `"4.2 LTS"` for a Django LTS line, else the major (`"3"`).
    pub line: String,
    pub outdated: bool,
}

/// Whether Django `v` is on an LTS line.
pub fn django_lts(v: &Version) -> bool {
    match v.release() {
        [1, 8, ..] | [1, 11, ..] => true,
        [major, 2, ..] => *major >= 2,
        _ => false,
    }
}

/// Judges `installed` of `package` (normalised) against `available` (the index's versions,
/// as strings; unparsable ones are ignored). `None` if the installed version does not parse.
pub fn judge(package: &str, installed: &str, available: &[String]) -> Option<Verdict> {
    let v = Version::from_str(installed.trim()).ok()?;
    let releases: Vec<Version> =
        available.iter().filter_map(|s| Version::from_str(s.trim()).ok()).filter(|x| !x.any_prerelease()).collect();
    let rel = v.release();
    let major = rel.first().copied().unwrap_or(0);
    let lts = package == "django" && django_lts(&v);
    let in_line = |x: &&Version| {
        let r = x.release();
        if lts {
            r.first() == rel.first() && r.get(1).copied().unwrap_or(0) == rel.get(1).copied().unwrap_or(0)
        } else {
            r.first().copied().unwrap_or(0) == major
        }
    };
    let latest = releases.iter().max().cloned();
    let latest_in_line = releases.iter().filter(in_line).max().cloned();
    let compared = if lts { latest_in_line.clone() } else { latest.clone() };
    let outdated = compared.as_ref().is_some_and(|c| *c > v);
    let line = if lts { format!("{}.{} LTS", major, rel.get(1).copied().unwrap_or(0)) } else { major.to_string() };
    Some(Verdict {
        package: package.to_string(),
        version: installed.to_string(),
        compared_with: compared.map(|x| x.to_string()),
        latest: latest.map(|x| x.to_string()),
        latest_in_line: latest_in_line.map(|x| x.to_string()),
        line,
        outdated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn django_lts_is_compared_within_its_line() {
        let idx = vs(&["4.2.10", "4.2.20", "5.0", "5.1.4", "5.2.19", "6.0a1"]);
        let v = judge("django", "4.2.10", &idx).unwrap();
        assert!(v.outdated);
        assert_eq!(v.compared_with.as_deref(), Some("4.2.20"));
        assert_eq!(v.latest.as_deref(), Some("5.2.19"));
        assert_eq!(v.line, "4.2 LTS");
        assert!(!judge("django", "4.2.20", &idx).unwrap().outdated, "the newest 4.2 is not outdated despite 5.x");
        // 5.1 is not an LTS: compared with the newest overall (pre-releases ignored).
        let v = judge("django", "5.1.4", &idx).unwrap();
        assert!(v.outdated);
        assert_eq!(v.compared_with.as_deref(), Some("5.2.19"));
        assert!(!judge("django", "5.2.19", &idx).unwrap().outdated);
    }

    #[test]
    fn other_packages_compare_with_the_newest_and_show_their_major_line() {
        let v = judge("requests", "2.28.0", &vs(&["2.28.0", "2.32.3", "3.0.0", "3.1.0rc1"])).unwrap();
        assert!(v.outdated);
        assert_eq!(v.compared_with.as_deref(), Some("3.0.0"));
        assert_eq!(v.latest_in_line.as_deref(), Some("2.32.3"));
        assert_eq!(v.line, "2");
        // Only an LTS of Django gets the line rule.
        assert!(judge("flask", "4.2.10", &vs(&["4.2.20", "5.0"])).unwrap().compared_with.as_deref() == Some("5.0"));
    }
}
