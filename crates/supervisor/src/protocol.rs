//! The control socket's protocol: one JSON request line from the CLI, one JSON response line
//! from the daemon, then the connection closes. The socket is `<state dir>/daemon.sock`, mode
//! 0600 inside the 0700 state directory, so only the app's operator can use it.

use crate::machine::{Health, Phase};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The socket's file name inside the state directory.
pub const SOCKET_NAME: &str = "daemon.sock";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Start every service in dependency order (a `failed` service is started again; the
    /// CLI clears service mode once all are healthy).
    Up,
    /// Stop every service in reverse order; with `exit_daemon`, the daemon exits afterwards.
    Down {
        exit_daemon: bool,
    },
    /// Stop the services an update stops: every one, except (compose) the services that hold
    /// the app's data — its database, `compose.keep_running` — which the update's snapshot and
    /// migration need running. Answered once they are stopped.
    StopApp,
    /// Restart one service, or all.
    Restart {
        service: Option<String>,
    },
    Status,
    /// The app's mode was switched in the state store: read it and hand it to the front door
    /// now. Answered once the front door follows the new mode, so the caller may go on (stop
    /// the app, say the site is back) knowing visitors see it.
    ModeChanged,
    /// Read the config file again and follow it (live reload, docs/daemon.md): answered with
    /// [`Response::Reloaded`] once the changed services were restarted, or
    /// [`Response::Refused`] when the new config is invalid (the old one keeps running).
    Reload,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Status(StatusReport),
    Error {
        message: String,
    },
    Reloaded(ReloadReport),
    /// The new config was not taken; `problems` lists every one (rendered like `config check`).
    Refused {
        problems: String,
    },
}

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Stopped and started again with their new definition, in dependency order.
    pub restarted: Vec<String>,
    /// New services that were started.
    pub started: Vec<String>,
    /// Services no longer in the config, stopped.
    pub stopped: Vec<String>,
    /// Left alone.
    pub unchanged: Vec<String>,
    /// Changed with the new definition but not started: they were not running (the app is
    /// down, or the service was stopped).
    #[serde(default)]
    pub not_running: Vec<String>,
    /// The other config sections that changed and that the daemon now follows.
    pub sections: Vec<String>,
    /// The listeners were bound anew on their new addresses.
    pub rebound: bool,
    /// What the reload could not carry out and takes a daemon restart (e.g. a changed
    /// compose project).
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub app: String,
    pub daemon_pid: u32,
    /// Why the app is in service mode (a service failed), if it is.
    pub service_mode: Option<String>,
    pub services: Vec<ServiceStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub state: Phase,
    pub pid: Option<u32>,
    pub uptime_seconds: Option<u64>,
    pub restarts: u32,
    pub health: Health,
    pub last_exit: Option<String>,
    /// Why it is not fine: last failed probe, exit, crash loop.
    pub reason: Option<String>,
    /// Down now, but about to be started (waiting for dependencies).
    #[serde(default)]
    pub waiting: bool,
}

/// Sends one request and waits for the answer (blocking; for the CLI).
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> std::io::Result<Response> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(request).map_err(std::io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| std::io::Error::other(format!("bad answer from the daemon: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_tagged_json() {
        let r = serde_json::to_string(&Request::Restart { service: Some("web".into()) }).unwrap();
        assert_eq!(r, r#"{"request":"restart","service":"web"}"#);
        let r = serde_json::to_string(&Request::Up).unwrap();
        assert_eq!(r, r#"{"request":"up"}"#);
        let r = serde_json::to_string(&Request::ModeChanged).unwrap();
        assert_eq!(r, r#"{"request":"mode_changed"}"#);
        assert_eq!(serde_json::to_string(&Request::Reload).unwrap(), r#"{"request":"reload"}"#);
        let refused = Response::Refused { problems: "error: x".into() };
        let s = serde_json::to_string(&refused).unwrap();
        assert_eq!(s, r#"{"response":"refused","problems":"error: x"}"#);
        let done = Response::Reloaded(ReloadReport { restarted: vec!["web".into()], ..Default::default() });
        assert_eq!(serde_json::from_str::<Response>(&serde_json::to_string(&done).unwrap()).unwrap(), done);
        let resp = Response::Status(StatusReport {
            app: "a".into(),
            daemon_pid: 1,
            service_mode: None,
            services: vec![ServiceStatus {
                name: "web".into(),
                state: Phase::Running,
                pid: Some(5),
                uptime_seconds: Some(3),
                restarts: 0,
                health: Health::Healthy,
                last_exit: None,
                reason: None,
                waiting: false,
            }],
        });
        let s = serde_json::to_string(&resp).unwrap();
        assert!(s.starts_with(r#"{"response":"status","app":"a""#), "{s}");
        assert_eq!(serde_json::from_str::<Response>(&s).unwrap(), resp);
    }
}
