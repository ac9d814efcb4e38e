//! The daemon's scheduler: every [`TICK_INTERVAL`] it asks `caretaker_observe::scheduler::tick`
//! which tasks are due and runs each as a **child process** — `caretaker --config <cfg>
//! --state-dir <dir> <subcommand>` — so every run is a recorded job with its own lock, and a
//! task that crashes cannot take the daemon with it. A task still running is never started
//! again (the names of running tasks go into every tick).

use crate::cli::Cli;
use caretaker_core::config::Config;
use caretaker_core::scheduler::TaskKind;
use caretaker_observe::scheduler::TICK_INTERVAL;
use caretaker_state::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The caretaker subcommand that carries out a task (it may not exist yet in this binary:
/// see [`command_exists`]).
pub fn task_argv(kind: &TaskKind) -> Vec<String> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    match kind {
        TaskKind::Backup => v(&["backup", "run"]),
        TaskKind::Prune => v(&["backup", "prune"]),
        TaskKind::BackupCheck => v(&["backup", "check"]),
        TaskKind::Check => v(&["check"]),
        // Skipped by the command itself while in maintenance or service mode.
        TaskKind::Update => v(&["update", "--scheduled"]),
        TaskKind::Deps => v(&["deps"]),
        TaskKind::Command(name) => v(&["jobs", "run", name]),
    }
}

/// Whether this binary has the subcommand path `argv` starts with (e.g. `update` before the
/// update command exists): the daemon skips a task it cannot run rather than failing.
pub fn command_exists(argv: &[String]) -> bool {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    for word in argv {
        if !cmd.has_subcommands() {
            return true;
        }
        match cmd.find_subcommand(word) {
            Some(sub) => cmd = sub.clone(),
            None => return false,
        }
    }
    !(cmd.has_subcommands() && cmd.is_subcommand_required_set())
}

/// How to start caretaker itself for a task.
pub struct Invocation {
    pub exe: PathBuf,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub allow_world_readable_config: bool,
}

impl Invocation {
    pub fn command(&self, argv: &[String]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.exe);
        c.arg("--config").arg(&self.config_path).arg("--state-dir").arg(&self.state_dir);
        if self.allow_world_readable_config {
            c.arg("--allow-world-readable-config");
        }
        c.args(argv);
        c.env(crate::context::TRIGGER_ENV, "schedule");
        // The task's output is in its job log; its stderr (caretaker's own log) joins ours.
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        c
    }
}

/// Runs the scheduler until `shutdown` is set. Tasks still running then are left to finish
/// on their own: each holds its own job record and lock.
pub async fn run(config: Arc<Config>, store: Store, inv: Invocation, mut shutdown: watch::Receiver<bool>) {
    let mut store = Some(store);
    let mut running: BTreeMap<String, u32> = BTreeMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, String)>();
    let mut interval = tokio::time::interval(TICK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            Some((name, how)) = done_rx.recv() => {
                running.remove(&name);
                tracing::info!(task = %name, "scheduled task {how}");
                continue;
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let Some(s) = store.take() else { break };
        let names: BTreeSet<String> = running.keys().cloned().collect();
        let cfg = config.clone();
        let ticked = tokio::task::spawn_blocking(move || {
            let due = caretaker_observe::scheduler::tick(&cfg, &s, &names, jiff::Timestamp::now());
            (s, due)
        })
        .await;
        let due = match ticked {
            Ok((s, due)) => {
                store = Some(s);
                due
            }
            Err(e) => {
                tracing::error!("the scheduler failed: {e}; no more scheduled tasks run");
                break;
            }
        };
        let due = match due {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("scheduler: cannot read or record task state: {e}");
                continue;
            }
        };
        for run in due {
            let name = run.task.name.clone();
            let argv = task_argv(&run.task.kind);
            if !command_exists(&argv) {
                tracing::warn!(task = %name, "skipped: this caretaker has no `{}` command yet", argv.join(" "));
                continue;
            }
            let catch_up = if run.catch_up { " (catching up on missed runs)" } else { "" };
            match inv.command(&argv).spawn() {
                Ok(mut child) => {
                    let pid = child.id().unwrap_or(0);
                    tracing::info!(task = %name, pid, "starting scheduled task: caretaker {}{catch_up}", argv.join(" "));
                    running.insert(name.clone(), pid);
                    let tx = done_tx.clone();
                    tokio::spawn(async move {
                        let how = match child.wait().await {
                            Ok(st) if st.success() => "succeeded".to_string(),
                            Ok(st) => format!("failed ({st})"),
                            Err(e) => format!("could not be waited for: {e}"),
                        };
                        let _ = tx.send((name, how));
                    });
                }
                Err(e) => tracing::error!(task = %name, "cannot start `caretaker {}`: {e}", argv.join(" ")),
            }
        }
    }
    if !running.is_empty() {
        let names: Vec<&str> = running.keys().map(String::as_str).collect();
        tracing::info!("scheduled tasks left to finish on their own: {}", names.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_kind_maps_to_a_caretaker_command() {
        let cases = [
            (TaskKind::Backup, "backup run", true),
            (TaskKind::Prune, "backup prune", true),
            (TaskKind::BackupCheck, "backup check", true),
            (TaskKind::Check, "check", true),
            (TaskKind::Deps, "deps", true),
            (TaskKind::Command("report".into()), "jobs run report", true),
        ];
        for (kind, argv, exists) in cases {
            let got = task_argv(&kind);
            assert_eq!(got.join(" "), argv, "{kind:?}");
            assert_eq!(command_exists(&got), exists, "{kind:?}");
        }
    }

    #[test]
    fn missing_commands_are_detected() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!command_exists(&v(&["no-such-command"])));
        assert!(!command_exists(&v(&["backup", "no-such-subcommand"])));
        // A command group without its subcommand cannot run on its own.
        assert!(!command_exists(&v(&["backup"])));
        // `update` maps to a command that may not exist yet; either way the answer matches clap.
        let update = task_argv(&TaskKind::Update);
        use clap::CommandFactory;
        assert_eq!(command_exists(&update), Cli::command().find_subcommand("update").is_some());
    }
}
