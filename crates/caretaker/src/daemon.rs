//! The daemon's event loop: owns the [`Supervisor`] (the decisions) in one task and carries
//! out its actions — spawning, signalling, probing, logging — through the supervisor crate's
//! effects. Everything that happens comes back as a [`Msg`] on one channel, so the state is
//! never shared and needs no lock.
//!
//! Around that loop run, as their own tasks (docs/daemon.md):
//! - the HTTP listener on `http.listen` (`/metrics`, the status page: [`crate::web`]);
//! - the front door on `front_door.listen`, following the app's mode: pushed at once when this
//!   daemon sets service mode, and when another process switches it (`appmode` sends
//!   `ModeChanged` and waits for the answer); read from the state store every second as well;
//! - alert evaluation every `EVALUATION_INTERVAL` with the supervisor's live service view;
//! - the scheduler, which runs due tasks as child processes ([`crate::scheduled`]).
//!
//! Each of those has its own state-store connection and does its SQLite work on the blocking
//! pool, so the event loop never waits for it. The loop publishes the services' view on a
//! `watch` channel after every event.
//!
//! Shutdown (SIGTERM, Ctrl-C, `down --daemon`) stops the services in reverse dependency order,
//! waits for them, clears the record of running services and removes the socket.

use crate::appenv::{app_env, working_dir};
use crate::context::AppContext;
use crate::web::{ServicesView, WebContext};
use anyhow::{Context, Result};
use caretaker_core::alert::ServiceObs;
use caretaker_core::config::{Config, Probe, Service};
use caretaker_core::mode::Mode;
use caretaker_core::reload::ReloadPlan;
use caretaker_state::Store;
use caretaker_supervisor::logfile::{self, RotatingLog};
use caretaker_supervisor::machine::{Action, AppEvent, Event, Exit, Phase, ServiceSpec, Supervisor};
use caretaker_supervisor::process::{self, Launch, Record, Records};
use caretaker_supervisor::protocol::{ReloadReport, Request, Response, ServiceStatus, StatusReport, SOCKET_NAME};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};

/// Everything that reaches the event loop.
enum Msg {
    // By name, not index: a reload renumbers the services.
    Exited { name: String, generation: u64, exit: Exit },
    Probed { name: String, generation: u64, result: Result<(), String> },
    Control { request: Request, reply: oneshot::Sender<Response> },
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

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// Runs the daemon until it is told to exit. The caller holds the daemon lock.
pub fn run(app: AppContext, allow_world_readable_config: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    let result = rt.block_on(run_async(app, allow_world_readable_config));
    // An alert evaluation still delivering (SMTP timeouts) must not hold the exit up for long.
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn run_async(app: AppContext, allow_world_readable_config: bool) -> Result<()> {
    // SIGHUP's default action ends the process: catch it from the start (tokio keeps the
    // handler installed); one that comes before the event loop listens is not acted on.
    let _hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // Bind the listeners first: a port in use ends the daemon before anything starts.
    let listeners = Listeners::bind(&app.config).await?;
    if app.config.compose.is_some() {
        return crate::compose_daemon::run(app, allow_world_readable_config, listeners).await;
    }
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

    let (tx, mut rx) = mpsc::unbounded_channel();
    let around = Surroundings::start(&app, allow_world_readable_config, listeners, tx.clone(), |request, reply| {
        Msg::Control { request, reply }
    })
    .await?;

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
    let mut around = around;
    tracing::info!(app = %d.config.app.name, pid = std::process::id(), socket = %around.socket.display(), "daemon started");
    if !resume_interrupted_job(allow_world_readable_config, &d.config_path, &d.store)? {
        d.apply(AppEvent::Up);
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        let deadline = d.sup.next_deadline();
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(msg) = rx.recv() => match msg {
                Msg::Control { request: Request::Reload, reply } => d.reload(&mut around, Some(reply), "reload").await,
                msg => d.handle(msg),
            },
            _ = sleep => {
                let acts = d.sup.tick(Instant::now());
                d.execute(acts);
            }
            _ = term.recv() => d.begin_exit("SIGTERM"),
            _ = int.recv() => d.begin_exit("SIGINT"),
            _ = hup.recv() => d.reload(&mut around, None, "SIGHUP").await,
        }
        d.step_reload();
        d.answer_waiting_down();
        d.publish_view();
        if d.exiting && d.all_down() {
            break;
        }
    }
    let _ = d.records.save(&[]);
    around.finish().await;
    Ok(())
}

/// The daemon's TCP listeners, bound before anything starts.
pub struct Listeners {
    http: tokio::net::TcpListener,
    front_door: Option<tokio::net::TcpListener>,
}

impl Listeners {
    async fn bind(config: &Config) -> Result<Listeners> {
        let http = crate::web::bind(&config.http.listen, "http.listen").await?;
        let front_door = match &config.front_door {
            Some(fd) => Some(crate::web::bind(&fd.listen, "front_door.listen").await?),
            None => None,
        };
        crate::listen::close_unused();
        Ok(Listeners { http, front_door })
    }
}

/// What runs around the supervisor, whichever runtime the app uses: the control socket, the
/// HTTP listener, the front door, the mode follower, alerts and the scheduler.
///
/// The control socket and the mode follower live as long as the daemon. The others follow
/// the config: a reload that changes any section but the services ends them and starts them
/// anew with the new config ([`Surroundings::prepare`], [`Surroundings::switch`]). A listener
/// whose address stayed the same keeps its socket (a duplicate is handed on, so it never
/// stops listening); a new address is bound before the old one is let go.
pub struct Surroundings {
    /// The services' view the runtime publishes after every event.
    pub view: watch::Sender<ServicesView>,
    /// The app's mode for the front door (the runtime pushes service mode at once).
    pub mode: watch::Sender<Mode>,
    pub socket: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: Tasks,
    state_dir: PathBuf,
    invocation: crate::scheduled::Invocation,
    /// The front door's certificate slot and TLS listener, for the daemon's life (docs/tls.md).
    pub tls: crate::tls::DaemonTls,
}

/// The tasks that follow the config, with the sockets they listen on (kept to hand on).
struct Tasks {
    shutdown: watch::Sender<bool>,
    http: std::net::TcpListener,
    front_door: Option<std::net::TcpListener>,
}

/// What a reload's new surroundings need, made before anything changes so that a failure
/// (a port in use, an unreadable status token file) refuses the reload.
pub struct Prepared {
    config: Arc<Config>,
    redactor: caretaker_core::config::Redactor,
    http: std::net::TcpListener,
    front_door: Option<std::net::TcpListener>,
    router: axum::Router,
}

impl Surroundings {
    /// Listens on the control socket (each request becomes `wrap(request, reply)` on `tx`) and
    /// starts the other tasks.
    pub async fn start<M: Send + 'static>(
        app: &AppContext,
        allow_world_readable_config: bool,
        listeners: Listeners,
        tx: mpsc::UnboundedSender<M>,
        wrap: fn(Request, oneshot::Sender<Response>) -> M,
    ) -> Result<Surroundings> {
        let state_dir = app.store.dir().to_path_buf();
        let sock = socket_path(&state_dir);
        // We hold the daemon lock, so a socket file left here belongs to a dead daemon.
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).with_context(|| format!("listening on {}", sock.display()))?;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
        tokio::spawn(accept_loop(listener, tx, wrap));

        let (shutdown_tx, shutdown) = watch::channel(false);
        let (view_tx, _) = watch::channel(ServicesView::default());
        let (mode_tx, _) = watch::channel(app.store.mode().unwrap_or(Mode::Normal));
        crate::web::follow_mode(
            caretaker_state::Store::open(&state_dir, app.redactor.clone())?,
            mode_tx.clone(),
            shutdown.clone(),
        );
        let invocation = crate::scheduled::Invocation {
            exe: std::env::current_exe().context("finding caretaker's own executable")?,
            config_path: std::path::absolute(&app.config_path).unwrap_or(app.config_path.clone()),
            state_dir: std::path::absolute(&state_dir).unwrap_or(state_dir.clone()),
            allow_world_readable_config,
        };
        let mut around = Surroundings {
            view: view_tx,
            mode: mode_tx,
            socket: sock,
            shutdown: shutdown_tx,
            // Replaced at once below.
            tasks: Tasks { shutdown: watch::channel(false).0, http: listeners.http.into_std()?, front_door: None },
            state_dir,
            invocation,
            tls: Default::default(),
        };
        let http = around.tasks.http.try_clone()?;
        let front_door = listeners.front_door.map(|l| l.into_std()).transpose()?;
        let prepared = around.prepared(&app.config, app.redactor.clone(), http, front_door)?;
        around.switch(prepared)?;
        Ok(around)
    }

    fn web_context(&self, config: Arc<Config>, redactor: caretaker_core::config::Redactor) -> WebContext {
        WebContext {
            config,
            state_dir: self.state_dir.clone(),
            redactor,
            services: self.view.subscribe(),
            mode: self.mode.subscribe(),
        }
    }

    fn prepared(
        &self,
        config: &Config,
        redactor: caretaker_core::config::Redactor,
        http: std::net::TcpListener,
        front_door: Option<std::net::TcpListener>,
    ) -> Result<Prepared> {
        let config = Arc::new(config.clone());
        let router = crate::web::router(&self.web_context(config.clone(), redactor.clone()))?;
        Ok(Prepared { config, redactor, http, front_door, router })
    }

    /// For a reload to `new` (from `old`): the listeners — the same sockets where the address
    /// stayed, new ones bound where it changed — and the HTTP routes. `Ok(None)`: nothing
    /// around the services changed.
    pub async fn prepare(&self, plan: &ReloadPlan, old: &Config, new: &Config) -> Result<Option<Prepared>> {
        if plan.sections.is_empty() {
            return Ok(None);
        }
        let http = if old.http.listen == new.http.listen {
            self.tasks.http.try_clone()?
        } else {
            crate::web::bind(&new.http.listen, "http.listen").await?.into_std()?
        };
        let front_door = match (&new.front_door, &old.front_door, &self.tasks.front_door) {
            (None, _, _) => None,
            (Some(n), Some(o), Some(l)) if n.listen == o.listen => Some(l.try_clone()?),
            (Some(n), _, _) => Some(crate::web::bind(&n.listen, "front_door.listen").await?.into_std()?),
        };
        let redactor = caretaker_core::config::Redactor::new(new.secrets());
        Ok(Some(self.prepared(new, redactor, http, front_door)?))
    }

    /// Ends the tasks of the old config and starts those of the new one.
    pub fn switch(&mut self, p: Prepared) -> Result<()> {
        let _ = self.tasks.shutdown.send(true);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let config = p.config;
        let open_store = || caretaker_state::Store::open(&self.state_dir, p.redactor.clone());
        let web = self.web_context(config.clone(), p.redactor.clone());
        let http = tokio::net::TcpListener::from_std(p.http.try_clone()?)?;
        let http_addr = http.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tokio::spawn(crate::web::serve_http(http, p.router, crate::web::limits(&web), shutdown.clone()));
        tracing::info!("http listener on {http_addr} (GET /metrics)");
        if let (Some(listener), Some(fd)) = (&p.front_door, &config.front_door) {
            let settings = caretaker_frontdoor::Settings::from_config(&config.app.name, fd);
            let dup = listener.try_clone()?;
            // A socket systemd passed stays one in its duplicate (the front door stops
            // accepting on SIGTERM and leaves it to systemd).
            crate::listen::note_duplicate(listener.as_raw_fd(), dup.as_raw_fd());
            let listener = tokio::net::TcpListener::from_std(dup)?;
            let tls = self.tls.front_door(&config, shutdown.clone())?;
            crate::web::spawn_front_door(settings, listener, tls, self.mode.subscribe(), shutdown.clone())?;
            tracing::info!("front door on {} → {}", fd.listen, fd.upstream);
        }
        crate::certs::spawn(&config, &self.state_dir, p.redactor.clone(), self.tls.state(), shutdown.clone());
        tokio::spawn(alerts_loop(config.clone(), open_store()?, self.view.subscribe(), shutdown.clone()));
        let invocation = crate::scheduled::Invocation {
            exe: self.invocation.exe.clone(),
            config_path: self.invocation.config_path.clone(),
            state_dir: self.invocation.state_dir.clone(),
            allow_world_readable_config: self.invocation.allow_world_readable_config,
        };
        tokio::spawn(crate::scheduled::run(config.clone(), open_store()?, invocation, shutdown.clone()));
        self.tasks = Tasks { shutdown: shutdown_tx, http: p.http, front_door: p.front_door };
        Ok(())
    }

    /// Ends the tasks and removes the socket, once the services are stopped.
    pub async fn finish(self) {
        let _ = self.tasks.shutdown.send(true);
        let _ = self.shutdown.send(true);
        let _ = std::fs::remove_file(&self.socket);
        // Let the connection tasks deliver the answers to `down --daemon` before the runtime ends.
        tokio::time::sleep(Duration::from_millis(100)).await;
        tracing::info!("daemon stopped");
    }
}

/// Reads the config file again for a reload. `Err`: every problem, rendered as `caretaker
/// config check` shows them. Beyond validation, what a running daemon cannot change is
/// refused: the app's name, its state directory, and switching between the built-in
/// supervisor and compose.
pub fn read_new_config(path: &Path, allow_world_readable: bool, running: &Config) -> Result<Config, String> {
    let file = crate::context::read_config(path, allow_world_readable).map_err(|e| format!("{e:#}"))?;
    let loaded = file.result.map_err(|d| d.render(&file.text))?;
    if !loaded.warnings.is_empty() {
        tracing::warn!("the new config:\n{}", loaded.warnings.render(&file.text));
    }
    let new = loaded.config;
    let mut problems = Vec::new();
    if new.app.name != running.app.name {
        problems.push(format!(
            "app.name changed ({} → {}): a running daemon keeps its app",
            running.app.name, new.app.name
        ));
    }
    if new.state_dir != running.state_dir {
        problems.push("state_dir changed: a running daemon keeps its state directory".to_string());
    }
    if new.compose.is_some() != running.compose.is_some() {
        problems.push("the app switched between `services` and `compose`: that takes a daemon restart".to_string());
    }
    if let (Some(a), Some(b)) = (&running.compose, &new.compose) {
        let project = |c: &caretaker_core::config::Compose| {
            serde_json::to_value((&c.files, &c.project, &c.project_dir, &c.cli)).unwrap_or_default()
        };
        if project(a) != project(b) {
            problems.push(
                "compose.files, compose.project, compose.project_dir or compose.cli changed: that takes a daemon restart"
                    .to_string(),
            );
        }
    }
    if problems.is_empty() {
        Ok(new)
    } else {
        Err(format!(
            "{}: {}\n(restart the daemon to take such a change: `systemctl restart`, or `caretaker down --daemon` then `caretaker up`)",
            path.display(),
            problems.join("; ")
        ))
    }
}

async fn accept_loop<M: Send + 'static>(
    listener: UnixListener,
    tx: mpsc::UnboundedSender<M>,
    wrap: fn(Request, oneshot::Sender<Response>) -> M,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            let response = match serde_json::from_str::<Request>(&line) {
                Ok(request) => {
                    let (reply, answer) = oneshot::channel();
                    if tx.send(wrap(request, reply)).is_err() {
                        return;
                    }
                    match answer.await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
                Err(e) => Response::Error { message: format!("bad request: {e}") },
            };
            let mut text = serde_json::to_string(&response).unwrap_or_default();
            text.push('\n');
            let _ = write.write_all(text.as_bytes()).await;
        });
    }
}

/// Evaluates the alert rules every `EVALUATION_INTERVAL` (the first time one interval after
/// the start, when the services had time to come up), on the blocking pool with its own store.
async fn alerts_loop(
    config: Arc<Config>,
    store: caretaker_state::Store,
    services: watch::Receiver<ServicesView>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = caretaker_observe::EVALUATION_INTERVAL;
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut store = Some(store);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let Some(mut s) = store.take() else { return };
        let obs = services.borrow().observations.clone();
        let cfg = config.clone();
        let done = tokio::task::spawn_blocking(move || {
            let r = caretaker_observe::evaluate_once(&cfg, &mut s, Some(obs), jiff::Timestamp::now());
            (s, r)
        })
        .await;
        match done {
            Ok((s, r)) => {
                store = Some(s);
                match r {
                    Ok(report) => {
                        if !report.evaluation.notifications.is_empty() {
                            tracing::info!(
                                "alerts: {} notification(s), {} delivered, {} failed",
                                report.evaluation.notifications.len(),
                                report.delivered,
                                report.failures.len()
                            );
                        }
                    }
                    Err(e) => tracing::warn!("alerts: cannot evaluate: {e}"),
                }
            }
            Err(e) => {
                tracing::error!("alert evaluation failed: {e}; alerts are no longer evaluated");
                return;
            }
        }
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

    fn begin_exit(&mut self, why: &str) {
        tracing::info!("{why}: stopping services, then exiting");
        self.exiting = true;
        self.apply(AppEvent::Down);
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
            Msg::Control { request, reply } => self.control(request, reply),
        }
    }

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
            return Err(SpawnError::Permanent(missing_working_dir(&cwd, &self.state_dir)));
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
                    SpawnError::Permanent(missing_working_dir(&launch.cwd, &self.state_dir))
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
            tracing::error!("cannot write {}: {e}", self.state_dir.join("services.json").display());
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

/// The message for a working directory that does not exist, with the next step: under the
/// release pointer (`<state dir>/current`) it means no release is deployed yet.
pub fn missing_working_dir(cwd: &Path, state_dir: &Path) -> String {
    let current = crate::update::current_link(state_dir);
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if abs(cwd).starts_with(abs(&current)) && std::fs::symlink_metadata(&current).is_err() {
        format!(
            "working directory {} does not exist: no release is deployed yet — run `caretaker update` first",
            cwd.display()
        )
    } else {
        format!("working directory {} does not exist: create it, or correct `working_dir` in the config", cwd.display())
    }
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

/// For both daemons, on start: when an update or a recover was interrupted, start the process
/// that finishes it and return `true`; then the daemon leaves starting the services to it. An
/// update that a crash interrupted is finished (forward or back) by `update --resume`, which
/// stops and starts the services through this daemon; starting them here could run a release
/// on half-migrated data.
pub(crate) fn resume_interrupted_job(
    allow_world_readable_config: bool,
    config_path: &std::path::Path,
    store: &Store,
) -> Result<bool> {
    if crate::update::spawn_resume_if_interrupted(allow_world_readable_config, config_path, store)? {
        tracing::warn!("an update was interrupted; `caretaker update --resume` finishes it before the app starts");
        Ok(true)
    } else if crate::commands::recover::spawn_resume_if_interrupted(allow_world_readable_config, config_path, store)? {
        tracing::warn!("a recover was interrupted; `caretaker recover` finishes it and starts the app");
        Ok(true)
    } else {
        Ok(false)
    }
}
