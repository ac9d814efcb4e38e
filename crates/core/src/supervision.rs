//! The rules both supervision engines share — the built-in supervisor's state machine
//! (`supervisor::machine`) and the compose watcher (`compose::watch`) — so a crash loop and a
//! health verdict mean the same whichever runtime the app uses (docs/supervisor.md,
//! docs/compose.md). Pure: times are arguments.

use crate::config::CrashLoop;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often a service that is still starting is probed, at most: readiness should be noticed
/// quickly even when the configured interval (for a running service) is long.
pub const STARTING_PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A service's health check settings, as the decisions need them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthSpec {
    pub interval: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// The crashes of one service within its crash-loop window: more than `crash_loop.restarts`
/// within `crash_loop.within` is a crash loop.
#[derive(Clone, Debug, Default)]
pub struct CrashWindow {
    crashes: VecDeque<Instant>,
}

impl CrashWindow {
    /// Counts a crash at `now` (`why`: what ended it). `Some(reason)` when it makes a crash
    /// loop: the service is to fail instead of being restarted.
    pub fn crashed(&mut self, now: Instant, limit: CrashLoop, why: &str) -> Option<String> {
        self.crashes.push_back(now);
        while self.crashes.front().is_some_and(|t| now.saturating_duration_since(*t) > limit.within) {
            self.crashes.pop_front();
        }
        (self.crashes.len() as u32 > limit.restarts).then(|| {
            format!("crash loop: {} crashes within {}s, last: {why}", self.crashes.len(), limit.within.as_secs_f64())
        })
    }

    /// Forgets the crashes (an operator's `up`, `restart`, a changed definition).
    pub fn clear(&mut self) {
        self.crashes.clear();
    }
}

/// What a probe's result means for the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passed: the service is healthy; probe again after `next`.
    Healthy { next: Duration },
    /// Failed, but inside the start period of a starting service: not counted.
    NotCounted { next: Duration },
    /// Failed and counted, fewer than `retries` in a row so far.
    Failed { next: Duration },
    /// `retries` failures in a row: restart the service, counted as a crash (`why`).
    Unhealthy { why: String },
}

/// Failed health checks in a row of one service.
#[derive(Clone, Debug, Default)]
pub struct HealthGate {
    failures: u32,
}

impl HealthGate {
    /// Judges one probe: `ok` and its `detail`, whether the service is still starting (not yet
    /// healthy) and since when it runs. A starting service is probed at most every
    /// [`STARTING_PROBE_INTERVAL`]; its failures inside `start_period` do not count.
    pub fn probed(
        &mut self,
        now: Instant,
        spec: HealthSpec,
        ok: bool,
        detail: &str,
        starting: bool,
        running_since: Option<Instant>,
    ) -> Verdict {
        let every = if starting { spec.interval.min(STARTING_PROBE_INTERVAL) } else { spec.interval };
        if ok {
            self.failures = 0;
            return Verdict::Healthy { next: spec.interval };
        }
        if starting && running_since.is_some_and(|t| now < t + spec.start_period) {
            return Verdict::NotCounted { next: every };
        }
        self.failures += 1;
        if self.failures >= spec.retries {
            let why = format!("unhealthy ({} failed checks in a row): {detail}", self.failures);
            self.failures = 0;
            return Verdict::Unhealthy { why };
        }
        Verdict::Failed { next: every }
    }

    /// Starts counting anew (the service was (re)started).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_crashes_than_allowed_within_the_window_are_a_crash_loop() {
        let t0 = Instant::now();
        let limit = CrashLoop { restarts: 2, within: Duration::from_secs(60) };
        let mut w = CrashWindow::default();
        assert_eq!(w.crashed(t0, limit, "exit 1"), None);
        assert_eq!(w.crashed(t0 + Duration::from_secs(10), limit, "exit 1"), None);
        let r = w.crashed(t0 + Duration::from_secs(20), limit, "exit 2").unwrap();
        assert_eq!(r, "crash loop: 3 crashes within 60s, last: exit 2");
        // Spread over more than the window: not a loop.
        let mut w = CrashWindow::default();
        for i in 0..10 {
            assert_eq!(w.crashed(t0 + Duration::from_secs(61 * i), limit, "x"), None);
        }
        w.clear();
        assert_eq!(w.crashed(t0, limit, "x"), None);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_and_retries_in_a_row_make_unhealthy() {
        let t0 = Instant::now();
        let spec = HealthSpec { interval: Duration::from_secs(5), retries: 2, start_period: Duration::from_secs(10) };
        let mut g = HealthGate::default();
        let fast = Verdict::NotCounted { next: STARTING_PROBE_INTERVAL };
        assert_eq!(g.probed(t0 + Duration::from_secs(1), spec, false, "refused", true, Some(t0)), fast);
        assert_eq!(
            g.probed(t0 + Duration::from_secs(11), spec, false, "refused", true, Some(t0)),
            Verdict::Failed { next: STARTING_PROBE_INTERVAL }
        );
        assert_eq!(
            g.probed(t0 + Duration::from_secs(12), spec, true, "", true, Some(t0)),
            Verdict::Healthy { next: spec.interval }
        );
        // Running: one failure is counted, a pass resets, two in a row are unhealthy.
        assert_eq!(g.probed(t0, spec, false, "500", false, Some(t0)), Verdict::Failed { next: spec.interval });
        assert_eq!(
            g.probed(t0, spec, false, "500", false, Some(t0)).clone(),
            Verdict::Unhealthy { why: "unhealthy (2 failed checks in a row): 500".into() }
        );
        assert_eq!(g.probed(t0, spec, false, "500", false, Some(t0)), Verdict::Failed { next: spec.interval });
    }
}
