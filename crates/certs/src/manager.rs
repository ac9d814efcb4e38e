//! The renewal task: loads the stored certificate (or serves a self-signed one), asks
//! `caretaker_core::cert` what to do, places orders as `certificate` jobs and swaps each new
//! certificate into the front door through [`Install`] — no restart, no reload hook.

use crate::acme::{self, Issued};
use crate::challenge::Solver;
use crate::client::Seen;
use crate::files::{self, CertPaths};
use crate::x509::{self, Loaded};
use crate::{Error, Settings};
use caretaker_core::cert::{self as rules, Decision, Failure, RenewalState, Urgency, WaitReason};
use caretaker_core::config::Redactor;
use caretaker_core::job::figures::{CertificateFigures, Figures};
use caretaker_core::job::{kind, Outcome, Trigger};
use caretaker_state::Store;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The front door's certificate resolver: new handshakes get `key` from now on.
pub trait Install: Send + Sync {
    fn install(&self, key: Arc<rustls::sign::CertifiedKey>);
    /// The self-signed fallback (the front door may tell it apart, e.g. for status).
    fn install_self_signed(&self, key: Arc<rustls::sign::CertifiedKey>) {
        self.install(key)
    }
}

pub use caretaker_core::cert::STATUS_FACT;

/// How often a stuck certificate is reported again (a failed job each time).
const STUCK_REPORT_EVERY: SignedDuration = SignedDuration::from_hours(6);

/// Attempts of a failing reload command within one job, and the pauses between them.
const RELOAD_PAUSES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];

/// What is remembered beside the certificate (`renewal.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Persisted {
    #[serde(flatten)]
    renewal: RenewalState,
    /// The certificate was renewed but the reload command has not succeeded since.
    reload_pending: bool,
    /// The first attempt while no certificate existed (the stuck detector counts from it).
    first_attempt: Option<Timestamp>,
    /// When the stuck state was last reported.
    stuck_reported: Option<Timestamp>,
}

/// A certificate's status, for `caretaker cert status`, the status page and metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CertStatus {
    /// The first name (names the files).
    pub name: String,
    pub names: Vec<String>,
    /// The certificate in the state directory, if a valid one is stored.
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<Timestamp>,
    pub not_after: Option<Timestamp>,
    /// Nothing valid is stored: the front door serves a self-signed certificate.
    pub self_signed: bool,
    /// The stored certificate is a CA's (not the self-signed placeholder of webroot mode).
    pub acme_certificate: bool,
    /// When the next renewal attempt is due.
    pub next_renewal: Option<Timestamp>,
    pub renewed_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
    pub failures: u32,
    pub orders_last_hour: usize,
    /// Due for longer than `stuck_after` without a renewal.
    pub stuck_seconds: Option<i64>,
    pub reload_pending: bool,
    /// The CA's ARI window, when it sent one.
    pub ari_window: Option<(Timestamp, Timestamp)>,
}

/// A renewal the CLI asked for (`caretaker cert renew`): a file the running task picks up.
pub fn request_path(state_dir: &Path, first_name: &str) -> PathBuf {
    CertPaths::new(state_dir, first_name).dir.join("renew-request")
}

/// Asks the running renewal task for a renewal (`force`: even if not due).
pub fn request_renewal(state_dir: &Path, first_name: &str, force: bool) -> Result<(), Error> {
    files::write_private(&request_path(state_dir, first_name), if force { b"force" } else { b"due" })
}

/// Reads the stored certificate: `None` when there is none or it is unusable (a damaged or
/// mismatched file is not fatal: a fresh order replaces it).
fn load_stored(paths: &CertPaths, names: &[String]) -> Option<Loaded> {
    let chain = files::read_optional(&paths.chain).ok()??;
    let key = files::read_optional(&paths.key).ok()??;
    match x509::load(&chain, &key) {
        Ok(l) if names.iter().all(|n| l.info.names.contains(n)) => Some(l),
        Ok(l) => {
            tracing::info!(have = ?l.info.names, want = ?names, "the stored certificate does not cover the configured names: ordering a new one");
            None
        }
        Err(e) => {
            tracing::warn!(path = %paths.chain.display(), "the stored certificate is unusable ({e}): ordering a new one");
            None
        }
    }
}

fn load_persisted(paths: &CertPaths) -> Persisted {
    match files::read_optional(&paths.renewal) {
        Ok(Some(d)) => serde_json::from_slice(&d).unwrap_or_else(|e| {
            tracing::warn!(path = %paths.renewal.display(), "renewal state unreadable ({e}): starting afresh");
            Persisted::default()
        }),
        _ => Persisted::default(),
    }
}

/// The status from the files alone (the CLI, with or without a running daemon).
pub fn status(state_dir: &Path, settings: &Settings, now: Timestamp) -> CertStatus {
    let paths = CertPaths::new(state_dir, &settings.names[0]);
    let current = load_stored(&paths, &settings.names);
    let p = load_persisted(&paths);
    make_status(settings, current.as_ref(), &p, now)
}

fn make_status(settings: &Settings, current: Option<&Loaded>, p: &Persisted, now: Timestamp) -> CertStatus {
    let info = current.map(|c| &c.info);
    let validity = info.filter(|i| !i.self_signed).map(|i| i.validity).filter(|v| v.not_after > now);
    let cert_id = info.and_then(|i| i.ari_id.as_deref());
    let next = match rules::decide(validity.as_ref(), cert_id, &p.renewal, &settings.policy, now, Urgency::Scheduled) {
        Decision::Wait { until, .. } => until,
        Decision::Order { .. } => now,
    };
    CertStatus {
        name: settings.names[0].clone(),
        names: settings.names.clone(),
        issuer: info.map(|i| i.issuer.clone()),
        serial: info.map(|i| i.serial.clone()),
        not_before: info.map(|i| i.validity.not_before),
        not_after: info.map(|i| i.validity.not_after),
        self_signed: validity.is_none(),
        acme_certificate: info.is_some_and(|i| !i.self_signed),
        next_renewal: Some(next),
        renewed_at: p.renewal.renewed_at,
        last_error: p.renewal.last_error.clone(),
        last_error_at: p.renewal.last_error_at,
        failures: p.renewal.failures,
        orders_last_hour: rules::orders_in_last_hour(&p.renewal, now),
        stuck_seconds: rules::stuck_for(validity.as_ref(), cert_id, &p.renewal, &settings.policy, now, p.first_attempt)
            .map(|d| d.as_secs()),
        reload_pending: p.reload_pending,
        ari_window: p.renewal.ari.as_ref().filter(|a| Some(a.cert_id.as_str()) == cert_id).map(|a| (a.start, a.end)),
    }
}

/// The renewal task's state.
pub struct Manager {
    state_dir: PathBuf,
    settings: Settings,
    solver: Solver,
    install: Arc<dyn Install>,
    redactor: Redactor,
    paths: CertPaths,
    current: Option<Loaded>,
    p: Persisted,
    /// For which certificate and when ARI was last asked (in memory: a CA without an answer
    /// is asked at most hourly).
    ari_asked: Option<(String, Timestamp)>,
}

/// What one order attempt came to.
struct Attempted {
    issued: Option<Loaded>,
    failure: Option<Failure>,
    reloaded: Option<bool>,
}

impl Manager {
    pub fn new(
        state_dir: &Path,
        settings: Settings,
        solver: Solver,
        install: Arc<dyn Install>,
        redactor: Redactor,
    ) -> Result<Manager, Error> {
        if settings.names.is_empty() {
            return Err(Error::Config("a certificate needs at least one name".into()));
        }
        crate::client::check_directory_url(&settings.directory)?;
        let paths = CertPaths::new(state_dir, &settings.names[0]);
        files::private_dir(&paths.dir)?;
        let current = load_stored(&paths, &settings.names);
        let p = load_persisted(&paths);
        Ok(Manager {
            state_dir: state_dir.to_path_buf(),
            settings,
            solver,
            install,
            redactor,
            paths,
            current,
            p,
            ari_asked: None,
        })
    }

    /// The certificate in use (stored and loaded), if any.
    pub fn current(&self) -> Option<&Loaded> {
        self.current.as_ref()
    }

    pub fn status(&self, now: Timestamp) -> CertStatus {
        make_status(&self.settings, self.current.as_ref(), &self.p, now)
    }

    /// The stored certificate, if it is a CA's and valid at `now` (a self-signed placeholder
    /// in the files never counts).
    fn valid(&self, now: Timestamp) -> Option<&Loaded> {
        self.current.as_ref().filter(|c| !c.info.self_signed && c.info.validity.not_after > now)
    }

    /// Serves what there is at once: the stored certificate if it is valid, else a
    /// self-signed one for the configured names.
    pub fn serve_initial(&mut self, now: Timestamp) -> Result<(), Error> {
        match self.valid(now) {
            Some(c) => self.install.install(c.key.clone()),
            None => {
                let (c, k) = x509::self_signed(&self.settings.names, now)?;
                self.install.install_self_signed(x509::load(c.as_bytes(), k.as_bytes())?.key);
                // In webroot mode another web server reads the files: give it a placeholder
                // so it can start (replaced by the first issued certificate).
                if matches!(self.solver, Solver::Webroot(_)) && self.current.is_none() {
                    files::write_private(&self.paths.key, k.as_bytes())?;
                    files::write_private(&self.paths.chain, c.as_bytes())?;
                }
                tracing::info!(name = %self.settings.names[0], "no valid certificate yet: serving a self-signed one");
            }
        }
        self.publish(now);
        Ok(())
    }

    fn save(&self) {
        match serde_json::to_vec_pretty(&self.p) {
            Ok(d) => {
                if let Err(e) = files::write_private(&self.paths.renewal, &d) {
                    tracing::warn!("cannot save the renewal state: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot save the renewal state: {e}"),
        }
    }

    /// Writes the status fact for alerting, metrics and the status page.
    fn publish(&self, now: Timestamp) {
        let st = self.status(now);
        let res = Store::open(&self.state_dir, self.redactor.clone()).and_then(|s| {
            let mut all: Vec<CertStatus> =
                s.fact(STATUS_FACT)?.and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default();
            all.retain(|c| c.name != st.name);
            all.push(st);
            s.set_fact(STATUS_FACT, &serde_json::to_string(&all).unwrap_or_default())
        });
        if let Err(e) = res {
            tracing::warn!("cannot record the certificate status: {e}");
        }
    }

    /// One step at `now`: renew if due (or `force`), retry a pending reload, report a stuck
    /// renewal. Returns when to step again.
    pub async fn tick(&mut self, now: Timestamp, urgency: Urgency, trigger: Trigger) -> Timestamp {
        if self.p.reload_pending && self.p.renewal.not_before.is_none_or(|t| t <= now) {
            self.retry_reload(now, trigger).await;
        }
        self.refresh_ari(now).await;
        let validity = self.valid(now).map(|c| c.info.validity);
        let cert_id = self.valid(now).and_then(|c| c.info.ari_id.clone());
        let decision =
            rules::decide(validity.as_ref(), cert_id.as_deref(), &self.p.renewal, &self.settings.policy, now, urgency);
        let next = match decision {
            Decision::Wait { until, why } => {
                if why != WaitReason::NotDue {
                    tracing::debug!(?why, %until, "certificate renewal waits");
                }
                until
            }
            Decision::Order { replaces } => {
                if validity.is_none() && self.p.first_attempt.is_none() {
                    self.p.first_attempt = Some(now);
                }
                self.p.renewal.ordered(now);
                self.save();
                let a = self.attempt(replaces.as_deref(), trigger).await;
                let now = Timestamp::now().max(now);
                if let Some(l) = a.issued {
                    self.install.install(l.key.clone());
                    tracing::info!(name = %self.settings.names[0], serial = %l.info.serial, not_after = %l.info.validity.not_after, "new certificate in use");
                    self.current = Some(l);
                    self.p.renewal.succeeded(now);
                    self.p.first_attempt = None;
                    self.p.stuck_reported = None;
                    self.p.reload_pending = a.reloaded == Some(false);
                    if self.p.reload_pending {
                        self.p.renewal.not_before =
                            Some(now + SignedDuration::try_from(rules::BACKOFF_MIN).unwrap_or_default());
                    }
                }
                if let Some(f) = &a.failure {
                    if a.reloaded != Some(false) {
                        tracing::warn!(name = %self.settings.names[0], "certificate order failed: {}", f.message);
                        self.p.renewal.failed(now, f, replaces.as_deref());
                    }
                }
                self.save();
                match rules::decide(
                    self.valid(now).map(|c| c.info.validity).as_ref(),
                    self.valid(now).and_then(|c| c.info.ari_id.as_deref()),
                    &self.p.renewal,
                    &self.settings.policy,
                    now,
                    Urgency::Scheduled,
                ) {
                    Decision::Wait { until, .. } => until,
                    Decision::Order { .. } => now,
                }
            }
        };
        self.report_stuck(now, trigger);
        self.publish(now);
        let mut next = next;
        if self.p.reload_pending {
            next = next.min(self.p.renewal.not_before.unwrap_or(now));
        }
        if let Some(a) = self.p.renewal.ari.as_ref().filter(|_| self.valid(now).is_some()) {
            next = next.min(a.refresh_at);
        }
        next.max(now)
    }

    /// Asks the CA for its renewal window when it offers ARI and the last answer is stale.
    async fn refresh_ari(&mut self, now: Timestamp) {
        let Some(id) = self.valid(now).and_then(|c| c.info.ari_id.clone()) else { return };
        if self.valid(now).is_some_and(|c| c.info.self_signed) {
            return;
        }
        let fresh = self.p.renewal.ari.as_ref().is_some_and(|a| a.cert_id == id && a.refresh_at > now);
        let asked = self
            .ari_asked
            .as_ref()
            .is_some_and(|(c, t)| *c == id && now.duration_since(*t) < SignedDuration::from_hours(1));
        if fresh || asked {
            return;
        }
        // Only with an account already there: asking never registers one.
        if files::read_optional(&files::account_path(&self.state_dir, &self.settings.directory))
            .ok()
            .flatten()
            .is_none()
        {
            return;
        }
        self.ari_asked = Some((id.clone(), now));
        let seen = Arc::new(Seen::default());
        match acme::open(&self.state_dir, &self.settings, seen).await {
            Ok(a) if a.ari => match a.renewal_info(&id).await {
                Ok(w) => {
                    tracing::info!(start = %w.start, end = %w.end, "the CA's renewal window");
                    self.p.renewal.ari = Some(w);
                    self.save();
                }
                Err(e) => tracing::info!("renewal information unavailable: {e}"),
            },
            Ok(_) => {}
            Err(e) => tracing::info!("cannot ask for renewal information: {e}"),
        }
    }

    fn report_stuck(&mut self, now: Timestamp, trigger: Trigger) {
        let validity = self.valid(now).map(|c| c.info.validity);
        let cert_id = self.valid(now).and_then(|c| c.info.ari_id.clone());
        let Some(d) = rules::stuck_for(
            validity.as_ref(),
            cert_id.as_deref(),
            &self.p.renewal,
            &self.settings.policy,
            now,
            self.p.first_attempt,
        ) else {
            return;
        };
        if self.p.stuck_reported.is_some_and(|t| now.duration_since(t) < STUCK_REPORT_EVERY) {
            return;
        }
        let msg = format!(
            "certificate renewal for {} is stuck: due for {}h without a renewal; last error: {}",
            self.settings.names[0],
            d.as_secs() / 3600,
            self.p.renewal.last_error.as_deref().unwrap_or("none")
        );
        tracing::error!("{msg}");
        let res = Store::open(&self.state_dir, self.redactor.clone()).and_then(|s| {
            let mut job = s.start_job(kind::CERTIFICATE, trigger, false)?;
            job.log(&msg);
            let fig = CertificateFigures { names: self.settings.names.clone(), ..Default::default() };
            job.finish(Outcome::Failed, fig.to_json(), Some(&msg))
        });
        if let Err(e) = res {
            tracing::warn!("cannot record the stuck renewal: {e}");
        }
        self.p.stuck_reported = Some(now);
        self.save();
    }

    /// A renewal happened but its reload command failed: try the reload again (a job).
    async fn retry_reload(&mut self, now: Timestamp, trigger: Trigger) {
        let Some(cmd) = self.settings.reload_command.clone() else {
            self.p.reload_pending = false;
            return;
        };
        let state_dir = self.state_dir.clone();
        let redactor = self.redactor.clone();
        let names = self.settings.names.clone();
        let handle = tokio::runtime::Handle::current();
        let ok = tokio::task::spawn_blocking(move || -> Result<bool, Error> {
            let store = Store::open(&state_dir, redactor)?;
            let mut job = store.start_job(kind::CERTIFICATE, trigger, false)?;
            job.log("retrying the reload command after a renewal");
            let res = handle.block_on(run_reload(&cmd, &mut |l| job.log(l)));
            let fig = CertificateFigures { names, reloaded: Some(res.is_ok()), ..Default::default() };
            match &res {
                Ok(()) => job.finish(Outcome::Succeeded, fig.to_json(), None)?,
                Err(e) => job.finish(Outcome::Failed, fig.to_json(), Some(&format!("reload command failed: {e}")))?,
            }
            Ok(res.is_ok())
        })
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or(false);
        if ok {
            self.p.reload_pending = false;
            self.p.renewal.not_before = None;
        } else {
            let f = Failure { message: "the reload command failed after a renewal".into(), ..Default::default() };
            self.p.renewal.failed(now, &f, None);
        }
        self.save();
    }

    /// One order as a `certificate` job, on a blocking thread that owns the job record (the
    /// ACME conversation itself runs on the runtime).
    async fn attempt(&self, replaces: Option<&str>, trigger: Trigger) -> Attempted {
        let state_dir = self.state_dir.clone();
        let redactor = self.redactor.clone();
        let settings = self.settings.clone();
        let solver = self.solver.clone();
        let paths = self.paths.clone();
        let replaces = replaces.map(str::to_string);
        let handle = tokio::runtime::Handle::current();
        let joined = tokio::task::spawn_blocking(move || -> Result<Attempted, Error> {
            let store = Store::open(&state_dir, redactor)?;
            let mut job = store.start_job(kind::CERTIFICATE, trigger, false)?;
            let mut fig = CertificateFigures {
                names: settings.names.clone(),
                challenge: Some(solver.kind_name().to_string()),
                replaces: replaces.clone(),
                ..Default::default()
            };
            let seen = Arc::new(Seen::default());
            let mut log = |l: &str| job.log(l);
            let out = handle.block_on(order(
                &state_dir,
                &settings,
                &solver,
                &paths,
                replaces.as_deref(),
                seen.clone(),
                &mut log,
            ));
            let mut a = match out {
                Ok(l) => {
                    fig.serial = Some(l.info.serial.clone());
                    fig.not_after = Some(l.info.validity.not_after.to_string());
                    Attempted { issued: Some(l), failure: None, reloaded: None }
                }
                Err(mut f) => {
                    f.retry_after = seen.take_retry_after();
                    log(&format!("failed: {}", f.message));
                    Attempted { issued: None, failure: Some(f), reloaded: None }
                }
            };
            if a.issued.is_some() {
                if let Some(cmd) = &settings.reload_command {
                    let r = handle.block_on(run_reload(cmd, &mut log));
                    a.reloaded = Some(r.is_ok());
                    if let Err(e) = r {
                        a.failure = Some(Failure {
                            message: format!("certificate renewed, but the reload command failed: {e}"),
                            ..Default::default()
                        });
                    }
                }
            }
            fig.reloaded = a.reloaded;
            match &a.failure {
                None => job.finish(Outcome::Succeeded, fig.to_json(), None)?,
                Some(f) => job.finish(Outcome::Failed, fig.to_json(), Some(&f.message))?,
            }
            Ok(a)
        })
        .await;
        match joined {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => Attempted {
                issued: None,
                failure: Some(Failure { message: e.to_string(), ..Default::default() }),
                reloaded: None,
            },
            Err(e) => Attempted {
                issued: None,
                failure: Some(Failure { message: format!("the renewal task failed: {e}"), ..Default::default() }),
                reloaded: None,
            },
        }
    }
}

/// Opens the account, orders, stores the certificate and key (key first; a crash between the
/// two leaves a pair that does not fit, which reads as "no certificate": a fresh order).
async fn order(
    state_dir: &Path,
    settings: &Settings,
    solver: &Solver,
    paths: &CertPaths,
    replaces: Option<&str>,
    seen: Arc<Seen>,
    log: &mut dyn FnMut(&str),
) -> Result<Loaded, Failure> {
    let fail = |m: String| Failure { message: m, ..Default::default() };
    let acme = acme::open(state_dir, settings, seen).await.map_err(|e| fail(format!("ACME account: {e}")))?;
    if acme.created {
        log("registered a new ACME account");
    }
    // Without ARI at the CA, `replaces` is not sent.
    let replaces = replaces.filter(|_| acme.ari);
    let Issued { chain_pem, key_pem } = acme
        .issue(&settings.names, replaces, solver, log)
        .await
        .map_err(|e| Failure { message: e.message, replaces_conflict: e.replaces_conflict, ..Default::default() })?;
    let loaded =
        x509::load(chain_pem.as_bytes(), key_pem.as_bytes()).map_err(|e| fail(format!("the CA's certificate: {e}")))?;
    files::write_private(&paths.key, key_pem.as_bytes()).map_err(|e| fail(e.to_string()))?;
    files::write_private(&paths.chain, chain_pem.as_bytes()).map_err(|e| fail(e.to_string()))?;
    log(&format!("certificate {} stored, valid until {}", loaded.info.serial, loaded.info.validity.not_after));
    Ok(loaded)
}

/// Runs the reload command, retried after pauses; its output goes to the job log.
async fn run_reload(cmd: &caretaker_core::config::Command, log: &mut dyn FnMut(&str)) -> Result<(), String> {
    let argv = cmd.argv();
    let Some((prog, args)) = argv.split_first() else { return Err("the reload command is empty".into()) };
    let mut last = String::new();
    for (i, pause) in std::iter::once(Duration::ZERO).chain(RELOAD_PAUSES).enumerate() {
        tokio::time::sleep(pause).await;
        log(&format!("reload command (attempt {}): {cmd}", i + 1));
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(prog)
                .args(args)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await;
        match out {
            Ok(Ok(o)) => {
                for l in String::from_utf8_lossy(&o.stdout).lines().chain(String::from_utf8_lossy(&o.stderr).lines()) {
                    log(l);
                }
                if o.status.success() {
                    return Ok(());
                }
                last = format!("`{cmd}` exited with {}", o.status);
            }
            Ok(Err(e)) => last = format!("cannot run `{cmd}`: {e}"),
            Err(_) => last = format!("`{cmd}` did not finish within 120 s"),
        }
        log(&last);
    }
    Err(last)
}

/// The renewal task: serve at once, then step at each due time, on a renewal request from the
/// CLI, or until `stop` turns true.
pub async fn run(mut m: Manager, mut stop: tokio::sync::watch::Receiver<bool>) {
    if let Err(e) = m.serve_initial(Timestamp::now()) {
        tracing::error!("cannot serve a certificate: {e}");
    }
    let request = request_path(&m.state_dir, &m.settings.names[0]);
    let mut urgency = Urgency::Scheduled;
    let mut trigger = Trigger::Schedule;
    loop {
        let next = m.tick(Timestamp::now(), urgency, trigger).await;
        urgency = Urgency::Scheduled;
        trigger = Trigger::Schedule;
        loop {
            let now = Timestamp::now();
            if now >= next {
                break;
            }
            if let Ok(Some(d)) = files::read_optional(&request) {
                let _ = std::fs::remove_file(&request);
                urgency = if d == b"force" { Urgency::Forced } else { Urgency::Requested };
                trigger = Trigger::Cli;
                break;
            }
            let wait = now.duration_until(next).unsigned_abs().min(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            }
        }
    }
}
