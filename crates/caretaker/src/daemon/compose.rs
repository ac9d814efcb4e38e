//! The daemon's event loop for a compose app (docs/compose.md): owns the
//! [`ComposeWatch`] (the decisions) in one task and carries out its actions. Docker runs the
//! containers; the daemon observes them every second (`docker ps` + `docker inspect` on the
//! blocking pool), runs caretaker's health probes, and runs compose operations (`up`, `stop`,
//! `restart`) one at a time on a worker task, in the order they were asked for. Everything
//! comes back as a [`Msg`] on one channel.
//!
//! caretaker's own notes about each service (started, stopped, crashed, failed — with the
//! container's last lines when it fails) go to `<state dir>/logs/<service>.log` as for the
//! built-in supervisor; the app's output stays in docker (`caretaker logs` shows it).
//!
//! A daemon that was SIGKILLed leaves the containers running under docker; the next one
//! *adopts* them (it only observes; there is nothing of ours to replace), counting restarts
//! from what it first sees. On SIGTERM or `down --daemon` the project is stopped, as the
//! built-in supervisor stops its processes.

use super::{run_loop, Listeners, Signal, SupervisionEngine, Surroundings};
use crate::context::AppContext;
use crate::web::ServicesView;
use anyhow::Result;
use caretaker_compose::model::{Container, ProjectModel};
use caretaker_compose::watch::{Action, ComposeWatch, Op, Request as WatchRequest};
use caretaker_compose::{Docker, Project};
use caretaker_core::alert::ServiceObs;
use caretaker_core::config::{Config, Probe};
use caretaker_state::Store;
use caretaker_supervisor::logfile::{self, RotatingLog};
use caretaker_supervisor::machine::{Health, Phase};
use caretaker_supervisor::protocol::{ReloadReport, Request, Response, StatusReport};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How often the project's containers are observed.
pub const OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

enum Msg {
    Observed {
        seq: u64,
        result: Result<Vec<Container>, String>,
    },
    OpDone {
        id: u64,
        op: Op,
        result: Result<(), String>,
        /// The compose file as read before `up` (it may have changed with a release).
        model: Option<ProjectModel>,
        seq: u64,
        containers: Vec<Container>,
    },
    /// A probe of the service named `service` (indices change when the compose file does).
    Probed {
        service: String,
        generation: u64,
        result: Result<(), String>,
    },
}

/// A compose operation for the worker.
struct Job {
    id: u64,
    op: Op,
}

struct ComposeDaemon {
    config: Config,
    state_dir: PathBuf,
    docker: Docker,
    logs: std::collections::HashMap<String, RotatingLog>,
    config_path: PathBuf,
    store: Store,
    project: Arc<Project>,
    watch: ComposeWatch,
    tx: mpsc::UnboundedSender<Msg>,
    ops: mpsc::UnboundedSender<Job>,
    next_op: u64,
    /// Replies sent when the operation with this id has ended.
    replies: Vec<(u64, oneshot::Sender<Response>)>,
    /// The last operation that ended.
    done_op: u64,
    /// Exit once the operation with this id (stopping the project) has ended.
    exit_after: Option<u64>,
    /// The services an update keeps running, from the compose file last read.
    keep: Vec<String>,
    /// The compose file last read (a reload works out `keep` again from it).
    model: caretaker_compose::model::ProjectModel,
    allow_world_readable_config: bool,
    down_since: Vec<(String, Option<jiff::Timestamp>)>,
    view: watch::Sender<ServicesView>,
    mode: watch::Sender<caretaker_core::mode::Mode>,
    /// Ends the observer once the loop ended.
    stop_observing: watch::Sender<bool>,
}

/// The compose watcher's engine (the compose runtime's) in the one daemon loop.
pub(super) async fn run(
    app: AppContext,
    allow_world_readable_config: bool,
    listeners: Listeners,
    signals: mpsc::UnboundedReceiver<Signal>,
) -> Result<()> {
    let project = crate::compose::project(&app.config, &app.config_path, &app.redactor)?;
    let docker = Docker::new(crate::compose::redact(&app.redactor));
    let services = {
        let p = project.clone();
        tokio::task::spawn_blocking(move || p.model()).await??
    };
    for n in crate::compose::unknown_services(&app.config, &services) {
        tracing::warn!("the config names compose service `{n}`, which the compose file does not define");
    }
    tracing::info!(
        "compose project {} ({} {}) in {}: services {}",
        project.name,
        project.cli.name(),
        project.cli.version,
        project.dir.display(),
        services.service_names().join(", ")
    );
    let watch = ComposeWatch::new(crate::compose::watch_specs(&app.config, &services.service_names()));

    let (tx, rx) = mpsc::unbounded_channel();
    let (around, control) = Surroundings::start(&app, allow_world_readable_config, listeners).await?;
    let project = Arc::new(project);
    let seq = Arc::new(AtomicU64::new(1));
    let (ops_tx, ops_rx) = mpsc::unbounded_channel();
    tokio::spawn(worker(project.clone(), docker.clone(), app.config.clone(), seq.clone(), ops_rx, tx.clone()));
    let (stop_observing, observing) = watch::channel(false);
    tokio::spawn(observer(project.name.clone(), docker.clone(), seq, tx.clone(), observing));

    let now = jiff::Timestamp::now();
    let keep = crate::compose::keep_running(&app.config, &services);
    let logs_dir = logfile::dir(app.store.dir());
    std::fs::create_dir_all(&logs_dir)?;
    let _ = std::fs::set_permissions(&logs_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let mut d = ComposeDaemon {
        state_dir: app.store.dir().to_path_buf(),
        docker: docker.clone(),
        logs: Default::default(),
        down_since: watch.names().into_iter().map(|n| (n, Some(now))).collect(),
        config: app.config,
        config_path: app.config_path,
        store: app.store,
        project,
        watch,
        tx,
        ops: ops_tx,
        next_op: 0,
        replies: Vec::new(),
        done_op: 0,
        exit_after: None,
        keep,
        model: services,
        allow_world_readable_config,
        view: around.view.clone(),
        mode: around.mode.clone(),
        stop_observing,
    };
    tracing::info!(app = %d.config.app.name, pid = std::process::id(), socket = %around.socket.display(), "daemon started (compose)");
    if !super::resume_interrupted_job(allow_world_readable_config, &d.config_path, &d.store)? {
        let acts = d.watch.request(WatchRequest::Up);
        d.execute(acts);
    }
    run_loop(d, rx, around, control, signals).await
}

impl SupervisionEngine for ComposeDaemon {
    type Msg = Msg;

    fn control(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        if self.exit_after.is_some() && !matches!(request, Request::Status | Request::ModeChanged) {
            let _ = reply.send(Response::Error { message: "the daemon is shutting down".into() });
            return;
        }
        match request {
            Request::Status => {
                let _ = reply.send(Response::Status(self.status()));
            }
            Request::ModeChanged => {
                let _ = reply.send(crate::web::reload_mode(&self.store, &self.mode));
            }
            // Taken by the event loop (it awaits the listeners); never reaches here.
            Request::Reload => {
                let _ = reply.send(Response::Error { message: "reload is handled by the event loop".into() });
            }
            Request::Up => {
                let acts = self.watch.request(WatchRequest::Up);
                self.execute(acts);
                let _ = reply.send(Response::Ok);
            }
            Request::Restart { service } => {
                if let Some(s) = &service {
                    if self.watch.index(s).is_none() {
                        let _ = reply.send(Response::Error { message: format!("no service named {s}") });
                        return;
                    }
                }
                let acts = self.watch.request(WatchRequest::Restart(service));
                self.execute(acts);
                let _ = reply.send(Response::Ok);
            }
            Request::Down { exit_daemon } => {
                let acts = self.watch.request(WatchRequest::Down);
                self.execute_replying(acts, reply);
                if exit_daemon {
                    self.exit_after = Some(self.next_op);
                }
            }
            Request::StopApp => {
                let keep = self.keep.clone();
                tracing::info!(
                    "stopping the app's services (kept running: {})",
                    if keep.is_empty() { "none".into() } else { keep.join(", ") }
                );
                let acts = self.watch.request(WatchRequest::StopExcept(keep));
                if acts.is_empty() {
                    let _ = reply.send(Response::Ok);
                    return;
                }
                self.execute_replying(acts, reply);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.watch.next_deadline()
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Observed { seq, result } => {
                if let Ok(containers) = result {
                    let before = self.phases();
                    let acts = self.watch.observed(Instant::now(), seq, &containers);
                    self.log_changes(&before);
                    self.execute(acts);
                }
            }
            Msg::OpDone { id, op, result, model, seq, containers } => {
                self.done_op = self.done_op.max(id);
                match &result {
                    Ok(()) => tracing::info!("compose {op:?} done"),
                    Err(e) => tracing::error!("compose {op:?} failed: {e}"),
                }
                if let Some(m) = model {
                    self.keep = crate::compose::keep_running(&self.config, &m);
                    self.model = m.clone();
                    let names = m.service_names();
                    if names != self.watch.names() {
                        tracing::info!("compose services: {}", names.join(", "));
                        self.watch.sync_services(crate::compose::watch_specs(&self.config, &names));
                        let now = jiff::Timestamp::now();
                        self.down_since.retain(|(n, _)| names.contains(n));
                        for n in names {
                            if !self.down_since.iter().any(|(m, _)| *m == n) {
                                self.down_since.push((n, Some(now)));
                            }
                        }
                    }
                }
                let before = self.phases();
                let acts = self.watch.op_done(Instant::now(), &op, result.clone(), seq, &containers);
                self.log_changes(&before);
                self.execute(acts);
                let (mine, rest): (Vec<_>, Vec<_>) = self.replies.drain(..).partition(|(i, _)| *i == id);
                self.replies = rest;
                for (_, r) in mine {
                    let _ = r.send(match &result {
                        Ok(()) => Response::Ok,
                        Err(e) => Response::Error { message: e.clone() },
                    });
                }
            }
            Msg::Probed { service, generation, result } => {
                let Some(i) = self.watch.index(&service) else { return };
                let (ok, detail) = match result {
                    Ok(()) => (true, String::new()),
                    Err(e) => (false, e),
                };
                let before = self.watch.health(i);
                let acts = self.watch.probed(Instant::now(), i, generation, ok, detail.clone());
                if self.watch.health(i) != before {
                    let h = self.watch.health(i);
                    tracing::info!(service = %service, "health: {h:?}{}{detail}", if ok { "" } else { ": " });
                }
                self.execute(acts);
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        let acts = self.watch.tick(now);
        self.execute(acts);
    }

    fn begin_exit(&mut self, why: &str) {
        if self.exit_after.is_some() {
            return;
        }
        tracing::info!("{why}: stopping the compose project, then exiting");
        let acts = self.watch.request(WatchRequest::Down);
        self.execute(acts);
        self.exit_after = Some(self.next_op);
    }

    /// A reload (`caretaker reload`, SIGHUP; docs/daemon.md): the listeners, alert rules,
    /// schedules and status page follow the new config, and so do caretaker's settings of the
    /// compose services (health checks, `critical`, `keep_running`). The containers are not
    /// recreated: their definitions are the compose file's, which `caretaker up` or an update
    /// applies.
    async fn reload(&mut self, around: &mut Surroundings, reply: Option<oneshot::Sender<Response>>, by: &str) {
        let answer = |reply: Option<oneshot::Sender<Response>>, r: Response| {
            if let Some(reply) = reply {
                let _ = reply.send(r);
            }
        };
        if self.exit_after.is_some() {
            tracing::warn!("{by}: not now, the daemon is shutting down");
            return answer(reply, Response::Error { message: "cannot reload: the daemon is shutting down".into() });
        }
        let new = match super::read_new_config(&self.config_path, self.allow_world_readable_config, &self.config) {
            Ok(c) => c,
            Err(problems) => {
                tracing::error!("{by}: the new config was refused, the running one stays:\n{problems}");
                return answer(reply, Response::Refused { problems });
            }
        };
        let plan = caretaker_core::reload::plan(&self.config, &new);
        let prepared = match around.prepare(&plan, &self.config, &new).await {
            Ok(p) => p,
            Err(e) => {
                let problems = format!("{e:#}");
                tracing::error!("{by}: the new config was refused, the running one stays:\n{problems}");
                return answer(reply, Response::Refused { problems });
            }
        };
        let names = self.watch.names();
        self.watch.sync_services(crate::compose::watch_specs(&new, &names));
        // A service that just got a health check is probed at once (the loop ticks it).
        self.watch.schedule_probes(Instant::now());
        self.keep = crate::compose::keep_running(&new, &self.model);
        self.config = new;
        if let Some(p) = prepared {
            if let Err(e) = around.switch(p) {
                tracing::error!("{by}: cannot start the listeners, alerts and scheduler of the new config: {e:#}");
            }
        }
        let mut notes = Vec::new();
        if plan.sections.iter().any(|s| s == "compose") {
            notes.push("compose service settings apply now; containers are recreated from the compose file by `caretaker up` or an update".to_string());
        }
        let report = ReloadReport {
            unchanged: names,
            sections: plan.sections,
            rebound: plan.rebind,
            notes,
            ..Default::default()
        };
        tracing::info!("{by}: done — sections [{}]", report.sections.join(", "));
        answer(reply, Response::Reloaded(report));
    }

    fn after_event(&mut self) {
        self.publish_view();
    }

    fn done(&self) -> bool {
        self.exit_after.is_some_and(|id| self.done_op >= id)
    }

    fn finish(&mut self) {
        let _ = self.stop_observing.send(true);
    }
}

/// Observes the project's containers every [`OBSERVE_INTERVAL`].
async fn observer(
    project: String,
    docker: Docker,
    seq: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<Msg>,
    mut stop: watch::Receiver<bool>,
) {
    let mut complained = false;
    loop {
        let n = seq.fetch_add(1, Ordering::SeqCst);
        let (d, p) = (docker.clone(), project.clone());
        let result = match tokio::task::spawn_blocking(move || d.project_containers(&p)).await {
            Ok(Ok(c)) => {
                complained = false;
                Ok(c)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &result {
            if !complained {
                tracing::warn!("cannot observe the containers: {e}");
                complained = true;
            }
        }
        if tx.send(Msg::Observed { seq: n, result }).is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(OBSERVE_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Runs compose operations one at a time; each answer carries an observation made after it.
async fn worker(
    project: Arc<Project>,
    docker: Docker,
    config: Config,
    seq: Arc<AtomicU64>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    tx: mpsc::UnboundedSender<Msg>,
) {
    let stop_timeout = config.compose.as_ref().map(|c| c.stop_timeout).unwrap_or(Duration::from_secs(10));
    while let Some(job) = jobs.recv().await {
        let (p, d, n) = (project.clone(), docker.clone(), seq.clone());
        let outside = config.compose.clone();
        let op = job.op.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut log = |l: &str| tracing::debug!("compose: {l}");
            // The service list may have changed (another release): read it before `up`.
            let mut model = None;
            // `current` may now be a release made before `compose.outside_files` named a file.
            if let Some(c) = &outside {
                if let Err(e) = crate::compose::link_outside_files(c, &p.dir) {
                    tracing::warn!("{e:#}");
                }
            }
            let result = match &op {
                Op::Up(s) => p.model().and_then(|m| {
                    model = Some(m);
                    p.up(s, stop_timeout, &mut log)
                }),
                Op::Stop(s) => p.stop(s, stop_timeout, &mut log),
                Op::Restart(s) => p.restart(s, stop_timeout, &mut log).and_then(|_| p.up(s, stop_timeout, &mut log)),
            };
            let seq = n.fetch_add(1, Ordering::SeqCst);
            let containers = d.project_containers(&p.name).unwrap_or_default();
            (result.map_err(|e| e.to_string()), model, seq, containers)
        })
        .await;
        let msg = match done {
            Ok((result, model, seq, containers)) => {
                Msg::OpDone { id: job.id, op: job.op, result, model, seq, containers }
            }
            Err(e) => Msg::OpDone {
                id: job.id,
                op: job.op,
                result: Err(format!("the compose operation panicked: {e}")),
                model: None,
                seq: 0,
                containers: Vec::new(),
            },
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

impl ComposeDaemon {
    fn phases(&self) -> Vec<Phase> {
        (0..self.watch.names().len()).map(|i| self.watch.phase(i)).collect()
    }

    fn log_changes(&mut self, before: &[Phase]) {
        for (i, name) in self.watch.names().into_iter().enumerate() {
            let now = self.watch.phase(i);
            if before.get(i) != Some(&now) {
                tracing::info!(service = %name, "{now}");
                let st = &self.watch.statuses(jiff::Timestamp::now())[i];
                let why = st.reason.clone().map(|r| format!(": {r}")).unwrap_or_default();
                self.note(&name, "caretaker", &format!("{now}{why}"));
            }
        }
    }

    /// A line in caretaker's log of the service.
    fn note(&mut self, service: &str, tag: &str, line: &str) {
        if !self.logs.contains_key(service) {
            let p = logfile::path(&self.state_dir, service);
            match RotatingLog::open(&p, self.config.logs.max_size_bytes, self.config.logs.keep) {
                Ok(l) => {
                    self.logs.insert(service.to_string(), l);
                }
                Err(e) => {
                    tracing::warn!("cannot open {}: {e}", p.display());
                    return;
                }
            }
        }
        if let Some(l) = self.logs.get_mut(service) {
            let _ = l.write_line(tag, line);
        }
    }

    /// Executes actions; the first operation among them answers `reply` when it ends.
    fn execute_replying(&mut self, actions: Vec<Action>, reply: oneshot::Sender<Response>) {
        let mut reply = Some(reply);
        for a in actions {
            if let (Action::Run(_), Some(r)) = (&a, reply.take()) {
                self.replies.push((self.next_op + 1, r));
            }
            self.execute(vec![a]);
        }
        if let Some(r) = reply {
            let _ = r.send(Response::Ok);
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Run(op) => {
                    self.next_op += 1;
                    tracing::info!("compose {op:?}");
                    let _ = self.ops.send(Job { id: self.next_op, op });
                }
                Action::Probe { service, generation } => self.probe(service, generation),
                Action::Failed { service, reason } => {
                    let name = self.watch.names()[service].clone();
                    let critical = self.config.service_is_critical(&name);
                    tracing::error!(
                        service = %name,
                        "failed: {reason}; {}",
                        if critical { "the app is in service mode" } else { "not critical: the site keeps serving" }
                    );
                    // What the container said last goes next to the verdict, so `up` can show it.
                    if let Some(id) = self.watch.container(service).map(|c| c.id.clone()) {
                        for (tag, line) in self.docker.container_logs(&id, 15).unwrap_or_default() {
                            self.note(&name, tag, &line);
                        }
                    }
                    self.note(&name, "caretaker", &format!("failed: {reason}"));
                    let _ = self.store.record_event("service_failed", &name, &reason);
                    // A non-critical service (`critical: false`, a worker) is shown failed and
                    // alerted on (`service_down`), but the front door keeps serving.
                    if !critical {
                        continue;
                    }
                    let why = crate::appmode::service_failed_reason(&name, &reason);
                    match crate::appmode::record_failed(&self.store, &self.config, &why) {
                        Ok(mode) => crate::web::publish_mode(&self.mode, mode),
                        Err(e) => tracing::error!("cannot record service mode: {e:#}"),
                    }
                }
            }
        }
    }

    fn probe(&mut self, service: usize, generation: u64) {
        let name = self.watch.names()[service].clone();
        let Some(h) = self.config.compose.as_ref().and_then(|c| c.service(&name)).and_then(|s| s.health.clone()) else {
            return;
        };
        let tx = self.tx.clone();
        let timeout = h.timeout;
        let probed = name.clone();
        let send = move |result| {
            let _ = tx.send(Msg::Probed { service: probed, generation, result });
        };
        match h.probe {
            Probe::Http(http) => {
                tokio::spawn(async move { send(caretaker_supervisor::probe::http(&http, timeout).await) });
            }
            Probe::Tcp { address } => {
                tokio::spawn(async move { send(caretaker_supervisor::probe::tcp(&address, timeout).await) });
            }
            // A command probe runs inside the service's container.
            Probe::Command { command } => {
                let cmd = self.project.exec_command(&name, &command.argv(), false);
                tokio::spawn(async move { send(caretaker_supervisor::probe::command(cmd, timeout).await) });
            }
        }
    }

    fn status(&self) -> StatusReport {
        StatusReport {
            app: self.config.app.name.clone(),
            daemon_pid: std::process::id(),
            service_mode: match self.store.mode() {
                Ok(caretaker_core::mode::Mode::Service(f)) => Some(f.reason),
                _ => None,
            },
            services: self.watch.statuses(jiff::Timestamp::now()),
        }
    }

    fn publish_view(&mut self) {
        let now = jiff::Timestamp::now();
        let statuses = self.watch.statuses(now);
        for s in &statuses {
            if let Some((_, since)) = self.down_since.iter_mut().find(|(n, _)| *n == s.name) {
                if s.state == Phase::Running {
                    *since = None;
                } else if since.is_none() {
                    *since = Some(now);
                }
            }
        }
        let observations = statuses
            .iter()
            .map(|s| ServiceObs {
                name: s.name.clone(),
                up: s.state == Phase::Running,
                down_since: self.down_since.iter().find(|(n, _)| *n == s.name).and_then(|(_, t)| *t),
                restarts: Some(s.restarts as u64),
                healthy: match s.health {
                    Health::None => None,
                    h => Some(h == Health::Healthy),
                },
            })
            .collect();
        self.view.send_replace(ServicesView { statuses, observations });
    }
}
