//! Who may read the status page (and `/metrics` when `status.protect_metrics` is set): HTTP
//! Basic against argon2 password hashes, or a bearer token (`Authorization: Bearer ...`, or
//! `?token=...` for tools that cannot set headers).
//!
//! Verifying an argon2 hash costs tens of milliseconds and ~19 MiB of memory on purpose, so
//! that a stolen hash is slow to crack. That same cost must not let an unauthenticated client
//! exhaust the daemon (issue #16: 50 clients with wrong passwords took it to 9.5 GB). So:
//!
//! - **a verified credential is remembered** for a while, keyed by a keyed hash of the
//!   `Authorization` value (never the value itself), so reloads and the JSON API never run
//!   argon2 again;
//! - **at most [`VERIFY_SLOTS`] verifications run at once**, each in its own preallocated work
//!   memory that is reused (so memory stays at `VERIFY_SLOTS` × the hash's memory cost, not one
//!   allocation per request). A request that cannot get a slot within [`VERIFY_WAIT`], or finds
//!   [`MAX_WAITING`] others already waiting, is answered 503 with `Retry-After`;
//! - **failures are rate-limited per client address** (IPv4 address, IPv6 /64): after
//!   [`FREE_FAILURES`] failures each further one blocks the address for twice as long as the
//!   last (1 s, 2 s, 4 s ... up to [`MAX_BACKOFF`]); a blocked address gets 429 with
//!   `Retry-After` and costs no verification. An address may have at most
//!   [`MAX_IN_FLIGHT_PER_ADDRESS`] verifications running or waiting. A correct token, or a
//!   remembered credential, is let in even from a blocked address.

use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};
use base64::Engine;
use blake2::{Blake2s256, Digest};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a verified `Authorization` value is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
const REMEMBER_MAX: usize = 32;

/// argon2 verifications running at once.
pub const VERIFY_SLOTS: usize = 2;
/// Requests that may wait for a verification slot; more are answered 503 at once.
pub const MAX_WAITING: usize = 16;
/// How long a request waits for a verification slot before it is answered 503.
pub const VERIFY_WAIT: Duration = Duration::from_secs(5);
/// Failures an address may have before it is slowed down.
pub const FREE_FAILURES: u32 = 5;
/// The longest an address is blocked after a failure.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Verifications one address may have running or waiting.
pub const MAX_IN_FLIGHT_PER_ADDRESS: u32 = 2;
/// An address's failures are forgotten this long after its last one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses tracked at most (a few hundred bytes each); the stalest are dropped beyond.
const MAX_TRACKED: usize = 4096;
/// The largest argon2 memory cost verified (KiB): 256 MiB, far above the default 19 MiB.
const MAX_MEMORY_KIB: usize = 256 << 10;

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No or wrong credentials: 401.
    Deny,
    /// This address failed too often (or has too many attempts running): 429, retry after.
    Throttled(Duration),
    /// Every verification slot is taken: 503, retry after a second.
    Busy,
}

/// The credentials the page accepts, and the limits on checking them.
pub struct Auth {
    /// User name → argon2 PHC string.
    users: BTreeMap<String, String>,
    token: Option<String>,
    /// Random per process: remembered credentials are stored as keyed hashes.
    cache_key: [u8; 32],
    verified: Mutex<Vec<([u8; 32], Instant)>>,
    limiter: Mutex<Limiter>,
    /// Held by each running verification until it ends (also if its request is dropped).
    slots: Arc<tokio::sync::Semaphore>,
    waiting: AtomicUsize,
    /// Work memory for argon2, one per slot, reused.
    memory: Mutex<Vec<Vec<Block>>>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth::new(BTreeMap::new(), None)
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Hashes a password for the config (`caretaker status-page hash-password`): argon2id with the
/// crate's default (OWASP) parameters and a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom_fill(&mut bytes)?;
    let salt = SaltString::encode_b64(&bytes).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

fn getrandom_fill(buf: &mut [u8]) -> Result<(), String> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))
}

/// Whether `password` matches the PHC string `hash` (allocates the hash's work memory).
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// Whether `password` matches the PHC string `phc`, computed in `memory` (grown as needed and
/// kept for the next call): the same answer as [`verify_password`] without an allocation of
/// the hash's memory cost per call.
fn verify_in(password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else { return false };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let blocks = params.block_count();
    if blocks > MAX_MEMORY_KIB {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        && constant_time_eq(&out, expected.as_bytes())
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Failures are counted per IPv4 address and per IPv6 /64 (one machine's usual share).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    blocked_until: Option<Instant>,
    last_failure: Instant,
    in_flight: u32,
}

/// Failures and attempts in flight per client address.
#[derive(Default)]
struct Limiter {
    by_address: HashMap<IpAddr, Record>,
}

impl Limiter {
    /// How long `ip` must still wait, if it is blocked.
    fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let r = self.by_address.get(&ip)?;
        r.blocked_until.filter(|until| *until > now).map(|until| until - now)
    }

    /// Starts an attempt for `ip`; `false` when it already has the most it may have.
    fn begin(&mut self, ip: IpAddr, now: Instant) -> bool {
        let r = self.record(ip, now);
        if r.in_flight >= MAX_IN_FLIGHT_PER_ADDRESS {
            return false;
        }
        r.in_flight += 1;
        true
    }

    fn end(&mut self, ip: IpAddr, ok: bool, now: Instant) {
        let Some(r) = self.by_address.get_mut(&ip) else { return };
        r.in_flight = r.in_flight.saturating_sub(1);
        if ok {
            r.failures = 0;
            r.blocked_until = None;
        } else {
            Self::failed(r, now);
        }
        if r.failures == 0 && r.in_flight == 0 {
            self.by_address.remove(&ip);
        }
    }

    /// The record of `ip`, a fresh one when it has none (after making room for it).
    fn record(&mut self, ip: IpAddr, now: Instant) -> &mut Record {
        self.make_room(now);
        self.by_address.entry(ip).or_insert(Record {
            failures: 0,
            blocked_until: None,
            last_failure: now,
            in_flight: 0,
        })
    }

    /// A failure without a verification (a wrong token).
    fn fail(&mut self, ip: IpAddr, now: Instant) {
        let r = self.record(ip, now);
        Self::failed(r, now);
    }

    fn failed(r: &mut Record, now: Instant) {
        if now.duration_since(r.last_failure) > FORGET_AFTER {
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        r.last_failure = now;
        if r.failures >= FREE_FAILURES {
            let doublings = (r.failures - FREE_FAILURES).min(16);
            let backoff = Duration::from_secs(1u64 << doublings).min(MAX_BACKOFF);
            r.blocked_until = Some(now + backoff);
        }
    }

    /// Keeps the table bounded: forgets stale addresses, then the stalest ones.
    fn make_room(&mut self, now: Instant) {
        if self.by_address.len() < MAX_TRACKED {
            return;
        }
        self.by_address.retain(|_, r| r.in_flight > 0 || now.duration_since(r.last_failure) < FORGET_AFTER);
        while self.by_address.len() >= MAX_TRACKED {
            let Some(stalest) = self
                .by_address
                .iter()
                .filter(|(_, r)| r.in_flight == 0)
                .min_by_key(|(_, r)| r.last_failure)
                .map(|(ip, _)| *ip)
            else {
                break;
            };
            self.by_address.remove(&stalest);
        }
    }
}

/// Gives back a place in the waiting queue, also when the request is dropped while waiting.
struct Waiting<'a>(&'a AtomicUsize);
impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Ends an address's attempt when the request is dropped half-way (client gone): counted as a
/// failure, so hanging up early does not dodge the backoff.
struct Attempt<'a> {
    auth: &'a Auth,
    ip: IpAddr,
    done: bool,
}
impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut l = self.auth.limiter.lock().unwrap_or_else(|p| p.into_inner());
            l.end(self.ip, false, Instant::now());
        }
    }
}

impl Auth {
    pub fn new(users: BTreeMap<String, String>, token: Option<String>) -> Auth {
        let token = token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        let mut cache_key = [0u8; 32];
        if getrandom_fill(&mut cache_key).is_err() {
            // Still a hash, not the credential; only less resistant to guessing from a dump.
            cache_key = [0x5a; 32];
        }
        Auth {
            users,
            token,
            cache_key,
            verified: Mutex::new(Vec::new()),
            limiter: Mutex::new(Limiter::default()),
            slots: Arc::new(tokio::sync::Semaphore::new(VERIFY_SLOTS)),
            waiting: AtomicUsize::new(0),
            memory: Mutex::new(Vec::new()),
        }
    }

    /// Nobody can get in (no users, no token): every request is refused.
    pub fn is_closed(&self) -> bool {
        self.users.is_empty() && self.token.is_none()
    }

    /// Whether a request from `peer` with this `Authorization` header value and `token` query
    /// parameter may read the page. Cheap checks (token, remembered credentials, the address's
    /// block) run inline; an argon2 verification runs on the blocking pool within the limits
    /// above.
    pub async fn check(
        self: &Arc<Self>,
        authorization: Option<&str>,
        query_token: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Decision {
        let ip = address_key(peer.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)));
        let header = authorization.map(str::trim);
        let bearer = header.and_then(|h| strip_scheme(h, "Bearer")).map(str::trim);
        let basic = header.and_then(|h| strip_scheme(h, "Basic"));
        if let Some(want) = &self.token {
            if [query_token, bearer].into_iter().flatten().any(|got| constant_time_eq(want.as_bytes(), got.as_bytes()))
            {
                return Decision::Allow;
            }
        }
        let digest = header.map(|h| self.digest(h));
        if basic.is_some() && digest.is_some_and(|d| self.remembered(&d)) {
            return Decision::Allow;
        }
        if query_token.is_none() && bearer.is_none() && basic.is_none() {
            // No credentials at all: a browser's first request, before it asks for them.
            return Decision::Deny;
        }
        let now = Instant::now();
        if let Some(wait) = self.limiter().blocked(ip, now) {
            return Decision::Throttled(wait);
        }
        let Some((user, password)) = basic.and_then(decode_basic) else {
            // A wrong token, or a malformed Basic value: a failure that costs nothing to check.
            self.limiter().fail(ip, now);
            return Decision::Deny;
        };
        if !self.limiter().begin(ip, now) {
            return Decision::Throttled(Duration::from_secs(1));
        }
        let mut attempt = Attempt { auth: self, ip, done: false };
        let ok = match self.verify_limited(user, password).await {
            Some(ok) => ok,
            None => return Decision::Busy,
        };
        attempt.done = true;
        self.limiter().end(ip, ok, Instant::now());
        if ok {
            if let Some(d) = digest {
                self.remember(d);
            }
            Decision::Allow
        } else {
            Decision::Deny
        }
    }

    /// Runs one verification within the slots; `None` when none came free in time.
    async fn verify_limited(self: &Arc<Self>, user: String, password: String) -> Option<bool> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let waiting = Waiting(&self.waiting);
        let permit = tokio::time::timeout(VERIFY_WAIT, self.slots.clone().acquire_owned()).await.ok()?.ok()?;
        drop(waiting);
        let this = self.clone();
        // The permit moves into the verification: a request dropped while it runs (the client
        // hung up) does not free its slot before the work and its memory are done.
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut memory = this.memory.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
            let ok = match this.users.get(&user) {
                Some(hash) => verify_in(&password, hash, &mut memory),
                None => {
                    // Same cost for unknown users, so timing does not tell which names exist.
                    let _ = verify_in(&password, DUMMY_HASH, &mut memory);
                    false
                }
            };
            this.memory.lock().unwrap_or_else(|p| p.into_inner()).push(memory);
            ok
        })
        .await
        .unwrap_or(false);
        Some(ok)
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn digest(&self, header: &str) -> [u8; 32] {
        let mut h = Blake2s256::new();
        h.update(self.cache_key);
        h.update(header.as_bytes());
        h.finalize().into()
    }

    fn remembered(&self, digest: &[u8; 32]) -> bool {
        let mut v = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        v.retain(|(_, at)| now.duration_since(*at) < REMEMBER);
        v.iter().any(|(d, _)| constant_time_eq(d, digest))
    }

    fn remember(&self, digest: [u8; 32]) {
        let mut v = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() >= REMEMBER_MAX {
            v.remove(0);
        }
        v.push((digest, Instant::now()));
    }
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let pair = String::from_utf8(raw).ok()?;
    let (user, password) = pair.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = header.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// A valid hash of a random password, verified for unknown user names.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$ZHVtbXlkdW1teWR1bW15$O3c9Bg2ZR7oOHJoQ7Zlu8m8U3n8zP4kBXbuYz4ByJoY";

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
    }

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));

    #[test]
    fn hash_then_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salts differ");
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        // The reusing verifier agrees, and keeps its memory.
        let mut mem = Vec::new();
        assert!(verify_in("correct horse", &h, &mut mem));
        assert!(!verify_in("wrong", &h, &mut mem));
        assert!(!verify_in("correct horse", "not a hash", &mut mem));
        assert_eq!(mem.len(), 19456);
    }

    #[tokio::test]
    async fn basic_and_token_auth() {
        let h = hash_password("pw").unwrap();
        let auth = Arc::new(Auth::new([("admin".to_string(), h)].into(), Some("tok123\n".into())));
        assert!(!auth.is_closed());
        let check = |a: Option<String>, q: Option<&'static str>| {
            let auth = auth.clone();
            async move { auth.check(a.as_deref(), q, HOME).await }
        };
        assert_eq!(check(Some(basic("admin", "pw")), None).await, Decision::Allow);
        assert_eq!(check(Some(basic("admin", "pw")), None).await, Decision::Allow, "remembered");
        assert_eq!(check(Some(basic("admin", "px")), None).await, Decision::Deny);
        assert_eq!(check(Some(basic("nobody", "pw")), None).await, Decision::Deny);
        assert_eq!(check(Some("Basic !!!".into()), None).await, Decision::Deny);
        assert_eq!(check(None, None).await, Decision::Deny);
        assert_eq!(check(Some("Bearer tok123".into()), None).await, Decision::Allow);
        assert_eq!(check(Some("bearer  tok123".into()), None).await, Decision::Allow);
        assert_eq!(check(None, Some("tok123")).await, Decision::Allow);
        assert_eq!(check(None, Some("")).await, Decision::Deny);
        let closed = Arc::new(Auth::new(BTreeMap::new(), Some("  ".into())));
        assert!(closed.is_closed());
        assert_eq!(closed.check(Some("Bearer "), Some(""), HOME).await, Decision::Deny);
    }

    #[tokio::test]
    async fn failures_block_an_address_with_growing_backoff_but_not_others() {
        let h = hash_password("pw").unwrap();
        let auth = Arc::new(Auth::new([("admin".to_string(), h)].into(), Some("tok-0123".into())));
        let attacker_ip: IpAddr = "192.0.2.7".parse().unwrap();
        let attacker = Some(attacker_ip);
        for _ in 0..FREE_FAILURES {
            assert_eq!(auth.check(Some(&basic("admin", "guess")), None, attacker).await, Decision::Deny);
        }
        let Decision::Throttled(wait) = auth.check(Some(&basic("admin", "guess")), None, attacker).await else {
            panic!("the attacker is blocked after {FREE_FAILURES} failures")
        };
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // Blocked, even with the right password: no verification runs for a blocked address...
        assert!(matches!(auth.check(Some(&basic("admin", "pw")), None, attacker).await, Decision::Throttled(_)));
        // ...but the token works, and another address logs in at once.
        assert_eq!(auth.check(Some("Bearer tok-0123"), None, attacker).await, Decision::Allow);
        assert_eq!(auth.check(Some(&basic("admin", "pw")), None, HOME).await, Decision::Allow);
        // The same IPv6 /64 counts as one address.
        assert_eq!(address_key("2001:db8::1".parse().unwrap()), address_key("2001:db8::ffff:2".parse().unwrap()));
        assert_eq!(address_key("::ffff:192.0.2.7".parse().unwrap()), attacker_ip);
        // The backoff doubles.
        let mut l = Limiter::default();
        let ip: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES + 3 {
            l.fail(ip, t0);
        }
        assert_eq!(l.blocked(ip, t0), Some(Duration::from_secs(8)));
        for _ in 0..20 {
            l.fail(ip, t0);
        }
        assert_eq!(l.blocked(ip, t0), Some(MAX_BACKOFF));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_request_keeps_its_slot_until_the_verification_ends() {
        let h = hash_password("pw").unwrap();
        let auth = Arc::new(Auth::new([("admin".to_string(), h)].into(), None));
        // Start many verifications from many addresses and drop each request at once, as a
        // client that hangs up would: never more than VERIFY_SLOTS work memories exist.
        for i in 0..40u8 {
            let a = auth.clone();
            let peer = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 2, 0, i)));
            let t = tokio::spawn(async move { a.check(Some(&basic("admin", "wrong")), None, peer).await });
            tokio::time::sleep(Duration::from_millis(2)).await;
            t.abort();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while auth.slots.available_permits() < VERIFY_SLOTS && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(auth.memory.lock().unwrap().len() <= VERIFY_SLOTS);
        // Hanging up counted as a failure: the address of a dropped attempt is on its way to
        // a block like any other.
        assert!(auth.limiter().by_address.values().all(|r| r.in_flight == 0));
    }

    #[tokio::test]
    async fn verifications_are_bounded() {
        let h = hash_password("pw").unwrap();
        let auth = Arc::new(Auth::new([("admin".to_string(), h)].into(), None));
        // Many addresses at once: never more than VERIFY_SLOTS work memories, and whoever
        // cannot wait is told to come back.
        let mut tasks = Vec::new();
        for i in 0..(MAX_WAITING + VERIFY_SLOTS + 8) {
            let auth = auth.clone();
            let peer = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, (i / 200) as u8, (i % 200) as u8)));
            tasks.push(tokio::spawn(async move { auth.check(Some(&basic("admin", "wrong")), None, peer).await }));
        }
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Decision::Busy => busy += 1,
                Decision::Deny => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(busy >= 1, "some requests found every slot and the queue taken");
        assert!(auth.memory.lock().unwrap().len() <= VERIFY_SLOTS);
        assert_eq!(auth.waiting.load(Ordering::SeqCst), 0);
    }
}
