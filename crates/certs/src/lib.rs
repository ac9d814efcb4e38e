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

use caretaker_core::cert::Policy;
use std::path::{Path, PathBuf};

/// Let's Encrypt's production directory.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory.
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `letsencrypt`, `letsencrypt-staging` (or `staging`), or a directory URL.
pub fn directory_url(s: &str) -> String {
    match s {
        "letsencrypt" | "letsencrypt-production" => LETSENCRYPT.into(),
        "letsencrypt-staging" | "staging" => LETSENCRYPT_STAGING.into(),
        url => url.into(),
    }
}

/// What the certificates module needs from the config.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The names of the certificate (SANs); the first names its files.
    pub names: Vec<String>,
    /// The directory URL (see [`directory_url`]).
    pub directory: String,
    pub email: Option<String>,
    /// Extra root trusted for the connection to the directory only.
    pub ca_file: Option<PathBuf>,
    pub eab: Option<Eab>,
    /// Run (through `sh -c`) after a renewal, in webroot mode: reloads the web server.
    pub reload_command: Option<String>,
    pub policy: Policy,
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
