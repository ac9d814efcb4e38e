//! The `caretaker` binary: command-line glue over the core and adapter crates.
//!
//! Parsing happens in `cli`, behaviour in `commands/<name>.rs`, failures become exit codes in
//! `exit` and nowhere else.

mod appenv;
mod appmode;
mod certs;
mod cli;
mod clonecfg;
mod commands;
mod compose;
mod context;
mod control;
mod daemon;
mod dbbackup;
mod exit;
mod keepaside;
mod listen;
mod os_tick;
mod output;
mod progress;
mod runner;
mod runtime;
mod scheduled;
mod tls;
mod update;
mod version;
mod volbackup;
mod web;

use clap::Parser;
use cli::{Cli, Command, ConfigCommand};
use exit::Code;

fn main() {
    // The embedded demo app runs before anything of caretaker's own (logging, config).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "demo-app") {
        let code = caretaker_demo_app::main_exit(
            std::iter::once(std::ffi::OsString::from("caretaker demo-app")).chain(args.into_iter().skip(2)),
        );
        std::process::exit(exit_code_number(code));
    }
    init_logging();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Config(ConfigCommand::Check { json }) => commands::config::check(&cli.global, *json),
        Command::Config(ConfigCommand::Show { json }) => commands::config::show(&cli.global, *json),
        Command::Config(ConfigCommand::Sheet(a)) => commands::sheet::sheet(&cli.global, a),
        Command::Config(ConfigCommand::FromQr(a)) => commands::sheet::from_qr(a),
        Command::Config(ConfigCommand::CloudInit(a)) => commands::sheet::cloud_init(&cli.global, a),
        Command::Init(a) => commands::init::run(&cli.global, a),
        Command::Jobs(a) => commands::jobs::run(&cli.global, a),
        Command::Maintenance(c) => commands::maintenance::run(&cli.global, c),
        Command::ResetFailed => commands::maintenance::reset_failed(&cli.global),
        Command::Db(c) => commands::db::run(&cli.global, c),
        Command::Backup(a) => commands::backup::run(&cli.global, a),
        Command::Recover(a) => commands::recover::run(&cli.global, a),
        Command::Demo(a) => commands::demo::run(&cli.global, a),
        Command::Check(a) => commands::check::run(&cli.global, a),
        Command::Metrics(a) => commands::metrics::run(&cli.global, a),
        Command::StatusPage(a) => commands::status_page::run(&cli.global, a),
        Command::Schedule(a) => commands::schedule::run(&cli.global, a),
        Command::Silence(c) => commands::silence::run(&cli.global, c),
        Command::Alerts(a) => commands::alerts::run(&cli.global, a),
        Command::Notify(c) => commands::notify::run(&cli.global, c),
        Command::Deps(a) => commands::deps::run(&cli.global, a),
        Command::Tasks(a) => commands::tasks::run(&cli.global, a),
        Command::Os(c) => commands::os::run(&cli.global, c),
        Command::Cert(c) => commands::cert::run(&cli.global, c),
        Command::Clone(c) => commands::clone::run(&cli.global, c),
        Command::Daemon => commands::daemon::run(&cli.global),
        Command::Up(a) => commands::up::run(&cli.global, a),
        Command::Down(a) => commands::down::run(&cli.global, a),
        Command::Restart(a) => commands::restart::run(&cli.global, a),
        Command::Reload(a) => commands::reload::run(&cli.global, a),
        Command::Update(a) => commands::update::update(&cli.global, a),
        Command::Rollback => commands::update::rollback(&cli.global),
        Command::Releases(a) => commands::update::releases(&cli.global, a),
        Command::Status(a) => commands::status::run(&cli.global, a),
        Command::Logs(a) => commands::logs::run(&cli.global, a),
        Command::Exec(a) => commands::exec::run(&cli.global, a),
        Command::InstallSystemd(a) => commands::install_systemd::run(&cli.global, a),
        Command::Completions(a) => commands::completions::completions(a),
        Command::Manpage(a) => commands::completions::manpage(a),
        Command::Fleet(a) => commands::fleet::run(a),
        Command::DemoApp { .. } => unreachable!("handled above"),
    };
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            let (code, hint) = exit::classify(&err);
            eprintln!("error: {err:#}");
            if let Some(h) = hint {
                eprintln!("  hint: {h}");
            }
            code
        }
    };
    std::process::exit(code.number());
}

fn exit_code_number(code: std::process::ExitCode) -> i32 {
    // ExitCode is opaque; compare against the values the demo app uses.
    for n in 0..=255u8 {
        if std::process::ExitCode::from(n) == code {
            return n as i32;
        }
    }
    Code::Failure.number()
}

/// caretaker's own log goes to stderr, one line per event, without ANSI colours when not on a
/// terminal (journald-friendly). `CARETAKER_LOG` sets the filter (default: info, with the
/// backup engine's step-by-step chatter only from warnings on: progress bars show the steps).
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CARETAKER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustic_core=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
