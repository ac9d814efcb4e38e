//! Where certificates live in the state directory, and atomic 0600 writes.
//!
//! ```text
//! <state>/certs/                          0700
//!   account-<directory hash>.json        0600  ACME account (key + URL), one per directory
//!   <first name>/fullchain.pem            0600  the certificate in use, then its chain
//!   <first name>/privkey.pem              0600  its private key
//!   <first name>/renewal.json             0600  renewal state (backoff, orders, last error)
//! ```

use crate::Error;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The certificates directory inside the state directory.
pub fn certs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("certs")
}

/// A file-name-safe form of a name (DNS names already are; `*` of a wildcard is not).
pub fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect()
}

/// The files of one certificate.
#[derive(Clone, Debug)]
pub struct CertPaths {
    pub dir: PathBuf,
    pub chain: PathBuf,
    pub key: PathBuf,
    pub renewal: PathBuf,
}

impl CertPaths {
    pub fn new(state_dir: &Path, first_name: &str) -> CertPaths {
        let dir = certs_dir(state_dir).join(slug(first_name));
        CertPaths {
            chain: dir.join("fullchain.pem"),
            key: dir.join("privkey.pem"),
            renewal: dir.join("renewal.json"),
            dir,
        }
    }
}

/// The account file for a directory URL.
pub fn account_path(state_dir: &Path, directory: &str) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA256, directory.as_bytes());
    let hex: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    certs_dir(state_dir).join(format!("account-{hex}.json"))
}

/// Creates a directory (and its parents) with mode 0700.
pub fn private_dir(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(path, e))
}

/// Writes `data` to `path` atomically with mode 0600: a temporary file in the same directory,
/// synced, renamed over the target, the directory synced. A reader sees the old file or the
/// new one, never a part.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let res = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(|e| Error::io(path, e))
}

/// Reads a file; `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_0600_and_replace_atomically() {
        let d = tempfile::tempdir().unwrap();
        let p = CertPaths::new(d.path(), "*.example.org");
        assert!(p.dir.ends_with("certs/_.example.org"));
        write_private(&p.key, b"one").unwrap();
        write_private(&p.key, b"two").unwrap();
        assert_eq!(fs::read(&p.key).unwrap(), b"two");
        assert_eq!(fs::metadata(&p.key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&p.dir).unwrap().permissions().mode() & 0o777, 0o700);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&p.dir).unwrap().count(), 1);
        assert_eq!(read_optional(&p.chain).unwrap(), None);
        assert_ne!(account_path(d.path(), "https://a/dir"), account_path(d.path(), "https://b/dir"));
    }
}
