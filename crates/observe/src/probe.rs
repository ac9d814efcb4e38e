//! Probes for checks and standalone service health: the supervisor's probes
//! ([`caretaker_supervisor::probe`]), so `caretaker check` and the daemon judge a service alike.

use caretaker_core::config::{HttpProbe, Probe};
use std::process::Command;
use std::time::Duration;

pub use caretaker_supervisor::probe::blocking::{command, tcp};

/// Runs one probe; `Ok(detail)` when it passes, `Err(why)` when it fails.
pub fn run(probe: &Probe, timeout: Duration) -> Result<String, String> {
    match probe {
        Probe::Http(h) => http(h, timeout),
        Probe::Tcp { address } => tcp(address, timeout).map(|_| format!("{address} accepts connections")),
        Probe::Command { command } => command_probe(&command.argv(), timeout),
    }
}

pub fn http(probe: &HttpProbe, timeout: Duration) -> Result<String, String> {
    caretaker_supervisor::probe::blocking::http(probe, timeout)
        .map(|status| format!("GET {} answered {status}", probe.url))
}

fn command_probe(argv: &[String], timeout: Duration) -> Result<String, String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let mut cmd = Command::new(prog);
    cmd.args(args);
    command(cmd, timeout)
}
