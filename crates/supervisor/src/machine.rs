//! Supervision decisions: one state machine per service, and the app-level [`Supervisor`] that
//! starts services in dependency order and stops them in reverse.
//!
//! Everything here is pure: `on_event(now, event)` returns the [`Action`]s the daemon must
//! carry out, and [`Supervisor::next_deadline`] says when to call back with [`Event::Tick`].
//! Time is whatever `Instant` the caller passes, so tests drive a fake clock.
//!
//! A service's life:
//!
//! ```text
//!   Stopped --Up--> Starting --healthy (no check: up for `start_seconds`)--> Running
//!      ^               |  \______________________________/  |
//!      |            exits / unhealthy `retries` times in a row
//!      |               v                                    v
//!      |            Backoff --delay (initial·2^n, ≤ max)--> Starting ...
//!      |               |
//!      |      more than `crash_loop.restarts` crashes within `crash_loop.within`,
//!      |      or a start that cannot work (`CannotStart`: no working directory, ...)
//!      |               v
//!      |             Failed  (app enters service mode; `up`/`restart` starts it again)
//!      |
//!   Stopping <--Down-- Starting/Running    (SIGTERM to the group; SIGKILL after stop_timeout)
//! ```
//!
//! A service without a health check counts as started only once it has stayed up for
//! `start_seconds` (supervisord's `startsecs`): one that exits at once is a crash, never
//! "running" for a moment.

use caretaker_core::config::{Backoff, CrashLoop, RestartPolicy, Service};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

// The crash window and the health gate are the rules the compose watcher shares.
use caretaker_core::supervision::{CrashWindow, HealthGate, Verdict};
pub use caretaker_core::supervision::{HealthSpec, STARTING_PROBE_INTERVAL};

/// The part of a service's config the decisions depend on.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub name: String,
    pub after: Vec<String>,
    pub restart: RestartPolicy,
    pub backoff: Backoff,
    pub crash_loop: CrashLoop,
    pub stop_timeout: Duration,
    pub health: Option<HealthSpec>,
    /// Without a health check: how long the process must stay up to count as running.
    pub start_seconds: Duration,
}

impl ServiceSpec {
    pub fn from_config(s: &Service) -> Self {
        ServiceSpec {
            name: s.name.clone(),
            after: s.after.clone(),
            restart: s.restart,
            backoff: s.backoff,
            crash_loop: s.crash_loop,
            stop_timeout: s.stop_timeout,
            health: s.health.as_ref().map(|h| HealthSpec {
                interval: h.interval,
                retries: h.retries,
                start_period: h.start_period,
            }),
            start_seconds: s.start_seconds,
        }
    }
}

/// Where a service is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Stopped,
    /// Spawned; waiting for its health check to pass.
    Starting,
    /// Running (and healthy, when it has a check).
    Running,
    /// Asked to stop; waiting for the process group to go.
    Stopping,
    /// Exited unexpectedly; waiting out the restart delay.
    Backoff,
    /// Crash loop: given up until an operator runs `up` or `restart`.
    Failed,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Stopped => "stopped",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Backoff => "backoff",
            Phase::Failed => "failed",
        })
    }
}

/// The result of a health check so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The service has no health check.
    None,
    Unknown,
    Healthy,
    Unhealthy,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What happened to a service (or what an operator asked of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Operator: start it (clears `failed`).
    Up,
    /// Operator: stop it.
    Down,
    /// Operator: stop it (if running) and start it again.
    Restart,
    /// The daemon carried out [`Action::Spawn`].
    Spawned {
        pid: u32,
    },
    SpawnFailed {
        error: String,
    },
    /// The daemon found that the start cannot work however often it is tried (missing working
    /// directory or program, unknown user): fail at once, no backoff, no crash loop.
    CannotStart {
        error: String,
    },
    /// The process group leader ended.
    Exited(Exit),
    /// A health probe finished.
    Probed {
        ok: bool,
        detail: String,
    },
    /// Time passed; deadlines may be due.
    Tick,
}

/// What the daemon must do for a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the process in a new process group; answer with `Spawned` or `SpawnFailed`.
    Spawn,
    /// SIGTERM to the process group.
    Terminate,
    /// SIGKILL to the process group (stop timeout reached, or leftovers after the leader
    /// exited: a service's grandchildren never outlive it).
    Kill,
    /// Run the health probe; answer with `Probed`.
    Probe,
    /// The service crash-looped: record an event, enter service mode.
    Failed { reason: String },
}

/// What to do once a stopping service is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AfterStop {
    Stay,
    Restart,
    /// Stopped because it was unhealthy: counts as a crash.
    Crashed(String),
}

/// One service's state machine.
#[derive(Clone, Debug)]
pub struct ServiceMachine {
    spec: ServiceSpec,
    phase: Phase,
    pid: Option<u32>,
    started_at: Option<Instant>,
    /// Automatic restarts since the daemon started.
    restarts: u32,
    /// Recent crashes, for crash-loop detection.
    crashes: CrashWindow,
    backoff_step: u32,
    /// Backoff end, the moment a stopping service gets SIGKILL, or the moment a starting
    /// service without a health check has been up for `start_seconds`.
    deadline: Option<Instant>,
    after_stop: AfterStop,
    health: Health,
    gate: HealthGate,
    next_probe: Option<Instant>,
    probing: bool,
    last_exit: Option<Exit>,
    /// Why the service is not (yet) fine: last probe failure, exit, spawn error.
    reason: Option<String>,
    /// Incremented at every spawn; the daemon tags exit and probe reports with it so that a
    /// report about an earlier process is not mistaken for one about the current.
    generation: u64,
}

impl ServiceMachine {
    pub fn new(spec: ServiceSpec) -> Self {
        let health = if spec.health.is_some() { Health::Unknown } else { Health::None };
        ServiceMachine {
            spec,
            phase: Phase::Stopped,
            pid: None,
            started_at: None,
            restarts: 0,
            crashes: CrashWindow::default(),
            backoff_step: 0,
            deadline: None,
            after_stop: AfterStop::Stay,
            health,
            gate: HealthGate::default(),
            next_probe: None,
            probing: false,
            last_exit: None,
            reason: None,
            generation: 0,
        }
    }

    pub fn spec(&self) -> &ServiceSpec {
        &self.spec
    }
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    pub fn phase(&self) -> Phase {
        self.phase
    }
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
    pub fn health(&self) -> Health {
        self.health
    }
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
    pub fn last_exit(&self) -> Option<Exit> {
        self.last_exit
    }
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    pub fn generation(&self) -> u64 {
        self.generation
    }
    pub fn started_at(&self) -> Option<Instant> {
        self.started_at
    }

    /// Running and healthy (or without a check): dependants may start.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Running
    }

    /// No process of this service exists (or will without an operator).
    pub fn is_down(&self) -> bool {
        matches!(self.phase, Phase::Stopped | Phase::Failed | Phase::Backoff)
    }

    /// When the daemon should send [`Event::Tick`] next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let probe = match self.phase {
            Phase::Starting | Phase::Running if !self.probing => self.next_probe,
            _ => None,
        };
        match (self.deadline, probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn on_event(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Up => match self.phase {
                Phase::Stopped | Phase::Failed => {
                    if self.phase == Phase::Failed {
                        self.crashes.clear();
                        self.backoff_step = 0;
                    }
                    self.spawn(&mut out)
                }
                Phase::Stopping => self.after_stop = AfterStop::Restart,
                Phase::Backoff | Phase::Starting | Phase::Running => {}
            },
            Event::Down => match self.phase {
                Phase::Starting | Phase::Running => self.begin_stop(now, AfterStop::Stay, &mut out),
                Phase::Backoff => {
                    self.phase = Phase::Stopped;
                    self.deadline = None;
                }
                Phase::Stopping => self.after_stop = AfterStop::Stay,
                Phase::Stopped | Phase::Failed => {}
            },
            Event::Restart => match self.phase {
                Phase::Starting | Phase::Running => self.begin_stop(now, AfterStop::Restart, &mut out),
                Phase::Stopping => self.after_stop = AfterStop::Restart,
                Phase::Stopped | Phase::Failed | Phase::Backoff => {
                    self.crashes.clear();
                    self.backoff_step = 0;
                    self.spawn(&mut out)
                }
            },
            Event::Spawned { pid } => {
                self.pid = Some(pid);
                self.started_at = Some(now);
                self.gate.reset();
                self.probing = false;
                match self.spec.health {
                    Some(_) => {
                        self.phase = Phase::Starting;
                        self.health = Health::Unknown;
                        self.next_probe = Some(now);
                    }
                    None if self.spec.start_seconds.is_zero() => {
                        self.phase = Phase::Running;
                        self.next_probe = None;
                    }
                    None => {
                        // Running once it has stayed up for `start_seconds`.
                        self.phase = Phase::Starting;
                        self.next_probe = None;
                        self.deadline = Some(now + self.spec.start_seconds);
                    }
                }
            }
            Event::SpawnFailed { error } => {
                self.pid = None;
                self.started_at = None;
                self.crashed(now, format!("cannot start: {error}"), &mut out);
            }
            Event::CannotStart { error } => {
                if self.phase != Phase::Starting || self.pid.is_some() {
                    return out;
                }
                self.started_at = None;
                self.phase = Phase::Failed;
                self.deadline = None;
                self.next_probe = None;
                let reason = format!("cannot start: {error}");
                self.reason = Some(reason.clone());
                out.push(Action::Failed { reason });
            }
            Event::Exited(exit) => self.exited(now, exit, &mut out),
            Event::Probed { ok, detail } => self.probed(now, ok, detail, &mut out),
            Event::Tick => self.tick(now, &mut out),
        }
        out
    }

    fn spawn(&mut self, out: &mut Vec<Action>) {
        self.generation += 1;
        self.phase = Phase::Starting;
        self.deadline = None;
        self.after_stop = AfterStop::Stay;
        self.reason = None;
        self.pid = None;
        self.health = if self.spec.health.is_some() { Health::Unknown } else { Health::None };
        out.push(Action::Spawn);
    }

    fn begin_stop(&mut self, now: Instant, after: AfterStop, out: &mut Vec<Action>) {
        self.phase = Phase::Stopping;
        self.deadline = Some(now + self.spec.stop_timeout);
        self.after_stop = after;
        self.next_probe = None;
        out.push(Action::Terminate);
    }

    fn exited(&mut self, now: Instant, exit: Exit, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Starting | Phase::Running | Phase::Stopping) {
            return;
        }
        // Whatever the leader left behind in its group goes with it.
        out.push(Action::Kill);
        self.last_exit = Some(exit);
        self.pid = None;
        self.next_probe = None;
        self.probing = false;
        let ran = self.started_at.map(|t| now.saturating_duration_since(t)).unwrap_or_default();
        if ran >= self.spec.crash_loop.within {
            // It ran long enough to count as healthy: the next crash starts over.
            self.backoff_step = 0;
        }
        let early = self.phase == Phase::Starting && self.spec.health.is_none();
        if early {
            // Died before `start_seconds` were up: the start failed.
            self.deadline = None;
        }
        if self.phase == Phase::Stopping {
            self.deadline = None;
            match std::mem::replace(&mut self.after_stop, AfterStop::Stay) {
                AfterStop::Stay => {
                    self.phase = Phase::Stopped;
                    self.started_at = None;
                }
                AfterStop::Restart => self.spawn(out),
                AfterStop::Crashed(why) => self.crashed(now, why, out),
            }
            return;
        }
        self.started_at = None;
        let restart = match self.spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !exit.success(),
            RestartPolicy::Never => false,
        };
        let why = if early {
            format!("{exit} before it had run for {}s", self.spec.start_seconds.as_secs_f64())
        } else {
            format!("{exit}")
        };
        if restart {
            self.crashed(now, why, out);
        } else {
            self.phase = Phase::Stopped;
            self.reason = Some(why);
        }
    }

    /// The service ended when it should not have: back off and restart, or give up.
    fn crashed(&mut self, now: Instant, why: String, out: &mut Vec<Action>) {
        if let Some(reason) = self.crashes.crashed(now, self.spec.crash_loop, &why) {
            self.phase = Phase::Failed;
            self.deadline = None;
            self.reason = Some(reason.clone());
            out.push(Action::Failed { reason });
            return;
        }
        let factor = 1u32.checked_shl(self.backoff_step.min(31)).unwrap_or(u32::MAX);
        let delay = self.spec.backoff.initial.saturating_mul(factor).min(self.spec.backoff.max);
        self.backoff_step += 1;
        self.phase = Phase::Backoff;
        self.deadline = Some(now + delay);
        self.reason = Some(why);
    }

    fn probed(&mut self, now: Instant, ok: bool, detail: String, out: &mut Vec<Action>) {
        self.probing = false;
        let Some(h) = self.spec.health else { return };
        if !matches!(self.phase, Phase::Starting | Phase::Running) {
            return;
        }
        let starting = self.phase == Phase::Starting;
        match self.gate.probed(now, h, ok, &detail, starting, self.started_at) {
            Verdict::Healthy { next } => {
                self.health = Health::Healthy;
                self.phase = Phase::Running;
                self.reason = None;
                self.next_probe = Some(now + next);
            }
            // Not counted: the service is still allowed to be getting ready.
            Verdict::NotCounted { next } | Verdict::Failed { next } => {
                self.reason = Some(format!("health check failed: {detail}"));
                self.next_probe = Some(now + next);
            }
            Verdict::Unhealthy { why } => {
                self.reason = Some(format!("health check failed: {detail}"));
                self.health = Health::Unhealthy;
                self.begin_stop(now, AfterStop::Crashed(why), out);
            }
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Backoff if self.deadline.is_some_and(|d| now >= d) => {
                self.restarts += 1;
                self.spawn(out);
            }
            Phase::Stopping if self.deadline.is_some_and(|d| now >= d) => {
                self.deadline = None;
                out.push(Action::Kill);
            }
            Phase::Starting if self.spec.health.is_none() && self.deadline.is_some_and(|d| now >= d) => {
                self.deadline = None;
                self.phase = Phase::Running;
                self.reason = None;
            }
            Phase::Starting | Phase::Running
                if !self.probing && self.next_probe.is_some_and(|t| now >= t) && self.pid.is_some() =>
            {
                self.probing = true;
                self.next_probe = None;
                out.push(Action::Probe);
            }
            _ => {}
        }
    }
}

/// What the app as a whole is asked to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Nothing asked yet (daemon just started), or a single-service command.
    Idle,
    Up,
    Down,
    /// Down, then up again (`restart` without a service).
    Restart,
}

/// App-level events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppEvent {
    /// Start every service in dependency order.
    Up,
    /// Stop every service in reverse dependency order.
    Down,
    /// Restart one service, or all of them (stop in reverse order, then start in order).
    Restart(Option<String>),
    /// Something happened to service number `.0`.
    Service(usize, Event),
}

/// All services of an app, started in dependency order and stopped in reverse.
#[derive(Clone, Debug)]
pub struct Supervisor {
    machines: Vec<ServiceMachine>,
    /// `deps[i]`: indices of the services that service `i` starts after.
    deps: Vec<Vec<usize>>,
    target: Target,
    pending_start: Vec<bool>,
    pending_stop: Vec<bool>,
}

impl Supervisor {
    /// `specs` must have distinct names and acyclic `after:` references (the config
    /// validation guarantees both); unknown names in `after:` are ignored.
    pub fn new(specs: Vec<ServiceSpec>) -> Self {
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let deps =
            specs.iter().map(|s| s.after.iter().filter_map(|a| names.iter().position(|n| n == a)).collect()).collect();
        let n = specs.len();
        Supervisor {
            machines: specs.into_iter().map(ServiceMachine::new).collect(),
            deps,
            target: Target::Idle,
            pending_start: vec![false; n],
            pending_stop: vec![false; n],
        }
    }

    pub fn services(&self) -> &[ServiceMachine] {
        &self.machines
    }

    /// Takes a new set of services (a live reload). A service named in both keeps its machine
    /// — phase, process, restart count — with the new spec, which its next start uses; a new
    /// name gets a stopped machine; a service not named any more is dropped (the caller stops
    /// its process). Returns, for each new index, the service's old index.
    pub fn reconfigure(&mut self, specs: Vec<ServiceSpec>) -> Vec<Option<usize>> {
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let old_index: Vec<Option<usize>> = names.iter().map(|n| self.index(n)).collect();
        let mut old: Vec<Option<ServiceMachine>> = std::mem::take(&mut self.machines).into_iter().map(Some).collect();
        let (mut start, mut stop) = (Vec::new(), Vec::new());
        for (spec, from) in specs.into_iter().zip(&old_index) {
            let kept = from.and_then(|i| old[i].take());
            start.push(from.is_some_and(|i| self.pending_start[i]));
            stop.push(from.is_some_and(|i| self.pending_stop[i]));
            self.machines.push(match kept {
                Some(mut m) => {
                    if m.spec.health.is_some() != spec.health.is_some() && m.phase != Phase::Running {
                        m.health = if spec.health.is_some() { Health::Unknown } else { Health::None };
                    }
                    m.spec = spec;
                    m
                }
                None => ServiceMachine::new(spec),
            });
        }
        self.deps = self
            .machines
            .iter()
            .map(|m| m.spec.after.iter().filter_map(|a| names.iter().position(|n| n == a)).collect())
            .collect();
        self.pending_start = start;
        self.pending_stop = stop;
        old_index
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.machines.iter().position(|m| m.name() == name)
    }

    /// Every service is up and ready, and nothing is waiting to start.
    pub fn all_ready(&self) -> bool {
        self.machines.iter().all(ServiceMachine::is_ready) && !self.pending_start.iter().any(|p| *p)
    }

    /// Service `i` is down but will be started (waiting for its dependencies, or for the
    /// others to stop during a full restart).
    pub fn is_waiting(&self, i: usize) -> bool {
        self.pending_start[i] || (self.target == Target::Restart && self.machines[i].is_down())
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.machines.iter().filter_map(ServiceMachine::next_deadline).min()
    }

    /// Feeds one event; returns the actions per service index.
    pub fn on_event(&mut self, now: Instant, event: AppEvent) -> Vec<(usize, Action)> {
        let mut out = Vec::new();
        match event {
            AppEvent::Up => {
                self.target = Target::Up;
                self.pending_stop.iter_mut().for_each(|p| *p = false);
                self.pending_start.iter_mut().for_each(|p| *p = true);
            }
            AppEvent::Down => {
                self.target = Target::Down;
                self.pending_start.iter_mut().for_each(|p| *p = false);
                self.pending_stop.iter_mut().for_each(|p| *p = true);
            }
            AppEvent::Restart(None) => {
                self.target = Target::Restart;
                self.pending_start.iter_mut().for_each(|p| *p = false);
                self.pending_stop.iter_mut().for_each(|p| *p = true);
            }
            AppEvent::Restart(Some(name)) => {
                if let Some(i) = self.index(&name) {
                    self.pending_stop[i] = false;
                    self.pending_start[i] = false;
                    let acts = self.machines[i].on_event(now, Event::Restart);
                    out.extend(acts.into_iter().map(|a| (i, a)));
                }
            }
            AppEvent::Service(i, ev) => {
                if let Some(m) = self.machines.get_mut(i) {
                    out.extend(m.on_event(now, ev).into_iter().map(|a| (i, a)));
                }
            }
        }
        self.advance(now, &mut out);
        out
    }

    /// Ticks every service whose deadline is due.
    pub fn tick(&mut self, now: Instant) -> Vec<(usize, Action)> {
        let mut out = Vec::new();
        for (i, m) in self.machines.iter_mut().enumerate() {
            if m.next_deadline().is_some_and(|d| d <= now) {
                out.extend(m.on_event(now, Event::Tick).into_iter().map(|a| (i, a)));
            }
        }
        self.advance(now, &mut out);
        out
    }

    /// Starts what may start (dependencies ready) and stops what may stop (dependants gone).
    fn advance(&mut self, now: Instant, out: &mut Vec<(usize, Action)>) {
        loop {
            let mut progressed = false;
            for i in (0..self.machines.len()).rev() {
                if !self.pending_stop[i] {
                    continue;
                }
                let dependants_down =
                    (0..self.machines.len()).filter(|j| self.deps[*j].contains(&i)).all(|j| self.machines[j].is_down());
                if dependants_down {
                    self.pending_stop[i] = false;
                    let acts = self.machines[i].on_event(now, Event::Down);
                    out.extend(acts.into_iter().map(|a| (i, a)));
                    progressed = true;
                }
            }
            if self.target == Target::Restart
                && !self.pending_stop.iter().any(|p| *p)
                && self.machines.iter().all(|m| m.is_down())
            {
                self.target = Target::Up;
                self.pending_start.iter_mut().for_each(|p| *p = true);
                progressed = true;
            }
            for i in 0..self.machines.len() {
                if !self.pending_start[i] {
                    continue;
                }
                if self.deps[i].iter().all(|d| self.machines[*d].is_ready()) {
                    self.pending_start[i] = false;
                    let acts = self.machines[i].on_event(now, Event::Up);
                    out.extend(acts.into_iter().map(|a| (i, a)));
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            after: vec![],
            restart: RestartPolicy::Always,
            backoff: Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(8) },
            crash_loop: CrashLoop { restarts: 3, within: Duration::from_secs(60) },
            stop_timeout: Duration::from_secs(10),
            health: None,
            start_seconds: Duration::ZERO,
        }
    }

    fn with_health(mut s: ServiceSpec) -> ServiceSpec {
        s.health =
            Some(HealthSpec { interval: Duration::from_secs(5), retries: 2, start_period: Duration::from_secs(10) });
        s
    }

    /// A fake clock: seconds after an arbitrary start.
    struct Clock(Instant);
    impl Clock {
        fn at(&self, secs: f64) -> Instant {
            self.0 + Duration::from_secs_f64(secs)
        }
    }

    #[test]
    fn crash_restarts_with_exponential_backoff_capped_at_max() {
        let c = Clock(Instant::now());
        let mut m = ServiceMachine::new(spec("web"));
        m.crashes.clear();
        m.spec.crash_loop.restarts = 100;
        assert_eq!(m.on_event(c.at(0.0), Event::Up), vec![Action::Spawn]);
        m.on_event(c.at(0.0), Event::Spawned { pid: 10 });
        assert_eq!(m.phase(), Phase::Running);
        let mut t = 0.0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            assert_eq!(m.on_event(c.at(t), Event::Exited(Exit::Code(1))), vec![Action::Kill]);
            assert_eq!(m.phase(), Phase::Backoff);
            let d = m.next_deadline().unwrap().duration_since(c.at(t)).as_secs_f64();
            delays.push(d);
            assert!(m.on_event(c.at(t + d - 0.1), Event::Tick).is_empty(), "no restart before the delay");
            t += d;
            assert_eq!(m.on_event(c.at(t), Event::Tick), vec![Action::Spawn]);
            m.on_event(c.at(t), Event::Spawned { pid: 11 });
        }
        assert_eq!(delays, vec![1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
        assert_eq!(m.restarts(), 6);
    }

    #[test]
    fn long_run_resets_backoff() {
        let c = Clock(Instant::now());
        let mut m = ServiceMachine::new(spec("web"));
        m.on_event(c.at(0.0), Event::Up);
        m.on_event(c.at(0.0), Event::Spawned { pid: 1 });
        m.on_event(c.at(1.0), Event::Exited(Exit::Code(1)));
        m.on_event(c.at(2.0), Event::Tick);
        m.on_event(c.at(2.0), Event::Spawned { pid: 2 });
        // Runs for longer than the crash-loop window: the next delay is the initial one.
        m.on_event(c.at(100.0), Event::Exited(Exit::Code(1)));
        assert_eq!(m.next_deadline(), Some(c.at(101.0)));
    }

    #[test]
    fn crash_loop_fails_the_service_after_the_allowed_restarts() {
        let c = Clock(Instant::now());
        let mut m = ServiceMachine::new(spec("worker"));
        m.on_event(c.at(0.0), Event::Up);
        let mut t = 0.0;
        for i in 0..3 {
            m.on_event(c.at(t), Event::Spawned { pid: 100 + i });
            m.on_event(c.at(t), Event::Exited(Exit::Signal(11)));
            t = m.next_deadline().unwrap().duration_since(c.at(0.0)).as_secs_f64();
            assert_eq!(m.on_event(c.at(t), Event::Tick), vec![Action::Spawn]);
        }
        m.on_event(c.at(t), Event::Spawned { pid: 200 });
        let acts = m.on_event(c.at(t), Event::Exited(Exit::Code(2)));
        assert_eq!(m.phase(), Phase::Failed);
        assert!(
            matches!(&acts[..], [Action::Kill, Action::Failed { reason }] if reason.contains("crash loop: 4 crashes"))
        );
        assert_eq!(m.next_deadline(), None, "a failed service stays down");
        // The operator's `up` clears it.
        assert_eq!(m.on_event(c.at(t + 1.0), Event::Up), vec![Action::Spawn]);
    }

    #[test]
    fn crashes_spread_over_more_than_the_window_are_not_a_loop() {
        let c = Clock(Instant::now());
        let mut m = ServiceMachine::new(spec("worker"));
        m.on_event(c.at(0.0), Event::Up);
        for i in 0..10 {
            let t = i as f64 * 30.0;
            m.on_event(c.at(t), Event::Spawned { pid: 1 });
            m.on_event(c.at(t + 20.0), Event::Exited(Exit::Code(1)));
            assert_eq!(m.phase(), Phase::Backoff, "crash {i}");
            m.on_event(c.at(t + 29.0), Event::Tick);
        }
    }

    #[test]
    fn restart_policies() {
        let c = Clock(Instant::now());
        for (policy, exit, restarts) in [
            (RestartPolicy::Always, Exit::Code(0), true),
            (RestartPolicy::OnFailure, Exit::Code(0), false),
            (RestartPolicy::OnFailure, Exit::Code(3), true),
            (RestartPolicy::OnFailure, Exit::Signal(9), true),
            (RestartPolicy::Never, Exit::Code(3), false),
        ] {
            let mut s = spec("job");
            s.restart = policy;
            let mut m = ServiceMachine::new(s);
            m.on_event(c.at(0.0), Event::Up);
            m.on_event(c.at(0.0), Event::Spawned { pid: 1 });
            m.on_event(c.at(1.0), Event::Exited(exit));
            let want = if restarts { Phase::Backoff } else { Phase::Stopped };
            assert_eq!(m.phase(), want, "{policy:?} {exit:?}");
        }
    }

    #[test]
    fn stop_sends_term_then_kill_after_the_timeout() {
        let c = Clock(Instant::now());
        let mut m = ServiceMachine::new(spec("web"));
        m.on_event(c.at(0.0), Event::Up);
        m.on_event(c.at(0.0), Event::Spawned { pid: 1 });
        assert_eq!(m.on_event(c.at(5.0), Event::Down), vec![Action::Terminate]);
        assert_eq!(m.phase(), Phase::Stopping);
        assert!(m.on_event(c.at(14.0), Event::Tick).is_empty());
        assert_eq!(m.on_event(c.at(15.0), Event::Tick), vec![Action::Kill]);
        assert_eq!(m.on_event(c.at(15.1), Event::Exited(Exit::Signal(9))), vec![Action::Kill]);
        assert_eq!(m.phase(), Phase::Stopped, "a stop is not a crash");
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn health_gates_running_and_start_period_failures_do_not_count() {
        let c = Clock(Instant::now());
        let mut m = ServiceMachine::new(with_health(spec("web")));
        m.on_event(c.at(0.0), Event::Up);
        m.on_event(c.at(0.0), Event::Spawned { pid: 1 });
        assert_eq!(m.phase(), Phase::Starting);
        assert_eq!(m.on_event(c.at(0.0), Event::Tick), vec![Action::Probe]);
        assert!(m.on_event(c.at(0.1), Event::Tick).is_empty(), "one probe at a time");
        for i in 0..20 {
            let t = i as f64 * 0.25;
            m.probing = false;
            assert!(m.on_event(c.at(t), Event::Probed { ok: false, detail: "refused".into() }).is_empty());
        }
        assert_eq!(m.phase(), Phase::Starting);
        assert_eq!(m.health(), Health::Unknown);
        m.on_event(c.at(6.0), Event::Probed { ok: true, detail: String::new() });
        assert_eq!((m.phase(), m.health()), (Phase::Running, Health::Healthy));
        assert_eq!(m.next_deadline(), Some(c.at(11.0)), "running services are probed every interval");
    }

    #[test]
    fn unhealthy_service_is_restarted_as_a_crash() {
        let c = Clock(Instant::now());
        let mut m = ServiceMachine::new(with_health(spec("web")));
        m.on_event(c.at(0.0), Event::Up);
        m.on_event(c.at(0.0), Event::Spawned { pid: 1 });
        m.on_event(c.at(1.0), Event::Probed { ok: true, detail: String::new() });
        assert!(m.on_event(c.at(20.0), Event::Probed { ok: false, detail: "503".into() }).is_empty());
        assert_eq!(m.on_event(c.at(25.0), Event::Probed { ok: false, detail: "503".into() }), vec![Action::Terminate]);
        assert_eq!(m.health(), Health::Unhealthy);
        m.on_event(c.at(25.5), Event::Exited(Exit::Signal(15)));
        assert_eq!(m.phase(), Phase::Backoff);
        assert!(m.reason().unwrap().contains("unhealthy"));
    }

    #[test]
    fn late_reports_about_a_stopped_service_are_ignored() {
        let c = Clock(Instant::now());
        let mut m = ServiceMachine::new(with_health(spec("web")));
        m.on_event(c.at(0.0), Event::Up);
        m.on_event(c.at(0.0), Event::Spawned { pid: 1 });
        m.on_event(c.at(1.0), Event::Down);
        m.on_event(c.at(1.5), Event::Exited(Exit::Signal(15)));
        assert!(m.on_event(c.at(2.0), Event::Probed { ok: true, detail: String::new() }).is_empty());
        assert!(m.on_event(c.at(2.0), Event::Exited(Exit::Code(0))).is_empty());
        assert_eq!(m.phase(), Phase::Stopped);
    }

    fn with_start_seconds(mut s: ServiceSpec, secs: f64) -> ServiceSpec {
        s.start_seconds = Duration::from_secs_f64(secs);
        s
    }

    #[test]
    fn without_a_check_a_service_runs_only_after_start_seconds() {
        let c = Clock(Instant::now());
        let mut m = ServiceMachine::new(with_start_seconds(spec("worker"), 1.0));
        m.on_event(c.at(0.0), Event::Up);
        m.on_event(c.at(0.0), Event::Spawned { pid: 1 });
        assert_eq!(m.phase(), Phase::Starting, "not running the moment it was spawned");
        assert!(!m.is_ready());
        assert_eq!(m.next_deadline(), Some(c.at(1.0)));
        assert!(m.on_event(c.at(0.9), Event::Tick).is_empty());
        assert_eq!(m.phase(), Phase::Starting);
        assert!(m.on_event(c.at(1.0), Event::Tick).is_empty());
        assert_eq!(m.phase(), Phase::Running);
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn a_service_that_dies_within_start_seconds_never_counts_as_running() {
        let c = Clock(Instant::now());
        let mut s = with_start_seconds(spec("broken"), 1.0);
        s.crash_loop.restarts = 2;
        s.backoff = Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(100) };
        let mut m = ServiceMachine::new(s);
        m.on_event(c.at(0.0), Event::Up);
        let mut t = 0.0;
        let mut phases = Vec::new();
        loop {
            m.on_event(c.at(t), Event::Spawned { pid: 7 });
            phases.push(m.phase());
            t += 0.01;
            let acts = m.on_event(c.at(t), Event::Exited(Exit::Code(2)));
            phases.push(m.phase());
            if m.phase() == Phase::Failed {
                assert!(matches!(&acts[..], [Action::Kill, Action::Failed { .. }]), "{acts:?}");
                break;
            }
            assert_eq!(m.phase(), Phase::Backoff);
            assert!(m.reason().unwrap().contains("exited with status 2 before it had run for 1s"), "{m:?}");
            t = m.next_deadline().unwrap().duration_since(c.at(0.0)).as_secs_f64();
            assert_eq!(m.on_event(c.at(t), Event::Tick), vec![Action::Spawn]);
        }
        assert!(!phases.contains(&Phase::Running), "{phases:?}");
        assert!(m.reason().unwrap().contains("crash loop: 3 crashes"), "{:?}", m.reason());
    }

    #[test]
    fn zero_start_seconds_runs_at_once() {
        let c = Clock(Instant::now());
        let mut m = ServiceMachine::new(spec("web"));
        m.on_event(c.at(0.0), Event::Up);
        m.on_event(c.at(0.0), Event::Spawned { pid: 1 });
        assert_eq!(m.phase(), Phase::Running);
    }

    #[test]
    fn a_start_that_cannot_work_fails_at_once_without_retrying() {
        let c = Clock(Instant::now());
        let mut m = ServiceMachine::new(with_start_seconds(spec("web"), 1.0));
        m.on_event(c.at(0.0), Event::Up);
        let acts = m.on_event(c.at(0.0), Event::CannotStart { error: "working directory /x does not exist".into() });
        assert_eq!(acts, vec![Action::Failed { reason: "cannot start: working directory /x does not exist".into() }]);
        assert_eq!(m.phase(), Phase::Failed);
        assert_eq!(m.restarts(), 0);
        assert_eq!(m.next_deadline(), None, "no retry behind the operator's back");
        // An operator's `up` tries again.
        assert_eq!(m.on_event(c.at(5.0), Event::Up), vec![Action::Spawn]);
    }

    #[test]
    fn dependants_wait_for_start_seconds() {
        let c = Clock(Instant::now());
        let mut s = sup(vec![with_start_seconds(spec("db"), 1.0), after(spec("web"), &["db"])]);
        s.on_event(c.at(0.0), AppEvent::Up);
        assert!(s.on_event(c.at(0.0), AppEvent::Service(0, Event::Spawned { pid: 1 })).is_empty());
        assert_eq!(s.next_deadline(), Some(c.at(1.0)));
        assert_eq!(s.tick(c.at(1.0)), vec![(1, Action::Spawn)]);
    }

    fn sup(specs: Vec<ServiceSpec>) -> Supervisor {
        Supervisor::new(specs)
    }

    fn after(mut s: ServiceSpec, deps: &[&str]) -> ServiceSpec {
        s.after = deps.iter().map(|d| d.to_string()).collect();
        s
    }

    #[test]
    fn up_starts_in_dependency_order_and_waits_for_readiness() {
        let c = Clock(Instant::now());
        // Written out of order on purpose: worker and beat wait for web, web for db.
        let mut s = sup(vec![
            after(spec("worker"), &["web"]),
            after(with_health(spec("web")), &["db"]),
            spec("db"),
            after(spec("beat"), &["web", "worker"]),
        ]);
        let (worker, web, db, beat) = (0, 1, 2, 3);
        assert_eq!(s.on_event(c.at(0.0), AppEvent::Up), vec![(db, Action::Spawn)]);
        assert!(s
            .on_event(c.at(0.0), AppEvent::Service(db, Event::Spawned { pid: 1 }))
            .contains(&(web, Action::Spawn)));
        s.on_event(c.at(0.1), AppEvent::Service(web, Event::Spawned { pid: 2 }));
        assert!(!s.all_ready());
        let acts = s.on_event(c.at(0.5), AppEvent::Service(web, Event::Probed { ok: true, detail: String::new() }));
        assert_eq!(acts, vec![(worker, Action::Spawn)], "beat also waits for worker");
        let acts = s.on_event(c.at(0.6), AppEvent::Service(worker, Event::Spawned { pid: 3 }));
        assert_eq!(acts, vec![(beat, Action::Spawn)]);
        s.on_event(c.at(0.7), AppEvent::Service(beat, Event::Spawned { pid: 4 }));
        assert!(s.all_ready());
    }

    #[test]
    fn down_stops_in_reverse_dependency_order() {
        let c = Clock(Instant::now());
        let mut s = sup(vec![spec("db"), after(spec("web"), &["db"]), after(spec("worker"), &["web"])]);
        s.on_event(c.at(0.0), AppEvent::Up);
        for i in 0..3 {
            s.on_event(c.at(0.0), AppEvent::Service(i, Event::Spawned { pid: i as u32 + 1 }));
        }
        assert!(s.all_ready());
        assert_eq!(s.on_event(c.at(1.0), AppEvent::Down), vec![(2, Action::Terminate)]);
        let acts = s.on_event(c.at(1.1), AppEvent::Service(2, Event::Exited(Exit::Signal(15))));
        assert_eq!(acts, vec![(2, Action::Kill), (1, Action::Terminate)]);
        let acts = s.on_event(c.at(1.2), AppEvent::Service(1, Event::Exited(Exit::Code(0))));
        assert_eq!(acts, vec![(1, Action::Kill), (0, Action::Terminate)]);
        s.on_event(c.at(1.3), AppEvent::Service(0, Event::Exited(Exit::Code(0))));
        assert!(s.services().iter().all(|m| m.phase() == Phase::Stopped));
    }

    #[test]
    fn restart_all_stops_everything_then_starts_in_order() {
        let c = Clock(Instant::now());
        let mut s = sup(vec![spec("db"), after(spec("web"), &["db"])]);
        s.on_event(c.at(0.0), AppEvent::Up);
        s.on_event(c.at(0.0), AppEvent::Service(0, Event::Spawned { pid: 1 }));
        s.on_event(c.at(0.0), AppEvent::Service(1, Event::Spawned { pid: 2 }));
        assert_eq!(s.on_event(c.at(1.0), AppEvent::Restart(None)), vec![(1, Action::Terminate)]);
        s.on_event(c.at(1.1), AppEvent::Service(1, Event::Exited(Exit::Code(0))));
        assert!(s.is_waiting(1), "stopped, but to be started again");
        let acts = s.on_event(c.at(1.2), AppEvent::Service(0, Event::Exited(Exit::Code(0))));
        assert_eq!(acts, vec![(0, Action::Kill), (0, Action::Spawn)]);
        assert!(s.is_waiting(1) && !s.is_waiting(0));
        let acts = s.on_event(c.at(1.3), AppEvent::Service(0, Event::Spawned { pid: 3 }));
        assert_eq!(acts, vec![(1, Action::Spawn)]);
    }

    #[test]
    fn restart_one_service_leaves_the_others_alone() {
        let c = Clock(Instant::now());
        let mut s = sup(vec![spec("db"), after(spec("web"), &["db"])]);
        s.on_event(c.at(0.0), AppEvent::Up);
        s.on_event(c.at(0.0), AppEvent::Service(0, Event::Spawned { pid: 1 }));
        s.on_event(c.at(0.0), AppEvent::Service(1, Event::Spawned { pid: 2 }));
        assert_eq!(s.on_event(c.at(1.0), AppEvent::Restart(Some("web".into()))), vec![(1, Action::Terminate)]);
        let acts = s.on_event(c.at(1.1), AppEvent::Service(1, Event::Exited(Exit::Code(0))));
        assert_eq!(acts, vec![(1, Action::Kill), (1, Action::Spawn)]);
        assert_eq!(s.services()[0].phase(), Phase::Running);
    }

    #[test]
    fn reconfigure_keeps_running_services_and_maps_indices_by_name() {
        let c = Clock(Instant::now());
        let mut s = sup(vec![spec("db"), spec("old"), after(spec("web"), &["db"])]);
        s.on_event(c.at(0.0), AppEvent::Up);
        for i in 0..3 {
            s.on_event(c.at(0.0), AppEvent::Service(i, Event::Spawned { pid: i as u32 + 1 }));
        }
        let map = s.reconfigure(vec![spec("db"), after(spec("web"), &["db", "new"]), spec("new")]);
        assert_eq!(map, vec![Some(0), Some(2), None]);
        assert_eq!(s.services()[1].pid(), Some(3), "web keeps its process");
        assert_eq!(s.services()[1].spec().after, ["db", "new"]);
        assert_eq!(s.services()[2].phase(), Phase::Stopped);
        // The new service starts on its own; an unchanged one is not touched.
        assert_eq!(s.on_event(c.at(1.0), AppEvent::Service(2, Event::Up)), vec![(2, Action::Spawn)]);
    }

    #[test]
    fn a_failed_dependency_keeps_dependants_waiting() {
        let c = Clock(Instant::now());
        let mut db = spec("db");
        db.crash_loop.restarts = 0;
        let mut s = sup(vec![db, after(spec("web"), &["db"])]);
        s.on_event(c.at(0.0), AppEvent::Up);
        s.on_event(c.at(0.0), AppEvent::Service(0, Event::SpawnFailed { error: "no such file".into() }));
        assert_eq!(s.services()[0].phase(), Phase::Failed);
        assert_eq!(s.services()[1].phase(), Phase::Stopped);
        assert!(!s.all_ready());
    }
}

#[cfg(test)]
mod regression {
    use super::*;

    #[test]
    fn dependants_wait_during_a_full_restart_after_a_single_restart() {
        let t = Instant::now();
        let mk = |name: &str, after: &[&str]| ServiceSpec {
            name: name.into(),
            after: after.iter().map(|s| s.to_string()).collect(),
            restart: RestartPolicy::Always,
            backoff: Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(8) },
            crash_loop: CrashLoop { restarts: 3, within: Duration::from_secs(60) },
            stop_timeout: Duration::from_secs(10),
            health: None,
            start_seconds: Duration::ZERO,
        };
        let mut s = Supervisor::new(vec![mk("web", &[]), mk("worker", &["web"])]);
        s.on_event(t, AppEvent::Up);
        s.on_event(t, AppEvent::Service(0, Event::Spawned { pid: 1 }));
        s.on_event(t, AppEvent::Service(1, Event::Spawned { pid: 2 }));
        s.on_event(t, AppEvent::Restart(Some("web".into())));
        s.on_event(t, AppEvent::Service(0, Event::Exited(Exit::Signal(15))));
        s.on_event(t, AppEvent::Service(0, Event::Spawned { pid: 3 }));
        s.on_event(t, AppEvent::Restart(None));
        s.on_event(t, AppEvent::Service(1, Event::Exited(Exit::Signal(15))));
        assert!(s.is_waiting(1), "stopped by the restart, to be started again");
    }
}
