//! The daemon's network side: its HTTP listener (`http.listen`: `/metrics` and the status
//! page, merged in [`router`]) and the front door (`front_door.listen`).
//!
//! Both listeners are bound before any service starts, so a port in use stops the daemon at
//! once with a message naming the address and its config key (exit code 6).

use crate::exit::{Code, Failure};
use anyhow::Result;
use axum::Router;
use caretaker_core::alert::ServiceObs;
use caretaker_core::config::{Config, Redactor};
use caretaker_core::mode::Mode;
use caretaker_observe::MetricsSource;
use caretaker_state::Store;
use caretaker_supervisor::protocol::{ServiceStatus, StatusReport};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The supervisor's live view of the services, published by the daemon's event loop after
/// every event (see `daemon.rs`).
#[derive(Clone, Debug, Default)]
pub struct ServicesView {
    /// As `caretaker status` shows them.
    pub statuses: Vec<ServiceStatus>,
    /// As the alert rules and `/metrics` take them.
    pub observations: Vec<ServiceObs>,
}

/// What the routes of the daemon's HTTP listener may read. Everything here is cheap to clone;
/// open your own [`Store`] with [`WebContext::open_store`] (a second SQLite connection: WAL
/// lets it read while the daemon writes).
#[derive(Clone)]
pub struct WebContext {
    pub config: Arc<Config>,
    pub state_dir: PathBuf,
    pub redactor: Redactor,
    /// The services as the supervisor sees them, updated as they change.
    pub services: watch::Receiver<ServicesView>,
    /// The app's mode (normal / maintenance / service): pushed by the daemon when a process
    /// switches it (`ModeChanged`), and read from the state store every second.
    pub mode: watch::Receiver<Mode>,
}

impl WebContext {
    pub fn open_store(&self) -> Result<Store> {
        Ok(Store::open(&self.state_dir, self.redactor.clone())?)
    }
}

/// Binds `addr` for the config key `key`; a failure is a [`Failure`] with exit code 6.
pub async fn bind(addr: &str, key: &str) -> Result<TcpListener> {
    // A socket systemd holds for this address (socket activation: crate::listen).
    if let Some(l) = crate::listen::inherited(addr, key) {
        return TcpListener::from_std(l).map_err(|e| anyhow::anyhow!("using the socket passed for `{key}`: {e}"));
    }
    TcpListener::bind(addr).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => "the address is already in use".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need privileges)".to_string(),
            _ => e.to_string(),
        };
        Failure::new(Code::Unavailable, format!("cannot listen on {addr} (config key `{key}`): {why}"))
            .hint(format!(
                "stop whatever listens there (another caretaker daemon?), or choose another address with `{key}` in the config"
            ))
            .into()
    })
}

/// The router of the daemon's HTTP listener: `/metrics` and the status page (`/status`,
/// `/status/api`, `/status/jobs/{id}/log`; paths must not collide with `/metrics`).
pub fn router(ctx: &WebContext) -> Result<Router> {
    let services = ctx.services.clone();
    let source = MetricsSource {
        config: (*ctx.config).clone(),
        store: Mutex::new(ctx.open_store()?),
        services: Box::new(move || Some(services.borrow().observations.clone())),
    };
    let metrics = caretaker_observe::http::router(Arc::new(source));
    let status = status_source(ctx)?;
    // `/metrics` is open unless `status.protect_metrics` puts it behind the page's auth.
    let metrics = match ctx.config.status.as_ref().is_some_and(|s| s.protect_metrics) {
        true => caretaker_statuspage::protect(metrics, &status),
        false => metrics,
    };
    Ok(metrics.merge(caretaker_statuspage::router(status)))
}

/// The status page's data source and credentials, shared by the page and (when protected)
/// `/metrics`, so both count failed logins together.
fn status_source(ctx: &WebContext) -> Result<Arc<caretaker_statuspage::StatusSource>> {
    // The status page (`/status`, `/status/api`, `/status/jobs/{id}/log`), fed with the
    // supervisor's live view; it refuses every request unless `status:` names users or a token.
    let token = caretaker_statuspage::read_token_file(&ctx.config).map_err(|e| {
        Failure::new(Code::Config, e.to_string()).hint("create the file with a long random token, mode 0600")
    })?;
    let services = ctx.services.clone();
    let mode = ctx.mode.clone();
    let app = ctx.config.app.name.clone();
    let source = caretaker_statuspage::StatusSource::new((*ctx.config).clone(), ctx.open_store()?, token)
        .with_services(move || {
            let service_mode = match &*mode.borrow() {
                Mode::Service(f) => Some(f.reason.clone()),
                _ => None,
            };
            Some(StatusReport {
                app: app.clone(),
                daemon_pid: std::process::id(),
                service_mode,
                services: services.borrow().statuses.clone(),
            })
        });
    Ok(Arc::new(source))
}

/// The HTTP listener's limits from the config (`http.max_connections`, `http.header_timeout`).
pub fn limits(ctx: &WebContext) -> caretaker_statuspage::listener::Limits {
    caretaker_statuspage::listener::Limits::from_config(&ctx.config)
}

/// Serves the HTTP listener until `shutdown` is set.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: caretaker_statuspage::listener::Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    // Bounded connections and header read time (`http.max_connections`, `http.header_timeout`).
    caretaker_statuspage::listener::serve(listener, router, limits, stop).await;
}

/// Runs the front door on its own multi-threaded runtime in its own threads, so visitor
/// traffic neither waits for nor delays the supervisor's event loop. Stops accepting when
/// `shutdown` is set.
pub fn spawn_front_door(
    settings: caretaker_frontdoor::Settings,
    listener: TcpListener,
    tls: Option<(caretaker_frontdoor::TlsSite, std::net::TcpListener)>,
    mode: watch::Receiver<Mode>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    // The listener belongs to the daemon's runtime; hand the socket over.
    let listener = listener.into_std()?;
    // A socket systemd holds keeps listening while no daemon runs: on SIGTERM/SIGINT stop
    // accepting at once, so new visitors wait in its queue for the next daemon instead of
    // being cut off when this one exits, and let the requests under way finish meanwhile.
    let held = crate::listen::was_inherited(std::os::fd::AsRawFd::as_raw_fd(&listener));
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("front-door")
        .enable_all()
        .build()?;
    std::thread::Builder::new().name("front-door".into()).spawn(move || {
        rt.block_on(async move {
            let listener = match TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("front door: cannot use its listener: {e}");
                    return;
                }
            };
            let door = match tls {
                // HTTPS on the same front door (docs/tls.md).
                Some((site, tls_listener)) => {
                    let door = caretaker_frontdoor::FrontDoor::with_tls(settings, mode, site);
                    match TcpListener::from_std(tls_listener) {
                        Ok(l) => {
                            let mut stop = shutdown.clone();
                            tokio::spawn(door.clone().serve_tls(l, async move {
                                let _ = stop.wait_for(|s| *s).await;
                            }));
                        }
                        Err(e) => tracing::error!("front door: cannot use its TLS listener: {e}"),
                    }
                    door
                }
                None => caretaker_frontdoor::FrontDoor::new(settings, mode),
            };
            let mut stopping = shutdown.clone();
            door.serve(listener, async move {
                use tokio::signal::unix::{signal, SignalKind};
                match (held, signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                    (true, Ok(mut term), Ok(mut int)) => tokio::select! {
                        _ = stopping.wait_for(|s| *s) => {}
                        _ = term.recv() => tracing::info!("front door: no longer accepting; the socket stays with systemd"),
                        _ = int.recv() => {}
                    },
                    _ => {
                        let _ = stopping.wait_for(|s| *s).await;
                    }
                }
            })
            .await;
            // The connections under way finish while the daemon stops its services.
            let _ = shutdown.wait_for(|s| *s).await;
        });
        rt.shutdown_timeout(std::time::Duration::from_secs(1));
    })?;
    Ok(())
}

/// Follows the stored mode: reads `Store::mode()` every second on its own thread (with its own
/// connection) and publishes changes. This is the fallback: caretaker's own commands tell the
/// daemon at once (`ModeChanged`, [`reload_mode`]) and wait for its answer; the poll catches a
/// change nobody announced (a daemon that was busy, a state store edited by hand). Ends when
/// `shutdown` is set.
pub fn follow_mode(store: Store, tx: watch::Sender<Mode>, shutdown: watch::Receiver<bool>) {
    let spawned = std::thread::Builder::new().name("mode".into()).spawn(move || {
        let mut complained = false;
        while !*shutdown.borrow() {
            std::thread::sleep(std::time::Duration::from_secs(1));
            match store.mode() {
                Ok(m) => {
                    complained = false;
                    publish_mode(&tx, m);
                }
                Err(e) if !complained => {
                    complained = true;
                    tracing::warn!("cannot read the app's mode from the state store: {e}");
                }
                Err(_) => {}
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the thread that follows the app's mode: {e}");
    }
}

/// Reads the mode from the store and publishes it: the answer to `ModeChanged`. When this
/// returns, every request the front door takes from now on sees the new mode (it reads the
/// channel per request).
pub fn reload_mode(store: &Store, tx: &watch::Sender<Mode>) -> caretaker_supervisor::protocol::Response {
    use caretaker_supervisor::protocol::Response;
    match store.mode() {
        Ok(m) => {
            publish_mode(tx, m);
            Response::Ok
        }
        Err(e) => {
            tracing::warn!("cannot read the app's mode from the state store: {e}");
            Response::Error { message: format!("cannot read the app's mode: {e}") }
        }
    }
}

/// Publishes `m` if it differs from the current mode (and logs the switch).
pub fn publish_mode(tx: &watch::Sender<Mode>, m: Mode) {
    tx.send_if_modified(|cur| {
        if *cur == m {
            return false;
        }
        tracing::info!("mode: {} → {}", cur.name(), m.name());
        *cur = m;
        true
    });
}
