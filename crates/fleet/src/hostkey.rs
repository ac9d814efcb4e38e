//! Host keys as the operator compares them: SHA256 and MD5 fingerprints in the forms
//! `ssh-keygen -l` prints (runbook 003 shows both), and known_hosts lines to record. Pure.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use md5::Md5;
use sha2::{Digest as _, Sha256};

/// One public host key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HostKey {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, ...
    pub key_type: String,
    /// The key blob, base64 as in known_hosts.
    pub base64: String,
    pub bits: u32,
    pub sha256: String,
    pub md5: String,
}

impl HostKey {
    /// From a key type and its base64 blob; `None` when the blob is not base64.
    pub fn new(key_type: &str, b64: &str) -> Option<HostKey> {
        let blob = STANDARD.decode(b64).ok()?;
        let sha = Sha256::digest(&blob);
        let md = Md5::digest(&blob);
        Some(HostKey {
            key_type: key_type.to_string(),
            base64: b64.to_string(),
            bits: bits(key_type, &blob),
            sha256: format!("SHA256:{}", STANDARD_NO_PAD.encode(&sha[..])),
            md5: format!("MD5:{}", md.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")),
        })
    }

    /// `ED25519`, `ECDSA`, `RSA`, `DSA`: the name `ssh-keygen -l` shows in parentheses.
    pub fn short_type(&self) -> &'static str {
        match self.key_type.as_str() {
            "ssh-ed25519" => "ED25519",
            "ssh-rsa" | "rsa-sha2-256" | "rsa-sha2-512" => "RSA",
            "ssh-dss" => "DSA",
            t if t.starts_with("ecdsa-") => "ECDSA",
            t if t.starts_with("sk-ssh-ed25519") => "ED25519-SK",
            t if t.starts_with("sk-ecdsa") => "ECDSA-SK",
            _ => "UNKNOWN",
        }
    }

    /// The two lines an operator compares, as `ssh-keygen -l` and `ssh-keygen -E md5 -l` print them.
    pub fn fingerprint_lines(&self, name: &str) -> [String; 2] {
        [
            format!("{} {} {name} ({})", self.bits, self.sha256, self.short_type()),
            format!("{} {} {name} ({})", self.bits, self.md5, self.short_type()),
        ]
    }

    /// The known_hosts line recording this key for `name` (`host` or `[host]:port`).
    pub fn known_hosts_line(&self, name: &str) -> String {
        format!("{name} {} {}", self.key_type, self.base64)
    }
}

/// Keys from known_hosts-format lines (`name type base64 [comment]`, also `ssh-keyscan`
/// output), skipping comments, markers (`@revoked`) and lines that do not parse.
pub fn parse_known_hosts(text: &str) -> Vec<(String, HostKey)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with('@') {
                return None;
            }
            let mut w = l.split_whitespace();
            let name = w.next()?;
            let t = w.next()?;
            let b = w.next()?;
            Some((name.to_string(), HostKey::new(t, b)?))
        })
        .collect()
}

/// The bit size `ssh-keygen -l` shows: from the RSA modulus, the ECDSA curve, 256 for Ed25519.
fn bits(key_type: &str, blob: &[u8]) -> u32 {
    match key_type {
        "ssh-ed25519" => 256,
        "ecdsa-sha2-nistp256" => 256,
        "ecdsa-sha2-nistp384" => 384,
        "ecdsa-sha2-nistp521" => 521,
        "ssh-rsa" | "ssh-dss" => {
            // string type, mpint e, mpint n (RSA) / mpint p (DSA): the second / first mpint.
            let mut parts = Vec::new();
            let mut rest = blob;
            while rest.len() >= 4 && parts.len() < 3 {
                let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if rest.len() < 4 + n {
                    break;
                }
                parts.push(&rest[4..4 + n]);
                rest = &rest[4 + n..];
            }
            let m = if key_type == "ssh-rsa" { parts.get(2) } else { parts.get(1) };
            m.map(|m| {
                let m: &[u8] = m;
                let first = m.iter().position(|b| *b != 0).unwrap_or(m.len());
                let m = &m[first..];
                m.first().map_or(0, |b| (m.len() as u32 - 1) * 8 + (8 - b.leading_zeros()))
            })
            .unwrap_or(0)
        }
        _ => 0,
    }
}

/// The fingerprint line ssh printed about a changed key
/// (`The fingerprint for the ED25519 key sent by the remote host is\nSHA256:...`).
pub fn fingerprint_in_ssh_message(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    while let Some(l) = lines.next() {
        if l.contains("key sent by the remote host is") {
            let kind = l.split("for the ").nth(1).and_then(|r| r.split(" key").next()).unwrap_or("");
            let fp = lines.next()?.trim().to_string();
            return Some(format!("{fp} ({kind})"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // An Ed25519 public key blob (the comparison with `ssh-keygen -l` itself is in
    // tests/fleet.rs, which has ssh-keygen).
    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOwcgDOL4HPBsmbRLd5x1kRfn9Bnzv7l5uS8tiR1QhP0";

    #[test]
    fn fingerprint_forms() {
        let k = HostKey::new("ssh-ed25519", ED).unwrap();
        assert_eq!(k.bits, 256);
        assert!(k.sha256.starts_with("SHA256:") && !k.sha256.ends_with('='));
        assert_eq!(k.md5.len(), "MD5:".len() + 16 * 3 - 1);
        let [a, b] = k.fingerprint_lines("[h]:2222");
        assert!(a.ends_with("[h]:2222 (ED25519)") && a.starts_with("256 SHA256:"), "{a}");
        assert!(b.starts_with("256 MD5:"), "{b}");
        assert_eq!(k.known_hosts_line("h"), format!("h ssh-ed25519 {ED}"));
        assert!(HostKey::new("ssh-ed25519", "not base64!").is_none());
    }

    #[test]
    fn reads_known_hosts_and_keyscan_output() {
        let text = format!(
            "# 127.0.0.1:22 SSH-2.0-OpenSSH_9.2\n[h]:2222 ssh-ed25519 {ED}\n@revoked x ssh-ed25519 {ED}\nbroken line\n"
        );
        let keys = parse_known_hosts(&text);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].0, "[h]:2222");
    }

    #[test]
    fn finds_the_fingerprint_ssh_printed() {
        let msg = "@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nThe fingerprint for the ED25519 key sent by the remote host is\nSHA256:abc.\nPlease contact";
        assert_eq!(fingerprint_in_ssh_message(msg).unwrap(), "SHA256:abc. (ED25519)");
    }
}
