//! Deployment checks (`caretaker check`): is everything that should work, working?
//!
//! Like the appliance's `check_things`: disk, memory, load, database, services, HTTP endpoints,
//! backup freshness, last update, SMTP, the failed flag, and custom checks from the config.
//! Each check yields a [`CheckResult`] with a Nagios-style [`CheckStatus`].

use crate::gather::watched_paths;
use crate::host::host_stats;
use crate::probe;
use caretaker_core::config::{Config, DbKind, Probe, Threshold};
use caretaker_core::duration::format_duration;
use caretaker_core::job::kind;
use caretaker_state::{StateError, Store};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::time::Duration;

/// Nagios plugin states; the numbers are the exit codes of `caretaker check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
            CheckStatus::Unknown => "unknown",
        }
    }
    /// How bad, for picking the overall result: critical > warning > unknown > ok.
    fn rank(self) -> u8 {
        match self {
            CheckStatus::Ok => 0,
            CheckStatus::Unknown => 1,
            CheckStatus::Warning => 2,
            CheckStatus::Critical => 3,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub status: CheckStatus,
    pub message: String,
}

fn result(name: impl Into<String>, status: CheckStatus, message: impl Into<String>) -> CheckResult {
    CheckResult { name: name.into(), status, message: message.into() }
}

/// The `database dump` check from the database adapter's privilege check
/// (`caretaker_db::Database::check_dump_privileges`): whether the backup's dump can read
/// every routine, view and event, so it does not first fail on the night it runs. `Ok` holds
/// warnings (routines left out by config); `Err` is the problem and its hint (the grant).
pub fn dump_privileges(outcome: Result<Vec<String>, (String, Option<String>)>) -> CheckResult {
    let name = "database dump";
    match outcome {
        Ok(w) if w.is_empty() => result(
            name,
            CheckStatus::Ok,
            "the database user can read everything the dump needs (routines, views, events)",
        ),
        Ok(w) => result(name, CheckStatus::Warning, w.join("; ")),
        Err((problem, Some(hint))) => result(name, CheckStatus::Critical, format!("{problem} (hint: {hint})")),
        Err((problem, None)) => result(name, CheckStatus::Critical, problem),
    }
}

/// The worst status of all results (`Ok` for none).
pub fn overall(results: &[CheckResult]) -> CheckStatus {
    results.iter().map(|r| r.status).max_by_key(|s| s.rank()).unwrap_or(CheckStatus::Ok)
}

fn level(t: &Threshold, value: f64, higher_is_worse: bool) -> CheckStatus {
    let worse = |l: f64| if higher_is_worse { value >= l } else { value <= l };
    if !t.enabled {
        CheckStatus::Ok
    } else if worse(t.critical) {
        CheckStatus::Critical
    } else if worse(t.warning) {
        CheckStatus::Warning
    } else {
        CheckStatus::Ok
    }
}

/// How old the last successful `what` is against `max`: warning past it, critical past twice
/// it; none recorded is a warning.
pub fn age_check(name: &str, what: &str, max: Duration, last: Option<Timestamp>, now: Timestamp) -> CheckResult {
    match last {
        None => result(name, CheckStatus::Warning, format!("no successful {what} recorded yet")),
        Some(t) => {
            let age = now.duration_since(t);
            let age_s = Duration::from_secs(age.as_secs().max(0) as u64);
            let max_sd = SignedDuration::try_from(max).unwrap_or(SignedDuration::MAX);
            let status = if age > max_sd * 2 {
                CheckStatus::Critical
            } else if age > max_sd {
                CheckStatus::Warning
            } else {
                CheckStatus::Ok
            };
            result(
                name,
                status,
                format!("last successful {what} {} ago (limit {})", format_duration(age_s), format_duration(max)),
            )
        }
    }
}

fn url_host_port(url: &str, default_port: u16) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let hostport = authority.rsplit('@').next()?;
    if hostport.starts_with('[') || hostport.contains(':') {
        Some(hostport.to_string())
    } else {
        Some(format!("{hostport}:{default_port}"))
    }
}

/// The ACME certificate against the `certificate_expiry` thresholds: warning within the
/// warning time, critical within the critical time or expired; a warning while none is issued.
/// Read from the renewal task's status fact.
pub fn certificate_check(
    names: &[String],
    rule: &caretaker_core::config::DurationThreshold,
    fact: Option<&str>,
    now: Timestamp,
) -> CheckResult {
    let first = names.first().cloned().unwrap_or_default();
    let name = format!("certificate {first}");
    let Some(c) = caretaker_core::cert::watched(fact, now).into_iter().find(|c| c.name == first) else {
        return result(
            name,
            CheckStatus::Warning,
            "no certificate issued yet: the front door serves a self-signed one",
        );
    };
    let left = c.seconds_left;
    let days = left / 86400.0;
    let status = if !rule.enabled {
        if left <= 0.0 {
            CheckStatus::Critical
        } else {
            CheckStatus::Ok
        }
    } else if left <= rule.critical.as_secs_f64() {
        CheckStatus::Critical
    } else if left <= rule.warning.as_secs_f64() {
        CheckStatus::Warning
    } else {
        CheckStatus::Ok
    };
    let msg = if left <= 0.0 {
        format!("expired {:.1} days ago ({})", -days, c.not_after)
    } else {
        format!("valid for {days:.1} more days (until {})", c.not_after)
    };
    result(name, status, msg)
}

/// Runs every deployment check. `extra`: results the caller adds (e.g. a database adapter's
/// "reachable and not empty" check), placed after the database line.
pub fn run_checks(
    cfg: &Config,
    store: &Store,
    extra: Vec<CheckResult>,
    now: Timestamp,
) -> Result<Vec<CheckResult>, StateError> {
    let rules = &cfg.alerts.rules;
    let host = host_stats(&watched_paths(cfg, store));
    let mut out = Vec::new();
    for fs in &host.filesystems {
        let free = fs.free_percent();
        out.push(result(
            format!("disk {}", fs.mountpoint),
            level(&rules.filesystem_free_percent, free, false),
            format!("{free:.1}% free of {:.1} GiB", fs.size_bytes as f64 / (1u64 << 30) as f64),
        ));
    }
    match host.memory_used_percent() {
        Some(used) => {
            out.push(result("memory", level(&rules.memory_used_percent, used, true), format!("{used:.1}% used")))
        }
        None => out.push(result("memory", CheckStatus::Unknown, "cannot read /proc/meminfo")),
    }
    match (host.load_per_cpu(), host.cpus) {
        (Some(l), Some(c)) => out.push(result(
            "load",
            level(&rules.load_per_cpu, l, true),
            format!("{l:.2} per CPU ({c} CPUs, 5-minute average)"),
        )),
        _ => out.push(result("load", CheckStatus::Unknown, "cannot read /proc/loadavg")),
    }
    if let Some(db) = &cfg.database {
        match db.kind {
            DbKind::Sqlite => {
                let p = db.path.clone().unwrap_or_default();
                match std::fs::metadata(&p) {
                    Ok(m) if m.len() > 0 => {
                        out.push(result("database", CheckStatus::Ok, format!("{} ({} bytes)", p.display(), m.len())))
                    }
                    Ok(_) => out.push(result("database", CheckStatus::Critical, format!("{} is empty", p.display()))),
                    Err(e) => out.push(result("database", CheckStatus::Critical, format!("{}: {e}", p.display()))),
                }
            }
            // In a compose service: reachable through its container only (the adapter's check).
            DbKind::Postgres | DbKind::Mariadb if db.compose_service.is_some() => {}
            DbKind::Postgres | DbKind::Mariadb => {
                let default_port = if db.kind == DbKind::Postgres { 5432 } else { 3306 };
                let addr = db.url.as_ref().and_then(|u| url_host_port(u.expose(), default_port));
                match addr {
                    Some(a) => match probe::tcp(&a, Duration::from_secs(5)) {
                        Ok(()) => out.push(result("database", CheckStatus::Ok, format!("{a} reachable"))),
                        Err(e) => out.push(result("database", CheckStatus::Critical, e)),
                    },
                    None => out.push(result(
                        "database",
                        CheckStatus::Unknown,
                        "no host in the database URL (socket connection)",
                    )),
                }
            }
        }
    }
    out.extend(extra);
    let compose_checks = cfg.compose.iter().flat_map(|c| c.services.iter()).map(|s| (&s.name, &s.health));
    for (name, health) in cfg.services.iter().map(|s| (&s.name, &s.health)).chain(compose_checks) {
        // A compose service's `command` probe runs inside its container: the caller runs it
        // (through compose) and passes its result in `extra`.
        if let Some(h) = health.as_ref().filter(|h| cfg.compose.is_none() || !matches!(h.probe, Probe::Command { .. }))
        {
            match probe::run(&h.probe, h.timeout) {
                Ok(m) => out.push(result(format!("service {name}"), CheckStatus::Ok, m)),
                Err(e) => out.push(result(format!("service {name}"), CheckStatus::Critical, e)),
            }
        }
    }
    if let (Some(_), Some(max)) = (&cfg.backup, rules.backup_max_age) {
        let last = store.last_success(kind::BACKUP)?.and_then(|j| j.ended_at);
        out.push(age_check("backup", "backup", max, last, now));
    }
    if cfg.update.automatic {
        if let Some(max) = rules.update_max_age {
            let last = store.last_success(kind::UPDATE)?.and_then(|j| j.ended_at);
            out.push(age_check("update", "update", max, last, now));
        }
    }
    if let Some(smtp) = &cfg.alerts.smtp {
        let a = format!("{}:{}", smtp.host, smtp.port);
        match probe::tcp(&a, Duration::from_secs(5)) {
            Ok(()) => out.push(result("smtp", CheckStatus::Ok, format!("{a} reachable"))),
            Err(e) => out.push(result("smtp", CheckStatus::Warning, e)),
        }
    }
    if let Some(t) = cfg.tls.as_ref().filter(|t| t.acme.is_some()) {
        out.push(certificate_check(
            &t.names,
            &rules.certificate_expiry,
            store.fact(caretaker_core::cert::STATUS_FACT)?.as_deref(),
            now,
        ));
    }
    match store.mode()? {
        caretaker_core::mode::Mode::Service(f) => out.push(result(
            "failed flag",
            CheckStatus::Critical,
            format!(
                "service mode since {}: {} (fix the cause; then `caretaker up` ends it once every service is healthy, if a service failed, or `caretaker reset-failed`)",
                f.since, f.reason
            ),
        )),
        _ => out.push(result("failed flag", CheckStatus::Ok, "not set")),
    }
    for c in &cfg.checks {
        let fail = if c.critical { CheckStatus::Critical } else { CheckStatus::Warning };
        match probe::run(&c.probe, c.timeout) {
            Ok(m) => out.push(result(&c.name, CheckStatus::Ok, m)),
            Err(e) => out.push(result(&c.name, fail, e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_status_wins() {
        let r = |s| result("x", s, "");
        assert_eq!(overall(&[]), CheckStatus::Ok);
        assert_eq!(overall(&[r(CheckStatus::Ok), r(CheckStatus::Unknown)]), CheckStatus::Unknown);
        assert_eq!(overall(&[r(CheckStatus::Warning), r(CheckStatus::Unknown)]), CheckStatus::Warning);
        assert_eq!(overall(&[r(CheckStatus::Warning), r(CheckStatus::Critical)]), CheckStatus::Critical);
    }

    #[test]
    fn certificate_check_warns_at_the_configured_days() {
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let rule = caretaker_core::config::alerts_defaults().rules.certificate_expiry;
        let fact = |days: i64| {
            let end = now + jiff::SignedDuration::from_hours(24 * days);
            serde_json::json!([{"name": "a.example", "not_after": end.to_string(), "acme_certificate": true}])
                .to_string()
        };
        let names = vec!["a.example".to_string()];
        let st = |days| certificate_check(&names, &rule, Some(&fact(days)), now).status;
        assert_eq!(st(30), CheckStatus::Ok);
        assert_eq!(st(20), CheckStatus::Warning);
        assert_eq!(st(5), CheckStatus::Critical);
        assert_eq!(st(-1), CheckStatus::Critical);
        assert_eq!(certificate_check(&names, &rule, None, now).status, CheckStatus::Warning);
    }

    #[test]
    fn database_url_host_port() {
        assert_eq!(url_host_port("postgres://u:p@db.example:6543/x", 5432).unwrap(), "db.example:6543");
        assert_eq!(url_host_port("mysql://u:p@db/x", 3306).unwrap(), "db:3306");
    }
}
