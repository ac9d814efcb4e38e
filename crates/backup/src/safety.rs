//! Safety checks before and after a backup, and before a restore: pure decisions over
//! measurements and observations, no I/O.
//!
//! A backup that silently saves an empty or half-lost file store is worse than no backup: it
//! pushes good snapshots out of retention. So a run is refused when a file tree is missing or
//! empty (unless the config allows it), or when the data shrank suspiciously since the previous
//! snapshot.
//!
//! A restore must never destroy live data: [`plan_restore`] decides, before anything is
//! written, whether a restore is refused (live data where it would write, or a non-empty
//! `--target`, without `--force`) and what a forced one keeps aside first.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// What one file tree looked like just before the backup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeMeasure {
    pub exists: bool,
    pub is_dir: bool,
    /// Non-directory entries (files, symlinks, ...).
    pub entries: u64,
    /// Bytes in regular files.
    pub bytes: u64,
}

/// Sizes recorded in (or about to be recorded in) a snapshot, for comparison with the next.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    pub trees: BTreeMap<PathBuf, TreeMeasure>,
    pub streams: BTreeMap<String, u64>,
}

impl Measurement {
    pub fn tree_bytes(&self) -> u64 {
        self.trees.values().map(|t| t.bytes).sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyPolicy {
    /// Trees that may legitimately be empty.
    pub allow_empty: Vec<PathBuf>,
    /// Refuse when something shrank by more than this percentage; 100 disables the check.
    pub max_shrink_percent: u8,
}

/// Why a backup was refused. Each names what to look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    TreeMissing(PathBuf),
    TreeEmpty(PathBuf),
    Shrunk { what: String, previous: u64, current: u64, percent: u8, max_percent: u8 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TreeMissing(p) => write!(f, "file tree {} does not exist (lost mount?)", p.display()),
            Refusal::TreeEmpty(p) => write!(
                f,
                "file tree {} is empty (lost mount?); set `allow_empty: true` for it if that is expected",
                p.display()
            ),
            Refusal::Shrunk { what, previous, current, percent, max_percent } => write!(
                f,
                "{what} shrank by {percent}% since the previous snapshot ({previous} → {current} bytes), \
                 more than the allowed {max_percent}% (backup.max_shrink_percent)"
            ),
        }
    }
}

/// Checks that can be made before anything is written: trees exist, are not empty, and the
/// file trees as a whole did not shrink too much since `previous`.
pub fn check_before(
    previous: Option<&Measurement>,
    current: &Measurement,
    policy: &SafetyPolicy,
) -> Result<(), Refusal> {
    for (path, m) in &current.trees {
        if !m.exists {
            return Err(Refusal::TreeMissing(path.clone()));
        }
        if m.entries == 0 && !policy.allow_empty.contains(path) {
            return Err(Refusal::TreeEmpty(path.clone()));
        }
    }
    if let Some(prev) = previous {
        // Only compare trees that were in the previous snapshot too: adding a tree to the
        // config must not look like growth that hides a shrink elsewhere.
        let prev_bytes: u64 = current.trees.keys().filter_map(|p| prev.trees.get(p)).map(|t| t.bytes).sum();
        let cur_bytes: u64 =
            current.trees.iter().filter(|(p, _)| prev.trees.contains_key(*p)).map(|(_, t)| t.bytes).sum();
        shrink("the file trees", prev_bytes, cur_bytes, policy.max_shrink_percent)?;
    }
    Ok(())
}

/// Checks on the streams, which are only measured while they are written.
pub fn check_streams(
    previous: Option<&Measurement>,
    current: &Measurement,
    policy: &SafetyPolicy,
) -> Result<(), Refusal> {
    if let Some(prev) = previous {
        for (name, bytes) in &current.streams {
            if let Some(p) = prev.streams.get(name) {
                shrink(&format!("stream {name}"), *p, *bytes, policy.max_shrink_percent)?;
            }
        }
    }
    Ok(())
}

fn shrink(what: &str, previous: u64, current: u64, max_percent: u8) -> Result<(), Refusal> {
    if max_percent >= 100 || previous == 0 || current >= previous {
        return Ok(());
    }
    let dropped = previous - current;
    let percent = ((u128::from(dropped) * 100) / u128::from(previous)) as u8;
    if percent > max_percent {
        return Err(Refusal::Shrunk { what: what.to_string(), previous, current, percent, max_percent });
    }
    Ok(())
}

/// What a restore would write to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A file tree, the config file or a file below `--target`.
    Path(PathBuf),
    /// The configured database.
    Database(String),
    /// A compose named volume.
    Volume(String),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Path(p) => write!(f, "{}", p.display()),
            Place::Database(d) => write!(f, "database {d}"),
            Place::Volume(v) => write!(f, "volume {v}"),
        }
    }
}

/// One place a restore would write to, as observed just before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub place: Place,
    /// What is there now, when it is live data ("is not empty", "has 3 tables"); `None` when
    /// the place is missing or empty, so writing there destroys nothing.
    pub live: Option<String>,
    /// A path that is a mount point: it cannot be renamed aside, so live data there is
    /// refused even with `force`.
    pub mount_point: bool,
}

/// What a restore found before writing anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreObservations {
    pub destinations: Vec<Destination>,
    /// With `--target DIR`: the directory, and whether it holds anything now.
    pub target: Option<(PathBuf, bool)>,
    pub force: bool,
}

/// A restore that may go ahead: these places hold live data and are kept aside first (a path
/// is renamed, a database or volume copied aside), in this order. Empty: nothing is replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePlan {
    pub keep_aside: Vec<Place>,
}

/// Why a restore is refused: everything it would have overwritten. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreRefusal {
    pub live: Vec<String>,
}

impl fmt::Display for RestoreRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refusing to restore over live data: {}", self.live.join("; "))
    }
}

/// Decides a restore before anything is written: refused when a destination holds live data or
/// the `--target` directory is not empty, unless `force`; a forced restore keeps every live
/// destination aside — refused even then when one is a mount point (it cannot be renamed).
pub fn plan_restore(obs: &RestoreObservations) -> Result<RestorePlan, RestoreRefusal> {
    let mut live: Vec<String> = Vec::new();
    if let Some((dir, true)) = &obs.target {
        live.push(format!("the target directory {} is not empty", dir.display()));
    }
    live.extend(obs.destinations.iter().filter_map(|d| d.live.as_ref().map(|what| format!("{} {what}", d.place))));
    if !live.is_empty() && !obs.force {
        return Err(RestoreRefusal { live });
    }
    let fixed: Vec<String> = obs
        .destinations
        .iter()
        .filter(|d| d.live.is_some() && d.mount_point)
        .map(|d| format!("{} is a mount point holding data, which --force cannot rename aside", d.place))
        .collect();
    if !fixed.is_empty() {
        return Err(RestoreRefusal { live: fixed });
    }
    Ok(RestorePlan {
        keep_aside: obs.destinations.iter().filter(|d| d.live.is_some()).map(|d| d.place.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: u64, bytes: u64) -> TreeMeasure {
        TreeMeasure { exists: true, is_dir: true, entries, bytes }
    }

    fn measure(trees: &[(&str, TreeMeasure)], streams: &[(&str, u64)]) -> Measurement {
        Measurement {
            trees: trees.iter().map(|(p, t)| (PathBuf::from(p), t.clone())).collect(),
            streams: streams.iter().map(|(n, b)| (n.to_string(), *b)).collect(),
        }
    }

    fn policy(max: u8) -> SafetyPolicy {
        SafetyPolicy { allow_empty: vec![PathBuf::from("/allowed")], max_shrink_percent: max }
    }

    #[test]
    fn missing_tree_is_refused() {
        let cur = measure(&[("/srv/media", TreeMeasure::default())], &[]);
        assert_eq!(check_before(None, &cur, &policy(50)), Err(Refusal::TreeMissing("/srv/media".into())));
    }

    #[test]
    fn empty_tree_is_refused_unless_allowed() {
        let cur = measure(&[("/srv/media", tree(0, 0))], &[]);
        assert_eq!(check_before(None, &cur, &policy(50)), Err(Refusal::TreeEmpty("/srv/media".into())));
        let cur = measure(&[("/allowed", tree(0, 0))], &[]);
        assert_eq!(check_before(None, &cur, &policy(50)), Ok(()));
    }

    #[test]
    fn shrink_beyond_the_limit_is_refused() {
        let prev = measure(&[("/a", tree(10, 1000))], &[]);
        let cur = measure(&[("/a", tree(5, 400))], &[]);
        let err = check_before(Some(&prev), &cur, &policy(50)).unwrap_err();
        assert!(matches!(err, Refusal::Shrunk { percent: 60, .. }), "{err:?}");
        assert_eq!(check_before(Some(&prev), &cur, &policy(60)), Ok(()));
        assert_eq!(check_before(Some(&prev), &cur, &policy(100)), Ok(()), "100 disables the check");
    }

    #[test]
    fn growth_and_new_trees_pass() {
        let prev = measure(&[("/a", tree(10, 1000))], &[]);
        let cur = measure(&[("/a", tree(10, 2000)), ("/b", tree(1, 1))], &[]);
        assert_eq!(check_before(Some(&prev), &cur, &policy(10)), Ok(()));
    }

    #[test]
    fn a_new_tree_does_not_hide_a_shrunk_one() {
        let prev = measure(&[("/a", tree(10, 1000))], &[]);
        let cur = measure(&[("/a", tree(1, 10)), ("/b", tree(100, 5000))], &[]);
        assert!(check_before(Some(&prev), &cur, &policy(50)).is_err());
    }

    #[test]
    fn shrunk_stream_is_refused() {
        let prev = measure(&[], &[("db", 1000)]);
        let cur = measure(&[], &[("db", 10)]);
        assert!(check_streams(Some(&prev), &cur, &policy(50)).is_err());
        let cur = measure(&[], &[("db", 900), ("new", 1)]);
        assert_eq!(check_streams(Some(&prev), &cur, &policy(50)), Ok(()));
    }

    fn dest(place: Place, live: bool) -> Destination {
        Destination { place, live: live.then(|| "is not empty".to_string()), mount_point: false }
    }

    #[test]
    fn restore_plan_refuses_live_data_without_force_and_keeps_it_aside_with_force() {
        let tree = || Place::Path("/srv/media".into());
        let db = || Place::Database("app".into());
        let vol = || Place::Volume("p_data".into());
        let target = |non_empty: bool| Some((PathBuf::from("/tmp/out"), non_empty));
        // (destinations, target, force) → Ok(kept aside) or Err(number of reasons)
        #[allow(clippy::type_complexity)]
        let cases: Vec<(Vec<Destination>, Option<(PathBuf, bool)>, bool, Result<Vec<Place>, usize>)> = vec![
            (vec![dest(tree(), false), dest(db(), false)], None, false, Ok(vec![])),
            (vec![dest(tree(), false), dest(db(), false)], None, true, Ok(vec![])),
            (vec![dest(tree(), true), dest(db(), false)], None, false, Err(1)),
            (vec![dest(tree(), true), dest(db(), true), dest(vol(), true)], None, false, Err(3)),
            (vec![dest(tree(), true), dest(db(), true), dest(vol(), false)], None, true, Ok(vec![tree(), db()])),
            (vec![], target(false), false, Ok(vec![])),
            (vec![], target(true), false, Err(1)),
            (vec![], target(true), true, Ok(vec![])),
            (vec![dest(Place::Path("/tmp/out/srv".into()), true)], target(true), false, Err(2)),
            (
                vec![dest(Place::Path("/tmp/out/srv".into()), true)],
                target(true),
                true,
                Ok(vec![Place::Path("/tmp/out/srv".into())]),
            ),
        ];
        for (i, (destinations, target, force, want)) in cases.into_iter().enumerate() {
            let got = plan_restore(&RestoreObservations { destinations, target, force });
            match (got, want) {
                (Ok(plan), Ok(kept)) => assert_eq!(plan.keep_aside, kept, "case {i}"),
                (Err(r), Err(n)) => assert_eq!(r.live.len(), n, "case {i}: {r}"),
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_live_mount_point_is_refused_even_with_force() {
        let mount = |live: bool| Destination {
            place: Place::Path("/srv/media".into()),
            live: live.then(|| "is not empty".into()),
            mount_point: true,
        };
        let obs = |d: Destination| RestoreObservations { destinations: vec![d], target: None, force: true };
        let r = plan_restore(&obs(mount(true))).unwrap_err();
        assert!(r.to_string().contains("/srv/media is a mount point"), "{r}");
        assert_eq!(plan_restore(&obs(mount(false))), Ok(RestorePlan { keep_aside: vec![] }), "an empty one is fine");
    }

    #[test]
    fn restore_refusal_names_everything_it_would_overwrite() {
        let obs = RestoreObservations {
            destinations: vec![
                dest(Place::Path("/srv/media".into()), true),
                Destination {
                    place: Place::Database("app".into()),
                    live: Some("has 2 tables".into()),
                    mount_point: false,
                },
            ],
            target: None,
            force: false,
        };
        let r = plan_restore(&obs).unwrap_err();
        assert_eq!(
            r.to_string(),
            "refusing to restore over live data: /srv/media is not empty; database app has 2 tables"
        );
    }
}
