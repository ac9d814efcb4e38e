//! S3-compatible repositories: rustic_core's backend traits over `opendal` with only its S3
//! service (rustic_backend's opendal feature brings ~20 services and takes 11+ minutes to
//! build). Paths follow restic's layout (`config`, `keys/<id>`, `data/<xx>/<id>`, ...), so stock
//! `restic -r s3:<endpoint>/<bucket>/<prefix>` reads the same repository.

use bytes::Bytes;
use opendal::blocking::Operator;
use opendal::options::{ListOptions, ReadOptions};
use opendal::{HttpTransporter, OperationContext};
use rustic_core::{BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Where and how to reach the bucket. The keys are handed over here and nowhere else.
pub struct S3Target<'a> {
    /// `https://host[:port]` or `http://127.0.0.1:port` (a local test server).
    pub endpoint: &'a str,
    pub bucket: &'a str,
    /// Key prefix of the repository inside the bucket (may be empty).
    pub prefix: &'a str,
    pub region: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
}

/// The blocking operator runs its requests on this runtime.
fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("caretaker-s3")
            .enable_all()
            .build()
            .expect("the S3 client's runtime")
    })
}

#[derive(Clone, Debug)]
pub struct S3Backend {
    op: Operator,
    location: String,
}

fn backend_err(what: String, err: opendal::Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, what, err)
}

/// How long the S3 client waits for a connection, and for each read of a response, before
/// the request fails as temporary (and is retried: `crate::retry`).
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(120);

impl S3Backend {
    pub fn new(t: &S3Target<'_>) -> RusticResult<Self> {
        Self::with_io_timeout(t, DEFAULT_IO_TIMEOUT)
    }

    /// As [`S3Backend::new`], with connect and read timeouts of `io_timeout`: a server that
    /// stops answering fails the request (temporarily) instead of hanging the backup.
    pub fn with_io_timeout(t: &S3Target<'_>, io_timeout: Duration) -> RusticResult<Self> {
        // reqwest is built without a bundled crypto provider (that would be aws-lc, a long C
        // build); rustls uses *ring*, which the workspace builds anyway.
        // opendal's own switch for this transport would bring aws-lc back, so it is installed
        // here (first install wins; later calls do nothing).
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal_http_transport_reqwest::install_default();
        let builder = opendal::services::S3::default()
            .endpoint(t.endpoint)
            .bucket(t.bucket)
            .root(&format!("/{}", t.prefix.trim_matches('/')))
            .region(t.region)
            .access_key_id(t.access_key_id)
            .secret_access_key(t.secret_access_key)
            .disable_config_load()
            .disable_ec2_metadata();
        let location = format!("s3:{}/{}/{}", t.endpoint, t.bucket, t.prefix.trim_matches('/'));
        let op = opendal::Operator::new(builder)
            .map_err(|e| backend_err(format!("configuring S3 repository {location}"), e))?;
        let client =
            reqwest::Client::builder().connect_timeout(io_timeout).read_timeout(io_timeout).build().map_err(|e| {
                RusticError::with_source(ErrorKind::Backend, format!("configuring S3 repository {location}"), e)
            })?;
        let transport = HttpTransporter::new(opendal_http_transport_reqwest::ReqwestTransport::new(client));
        let op = op.with_context(OperationContext::new().with_http_transport(transport));
        let _guard = runtime().enter();
        let op = Operator::new(op).map_err(|e| backend_err(format!("opening S3 repository {location}"), e))?;
        Ok(S3Backend { op, location })
    }

    fn path(tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => "config".to_string(),
            FileType::Pack => format!("data/{}/{}", &hex[0..2], &hex[..]),
            _ => format!("{}/{}", tpe.dirname(), &hex[..]),
        }
    }
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let _guard = runtime().enter();
        if tpe == FileType::Config {
            return match self.op.stat("config") {
                Ok(m) => Ok(vec![(Id::default(), m.content_length().try_into().unwrap_or(u32::MAX))]),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(backend_err(format!("reading the config of {}", self.location), e)),
            };
        }
        let dir = format!("{}/", tpe.dirname());
        let opts = ListOptions { recursive: true, ..Default::default() };
        let lister = match self.op.lister_options(&dir, opts) {
            Ok(l) => l,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(backend_err(format!("listing {dir} of {}", self.location), e)),
        };
        let mut out = Vec::new();
        for entry in lister {
            let entry = entry.map_err(|e| backend_err(format!("listing {dir} of {}", self.location), e))?;
            let meta = entry.metadata();
            if !meta.is_file() {
                continue;
            }
            let Some(id) = Id::parse_some(entry.name(), tpe) else { continue };
            out.push((id, meta.content_length().try_into().unwrap_or(u32::MAX)));
        }
        Ok(out)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let _guard = runtime().enter();
        let path = Self::path(tpe, id);
        Ok(self.op.read(&path).map_err(|e| backend_err(format!("reading {path} of {}", self.location), e))?.to_bytes())
    }

    fn read_partial(&self, tpe: FileType, id: &Id, _cacheable: bool, offset: u32, length: u32) -> RusticResult<Bytes> {
        let _guard = runtime().enter();
        let path = Self::path(tpe, id);
        let range = u64::from(offset)..u64::from(offset) + u64::from(length);
        let opts = ReadOptions { range: range.into(), ..Default::default() };
        Ok(self
            .op
            .read_options(&path, opts)
            .map_err(|e| backend_err(format!("reading {path} of {}", self.location), e))?
            .to_bytes())
    }

    /// The object key, for warm-up commands (cold storage); caretaker uses none.
    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        Self::path(tpe, id)
    }
}

impl WriteBackend for S3Backend {
    /// Object stores have no directories to create; the bucket must exist.
    fn create(&self) -> RusticResult<()> {
        Ok(())
    }

    fn write_bytes(&self, tpe: FileType, id: &Id, _cacheable: bool, content: BytesList) -> RusticResult<()> {
        let _guard = runtime().enter();
        let path = Self::path(tpe, id);
        self.op
            .write(&path, content.into_vec())
            .map_err(|e| backend_err(format!("writing {path} of {}", self.location), e))?;
        Ok(())
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let _guard = runtime().enter();
        let path = Self::path(tpe, id);
        self.op.delete(&path).map_err(|e| backend_err(format!("removing {path} of {}", self.location), e))
    }
}
