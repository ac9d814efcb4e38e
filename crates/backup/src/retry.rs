//! Retries of a remote repository's transient failures, as a decorator around any rustic
//! backend (restic wraps every backend the same way: `internal/backend/retry`).
//!
//! A request that fails transiently (an S3 5xx/429 or timeout, a dropped SSH connection) is
//! tried again after an exponentially growing, jittered delay until it succeeds or the
//! policy's total time is spent; then the last error is returned, saying how long it was
//! retried. Everything else fails at once: a missing file (rustic probes for files that may
//! not exist), a refused login or permission, a wrong password, a full disk — waiting does
//! not fix those, and retrying a wrong password would only delay the message.
//!
//! What is transient is decided where it is known: opendal marks its errors temporary (S3), and
//! the SFTP backend wraps connection losses in [`Transient`]. Nothing else is retried.

use rustic_core::{BytesList, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long and how often a request is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total time one request may spend waiting for retries (zero: no retries).
    pub max_time: Duration,
    /// Delay before the first retry; each further one doubles, up to `max_delay`. Every delay
    /// is jittered to between half and all of its value, so that parallel requests that
    /// failed together do not retry together.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The default delays (1 s doubling up to 1 min) within `max_time` in all.
    pub fn new(max_time: Duration) -> Self {
        RetryPolicy { max_time, first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(60) }
    }

    /// The un-jittered delay before retry number `retry` (0 = the first retry).
    pub fn base_delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(30));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

impl Default for RetryPolicy {
    /// 10 minutes, as `backup.retry.max_time` defaults to.
    fn default() -> Self {
        RetryPolicy::new(Duration::from_secs(10 * 60))
    }
}

/// Marks an error as transient: the backend that returned it knows that trying again may
/// succeed (the SFTP backend: the SSH connection was lost and the next attempt reconnects).
#[derive(Debug)]
pub struct Transient(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Transient {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Whether trying again may succeed: a [`Transient`] or an opendal error marked temporary
/// anywhere in the error's chain. A wrong password, a missing file, a refused permission and
/// every error nobody marked are permanent.
pub fn is_transient(err: &RusticError) -> bool {
    if err.is_incorrect_password() {
        return false;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<Transient>() {
            return true;
        }
        if let Some(o) = e.downcast_ref::<opendal::Error>() {
            return o.is_temporary();
        }
        cur = e.source();
    }
    false
}

/// The innermost message of an error chain, on one line: the log line of a retry.
pub fn short_message(err: &RusticError) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = err;
    let mut last = None;
    while let Some(next) = cur.source() {
        last = Some(next);
        cur = next;
    }
    let text = match last {
        Some(e) => e.to_string(),
        None => err.to_string(),
    };
    redact(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `scheme://user:password@host` → `scheme://user:***@host`, anywhere in `s`: a location or a
/// message may hold a URL with credentials; logs never do.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c == '/' || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A backend whose requests are retried by a [`RetryPolicy`].
#[derive(Debug)]
pub struct RetryBackend {
    inner: Arc<dyn WriteBackend>,
    policy: RetryPolicy,
    /// The location for log lines, credentials redacted.
    name: String,
    /// Retries done so far (for tests and reports).
    retries: AtomicU64,
}

impl RetryBackend {
    pub fn new(inner: Arc<dyn WriteBackend>, policy: RetryPolicy) -> Self {
        let name = redact(&inner.location());
        RetryBackend { inner, policy, name, retries: AtomicU64::new(0) }
    }

    /// How many retries this backend made.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn run<T>(&self, what: &dyn Fn() -> String, mut op: impl FnMut() -> RusticResult<T>) -> RusticResult<T> {
        let start = Instant::now();
        let mut retry = 0u32;
        loop {
            let err = match op() {
                Ok(v) => {
                    if retry > 0 {
                        tracing::info!(repository = %self.name, "{} succeeded after {retry} retries", what());
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            if !is_transient(&err) {
                return Err(err);
            }
            let delay = jitter(self.policy.base_delay(retry));
            let spent = start.elapsed();
            if spent + delay > self.policy.max_time {
                if retry == 0 {
                    return Err(err);
                }
                return Err((*err).append_guidance_line(format!(
                    "gave up after {retry} retries over {}s (backup.retry.max_time: {}s)",
                    spent.as_secs(),
                    self.policy.max_time.as_secs()
                )));
            }
            retry += 1;
            self.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                repository = %self.name,
                "{} failed ({}); retry {retry} in {:.1}s",
                what(),
                short_message(&err),
                delay.as_secs_f64()
            );
            std::thread::sleep(delay);
        }
    }
}

/// Between half and all of `d`, from a cheap per-process random sequence.
fn jitter(d: Duration) -> Duration {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        ^ u64::from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos(),
        );
    // splitmix64
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let frac = 0.5 + (x >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
    d.mul_f64(frac)
}

fn file(tpe: FileType, id: &Id) -> String {
    match tpe {
        FileType::Config => "config".to_string(),
        _ => format!("{}/{}", tpe.dirname(), id.to_hex().as_str()),
    }
}

impl ReadBackend for RetryBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.run(&|| format!("listing {}", tpe.dirname()), || self.inner.list_with_size(tpe))
    }
    fn list(&self, tpe: FileType) -> RusticResult<Vec<Id>> {
        self.run(&|| format!("listing {}", tpe.dirname()), || self.inner.list(tpe))
    }
    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<bytes::Bytes> {
        self.run(&|| format!("reading {}", file(tpe, id)), || self.inner.read_full(tpe, id))
    }
    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<bytes::Bytes> {
        self.run(&|| format!("reading {} at {offset}+{length}", file(tpe, id)), || {
            self.inner.read_partial(tpe, id, cacheable, offset, length)
        })
    }
    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
    fn needs_warm_up(&self) -> bool {
        self.inner.needs_warm_up()
    }
    fn warm_up(&self, tpe: FileType, id: &Id) -> RusticResult<()> {
        self.run(&|| format!("warming up {}", file(tpe, id)), || self.inner.warm_up(tpe, id))
    }
}

impl WriteBackend for RetryBackend {
    fn create(&self) -> RusticResult<()> {
        self.run(&|| "creating the repository".to_string(), || self.inner.create())
    }
    fn write_bytes(&self, tpe: FileType, id: &Id, cacheable: bool, content: BytesList) -> RusticResult<()> {
        // Every attempt writes the whole file (S3 PUT, SFTP temporary file + rename): a
        // retried write never leaves a partial file under the real name.
        self.run(&|| format!("writing {}", file(tpe, id)), || {
            self.inner.write_bytes(tpe, id, cacheable, content.clone())
        })
    }
    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.run(&|| format!("removing {}", file(tpe, id)), || self.inner.remove(tpe, id, cacheable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::ErrorKind;

    #[test]
    fn delays_double_up_to_the_maximum_and_jitter_stays_within_half() {
        let p = RetryPolicy::new(Duration::from_secs(600));
        let d: Vec<u64> = (0..9).map(|i| p.base_delay(i).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.base_delay(u32::MAX), Duration::from_secs(60));
        for _ in 0..1000 {
            let j = jitter(Duration::from_secs(10));
            assert!(j >= Duration::from_secs(5) && j <= Duration::from_secs(10), "{j:?}");
        }
    }

    #[test]
    fn only_marked_errors_are_transient() {
        let temp = opendal::Error::new(opendal::ErrorKind::Unexpected, "503 Slow Down").set_temporary();
        assert!(is_transient(&RusticError::with_source(ErrorKind::Backend, "writing", temp)));
        let missing = opendal::Error::new(opendal::ErrorKind::NotFound, "404");
        assert!(!is_transient(&RusticError::with_source(ErrorKind::Backend, "reading", missing)));
        let denied = opendal::Error::new(opendal::ErrorKind::PermissionDenied, "403");
        assert!(!is_transient(&RusticError::with_source(ErrorKind::Backend, "reading", denied)));
        let lost = Transient(Box::new(std::io::Error::other("connection lost")));
        assert!(is_transient(&RusticError::with_source(ErrorKind::Backend, "writing", lost)));
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(!is_transient(&RusticError::with_source(ErrorKind::InputOutput, "reading", io)));
        assert!(!is_transient(&RusticError::new(ErrorKind::Credentials, "wrong password")));
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(
            redact("s3:https://AKID:s3cr3t@minio.example:9000/b/p"),
            "s3:https://AKID:***@minio.example:9000/b/p"
        );
        assert_eq!(redact("sftp://backup@host:2222//srv"), "sftp://backup@host:2222//srv");
        assert_eq!(
            redact("GET http://u:p@h/x failed; see http://h2/y"),
            "GET http://u:***@h/x failed; see http://h2/y"
        );
        assert_eq!(redact("no url here"), "no url here");
    }
}
