//! The HTTP client the ACME connection uses: rustls with ring, the public web roots plus the
//! certificates of `ca_file` (trusted for this connection only), and a note of the CA's
//! `Retry-After` on error answers (instant-acme drops response headers of errors).

use crate::Error;
use bytes::Bytes;
use http::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use jiff::Timestamp;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the client saw, shared with the caller.
#[derive(Debug, Default)]
pub struct Seen {
    /// The latest `Retry-After` of an error answer, as a time.
    pub retry_after: Mutex<Option<Timestamp>>,
    /// Requests sent (for tests and status).
    pub requests: AtomicU64,
}

impl Seen {
    pub fn take_retry_after(&self) -> Option<Timestamp> {
        self.retry_after.lock().map(|mut g| g.take()).unwrap_or(None)
    }
}

pub struct AcmeHttp {
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    seen: Arc<Seen>,
    timeout: Duration,
}

/// Is this directory URL allowed: https, or plain http to a loopback address (tests, a local
/// CA on the same host)?
pub fn check_directory_url(url: &str) -> Result<(), Error> {
    let uri: Uri = url.parse().map_err(|e| Error::Config(format!("ACME directory {url:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]" | "::1")) => Ok(()),
        _ => Err(Error::Config(format!("ACME directory {url:?} must be an https:// URL"))),
    }
}

impl AcmeHttp {
    pub fn new(ca_file: Option<&Path>, seen: Arc<Seen>) -> Result<AcmeHttp, Error> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(path) = ca_file {
            let what = |e: &dyn std::fmt::Display| {
                Error::Config(format!("cannot read the ACME ca_file {}: {e}", path.display()))
            };
            let mut n = 0;
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| what(&e))? {
                roots.add(cert.map_err(|e| what(&e))?).map_err(|e| what(&e))?;
                n += 1;
            }
            if n == 0 {
                return Err(what(&"no PEM certificate in it"));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new()).build(conn);
        Ok(AcmeHttp { inner, seen, timeout: Duration::from_secs(30) })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        self.seen.requests.fetch_add(1, Ordering::Relaxed);
        let fut = self.inner.request(req);
        let seen = self.seen.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let rsp = match tokio::time::timeout(timeout, fut).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => return Err(instant_acme::Error::Str("the ACME server did not answer in time")),
            };
            if !rsp.status().is_success() && !rsp.status().is_redirection() {
                if let Some(t) = retry_after(rsp.headers().get(http::header::RETRY_AFTER)) {
                    if let Ok(mut g) = seen.retry_after.lock() {
                        *g = Some(t);
                    }
                }
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(v: Option<&http::HeaderValue>) -> Option<Timestamp> {
    let s = v?.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Timestamp::now().checked_add(jiff::SignedDuration::from_secs(secs)).ok();
    }
    jiff::fmt::rfc2822::parse(s).ok().map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_urls() {
        assert!(check_directory_url("https://acme-v02.api.letsencrypt.org/directory").is_ok());
        assert!(check_directory_url("http://127.0.0.1:4000/dir").is_ok());
        assert!(check_directory_url("http://ca.example/dir").is_err());
        assert!(check_directory_url("not a url").is_err());
    }

    #[test]
    fn retry_after_forms() {
        let v = http::HeaderValue::from_static("120");
        let t = retry_after(Some(&v)).unwrap();
        let d = t.duration_since(Timestamp::now()).as_secs();
        assert!((110..=120).contains(&d), "{d}");
        let v = http::HeaderValue::from_static("Fri, 31 Dec 2100 23:59:59 GMT");
        assert_eq!(retry_after(Some(&v)).unwrap().to_string(), "2100-12-31T23:59:59Z");
        assert_eq!(retry_after(None), None);
    }
}
