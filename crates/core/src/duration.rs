//! Durations as operators write them in the config: `90s`, `15m`, `32h`, `3d`, `1h30m`.
//!
//! This module owns the text form of durations (parsing and the compact inverse used in
//! output), not any arithmetic with clocks. Values are plain [`std::time::Duration`]s, so
//! the rest of caretaker needs no wrapper type.
//!
//! Units: `ns`, `us`, `ms`, `s`, `m`, `h`, `d`, `w` plus long forms (`sec`, `mins`, `hours`,
//! `days`, ...). A day is always 24 hours and a week 7 days: these are lengths, not calendar
//! steps (calendar rules belong to [`crate::schedule`]). Units are case-sensitive on
//! purpose, so `1M` (a month? a minute?) is an error instead of a guess.

use std::fmt;
use std::time::Duration;

/// What is wrong with a duration text, worded for an operator reading a config error.
///
/// `message` says what is wrong (quoting the input), `hint` what to write instead; the
/// config validator puts them into its diagnostic's message and hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same shape as `config::Diagnostic`, so both read alike when shown standalone.
        write!(f, "{} (hint: {})", self.message, self.hint)
    }
}

impl std::error::Error for DurationError {}

const UNITS_HINT: &str = "units are ms, s, m, h, d, w (long forms like `min`, `hours`, `days` \
                          work too), e.g. `90s`, `15m`, `1h30m`, `3d`";

/// The longest duration accepted: 100 years (of 365 days). Every duration in the config is
/// added to clocks and deadlines at run time; this bound keeps each such sum far from any
/// overflow (`Instant`, `SystemTime`, jiff timestamps up to year 9999), while no real setting
/// comes near it.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

fn err(message: String, hint: impl Into<String>) -> DurationError {
    DurationError { message, hint: hint.into() }
}

/// Nanoseconds per unit; `None` for an unknown unit.
fn unit_nanos(unit: &str) -> Option<u128> {
    const S: u128 = 1_000_000_000;
    Some(match unit {
        "ns" | "nsec" | "nsecs" | "nanosecond" | "nanoseconds" => 1,
        "us" | "µs" | "usec" | "usecs" | "microsecond" | "microseconds" => 1_000,
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => S,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * S,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600 * S,
        "d" | "day" | "days" => 86_400 * S,
        "w" | "week" | "weeks" => 7 * 86_400 * S,
        _ => return None,
    })
}

/// Parses an operator-style duration such as `90s`, `1h30m`, `1h 30m` or `500ms`.
///
/// Parts are summed, so any order is accepted; every number needs a unit, because a bare
/// `30` is the classic config bug (seconds? minutes?).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let text = s.trim();
    if text.is_empty() {
        return Err(err("empty duration".into(), "write a number with a unit, e.g. `30s`, `15m`, `32h` or `1h30m`"));
    }
    if let Some(rest) = text.strip_prefix('-') {
        return Err(err(
            format!("duration \"{text}\" is negative"),
            format!("durations cannot be negative; write `{}`", rest.trim()),
        ));
    }
    let too_long = || err(format!("duration \"{text}\" is too long"), "durations can be at most 100 years (`36500d`)");

    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            let word = first_word(rest);
            return Err(err(format!("expected a number in duration \"{text}\", got \"{word}\""), UNITS_HINT));
        }
        let (number, after) = rest.split_at(digits);
        if after.starts_with(['.', ',']) {
            return Err(err(
                format!("duration \"{text}\" has a fraction"),
                "fractions are not supported; combine units instead, e.g. `1h30m` for 1.5 hours",
            ));
        }
        let after = after.trim_start();
        let unit_len = after.len() - after.trim_start_matches(char::is_alphabetic).len();
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            let before = &text[..text.len() - rest.len()];
            return Err(err(
                format!("duration \"{text}\" has a number without a unit"),
                format!("add a unit, e.g. `{before}{number}s` or `{before}{number}m`"),
            ));
        }
        let Some(per_unit) = unit_nanos(unit) else {
            return Err(err(format!("unknown unit \"{unit}\" in duration \"{text}\""), UNITS_HINT));
        };
        // u128 holds any u64-seconds duration many times over; overflow is checked anyway
        // because the number itself can be arbitrarily long.
        let n: u128 = number.parse().map_err(|_| too_long())?;
        total = n.checked_mul(per_unit).and_then(|v| total.checked_add(v)).ok_or_else(too_long)?;
        rest = after.trim_start();
    }

    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_long())?;
    let d = Duration::new(secs, (total % 1_000_000_000) as u32);
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or(s)
}

/// Formats a duration compactly, the inverse of [`parse_duration`]: `1h30m`, `3d`, `0s`,
/// `250ms`.
///
/// Weeks are used only for whole weeks (`2w`, but `10d` rather than `1w3d`), because
/// operators count in days. The output always parses back to the same value.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let mut out = String::new();
    let mut secs = d.as_secs();
    let days = secs / 86_400;
    secs %= 86_400;
    if days > 0 {
        if days.is_multiple_of(7) {
            out.push_str(&format!("{}w", days / 7));
        } else {
            out.push_str(&format!("{days}d"));
        }
    }
    let nanos = d.subsec_nanos();
    for (value, unit) in [
        (secs / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1;
    const M: u64 = 60;
    const H: u64 = 3600;
    const D: u64 = 86_400;

    #[test]
    fn parses_accepted_forms() {
        let cases: &[(&str, Duration)] = &[
            ("0s", Duration::ZERO),
            ("90s", Duration::from_secs(90 * S)),
            ("15m", Duration::from_secs(15 * M)),
            ("32h", Duration::from_secs(32 * H)),
            ("3d", Duration::from_secs(3 * D)),
            ("2w", Duration::from_secs(14 * D)),
            ("1h30m", Duration::from_secs(H + 30 * M)),
            ("1d12h", Duration::from_secs(D + 12 * H)),
            ("500ms", Duration::from_millis(500)),
            ("1h 30m", Duration::from_secs(H + 30 * M)),
            ("  1h30m  ", Duration::from_secs(H + 30 * M)),
            ("1 hour 30 minutes", Duration::from_secs(H + 30 * M)),
            ("10 sec", Duration::from_secs(10)),
            ("10secs", Duration::from_secs(10)),
            ("1second", Duration::from_secs(1)),
            ("2 seconds", Duration::from_secs(2)),
            ("5min", Duration::from_secs(5 * M)),
            ("5mins", Duration::from_secs(5 * M)),
            ("1minute", Duration::from_secs(M)),
            ("3 minutes", Duration::from_secs(3 * M)),
            ("1hour", Duration::from_secs(H)),
            ("2hours", Duration::from_secs(2 * H)),
            ("1day", Duration::from_secs(D)),
            ("7days", Duration::from_secs(7 * D)),
            ("1week", Duration::from_secs(7 * D)),
            ("2weeks", Duration::from_secs(14 * D)),
            ("1s500ms", Duration::from_millis(1500)),
            ("250us", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            ("30m1h", Duration::from_secs(H + 30 * M)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).as_ref(), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn rejects_bad_input_with_hints() {
        let cases: &[(&str, &str)] = &[
            (
                "",
                "empty duration (hint: write a number with a unit, e.g. `30s`, `15m`, `32h` or `1h30m`)",
            ),
            ("   ", "empty duration (hint: write a number with a unit, e.g. `30s`, `15m`, `32h` or `1h30m`)"),
            (
                "30",
                "duration \"30\" has a number without a unit (hint: add a unit, e.g. `30s` or `30m`)",
            ),
            (
                "1h30",
                "duration \"1h30\" has a number without a unit (hint: add a unit, e.g. `1h30s` or `1h30m`)",
            ),
            (
                "-5m",
                "duration \"-5m\" is negative (hint: durations cannot be negative; write `5m`)",
            ),
            (
                "5x",
                "unknown unit \"x\" in duration \"5x\" (hint: units are ms, s, m, h, d, w (long forms like `min`, `hours`, `days` work too), e.g. `90s`, `15m`, `1h30m`, `3d`)",
            ),
            (
                "1M",
                "unknown unit \"M\" in duration \"1M\" (hint: units are ms, s, m, h, d, w (long forms like `min`, `hours`, `days` work too), e.g. `90s`, `15m`, `1h30m`, `3d`)",
            ),
            (
                "h",
                "expected a number in duration \"h\", got \"h\" (hint: units are ms, s, m, h, d, w (long forms like `min`, `hours`, `days` work too), e.g. `90s`, `15m`, `1h30m`, `3d`)",
            ),
            (
                "1.5h",
                "duration \"1.5h\" has a fraction (hint: fractions are not supported; combine units instead, e.g. `1h30m` for 1.5 hours)",
            ),
            (
                "99999999999999999999999999999999999999999w",
                "duration \"99999999999999999999999999999999999999999w\" is too long (hint: durations can be at most 100 years (`36500d`))",
            ),
            (
                "40000000000000w",
                "duration \"40000000000000w\" is too long (hint: durations can be at most 100 years (`36500d`))",
            ),
            (
                "18446744073709551615s",
                "duration \"18446744073709551615s\" is too long (hint: durations can be at most 100 years (`36500d`))",
            ),
            (
                "36501d",
                "duration \"36501d\" is too long (hint: durations can be at most 100 years (`36500d`))",
            ),
        ];
        for (text, want) in cases {
            let got = parse_duration(text).expect_err(text).to_string();
            assert_eq!(&got, want, "{text:?}");
        }
    }

    #[test]
    fn formats_compactly_and_round_trips() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(15 * M), "15m"),
            (Duration::from_secs(32 * H), "1d8h"),
            (Duration::from_secs(3 * D), "3d"),
            (Duration::from_secs(7 * D), "1w"),
            (Duration::from_secs(14 * D), "2w"),
            (Duration::from_secs(10 * D), "10d"),
            (Duration::from_secs(H + 30 * M), "1h30m"),
            (Duration::from_secs(D + 12 * H), "1d12h"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_nanos(1_001), "1us1ns"),
        ];
        for (d, want) in cases {
            let text = format_duration(*d);
            assert_eq!(&text, want);
            assert_eq!(parse_duration(&text), Ok(*d), "round trip of {text}");
        }
        assert_eq!(parse_duration(&format_duration(MAX_DURATION)), Ok(MAX_DURATION));
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
    }
}
