//! The daemon run in this process (`run_in_process`), driven through its control socket and
//! its signal channel: no child caretaker, no fixed sleeps (polls with generous deadlines).

use super::{run_in_process, Signal};
use crate::context::AppContext;
use caretaker_core::config::Redactor;
use caretaker_supervisor::machine::Phase;
use caretaker_supervisor::protocol::{Request, Response};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn app(dir: &Path, service: &str) -> AppContext {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config_path = dir.join("caretaker.yml");
    let text = format!(
        "version: 1\napp: {{ name: inproc, working_dir: {} }}\nhttp: {{ listen: \"127.0.0.1:{port}\" }}\nservices:\n  idle: {{ command: \"{service}\" }}\n",
        dir.display()
    );
    std::fs::write(&config_path, &text).unwrap();
    let config =
        caretaker_core::config::load(&text, &config_path, Some(0o600), &crate::context::RealSecrets).unwrap().config;
    let redactor = Redactor::new(config.secrets());
    let store = caretaker_state::Store::open(&dir.join("state"), redactor.clone()).unwrap();
    AppContext { config_path, config, store, redactor }
}

/// Asks the daemon over its socket, from the blocking pool (the client blocks).
async fn ask(state: &Path, request: Request) -> Option<Response> {
    let state = state.to_path_buf();
    tokio::task::spawn_blocking(move || {
        crate::control::request(&state, &request, Duration::from_secs(30)).ok().flatten()
    })
    .await
    .unwrap()
}

/// The pid of the running service, once it runs (polled; a loaded machine may take long).
async fn running_pid(state: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(Response::Status(r)) = ask(state, Request::Status).await {
            if let Some(s) = r.services.iter().find(|s| s.state == Phase::Running) {
                return s.pid.expect("a running service has a pid");
            }
        }
        assert!(Instant::now() < deadline, "the service never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn gone(pid: u32) -> bool {
    // The daemon reaps its children, so a stopped service's pid no longer exists.
    unsafe { libc::kill(pid as i32, 0) != 0 }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// The daemon in a thread with a runtime of its own, which ends with it (as `caretaker
/// daemon`'s does): what its tasks had not done by then is lost.
fn spawn_daemon(app: AppContext) -> (mpsc::UnboundedSender<Signal>, std::thread::JoinHandle<anyhow::Result<()>>) {
    let (signals, rx) = mpsc::unbounded_channel();
    let thread = std::thread::spawn(move || block_on(run_in_process(app, false, rx)));
    (signals, thread)
}

fn running_pid_blocking(state: &Path) -> u32 {
    caretaker_testkit::wait_until(Duration::from_secs(60), "the service to run", || {
        match crate::control::request(state, &Request::Status, Duration::from_secs(30)).ok().flatten() {
            Some(Response::Status(r)) => r.services.iter().find(|s| s.state == Phase::Running).and_then(|s| s.pid),
            _ => None,
        }
    })
}

#[test]
fn the_daemon_runs_in_process_and_answers_down_with_exit_before_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), "exec sleep 3281");
    let state: PathBuf = app.store.dir().to_path_buf();
    let (signals, daemon) = spawn_daemon(app);
    let pid = running_pid_blocking(&state);
    // A SIGHUP with an unchanged config changes nothing: the service keeps its process.
    signals.send(Signal::Reload).unwrap();
    assert_eq!(running_pid_blocking(&state), pid);
    // `down --daemon` is answered once the services are stopped, and the daemon's runtime
    // ends right after: the answer must have been written by then (the connection drain).
    let answer = crate::control::request(&state, &Request::Down { exit_daemon: true }, Duration::from_secs(60));
    assert!(matches!(answer, Ok(Some(Response::Ok))), "{answer:?}");
    daemon.join().unwrap().unwrap();
    assert!(gone(pid), "service process {pid} outlived the daemon");
    assert!(!super::socket_path(&state).exists(), "the socket is removed");
    let records = caretaker_supervisor::process::Records::new(&state).load();
    assert!(records.is_empty(), "no service is recorded as running");
}

#[test]
fn an_exit_signal_stops_the_services_and_ends_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), "exec sleep 3282");
    let state: PathBuf = app.store.dir().to_path_buf();
    let (signals, rx) = mpsc::unbounded_channel();
    block_on(async {
        let daemon = run_in_process(app, false, rx);
        let driver = async {
            let pid = running_pid(&state).await;
            signals.send(Signal::Exit("SIGTERM")).unwrap();
            pid
        };
        let (result, pid) = tokio::join!(daemon, driver);
        result.unwrap();
        assert!(gone(pid), "service process {pid} outlived the daemon");
    });
    assert!(!super::socket_path(&state).exists());
}
