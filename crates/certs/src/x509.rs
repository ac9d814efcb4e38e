//! Reading certificates: PEM in, the facts renewal and `cert status` need out.

use crate::Error;
use caretaker_core::cert::Validity;
use jiff::Timestamp;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate with its chain and key, ready to serve.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub chain: Vec<CertificateDer<'static>>,
    pub info: Info,
    pub key: Arc<rustls::sign::CertifiedKey>,
}

/// What a certificate says about itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Info {
    pub names: Vec<String>,
    pub issuer: String,
    pub serial: String,
    pub validity: Validity,
    /// The ARI certificate identifier (RFC 9773), when it has an authority key identifier.
    pub ari_id: Option<String>,
    /// Issued by itself (the fallback certificate).
    pub self_signed: bool,
}

/// Parses the end-entity certificate.
pub fn info(der: &CertificateDer<'_>) -> Result<Info, Error> {
    let (_, c) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| Error::Cert(format!("unreadable certificate: {e}")))?;
    let ts = |t: x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp()).map_err(|e| Error::Cert(format!("certificate time out of range: {e}")))
    };
    let mut names = vec![];
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    let ari_id = instant_acme::CertificateIdentifier::try_from(der).ok().map(|id| id.to_string());
    Ok(Info {
        names,
        issuer: c.issuer().to_string(),
        serial: c.raw_serial_as_string(),
        validity: Validity { not_before: ts(c.validity().not_before)?, not_after: ts(c.validity().not_after)? },
        ari_id,
        self_signed: c.issuer() == c.subject(),
    })
}

/// PEM certificates, end-entity first.
pub fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Cert(format!("unreadable PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Cert("no certificate in the PEM data".into()));
    }
    Ok(chain)
}

/// A chain and its PEM private key, checked to belong together.
pub fn load(chain_pem: &[u8], key_pem: &[u8]) -> Result<Loaded, Error> {
    let chain = parse_chain(chain_pem)?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Cert(format!("unreadable private key: {e}")))?;
    let info = info(&chain[0])?;
    let key = certified_key(chain.clone(), key)?;
    Ok(Loaded { chain, info, key })
}

/// A rustls `CertifiedKey` (ring provider), its key checked against the certificate.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::sign::CertifiedKey>, Error> {
    let provider = rustls::crypto::ring::default_provider();
    let ck = rustls::sign::CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| Error::Cert(format!("certificate and key do not fit: {e}")))?;
    Ok(Arc::new(ck))
}

/// The chain as PEM.
pub fn chain_pem(chain: &[CertificateDer<'_>]) -> String {
    chain.iter().map(|c| pem_block("CERTIFICATE", c.as_ref())).collect()
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use std::fmt::Write;
    let b64 = base64_std(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        let _ = writeln!(s, "{}", std::str::from_utf8(line).unwrap_or_default());
    }
    let _ = writeln!(s, "-----END {label}-----");
    s
}

fn base64_std(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// A self-signed certificate for `names` (the fallback while no valid certificate exists):
/// valid from a day ago for 90 days, ECDSA P-256.
pub fn self_signed(names: &[String], now: Timestamp) -> Result<(String, String), Error> {
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Cert(format!("key generation: {e}")))?;
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| Error::Cert(format!("certificate names: {e}")))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        format!("{} (caretaker self-signed)", names.first().map(String::as_str).unwrap_or("localhost")),
    );
    params.distinguished_name = dn;
    let start =
        time::OffsetDateTime::from_unix_timestamp(now.as_second() - 86400).map_err(|e| Error::Cert(e.to_string()))?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(91);
    let cert = params.self_signed(&key).map_err(|e| Error::Cert(format!("self-signed certificate: {e}")))?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_round_trips_through_pem() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let (c, k) = self_signed(&["a.example".into(), "b.example".into()], now).unwrap();
        let l = load(c.as_bytes(), k.as_bytes()).unwrap();
        assert_eq!(l.info.names, ["a.example", "b.example"]);
        assert!(l.info.self_signed);
        assert!(l.info.validity.not_before < now && l.info.validity.not_after > now);
        assert_eq!(parse_chain(chain_pem(&l.chain).as_bytes()).unwrap(), l.chain);
        // A key of another certificate is refused.
        let (_, other) = self_signed(&["a.example".into()], now).unwrap();
        assert!(load(c.as_bytes(), other.as_bytes()).is_err());
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64_std(b""), "");
        assert_eq!(base64_std(b"f"), "Zg==");
        assert_eq!(base64_std(b"fo"), "Zm8=");
        assert_eq!(base64_std(b"foobar"), "Zm9vYmFy");
    }
}
