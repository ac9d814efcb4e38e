//! `caretaker down`: stop every service in reverse dependency order (SIGTERM to each process
//! group, SIGKILL after its stop_timeout) and return when all are gone. `--daemon` also ends the
//! daemon. Without a daemon, services a killed daemon left behind are stopped directly.

use crate::cli::{DownArgs, Global};
use crate::context::open_app;
use crate::control::request;
use crate::exit::Code;
use anyhow::Result;
use caretaker_supervisor::process::{stop_leftovers, Records};
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
    match stopped {
        Some(()) if app.config.compose.is_some() => {
            println!("stopped the compose project{}", if args.daemon { " and the daemon" } else { "" });
        }
        Some(()) => {
            println!(
                "stopped {} service(s){}",
                app.config.services.len(),
                if args.daemon { " and the daemon" } else { "" }
            );
        }
        // Docker keeps a compose app's containers running without a daemon: stop them.
        None if app.config.compose.is_some() => {
            let project = crate::compose::project(&app.config, &app.config_path, &app.redactor)?;
            project.stop(&[], app.config.stop_timeout_total(), &mut |_| {})?;
            println!("no daemon runs for {}; stopped the compose project {}", app.config.app.name, project.name);
        }
        None => {
            let records = Records::new(&state_dir);
            let grace = app.config.services.iter().map(|s| s.stop_timeout).max().unwrap_or_default();
            let found = stop_leftovers(&records.load(), grace);
            records.save(&[])?;
            if found.is_empty() {
                println!("no daemon runs for {}; nothing to stop", app.config.app.name);
            } else {
                println!("no daemon ran; stopped what a previous one left running: {}", found.join(", "));
            }
        }
    }
    Ok(Code::Ok)
}
