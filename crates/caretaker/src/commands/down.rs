//! `caretaker down`: stop every service in reverse dependency order (SIGTERM to each process
//! group, SIGKILL after its stop_timeout) and return when all are gone. `--daemon` also ends the
//! daemon. Without a daemon, services a killed daemon left behind are stopped directly.

use crate::cli::{DownArgs, Global};
use crate::context::open_app;
use crate::control::request;
use crate::exit::Code;
use anyhow::Result;
use caretaker_supervisor::protocol::Request;
use std::time::Duration;

pub fn run(global: &Global, args: &DownArgs) -> Result<Code> {
    let app = open_app(global)?;
    let state_dir = app.store.dir().to_path_buf();
    // Generous: every service may use its whole stop timeout, one after the other.
    let total: Duration = app.config.stop_timeout_total() + Duration::from_secs(30);
    let stopped = if args.daemon {
        crate::control::stop_daemon(&state_dir, total)?.then_some(())
    } else {
        request(&state_dir, &Request::Down { exit_daemon: false }, total)?.map(|_| ())
    };
    let runtime = app.runtime();
    match stopped {
        Some(()) => println!("stopped {}{}", runtime.what_stops(), if args.daemon { " and the daemon" } else { "" }),
        // Without a daemon: what runs anyway (a compose app's containers, a killed daemon's
        // processes).
        None => println!("{}", runtime.stop_without_daemon()?),
    }
    Ok(Code::Ok)
}
