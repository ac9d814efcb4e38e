//! Differential test of caretaker's calendar schedules against systemd's own calendar code:
//! `systemd-analyze calendar --base-time=… --iterations=N` (Debian's systemd, installed by
//! scripts/install-deps; `--base-time` exists since systemd 247).
//!
//! A corpus of a few hundred expressions — generated deterministically below, plus
//! hand-written edge cases — is evaluated by both from fixed base instants around ordinary
//! days and daylight-saving changes. For each expression one of these holds, or the test
//! fails:
//! - both accept it and every next-elapse time matches;
//! - systemd accepts it and caretaker refuses it with the reason listed in [`REFUSED`];
//! - caretaker accepts it as an extension systemd lacks ([`EXTENSIONS`]) and its runs match
//!   systemd's runs of the equivalent systemd expression listed there;
//! - both refuse it.
//!
//! One documented difference (docs/observe.md, "Schedules"): a local time that does not exist
//! because the clock jumps forward (02:30 on a spring-forward day in Vienna) is skipped by
//! systemd for that day, while caretaker runs it once, shifted by the gap (03:30), so a daily
//! backup is never silently dropped. The comparison allows exactly that: caretaker's runs are
//! systemd's runs plus runs inside `[jump, jump + gap)` of a forward clock change.

use caretaker_core::schedule::parse_schedule;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Runs compared per expression and base time.
const ITERATIONS: usize = 12;

/// Expressions systemd accepts and caretaker refuses, with (part of) caretaker's reason.
const REFUSED: &[(&str, &str)] = &[
    ("00:00:30", "seconds must be 00"),
    ("*:*:0/10", "seconds must be 00"),
    ("*-*-01 00:00", "cannot read schedule"),
    ("Mon *-*-* 02:00", "cannot read schedule"),
    ("2026-12-24 18:00", "cannot read schedule"),
    ("*-02~1 00:00", "cannot read schedule"),
    ("*-*-1,15 04:00", "cannot read schedule"),
    ("Mon..Fri *-*-* 02:00:00 Europe/Vienna", "cannot read schedule"),
    ("*:0/15:30", "seconds must be 00"),
    ("12:00:00.5", "seconds must be 00"),
];

/// caretaker-only forms (words of cron and of caretaker's own), each with the systemd
/// expression that means the same.
const EXTENSIONS: &[(&str, &str)] = &[
    ("daily 00:30", "00:30"),
    ("daily 00:30 Europe/Vienna", "00:30 Europe/Vienna"),
    ("weekly 03:00", "Mon 03:00"),
    ("monthly 04:00", "*-*-01 04:00"),
    ("yearly 05:00", "*-01-01 05:00"),
    ("hourly :15", "*:15"),
    ("hourly :0/20 America/New_York", "*:0/20 America/New_York"),
    ("@hourly", "hourly"),
    ("@daily", "daily"),
    ("@midnight", "daily"),
    ("@weekly", "Sun 00:00"),
    ("@monthly", "monthly"),
    ("@yearly", "yearly"),
    ("@annually", "yearly"),
    ("tues 02:00", "Tue 02:00"),
    ("thurs 02:00", "Thu 02:00"),
    ("Sat..Mon 02:00", "Sat,Sun,Mon 02:00"),
    ("Fri-Mon 23:45 Europe/Vienna", "Fri,Sat,Sun,Mon 23:45 Europe/Vienna"),
    ("8-18:00", "8..18:00"),
    ("*/2:00", "0/2:00"),
    ("*:*/15", "*:0/15"),
    ("30 0 * * *", "00:30"),
    ("*/1 * * * *", "*:*"),
    ("0/1 * * * *", "*:*"),
    ("1/1 * * * *", "*:1/1"),
    ("*/15 * * * *", "*:0/15"),
    ("0-30/10 10 * * *", "10:0..30/10"),
    ("0 2 * * 1-5", "Mon..Fri 02:00"),
    ("0 2 * * 0", "Sun 02:00"),
    ("0 2 * * 7", "Sun 02:00"),
    ("0 12 * jan-feb sat,sun", "Sat,Sun *-01,02-* 12:00"),
    ("15 10 1,15 * *", "*-*-01,15 10:15"),
    ("0 3 * * * America/New_York", "03:00 America/New_York"),
    ("30 2 * * * Europe/Vienna", "02:30 Europe/Vienna"),
    ("0 0 29 2 *", "*-02-29 00:00"),
    ("0 0 * * 5", "Fri 00:00"),
];

/// Hand-written cases in the syntax both share: steps of one (the bug that started this
/// test), keywords, wrapped and mixed lists, the edges of each field.
const EDGE_CASES: &[&str] = &[
    "*:0/1",
    "*:1/1",
    "*:59/1",
    "0/1:00",
    "5/1:30",
    "22/1:15",
    "*:*",
    "*:00",
    "*:59",
    "00:00",
    "23:59",
    "0:0",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "minutely",
    "quarterly",
    "semiannually",
    "Sun",
    "sunday 21:00",
    "Mon..Fri 02:00",
    "Mon-Fri 02:00",
    "Mon,Wed..Fri 03:00",
    "Mon..Wed,Sat 03:00",
    "MON 1:00",
    "Monday..Friday 1:00",
    "8..18:00",
    "8..18/3:00",
    "9,17:30",
    "2,3:00,30",
    "*:5..55/10",
    "*:0,30/20",
    "*:0/7",
    "0/5:0/20",
    "2:15,40",
    "02:30:00",
    "hourly UTC",
    "daily Europe/Vienna",
    "weekly America/New_York",
    "23:59 UTC",
    "Sat 00:00 Pacific/Apia",
    "2:30 Australia/Lord_Howe",
    "*:0/30 Australia/Lord_Howe",
    "00:00 America/Sao_Paulo",
    "00:30 America/Havana",
];

/// Parts the generated corpus combines (all in systemd's syntax).
const WEEKDAYS: &[&str] = &["", "Mon", "Sun", "Mon..Fri", "Sat,Sun", "Mon,Wed,Fri", "Tue..Thu,Sun", "Fri..Sun", "Wed"];
const HOURS: &[&str] = &["*", "0", "1", "2", "3", "12", "23", "0/6", "1/1", "8..18", "9,17", "2..4", "0/1", "20..23/2"];
const MINUTES: &[&str] = &["00", "0", "30", "59", "0/15", "0/1", "1/1", "5,35", "*", "10..20/5", "45", "0/20"];
const ZONES: &[&str] =
    &["", "", "UTC", "Europe/Vienna", "America/New_York", "Australia/Lord_Howe", "Europe/London", "Asia/Kolkata"];

/// The default zones (the machine's, `TZ` for systemd) and base instants: ordinary days and
/// the days clocks change in Vienna, New York and Lord Howe (30-minute change), and where
/// DST changed at midnight (São Paulo 2018, Havana 2026).
const BASES: &[(&str, &str)] = &[
    ("UTC", "2026-01-01T10:07:00Z"),
    ("UTC", "2026-02-28T23:58:00Z"),
    ("Europe/Vienna", "2026-03-28T23:10:00Z"),
    ("Europe/Vienna", "2026-10-24T22:40:00Z"),
    ("America/New_York", "2026-03-08T05:50:00Z"),
    ("America/New_York", "2026-11-01T04:30:00Z"),
    ("Australia/Lord_Howe", "2026-04-04T14:00:00Z"),
    ("Australia/Lord_Howe", "2026-10-03T15:00:00Z"),
    ("America/Sao_Paulo", "2018-11-03T23:00:00Z"),
];

/// Deterministic pseudo-random numbers (a 64-bit LCG): the same corpus on every run.
struct Lcg(u64);

impl Lcg {
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        items[((self.0 >> 33) % items.len() as u64) as usize]
    }
}

fn generated_corpus(n: usize) -> Vec<String> {
    let mut rng = Lcg(0x5eed_cafe);
    let mut out: Vec<String> = Vec::new();
    while out.len() < n {
        let words = [
            rng.pick(WEEKDAYS).to_string(),
            format!("{}:{}", rng.pick(HOURS), rng.pick(MINUTES)),
            rng.pick(ZONES).to_string(),
        ];
        let expr = words.iter().filter(|w| !w.is_empty()).cloned().collect::<Vec<_>>().join(" ");
        if !out.contains(&expr) {
            out.push(expr);
        }
    }
    out
}

/// What systemd says about a batch of expressions.
struct Systemd {
    /// The next elapse times of each expression it accepts.
    runs: BTreeMap<String, Vec<Timestamp>>,
    /// Its normalized form of each expression it accepts.
    normalized: BTreeMap<String, String>,
    /// Expressions it parses but cannot compute: systemd 252 gives up with "Infinite loop in
    /// calendar calculation" on some schedules around a DST change at midnight (São Paulo).
    gave_up: BTreeSet<String>,
}

/// Runs `systemd-analyze calendar` once for a whole batch of expressions.
fn systemd_runs(exprs: &[String], tz: &str, base: Timestamp) -> Systemd {
    let out = Command::new("systemd-analyze")
        .env("TZ", tz)
        .env("SYSTEMD_COLORS", "0")
        .arg("calendar")
        .arg(format!("--base-time=@{}", base.as_second()))
        .arg(format!("--iterations={ITERATIONS}"))
        .arg("--")
        .args(exprs)
        .output()
        .expect("systemd-analyze (Debian package systemd, installed by scripts/install-deps)");
    // It exits 1 when any expression fails to parse, after printing all the others.
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let gave_up = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("Failed to determine next elapse for '"))
        .filter_map(|l| l.rsplit_once("': ").map(|(e, _)| e.to_string()))
        .collect();
    let mut runs: BTreeMap<String, Vec<Timestamp>> = BTreeMap::new();
    let mut normalized = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        let line = line.trim();
        // A block starts with "Original form:", left out when the expression is already in
        // normalized form; then "Normalized form:" names it.
        if let Some(expr) = line.strip_prefix("Original form: ") {
            current = Some(expr.to_string());
            runs.insert(expr.to_string(), Vec::new());
            continue;
        }
        if let Some(norm) = line.strip_prefix("Normalized form: ") {
            if current.as_ref().is_none_or(|c| !runs[c].is_empty()) {
                current = Some(norm.to_string());
                runs.insert(norm.to_string(), Vec::new());
            }
            normalized.insert(current.clone().unwrap(), norm.to_string());
            continue;
        }
        let Some(expr) = &current else { continue };
        let when = if let Some(t) = line.strip_prefix("(in UTC): ") {
            // Replaces the local time printed on the line before.
            runs.get_mut(expr).unwrap().pop();
            t
        } else if let Some(t) = line.strip_prefix("Next elapse: ") {
            t
        } else if line.starts_with("Iter. #") {
            line.split_once(": ").unwrap().1
        } else {
            continue;
        };
        runs.get_mut(expr).unwrap().push(parse_systemd_time(when, tz));
    }
    Systemd { runs, normalized, gave_up }
}

/// `Sun 2026-03-29 03:00:00 CEST` (local) or `… UTC`; a local one is replaced by its UTC line.
fn parse_systemd_time(text: &str, tz: &str) -> Timestamp {
    let mut words = text.split_whitespace();
    let (_, date, time) = (words.next(), words.next().unwrap(), words.next().unwrap());
    let dt: jiff::civil::DateTime = format!("{date}T{time}").parse().unwrap();
    // Local lines are dropped again when their "(in UTC)" line follows; read them in the zone
    // so nothing panics, the value is not used.
    let zone = if words.next() == Some("UTC") { TimeZone::UTC } else { TimeZone::get(tz).unwrap() };
    zone.to_ambiguous_timestamp(dt).compatible().unwrap()
}

/// systemd's normalized form with the repetitions of its time written out:
/// `*-*-* 00/5:00/20:00` → `*-*-* 0,5,10,15,20:0,20,40:00`.
fn expand_repeats(normalized: &str) -> String {
    let expand = |component: &str, max: u32| -> String {
        let items: Vec<String> = component
            .split(',')
            .flat_map(|item| match item.split_once('/') {
                None => vec![item.to_string()],
                Some((base, step)) => {
                    let step: u32 = step.parse().unwrap();
                    let (lo, hi) = match base.split_once("..") {
                        Some((a, b)) => (a.parse::<u32>().unwrap(), b.parse::<u32>().unwrap()),
                        None => (base.parse::<u32>().unwrap(), max),
                    };
                    (lo..=hi).step_by(step as usize).map(|v| v.to_string()).collect()
                }
            })
            .collect();
        items.join(",")
    };
    normalized
        .split(' ')
        .map(|word| {
            let parts: Vec<&str> = word.split(':').collect();
            match parts.as_slice() {
                [h, m, s] => format!("{}:{}:{s}", expand(h, 23), expand(m, 59)),
                _ => word.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The forward clock changes of `tz` between two instants: (instant, size of the jump).
fn forward_jumps(tz: &TimeZone, from: Timestamp, to: Timestamp) -> Vec<(Timestamp, SignedDuration)> {
    let mut out = Vec::new();
    for change in tz.following(from) {
        let at = change.timestamp();
        if at > to {
            break;
        }
        let before = tz.to_offset(at - SignedDuration::from_secs(1)).seconds();
        let jump = change.offset().seconds() - before;
        if jump > 0 {
            out.push((at, SignedDuration::from_secs(i64::from(jump))));
        }
    }
    out
}

/// Compares caretaker's runs of `expr` with systemd's `want`; `None` when they agree.
fn compare(expr: &str, normalized: &str, want: &[Timestamp], default_tz: &str, base: Timestamp) -> Option<String> {
    let sched = match parse_schedule(expr) {
        Ok(s) => s,
        Err(e) => return Some(format!("caretaker refuses it: {e}")),
    };
    let default = TimeZone::get(default_tz).unwrap();
    let tz = sched.time_zone().cloned().unwrap_or_else(|| default.clone());
    let last = *want.last()?;
    // caretaker's runs up to systemd's last one (it may have a few more: shifted gap times).
    let mut got = Vec::new();
    let mut after = base;
    while let Some(next) = sched.next_after(after, &default).filter(|t| *t <= last) {
        got.push(next);
        after = next;
    }
    if got == want {
        return None;
    }
    let jumps = forward_jumps(&tz, base, last);
    let missing: Vec<_> = want.iter().filter(|t| !got.contains(t)).collect();
    let extra: Vec<_> = got.iter().filter(|t| !want.contains(t)).collect();
    let shifted = |t: &Timestamp| jumps.iter().any(|(at, gap)| *at <= *t && *t < *at + *gap);
    // systemd 252 steps over a matching time when a repetition that does not divide the
    // field's range carries into the next day (`*:0/7` from 23:58 gives 00:07, not 00:00;
    // `0/5:00` from 23:58 gives 05:00). Such a run counts as right when systemd names it as
    // the next elapse of the same expression with its repetitions written out as lists.
    let systemd_confirms = |t: &Timestamp| {
        let explicit = expand_repeats(normalized);
        let again = systemd_runs(&[explicit], default_tz, *t - SignedDuration::from_secs(1));
        again.runs.values().next().and_then(|r| r.first()) == Some(t)
    };
    if missing.is_empty() && extra.iter().all(|t| shifted(t) || systemd_confirms(t)) {
        // The documented difference (a skipped local time runs once, shifted) or systemd's own
        // slip.
        return None;
    }
    Some(format!("caretaker {got:?}\n    systemd   {want:?}\n    missing {missing:?}, extra {extra:?}"))
}

#[test]
fn schedules_agree_with_systemd_calendar() {
    let mut corpus: Vec<String> = EDGE_CASES.iter().map(|s| s.to_string()).collect();
    corpus.extend(REFUSED.iter().map(|(e, _)| e.to_string()));
    corpus.extend(generated_corpus(320));
    let extensions: Vec<String> = EXTENSIONS.iter().flat_map(|(a, b)| [a.to_string(), b.to_string()]).collect();
    let mut all = corpus.clone();
    all.extend(extensions.iter().cloned());
    all.sort();
    all.dedup();

    let mut problems = Vec::new();
    let mut compared = 0;
    let mut systemd_gave_up = Vec::new();
    for (tz, base) in BASES {
        let base: Timestamp = base.parse().unwrap();
        let Systemd { runs: systemd, normalized, gave_up } = systemd_runs(&all, tz, base);
        for expr in &corpus {
            let caretaker = parse_schedule(expr);
            if gave_up.contains(expr) {
                assert!(caretaker.is_ok(), "{expr:?} parses in systemd but not in caretaker");
                systemd_gave_up.push(format!("{expr} (TZ={tz}, after {base})"));
                continue;
            }
            match (systemd.get(expr), &caretaker) {
                (Some(want), Ok(_)) => {
                    compared += 1;
                    if let Some(why) = compare(expr, &normalized[expr], want, tz, base) {
                        problems.push(format!("{expr:?} (TZ={tz}, after {base}):\n    {why}"));
                    }
                }
                (Some(_), Err(e)) => match REFUSED.iter().find(|(r, _)| r == expr) {
                    Some((_, reason)) if e.message.contains(reason) => {}
                    Some((_, reason)) => problems.push(format!("{expr:?}: refused for \"{e}\", not \"{reason}\"")),
                    None => problems.push(format!("{expr:?}: systemd accepts it, caretaker refuses it: {e}")),
                },
                (None, Ok(_)) => problems.push(format!("{expr:?}: caretaker accepts what systemd refuses")),
                (None, Err(_)) => {}
            }
        }
        for (ext, same) in EXTENSIONS {
            if systemd.contains_key(*ext) {
                problems.push(format!("{ext:?} is listed as an extension, but systemd accepts it"));
            }
            if gave_up.contains(*same) {
                systemd_gave_up.push(format!("{same} (TZ={tz}, after {base})"));
                continue;
            }
            let Some(want) = systemd.get(*same) else {
                problems.push(format!("{same:?} (for {ext:?}) is refused by systemd"));
                continue;
            };
            compared += 1;
            if let Some(why) = compare(ext, &normalized[*same], want, tz, base) {
                problems.push(format!("{ext:?} ≙ {same:?} (TZ={tz}, after {base}):\n    {why}"));
            }
        }
    }
    assert!(problems.is_empty(), "{} disagreements:\n{}", problems.len(), problems.join("\n"));
    // systemd's own failures must stay the rare exception they are, or this compares nothing.
    eprintln!("systemd could not compute (not compared): {systemd_gave_up:#?}");
    assert!(systemd_gave_up.len() < 20, "{systemd_gave_up:#?}");
    // The corpus is in systemd's syntax: most of it must be compared, not refused.
    assert!(compared > 300 * BASES.len(), "only {compared} comparisons");
}
