//! Gathering observations: host, job log, facts and services, turned into the inputs of alert
//! evaluation ([`Observations`]) and of `/metrics` ([`Snapshot`]).

use crate::host::host_stats;
use crate::probe;
use caretaker_core::alert::{Observations, ServiceObs};
use caretaker_core::config::{Config, DbKind};
use caretaker_core::job::figures::{BackupFigures, Figures, PruneFigures, RepositoryFigures};
use caretaker_core::job::kind;
use caretaker_core::metrics::{BackupStats, HostStats, JobStats, Snapshot};
use caretaker_core::mode::Mode;
use caretaker_state::{StateError, Store};
use jiff::{SignedDuration, Timestamp};
use std::path::PathBuf;

/// Facts (in the state store) that other parts of caretaker set and alerting reads.
pub mod facts {
    /// When alerting first ran: a backup that never succeeded is late counted from here.
    pub const WATCHING_SINCE: &str = "alerts.watching_since";
}

/// The paths whose filesystems are watched: state directory, file trees, SQLite database.
pub fn watched_paths(cfg: &Config, store: &Store) -> Vec<PathBuf> {
    let mut p = vec![store.dir().to_path_buf()];
    p.extend(cfg.files.iter().map(|f| f.path.clone()));
    if let Some(db) = &cfg.database {
        if db.kind == DbKind::Sqlite {
            p.extend(db.path.clone());
        }
    }
    p
}

/// Services as seen by their health probes, for when no supervisor reports them (standalone
/// commands). Services without a health check are left out: there is nothing to go on.
pub fn probe_services(cfg: &Config) -> Vec<ServiceObs> {
    cfg.services
        .iter()
        .filter_map(|s| {
            let h = s.health.as_ref()?;
            let ok = probe::run(&h.probe, h.timeout).is_ok();
            Some(ServiceObs { name: s.name.clone(), up: ok, down_since: None, restarts: None, healthy: Some(ok) })
        })
        .collect()
}

/// Job kinds that are not the app's operations and never alert.
// A failed `check` job reports what the other rules alert on already.
const QUIET_KINDS: &[&str] = &[kind::DEMO, kind::CHECK];

/// Everything gathered once, for evaluation and metrics alike.
#[derive(Clone, Debug)]
pub struct Gathered {
    pub observations: Observations,
    pub snapshot: Snapshot,
}

/// Gathers observations. `services`: the supervisor's view when the daemon runs, else `None`
/// to probe health checks directly. Writes the boot time and the watching-since fact.
pub fn gather(
    cfg: &Config,
    store: &Store,
    services: Option<Vec<ServiceObs>>,
    now: Timestamp,
) -> Result<Gathered, StateError> {
    let host: HostStats = host_stats(&watched_paths(cfg, store));
    let services = services.unwrap_or_else(|| probe_services(cfg));
    let mut obs = Observations {
        filesystems: host.filesystems.clone(),
        memory_used_percent: host.memory_used_percent(),
        load_per_cpu: host.load_per_cpu(),
        services: services.clone(),
        ..Default::default()
    };
    if let Some(bt) = host.boot_time {
        let since = now
            .checked_sub(SignedDuration::try_from(cfg.alerts.rules.reboots_within).unwrap_or(SignedDuration::ZERO))
            .unwrap_or(now);
        obs.boots = store.record_boot(bt, since)?;
    }
    obs.watching_since = match store.fact(facts::WATCHING_SINCE)? {
        Some(v) => v.parse().ok(),
        None => {
            store.set_fact(facts::WATCHING_SINCE, &now.to_string())?;
            Some(now)
        }
    };
    let mut jobs = Vec::new();
    for k in store.job_stats()? {
        let last = store.last_finished(&k.kind)?;
        let success = store.last_success(&k.kind)?;
        if let Some(j) = &last {
            if !QUIET_KINDS.contains(&j.kind.as_str()) {
                obs.last_jobs.push(caretaker_core::alert::JobObs {
                    kind: j.kind.clone(),
                    id: j.id,
                    succeeded: j.outcome.is_success(),
                    ended_at: j.ended_at,
                    error: j.error.clone(),
                });
            }
        }
        jobs.push(JobStats {
            kind: k.kind.clone(),
            last_success: success.as_ref().and_then(|j| j.ended_at),
            last_end: last.as_ref().and_then(|j| j.ended_at),
            last_duration_seconds: last.as_ref().and_then(|j| j.duration()).map(|d| d.as_secs_f64()),
            last_succeeded: last.as_ref().map(|j| j.outcome.is_success()),
            runs: k.runs,
        });
    }
    obs.skipped_tasks = store.skipped_tasks()?;
    let mut backup_stats = None;
    if cfg.backup.is_some() {
        let last = store.last_success(kind::BACKUP)?;
        obs.backup = Some(last.as_ref().and_then(|j| j.ended_at));
        let backup = last.as_ref().map(|j| BackupFigures::from_json(&j.figures)).unwrap_or_default();
        // The repository as a whole is measured after every backup and prune: the newer counts.
        let pruned = store.last_success(kind::PRUNE)?;
        let repository = [
            last.as_ref().map(|j| (j.ended_at, backup.repository.clone())),
            pruned.as_ref().map(|j| (j.ended_at, PruneFigures::from_json(&j.figures).repository)),
        ]
        .into_iter()
        .flatten()
        .filter(|(_, r)| *r != RepositoryFigures::default())
        .max_by_key(|(at, _)| *at)
        .map(|(_, r)| r)
        .unwrap_or_default();
        backup_stats = Some(BackupStats {
            snapshots: repository.snapshots,
            repository_size_bytes: repository.repository_size_bytes,
            last_added_bytes: backup.bytes_added,
            last_size_bytes: backup.bytes_read,
        });
    }
    if cfg.update.automatic {
        obs.update = Some(store.last_success(kind::UPDATE)?.and_then(|j| j.ended_at));
    }
    // Maintenance holds notifications back; service mode is itself an alert.
    match store.mode()? {
        Mode::Normal => {}
        Mode::Maintenance(_) => obs.maintenance = true,
        Mode::Service(f) => obs.service_mode = Some(f.reason),
    }
    obs.dependencies = crate::deps::newest_report(store)?;
    let silences = store.silences(Some(now))?.into_iter().filter(|s| s.is_active(now)).count();
    let snapshot = Snapshot {
        app: cfg.app.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        host,
        services,
        jobs,
        backup: backup_stats,
        certificates: obs.certificates.clone(),
        alerts: store.alert_states()?,
        maintenance: Some(obs.maintenance),
        service_mode: Some(obs.service_mode.is_some()),
        silences_active: Some(silences as u64),
        dependencies: obs.dependencies.clone(),
        skipped_tasks: obs.skipped_tasks.clone(),
    };
    Ok(Gathered { observations: obs, snapshot })
}
