//! Watching a compose project's services: the decisions, with no I/O (docs/compose.md).
//!
//! Docker runs the containers and restarts them by their compose `restart:` policy; caretaker
//! does not fight it. The daemon feeds [`ComposeWatch`] what it observes (`docker inspect` of
//! the project's containers, every second), the results of caretaker's own health probes and
//! the end of each compose operation; it answers with [`Action`]s: compose operations to run
//! (one at a time, in order), probes, and a crash loop to report.
//!
//! - **Crashes** are the restarts docker made (the container's `RestartCount` going up) and
//!   unexpected exits docker does not restart (a new `FinishedAt` with a non-zero status or an
//!   OOM kill while the service should run). An operator's stop or restart is no crash.
//! - **Crash loop**: more than `crash_loop.restarts` crashes within `crash_loop.within` → the
//!   service is `failed`: caretaker stops it (so docker stops restarting it) and reports it
//!   like the built-in supervisor does (event, service mode). `up`/`restart` clear it.
//! - **Health**: caretaker's probe when the config has one for the service (same rules as the
//!   built-in supervisor: probed every 250 ms while starting, failures inside `start_period`
//!   do not count, `retries` failures in a row → restart, counted as a crash); otherwise the
//!   container's own health status when its image or compose file defines a `HEALTHCHECK`
//!   (`unhealthy` → restart, counted as a crash); otherwise a container counts as running once
//!   it has run for [`SETTLE`] without a restart, so one that dies at once is not reported up.

use crate::model::Container;
use caretaker_core::config::CrashLoop;
use caretaker_core::supervision::{CrashWindow, HealthGate, HealthSpec, Verdict};
use caretaker_supervisor::machine::{Exit, Health, Phase};
use caretaker_supervisor::protocol::ServiceStatus;
use std::time::{Duration, Instant};

/// How long a container without any health check must run before it counts as running.
pub const SETTLE: Duration = Duration::from_secs(1);

/// What caretaker knows about one compose service from its config.
#[derive(Clone, Debug)]
pub struct WatchSpec {
    pub name: String,
    pub health: Option<HealthSpec>,
    pub crash_loop: CrashLoop,
}

/// A compose operation; an empty list means every service of the project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `compose up -d`.
    Up(Vec<String>),
    /// `compose stop`.
    Stop(Vec<String>),
    /// `compose restart`, then `up -d` (which starts what had no container).
    Restart(Vec<String>),
}

impl Op {
    pub fn services(&self) -> &[String] {
        match self {
            Op::Up(s) | Op::Stop(s) | Op::Restart(s) => s,
        }
    }

    fn concerns(&self, name: &str) -> bool {
        self.services().is_empty() || self.services().iter().any(|s| s == name)
    }
}

/// What the daemon must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run this compose operation after the ones already queued; answer with
    /// [`ComposeWatch::op_done`].
    Run(Op),
    /// Run caretaker's health probe of service number `.0`; answer with [`ComposeWatch::probed`]
    /// passing `generation`.
    Probe { service: usize, generation: u64 },
    /// The service crash-looped: record the event, enter service mode.
    Failed { service: usize, reason: String },
}

/// What the operator asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Up,
    Down,
    /// Stop every service except these (an update keeps its database running).
    StopExcept(Vec<String>),
    Restart(Option<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Busy {
    Starting,
    Stopping,
}

/// The container state last seen, to tell new events from old ones.
#[derive(Clone, Debug)]
struct Seen {
    id: String,
    restart_count: u64,
    finished_at: Option<String>,
}

#[derive(Clone, Debug)]
struct Service {
    spec: WatchSpec,
    /// Whether the operator wants it running (a crash of a service wanted down is no crash).
    wanted_up: bool,
    busy: Option<Busy>,
    /// Operations on it asked for and not yet ended: `busy` (set by the latest) stays until
    /// the last of them ends, so the end of an earlier stop does not hide a later `up`.
    pending_ops: u32,
    container: Option<Container>,
    seen: Option<Seen>,
    crashes: CrashWindow,
    restarts: u32,
    failed: Option<String>,
    op_error: Option<String>,
    // caretaker's probe
    probe_health: Health,
    gate: HealthGate,
    next_probe: Option<Instant>,
    probing: bool,
    generation: u64,
    generation_key: Option<(String, String)>,
    running_since: Option<Instant>,
    /// Running for [`SETTLE`] in this run (matters only without health checks).
    settled: bool,
    probe_reason: Option<String>,
    /// The container's own health check reported `unhealthy` and caretaker acted on it.
    docker_unhealthy_handled: bool,
    /// How the container last ended, as seen while it was down (docker resets the exit code
    /// when it starts the container again).
    last_exit: Option<String>,
}

impl Service {
    fn new(spec: WatchSpec) -> Self {
        let probe_health = if spec.health.is_some() { Health::Unknown } else { Health::None };
        Service {
            spec,
            wanted_up: false,
            busy: None,
            pending_ops: 0,
            container: None,
            seen: None,
            crashes: CrashWindow::default(),
            restarts: 0,
            failed: None,
            op_error: None,
            probe_health,
            gate: HealthGate::default(),
            next_probe: None,
            probing: false,
            generation: 0,
            generation_key: None,
            running_since: None,
            settled: false,
            probe_reason: None,
            docker_unhealthy_handled: false,
            last_exit: None,
        }
    }

    fn running(&self) -> bool {
        self.container.as_ref().is_some_and(|c| c.state.status == "running")
    }

    fn health(&self) -> Health {
        if self.spec.health.is_some() {
            return if self.running() { self.probe_health } else { Health::Unknown };
        }
        match self.container.as_ref().and_then(|c| c.health_status()) {
            Some("healthy") => Health::Healthy,
            Some("unhealthy") => Health::Unhealthy,
            Some(_) => Health::Unknown,
            None => Health::None,
        }
    }

    fn phase(&self) -> Phase {
        if self.failed.is_some() {
            return Phase::Failed;
        }
        match self.busy {
            Some(Busy::Stopping) => return Phase::Stopping,
            // Being (re)started: not ready before the operation has ended.
            Some(Busy::Starting) => return Phase::Starting,
            None => {}
        }
        match self.container.as_ref().map(|c| c.state.status.as_str()) {
            Some("running") => match self.health() {
                Health::Healthy => Phase::Running,
                Health::None if self.settled => Phase::Running,
                _ => Phase::Starting,
            },
            Some("restarting") => Phase::Backoff,
            Some("removing") => Phase::Stopping,
            _ => Phase::Stopped,
        }
    }

    fn describe_exit(&self) -> Option<String> {
        let c = self.container.as_ref()?;
        c.finished_at()?;
        Some(if c.state.oom_killed {
            "killed: out of memory".to_string()
        } else {
            Exit::Code(c.state.exit_code).to_string()
        })
    }

    fn reason(&self) -> Option<String> {
        if let Some(f) = &self.failed {
            return Some(f.clone());
        }
        if let Some(e) = &self.op_error {
            return Some(e.clone());
        }
        match self.phase() {
            Phase::Starting | Phase::Running => self.probe_reason.clone().or_else(|| {
                (self.health() == Health::Unhealthy).then(|| "the container's health check fails".to_string())
            }),
            Phase::Backoff => self.describe_exit().map(|e| format!("{e}; docker restarts it")),
            Phase::Stopped => match self.container.as_ref().map(|c| c.state.status.as_str()) {
                None => None,
                Some("paused") => Some("paused".into()),
                Some("created") => Some("created, not started".into()),
                Some(_) => self.describe_exit(),
            },
            _ => None,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.probing || self.failed.is_some() || self.busy.is_some() || !self.running() {
            return None;
        }
        self.next_probe
    }
}

/// The watcher of one compose project.
#[derive(Clone, Debug, Default)]
pub struct ComposeWatch {
    services: Vec<Service>,
    last_observation: u64,
}

impl ComposeWatch {
    pub fn new(specs: Vec<WatchSpec>) -> Self {
        ComposeWatch { services: specs.into_iter().map(Service::new).collect(), last_observation: 0 }
    }

    /// The project's services changed (another release's compose file): keeps what is known
    /// about the services that remain.
    pub fn sync_services(&mut self, specs: Vec<WatchSpec>) {
        let mut old = std::mem::take(&mut self.services);
        for spec in specs {
            match old.iter().position(|s| s.spec.name == spec.name) {
                Some(i) => {
                    let mut s = old.swap_remove(i);
                    if s.spec.health.is_some() != spec.health.is_some() {
                        s.probe_health = if spec.health.is_some() { Health::Unknown } else { Health::None };
                    }
                    s.spec = spec;
                    self.services.push(s);
                }
                None => self.services.push(Service::new(spec)),
            }
        }
    }

    /// Probes at `now` every running service that has a health check but no probe scheduled:
    /// one that [`ComposeWatch::sync_services`] just gave a check (a live reload).
    pub fn schedule_probes(&mut self, now: Instant) {
        for s in self.services.iter_mut() {
            if s.spec.health.is_some() && s.running() && s.next_probe.is_none() && !s.probing {
                s.next_probe = Some(now);
            }
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.services.iter().map(|s| s.spec.name.clone()).collect()
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.spec.name == name)
    }

    pub fn phase(&self, i: usize) -> Phase {
        self.services[i].phase()
    }

    pub fn health(&self, i: usize) -> Health {
        self.services[i].health()
    }

    pub fn restarts(&self, i: usize) -> u32 {
        self.services[i].restarts
    }

    /// The container of service `i`, as last seen.
    pub fn container(&self, i: usize) -> Option<&Container> {
        self.services[i].container.as_ref()
    }

    /// Every service concerned by the last operations is stopped (or failed).
    pub fn all_down(&self) -> bool {
        self.services.iter().all(|s| matches!(s.phase(), Phase::Stopped | Phase::Failed))
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.services.iter().filter_map(Service::next_deadline).min()
    }

    /// An operator's request.
    pub fn request(&mut self, request: Request) -> Vec<Action> {
        let (op, start) = match request {
            Request::Up => (Op::Up(Vec::new()), true),
            Request::Down => (Op::Stop(Vec::new()), false),
            Request::StopExcept(keep) => {
                let stop: Vec<String> = self.names().into_iter().filter(|n| !keep.contains(n)).collect();
                if stop.is_empty() {
                    return Vec::new();
                }
                (Op::Stop(stop), false)
            }
            // A failed (or stopped) service has nothing to restart: `compose restart` would start
            // its old container first — with the environment whose fault made it fail — and
            // that crash loop would stop the container `up` makes next. `up` recreates it from
            // the compose file and env files as they are now.
            Request::Restart(Some(one))
                if self.services.iter().any(|s| s.spec.name == one && (s.failed.is_some() || !s.running())) =>
            {
                (Op::Up(vec![one]), true)
            }
            Request::Restart(one) => (Op::Restart(one.into_iter().collect()), true),
        };
        for s in self.services.iter_mut().filter(|s| op.concerns(&s.spec.name)) {
            s.wanted_up = start;
            s.busy = Some(if start { Busy::Starting } else { Busy::Stopping });
            s.pending_ops += 1;
            s.op_error = None;
            if start {
                s.failed = None;
                s.crashes.clear();
            }
        }
        vec![Action::Run(op)]
    }

    /// A compose operation ended; `containers` is an observation made after it ended (with
    /// its sequence number, see [`ComposeWatch::observed`]).
    pub fn op_done(
        &mut self,
        now: Instant,
        op: &Op,
        result: Result<(), String>,
        seq: u64,
        containers: &[Container],
    ) -> Vec<Action> {
        let mut out = self.observed(now, seq, containers);
        for s in self.services.iter_mut().filter(|s| op.concerns(&s.spec.name)) {
            s.pending_ops = s.pending_ops.saturating_sub(1);
            if s.pending_ops == 0 {
                s.busy = None;
            }
            if let Err(e) = &result {
                s.op_error = Some(e.clone());
            }
        }
        // A service the operation just started must be probed at once.
        for s in self.services.iter_mut() {
            if s.spec.health.is_some() && s.running() && s.next_probe.is_none() && !s.probing {
                s.next_probe = Some(now);
            }
        }
        out.extend(self.tick(now));
        out
    }

    /// The project's containers, as observed. `seq` orders observations: one older than the
    /// newest already applied is ignored (it was made before an operation ended).
    pub fn observed(&mut self, now: Instant, seq: u64, containers: &[Container]) -> Vec<Action> {
        if seq < self.last_observation {
            return Vec::new();
        }
        self.last_observation = seq;
        let mut out = Vec::new();
        for i in 0..self.services.len() {
            let name = self.services[i].spec.name.clone();
            let primary = containers
                .iter()
                .filter(|c| c.service() == Some(name.as_str()) && !c.is_oneoff())
                .min_by_key(|c| c.number())
                .cloned();
            self.observe_one(now, i, primary, &mut out);
        }
        out
    }

    fn observe_one(&mut self, now: Instant, i: usize, c: Option<Container>, out: &mut Vec<Action>) {
        let s = &mut self.services[i];
        let Some(c) = c else {
            s.container = None;
            s.seen = None;
            s.generation_key = None;
            s.running_since = None;
            return;
        };
        let mut crashes: Vec<String> = Vec::new();
        let finished = c.finished_at().map(str::to_string);
        let exit_text = if c.state.oom_killed {
            "killed: out of memory".to_string()
        } else {
            Exit::Code(c.state.exit_code).to_string()
        };
        match &s.seen {
            Some(seen) if seen.id == c.id => {
                let expected = !s.wanted_up || s.busy.is_some();
                for _ in 0..c.restart_count.saturating_sub(seen.restart_count) {
                    crashes.push(format!("{exit_text}; docker restarted it"));
                }
                let new_exit = finished.is_some() && finished != seen.finished_at;
                let stays_down = matches!(c.state.status.as_str(), "exited" | "dead");
                if new_exit && stays_down && !expected && (c.state.exit_code != 0 || c.state.oom_killed) {
                    crashes.push(exit_text.clone());
                }
            }
            // First sight of this container (daemon start, or recreated): nothing to count.
            _ => {}
        }
        if finished.is_some() && matches!(c.state.status.as_str(), "exited" | "dead" | "restarting") {
            s.last_exit = Some(exit_text.clone());
        }
        s.seen = Some(Seen { id: c.id.clone(), restart_count: c.restart_count, finished_at: finished });
        let running = c.state.status == "running";
        let key = (c.id.clone(), c.state.started_at.clone());
        if running && s.generation_key.as_ref() != Some(&key) {
            // A new run of the container: its health is unknown again.
            s.generation += 1;
            s.generation_key = Some(key);
            s.running_since = Some(now);
            s.settled = false;
            s.gate.reset();
            s.probing = false;
            s.probe_reason = None;
            s.docker_unhealthy_handled = false;
            if s.spec.health.is_some() {
                s.probe_health = Health::Unknown;
                s.next_probe = Some(now);
            }
        }
        if !running {
            s.next_probe = None;
            s.running_since = None;
            s.generation_key = None;
            s.settled = false;
        } else if s.running_since.is_some_and(|t| now.saturating_duration_since(t) >= SETTLE) {
            s.settled = true;
        }
        let docker_unhealthy = s.spec.health.is_none() && c.health_status() == Some("unhealthy");
        s.container = Some(c);
        for why in crashes {
            self.crash(now, i, why, out);
        }
        let s = &mut self.services[i];
        if docker_unhealthy && !s.docker_unhealthy_handled && s.wanted_up && s.busy.is_none() && s.failed.is_none() {
            s.docker_unhealthy_handled = true;
            self.unhealthy(now, i, "unhealthy (the container's health check)".into(), out);
        }
    }

    /// Counts a crash; more than the crash loop allows → failed, stopped, reported.
    fn crash(&mut self, now: Instant, i: usize, why: String, out: &mut Vec<Action>) {
        let s = &mut self.services[i];
        if s.failed.is_some() {
            return;
        }
        s.restarts += 1;
        if let Some(reason) = s.crashes.crashed(now, s.spec.crash_loop, &why) {
            s.failed = Some(reason.clone());
            s.wanted_up = false;
            s.busy = Some(Busy::Stopping);
            s.pending_ops += 1;
            s.next_probe = None;
            out.push(Action::Failed { service: i, reason });
            out.push(Action::Run(Op::Stop(vec![s.spec.name.clone()])));
        }
    }

    /// The service is unhealthy: restart it (a crash), unless that makes a crash loop.
    fn unhealthy(&mut self, now: Instant, i: usize, why: String, out: &mut Vec<Action>) {
        self.crash(now, i, why.clone(), out);
        let s = &mut self.services[i];
        if s.failed.is_none() {
            s.probe_reason = Some(why);
            s.busy = Some(Busy::Starting);
            s.pending_ops += 1;
            s.next_probe = None;
            out.push(Action::Run(Op::Restart(vec![s.spec.name.clone()])));
        }
    }

    /// Runs the probes that are due.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        for (i, s) in self.services.iter_mut().enumerate() {
            if s.next_deadline().is_some_and(|t| t <= now) {
                s.probing = true;
                s.next_probe = None;
                out.push(Action::Probe { service: i, generation: s.generation });
            }
        }
        out
    }

    /// A probe of service `i` finished.
    pub fn probed(&mut self, now: Instant, i: usize, generation: u64, ok: bool, detail: String) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(s) = self.services.get_mut(i) else { return out };
        if s.generation != generation {
            return out;
        }
        s.probing = false;
        let Some(h) = s.spec.health else { return out };
        if !s.running() || s.busy.is_some() || s.failed.is_some() {
            return out;
        }
        let starting = s.probe_health != Health::Healthy;
        match s.gate.probed(now, h, ok, &detail, starting, s.running_since) {
            Verdict::Healthy { next } => {
                s.probe_health = Health::Healthy;
                s.probe_reason = None;
                s.next_probe = Some(now + next);
            }
            Verdict::NotCounted { next } | Verdict::Failed { next } => {
                s.probe_reason = Some(format!("health check failed: {detail}"));
                s.next_probe = Some(now + next);
            }
            Verdict::Unhealthy { why } => {
                s.probe_reason = Some(format!("health check failed: {detail}"));
                s.probe_health = Health::Unhealthy;
                self.unhealthy(now, i, why, &mut out);
            }
        }
        out
    }

    /// Each service as `caretaker status` shows it; `now` is the wall clock (for uptimes).
    pub fn statuses(&self, now: jiff::Timestamp) -> Vec<ServiceStatus> {
        self.services
            .iter()
            .map(|s| {
                let running = s.running();
                let c = s.container.as_ref();
                ServiceStatus {
                    name: s.spec.name.clone(),
                    state: s.phase(),
                    pid: c.filter(|_| running).map(|c| c.state.pid).filter(|p| *p > 0),
                    uptime_seconds: c
                        .filter(|_| running)
                        .and_then(|c| c.started_at())
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .map(|t| now.duration_since(t).as_secs().max(0) as u64),
                    restarts: s.restarts,
                    health: s.health(),
                    // A compose command that failed before any container ran: `up` must not
                    // wait for it to become healthy.
                    last_exit: s
                        .last_exit
                        .clone()
                        .or_else(|| (s.op_error.is_some() && c.is_none()).then(|| "not started".to_string())),
                    reason: s.reason(),
                    waiting: false,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerConfig, ContainerHealth, ContainerState, HostConfig, RestartPolicy};
    use caretaker_core::supervision::STARTING_PROBE_INTERVAL;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn spec(name: &str) -> WatchSpec {
        WatchSpec {
            name: name.into(),
            health: None,
            crash_loop: CrashLoop { restarts: 3, within: Duration::from_secs(60) },
        }
    }

    fn probed_spec(name: &str) -> WatchSpec {
        WatchSpec {
            health: Some(HealthSpec {
                interval: Duration::from_secs(5),
                retries: 2,
                start_period: Duration::from_secs(10),
            }),
            ..spec(name)
        }
    }

    fn container(service: &str, id: &str, status: &str, restarts: u64) -> Container {
        let mut labels = BTreeMap::new();
        labels.insert(crate::model::LABEL_SERVICE.to_string(), service.to_string());
        labels.insert(crate::model::LABEL_ONEOFF.to_string(), "False".to_string());
        Container {
            id: id.into(),
            state: ContainerState {
                status: status.into(),
                pid: if status == "running" { 100 } else { 0 },
                started_at: "2026-11-30T10:00:00Z".into(),
                finished_at: "0001-01-01T00:00:00Z".into(),
                ..Default::default()
            },
            restart_count: restarts,
            config: ContainerConfig { labels: Some(labels), image: "img".into() },
            host_config: HostConfig { restart_policy: RestartPolicy { name: "always".into() } },
            ..Default::default()
        }
    }

    fn exited(mut c: Container, code: i32, at: &str) -> Container {
        c.state.status = "exited".into();
        c.state.exit_code = code;
        c.state.finished_at = at.into();
        c.state.pid = 0;
        c
    }

    struct Clock(Instant);
    impl Clock {
        fn at(&self, s: f64) -> Instant {
            self.0 + Duration::from_secs_f64(s)
        }
    }

    /// Brings the watcher up: request, operation done with the container running.
    /// (The containers are observed again after [`SETTLE`]: sequence `seq + 1`.)
    fn up(w: &mut ComposeWatch, t: Instant, seq: u64, cs: &[Container]) -> Vec<Action> {
        let acts = w.request(Request::Up);
        assert_eq!(acts, vec![Action::Run(Op::Up(vec![]))]);
        assert_eq!(w.phase(0), Phase::Starting);
        let mut acts = w.op_done(t, &Op::Up(vec![]), Ok(()), seq, cs);
        acts.extend(w.observed(t + SETTLE, seq + 1, cs));
        acts
    }

    #[test]
    fn running_container_without_checks_is_running_and_adopted_without_crashes() {
        let c = Clock(Instant::now());
        let mut w = ComposeWatch::new(vec![spec("web")]);
        // A daemon starting next to a container that restarted 7 times before: not counted.
        w.observed(c.at(0.0), 10, &[container("web", "a", "running", 7)]);
        assert_eq!((w.phase(0), w.restarts(0)), (Phase::Starting, 0), "running, but not yet for long");
        w.observed(c.at(1.0), 20, &[container("web", "a", "running", 7)]);
        assert_eq!((w.phase(0), w.restarts(0)), (Phase::Running, 0));
        let st = &w.statuses("2026-11-30T10:01:00Z".parse().unwrap())[0];
        assert_eq!((st.pid, st.uptime_seconds, st.health), (Some(100), Some(60), Health::None));
        // One-off containers of the service do not count as the service.
        let mut oneoff = container("web", "b", "exited", 0);
        oneoff.config.labels.as_mut().unwrap().insert(crate::model::LABEL_ONEOFF.into(), "True".into());
        w.observed(c.at(2.0), 30, &[container("web", "a", "running", 7), oneoff]);
        assert_eq!(w.container(0).unwrap().id, "a");
    }

    #[test]
    fn docker_restarts_are_crashes_and_too_many_are_a_crash_loop() {
        let c = Clock(Instant::now());
        let mut w = ComposeWatch::new(vec![spec("web"), spec("db")]);
        up(&mut w, c.at(0.0), 10, &[container("web", "a", "running", 0), container("db", "d", "running", 0)]);
        assert_eq!(w.phase(0), Phase::Running);
        let mut restarting = exited(container("web", "a", "restarting", 2), 1, "2026-11-30T10:00:01Z");
        restarting.state.status = "restarting".into();
        assert!(w.observed(c.at(1.0), 20, &[restarting.clone(), container("db", "d", "running", 0)]).is_empty());
        assert_eq!((w.phase(0), w.restarts(0)), (Phase::Backoff, 2));
        assert!(w.statuses(jiff::Timestamp::now())[0].reason.as_deref().unwrap().contains("docker restarts it"));
        restarting.restart_count = 4;
        let acts = w.observed(c.at(2.0), 30, &[restarting.clone(), container("db", "d", "running", 0)]);
        assert!(matches!(&acts[0], Action::Failed { service: 0, reason } if reason.contains("crash loop: 4 crashes")));
        assert_eq!(acts[1], Action::Run(Op::Stop(vec!["web".into()])));
        assert_eq!(w.phase(0), Phase::Failed);
        assert_eq!(w.phase(1), Phase::Running, "the other service is not touched");
        // Stopping it is no further crash; it stays failed until an operator asks.
        let stopped = exited(container("web", "a", "exited", 4), 137, "2026-11-30T10:00:03Z");
        let acts = w.op_done(c.at(3.0), &Op::Stop(vec!["web".into()]), Ok(()), 40, std::slice::from_ref(&stopped));
        assert!(acts.is_empty());
        assert_eq!(w.phase(0), Phase::Failed);
        // `up` clears it.
        up(&mut w, c.at(10.0), 50, &[container("web", "a", "running", 4)]);
        assert_eq!(w.phase(0), Phase::Running);
    }

    #[test]
    fn an_up_asked_while_the_stop_of_a_crash_loop_runs_keeps_the_service_starting_until_it_ends() {
        let c = Clock(Instant::now());
        let mut w = ComposeWatch::new(vec![spec("worker")]);
        up(&mut w, c.at(0.0), 10, &[container("worker", "w", "running", 0)]);
        let acts = w.observed(c.at(1.0), 20, &[container("worker", "w", "restarting", 4)]);
        assert_eq!(acts[1], Action::Run(Op::Stop(vec!["worker".into()])));
        // The operator fixes the cause and asks for `up` before that stop has ended.
        assert_eq!(w.request(Request::Up), vec![Action::Run(Op::Up(vec![]))]);
        let stopped = exited(container("worker", "w", "exited", 4), 1, "2026-11-30T10:00:02Z");
        w.op_done(c.at(2.0), &Op::Stop(vec!["worker".into()]), Ok(()), 30, std::slice::from_ref(&stopped));
        assert_eq!(w.phase(0), Phase::Starting, "the `up` asked for is still to come: not stopped");
        w.op_done(c.at(3.0), &Op::Up(vec![]), Ok(()), 40, &[container("worker", "w2", "running", 0)]);
        w.observed(c.at(3.0) + SETTLE, 50, &[container("worker", "w2", "running", 0)]);
        assert_eq!(w.phase(0), Phase::Running);
    }

    #[test]
    fn restarting_a_failed_service_recreates_it_instead_of_restarting_its_old_container() {
        let c = Clock(Instant::now());
        let mut w = ComposeWatch::new(vec![spec("web"), spec("worker")]);
        up(&mut w, c.at(0.0), 10, &[container("web", "a", "running", 0), container("worker", "w", "running", 0)]);
        assert_eq!(w.request(Request::Restart(Some("web".into()))), vec![Action::Run(Op::Restart(vec!["web".into()]))]);
        w.op_done(
            c.at(1.0),
            &Op::Restart(vec!["web".into()]),
            Ok(()),
            20,
            &[container("web", "a", "running", 0), container("worker", "w", "running", 0)],
        );
        let looping = [container("web", "a", "running", 0), container("worker", "w", "restarting", 4)];
        w.observed(c.at(2.0), 30, &looping);
        let stopped = [
            container("web", "a", "running", 0),
            exited(container("worker", "w", "exited", 4), 1, "2026-11-30T10:00:02Z"),
        ];
        w.op_done(c.at(3.0), &Op::Stop(vec!["worker".into()]), Ok(()), 40, &stopped);
        assert_eq!(w.phase(1), Phase::Failed);
        assert_eq!(
            w.request(Request::Restart(Some("worker".into()))),
            vec![Action::Run(Op::Up(vec!["worker".into()]))]
        );
        assert_eq!(w.phase(1), Phase::Starting);
    }

    #[test]
    fn an_exit_docker_does_not_restart_counts_once_and_a_stop_does_not_count() {
        let c = Clock(Instant::now());
        let mut w = ComposeWatch::new(vec![spec("worker")]);
        up(&mut w, c.at(0.0), 10, &[container("worker", "w", "running", 0)]);
        let dead = exited(container("worker", "w", "running", 0), 3, "2026-11-30T10:00:05Z");
        w.observed(c.at(5.0), 20, std::slice::from_ref(&dead));
        w.observed(c.at(6.0), 30, std::slice::from_ref(&dead));
        assert_eq!((w.phase(0), w.restarts(0)), (Phase::Stopped, 1));
        assert_eq!(w.statuses(jiff::Timestamp::now())[0].last_exit.as_deref(), Some("exited with status 3"));
        // A clean exit (status 0) is not a crash.
        up(&mut w, c.at(7.0), 40, &[container("worker", "w", "running", 0)]);
        w.observed(c.at(8.0), 50, &[exited(container("worker", "w", "running", 0), 0, "2026-11-30T10:00:08Z")]);
        assert_eq!(w.restarts(0), 1);
        // Neither is an operator's stop.
        up(&mut w, c.at(9.0), 60, &[container("worker", "w", "running", 0)]);
        assert_eq!(w.request(Request::Down), vec![Action::Run(Op::Stop(vec![]))]);
        assert_eq!(w.phase(0), Phase::Stopping);
        let stopped = exited(container("worker", "w", "running", 0), 143, "2026-11-30T10:00:10Z");
        w.observed(c.at(10.0), 70, std::slice::from_ref(&stopped));
        w.op_done(c.at(10.5), &Op::Stop(vec![]), Ok(()), 80, &[stopped]);
        assert_eq!((w.phase(0), w.restarts(0)), (Phase::Stopped, 1));
        assert!(w.all_down());
    }

    #[test]
    fn stale_observations_and_failed_operations() {
        let c = Clock(Instant::now());
        let mut w = ComposeWatch::new(vec![spec("web")]);
        let old = exited(container("web", "a", "exited", 0), 1, "2026-11-30T09:00:00Z");
        w.observed(c.at(0.0), 50, std::slice::from_ref(&old));
        w.request(Request::Up);
        w.op_done(c.at(1.0), &Op::Up(vec![]), Ok(()), 70, &[container("web", "a", "running", 0)]);
        // An observation started before the operation ended arrives late: ignored.
        w.observed(c.at(1.1), 60, &[old]);
        assert_eq!(w.phase(0), Phase::Starting, "running, not stopped (and not yet settled)");
        w.request(Request::Restart(Some("web".into())));
        w.op_done(c.at(2.0), &Op::Restart(vec!["web".into()]), Err("no such image".into()), 80, &[]);
        // No container (the observation after the failure found none): `up` must not wait.
        let st = &w.statuses(jiff::Timestamp::now())[0];
        assert_eq!((st.state, st.reason.as_deref()), (Phase::Stopped, Some("no such image")));
        assert!(st.last_exit.is_some(), "{st:?}");
    }

    #[test]
    fn caretaker_probe_gates_readiness_and_restarts_an_unhealthy_container() {
        let c = Clock(Instant::now());
        let mut w = ComposeWatch::new(vec![probed_spec("web")]);
        let acts = up(&mut w, c.at(0.0), 10, &[container("web", "a", "running", 0)]);
        assert_eq!(acts, vec![Action::Probe { service: 0, generation: 1 }]);
        assert_eq!(w.phase(0), Phase::Starting);
        // Failures within the start period do not count; probing goes on quickly.
        assert!(w.probed(c.at(0.1), 0, 1, false, "refused".into()).is_empty());
        assert_eq!(w.next_deadline(), Some(c.at(0.1) + STARTING_PROBE_INTERVAL));
        assert_eq!(w.tick(c.at(0.35)), vec![Action::Probe { service: 0, generation: 1 }]);
        assert!(w.probed(c.at(0.4), 0, 1, true, String::new()).is_empty());
        assert_eq!((w.phase(0), w.health(0)), (Phase::Running, Health::Healthy));
        // Two failures in a row once running → restart, counted.
        w.tick(c.at(5.4));
        assert!(w.probed(c.at(5.5), 0, 1, false, "500".into()).is_empty());
        w.tick(c.at(10.5));
        let acts = w.probed(c.at(10.6), 0, 1, false, "500".into());
        assert_eq!(acts, vec![Action::Run(Op::Restart(vec!["web".into()]))]);
        assert_eq!(w.restarts(0), 1);
        // A report about the previous run of the container is ignored.
        let mut again = container("web", "a", "running", 0);
        again.state.started_at = "2026-11-30T10:00:11Z".into();
        let acts = w.op_done(c.at(11.0), &Op::Restart(vec!["web".into()]), Ok(()), 20, &[again]);
        assert_eq!(acts, vec![Action::Probe { service: 0, generation: 2 }]);
        assert!(w.probed(c.at(11.1), 0, 1, true, String::new()).is_empty());
        assert_eq!(w.health(0), Health::Unknown);
    }

    #[test]
    fn docker_health_status_counts_when_caretaker_has_no_probe() {
        let c = Clock(Instant::now());
        let mut w = ComposeWatch::new(vec![spec("db")]);
        let mut db = container("db", "d", "running", 0);
        db.state.health = Some(ContainerHealth { status: "starting".into(), failing_streak: 0 });
        up(&mut w, c.at(0.0), 10, &[db.clone()]);
        assert_eq!((w.phase(0), w.health(0)), (Phase::Starting, Health::Unknown));
        db.state.health = Some(ContainerHealth { status: "healthy".into(), failing_streak: 0 });
        w.observed(c.at(1.0), 20, &[db.clone()]);
        assert_eq!((w.phase(0), w.health(0)), (Phase::Running, Health::Healthy));
        db.state.health = Some(ContainerHealth { status: "unhealthy".into(), failing_streak: 3 });
        let acts = w.observed(c.at(2.0), 30, &[db.clone()]);
        assert_eq!(acts, vec![Action::Run(Op::Restart(vec!["db".into()]))]);
        assert_eq!(w.restarts(0), 1);
    }

    #[test]
    fn a_health_check_added_to_a_running_service_is_probed_once_scheduled() {
        let c = Clock(Instant::now());
        let mut w = ComposeWatch::new(vec![spec("web")]);
        up(&mut w, c.at(0.0), 10, &[container("web", "a", "running", 0)]);
        w.sync_services(vec![probed_spec("web")]);
        assert!(w.tick(c.at(1.0)).is_empty(), "nothing scheduled the probe yet");
        w.schedule_probes(c.at(1.0));
        assert!(matches!(w.tick(c.at(1.0)).as_slice(), [Action::Probe { service: 0, .. }]));
    }

    #[test]
    fn stop_except_keeps_the_named_services_and_services_can_change() {
        let mut w = ComposeWatch::new(vec![spec("web"), spec("db"), spec("worker")]);
        assert_eq!(
            w.request(Request::StopExcept(vec!["db".into()])),
            vec![Action::Run(Op::Stop(vec!["web".into(), "worker".into()]))]
        );
        assert_eq!((w.phase(0), w.phase(1)), (Phase::Stopping, Phase::Stopped));
        w.sync_services(vec![spec("db"), spec("web"), spec("cron")]);
        assert_eq!(w.names(), ["db", "web", "cron"]);
        assert_eq!(w.phase(1), Phase::Stopping, "state kept across the change");
    }
}
