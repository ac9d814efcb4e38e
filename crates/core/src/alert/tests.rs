//! Rule evaluation with a fake clock: every transition of the alert life cycle.

use super::*;
use crate::config::alerts_defaults;

fn t0() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn at(mins: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_mins(mins)).unwrap()
}

fn fs(mount: &str, free_percent: f64) -> FilesystemObs {
    FilesystemObs {
        mountpoint: mount.into(),
        device: "/dev/sda1".into(),
        fstype: "ext4".into(),
        size_bytes: 1000,
        avail_bytes: (free_percent * 10.0) as u64,
        free_bytes: (free_percent * 10.0) as u64,
    }
}

fn obs_fs(free: f64) -> Observations {
    Observations { filesystems: vec![fs("/", free)], ..Default::default() }
}

/// Default rules: filesystem warning 20 %, critical 10 %, for 5m; repeat every 4h.
struct World {
    rules: Rules,
    repeat: Duration,
    states: Vec<AlertState>,
    silences: Vec<Silence>,
}

impl World {
    fn new() -> World {
        let a = alerts_defaults();
        World { rules: a.rules, repeat: a.repeat_interval, states: Vec::new(), silences: Vec::new() }
    }
    fn step(&mut self, obs: &Observations, now: Timestamp) -> Vec<(NotificationKind, String, Severity)> {
        let e = evaluate(&self.rules, self.repeat, obs, &self.states, &self.silences, now);
        self.states = e.states;
        e.notifications.into_iter().map(|n| (n.kind, n.alert.key(), n.alert.severity)).collect()
    }
    fn status(&self, key: &str) -> Option<Status> {
        self.states.iter().find(|s| s.key() == key).map(|s| s.status)
    }
}

#[test]
fn pending_then_firing_after_for_then_resolved() {
    let mut w = World::new();
    assert_eq!(w.step(&obs_fs(15.0), at(0)), vec![]);
    assert_eq!(w.status("filesystem_free_percent//"), Some(Status::Pending));
    assert_eq!(w.step(&obs_fs(15.0), at(4)), vec![], "not yet held for 5m");
    assert_eq!(
        w.step(&obs_fs(15.0), at(5)),
        vec![(NotificationKind::Firing, "filesystem_free_percent//".into(), Severity::Warning)]
    );
    assert_eq!(w.status("filesystem_free_percent//"), Some(Status::Firing));
    assert_eq!(w.step(&obs_fs(15.0), at(6)), vec![], "deduplicated");
    assert_eq!(
        w.step(&obs_fs(50.0), at(7)),
        vec![(NotificationKind::Resolved, "filesystem_free_percent//".into(), Severity::Warning)]
    );
    assert_eq!(w.status("filesystem_free_percent//"), Some(Status::Resolved));
    assert_eq!(w.step(&obs_fs(50.0), at(8)), vec![], "resolved once");
}

#[test]
fn a_blip_shorter_than_for_never_notifies() {
    let mut w = World::new();
    w.step(&obs_fs(15.0), at(0));
    assert_eq!(w.step(&obs_fs(50.0), at(2)), vec![]);
    assert!(w.states.is_empty(), "pending alert dropped: {:?}", w.states);
    // Coming back starts the `for` clock again.
    w.step(&obs_fs(15.0), at(3));
    assert_eq!(w.step(&obs_fs(15.0), at(7)), vec![]);
    assert_eq!(w.step(&obs_fs(15.0), at(8)).len(), 1);
}

#[test]
fn firing_repeats_after_the_repeat_interval_and_escalation_is_told_at_once() {
    let mut w = World::new();
    w.step(&obs_fs(15.0), at(0));
    assert_eq!(w.step(&obs_fs(15.0), at(5)).len(), 1);
    assert_eq!(w.step(&obs_fs(15.0), at(5 + 239)), vec![]);
    assert_eq!(
        w.step(&obs_fs(15.0), at(5 + 240)),
        vec![(NotificationKind::Repeat, "filesystem_free_percent//".into(), Severity::Warning)]
    );
    assert_eq!(
        w.step(&obs_fs(5.0), at(5 + 241)),
        vec![(NotificationKind::Repeat, "filesystem_free_percent//".into(), Severity::Critical)]
    );
    assert_eq!(w.step(&obs_fs(15.0), at(5 + 242)), vec![], "de-escalation is not news");
}

#[test]
fn silence_holds_notifications_and_an_unnotified_alert_is_told_when_it_ends() {
    let mut w = World::new();
    w.silences.push(Silence {
        id: 1,
        matcher: "filesystem_free_percent".into(),
        created_at: at(0),
        until: at(60),
        comment: String::new(),
    });
    w.step(&obs_fs(15.0), at(0));
    assert_eq!(w.step(&obs_fs(15.0), at(5)), vec![]);
    assert_eq!(w.status("filesystem_free_percent//"), Some(Status::Firing), "state changes while silenced");
    assert_eq!(w.step(&obs_fs(15.0), at(59)), vec![]);
    assert_eq!(
        w.step(&obs_fs(15.0), at(60)),
        vec![(NotificationKind::Firing, "filesystem_free_percent//".into(), Severity::Warning)]
    );
}

#[test]
fn an_alert_resolved_before_anyone_was_told_stays_quiet() {
    let mut w = World::new();
    w.silences.push(Silence { id: 1, matcher: "*".into(), created_at: at(0), until: at(60), comment: String::new() });
    w.step(&obs_fs(15.0), at(0));
    w.step(&obs_fs(15.0), at(5));
    w.silences.clear();
    assert_eq!(w.step(&obs_fs(50.0), at(6)), vec![]);
}

#[test]
fn maintenance_silences_everything() {
    let mut w = World::new();
    let mut o = obs_fs(15.0);
    o.maintenance = true;
    o.service_mode = Some("migration failed".into());
    assert_eq!(w.step(&o, at(0)), vec![]);
    assert_eq!(w.step(&o, at(10)), vec![]);
    o.maintenance = false;
    let n = w.step(&o, at(11));
    assert_eq!(n.len(), 2, "{n:?}");
}

#[test]
fn silence_matchers() {
    assert!(matcher_matches("service_down", "service_down", "web"));
    assert!(matcher_matches("service_down/web", "service_down", "web"));
    assert!(!matcher_matches("service_down/worker", "service_down", "web"));
    assert!(matcher_matches("filesystem_free_percent//srv*", "filesystem_free_percent", "/srv/data"));
    assert!(matcher_matches("*", "memory_used_percent", ""));
    assert!(matcher_matches("memory_used_percent/*", "memory_used_percent", ""));
    assert!(!matcher_matches("memory", "memory_used_percent", ""));
    assert!(validate_matcher("backup_max_age").is_ok());
    assert!(validate_matcher("backup").is_err());
    assert!(validate_matcher("*/web").is_ok());
}

#[test]
fn each_filesystem_is_its_own_alert() {
    let mut w = World::new();
    let o = Observations { filesystems: vec![fs("/", 15.0), fs("/srv", 50.0), fs("/var", 5.0)], ..Default::default() };
    w.step(&o, at(0));
    let n = w.step(&o, at(5));
    assert_eq!(
        n,
        vec![
            (NotificationKind::Firing, "filesystem_free_percent//".into(), Severity::Warning),
            (NotificationKind::Firing, "filesystem_free_percent//var".into(), Severity::Critical),
        ]
    );
}

#[test]
fn backup_missed_counts_from_the_last_success_or_from_watching() {
    let rules = alerts_defaults().rules; // backup_max_age 32h
    let mut o = Observations { backup: Some(Some(at(0))), ..Default::default() };
    assert!(conditions(&rules, &o, at(32 * 60)).is_empty());
    let c = conditions(&rules, &o, at(32 * 60 + 1));
    assert_eq!((c[0].rule, c[0].severity), (rule::BACKUP_MAX_AGE, Severity::Warning));
    assert_eq!(conditions(&rules, &o, at(65 * 60))[0].severity, Severity::Critical);
    o.backup = Some(None);
    assert!(conditions(&rules, &o, at(65 * 60)).is_empty(), "never ran and not watching: no evidence");
    o.watching_since = Some(at(0));
    assert_eq!(conditions(&rules, &o, at(33 * 60))[0].summary, "no successful backup in 1d9h of watching (limit 1d8h)");
}

#[test]
fn host_rules_and_service_rules() {
    let rules = alerts_defaults().rules;
    let o = Observations {
        memory_used_percent: Some(96.0),
        load_per_cpu: Some(2.5),
        boots: vec![at(-600), at(-300), at(-200), at(-100), at(-50)],
        services: vec![
            ServiceObs { name: "web".into(), up: false, down_since: Some(at(-10)), restarts: None, healthy: None },
            ServiceObs { name: "worker".into(), up: true, down_since: None, restarts: None, healthy: None },
        ],
        last_jobs: vec![JobObs { kind: "backup".into(), id: 7, succeeded: false, ended_at: None, error: None }],
        certificates: vec![CertificateObs {
            name: "example.org".into(),
            not_after: at(10 * 24 * 60),
            seconds_left: 0.0,
        }],
        ..Default::default()
    };
    let c = conditions(&rules, &o, at(0));
    let got: Vec<(&str, &str, Severity, Duration)> =
        c.iter().map(|c| (c.rule, c.subject.as_str(), c.severity, c.hold)).collect();
    assert_eq!(c[4].held_since, Some(at(-10)));
    assert_eq!(
        got,
        vec![
            (rule::MEMORY_USED, "", Severity::Critical, Duration::from_secs(900)),
            (rule::LOAD, "", Severity::Warning, Duration::from_secs(900)),
            (rule::REBOOTS, "", Severity::Warning, Duration::ZERO),
            (rule::CERTIFICATE_EXPIRY, "example.org", Severity::Warning, Duration::ZERO),
            (rule::SERVICE_DOWN, "web", Severity::Critical, Duration::from_secs(300)),
            (rule::JOB_FAILED, "backup", Severity::Warning, Duration::ZERO),
        ]
    );
}

#[test]
fn an_unobserved_rule_keeps_its_firing_state() {
    let mut w = World::new();
    w.step(&obs_fs(5.0), at(0));
    assert_eq!(w.step(&obs_fs(5.0), at(5)).len(), 1);
    assert_eq!(w.step(&Observations::default(), at(6)), vec![]);
    assert_eq!(w.status("filesystem_free_percent//"), Some(Status::Firing));
}

#[test]
fn resolved_history_expires() {
    let mut w = World::new();
    w.step(&obs_fs(5.0), at(0));
    w.step(&obs_fs(5.0), at(5));
    w.step(&obs_fs(50.0), at(6));
    w.step(&obs_fs(50.0), at(6 + 7 * 24 * 60 - 1));
    assert_eq!(w.states.len(), 1);
    w.step(&obs_fs(50.0), at(6 + 7 * 24 * 60));
    assert!(w.states.is_empty());
}

#[test]
fn notification_texts() {
    let mut w = World::new();
    w.rules.filesystem_free_percent.hold = Duration::ZERO;
    let e = evaluate(&w.rules, w.repeat, &obs_fs(15.0), &[], &[], at(0));
    let n = &e.notifications[0];
    assert_eq!(email_subject("guestbook", n), "[guestbook] WARNING: filesystem_free_percent//");
    expect_test::expect![[r#"
        Alert filesystem_free_percent// is firing on guestbook (host1).

        filesystem / has 15.0% free (threshold 20.0%)

        rule:      filesystem_free_percent
        subject:   /
        severity:  warning
        status:    firing
        active:    since 2026-03-01 12:00:00 UTC

        Silence it for two hours:
          caretaker silence add filesystem_free_percent// --for 2h
        All alerts:
          caretaker alerts
    "#]]
    .assert_eq(&email_body("guestbook", "host1", n));
    let j = webhook_payload("guestbook", "host1", n);
    assert_eq!(j["kind"], "firing");
    assert_eq!(j["rule"], "filesystem_free_percent");
    assert_eq!(j["subject"], "/");
}

#[test]
fn service_down_counts_from_the_supervisors_down_since() {
    let mut w = World::new(); // service_down_for: 5m
    let down = |since: i64| Observations {
        services: vec![ServiceObs {
            name: "web".into(),
            up: false,
            down_since: Some(at(since)),
            restarts: None,
            healthy: None,
        }],
        ..Default::default()
    };
    // Down since minute 0, first seen at minute 2: fires at minute 5, not 7 and not 3.5.
    assert_eq!(w.step(&down(0), at(2)), vec![]);
    assert_eq!(w.step(&down(0), at(4)), vec![]);
    assert_eq!(
        w.step(&down(0), at(5)),
        vec![(NotificationKind::Firing, "service_down/web".into(), Severity::Critical)]
    );
    // Already down for longer than `for` when first seen: fires at once.
    let mut w = World::new();
    assert_eq!(w.step(&down(-10), at(0)).len(), 1);
}

#[test]
fn repeated_skips_of_a_scheduled_task_fire_job_skipped() {
    let mut rules = alerts_defaults().rules;
    let skipped = |task: &str, skips: u32| SkippedTaskObs {
        task: task.into(),
        skips,
        since: at(-5),
        reason: Some("job #12 (restore, started 2026-03-01T00:00:00Z) held the app lock".into()),
    };
    let o = Observations { skipped_tasks: vec![skipped("job:report", 2), skipped("backup", 3)], ..Default::default() };
    let c = conditions(&rules, &o, at(0));
    let got: Vec<(&str, &str, Severity)> = c.iter().map(|c| (c.rule, c.subject.as_str(), c.severity)).collect();
    // Two skips are a collision the retry handles; the third in a row alerts.
    assert_eq!(got, [(rule::JOB_SKIPPED, "backup", Severity::Critical)]);
    assert!(c[0].summary.contains("skipped 3 times in a row") && c[0].summary.contains("job #12"), "{}", c[0].summary);
    let o = Observations { skipped_tasks: vec![skipped("job:report", SKIPS_TO_ALERT)], ..Default::default() };
    assert_eq!(conditions(&rules, &o, at(0))[0].severity, Severity::Warning);
    rules.job_skipped = false;
    assert!(conditions(&rules, &o, at(0)).is_empty());
    assert!(validate_matcher("job_skipped/backup").is_ok());
}

#[test]
fn vulnerable_dependencies_fire_their_rule_unless_it_is_off() {
    let mut rules = alerts_defaults().rules;
    let dep = |n: u64| Observations {
        dependencies: Some(DependenciesObs {
            vulnerable: n,
            outdated: None,
            vulnerable_packages: (0..n).map(|i| format!("pkg{i}")).collect(),
        }),
        ..Default::default()
    };
    let c: Vec<Condition> =
        conditions(&rules, &dep(2), t0()).into_iter().filter(|c| c.rule == rule::DEPENDENCIES_VULNERABLE).collect();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].severity, Severity::Warning);
    assert!(c[0].summary.contains("pkg0, pkg1"), "{}", c[0].summary);
    assert!(conditions(&rules, &dep(0), t0()).iter().all(|c| c.rule != rule::DEPENDENCIES_VULNERABLE));
    rules.dependencies_vulnerable = false;
    assert!(conditions(&rules, &dep(2), t0()).iter().all(|c| c.rule != rule::DEPENDENCIES_VULNERABLE));
}
