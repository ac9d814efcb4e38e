//! The `tls:` section: HTTPS on the front door, the certificate's names, and where the
//! certificate comes from (a manual certificate, ACME, or — with neither — a self-signed one).
//!
//! Model and reader live together here so the section is one file: [`Tls`] is what the front
//! door (`frontdoor::tls`) and the certificate manager (`crates/certs`) read; [`read`] and
//! [`cross_checks`] are called from `parse.rs`. See docs/tls.md.

use super::model::{Command, Config};
use super::reader::{boolean, bounded, duration, list, nonempty, Cx};
use super::secret::Secret;
use marked_yaml::Node;
use serde::{Serialize, Serializer};
use std::path::PathBuf;
use std::time::Duration;

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format_duration(*d))
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// HTTPS on the front door.
#[derive(Clone, Debug, Serialize)]
pub struct Tls {
    /// The certificate's names (subject alternative names), lower case, first one first. DNS
    /// names, or IP addresses.
    pub names: Vec<String>,
    /// Where the front door accepts TLS connections, `host:port`.
    pub listen: String,
    /// The front door's plain-HTTP port answers every request with a redirect to `https://`
    /// (308), except ACME's `/.well-known/acme-challenge/` path.
    pub redirect_http: bool,
    /// `Strict-Transport-Security` on HTTPS responses; `None`: no header.
    pub hsts: Option<Hsts>,
    /// A certificate the operator manages; `Some` means no ACME.
    pub certificate: Option<CertificateFiles>,
    /// Certificates from an ACME CA; `None` with no `certificate` either: self-signed.
    pub acme: Option<Acme>,
}

impl Tls {
    /// Whether the front door must listen for TLS itself (in webroot mode nginx does).
    pub fn front_door_terminates(&self) -> bool {
        !self.acme.as_ref().is_some_and(|a| a.challenge == Challenge::Webroot)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Hsts {
    #[serde(serialize_with = "ser_duration")]
    pub max_age: Duration,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Hsts {
    /// The header's value, e.g. `max-age=31536000; includeSubDomains`.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age.as_secs());
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// A manually managed certificate: PEM files, the chain leaf first.
#[derive(Clone, Debug, Serialize)]
pub struct CertificateFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Which ACME directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcmeDirectory {
    LetsEncrypt,
    LetsEncryptStaging,
    /// Any other CA's directory URL (`https://`).
    Url(String),
}

pub const LETSENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETSENCRYPT_STAGING_DIRECTORY: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

impl AcmeDirectory {
    pub fn url(&self) -> &str {
        match self {
            AcmeDirectory::LetsEncrypt => LETSENCRYPT_DIRECTORY,
            AcmeDirectory::LetsEncryptStaging => LETSENCRYPT_STAGING_DIRECTORY,
            AcmeDirectory::Url(u) => u,
        }
    }
}

/// How the CA checks that we control the names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Challenge {
    /// The front door answers `/.well-known/acme-challenge/<token>` on port 80.
    Http01,
    /// The front door answers the `acme-tls/1` ALPN protocol on its TLS port (443).
    TlsAlpn01,
    /// Challenge files are written to `webroot` for a web server caretaker does not run.
    Webroot,
}

/// External account binding (RFC 8555 §7.3.4) for CAs that require it.
#[derive(Clone, Debug, Serialize)]
pub struct Eab {
    pub kid: String,
    /// The base64url MAC key, as the CA shows it.
    pub hmac_key: Secret,
}

/// Certificates from an ACME (RFC 8555) CA.
#[derive(Clone, Debug, Serialize)]
pub struct Acme {
    pub directory: AcmeDirectory,
    /// The account's contact; `None`: an account without contact.
    pub email: Option<String>,
    /// An extra root certificate (PEM) trusted for the directory's HTTPS (a private CA, or
    /// Pebble in tests), next to the system's roots.
    pub ca_file: Option<PathBuf>,
    pub challenge: Challenge,
    /// Where challenge files go (`challenge: webroot`); the directory that nginx serves as
    /// `/.well-known/acme-challenge/`.
    pub webroot: Option<PathBuf>,
    /// Runs after a renewal in webroot mode, so the web server loads the new certificate.
    pub reload_command: Option<Command>,
    pub eab: Option<Eab>,
    /// At most this many new orders per hour and certificate (retry storms hit rate limits).
    pub max_orders_per_hour: u32,
    /// Due for renewal this long without a new certificate: alert.
    #[serde(serialize_with = "ser_duration")]
    pub stuck_after: Duration,
    /// Renew this long before expiry instead of when a third of the lifetime is left (the
    /// CA's renewal window still counts if it comes first).
    #[serde(serialize_with = "ser_opt_duration")]
    pub renew_before: Option<Duration>,
}

pub const DEFAULT_TLS_LISTEN: &str = "0.0.0.0:443";
pub const DEFAULT_MAX_ORDERS_PER_HOUR: u32 = 5;
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Reads the `tls:` section.
pub fn read(cx: &mut Cx, node: &Node, path: &str) -> Option<Tls> {
    let mut m = cx.map(node, path)?;
    let names = m.req(cx, "names", "the certificate's names, e.g. `names: [example.org, www.example.org]`", names);
    let listen = m.opt(cx, "listen", super::parse::host_port).unwrap_or_else(|| DEFAULT_TLS_LISTEN.to_string());
    let redirect_http = m.opt(cx, "redirect_http", boolean).unwrap_or(true);
    let hsts = m.opt(cx, "hsts", hsts);
    let certificate = m.opt(cx, "certificate", certificate);
    let acme_span = m.first_key_span(&["acme"]);
    let certificate_given = m.first_key_span(&["certificate"]).is_some();
    let acme = m.opt(cx, "acme", acme);
    let span = *m.span();
    m.finish(cx);
    if certificate.is_some() && acme.is_some() {
        cx.error(
            &acme_span.unwrap_or(span),
            &format!("{path}.acme"),
            "`tls` has both a manual `certificate` and `acme`; use one",
            Some("with `certificate:`, you renew the files yourself; with `acme:`, caretaker does".into()),
        );
        return None;
    }
    let names = names?;
    if let Some(a) = &acme {
        if let Some(w) = names.iter().find(|n| n.starts_with("*.")) {
            cx.error(
                &acme_span.unwrap_or(span),
                &format!("{path}.names"),
                format!("`{w}` is a wildcard name; ACME issues wildcards only through the DNS-01 challenge, which caretaker does not do"),
                Some(format!(
                    "list each name instead (e.g. `www.{}`), or get the wildcard certificate elsewhere and give it as `certificate:`",
                    &w[2..]
                )),
            );
            return None;
        }
        if a.challenge == Challenge::TlsAlpn01 && !listen.ends_with(":443") {
            cx.warning(
                &span,
                &format!("{path}.listen"),
                format!("`challenge: tls-alpn-01` is validated on port 443, but the front door listens on {listen}"),
                Some(
                    "the CA must reach this listener on port 443 (a port forward), or use `challenge: http-01`".into(),
                ),
            );
        }
    }
    if !certificate_given && acme_span.is_none() {
        cx.warning(
            &span,
            path,
            "`tls` has neither `certificate` nor `acme`: the front door serves a self-signed certificate, which browsers refuse",
            Some("add `acme: { email: you@example.org }` for Let's Encrypt, or `certificate: { cert_file: ..., key_file: ... }`".into()),
        );
    }
    Some(Tls { names, listen, redirect_http, hsts, certificate, acme })
}

/// The `tls` section against the rest of the config.
pub fn cross_checks(cx: &mut Cx, cfg: &Config, span: &marked_yaml::Span) {
    let Some(tls) = &cfg.tls else { return };
    match &cfg.front_door {
        None if tls.front_door_terminates() => cx.error(
            span,
            "tls",
            "`tls` is served by the front door, but there is no `front_door` section",
            Some("add `front_door: { listen: \"0.0.0.0:80\", upstream: \"127.0.0.1:8001\" }`, or use `acme.challenge: webroot` with your own web server".into()),
        ),
        Some(fd) if tls.front_door_terminates() && fd.listen == tls.listen => cx.error(
            span,
            "tls.listen",
            format!("`tls.listen` and `front_door.listen` are both {}", tls.listen),
            Some("plain HTTP and HTTPS need two ports, e.g. `front_door.listen: \"0.0.0.0:80\"` and `tls.listen: \"0.0.0.0:443\"`".into()),
        ),
        _ => {}
    }
    if tls.front_door_terminates() && tls.listen == cfg.http.listen {
        cx.error(
            span,
            "tls.listen",
            format!("`tls.listen` and `http.listen` are both {}", tls.listen),
            Some("the daemon's metrics listener needs a port of its own".into()),
        );
    }
}

/// Why `name` cannot be a certificate name, if it cannot.
fn name_problem(name: &str) -> Option<String> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    if name.ends_with('.') {
        return Some("ends with a dot; write the name without it".into());
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    if host.len() > 253 {
        return Some("is longer than 253 characters".into());
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Some("has an empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > 63 {
            return Some(format!("has a label longer than 63 characters (`{label}`)"));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            let hint = if c == '*' {
                "a wildcard must be the whole first label, as in `*.example.org`".to_string()
            } else if !c.is_ascii() {
                "write international names in their ASCII form (`xn--...`, punycode)".to_string()
            } else {
                "names hold letters, digits, `-` and `.`; no scheme, port or path".to_string()
            };
            return Some(format!("contains `{c}`: {hint}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("has a label that starts or ends with `-` (`{label}`)"));
        }
    }
    if host.rsplit('.').next().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Some("looks like an IP address but is not one".into());
    }
    None
}

fn names(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<String>> {
    let start = cx.error_count();
    let mut seen: Vec<String> = Vec::new();
    let names = list(cx, node, path, |cx, n, p| {
        let name = nonempty(cx, n, p)?.trim().to_ascii_lowercase();
        if let Some(why) = name_problem(&name) {
            cx.error(n.span(), p, format!("`{name}` is not a valid certificate name: it {why}"), None);
            return None;
        }
        if seen.contains(&name) {
            cx.error(n.span(), p, format!("`{name}` is listed twice"), Some("remove one of them".into()));
            return None;
        }
        seen.push(name.clone());
        Some(name)
    })?;
    if names.is_empty() && cx.error_count() == start {
        cx.error(
            node.span(),
            path,
            format!("`{path}` is empty; a certificate needs at least one name"),
            Some("e.g. `names: [example.org, www.example.org]`".into()),
        );
        return None;
    }
    Some(names)
}

fn hsts(cx: &mut Cx, node: &Node, path: &str) -> Option<Hsts> {
    let mut m = cx.map(node, path)?;
    let max_age = m.req(cx, "max_age", "e.g. `max_age: 365d` (browsers remember HTTPS-only this long)", duration);
    let include_subdomains = m.opt(cx, "include_subdomains", boolean).unwrap_or(false);
    let preload = m.opt(cx, "preload", boolean).unwrap_or(false);
    let span = *m.span();
    m.finish(cx);
    let max_age = max_age?;
    if max_age.is_zero() {
        cx.warning(
            &span,
            &format!("{path}.max_age"),
            "`max_age: 0` tells browsers to forget HSTS",
            Some("remove `hsts:` to send no header".into()),
        );
    }
    if preload && (!include_subdomains || max_age < Duration::from_secs(365 * 24 * 3600)) {
        cx.error(
            &span,
            &format!("{path}.preload"),
            "HSTS preload lists require `include_subdomains: true` and a `max_age` of at least 365d",
            None,
        );
        return None;
    }
    Some(Hsts { max_age, include_subdomains, preload })
}

fn certificate(cx: &mut Cx, node: &Node, path: &str) -> Option<CertificateFiles> {
    let mut m = cx.map(node, path)?;
    let cert_file = m.req(cx, "cert_file", "the certificate chain (PEM), leaf first", existing_file);
    let key_file = m.req(cx, "key_file", "the private key (PEM)", |cx, n, p| {
        let f = existing_file(cx, n, p)?;
        if let Some(why) = cx.source.insecure(&f) {
            cx.error(
                n.span(),
                p,
                format!("key file {}: {why}", f.display()),
                Some("make it and its directories writable only by their owner".into()),
            );
            return None;
        }
        if cx.source.file_mode(&f).is_some_and(|mode| mode & 0o004 != 0) {
            cx.warning(
                n.span(),
                p,
                format!("key file {} is readable by every user on this machine", f.display()),
                Some(format!("run `chmod 600 {}`", f.display())),
            );
        }
        Some(f)
    });
    m.finish(cx);
    Some(CertificateFiles { cert_file: cert_file?, key_file: key_file? })
}

fn existing_file(cx: &mut Cx, n: &Node, p: &str) -> Option<PathBuf> {
    let raw = nonempty(cx, n, p)?;
    let f = cx.resolve_path(&raw);
    if !cx.source.exists(&f) {
        cx.error(
            n.span(),
            p,
            format!("{} does not exist", f.display()),
            Some("relative paths are relative to the config file".into()),
        );
        return None;
    }
    Some(f)
}

fn directory(cx: &mut Cx, n: &Node, p: &str) -> Option<AcmeDirectory> {
    let s = nonempty(cx, n, p)?;
    match s.as_str() {
        "letsencrypt" => Some(AcmeDirectory::LetsEncrypt),
        "letsencrypt-staging" => Some(AcmeDirectory::LetsEncryptStaging),
        url if url.starts_with("https://") && url.len() > "https://".len() => Some(AcmeDirectory::Url(url.to_string())),
        other => {
            cx.error(
                n.span(),
                p,
                format!("`{p}` must be `letsencrypt`, `letsencrypt-staging` or an https:// directory URL, found \"{other}\""),
                Some("e.g. `directory: https://acme.example.org/directory`".into()),
            );
            None
        }
    }
}

fn challenge(cx: &mut Cx, n: &Node, p: &str) -> Option<Challenge> {
    super::reader::choice(
        cx,
        n,
        p,
        &[("http-01", Challenge::Http01), ("tls-alpn-01", Challenge::TlsAlpn01), ("webroot", Challenge::Webroot)],
    )
}

fn eab(cx: &mut Cx, node: &Node, path: &str) -> Option<Eab> {
    let mut m = cx.map(node, path)?;
    let kid = m.req(cx, "kid", "the key identifier your CA shows with the MAC key", nonempty);
    let span = *m.span();
    let hmac_key = m.secret(cx, "hmac_key", "hmac_key_file", "hmac_key_env");
    if hmac_key.is_none() && m.first_key_span(&["hmac_key", "hmac_key_file", "hmac_key_env"]).is_none() {
        cx.error(
            &span,
            path,
            format!("`{path}` is missing the required key `hmac_key`"),
            Some("give the CA's MAC key as `hmac_key_file: /etc/caretaker/eab.key` (or `hmac_key_env`)".into()),
        );
    }
    m.finish(cx);
    let hmac_key = hmac_key?;
    let k = hmac_key.expose();
    if !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=') {
        cx.error(&span, &format!("{path}.hmac_key"), "the EAB MAC key must be base64url, as the CA shows it", None);
        return None;
    }
    Some(Eab { kid: kid?, hmac_key })
}

fn acme(cx: &mut Cx, node: &Node, path: &str) -> Option<Acme> {
    let start = cx.error_count();
    let mut m = cx.map(node, path)?;
    let directory = m.opt(cx, "directory", directory).unwrap_or(AcmeDirectory::LetsEncrypt);
    let email = m.opt(cx, "email", |cx, n, p| {
        let e = nonempty(cx, n, p)?;
        let ok = e.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
            && !e.contains(char::is_whitespace)
            && !e.starts_with("mailto:");
        if !ok {
            cx.error(n.span(), p, format!("`{p}` must be an e-mail address, found \"{e}\""), None);
            return None;
        }
        Some(e)
    });
    let ca_file = m.opt(cx, "ca_file", existing_file);
    let challenge = m.opt(cx, "challenge", challenge).unwrap_or(Challenge::Http01);
    let webroot_span = m.first_key_span(&["webroot"]);
    let webroot = m.opt(cx, "webroot", |cx, n, p| nonempty(cx, n, p).map(|s| cx.resolve_path(&s)));
    let reload_span = m.first_key_span(&["reload_command"]);
    let reload_command = m.opt(cx, "reload_command", super::parse::command);
    let eab = m.opt(cx, "eab", eab);
    let max_orders_per_hour = m
        .opt(cx, "max_orders_per_hour", |cx, n, p| bounded(cx, n, p, 1, 300))
        .unwrap_or(DEFAULT_MAX_ORDERS_PER_HOUR as u64) as u32;
    let stuck_after = m.opt(cx, "stuck_after", duration).unwrap_or(DEFAULT_STUCK_AFTER);
    let renew_before = m.opt(cx, "renew_before", duration);
    let span = *m.span();
    m.finish(cx);
    match challenge {
        Challenge::Webroot if webroot.is_none() && cx.error_count() == start => {
            cx.error(
                &span,
                &format!("{path}.webroot"),
                "`challenge: webroot` needs `webroot`, the directory your web server serves as /.well-known/acme-challenge/",
                Some("e.g. `webroot: /var/www/acme` with the nginx snippet docs/nginx/caretaker-acme.conf (docs/certificates.md)".into()),
            );
            return None;
        }
        Challenge::Http01 | Challenge::TlsAlpn01 => {
            for (key, s) in [("webroot", webroot_span), ("reload_command", reload_span)] {
                if let Some(s) = s {
                    cx.error(
                        &s,
                        &format!("{path}.{key}"),
                        format!("`{key}` is for `challenge: webroot`; the front door answers this challenge itself and needs no reload"),
                        Some("remove it, or set `challenge: webroot`".into()),
                    );
                }
            }
        }
        Challenge::Webroot => {}
    }
    if stuck_after < Duration::from_secs(3600) {
        cx.warning(
            &span,
            &format!("{path}.stuck_after"),
            format!(
                "`stuck_after` of {} alerts before a retrying renewal had a fair chance",
                crate::duration::format_duration(stuck_after)
            ),
            Some("a few hours or more, e.g. `stuck_after: 24h`".into()),
        );
    }
    if cx.error_count() != start {
        return None;
    }
    Some(Acme {
        directory,
        email,
        ca_file,
        challenge,
        webroot,
        reload_command,
        eab,
        max_orders_per_hour,
        stuck_after,
        renew_before,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{load, Diagnostics, Loaded, SecretSource};
    use super::*;
    use expect_test::{expect, Expect};
    use std::path::Path;

    /// Files that exist (mode 0600 unless listed with another) and environment variables.
    #[derive(Default)]
    struct Files(Vec<(&'static str, &'static str, u32)>);

    impl SecretSource for Files {
        fn read_file(&self, path: &Path) -> Result<String, String> {
            self.0
                .iter()
                .find(|f| Path::new(f.0) == path)
                .map(|f| f.1.to_string())
                .ok_or("No such file or directory".into())
        }
        fn env_var(&self, _: &str) -> Option<String> {
            None
        }
        fn file_mode(&self, path: &Path) -> Option<u32> {
            self.0.iter().find(|f| Path::new(f.0) == path).map(|f| f.2)
        }
        fn exists(&self, path: &Path) -> bool {
            self.0.iter().any(|f| Path::new(f.0) == path)
        }
    }

    const HEAD: &str =
        "version: 1\napp:\n  name: shop\nfront_door: { listen: \"0.0.0.0:80\", upstream: \"127.0.0.1:8001\" }\n";

    fn load_with(tls: &str, files: &Files) -> Result<Loaded, Diagnostics> {
        load(&format!("{HEAD}{tls}"), Path::new("/etc/caretaker/caretaker.yml"), Some(0o600), files)
    }

    fn check(cases: &[(&str, &str)], expected: Expect) {
        let files = Files(vec![
            ("/etc/caretaker/cert.pem", "", 0o644),
            ("/etc/caretaker/key.pem", "", 0o644),
            ("/etc/caretaker/eab.key", "not base64!\n", 0o600),
        ]);
        let mut out = String::new();
        for (what, text) in cases {
            let diags = match load_with(text, &files) {
                Ok(l) => l.warnings,
                Err(d) => d,
            };
            assert!(!diags.0.is_empty(), "{what}: expected a problem");
            for d in &diags.0 {
                out.push_str(&format!("{what}: {d}\n"));
            }
        }
        expected.assert_eq(&out);
    }

    #[test]
    fn full_section_parses() {
        let files = Files(vec![
            ("/etc/caretaker/pebble.pem", "", 0o644),
            ("/etc/caretaker/eab.key", "c2VjcmV0LWtleQ\n", 0o600),
        ]);
        let text = r#"tls:
  names: [Example.org, www.example.org, 192.0.2.7]
  listen: "0.0.0.0:8443"
  redirect_http: false
  hsts: { max_age: 365d, include_subdomains: true, preload: true }
  acme:
    directory: "https://127.0.0.1:14000/dir"
    email: ops@example.org
    ca_file: pebble.pem
    challenge: http-01
    eab: { kid: kid-1, hmac_key_file: eab.key }
    max_orders_per_hour: 3
    stuck_after: 12h
    renew_before: 10d
"#;
        let loaded = load_with(text, &files).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let cfg = loaded.config;
        let tls = cfg.tls.as_ref().unwrap();
        assert_eq!(tls.names, ["example.org", "www.example.org", "192.0.2.7"]);
        assert_eq!(tls.listen, "0.0.0.0:8443");
        assert!(!tls.redirect_http);
        assert_eq!(tls.hsts.unwrap().header_value(), "max-age=31536000; includeSubDomains; preload");
        let a = tls.acme.as_ref().unwrap();
        assert_eq!(a.directory.url(), "https://127.0.0.1:14000/dir");
        assert_eq!(a.ca_file.as_deref(), Some(Path::new("/etc/caretaker/pebble.pem")));
        assert_eq!(a.challenge, Challenge::Http01);
        assert_eq!(a.max_orders_per_hour, 3);
        assert_eq!(a.stuck_after, Duration::from_secs(12 * 3600));
        assert_eq!(a.renew_before, Some(Duration::from_secs(10 * 86400)));
        let eab = a.eab.as_ref().unwrap();
        assert_eq!((eab.kid.as_str(), eab.hmac_key.expose()), ("kid-1", "c2VjcmV0LWtleQ"));
        // The MAC key is a secret: redacted everywhere, hidden in `config show`.
        assert!(cfg.secrets().iter().any(|s| s.expose() == "c2VjcmV0LWtleQ"));
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(!json.contains("c2VjcmV0LWtleQ"), "{json}");
        assert!(json.contains(r#""hsts":{"max_age":"365d""#), "{json}");
    }

    #[test]
    fn defaults() {
        let cfg = load_with("tls:\n  names: [example.org]\n  acme: {}\n", &Files::default()).unwrap().config;
        let tls = cfg.tls.unwrap();
        assert_eq!(tls.listen, DEFAULT_TLS_LISTEN);
        assert!(tls.redirect_http);
        assert!(tls.hsts.is_none());
        assert!(tls.certificate.is_none());
        let a = tls.acme.unwrap();
        assert_eq!(a.directory, AcmeDirectory::LetsEncrypt);
        assert_eq!(a.directory.url(), LETSENCRYPT_DIRECTORY);
        assert_eq!(a.challenge, Challenge::Http01);
        assert_eq!(a.max_orders_per_hour, DEFAULT_MAX_ORDERS_PER_HOUR);
        assert_eq!(a.stuck_after, DEFAULT_STUCK_AFTER);
        assert_eq!(a.renew_before, None);
        assert!(a.email.is_none() && a.eab.is_none() && a.webroot.is_none());
    }

    #[test]
    fn webroot_mode_needs_no_front_door() {
        let text = "version: 1\napp:\n  name: shop\ntls:\n  names: [example.org]\n  acme:\n    challenge: webroot\n    webroot: /var/www/acme\n    reload_command: systemctl reload nginx\n";
        let cfg = load(text, Path::new("/etc/caretaker/caretaker.yml"), Some(0o600), &Files::default()).unwrap().config;
        let tls = cfg.tls.unwrap();
        assert!(!tls.front_door_terminates());
        let a = tls.acme.unwrap();
        assert_eq!(a.webroot.as_deref(), Some(Path::new("/var/www/acme")));
        assert_eq!(a.reload_command.unwrap().to_string(), "systemctl reload nginx");
    }

    #[test]
    fn manual_certificate_allows_wildcards() {
        let files = Files(vec![("/etc/caretaker/cert.pem", "", 0o644), ("/etc/caretaker/key.pem", "", 0o600)]);
        let text = "tls:\n  names: [\"*.example.org\"]\n  certificate: { cert_file: cert.pem, key_file: key.pem }\n";
        let loaded = load_with(text, &files).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config.tls.unwrap().certificate.unwrap();
        assert_eq!(c.cert_file, Path::new("/etc/caretaker/cert.pem"));
        assert_eq!(c.key_file, Path::new("/etc/caretaker/key.pem"));
    }

    #[test]
    fn rendered_diagnostics() {
        check(
            &[
                ("no names", "tls:\n  acme: {}\n"),
                ("empty names", "tls:\n  names: []\n"),
                ("bad name", "tls:\n  names: [\"https://example.org/\", \"a..b\", \"ex_ample.org\", \"-x.org\", \"ex*.org\", \"bücher.de\", \"1.2.3.999\", \"example.org.\"]\n"),
                ("twice", "tls:\n  names: [example.org, EXAMPLE.org]\n"),
                ("wildcard with acme", "tls:\n  names: [\"*.example.org\"]\n  acme: {}\n"),
                ("both", "tls:\n  names: [example.org]\n  acme: {}\n  certificate: { cert_file: cert.pem, key_file: key.pem }\n"),
                ("neither", "tls:\n  names: [example.org]\n"),
                ("missing files", "tls:\n  names: [example.org]\n  certificate: { cert_file: nope.pem, key_file: /etc/caretaker/key.pem }\n"),
                ("bad directory", "tls:\n  names: [example.org]\n  acme: { directory: lets-encrypt }\n"),
                ("http directory", "tls:\n  names: [example.org]\n  acme: { directory: \"http://ca.example/dir\" }\n"),
                ("bad challenge", "tls:\n  names: [example.org]\n  acme: { challenge: dns-01 }\n"),
                ("webroot without dir", "tls:\n  names: [example.org]\n  acme: { challenge: webroot }\n"),
                ("webroot key with http-01", "tls:\n  names: [example.org]\n  acme: { webroot: /var/www, reload_command: x }\n"),
                ("bad email", "tls:\n  names: [example.org]\n  acme: { email: \"mailto:ops@example.org\" }\n"),
                ("eab without key", "tls:\n  names: [example.org]\n  acme: { eab: { kid: k } }\n"),
                ("eab bad key", "tls:\n  names: [example.org]\n  acme: { eab: { kid: k, hmac_key_file: eab.key } }\n"),
                ("orders", "tls:\n  names: [example.org]\n  acme: { max_orders_per_hour: 0 }\n"),
                ("preload", "tls:\n  names: [example.org]\n  acme: {}\n  hsts: { max_age: 30d, preload: true }\n"),
                ("hsts without max_age", "tls:\n  names: [example.org]\n  acme: {}\n  hsts: { include_subdomains: true }\n"),
                ("same port", "tls:\n  names: [example.org]\n  acme: {}\n  listen: \"0.0.0.0:80\"\n"),
                ("metrics port", "tls:\n  names: [example.org]\n  acme: {}\n  listen: \"127.0.0.1:9720\"\n"),
                ("alpn off 443", "tls:\n  names: [example.org]\n  acme: { challenge: tls-alpn-01 }\n  listen: \"0.0.0.0:8443\"\n"),
                ("unknown key", "tls:\n  names: [example.org]\n  acme: {}\n  redirect: true\n"),
            ],
            expect![[r#"
                no names: /etc/caretaker/caretaker.yml:5:1: error: `tls` is missing the required key `names` (hint: the certificate's names, e.g. `names: [example.org, www.example.org]`)
                empty names: /etc/caretaker/caretaker.yml:6:10: error: `tls.names` is empty; a certificate needs at least one name (hint: e.g. `names: [example.org, www.example.org]`)
                bad name: /etc/caretaker/caretaker.yml:6:11: error: `https://example.org/` is not a valid certificate name: it contains `:`: names hold letters, digits, `-` and `.`; no scheme, port or path
                bad name: /etc/caretaker/caretaker.yml:6:35: error: `a..b` is not a valid certificate name: it has an empty label (two dots in a row, or a leading dot)
                bad name: /etc/caretaker/caretaker.yml:6:43: error: `ex_ample.org` is not a valid certificate name: it contains `_`: names hold letters, digits, `-` and `.`; no scheme, port or path
                bad name: /etc/caretaker/caretaker.yml:6:59: error: `-x.org` is not a valid certificate name: it has a label that starts or ends with `-` (`-x`)
                bad name: /etc/caretaker/caretaker.yml:6:69: error: `ex*.org` is not a valid certificate name: it contains `*`: a wildcard must be the whole first label, as in `*.example.org`
                bad name: /etc/caretaker/caretaker.yml:6:80: error: `bücher.de` is not a valid certificate name: it contains `ü`: write international names in their ASCII form (`xn--...`, punycode)
                bad name: /etc/caretaker/caretaker.yml:6:93: error: `1.2.3.999` is not a valid certificate name: it looks like an IP address but is not one
                bad name: /etc/caretaker/caretaker.yml:6:106: error: `example.org.` is not a valid certificate name: it ends with a dot; write the name without it
                twice: /etc/caretaker/caretaker.yml:6:24: error: `example.org` is listed twice (hint: remove one of them)
                wildcard with acme: /etc/caretaker/caretaker.yml:7:3: error: `*.example.org` is a wildcard name; ACME issues wildcards only through the DNS-01 challenge, which caretaker does not do (hint: list each name instead (e.g. `www.example.org`), or get the wildcard certificate elsewhere and give it as `certificate:`)
                both: /etc/caretaker/caretaker.yml:7:3: error: `tls` has both a manual `certificate` and `acme`; use one (hint: with `certificate:`, you renew the files yourself; with `acme:`, caretaker does)
                both: /etc/caretaker/caretaker.yml:8:49: warning: key file /etc/caretaker/key.pem is readable by every user on this machine (hint: run `chmod 600 /etc/caretaker/key.pem`)
                neither: /etc/caretaker/caretaker.yml:5:1: warning: `tls` has neither `certificate` nor `acme`: the front door serves a self-signed certificate, which browsers refuse (hint: add `acme: { email: you@example.org }` for Let's Encrypt, or `certificate: { cert_file: ..., key_file: ... }`)
                missing files: /etc/caretaker/caretaker.yml:7:29: error: /etc/caretaker/nope.pem does not exist (hint: relative paths are relative to the config file)
                missing files: /etc/caretaker/caretaker.yml:7:49: warning: key file /etc/caretaker/key.pem is readable by every user on this machine (hint: run `chmod 600 /etc/caretaker/key.pem`)
                bad directory: /etc/caretaker/caretaker.yml:7:22: error: `tls.acme.directory` must be `letsencrypt`, `letsencrypt-staging` or an https:// directory URL, found "lets-encrypt" (hint: e.g. `directory: https://acme.example.org/directory`)
                http directory: /etc/caretaker/caretaker.yml:7:22: error: `tls.acme.directory` must be `letsencrypt`, `letsencrypt-staging` or an https:// directory URL, found "http://ca.example/dir" (hint: e.g. `directory: https://acme.example.org/directory`)
                bad challenge: /etc/caretaker/caretaker.yml:7:22: error: `tls.acme.challenge` has an unknown value "dns-01" (hint: use one of: http-01, tls-alpn-01, webroot)
                webroot without dir: /etc/caretaker/caretaker.yml:7:3: error: `challenge: webroot` needs `webroot`, the directory your web server serves as /.well-known/acme-challenge/ (hint: e.g. `webroot: /var/www/acme` with the nginx snippet docs/nginx/caretaker-acme.conf (docs/certificates.md))
                webroot key with http-01: /etc/caretaker/caretaker.yml:7:11: error: `webroot` is for `challenge: webroot`; the front door answers this challenge itself and needs no reload (hint: remove it, or set `challenge: webroot`)
                webroot key with http-01: /etc/caretaker/caretaker.yml:7:30: error: `reload_command` is for `challenge: webroot`; the front door answers this challenge itself and needs no reload (hint: remove it, or set `challenge: webroot`)
                bad email: /etc/caretaker/caretaker.yml:7:18: error: `tls.acme.email` must be an e-mail address, found "mailto:ops@example.org"
                eab without key: /etc/caretaker/caretaker.yml:7:11: error: `tls.acme.eab` is missing the required key `hmac_key` (hint: give the CA's MAC key as `hmac_key_file: /etc/caretaker/eab.key` (or `hmac_key_env`))
                eab bad key: /etc/caretaker/caretaker.yml:7:11: error: the EAB MAC key must be base64url, as the CA shows it
                orders: /etc/caretaker/caretaker.yml:7:32: error: `tls.acme.max_orders_per_hour` must be between 1 and 300, found 0
                preload: /etc/caretaker/caretaker.yml:8:3: error: HSTS preload lists require `include_subdomains: true` and a `max_age` of at least 365d
                hsts without max_age: /etc/caretaker/caretaker.yml:8:3: error: `tls.hsts` is missing the required key `max_age` (hint: e.g. `max_age: 365d` (browsers remember HTTPS-only this long))
                same port: /etc/caretaker/caretaker.yml:5:1: error: `tls.listen` and `front_door.listen` are both 0.0.0.0:80 (hint: plain HTTP and HTTPS need two ports, e.g. `front_door.listen: "0.0.0.0:80"` and `tls.listen: "0.0.0.0:443"`)
                metrics port: /etc/caretaker/caretaker.yml:5:1: error: `tls.listen` and `http.listen` are both 127.0.0.1:9720 (hint: the daemon's metrics listener needs a port of its own)
                alpn off 443: /etc/caretaker/caretaker.yml:5:1: warning: `challenge: tls-alpn-01` is validated on port 443, but the front door listens on 0.0.0.0:8443 (hint: the CA must reach this listener on port 443 (a port forward), or use `challenge: http-01`)
                unknown key: /etc/caretaker/caretaker.yml:8:3: error: unknown key `redirect` in `tls` (hint: did you mean `redirect_http`?)
            "#]],
        );
    }

    #[test]
    fn tls_needs_the_front_door() {
        let text = "version: 1\napp:\n  name: shop\ntls:\n  names: [example.org]\n  acme: {}\n";
        let d = load(text, Path::new("/c/caretaker.yml"), Some(0o600), &Files::default()).unwrap_err();
        let out: Vec<String> = d.0.iter().map(|d| d.to_string()).collect();
        expect![[r#"/c/caretaker.yml:4:1: error: `tls` is served by the front door, but there is no `front_door` section (hint: add `front_door: { listen: "0.0.0.0:80", upstream: "127.0.0.1:8001" }`, or use `acme.challenge: webroot` with your own web server)"#]].assert_eq(&out.join("\n"));
    }
}
