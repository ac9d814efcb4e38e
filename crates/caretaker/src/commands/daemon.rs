//! `caretaker daemon`: the supervisor, scheduler, alerts, HTTP listener and front door in the
//! foreground — for systemd, a container, or `up`'s background start. One per app: a second
//! one is refused.

use crate::cli::Global;
use crate::context::open_app;
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_state::{AppLock, LockError};

pub fn run(global: &Global) -> Result<Code> {
    // Sockets from systemd (socket activation): taken before any thread starts.
    crate::listen::take_from_environment();
    let app = open_app(global)?;
    let lock_path = crate::control::daemon_lock_path(app.store.dir());
    let _lock = match AppLock::try_acquire(&lock_path) {
        Ok(l) => l,
        Err(LockError::Busy { .. }) => {
            return Err(Failure::new(
                Code::Busy,
                format!("a caretaker daemon already runs for app {}", app.config.app.name),
            )
            .hint("talk to it with `caretaker status`, `caretaker down --daemon` stops it")
            .into())
        }
        Err(e) => return Err(Failure::new(Code::State, e.to_string()).into()),
    };
    crate::daemon::run(app, global.allow_world_readable_config)?;
    Ok(Code::Ok)
}
