//! The ACME conversation (RFC 8555 through instant-acme): the account (kept in the state
//! directory, created once), one order, its challenges, the CSR (rcgen, a fresh P-256 key per
//! certificate) and the certificate; the CA's renewal information (RFC 9773).

use crate::challenge::{Presented, Solver};
use crate::client::{AcmeHttp, Seen};
use crate::files;
use crate::{Error, Settings};
use caretaker_core::cert::AriWindow;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ExternalAccountKey, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use jiff::Timestamp;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A certificate the CA issued, with its new key, both PEM.
#[derive(Debug)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// The account and its connection.
pub struct Acme {
    account: Account,
    pub seen: Arc<Seen>,
    /// The CA offers renewal information (ARI): `replaces` may be sent.
    pub ari: bool,
    /// A new account was registered (not loaded).
    pub created: bool,
}

/// Opens the account for `settings.directory`: loaded from the state directory, or registered
/// (with EAB when configured) and stored 0600 before anything else is done with it.
pub async fn open(state_dir: &Path, settings: &Settings, seen: Arc<Seen>) -> Result<Acme, Error> {
    crate::client::check_directory_url(&settings.directory)?;
    let http = || {
        AcmeHttp::new(settings.ca_file.as_deref(), seen.clone())
            .map(|h| Box::new(h) as Box<dyn instant_acme::HttpClient>)
    };
    let path = files::account_path(state_dir, &settings.directory);
    let (account, created) = match files::read_optional(&path)? {
        Some(data) => {
            let creds: AccountCredentials = serde_json::from_slice(&data)
                .map_err(|e| Error::Cert(format!("the ACME account file {} is unreadable: {e}", path.display())))?;
            let account = Account::builder_with_http(http()?).from_credentials(creds).await.map_err(acme_err)?;
            (account, false)
        }
        None => {
            let contact: Vec<String> = settings.email.iter().map(|e| format!("mailto:{e}")).collect();
            let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
            let eab = match &settings.eab {
                Some(e) => Some(ExternalAccountKey::new(e.kid.clone(), &decode_b64url(&e.hmac_key)?)),
                None => None,
            };
            let (account, creds) = Account::builder_with_http(http()?)
                .create(
                    &NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false },
                    settings.directory.clone(),
                    eab.as_ref(),
                )
                .await
                .map_err(acme_err)?;
            let json = serde_json::to_vec_pretty(&creds).map_err(|e| Error::Cert(e.to_string()))?;
            files::write_private(&path, &json)?;
            tracing::info!(directory = %settings.directory, "registered a new ACME account");
            (account, true)
        }
    };
    // ARI is offered when the directory names a renewalInfo resource.
    let ari = directory_has_ari(http()?.as_ref(), &settings.directory).await;
    Ok(Acme { account, seen, ari, created })
}

async fn directory_has_ari(http: &dyn instant_acme::HttpClient, url: &str) -> bool {
    let Ok(req) = http::Request::get(url).body(instant_acme::BodyWrapper::default()) else { return false };
    let Ok(mut rsp) = http.request(req).await else { return false };
    let Ok(body) = rsp.body.into_bytes().await else { return false };
    serde_json::from_slice::<serde_json::Value>(&body)
        .is_ok_and(|v| v.get("renewalInfo").is_some_and(|u| u.is_string()))
}

/// The EAB HMAC key: base64url (as CAs hand it out), padding tolerated.
fn decode_b64url(s: &str) -> Result<Vec<u8>, Error> {
    let mut out = vec![];
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.trim().trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return Err(Error::Config("the EAB hmac_key is not base64url".into())),
        };
        buf = buf << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    if out.is_empty() {
        return Err(Error::Config("the EAB hmac_key is empty".into()));
    }
    Ok(out)
}

/// How an order failed: the message and whether the CA refused `replaces`.
#[derive(Debug)]
pub struct OrderError {
    pub message: String,
    pub replaces_conflict: bool,
}

fn acme_err(e: instant_acme::Error) -> Error {
    Error::Acme(e.to_string())
}

impl Acme {
    /// The CA's suggested renewal window for a certificate (its ARI identifier).
    pub async fn renewal_info(&self, cert_id: &str) -> Result<AriWindow, Error> {
        let (aki, serial) = cert_id
            .split_once('.')
            .ok_or_else(|| Error::Cert(format!("not an ARI certificate identifier: {cert_id}")))?;
        let id = CertificateIdentifier { authority_key_identifier: aki.into(), serial: serial.into() };
        let (info, retry) = self.account.renewal_info(&id).await.map_err(acme_err)?;
        let ts = |t: time::OffsetDateTime| {
            Timestamp::from_second(t.unix_timestamp()).map_err(|e| Error::Acme(e.to_string()))
        };
        let now = Timestamp::now();
        // Ask again when the CA says, but at least hourly and at most twice a day.
        let retry = retry.clamp(Duration::from_secs(3600), Duration::from_secs(12 * 3600));
        Ok(AriWindow {
            start: ts(info.suggested_window.start)?,
            end: ts(info.suggested_window.end)?,
            cert_id: cert_id.to_string(),
            refresh_at: now + jiff::SignedDuration::try_from(retry).unwrap_or_default(),
        })
    }

    /// One order for `names`, answered with `solver`. `replaces`: the ARI identifier of the
    /// certificate this one replaces. `log`: progress lines for the job log.
    pub async fn issue(
        &self,
        names: &[String],
        replaces: Option<&str>,
        solver: &Solver,
        log: &mut dyn FnMut(&str),
    ) -> Result<Issued, OrderError> {
        let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut new = NewOrder::new(&identifiers);
        let rid = replaces
            .and_then(|r| r.split_once('.'))
            .map(|(aki, serial)| CertificateIdentifier { authority_key_identifier: aki.into(), serial: serial.into() });
        if let Some(r) = &rid {
            new = new.replaces(r.clone());
        }
        let mut order = match self.account.new_order(&new).await {
            Ok(o) => o,
            Err(e) => {
                let conflict = rid.is_some() && is_replaces_conflict(&e);
                return Err(OrderError { message: format!("new order: {e}"), replaces_conflict: conflict });
            }
        };
        log(&format!("order {} placed for {}", order.url(), names.join(", ")));
        let fail = |m: String| OrderError { message: m, replaces_conflict: false };
        let mut presented: Vec<Presented> = vec![];
        let result = async {
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a.map_err(|e| fail(format!("authorization: {e}")))?;
                match a.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    s => return Err(fail(format!("authorization for {} is {s:?}", a.identifier()))),
                }
                let name = a.identifier().to_string();
                let mut ch = a
                    .challenge(solver.challenge_type())
                    .ok_or_else(|| fail(format!("the CA offers no {} challenge for {name}", solver.kind_name())))?;
                let ka = ch.key_authorization();
                let token = ch.token.clone();
                presented.push(solver.present(&name, &token, &ka).map_err(|e| fail(e.to_string()))?);
                log(&format!("{} challenge for {name} in place", solver.kind_name()));
                ch.set_ready().await.map_err(|e| fail(format!("challenge for {name}: {e}")))?;
            }
            let retry = RetryPolicy::new().initial_delay(Duration::from_millis(250)).timeout(Duration::from_secs(90));
            let status = order.poll_ready(&retry).await.map_err(|e| fail(format!("validation: {e}")))?;
            if status != OrderStatus::Ready {
                return Err(fail(format!("validation failed: the order is {status:?}")));
            }
            log("validated; sending the CSR");
            let key = rcgen::KeyPair::generate().map_err(|e| fail(format!("key generation: {e}")))?;
            let params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| fail(format!("names: {e}")))?;
            let csr = params.serialize_request(&key).map_err(|e| fail(format!("CSR: {e}")))?;
            order.finalize_csr(csr.der()).await.map_err(|e| fail(format!("finalize: {e}")))?;
            let chain = order.poll_certificate(&retry).await.map_err(|e| fail(format!("certificate: {e}")))?;
            Ok(Issued { chain_pem: chain, key_pem: key.serialize_pem() })
        }
        .await;
        for p in &presented {
            solver.remove(p);
        }
        result
    }
}

/// The CA refused the order because of `replaces`: 409 Conflict (`alreadyReplaced`), or a
/// malformed answer about the field.
fn is_replaces_conflict(e: &instant_acme::Error) -> bool {
    match e {
        instant_acme::Error::Api(p) => {
            p.status == Some(409)
                || p.r#type.as_deref().is_some_and(|t| t.ends_with(":alreadyReplaced") || t.ends_with(":conflict"))
                || p.detail.as_deref().is_some_and(|d| d.contains("replaces"))
        }
        instant_acme::Error::Other(o) => o.to_string().contains("replaces"),
        instant_acme::Error::Unsupported(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eab_keys_decode() {
        assert_eq!(decode_b64url("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(decode_b64url("Zm8=").unwrap(), b"fo");
        assert_eq!(decode_b64url("_-8").unwrap(), [0xff, 0xef]);
        assert!(decode_b64url("a b").is_err());
        assert!(decode_b64url("").is_err());
    }
}
