//! The cloud-init NoCloud seed: `user-data` and `meta-data` (pure text), written to a directory
//! or to an ISO 9660 image labelled `cidata` by `xorriso` or `genisoimage` (docs/decisions.md:
//! no well-kept pure-Rust ISO writer exists, and an ISO writer of our own would be more code to
//! keep correct than this feature is worth).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the binary comes from on first boot.
#[derive(Debug, Clone)]
pub enum Binary {
    /// Downloaded with curl, optionally checked against a SHA-256 (hex).
    Url { url: String, sha256: Option<String> },
    /// The bytes of the binary, carried inside the user-data.
    File(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Seed {
    pub app: String,
    pub config: Vec<u8>,
    /// Where the config is written on the new machine.
    pub config_path: String,
    pub binary: Binary,
    /// Run `caretaker recover` before starting the app.
    pub recover: bool,
    /// The instance's hostname (meta-data `local-hostname`), if any.
    pub hostname: Option<String>,
}

const BIN: &str = "/usr/local/bin/caretaker";

/// YAML single-quoted scalar.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn cmd(args: &[&str]) -> String {
    format!("  - [{}]\n", args.iter().map(|a| q(a)).collect::<Vec<_>>().join(", "))
}

/// The `#cloud-config` user-data.
pub fn user_data(seed: &Seed) -> String {
    let mut s = String::from("#cloud-config\n# Written by `caretaker config cloud-init`. It holds every secret of the app: keep it private.\n");
    s.push_str("write_files:\n");
    s.push_str(&format!(
        "  - path: {}\n    owner: 'root:root'\n    permissions: '0600'\n    encoding: b64\n    content: {}\n",
        q(&seed.config_path),
        B64.encode(&seed.config)
    ));
    if let Binary::File(bytes) = &seed.binary {
        s.push_str(&format!(
            "  - path: {}\n    owner: 'root:root'\n    permissions: '0755'\n    encoding: b64\n    content: {}\n",
            q(BIN),
            B64.encode(bytes)
        ));
    }
    s.push_str("runcmd:\n");
    if let Binary::Url { url, sha256 } = &seed.binary {
        let tmp = format!("{BIN}.download");
        s.push_str(&cmd(&["curl", "-fsSL", "--retry", "5", "-o", &tmp, url]));
        if let Some(h) = sha256 {
            s.push_str(&cmd(&["sh", "-c", &format!("echo '{h}  {tmp}' | sha256sum -c -")]));
        }
        s.push_str(&cmd(&["chmod", "0755", &tmp]));
        s.push_str(&cmd(&["mv", &tmp, BIN]));
    }
    let c = seed.config_path.as_str();
    s.push_str(&cmd(&[BIN, "--config", c, "install-systemd"]));
    s.push_str(&cmd(&["systemctl", "daemon-reload"]));
    if seed.recover {
        s.push_str(&cmd(&[BIN, "--config", c, "recover"]));
    }
    let unit = format!("caretaker-{}.service", seed.app);
    s.push_str(&cmd(&["systemctl", "enable", "--now", &unit]));
    s.push_str(&cmd(&[BIN, "--config", c, "up"]));
    s
}

/// The NoCloud `meta-data`.
pub fn meta_data(seed: &Seed) -> String {
    let mut s = format!("instance-id: {}\n", q(&format!("caretaker-{}", seed.app)));
    if let Some(h) = &seed.hostname {
        s.push_str(&format!("local-hostname: {}\n", q(h)));
    }
    s
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("writing {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("neither xorriso nor genisoimage was found to write the ISO image")]
    NoIsoTool,
    #[error("{tool} failed: {reason}")]
    IsoTool { tool: String, reason: String },
}

fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<(), SeedError> {
    let err = |e: std::io::Error| SeedError::Write { path: path.into(), reason: e.to_string() };
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut f = o.open(path).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Writes `user-data` and `meta-data` (0600) into `dir`, which must exist.
pub fn write_dir(seed: &Seed, dir: &Path, force: bool) -> Result<(), SeedError> {
    write_private(&dir.join("user-data"), user_data(seed).as_bytes(), force)?;
    write_private(&dir.join("meta-data"), meta_data(seed).as_bytes(), force)
}

/// The ISO tools tried in order, with the arguments that make a Joliet+Rock Ridge image
/// labelled `cidata` from a directory.
fn iso_tools() -> [(&'static str, &'static [&'static str]); 2] {
    [("xorriso", &["-as", "mkisofs"]), ("genisoimage", &[])]
}

/// Writes the seed as an ISO 9660 image labelled `cidata` (mode 0600). `out` must not exist
/// unless `force`.
pub fn write_iso(seed: &Seed, out: &Path, force: bool) -> Result<&'static str, SeedError> {
    let tool = iso_tools().into_iter().find(|(t, _)| which(t)).ok_or(SeedError::NoIsoTool)?;
    let dir_parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp =
        tempdir_in(dir_parent).map_err(|e| SeedError::Write { path: dir_parent.into(), reason: e.to_string() })?;
    let result = (|| {
        let files = tmp.join("files");
        std::fs::create_dir(&files).map_err(|e| SeedError::Write { path: files.clone(), reason: e.to_string() })?;
        write_dir(seed, &files, false)?;
        let iso = tmp.join("seed.iso");
        // The image is created inside the private temporary directory, then moved into place.
        let output = Command::new(tool.0)
            .args(tool.1)
            .args(["-quiet", "-o"])
            .arg(&iso)
            .args(["-V", "cidata", "-J", "-R"])
            .arg(&files)
            .output()
            .map_err(|e| SeedError::IsoTool { tool: tool.0.into(), reason: e.to_string() })?;
        if !output.status.success() {
            return Err(SeedError::IsoTool {
                tool: tool.0.into(),
                reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        let bytes = std::fs::read(&iso).map_err(|e| SeedError::Write { path: iso.clone(), reason: e.to_string() })?;
        write_private(out, &bytes, force)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|_| tool.0)
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false)
}

/// A 0700 directory next to the output (same filesystem), removed by the caller.
fn tempdir_in(parent: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    for i in 0..100u32 {
        let p = parent.join(format!(".caretaker-seed-{}-{i}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary directory name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_writes_the_config_private_and_recovers_before_starting() {
        let seed = Seed {
            app: "shop".into(),
            config: b"app:\n  name: shop\n".to_vec(),
            config_path: "/etc/caretaker/caretaker.yml".into(),
            binary: Binary::Url { url: "https://example.org/it's/caretaker".into(), sha256: Some("ab".repeat(32)) },
            recover: true,
            hostname: None,
        };
        let u = user_data(&seed);
        assert!(u.starts_with("#cloud-config\n"));
        assert!(u.contains("permissions: '0600'"));
        assert!(u.contains(&B64.encode(&seed.config)));
        assert!(u.contains("'https://example.org/it''s/caretaker'"));
        let recover = u.find("'recover'").unwrap();
        let enable = u.find("'enable'").unwrap();
        let up = u.find("'up'").unwrap();
        assert!(recover < enable && enable < up);
        let no = user_data(&Seed { recover: false, ..seed });
        assert!(!no.contains("'recover'"));
    }
}
