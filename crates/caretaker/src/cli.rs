//! The command line: argument definitions only. Each subcommand's behaviour lives in
//! `commands/<name>.rs`.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CARETAKER_COMMIT"), ")");

#[derive(Parser, Debug)]
#[command(
    name = "caretaker",
    version = LONG_VERSION,
    about = "Turns a self-hosted web application into a self-maintaining appliance",
    long_about = "caretaker supervises a web application's services, backs up its database and files, \
updates it safely with automatic rollback, watches it and tells you when something is wrong.\n\n\
Config is found at --config, $CARETAKER_CONFIG, ./caretaker.yml or /etc/caretaker/caretaker.yml. \
Exit codes are listed in docs/exit-codes.md."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Config file (default: $CARETAKER_CONFIG, ./caretaker.yml, /etc/caretaker/caretaker.yml)
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory (default: state_dir from the config, else /var/lib/caretaker/<app>)
    #[arg(long, global = true, value_name = "DIR", env = "CARETAKER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Accept a config file that holds secrets although other users can read it
    #[arg(long, global = true)]
    pub allow_world_readable_config: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check or show the config file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write a commented starter config with fresh secrets
    Init(InitArgs),
    /// List recorded jobs, show one, or run a scheduled app command now
    Jobs(JobsArgs),
    /// Back up, list, check, prune and restore (restic-format repository)
    Backup(BackupArgs),
    /// Try caretaker on a bundled demo application
    Demo(DemoArgs),
    /// The bundled demo application (used by `caretaker demo` and the tests)
    #[command(hide = true, disable_help_flag = true)]
    DemoApp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the config; reports every problem with file:line:column
    Check {
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the effective config (defaults filled in, secrets redacted)
    Show {
        /// Print JSON instead of YAML
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The app's name (lowercase letters, digits, - and _)
    #[arg(long, default_value = "myapp")]
    pub app: String,
    /// The app's public domain name
    #[arg(long)]
    pub domain: Option<String>,
}

#[derive(Args, Debug)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub command: Option<JobsCommand>,
    /// Only jobs of this kind (backup, update, command, ...)
    #[arg(long)]
    pub kind: Option<String>,
    /// How many jobs to list
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Show one job: its record and its log
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Run a command from the config's `jobs:` section now, as a recorded job
    Run {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Create the backup repository named in the config
    Init,
    /// Take a snapshot now: file trees, the config file (and the database dump)
    Run {
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// List the snapshots
    List {
        #[arg(long)]
        json: bool,
    },
    /// Verify the repository; optionally read back all or part of the data
    Check {
        /// Read and verify all data
        #[arg(long)]
        read_data: bool,
        /// Read and verify a random subset, e.g. 10%
        #[arg(long, value_name = "PERCENT", conflicts_with = "read_data")]
        read_data_subset: Option<String>,
    },
    /// Apply the retention policy (backup.keep) and free unused space
    Prune {
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot (default: the newest complete one)
    Restore {
        snapshot: Option<String>,
        /// Only the file trees and the config file
        #[arg(long, conflicts_with = "streams_only")]
        files_only: bool,
        /// Only the streams (database dumps); needs --target until the database restore exists
        #[arg(long)]
        streams_only: bool,
        /// Restore below this directory instead of to the original paths
        #[arg(long, value_name = "DIR")]
        target: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory for the demo's config, app, data and state
    #[arg(long, default_value = "caretaker-demo")]
    pub dir: PathBuf,
    /// Address of the demo app
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// Stop after everything is up and checked, instead of running until Ctrl-C
    #[arg(long)]
    pub exit_when_ready: bool,
}
