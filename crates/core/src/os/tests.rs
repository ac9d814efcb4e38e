use super::*;
use crate::config::{load, NoSecrets};
use jiff::civil::Date;
use std::path::Path;

fn config(extra: &str) -> Config {
    let text = format!("version: 1\napp: {{ name: demo }}\n{extra}");
    match load(&text, Path::new("/etc/caretaker/demo.yml"), None, &NoSecrets) {
        Ok(l) => l.config,
        Err(d) => panic!("{}", d.render(&text)),
    }
}

fn reboot(window: &str, length: &str, jitter: &str) -> Reboot {
    config(&format!("os:\n  reboot: {{ window: \"{window}\", length: {length}, jitter: {jitter} }}\n"))
        .os
        .reboot
        .unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn up(name: &str, origin: &str, archive: &str) -> Upgradable {
    Upgradable {
        name: name.into(),
        installed: "1.0".into(),
        candidate: "2.0".into(),
        origins: vec![PackageOrigin { origin: origin.into(), archive: archive.into() }],
    }
}

#[test]
fn selection_follows_holds_origins_and_security() {
    let list = vec![
        up("plain", "Debian", "stable"),
        up("sec", "Debian-Security", "stable-security"),
        up("heldpkg", "Debian", "stable"),
        up("linux-image-amd64", "Debian", "stable"),
        up("newdep", "Debian", "stable"),
        up("thirdparty", "Elsewhere", "main"),
    ];
    let mut os = config("os:\n  hold: [linux-image-*]\n").os;
    let s = select(&list, &["heldpkg".into()], &["newdep".into()], &os, false);
    assert_eq!(s.names(), ["plain", "sec", "thirdparty"]);
    assert_eq!(s.skipped_for(&Skip::Held), ["heldpkg", "linux-image-amd64"]);
    assert_eq!(s.skipped_for(&Skip::KeptBack), ["newdep"]);

    os.origins = vec!["debian".into(), "stable-security".into()];
    let s = select(&list, &[], &[], &os, false);
    assert_eq!(s.names(), ["plain", "sec", "heldpkg", "newdep"]);
    assert_eq!(s.skipped_for(&Skip::Origin), ["thirdparty"]);

    let s = select(&list, &[], &["elsewhere-kept".into()], &os, true);
    assert_eq!(s.names(), ["sec"]);
    assert!(s.skipped_for(&Skip::NotSecurity).contains(&"plain".to_string()));
    assert_eq!(s.skipped_for(&Skip::KeptBack), ["elsewhere-kept"], "kept back even when not listed upgradable");
}

#[test]
fn os_update_schedule_is_a_scheduled_task_taking_the_lock() {
    let cfg = config("os:\n  update: { schedule: \"Sun 02:00\" }\n");
    let tasks = crate::scheduler::tasks_from_config(&cfg);
    let t = tasks.iter().find(|t| t.name == "os_update").expect("os_update task");
    assert_eq!(t.kind.job_kind(), kind::OS_UPDATE);
    assert!(t.kind.needs_app_lock());
    assert!(!crate::scheduler::tasks_from_config(&config("")).iter().any(|t| t.name == "os_update"));
}

#[test]
fn security_is_known_by_origin_or_archive() {
    assert!(up("a", "Debian-Security", "stable").is_security());
    assert!(up("a", "Ubuntu", "jammy-security").is_security());
    assert!(!up("a", "Debian", "bookworm-updates").is_security());
}

#[test]
fn app_packages_come_from_database_compose_and_depends_on() {
    let cfg = config(
        "database: { kind: postgres, url: \"postgres://a@localhost/db\" }\nos:\n  depends_on: [redis-server, \"php8.2-*\"]\n",
    );
    let pkgs = app_packages(&cfg);
    let touched = touches_app(
        &["postgresql-15".into(), "curl".into(), "php8.2-fpm".into(), "redis-server".into(), "redis-tools".into()],
        &pkgs,
    );
    assert_eq!(touched, ["postgresql-15", "php8.2-fpm", "redis-server"]);
    assert!(touches_app(&["curl".into()], &pkgs).is_empty());
    assert_eq!(unplanned(&["a".into()], &["a".into(), "b".into()]), ["b"]);
}

#[test]
fn debian_versions_compare_like_dpkg() {
    use Ordering::*;
    for (a, b, o) in [
        ("1.0", "1.0", Equal),
        ("1.0", "2.0", Less),
        ("1.0-1", "1.0-2", Less),
        ("1:0.9", "2.0", Greater),
        ("1.0~rc1", "1.0", Less),
        ("1.0", "1.0+deb12u1", Less),
        ("1.10", "1.9", Greater),
        ("6.1.0-13-amd64", "6.1.0-9-amd64", Greater),
        ("2.36-9+deb12u3", "2.36-9+deb12u10", Less),
        ("1.0a", "1.0", Greater),
    ] {
        assert_eq!(version_cmp(a, b), o, "{a} vs {b}");
        assert_eq!(version_cmp(b, a), o.reverse(), "{b} vs {a}");
    }
    assert_eq!(
        kernel_reboot_needed("6.1.0-9-amd64", &["6.1.0-9-amd64".into(), "6.1.0-13-amd64".into()]),
        Some("6.1.0-13-amd64".into())
    );
    assert_eq!(kernel_reboot_needed("6.1.0-13-amd64", &["6.1.0-13-amd64".into()]), None);
    assert_eq!(kernel_reboot_needed("6.1.0-13-amd64", &[]), None);
}

#[test]
fn host_offsets_are_stable_and_within_jitter() {
    let j = Duration::from_secs(1800);
    assert_eq!(host_offset("abc", j), host_offset("abc\n", j));
    let offsets: Vec<Duration> = (0..50).map(|i| host_offset(&format!("host-{i}"), j)).collect();
    assert!(offsets.iter().all(|o| *o <= j));
    let distinct: std::collections::BTreeSet<_> = offsets.iter().collect();
    assert!(distinct.len() > 40, "a fleet spreads out: {distinct:?}");
    assert_eq!(host_offset("abc", Duration::ZERO), Duration::ZERO);
}

fn facts() -> RebootFacts {
    RebootFacts {
        needed: true,
        job_running: None,
        backups_configured: true,
        last_backup: Some(ts("2026-03-01T01:00:00Z")),
        service_mode: false,
    }
}

#[test]
fn reboot_gates() {
    let r = reboot("Sun 03:00 UTC", "1h", "30m");
    let off = Duration::from_secs(600);
    let tz = TimeZone::UTC;
    // 2026-03-01 is a Sunday: the slot is 03:10..04:00.
    let inside = ts("2026-03-01T03:30:00Z");
    assert_eq!(decide_reboot(Some(&r), off, &facts(), inside, &tz, false), RebootVerdict::Reboot);
    for outside in ["2026-03-01T03:05:00Z", "2026-03-01T04:00:00Z", "2026-03-02T03:30:00Z", "2026-02-28T03:30:00Z"] {
        let v = decide_reboot(Some(&r), off, &facts(), ts(outside), &tz, false);
        assert!(matches!(v, RebootVerdict::Wait(Blocked::OutsideWindow { .. })), "{outside}: {v:?}");
    }
    let v = decide_reboot(Some(&r), off, &facts(), ts("2026-03-02T03:30:00Z"), &tz, false);
    assert_eq!(v, RebootVerdict::Wait(Blocked::OutsideWindow { next_slot: Some(ts("2026-03-08T03:10:00Z")) }));
    // --now ignores the window but nothing else.
    let fresh = RebootFacts { last_backup: Some(ts("2026-03-02T02:00:00Z")), ..facts() };
    assert_eq!(decide_reboot(Some(&r), off, &fresh, ts("2026-03-02T03:30:00Z"), &tz, true), RebootVerdict::Reboot);
    assert_eq!(decide_reboot(None, off, &facts(), inside, &tz, false), RebootVerdict::Wait(Blocked::NoWindow));

    let f = RebootFacts { needed: false, ..facts() };
    assert_eq!(decide_reboot(Some(&r), off, &f, inside, &tz, false), RebootVerdict::Wait(Blocked::NotNeeded));
    let f = RebootFacts { job_running: Some("backup".into()), ..facts() };
    assert_eq!(
        decide_reboot(Some(&r), off, &f, inside, &tz, true),
        RebootVerdict::Wait(Blocked::JobRunning { kind: "backup".into() })
    );
    let f = RebootFacts { service_mode: true, ..facts() };
    assert_eq!(decide_reboot(Some(&r), off, &f, inside, &tz, false), RebootVerdict::Wait(Blocked::ServiceMode));
    let stale = Some(ts("2026-02-27T01:00:00Z"));
    let f = RebootFacts { last_backup: stale, ..facts() };
    assert_eq!(
        decide_reboot(Some(&r), off, &f, inside, &tz, false),
        RebootVerdict::Wait(Blocked::BackupStale { last: stale })
    );
    let f = RebootFacts { last_backup: None, ..facts() };
    assert_eq!(
        decide_reboot(Some(&r), off, &f, inside, &tz, false),
        RebootVerdict::Wait(Blocked::BackupStale { last: None })
    );
    let mut rb = r.clone();
    rb.take_backup = true;
    assert_eq!(decide_reboot(Some(&rb), off, &f, inside, &tz, false), RebootVerdict::BackupFirst);
    // Without backups configured there is nothing to be fresh.
    let f = RebootFacts { last_backup: None, backups_configured: false, ..facts() };
    assert_eq!(decide_reboot(Some(&r), off, &f, inside, &tz, false), RebootVerdict::Reboot);
}

#[test]
fn missed_windows_are_counted() {
    let r = reboot("Sun 03:00 UTC", "1h", "0s");
    let tz = TimeZone::UTC;
    let since = ts("2026-03-01T05:00:00Z");
    assert_eq!(windows_missed(&r, Duration::ZERO, since, ts("2026-03-08T03:30:00Z"), &tz), 0);
    assert_eq!(windows_missed(&r, Duration::ZERO, since, ts("2026-03-08T04:00:00Z"), &tz), 1);
    assert_eq!(windows_missed(&r, Duration::ZERO, since, ts("2026-03-29T05:00:00Z"), &tz), 4);
    // A need that arose inside a slot does not count that slot as waited through.
    assert_eq!(windows_missed(&r, Duration::ZERO, ts("2026-03-01T03:30:00Z"), ts("2026-03-01T05:00:00Z"), &tz), 0);
}

#[test]
fn came_back_verdicts() {
    let p = PendingReboot {
        boot_id: "a".into(),
        requested_at: ts("2026-03-01T03:10:00Z"),
        job: Some(7),
        back_seen_at: None,
    };
    let within = Duration::from_secs(900);
    let boot = Some(ts("2026-03-01T03:11:00Z"));
    assert_eq!(came_back(&p, "a", boot, &[], ts("2026-03-01T03:15:00Z"), within), CameBack::Waiting);
    assert_eq!(came_back(&p, "a\n", None, &[], ts("2026-03-01T03:26:00Z"), within), CameBack::NotRebooted);
    assert_eq!(came_back(&p, "b", boot, &[], ts("2026-03-01T03:13:00Z"), within), CameBack::Healthy { seconds: 120 });
    let down = vec!["service web is down".to_string()];
    assert_eq!(came_back(&p, "b", boot, &down, ts("2026-03-01T03:20:00Z"), within), CameBack::Waiting);
    assert_eq!(
        came_back(&p, "b", boot, &down, ts("2026-03-01T03:27:00Z"), within),
        CameBack::Unhealthy { problems: down.clone() }
    );
    // The deadline runs from when the new boot was first seen, if that is later.
    let seen = PendingReboot { back_seen_at: Some(ts("2026-03-01T03:30:00Z")), ..p.clone() };
    assert_eq!(came_back(&seen, "b", boot, &down, ts("2026-03-01T03:40:00Z"), within), CameBack::Waiting);
    assert_eq!(
        came_back(&seen, "b", boot, &down, ts("2026-03-01T03:46:00Z"), within),
        CameBack::Unhealthy { problems: down.clone() }
    );
}

#[test]
fn boots_are_counted_once_per_boot_id() {
    let rec = vec![
        ("x".to_string(), ts("2026-03-01T00:00:00Z")),
        ("x".to_string(), ts("2026-03-01T00:00:01Z")),
        ("y".to_string(), ts("2026-03-02T00:00:00Z")),
        ("z".to_string(), ts("2026-02-01T00:00:00Z")),
    ];
    assert_eq!(boots_since(&rec, ts("2026-02-15T00:00:00Z")).len(), 2);
}

/// A small deterministic random generator (xorshift64*), so the simulation is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The oracle: this host's slots computed independently of `Schedule`, straight from the
/// civil calendar (every matching date at HH:MM, mapped with the same "compatible" rule for
/// gaps and folds that caretaker documents for schedules).
#[allow(clippy::too_many_arguments)]
fn oracle_slots(
    weekdays: &[i8],
    hour: i8,
    minute: i8,
    tz: &TimeZone,
    from: Date,
    days: i32,
    offset: Duration,
    length: Duration,
) -> Vec<(Timestamp, Timestamp)> {
    let mut out = Vec::new();
    let mut d = from;
    for _ in 0..days {
        if weekdays.contains(&d.weekday().to_monday_one_offset()) {
            let start = tz.to_ambiguous_timestamp(d.at(hour, minute, 0, 0)).compatible().unwrap();
            out.push((start + sd(offset), start + sd(length)));
        }
        d = d.tomorrow().unwrap();
    }
    out
}

fn in_slots(slots: &[(Timestamp, Timestamp)], t: Timestamp) -> bool {
    let i = slots.partition_point(|(_, end)| *end <= t);
    slots.get(i).is_some_and(|(s, e)| *s <= t && t < *e)
}

/// Property test of the window decision (issue 21): over 10,000 simulated days, with ticks
/// at random intervals plus ticks right at every slot's edges, reboots needed at random
/// times, and random blockers (running jobs, service mode, stale backups), across DST
/// changes in several zones and with jitter: a reboot happens exactly when the tick lies in
/// this host's slot and nothing blocks it — so never outside a window, and always in the
/// first eligible one. The missed-window count at each reboot matches the oracle too.
#[test]
fn reboot_window_property_over_10000_days() {
    let cases = [
        // Spring-forward gap and fall-back fold both fall in this window's hour in Vienna.
        Params {
            window: "Sun 02:30 Europe/Vienna",
            weekdays: &[7],
            hour: 2,
            minute: 30,
            zone: "Europe/Vienna",
            default_tz: "UTC",
            length: "1h",
            jitter: "45m",
            host: "host-a",
        },
        Params {
            window: "Sun 03:00 Europe/Vienna",
            weekdays: &[7],
            hour: 3,
            minute: 0,
            zone: "Europe/Vienna",
            default_tz: "UTC",
            length: "1h",
            jitter: "30m",
            host: "host-b",
        },
        // A daily window spanning New York's 02:00 changes, zone from the default.
        Params {
            window: "daily 01:30",
            weekdays: &[1, 2, 3, 4, 5, 6, 7],
            hour: 1,
            minute: 30,
            zone: "America/New_York",
            default_tz: "America/New_York",
            length: "2h",
            jitter: "1h30m",
            host: "host-c",
        },
        // Lord Howe Island shifts by 30 minutes at 02:00.
        Params {
            window: "Mon..Fri 01:50 Australia/Lord_Howe",
            weekdays: &[1, 2, 3, 4, 5],
            hour: 1,
            minute: 50,
            zone: "Australia/Lord_Howe",
            default_tz: "UTC",
            length: "30m",
            jitter: "20m",
            host: "host-d",
        },
    ];
    let days: i32 = 10_000;
    let start_date = jiff::civil::date(2024, 1, 1);
    // The cases run on their own threads (each with its own reproducible random stream).
    let total_reboots: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .enumerate()
            .map(|(i, case)| scope.spawn(move || simulate(case, i as u64, days, start_date)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(total_reboots * 3 > days as usize);
}

struct Params {
    window: &'static str,
    weekdays: &'static [i8],
    hour: i8,
    minute: i8,
    zone: &'static str,
    default_tz: &'static str,
    length: &'static str,
    jitter: &'static str,
    host: &'static str,
}

fn simulate(case: &Params, seed: u64, days: i32, start_date: Date) -> usize {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (seed.wrapping_mul(0x1000_0000_01b3) + 1));
    {
        let r = reboot(case.window, case.length, case.jitter);
        let default_tz = TimeZone::get(case.default_tz).unwrap();
        let zone = TimeZone::get(case.zone).unwrap();
        let offset = host_offset(case.host, r.jitter);
        let slots = oracle_slots(case.weekdays, case.hour, case.minute, &zone, start_date, days + 2, offset, r.length);
        let begin = zone.to_ambiguous_timestamp(start_date.at(0, 0, 0, 0)).compatible().unwrap();
        let end = begin + SignedDuration::from_hours(24 * i64::from(days));
        // Ticks: random steps of 1..480 minutes, plus each window's opening (before this
        // host's offset), each slot's edges and a second before them, and one random instant
        // inside each window.
        let mut ticks = Vec::new();
        let mut t = begin;
        while t < end {
            ticks.push(t);
            t += SignedDuration::from_secs(60 + rng.below(479 * 60) as i64);
        }
        let before = sd(offset);
        for (s, e) in &slots {
            let opens = *s - before;
            let inside = opens + SignedDuration::from_secs(rng.below(e.duration_since(opens).as_secs() as u64) as i64);
            for x in [opens, inside, *s - SignedDuration::from_secs(1), *s, *e - SignedDuration::from_secs(1), *e] {
                if x >= begin && x < end {
                    ticks.push(x);
                }
            }
        }
        ticks.sort();
        ticks.dedup();

        let mut needed_since: Option<Timestamp> = None;
        let (mut reboots, mut refused_in_window, mut outside) = (0, 0, 0);
        for &now in &ticks {
            if needed_since.is_none() && rng.chance(2) {
                needed_since = Some(now);
            }
            let job = rng.chance(10).then(|| "backup".to_string());
            let service_mode = rng.chance(5);
            let last_backup =
                if rng.chance(5) { now - SignedDuration::from_hours(30) } else { now - SignedDuration::from_hours(2) };
            let facts = RebootFacts {
                needed: needed_since.is_some(),
                job_running: job.clone(),
                backups_configured: true,
                last_backup: Some(last_backup),
                service_mode,
            };
            let verdict = decide_reboot(Some(&r), offset, &facts, now, &default_tz, false);
            let Some(since) = needed_since else {
                assert_eq!(verdict, RebootVerdict::Wait(Blocked::NotNeeded));
                continue;
            };
            let inside = in_slots(&slots, now);
            let clear = job.is_none() && !service_mode && now.duration_since(last_backup) <= sd(r.max_backup_age);
            if inside && clear {
                assert_eq!(verdict, RebootVerdict::Reboot, "{}: first eligible tick {now} must reboot", case.window);
                let missed = slots.iter().filter(|(s, e)| *s >= since && *e <= now).count() as u32;
                assert_eq!(windows_missed(&r, offset, since, now, &default_tz), missed, "{}: at {now}", case.window);
                reboots += 1;
                needed_since = None;
            } else {
                assert_ne!(
                    verdict,
                    RebootVerdict::Reboot,
                    "{}: rebooted at {now} (inside a slot: {inside})",
                    case.window
                );
                if inside {
                    refused_in_window += 1;
                } else {
                    outside += 1;
                    assert!(matches!(verdict, RebootVerdict::Wait(Blocked::OutsideWindow { .. })), "{verdict:?}");
                }
            }
        }
        // Not vacuous: many reboots, many refusals inside and outside the window.
        let days = days as usize;
        assert!(reboots * 15 > days, "{}: {reboots} reboots in {days} days", case.window);
        assert!(refused_in_window * 100 > days && outside * 2 > days, "{}: {refused_in_window} {outside}", case.window);
        reboots
    }
}

#[test]
fn window_slots_across_dst_in_vienna() {
    let r = reboot("Sun 02:30 Europe/Vienna", "1h", "0s");
    let tz = TimeZone::UTC;
    // 2026-03-29: 02:30 does not exist in Vienna; the window starts at 03:30 CEST = 01:30Z.
    let s = next_slot(&r, Duration::ZERO, ts("2026-03-28T00:00:00Z"), &tz).unwrap();
    assert_eq!(s.start, ts("2026-03-29T01:30:00Z"));
    // 2026-10-25: 02:30 happens twice; the window starts at the first (CEST, 00:30Z).
    let s = next_slot(&r, Duration::ZERO, ts("2026-10-24T00:00:00Z"), &tz).unwrap();
    assert_eq!(s.start, ts("2026-10-25T00:30:00Z"));
    assert_eq!(s.end, ts("2026-10-25T01:30:00Z"));
}
