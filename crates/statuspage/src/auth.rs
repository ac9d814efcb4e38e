//! Who may read the status page: HTTP Basic against argon2 password hashes, or a bearer token
//! (`Authorization: Bearer ...`, or `?token=...` for tools that cannot set headers).
//!
//! Verifying an argon2 hash costs tens of milliseconds on purpose; a page load verifies once
//! per distinct `Authorization` value and remembers the result for a while (in memory only),
//! so reloads and the JSON API stay cheap.

use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHasher};
use base64::Engine;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a verified `Authorization` value is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
const REMEMBER_MAX: usize = 32;

/// The credentials the page accepts.
#[derive(Default)]
pub struct Auth {
    /// User name → argon2 PHC string.
    users: BTreeMap<String, String>,
    token: Option<String>,
    verified: Mutex<Vec<(String, Instant)>>,
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

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(users: BTreeMap<String, String>, token: Option<String>) -> Auth {
        let token = token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        Auth { users, token, verified: Mutex::new(Vec::new()) }
    }

    /// Nobody can get in (no users, no token): every request is refused.
    pub fn is_closed(&self) -> bool {
        self.users.is_empty() && self.token.is_none()
    }

    /// Whether a request with this `Authorization` header value and `token` query parameter
    /// may read the page.
    pub fn allows(&self, authorization: Option<&str>, query_token: Option<&str>) -> bool {
        if let (Some(want), Some(got)) = (&self.token, query_token) {
            if constant_time_eq(want.as_bytes(), got.as_bytes()) {
                return true;
            }
        }
        let Some(header) = authorization else { return false };
        let header = header.trim();
        if let Some(got) = strip_scheme(header, "Bearer") {
            return self.token.as_ref().is_some_and(|want| constant_time_eq(want.as_bytes(), got.trim().as_bytes()));
        }
        let Some(b64) = strip_scheme(header, "Basic") else { return false };
        if self.remembered(header) {
            return true;
        }
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else { return false };
        let Ok(pair) = String::from_utf8(raw) else { return false };
        let Some((user, password)) = pair.split_once(':') else { return false };
        let ok = match self.users.get(user) {
            Some(hash) => verify_password(password, hash),
            None => {
                // Same cost for unknown users, so timing does not tell which names exist.
                let _ = verify_password(password, DUMMY_HASH);
                false
            }
        };
        if ok {
            self.remember(header);
        }
        ok
    }

    fn remembered(&self, header: &str) -> bool {
        let mut v = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        v.retain(|(_, at)| now.duration_since(*at) < REMEMBER);
        v.iter().any(|(h, _)| constant_time_eq(h.as_bytes(), header.as_bytes()))
    }

    fn remember(&self, header: &str) {
        let mut v = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() >= REMEMBER_MAX {
            v.remove(0);
        }
        v.push((header.to_string(), Instant::now()));
    }
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

    #[test]
    fn hash_then_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salts differ");
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn basic_and_token_auth() {
        let h = hash_password("pw").unwrap();
        let auth = Auth::new([("admin".to_string(), h)].into(), Some("tok123\n".into()));
        assert!(!auth.is_closed());
        assert!(auth.allows(Some(&basic("admin", "pw")), None));
        assert!(auth.allows(Some(&basic("admin", "pw")), None), "remembered");
        assert!(!auth.allows(Some(&basic("admin", "px")), None));
        assert!(!auth.allows(Some(&basic("nobody", "pw")), None));
        assert!(!auth.allows(Some("Basic !!!"), None));
        assert!(!auth.allows(None, None));
        assert!(auth.allows(Some("Bearer tok123"), None));
        assert!(auth.allows(Some("bearer  tok123"), None));
        assert!(!auth.allows(Some("Bearer tok12"), None));
        assert!(auth.allows(None, Some("tok123")));
        assert!(!auth.allows(None, Some("")));
        let closed = Auth::new(BTreeMap::new(), Some("  ".into()));
        assert!(closed.is_closed());
        assert!(!closed.allows(Some("Bearer "), Some("")));
    }
}
