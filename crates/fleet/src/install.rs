//! `caretaker fleet install HOST`: puts caretaker on a server that lacks it (or has an older
//! one): the binary for the server's architecture, checksum-verified after the copy, and a
//! systemd unit; then checks that `caretaker --version` on the server is the one copied.

use crate::inventory::Server;
use crate::ssh::Ssh;
use crate::{Error, ErrorKind, Result};
use sha2::{Digest as _, Sha256};
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

pub struct InstallOptions<'a> {
    /// The binary to copy (the running caretaker, or one built for the server's architecture).
    pub binary: &'a Path,
    /// Its architecture as `uname -m` prints it.
    pub binary_arch: &'a str,
    /// Where it goes on the server.
    pub dest: &'a str,
    /// Where the systemd unit goes (`None`: no unit).
    pub unit_dir: Option<&'a str>,
    /// What `--version` must print (the copied binary's version line).
    pub version: &'a str,
}

#[derive(Debug, serde::Serialize)]
pub struct Installed {
    pub server: String,
    pub arch: String,
    pub sha256: String,
    pub dest: String,
    pub unit: Option<String>,
    pub version: String,
    /// Whether the server had this very binary already (nothing copied).
    pub unchanged: bool,
}

pub fn sha256_file(p: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(p).map_err(|e| Error::new(ErrorKind::Io, format!("cannot read {}: {e}", p.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::new(ErrorKind::Io, format!("cannot read {}: {e}", p.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The unit that runs the server's caretaker daemon (its config at the default place).
pub fn unit_text(dest: &str) -> String {
    format!(
        "# Installed by `caretaker fleet install` (docs/fleet.md).\n[Unit]\nDescription=caretaker\nAfter=network-online.target\nWants=network-online.target\n\
         ConditionPathExists=/etc/caretaker/caretaker.yml\n\n[Service]\nType=simple\nExecStart={dest} --config /etc/caretaker/caretaker.yml daemon\n\
         Restart=on-failure\nRestartSec=5\n\n[Install]\nWantedBy=multi-user.target\n"
    )
}

fn sh(ssh: &Ssh, server: &Server, script: &str, stdin: Option<&Path>) -> Result<String> {
    let mut out = String::new();
    let e = ssh.exec(
        server,
        &["sh".to_string(), "-c".to_string(), script.to_string()],
        stdin,
        Duration::from_secs(600),
        |l| {
            out.push_str(l);
            out.push('\n');
        },
    )?;
    if e.code != Some(0) {
        return Err(Error::new(
            ErrorKind::Remote,
            format!("{}: `{script}` failed ({})", server.name, e.stderr.trim().lines().last().unwrap_or("no message")),
        ));
    }
    Ok(out)
}

pub fn install(ssh: &Ssh, server: &Server, o: &InstallOptions<'_>) -> Result<Installed> {
    use crate::ssh::shell_quote as q;
    ssh.connect(server, ssh.connect_timeout * 2 + crate::run::HANDSHAKE_GRACE)?;
    let arch = sh(ssh, server, "uname -m", None)?.trim().to_string();
    if arch != o.binary_arch {
        return Err(Error::new(
            ErrorKind::Remote,
            format!("{} is {arch}, the binary {} is for {}", server.name, o.binary.display(), o.binary_arch),
        )
        .hint(format!(
            "give a caretaker built for {arch}: `caretaker fleet install {} --binary FILE --arch {arch}`",
            server.name
        )));
    }
    let sum = sha256_file(o.binary)?;
    let have = sh(ssh, server, &format!("sha256sum {} 2>/dev/null || true", q(o.dest)), None)?;
    let unchanged = have.split_whitespace().next() == Some(sum.as_str());
    if !unchanged {
        let dir = Path::new(o.dest).parent().map(|p| p.display().to_string()).unwrap_or_else(|| ".".into());
        let tmp = format!("{}.caretaker-new-{}", o.dest, std::process::id());
        sh(ssh, server, &format!("mkdir -p {} && umask 022 && cat > {}", q(&dir), q(&tmp)), Some(o.binary))?;
        let got = sh(ssh, server, &format!("sha256sum {}", q(&tmp)), None)?;
        if got.split_whitespace().next() != Some(sum.as_str()) {
            let _ = sh(ssh, server, &format!("rm -f {}", q(&tmp)), None);
            return Err(Error::new(
                ErrorKind::Remote,
                format!(
                    "{}: the copied binary's SHA-256 does not match ({sum}): removed, nothing installed",
                    server.name
                ),
            ));
        }
        sh(ssh, server, &format!("chmod 755 {t} && mv -f {t} {d}", t = q(&tmp), d = q(o.dest)), None)?;
    }
    let unit = match o.unit_dir {
        Some(dir) => {
            let path = format!("{}/caretaker.service", dir.trim_end_matches('/'));
            let tmp = std::env::temp_dir().join(format!("caretaker-unit-{}", std::process::id()));
            std::fs::write(&tmp, unit_text(o.dest))
                .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", tmp.display())))?;
            let r = sh(
                ssh,
                server,
                &format!(
                    "mkdir -p {d} && cat > {p}.tmp && mv -f {p}.tmp {p} && if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then systemctl daemon-reload; fi",
                    d = q(dir),
                    p = q(&path)
                ),
                Some(&tmp),
            );
            let _ = std::fs::remove_file(&tmp);
            r?;
            Some(path)
        }
        None => None,
    };
    let version = sh(ssh, server, &format!("{} --version", q(o.dest)), None)?.trim().to_string();
    if !version.contains(o.version) {
        return Err(Error::new(
            ErrorKind::Remote,
            format!("{}: `{} --version` says `{version}`, expected `{}`", server.name, o.dest, o.version),
        ));
    }
    Ok(Installed { server: server.name.clone(), arch, sha256: sum, dest: o.dest.to_string(), unit, version, unchanged })
}
