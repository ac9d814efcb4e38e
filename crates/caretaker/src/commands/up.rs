//! `caretaker up`: start every service in dependency order and return once all are healthy —
//! or fail with the reason and the last lines of the failing service's log.
//!
//! Without a running daemon, `up` starts one in the background (see docs/supervisor.md); under
//! systemd the daemon already runs and `up` just asks it. An interrupted update is finished
//! first (`update --resume`, which starts the services itself), and `up` waits for it. Once
//! every service is healthy, service mode set by a failed service ends; `up` says what the site
//! serves (docs/maintenance.md).

use crate::appmode::settle_mode;
use crate::cli::{Global, UpArgs};
use crate::context::open_app;
use crate::control::{request, start_background_daemon, wait_until_up};
use crate::exit::Code;
use crate::update::finish_interrupted_update;
use anyhow::Result;
use caretaker_supervisor::protocol::Request;
use std::time::Duration;

pub fn run(global: &Global, args: &UpArgs) -> Result<Code> {
    let app = open_app(global)?;
    let state_dir = app.store.dir().to_path_buf();
    finish_interrupted_update(global, &app)?;
    if request(&state_dir, &Request::Up, Duration::from_secs(10))?.is_none() {
        // A fresh daemon brings everything up by itself.
        start_background_daemon(global, &app.config_path, &state_dir)?;
    }
    let report = wait_until_up(&state_dir, None, Duration::from_secs(args.timeout))?;
    print!("{}", super::status::render(&report, &app.store.mode()?));
    settle_mode(&app, "up")
}
