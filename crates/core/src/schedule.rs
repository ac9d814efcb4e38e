//! Calendar schedules: parsing what operators write (`daily 00:30`, `Mon..Fri 02:00`,
//! `30 0 * * *`, ...) and computing when a schedule next fires.
//!
//! This module owns the schedule syntax, its error messages, and the calendar rules for
//! next runs, including daylight-saving time. It reads no clock: every instant comes in as
//! an argument, so the scheduler's decisions are testable with fixed times.
//!
//! All accepted forms (systemd-`OnCalendar`-like words and 5-field cron) parse into one
//! [`Schedule`]: sets of allowed minutes, hours, days of month, months and weekdays, at
//! minute resolution, plus an optional IANA time zone.
//!
//! Semantics follow cron/systemd where they agree (a differential test compares a few hundred
//! expressions with `systemd-analyze calendar`), and the origin of the form where they differ: `weekly` is Monday 00:00 (systemd), `@weekly` is Sunday 00:00 (cron). When both
//! day-of-month and day-of-week are restricted (cron only), a day matches if *either* does;
//! like Vixie cron, a field starting with `*` (also `*/2`) counts as unrestricted.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::fmt;
use std::str::FromStr;

/// How far [`Schedule::next_after`] looks ahead: a little over 5 years, enough for a
/// `Feb 29` schedule (leap years can be 8 years apart only around 2100, 2200, ...).
const SEARCH_DAYS: i32 = 5 * 366 + 2;

/// A calendar schedule at minute resolution. Parse with [`parse_schedule`] or `str::parse`.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    minutes: Bits,       // 0..=59
    hours: Bits,         // 0..=23
    days_of_month: Bits, // 1..=31
    months: Bits,        // 1..=12
    weekdays: Bits,      // 1..=7, Monday = 1 (jiff's "Monday one offset")
    /// Cron rule: when both day fields are restricted, a day matches if either matches.
    dom_restricted: bool,
    dow_restricted: bool,
    /// The zone written in the schedule (name as written, for Display and errors).
    zone: Option<(String, TimeZone)>,
    text: String,
}

/// What is wrong with a schedule text, worded for an operator reading a config error.
///
/// `message` says what is wrong and quotes the offending word; `hint` shows what to write
/// instead. The config validator maps them onto its diagnostic's message and hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleError {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same shape as `config::Diagnostic`, so both read alike when shown standalone.
        write!(f, "{} (hint: {})", self.message, self.hint)
    }
}

impl std::error::Error for ScheduleError {}

const FORMS_HINT: &str = "accepted forms: `hourly`, `daily`, `weekly`, `monthly`, `yearly`, \
    `daily 00:30`, `00:30`, `Sun 21:00`, `Mon,Wed,Fri 02:00`, `Mon..Fri 02:00`, `hourly :15`, \
    `*:0/15`, cron `30 0 * * *`; each optionally followed by a time zone like `Europe/Vienna`";
const TIME_HINT: &str = "write times as HH:MM on a 24-hour clock, e.g. `00:30` or `21:00`; \
    `*:15` is every hour at :15, `*:0/15` every 15 minutes";
const CRON_HINT: &str = "cron has 5 fields: minute hour day-of-month month day-of-week, \
    e.g. `30 0 * * *`; fields take `*`, lists `1,15`, ranges `1-5` and steps `*/15`";
const WEEKDAY_HINT: &str = "write weekdays as `Mon`, `Mon,Wed,Fri` or `Mon..Fri` \
    (full names like `Sunday` work too), followed by a time, e.g. `Sun 21:00`";
const ZONE_HINT: &str = "put an IANA time zone name such as `UTC` or `Europe/Vienna` as the \
    last word, e.g. `daily 00:30 Europe/Vienna`";

fn err(message: impl Into<String>, hint: &str) -> ScheduleError {
    ScheduleError { message: message.into(), hint: hint.into() }
}

/// Parses a schedule; see the module docs for the accepted forms.
pub fn parse_schedule(s: &str) -> Result<Schedule, ScheduleError> {
    let text = s.trim();
    let mut words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return Err(err("empty schedule", FORMS_HINT));
    }

    // The zone is the last word of any form. A word that starts with a letter and is not
    // made of schedule words (day/month names, keywords) can only be meant as a zone.
    let mut zone_word = None;
    if words.len() >= 2 {
        let last = words[words.len() - 1];
        if last.starts_with(|c: char| c.is_ascii_alphabetic()) && !is_schedule_word(last) {
            zone_word = Some(last);
            words.pop();
        }
    }

    let parsed = match words.as_slice() {
        [one] => parse_one_word(one, text),
        [first, time] => parse_two_words(first, time, text),
        [_, _, _, _, _] => parse_cron(&words, text),
        [_, _, _, _, _, _] if words.iter().all(|w| looks_like_cron_field(w)) => Err(err(
            format!("cron schedule \"{text}\" has 6 fields; a seconds field is not supported"),
            "caretaker schedules have minute resolution: drop the first (seconds) field, \
             e.g. `30 0 * * *`",
        )),
        _ => Err(err(format!("cannot read schedule \"{text}\""), FORMS_HINT)),
    };
    let zone = match zone_word {
        None => None,
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => Some((name.to_string(), tz)),
            // Only blame the zone if the rest makes sense; "every day at noon" is not a
            // schedule with a misspelt zone "noon".
            Err(_) if parsed.is_ok() => {
                return Err(err(format!("unknown time zone \"{name}\" in schedule \"{text}\""), ZONE_HINT))
            }
            Err(_) => None,
        },
    };
    let mut sched = parsed?;
    check_some_day_exists(&sched, text)?;
    sched.zone = zone;
    sched.text = text.to_string();
    Ok(sched)
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_schedule(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// Serialized as the text the operator wrote, so listings and JSON output show it verbatim.
impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_schedule(&text).map_err(serde::de::Error::custom)
    }
}

impl Schedule {
    /// The time zone written in the schedule, if any.
    pub fn time_zone(&self) -> Option<&TimeZone> {
        self.zone.as_ref().map(|(_, tz)| tz)
    }

    /// The time zone name as written in the schedule, if any.
    pub fn time_zone_name(&self) -> Option<&str> {
        self.zone.as_ref().map(|(name, _)| name.as_str())
    }

    /// The first instant strictly after `after` at which the schedule fires, evaluated on
    /// the local calendar of the schedule's zone, or of `default_tz` if it names none.
    ///
    /// Candidates are local dates × (hour, minute) pairs mapped to instants with jiff's
    /// "compatible" rule: a local time repeated by a fall-back fires once, at its first
    /// occurrence (as in systemd); a local time skipped by a spring-forward gap fires once,
    /// shifted forward by the gap (02:30 → 03:30), as in cronie — systemd skips it for that
    /// day instead, and caretaker deliberately does not, so a daily backup is never dropped.
    /// `crates/core/tests/schedule_vs_systemd.rs` checks everything else against systemd.
    /// `None` if nothing matches within about 5 years.
    pub fn next_after(&self, after: Timestamp, default_tz: &TimeZone) -> Option<Timestamp> {
        let tz = self.time_zone().unwrap_or(default_tz);
        let window = SignedDuration::from_hours(48);
        let window_start = after.checked_sub(window).ok()?;
        // A local time at or before `after` in local terms maps after `after` only when the
        // clock jumped forward in between (02:30 in the gap maps to 03:30, later than
        // 03:10): earlier local times cannot, and are not even converted.
        let low = tz.to_datetime(after).checked_sub(forward_jumps(tz, window_start, after)).ok()?;
        let mut date = low.date();
        // Likewise a later local time can map to an earlier instant only within the forward
        // jumps near the best candidate, so the search stops that far past it in local
        // order. Holds (local candidate, its instant, forward jumps near it).
        let mut best: Option<(DateTime, Timestamp, SignedDuration)> = None;
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(date) {
                for hour in self.hours.iter() {
                    for minute in self.minutes.iter() {
                        let local = date.at(hour as i8, minute as i8, 0, 0);
                        if local <= low {
                            continue;
                        }
                        if let Some((best_local, best_ts, slack)) = best {
                            if local.checked_sub(slack).is_ok_and(|l| l > best_local) {
                                // Nothing later in local order can map before the best.
                                return Some(best_ts);
                            }
                        }
                        let Ok(ts) = tz.to_ambiguous_timestamp(local).compatible() else {
                            continue;
                        };
                        if ts > after && best.is_none_or(|(_, b, _)| ts < b) {
                            let window_end = ts.checked_add(window).unwrap_or(Timestamp::MAX);
                            let slack = forward_jumps(tz, window_start, window_end);
                            best = Some((local, ts, slack));
                        }
                    }
                }
            }
            date = match date.tomorrow() {
                Ok(d) => d,
                Err(_) => break,
            };
        }
        best.map(|(_, ts, _)| ts)
    }

    /// When a task on this schedule is next due, given when it last ran.
    ///
    /// This is how the scheduler uses a schedule (catch-up semantics): a task is due once
    /// `next_due(last_run) <= now`; it runs, and the scheduler stores `last_run = now`. So
    /// runs missed during a downtime collapse into a single run when caretaker comes back,
    /// and the next one is in the future again. For a task that never ran, pass the time
    /// it was first scheduled (persisted with the task state): it then first runs at the
    /// first occurrence after that, not immediately. Same as [`Schedule::next_after`].
    pub fn next_due(&self, last_run: Timestamp, default_tz: &TimeZone) -> Option<Timestamp> {
        self.next_after(last_run, default_tz)
    }

    /// Whether a task that last ran at `last_run` is due at `now`; see [`Schedule::next_due`].
    pub fn is_due(&self, last_run: Timestamp, now: Timestamp, default_tz: &TimeZone) -> bool {
        self.next_due(last_run, default_tz).is_some_and(|due| due <= now)
    }

    /// The next `n` runs after `after`, for listings such as `caretaker schedule`.
    pub fn upcoming(&self, after: Timestamp, default_tz: &TimeZone, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n.min(1000));
        let mut t = after;
        while out.len() < n {
            match self.next_after(t, default_tz) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    fn day_matches(&self, date: Date) -> bool {
        if !self.months.contains(date.month() as u8) {
            return false;
        }
        let dom = self.days_of_month.contains(date.day() as u8);
        let dow = self.weekdays.contains(date.weekday().to_monday_one_offset() as u8);
        if self.dom_restricted && self.dow_restricted {
            dom || dow
        } else {
            // An unrestricted field is the full set, so this is the restricted one alone.
            dom && dow
        }
    }

    /// Every day of every month, the given times.
    fn every_day(minutes: Bits, hours: Bits) -> Schedule {
        Schedule {
            minutes,
            hours,
            days_of_month: Bits::range(1, 31),
            months: Bits::range(1, 12),
            weekdays: Bits::range(1, 7),
            dom_restricted: false,
            dow_restricted: false,
            zone: None,
            text: String::new(),
        }
    }

    fn on_weekdays(mut self, weekdays: Bits) -> Schedule {
        self.weekdays = weekdays;
        self.dow_restricted = true;
        self
    }

    fn on_day_of_month(mut self, day: u8) -> Schedule {
        self.days_of_month = Bits::single(day);
        self.dom_restricted = true;
        self
    }

    fn in_month(self, month: u8) -> Schedule {
        self.in_months(&[month])
    }

    fn in_months(mut self, months: &[u8]) -> Schedule {
        self.months = months.iter().fold(Bits::EMPTY, |b, &m| b.union(Bits::single(m)));
        self
    }
}

/// The sum of the forward clock jumps (spring-forward gaps) of `tz` between two instants.
fn forward_jumps(tz: &TimeZone, from: Timestamp, to: Timestamp) -> SignedDuration {
    let mut total = SignedDuration::ZERO;
    for change in tz.following(from) {
        let at = change.timestamp();
        if at > to {
            break;
        }
        let Ok(just_before) = at.checked_sub(SignedDuration::from_secs(1)) else {
            continue;
        };
        let jump = change.offset().seconds() - tz.to_offset(just_before).seconds();
        if jump > 0 {
            total += SignedDuration::from_secs(i64::from(jump));
        }
    }
    total
}

/// A set of small numbers (< 64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bits(u64);

impl Bits {
    const EMPTY: Bits = Bits(0);

    fn single(i: u8) -> Bits {
        Bits(1 << i)
    }

    fn range(lo: u8, hi: u8) -> Bits {
        Self::stepped(lo, hi, 1)
    }

    fn stepped(lo: u8, hi: u8, step: u8) -> Bits {
        let mut b = Bits::EMPTY;
        let mut i = lo;
        while i <= hi {
            b.0 |= 1 << i;
            match i.checked_add(step) {
                Some(n) => i = n,
                None => break,
            }
        }
        b
    }

    fn union(self, other: Bits) -> Bits {
        Bits(self.0 | other.0)
    }

    fn contains(self, i: u8) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }

    fn iter(self) -> impl Iterator<Item = u8> {
        (0..64u8).filter(move |&i| self.contains(i))
    }
}

// ---- words -------------------------------------------------------------------------------

fn weekday_number(word: &str) -> Option<u8> {
    Some(match word.to_ascii_lowercase().as_str() {
        "mon" | "monday" => 1,
        "tue" | "tues" | "tuesday" => 2,
        "wed" | "wednesday" => 3,
        "thu" | "thur" | "thurs" | "thursday" => 4,
        "fri" | "friday" => 5,
        "sat" | "saturday" => 6,
        "sun" | "sunday" => 7,
        _ => return None,
    })
}

fn month_number(word: &str) -> Option<u8> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let w = word.to_ascii_lowercase();
    MONTHS.iter().position(|m| w == *m || (w.len() == 3 && m.starts_with(w.as_str()))).map(|i| i as u8 + 1)
}

const KEYWORDS: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "@reboot",
];

/// Whether a word is part of a schedule (so not a time zone): a keyword, or built only
/// from numbers, `*` and day/month names joined by `,` `-` `..` `/` `:`.
fn is_schedule_word(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    KEYWORDS.contains(&lower.as_str())
        || lower.split([',', '-', '.', '/', ':']).filter(|a| !a.is_empty()).all(|a| {
            a == "*"
                || a.bytes().all(|b| b.is_ascii_digit())
                || weekday_number(a).is_some()
                || month_number(a).is_some()
        })
}

fn looks_like_cron_field(word: &str) -> bool {
    !word.contains(':') && is_schedule_word(word)
}

fn parse_one_word(word: &str, text: &str) -> Result<Schedule, ScheduleError> {
    let midnight = || Schedule::every_day(Bits::single(0), Bits::single(0));
    Ok(match word.to_ascii_lowercase().as_str() {
        "minutely" => Schedule::every_day(Bits::range(0, 59), Bits::range(0, 23)),
        "hourly" | "@hourly" => Schedule::every_day(Bits::single(0), Bits::range(0, 23)),
        "daily" | "@daily" | "@midnight" => midnight(),
        // systemd: weekly is Monday; cron: @weekly is Sunday ("0 0 * * 0").
        "weekly" => midnight().on_weekdays(Bits::single(1)),
        "@weekly" => midnight().on_weekdays(Bits::single(7)),
        "monthly" | "@monthly" => midnight().on_day_of_month(1),
        "yearly" | "annually" | "@yearly" | "@annually" => midnight().on_day_of_month(1).in_month(1),
        // systemd: the first of January, April, July and October; of January and July.
        "quarterly" => midnight().on_day_of_month(1).in_months(&[1, 4, 7, 10]),
        "semiannually" => midnight().on_day_of_month(1).in_months(&[1, 7]),
        "@reboot" => {
            return Err(err(
                format!("\"@reboot\" in schedule \"{text}\" is not supported"),
                "caretaker schedules are calendar times; services start with caretaker itself",
            ))
        }
        _ if word.contains(':') => {
            let (hours, minutes) = parse_time(word)?;
            Schedule::every_day(minutes, hours)
        }
        // Like systemd, a weekday alone means midnight of that day.
        _ if word.starts_with(|c: char| c.is_ascii_alphabetic()) && is_weekday_spec(word) => {
            midnight().on_weekdays(parse_weekdays(word)?)
        }
        _ => return Err(err(format!("cannot read schedule \"{text}\": unknown word \"{word}\""), FORMS_HINT)),
    })
}

fn parse_two_words(first: &str, second: &str, text: &str) -> Result<Schedule, ScheduleError> {
    let lower = first.to_ascii_lowercase();
    if lower == "hourly" || lower == "@hourly" {
        let Some(minute) = second.strip_prefix(':') else {
            return Err(err(
                format!("expected a minute like :15 after \"{first}\", got \"{second}\""),
                "`hourly :15` runs every hour at minute 15; `*:15` means the same",
            ));
        };
        let minutes = parse_component(minute, 0, 59)
            .map_err(|why| err(format!("expected a minute like :15, got \"{second}\": {why}"), TIME_HINT))?;
        return Ok(Schedule::every_day(minutes, Bits::range(0, 23)));
    }
    let at = |word: &str| -> Result<Schedule, ScheduleError> {
        if !word.contains(':') {
            return Err(err(format!("expected a time like 00:30 after \"{first}\", got \"{word}\""), TIME_HINT));
        }
        let (hours, minutes) = parse_time(word)?;
        Ok(Schedule::every_day(minutes, hours))
    };
    match lower.as_str() {
        "daily" => at(second),
        "weekly" => Ok(at(second)?.on_weekdays(Bits::single(1))),
        "monthly" => Ok(at(second)?.on_day_of_month(1)),
        "yearly" | "annually" => Ok(at(second)?.on_day_of_month(1).in_month(1)),
        _ if is_weekday_spec(first) => {
            let days = parse_weekdays(first)?;
            Ok(at(second)?.on_weekdays(days))
        }
        _ if first.starts_with(|c: char| c.is_ascii_alphabetic()) => Err(err(
            format!(
                "expected a weekday or `daily`/`weekly`/`monthly`/`yearly` in schedule \"{text}\", got \"{first}\""
            ),
            WEEKDAY_HINT,
        )),
        _ => Err(err(format!("cannot read schedule \"{text}\""), FORMS_HINT)),
    }
}

/// `HH:MM` or `HH:MM:SS` (seconds must be zero), each of hour and minute a component
/// like `*`, `8`, `8,20`, `8..18`, `0/15`.
fn parse_time(word: &str) -> Result<(Bits, Bits), ScheduleError> {
    let bad = |why: &str| err(format!("expected a time like 00:30, got \"{word}\": {why}"), TIME_HINT);
    let parts: Vec<&str> = word.split(':').collect();
    let (h, m) = match parts.as_slice() {
        [h, m] => (*h, *m),
        [h, m, s] => {
            if !matches!(*s, "0" | "00") {
                return Err(err(
                    format!("expected a time like 00:30, got \"{word}\": seconds must be 00"),
                    "schedules have minute resolution: write `02:30` instead of `02:30:15`",
                ));
            }
            (*h, *m)
        }
        _ => return Err(bad("use HH:MM")),
    };
    if h.is_empty() || m.is_empty() {
        return Err(bad("use HH:MM"));
    }
    let hours = parse_component(h, 0, 23).map_err(|why| bad(&format!("hours {why}")))?;
    let minutes = parse_component(m, 0, 59).map_err(|why| bad(&format!("minutes {why}")))?;
    Ok((hours, minutes))
}

/// One component of a systemd-like time: `*`, `N`, `A..B` (or `A-B`), each with optional
/// `/STEP`, joined by `,`. The error completes "hours ...", e.g. "go from 00 to 23".
fn parse_component(text: &str, lo: u8, hi: u8) -> Result<Bits, String> {
    let range_msg = || format!("go from {lo:02} to {hi:02}");
    let num = |s: &str| -> Result<u8, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("must be numbers, got \"{s}\""));
        }
        match s.parse::<u8>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(range_msg()),
        }
    };
    fn range(base: &str) -> Option<(&str, &str)> {
        base.split_once("..").or_else(|| base.split_once('-'))
    }
    // Like systemd, `N/STEP` must repeat at least once: `*:59/1` or `22/2:00` would be a
    // single value that reads like a repetition, and systemd refuses them too.
    for item in text.split(',') {
        let Some((base, step)) = item.split_once('/') else { continue };
        if base == "*" || range(base).is_some() {
            continue;
        }
        if let (Ok(a), Ok(s)) = (num(base), step.parse::<u8>()) {
            if s > 0 && u16::from(a) + u16::from(s) > u16::from(hi) {
                return Err(format!(
                    "step `{item}` never repeats ({a} + {s} is past {hi:02}): write `{a:02}` alone, \
                     or a range like `{a:02}..{hi:02}/{s}`"
                ));
            }
        }
    }
    parse_stepped_list(text, lo, hi, range, "..", num)
}

fn is_weekday_spec(word: &str) -> bool {
    word.split([',', '-', '.']).filter(|a| !a.is_empty()).any(|a| weekday_number(a).is_some())
}

/// `Mon`, `Mon,Wed,Fri`, `Mon..Fri`, `Mon-Fri`; a range may wrap (`Sat..Mon`).
fn parse_weekdays(word: &str) -> Result<Bits, ScheduleError> {
    let day = |d: &str| {
        weekday_number(d).ok_or_else(|| err(format!("expected a weekday, got \"{d}\" in \"{word}\""), WEEKDAY_HINT))
    };
    let mut set = Bits::EMPTY;
    for item in word.split(',') {
        if let Some((a, b)) = item.split_once("..").or_else(|| item.split_once('-')) {
            let (a, b) = (day(a)?, day(b)?);
            set = if a <= b {
                set.union(Bits::range(a, b))
            } else {
                set.union(Bits::range(a, 7)).union(Bits::range(1, b))
            };
        } else {
            set = set.union(Bits::single(day(item)?));
        }
    }
    Ok(set)
}

// ---- cron --------------------------------------------------------------------------------

fn parse_cron(fields: &[&str], text: &str) -> Result<Schedule, ScheduleError> {
    let field = |i: usize, name: &str, lo: u8, hi: u8, names: fn(&str) -> Option<u8>| {
        parse_cron_field(fields[i], lo, hi, names).map_err(|why| {
            err(format!("cron field {} ({name}) \"{}\" in \"{text}\": {why}", i + 1, fields[i]), CRON_HINT)
        })
    };
    let no_names: fn(&str) -> Option<u8> = |_| None;
    // Cron numbers Sunday 0 (and 7); store Monday = 1 .. Sunday = 7.
    let cron_weekday: fn(&str) -> Option<u8> = |w| weekday_number(w).map(|d| d % 7);
    let minutes = field(0, "minute", 0, 59, no_names)?;
    let hours = field(1, "hour", 0, 23, no_names)?;
    let days_of_month = field(2, "day of month", 1, 31, no_names)?;
    let months = field(3, "month", 1, 12, month_number)?;
    let cron_days = field(4, "day of week", 0, 7, cron_weekday)?;
    let mut weekdays = Bits(cron_days.0 & !1 & !(1 << 7));
    if cron_days.contains(0) || cron_days.contains(7) {
        weekdays = weekdays.union(Bits::single(7));
    }
    Ok(Schedule {
        minutes,
        hours,
        days_of_month,
        months,
        weekdays,
        dom_restricted: !fields[2].starts_with('*'),
        dow_restricted: !fields[4].starts_with('*'),
        zone: None,
        text: String::new(),
    })
}

fn parse_cron_field(text: &str, lo: u8, hi: u8, names: fn(&str) -> Option<u8>) -> Result<Bits, String> {
    let value = |s: &str| -> Result<u8, String> {
        let n = if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
            s.parse::<u8>().ok()
        } else {
            Some(names(s).ok_or_else(|| format!("\"{s}\" is not a number or name"))?)
        };
        n.filter(|n| (lo..=hi).contains(n)).ok_or_else(|| format!("{s} is out of range: values go from {lo} to {hi}"))
    };
    fn range(base: &str) -> Option<(&str, &str)> {
        base.split_once('-')
    }
    parse_stepped_list(text, lo, hi, range, "-", value)
}

/// A comma-separated list of `*`, `N` or `A<sep>B`, each with an optional `/STEP`: the shape
/// shared by systemd time components and cron fields. `N/STEP` repeats from N to `hi`.
fn parse_stepped_list(
    text: &str,
    lo: u8,
    hi: u8,
    range: fn(&str) -> Option<(&str, &str)>,
    sep: &str,
    value: impl Fn(&str) -> Result<u8, String>,
) -> Result<Bits, String> {
    let mut set = Bits::EMPTY;
    for item in text.split(',') {
        // `N/1` repeats from N every 1 (systemd's `*:0/1` is every minute): whether a step
        // was written matters, not whether it is greater than 1.
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => {
                let step = s
                    .parse::<u8>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("need a positive step after `/`, got \"{s}\""))?;
                (b, Some(step))
            }
            None => (item, None),
        };
        let (a, b) = if base == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range(base) {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("range {a}{sep}{b} goes backwards"));
            }
            (a, b)
        } else {
            let a = value(base)?;
            (a, if step.is_some() { hi } else { a })
        };
        set = set.union(Bits::stepped(a, b, step.unwrap_or(1)));
    }
    Ok(set)
}

/// Rejects schedules that can never fire (`0 0 30 2 *`), which would otherwise just never
/// run, silently.
fn check_some_day_exists(s: &Schedule, text: &str) -> Result<(), ScheduleError> {
    if !s.dom_restricted || s.dow_restricted {
        // Any weekday occurs in every month, so such a schedule always fires.
        return Ok(());
    }
    const DAYS_IN_MONTH: [u8; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let possible = s.months.iter().any(|m| s.days_of_month.iter().any(|d| d <= DAYS_IN_MONTH[m as usize - 1]));
    if possible {
        Ok(())
    } else {
        Err(err(
            format!("schedule \"{text}\" never runs: none of its months has that day"),
            "check the day-of-month and month fields, e.g. `0 0 29 2 *` runs on Feb 29 only",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn vienna() -> TimeZone {
        TimeZone::get("Europe/Vienna").expect("tzdb has Europe/Vienna")
    }

    /// Runs after `after` (UTC default zone), rendered in UTC.
    fn runs(text: &str, after: &str, n: usize) -> Vec<String> {
        let s = parse_schedule(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        s.upcoming(ts(after), &utc(), n).iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn accepted_forms_and_their_next_runs() {
        // 2026-01-01 is a Thursday.
        let after = "2026-01-01T10:07:00Z";
        let cases: &[(&str, &[&str])] = &[
            ("hourly", &["2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"]),
            ("@hourly", &["2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"]),
            ("daily", &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]),
            ("@daily", &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]),
            ("@midnight", &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]),
            ("weekly", &["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"]),
            ("@weekly", &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
            ("monthly", &["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]),
            ("@monthly", &["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]),
            ("yearly", &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
            ("annually", &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
            ("@yearly", &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
            ("@annually", &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
            ("DAILY", &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]),
            ("daily 00:30", &["2026-01-02T00:30:00Z", "2026-01-03T00:30:00Z"]),
            ("daily 10:08", &["2026-01-01T10:08:00Z", "2026-01-02T10:08:00Z"]),
            ("daily 10:07", &["2026-01-02T10:07:00Z", "2026-01-03T10:07:00Z"]),
            ("06:30", &["2026-01-02T06:30:00Z", "2026-01-03T06:30:00Z"]),
            ("6:30", &["2026-01-02T06:30:00Z", "2026-01-03T06:30:00Z"]),
            ("06:30:00", &["2026-01-02T06:30:00Z", "2026-01-03T06:30:00Z"]),
            ("weekly 03:00", &["2026-01-05T03:00:00Z", "2026-01-12T03:00:00Z"]),
            ("monthly 04:00", &["2026-02-01T04:00:00Z", "2026-03-01T04:00:00Z"]),
            ("yearly 05:00", &["2027-01-01T05:00:00Z", "2028-01-01T05:00:00Z"]),
            ("Sun 21:00", &["2026-01-04T21:00:00Z", "2026-01-11T21:00:00Z"]),
            ("sunday 21:00", &["2026-01-04T21:00:00Z", "2026-01-11T21:00:00Z"]),
            ("Sun", &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
            ("Mon,Wed,Fri 02:00", &["2026-01-02T02:00:00Z", "2026-01-05T02:00:00Z", "2026-01-07T02:00:00Z"]),
            ("Mon..Fri 02:00", &["2026-01-02T02:00:00Z", "2026-01-05T02:00:00Z", "2026-01-06T02:00:00Z"]),
            ("Mon-Fri 02:00", &["2026-01-02T02:00:00Z", "2026-01-05T02:00:00Z", "2026-01-06T02:00:00Z"]),
            ("Sat..Mon 02:00", &["2026-01-03T02:00:00Z", "2026-01-04T02:00:00Z", "2026-01-05T02:00:00Z"]),
            ("hourly :15", &["2026-01-01T10:15:00Z", "2026-01-01T11:15:00Z"]),
            ("*:15", &["2026-01-01T10:15:00Z", "2026-01-01T11:15:00Z"]),
            ("*:0/15", &["2026-01-01T10:15:00Z", "2026-01-01T10:30:00Z", "2026-01-01T10:45:00Z"]),
            ("8..18:00", &["2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"]),
            ("9,17:30", &["2026-01-01T17:30:00Z", "2026-01-02T09:30:00Z"]),
            ("30 0 * * *", &["2026-01-02T00:30:00Z", "2026-01-03T00:30:00Z"]),
            ("*/15 * * * *", &["2026-01-01T10:15:00Z", "2026-01-01T10:30:00Z"]),
            (
                "0-30/10 10 * * *",
                &["2026-01-01T10:10:00Z", "2026-01-01T10:20:00Z", "2026-01-01T10:30:00Z", "2026-01-02T10:00:00Z"],
            ),
            ("0 0 1 JAN *", &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
            ("0 0 * * MON", &["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"]),
            ("0 0 * * 0", &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
            ("0 0 * * 7", &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
            (
                "0 0 * * 5-7",
                &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-09T00:00:00Z"],
            ),
            ("0 12 * jan-feb sat,sun", &["2026-01-03T12:00:00Z", "2026-01-04T12:00:00Z"]),
            ("15 10 1,15 * *", &["2026-01-01T10:15:00Z", "2026-01-15T10:15:00Z"]),
            ("0 3 * * * UTC", &["2026-01-02T03:00:00Z", "2026-01-03T03:00:00Z"]),
            // Zones: Vienna is UTC+1 in winter, New York UTC-5.
            ("daily 00:30 Europe/Vienna", &["2026-01-01T23:30:00Z", "2026-01-02T23:30:00Z"]),
            ("0 3 * * * America/New_York", &["2026-01-02T08:00:00Z", "2026-01-03T08:00:00Z"]),
            ("hourly Europe/Vienna", &["2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"]),
            ("Sun 21:00 Europe/Vienna", &["2026-01-04T20:00:00Z", "2026-01-11T20:00:00Z"]),
        ];
        for (text, want) in cases {
            assert_eq!(runs(text, after, want.len()), *want, "{text:?}");
            let s: Schedule = text.parse().unwrap();
            assert_eq!(s.to_string(), *text);
        }
    }

    #[test]
    fn a_step_of_one_repeats_every_unit_like_systemd() {
        // systemd's `*:0/1` is every minute; a step of 1 was once read as the start alone.
        let after = "2026-01-01T10:07:00Z";
        assert_eq!(runs("*:0/1", after, 3), ["2026-01-01T10:08:00Z", "2026-01-01T10:09:00Z", "2026-01-01T10:10:00Z"]);
        assert_eq!(
            runs("*:1/1", "2026-01-01T10:58:30Z", 3),
            ["2026-01-01T10:59:00Z", "2026-01-01T11:01:00Z", "2026-01-01T11:02:00Z"]
        );
        assert_eq!(runs("0/1:00", after, 2), ["2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"]);
        assert_eq!(runs("hourly :0/1", after, 2), ["2026-01-01T10:08:00Z", "2026-01-01T10:09:00Z"]);
        assert_eq!(runs("0/1 * * * *", after, 2), ["2026-01-01T10:08:00Z", "2026-01-01T10:09:00Z"]);
        assert_eq!(runs("minutely", after, 2), ["2026-01-01T10:08:00Z", "2026-01-01T10:09:00Z"]);
        assert_eq!(runs("quarterly", after, 2), ["2026-04-01T00:00:00Z", "2026-07-01T00:00:00Z"]);
        assert_eq!(runs("semiannually", after, 2), ["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"]);
        // A step that cannot repeat is refused, as systemd does, rather than read as one value.
        let e = parse_schedule("*:59/1").unwrap_err();
        assert_eq!(
            e.message,
            "expected a time like 00:30, got \"*:59/1\": minutes step `59/1` never repeats (59 + 1 is past 59): \
             write `59` alone, or a range like `59..59/1`"
        );
        assert!(parse_schedule("22/2:00").is_err());
        assert!(parse_schedule("*:44/15").is_ok());
    }

    #[test]
    fn zone_is_kept_and_default_zone_applies_otherwise() {
        let s = parse_schedule("  daily 00:30   Europe/Vienna ").unwrap();
        assert_eq!(s.time_zone_name(), Some("Europe/Vienna"));
        assert_eq!(s.time_zone(), Some(&vienna()));
        assert_eq!(s.to_string(), "daily 00:30   Europe/Vienna");

        let s = parse_schedule("daily 00:30").unwrap();
        assert_eq!(s.time_zone(), None);
        // No zone in the schedule: the caller's default zone is used.
        assert_eq!(s.next_after(ts("2026-07-01T12:00:00Z"), &vienna()), Some(ts("2026-07-01T22:30:00Z")));
    }

    #[test]
    fn equivalent_forms_parse_to_the_same_sets() {
        let same = |a: &str, b: &str| {
            let (mut a, mut b) = (parse_schedule(a).unwrap(), parse_schedule(b).unwrap());
            a.text.clear();
            b.text.clear();
            assert_eq!(a, b);
        };
        same("daily", "0 0 * * *");
        same("daily 00:30", "30 0 * * *");
        same("00:30", "30 0 * * *");
        same("hourly", "0 * * * *");
        same("hourly :15", "*:15");
        same("*:0/15", "*/15 * * * *");
        same("@weekly", "0 0 * * SUN");
        same("weekly", "Mon 00:00");
        same("Mon..Fri 02:00", "0 2 * * 1-5");
        same("Mon,Wed,Fri 02:00", "0 2 * * mon,wed,fri");
        same("monthly", "0 0 1 * *");
        same("yearly", "0 0 1 1 *");
    }

    #[test]
    fn rejects_bad_input() {
        let cases: &[(&str, &str)] = &[
            ("", "empty schedule"),
            ("25:00", "expected a time like 00:30, got \"25:00\": hours go from 00 to 23"),
            ("daily 25:00", "expected a time like 00:30, got \"25:00\": hours go from 00 to 23"),
            ("12:60", "expected a time like 00:30, got \"12:60\": minutes go from 00 to 59"),
            ("12:ab", "expected a time like 00:30, got \"12:ab\": minutes must be numbers, got \"ab\""),
            ("02:30:15", "expected a time like 00:30, got \"02:30:15\": seconds must be 00"),
            ("1:2:3:4", "expected a time like 00:30, got \"1:2:3:4\": use HH:MM"),
            (":30", "expected a time like 00:30, got \":30\": use HH:MM"),
            ("daily 0030", "expected a time like 00:30 after \"daily\", got \"0030\""),
            ("hourly 15", "expected a minute like :15 after \"hourly\", got \"15\""),
            ("hourly :75", "expected a minute like :15, got \":75\": go from 00 to 59"),
            ("Sun 9pm", "expected a time like 00:30 after \"Sun\", got \"9pm\""),
            ("Sun..Funday 02:00", "expected a weekday, got \"Funday\" in \"Sun..Funday\""),
            ("fortnightly", "cannot read schedule \"fortnightly\": unknown word \"fortnightly\""),
            ("daily 00:30 Mars/Olympus", "unknown time zone \"Mars/Olympus\" in schedule \"daily 00:30 Mars/Olympus\""),
            ("0 3 * * * Europe/Viena", "unknown time zone \"Europe/Viena\" in schedule \"0 3 * * * Europe/Viena\""),
            ("0 30 0 * * *", "cron schedule \"0 30 0 * * *\" has 6 fields; a seconds field is not supported"),
            (
                "60 * * * *",
                "cron field 1 (minute) \"60\" in \"60 * * * *\": 60 is out of range: values go from 0 to 59",
            ),
            ("0 24 * * *", "cron field 2 (hour) \"24\" in \"0 24 * * *\": 24 is out of range: values go from 0 to 23"),
            (
                "0 0 0 * *",
                "cron field 3 (day of month) \"0\" in \"0 0 0 * *\": 0 is out of range: values go from 1 to 31",
            ),
            ("0 0 * 13 *", "cron field 4 (month) \"13\" in \"0 0 * 13 *\": 13 is out of range: values go from 1 to 12"),
            (
                "0 0 * * 8",
                "cron field 5 (day of week) \"8\" in \"0 0 * * 8\": 8 is out of range: values go from 0 to 7",
            ),
            ("0 0 * foo *", "cron field 4 (month) \"foo\" in \"0 0 * foo *\": \"foo\" is not a number or name"),
            (
                "*/0 * * * *",
                "cron field 1 (minute) \"*/0\" in \"*/0 * * * *\": need a positive step after `/`, got \"0\"",
            ),
            ("30-10 * * * *", "cron field 1 (minute) \"30-10\" in \"30-10 * * * *\": range 30-10 goes backwards"),
            ("0 0 30 2 *", "schedule \"0 0 30 2 *\" never runs: none of its months has that day"),
            ("0 0 * *", "cannot read schedule \"0 0 * *\""),
            ("@reboot", "\"@reboot\" in schedule \"@reboot\" is not supported"),
        ];
        for (text, want) in cases {
            let e = parse_schedule(text).expect_err(text);
            assert_eq!(&e.message, want, "{text:?}");
        }
    }

    #[test]
    fn rendered_error_messages() {
        let show = |text: &str| parse_schedule(text).unwrap_err().to_string();
        expect![[r#"expected a time like 00:30, got "25:00": hours go from 00 to 23 (hint: write times as HH:MM on a 24-hour clock, e.g. `00:30` or `21:00`; `*:15` is every hour at :15, `*:0/15` every 15 minutes)"#]]
            .assert_eq(&show("daily 25:00"));
        expect![[r#"cannot read schedule "every day at noon" (hint: accepted forms: `hourly`, `daily`, `weekly`, `monthly`, `yearly`, `daily 00:30`, `00:30`, `Sun 21:00`, `Mon,Wed,Fri 02:00`, `Mon..Fri 02:00`, `hourly :15`, `*:0/15`, cron `30 0 * * *`; each optionally followed by a time zone like `Europe/Vienna`)"#]]
            .assert_eq(&show("every day at noon"));
        expect![[r#"unknown time zone "Europe/Viena" in schedule "daily 00:30 Europe/Viena" (hint: put an IANA time zone name such as `UTC` or `Europe/Vienna` as the last word, e.g. `daily 00:30 Europe/Vienna`)"#]]
            .assert_eq(&show("daily 00:30 Europe/Viena"));
        expect![[r#"cron schedule "0 30 0 * * *" has 6 fields; a seconds field is not supported (hint: caretaker schedules have minute resolution: drop the first (seconds) field, e.g. `30 0 * * *`)"#]]
            .assert_eq(&show("0 30 0 * * *"));
        expect![[r#"cron field 2 (hour) "7-25" in "0 7-25 * * *": 25 is out of range: values go from 0 to 23 (hint: cron has 5 fields: minute hour day-of-month month day-of-week, e.g. `30 0 * * *`; fields take `*`, lists `1,15`, ranges `1-5` and steps `*/15`)"#]]
            .assert_eq(&show("0 7-25 * * *"));
        expect![[r#"expected a time like 00:30, got "02:30:15": seconds must be 00 (hint: schedules have minute resolution: write `02:30` instead of `02:30:15`)"#]]
            .assert_eq(&show("02:30:15"));
    }

    /// Runs in Vienna, rendered as local times with their offsets.
    fn vienna_runs(text: &str, after: &str, n: usize) -> Vec<String> {
        let tz = vienna();
        let s = parse_schedule(text).unwrap();
        s.upcoming(ts(after), &tz, n).iter().map(|t| t.to_zoned(tz.clone()).strftime("%F %T%:z").to_string()).collect()
    }

    #[test]
    fn dst_spring_forward_in_vienna() {
        // 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST; 02:30 does not exist and
        // runs once, shifted to 03:30.
        assert_eq!(
            vienna_runs("daily 02:30", "2026-03-27T12:00:00Z", 4),
            [
                "2026-03-28 02:30:00+01:00",
                "2026-03-29 03:30:00+02:00",
                "2026-03-30 02:30:00+02:00",
                "2026-03-31 02:30:00+02:00",
            ]
        );
        // Hourly: 02:00 does not exist and maps to 03:00, the same instant as 03:00 itself,
        // which runs once.
        assert_eq!(
            vienna_runs("hourly", "2026-03-28T23:30:00Z", 4),
            [
                "2026-03-29 01:00:00+01:00",
                "2026-03-29 03:00:00+02:00",
                "2026-03-29 04:00:00+02:00",
                "2026-03-29 05:00:00+02:00",
            ]
        );
        // A schedule at 02:30 and 03:00: the shifted 02:30 (03:30) comes after 03:00, and
        // neither is lost.
        assert_eq!(
            vienna_runs("2,3:00,30", "2026-03-28T23:30:00Z", 4),
            [
                "2026-03-29 03:00:00+02:00",
                "2026-03-29 03:30:00+02:00",
                "2026-03-30 02:00:00+02:00",
                "2026-03-30 02:30:00+02:00",
            ]
        );
    }

    #[test]
    fn dst_fall_back_in_vienna() {
        // 2026-10-25: clocks go back from 03:00 CEST to 02:00 CET; 02:30 occurs twice and
        // runs only at the first.
        assert_eq!(
            vienna_runs("daily 02:30", "2026-10-23T12:00:00Z", 4),
            [
                "2026-10-24 02:30:00+02:00",
                "2026-10-25 02:30:00+02:00",
                "2026-10-26 02:30:00+01:00",
                "2026-10-27 02:30:00+01:00",
            ]
        );
        // Hourly: the repeated 02:00 runs once, so there are two hours between the runs.
        assert_eq!(
            vienna_runs("hourly", "2026-10-24T22:30:00Z", 4),
            [
                "2026-10-25 01:00:00+02:00",
                "2026-10-25 02:00:00+02:00",
                "2026-10-25 03:00:00+01:00",
                "2026-10-25 04:00:00+01:00",
            ]
        );
        // Even when asked from inside the repeated hour, nothing in it runs again.
        let s = parse_schedule("daily 02:30").unwrap();
        let second_0210 = ts("2026-10-25T01:10:00Z"); // 02:10 CET, the second 02:10
        assert_eq!(s.next_after(second_0210, &vienna()), Some(ts("2026-10-26T01:30:00Z")));
    }

    /// The definition of `next_after` without its shortcuts: every matching local time of
    /// the surrounding days, mapped compatibly, the earliest instant after `after`.
    fn next_after_slowly(s: &Schedule, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(after).date().checked_sub(jiff::Span::new().days(3)).ok()?;
        let mut best: Option<Timestamp> = None;
        for d in 0..12 {
            let date = start.checked_add(jiff::Span::new().days(d)).ok()?;
            if !s.day_matches(date) {
                continue;
            }
            for h in s.hours.iter() {
                for m in s.minutes.iter() {
                    let t = tz.to_ambiguous_timestamp(date.at(h as i8, m as i8, 0, 0)).compatible().unwrap();
                    if t > after && best.is_none_or(|b| t < b) {
                        best = Some(t);
                    }
                }
            }
        }
        best
    }

    #[test]
    fn shortcuts_agree_with_the_definition_around_clock_changes() {
        let zones = ["Europe/Vienna", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia"];
        let schedules = [
            "*:0/15",
            "2,3:00,30",
            "daily 02:30",
            "hourly",
            "0 1-3 * * *",
            "Sun 02:30",
            // In Lord Howe's 30-minute gap 02:15 moves to 02:45, after 02:40.
            "2:15,40",
        ];
        // Around Vienna's and New York's changes, Lord Howe's 30-minute ones, and Samoa
        // skipping 2011-12-30.
        let starts = [
            "2026-03-28T22:00:00Z",
            "2026-10-24T22:00:00Z",
            "2026-03-08T05:00:00Z",
            "2026-11-01T04:00:00Z",
            "2026-04-04T13:00:00Z",
            "2026-10-03T14:00:00Z",
            "2011-12-29T08:00:00Z",
        ];
        for zone in zones {
            let tz = TimeZone::get(zone).unwrap();
            for text in schedules {
                let s = parse_schedule(text).unwrap();
                for start in starts {
                    // Every 20 minutes over 6 hours.
                    for step in 0..18 {
                        let after = ts(start) + SignedDuration::from_mins(20 * step);
                        assert_eq!(
                            s.next_after(after, &tz),
                            next_after_slowly(&s, after, &tz),
                            "{text:?} in {zone} after {after}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn catch_up_after_downtime_runs_once() {
        let s = parse_schedule("daily 00:30").unwrap();
        let tz = utc();
        let mut last_run = ts("2026-01-01T00:30:00Z");
        // caretaker is down from Jan 1 01:00 to Jan 4 09:00, missing three runs, then
        // ticks every minute until Jan 4 23:00.
        let mut runs = Vec::new();
        let mut now = ts("2026-01-04T09:00:00Z");
        while now <= ts("2026-01-04T23:00:00Z") {
            if s.is_due(last_run, now, &tz) {
                runs.push(now);
                last_run = now;
            }
            now += SignedDuration::from_mins(1);
        }
        assert_eq!(runs, [ts("2026-01-04T09:00:00Z")]);
        assert_eq!(s.next_due(last_run, &tz), Some(ts("2026-01-05T00:30:00Z")));
        // Never ran: the scheduler passes when the task was first scheduled.
        let registered = ts("2026-01-04T09:00:00Z");
        assert!(!s.is_due(registered, ts("2026-01-04T23:59:00Z"), &tz));
        assert!(s.is_due(registered, ts("2026-01-05T00:30:00Z"), &tz));
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: the 13th OR any Friday. April 2026: Fridays 3, 10, 17, 24; the
        // 13th is a Monday.
        assert_eq!(
            runs("0 0 13 * 5", "2026-04-01T00:00:00Z", 5),
            [
                "2026-04-03T00:00:00Z",
                "2026-04-10T00:00:00Z",
                "2026-04-13T00:00:00Z",
                "2026-04-17T00:00:00Z",
                "2026-04-24T00:00:00Z",
            ]
        );
        // Only one restricted: that one alone.
        assert_eq!(runs("0 0 * * 5", "2026-04-01T00:00:00Z", 2), ["2026-04-03T00:00:00Z", "2026-04-10T00:00:00Z"]);
        assert_eq!(runs("0 0 13 * *", "2026-04-01T00:00:00Z", 2), ["2026-04-13T00:00:00Z", "2026-05-13T00:00:00Z"]);
        // Vixie cron: a field starting with `*` is unrestricted, so `*/2` with a weekday
        // means odd days that are Fridays.
        assert_eq!(
            runs("0 0 */2 * 5", "2026-04-01T00:00:00Z", 3),
            ["2026-04-03T00:00:00Z", "2026-04-17T00:00:00Z", "2026-05-01T00:00:00Z"]
        );
    }

    #[test]
    fn leap_day() {
        assert_eq!(
            runs("0 0 29 2 *", "2026-03-01T00:00:00Z", 3),
            ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z", "2036-02-29T00:00:00Z"]
        );
        // 2096 → 2104: 2100 is no leap year, so the next Feb 29 is 8 years away, beyond
        // the search horizon.
        let s = parse_schedule("0 0 29 2 *").unwrap();
        assert_eq!(s.next_after(ts("2096-03-01T00:00:00Z"), &utc()), None);
        assert_eq!(s.upcoming(ts("2096-03-01T00:00:00Z"), &utc(), 3), []);
    }

    #[test]
    fn next_is_strictly_after() {
        let s = parse_schedule("daily 00:30").unwrap();
        let at = ts("2026-01-02T00:30:00Z");
        assert_eq!(s.next_after(at, &utc()), Some(ts("2026-01-03T00:30:00Z")));
        assert_eq!(s.next_after(ts("2026-01-02T00:29:59.999Z"), &utc()), Some(at));
    }

    #[test]
    fn every_minute_is_cheap_enough() {
        let s = parse_schedule("* * * * *").unwrap();
        let got = s.upcoming(ts("2026-03-29T00:58:30Z"), &vienna(), 1000);
        assert_eq!(got.len(), 1000);
        assert_eq!(got[0], ts("2026-03-29T00:59:00Z"));
        assert_eq!(got[1], ts("2026-03-29T01:00:00Z"));
        assert!(got.windows(2).all(|w| w[1].as_second() - w[0].as_second() == 60));
    }

    #[test]
    fn serde_uses_the_text() {
        let s: Schedule = serde_json::from_str("\"Mon..Fri 02:00 UTC\"").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"Mon..Fri 02:00 UTC\"");
        let e = serde_json::from_str::<Schedule>("\"25:00\"").unwrap_err();
        assert!(e.to_string().contains("hours go from 00 to 23"), "{e}");
    }
}
