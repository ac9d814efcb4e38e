//! Probes for checks and standalone service health: HTTP(S) GET, TCP connect, command.

use caretaker_core::config::Probe;
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs one probe; `Ok(detail)` when it passes, `Err(why)` when it fails.
pub fn run(probe: &Probe, timeout: Duration) -> Result<String, String> {
    match probe {
        Probe::Http { url, expect_status, expect_body } => http(url, *expect_status, expect_body.as_deref(), timeout),
        Probe::Tcp { address } => tcp(address, timeout).map(|_| format!("{address} accepts connections")),
        Probe::Command { command } => command_probe(&command.argv(), timeout),
    }
}

pub fn http(
    url: &str,
    expect_status: Option<u16>,
    expect_body: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
    let mut resp = agent.get(url).header("User-Agent", "caretaker").call().map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    let ok = match expect_status {
        Some(s) => status == s,
        None => (200..400).contains(&status),
    };
    if !ok {
        return Err(format!(
            "GET {url} answered {status}{}",
            expect_status.map(|s| format!(", expected {s}")).unwrap_or_default()
        ));
    }
    if let Some(needle) = expect_body {
        let body =
            resp.body_mut().with_config().limit(1 << 20).read_to_string().map_err(|e| format!("GET {url}: {e}"))?;
        if !body.contains(needle) {
            return Err(format!("GET {url} answered {status} without \"{needle}\" in the body"));
        }
    }
    Ok(format!("GET {url} answered {status}"))
}

pub fn tcp(address: &str, timeout: Duration) -> Result<(), String> {
    let addrs: Vec<_> = address.to_socket_addrs().map_err(|e| format!("cannot resolve {address}: {e}"))?.collect();
    let mut last = format!("no address for {address}");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("cannot connect to {address}: {e}"),
        }
    }
    Err(last)
}

fn command_probe(argv: &[String], timeout: Duration) -> Result<String, String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let mut cmd = Command::new(prog);
    cmd.args(args);
    command(cmd, timeout)
}

/// A command probe of a command the caller built (e.g. `compose exec -T SERVICE ...`): passes
/// when it exits 0 within `timeout`; the detail is its last line of output.
pub fn command(mut cmd: Command, timeout: Duration) -> Result<String, String> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {prog}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut out);
                }
                let line = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
                return if status.success() {
                    Ok(if line.is_empty() { "exited 0".into() } else { line })
                } else {
                    Err(format!("{status}{}", if line.is_empty() { String::new() } else { format!(": {line}") }))
                };
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}
