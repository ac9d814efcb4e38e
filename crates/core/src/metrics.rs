//! `/metrics`: rendering caretaker's measurements in the Prometheus text exposition format.
//!
//! Pure: the caller gathers a [`Snapshot`] (host, services, jobs, backups, certificates,
//! alerts) and [`render_metrics`] turns it into text. Metric names are a stable interface
//! (listed in docs/observe.md): prefix `caretaker_`, base units as suffixes (`_bytes`,
//! `_seconds`), `_total` only on counters, `_timestamp_seconds` for instants.

use crate::alert::{AlertState, CertificateObs, FilesystemObs, ServiceObs, Status};
use jiff::Timestamp;
use serde::Serialize;
use std::fmt::Write as _;

/// What the host looks like now.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HostStats {
    pub filesystems: Vec<FilesystemObs>,
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub swap_total_bytes: Option<u64>,
    pub swap_free_bytes: Option<u64>,
    pub load1: Option<f64>,
    pub load5: Option<f64>,
    pub load15: Option<f64>,
    pub cpus: Option<u32>,
    pub boot_time: Option<Timestamp>,
}

impl HostStats {
    pub fn memory_used_percent(&self) -> Option<f64> {
        let (t, a) = (self.memory_total_bytes?, self.memory_available_bytes?);
        (t > 0).then(|| 100.0 * (t.saturating_sub(a)) as f64 / t as f64)
    }
    pub fn load_per_cpu(&self) -> Option<f64> {
        Some(self.load5? / self.cpus?.max(1) as f64)
    }
}

/// One job kind's record.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct JobStats {
    pub kind: String,
    pub last_success: Option<Timestamp>,
    pub last_end: Option<Timestamp>,
    pub last_duration_seconds: Option<f64>,
    pub last_succeeded: Option<bool>,
    /// Finished runs by outcome (`succeeded`, `failed`, ...), all time.
    pub runs: Vec<(String, u64)>,
}

/// Figures of the newest backup, as far as the backup job recorded them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BackupStats {
    pub snapshots: Option<u64>,
    pub repository_size_bytes: Option<u64>,
    pub last_added_bytes: Option<u64>,
    pub last_size_bytes: Option<u64>,
}

/// Everything `/metrics` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    pub app: String,
    pub version: String,
    pub host: HostStats,
    pub services: Vec<ServiceObs>,
    pub jobs: Vec<JobStats>,
    pub backup: Option<BackupStats>,
    pub certificates: Vec<CertificateObs>,
    pub alerts: Vec<AlertState>,
    pub maintenance: Option<bool>,
    pub service_mode: Option<bool>,
    /// Silences in force.
    pub silences_active: Option<u64>,
    /// The newest successful dependency report (`caretaker deps`), if any.
    pub dependencies: Option<crate::alert::DependenciesObs>,
    /// Scheduled tasks whose latest attempts were skipped (the `job_skipped` rule's input).
    #[serde(default)]
    pub skipped_tasks: Vec<crate::alert::SkippedTaskObs>,
}

struct Out {
    s: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.s, "# HELP {name} {help}");
        let _ = writeln!(self.s, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                let _ = write!(self.s, "{k}=\"{}\"", escape(v));
            }
            self.s.push('}');
        }
        self.s.push(' ');
        self.s.push_str(&number(value));
        self.s.push('\n');
    }
    /// A family with one sample per item, skipped entirely when there is none.
    fn each<T>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        items: &[T],
        f: impl Fn(&T) -> Option<(Vec<(&str, &str)>, f64)>,
    ) {
        let samples: Vec<_> = items.iter().filter_map(f).collect();
        if samples.is_empty() {
            return;
        }
        self.family(name, kind, help);
        for (labels, v) in samples {
            self.sample(name, &labels, v);
        }
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.family(name, kind, help);
            self.sample(name, &[], v);
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn secs(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

fn fs_labels(f: &FilesystemObs) -> Vec<(&'static str, &str)> {
    vec![("mountpoint", f.mountpoint.as_str()), ("device", f.device.as_str()), ("fstype", f.fstype.as_str())]
}

fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

/// The Prometheus text exposition (version 0.0.4) of a snapshot.
pub fn render_metrics(s: &Snapshot) -> String {
    let mut o = Out { s: String::with_capacity(8192) };
    o.family("caretaker_build_info", "gauge", "caretaker version and the app it looks after (always 1).");
    o.sample("caretaker_build_info", &[("version", &s.version), ("app", &s.app)], 1.0);

    // Host.
    let h = &s.host;
    let fss = &h.filesystems;
    o.each("caretaker_filesystem_size_bytes", "gauge", "Filesystem size.", fss, |f| {
        Some((fs_labels(f), f.size_bytes as f64))
    });
    o.each(
        "caretaker_filesystem_avail_bytes",
        "gauge",
        "Filesystem space available to unprivileged users.",
        fss,
        |f| Some((fs_labels(f), f.avail_bytes as f64)),
    );
    o.each(
        "caretaker_filesystem_free_bytes",
        "gauge",
        "Filesystem free space, including space reserved for root.",
        fss,
        |f| Some((fs_labels(f), f.free_bytes as f64)),
    );
    o.one(
        "caretaker_memory_total_bytes",
        "gauge",
        "Physical memory (MemTotal).",
        h.memory_total_bytes.map(|v| v as f64),
    );
    o.one(
        "caretaker_memory_available_bytes",
        "gauge",
        "Memory available for new work without swapping (MemAvailable).",
        h.memory_available_bytes.map(|v| v as f64),
    );
    o.one("caretaker_swap_total_bytes", "gauge", "Swap space (SwapTotal).", h.swap_total_bytes.map(|v| v as f64));
    o.one("caretaker_swap_free_bytes", "gauge", "Unused swap space (SwapFree).", h.swap_free_bytes.map(|v| v as f64));
    o.one("caretaker_load1", "gauge", "1-minute load average.", h.load1);
    o.one("caretaker_load5", "gauge", "5-minute load average.", h.load5);
    o.one("caretaker_load15", "gauge", "15-minute load average.", h.load15);
    o.one("caretaker_cpus", "gauge", "Online CPUs.", h.cpus.map(f64::from));
    o.one("caretaker_boot_time_seconds", "gauge", "When the machine booted, Unix time.", h.boot_time.map(secs));

    // Services.
    let sv = &s.services;
    o.each("caretaker_service_up", "gauge", "Whether the service's process runs (1) or not (0).", sv, |x| {
        Some((vec![("service", x.name.as_str())], b(x.up)))
    });
    o.each("caretaker_service_healthy", "gauge", "Whether the service's health check passes.", sv, |x| {
        Some((vec![("service", x.name.as_str())], b(x.healthy?)))
    });
    o.each(
        "caretaker_service_restarts_total",
        "counter",
        "Restarts by the supervisor since the daemon started.",
        sv,
        |x| Some((vec![("service", x.name.as_str())], x.restarts? as f64)),
    );

    // Jobs.
    let js = &s.jobs;
    o.each(
        "caretaker_job_last_success_timestamp_seconds",
        "gauge",
        "When the last successful job of this kind ended, Unix time.",
        js,
        |j| Some((vec![("kind", j.kind.as_str())], secs(j.last_success?))),
    );
    o.each(
        "caretaker_job_last_end_timestamp_seconds",
        "gauge",
        "When the last job of this kind ended, Unix time.",
        js,
        |j| Some((vec![("kind", j.kind.as_str())], secs(j.last_end?))),
    );
    o.each("caretaker_job_last_duration_seconds", "gauge", "How long the last job of this kind ran.", js, |j| {
        Some((vec![("kind", j.kind.as_str())], j.last_duration_seconds?))
    });
    o.each(
        "caretaker_job_last_succeeded",
        "gauge",
        "Whether the last job of this kind succeeded (1) or not (0).",
        js,
        |j| Some((vec![("kind", j.kind.as_str())], b(j.last_succeeded?))),
    );
    let runs: Vec<(&str, &str, u64)> =
        js.iter().flat_map(|j| j.runs.iter().map(move |(o, n)| (j.kind.as_str(), o.as_str(), *n))).collect();
    o.each("caretaker_jobs_total", "counter", "Finished jobs by kind and outcome.", &runs, |(k, out, n)| {
        Some((vec![("kind", *k), ("outcome", *out)], *n as f64))
    });

    // Backups.
    if let Some(bk) = &s.backup {
        o.one(
            "caretaker_backup_snapshots",
            "gauge",
            "Snapshots in the backup repository.",
            bk.snapshots.map(|v| v as f64),
        );
        o.one(
            "caretaker_backup_repository_size_bytes",
            "gauge",
            "Size of the backup repository (stored, after deduplication and compression).",
            bk.repository_size_bytes.map(|v| v as f64),
        );
        o.one(
            "caretaker_backup_last_added_bytes",
            "gauge",
            "Bytes the last backup added to the repository.",
            bk.last_added_bytes.map(|v| v as f64),
        );
        o.one(
            "caretaker_backup_last_size_bytes",
            "gauge",
            "Size of the data the last backup saved.",
            bk.last_size_bytes.map(|v| v as f64),
        );
    }

    o.each(
        "caretaker_certificate_not_after_timestamp_seconds",
        "gauge",
        "When the TLS certificate expires, Unix time.",
        &s.certificates,
        |c| Some((vec![("name", c.name.as_str())], secs(c.not_after))),
    );

    // Alerts: like Prometheus' own ALERTS series, one per pending or firing alert.
    let active: Vec<&AlertState> = s.alerts.iter().filter(|a| a.status != Status::Resolved).collect();
    o.family(
        "caretaker_alert_active",
        "gauge",
        "Alerts that are pending or firing (1 per alert), with rule, subject, severity and state.",
    );
    for a in &active {
        o.sample(
            "caretaker_alert_active",
            &[
                ("rule", &a.rule),
                ("subject", &a.subject),
                ("severity", a.severity.as_str()),
                ("state", a.status.as_str()),
            ],
            1.0,
        );
    }
    let firing = active.iter().filter(|a| a.status == Status::Firing).count();
    o.family("caretaker_alerts_firing", "gauge", "Number of firing alerts.");
    o.sample("caretaker_alerts_firing", &[], firing as f64);
    o.one("caretaker_silences_active", "gauge", "Silences in force.", s.silences_active.map(|v| v as f64));
    o.one("caretaker_maintenance", "gauge", "Whether maintenance mode is on.", s.maintenance.map(b));
    o.one(
        "caretaker_service_mode",
        "gauge",
        "Whether the app is in service mode (cannot start).",
        s.service_mode.map(b),
    );
    o.each(
        "caretaker_task_skipped_in_a_row",
        "gauge",
        "Times in a row a scheduled task was skipped because the app lock was held, since it last ran (absent when none).",
        &s.skipped_tasks,
        |t| Some((vec![("task", t.task.as_str())], f64::from(t.skips))),
    );
    if let Some(d) = &s.dependencies {
        o.one(
            "caretaker_dependencies_vulnerable",
            "gauge",
            "Dependencies of the app with known vulnerabilities (newest `caretaker deps` report).",
            Some(d.vulnerable as f64),
        );
        o.one(
            "caretaker_dependencies_outdated",
            "gauge",
            "Outdated dependencies of the app (absent when no package index was reachable).",
            d.outdated.map(|v| v as f64),
        );
    }
    o.s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;

    #[test]
    fn renders_the_text_format() {
        let t: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let s = Snapshot {
            app: "guestbook".into(),
            version: "0.1.0".into(),
            host: HostStats {
                filesystems: vec![FilesystemObs {
                    mountpoint: "/".into(),
                    device: "/dev/sda1".into(),
                    fstype: "ext4".into(),
                    size_bytes: 1000,
                    avail_bytes: 150,
                    free_bytes: 200,
                }],
                memory_total_bytes: Some(1 << 30),
                memory_available_bytes: Some(1 << 29),
                load1: Some(0.5),
                load5: Some(0.25),
                cpus: Some(2),
                boot_time: Some(t),
                ..Default::default()
            },
            services: vec![ServiceObs {
                name: "web\"1".into(),
                up: true,
                down_since: None,
                restarts: Some(2),
                healthy: None,
            }],
            jobs: vec![JobStats {
                kind: "backup".into(),
                last_success: Some(t),
                last_end: Some(t),
                last_duration_seconds: Some(12.5),
                last_succeeded: Some(true),
                runs: vec![("succeeded".into(), 3), ("failed".into(), 1)],
            }],
            backup: None,
            certificates: vec![],
            alerts: vec![AlertState {
                rule: "filesystem_free_percent".into(),
                subject: "/".into(),
                severity: Severity::Warning,
                status: Status::Firing,
                summary: String::new(),
                value: Some(15.0),
                active_since: t,
                fired_at: Some(t),
                resolved_at: None,
                last_notified: None,
                notified_severity: None,
            }],
            maintenance: Some(false),
            service_mode: None,
            silences_active: Some(0),
            dependencies: None,
            skipped_tasks: vec![crate::alert::SkippedTaskObs {
                task: "job:report".into(),
                skips: 2,
                since: t,
                reason: Some("job #3 (restore) held the app lock".into()),
            }],
        };
        expect_test::expect![[r##"
            # HELP caretaker_build_info caretaker version and the app it looks after (always 1).
            # TYPE caretaker_build_info gauge
            caretaker_build_info{version="0.1.0",app="guestbook"} 1
            # HELP caretaker_filesystem_size_bytes Filesystem size.
            # TYPE caretaker_filesystem_size_bytes gauge
            caretaker_filesystem_size_bytes{mountpoint="/",device="/dev/sda1",fstype="ext4"} 1000
            # HELP caretaker_filesystem_avail_bytes Filesystem space available to unprivileged users.
            # TYPE caretaker_filesystem_avail_bytes gauge
            caretaker_filesystem_avail_bytes{mountpoint="/",device="/dev/sda1",fstype="ext4"} 150
            # HELP caretaker_filesystem_free_bytes Filesystem free space, including space reserved for root.
            # TYPE caretaker_filesystem_free_bytes gauge
            caretaker_filesystem_free_bytes{mountpoint="/",device="/dev/sda1",fstype="ext4"} 200
            # HELP caretaker_memory_total_bytes Physical memory (MemTotal).
            # TYPE caretaker_memory_total_bytes gauge
            caretaker_memory_total_bytes 1073741824
            # HELP caretaker_memory_available_bytes Memory available for new work without swapping (MemAvailable).
            # TYPE caretaker_memory_available_bytes gauge
            caretaker_memory_available_bytes 536870912
            # HELP caretaker_load1 1-minute load average.
            # TYPE caretaker_load1 gauge
            caretaker_load1 0.5
            # HELP caretaker_load5 5-minute load average.
            # TYPE caretaker_load5 gauge
            caretaker_load5 0.25
            # HELP caretaker_cpus Online CPUs.
            # TYPE caretaker_cpus gauge
            caretaker_cpus 2
            # HELP caretaker_boot_time_seconds When the machine booted, Unix time.
            # TYPE caretaker_boot_time_seconds gauge
            caretaker_boot_time_seconds 1772366400
            # HELP caretaker_service_up Whether the service's process runs (1) or not (0).
            # TYPE caretaker_service_up gauge
            caretaker_service_up{service="web\"1"} 1
            # HELP caretaker_service_restarts_total Restarts by the supervisor since the daemon started.
            # TYPE caretaker_service_restarts_total counter
            caretaker_service_restarts_total{service="web\"1"} 2
            # HELP caretaker_job_last_success_timestamp_seconds When the last successful job of this kind ended, Unix time.
            # TYPE caretaker_job_last_success_timestamp_seconds gauge
            caretaker_job_last_success_timestamp_seconds{kind="backup"} 1772366400
            # HELP caretaker_job_last_end_timestamp_seconds When the last job of this kind ended, Unix time.
            # TYPE caretaker_job_last_end_timestamp_seconds gauge
            caretaker_job_last_end_timestamp_seconds{kind="backup"} 1772366400
            # HELP caretaker_job_last_duration_seconds How long the last job of this kind ran.
            # TYPE caretaker_job_last_duration_seconds gauge
            caretaker_job_last_duration_seconds{kind="backup"} 12.5
            # HELP caretaker_job_last_succeeded Whether the last job of this kind succeeded (1) or not (0).
            # TYPE caretaker_job_last_succeeded gauge
            caretaker_job_last_succeeded{kind="backup"} 1
            # HELP caretaker_jobs_total Finished jobs by kind and outcome.
            # TYPE caretaker_jobs_total counter
            caretaker_jobs_total{kind="backup",outcome="succeeded"} 3
            caretaker_jobs_total{kind="backup",outcome="failed"} 1
            # HELP caretaker_alert_active Alerts that are pending or firing (1 per alert), with rule, subject, severity and state.
            # TYPE caretaker_alert_active gauge
            caretaker_alert_active{rule="filesystem_free_percent",subject="/",severity="warning",state="firing"} 1
            # HELP caretaker_alerts_firing Number of firing alerts.
            # TYPE caretaker_alerts_firing gauge
            caretaker_alerts_firing 1
            # HELP caretaker_silences_active Silences in force.
            # TYPE caretaker_silences_active gauge
            caretaker_silences_active 0
            # HELP caretaker_maintenance Whether maintenance mode is on.
            # TYPE caretaker_maintenance gauge
            caretaker_maintenance 0
            # HELP caretaker_task_skipped_in_a_row Times in a row a scheduled task was skipped because the app lock was held, since it last ran (absent when none).
            # TYPE caretaker_task_skipped_in_a_row gauge
            caretaker_task_skipped_in_a_row{task="job:report"} 2
        "##]]
        .assert_eq(&render_metrics(&s));
    }
}
