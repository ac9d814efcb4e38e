//! TLS on the front door: the certificate slot, ACME challenge answers, the self-signed
//! fallback.
//!
//! # The certificate slot
//!
//! [`CertSlot`] is the front door's rustls certificate resolver. It holds the certificate it
//! serves in an [`ArcSwap`]: [`CertSlot::set_certificate`] replaces it in memory, every
//! handshake that starts afterwards gets the new one, and connections already open keep the
//! session they negotiated. There is no reload hook, no listener restart, no file watch: the
//! code that obtains a certificate hands it over and that is all (the failure behind
//! certbot#9840 and dehydrated#409 — a renewed certificate on disk, the old one served —
//! cannot happen).
//!
//! At start the daemon fills the slot with the operator's certificate (`tls.certificate`) or,
//! when there is none or it cannot be loaded, with [`self_signed`] for `tls.names`, so HTTPS
//! answers from the first second; the certificate manager swaps the real one in once it has it.
//!
//! # ACME challenges (for `crates/certs`)
//!
//! - **HTTP-01**: [`Http01Tokens`] maps a token to its key authorization. The front door
//!   answers `GET /.well-known/acme-challenge/<token>` with it on both ports, before the
//!   maintenance check and before the HTTP→HTTPS redirect. Unknown tokens go to the app as any
//!   other request (so an app that answers its own challenges keeps working).
//!   ```ignore
//!   tokens.set(&challenge.token, key_authorization.as_str());
//!   // ... tell the CA the challenge is ready, wait for it ...
//!   tokens.remove(&challenge.token);
//!   ```
//! - **TLS-ALPN-01** (RFC 8737): a handshake that offers only the `acme-tls/1` protocol gets the
//!   challenge certificate set for its SNI name, and the connection is closed after the
//!   handshake. No challenge set for the name: the handshake fails.
//!   ```ignore
//!   let cert = frontdoor::tls::alpn_challenge_certificate(name, &sha256(key_authorization))?;
//!   slot.set_alpn_challenge(name, cert);
//!   // ... validation ...
//!   slot.clear_alpn_challenge(name);
//!   ```
//! - **The issued certificate**: `slot.set_certificate(certified_key_from_pem(chain_pem,
//!   key_pem)?)`.
//!
//! The slot and the tokens outlive config reloads (the daemon keeps them in [`TlsState`]);
//! whoever renews certificates holds clones of the same `Arc`s.

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// Where HTTP-01 challenge answers live (RFC 8555 §8.3).
pub const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// What went wrong loading or making a certificate.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate the front door serves, swappable while it serves.
pub struct CertSlot {
    current: ArcSwap<CertifiedKey>,
    self_signed: std::sync::atomic::AtomicBool,
    /// Challenge certificates for TLS-ALPN-01, by name; rarely set, read only by handshakes
    /// that offer `acme-tls/1`.
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    swaps: AtomicU64,
}

impl std::fmt::Debug for CertSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertSlot")
            .field("self_signed", &self.is_self_signed())
            .field("swaps", &self.swaps())
            .finish_non_exhaustive()
    }
}

impl CertSlot {
    /// A slot serving `initial`; `self_signed` says whether that is the fallback.
    pub fn new(initial: Arc<CertifiedKey>, self_signed: bool) -> Arc<Self> {
        Arc::new(CertSlot {
            current: ArcSwap::new(initial),
            self_signed: self_signed.into(),
            alpn: RwLock::new(HashMap::new()),
            swaps: AtomicU64::new(0),
        })
    }

    /// Serves `key` from the next handshake on. Open connections are untouched.
    pub fn set_certificate(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
        self.self_signed.store(false, Ordering::Release);
        self.swaps.fetch_add(1, Ordering::Relaxed);
    }

    /// Goes back to a self-signed certificate (e.g. the served one expired and nothing
    /// replaced it).
    pub fn set_self_signed(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
        self.self_signed.store(true, Ordering::Release);
        self.swaps.fetch_add(1, Ordering::Relaxed);
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Whether the slot serves the self-signed fallback.
    pub fn is_self_signed(&self) -> bool {
        self.self_signed.load(Ordering::Acquire)
    }

    /// How many times a certificate was swapped in since start.
    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    /// Answers TLS-ALPN-01 handshakes for `name` with `key` (see
    /// [`alpn_challenge_certificate`]) until [`CertSlot::clear_alpn_challenge`].
    pub fn set_alpn_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        self.alpn.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_ascii_lowercase(), key);
    }

    pub fn clear_alpn_challenge(&self, name: &str) {
        self.alpn.write().unwrap_or_else(|e| e.into_inner()).remove(&name.to_ascii_lowercase());
    }

    /// The rustls server config of the front door's TLS listener: this slot as resolver,
    /// HTTP/1.1, and `acme-tls/1` for TLS-ALPN-01.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        Arc::new(cfg)
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737 §3: the CA offers `acme-tls/1` as its only protocol.
        let acme = hello.alpn().is_some_and(|mut protocols| protocols.all(|p| p == ACME_TLS_ALPN))
            && hello.alpn().is_some_and(|mut p| p.next().is_some());
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.alpn.read().unwrap_or_else(|e| e.into_inner()).get(&name).cloned();
        }
        Some(self.current.load_full())
    }
}

/// HTTP-01 answers: token → key authorization. Cheap to clone (one shared map).
#[derive(Clone, Debug, Default)]
pub struct Http01Tokens(Arc<Mutex<HashMap<String, String>>>);

impl Http01Tokens {
    pub fn set(&self, token: &str, key_authorization: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(token.to_string(), key_authorization.to_string());
    }

    pub fn remove(&self, token: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(token);
    }

    /// The key authorization for a request path, if it is a known challenge.
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(ACME_CHALLENGE_PATH)?;
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }
}

/// What the daemon keeps for the front door's TLS across config reloads.
#[derive(Clone, Debug)]
pub struct TlsState {
    pub slot: Arc<CertSlot>,
    pub tokens: Http01Tokens,
}

/// A chain (leaf first) and its private key, from PEM text; the key must match the leaf.
pub fn certified_key_from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("the certificate is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError("no certificate (-----BEGIN CERTIFICATE-----) found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError(format!("no private key found (PKCS#8, PKCS#1 or SEC1 PEM): {e}")))?;
    let ck = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| TlsError(format!("the private key does not fit the certificate: {e}")))?;
    Ok(Arc::new(ck))
}

/// Reads `tls.certificate`'s files.
pub fn certified_key_from_files(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| TlsError(format!("cannot read {}: {e}", p.display())));
    let (chain, key) = (read(cert_file)?, read(key_file)?);
    certified_key_from_pem(&chain, &key)
        .map_err(|e| TlsError(format!("{} / {}: {e}", cert_file.display(), key_file.display())))
}

fn to_certified_key(cert: rcgen::Certificate, key: &rcgen::KeyPair) -> Result<Arc<CertifiedKey>, TlsError> {
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    CertifiedKey::from_der(vec![cert.der().clone()], der, &provider())
        .map(Arc::new)
        .map_err(|e| TlsError(format!("generated key not usable: {e}")))
}

/// A self-signed certificate for `names` (DNS names or IP addresses), valid from a day ago for
/// 90 days: the fallback while there is no real one. ECDSA P-256, made in about a millisecond.
pub fn self_signed(names: &[String]) -> Result<Arc<CertifiedKey>, TlsError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| TlsError(format!("cannot make a certificate for {names:?}: {e}")))?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(90);
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, names.first().map(String::as_str).unwrap_or("caretaker"));
    dn.push(rcgen::DnType::OrganizationName, "caretaker self-signed");
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError(format!("cannot make a key: {e}")))?;
    let cert = params.self_signed(&key).map_err(|e| TlsError(format!("cannot sign: {e}")))?;
    to_certified_key(cert, &key)
}

/// The TLS-ALPN-01 challenge certificate for `name` (RFC 8737 §3): self-signed, the name as
/// its only SAN, and the critical `acmeIdentifier` extension holding `key_auth_sha256`, the
/// SHA-256 digest of the key authorization.
pub fn alpn_challenge_certificate(name: &str, key_auth_sha256: &[u8; 32]) -> Result<Arc<CertifiedKey>, TlsError> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
        .map_err(|e| TlsError(format!("cannot make a challenge certificate for {name}: {e}")))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(key_auth_sha256)];
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError(format!("cannot make a key: {e}")))?;
    let cert = params.self_signed(&key).map_err(|e| TlsError(format!("cannot sign: {e}")))?;
    // Not through `CertifiedKey::from_der`: its consistency check parses the certificate with
    // webpki, which refuses the critical acmeIdentifier extension it does not know. The key
    // is the one just made for this certificate.
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError(format!("generated key not usable: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)))
}

/// The slot's first certificate: the operator's files when given and loadable, otherwise
/// self-signed for `names` (with the reason logged).
pub fn initial_slot(names: &[String], files: Option<(&Path, &Path)>) -> Result<Arc<CertSlot>, TlsError> {
    if let Some((cert, key)) = files {
        match certified_key_from_files(cert, key) {
            Ok(k) => return Ok(CertSlot::new(k, false)),
            Err(e) => tracing::error!("front door: {e}; serving a self-signed certificate instead"),
        }
    }
    Ok(CertSlot::new(self_signed(names)?, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_fits_its_key_and_names() {
        let names = vec!["example.org".to_string(), "www.example.org".to_string(), "127.0.0.1".to_string()];
        let k = self_signed(&names).unwrap();
        k.keys_match().unwrap();
        // The names themselves are checked by a verifying client in tests/tls.rs.
    }

    #[test]
    fn pem_round_trip_and_mismatched_key() {
        let a = rcgen::generate_simple_self_signed(vec!["a.example".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example".to_string()]).unwrap();
        let ok = certified_key_from_pem(a.cert.pem().as_bytes(), a.signing_key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(ok.cert[0].as_ref(), a.cert.der().as_ref());
        let e = certified_key_from_pem(a.cert.pem().as_bytes(), b.signing_key.serialize_pem().as_bytes()).unwrap_err();
        assert!(e.0.contains("does not fit"), "{e}");
        let e = certified_key_from_pem(b"", a.signing_key.serialize_pem().as_bytes()).unwrap_err();
        assert!(e.0.contains("no certificate"), "{e}");
        let e = certified_key_from_pem(a.cert.pem().as_bytes(), b"junk").unwrap_err();
        assert!(e.0.contains("no private key"), "{e}");
    }

    #[test]
    fn tokens_answer_only_their_path() {
        let t = Http01Tokens::default();
        t.set("abc", "abc.thumb");
        assert_eq!(t.answer("/.well-known/acme-challenge/abc").as_deref(), Some("abc.thumb"));
        assert_eq!(t.answer("/.well-known/acme-challenge/abd"), None);
        assert_eq!(t.answer("/abc"), None);
        t.remove("abc");
        assert_eq!(t.answer("/.well-known/acme-challenge/abc"), None);
    }
}
