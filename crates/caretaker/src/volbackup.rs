//! A compose app's named volumes inside backups (`compose.volumes`): each is the stream
//! `volume-<key>` of the snapshot (`/caretaker-streams/volume-<key>`, a tar archive streamed from
//! `docker cp`, never through a temporary file), checked before the backup like a file tree
//! (a missing or empty volume is refused unless `allow_empty`), and restored — into a missing
//! or empty volume, or with `force` over a non-empty one whose contents are first copied aside
//! to the volume `<name>__old_<time>` (nothing is deleted; [`copies`] lists those copies and
//! `caretaker backup kept-aside --keep N` removes older ones). docs/compose.md.

use crate::context::AppContext;
use crate::control::request;
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_backup::{BackupEngine, StreamSource};
use caretaker_compose::volume::{compose_labels, Volumes};
use caretaker_compose::Docker;
use caretaker_supervisor::protocol::Request;
use std::io::Write;
use std::time::Duration;

/// Stream names of volumes: `volume-<key>`.
pub const STREAM_PREFIX: &str = "volume-";

/// A configured volume and its docker name.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Target {
    /// The key in the compose file.
    pub key: String,
    /// The docker volume.
    pub name: String,
    #[serde(skip)]
    pub allow_empty: bool,
}

impl Target {
    pub fn stream(&self) -> String {
        format!("{STREAM_PREFIX}{}", self.key)
    }
}

/// The configured volumes, with their docker names from the compose file.
pub fn targets(app: &AppContext) -> Result<Vec<Target>> {
    let Some(c) = &app.config.compose else { return Ok(Vec::new()) };
    if c.volumes.is_empty() {
        return Ok(Vec::new());
    }
    let model = crate::compose::project(&app.config, &app.config_path, &app.redactor)?.model()?;
    c.volumes
        .iter()
        .map(|v| match model.volume(&v.name) {
            Some(m) => Ok(Target { key: v.name.clone(), name: m.name.clone(), allow_empty: v.allow_empty }),
            None => Err(Failure::new(
                Code::Config,
                format!("compose.volumes names `{}`, which the compose file does not define", v.name),
            )
            .hint(format!(
                "volumes in the compose file: {}",
                model.volumes.iter().map(|v| v.key.as_str()).collect::<Vec<_>>().join(", ")
            ))
            .into()),
        })
        .collect()
}

fn docker(app: &AppContext) -> Docker {
    Docker::new(crate::compose::redact(&app.redactor))
}

/// The backup's safety check for volumes: problems (a missing or empty volume without
/// `allow_empty`), or none.
pub fn check(app: &AppContext, targets: &[Target]) -> Result<Vec<String>> {
    let d = docker(app);
    let project = app.config.compose.as_ref().map(|c| c.project.clone()).unwrap_or_default();
    let v = Volumes { docker: &d, project: &project };
    let mut problems = Vec::new();
    for t in targets.iter().filter(|t| !t.allow_empty) {
        if d.volume(&t.name)?.is_none() {
            problems.push(format!("volume {} ({}) does not exist", t.key, t.name));
        } else if v.is_empty(&t.name)? {
            problems.push(format!("volume {} ({}) is empty", t.key, t.name));
        }
    }
    Ok(problems)
}

/// The streams of the configured volumes for a backup, after their safety check (a refusal is
/// a `Failure` with `Code::Refused` naming every problem).
pub fn prepare(app: &AppContext) -> Result<Vec<Box<dyn StreamSource>>> {
    let targets = targets(app)?;
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let problems = check(app, &targets)?;
    if !problems.is_empty() {
        return Err(Failure::new(Code::Refused, format!("safety check failed: {}", problems.join("; ")))
            .hint("a volume that lost its data must not overwrite good backups; if it is empty on purpose, set `allow_empty: true` for it in compose.volumes")
            .into());
    }
    Ok(streams(app, targets))
}

/// One volume, archived on the fly while the backup reads it.
pub struct VolumeStream {
    docker: Docker,
    project: String,
    target: Target,
    stream: String,
}

impl VolumeStream {
    pub fn new(app: &AppContext, target: Target) -> Self {
        let project = app.config.compose.as_ref().map(|c| c.project.clone()).unwrap_or_default();
        VolumeStream { docker: docker(app), project, stream: target.stream(), target }
    }
}

impl StreamSource for VolumeStream {
    fn name(&self) -> &str {
        &self.stream
    }

    fn write_to(&mut self, out: &mut dyn Write) -> std::io::Result<u64> {
        let v = Volumes { docker: &self.docker, project: &self.project };
        v.export(&self.target.name, out).map_err(|e| std::io::Error::other(format!("volume {}: {e}", self.target.key)))
    }
}

/// The streams of `targets` for a backup.
pub fn streams(app: &AppContext, targets: Vec<Target>) -> Vec<Box<dyn StreamSource>> {
    targets.into_iter().map(|t| Box::new(VolumeStream::new(app, t)) as Box<dyn StreamSource>).collect()
}

/// What restoring one volume did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Restored {
    pub volume: String,
    pub bytes: u64,
    pub kept_aside: Option<String>,
}

/// Configured volumes that hold data now (for `recover`'s inspection).
pub fn live(app: &AppContext) -> Result<Vec<String>> {
    let d = docker(app);
    let project = app.config.compose.as_ref().map(|c| c.project.clone()).unwrap_or_default();
    let v = Volumes { docker: &d, project: &project };
    let mut out = Vec::new();
    for t in targets(app)? {
        if !v.is_empty(&t.name)? {
            out.push(format!("volume {} is not empty", t.name));
        }
    }
    Ok(out)
}

/// The volumes a restore of `streams_in_snapshot` would write, each with whether it holds data
/// now (for the restore's plan, before anything is written).
pub fn observe(app: &AppContext, streams_in_snapshot: &[String]) -> Result<Vec<(String, bool)>> {
    let targets: Vec<Target> =
        targets(app)?.into_iter().filter(|t| streams_in_snapshot.contains(&t.stream())).collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let d = docker(app);
    let project = app.config.compose.as_ref().map(|c| c.project.clone()).unwrap_or_default();
    let v = Volumes { docker: &d, project: &project };
    targets.into_iter().map(|t| Ok((t.name.clone(), !v.is_empty(&t.name)?))).collect()
}

/// A volume's copy kept aside by a forced restore: `<volume>__old_<time>`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Copy {
    pub volume: String,
    pub copy: String,
}

/// The copies kept aside of the configured volumes (labelled as caretaker's, named
/// `<volume>__old_<time>`), oldest first for each volume.
pub fn copies(app: &AppContext) -> Result<Vec<Copy>> {
    let Some(c) = &app.config.compose else { return Ok(Vec::new()) };
    if c.volumes.is_empty() {
        return Ok(Vec::new());
    }
    let targets = targets(app)?;
    let filter = format!("label={}={}", caretaker_compose::docker::LABEL_CARETAKER, c.project);
    let out = docker(app).command(&["volume", "ls", "-q", "--filter", &filter]).output()?;
    if !out.status.success() {
        return Err(Failure::new(
            Code::Unavailable,
            format!("docker volume ls: {}", String::from_utf8_lossy(&out.stderr).trim()),
        )
        .into());
    }
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).collect();
    names.sort();
    let mut found = Vec::new();
    for t in &targets {
        let prefix = format!("{}__old_", t.name);
        found.extend(
            names.iter().filter(|n| n.starts_with(&prefix)).map(|n| Copy { volume: t.name.clone(), copy: n.clone() }),
        );
    }
    Ok(found)
}

/// Removes a volume copy that [`copies`] listed.
pub fn remove_copy(app: &AppContext, copy: &Copy) -> Result<()> {
    docker(app).remove_volume(&copy.copy)?;
    Ok(())
}

/// Restores every configured volume whose stream `streams_in_snapshot` lists. Refuses
/// (nothing changed) when one holds data, unless `force`. The app is stopped while volumes
/// in use are replaced, and started again afterwards if it ran; maintenance mode is on
/// throughout (unless it was already).
pub fn restore(
    app: &AppContext,
    repo: &dyn BackupEngine,
    snapshot: &str,
    streams_in_snapshot: &[String],
    force: bool,
) -> Result<Vec<Restored>> {
    let targets: Vec<Target> =
        targets(app)?.into_iter().filter(|t| streams_in_snapshot.contains(&t.stream())).collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let c = crate::compose::section(&app.config)?;
    let d = docker(app);
    let v = Volumes { docker: &d, project: &c.project };
    v.remove_leftover_helpers()?;
    let mut plan = Vec::new();
    for t in &targets {
        let info = d.volume(&t.name)?;
        let full = info.is_some() && !v.is_empty(&t.name)?;
        plan.push((t, info, full));
    }
    let full: Vec<&str> = plan.iter().filter(|(_, _, f)| *f).map(|(t, _, _)| t.name.as_str()).collect();
    if !full.is_empty() && !force {
        return Err(Failure::new(Code::Refused, format!("volume {} is not empty: refusing to restore over it", full.join(", ")))
            .hint("restore into an empty volume, or add --force to keep its contents aside as <volume>__old_<time> and restore")
            .into());
    }
    // Containers running with a volume to replace: stop the app (through the daemon when one
    // runs, so it does not count the stop as a crash), and start it again afterwards.
    let mut in_use = false;
    for t in &targets {
        in_use |= d.containers_using_volume(&t.name)?.iter().any(|c| c.state.status == "running");
    }
    let project = crate::compose::project(&app.config, &app.config_path, &app.redactor)?;
    let state_dir = app.store.dir().to_path_buf();
    let stop_timeout = app.config.stop_timeout_total() + Duration::from_secs(30);
    let mut restart_daemon = false;
    let mut restart_direct = false;
    let was_on = app.store.fact(caretaker_core::mode::FACT_MAINTENANCE)?.is_some();
    if !was_on {
        crate::appmode::maintenance_on(&app.store, &app.config, Some("Restoring data from a backup."), "restore")?;
    }
    if in_use {
        match request(&state_dir, &Request::Down { exit_daemon: false }, stop_timeout)? {
            Some(_) => restart_daemon = true,
            None => {
                project.stop(&[], c.stop_timeout, &mut |_| {})?;
                restart_direct = true;
            }
        }
    }
    let stamp = jiff::Timestamp::now().strftime("%Y%m%d_%H%M%S").to_string();
    let mut done = Vec::new();
    let mut failure = None;
    for (t, info, full) in plan {
        let res = (|| -> Result<Restored> {
            let mut kept_aside = None;
            match (&info, full) {
                (Some(info), true) => {
                    let aside = format!("{}__old_{stamp}", t.name);
                    v.copy(&t.name, &aside)?;
                    v.recreate_empty(&t.name, info)?;
                    kept_aside = Some(aside);
                }
                (Some(_), false) => {}
                (None, _) => {
                    d.create_volume(&t.name, None, &compose_labels(&c.project, &t.key, &project.cli.version))?
                }
            }
            let bytes = restore_stream(repo, snapshot, &t.stream(), &v, &t.name)?;
            Ok(Restored { volume: t.name.clone(), bytes, kept_aside })
        })();
        match res {
            Ok(r) => done.push(r),
            Err(e) => {
                failure = Some(e.context(format!("restoring volume {}", t.name)));
                break;
            }
        }
    }
    if let Some(e) = failure {
        // A volume may be empty or half-restored now: never expose that silently.
        crate::appmode::set_failed(
            &app.store,
            &app.config,
            &format!("restoring a volume from a backup failed: {e:#}"),
        )?;
        return Err(e);
    }
    if restart_daemon {
        request(&state_dir, &Request::Up, Duration::from_secs(10))?;
    } else if restart_direct {
        project.up(&[], c.stop_timeout, &mut |_| {})?;
    }
    if !was_on {
        crate::appmode::maintenance_off(&app.store, &app.config, "restore")?;
    }
    Ok(done)
}

/// The snapshot's stream into the volume: the engine writes into a pipe on this thread,
/// `docker cp` reads the other end.
fn restore_stream(repo: &dyn BackupEngine, snapshot: &str, stream: &str, v: &Volumes<'_>, volume: &str) -> Result<u64> {
    let (mut reader, writer) = std::io::pipe()?;
    std::thread::scope(|s| {
        let importer = s.spawn(move || v.import(volume, &mut reader));
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, writer);
        let streamed = repo.restore_stream(Some(snapshot), stream, &mut writer);
        let flushed = writer.flush();
        drop(writer);
        let imported = importer.join().unwrap_or_else(|_| {
            Err(caretaker_compose::Error::new(caretaker_compose::ErrorKind::Io, volume, "the import thread panicked"))
        });
        match (streamed, imported) {
            (Ok(n), Ok(_)) => {
                flushed?;
                Ok(n)
            }
            (_, Err(e)) => Err(e.into()),
            (Err(e), Ok(_)) => Err(crate::exit::backup_failure(e).into()),
        }
    })
}
