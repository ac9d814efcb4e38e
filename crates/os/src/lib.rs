//! caretaker's operating system maintenance adapter (docs/os.md): the package manager behind
//! the small [`PackageManager`] trait (apt now, dnf can follow) and the host's reboot facts
//! ([`host`]: boot id, boot time, reboot-required, kernels, needrestart, last update).
//!
//! What to upgrade, whether the app must stop and whether the machine may reboot are decided
//! in `caretaker_core::os`; this crate only observes and acts.
//!
//! Test-only switches (never set them on a real machine):
//! - `CARETAKER_OS_CHROOT=<dir>`: run every package tool inside `chroot <dir>` and read the
//!   host files (reboot-required, dpkg log, /boot) under `<dir>`;
//! - `CARETAKER_OS_BOOT_ID_FILE=<file>`: read the boot id from `<file>` instead of
//!   `/proc/sys/kernel/random/boot_id`.

pub mod apt;
pub mod host;
pub mod parse;

use caretaker_core::os::Upgradable;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use apt::Apt;
pub use host::{HostFacts, System};
pub use parse::{KeptConffile, NeedRestart};

#[derive(Debug, thiserror::Error)]
pub enum OsError {
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{what} failed ({status}):\n{output}")]
    Failed { what: String, status: String, output: String },
    #[error("dpkg was interrupted and is in an inconsistent state; packages: {}", .packages.join(", "))]
    Interrupted { packages: Vec<String>, output: String },
    #[error("the package database has broken dependencies:\n{output}")]
    Broken { output: String },
    #[error("no supported package manager found (apt-get)")]
    Unsupported,
}

/// What the package manager knows about pending updates.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PackageStatus {
    /// Everything with a newer candidate (held and kept-back packages included).
    pub upgradable: Vec<Upgradable>,
    /// Held by the package manager (`apt-mark showhold`).
    pub held: Vec<String>,
    /// Not upgraded by a plain upgrade because they need new packages or removals.
    pub kept_back: Vec<String>,
    /// Packages `dpkg --audit` finds half-installed or half-configured.
    pub interrupted: Vec<String>,
}

/// Options of an upgrade run.
#[derive(Clone, Debug)]
pub struct UpgradeOptions {
    /// How long to wait for the dpkg lock held by someone else.
    pub lock_timeout: Duration,
}

/// What an upgrade did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpgradeReport {
    pub upgraded: Vec<String>,
    /// Conffiles the admin had edited and the package changed: the old one was kept, the new
    /// one saved as `<path>.dpkg-dist`. The update fails on these so someone merges them.
    pub conffiles_kept: Vec<KeptConffile>,
}

/// A package manager: observing pending updates and applying a chosen set.
pub trait PackageManager {
    fn name(&self) -> &'static str;
    /// Refreshes the package lists (`apt-get update`).
    fn refresh(&self, log: &mut dyn FnMut(&str)) -> Result<(), OsError>;
    fn status(&self) -> Result<PackageStatus, OsError>;
    /// Everything an upgrade of `packages` would change (names, new packages included).
    fn simulate(&self, packages: &[String]) -> Result<Vec<String>, OsError>;
    /// Fails with [`OsError::Interrupted`] or [`OsError::Broken`] when the package database
    /// is not in a state to upgrade from.
    fn preflight(&self) -> Result<(), OsError>;
    /// Upgrades exactly `packages`, non-interactively.
    fn upgrade(
        &self,
        packages: &[String],
        opts: &UpgradeOptions,
        log: &mut dyn FnMut(&str),
    ) -> Result<UpgradeReport, OsError>;
}

/// The package manager of this machine (or of the test chroot).
pub fn detect(system: &System) -> Result<Box<dyn PackageManager>, OsError> {
    if system.path("/usr/bin/apt-get").exists() {
        Ok(Box::new(Apt::new(system.clone())))
    } else {
        Err(OsError::Unsupported)
    }
}

/// Runs a program on the host or inside the test chroot, with stdin closed so no prompt can
/// wait for an answer.
pub(crate) fn run(
    root: Option<&Path>,
    argv: &[&str],
    env: &[(&str, &str)],
) -> Result<(std::process::ExitStatus, String), OsError> {
    let mut cmd = match root {
        Some(r) => {
            let mut c = Command::new("chroot");
            c.arg(r).args(argv);
            c
        }
        None => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.stdin(Stdio::null()).env("LC_ALL", "C.UTF-8").env("LANG", "C.UTF-8");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(|source| OsError::Spawn { program: argv[0].to_string(), source })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&err);
    }
    Ok((out.status, text))
}

pub(crate) fn status_text(s: std::process::ExitStatus) -> String {
    match s.code() {
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".into(),
    }
}

/// A path inside `root`, following symlinks the way the chroot would (an absolute link
/// target stays inside `root`), so `/var/run → /run` in the test chroot does not lead to the
/// host's `/run`.
pub(crate) fn in_root(root: Option<&Path>, path: &str) -> PathBuf {
    let Some(root) = root else { return PathBuf::from(path) };
    let mut cur = root.to_path_buf();
    let mut parts: Vec<String> = path.split('/').filter(|p| !p.is_empty()).map(String::from).rev().collect();
    let mut hops = 0;
    while let Some(p) = parts.pop() {
        if p == ".." {
            if cur != root {
                cur.pop();
            }
            continue;
        }
        let next = cur.join(&p);
        match std::fs::read_link(&next) {
            Ok(target) if hops < 40 => {
                hops += 1;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    cur = root.to_path_buf();
                }
                parts.extend(t.split('/').filter(|x| !x.is_empty()).map(String::from).rev());
            }
            _ => cur = next,
        }
    }
    cur
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_in_root_follow_links_inside_it() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        std::fs::write(root.join("run/reboot-required"), "").unwrap();
        let p = super::in_root(Some(root), "/var/run/reboot-required");
        assert_eq!(p, root.join("run/reboot-required"));
        assert!(p.exists());
        assert_eq!(super::in_root(None, "/var/run/x"), std::path::PathBuf::from("/var/run/x"));
    }
}
