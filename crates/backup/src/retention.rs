//! Which snapshots to keep: restic's `forget --keep-*` semantics as a pure function.
//!
//! Architecture invariant: the newest snapshot that passed its checks (complete, verified) is
//! never selected for removal, whatever the policy says. A policy that keeps nothing at all
//! (no `keep` rule set) removes nothing.

use caretaker_core::config::Keep;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use std::collections::HashSet;

#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: String,
    pub time: Timestamp,
    /// Complete and verified: no read errors, no failed stream, stored sizes checked.
    pub complete: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub id: String,
    pub keep: bool,
    /// Why it is kept ("last", "daily", "within", "newest-complete", "no-policy"); empty = removed.
    pub reasons: Vec<&'static str>,
}

/// Decides for every candidate whether it stays. Returned newest first.
pub fn select(candidates: &[Candidate], keep: &Keep, now: Timestamp, tz: &TimeZone) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    let mut decisions: Vec<Decision> =
        sorted.iter().map(|c| Decision { id: c.id.clone(), keep: false, reasons: Vec::new() }).collect();

    let no_policy = keep == &Keep::default();
    if no_policy {
        for d in &mut decisions {
            d.keep = true;
            d.reasons.push("no-policy");
        }
        return decisions;
    }

    if let Some(n) = keep.last {
        for d in decisions.iter_mut().take(n as usize) {
            d.reasons.push("last");
        }
    }

    type BucketFn = fn(&jiff::Zoned) -> (i64, i64);
    let buckets: [(&'static str, Option<u32>, BucketFn); 5] = [
        ("hourly", keep.hourly, |z| (i64::from(z.year()) * 10_000 + i64::from(z.day_of_year()), i64::from(z.hour()))),
        ("daily", keep.daily, |z| (i64::from(z.year()), i64::from(z.day_of_year()))),
        ("weekly", keep.weekly, |z| {
            let w = z.date().iso_week_date();
            (i64::from(w.year()), i64::from(w.week()))
        }),
        ("monthly", keep.monthly, |z| (i64::from(z.year()), i64::from(z.month()))),
        ("yearly", keep.yearly, |z| (i64::from(z.year()), 0)),
    ];
    for (reason, count, bucket) in buckets {
        let Some(count) = count else { continue };
        let mut seen = HashSet::new();
        for (i, c) in sorted.iter().enumerate() {
            if seen.len() >= count as usize {
                break;
            }
            let b = bucket(&c.time.to_zoned(tz.clone()));
            if seen.insert(b) {
                decisions[i].reasons.push(reason);
            }
        }
    }

    if let Some(within) = keep.within {
        let within = i64::try_from(within.as_secs()).unwrap_or(i64::MAX);
        if let Ok(cutoff) = now.checked_sub(within.seconds()) {
            for (i, c) in sorted.iter().enumerate() {
                if c.time >= cutoff {
                    decisions[i].reasons.push("within");
                }
            }
        }
    }

    if let Some(i) = sorted.iter().position(|c| c.complete) {
        decisions[i].reasons.push("newest-complete");
    }

    for d in &mut decisions {
        d.keep = !d.reasons.is_empty();
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cand(id: &str, time: &str, complete: bool) -> Candidate {
        Candidate { id: id.into(), time: at(time), complete }
    }

    fn kept(ds: &[Decision]) -> Vec<&str> {
        ds.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect()
    }

    fn run(cands: &[Candidate], keep: Keep) -> Vec<Decision> {
        select(cands, &keep, at("2025-03-10T12:00:00Z"), &TimeZone::UTC)
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let c = [
            cand("a", "2025-03-01T00:00:00Z", true),
            cand("b", "2025-03-02T00:00:00Z", true),
            cand("c", "2025-03-03T00:00:00Z", true),
        ];
        assert_eq!(kept(&run(&c, Keep { last: Some(2), ..Keep::default() })), ["c", "b"]);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let c = [
            cand("d1-early", "2025-03-01T01:00:00Z", true),
            cand("d1-late", "2025-03-01T23:00:00Z", true),
            cand("d2", "2025-03-02T05:00:00Z", true),
            cand("d3", "2025-03-03T05:00:00Z", true),
        ];
        assert_eq!(kept(&run(&c, Keep { daily: Some(2), ..Keep::default() })), ["d3", "d2"]);
        assert_eq!(kept(&run(&c, Keep { daily: Some(7), ..Keep::default() })), ["d3", "d2", "d1-late"]);
    }

    #[test]
    fn weekly_monthly_yearly_buckets() {
        let c = [
            cand("2023", "2023-06-01T00:00:00Z", true),
            cand("2024-jan", "2024-01-15T00:00:00Z", true),
            cand("2024-feb-a", "2024-02-05T00:00:00Z", true),
            cand("2024-feb-b", "2024-02-06T00:00:00Z", true),
        ];
        assert_eq!(kept(&run(&c, Keep { monthly: Some(2), ..Keep::default() })), ["2024-feb-b", "2024-jan"]);
        assert_eq!(kept(&run(&c, Keep { yearly: Some(5), ..Keep::default() })), ["2024-feb-b", "2023"]);
        // 5 and 6 February 2024 are Monday and Tuesday of the same ISO week.
        assert_eq!(kept(&run(&c, Keep { weekly: Some(2), ..Keep::default() })), ["2024-feb-b", "2024-jan"]);
    }

    #[test]
    fn within_keeps_everything_recent() {
        let c = [cand("old", "2025-03-01T00:00:00Z", true), cand("new", "2025-03-09T13:00:00Z", true)];
        let keep = Keep { within: Some(Duration::from_secs(2 * 86400)), ..Keep::default() };
        assert_eq!(kept(&run(&c, keep)), ["new"]);
    }

    #[test]
    fn newest_complete_snapshot_is_never_removed() {
        // The two newest are partial: keep-last 1 alone would drop the last good one.
        let c = [
            cand("good", "2025-03-01T00:00:00Z", true),
            cand("partial1", "2025-03-02T00:00:00Z", false),
            cand("partial2", "2025-03-03T00:00:00Z", false),
        ];
        let ds = run(&c, Keep { last: Some(1), ..Keep::default() });
        assert_eq!(kept(&ds), ["partial2", "good"]);
        assert_eq!(ds.iter().find(|d| d.id == "good").unwrap().reasons, ["newest-complete"]);
    }

    #[test]
    fn no_policy_removes_nothing() {
        let c = [cand("a", "2025-03-01T00:00:00Z", true), cand("b", "2025-03-02T00:00:00Z", true)];
        assert_eq!(kept(&run(&c, Keep::default())), ["b", "a"]);
    }

    #[test]
    fn empty_repository() {
        assert!(run(&[], Keep { last: Some(1), ..Keep::default() }).is_empty());
    }
}
