//! Alert evaluation: the built-in rules applied to observations, and the alert life cycle
//! pending → firing → resolved with notifications, repeats, deduplication and silences.
//!
//! Everything here is a pure function of (rules, observations, previous state, silences, now).
//! The caller (`caretaker alerts evaluate`, the daemon's loop) gathers observations, loads the
//! previous states from the state store, calls [`evaluate`], sends the returned
//! [`Notification`]s and stores the new states.
//!
//! Rule names are the config keys under `alerts.rules` (`filesystem_free_percent`, ...), except
//! `reboots` and `service_down`; an alert is identified by its rule and its subject (the
//! mountpoint, service, job kind, certificate name; empty for host-wide rules). These names
//! appear in notifications, silences, metrics and exported Prometheus rules: a stable interface.

use crate::config::{Rules, Threshold};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How bad a firing alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// Where an alert is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The condition holds, but not yet for the rule's `for` duration.
    Pending,
    /// The condition held long enough; people were (or will be) told.
    Firing,
    /// The condition cleared after firing. Kept for a while as history.
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "pending" => Some(Status::Pending),
            "firing" => Some(Status::Firing),
            "resolved" => Some(Status::Resolved),
            _ => None,
        }
    }
}

/// The rule names (stable). `ALL_RULES` lists them in display order.
pub mod rule {
    pub const FILESYSTEM_FREE: &str = "filesystem_free_percent";
    pub const MEMORY_USED: &str = "memory_used_percent";
    pub const LOAD: &str = "load_per_cpu";
    pub const REBOOTS: &str = "reboots";
    pub const BACKUP_MAX_AGE: &str = "backup_max_age";
    pub const UPDATE_MAX_AGE: &str = "update_max_age";
    pub const CERTIFICATE_EXPIRY: &str = "certificate_expiry";
    pub const SERVICE_DOWN: &str = "service_down";
    pub const JOB_FAILED: &str = "job_failed";
    pub const SERVICE_MODE: &str = "service_mode";
    pub const JOB_SKIPPED: &str = "job_skipped";
    pub const DEPENDENCIES_VULNERABLE: &str = "dependencies_vulnerable";
    pub const ALL_RULES: [&str; 12] = [
        FILESYSTEM_FREE,
        MEMORY_USED,
        LOAD,
        REBOOTS,
        BACKUP_MAX_AGE,
        UPDATE_MAX_AGE,
        CERTIFICATE_EXPIRY,
        SERVICE_DOWN,
        JOB_FAILED,
        SERVICE_MODE,
        JOB_SKIPPED,
        DEPENDENCIES_VULNERABLE,
    ];
}

/// One filesystem's space.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FilesystemObs {
    pub mountpoint: String,
    pub device: String,
    pub fstype: String,
    pub size_bytes: u64,
    /// Free for unprivileged users (statvfs `f_bavail`), what an app can still write.
    pub avail_bytes: u64,
    pub free_bytes: u64,
}

impl FilesystemObs {
    pub fn free_percent(&self) -> f64 {
        if self.size_bytes == 0 {
            100.0
        } else {
            100.0 * self.avail_bytes as f64 / self.size_bytes as f64
        }
    }
}

/// A service as the supervisor (or a health probe) sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceObs {
    pub name: String,
    pub up: bool,
    /// Since when it is down (from the supervisor); `None` when up or unknown (then the alert's
    /// own pending time counts).
    pub down_since: Option<Timestamp>,
    pub restarts: Option<u64>,
    pub healthy: Option<bool>,
}

/// The most recent run of a job kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobObs {
    pub kind: String,
    pub id: i64,
    pub succeeded: bool,
    pub ended_at: Option<Timestamp>,
    pub error: Option<String>,
}

/// A scheduled task whose latest attempts were all skipped (it found the app lock held).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SkippedTaskObs {
    /// The scheduler's task name: `backup`, `prune`, `update`, `job:<name>`.
    pub task: String,
    /// Skips in a row since the task last ran.
    pub skips: u32,
    /// When the first of them happened.
    pub since: Timestamp,
    /// Why the latest one was skipped (which job held the lock).
    pub reason: Option<String>,
}

/// How many skips in a row of one scheduled task fire `job_skipped`: with the retry delays
/// of `scheduler::retry_delay` (30 s, 1 min, ...) the task has then been kept from running
/// for at least 1.5 minutes by something outside the scheduler.
pub const SKIPS_TO_ALERT: u32 = 3;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CertificateObs {
    pub name: String,
    pub not_after: Timestamp,
    /// Seconds left until `not_after` when it was observed (negative: expired).
    pub seconds_left: f64,
}

/// Everything the rules look at, gathered by the caller. `None`/empty means "not observed":
/// a rule without its observation neither fires nor resolves.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Observations {
    pub filesystems: Vec<FilesystemObs>,
    pub memory_used_percent: Option<f64>,
    /// 5-minute load average divided by the number of CPUs.
    pub load_per_cpu: Option<f64>,
    /// Boot times seen (persisted by the caller), newest last.
    pub boots: Vec<Timestamp>,
    /// `Some(last success)` when backups are configured (inner `None`: never succeeded).
    pub backup: Option<Option<Timestamp>>,
    /// Same for updates, present only when automatic updates are on.
    pub update: Option<Option<Timestamp>>,
    /// When the caller started watching (first evaluation): "never succeeded" counts from here.
    pub watching_since: Option<Timestamp>,
    pub certificates: Vec<CertificateObs>,
    pub services: Vec<ServiceObs>,
    /// The latest finished run of each job kind (skipped attempts are not runs).
    pub last_jobs: Vec<JobObs>,
    /// Scheduled tasks whose latest attempts were skipped.
    pub skipped_tasks: Vec<SkippedTaskObs>,
    /// Why the app is in service mode, if it is.
    pub service_mode: Option<String>,
    /// Maintenance mode is on: notifications are held back (alerts still change state).
    pub maintenance: bool,
    /// The newest successful dependency report (`caretaker deps`), if any.
    pub dependencies: Option<DependenciesObs>,
}

/// What the newest dependency report found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DependenciesObs {
    /// Vulnerable packages (a package with several vulnerabilities counts once).
    pub vulnerable: u64,
    /// Outdated packages; `None` when no package index was reachable.
    pub outdated: Option<u64>,
    /// The vulnerable packages' names, for the alert's summary.
    #[serde(default)]
    pub vulnerable_packages: Vec<String>,
}

/// A rule's verdict that something is wrong right now.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub rule: &'static str,
    pub subject: String,
    pub severity: Severity,
    pub summary: String,
    pub value: Option<f64>,
    /// How long the condition must hold before the alert fires.
    pub hold: Duration,
    /// Since when the condition holds, when the observation knows better than the alert's
    /// own pending time (the supervisor's "down since").
    pub held_since: Option<Timestamp>,
}

/// One alert's persisted state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub rule: String,
    pub subject: String,
    pub severity: Severity,
    pub status: Status,
    pub summary: String,
    pub value: Option<f64>,
    /// When the condition started to hold (start of pending).
    pub active_since: Timestamp,
    pub fired_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    /// When people were last told it fires (`None`: not yet, e.g. silenced so far).
    pub last_notified: Option<Timestamp>,
    /// The severity people were last told about (escalation is notified at once).
    pub notified_severity: Option<Severity>,
}

impl AlertState {
    /// `rule` or `rule/subject`: how silences and the CLI name an alert.
    pub fn key(&self) -> String {
        key(&self.rule, &self.subject)
    }
}

pub fn key(rule: &str, subject: &str) -> String {
    if subject.is_empty() {
        rule.to_string()
    } else {
        format!("{rule}/{subject}")
    }
}

/// A silence: notifications for alerts whose key matches are held back until `until`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: i64,
    pub matcher: String,
    pub created_at: Timestamp,
    pub until: Timestamp,
    pub comment: String,
}

impl Silence {
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.created_at <= now && now < self.until
    }
    pub fn matches(&self, rule: &str, subject: &str) -> bool {
        matcher_matches(&self.matcher, rule, subject)
    }
}

/// A matcher is a glob (`*` = any text) over the alert key `rule/subject`; a matcher without
/// `/` names a rule and covers all its subjects. `*` matches everything.
pub fn matcher_matches(matcher: &str, rule: &str, subject: &str) -> bool {
    if matcher.contains('/') {
        glob(matcher, &key(rule, subject)) || (subject.is_empty() && glob(matcher, &format!("{rule}/")))
    } else {
        glob(matcher, rule)
    }
}

/// Whether a matcher can ever match: it must name a known rule (or use a wildcard there).
pub fn validate_matcher(matcher: &str) -> Result<(), String> {
    let rule_part = matcher.split('/').next().unwrap_or("");
    if matcher.is_empty() {
        return Err("a silence needs a matcher, e.g. `filesystem_free_percent` or `service_down/web`".into());
    }
    if rule::ALL_RULES.iter().any(|r| glob(rule_part, r)) {
        Ok(())
    } else {
        Err(format!("`{matcher}` matches no alert rule; rules are: {}", rule::ALL_RULES.join(", ")))
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Why a notification is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    Firing,
    /// Still firing after `repeat_interval`, or escalated from warning to critical.
    Repeat,
    Resolved,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Firing => "firing",
            NotificationKind::Repeat => "repeat",
            NotificationKind::Resolved => "resolved",
        }
    }
}

/// A message to send to every configured notifier.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    pub kind: NotificationKind,
    pub alert: AlertState,
}

/// The outcome of one evaluation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Every alert that is pending, firing, or resolved recently; persist these, replacing
    /// the previous set.
    pub states: Vec<AlertState>,
    pub notifications: Vec<Notification>,
}

/// How long resolved alerts stay in the state as history.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

fn sd(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

fn pct(v: f64) -> String {
    format!("{v:.1}%")
}

fn human(d: SignedDuration) -> String {
    let s = d.as_secs().max(0) as u64;
    crate::duration::format_duration(Duration::from_secs(if s >= 3600 { s / 60 * 60 } else { s }))
}

fn threshold_condition(t: &Threshold, value: f64, higher_is_worse: bool) -> Option<(Severity, f64)> {
    if !t.enabled {
        return None;
    }
    let worse = |limit: f64| if higher_is_worse { value >= limit } else { value <= limit };
    if worse(t.critical) {
        Some((Severity::Critical, t.critical))
    } else if worse(t.warning) {
        Some((Severity::Warning, t.warning))
    } else {
        None
    }
}

/// Applies the rules to the observations: what is wrong right now.
pub fn conditions(rules: &Rules, obs: &Observations, now: Timestamp) -> Vec<Condition> {
    let mut out = Vec::new();
    for fs in &obs.filesystems {
        let free = fs.free_percent();
        if let Some((severity, limit)) = threshold_condition(&rules.filesystem_free_percent, free, false) {
            out.push(Condition {
                rule: rule::FILESYSTEM_FREE,
                subject: fs.mountpoint.clone(),
                severity,
                summary: format!("filesystem {} has {} free (threshold {})", fs.mountpoint, pct(free), pct(limit)),
                value: Some(free),
                hold: rules.filesystem_free_percent.hold,
                held_since: None,
            });
        }
    }
    if let Some(used) = obs.memory_used_percent {
        if let Some((severity, limit)) = threshold_condition(&rules.memory_used_percent, used, true) {
            out.push(Condition {
                rule: rule::MEMORY_USED,
                subject: String::new(),
                severity,
                summary: format!("memory is {} used (threshold {})", pct(used), pct(limit)),
                value: Some(used),
                hold: rules.memory_used_percent.hold,
                held_since: None,
            });
        }
    }
    if let Some(load) = obs.load_per_cpu {
        if let Some((severity, limit)) = threshold_condition(&rules.load_per_cpu, load, true) {
            out.push(Condition {
                rule: rule::LOAD,
                subject: String::new(),
                severity,
                summary: format!("5-minute load is {load:.2} per CPU (threshold {limit})"),
                value: Some(load),
                hold: rules.load_per_cpu.hold,
                held_since: None,
            });
        }
    }
    if rules.reboots_max > 0 {
        let since = now.checked_sub(sd(rules.reboots_within)).unwrap_or(Timestamp::MIN);
        // The first boot in the window is a start, not a reboot.
        let boots = obs.boots.iter().filter(|b| **b > since).count() as u32;
        let reboots = boots.saturating_sub(1);
        if reboots > rules.reboots_max {
            out.push(Condition {
                rule: rule::REBOOTS,
                subject: String::new(),
                severity: Severity::Warning,
                summary: format!(
                    "the machine rebooted {reboots} times within {} (more than {})",
                    crate::duration::format_duration(rules.reboots_within),
                    rules.reboots_max
                ),
                value: Some(reboots as f64),
                hold: Duration::ZERO,
                held_since: None,
            });
        }
    }
    let age_rule = |name: &'static str, what: &str, max: Option<Duration>, last: &Option<Option<Timestamp>>| {
        let (max, last) = (max?, last.as_ref()?);
        let reference = last.or(obs.watching_since)?;
        let age = now.duration_since(reference);
        if age <= sd(max) {
            return None;
        }
        let severity = if age > sd(max) * 2 { Severity::Critical } else { Severity::Warning };
        let summary = match last {
            Some(_) => format!("the last successful {what} was {} ago (limit {})", human(age), human(sd(max))),
            None => format!("no successful {what} in {} of watching (limit {})", human(age), human(sd(max))),
        };
        Some(Condition {
            rule: name,
            subject: String::new(),
            severity,
            summary,
            value: Some(age.as_secs_f64()),
            hold: Duration::ZERO,
            held_since: None,
        })
    };
    out.extend(age_rule(rule::BACKUP_MAX_AGE, "backup", rules.backup_max_age, &obs.backup));
    out.extend(age_rule(rule::UPDATE_MAX_AGE, "update", rules.update_max_age, &obs.update));
    if rules.certificate_expiry.enabled {
        for c in &obs.certificates {
            let left = c.not_after.duration_since(now);
            let severity = if left <= sd(rules.certificate_expiry.critical) {
                Severity::Critical
            } else if left <= sd(rules.certificate_expiry.warning) {
                Severity::Warning
            } else {
                continue;
            };
            let summary = if left.is_negative() {
                format!("certificate {} expired {} ago", c.name, human(-left))
            } else {
                format!("certificate {} expires in {}", c.name, human(left))
            };
            out.push(Condition {
                rule: rule::CERTIFICATE_EXPIRY,
                subject: c.name.clone(),
                severity,
                summary,
                value: Some(left.as_secs_f64()),
                hold: Duration::ZERO,
                held_since: None,
            });
        }
    }
    if let Some(down_for) = rules.service_down_for {
        for s in obs.services.iter().filter(|s| !s.up) {
            // When the supervisor says since when, count from there; else from pending.
            out.push(Condition {
                rule: rule::SERVICE_DOWN,
                subject: s.name.clone(),
                severity: Severity::Critical,
                summary: format!("service {} is down", s.name),
                value: None,
                hold: down_for,
                held_since: s.down_since,
            });
        }
    }
    if rules.job_failed {
        for j in obs.last_jobs.iter().filter(|j| !j.succeeded) {
            out.push(Condition {
                rule: rule::JOB_FAILED,
                subject: j.kind.clone(),
                severity: Severity::Warning,
                summary: match &j.error {
                    Some(e) => format!("the last {} job (#{}) failed: {e}", j.kind, j.id),
                    None => format!("the last {} job (#{}) failed", j.kind, j.id),
                },
                value: Some(j.id as f64),
                hold: Duration::ZERO,
                held_since: None,
            });
        }
    }
    if rules.job_skipped {
        for t in obs.skipped_tasks.iter().filter(|t| t.skips >= SKIPS_TO_ALERT) {
            let why = t.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
            out.push(Condition {
                rule: rule::JOB_SKIPPED,
                subject: t.task.clone(),
                // A backup that cannot run lets the recovery point age unnoticed.
                severity: if t.task == "backup" { Severity::Critical } else { Severity::Warning },
                summary: format!(
                    "scheduled task {} was skipped {} times in a row since {} (the app lock was held){why}",
                    t.task,
                    t.skips,
                    t.since.strftime("%Y-%m-%d %H:%M:%S UTC")
                ),
                value: Some(f64::from(t.skips)),
                hold: Duration::ZERO,
                held_since: None,
            });
        }
    }
    if let (true, Some(d)) = (rules.dependencies_vulnerable, &obs.dependencies) {
        if d.vulnerable > 0 {
            out.push(Condition {
                rule: rule::DEPENDENCIES_VULNERABLE,
                subject: String::new(),
                severity: Severity::Warning,
                summary: format!(
                    "{} of the app's dependencies have known vulnerabilities: {} (`caretaker deps`)",
                    d.vulnerable,
                    d.vulnerable_packages.join(", ")
                ),
                value: Some(d.vulnerable as f64),
                hold: Duration::ZERO,
                held_since: None,
            });
        }
    }
    if rules.service_mode {
        if let Some(why) = &obs.service_mode {
            out.push(Condition {
                rule: rule::SERVICE_MODE,
                subject: String::new(),
                severity: Severity::Critical,
                summary: format!("the app is in service mode: {why}"),
                value: None,
                hold: Duration::ZERO,
                held_since: None,
            });
        }
    }
    out
}

/// One evaluation step: observations → conditions → new alert states and notifications.
///
/// - a new condition becomes `pending`; it fires once it has held for the rule's `for`
///   (immediately when `for` is zero); a pending alert whose condition clears is dropped;
/// - a firing alert is notified once, again after `repeat_interval` while it fires, and at
///   once when it escalates from warning to critical;
/// - a firing alert whose condition clears becomes `resolved`, notified only if its firing
///   was notified; resolved alerts are history and are dropped after [`RESOLVED_RETENTION`];
/// - silences and maintenance hold notifications back; a firing alert never notified is
///   notified as soon as its silence ends.
pub fn evaluate(
    rules: &Rules,
    repeat_interval: Duration,
    obs: &Observations,
    previous: &[AlertState],
    silences: &[Silence],
    now: Timestamp,
) -> Evaluation {
    let mut prev: BTreeMap<(String, String), &AlertState> =
        previous.iter().map(|s| ((s.rule.clone(), s.subject.clone()), s)).collect();
    let silenced = |rule: &str, subject: &str| {
        obs.maintenance || silences.iter().any(|s| s.is_active(now) && s.matches(rule, subject))
    };
    let mut eval = Evaluation::default();
    for c in conditions(rules, obs, now) {
        let old = prev.remove(&(c.rule.to_string(), c.subject.clone())).filter(|s| s.status != Status::Resolved);
        let mut st = match old {
            Some(o) => o.clone(),
            None => AlertState {
                rule: c.rule.to_string(),
                subject: c.subject.clone(),
                severity: c.severity,
                status: Status::Pending,
                summary: String::new(),
                value: None,
                active_since: now,
                fired_at: None,
                resolved_at: None,
                last_notified: None,
                notified_severity: None,
            },
        };
        st.severity = c.severity;
        st.summary = c.summary.clone();
        st.value = c.value;
        let held_from = c.held_since.map_or(st.active_since, |h| h.min(st.active_since));
        if st.status == Status::Pending && now.duration_since(held_from) >= sd(c.hold) {
            st.status = Status::Firing;
            st.fired_at = Some(now);
        }
        if st.status == Status::Firing && !silenced(&st.rule, &st.subject) {
            let kind = match (st.last_notified, st.notified_severity) {
                (None, _) => Some(NotificationKind::Firing),
                (Some(_), Some(sev)) if st.severity > sev => Some(NotificationKind::Repeat),
                (Some(last), _) if now.duration_since(last) >= sd(repeat_interval) => Some(NotificationKind::Repeat),
                _ => None,
            };
            if let Some(kind) = kind {
                st.last_notified = Some(now);
                st.notified_severity = Some(st.severity);
                eval.notifications.push(Notification { kind, alert: st.clone() });
            }
        }
        eval.states.push(st);
    }
    // Alerts whose condition no longer holds.
    for (_, old) in prev {
        match old.status {
            Status::Pending => {}
            Status::Firing => {
                // A rule that was not observed this time keeps its state: no evidence either way.
                if !observed(old, obs) {
                    eval.states.push(old.clone());
                    continue;
                }
                let mut st = old.clone();
                st.status = Status::Resolved;
                st.resolved_at = Some(now);
                if st.last_notified.is_some() && !silenced(&st.rule, &st.subject) {
                    eval.notifications.push(Notification { kind: NotificationKind::Resolved, alert: st.clone() });
                }
                eval.states.push(st);
            }
            Status::Resolved => {
                if old.resolved_at.is_some_and(|r| now.duration_since(r) < sd(RESOLVED_RETENTION)) {
                    eval.states.push(old.clone());
                }
            }
        }
    }
    eval.states.sort_by(|a, b| (&a.rule, &a.subject).cmp(&(&b.rule, &b.subject)));
    eval
}

/// Whether this evaluation had the observation the alert's rule needs.
fn observed(st: &AlertState, obs: &Observations) -> bool {
    match st.rule.as_str() {
        rule::FILESYSTEM_FREE => !obs.filesystems.is_empty(),
        rule::MEMORY_USED => obs.memory_used_percent.is_some(),
        rule::LOAD => obs.load_per_cpu.is_some(),
        rule::BACKUP_MAX_AGE => obs.backup.is_some(),
        rule::UPDATE_MAX_AGE => obs.update.is_some(),
        rule::CERTIFICATE_EXPIRY => !obs.certificates.is_empty(),
        rule::SERVICE_DOWN => !obs.services.is_empty(),
        _ => true,
    }
}

/// Subject line of an alert email.
pub fn email_subject(app: &str, n: &Notification) -> String {
    let a = &n.alert;
    match n.kind {
        NotificationKind::Resolved => format!("[{app}] RESOLVED: {}", a.summary_title()),
        _ => format!("[{app}] {}: {}", a.severity.as_str().to_uppercase(), a.summary_title()),
    }
}

impl AlertState {
    fn summary_title(&self) -> String {
        self.key()
    }
}

/// Body of an alert email: plain text for people.
pub fn email_body(app: &str, host: &str, n: &Notification) -> String {
    let a = &n.alert;
    let mut s = String::new();
    let what = match n.kind {
        NotificationKind::Firing => "is firing",
        NotificationKind::Repeat => "is still firing",
        NotificationKind::Resolved => "is resolved",
    };
    s.push_str(&format!("Alert {} {what} on {app} ({host}).\n\n", a.key()));
    s.push_str(&format!("{}\n\n", a.summary));
    s.push_str(&format!("rule:      {}\n", a.rule));
    if !a.subject.is_empty() {
        s.push_str(&format!("subject:   {}\n", a.subject));
    }
    s.push_str(&format!("severity:  {}\n", a.severity.as_str()));
    s.push_str(&format!("status:    {}\n", a.status.as_str()));
    s.push_str(&format!("active:    since {}\n", a.active_since.strftime("%Y-%m-%d %H:%M:%S UTC")));
    if let Some(r) = a.resolved_at {
        s.push_str(&format!("resolved:  {}\n", r.strftime("%Y-%m-%d %H:%M:%S UTC")));
    }
    s.push_str(&format!(
        "\nSilence it for two hours:\n  caretaker silence add {} --for 2h\nAll alerts:\n  caretaker alerts\n",
        a.key()
    ));
    s
}

/// The JSON a webhook receives (also documented in docs/observe.md).
pub fn webhook_payload(app: &str, host: &str, n: &Notification) -> serde_json::Value {
    let a = &n.alert;
    serde_json::json!({
        "version": 1,
        "app": app,
        "host": host,
        "kind": n.kind.as_str(),
        "status": a.status.as_str(),
        "rule": a.rule,
        "subject": a.subject,
        "key": a.key(),
        "severity": a.severity.as_str(),
        "summary": a.summary,
        "value": a.value,
        "active_since": a.active_since.to_string(),
        "fired_at": a.fired_at.map(|t| t.to_string()),
        "resolved_at": a.resolved_at.map(|t| t.to_string()),
        "title": email_subject(app, n),
        "message": email_body(app, host, n),
    })
}

pub mod export;

#[cfg(test)]
mod tests;
