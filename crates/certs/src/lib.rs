//! caretaker's certificates (docs/certificates.md): ACME (RFC 8555) issuance and renewal for
//! the front door, with the self-signed fallback while no valid certificate exists.
//!
//! - [`files`]: where certificates, keys and the account live in the state directory (0600,
//!   atomic writes);
//! - [`x509`]: reading certificates, the self-signed fallback;
//! - [`client`]: the HTTP client of the ACME connection (`ca_file`, `Retry-After`);
//! - [`challenge`]: HTTP-01 (token map), TLS-ALPN-01 (resolver hook), webroot;
//! - [`acme`]: account, order, challenges, CSR, ARI;
//! - [`manager`]: the renewal task carrying out `caretaker_core::cert`'s decisions, one job
//!   per order, swapping certificates into the front door.

pub mod acme;
pub mod challenge;
pub mod client;
pub mod files;
pub mod manager;
pub mod x509;

pub use challenge::{AlpnResponder, Http01Responder, Solver, TokenMap};
pub use manager::{CertStatus, Install, Manager};
pub use rustls::sign::CertifiedKey;

use caretaker_core::cert::Policy;
use caretaker_core::config::{Command, Tls};
use std::path::{Path, PathBuf};

/// What the certificates module needs from the config.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The names of the certificate (SANs); the first names its files.
    pub names: Vec<String>,
    /// The directory URL.
    pub directory: String,
    pub email: Option<String>,
    /// Extra root trusted for the connection to the directory only.
    pub ca_file: Option<PathBuf>,
    pub eab: Option<Eab>,
    /// Runs after a renewal, in webroot mode: reloads the web server.
    pub reload_command: Option<Command>,
    pub policy: Policy,
}

impl Settings {
    /// From the config's `tls` section; `None` without `tls.acme`.
    pub fn from_config(tls: &Tls) -> Option<Settings> {
        let a = tls.acme.as_ref()?;
        Some(Settings {
            names: tls.names.clone(),
            directory: a.directory.url().to_string(),
            email: a.email.clone(),
            ca_file: a.ca_file.clone(),
            eab: a.eab.as_ref().map(|e| Eab { kid: e.kid.clone(), hmac_key: e.hmac_key.expose().to_string() }),
            reload_command: a.reload_command.clone(),
            policy: Policy {
                renew_before: a.renew_before,
                max_orders_per_hour: a.max_orders_per_hour,
                stuck_after: a.stuck_after,
            },
        })
    }
}

/// External account binding (CAs such as ZeroSSL, Sectigo, Google).
#[derive(Clone)]
pub struct Eab {
    pub kid: String,
    /// base64url, as the CA hands it out. Never logged.
    pub hmac_key: String,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eab").field("kid", &self.kid).field("hmac_key", &"***").finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Cert(String),
    #[error("{0}")]
    Acme(String),
    #[error("{0}")]
    Config(String),
    #[error("state store: {0}")]
    State(#[from] caretaker_state::StateError),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io { path: path.to_path_buf(), source }
    }
}
