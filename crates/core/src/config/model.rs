//! The validated config model: what the rest of caretaker reads.
//!
//! Every value here has been checked: durations and schedules are parsed, secrets resolved,
//! paths made absolute, references between sections verified. Serializing it (for
//! `config show` and `--json`) prints secrets as `***`.

use super::secret::Secret;
use crate::schedule::Schedule;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The only config schema version this caretaker reads and writes.
pub const CONFIG_VERSION: u32 = 1;

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format_duration(*d))
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

fn ser_schedule<S: Serializer>(d: &Schedule, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(d)
}

fn ser_opt_schedule<S: Serializer>(d: &Option<Schedule>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.collect_str(d),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub version: u32,
    pub app: App,
    /// In dependency order as written (start order is computed by the supervisor).
    pub services: Vec<Service>,
    /// The app runs as a docker compose project instead of `services` (docs/compose.md).
    pub compose: Option<Compose>,
    pub database: Option<Database>,
    pub files: Vec<FileTree>,
    pub backup: Option<Backup>,
    pub update: Update,
    pub alerts: Alerts,
    /// Scheduled app commands (what cron did before: clearsessions, reports).
    pub jobs: Vec<ScheduledJob>,
    pub logs: Logs,
    /// caretaker's own HTTP entrance in front of the app (maintenance and service pages).
    pub front_door: Option<FrontDoor>,
    /// HTTPS on the front door and its certificate (docs/tls.md).
    pub tls: Option<super::tls::Tls>,
    pub maintenance: Maintenance,
    /// IANA time zone in which schedules are read; `None` = the machine's local zone.
    pub timezone: Option<String>,
    /// Overrides the state directory (`/var/lib/caretaker/<app>` by default).
    pub state_dir: Option<PathBuf>,
    /// The daemon's HTTP listener (metrics, status page).
    pub http: Http,
    /// Custom deployment checks run by `caretaker check` next to the built-in ones.
    pub checks: Vec<CustomCheck>,
    pub scheduler: Scheduler,
    /// Who may read the status page (served on the `http` listener under `/status`); `None`:
    /// nobody (every request is refused).
    pub status: Option<StatusPage>,
    /// The dependency report (`caretaker deps`, docs/deps.md).
    pub deps: Deps,
    /// Operating system maintenance: package updates and reboots (docs/os.md).
    pub os: super::os::Os,
    /// Staging clones (docs/clones.md).
    pub clones: super::clones::Clones,
}

impl Config {
    /// Every secret in the config, for the [`super::Redactor`].
    pub fn secrets(&self) -> Vec<&Secret> {
        let mut out = Vec::new();
        fn env<'a>(e: &'a BTreeMap<String, EnvValue>, out: &mut Vec<&'a Secret>) {
            for v in e.values() {
                if let EnvValue::Secret(s) = v {
                    out.push(s);
                }
            }
        }
        env(&self.app.env, &mut out);
        for s in &self.services {
            env(&s.env, &mut out);
        }
        env(&self.clones.env, &mut out);
        if let Some(db) = &self.database {
            out.extend(db.url.as_ref());
            out.extend(db.admin_url.as_ref());
        }
        if let Some(b) = &self.backup {
            out.push(&b.password);
            out.extend(b.s3.iter().flat_map(|s| [&s.access_key_id, &s.secret_access_key]));
        }
        if let Some(smtp) = &self.alerts.smtp {
            out.extend(smtp.password.as_ref());
        }
        out.extend(self.tls.iter().flat_map(|t| &t.acme).flat_map(|a| &a.eab).map(|e| &e.hmac_key));
        for n in &self.alerts.notify {
            if let Notifier::Webhook { url } = n {
                out.push(url);
            }
        }
        out
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Whether a crash loop of the service `name` (of either runtime) puts the app in service
    /// mode: `critical: false` on the service says it does not; unknown names are critical.
    pub fn service_is_critical(&self, name: &str) -> bool {
        match &self.compose {
            Some(c) => c.service(name).is_none_or(|s| s.critical),
            None => self.services.iter().find(|s| s.name == name).is_none_or(|s| s.critical),
        }
    }

    /// How long stopping the whole app may take: each service's stop timeout, one after the
    /// other (a compose project: its stop timeout, compose stops containers in parallel).
    pub fn stop_timeout_total(&self) -> Duration {
        match &self.compose {
            Some(c) => c.stop_timeout,
            None => self.services.iter().map(|s| s.stop_timeout).sum(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct App {
    pub name: String,
    pub domain: Option<String>,
    pub source: Option<Source>,
    pub build: Vec<Command>,
    pub migrate: Vec<Command>,
    pub env: BTreeMap<String, EnvValue>,
    pub env_files: Vec<PathBuf>,
    pub working_dir: Option<PathBuf>,
    pub user: Option<String>,
}

/// An environment variable's value: plain text, or a secret.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum EnvValue {
    Plain(String),
    Secret(Secret),
}

impl EnvValue {
    pub fn expose(&self) -> &str {
        match self {
            EnvValue::Plain(s) => s,
            EnvValue::Secret(s) => s.expose(),
        }
    }
}

/// Where the app's code comes from.
#[derive(Clone, Debug, Serialize)]
pub struct Source {
    /// A git URL or a local path to a repository.
    pub git: String,
    #[serde(flatten)]
    pub reference: GitRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GitRef {
    Branch(String),
    Tag(String),
    Commit(String),
}

/// A command: a shell line (`sh -c`), or an argument vector run without a shell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Argv(Vec<String>),
}

impl Command {
    /// The program and arguments to execute.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
            Command::Argv(v) => v.clone(),
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Shell(s) => f.write_str(s),
            Command::Argv(v) => f.write_str(&v.join(" ")),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Service {
    pub name: String,
    pub command: Command,
    pub after: Vec<String>,
    pub restart: RestartPolicy,
    pub health: Option<HealthCheck>,
    #[serde(serialize_with = "ser_duration")]
    pub stop_timeout: Duration,
    pub env: BTreeMap<String, EnvValue>,
    pub working_dir: Option<PathBuf>,
    pub user: Option<String>,
    pub crash_loop: CrashLoop,
    pub backoff: Backoff,
    /// Whether the site needs this service to serve (default): its crash loop puts the app in
    /// service mode. A non-critical service's crash loop (a worker) only alerts.
    pub critical: bool,
    /// Without a health check, how long the process must stay up to count as started
    /// (`start_seconds`, default 1).
    #[serde(serialize_with = "ser_duration")]
    pub start_seconds: Duration,
}

/// A docker compose project that runs the app (docs/compose.md). Its services are the compose
/// file's; caretaker watches them, health-checks them and counts their restarts.
#[derive(Clone, Debug, Serialize)]
pub struct Compose {
    /// Compose files (`-f`), relative to `project_dir`; empty: compose's own default
    /// (`docker-compose.yml`, `compose.yaml`, ...) in `project_dir`.
    pub files: Vec<PathBuf>,
    /// The compose project name (`-p`): containers, networks and volumes are named after it.
    pub project: String,
    /// The project directory; `None`: the app's working directory (so that with
    /// `caretaker update` the compose files come from the current release).
    pub project_dir: Option<PathBuf>,
    pub cli: ComposeCli,
    /// The service whose image runs the app's one-off commands: `app.migrate`, the migration
    /// check, `caretaker exec`.
    pub app_service: Option<String>,
    /// caretaker's settings for some of the compose file's services.
    pub services: Vec<ComposeService>,
    /// Grace time of `stop` before the containers are killed.
    #[serde(serialize_with = "ser_duration")]
    pub stop_timeout: Duration,
    /// Named volumes (as the compose file names them) that belong in the app's snapshot.
    pub volumes: Vec<ComposeVolume>,
    /// How `caretaker update` gets the new release's images.
    pub images: ImageSource,
    /// Services kept running while an update stops the app (in addition to the database's).
    pub keep_running: Vec<String>,
    /// Files kept outside the release (env files outside git), linked into the project
    /// directory before compose runs there.
    pub outside_files: Vec<OutsideFile>,
}

/// A file or directory the compose file needs but the release does not hold (docs/compose.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutsideFile {
    /// Where compose expects it, relative to the project directory (no `..`).
    pub path: PathBuf,
    /// Where it is kept: absolute (a relative path is resolved against the config's directory).
    pub from: PathBuf,
}

impl Compose {
    pub fn service(&self, name: &str) -> Option<&ComposeService> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// A named volume in the app's snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct ComposeVolume {
    /// The volume's key in the compose file (compose names the docker volume `<project>_<key>`).
    pub name: String,
    /// An empty volume is normally a sign of lost data; allow it only when it is expected.
    pub allow_empty: bool,
}

/// Which compose command line to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComposeCli {
    /// `docker compose` (v2) if the docker CLI has it, else `docker-compose` (v1).
    Auto,
    /// `docker compose` (the v2 plugin).
    DockerCompose,
    /// `docker-compose` (the v1 program, as Debian ships it).
    DockerDashCompose,
}

/// Where an update's images come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageSource {
    /// `compose build` in the new release (services with a `build:` section).
    Build,
    /// `compose pull` (services with an `image:`; tags from the new release's compose files).
    Pull,
}

/// caretaker's settings for one compose service.
#[derive(Clone, Debug, Serialize)]
pub struct ComposeService {
    pub name: String,
    /// caretaker's own health check; without it, the container's health status (its
    /// `HEALTHCHECK`) counts, if it has one.
    pub health: Option<HealthCheck>,
    pub crash_loop: CrashLoop,
    /// See [`Service::critical`].
    pub critical: bool,
}

/// Delay before restarting a service that exited: `initial`, doubled after every restart up
/// to `max`; reset once the service has run for longer than the crash-loop window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Backoff {
    #[serde(serialize_with = "ser_duration")]
    pub initial: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

/// `restarts` restarts within `within` mean the service is broken, not unlucky.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CrashLoop {
    pub restarts: u32,
    #[serde(serialize_with = "ser_duration")]
    pub within: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthCheck {
    pub probe: Probe,
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    pub retries: u32,
    #[serde(serialize_with = "ser_duration")]
    pub start_period: Duration,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    Http(HttpProbe),
    Tcp { address: String },
    Command { command: Command },
}

/// An HTTP(S) GET probe. One success rule everywhere (daemon, compose watcher, `check`): the
/// status must be in `expect_status` (default: any 2xx); redirects are not followed, so a 3xx
/// fails unless listed (docs/supervisor.md, "Health probes").
#[derive(Clone, Debug, Serialize)]
pub struct HttpProbe {
    pub url: String,
    pub expect_status: ExpectStatus,
    pub expect_body: Option<String>,
    /// PEM certificates trusted for `https://` besides the public web roots: a private CA, or a
    /// self-signed certificate the server must present exactly.
    pub ca_file: Option<PathBuf>,
}

/// The HTTP statuses a probe accepts: inclusive ranges; empty means the default, any 2xx.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectStatus(pub Vec<(u16, u16)>);

impl ExpectStatus {
    pub fn accepts(&self, status: u16) -> bool {
        if self.0.is_empty() {
            return (200..300).contains(&status);
        }
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }

    /// One item of `expect_status`: `200`, `"3xx"` or `"200-399"`.
    pub fn parse_item(s: &str) -> Result<(u16, u16), String> {
        let s = s.trim();
        let code = |t: &str| match t.trim().parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) => Ok(n),
            _ => Err(format!("\"{t}\" is not an HTTP status (100 to 599)")),
        };
        if let Some(d) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
            return match d.parse::<u16>() {
                Ok(c @ 1..=5) => Ok((c * 100, c * 100 + 99)),
                _ => Err(format!("\"{s}\" is not an HTTP status class (1xx to 5xx)")),
            };
        }
        if let Some((lo, hi)) = s.split_once('-') {
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return Err(format!("\"{s}\" is an empty range"));
            }
            return Ok((lo, hi));
        }
        code(s).map(|n| (n, n))
    }
}

impl std::fmt::Display for ExpectStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("2xx");
        }
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            match (lo, hi) {
                (lo, hi) if lo == hi => write!(f, "{sep}{lo}")?,
                (lo, hi) if lo % 100 == 0 && *hi == lo + 99 => write!(f, "{sep}{}xx", lo / 100)?,
                (lo, hi) => write!(f, "{sep}{lo}-{hi}")?,
            }
        }
        Ok(())
    }
}

impl Serialize for ExpectStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    Postgres,
    Mariadb,
    Sqlite,
}

#[derive(Clone, Debug, Serialize)]
pub struct Database {
    pub kind: DbKind,
    /// Connection URL for PostgreSQL and MariaDB (holds the password, so it is a secret).
    pub url: Option<Secret>,
    /// An administrator's URL (PostgreSQL superuser or a role with CREATEROLE and CREATEDB),
    /// used to create the app's role and database on a fresh server (restore, recover) and for
    /// snapshots. Optional: without it, the app's own role must be allowed to do these.
    pub admin_url: Option<Secret>,
    /// Database file for SQLite.
    pub path: Option<PathBuf>,
    /// Safety check: backups refuse to run unless each table has at least this many rows.
    pub min_rows: BTreeMap<String, u64>,
    /// The compose service the database server runs in (a compose app): SQL connections go to
    /// that container's address instead of the URL's host, and the client tools (dump,
    /// restore) run inside the container (docs/compose.md).
    pub compose_service: Option<String>,
    /// MariaDB: dump stored procedures and functions (`--routines`, default true). Turned off
    /// only when the database user cannot be granted the right to read routines it does not
    /// own; they are then not in the backup (docs/databases.md).
    pub dump_routines: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileTree {
    pub path: PathBuf,
    /// An empty tree is normally a sign of a lost mount; allow it only when it is expected.
    pub allow_empty: bool,
    pub exclude: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Backup {
    pub repository: Repository,
    pub password: Secret,
    #[serde(serialize_with = "ser_schedule")]
    pub schedule: Schedule,
    #[serde(serialize_with = "ser_opt_schedule")]
    pub prune_schedule: Option<Schedule>,
    #[serde(serialize_with = "ser_opt_schedule")]
    pub check_schedule: Option<Schedule>,
    pub keep: Keep,
    /// Refuse a backup whose size dropped by more than this percentage since the last one.
    pub max_shrink_percent: u8,
    pub sftp: Option<SftpOptions>,
    pub s3: Option<S3Options>,
    /// Retries of failed requests to a remote (S3/SFTP) repository (docs/backup.md "Retries").
    pub retry: Retry,
}

/// `backup.retry`: how long a remote repository's transient failures are retried.
#[derive(Clone, Debug, Serialize)]
pub struct Retry {
    /// Total time one request may spend in retries before the backup fails (0: no retries).
    #[serde(serialize_with = "ser_duration")]
    pub max_time: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { max_time: Duration::from_secs(10 * 60) }
    }
}

/// A backup repository location, in restic's notation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repository {
    Local(PathBuf),
    Sftp { user: Option<String>, host: String, port: Option<u16>, path: String },
    S3 { endpoint: String, bucket: String, prefix: String },
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Repository::Local(p) => write!(f, "local:{}", p.display()),
            Repository::Sftp { user, host, port, path } => {
                let user = user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
                match port {
                    Some(p) => write!(f, "sftp://{user}{host}:{p}/{path}"),
                    None => write!(f, "sftp:{user}{host}:{path}"),
                }
            }
            Repository::S3 { endpoint, bucket, prefix } => {
                write!(f, "s3:{endpoint}/{bucket}")?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                Ok(())
            }
        }
    }
}

impl Serialize for Repository {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SftpOptions {
    pub key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct S3Options {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub region: Option<String>,
}

/// Retention policy, as in restic's `forget --keep-*`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Keep {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub within: Option<Duration>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Update {
    #[serde(serialize_with = "ser_opt_schedule")]
    pub schedule: Option<Schedule>,
    pub automatic: bool,
    pub keep_releases: u32,
    #[serde(serialize_with = "ser_duration")]
    pub health_timeout: Duration,
    pub migrations: MigrationDetect,
    /// How long the pre-migration database snapshot is kept after a successful update.
    #[serde(serialize_with = "ser_duration")]
    pub snapshot_keep: Duration,
}

/// How to tell whether an update needs database migrations.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationDetect {
    /// New files under these directories (globs allowed) between running and target commit.
    Paths(Vec<String>),
    /// A command that exits non-zero when migrations are pending.
    Command(Command),
}

#[derive(Clone, Debug, Serialize)]
pub struct Alerts {
    pub notify: Vec<Notifier>,
    pub smtp: Option<Smtp>,
    #[serde(serialize_with = "ser_duration")]
    pub repeat_interval: Duration,
    pub rules: Rules,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Notifier {
    Email(String),
    /// The URL often carries a token, so it is treated as a secret.
    Webhook {
        url: Secret,
    },
    /// An Alertmanager (base URL); alerts are pushed to its `/api/v2/alerts`.
    Alertmanager(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    Tls,
    None,
}

#[derive(Clone, Debug, Serialize)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
}

/// A rule on a measured level: warning and critical thresholds, held for `for` before firing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Threshold {
    pub enabled: bool,
    pub warning: f64,
    pub critical: f64,
    #[serde(rename = "for", serialize_with = "ser_duration")]
    pub hold: Duration,
}

/// Thresholds given as durations (certificate validity left).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DurationThreshold {
    pub enabled: bool,
    #[serde(serialize_with = "ser_duration")]
    pub warning: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub critical: Duration,
}

/// The built-in alert rules and their settings (see the appliance's alert.rules in
/// shared/reference for where they come from).
#[derive(Clone, Debug, Serialize)]
pub struct Rules {
    pub filesystem_free_percent: Threshold,
    pub memory_used_percent: Threshold,
    pub load_per_cpu: Threshold,
    /// Fires when the newest successful backup is older than this.
    #[serde(serialize_with = "ser_opt_duration")]
    pub backup_max_age: Option<Duration>,
    /// Fires when no successful update run happened for this long (automatic updates only).
    #[serde(serialize_with = "ser_opt_duration")]
    pub update_max_age: Option<Duration>,
    pub certificate_expiry: DurationThreshold,
    /// Fires when the machine booted more than `reboots_max` times within `reboots_within`.
    pub reboots_max: u32,
    #[serde(serialize_with = "ser_duration")]
    pub reboots_within: Duration,
    /// Fires when a service is down for this long.
    #[serde(serialize_with = "ser_opt_duration")]
    pub service_down_for: Option<Duration>,
    pub job_failed: bool,
    pub service_mode: bool,
    /// Fires when a scheduled task was skipped `alert::SKIPS_TO_ALERT` times in a row.
    pub job_skipped: bool,
    /// Fires while the newest dependency report lists a vulnerable package.
    pub dependencies_vulnerable: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScheduledJob {
    pub name: String,
    pub command: Command,
    #[serde(serialize_with = "ser_schedule")]
    pub schedule: Schedule,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

/// Rotation of captured service logs.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Logs {
    pub max_size_bytes: u64,
    pub keep: u32,
}

/// The front door: a reverse proxy in front of the app's web service that answers with a
/// maintenance or service page when the app must not or cannot serve.
#[derive(Clone, Debug, Serialize)]
pub struct FrontDoor {
    /// Where visitors connect, e.g. `0.0.0.0:80` or `127.0.0.1:8080`.
    pub listen: String,
    /// The app's web service, `host:port` (HTTP/1.1, kept alive).
    pub upstream: String,
    pub max_body_bytes: u64,
    /// How long the app may take to start answering a request.
    #[serde(serialize_with = "ser_duration")]
    pub upstream_timeout: Duration,
    /// `Retry-After` of the maintenance page, and how often it reloads itself.
    #[serde(serialize_with = "ser_duration")]
    pub retry_after: Duration,
}

/// Maintenance mode settings.
#[derive(Clone, Debug, Serialize)]
pub struct Maintenance {
    /// For sites that keep nginx in front: caretaker writes `maintenance.html` here while in
    /// maintenance or service mode and removes it afterwards (see docs/maintenance.md).
    pub page_dir: Option<PathBuf>,
    /// Message shown when none is given on the command line.
    pub default_message: String,
}

/// The daemon's HTTP listener: `/metrics` (and the status page).
#[derive(Clone, Debug, Serialize)]
pub struct Http {
    /// `host:port`; loopback by default, so metrics are not exposed by accident.
    pub listen: String,
    /// Connections served at once; more wait in the kernel's accept queue (no memory here).
    pub max_connections: usize,
    /// How long a client may take to send a request's headers before it is disconnected
    /// (slowloris), also while an idle keep-alive connection waits for its next request.
    #[serde(serialize_with = "ser_duration")]
    pub header_timeout: Duration,
}

/// The status page's credentials. Passwords are stored only as argon2 PHC strings
/// (`caretaker status-page hash-password` makes one); the token is read from a file.
#[derive(Clone, Debug, Serialize)]
pub struct StatusPage {
    /// User name → argon2 PHC hash (`$argon2id$v=19$...`), for HTTP Basic auth.
    pub users: BTreeMap<String, String>,
    /// A file holding a bearer token (`Authorization: Bearer ...` or `?token=`).
    pub token_file: Option<PathBuf>,
    /// `/metrics` asks for the same credentials as the page (it is open by default).
    pub protect_metrics: bool,
}

/// A custom deployment check: a probe that must succeed.
#[derive(Clone, Debug, Serialize)]
pub struct CustomCheck {
    pub name: String,
    pub probe: Probe,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// A failure is critical (default) or only a warning.
    pub critical: bool,
}

/// The dependency report: where the app's resolved dependencies are read, where the OSV
/// database and the package index are (docs/deps.md).
#[derive(Clone, Debug, Serialize)]
pub struct Deps {
    /// When to run the report as a scheduled task; `None`: only on demand.
    #[serde(serialize_with = "ser_opt_schedule")]
    pub schedule: Option<Schedule>,
    /// Where `caretaker deps update-db` downloads the OSV PyPI export (`all.zip`).
    pub db_url: String,
    /// The package index for the outdated check: a PyPI-style JSON API (`.../pypi`) or a PEP
    /// 691 simple index (`.../simple`). `None` (`index_url: off`): not checked.
    pub index_url: Option<String>,
    /// The lockfile or pinned requirements file (relative to the app's working directory);
    /// `None`: `freeze_command` runs in the app's environment.
    pub lockfile: Option<PathBuf>,
    /// What prints the installed packages when there is no lockfile.
    pub freeze_command: Command,
}

/// Scheduler settings shared by every scheduled task.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Scheduler {
    /// Each run starts up to this much later than its calendar time (spreads load, like
    /// systemd's `RandomizedDelaySec`); the delay is fixed per task and run.
    #[serde(serialize_with = "ser_duration")]
    pub random_delay: Duration,
}
