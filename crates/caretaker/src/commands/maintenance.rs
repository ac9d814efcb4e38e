//! `caretaker maintenance on|off|status` and `caretaker reset-failed`.

use crate::appmode;
use crate::cli::{Global, MaintenanceCommand};
use crate::context::open_app;
use crate::exit::Code;
use anyhow::Result;
use caretaker_core::mode::Mode;

pub fn run(global: &Global, cmd: &MaintenanceCommand) -> Result<Code> {
    let app = open_app(global)?;
    let mode = match cmd {
        MaintenanceCommand::On { message } => {
            appmode::maintenance_on(&app.store, &app.config, message.as_deref(), "operator")?
        }
        MaintenanceCommand::Off => appmode::maintenance_off(&app.store, &app.config, "operator")?,
        MaintenanceCommand::Status { json } => {
            let mode = app.store.mode()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&mode)?);
                return Ok(Code::Ok);
            }
            mode
        }
    };
    describe(&mode);
    if matches!(cmd, MaintenanceCommand::Off) {
        if let Mode::Service(_) = mode {
            eprintln!("note: maintenance is off, but the app stays in service mode until `caretaker reset-failed`");
        }
    }
    Ok(Code::Ok)
}

pub fn reset_failed(global: &Global) -> Result<Code> {
    let app = open_app(global)?;
    let before = app.store.mode()?;
    let mode = appmode::reset_failed(&app.store, &app.config)?;
    match before {
        Mode::Service(f) => println!("cleared the failed flag (was: {}, since {})", f.reason, f.since),
        _ => println!("the failed flag was not set"),
    }
    describe(&mode);
    Ok(Code::Ok)
}

fn describe(mode: &Mode) {
    match mode {
        Mode::Normal => println!("mode: normal — the app serves visitors"),
        Mode::Maintenance(m) => println!("mode: maintenance since {} (by {}) — \"{}\"", m.since, m.by, m.message),
        Mode::Service(f) => println!("mode: service since {} — {}", f.since, f.reason),
    }
}
