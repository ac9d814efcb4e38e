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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Status(StatusReport),
    Error { message: String },
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
