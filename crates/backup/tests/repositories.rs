//! The repository conformance suite: the same behaviours, run against every storage backend
//! caretaker has (local, S3 on moto, SFTP on the test sshd) and against the retry decorator
//! over a fault-injecting backend — as `crates/db/tests/databases.rs` does for databases.

mod common;

use bytes::Bytes;
use caretaker_backup::local::PrivateLocalBackend;
use caretaker_backup::retry::{is_transient, RetryBackend, RetryPolicy, Transient};
use caretaker_backup::{s3, sftp};
use common::*;
use rustic_core::{BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn data(len: usize, seed: u8) -> Bytes {
    Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>())
}

fn sorted(mut v: Vec<(Id, u32)>) -> Vec<(Id, u32)> {
    v.sort();
    v
}

/// What every repository backend must do, as rustic and restic rely on it.
fn conforms(be: &dyn WriteBackend) {
    // create: idempotent.
    be.create().expect("create");
    be.create().expect("create again");

    // An empty repository: nothing listed, no config.
    for tpe in [FileType::Config, FileType::Key, FileType::Snapshot, FileType::Index, FileType::Pack] {
        assert!(be.list_with_size(tpe).unwrap().is_empty(), "{tpe:?} listed in an empty repository");
    }

    // not found: an error that is never transient (rustic probes for files that may not exist).
    let missing = Id::random();
    for err in [
        be.read_full(FileType::Config, &Id::default()).unwrap_err(),
        be.read_full(FileType::Pack, &missing).unwrap_err(),
        be.read_partial(FileType::Pack, &missing, false, 0, 10).unwrap_err(),
    ] {
        assert!(!is_transient(&err), "a missing file is not transient: {err}");
    }

    // write + read the config.
    let config = data(300, 1);
    be.write_bytes(FileType::Config, &Id::default(), false, config.clone().into()).unwrap();
    assert_eq!(be.list_with_size(FileType::Config).unwrap(), vec![(Id::default(), 300)]);
    assert_eq!(be.read_full(FileType::Config, &Id::default()).unwrap(), config);

    // Packs in different data/xx directories, written from several buffers.
    let (p1, p2) = (Id::random(), Id::random());
    let pack1 = data(700_000, 2);
    let pack2 = data(1234, 3);
    let mut parts = BytesList::from(pack1.slice(..100_000));
    parts.add(pack1.slice(100_000..));
    be.write_bytes(FileType::Pack, &p1, false, parts).unwrap();
    be.write_bytes(FileType::Pack, &p2, false, pack2.clone().into()).unwrap();
    assert_eq!(sorted(be.list_with_size(FileType::Pack).unwrap()), sorted(vec![(p1, 700_000), (p2, 1234)]));
    let mut listed = be.list(FileType::Pack).unwrap();
    listed.sort();
    let mut want = vec![p1, p2];
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(be.read_full(FileType::Pack, &p1).unwrap(), pack1);

    // read partial: the start, the middle, the very end.
    assert_eq!(be.read_partial(FileType::Pack, &p1, false, 0, 10).unwrap(), pack1.slice(0..10));
    assert_eq!(
        be.read_partial(FileType::Pack, &p1, true, 123_456, 65_536).unwrap(),
        pack1.slice(123_456..123_456 + 65_536)
    );
    assert_eq!(be.read_partial(FileType::Pack, &p2, false, 1200, 34).unwrap(), pack2.slice(1200..));

    // Other file types live in their own directories.
    let (k, s, i) = (Id::random(), Id::random(), Id::random());
    be.write_bytes(FileType::Key, &k, false, data(10, 4).into()).unwrap();
    be.write_bytes(FileType::Snapshot, &s, false, data(20, 5).into()).unwrap();
    be.write_bytes(FileType::Index, &i, false, data(30, 6).into()).unwrap();
    assert_eq!(be.list_with_size(FileType::Key).unwrap(), vec![(k, 10)]);
    assert_eq!(be.list_with_size(FileType::Snapshot).unwrap(), vec![(s, 20)]);
    assert_eq!(be.list_with_size(FileType::Index).unwrap(), vec![(i, 30)]);

    // overwrite: a retried write (or a rewritten config) replaces the file.
    let config2 = data(400, 7);
    be.write_bytes(FileType::Config, &Id::default(), false, config2.clone().into()).unwrap();
    assert_eq!(be.read_full(FileType::Config, &Id::default()).unwrap(), config2);
    be.write_bytes(FileType::Pack, &p2, false, pack2.clone().into()).unwrap();
    assert_eq!(be.read_full(FileType::Pack, &p2).unwrap(), pack2);

    // remove.
    be.remove(FileType::Pack, &p2, false).unwrap();
    assert_eq!(be.list_with_size(FileType::Pack).unwrap(), vec![(p1, 700_000)]);
    let gone = be.read_full(FileType::Pack, &p2).unwrap_err();
    assert!(!is_transient(&gone), "a removed file is not transient: {gone}");
    be.remove(FileType::Snapshot, &s, false).unwrap();
    assert!(be.list(FileType::Snapshot).unwrap().is_empty());
}

#[test]
fn local_repository_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conforms(&PrivateLocalBackend::new(&dir.path().join("repo")).unwrap());
}

#[test]
fn s3_repository_conforms() {
    let Some(moto) = moto() else { return };
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let target = s3_target(&endpoint, "conformance");
    conforms(&s3::S3Backend::new(&target).unwrap());
}

#[test]
fn sftp_repository_conforms() {
    let Some(sshd) = caretaker_testkit::TestSshd::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remote/repo").to_str().unwrap().to_string();
    let target = sftp_target(&sshd, &path, None, None);
    conforms(&sftp::SftpBackend::connect(&target).unwrap());
}

/// The next request after the ssh process died starts a new one (no retry decorator here: the
/// reconnect is the backend's own), and the repository is intact.
#[test]
fn sftp_request_after_its_ssh_died_reconnects() {
    let Some(sshd) = caretaker_testkit::TestSshd::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remote/repo").to_str().unwrap().to_string();
    let target = sftp_target(&sshd, &path, None, None);
    let be = sftp::SftpBackend::connect(&target).unwrap();
    be.create().unwrap();
    let key = Id::random();
    be.write_bytes(FileType::Key, &key, false, data(100, 1).into()).unwrap();
    let first = ssh_children();
    assert_eq!(first.len(), 1, "{first:?}");
    // SAFETY: kill(2) on a child process of this test.
    assert_eq!(unsafe { libc::kill(first[0], libc::SIGKILL) }, 0);
    // Dead (a zombie until the backend reaps it).
    caretaker_testkit::wait_until(Duration::from_secs(30), "ssh to die", || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", first[0])).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_string));
        matches!(state.as_deref(), None | Some("Z")).then_some(())
    });
    assert_eq!(be.list_with_size(FileType::Key).unwrap(), vec![(key, 100)]);
    assert_eq!(be.reconnects(), 1);
    let now = ssh_children();
    assert!(now.len() == 1 && now[0] != first[0], "{first:?} → {now:?}");
    assert_eq!(be.read_full(FileType::Key, &key).unwrap(), data(100, 1));
}

/// A backend that fails (transiently) the first `fail` calls after each successful one — so
/// that every request of the suite fails `fail` times before it works — or always
/// (`fail == u32::MAX`); counts calls.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn WriteBackend>,
    fail: u32,
    failed_in_a_row: AtomicU32,
    calls: AtomicU32,
    permanent: bool,
}

impl Faulty {
    fn new(inner: Arc<dyn WriteBackend>, fail: u32) -> Self {
        Faulty { inner, fail, failed_in_a_row: AtomicU32::new(0), calls: AtomicU32::new(0), permanent: false }
    }

    fn call<T>(&self, op: impl FnOnce() -> RusticResult<T>) -> RusticResult<T> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failed_in_a_row.load(Ordering::SeqCst) < self.fail {
            self.failed_in_a_row.fetch_add(1, Ordering::SeqCst);
            let cause = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected: connection reset");
            return Err(if self.permanent {
                RusticError::with_source(ErrorKind::Backend, "injected permanent failure", cause)
            } else {
                RusticError::with_source(ErrorKind::Backend, "injected failure", Transient(Box::new(cause)))
            });
        }
        self.failed_in_a_row.store(0, Ordering::SeqCst);
        op()
    }
}

impl ReadBackend for Faulty {
    fn location(&self) -> String {
        format!("faulty:{}", self.inner.location())
    }
    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.call(|| self.inner.list_with_size(tpe))
    }
    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.call(|| self.inner.read_full(tpe, id))
    }
    fn read_partial(&self, tpe: FileType, id: &Id, c: bool, offset: u32, length: u32) -> RusticResult<Bytes> {
        self.call(|| self.inner.read_partial(tpe, id, c, offset, length))
    }
    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for Faulty {
    fn create(&self) -> RusticResult<()> {
        self.call(|| self.inner.create())
    }
    fn write_bytes(&self, tpe: FileType, id: &Id, c: bool, content: BytesList) -> RusticResult<()> {
        self.call(|| self.inner.write_bytes(tpe, id, c, content))
    }
    fn remove(&self, tpe: FileType, id: &Id, c: bool) -> RusticResult<()> {
        self.call(|| self.inner.remove(tpe, id, c))
    }
}

fn quick(max_time: Duration) -> RetryPolicy {
    RetryPolicy { max_time, first_delay: Duration::from_millis(5), max_delay: Duration::from_millis(40) }
}

/// Every request of the suite fails twice (transiently) first: through the retry decorator
/// the backend still conforms, with exactly two retries per request.
#[test]
fn retrying_backend_over_injected_faults_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn WriteBackend> = Arc::new(PrivateLocalBackend::new(&dir.path().join("repo")).unwrap());
    let faulty = Arc::new(Faulty::new(local, 2));
    let retrying = RetryBackend::new(faulty.clone(), quick(Duration::from_secs(60)));
    conforms(&retrying);
    let calls = u64::from(faulty.calls.load(Ordering::SeqCst));
    assert!(calls > 30, "{calls}");
    // Each request: two injected failures and one real call. A not-found answer is the real
    // call's (after the two injected failures), never retried itself.
    assert_eq!(retrying.retries() * 3, calls * 2, "{} retries for {calls} calls", retrying.retries());
}

/// Not found, and failures nobody marked transient, are returned at once.
#[test]
fn missing_files_and_permanent_failures_are_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn WriteBackend> = Arc::new(PrivateLocalBackend::new(&dir.path().join("repo")).unwrap());
    local.create().unwrap();
    let counting = Arc::new(Faulty::new(local.clone(), 0));
    let retrying = RetryBackend::new(counting.clone(), quick(Duration::from_secs(60)));
    retrying.read_full(FileType::Pack, &Id::random()).unwrap_err();
    retrying.read_partial(FileType::Index, &Id::random(), false, 0, 1).unwrap_err();
    assert_eq!(counting.calls.load(Ordering::SeqCst), 2, "one call each");
    assert_eq!(retrying.retries(), 0);

    let mut permanent = Faulty::new(local, u32::MAX);
    permanent.permanent = true;
    let permanent = Arc::new(permanent);
    let retrying = RetryBackend::new(permanent.clone(), quick(Duration::from_secs(60)));
    retrying.write_bytes(FileType::Pack, &Id::random(), false, data(10, 0).into()).unwrap_err();
    assert_eq!(permanent.calls.load(Ordering::SeqCst), 1);
}

/// A backend that keeps failing is given up on once `max_time` is spent, and the error says so.
#[test]
fn retries_stop_after_max_time() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn WriteBackend> = Arc::new(PrivateLocalBackend::new(&dir.path().join("repo")).unwrap());
    let broken = Arc::new(Faulty::new(local, u32::MAX));
    let retrying = RetryBackend::new(broken.clone(), quick(Duration::from_millis(300)));
    let start = Instant::now();
    let err = retrying.list(FileType::Snapshot).unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(300) + Duration::from_secs(5), "{took:?}");
    assert!(retrying.retries() >= 3, "{}", retrying.retries());
    assert_eq!(u64::from(broken.calls.load(Ordering::SeqCst)), retrying.retries() + 1);
    let text = err.to_string();
    assert!(text.contains("gave up after") && text.contains("backup.retry.max_time"), "{text}");
}

/// An S3 server that stops answering: with a 1 s read timeout the request fails as temporary
/// and is retried, instead of hanging the backup.
#[test]
fn s3_request_that_hangs_times_out_and_is_retried() {
    let Some(moto) = moto() else { return };
    let proxy = FaultProxy::start(
        moto.port,
        Faults { matching: "PUT /caretaker/hang/keys/".into(), fail_503: 0, delayed: 1, delay: Duration::from_secs(5) },
    );
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let target = s3_target(&endpoint, "hang");
    let be: Arc<dyn WriteBackend> = Arc::new(s3::S3Backend::with_io_timeout(&target, Duration::from_secs(1)).unwrap());
    let retrying = RetryBackend::new(be, quick(Duration::from_secs(60)));
    let id = Id::random();
    let start = Instant::now();
    retrying.write_bytes(FileType::Key, &id, false, data(100, 9).into()).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5), "the hung request was not cut short: {:?}", start.elapsed());
    assert_eq!(proxy.delayed.load(Ordering::SeqCst), 1);
    assert_eq!(retrying.retries(), 1);
    assert_eq!(retrying.read_full(FileType::Key, &id).unwrap(), data(100, 9));
}
