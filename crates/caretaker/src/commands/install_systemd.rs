//! `caretaker install-systemd`: writes a systemd unit that runs `caretaker daemon` for this
//! app. The daemon stops its services itself, in order, on SIGTERM; `KillMode=mixed` lets it,
//! and systemd's SIGKILL after `TimeoutStopSec` is the backstop for everything in the cgroup.

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
    if config.compose.is_some() {
        // A compose app's containers are docker's: start after it.
        unit = unit.replacen(
            "After=network-online.target\n",
            "After=network-online.target docker.service\nWants=docker.service\n",
            1,
        );
    }
    let name = format!("caretaker-{}.service", config.app.name);
    let path = args.output.clone().unwrap_or_else(|| PathBuf::from("/etc/systemd/system").join(&name));
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if existing == unit {
            println!("{} is up to date", path.display());
            return Ok(Code::Ok);
        }
        if !args.force {
            return Err(Failure::new(Code::Refused, format!("{} exists with different content", path.display()))
                .hint("pass --force to overwrite it")
                .into());
        }
    }
    std::fs::write(&path, &unit).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    println!("enable it with: systemctl daemon-reload && systemctl enable --now {name}");
    Ok(Code::Ok)
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
Documentation=https://example.invalid/caretaker
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={exe} --config {config} --state-dir {state} daemon
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
    )
}
