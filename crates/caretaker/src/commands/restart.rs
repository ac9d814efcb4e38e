//! `caretaker restart [SERVICE]`: restart one service, or all of them (stopped in reverse
//! order, started in order), and wait until they are healthy again. Then, as `up`: service
//! mode set by a failed service ends once every service is healthy (docs/maintenance.md).

use crate::appmode::settle_mode;
use crate::cli::{Global, RestartArgs};
use crate::context::open_app;
use crate::control::{request_running, wait_until_up};
use crate::exit::Code;
use anyhow::Result;
use caretaker_supervisor::protocol::Request;
use std::time::Duration;

pub fn run(global: &Global, args: &RestartArgs) -> Result<Code> {
    let app = open_app(global)?;
    if let Some(s) = &args.service {
        app.runtime().check_service_name(s)?;
    }
    let state_dir = app.store.dir().to_path_buf();
    request_running(&state_dir, &Request::Restart { service: args.service.clone() }, Duration::from_secs(10))?;
    let report = wait_until_up(&state_dir, args.service.as_deref(), Duration::from_secs(args.timeout))?;
    print!("{}", super::status::render(&report, &app.store.mode()?));
    settle_mode(&app, "restart")
}
