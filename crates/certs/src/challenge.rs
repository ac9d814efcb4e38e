//! Answering the CA's challenges: HTTP-01 through the front door's token map, TLS-ALPN-01
//! through the front door's certificate resolver, or files in a webroot that another web
//! server (nginx) serves.

use crate::Error;
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The path prefix of HTTP-01 answers.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Where HTTP-01 answers go: the front door serves `GET /.well-known/acme-challenge/<token>`
/// with the key authorization as `text/plain`.
pub trait Http01Responder: Send + Sync {
    fn put(&self, token: &str, key_authorization: &str);
    fn remove(&self, token: &str);
}

/// Where TLS-ALPN-01 answers go: the front door answers a handshake offering the
/// `acme-tls/1` protocol for `name` with this certificate (RFC 8737).
pub trait AlpnResponder: Send + Sync {
    fn set(&self, name: &str, key: Arc<rustls::sign::CertifiedKey>);
    fn clear(&self, name: &str);
}

/// A token map: the simplest HTTP-01 responder (what the front door holds; tests serve it).
#[derive(Clone, Debug, Default)]
pub struct TokenMap(Arc<RwLock<HashMap<String, String>>>);

impl TokenMap {
    /// The answer for a request path, if it is a challenge path with a known token.
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        self.0.read().ok()?.get(token).cloned()
    }
    pub fn len(&self) -> usize {
        self.0.read().map(|m| m.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Http01Responder for TokenMap {
    fn put(&self, token: &str, key_authorization: &str) {
        if let Ok(mut m) = self.0.write() {
            m.insert(token.to_string(), key_authorization.to_string());
        }
    }
    fn remove(&self, token: &str) {
        if let Ok(mut m) = self.0.write() {
            m.remove(token);
        }
    }
}

/// How challenges are answered.
#[derive(Clone)]
pub enum Solver {
    Http01(Arc<dyn Http01Responder>),
    TlsAlpn01(Arc<dyn AlpnResponder>),
    /// Files under `<dir>/.well-known/acme-challenge/`.
    Webroot(PathBuf),
}

impl std::fmt::Debug for Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind_name())
    }
}

/// One answer in place, to be taken down after validation.
#[derive(Debug)]
pub(crate) enum Presented {
    Http01(String),
    Alpn(String),
    File(PathBuf),
}

impl Solver {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Solver::Http01(_) => "http-01",
            Solver::TlsAlpn01(_) => "tls-alpn-01",
            Solver::Webroot(_) => "http-01 (webroot)",
        }
    }

    pub(crate) fn challenge_type(&self) -> instant_acme::ChallengeType {
        match self {
            Solver::Http01(_) | Solver::Webroot(_) => instant_acme::ChallengeType::Http01,
            Solver::TlsAlpn01(_) => instant_acme::ChallengeType::TlsAlpn01,
        }
    }

    /// Puts the answer in place.
    pub(crate) fn present(
        &self,
        name: &str,
        token: &str,
        key_auth: &instant_acme::KeyAuthorization,
    ) -> Result<Presented, Error> {
        match self {
            Solver::Http01(r) => {
                r.put(token, key_auth.as_str());
                Ok(Presented::Http01(token.to_string()))
            }
            Solver::TlsAlpn01(r) => {
                r.set(name, alpn_certificate(name, key_auth.digest().as_ref())?);
                Ok(Presented::Alpn(name.to_string()))
            }
            Solver::Webroot(dir) => {
                let path = write_webroot(dir, token, key_auth.as_str())?;
                Ok(Presented::File(path))
            }
        }
    }

    /// Takes an answer down.
    pub(crate) fn remove(&self, p: &Presented) {
        match (self, p) {
            (Solver::Http01(r), Presented::Http01(t)) => r.remove(t),
            (Solver::TlsAlpn01(r), Presented::Alpn(n)) => r.clear(n),
            (_, Presented::File(path)) => {
                let _ = fs::remove_file(path);
            }
            _ => {}
        }
    }
}

/// Writes a webroot answer: `<dir>/.well-known/acme-challenge/<token>`, world-readable (the
/// web server runs as another user; the key authorization is public by design).
pub fn write_webroot(dir: &Path, token: &str, key_authorization: &str) -> Result<PathBuf, Error> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Error::Acme(format!("the CA sent a challenge token that is not base64url: {token:?}")));
    }
    let d = dir.join(".well-known").join("acme-challenge");
    fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    for p in [dir.join(".well-known"), d.clone()] {
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o755));
    }
    let path = d.join(token);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    f.write_all(key_authorization.as_bytes()).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// The TLS-ALPN-01 certificate for `name`: self-signed, the name as its only SAN, the
/// critical `acmeIdentifier` extension holding the SHA-256 of the key authorization.
pub fn alpn_certificate(name: &str, digest: &[u8]) -> Result<Arc<rustls::sign::CertifiedKey>, Error> {
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Cert(format!("key generation: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
        .map_err(|e| Error::Cert(format!("certificate name: {e}")))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| Error::Cert(format!("challenge certificate: {e}")))?;
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki, which
    // refuses the critical acmeIdentifier extension. The key is the one just made for it.
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| Error::Cert(format!("challenge key: {e}")))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_map_answers_only_challenge_paths() {
        let m = TokenMap::default();
        m.put("abc", "abc.thumb");
        assert_eq!(m.answer("/.well-known/acme-challenge/abc").as_deref(), Some("abc.thumb"));
        assert_eq!(m.answer("/abc"), None);
        assert_eq!(m.answer("/.well-known/acme-challenge/other"), None);
        m.remove("abc");
        assert!(m.is_empty());
    }

    #[test]
    fn webroot_files_are_readable_and_tokens_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = write_webroot(d.path(), "tok_en-1", "tok_en-1.x").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "tok_en-1.x");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        assert!(write_webroot(d.path(), "../evil", "x").is_err());
        assert!(write_webroot(d.path(), "", "x").is_err());
    }

    #[test]
    fn alpn_certificate_carries_the_identifier() {
        let ck = alpn_certificate("a.example", &[7u8; 32]).unwrap();
        let der = ck.cert[0].as_ref();
        // OID 1.3.6.1.5.5.7.1.31 (id-pe-acmeIdentifier) and the digest as an OCTET STRING.
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        assert!(der.windows(oid.len()).any(|w| w == oid));
        let mut octets = vec![0x04, 0x20];
        octets.extend([7u8; 32]);
        assert!(der.windows(octets.len()).any(|w| w == octets));
    }
}
