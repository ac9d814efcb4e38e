//! `caretaker logs [SERVICE] [-f] [-n N]`: the captured output of one service or all of them
//! (merged by time, each line prefixed with the service). Reads the log files in the state
//! directory directly, so it works whether or not the daemon runs.

use crate::cli::{Global, LogsArgs};
use crate::context::open_app;
use crate::exit::Code;
use anyhow::Result;
use std::io::Write;

pub fn run(global: &Global, args: &LogsArgs) -> Result<Code> {
    let app = open_app(global)?;
    let mut out = std::io::stdout().lock();
    // A write error: the reader went away (`| head`).
    app.runtime().logs(args.service.as_deref(), args.follow, args.lines, &mut |line| {
        writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
    })?;
    Ok(Code::Ok)
}
