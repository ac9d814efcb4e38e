//! The daemon's scheduler: every [`TICK_INTERVAL`] it asks `caretaker_observe::scheduler::tick`
//! which tasks are due and runs each as a **child process** — `caretaker --config <cfg>
//! --state-dir <dir> <subcommand>` — so every run is a recorded job with its own lock, and a
//! task that crashes cannot take the daemon with it. A task still running is never started
//! again (the names of running tasks go into every tick).

use crate::cli::Cli;
use crate::exit::Code;
use caretaker_core::config::Config;
use caretaker_core::scheduler::{LockQueue, TaskKind, TaskToRun};
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
        TaskKind::OsUpdate => v(&["os", "update"]),
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

/// A scheduled task's child process ended.
struct Done {
    name: String,
    /// The child's exit code (`None`: killed by a signal, or not waited for).
    code: Option<i32>,
    how: String,
}

/// A task that found the app lock held, to record as a `skipped` job.
struct Skip {
    kind: &'static str,
    task: String,
    slot: jiff::Timestamp,
    skips: u32,
    retry_at: jiff::Timestamp,
}

/// What the scheduler keeps of a task it started.
struct Started {
    run: TaskToRun,
    skips: u32,
}

/// Runs the scheduler until `shutdown` is set. Tasks still running then are left to finish
/// on their own: each holds its own job record and lock.
///
/// Tasks that take the app lock go through a [`LockQueue`]: one of them runs at a time, in
/// the queue's order (backup first), and the next starts as soon as the previous one ends.
/// A task whose child still exits `busy` (an operator's command held the lock) is recorded
/// as a `skipped` job and retried after `scheduler::retry_delay`. While a task waits (behind
/// another, or for a retry) its calendar slot stays unconsumed in the state store (its last
/// run is set back to just before the slot; recorded as now when it starts), so a daemon restart
/// does not lose it.
pub async fn run(config: Arc<Config>, store: Store, inv: Invocation, mut shutdown: watch::Receiver<bool>) {
    let mut store = Some(store);
    let mut running: BTreeMap<String, Started> = BTreeMap::new();
    let mut queue = LockQueue::default();
    let mut skips: Vec<Skip> = Vec::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut interval = tokio::time::interval(TICK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let tick = tokio::select! {
            _ = interval.tick() => true,
            Some(done) = done_rx.recv() => {
                tracing::info!(task = %done.name, "scheduled task {}", done.how);
                if let Some(started) = running.remove(&done.name) {
                    if started.run.task.kind.needs_app_lock() && done.code == Some(Code::Busy as i32) {
                        let now = jiff::Timestamp::now();
                        let slot = started.run.scheduled_for;
                        let kind = started.run.task.kind.job_kind();
                        let (n, retry_at) = queue.skipped(started.run, started.skips, now);
                        skips.push(Skip { kind, task: done.name.clone(), slot, skips: n, retry_at });
                    }
                }
                false
            }
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let Some(s) = store.take() else { break };
        // Waiting tasks count as running: not due again while they wait.
        let names: BTreeSet<String> = running.keys().cloned().chain(queue.names().map(str::to_string)).collect();
        let cfg = config.clone();
        let to_record = std::mem::take(&mut skips);
        let ticked = tokio::task::spawn_blocking(move || {
            for sk in &to_record {
                record_skip(&s, sk);
            }
            let due = if tick {
                caretaker_observe::scheduler::tick(&cfg, &s, &names, jiff::Timestamp::now())
            } else {
                Ok(Vec::new())
            };
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
        let now = jiff::Timestamp::now();
        let (locked, free): (Vec<TaskToRun>, Vec<TaskToRun>) =
            due.into_iter().partition(|r| r.task.kind.needs_app_lock());
        let arrived: Vec<(String, jiff::Timestamp)> =
            locked.iter().map(|r| (r.task.name.clone(), r.scheduled_for)).collect();
        queue.add(locked, now);
        for run in free {
            start(&inv, &done_tx, &mut running, run, 0);
        }
        let lock_busy =
            |running: &BTreeMap<String, Started>| running.values().any(|s| s.run.task.kind.needs_app_lock());
        while let Some((run, skips_so_far)) = queue.next(now, lock_busy(&running)) {
            // The run of its slot is now (a task that waited was kept due until it started).
            if let Some(s) = &store {
                if slot_ran_meanwhile(s, &run) {
                    tracing::info!(task = %run.task.name, "not started: its slot was run meanwhile (`caretaker tasks run-due`)");
                    let _ = s.task_ran(&run.task.name, now);
                    continue;
                }
                if let Err(e) = s.task_ran(&run.task.name, now) {
                    tracing::warn!(task = %run.task.name, "cannot record the task's run: {e}");
                }
            }
            start(&inv, &done_tx, &mut running, run, skips_so_far);
        }
        // A task left waiting behind another keeps its slot due in the state store (its last
        // run set back to just before the slot), so a daemon restart meanwhile does not lose it.
        for (name, slot) in arrived.iter().filter(|(name, _)| queue.contains(name)) {
            tracing::info!(task = %name, "due; waits for the app lock (scheduled tasks that take it run one at a time)");
            if let Some(s) = &store {
                let before_slot = slot.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap_or(*slot);
                if let Err(e) = s.task_ran(name, before_slot) {
                    tracing::warn!(task = %name, "cannot keep the waiting task's slot due: {e}");
                }
            }
        }
    }
    if !running.is_empty() {
        let names: Vec<&str> = running.keys().map(String::as_str).collect();
        tracing::info!("scheduled tasks left to finish on their own: {}", names.join(", "));
    }
    if !queue.is_empty() {
        let names: Vec<&str> = queue.names().collect();
        tracing::info!("scheduled tasks still waiting for the app lock run after the next start: {}", names.join(", "));
    }
}

/// Whether a task that waited in the lock queue was run for its slot meanwhile by another
/// scheduler (`caretaker tasks run-due`, docs/tasks.md): then the daemon does not run it again.
fn slot_ran_meanwhile(store: &Store, run: &TaskToRun) -> bool {
    let command = match &run.task.kind {
        TaskKind::Command(name) => Some(name.as_str()),
        _ => None,
    };
    let newest = store
        .task_jobs(run.task.kind.job_kind(), command)
        .ok()
        .and_then(|j| j.last_attempt)
        .map(|j| (j.started_at, j.trigger));
    caretaker_core::tasks::slot_already_ran(run.scheduled_for, newest)
}

/// Records a skip as a `skipped` job naming the lock's holder, and sets the task's last run
/// back to just before its slot, so the slot stays due (after a restart too).
fn record_skip(store: &Store, sk: &Skip) {
    let holder = match store.lock_holder() {
        Ok(Some(j)) => format!("job #{} ({}, started {}) held the app lock", j.id, j.kind, j.started_at),
        _ => "another job held the app lock".to_string(),
    };
    let reason = format!(
        "{holder}; skipped {} time(s) in a row, retried at {}",
        sk.skips,
        sk.retry_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    tracing::warn!(task = %sk.task, "scheduled task skipped: {reason}");
    if let Err(e) = store.record_skipped(sk.kind, &sk.task, &reason) {
        tracing::error!(task = %sk.task, "cannot record the skipped task: {e}");
    }
    let before_slot = sk.slot.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap_or(sk.slot);
    if let Err(e) = store.task_ran(&sk.task, before_slot) {
        tracing::warn!(task = %sk.task, "cannot keep the skipped slot due: {e}");
    }
}

/// Starts a task's child process; `false` if it could not be started (logged).
fn start(
    inv: &Invocation,
    done_tx: &mpsc::UnboundedSender<Done>,
    running: &mut BTreeMap<String, Started>,
    run: TaskToRun,
    skips: u32,
) -> bool {
    let name = run.task.name.clone();
    let argv = task_argv(&run.task.kind);
    if !command_exists(&argv) {
        tracing::warn!(task = %name, "skipped: this caretaker has no `{}` command yet", argv.join(" "));
        return false;
    }
    let catch_up = if run.catch_up { " (catching up on missed runs)" } else { "" };
    let retry = if skips > 0 { format!(" (retry after {skips} skip(s))") } else { String::new() };
    match inv.command(&argv).spawn() {
        Ok(mut child) => {
            let pid = child.id().unwrap_or(0);
            tracing::info!(task = %name, pid, "starting scheduled task: caretaker {}{catch_up}{retry}", argv.join(" "));
            running.insert(name.clone(), Started { run, skips });
            let tx = done_tx.clone();
            tokio::spawn(async move {
                let (code, how) = match child.wait().await {
                    Ok(st) if st.success() => (st.code(), "succeeded".to_string()),
                    Ok(st) => (st.code(), format!("failed ({st})")),
                    Err(e) => (None, format!("could not be waited for: {e}")),
                };
                let _ = tx.send(Done { name, code, how });
            });
            true
        }
        Err(e) => {
            tracing::error!(task = %name, "cannot start `caretaker {}`: {e}", argv.join(" "));
            false
        }
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
            (TaskKind::OsUpdate, "os update", true),
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
