//! `caretaker install-systemd`: writes a systemd unit that runs `caretaker daemon` for this
//! app. The daemon stops its services itself, in order, on SIGTERM; `KillMode=mixed` lets it,
//! and systemd's SIGKILL after `TimeoutStopSec` is the backstop for everything in the cgroup.
//!
//! Next to it, a `.socket` unit holds the daemon's listening ports (`http.listen`,
//! `front_door.listen`): systemd passes them to each daemon it starts (crate::listen), so the
//! ports keep queueing connections while the daemon restarts (docs/daemon.md).

use crate::cli::{Global, InstallSystemdArgs};
use crate::context::{load_config, state_dir};
use crate::exit::{Code, Failure};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn run(global: &Global, args: &InstallSystemdArgs) -> Result<Code> {
    let (config_path, config) = load_config(global.config.as_deref(), global.allow_world_readable_config)?;
    let exe = std::env::current_exe().context("finding caretaker's own executable")?;
    let config_path = std::path::absolute(&config_path)?;
    let state = std::path::absolute(state_dir(global.state_dir.as_deref(), &config))?;
    let stop: Duration = config.stop_timeout_total() + Duration::from_secs(30);
    let mut unit = unit_text(&config.app.name, &exe, &config_path, &state, stop);
    // A runtime that needs a service of the system (docker for compose) starts after it.
    if let Some(after) = crate::runtime::for_config(&config, &config_path, &state).systemd_after() {
        unit = unit.replacen(
            "After=network-online.target\n",
            &format!("After=network-online.target {after}\nWants={after}\n"),
            1,
        );
    }
    let name = format!("caretaker-{}.service", config.app.name);
    let path = args.output.clone().unwrap_or_else(|| PathBuf::from("/etc/systemd/system").join(&name));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(name);
    let socket_path = path.with_extension("socket");
    let socket_name = socket_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut listen = vec![("http.listen", config.http.listen.as_str())];
    listen.extend(config.front_door.as_ref().map(|f| ("front_door.listen", f.listen.as_str())));
    let socket = socket_text(&config.app.name, &listen);
    // The service takes its sockets from the socket unit and starts after it.
    unit = unit
        .replacen("Wants=network-online.target\n", &format!("Wants=network-online.target\nRequires={socket_name}\n"), 1)
        .replacen("After=network-online.target", &format!("After=network-online.target {socket_name}"), 1)
        .replacen("Type=simple\n", &format!("Type=simple\nSockets={socket_name}\n"), 1);
    let files = [(&path, &unit), (&socket_path, &socket)];
    let same = |p: &PathBuf, text: &String| std::fs::read_to_string(p).is_ok_and(|e| e == *text);
    if files.iter().all(|(p, t)| same(p, t)) {
        println!("{} and {} are up to date", path.display(), socket_path.display());
        return Ok(Code::Ok);
    }
    if !args.force {
        if let Some((p, _)) = files.iter().find(|(p, t)| p.exists() && !same(p, t)) {
            return Err(Failure::new(Code::Refused, format!("{} exists with different content", p.display()))
                .hint("pass --force to overwrite it")
                .into());
        }
    }
    for (p, text) in files {
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    println!("enable them with: systemctl daemon-reload && systemctl enable --now {socket_name} {name}");
    Ok(Code::Ok)
}

/// The socket unit: one `ListenStream=` per daemon address that is an IP address and port.
pub fn socket_text(app: &str, listen: &[(&str, &str)]) -> String {
    let mut streams = String::new();
    for (key, addr) in listen {
        match crate::listen::listen_stream(addr) {
            Some(a) => streams.push_str(&format!("# {key}\nListenStream={a}\n")),
            None => streams
                .push_str(&format!("# {key} = {addr} is not an IP address and port: the daemon binds it itself\n")),
        }
    }
    format!(
        "# Written by `caretaker install-systemd`; rerun it after changing http.listen or front_door.listen.
# systemd holds these ports and passes them to each daemon it starts, so connections wait
# in the queue while the daemon restarts instead of being refused (docs/daemon.md).
[Unit]
Description=caretaker: listening sockets of the app {app}

[Socket]
{streams}NoDelay=true

[Install]
WantedBy=sockets.target
"
    )
}

/// systemd quoting for ExecStart arguments.
fn quote(p: &Path) -> String {
    let s = p.display().to_string();
    if s.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '\'') {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

pub fn unit_text(app: &str, exe: &Path, config: &Path, state: &Path, stop: Duration) -> String {
    format!(
        "# Written by `caretaker install-systemd`; rerun it after moving caretaker or the config.
[Unit]
Description=caretaker: supervises and maintains the app {app}
{docs}Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={exe} --config {config} --state-dir {state} daemon
# `systemctl reload`: the daemon reads the config again (docs/daemon.md, \"Reload\"); an
# invalid config is refused with its problems in the journal, and the running one stays.
ExecReload={exe} --config {config} --state-dir {state} reload
Restart=on-failure
RestartSec=5s
# SIGTERM goes to the daemon only: it stops the services itself, in reverse dependency order.
KillMode=mixed
TimeoutStopSec={stop}s
# The daemon's log goes to stderr, one line per event: journald keeps it.
StandardOutput=journal
StandardError=journal
SyslogIdentifier=caretaker-{app}

[Install]
WantedBy=multi-user.target
",
        exe = quote(exe),
        config = quote(config),
        state = quote(state),
        stop = stop.as_secs(),
        docs = documentation(),
    )
}

/// `Documentation=` naming caretaker's own docs when they are on this machine (a source
/// checkout next to the binary's build, or the Debian package's copy), else nothing: no
/// address that is not true.
fn documentation() -> String {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/daemon.md");
    let package = Path::new("/usr/share/doc/caretaker/docs/daemon.md");
    match std::fs::canonicalize(checkout).or_else(|_| std::fs::canonicalize(package)) {
        Ok(p) => format!("Documentation=file://{}\n", p.display()),
        Err(_) => "# Documentation: `caretaker --help`; docs/daemon.md in caretaker's source\n".into(),
    }
}
