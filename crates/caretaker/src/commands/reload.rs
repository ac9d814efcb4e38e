//! `caretaker reload`: the running daemon reads its config file again and follows it
//! (the same as SIGHUP; docs/daemon.md, "Reload"). Waits until the changed services were
//! restarted and prints what was restarted, started, stopped and left alone. An invalid config
//! is refused with every problem listed, and the running one stays.

use crate::cli::{Global, ReloadArgs};
use crate::context::open_app;
use crate::control::request_running;
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_supervisor::protocol::{ReloadReport, Request, Response};
use std::time::Duration;

pub fn run(global: &Global, args: &ReloadArgs) -> Result<Code> {
    // An invalid config ends here, with every problem listed (the daemon checks again).
    let app = open_app(global)?;
    let state_dir = app.store.dir().to_path_buf();
    match request_running(&state_dir, &Request::Reload, Duration::from_secs(args.timeout))? {
        Response::Reloaded(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render(&report));
            }
            Ok(Code::Ok)
        }
        Response::Refused { problems } => {
            eprintln!("{}", problems.trim_end());
            Err(Failure::new(Code::Config, "the daemon refused the new config; the running config stays in effect")
                .hint("fix the problems above (`caretaker config check` lists them), then `caretaker reload` again")
                .into())
        }
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// One line per kind of change; kinds with nothing in them are left out, except `unchanged`.
pub fn render(r: &ReloadReport) -> String {
    let mut out = String::new();
    let mut line = |label: &str, names: &[String]| {
        if !names.is_empty() {
            out.push_str(&format!("{label}: {}\n", names.join(", ")));
        }
    };
    line("restarted", &r.restarted);
    line("started", &r.started);
    line("stopped", &r.stopped);
    line("changed, not running (takes effect when started)", &r.not_running);
    line("unchanged", &r.unchanged);
    line("now following", &r.sections);
    if r.rebound {
        out.push_str("listeners: bound on their new addresses\n");
    }
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    if r.restarted.is_empty() && r.started.is_empty() && r.stopped.is_empty() && r.sections.is_empty() {
        out.push_str("the config has not changed since the daemon last read it\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_what_changed() {
        let r = ReloadReport {
            restarted: vec!["web".into()],
            unchanged: vec!["db".into()],
            sections: vec!["jobs".into()],
            ..Default::default()
        };
        assert_eq!(render(&r), "restarted: web\nunchanged: db\nnow following: jobs\n");
        let same = ReloadReport { unchanged: vec!["db".into()], ..Default::default() };
        assert!(render(&same).ends_with("the config has not changed since the daemon last read it\n"));
    }
}
