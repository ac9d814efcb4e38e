//! The `os:` section: operating system maintenance (docs/os.md) — which package updates
//! caretaker applies, which packages the app depends on, and when the machine may reboot.
//!
//! ```yaml
//! os:
//!   origins: [Debian, Debian-Security]   # allowed origins (labels or archives); empty: all
//!   hold: [linux-image-amd64]            # never upgraded by caretaker
//!   depends_on: [redis-server, "php8.2-*"]  # besides the database server and docker
//!   update: { schedule: "Sun 02:00", security_only: false, lock_timeout: 5m }
//!   reboot:
//!     window: "Sun 03:00 Europe/Vienna"  # a schedule: when each window starts
//!     length: 1h
//!     jitter: 30m                        # a stable per-host offset within the window
//!     max_backup_age: 26h
//!     take_backup: false                 # true: back up first when the last backup is older
//!     command: [systemctl, reboot]
//!     came_back_within: 15m
//!     alert_after_windows: 3
//! ```

use super::model::Command;
use super::reader::{boolean, bounded, duration, list, nonempty, schedule, Cx};
use crate::schedule::Schedule;
use marked_yaml::Node;
use serde::{Serialize, Serializer};
use std::time::Duration;

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format_duration(*d))
}

fn ser_opt_schedule<S: Serializer>(d: &Option<Schedule>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.collect_str(d),
        None => s.serialize_none(),
    }
}

/// Operating system maintenance settings.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Os {
    /// Origins whose updates caretaker applies, matched against a candidate's origin label,
    /// origin or archive (`Debian-Security`, `bookworm-security`); empty: every origin.
    pub origins: Vec<String>,
    /// Packages caretaker never upgrades (on top of `apt-mark hold`); a trailing `*` matches
    /// a prefix.
    pub hold: Vec<String>,
    /// Packages the app depends on besides the ones caretaker knows (the database server of
    /// `database:`, docker for a compose app): upgrading one stops the app around it.
    pub depends_on: Vec<String>,
    pub update: OsUpdate,
    /// `None`: caretaker never reboots on its own (`caretaker os reboot --now` still works).
    pub reboot: Option<Reboot>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OsUpdate {
    /// When the daemon runs `caretaker os update` as a scheduled task; `None`: on demand only.
    #[serde(serialize_with = "ser_opt_schedule")]
    pub schedule: Option<Schedule>,
    /// Apply security updates only (the CLI's `--security-only` sets it for one run).
    pub security_only: bool,
    /// How long apt waits for the dpkg lock held by someone else.
    #[serde(serialize_with = "ser_duration")]
    pub lock_timeout: Duration,
}

impl Default for OsUpdate {
    fn default() -> OsUpdate {
        OsUpdate { schedule: None, security_only: false, lock_timeout: Duration::from_secs(300) }
    }
}

/// When and how the machine reboots.
#[derive(Clone, Debug, Serialize)]
pub struct Reboot {
    /// Each window starts at an occurrence of this schedule.
    #[serde(serialize_with = "ser_schedule")]
    pub window: Schedule,
    #[serde(serialize_with = "ser_duration")]
    pub length: Duration,
    /// This host's slot starts a stable offset within `jitter` after the window starts.
    #[serde(serialize_with = "ser_duration")]
    pub jitter: Duration,
    /// A reboot waits for a successful backup younger than this.
    #[serde(serialize_with = "ser_duration")]
    pub max_backup_age: Duration,
    /// Take a backup first when the last one is too old (instead of waiting for one).
    pub take_backup: bool,
    pub command: Command,
    /// After the boot, the app must be healthy and the checks green within this.
    #[serde(serialize_with = "ser_duration")]
    pub came_back_within: Duration,
    /// A needed reboot that waited through this many windows alerts.
    pub alert_after_windows: u32,
}

fn ser_schedule<S: Serializer>(d: &Schedule, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(d)
}

/// Package names or prefix patterns (`php8.2-*`).
fn package_pattern(cx: &mut Cx, n: &Node, p: &str) -> Option<String> {
    let s = nonempty(cx, n, p)?;
    let body = s.strip_suffix('*').unwrap_or(&s);
    let ok =
        !body.is_empty() && body.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.:".contains(c));
    if !ok {
        cx.error(
            n.span(),
            p,
            format!("\"{s}\" is not a package name"),
            Some(
                "write a Debian package name such as `redis-server`, or a prefix ending in `*` such as `php8.2-*`"
                    .into(),
            ),
        );
        return None;
    }
    Some(s)
}

/// Reads the `os:` section.
pub fn parse(cx: &mut Cx, node: &Node, path: &str) -> Option<Os> {
    let mut m = cx.map(node, path)?;
    let mut os = Os::default();
    let mut ok = true;
    if let Some(n) = m.get("origins") {
        match list(cx, n, &m.key_path("origins"), nonempty) {
            Some(v) => os.origins = v,
            None => ok = false,
        }
    }
    if let Some(n) = m.get("hold") {
        match list(cx, n, &m.key_path("hold"), package_pattern) {
            Some(v) => os.hold = v,
            None => ok = false,
        }
    }
    if let Some(n) = m.get("depends_on") {
        match list(cx, n, &m.key_path("depends_on"), package_pattern) {
            Some(v) => os.depends_on = v,
            None => ok = false,
        }
    }
    if let Some(n) = m.get("update") {
        match update(cx, n, &m.key_path("update")) {
            Some(u) => os.update = u,
            None => ok = false,
        }
    }
    if let Some(n) = m.get("reboot") {
        match reboot(cx, n, &m.key_path("reboot")) {
            Some(r) => os.reboot = Some(r),
            None => ok = false,
        }
    }
    m.finish(cx);
    ok.then_some(os)
}

fn update(cx: &mut Cx, node: &Node, path: &str) -> Option<OsUpdate> {
    let mut m = cx.map(node, path)?;
    let mut u = OsUpdate { schedule: m.opt(cx, "schedule", schedule), ..OsUpdate::default() };
    if let Some(b) = m.opt(cx, "security_only", boolean) {
        u.security_only = b;
    }
    if let Some(d) = m.opt(cx, "lock_timeout", duration) {
        u.lock_timeout = d;
    }
    m.finish(cx);
    Some(u)
}

fn reboot(cx: &mut Cx, node: &Node, path: &str) -> Option<Reboot> {
    let mut m = cx.map(node, path)?;
    let window = m.req(cx, "window", "write when each reboot window starts, e.g. `window: \"Sun 03:00\"`", schedule);
    let length = m.opt(cx, "length", duration).unwrap_or(Duration::from_secs(3600));
    let jitter = m.opt(cx, "jitter", duration).unwrap_or(Duration::ZERO);
    let max_backup_age = m.opt(cx, "max_backup_age", duration).unwrap_or(Duration::from_secs(26 * 3600));
    let take_backup = m.opt(cx, "take_backup", boolean).unwrap_or(false);
    let command = m
        .opt(cx, "command", super::parse::command)
        .unwrap_or_else(|| Command::Argv(vec!["systemctl".into(), "reboot".into()]));
    let came_back_within = m.opt(cx, "came_back_within", duration).unwrap_or(Duration::from_secs(15 * 60));
    let alert_after_windows = m.opt(cx, "alert_after_windows", |cx, n, p| bounded(cx, n, p, 1, 1000)).unwrap_or(3);
    let span = *m.span();
    m.finish(cx);
    if length.is_zero() {
        cx.error(
            &span,
            &format!("{path}.length"),
            "the reboot window has no length",
            Some("write e.g. `length: 1h`".into()),
        );
        return None;
    }
    if jitter >= length {
        cx.error(
            &span,
            &format!("{path}.jitter"),
            format!(
                "`jitter` ({}) must be shorter than the window's `length` ({}): a host's slot starts up to `jitter` after the window opens and must still lie inside it",
                crate::duration::format_duration(jitter),
                crate::duration::format_duration(length)
            ),
            Some("e.g. `length: 1h` with `jitter: 30m`".into()),
        );
        return None;
    }
    Some(Reboot {
        window: window?,
        length,
        jitter,
        max_backup_age,
        take_backup,
        command,
        came_back_within,
        alert_after_windows: alert_after_windows as u32,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{load, NoSecrets};
    use std::path::Path;

    fn cfg(os: &str) -> Result<crate::config::Config, String> {
        let text = format!("version: 1\napp: {{ name: demo }}\n{os}");
        load(&text, Path::new("/etc/caretaker/demo.yml"), None, &NoSecrets)
            .map(|l| l.config)
            .map_err(|d| d.render(&text))
    }

    #[test]
    fn defaults_and_a_full_section() {
        let c = cfg("").unwrap();
        assert!(c.os.reboot.is_none());
        assert!(c.os.origins.is_empty());
        let c = cfg(
            "os:\n  origins: [Debian-Security]\n  hold: [linux-image-*]\n  depends_on: [redis-server]\n  update: { schedule: \"daily 02:00\", security_only: true, lock_timeout: 2m }\n  reboot: { window: \"Sun 03:00 Europe/Vienna\", length: 1h, jitter: 30m, max_backup_age: 26h, take_backup: true, command: [/bin/true], came_back_within: 10m, alert_after_windows: 2 }\n",
        )
        .unwrap();
        assert_eq!(c.os.hold, ["linux-image-*"]);
        assert!(c.os.update.security_only);
        assert_eq!(c.os.update.lock_timeout.as_secs(), 120);
        let r = c.os.reboot.unwrap();
        assert_eq!(r.window.time_zone_name(), Some("Europe/Vienna"));
        assert_eq!(r.jitter.as_secs(), 1800);
        assert!(r.take_backup);
        assert_eq!(r.alert_after_windows, 2);
        assert_eq!(r.command.argv(), ["/bin/true"]);
    }

    #[test]
    fn problems_are_reported_with_their_key() {
        let e = cfg("os:\n  reboot: { window: \"Sun 03:00\", length: 30m, jitter: 30m }\n").unwrap_err();
        assert!(e.contains("must be shorter than the window"), "{e}");
        let e = cfg("os:\n  reboot: { length: 1h }\n").unwrap_err();
        assert!(e.contains("required key `window`"), "{e}");
        let e = cfg("os:\n  reboot: { window: \"Sunday at three\" }\n").unwrap_err();
        assert!(e.contains("window"), "{e}");
        let e = cfg("os:\n  hold: [\"Bad Name\"]\n").unwrap_err();
        assert!(e.contains("not a package name"), "{e}");
        let e = cfg("os:\n  holds: [x]\n").unwrap_err();
        assert!(e.contains("hold"), "{e}");
    }
}
