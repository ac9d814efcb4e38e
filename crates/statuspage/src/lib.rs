//! The status page: what an operator wants to know at a glance — the app's mode, its services
//! and their health, recent jobs with their logs, backups and the current RPO, alerts, the next
//! scheduled runs, and two charts (repository size, job durations) rendered on the server as
//! SVG. The same data as JSON. Everything behind password (argon2, HTTP Basic) or token auth.
//!
//! Paths (see docs/status-page.md):
//! - `GET /status` — the HTML page;
//! - `GET /status/api` — the same data as JSON ([`StatusData`]);
//! - `GET /status/jobs/{id}/log` — one job's log, plain text.
//!
//! The daemon merges [`router`] into its HTTP listener (and may put `/metrics` behind the
//! same auth with [`protect`]); `caretaker status-page --serve ADDR` serves it alone. Both
//! serve through [`listener::serve`], which bounds connections and header read time.

pub mod auth;
pub mod html;
pub mod listener;
pub mod svg;

use auth::Auth;
use auth::Decision;
use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use caretaker_core::config::Config;
use caretaker_core::job::figures::{BackupFigures, DepsFigures, DepsFinding, Figures, OutdatedPackage, PruneFigures};
use caretaker_core::job::{kind, Outcome, Trigger};
use caretaker_core::mode::Mode;
use caretaker_core::scheduler::{next_start, tasks_from_config};
use caretaker_state::{StateError, Store};
use caretaker_supervisor::protocol::StatusReport;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many recent jobs the page lists.
pub const RECENT_JOBS: usize = 25;
/// How many finished jobs the duration chart shows.
pub const CHART_JOBS: usize = 40;
/// How many backup runs the repository size chart goes back.
pub const CHART_BACKUPS: usize = 200;
/// The largest part of a job log served (its end).
pub const MAX_LOG_BYTES: u64 = 1 << 20;

/// Everything the page shows; also the JSON of `/status/api`.
#[derive(Clone, Debug, Serialize)]
pub struct StatusData {
    pub app: String,
    pub generated_at: Timestamp,
    pub mode: Mode,
    pub services: Services,
    pub jobs: Vec<JobRow>,
    /// `None` when the config has no `backup` section.
    pub backups: Option<BackupSummary>,
    pub alerts: Vec<AlertRow>,
    pub schedule: Vec<ScheduleRow>,
    /// The dependency report (docs/deps.md); `None` when it is not scheduled and never ran.
    pub dependencies: Option<DependenciesSection>,
    pub charts: Charts,
    /// OS maintenance (docs/os.md): `None` until caretaker has looked at the OS.
    pub os: Option<OsSection>,
    /// The front door's ACME certificates (the renewal task's status); empty without
    /// `tls.acme`.
    pub certificates: Vec<CertRow>,
    /// Staging clones (docs/clones.md), by name.
    pub clones: Vec<CloneRow>,
}

/// The operating system: pending updates, reboots (docs/os.md).
#[derive(Clone, Debug, Serialize)]
pub struct OsSection {
    pub summary: caretaker_core::os::OsSummary,
    pub last_reboot: Option<caretaker_core::os::LastReboot>,
}

/// The dependency report's section: the newest successful report's findings, and the last
/// run and last failure of the `deps` job.
#[derive(Clone, Debug, Serialize)]
pub struct DependenciesSection {
    /// `deps.schedule` as written, when scheduled.
    pub schedule: Option<String>,
    /// The newest finished `deps` job, whatever its outcome.
    pub last_run: Option<DepsJob>,
    /// The newest failed `deps` job (a source that could not be read), if any.
    pub last_failure: Option<DepsJob>,
    /// The newest successful report; `None` before the first one.
    pub report: Option<DepsReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DepsJob {
    pub job: i64,
    pub at: Timestamp,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// What the newest successful report found (its job's `DepsFigures`).
#[derive(Clone, Debug, Serialize)]
pub struct DepsReport {
    pub job: i64,
    pub at: Timestamp,
    pub packages: Option<u64>,
    /// Vulnerable packages; `None` when vulnerabilities were not checked.
    pub vulnerable: Option<u64>,
    pub vulnerabilities: Option<u64>,
    /// Outdated packages; `None` when not checked.
    pub outdated: Option<u64>,
    /// The OSV database's date.
    pub database_date: Option<String>,
    /// Each vulnerability with all its advisory IDs.
    pub findings: Vec<DepsFinding>,
    pub outdated_packages: Vec<OutdatedPackage>,
    /// Why vulnerabilities / outdated packages were not checked.
    pub vulnerabilities_not_checked: Option<String>,
    pub outdated_not_checked: Option<String>,
}

/// One certificate, as the renewal task reports it (docs/certificates.md).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CertRow {
    pub name: String,
    pub names: Vec<String>,
    pub issuer: Option<String>,
    pub not_after: Option<Timestamp>,
    /// The front door serves the self-signed fallback.
    pub self_signed: bool,
    pub next_renewal: Option<Timestamp>,
    pub renewed_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub failures: u32,
    pub stuck_seconds: Option<i64>,
}

/// A staging clone and its time left.
#[derive(Clone, Debug, Serialize)]
pub struct CloneRow {
    pub name: String,
    pub phase: caretaker_core::clone::Phase,
    pub expires_at: Timestamp,
    pub time_left_seconds: u64,
    pub web_port: Option<u16>,
}

/// The clones recorded under `<state dir>/clones/` (read-only: their `clone.json`).
fn clone_rows(cfg: &Config, state_dir: &std::path::Path, now: Timestamp) -> Vec<CloneRow> {
    let dir = caretaker_state::Layout::new(state_dir).clones();
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut rows: Vec<CloneRow> = rd
        .flatten()
        .filter_map(|e| {
            let bytes = std::fs::read(e.path().join("clone.json")).ok()?;
            let r: caretaker_core::clone::CloneRecord = serde_json::from_slice(&bytes).ok()?;
            Some(CloneRow {
                phase: r.phase,
                expires_at: r.expires_at,
                time_left_seconds: r.time_left(now).as_secs(),
                web_port: r.web_port(cfg),
                name: r.name,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

#[derive(Clone, Debug, Serialize)]
pub struct Services {
    /// The daemon answered: states and health are live. Otherwise the configured services are
    /// listed with state `unknown`.
    pub live: bool,
    pub daemon_pid: Option<u32>,
    pub rows: Vec<ServiceRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServiceRow {
    pub name: String,
    pub state: String,
    pub health: String,
    pub pid: Option<u32>,
    pub uptime_seconds: Option<u64>,
    pub restarts: u32,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub trigger: Trigger,
    pub outcome: Outcome,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub duration_seconds: Option<f64>,
    pub error: Option<String>,
    /// Path of the job's log on this page (`/status/jobs/{id}/log`).
    pub log_url: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupSummary {
    /// Successful (or partial) backup runs recorded in the job log.
    pub count: u64,
    /// End of the newest successful backup.
    pub newest: Option<Timestamp>,
    pub newest_job: Option<i64>,
    pub newest_snapshot: Option<String>,
    /// Bytes read by the newest backup (the size of the app's data it saved).
    pub newest_size_bytes: Option<u64>,
    /// Repository size as measured after the newest backup or prune (the bytes of all its
    /// files); `None` until a backup or prune has measured it.
    pub repository_size_bytes: Option<u64>,
    /// Age of the newest successful backup: the data loss if the machine died now (RPO).
    pub age_seconds: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AlertRow {
    pub rule: String,
    pub subject: String,
    pub severity: String,
    pub status: String,
    pub summary: String,
    pub active_since: Timestamp,
    pub fired_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScheduleRow {
    pub task: String,
    pub schedule: String,
    pub last_run: Option<Timestamp>,
    pub next_run: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Charts {
    /// (end of backup, repository size in bytes), oldest first.
    pub repository_size: Vec<SizePoint>,
    /// Finished jobs, oldest first.
    pub job_durations: Vec<DurationPoint>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SizePoint {
    pub at: Timestamp,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DurationPoint {
    pub job: i64,
    pub kind: String,
    pub outcome: Outcome,
    pub ended_at: Timestamp,
    pub seconds: f64,
}

fn label<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".into(),
    }
}

/// The zone schedules are read in (the config's `timezone`, else the machine's).
fn time_zone(cfg: &Config) -> TimeZone {
    cfg.timezone.as_deref().and_then(|z| TimeZone::get(z).ok()).unwrap_or_else(TimeZone::system)
}

/// Gathers the page's data from the state store, the config and (when a daemon runs) the
/// supervisor's live report.
pub fn gather(
    cfg: &Config,
    store: &Store,
    live: Option<StatusReport>,
    now: Timestamp,
) -> Result<StatusData, StateError> {
    let mode = store.mode()?;
    let services = match live {
        Some(r) => Services {
            live: true,
            daemon_pid: Some(r.daemon_pid),
            rows: r
                .services
                .into_iter()
                .map(|s| ServiceRow {
                    name: s.name,
                    state: if s.waiting { "waiting".into() } else { label(&s.state) },
                    health: label(&s.health),
                    pid: s.pid,
                    uptime_seconds: s.uptime_seconds,
                    restarts: s.restarts,
                    reason: s.reason.or(s.last_exit),
                })
                .collect(),
        },
        None => Services {
            live: false,
            daemon_pid: None,
            rows: cfg
                .services
                .iter()
                .map(|s| ServiceRow {
                    name: s.name.clone(),
                    state: "unknown".into(),
                    health: "unknown".into(),
                    pid: None,
                    uptime_seconds: None,
                    restarts: 0,
                    reason: Some("the daemon is not running or did not answer".into()),
                })
                .collect(),
        },
    };

    let job_row = |j: &caretaker_state::JobRecord| JobRow {
        id: j.id,
        kind: j.kind.clone(),
        trigger: j.trigger,
        outcome: j.outcome,
        started_at: j.started_at,
        ended_at: j.ended_at,
        duration_seconds: j.duration().map(|d| d.as_secs_f64()),
        error: j.error.clone(),
        log_url: format!("/status/jobs/{}/log", j.id),
    };
    let recent = store.jobs(None, CHART_JOBS.max(RECENT_JOBS))?;
    let jobs = recent.iter().take(RECENT_JOBS).map(job_row).collect();
    let mut job_durations: Vec<DurationPoint> = recent
        .iter()
        .filter_map(|j| {
            Some(DurationPoint {
                job: j.id,
                kind: j.kind.clone(),
                outcome: j.outcome,
                ended_at: j.ended_at?,
                seconds: j.duration()?.as_secs_f64(),
            })
        })
        .take(CHART_JOBS)
        .collect();
    job_durations.reverse();

    let mut repository_size = Vec::new();
    let backups = if cfg.backup.is_some() {
        let mut runs: Vec<_> = store
            .jobs(Some(kind::BACKUP), CHART_BACKUPS)?
            .into_iter()
            .filter(|j| matches!(j.outcome, Outcome::Succeeded | Outcome::Partial) && j.ended_at.is_some())
            .collect();
        runs.reverse();
        // The repository's size as measured after each backup and prune (so it shrinks after a
        // prune); rows from before caretaker measured it have no point.
        let mut measured: Vec<(Timestamp, u64)> = runs
            .iter()
            .filter_map(|j| Some((j.ended_at?, BackupFigures::from_json(&j.figures).repository.repository_size_bytes?)))
            .collect();
        measured.extend(store.jobs(Some(kind::PRUNE), CHART_BACKUPS)?.iter().filter_map(|j| {
            let size = PruneFigures::from_json(&j.figures).repository.repository_size_bytes?;
            Some((j.ended_at.filter(|_| j.outcome == Outcome::Succeeded)?, size))
        }));
        measured.sort_by_key(|(at, _)| *at);
        repository_size.extend(measured.into_iter().map(|(at, bytes)| SizePoint { at, bytes }));
        let newest = runs.iter().rev().find(|j| j.outcome == Outcome::Succeeded);
        let newest_figures = newest.map(|j| BackupFigures::from_json(&j.figures)).unwrap_or_default();
        Some(BackupSummary {
            count: runs.len() as u64,
            newest: newest.and_then(|j| j.ended_at),
            newest_job: newest.map(|j| j.id),
            newest_snapshot: newest_figures.snapshot_id,
            newest_size_bytes: newest_figures.bytes_read,
            repository_size_bytes: repository_size.last().map(|p| p.bytes),
            age_seconds: newest.and_then(|j| j.ended_at).map(|t| now.duration_since(t).as_secs().max(0)),
        })
    } else {
        None
    };

    let alerts = store
        .alert_states()?
        .into_iter()
        .map(|a| AlertRow {
            rule: a.rule,
            subject: a.subject,
            severity: a.severity.as_str().into(),
            status: label(&a.status),
            summary: a.summary,
            active_since: a.active_since,
            fired_at: a.fired_at,
            resolved_at: a.resolved_at,
        })
        .collect();

    let states = store.task_states()?;
    let tz = time_zone(cfg);
    let schedule = tasks_from_config(cfg)
        .into_iter()
        .map(|t| {
            let state = states.get(&t.name).copied().unwrap_or_default();
            ScheduleRow {
                schedule: t.schedule.to_string(),
                last_run: state.last_run,
                next_run: next_start(&t, &state, now, &tz).map(|(_, start)| start),
                task: t.name,
            }
        })
        .collect();

    let certificates: Vec<CertRow> = if cfg.tls.as_ref().is_some_and(|t| t.acme.is_some()) {
        store.fact(caretaker_core::cert::STATUS_FACT)?.and_then(|f| serde_json::from_str(&f).ok()).unwrap_or_default()
    } else {
        vec![]
    };

    Ok(StatusData {
        certificates,
        app: cfg.app.name.clone(),
        generated_at: now,
        mode,
        services,
        jobs,
        backups,
        alerts,
        schedule,
        dependencies: dependencies(cfg, store)?,
        charts: Charts { repository_size, job_durations },
        os: os_section(store)?,
        clones: clone_rows(cfg, store.dir(), now),
    })
}

/// The dependency report's section, from the `deps` jobs of the job log.
fn dependencies(cfg: &Config, store: &Store) -> Result<Option<DependenciesSection>, StateError> {
    let deps_job = |j: &caretaker_state::JobRecord| DepsJob {
        job: j.id,
        at: j.ended_at.unwrap_or(j.started_at),
        outcome: j.outcome,
        error: j.error.clone(),
    };
    let last_run = store.last_finished(kind::DEPS)?;
    let schedule = cfg.deps.schedule.as_ref().map(|s| s.to_string());
    if last_run.is_none() && schedule.is_none() {
        return Ok(None);
    }
    let last_failure =
        store.jobs(Some(kind::DEPS), 50)?.into_iter().find(|j| j.outcome == Outcome::Failed).map(|j| deps_job(&j));
    let report = store.last_success(kind::DEPS)?.map(|j| {
        let f = DepsFigures::from_json(&j.figures);
        DepsReport {
            job: j.id,
            at: j.ended_at.unwrap_or(j.started_at),
            packages: f.packages,
            vulnerable: f.vulnerable,
            vulnerabilities: f.vulnerabilities,
            outdated: f.outdated,
            database_date: f.database_date,
            findings: f.findings,
            outdated_packages: f.outdated_packages,
            vulnerabilities_not_checked: f.vulnerabilities_not_checked,
            outdated_not_checked: f.outdated_not_checked,
        }
    });
    Ok(Some(DependenciesSection { schedule, last_run: last_run.as_ref().map(deps_job), last_failure, report }))
}

/// What the router serves from: the config, the state store, the supervisor's live view
/// (when a daemon runs) and the credentials.
pub struct StatusSource {
    pub config: Config,
    pub store: Mutex<Store>,
    /// The supervisor's live report; `None` when there is no daemon (services show `unknown`).
    #[allow(clippy::type_complexity)]
    pub services: Box<dyn Fn() -> Option<StatusReport> + Send + Sync>,
    pub auth: Arc<Auth>,
}

impl StatusSource {
    /// A source without live service status. `token`: the content of the config's
    /// `status.token_file` (read by the caller; see [`read_token_file`]).
    pub fn new(config: Config, store: Store, token: Option<String>) -> StatusSource {
        let users = config.status.as_ref().map(|s| s.users.clone()).unwrap_or_default();
        StatusSource {
            auth: Arc::new(Auth::new(users, token)),
            config,
            store: Mutex::new(store),
            services: Box::new(|| None),
        }
    }

    /// Sets where live service status comes from (the daemon passes its supervisor's view).
    pub fn with_services(mut self, f: impl Fn() -> Option<StatusReport> + Send + Sync + 'static) -> StatusSource {
        self.services = Box::new(f);
        self
    }

    pub fn data(&self) -> Result<StatusData, StateError> {
        let live = (self.services)();
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        gather(&self.config, &store, live, Timestamp::now())
    }

    /// The end of a job's log (at most [`MAX_LOG_BYTES`]); `None` if there is no such job.
    pub fn job_log(&self, id: i64) -> Result<Option<String>, StateError> {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let job = match store.job(id) {
            Ok(j) => j,
            Err(StateError::NoSuchJob(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        // Only files inside the state directory's jobs/ are served, whatever the row says.
        let jobs_dir = store.dir().join("jobs");
        drop(store);
        let path = match (std::fs::canonicalize(&job.log_path), std::fs::canonicalize(&jobs_dir)) {
            (Ok(p), Ok(d)) if p.starts_with(&d) => p,
            _ => return Ok(Some(String::new())),
        };
        let Ok(mut f) = std::fs::File::open(&path) else { return Ok(Some(String::new())) };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut out = String::new();
        if len > MAX_LOG_BYTES {
            let _ = f.seek(SeekFrom::Start(len - MAX_LOG_BYTES));
            out.push_str(&format!("[… first {} bytes not shown …]\n", len - MAX_LOG_BYTES));
        }
        let mut buf = Vec::new();
        let _ = f.take(MAX_LOG_BYTES).read_to_end(&mut buf);
        out.push_str(&String::from_utf8_lossy(&buf));
        Ok(Some(out))
    }
}

/// The largest token file read.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Reads the token file of the config's `status` section (trimmed); `Ok(None)` without one.
/// The file must be a regular file of at most [`MAX_TOKEN_FILE_BYTES`] that other users can
/// neither read nor write (`config check` also checks the directories above it).
pub fn read_token_file(cfg: &Config) -> std::io::Result<Option<String>> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let Some(p) = cfg.status.as_ref().and_then(|s| s.token_file.as_ref()) else { return Ok(None) };
    let fail = |kind: ErrorKind, why: String| Error::new(kind, format!("status token file {}: {why}", p.display()));
    let meta = std::fs::metadata(p).map_err(|e| fail(e.kind(), e.to_string()))?;
    if !meta.is_file() {
        return Err(fail(ErrorKind::InvalidInput, "not a regular file".into()));
    }
    if meta.mode() & 0o006 != 0 || meta.mode() & 0o020 != 0 {
        return Err(fail(
            ErrorKind::PermissionDenied,
            format!("other users may read or write it (mode {:04o})", meta.mode() & 0o7777),
        ));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| fail(e.kind(), e.to_string()))?;
    let mut text = String::new();
    f.take(MAX_TOKEN_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| fail(e.kind(), e.to_string()))?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(fail(ErrorKind::InvalidData, format!("larger than {MAX_TOKEN_FILE_BYTES} bytes")));
    }
    Ok(Some(text.trim().to_string()))
}

/// The `token` query parameter, if any.
fn query_token(q: Option<&str>) -> Option<String> {
    q?.split('&').find_map(|kv| {
        let v = kv.strip_prefix("token=")?;
        Some(percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The answer to a request that [`auth::Auth::check`] did not let in.
fn refusal(decision: Decision) -> Option<Response> {
    let retry = |d: Duration| HeaderValue::from(d.as_secs_f64().ceil().max(1.0) as u64);
    Some(match decision {
        Decision::Allow => return None,
        Decision::Deny => {
            let mut r = (StatusCode::UNAUTHORIZED, "caretaker status page: credentials required\n").into_response();
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"caretaker status\", charset=\"UTF-8\""),
            );
            r
        }
        Decision::Throttled(wait) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                "caretaker status page: too many failed logins from your address; wait and try again\n",
            )
                .into_response();
            r.headers_mut().insert(RETRY_AFTER, retry(wait));
            r
        }
        Decision::Busy => {
            let mut r =
                (StatusCode::SERVICE_UNAVAILABLE, "caretaker status page: too many logins at once; try again\n")
                    .into_response();
            r.headers_mut().insert(RETRY_AFTER, retry(Duration::from_secs(1)));
            r
        }
    })
}

/// Asks `auth` about a request; the peer address comes from the listener ([`listener::serve`]
/// or axum's `ConnectInfo`). Not `async`: the future must not borrow the request (its body
/// is not `Sync`), so what it needs is copied out first.
fn decide(auth: &Arc<Auth>, req: &Request) -> impl std::future::Future<Output = Decision> + Send + 'static {
    let header = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let token = query_token(req.uri().query());
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let auth = auth.clone();
    async move { auth.check(header.as_deref(), token.as_deref(), peer).await }
}

async fn require_auth(State(source): State<Arc<StatusSource>>, req: Request, next: Next) -> Response {
    let decision = decide(&source.auth, &req);
    if let Some(refused) = refusal(decision.await) {
        return refused;
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'",
        ),
    );
    r
}

async fn require_auth_only(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    match refusal(decide(&auth, &req).await) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// Puts every route of `router` (e.g. `/metrics`) behind the same credentials and limits as
/// the status page (`status.protect_metrics`).
pub fn protect(router: Router, source: &StatusSource) -> Router {
    router.route_layer(axum::middleware::from_fn_with_state(source.auth.clone(), require_auth_only))
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::warn!("status page: {e}");
    (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the state store: {e}\n")).into_response()
}

async fn page(State(source): State<Arc<StatusSource>>, req: Request) -> Response {
    // Links keep the token when the page was opened with `?token=` (no header to reuse).
    let suffix = query_token(req.uri().query()).map(|t| format!("?token={}", percent_encode(&t))).unwrap_or_default();
    match tokio::task::spawn_blocking(move || source.data()).await {
        Ok(Ok(d)) => ([(CONTENT_TYPE, "text/html; charset=utf-8")], html::render(&d, &suffix)).into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn api(State(source): State<Arc<StatusSource>>) -> Response {
    match tokio::task::spawn_blocking(move || source.data()).await {
        Ok(Ok(d)) => axum::Json(d).into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn job_log(State(source): State<Arc<StatusSource>>, UrlPath(id): UrlPath<i64>) -> Response {
    match tokio::task::spawn_blocking(move || source.job_log(id)).await {
        Ok(Ok(Some(text))) => ([(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, format!("no job with id {id}\n")).into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// The status page's routes (`/status`, `/status/api`, `/status/jobs/{id}/log`), all behind
/// the source's auth. Merge it into any axum listener.
pub fn router(source: Arc<StatusSource>) -> Router {
    Router::new()
        .route("/status", get(page))
        .route("/status/", get(page))
        .route("/status/api", get(api))
        .route("/status/jobs/{id}/log", get(job_log))
        .route_layer(axum::middleware::from_fn_with_state(source.clone(), require_auth))
        .with_state(source)
}

/// Serves the router on `listener` until `shutdown` completes, with the config's
/// `http.max_connections` and `http.header_timeout`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: Arc<StatusSource>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = listener::Limits::from_config(&source.config);
    listener::serve(listener, router(source), limits, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests;

fn os_section(store: &Store) -> Result<Option<OsSection>, StateError> {
    use caretaker_core::os::facts;
    let Some(summary) = store.fact(facts::SUMMARY)?.and_then(|v| serde_json::from_str(&v).ok()) else {
        return Ok(None);
    };
    let last_reboot = store.fact(facts::LAST_REBOOT)?.and_then(|v| serde_json::from_str(&v).ok());
    Ok(Some(OsSection { summary, last_reboot }))
}
