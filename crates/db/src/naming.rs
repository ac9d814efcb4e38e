//! Names of snapshots and of databases kept aside, and which of them a retention policy
//! removes. Pure: the adapters list what exists and act on the decisions.
//!
//! A copy of database `app` is named `app__snap_20250314_093000_123` (a snapshot, optionally
//! followed by `_<label>`), `app__old_20250314_093000_123` (the previous contents, kept aside
//! by a revert or a replacing restore) or `app__restore_20250314_093000_123` (a restore under
//! way, renamed into place when complete; retention never selects these, the next restore
//! drops a leftover one). The timestamp is UTC to the millisecond, so names sort
//! by time and two copies taken in one second do not collide.
//!
//! Architecture invariant: an adapter only ever drops a database whose name parses here as a
//! copy of its own database, so the live database can never be dropped by a snapshot command.

use jiff::{SignedDuration, Timestamp};

/// A snapshot taken before a risky change, or the previous contents kept aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CopyKind {
    Snapshot,
    Aside,
    /// A restore under way: the dump goes into this fresh database, which is renamed into
    /// place only once complete. One left behind is a killed restore's, dropped by the next.
    Restoring,
    /// The database of a staging clone (`app__clone_<stamp>_<clone name>`, docs/clones.md):
    /// dropped when the clone is destroyed, never by retention.
    Clone,
}

impl CopyKind {
    fn tag(self) -> &'static str {
        match self {
            CopyKind::Snapshot => "snap",
            CopyKind::Aside => "old",
            CopyKind::Restoring => "restore",
            CopyKind::Clone => "clone",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CopyKind::Snapshot => "snapshot",
            CopyKind::Aside => "kept-aside",
            CopyKind::Restoring => "restoring",
            CopyKind::Clone => "clone",
        }
    }
}

/// A copy of a database, as named on the server (or next to the SQLite file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The database (or file) name of the copy itself.
    pub name: String,
    pub kind: CopyKind,
    pub taken_at: Timestamp,
    pub label: Option<String>,
}

const STAMP: &str = "%Y%m%d_%H%M%S";

/// The name for a new copy of `database`. Fails when the label is not `[a-z0-9-]{1,24}` or the
/// name would exceed `max_len` bytes (63 for PostgreSQL identifiers, 64 for MariaDB).
pub fn copy_name(
    database: &str,
    kind: CopyKind,
    taken_at: Timestamp,
    label: Option<&str>,
    max_len: usize,
) -> Result<String, String> {
    if let Some(l) = label {
        validate_label(l)?;
    }
    let ms = taken_at.subsec_millisecond();
    let mut name = format!("{database}__{}_{}_{ms:03}", kind.tag(), taken_at.strftime(STAMP));
    if let Some(l) = label {
        name.push('_');
        name.push_str(l);
    }
    if name.len() > max_len {
        return Err(format!(
            "the copy's name `{name}` would be {} bytes, longer than the {max_len} the server allows; use a shorter label (or database name)",
            name.len()
        ));
    }
    Ok(name)
}

/// A label chosen by the operator or a job (`pre-update`, `v1-4-2`).
pub fn validate_label(label: &str) -> Result<(), String> {
    let ok = !label.is_empty()
        && label.len() <= 24
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("snapshot label `{label}`: use 1 to 24 of a-z, 0-9 and -"))
    }
}

/// Recognises a copy of `database` by its name; `None` for anything else (including the live
/// database and copies of other databases whose names share a prefix).
pub fn parse_copy_name(database: &str, name: &str) -> Option<Snapshot> {
    let rest = name.strip_prefix(database)?.strip_prefix("__")?;
    let (kind, rest) = if let Some(r) = rest.strip_prefix("snap_") {
        (CopyKind::Snapshot, r)
    } else if let Some(r) = rest.strip_prefix("old_") {
        (CopyKind::Aside, r)
    } else if let Some(r) = rest.strip_prefix("restore_") {
        (CopyKind::Restoring, r)
    } else if let Some(r) = rest.strip_prefix("clone_") {
        (CopyKind::Clone, r)
    } else {
        return None;
    };
    // 20250314_093000_123 is 19 bytes.
    let stamp = rest.get(..19)?;
    let label = match rest.get(19..)? {
        "" => None,
        l => {
            let l = l.strip_prefix('_')?;
            validate_label(l).ok()?;
            Some(l.to_string())
        }
    };
    let (secs, ms) = stamp.split_at(15);
    let ms = ms.strip_prefix('_')?;
    if !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: i64 = ms.parse().ok()?;
    let dt = jiff::civil::DateTime::strptime(STAMP, secs).ok()?;
    let taken_at = dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp() + SignedDuration::from_millis(ms);
    Some(Snapshot { name: name.to_string(), kind, taken_at, label })
}

/// How many copies to keep. Copies of each kind are judged separately: the newest `keep_last`
/// always stay, older ones stay while younger than `max_age` (when set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    pub keep_last: usize,
    pub max_age: Option<SignedDuration>,
}

impl Default for SnapshotPolicy {
    /// Three of each kind, and any younger than a week.
    fn default() -> Self {
        SnapshotPolicy { keep_last: 3, max_age: Some(SignedDuration::from_hours(24 * 7)) }
    }
}

/// The copies `policy` removes at `now`, oldest first.
pub fn select_for_removal(copies: &[Snapshot], policy: &SnapshotPolicy, now: Timestamp) -> Vec<Snapshot> {
    let mut remove = Vec::new();
    for kind in [CopyKind::Snapshot, CopyKind::Aside] {
        let mut of_kind: Vec<&Snapshot> = copies.iter().filter(|c| c.kind == kind).collect();
        of_kind.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then_with(|| b.name.cmp(&a.name)));
        for c in of_kind.into_iter().skip(policy.keep_last) {
            let young = policy.max_age.is_some_and(|max| now.duration_since(c.taken_at) < max);
            if !young {
                remove.push(c.clone());
            }
        }
    }
    remove.sort_by(|a, b| a.taken_at.cmp(&b.taken_at).then_with(|| a.name.cmp(&b.name)));
    remove
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn names_round_trip() {
        let t = ts("2025-03-14T09:30:00.123Z");
        let n = copy_name("app", CopyKind::Snapshot, t, Some("pre-update"), 63).unwrap();
        assert_eq!(n, "app__snap_20250314_093000_123_pre-update");
        let s = parse_copy_name("app", &n).unwrap();
        assert_eq!((s.kind, s.taken_at, s.label.as_deref()), (CopyKind::Snapshot, t, Some("pre-update")));
        let n = copy_name("app", CopyKind::Aside, t, None, 63).unwrap();
        assert_eq!(n, "app__old_20250314_093000_123");
        assert_eq!(parse_copy_name("app", &n).unwrap().kind, CopyKind::Aside);
        let n = copy_name("app", CopyKind::Restoring, t, None, 63).unwrap();
        assert_eq!(n, "app__restore_20250314_093000_123");
        assert_eq!(parse_copy_name("app", &n).unwrap().kind, CopyKind::Restoring);
        let n = copy_name("app", CopyKind::Clone, t, Some("staging-1"), 63).unwrap();
        assert_eq!(n, "app__clone_20250314_093000_123_staging-1");
        let c = parse_copy_name("app", &n).unwrap();
        assert_eq!((c.kind, c.label.as_deref()), (CopyKind::Clone, Some("staging-1")));
        // Retention never selects a clone's database: only destroying the clone drops it.
        let policy = SnapshotPolicy { keep_last: 0, max_age: None };
        assert!(select_for_removal(&[c], &policy, t).is_empty());
    }

    #[test]
    fn other_names_are_not_copies() {
        for name in [
            "app",
            "app2__snap_20250314_093000_123",
            "app__snap_20250314_093000",
            "app__snap_20250314_093000_123_",
            "app__snap_20250314_093000_123_Bad",
            "app__snap_20251314_093000_123",
            "app__bak_20250314_093000_123",
            "ap",
        ] {
            assert_eq!(parse_copy_name("app", name), None, "{name}");
        }
        // A database whose name starts like another's copy is not mistaken for it.
        assert_eq!(parse_copy_name("app__snap", "app__snap_20250314_093000_123"), None);
    }

    #[test]
    fn long_names_and_bad_labels_are_refused() {
        let t = ts("2025-03-14T09:30:00Z");
        let long = "a".repeat(40);
        assert!(copy_name(&long, CopyKind::Snapshot, t, None, 63).unwrap_err().contains("longer than the 63"));
        assert!(copy_name("app", CopyKind::Snapshot, t, Some("Has Space"), 63).is_err());
        assert!(copy_name("app", CopyKind::Snapshot, t, Some(""), 63).is_err());
    }

    #[test]
    fn retention_keeps_newest_and_young_per_kind() {
        let now = ts("2025-03-20T00:00:00Z");
        let mk = |kind, day: u32| {
            let t = ts(&format!("2025-03-{day:02}T00:00:00Z"));
            let name = copy_name("app", kind, t, None, 63).unwrap();
            parse_copy_name("app", &name).unwrap()
        };
        let copies = vec![
            mk(CopyKind::Snapshot, 1),
            mk(CopyKind::Snapshot, 2),
            mk(CopyKind::Snapshot, 15),
            mk(CopyKind::Snapshot, 18),
            mk(CopyKind::Snapshot, 19),
            mk(CopyKind::Aside, 3),
        ];
        let policy = SnapshotPolicy { keep_last: 2, max_age: Some(SignedDuration::from_hours(24 * 7)) };
        let removed: Vec<String> = select_for_removal(&copies, &policy, now).into_iter().map(|c| c.name).collect();
        // Snapshots: 19 and 18 are the newest two, 15 is younger than a week; 1 and 2 go.
        // The one aside copy is within keep_last.
        assert_eq!(removed, vec![copies[0].name.clone(), copies[1].name.clone()]);

        let strict = SnapshotPolicy { keep_last: 0, max_age: None };
        assert_eq!(select_for_removal(&copies, &strict, now).len(), 6);
        let keep_all = SnapshotPolicy { keep_last: 10, max_age: None };
        assert!(select_for_removal(&copies, &keep_all, now).is_empty());
    }
}
