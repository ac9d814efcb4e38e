//! The daemon's side of the front door's TLS (`tls:` in the config, docs/tls.md): one
//! certificate slot and one HTTP-01 token map for the daemon's whole life, the TLS listener
//! (kept across reloads while its address stays), and the operator's certificate files,
//! re-read when they change on disk.
//!
//! The slot is never replaced, only its certificate: whoever renews certificates holds the
//! [`TlsState`] from [`DaemonTls::state`] and calls `slot.set_certificate(...)`; a reload with
//! other names or files puts a new certificate into the same slot.

use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_core::config::{Config, Tls};
use caretaker_frontdoor::tls::{self, CertSlot, Http01Tokens, TlsState};
use caretaker_frontdoor::TlsSite;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How often the operator's certificate files are checked for a change.
const FILE_POLL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct DaemonTls {
    state: OnceLock<TlsState>,
    /// The TLS listener and its address, to hand on to the next config's front door.
    listener: Mutex<Option<(String, std::net::TcpListener)>>,
    /// What the slot's certificate was made from: names, and the files with their mtimes.
    source: Arc<Mutex<Option<Source>>>,
}

#[derive(Clone, PartialEq, Eq)]
struct Source {
    names: Vec<String>,
    files: Option<(PathBuf, PathBuf, Option<SystemTime>)>,
}

fn modified(files: &(PathBuf, PathBuf)) -> Option<SystemTime> {
    let m = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    m(&files.0).max(m(&files.1))
}

impl DaemonTls {
    /// The slot and tokens, once the front door's TLS has been started: the handle of the
    /// certificate manager (issue 20's ACME half), which is not wired in on this branch yet.
    #[allow(dead_code)]
    pub fn state(&self) -> Option<TlsState> {
        self.state.get().cloned()
    }

    /// For the front door of `config`: its TLS site and a listener to serve it on, or `None`
    /// when the config has no `tls` (or leaves TLS to another web server). Fills the slot on
    /// first use: the operator's certificate, or a self-signed one for the names; follows the
    /// certificate files until `shutdown`.
    pub fn front_door(
        &self,
        config: &Config,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Option<(TlsSite, std::net::TcpListener)>> {
        let Some(t) = config.tls.as_ref().filter(|t| t.front_door_terminates()) else {
            *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return Ok(None);
        };
        let listener = self.listener(&t.listen)?;
        let state = self.fill(t)?;
        if let Some(c) = &t.certificate {
            tokio::spawn(follow_files(
                self.source.clone(),
                state.slot.clone(),
                (c.cert_file.clone(), c.key_file.clone()),
                shutdown,
            ));
        }
        Ok(Some((TlsSite::from_config(t, state), listener)))
    }

    /// The same socket while the address stays (a duplicate), a new one where it changed.
    fn listener(&self, addr: &str) -> Result<std::net::TcpListener> {
        let mut kept = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((a, l)) = kept.as_ref() {
            if a == addr {
                return Ok(l.try_clone()?);
            }
        }
        let l = std::net::TcpListener::bind(addr).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::AddrInUse => "the address is already in use".to_string(),
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied (ports below 1024 need privileges)".to_string()
                }
                _ => e.to_string(),
            };
            Failure::new(Code::Unavailable, format!("cannot listen on {addr} (config key `tls.listen`): {why}"))
                .hint("stop whatever listens there, or choose another address with `tls.listen`")
        })?;
        l.set_nonblocking(true)?;
        let dup = l.try_clone()?;
        *kept = Some((addr.to_string(), l));
        Ok(dup)
    }

    /// Puts the right certificate into the slot (creating it the first time). A reload with
    /// the same names and unchanged files leaves the served certificate alone (it may be a
    /// renewed one from ACME).
    fn fill(&self, t: &Tls) -> Result<TlsState> {
        let files = t.certificate.as_ref().map(|c| (c.cert_file.clone(), c.key_file.clone()));
        let source =
            Source { names: t.names.clone(), files: files.as_ref().map(|f| (f.0.clone(), f.1.clone(), modified(f))) };
        let mut current = self.source.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = self.state.get() {
            if current.as_ref() != Some(&source) {
                load_into(&state.slot, &t.names, files.as_ref());
                *current = Some(source);
            }
            return Ok(state.clone());
        }
        let slot = tls::initial_slot(&t.names, files.as_ref().map(|(c, k)| (c.as_path(), k.as_path())))
            .map_err(|e| Failure::new(Code::Config, format!("tls: {e}")))?;
        if slot.is_self_signed() {
            tracing::info!("front door: serving a self-signed certificate for {}", t.names.join(", "));
        }
        *current = Some(source);
        let state = TlsState { slot, tokens: Http01Tokens::default() };
        let _ = self.state.set(state.clone());
        Ok(state)
    }
}

/// The operator's files into the slot; when they cannot be loaded and no certificate of
/// theirs is served yet, a self-signed one for `names`.
fn load_into(slot: &CertSlot, names: &[String], files: Option<&(PathBuf, PathBuf)>) {
    match files.map(|(c, k)| tls::certified_key_from_files(c, k)) {
        Some(Ok(k)) => {
            slot.set_certificate(k);
            tracing::info!(
                "front door: certificate loaded from {}",
                files.map(|f| f.0.display().to_string()).unwrap_or_default()
            );
        }
        Some(Err(e)) if !slot.is_self_signed() => {
            tracing::error!("front door: {e}; still serving the certificate loaded before");
        }
        other => {
            if let Some(Err(e)) = other {
                tracing::error!("front door: {e}; serving a self-signed certificate");
            }
            match tls::self_signed(names) {
                Ok(k) => slot.set_self_signed(k),
                Err(e) => tracing::error!("front door: {e}"),
            }
        }
    }
}

/// Re-reads the operator's certificate files when they change (a renewal by another tool
/// reaches visitors within [`FILE_POLL`], no reload needed).
async fn follow_files(
    source: Arc<Mutex<Option<Source>>>,
    slot: Arc<CertSlot>,
    files: (PathBuf, PathBuf),
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = modified(&files);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(FILE_POLL) => {}
        }
        let now = modified(&files);
        if now != last {
            match tls::certified_key_from_files(&files.0, &files.1) {
                Ok(k) => {
                    last = now;
                    slot.set_certificate(k);
                    tracing::info!("front door: {} changed; serving the new certificate", files.0.display());
                    if let Some(s) = source.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                        s.files = Some((files.0.clone(), files.1.clone(), now));
                    }
                }
                // Half-written files during a copy: try again at the next change or poll.
                Err(e) => tracing::warn!("front door: {e}; keeping the served certificate"),
            }
        }
    }
}
