//! The restic-format repository through rustic_core: caretaker's one [`BackupEngine`].
//!
//! How each measured rustic_core 0.13 behaviour is handled (see docs/backup.md):
//! 1. failed streams still give a snapshot → every snapshot is first saved tagged
//!    `caretaker-pending`, with the time 1970-01-01 so that stock restic's `latest` (the
//!    newest by time) never picks it over a real snapshot; after the streams succeeded and were
//!    verified it is deleted and the final snapshot (real time, final tags) saved — never both
//!    at once; it is deleted as well when a check fails (a crash leaves a pending one: the next
//!    run deletes it);
//! 2. stream entries lack metadata → fresh mtime/ctime/inode per run (a parent snapshot's
//!    dump is never reused); the patched rustic_core (vendor/README.md) sizes every file node
//!    by the bytes it read, and that size is compared with the bytes the producer wrote;
//! 3. read errors are warnings → recorded by the source wrapper, snapshot tagged partial;
//! 4. a handle does not see its own new snapshot → reopened after each write;
//! 5. restore panics on corrupt packs → `catch_unwind` per restored tree; streams and file
//!    contents are restored with `dump`, blob by blob (`restore.rs`), so memory is bounded.

use crate::engine::*;
use crate::error::{Error, ErrorKind, Result};
use crate::restore;
use crate::retention;
use crate::safety::{self, Measurement, TreeMeasure};
use crate::source::{CompositeSource, LocalPart, Tracker};
use crate::stream::{valid_name, StreamSource, STREAMS_DIR};
use caretaker_core::job::figures::RepositoryFigures;
use rustic_core::repofile::{MasterKey, SnapshotFile, StringList};
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, FileType, KeyOptions, NoProgressBars, OpenStatus,
    Progress, ProgressBars, ProgressType, PruneOptions, ReadBackend, ReadSubsetOption, Repository, RepositoryBackends,
    RepositoryOptions, RusticError, SnapshotOptions,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub const TAG_PENDING: &str = "caretaker-pending";
pub const TAG_COMPLETE: &str = "caretaker-complete";
pub const TAG_PARTIAL: &str = "caretaker-partial";

/// Progress display; the binary passes an indicatif one on a terminal.
#[derive(Clone, Debug)]
pub struct Bars(pub Arc<dyn ProgressBars>);

impl ProgressBars for Bars {
    fn progress(&self, progress_type: ProgressType, prefix: &str) -> Progress {
        self.0.progress(progress_type, prefix)
    }
}

pub struct ResticRepository {
    backends: RepositoryBackends,
    /// For messages: the repository in restic notation.
    name: String,
    password: String,
    bars: Bars,
    cache_dir: Option<PathBuf>,
    /// For a local repository: its directory, so that a missing one (an unmounted disk) is
    /// told apart from an empty one.
    local_root: Option<PathBuf>,
    /// The master key after the first successful open: reopening (needed to see new
    /// snapshots) then skips the deliberately slow password key derivation.
    key: std::sync::Mutex<Option<MasterKey>>,
}

type Open = Repository<OpenStatus>;

impl ResticRepository {
    pub fn new(backends: RepositoryBackends, name: impl Into<String>, password: impl Into<String>) -> Self {
        ResticRepository {
            backends,
            name: name.into(),
            password: password.into(),
            bars: Bars(Arc::new(NoProgressBars)),
            cache_dir: None,
            local_root: None,
            key: std::sync::Mutex::new(None),
        }
    }

    pub fn with_progress(mut self, bars: Arc<dyn ProgressBars>) -> Self {
        self.bars = Bars(bars);
        self
    }

    /// A local repository's directory (see `open`).
    pub fn with_local_root(mut self, dir: PathBuf) -> Self {
        self.local_root = Some(dir);
        self
    }

    /// Cache directory for repository metadata (worth it for remote targets).
    pub fn with_cache_dir(mut self, dir: PathBuf) -> Self {
        self.cache_dir = Some(dir);
        self
    }

    fn err(&self, what: &str) -> impl Fn(Box<RusticError>) -> Error + '_ {
        let what = what.to_string();
        move |e| Error::rustic(&what, &self.name, &e)
    }

    fn raw(&self) -> Result<Repository<()>> {
        let mut opts = RepositoryOptions::default();
        match &self.cache_dir {
            Some(d) => opts.cache_dir = Some(d.clone()),
            None => opts.no_cache = true,
        }
        Repository::new_with_progress(&opts, &self.backends, self.bars.clone()).map_err(self.err("opening repository"))
    }

    fn open(&self) -> Result<Open> {
        let raw = self.raw()?;
        let config = raw.config_id().map_err(self.err("reading repository"))?;
        if config.is_none() {
            if let Some(root) = self.local_root.as_ref().filter(|r| !r.exists()) {
                return Err(Error::new(
                    ErrorKind::Unreachable,
                    format!("the backup repository directory {} does not exist", root.display()),
                )
                .hint("is the backup disk mounted? fix backup.repository, or create a new repository there with `caretaker backup init`"));
            }
            return Err(Error::new(ErrorKind::NoRepository, format!("no backup repository at {}", self.name))
                .hint("create it with `caretaker backup init` (or fix backup.repository in the config)"));
        }
        let cached = self.key.lock().unwrap().clone();
        let creds = match cached {
            Some(k) => Credentials::Masterkey(k),
            None => Credentials::password(&self.password),
        };
        let repo = raw.open(&creds).map_err(self.err("opening repository"))?;
        *self.key.lock().unwrap() = Some(repo.key());
        Ok(repo)
    }

    /// The repository as a whole: its snapshots and the bytes of all its files (config,
    /// keys, snapshots, index, packs), from one listing of each kind of file — no key
    /// derivation, nothing decrypted; for a remote target, a handful of list requests.
    pub fn totals(&self) -> Result<RepositoryFigures> {
        let be = self.backends.repository();
        let mut totals = RepositoryFigures { snapshots: Some(0), repository_size_bytes: Some(0) };
        for tpe in [FileType::Config, FileType::Key, FileType::Snapshot, FileType::Index, FileType::Pack] {
            let files = be.list_with_size(tpe).map_err(self.err("listing repository files"))?;
            let bytes: u64 = files.iter().map(|(_, n)| u64::from(*n)).sum();
            totals.repository_size_bytes = totals.repository_size_bytes.map(|t| t + bytes);
            if tpe == FileType::Snapshot {
                totals.snapshots = Some(files.len() as u64);
            }
        }
        Ok(totals)
    }

    fn all_snapshots(&self, repo: &Open) -> Result<Vec<SnapshotFile>> {
        let mut snaps = repo.get_all_snapshots().map_err(self.err("listing snapshots"))?;
        snaps.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(snaps)
    }

    fn delete(&self, repo: &Open, snap: &SnapshotFile) -> Result<()> {
        repo.delete_snapshots(&[snap.id]).map_err(self.err("deleting snapshot"))
    }

    /// The snapshot a restore means: an id (prefix), or the newest complete one.
    fn pick(&self, repo: &Open, wanted: Option<&str>) -> Result<SnapshotFile> {
        let snaps = self.all_snapshots(repo)?;
        match wanted {
            Some(w) if w != "latest" => {
                let found: Vec<_> = snaps.into_iter().filter(|s| s.id.to_hex().starts_with(w)).collect();
                match found.len() {
                    1 => Ok(found.into_iter().next().unwrap()),
                    0 => Err(Error::new(ErrorKind::NotFound, format!("no snapshot {w} in {}", self.name))
                        .hint("`caretaker backup list` shows the snapshots")),
                    _ => Err(Error::new(ErrorKind::Invalid, format!("snapshot id {w} is ambiguous"))
                        .hint("give more characters of the id")),
                }
            }
            _ => snaps
                .iter()
                .rev()
                .find(|s| info(s).complete)
                .or_else(|| snaps.iter().rev().find(|s| !info(s).pending))
                .cloned()
                .ok_or_else(|| {
                    Error::new(ErrorKind::NotFound, format!("no snapshot in {}", self.name))
                        .hint("take one with `caretaker backup run`")
                }),
        }
    }
}

fn tags_of(s: &SnapshotFile) -> Vec<String> {
    s.tags.iter().cloned().collect()
}

fn string_list(items: &[String]) -> StringList {
    let mut sl = StringList::default();
    for i in items {
        sl.add(i.clone());
    }
    sl
}

/// caretaker's manifest, stored as the snapshot's description (restic ignores it).
fn manifest(s: &SnapshotFile) -> Option<Measurement> {
    s.description.as_deref().and_then(|d| serde_json::from_str(d).ok())
}

pub(crate) fn info(s: &SnapshotFile) -> SnapshotInfo {
    let tags = tags_of(s);
    let summary = s.summary.as_ref();
    SnapshotInfo {
        id: s.id.to_hex().to_string(),
        short_id: s.id.to_hex().chars().take(8).collect(),
        time: s.time.timestamp(),
        hostname: s.hostname.clone(),
        complete: tags.iter().any(|t| t == TAG_COMPLETE),
        pending: tags.iter().any(|t| t == TAG_PENDING),
        tags,
        paths: s.paths.iter().cloned().collect(),
        bytes: summary.map_or(0, |m| m.total_bytes_processed),
        files: summary.map_or(0, |m| m.total_files_processed),
        measurement: manifest(s),
    }
}

/// Walks a tree (without following symlinks) and counts what a backup would see.
pub fn measure_tree(path: &Path) -> TreeMeasure {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return TreeMeasure::default() };
    let mut m = TreeMeasure { exists: true, is_dir: meta.is_dir(), entries: 0, bytes: 0 };
    if !meta.is_dir() {
        m.entries = 1;
        m.bytes = meta.len();
        return m;
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                m.entries += 1;
                if ft.is_file() {
                    m.bytes += e.metadata().map(|md| md.len()).unwrap_or(0);
                }
            }
        }
    }
    m
}

fn validate(req: &BackupRequest, streams: &[Box<dyn StreamSource>]) -> Result<Vec<PathBuf>> {
    let mut roots: Vec<PathBuf> = req.trees.iter().map(|t| t.path.clone()).chain(req.files.iter().cloned()).collect();
    for r in &roots {
        if !r.is_absolute() {
            return Err(Error::new(ErrorKind::Invalid, format!("backup path {} is not absolute", r.display())));
        }
        if r.starts_with(STREAMS_DIR) {
            return Err(Error::new(ErrorKind::Invalid, format!("backup path {} is reserved for streams", r.display())));
        }
    }
    roots.sort();
    for w in roots.windows(2) {
        if w[1].starts_with(&w[0]) {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("backup paths {} and {} overlap", w[0].display(), w[1].display()),
            )
            .hint("list each directory once in `files:`"));
        }
    }
    let mut names: Vec<&str> = streams.iter().map(|s| s.name()).collect();
    for n in &names {
        if !valid_name(n) {
            return Err(Error::new(ErrorKind::Invalid, format!("stream name {n:?} is not a plain file name")));
        }
    }
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::new(ErrorKind::Invalid, "two streams have the same name"));
    }
    if !streams.is_empty() {
        roots.push(PathBuf::from(STREAMS_DIR));
    }
    Ok(roots)
}

pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

impl ResticRepository {
    fn remove_pending(&self, repo: &Open) -> Result<()> {
        for s in self.all_snapshots(repo)? {
            if info(&s).pending {
                self.delete(repo, &s)?;
            }
        }
        Ok(())
    }

    fn backup_inner(
        &self,
        req: &BackupRequest,
        streams: Vec<Box<dyn StreamSource>>,
        started: Instant,
    ) -> Result<BackupReport> {
        let backup_paths = validate(req, &streams)?;
        let stream_names: Vec<String> = streams.iter().map(|s| s.name().to_string()).collect();
        let repo = self.open()?;
        self.remove_pending(&repo)?;

        // Safety before anything is written.
        let previous = self.all_snapshots(&repo)?.iter().rev().filter(|s| info(s).complete).find_map(manifest);
        let mut measurement = Measurement::default();
        for t in &req.trees {
            measurement.trees.insert(t.path.clone(), measure_tree(&t.path));
        }
        safety::check_before(previous.as_ref(), &measurement, &req.policy).map_err(Error::refused)?;

        let mut snap_opts = SnapshotOptions::default();
        snap_opts.host.clone_from(&req.host);
        let mut pending_tags = req.tags.clone();
        pending_tags.push(TAG_PENDING.into());
        let mut snap = SnapshotFile::from_options(&snap_opts).map_err(self.err("preparing snapshot"))?;
        // The pending snapshot is dated 1970: never stock restic's `latest` while a real one
        // exists. The final snapshot gets the real time back.
        let real_time = snap.time.clone();
        snap.time = jiff::Timestamp::UNIX_EPOCH.to_zoned(real_time.time_zone().clone());
        snap.tags = string_list(&pending_tags);
        snap.description = serde_json::to_string(&measurement).ok();

        let parts: Vec<LocalPart> = req
            .trees
            .iter()
            .map(|t| LocalPart { path: t.path.clone(), exclude: t.exclude.clone() })
            .chain(req.files.iter().map(|f| LocalPart { path: f.clone(), exclude: vec![] }))
            .collect();

        // One pass: the streams are read while the trees are archived. The patched
        // rustic_core (vendor/README.md) sizes each stream's node by what it read.
        let tracker = Arc::new(Tracker::default());
        let source = CompositeSource::new(&parts, streams, tracker.clone()).map_err(self.err("reading file trees"))?;
        let indexed = repo.to_indexed_ids().map_err(self.err("reading repository index"))?;
        let archived = indexed.archive(&BackupOptions::default(), &source, snap, &backup_paths);
        tracker.join_producers();
        drop(indexed);
        let snap = archived.map_err(self.err("backup"));

        // Fact 4: a fresh handle sees the new snapshot and its index.
        let repo = self.open()?;
        let snap = snap?;
        kill_hook("backup.pending_saved");
        let results = tracker.streams.lock().unwrap().clone();
        let repo = repo.to_indexed().map_err(self.err("reading repository index"))?;
        // Facts 1 and 2: every stream must have been read to its end without an error, and the
        // snapshot must hold exactly the bytes its producer wrote; otherwise no snapshot stays.
        let discard = |what: String| match repo.delete_snapshots(&[snap.id]) {
            Ok(()) => Error::new(ErrorKind::StreamFailed, format!("{what}; no snapshot was saved"))
                .hint("fix the database dump (see the job log), then run the backup again"),
            Err(e) => self.err("deleting snapshot")(e),
        };
        for name in &stream_names {
            let written = match results.get(name) {
                Some(r) if r.opened => match &r.error {
                    Some(why) => return Err(discard(format!("stream {name} failed: {why}"))),
                    None => r.bytes,
                },
                _ => return Err(discard(format!("stream {name} failed: the stream was never read"))),
            };
            let stored = repo.node_from_snapshot_and_path(&snap, &format!("{STREAMS_DIR}/{name}")).map(|n| n.meta.size);
            if stored.as_ref().ok() != Some(&written) {
                return Err(discard(format!("stream {name}: {written} bytes written, {stored:?} stored")));
            }
            measurement.streams.insert(name.clone(), written);
        }
        if let Err(r) = safety::check_streams(previous.as_ref(), &measurement, &req.policy) {
            let _ = repo.delete_snapshots(&[snap.id]);
            return Err(Error::refused(r));
        }

        // Verified: the final snapshot, with caretaker's tags and manifest.
        let read_errors = tracker.read_errors.lock().unwrap().clone();
        let complete = read_errors.is_empty();
        let mut final_tags = req.tags.clone();
        final_tags.push(if complete { TAG_COMPLETE } else { TAG_PARTIAL }.into());
        let mut fin = snap.clone();
        fin.tags = string_list(&final_tags);
        fin.description = serde_json::to_string(&measurement).ok();
        if let Some(summary) = fin.summary.as_mut() {
            summary.total_duration = summary
                .backup_end
                .since(&real_time)
                .ok()
                .and_then(|s| s.total(jiff::Unit::Second).ok())
                .unwrap_or_default();
        }
        fin.time = real_time;
        // The pending snapshot goes first: the two never exist together, so no tool sees two
        // versions of one backup. A crash in between leaves no snapshot (the job is then
        // rightly interrupted).
        repo.delete_snapshots(&[snap.id]).map_err(self.err("saving snapshot"))?;
        repo.save_snapshots(vec![fin.clone()]).map_err(self.err("saving snapshot"))?;
        kill_hook("backup.final_saved");
        drop(repo);
        let repo = self.open()?;
        let saved = self
            .all_snapshots(&repo)?
            .into_iter()
            .rev()
            .find(|s| s.time == fin.time && s.tree == fin.tree && !info(s).pending)
            .ok_or_else(|| Error::new(ErrorKind::Corrupt, "the new snapshot vanished after it was saved"))?;

        let summary = saved.summary.clone().unwrap_or_default();
        Ok(BackupReport {
            snapshot_id: saved.id.to_hex().to_string(),
            complete,
            read_errors,
            bytes_read: summary.total_bytes_processed,
            bytes_added: summary.data_added_packed,
            files: summary.total_files_processed,
            files_new: summary.files_new,
            files_changed: summary.files_changed,
            duration: started.elapsed(),
            measurement,
        })
    }

    fn restore_inner(&self, req: &RestoreRequest, report: &mut RestoreReport) -> Result<()> {
        let repo = self.open()?;
        let snap = self.pick(&repo, req.snapshot.as_deref())?;
        report.snapshot_id = snap.id.to_hex().to_string();
        let repo = repo.to_indexed().map_err(self.err("reading repository index"))?;
        for p in snap.paths.iter() {
            let path = PathBuf::from(p);
            if path == Path::new(STREAMS_DIR) {
                if req.what == RestoreWhat::FilesOnly {
                    continue;
                }
                let dir = repo.node_from_snapshot_and_path(&snap, STREAMS_DIR).map_err(self.err("reading snapshot"))?;
                let Some(tree) = dir.subtree else { continue };
                let tree = repo.get_tree(&tree).map_err(self.err("reading snapshot"))?;
                for node in tree.nodes {
                    let name = node.name().to_string_lossy().to_string();
                    let Some(target) = &req.target else {
                        report.streams_skipped.push(name);
                        continue;
                    };
                    let dest_dir = target.join(STREAMS_DIR.trim_start_matches('/'));
                    let dest = dest_dir.join(&name);
                    // 0600 and under a temporary name until complete (restore.rs).
                    let res = restore::write_file(&repo, &dest, &node);
                    match res {
                        Ok(()) => report.streams_written.push((name, dest, node.meta.size)),
                        Err(e) => report.errors.push(with_hint(format!("stream {name}: {e}"), &e)),
                    }
                }
                continue;
            }
            if req.what == RestoreWhat::StreamsOnly || req.skip.contains(&path) {
                continue;
            }
            let dest = match &req.target {
                Some(t) => t.join(path.strip_prefix("/").unwrap_or(&path)),
                None => path.clone(),
            };
            let res = contained(|| {
                let node = repo.node_from_snapshot_and_path(&snap, p).map_err(self.err("reading snapshot"))?;
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("creating {}", parent.display()), &e))?;
                }
                // Fact 5: the file contents with bounded memory, then rustic's restorer for the
                // rest (restore.rs).
                restore::tree(&repo, &node, &dest, &self.name)
            });
            match res {
                Ok(()) => report.restored.push(dest),
                Err(e) => report.errors.push(with_hint(format!("{}: {e}", path.display()), &e)),
            }
        }
        Ok(())
    }
}

/// An error of a restore report: the message, and its hint on a line of its own as the binary
/// prints hints.
fn with_hint(message: String, e: &Error) -> String {
    match &e.hint {
        Some(h) => format!("{message}\n  hint: {h}"),
        None => message,
    }
}

/// Debug builds only: SIGKILL this process when `CARETAKER_TEST_KILL_AT_STEP` names `step`
/// (`backup.pending_saved`, `backup.final_saved`), for the crash tests; release builds ignore
/// it.
#[cfg(debug_assertions)]
fn kill_hook(step: &str) {
    if std::env::var("CARETAKER_TEST_KILL_AT_STEP").is_ok_and(|v| v == step) {
        // SAFETY: plain syscalls.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(not(debug_assertions))]
fn kill_hook(_step: &str) {}

/// Runs `f`, turning a panic inside rustic_core (e.g. on a corrupt pack) into an error.
fn contained<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(Error::new(ErrorKind::Corrupt, format!("the repository data is damaged ({})", panic_text(&*p)))
            .hint("run `caretaker backup check --read-data` to see what is damaged")),
    }
}

impl BackupEngine for ResticRepository {
    fn init(&self) -> Result<()> {
        let raw = self.raw()?;
        if raw.config_id().map_err(self.err("reading repository"))?.is_some() {
            return Err(Error::new(ErrorKind::AlreadyInitialized, format!("{} already holds a repository", self.name)));
        }
        raw.init(&Credentials::password(&self.password), &KeyOptions::default(), &ConfigOptions::default())
            .map_err(self.err("creating repository"))?;
        Ok(())
    }

    fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let repo = self.open()?;
        Ok(self.all_snapshots(&repo)?.iter().map(info).collect())
    }

    fn backup(&self, req: &BackupRequest, streams: Vec<Box<dyn StreamSource>>) -> Result<BackupReport> {
        let started = Instant::now();
        contained(|| self.backup_inner(req, streams, started))
    }

    fn check(&self, read: ReadData) -> Result<CheckReport> {
        let repo = self.open()?;
        let mut opts = CheckOptions::default();
        match read {
            ReadData::None => {}
            ReadData::All => opts.read_data = true,
            ReadData::Percent(p) => {
                if !(0.0..=100.0).contains(&p) {
                    return Err(Error::new(ErrorKind::Invalid, format!("--read-data-subset {p}: give 0 to 100")));
                }
                opts.read_data = true;
                opts.read_data_subset = ReadSubsetOption::Percentage(p);
            }
        }
        let results = contained(|| repo.check(opts).map_err(self.err("checking repository")))?;
        let mut report = CheckReport { errors: vec![], warnings: vec![] };
        for (level, e) in results.0 {
            let text = crate::damage::finding_text(&e);
            if format!("{level:?}").to_lowercase().contains("error") {
                report.errors.push(text);
            } else {
                report.warnings.push(text);
            }
        }
        if !report.errors.is_empty() {
            // The snapshots and files the damaged packs hold (damage.rs).
            let snaps = self.all_snapshots(&repo)?;
            let repo = repo.to_indexed().map_err(self.err("reading repository index"))?;
            let affected = contained(|| Ok(crate::damage::affected(&repo, &snaps, &report.errors)))?;
            report.errors.extend(affected);
        }
        Ok(report)
    }

    fn prune(&self, keep: &caretaker_core::config::Keep) -> Result<PruneReport> {
        let repo = self.open()?;
        let snaps = self.all_snapshots(&repo)?;
        let candidates: Vec<retention::Candidate> = snaps
            .iter()
            .filter(|s| !info(s).pending)
            .map(|s| retention::Candidate {
                id: s.id.to_hex().to_string(),
                time: s.time.timestamp(),
                complete: info(s).complete,
            })
            .collect();
        let decisions = retention::select(&candidates, keep, jiff::Timestamp::now(), &jiff::tz::TimeZone::system());
        let by_id: BTreeMap<String, &SnapshotFile> = snaps.iter().map(|s| (s.id.to_hex().to_string(), s)).collect();
        let remove: Vec<_> = decisions.iter().filter(|d| !d.keep).map(|d| by_id[&d.id].id).collect();
        if !remove.is_empty() {
            repo.delete_snapshots(&remove).map_err(self.err("removing snapshots"))?;
        }
        let repo = self.open()?;
        // Unused packs are deleted now, not marked for a later prune: caretaker's app lock keeps
        // its own backups out meanwhile, and the freed space is what the report and the
        // repository figures then say (docs/decisions.md).
        let opts = PruneOptions::default().instant_delete(true);
        let plan = repo.prune_plan(&opts).map_err(self.err("planning prune"))?;
        let packs_removed = plan.stats.packs.unused + plan.stats.packs_unref + plan.stats.packs_to_delete.remove;
        let bytes_freed = plan.stats.size_sum().remove + plan.stats.size_unref;
        repo.prune(&opts, plan).map_err(self.err("pruning"))?;
        Ok(PruneReport {
            removed_snapshots: decisions.iter().filter(|d| !d.keep).map(|d| d.id.clone()).collect(),
            kept_snapshots: decisions.iter().filter(|d| d.keep).map(|d| (d.id.clone(), d.reasons.clone())).collect(),
            packs_removed,
            bytes_freed,
        })
    }

    fn restore(&self, req: &RestoreRequest) -> Result<RestoreReport> {
        let mut report = RestoreReport {
            snapshot_id: String::new(),
            restored: vec![],
            streams_written: vec![],
            streams_skipped: vec![],
            errors: vec![],
        };
        self.restore_inner(req, &mut report)?;
        Ok(report)
    }

    fn restore_stream(&self, snapshot: Option<&str>, name: &str, out: &mut dyn Write) -> Result<u64> {
        let repo = self.open()?;
        let snap = self.pick(&repo, snapshot)?;
        let repo = repo.to_indexed().map_err(self.err("reading repository index"))?;
        let node = repo
            .node_from_snapshot_and_path(&snap, &format!("{STREAMS_DIR}/{name}"))
            .map_err(|_| Error::new(ErrorKind::NotFound, format!("snapshot {} has no stream {name}", snap.id)))?;
        let mut counting = crate::restore::Counting { inner: out, n: 0 };
        contained(|| repo.dump(&node, &mut counting).map_err(self.err("restoring stream")))?;
        Ok(counting.n)
    }
}
