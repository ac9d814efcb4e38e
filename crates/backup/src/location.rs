//! From the config's `backup` section to rustic storage backends.

use crate::error::{Error, ErrorKind, Result};
use crate::restic::ResticRepository;
use caretaker_core::config::{Backup, Repository};
use rustic_backend::local::LocalBackend;
use rustic_core::RepositoryBackends;
use std::sync::Arc;

/// Opens (without touching it yet) the repository the config names.
pub fn repository(cfg: &Backup) -> Result<ResticRepository> {
    let name = cfg.repository.to_string();
    let backend: Arc<dyn rustic_core::WriteBackend> = match &cfg.repository {
        Repository::Local(path) => {
            let be = LocalBackend::new(path.to_string_lossy(), Vec::<(String, String)>::new())
                .map_err(|e| Error::rustic("opening repository", &name, &e))?;
            Arc::new(be)
        }
        Repository::Sftp { .. } | Repository::S3 { .. } => {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("{name}: this caretaker build only supports local repositories"),
            ));
        }
    };
    let backends = RepositoryBackends::new(backend, None);
    Ok(ResticRepository::new(backends, name, cfg.password.expose()))
}

/// A repository in a local directory (tests, the demo, `backup.repository: /path`).
pub fn local(path: &std::path::Path, password: &str) -> Result<ResticRepository> {
    let name = format!("local:{}", path.display());
    let be = LocalBackend::new(path.to_string_lossy(), Vec::<(String, String)>::new())
        .map_err(|e| Error::rustic("opening repository", &name, &e))?;
    Ok(ResticRepository::new(RepositoryBackends::new(Arc::new(be), None), name, password))
}
