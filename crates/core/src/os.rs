//! Operating system maintenance decisions (docs/os.md): which package updates to apply,
//! whether the app must stop around them, whether the machine may reboot now, and whether
//! it came back after a reboot.
//!
//! Everything here is a pure function of (config, observations, now); the package manager
//! adapter (`caretaker-os`) observes and acts, the binary strings the two together.

use crate::config::{Config, DbKind, Os, Reboot};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// Where a package version comes from: the repository's origin label (or origin) and its
/// archive (suite), as apt prints them (`Debian-Security:12/stable-security`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageOrigin {
    pub origin: String,
    pub archive: String,
}

impl PackageOrigin {
    /// A security repository by the conventions of Debian (`Debian-Security`,
    /// `bookworm-security`) and Ubuntu (`jammy-security`).
    pub fn is_security(&self) -> bool {
        let sec = |s: &str| s.to_ascii_lowercase().contains("security");
        sec(&self.origin) || sec(&self.archive)
    }

    /// Whether one of the allowed origins names this one (origin label or archive, exactly,
    /// ignoring case).
    pub fn allowed_by(&self, allowed: &[String]) -> bool {
        allowed.iter().any(|a| a.eq_ignore_ascii_case(&self.origin) || a.eq_ignore_ascii_case(&self.archive))
    }
}

/// A package with a newer candidate version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgradable {
    pub name: String,
    pub installed: String,
    pub candidate: String,
    /// Where the candidate comes from (one package can be in several repositories).
    pub origins: Vec<PackageOrigin>,
}

impl Upgradable {
    pub fn is_security(&self) -> bool {
        self.origins.iter().any(PackageOrigin::is_security)
    }
}

/// Why a package is not upgraded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// `apt-mark hold` or the config's `os.hold`.
    Held,
    /// Its origin is not among `os.origins`.
    Origin,
    /// Not a security update, and only those were asked for.
    NotSecurity,
    /// The package manager keeps it back (it needs new packages or removals).
    KeptBack,
}

/// What an update applies and what it leaves, with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub upgrade: Vec<Upgradable>,
    pub skipped: Vec<(String, Skip)>,
}

impl Selection {
    pub fn names(&self) -> Vec<String> {
        self.upgrade.iter().map(|u| u.name.clone()).collect()
    }

    pub fn skipped_for(&self, why: &Skip) -> Vec<String> {
        self.skipped.iter().filter(|(_, w)| w == why).map(|(n, _)| n.clone()).collect()
    }
}

/// Whether `name` matches a package pattern: a name, or a prefix ending in `*`.
pub fn matches_pattern(name: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

fn matches_any(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| matches_pattern(name, p))
}

/// Chooses the updates to apply: everything upgradable except held packages (the package
/// manager's holds and `os.hold`), packages kept back, candidates from origins not allowed
/// by `os.origins` (when set) and, with `security_only`, non-security updates.
pub fn select(
    upgradable: &[Upgradable],
    held: &[String],
    kept_back: &[String],
    os: &Os,
    security_only: bool,
) -> Selection {
    let mut s = Selection::default();
    for u in upgradable {
        let skip = if held.iter().any(|h| h == &u.name) || matches_any(&u.name, &os.hold) {
            Some(Skip::Held)
        } else if kept_back.iter().any(|k| k == &u.name) {
            Some(Skip::KeptBack)
        } else if !os.origins.is_empty() && !u.origins.iter().any(|o| o.allowed_by(&os.origins)) {
            Some(Skip::Origin)
        } else if security_only && !u.is_security() {
            Some(Skip::NotSecurity)
        } else {
            None
        };
        match skip {
            Some(why) => s.skipped.push((u.name.clone(), why)),
            None => s.upgrade.push(u.clone()),
        }
    }
    // Kept-back packages the status did not list as upgradable still count.
    for k in kept_back {
        if !s.skipped.iter().any(|(n, _)| n == k) && !held.contains(k) {
            s.skipped.push((k.clone(), Skip::KeptBack));
        }
    }
    s
}

/// Packages (patterns) the app depends on: the database server of `database:` (on this
/// machine), docker for a compose app, and `os.depends_on`.
pub fn app_packages(cfg: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(db) = &cfg.database {
        match db.kind {
            DbKind::Postgres => out.extend(["postgresql".into(), "postgresql-*".into()]),
            DbKind::Mariadb => out.extend([
                "mariadb-server".into(),
                "mariadb-server-*".into(),
                "mysql-server".into(),
                "mysql-server-*".into(),
            ]),
            DbKind::Sqlite => {}
        }
    }
    if cfg.compose.is_some() {
        out.extend(
            ["docker-ce", "docker.io", "docker-compose-plugin", "docker-compose", "containerd", "containerd.io"]
                .map(String::from),
        );
    }
    out.extend(cfg.os.depends_on.iter().cloned());
    out
}

/// The packages of an update that the app depends on (then it stops around the upgrade).
pub fn touches_app(packages: &[String], app_packages: &[String]) -> Vec<String> {
    packages.iter().filter(|p| matches_any(p, app_packages)).cloned().collect()
}

/// Packages the package manager would change beyond the chosen ones (a dependency that is
/// held or from an origin not allowed): the update refuses rather than apply them.
pub fn unplanned(chosen: &[String], simulated: &[String]) -> Vec<String> {
    simulated.iter().filter(|s| !chosen.contains(s)).cloned().collect()
}

/// Compares two Debian package versions (`[epoch:]upstream[-revision]`) as dpkg does.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    fn order(c: Option<char>) -> i32 {
        match c {
            None => 0,
            Some('~') => -1,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(c) => c as i32 + 256,
        }
    }
    fn part(mut a: &str, mut b: &str) -> Ordering {
        while !a.is_empty() || !b.is_empty() {
            // Non-digit prefix, compared with dpkg's character order (~ before everything).
            let na = a.find(|c: char| c.is_ascii_digit()).unwrap_or(a.len());
            let nb = b.find(|c: char| c.is_ascii_digit()).unwrap_or(b.len());
            let (mut ca, mut cb) = (a[..na].chars(), b[..nb].chars());
            loop {
                let (x, y) = (ca.next(), cb.next());
                if x.is_none() && y.is_none() {
                    break;
                }
                match order(x).cmp(&order(y)) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            a = &a[na..];
            b = &b[nb..];
            let da = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
            let db = b.find(|c: char| !c.is_ascii_digit()).unwrap_or(b.len());
            let (xa, xb) = (a[..da].trim_start_matches('0'), b[..db].trim_start_matches('0'));
            match xa.len().cmp(&xb.len()).then(xa.cmp(xb)) {
                Ordering::Equal => {}
                o => return o,
            }
            a = &a[da..];
            b = &b[db..];
        }
        Ordering::Equal
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb).then_with(|| part(ua, ub)).then_with(|| part(ra, rb))
}

/// Whether the running kernel is older than the newest installed one (kernel release names
/// such as `6.1.0-13-amd64`, compared as Debian versions).
pub fn kernel_reboot_needed(running: &str, installed: &[String]) -> Option<String> {
    let newest = installed.iter().max_by(|a, b| version_cmp(a, b))?;
    (version_cmp(newest, running) == Ordering::Greater).then(|| newest.clone())
}

// ---------------------------------------------------------------------------------------
// Reboot windows

fn sd(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// This host's stable offset within `jitter` (FNV-1a of a host identity such as
/// `/etc/machine-id`), so a fleet with the same window does not reboot all at once.
pub fn host_offset(host_id: &str, jitter: Duration) -> Duration {
    let secs = jitter.as_secs();
    if secs == 0 {
        return Duration::ZERO;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host_id.trim().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::from_secs(h % (secs + 1))
}

/// One window and this host's slot in it: `[start, end)`, `start` = window start + offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub window_start: Timestamp,
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Slot {
    fn of(r: &Reboot, offset: Duration, window_start: Timestamp) -> Slot {
        let offset = offset.min(r.jitter);
        Slot {
            window_start,
            start: window_start.saturating_add(sd(offset)).unwrap_or(window_start),
            end: window_start.saturating_add(sd(r.length)).unwrap_or(Timestamp::MAX),
        }
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

/// The slot `now` lies in, if any.
pub fn slot_at(r: &Reboot, offset: Duration, now: Timestamp, tz: &TimeZone) -> Option<Slot> {
    next_slot(r, offset, now, tz).filter(|s| s.contains(now))
}

/// The first slot that has not ended at `after` (the current one, or the next).
///
/// It belongs to the earliest window starting in `(after - length, after]`, or the first one
/// after: a later window of that span starts later, so its slot cannot contain `after` unless
/// the earliest one's does, and its slot starts later.
pub fn next_slot(r: &Reboot, offset: Duration, after: Timestamp, tz: &TimeZone) -> Option<Slot> {
    let t = after.saturating_sub(sd(r.length)).unwrap_or(Timestamp::MIN);
    r.window.next_after(t, tz).map(|s| Slot::of(r, offset, s))
}

/// How many of this host's slots began after `since` and ended by `now`: the windows a
/// needed reboot has waited through.
pub fn windows_missed(r: &Reboot, offset: Duration, since: Timestamp, now: Timestamp, tz: &TimeZone) -> u32 {
    let mut n = 0;
    let mut t = since;
    while let Some(slot) = next_slot(r, offset, t, tz) {
        if slot.end > now {
            break;
        }
        if slot.start >= since {
            n += 1;
        }
        t = slot.end;
        if n >= 10_000 {
            break;
        }
    }
    n
}

/// What the reboot decision looks at besides the clock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RebootFacts {
    /// The system asked for a reboot (or the operator did: `--now` without `--if-needed`).
    pub needed: bool,
    /// The kind of a job that is running now.
    pub job_running: Option<String>,
    /// Whether the app has backups configured at all.
    pub backups_configured: bool,
    /// When the last successful backup finished.
    pub last_backup: Option<Timestamp>,
    pub service_mode: bool,
}

/// Why a reboot does not happen now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Blocked {
    NotNeeded,
    /// `os.reboot` is not configured: the daemon never reboots on its own.
    NoWindow,
    OutsideWindow {
        next_slot: Option<Timestamp>,
    },
    JobRunning {
        kind: String,
    },
    BackupStale {
        last: Option<Timestamp>,
    },
    ServiceMode,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocked::NotNeeded => f.write_str("no reboot is needed"),
            Blocked::NoWindow => f.write_str("no reboot window is configured (os.reboot.window)"),
            Blocked::OutsideWindow { next_slot: Some(t) } => write!(f, "outside the reboot window (next slot {t})"),
            Blocked::OutsideWindow { next_slot: None } => f.write_str("outside the reboot window (no next window)"),
            Blocked::JobRunning { kind } => write!(f, "a {kind} job is running"),
            Blocked::BackupStale { last: Some(t) } => write!(f, "the last successful backup ({t}) is too old"),
            Blocked::BackupStale { last: None } => f.write_str("there is no successful backup"),
            Blocked::ServiceMode => f.write_str("the app is in service mode"),
        }
    }
}

/// The reboot decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum RebootVerdict {
    Reboot,
    /// Everything allows it but the backup is too old and `take_backup` is on: back up, then
    /// decide again.
    BackupFirst,
    Wait(Blocked),
}

/// Whether the machine may reboot at `now`. `ignore_window`: the operator's `--now`.
pub fn decide_reboot(
    r: Option<&Reboot>,
    offset: Duration,
    facts: &RebootFacts,
    now: Timestamp,
    tz: &TimeZone,
    ignore_window: bool,
) -> RebootVerdict {
    if !facts.needed {
        return RebootVerdict::Wait(Blocked::NotNeeded);
    }
    if !ignore_window {
        let Some(r) = r else { return RebootVerdict::Wait(Blocked::NoWindow) };
        if slot_at(r, offset, now, tz).is_none() {
            return RebootVerdict::Wait(Blocked::OutsideWindow {
                next_slot: next_slot(r, offset, now, tz).map(|s| s.start),
            });
        }
    }
    if let Some(kind) = &facts.job_running {
        return RebootVerdict::Wait(Blocked::JobRunning { kind: kind.clone() });
    }
    if facts.service_mode {
        return RebootVerdict::Wait(Blocked::ServiceMode);
    }
    if facts.backups_configured {
        let max_age = r.map(|r| r.max_backup_age).unwrap_or(Duration::from_secs(26 * 3600));
        let fresh = facts.last_backup.is_some_and(|t| now.duration_since(t) <= sd(max_age));
        if !fresh {
            return if r.is_some_and(|r| r.take_backup) {
                RebootVerdict::BackupFirst
            } else {
                RebootVerdict::Wait(Blocked::BackupStale { last: facts.last_backup })
            };
        }
    }
    RebootVerdict::Reboot
}

/// What caretaker remembers about a reboot it started (a fact in the state store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReboot {
    /// The boot id before the reboot.
    pub boot_id: String,
    pub requested_at: Timestamp,
    /// The job that ran the reboot command.
    pub job: Option<i64>,
    /// When caretaker first saw the new boot id (the daemon came up).
    #[serde(default)]
    pub back_seen_at: Option<Timestamp>,
}

/// The "came back" verdict after a reboot caretaker started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum CameBack {
    /// Not decided yet: still within `came_back_within`.
    Waiting,
    /// The boot id changed, the app is healthy and the checks are green.
    Healthy { seconds: i64 },
    /// The boot id did not change within `came_back_within`: the machine did not reboot.
    NotRebooted,
    /// The machine rebooted but the app was not healthy (or the checks not green) in time.
    Unhealthy { problems: Vec<String> },
}

impl CameBack {
    pub fn is_final(&self) -> bool {
        !matches!(self, CameBack::Waiting)
    }
}

/// Judges the state after a reboot. `problems`: what is not healthy now (services down,
/// checks failing); empty when all is well. `boot_time`: when the current boot began.
pub fn came_back(
    pending: &PendingReboot,
    boot_id: &str,
    boot_time: Option<Timestamp>,
    problems: &[String],
    now: Timestamp,
    within: Duration,
) -> CameBack {
    if boot_id.trim() == pending.boot_id.trim() {
        return if now.duration_since(pending.requested_at) > sd(within) {
            CameBack::NotRebooted
        } else {
            CameBack::Waiting
        };
    }
    // From whichever is latest: the reboot request, the boot, the first sight of the new
    // boot id (a machine whose clock was wrong at boot still gets its full time).
    let since =
        [Some(pending.requested_at), boot_time, pending.back_seen_at].into_iter().flatten().max().unwrap_or(now);
    if problems.is_empty() {
        return CameBack::Healthy { seconds: now.duration_since(since).as_secs().max(0) };
    }
    if now.duration_since(since) > sd(within) {
        CameBack::Unhealthy { problems: problems.to_vec() }
    } else {
        CameBack::Waiting
    }
}

/// The boots the `reboots` alert rule counts: the recorded boots (boot id, boot time) that
/// began at or after `since`, one per boot id.
pub fn boots_since(recorded: &[(String, Timestamp)], since: Timestamp) -> Vec<Timestamp> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (id, t) in recorded {
        if seen.contains(&id.as_str()) {
            continue;
        }
        seen.push(id);
        if *t >= since {
            out.push(*t);
        }
    }
    out.sort();
    out
}

/// Job kinds of OS maintenance (docs/os.md).
pub mod kind {
    /// `caretaker os update`.
    pub const OS_UPDATE: &str = "os_update";
    /// `caretaker os reboot`, and a needed reboot refused for too many windows.
    pub const OS_REBOOT: &str = "os_reboot";
    /// The "came back" verdict after a reboot caretaker started.
    pub const OS_REBOOT_CHECK: &str = "os_reboot_check";
}

/// Facts of the state store (docs/state.md).
pub mod facts {
    /// [`super::PendingReboot`] as JSON while a reboot caretaker started is not judged yet.
    pub const PENDING_REBOOT: &str = "os.pending_reboot";
    /// When a reboot first was seen needed (RFC 3339); removed once the machine rebooted.
    pub const REBOOT_NEEDED_SINCE: &str = "os.reboot_needed_since";
    /// How many missed windows were alerted already (a refused `os_reboot` job each).
    pub const REBOOT_WINDOWS_ALERTED: &str = "os.reboot_windows_alerted";
    /// [`super::LastReboot`] as JSON.
    pub const LAST_REBOOT: &str = "os.last_reboot";
    /// The boots seen, `[(boot id, boot time)]` as JSON, for the `reboots` alert rule.
    pub const BOOTS: &str = "os.boots";
    /// The last `os status` reading for metrics and the status page ([`OsSummary`]).
    pub const SUMMARY: &str = "os.summary";
}

/// The outcome of the last reboot caretaker started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastReboot {
    pub requested_at: Option<Timestamp>,
    pub judged_at: Option<Timestamp>,
    /// `healthy`, `not_rebooted`, `unhealthy`.
    pub outcome: String,
    pub message: String,
}

/// What metrics and the status page show of the OS (written by `os status`, `os update`
/// and the daemon's periodic check).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OsSummary {
    pub checked_at: Option<Timestamp>,
    pub updates_pending: u64,
    pub security_updates_pending: u64,
    pub held: Vec<String>,
    pub kept_back: Vec<String>,
    pub reboot_required: bool,
    pub reboot_required_packages: Vec<String>,
    pub last_os_update: Option<Timestamp>,
    pub boot_id: Option<String>,
    pub boot_time: Option<Timestamp>,
    pub next_reboot_slot: Option<Timestamp>,
}

/// `os_update` figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OsUpdateFigures {
    pub upgraded: Vec<String>,
    pub security: Vec<String>,
    pub held: Vec<String>,
    pub kept_back: Vec<String>,
    /// (package, conffile) kept because the admin had edited it.
    pub conffiles_kept: Vec<(String, String)>,
    /// Packages dpkg left half-installed or half-configured.
    pub interrupted: Vec<String>,
    /// Packages of the update the app depends on: it was stopped around them.
    pub app_packages: Vec<String>,
    pub app_stopped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub reboot_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// `os_reboot` and `os_reboot_check` figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OsRebootFigures {
    pub boot_id_before: Option<String>,
    pub boot_id_after: Option<String>,
    /// `reboot`, `refused`, `healthy`, `not_rebooted`, `unhealthy`.
    pub verdict: Option<String>,
    pub reason: Option<String>,
    pub windows_missed: Option<u32>,
    pub seconds: Option<f64>,
}

impl crate::job::figures::Figures for OsUpdateFigures {}
impl crate::job::figures::Figures for OsRebootFigures {}

/// What `/metrics` shows of OS maintenance.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OsMetrics {
    pub summary: OsSummary,
    pub last_reboot: Option<LastReboot>,
    /// Seconds since packages last changed (dpkg's log or the last `os_update` job).
    pub last_update_age_seconds: Option<f64>,
}

/// The `/metrics` lines of OS maintenance (appended by `metrics::render_metrics`).
pub fn render_metrics(m: &OsMetrics, out: &mut String) {
    use std::fmt::Write as _;
    fn gauge(out: &mut String, name: &str, help: &str, samples: &[(&str, f64)]) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    }
    let s = &m.summary;
    let b = |x: bool| if x { 1.0 } else { 0.0 };
    gauge(
        out,
        "caretaker_os_updates_pending",
        "Package updates pending (held and kept-back ones included).",
        &[("", s.updates_pending as f64)],
    );
    gauge(
        out,
        "caretaker_os_security_updates_pending",
        "Package updates pending from security origins.",
        &[("", s.security_updates_pending as f64)],
    );
    gauge(
        out,
        "caretaker_os_reboot_required",
        "Whether the system asks for a reboot (reboot-required, a newer kernel).",
        &[("", b(s.reboot_required))],
    );
    if let Some(age) = m.last_update_age_seconds {
        gauge(
            out,
            "caretaker_os_last_update_age_seconds",
            "Seconds since packages were last upgraded or installed.",
            &[("", age)],
        );
    }
    if let Some(r) = &m.last_reboot {
        gauge(
            out,
            "caretaker_os_last_reboot_outcome",
            "The verdict on the last reboot caretaker started (1 on the outcome that happened).",
            &[
                ("{outcome=\"healthy\"}", b(r.outcome == "healthy")),
                ("{outcome=\"not_rebooted\"}", b(r.outcome == "not_rebooted")),
                ("{outcome=\"unhealthy\"}", b(r.outcome == "unhealthy")),
            ],
        );
        if let Some(t) = r.judged_at {
            gauge(
                out,
                "caretaker_os_last_reboot_timestamp_seconds",
                "When the last reboot caretaker started was judged.",
                &[("", t.as_second() as f64)],
            );
        }
    }
}
