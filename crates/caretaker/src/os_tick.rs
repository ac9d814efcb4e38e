//! The daemon's OS maintenance hook (docs/os.md): every minute, `caretaker os tick` runs as a
//! child process — recording the boot id, judging whether the machine came back after a
//! reboot caretaker started, alerting on a needed reboot that waited too many windows, and
//! rebooting inside this host's slot of the reboot window when everything allows it. The
//! work is in `commands::os`; a child keeps the daemon's loop free of blocking apt and state
//! store calls, and the reboot's own job holds the app lock like any other.

use crate::scheduled::Invocation;
use std::time::Duration;
use tokio::sync::watch;

const INTERVAL: Duration = Duration::from_secs(60);
/// A tick that runs longer than this (a reboot waiting for the app to stop) is left alone
/// and the next one skipped until it ends.
const LIMIT: Duration = Duration::from_secs(30 * 60);

/// Starts the periodic check; it ends when `shutdown` is set.
pub fn spawn(inv: &Invocation, mut shutdown: watch::Receiver<bool>) {
    let inv = Invocation {
        exe: inv.exe.clone(),
        config_path: inv.config_path.clone(),
        state_dir: inv.state_dir.clone(),
        allow_world_readable_config: inv.allow_world_readable_config,
    };
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let mut cmd = inv.command(&["os".into(), "tick".into()]);
            cmd.kill_on_drop(false);
            match cmd.spawn() {
                Ok(mut child) => match tokio::time::timeout(LIMIT, child.wait()).await {
                    Ok(Ok(st)) if !st.success() => tracing::warn!("os tick ended with {st}"),
                    Ok(Err(e)) => tracing::warn!("os tick: {e}"),
                    Err(_) => tracing::warn!("os tick still runs after {LIMIT:?}"),
                    _ => {}
                },
                Err(e) => tracing::warn!("cannot start os tick: {e}"),
            }
        }
    });
}
