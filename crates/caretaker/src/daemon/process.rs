//! The built-in supervisor's engine: owns the [`Supervisor`] (the decisions) and carries out
//! its actions — spawning, signalling, probing, logging — through the supervisor crate's
//! effects. Everything that happens comes back as a [`Msg`] on one channel, so the state is
//! never shared and needs no lock. Shutdown stops the services in reverse dependency order,
//! waits for them and clears the record of running services.

use super::{read_new_config, resume_interrupted_job, run_loop, Listeners, Signal, SupervisionEngine, Surroundings};
use crate::appenv::{app_env, working_dir};
use crate::context::AppContext;
use crate::web::ServicesView;
use anyhow::{Context, Result};
use caretaker_core::alert::ServiceObs;
use caretaker_core::config::{Config, Probe, Service};
use caretaker_core::mode::Mode;
use caretaker_core::reload::ReloadPlan;
use caretaker_state::Store;
use caretaker_supervisor::logfile::{self, RotatingLog};
use caretaker_supervisor::machine::{Action, AppEvent, Event, Exit, Phase, ServiceSpec, Supervisor};
use caretaker_supervisor::process::{self, Launch, Record, Records};
use caretaker_supervisor::protocol::{ReloadReport, Request, Response, ServiceStatus, StatusReport};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

/// Everything that reaches the event loop.
enum Msg {
    // By name, not index: a reload renumbers the services.
    Exited { name: String, generation: u64, exit: Exit },
    Probed { name: String, generation: u64, result: Result<(), String> },
}

/// The last process of a service, kept after it exits so its group's leftovers can be killed.
#[derive(Clone, Copy)]
struct Child {
    pgid: u32,
    start_ticks: u64,
}

struct Daemon {
    config: Config,
    config_path: PathBuf,
    store: Store,
    state_dir: PathBuf,
    sup: Supervisor,
    children: Vec<Option<Child>>,
    logs: Vec<Arc<Mutex<RotatingLog>>>,
    records: Records,
    tx: mpsc::UnboundedSender<Msg>,
    /// `down` requests answered once everything is stopped.
    waiting_down: Vec<oneshot::Sender<Response>>,
    exiting: bool,
    /// Since when each service is not running (for the `service_down` alert).
    down_since: Vec<Option<jiff::Timestamp>>,
    /// The services' view for `/metrics`, alerts and the status page.
    view: watch::Sender<ServicesView>,
    /// The app's mode for the front door (also fed by [`crate::web::follow_mode`]).
    mode: watch::Sender<Mode>,
    allow_world_readable_config: bool,
    /// A reload restarting or starting its services one after the other.
    reloading: Option<Reloading>,
}

/// A reload under way: its services are restarted (or started) one at a time in dependency
/// order, each once the one before it is up (or has failed), then the caller is answered.
struct Reloading {
    by: String,
    queue: std::collections::VecDeque<(String, Step)>,
    current: Option<String>,
    report: ReloadReport,
    reply: Option<oneshot::Sender<Response>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Restart,
    Start,
}

/// The built-in supervisor's engine (the process runtime's) in the one daemon loop.
pub(super) async fn run(
    app: AppContext,
    allow_world_readable_config: bool,
    listeners: Listeners,
    signals: mpsc::UnboundedReceiver<Signal>,
) -> Result<()> {
    let state_dir = app.store.dir().to_path_buf();
    let records = Records::new(&state_dir);
    // A predecessor that was SIGKILLed may have left services running: stop them first, so
    // there is never a second instance and no orphan holds a port.
    let leftovers = records.load();
    if !leftovers.is_empty() {
        let grace = app.config.services.iter().map(|s| s.stop_timeout).max().unwrap_or(Duration::from_secs(10));
        // Blocking is fine here: nothing else runs yet.
        let found = process::stop_leftovers(&leftovers, grace);
        for f in &found {
            tracing::warn!("stopped a service left running by a previous daemon: {f}");
        }
        if !found.is_empty() {
            let _ = app.store.record_event(
                "daemon_recovered",
                &app.config.app.name,
                &format!("stopped services left running by a previous daemon: {}", found.join(", ")),
            );
        }
    }
    records.save(&[]).context("writing the record of running services")?;

    let logs_dir = logfile::dir(&state_dir);
    std::fs::create_dir_all(&logs_dir).with_context(|| format!("creating {}", logs_dir.display()))?;
    let _ = std::fs::set_permissions(&logs_dir, std::fs::Permissions::from_mode(0o700));
    let mut logs = Vec::new();
    for s in &app.config.services {
        let p = logfile::path(&state_dir, &s.name);
        let log = RotatingLog::open(&p, app.config.logs.max_size_bytes, app.config.logs.keep)
            .with_context(|| format!("opening {}", p.display()))?;
        logs.push(Arc::new(Mutex::new(log)));
    }

    let (tx, rx) = mpsc::unbounded_channel();
    let (around, control) = Surroundings::start(&app, allow_world_readable_config, listeners).await?;

    let specs = app.config.services.iter().map(ServiceSpec::from_config).collect();
    let n = app.config.services.len();
    let mut d = Daemon {
        config: app.config,
        config_path: app.config_path,
        store: app.store,
        state_dir,
        sup: Supervisor::new(specs),
        children: vec![None; n],
        logs,
        records,
        tx,
        waiting_down: Vec::new(),
        exiting: false,
        down_since: vec![Some(jiff::Timestamp::now()); n],
        view: around.view.clone(),
        mode: around.mode.clone(),
        allow_world_readable_config,
        reloading: None,
    };
    tracing::info!(app = %d.config.app.name, pid = std::process::id(), socket = %around.socket.display(), "daemon started");
    if !resume_interrupted_job(allow_world_readable_config, &d.config_path, &d.store)? {
        d.apply(AppEvent::Up);
    }
    run_loop(d, rx, around, control, signals).await
}

impl SupervisionEngine for Daemon {
    type Msg = Msg;

    fn control(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        match request {
            Request::Status => {
                let _ = reply.send(Response::Status(self.status()));
            }
            Request::Up => {
                if self.exiting {
                    let _ = reply.send(Response::Error { message: "the daemon is shutting down".into() });
                    return;
                }
                self.apply(AppEvent::Up);
                let _ = reply.send(Response::Ok);
            }
            Request::Restart { service } => {
                if let Some(s) = &service {
                    if self.sup.index(s).is_none() {
                        let _ = reply.send(Response::Error { message: format!("no service named {s}") });
                        return;
                    }
                }
                self.apply(AppEvent::Restart(service));
                let _ = reply.send(Response::Ok);
            }
            Request::Down { exit_daemon } => {
                if exit_daemon {
                    self.begin_exit("down --daemon");
                } else {
                    self.apply(AppEvent::Down);
                }
                self.waiting_down.push(reply);
            }
            Request::ModeChanged => {
                let _ = reply.send(crate::web::reload_mode(&self.store, &self.mode));
            }
            // The built-in supervisor runs no data services of its own: all of it stops.
            Request::StopApp => {
                self.apply(AppEvent::Down);
                self.waiting_down.push(reply);
            }
            // Taken by the event loop (it awaits the listeners); never reaches here.
            Request::Reload => {
                let _ = reply.send(Response::Error { message: "reload is handled by the event loop".into() });
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.sup.next_deadline()
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Exited { name, generation, exit } => {
                // A service a reload removed (its process was stopped on its own).
                let Some(idx) = self.sup.index(&name) else { return };
                if self.sup.services()[idx].generation() != generation {
                    return;
                }
                let name = self.sup.services()[idx].name().to_string();
                let expected = self.sup.services()[idx].phase() == Phase::Stopping;
                if expected {
                    tracing::info!(service = %name, "stopped ({exit})");
                } else {
                    tracing::warn!(service = %name, "{exit}");
                }
                self.service_log(idx, &format!("{exit}"));
                self.apply(AppEvent::Service(idx, Event::Exited(exit)));
                self.save_records();
            }
            Msg::Probed { name, generation, result } => {
                let Some(idx) = self.sup.index(&name) else { return };
                if self.sup.services()[idx].generation() != generation {
                    return;
                }
                let before = self.sup.services()[idx].health();
                let (ok, detail) = match result {
                    Ok(()) => (true, String::new()),
                    Err(e) => (false, e),
                };
                self.apply(AppEvent::Service(idx, Event::Probed { ok, detail: detail.clone() }));
                let m = &self.sup.services()[idx];
                if m.health() != before {
                    tracing::info!(service = %m.name(), "health: {:?}{}{}", m.health(), if ok { "" } else { ": " }, detail);
                }
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        let acts = self.sup.tick(now);
        self.execute(acts);
    }

    fn begin_exit(&mut self, why: &str) {
        tracing::info!("{why}: stopping services, then exiting");
        self.exiting = true;
        self.apply(AppEvent::Down);
    }

    /// A reload (`caretaker reload`, SIGHUP): reads and validates the config file, works out
    /// what changed ([`caretaker_core::reload::plan`]) and follows it. Anything invalid, or a
    /// listener that cannot be bound, refuses the whole reload: nothing changes.
    async fn reload(&mut self, around: &mut Surroundings, reply: Option<oneshot::Sender<Response>>, by: &str) {
        let refuse = |reply: Option<oneshot::Sender<Response>>, problems: String| {
            tracing::error!("{by}: the new config was refused, the running one stays:\n{problems}");
            if let Some(r) = reply {
                let _ = r.send(Response::Refused { problems });
            }
        };
        if self.exiting || self.reloading.is_some() {
            let why = if self.exiting { "the daemon is shutting down" } else { "a reload is under way" };
            tracing::warn!("{by}: not now, {why}");
            if let Some(r) = reply {
                let _ = r.send(Response::Error { message: format!("cannot reload: {why}") });
            }
            return;
        }
        tracing::info!("{by}: reading {}", self.config_path.display());
        let new = match read_new_config(&self.config_path, self.allow_world_readable_config, &self.config) {
            Ok(c) => c,
            Err(problems) => return refuse(reply, problems),
        };
        let plan = caretaker_core::reload::plan(&self.config, &new);
        // Logs of new services first: a log that cannot be opened refuses the reload.
        let mut new_logs = std::collections::HashMap::new();
        for name in &plan.start {
            let p = logfile::path(&self.state_dir, name);
            match RotatingLog::open(&p, new.logs.max_size_bytes, new.logs.keep) {
                Ok(l) => {
                    new_logs.insert(name.clone(), Arc::new(Mutex::new(l)));
                }
                Err(e) => return refuse(reply, format!("cannot open {}: {e}", p.display())),
            }
        }
        let prepared = match around.prepare(&plan, &self.config, &new).await {
            Ok(p) => p,
            Err(e) => return refuse(reply, format!("{e:#}")),
        };
        let report = self.apply_reload(new, &plan, new_logs);
        if let Some(p) = prepared {
            if let Err(e) = around.switch(p) {
                tracing::error!("{by}: cannot start the listeners, alerts and scheduler of the new config: {e:#}");
            }
        }
        let mut r = Reloading { by: by.to_string(), queue: Default::default(), current: None, report, reply };
        for name in &r.report.restarted {
            r.queue.push_back((name.clone(), Step::Restart));
        }
        for name in &r.report.started {
            r.queue.push_back((name.clone(), Step::Start));
        }
        self.reloading = Some(r);
        self.step_reload();
    }

    fn after_event(&mut self) {
        self.step_reload();
        self.answer_waiting_down();
        self.publish_view();
    }

    fn done(&self) -> bool {
        self.exiting && self.all_down()
    }

    fn finish(&mut self) {
        let _ = self.records.save(&[]);
    }
}

impl Daemon {
    /// Publishes the services' view (cheap; receivers see it only when it changed).
    fn publish_view(&mut self) {
        let now = jiff::Timestamp::now();
        for (m, since) in self.sup.services().iter().zip(self.down_since.iter_mut()) {
            if m.phase() == Phase::Running {
                *since = None;
            } else if since.is_none() {
                *since = Some(now);
            }
        }
        let statuses = self.service_statuses();
        let observations = self
            .sup
            .services()
            .iter()
            .zip(&self.down_since)
            .map(|(m, since)| ServiceObs {
                name: m.name().to_string(),
                up: m.phase() == Phase::Running,
                down_since: *since,
                restarts: Some(m.restarts() as u64),
                healthy: match m.health() {
                    caretaker_supervisor::machine::Health::None => None,
                    h => Some(h == caretaker_supervisor::machine::Health::Healthy),
                },
            })
            .collect();
        self.view.send_replace(ServicesView { statuses, observations });
    }

    /// Takes the new config: stops removed services, renumbers the supervisor's services and
    /// returns what is to be restarted and started (done by [`Daemon::step_reload`]).
    fn apply_reload(
        &mut self,
        new: Config,
        plan: &ReloadPlan,
        mut new_logs: std::collections::HashMap<String, Arc<Mutex<RotatingLog>>>,
    ) -> ReloadReport {
        let app_up = self.sup.services().iter().any(|m| !m.is_down());
        for name in &plan.stop {
            let Some(idx) = self.sup.index(name) else { continue };
            self.service_log(idx, "stopping: removed from the config");
            if let (Some(c), false) = (self.children[idx], self.sup.services()[idx].is_down()) {
                tracing::info!(service = %name, pid = c.pgid, "removed from the config: stopping (SIGTERM to the process group)");
                retire(c, self.config.services[idx].stop_timeout, name.clone());
            }
        }
        let specs = new.services.iter().map(ServiceSpec::from_config).collect();
        let map = self.sup.reconfigure(specs);
        let now = jiff::Timestamp::now();
        let mut children = Vec::new();
        let mut logs = Vec::new();
        let mut down_since = Vec::new();
        for (svc, from) in new.services.iter().zip(&map) {
            match *from {
                Some(i) => {
                    children.push(self.children[i]);
                    logs.push(self.logs[i].clone());
                    down_since.push(self.down_since[i]);
                }
                None => {
                    children.push(None);
                    logs.push(new_logs.remove(&svc.name).expect("opened for every new service"));
                    down_since.push(Some(now));
                }
            }
        }
        self.children = children;
        self.logs = logs;
        self.down_since = down_since;
        self.config = new;
        self.save_records();

        let mut report = ReloadReport {
            unchanged: plan.unchanged.clone(),
            stopped: plan.stop.clone(),
            sections: plan.sections.clone(),
            rebound: plan.rebind,
            ..Default::default()
        };
        for name in &plan.restart {
            let idx = self.sup.index(name).expect("a service of the new config");
            // One an operator stopped (`down`) stays stopped, with its new definition.
            if self.sup.services()[idx].phase() == Phase::Stopped {
                report.not_running.push(name.clone());
            } else {
                report.restarted.push(name.clone());
            }
        }
        for name in &plan.start {
            if app_up {
                report.started.push(name.clone());
            } else {
                report.not_running.push(name.clone());
            }
        }
        report
    }

    /// Moves a reload on: restarts (or starts) the next service once the one before it is up
    /// or has failed; answers the caller when none is left.
    fn step_reload(&mut self) {
        loop {
            let Some(r) = self.reloading.as_mut() else { return };
            if let Some(cur) = &r.current {
                let busy = self
                    .sup
                    .index(cur)
                    .is_some_and(|i| matches!(self.sup.services()[i].phase(), Phase::Starting | Phase::Stopping));
                if busy && !self.exiting {
                    return;
                }
                r.current = None;
            }
            let next = if self.exiting { None } else { r.queue.pop_front() };
            match next {
                Some((name, step)) => {
                    r.current = Some(name.clone());
                    let Some(idx) = self.sup.index(&name) else { continue };
                    tracing::info!(service = %name, "{}: {}", r.by, if step == Step::Restart { "restarting with its new definition" } else { "starting (new in the config)" });
                    match step {
                        Step::Restart => self.apply(AppEvent::Restart(Some(name))),
                        Step::Start => self.apply(AppEvent::Service(idx, Event::Up)),
                    }
                }
                None => {
                    let r = self.reloading.take().expect("checked above");
                    let rep = &r.report;
                    tracing::info!(
                        "{}: done — restarted [{}], started [{}], stopped [{}], unchanged [{}], not running [{}], sections [{}]",
                        r.by,
                        rep.restarted.join(", "),
                        rep.started.join(", "),
                        rep.stopped.join(", "),
                        rep.unchanged.join(", "),
                        rep.not_running.join(", "),
                        rep.sections.join(", ")
                    );
                    if let Some(reply) = r.reply {
                        let _ = reply.send(Response::Reloaded(r.report));
                    }
                    return;
                }
            }
        }
    }

    fn all_down(&self) -> bool {
        self.sup.services().iter().all(|m| matches!(m.phase(), Phase::Stopped | Phase::Failed))
    }

    fn answer_waiting_down(&mut self) {
        if !self.waiting_down.is_empty() && self.all_down() {
            for r in self.waiting_down.drain(..) {
                let _ = r.send(Response::Ok);
            }
        }
    }

    fn apply(&mut self, ev: AppEvent) {
        let acts = self.sup.on_event(Instant::now(), ev);
        self.execute(acts);
    }

    fn status(&self) -> StatusReport {
        StatusReport {
            app: self.config.app.name.clone(),
            daemon_pid: std::process::id(),
            service_mode: match self.store.mode() {
                Ok(caretaker_core::mode::Mode::Service(f)) => Some(f.reason),
                _ => None,
            },
            services: self.service_statuses(),
        }
    }

    fn service_statuses(&self) -> Vec<ServiceStatus> {
        let now = Instant::now();
        self.sup
            .services()
            .iter()
            .enumerate()
            .map(|(i, m)| ServiceStatus {
                name: m.name().to_string(),
                state: m.phase(),
                pid: m.pid(),
                uptime_seconds: m.started_at().map(|t| now.saturating_duration_since(t).as_secs()),
                restarts: m.restarts(),
                health: m.health(),
                last_exit: m.last_exit().map(|e| e.to_string()),
                reason: m.reason().map(str::to_string),
                waiting: self.sup.is_waiting(i),
            })
            .collect()
    }

    /// Carries out actions; spawning feeds its outcome back, which may yield more actions.
    fn execute(&mut self, actions: Vec<(usize, Action)>) {
        let mut queue: std::collections::VecDeque<(usize, Action)> = actions.into();
        while let Some((idx, action)) = queue.pop_front() {
            let svc = self.config.services[idx].clone();
            match action {
                Action::Spawn => {
                    let ev = match self.spawn(idx, &svc) {
                        Ok(pid) => Event::Spawned { pid },
                        Err(SpawnError::Permanent(error)) => {
                            tracing::error!(service = %svc.name, "cannot start: {error}");
                            self.service_log(idx, &format!("cannot start: {error}"));
                            Event::CannotStart { error }
                        }
                        Err(SpawnError::Transient(e)) => {
                            tracing::error!(service = %svc.name, "cannot start: {e:#}");
                            self.service_log(idx, &format!("cannot start: {e:#}"));
                            Event::SpawnFailed { error: format!("{e:#}") }
                        }
                    };
                    queue.extend(self.sup.on_event(Instant::now(), AppEvent::Service(idx, ev)));
                    self.save_records();
                }
                Action::Terminate => {
                    if let Some(c) = self.children[idx] {
                        tracing::info!(service = %svc.name, pid = c.pgid, "stopping (SIGTERM to the process group)");
                        process::signal_group(c.pgid, libc::SIGTERM);
                    }
                }
                Action::Kill => {
                    if let Some(c) = self.children[idx] {
                        if process::signal_group(c.pgid, libc::SIGKILL)
                            && self.sup.services()[idx].phase() == Phase::Stopping
                        {
                            tracing::warn!(service = %svc.name, "did not stop within {:?}; killed", svc.stop_timeout);
                        }
                        if self.sup.services()[idx].pid().is_none() {
                            self.children[idx] = None;
                        }
                    }
                }
                Action::Probe => self.probe(idx, &svc),
                Action::Failed { reason } => {
                    tracing::error!(service = %svc.name, "failed: {reason}{}", if svc.critical { "; the app is in service mode" } else { "" });
                    self.service_log(idx, &format!("failed: {reason}"));
                    let _ = self.store.record_event("service_failed", &svc.name, &reason);
                    // `critical: false` (a worker): shown failed and alerted on, the site serves on.
                    if !svc.critical {
                        continue;
                    }
                    // The failed flag stays until `caretaker reset-failed`: the front door shows
                    // the service page and alerting fires, even if a later `up` gets it running.
                    let why = crate::appmode::service_failed_reason(&svc.name, &reason);
                    match crate::appmode::record_failed(&self.store, &self.config, &why) {
                        // The front door switches now, not at the next poll of the store.
                        Ok(mode) => crate::web::publish_mode(&self.mode, mode),
                        Err(e) => tracing::error!("cannot record service mode: {e:#}"),
                    }
                }
            }
        }
    }

    fn launch(&self, command: &caretaker_core::config::Command, svc: Option<&Service>) -> Result<Launch> {
        let app = &self.config.app;
        let app_cwd = working_dir(app, &self.config_path);
        let cwd = svc.and_then(|s| s.working_dir.clone()).unwrap_or(app_cwd.clone());
        let env = app_env(app, svc.map(|s| &s.env), &app_cwd)?;
        let user = match svc.and_then(|s| s.user.as_deref()).or(app.user.as_deref()) {
            Some(name) => Some(process::lookup_user(name).map_err(anyhow::Error::msg)?),
            None => None,
        };
        Ok(Launch { argv: command.argv(), env, cwd, user })
    }

    fn spawn(&mut self, idx: usize, svc: &Service) -> Result<u32, SpawnError> {
        // Checked first: env files are read relative to the working directory.
        let cwd = svc.working_dir.clone().unwrap_or_else(|| working_dir(&self.config.app, &self.config_path));
        if !cwd.is_dir() {
            return Err(SpawnError::Permanent(crate::appenv::missing_working_dir(&cwd, &self.state_dir)));
        }
        // An env file or user that cannot be had stays so until the operator acts.
        let launch = self.launch(&svc.command, Some(svc)).map_err(|e| SpawnError::Permanent(format!("{e:#}")))?;
        let mut cmd = process::command(&launch);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = tokio::process::Command::from(cmd).spawn().map_err(|e| {
            let program = &launch.argv[0];
            match e.kind() {
                std::io::ErrorKind::NotFound if !launch.cwd.is_dir() => {
                    SpawnError::Permanent(crate::appenv::missing_working_dir(&launch.cwd, &self.state_dir))
                }
                std::io::ErrorKind::NotFound => SpawnError::Permanent(format!(
                    "program `{program}` not found (in {} or on the PATH): check the service's `command`",
                    launch.cwd.display()
                )),
                std::io::ErrorKind::PermissionDenied => SpawnError::Permanent(format!(
                    "program `{program}` cannot be run: permission denied (is it executable, and may the app's user run it?)"
                )),
                _ => SpawnError::Transient(
                    anyhow::Error::new(e).context(format!("running {program} in {}", launch.cwd.display())),
                ),
            }
        })?;
        let pid = child.id().ok_or_else(|| SpawnError::Transient(anyhow::anyhow!("the new process has no pid")))?;
        let start_ticks = process::stat(pid).map(|s| s.start_ticks).unwrap_or(0);
        self.children[idx] = Some(Child { pgid: pid, start_ticks });
        let generation = self.sup.services()[idx].generation();
        tracing::info!(service = %svc.name, pid, "started: {}", svc.command);
        self.service_log(idx, &format!("started (pid {pid}): {}", svc.command));
        let mut pumps = Vec::new();
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(out, "out", self.logs[idx].clone())));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(err, "err", self.logs[idx].clone())));
        }
        let tx = self.tx.clone();
        let name = svc.name.clone();
        tokio::spawn(async move {
            use std::os::unix::process::ExitStatusExt;
            let exit = match child.wait().await {
                Ok(st) => match st.code() {
                    Some(c) => Exit::Code(c),
                    None => Exit::Signal(st.signal().unwrap_or(0)),
                },
                Err(_) => Exit::Code(-1),
            };
            // The last output comes before the exit in the log; but a grandchild holding the
            // pipe open must not delay the exit's handling.
            let _ = tokio::time::timeout(Duration::from_millis(200), async {
                for p in pumps {
                    let _ = p.await;
                }
            })
            .await;
            let _ = tx.send(Msg::Exited { name, generation, exit });
        });
        Ok(pid)
    }

    fn probe(&mut self, idx: usize, svc: &Service) {
        let Some(h) = &svc.health else { return };
        let generation = self.sup.services()[idx].generation();
        let tx = self.tx.clone();
        let timeout = h.timeout;
        let name = svc.name.clone();
        let send = move |result| {
            let _ = tx.send(Msg::Probed { name, generation, result });
        };
        match h.probe.clone() {
            Probe::Http(http) => {
                tokio::spawn(async move { send(caretaker_supervisor::probe::http(&http, timeout).await) });
            }
            Probe::Tcp { address } => {
                tokio::spawn(async move { send(caretaker_supervisor::probe::tcp(&address, timeout).await) });
            }
            Probe::Command { command } => match self.launch(&command, Some(svc)) {
                Ok(launch) => {
                    let cmd = process::command(&launch);
                    tokio::spawn(async move { send(caretaker_supervisor::probe::command(cmd, timeout).await) });
                }
                Err(e) => send(Err(format!("{e:#}"))),
            },
        }
    }

    /// A line from caretaker itself in the service's log, so the log tells the whole story.
    fn service_log(&self, idx: usize, line: &str) {
        if let Ok(mut l) = self.logs[idx].lock() {
            let _ = l.write_line("caretaker", line);
        }
    }

    fn save_records(&self) {
        let records: Vec<Record> = self
            .sup
            .services()
            .iter()
            .zip(&self.children)
            .filter_map(|(m, c)| {
                let c = (*c)?;
                Some(Record { service: m.name().to_string(), pid: c.pgid, start_ticks: c.start_ticks })
            })
            .collect();
        if let Err(e) = self.records.save(&records) {
            tracing::error!(
                "cannot write {}: {e}",
                caretaker_state::Layout::new(&self.state_dir).service_records().display()
            );
        }
    }
}

/// Stops the process group of a service a reload removed: SIGTERM now, SIGKILL after its
/// `stop_timeout` if the same process (pid and start time) still leads it.
fn retire(c: Child, stop_timeout: Duration, name: String) {
    process::signal_group(c.pgid, libc::SIGTERM);
    tokio::spawn(async move {
        let deadline = Instant::now() + stop_timeout;
        let same = || process::stat(c.pgid).is_some_and(|s| s.start_ticks == c.start_ticks);
        while Instant::now() < deadline && same() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if same() && process::signal_group(c.pgid, libc::SIGKILL) {
            tracing::warn!(service = %name, "did not stop within {stop_timeout:?}; killed");
        }
    });
}

/// Why a start failed: `Permanent` fails the service at once (retrying cannot help), a
/// `Transient` one (out of processes, ...) is retried as a crash.
enum SpawnError {
    Permanent(String),
    Transient(anyhow::Error),
}

/// Copies a service's output into its log, line by line (invalid UTF-8 replaced).
async fn pump(stream: impl AsyncRead + Unpin, tag: &'static str, log: Arc<Mutex<RotatingLog>>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                if let Ok(mut l) = log.lock() {
                    let _ = l.write_line(tag, line);
                }
            }
        }
    }
}
