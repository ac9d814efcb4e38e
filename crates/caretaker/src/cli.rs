//! The command line: argument definitions only. Each subcommand's behaviour lives in
//! `commands/<name>.rs`.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

pub use crate::version::LONG_VERSION;
/// `--version` (not `-V`) adds the build: its cargo features and profile (build.rs).
pub const BUILD_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CARETAKER_COMMIT"),
    ")\nfeatures: ",
    env!("CARETAKER_FEATURES"),
    "\nbuild: ",
    env!("CARETAKER_BUILD"),
);

#[derive(Parser, Debug)]
#[command(
    name = "caretaker",
    version = LONG_VERSION,
    long_version = BUILD_VERSION,
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
    /// Disaster recovery on a fresh machine with only the config: restore the files and the
    /// database from the newest complete snapshot, migrate, start the app and health-check it
    Recover(RecoverArgs),
    /// Run the supervisor in the foreground (for systemd or a container)
    Daemon,
    /// Start every service (and a background daemon if none runs); waits until all are healthy
    Up(UpArgs),
    /// Stop every service in reverse dependency order
    Down(DownArgs),
    /// Restart one service, or all of them
    Restart(RestartArgs),
    /// Make the running daemon read its config again (as SIGHUP does): restarts the services
    /// whose definition changed; listeners, schedules, alerts and the status page follow
    Reload(ReloadArgs),
    /// Update the app to a new release from its git source, rolling back on any failure
    Update(UpdateArgs),
    /// Return to the release deployed before the current one (code only)
    Rollback,
    /// List the release directories and which one is current
    Releases(ReleasesArgs),
    /// State, pid, uptime, restarts, health and last exit of each service
    Status(StatusArgs),
    /// Show captured service output
    Logs(LogsArgs),
    /// Run a one-off command in the app's environment (env, env files, working dir, user)
    Exec(ExecArgs),
    /// Write a systemd unit file that runs `caretaker daemon` for this app
    InstallSystemd(InstallSystemdArgs),
    /// Put the site into maintenance mode (503 page) or take it out
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
    /// Clear the failed flag that keeps the app in service mode
    ResetFailed,
    /// The app's database: check, size, snapshots and revert
    #[command(subcommand)]
    Db(DbCommand),
    /// Try caretaker on a bundled demo application
    Demo(DemoArgs),
    /// Run the deployment checks (exit 0 ok, 1 warning, 2 critical, 3 unknown, like Nagios)
    Check(CheckArgs),
    /// Print the Prometheus metrics, or serve them on an address
    Metrics(MetricsArgs),
    /// Serve the status page (mode, services, jobs, backups, alerts, charts); hash a password for it
    StatusPage(StatusPageArgs),
    /// List scheduled tasks and when they run next
    Schedule(ScheduleArgs),
    /// Hold back alert notifications for a while
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Show alert states; evaluate the rules now; export them for Prometheus
    Alerts(AlertsArgs),
    /// Send notifications
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Which of the app's Python dependencies are vulnerable (local OSV database) or outdated
    Deps(DepsArgs),
    /// The maintenance tasks this server's config makes due, and running them (for a fleet
    /// controller or an Ansible job; docs/tasks.md)
    Tasks(TasksArgs),
    /// Operating system maintenance: package updates with precautions, safe reboots (docs/os.md)
    #[command(subcommand)]
    Os(OsCommand),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Write caretaker's man pages, generated from this command line (the package build runs it)
    #[command(hide = true)]
    Manpage(ManpageArgs),
    /// The front door's ACME certificate: status, renew now
    #[command(subcommand)]
    Cert(CertCommand),
    /// Maintain many servers over SSH: inventory, host keys, runs, status (docs/fleet.md)
    Fleet(crate::commands::fleet::FleetArgs),
    /// Staging clones: the app on its own ports with a copy of its database and files,
    /// destroyed when their time is up (docs/clones.md)
    #[command(subcommand)]
    Clone(CloneCommand),
    /// The bundled demo application (used by `caretaker demo` and the tests)
    #[command(hide = true, disable_help_flag = true)]
    DemoApp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DepsArgs {
    #[command(subcommand)]
    pub command: Option<DepsCommand>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Read this lockfile or requirements file instead of the configured source
    #[arg(long, value_name = "FILE")]
    pub lockfile: Option<PathBuf>,
    /// Do not ask the package index (outdated packages: not checked)
    #[arg(long)]
    pub offline: bool,
}

#[derive(Args, Debug)]
pub struct TasksArgs {
    #[command(subcommand)]
    pub command: TasksCommand,
}

#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// Which scheduled tasks are due now, and why (not); changes nothing
    Due {
        /// Print one JSON document (schema 1, docs/tasks.md)
        #[arg(long)]
        json: bool,
    },
    /// Run every due task, one after another, as the daemon would; exit 0 when all that ran
    /// succeeded or nothing was due, 1 when one failed, 4 when one was skipped (lock held)
    RunDue {
        /// Print one JSON document (schema 1, docs/tasks.md)
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Names, issuer, validity, next renewal, last error
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Renew now if due (without waiting for a failure's backoff); asks the running daemon
    Renew {
        /// Renew even if the certificate is not due
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DepsCommand {
    /// Download the OSV PyPI database (`deps.db_url`) into the state directory
    UpdateDb {
        /// Download from here instead of `deps.db_url`
        #[arg(long)]
        url: Option<String>,
    },
    /// Import the OSV PyPI database from a file (`all.zip`), for servers without internet
    ImportDb { file: PathBuf },
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
    /// Write a printable recovery sheet (PDF): the config as text and as redundant QR codes.
    /// It holds every secret: keep it offline (docs/recovery-sheet.md)
    Sheet(SheetArgs),
    /// Rebuild the config from the recovery sheet's QR codes (PNG/JPEG scans, or the sheet PDF)
    FromQr(FromQrArgs),
    /// Write a cloud-init NoCloud seed (ISO labelled cidata, or user-data + meta-data files)
    /// that installs caretaker and this config on a new machine's first boot
    CloudInit(CloudInitArgs),
}

#[derive(Args, Debug)]
pub struct SheetArgs {
    /// Where to write the PDF (mode 0600)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
    /// Overwrite an existing file
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct FromQrArgs {
    /// Scans of the sheet's QR codes (PNG or JPEG, several codes per image are fine), or the
    /// sheet PDF caretaker wrote
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Where to write the config (mode 0600)
    #[arg(long, short = 'o', value_name = "FILE", default_value = "caretaker.yml")]
    pub out: PathBuf,
    /// Overwrite an existing file
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("dest").required(true).args(["out", "user_data"])))]
#[command(group(clap::ArgGroup::new("bin").required(true).args(["binary_url", "binary"])))]
pub struct CloudInitArgs {
    /// Write an ISO 9660 image labelled cidata (needs xorriso or genisoimage)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write user-data and meta-data into this directory instead
    #[arg(long, value_name = "DIR")]
    pub user_data: Option<PathBuf>,
    /// Download caretaker from this URL on first boot
    #[arg(long, value_name = "URL")]
    pub binary_url: Option<String>,
    /// SHA-256 (hex) the downloaded binary must have
    #[arg(long, value_name = "HEX", requires = "binary_url")]
    pub binary_sha256: Option<String>,
    /// Carry this caretaker binary inside the seed
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// Where the config goes on the new machine
    #[arg(long, value_name = "PATH", default_value = "/etc/caretaker/caretaker.yml")]
    pub config_path: String,
    /// Run `caretaker recover` (restore from the latest backup) before starting the app
    #[arg(long)]
    pub recover: bool,
    /// The new machine's hostname
    #[arg(long)]
    pub hostname: Option<String>,
    /// Overwrite existing files
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand, Debug)]
pub enum MaintenanceCommand {
    /// Switch maintenance mode on: visitors get a 503 page with this message
    On {
        #[arg(long, short = 'm')]
        message: Option<String>,
    },
    /// Switch maintenance mode off (service mode, if set, stays until `reset-failed`)
    Off,
    /// Show the current mode
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Connect, show the server version, the client tools, the size and the safety check
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Take a snapshot to revert to (a recorded job)
    Snapshot {
        /// A label kept in the snapshot's name (a-z, 0-9, -)
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List snapshots and copies kept aside
    Snapshots {
        #[arg(long)]
        json: bool,
    },
    /// Make a snapshot the live database again; the current contents are kept aside
    Revert {
        /// The snapshot's name, as `caretaker db snapshots` lists it
        name: String,
        /// Ends the app's database sessions; say yes to go on
        #[arg(long)]
        yes: bool,
    },
    /// Remove old snapshots and copies kept aside
    Prune {
        /// Keep at least this many of each kind
        #[arg(long, default_value_t = 3)]
        keep_last: usize,
        /// Also keep any younger than this (e.g. 7d)
        #[arg(long, default_value = "7d")]
        max_age: String,
        /// Only show what would be removed
        #[arg(long)]
        dry_run: bool,
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

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Print the results as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// Serve /metrics on this address (host:port) until stopped, instead of printing once
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StatusPageArgs {
    /// Serve /status, /status/api and /status/jobs/ID/log on this address (host:port) until
    /// stopped; the daemon serves the same on its `http.listen` address
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
    #[command(subcommand)]
    pub command: Option<StatusPageCommand>,
}

#[derive(Subcommand, Debug)]
pub enum StatusPageCommand {
    /// Read a password from stdin and print its argon2 hash for `status.users.NAME.password_hash`
    HashPassword,
}

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// How many upcoming runs to show per task
    #[arg(long, short = 'n', default_value_t = 1)]
    pub count: usize,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SilenceCommand {
    /// Silence alerts matching MATCHER (`rule`, `rule/subject`, `*` wildcards) for a while
    Add {
        /// e.g. `filesystem_free_percent`, `service_down/web`, `*`
        matcher: String,
        /// How long, e.g. 2h, 30m, 1d
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Why (shown in `silence list`)
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List silences in force (with --all also expired ones)
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// End a silence now
    Remove { id: i64 },
}

#[derive(Args, Debug)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub command: Option<AlertsCommand>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// Observe, evaluate the rules, send notifications and store the states, once
    Evaluate {
        #[arg(long)]
        json: bool,
    },
    /// Write the built-in rules as Prometheus alerting rules
    Export {
        /// Prometheus rule file format (the only format so far)
        #[arg(long, required = true)]
        prometheus: bool,
        /// Write to FILE instead of standard output
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum NotifyCommand {
    /// Send a test message through every configured notifier
    Test {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Give up waiting for the services to become healthy after this many seconds
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// Also stop the daemon
    #[arg(long)]
    pub daemon: bool,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Branch, tag or commit to deploy (default: app.source's)
    #[arg(long, value_name = "REF")]
    pub to: Option<String>,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Update even when the target commit is the one running
    #[arg(long)]
    pub force: bool,
    /// Finish an interrupted update (roll back, or forward if it had passed the health gate)
    #[arg(long, conflicts_with_all = ["to", "dry_run", "force"])]
    pub resume: bool,
    /// Run as the scheduler's automatic update: skipped in maintenance or service mode
    #[arg(long)]
    pub scheduled: bool,
    /// Started by the daemon to finish an interrupted update (job trigger `recovery`)
    #[arg(long, hide = true, requires = "resume")]
    pub recovery: bool,
}

#[derive(Args, Debug)]
pub struct ReleasesArgs {
    /// JSON output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    /// The service to restart (default: all, in dependency order)
    pub service: Option<String>,
    /// Give up waiting for health after this many seconds
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct ReloadArgs {
    /// Give up waiting for the daemon's answer (its restarts) after this many seconds
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Only this service (default: all, merged by time)
    pub service: Option<String>,
    /// Keep printing new lines as they are written
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// How many lines of history to print
    #[arg(long, short = 'n', default_value_t = 50)]
    pub lines: usize,
}

#[derive(Subcommand, Debug)]
pub enum CloneCommand {
    /// Copy the database and file trees and start the clone on its own ports
    Create(CloneCreateArgs),
    /// The clones, their time left and ports
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop a clone and remove its database copy and files
    Destroy { name: String },
    /// Run a command in a clone's environment
    Exec {
        name: String,
        /// The command and its arguments (after `--`)
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Show a clone's service output
    Logs {
        name: String,
        /// Only this service (default: all)
        service: Option<String>,
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long, short = 'n', default_value_t = 50)]
        lines: usize,
    },
}

#[derive(Args, Debug)]
pub struct CloneCreateArgs {
    /// The clone's name (default: clone-N)
    pub name: Option<String>,
    /// What to copy: `live` (the running app's database and files)
    #[arg(long, default_value = "live")]
    pub from: String,
    /// How long the clone lives (default: clones.default_ttl; at most clones.max_ttl)
    #[arg(long)]
    pub ttl: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Compose apps: the service whose container runs the command (default: compose.app_service)
    #[arg(long, short = 's')]
    pub service: Option<String>,
    /// The command and its arguments (after `--`)
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct InstallSystemdArgs {
    /// Where to write the unit (default: /etc/systemd/system/caretaker-<app>.service)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite an existing unit file with different content
    #[arg(long)]
    pub force: bool,
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
        /// Back up even when the data shrank by more than backup.max_shrink_percent since the
        /// previous snapshot (for this run only: after deleting old data on purpose)
        #[arg(long)]
        allow_shrink: bool,
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
        /// Print the result (errors, warnings) as JSON
        #[arg(long)]
        json: bool,
    },
    /// Apply the retention policy (backup.keep) and free unused space
    Prune {
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot (default: the newest complete one): file trees to their paths, the
    /// snapshot's config next to the live one, the database dump into the database and a
    /// compose app's volumes, in maintenance mode. Refused, with nothing written, where live
    /// data would be overwritten, unless --force
    Restore {
        snapshot: Option<String>,
        /// Only the file trees and the config file
        #[arg(long, conflicts_with = "db_only")]
        files_only: bool,
        /// Only the database (and a compose app's volumes); with --target: the dumps as files
        /// below DIR
        #[arg(long, alias = "streams-only")]
        db_only: bool,
        /// Restore below this directory instead of to the original paths; the database dump is
        /// then written to DIR/caretaker-streams/database instead of into the database. Refused
        /// when DIR is not empty, unless --force
        #[arg(long, value_name = "DIR")]
        target: Option<PathBuf>,
        /// Restore over live data, keeping it aside first (nothing is deleted): file trees and
        /// files are renamed to `<path>.caretaker-old-<time>`, a database with tables is kept as
        /// `<db>__old_<time>`, a volume copied to `<volume>__old_<time>`
        #[arg(long)]
        force: bool,
        /// Put the snapshot's config file in place of the live one (which --force keeps aside);
        /// by default it is written next to it as `<config>.from-snapshot`
        #[arg(long, conflicts_with_all = ["db_only", "target"])]
        replace_config: bool,
        #[arg(long)]
        json: bool,
    },
    /// List what forced restores and recovers kept aside (file trees, config files, compose
    /// volumes, database copies); remove the older ones with --keep
    KeptAside {
        /// Remove all but the newest N copies of each file tree, config file and volume
        /// (database copies: `caretaker db prune`)
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// With --keep: only show what would be removed
        #[arg(long, requires = "keep")]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// Snapshot id or prefix (default: the newest complete snapshot)
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Recover over live data: a non-empty database is kept aside as `<db>__old_<time>` and
    /// non-empty file trees are renamed to `<path>.caretaker-old-<time>`; nothing is deleted
    #[arg(long)]
    pub force: bool,
    /// Deploy this branch, tag or commit of `app.source` instead of the commit the snapshot
    /// records (built like `caretaker update` builds a release, even when a release is present)
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<String>,
    /// Build the snapshot's commit from `app.source` even when a release is present
    #[arg(long)]
    pub redeploy: bool,
    /// Give up waiting for the services to become healthy after this many seconds
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for; the script goes to standard output
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManpageArgs {
    /// Write caretaker.1 and one page per subcommand (caretaker-backup.1, ...) into this
    /// directory, instead of caretaker.1 to standard output
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `caretaker os` (docs/os.md).
#[derive(Subcommand, Debug)]
pub enum OsCommand {
    /// Pending updates (security ones marked), held and kept-back packages, whether a reboot
    /// is needed and why, services running deleted libraries, last boot and last OS update
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// Do not refresh the package lists first (`apt-get update`)
        #[arg(long)]
        no_refresh: bool,
    },
    /// Apply package updates from the allowed origins, except held ones; stops the app around
    /// packages it depends on. Fails (and alerts) on conffile conflicts, kept-back packages,
    /// broken dependencies or an interrupted dpkg
    Update {
        /// Show what would be upgraded and whether the app would stop; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Security updates only
        #[arg(long)]
        security_only: bool,
    },
    /// Reboot the machine: only inside the reboot window (unless --now), with no job running,
    /// a fresh backup and the app not in service mode; maintenance on and the app stopped first
    Reboot {
        /// Only if the system asks for a reboot (reboot-required, a newer kernel)
        #[arg(long)]
        if_needed: bool,
        /// Ignore the reboot window (every other safety condition still applies)
        #[arg(long)]
        now: bool,
    },
    /// The daemon's periodic check: boot ids, the "came back" verdict after a reboot, waiting
    /// reboots and the reboot window
    #[command(hide = true)]
    Tick,
}
