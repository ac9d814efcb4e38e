//! `caretaker logs [SERVICE] [-f] [-n N]`: the captured output of one service or all of them
//! (merged by time, each line prefixed with the service). Reads the log files in the state
//! directory directly, so it works whether or not the daemon runs.

use crate::cli::{Global, LogsArgs};
use crate::context::open_app;
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_supervisor::logfile::{self, Follower};
use std::io::Write;
use std::time::Duration;

pub fn run(global: &Global, args: &LogsArgs) -> Result<Code> {
    let app = open_app(global)?;
    if app.config.compose.is_some() {
        return compose_logs(&app, args);
    }
    let names: Vec<String> = match &args.service {
        Some(s) if app.config.service(s).is_none() => {
            let all: Vec<&str> = app.config.services.iter().map(|s| s.name.as_str()).collect();
            return Err(Failure::new(Code::Usage, format!("no service named {s}"))
                .hint(format!("services: {}", all.join(", ")))
                .into());
        }
        Some(s) => vec![s.clone()],
        None => app.config.services.iter().map(|s| s.name.clone()).collect(),
    };
    let prefix = names.len() > 1;
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let fmt = |name: &str, line: &str| if prefix { format!("{name:<width$} | {line}") } else { line.to_string() };
    let mut lines: Vec<(String, String)> = Vec::new();
    for n in &names {
        for l in logfile::tail(&logfile::path(app.store.dir(), n), args.lines) {
            lines.push((n.clone(), l));
        }
    }
    // Lines start with an RFC 3339 UTC timestamp, so text order of that is time order; the
    // sort is stable, so lines of one service within the same millisecond keep their order.
    let stamp = |l: &str| l.split(' ').next().unwrap_or("").to_string();
    lines.sort_by_cached_key(|(_, l)| stamp(l));
    let skip = lines.len().saturating_sub(args.lines);
    let mut out = std::io::stdout().lock();
    for (n, l) in &lines[skip..] {
        if writeln!(out, "{}", fmt(n, l)).is_err() {
            return Ok(Code::Ok);
        }
    }
    drop(out);
    if !args.follow {
        return Ok(Code::Ok);
    }
    let mut followers: Vec<(String, Follower)> =
        names.iter().map(|n| (n.clone(), Follower::from_end(&logfile::path(app.store.dir(), n)))).collect();
    loop {
        let mut out = std::io::stdout().lock();
        for (n, f) in &mut followers {
            for l in f.poll() {
                if writeln!(out, "{}", fmt(n, &l)).is_err() {
                    return Ok(Code::Ok); // reader went away (`| head`)
                }
            }
        }
        let _ = out.flush();
        drop(out);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `compose logs --timestamps --tail N [-f] [SERVICE]`, its output passed through (redacted).
fn compose_logs(app: &crate::context::AppContext, args: &LogsArgs) -> Result<Code> {
    let project = crate::compose::project(&app.config, &app.config_path, &app.redactor)?;
    let mut cmd = project.logs_command(args.service.as_deref(), args.follow, args.lines);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut out = std::io::stdout().lock();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let Ok(line) = line else { break };
        if writeln!(out, "{}", app.redactor.redact(&line)).and_then(|_| out.flush()).is_err() {
            let _ = child.kill();
            break; // reader went away (`| head`)
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(Failure::new(Code::Failure, format!("`{} logs` failed ({status})", project.cli.name()))
            .hint("its message is above; check the service name with `caretaker status`")
            .into());
    }
    Ok(Code::Ok)
}
