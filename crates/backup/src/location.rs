//! From the config's `backup` section to rustic storage backends.

use crate::error::{Error, ErrorKind, Result};
use crate::local::PrivateLocalBackend;
use crate::restic::ResticRepository;
use crate::retry::{RetryBackend, RetryPolicy};
use crate::s3::{S3Backend, S3Target};
use crate::sftp::{SftpBackend, SftpTarget};
use caretaker_core::config::{Backup, Repository};
use rustic_core::RepositoryBackends;
use std::sync::Arc;

/// Opens the repository the config names: local and S3 ones without touching them yet; an
/// SFTP one connects here, so that a refused host key or login is a clear error. Remote
/// (S3, SFTP) repositories retry transient failures within `backup.retry` ([`crate::retry`]).
pub fn repository(cfg: &Backup) -> Result<ResticRepository> {
    let name = cfg.repository.to_string();
    let backend: Arc<dyn rustic_core::WriteBackend> = match &cfg.repository {
        Repository::Local(path) => {
            let be = PrivateLocalBackend::new(path).map_err(|e| Error::rustic("opening repository", &name, &e))?;
            Arc::new(be)
        }
        Repository::S3 { endpoint, bucket, prefix } => {
            let Some(keys) = &cfg.s3 else {
                return Err(Error::new(ErrorKind::Invalid, format!("{name}: no S3 credentials"))
                    .hint("add `backup.s3: { access_key_id_file: ..., secret_access_key_file: ... }`"));
            };
            let target = S3Target {
                endpoint,
                bucket,
                prefix,
                region: keys.region.as_deref().unwrap_or("us-east-1"),
                access_key_id: keys.access_key_id.expose(),
                secret_access_key: keys.secret_access_key.expose(),
            };
            let be = S3Backend::new(&target).map_err(|e| Error::rustic("opening repository", &name, &e))?;
            retrying(Arc::new(be), RetryPolicy::new(cfg.retry.max_time))
        }
        Repository::Sftp { user, host, port, path } => {
            let opts = cfg.sftp.as_ref();
            let target = SftpTarget {
                user: user.as_deref(),
                host,
                port: *port,
                path,
                key_file: opts.and_then(|o| o.key_file.as_deref()),
                known_hosts_file: opts.and_then(|o| o.known_hosts_file.as_deref()),
            };
            retrying(Arc::new(SftpBackend::connect(&target)?), RetryPolicy::new(cfg.retry.max_time))
        }
    };
    let backends = RepositoryBackends::new(backend, None);
    let repo = ResticRepository::new(backends, name, cfg.password.expose());
    Ok(match &cfg.repository {
        Repository::Local(path) => repo.with_local_root(path.clone()),
        _ => repo,
    })
}

/// A repository in a local directory (tests, the demo, `backup.repository: /path`).
pub fn local(path: &std::path::Path, password: &str) -> Result<ResticRepository> {
    let name = format!("local:{}", path.display());
    let be = PrivateLocalBackend::new(path).map_err(|e| Error::rustic("opening repository", &name, &e))?;
    Ok(ResticRepository::new(RepositoryBackends::new(Arc::new(be), None), name, password).with_local_root(path.into()))
}

/// A repository in an S3 bucket, with the default retries (tests; the config goes through
/// [`repository`]).
pub fn s3(target: &S3Target<'_>, password: &str) -> Result<ResticRepository> {
    s3_with_retry(target, password, RetryPolicy::default())
}

/// A repository in an S3 bucket whose transient failures are retried by `policy`.
pub fn s3_with_retry(target: &S3Target<'_>, password: &str, policy: RetryPolicy) -> Result<ResticRepository> {
    let name = format!("s3:{}/{}/{}", target.endpoint, target.bucket, target.prefix);
    let be = S3Backend::new(target).map_err(|e| Error::rustic("opening repository", &name, &e))?;
    Ok(ResticRepository::new(RepositoryBackends::new(retrying(Arc::new(be), policy), None), name, password))
}

/// A repository on an SFTP server, with the default retries (tests; the config goes through
/// [`repository`]).
pub fn sftp(target: &SftpTarget<'_>, password: &str) -> Result<ResticRepository> {
    sftp_with_retry(target, password, RetryPolicy::default())
}

/// A repository on an SFTP server whose transient failures (a lost connection: the next
/// attempt reconnects) are retried by `policy`.
pub fn sftp_with_retry(target: &SftpTarget<'_>, password: &str, policy: RetryPolicy) -> Result<ResticRepository> {
    let be = SftpBackend::connect(target)?;
    let name = be.location_name();
    Ok(ResticRepository::new(RepositoryBackends::new(retrying(Arc::new(be), policy), None), name, password))
}

/// `backend` behind the retry decorator; a zero `max_time` means no retries, so no decorator.
fn retrying(backend: Arc<dyn rustic_core::WriteBackend>, policy: RetryPolicy) -> Arc<dyn rustic_core::WriteBackend> {
    if policy.max_time.is_zero() {
        backend
    } else {
        Arc::new(RetryBackend::new(backend, policy))
    }
}
