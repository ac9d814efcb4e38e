//! The daemon's certificate renewal task (docs/certificates.md): with `tls.acme` in the config,
//! one task per config (restarted on reload, which never orders anew while the stored
//! certificate is valid) runs `caretaker_certs::manager::run`, answering challenges through the
//! front door's token map (HTTP-01) or certificate slot (TLS-ALPN-01), or a webroot, and
//! putting each new certificate into the front door's slot.

use caretaker_certs::CertifiedKey;
use caretaker_certs::{AlpnResponder, Http01Responder, Install, Manager, Settings, Solver};
use caretaker_core::config::{Challenge, Config, Redactor};
use caretaker_frontdoor::tls::{CertSlot, Http01Tokens, TlsState};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

struct Slot(Arc<CertSlot>);

impl Install for Slot {
    fn install(&self, key: Arc<CertifiedKey>) {
        self.0.set_certificate(key);
    }
    fn install_self_signed(&self, key: Arc<CertifiedKey>) {
        self.0.set_self_signed(key);
    }
}

impl AlpnResponder for Slot {
    fn set(&self, name: &str, key: Arc<CertifiedKey>) {
        self.0.set_alpn_challenge(name, key);
    }
    fn clear(&self, name: &str) {
        self.0.clear_alpn_challenge(name);
    }
}

struct Tokens(Http01Tokens);

impl Http01Responder for Tokens {
    fn put(&self, token: &str, key_authorization: &str) {
        self.0.set(token, key_authorization);
    }
    fn remove(&self, token: &str) {
        self.0.remove(token);
    }
}

/// Where nothing serves the certificate (webroot mode: nginx reads the files).
struct Nowhere;

impl Install for Nowhere {
    fn install(&self, _key: Arc<CertifiedKey>) {}
}

/// The manager for `config`, or `None` without `tls.acme`. `tls`: the front door's slot and
/// tokens, when the front door terminates TLS.
pub fn manager(
    config: &Config,
    state_dir: &Path,
    redactor: Redactor,
    tls: Option<TlsState>,
) -> anyhow::Result<Option<Manager>> {
    let Some(t) = &config.tls else { return Ok(None) };
    let Some(settings) = Settings::from_config(t) else { return Ok(None) };
    let acme = t.acme.as_ref().expect("from_config checked it");
    let install: Arc<dyn Install> = match &tls {
        Some(s) => Arc::new(Slot(s.slot.clone())),
        None => Arc::new(Nowhere),
    };
    let solver = match (acme.challenge, &tls, &acme.webroot) {
        (Challenge::Webroot, _, Some(dir)) => Solver::Webroot(dir.clone()),
        (Challenge::Http01, Some(s), _) => Solver::Http01(Arc::new(Tokens(s.tokens.clone()))),
        (Challenge::TlsAlpn01, Some(s), _) => Solver::TlsAlpn01(Arc::new(Slot(s.slot.clone()))),
        _ => anyhow::bail!(
            "tls.acme: the {:?} challenge needs the front door's TLS (front_door and tls.listen)",
            acme.challenge
        ),
    };
    Ok(Some(Manager::new(state_dir, settings, solver, install, redactor)?))
}

/// Starts the renewal task for `config` until `shutdown` (one call from the daemon's start-up
/// and reload). Problems are logged: the front door keeps its self-signed certificate.
pub fn spawn(
    config: &Config,
    state_dir: &Path,
    redactor: Redactor,
    tls: Option<TlsState>,
    shutdown: watch::Receiver<bool>,
) {
    match manager(config, state_dir, redactor, tls) {
        Ok(Some(m)) => {
            tracing::info!(
                "certificate renewal for {} (ACME)",
                config.tls.as_ref().map(|t| t.names.join(", ")).unwrap_or_default()
            );
            tokio::spawn(caretaker_certs::manager::run(m, shutdown));
        }
        Ok(None) => {}
        Err(e) => tracing::error!("certificate renewal not started: {e:#}"),
    }
}
