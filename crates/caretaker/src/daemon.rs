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

use crate::context::AppContext;
use crate::runtime::Engine;
use crate::web::{ServicesView, WebContext};
use anyhow::{Context, Result};
use caretaker_core::config::Config;
use caretaker_core::mode::Mode;
use caretaker_core::reload::ReloadPlan;
use caretaker_state::Store;
use caretaker_supervisor::protocol::{Request, Response};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};

mod compose;
mod process;

pub fn socket_path(state_dir: &Path) -> PathBuf {
    caretaker_state::Layout::new(state_dir).socket()
}

/// What the daemon hears from outside besides its control socket: the operator's signals
/// (SIGTERM, SIGINT, SIGHUP, forwarded by [`run`]) or a test's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Stop the services and exit; the name of the signal, for the log.
    Exit(&'static str),
    /// Read the config again (SIGHUP).
    Reload,
}

/// Runs the daemon until it is told to exit. The caller holds the daemon lock.
pub fn run(app: AppContext, allow_world_readable_config: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    let result = rt.block_on(async {
        // SIGHUP's default action ends the process: caught from the start, and acted on once the
        // loop runs.
        let signals = forward_signals()?;
        run_in_process(app, allow_world_readable_config, signals).await
    });
    // An alert evaluation still delivering (SMTP timeouts) must not hold the exit up for long.
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

/// SIGTERM, SIGINT and SIGHUP as [`Signal`]s.
fn forward_signals() -> Result<mpsc::UnboundedReceiver<Signal>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = mpsc::unbounded_channel();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let s = tokio::select! {
                _ = term.recv() => Signal::Exit("SIGTERM"),
                _ = int.recv() => Signal::Exit("SIGINT"),
                _ = hup.recv() => Signal::Reload,
            };
            if tx.send(s).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// The daemon, in this process, until `signals` says exit (or ends, which counts as an exit):
/// what `caretaker daemon` runs, and what tests run without a child process. The caller holds
/// the daemon lock.
pub async fn run_in_process(
    app: AppContext,
    allow_world_readable_config: bool,
    signals: mpsc::UnboundedReceiver<Signal>,
) -> Result<()> {
    // Bind the listeners first: a port in use ends the daemon before anything starts.
    let listeners = Listeners::bind(&app.config).await?;
    // The supervision engine is the runtime's (runtime::for_app chooses it from the config).
    match app.runtime().engine() {
        Engine::Processes => process::run(app, allow_world_readable_config, listeners, signals).await,
        Engine::Compose => compose::run(app, allow_world_readable_config, listeners, signals).await,
    }
}

/// A supervision engine, as the one daemon loop ([`run_loop`]) drives it: the built-in
/// supervisor over processes (`daemon::process`) or the compose watcher over containers
/// (`daemon::compose`). Each owns its decisions and its state in the loop's task; everything
/// that happens reaches it as a message or a tick.
pub(crate) trait SupervisionEngine {
    /// What reaches the engine on its channel (its own workers' results).
    type Msg: Send + 'static;

    /// A control-socket request (all but `reload`, which is the loop's: it needs the
    /// surroundings), answered on `reply` now or later.
    fn control(&mut self, request: Request, reply: oneshot::Sender<Response>);

    /// When the engine next wants [`tick`](Self::tick)ed, if at all.
    fn next_deadline(&self) -> Option<Instant>;

    fn handle(&mut self, msg: Self::Msg);

    fn tick(&mut self, now: Instant);

    /// Starts stopping everything, then the loop ends once [`done`](Self::done).
    fn begin_exit(&mut self, why: &str);

    /// A live reload (docs/daemon.md, "Reload"), answered on `reply` when there is one.
    async fn reload(&mut self, around: &mut Surroundings, reply: Option<oneshot::Sender<Response>>, by: &str);

    /// After every event: steps that follow from it, and publishing the services' view.
    fn after_event(&mut self);

    /// Everything is stopped after [`begin_exit`](Self::begin_exit).
    fn done(&self) -> bool;

    /// Once the loop ended, before the surroundings end.
    fn finish(&mut self);
}

/// The one daemon loop, for either engine: messages, the engine's deadlines and the signals,
/// until the engine is done after an exit.
pub(crate) async fn run_loop<E: SupervisionEngine>(
    mut engine: E,
    mut rx: mpsc::UnboundedReceiver<E::Msg>,
    mut around: Surroundings,
    mut control: mpsc::UnboundedReceiver<ControlRequest>,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) -> Result<()> {
    let mut signals_open = true;
    loop {
        let deadline = engine.next_deadline();
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(msg) = rx.recv() => engine.handle(msg),
            Some((request, reply)) = control.recv() => match request {
                Request::Reload => engine.reload(&mut around, Some(reply), "reload").await,
                request => engine.control(request, reply),
            },
            _ = sleep => engine.tick(Instant::now()),
            signal = signals.recv(), if signals_open => match signal {
                Some(Signal::Exit(why)) => engine.begin_exit(why),
                Some(Signal::Reload) => engine.reload(&mut around, None, "SIGHUP").await,
                None => {
                    signals_open = false;
                    engine.begin_exit("the end of its signals");
                }
            },
        }
        engine.after_event();
        if engine.done() {
            break;
        }
    }
    engine.finish();
    // Requests still queued or held are dropped with them: their connections end at once.
    drop(control);
    drop(rx);
    drop(engine);
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
    connections: Connections,
    /// The front door's certificate slot and TLS listener, for the daemon's life (docs/tls.md).
    pub tls: crate::tls::DaemonTls,
}

/// How long the daemon's exit waits for control connections still open.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The control connections under way. Each holds a [`ConnectionGuard`]; once accepting has
/// stopped, [`Connections::drained`] returns when the last guard is dropped — when the last
/// answer was written.
struct Connections {
    guard: Option<mpsc::Sender<()>>,
    all_dropped: mpsc::Receiver<()>,
    stop: watch::Sender<bool>,
}

/// Held by a control connection's task while it works; nothing is ever sent on it.
struct ConnectionGuard(#[allow(dead_code)] mpsc::Sender<()>);

impl Connections {
    fn new() -> Connections {
        let (guard, all_dropped) = mpsc::channel(1);
        Connections { guard: Some(guard), all_dropped, stop: watch::channel(false).0 }
    }

    /// For the accept loop, which hands a clone to each connection.
    fn guard(&self) -> ConnectionGuard {
        ConnectionGuard(self.guard.clone().expect("guards are handed out before close"))
    }

    /// Stops accepting connections (the accept loop drops its guard).
    fn close(&mut self) {
        self.guard = None;
        let _ = self.stop.send(true);
    }

    /// Waits until every guard is dropped.
    async fn drained(&mut self) {
        while self.all_dropped.recv().await.is_some() {}
    }
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
    /// Listens on the control socket (its requests arrive on the receiver returned, for
    /// [`run_loop`]) and starts the other tasks.
    pub async fn start(
        app: &AppContext,
        allow_world_readable_config: bool,
        listeners: Listeners,
    ) -> Result<(Surroundings, mpsc::UnboundedReceiver<ControlRequest>)> {
        let state_dir = app.store.dir().to_path_buf();
        let sock = socket_path(&state_dir);
        // We hold the daemon lock, so a socket file left here belongs to a dead daemon.
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).with_context(|| format!("listening on {}", sock.display()))?;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
        let connections = Connections::new();
        let (tx, control) = mpsc::unbounded_channel();
        tokio::spawn(accept_loop(listener, tx, connections.guard(), connections.stop.subscribe()));

        let (shutdown_tx, shutdown) = watch::channel(false);
        let (view_tx, _) = watch::channel(ServicesView::default());
        let (mode_tx, _) = watch::channel(app.store.mode().unwrap_or(Mode::Normal));
        crate::web::follow_mode(
            caretaker_state::Store::open(&state_dir, app.redactor.clone())?,
            mode_tx.clone(),
            shutdown.clone(),
        );
        let invocation = crate::scheduled::Invocation {
            // In the unit tests (the daemon in-process) this executable is the test harness, no
            // caretaker: a task that came due would run the tests again.
            exe: if cfg!(test) {
                PathBuf::from("false")
            } else {
                std::env::current_exe().context("finding caretaker's own executable")?
            },
            config_path: std::path::absolute(&app.config_path).unwrap_or(app.config_path.clone()),
            state_dir: std::path::absolute(&state_dir).unwrap_or(state_dir.clone()),
            allow_world_readable_config,
        };
        crate::os_tick::spawn(&invocation, shutdown.clone());
        let mut around = Surroundings {
            view: view_tx,
            mode: mode_tx,
            socket: sock,
            shutdown: shutdown_tx,
            // Replaced at once below.
            tasks: Tasks { shutdown: watch::channel(false).0, http: listeners.http.into_std()?, front_door: None },
            state_dir,
            invocation,
            connections,
            tls: Default::default(),
        };
        let http = around.tasks.http.try_clone()?;
        let front_door = listeners.front_door.map(|l| l.into_std()).transpose()?;
        let prepared = around.prepared(&app.config, app.redactor.clone(), http, front_door)?;
        around.switch(prepared)?;
        Ok((around, control))
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
        spawn_background_tasks(BackgroundContext {
            config: config.clone(),
            state_dir: self.state_dir.clone(),
            redactor: p.redactor.clone(),
            services: self.view.subscribe(),
            invocation: crate::scheduled::Invocation {
                exe: self.invocation.exe.clone(),
                config_path: self.invocation.config_path.clone(),
                state_dir: self.invocation.state_dir.clone(),
                allow_world_readable_config: self.invocation.allow_world_readable_config,
            },
            shutdown: shutdown.clone(),
        })?;
        self.tasks = Tasks { shutdown: shutdown_tx, http: p.http, front_door: p.front_door };
        Ok(())
    }

    /// Ends the tasks and removes the socket, once the services are stopped. The control
    /// connections still open deliver their answers (to `down --daemon`) first: each holds a
    /// [`ConnectionGuard`], and this waits until the last one is dropped (at most
    /// [`DRAIN_TIMEOUT`], for a client that connected and never asked).
    pub async fn finish(mut self) {
        let _ = self.tasks.shutdown.send(true);
        let _ = self.shutdown.send(true);
        let _ = std::fs::remove_file(&self.socket);
        self.connections.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.connections.drained()).await.is_err() {
            tracing::warn!(
                "a control connection was still open after {}s; not waiting for it",
                DRAIN_TIMEOUT.as_secs()
            );
        }
        tracing::info!("daemon stopped");
    }
}

/// What a background task gets: the config it follows and a way to its state.
pub struct BackgroundContext {
    pub config: Arc<Config>,
    pub state_dir: PathBuf,
    pub redactor: caretaker_core::config::Redactor,
    /// The services' view the engine publishes after every event.
    pub services: watch::Receiver<ServicesView>,
    /// How to run caretaker itself as a child (scheduled tasks).
    pub invocation: crate::scheduled::Invocation,
    /// `true` when the task must end: the daemon exits, or a reload replaced the config.
    pub shutdown: watch::Receiver<bool>,
}

impl BackgroundContext {
    /// A state-store connection of the task's own.
    pub fn open_store(&self) -> Result<Store> {
        Ok(Store::open(&self.state_dir, self.redactor.clone())?)
    }
}

/// The daemon's background tasks, whichever engine runs: started with each config (at the
/// start, and after a reload that changed more than the services), each ending when
/// `shutdown` turns `true`. Every background task of the daemon starts here.
fn spawn_background_tasks(ctx: BackgroundContext) -> Result<()> {
    tokio::spawn(alerts_loop(ctx.config.clone(), ctx.open_store()?, ctx.services.clone(), ctx.shutdown.clone()));
    tokio::spawn(crate::scheduled::run(ctx.config.clone(), ctx.open_store()?, ctx.invocation, ctx.shutdown.clone()));
    tokio::spawn(crate::commands::clone::expiry_loop(ctx.config.clone(), ctx.redactor, ctx.state_dir, ctx.shutdown));
    Ok(())
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
    let new = crate::clonecfg::as_clone(loaded.config).map_err(|e| format!("{e:#}"))?;
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
    // What the runtime cannot change under a running daemon (its engine, the compose project).
    let runtime = crate::runtime::for_config(running, path, &crate::context::state_dir(None, running));
    problems.extend(runtime.reload_refusals(&new));
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

/// A control-socket request and where its answer goes.
pub(crate) type ControlRequest = (Request, oneshot::Sender<Response>);

async fn accept_loop(
    listener: UnixListener,
    tx: mpsc::UnboundedSender<ControlRequest>,
    guard: ConnectionGuard,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            // Dropping `guard` here lets the exit's drain end once the open connections have.
            _ = stop.wait_for(|s| *s) => return,
        };
        let tx = tx.clone();
        let guard = ConnectionGuard(guard.0.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            let response = match serde_json::from_str::<Request>(&line) {
                Ok(request) => {
                    let (reply, answer) = oneshot::channel();
                    if tx.send((request, reply)).is_err() {
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

#[cfg(test)]
mod tests;
