//! `caretaker alerts export --prometheus`: the built-in rules as Prometheus alerting rules
//! over caretaker's own metrics, for operators who run their own Prometheus/Alertmanager.
//!
//! The exported rules mirror [`super::conditions`]: same thresholds, `for` durations and
//! severities (labels `rule` and `severity` carry caretaker's names).

use crate::config::{Rules, Threshold};
use std::fmt::Write as _;
use std::time::Duration;

struct Rule {
    alert: &'static str,
    rule: &'static str,
    severity: &'static str,
    expr: String,
    hold: Duration,
    summary: &'static str,
}

fn prom_duration(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

fn thresholds(
    out: &mut Vec<Rule>,
    t: &Threshold,
    alert: &'static str,
    rule: &'static str,
    value: &str,
    cmp: &str,
    summary: &'static str,
) {
    if !t.enabled {
        return;
    }
    for (severity, limit) in [("warning", t.warning), ("critical", t.critical)] {
        out.push(Rule { alert, rule, severity, expr: format!("{value} {cmp} {limit}"), hold: t.hold, summary });
    }
}

/// The Prometheus/Alertmanager `alertname` of a caretaker rule.
pub fn alert_name(rule: &str) -> &'static str {
    match rule {
        super::rule::FILESYSTEM_FREE => "CaretakerFilesystemFreeLow",
        super::rule::MEMORY_USED => "CaretakerMemoryUsageHigh",
        super::rule::LOAD => "CaretakerLoadHigh",
        super::rule::REBOOTS => "CaretakerRebootsTooOften",
        super::rule::BACKUP_MAX_AGE => "CaretakerBackupMissed",
        super::rule::UPDATE_MAX_AGE => "CaretakerUpdateMissed",
        super::rule::CERTIFICATE_EXPIRY => "CaretakerCertificateExpiring",
        super::rule::SERVICE_DOWN => "CaretakerServiceDown",
        super::rule::JOB_FAILED => "CaretakerJobFailed",
        super::rule::SERVICE_MODE => "CaretakerServiceMode",
        super::rule::JOB_SKIPPED => "CaretakerJobSkipped",
        super::rule::DEPENDENCIES_VULNERABLE => "CaretakerDependenciesVulnerable",
        _ => "CaretakerAlert",
    }
}

/// The rules file (YAML) for `rule_files:` in prometheus.yml.
pub fn prometheus_rules(app: &str, rules: &Rules) -> String {
    let mut r = Vec::new();
    thresholds(
        &mut r,
        &rules.filesystem_free_percent,
        "CaretakerFilesystemFreeLow",
        super::rule::FILESYSTEM_FREE,
        "100 * caretaker_filesystem_avail_bytes / caretaker_filesystem_size_bytes",
        "<=",
        "filesystem {{ $labels.mountpoint }} has {{ $value | printf \"%.1f\" }}% free",
    );
    thresholds(
        &mut r,
        &rules.memory_used_percent,
        "CaretakerMemoryUsageHigh",
        super::rule::MEMORY_USED,
        "100 * (1 - caretaker_memory_available_bytes / caretaker_memory_total_bytes)",
        ">=",
        "memory is {{ $value | printf \"%.1f\" }}% used",
    );
    thresholds(
        &mut r,
        &rules.load_per_cpu,
        "CaretakerLoadHigh",
        super::rule::LOAD,
        "caretaker_load5 / caretaker_cpus",
        ">=",
        "5-minute load is {{ $value | printf \"%.2f\" }} per CPU",
    );
    if rules.reboots_max > 0 {
        r.push(Rule {
            alert: "CaretakerRebootsTooOften",
            rule: super::rule::REBOOTS,
            severity: "warning",
            expr: format!(
                "changes(caretaker_boot_time_seconds[{}]) > {}",
                prom_duration(rules.reboots_within),
                rules.reboots_max
            ),
            hold: Duration::ZERO,
            summary: "the machine rebooted {{ $value }} times",
        });
    }
    for (alert, rule, kind, max) in [
        ("CaretakerBackupMissed", super::rule::BACKUP_MAX_AGE, "backup", rules.backup_max_age),
        ("CaretakerUpdateMissed", super::rule::UPDATE_MAX_AGE, "update", rules.update_max_age),
    ] {
        if let Some(max) = max {
            let age = format!("time() - caretaker_job_last_success_timestamp_seconds{{kind=\"{kind}\"}}");
            for (severity, limit) in [("warning", max.as_secs()), ("critical", 2 * max.as_secs())] {
                r.push(Rule {
                    alert,
                    rule,
                    severity,
                    expr: format!("{age} > {limit}"),
                    hold: Duration::ZERO,
                    summary: if kind == "backup" {
                        "the last successful backup was {{ $value | humanizeDuration }} ago"
                    } else {
                        "the last successful update was {{ $value | humanizeDuration }} ago"
                    },
                });
            }
        }
    }
    if rules.certificate_expiry.enabled {
        for (severity, left) in
            [("warning", rules.certificate_expiry.warning), ("critical", rules.certificate_expiry.critical)]
        {
            r.push(Rule {
                alert: "CaretakerCertificateExpiring",
                rule: super::rule::CERTIFICATE_EXPIRY,
                severity,
                expr: format!("caretaker_certificate_not_after_timestamp_seconds - time() <= {}", left.as_secs()),
                hold: Duration::ZERO,
                summary: "certificate {{ $labels.name }} expires in {{ $value | humanizeDuration }}",
            });
        }
    }
    if let Some(down) = rules.service_down_for {
        r.push(Rule {
            alert: "CaretakerServiceDown",
            rule: super::rule::SERVICE_DOWN,
            severity: "critical",
            expr: "caretaker_service_up == 0".into(),
            hold: down,
            summary: "service {{ $labels.service }} is down",
        });
    }
    if rules.job_failed {
        r.push(Rule {
            alert: "CaretakerJobFailed",
            rule: super::rule::JOB_FAILED,
            severity: "warning",
            expr: "caretaker_job_last_succeeded == 0".into(),
            hold: Duration::ZERO,
            summary: "the last {{ $labels.kind }} job failed",
        });
    }
    if rules.job_skipped {
        // Critical for the backup (the recovery point ages unnoticed), as in `conditions`.
        for (severity, tasks) in [("critical", "task=\"backup\""), ("warning", "task!=\"backup\"")] {
            r.push(Rule {
                alert: "CaretakerJobSkipped",
                rule: super::rule::JOB_SKIPPED,
                severity,
                expr: format!("caretaker_task_skipped_in_a_row{{{tasks}}} >= {}", super::SKIPS_TO_ALERT),
                hold: Duration::ZERO,
                summary:
                    "scheduled task {{ $labels.task }} was skipped {{ $value }} times in a row (the app lock was held)",
            });
        }
    }
    if rules.dependencies_vulnerable {
        r.push(Rule {
            alert: "CaretakerDependenciesVulnerable",
            rule: super::rule::DEPENDENCIES_VULNERABLE,
            severity: "warning",
            expr: "caretaker_dependencies_vulnerable > 0".into(),
            hold: Duration::ZERO,
            summary: "{{ $value }} of the app's dependencies have known vulnerabilities (`caretaker deps`)",
        });
    }
    if rules.service_mode {
        r.push(Rule {
            alert: "CaretakerServiceMode",
            rule: super::rule::SERVICE_MODE,
            severity: "critical",
            expr: "caretaker_service_mode == 1".into(),
            hold: Duration::ZERO,
            summary: "the app is in service mode",
        });
    }

    let mut s = String::new();
    let _ = writeln!(s, "# Prometheus alerting rules equivalent to caretaker's built-in rules for {app}.");
    let _ = writeln!(s, "# Generated by `caretaker alerts export --prometheus`; load with `rule_files:`.");
    let _ = writeln!(s, "groups:");
    let _ = writeln!(s, "  - name: caretaker");
    let _ = writeln!(s, "    rules:");
    for x in r {
        let _ = writeln!(s, "      - alert: {}", x.alert);
        let _ = writeln!(s, "        expr: {}", yaml_str(&x.expr));
        if !x.hold.is_zero() {
            let _ = writeln!(s, "        for: {}", prom_duration(x.hold));
        }
        let _ = writeln!(s, "        labels:");
        let _ = writeln!(s, "          severity: {}", x.severity);
        let _ = writeln!(s, "          rule: {}", x.rule);
        let _ = writeln!(s, "          app: {}", yaml_str(app));
        let _ = writeln!(s, "        annotations:");
        let _ = writeln!(s, "          summary: {}", yaml_str(x.summary));
    }
    s
}

/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_export() {
        let text = prometheus_rules("guestbook", &crate::config::alerts_defaults().rules);
        assert!(text.contains("      - alert: CaretakerFilesystemFreeLow\n        expr: \"100 * caretaker_filesystem_avail_bytes / caretaker_filesystem_size_bytes <= 20\"\n        for: 300s\n"));
        assert!(text.contains("changes(caretaker_boot_time_seconds[86400s]) > 3"));
        assert_eq!(text.matches("- alert:").count(), 19);
        assert!(text.contains("expr: \"caretaker_task_skipped_in_a_row{task=\\\"backup\\\"} >= 3\""), "{text}");
        assert!(text.contains("expr: \"caretaker_dependencies_vulnerable > 0\""), "{text}");
    }

    /// Every built-in rule has its Prometheus equivalent (when enabled, as by default).
    #[test]
    fn every_built_in_rule_is_exported() {
        let text = prometheus_rules("a", &crate::config::alerts_defaults().rules);
        for rule in crate::alert::rule::ALL_RULES {
            assert!(text.contains(&format!("          rule: {rule}\n")), "rule {rule} is not exported:\n{text}");
        }
    }

    #[test]
    fn exported_alert_names_match_alert_name() {
        let text = prometheus_rules("a", &crate::config::alerts_defaults().rules);
        let mut alert = "";
        for line in text.lines().map(str::trim) {
            if let Some(a) = line.strip_prefix("- alert: ") {
                alert = a;
            }
            if let Some(rule) = line.strip_prefix("rule: ") {
                assert_eq!(alert_name(rule), alert, "{rule}");
            }
        }
    }
}
