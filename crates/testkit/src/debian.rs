//! A throwaway Debian for the OS-maintenance tests: the cached minimal root file system of
//! `scripts/debian-rootfs` unpacked into a temporary directory (used as a chroot), and a
//! local apt repository of tiny packages built with `dpkg-deb`, reached through a
//! `[trusted=yes] file:` source — no network.
//!
//! Needs root (chroot) and `dpkg-deb`; [`TestChroot::new`] skips loudly otherwise (and fails
//! under CI, like [`crate::require_service`]).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small package: a name, a version, optional dependency, conffile and postinst.
#[derive(Clone, Debug, Default)]
pub struct TestPackage {
    pub name: &'static str,
    pub version: &'static str,
    pub depends: Option<&'static str>,
    /// (path, contents) of a conffile.
    pub conffile: Option<(&'static str, &'static str)>,
    /// A shell script run as the package's postinst.
    pub postinst: Option<&'static str>,
}

impl TestPackage {
    pub fn new(name: &'static str, version: &'static str) -> TestPackage {
        TestPackage { name, version, ..Default::default() }
    }
}

/// An unpacked Debian root, removed on drop.
pub struct TestChroot {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

fn skip(why: &str) -> Option<TestChroot> {
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl TestChroot {
    /// Unpacks the cached root file system (building it first if needed: minutes, once).
    pub fn new() -> Option<TestChroot> {
        // SAFETY-free check for root: chroot needs it.
        let uid = sh(Command::new("id").arg("-u"));
        if uid.trim() != "0" {
            return skip("the OS-maintenance tests need root (chroot)");
        }
        if Command::new("dpkg-deb").arg("--version").output().is_err() {
            return skip("dpkg-deb is not installed (scripts/install-deps)");
        }
        let tarball = sh(&mut Command::new(repo_root().join("scripts/debian-rootfs")));
        let tarball = tarball.lines().last().unwrap_or_default().trim().to_string();
        let dir = tempfile::Builder::new().prefix("caretaker-chroot-").tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        sh(Command::new("tar").arg("-C").arg(&root).arg("-xf").arg(&tarball));
        // No network: only the test's own repositories.
        fs::write(root.join("etc/apt/sources.list"), "").unwrap();
        let _ = fs::remove_dir_all(root.join("etc/apt/sources.list.d"));
        fs::create_dir_all(root.join("etc/apt/sources.list.d")).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Some(TestChroot { _dir: dir, root })
    }

    /// Runs a shell line inside the chroot; panics with the output on failure.
    pub fn run(&self, line: &str) -> String {
        sh(Command::new("chroot")
            .arg(&self.root)
            .args(["/bin/sh", "-c", line])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    }

    /// Builds a flat apt repository of `packages` at `/srv/repo/<name>` inside the chroot,
    /// with `origin` as its Origin and Label and `suite` as its Suite, and adds it as a
    /// trusted `file:` source.
    pub fn add_repo(&self, name: &str, origin: &str, suite: &str, packages: &[TestPackage]) {
        let repo = self.root.join("srv/repo").join(name);
        fs::create_dir_all(&repo).unwrap();
        let build = tempfile::tempdir().unwrap();
        let mut index = String::new();
        for p in packages {
            let deb = build_deb(build.path(), p, &repo);
            let control = sh(Command::new("dpkg-deb").arg("-f").arg(&deb));
            let bytes = fs::read(&deb).unwrap();
            let sha = sh(Command::new("sha256sum").arg(&deb));
            let sha = sha.split_whitespace().next().unwrap();
            let file = deb.file_name().unwrap().to_string_lossy();
            let _ = write!(
                index,
                "{}Filename: ./{file}\nSize: {}\nSHA256: {sha}\n\n",
                control.trim_end().to_string() + "\n",
                bytes.len()
            );
        }
        fs::write(repo.join("Packages"), &index).unwrap();
        let pk = repo.join("Packages");
        let sha = sh(Command::new("sha256sum").arg(&pk));
        let sha = sha.split_whitespace().next().unwrap();
        let release = format!(
            "Origin: {origin}\nLabel: {origin}\nSuite: {suite}\nCodename: {suite}\nDate: Sat, 01 Jan 2000 00:00:00 UTC\nArchitectures: all amd64 arm64\nSHA256:\n {sha} {} Packages\n",
            index.len()
        );
        fs::write(repo.join("Release"), release).unwrap();
        sh(Command::new("chmod").args(["-R", "a+rX"]).arg(self.root.join("srv")));
        fs::write(
            self.root.join(format!("etc/apt/sources.list.d/{name}.list")),
            format!("deb [trusted=yes] file:/srv/repo/{name} ./\n"),
        )
        .unwrap();
    }
}

fn build_deb(build: &Path, p: &TestPackage, out_dir: &Path) -> PathBuf {
    let dir = build.join(format!("{}_{}", p.name, p.version));
    let debian = dir.join("DEBIAN");
    fs::create_dir_all(&debian).unwrap();
    let mut control = format!(
        "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: caretaker tests <tests@example.invalid>\nPriority: optional\nSection: misc\nDescription: caretaker test package {}\n",
        p.name, p.version, p.name
    );
    if let Some(d) = p.depends {
        control.push_str(&format!("Depends: {d}\n"));
    }
    fs::write(debian.join("control"), control).unwrap();
    let doc = dir.join(format!("usr/share/doc/{}", p.name));
    fs::create_dir_all(&doc).unwrap();
    fs::write(doc.join("version"), p.version).unwrap();
    if let Some((path, contents)) = p.conffile {
        let f = dir.join(path.trim_start_matches('/'));
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, contents).unwrap();
        fs::write(debian.join("conffiles"), format!("{path}\n")).unwrap();
    }
    if let Some(script) = p.postinst {
        let f = debian.join("postinst");
        fs::write(&f, format!("#!/bin/sh\nset -e\n{script}\n")).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let deb = out_dir.join(format!("{}_{}_all.deb", p.name, p.version));
    sh(Command::new("dpkg-deb").args(["--root-owner-group", "-Zgzip", "--build"]).arg(&dir).arg(&deb));
    deb
}

/// The standard set of the OS-maintenance tests, versions 1 and 2 (docs/os.md, "Tests"):
/// `(main repository, security repository)`.
pub fn standard_packages() -> (Vec<TestPackage>, Vec<TestPackage>) {
    let v = TestPackage::new;
    let conf =
        |version, contents| TestPackage { conffile: Some(("/etc/ct-conf.conf", contents)), ..v("ct-conf", version) };
    let main = vec![
        v("ct-plain", "1.0"),
        v("ct-plain", "2.0"),
        v("ct-sec", "1.0"),
        conf("1.0", "setting = 1\n"),
        conf("2.0", "setting = 2\n"),
        v("ct-kept", "1.0"),
        TestPackage { depends: Some("ct-newdep"), ..v("ct-kept", "2.0") },
        v("ct-newdep", "1.0"),
        v("ct-held", "1.0"),
        v("ct-held", "2.0"),
        v("ct-appdep", "1.0"),
        v("ct-appdep", "2.0"),
        v("ct-reboot", "1.0"),
        TestPackage {
            postinst: Some("touch /var/run/reboot-required\necho ct-reboot >> /var/run/reboot-required.pkgs"),
            ..v("ct-reboot", "2.0")
        },
    ];
    let security = vec![v("ct-sec", "2.0")];
    (main, security)
}

impl TestChroot {
    /// The standard repositories, version 1 of every package installed (ct-held on hold):
    /// ready for `os status` / `os update`.
    pub fn with_standard_packages() -> Option<TestChroot> {
        let c = TestChroot::new()?;
        let (main, security) = standard_packages();
        c.add_repo("main", "Caretaker-Test", "stable", &main);
        c.add_repo("security", "Caretaker-Test-Security", "stable-security", &security);
        c.run(
            "apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends \
             ct-plain=1.0 ct-sec=1.0 ct-conf=1.0 ct-kept=1.0 ct-held=1.0 ct-appdep=1.0 ct-reboot=1.0 >/dev/null \
             && apt-mark hold ct-held >/dev/null && apt-mark auto ct-plain >/dev/null",
        );
        Some(c)
    }

    /// The installed version of a package ("" when not installed).
    pub fn version(&self, package: &str) -> String {
        let out = Command::new("chroot")
            .arg(&self.root)
            .args(["dpkg-query", "-W", "-f=${Version}", package])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
