//! apt (Debian, Ubuntu): `apt-get` simulations for what is pending, `apt-mark` for holds,
//! `dpkg --audit` and `apt-get check` before changing anything, and a non-interactive
//! `apt-get install --only-upgrade` of exactly the chosen packages.

use crate::parse;
use crate::{run, status_text, OsError, PackageManager, PackageStatus, System, UpgradeOptions, UpgradeReport};

/// The environment of every apt run: no question can be asked (debconf, ucf, needrestart,
/// apt-listchanges), and needrestart restarts services itself instead of prompting.
const ENV: &[(&str, &str)] = &[
    ("DEBIAN_FRONTEND", "noninteractive"),
    ("NEEDRESTART_MODE", "a"),
    ("UCF_FORCE_CONFFOLD", "1"),
    ("APT_LISTCHANGES_FRONTEND", "none"),
];

/// Reading what is pending must not wait for (or take) the lock of an apt that is running.
const NO_LOCK: &str = "Debug::NoLocking=1";

#[derive(Clone, Debug)]
pub struct Apt {
    system: System,
}

impl Apt {
    pub fn new(system: System) -> Apt {
        Apt { system }
    }

    fn run(&self, argv: &[&str]) -> Result<(std::process::ExitStatus, String), OsError> {
        run(self.system.root.as_deref(), argv, ENV)
    }

    /// Runs and insists on success.
    fn ok(&self, what: &str, argv: &[&str]) -> Result<String, OsError> {
        let (status, out) = self.run(argv)?;
        if status.success() {
            Ok(out)
        } else {
            Err(OsError::Failed { what: what.into(), status: status_text(status), output: tail(&out, 40) })
        }
    }
}

/// The last `n` lines, for error messages.
pub(crate) fn tail(out: &str, n: usize) -> String {
    let lines: Vec<&str> = out.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl PackageManager for Apt {
    fn name(&self) -> &'static str {
        "apt"
    }

    fn refresh(&self, log: &mut dyn FnMut(&str)) -> Result<(), OsError> {
        let out = self.ok("apt-get update", &["apt-get", "update", "-q", "--error-on=any"])?;
        out.lines().for_each(&mut *log);
        Ok(())
    }

    fn status(&self) -> Result<PackageStatus, OsError> {
        // Everything upgradable, with origins: a full upgrade that ignores holds.
        let (st, all) =
            self.run(&["apt-get", "-s", "-q", "-o", NO_LOCK, "-o", "APT::Ignore-Hold=true", "dist-upgrade"])?;
        if !st.success() {
            return Err(OsError::Broken { output: tail(&all, 40) });
        }
        let upgradable = parse::apt_sim_installs(&all).into_iter().filter(|u| !u.installed.is_empty()).collect();
        let held = parse::names(&self.ok("apt-mark showhold", &["apt-mark", "showhold"])?);
        let plain = self.ok("apt-get -s upgrade", &["apt-get", "-s", "-q", "-o", NO_LOCK, "upgrade"])?;
        let kept_back = parse::apt_kept_back(&plain).into_iter().filter(|k| !held.contains(k)).collect();
        let (_, audit) = self.run(&["dpkg", "--audit"])?;
        Ok(PackageStatus { upgradable, held, kept_back, interrupted: parse::dpkg_audit(&audit) })
    }

    fn simulate(&self, packages: &[String]) -> Result<Vec<String>, OsError> {
        if packages.is_empty() {
            return Ok(Vec::new());
        }
        let mut argv =
            vec!["apt-get", "-s", "-q", "-o", NO_LOCK, "install", "--only-upgrade", "--no-install-recommends"];
        argv.extend(packages.iter().map(String::as_str));
        let out = self.ok("apt-get -s install --only-upgrade", &argv)?;
        let mut names: Vec<String> = parse::apt_sim_installs(&out).into_iter().map(|u| u.name).collect();
        names.extend(
            out.lines()
                .filter_map(|l| l.strip_prefix("Remv "))
                .filter_map(|r| r.split([' ', ':']).next())
                .map(String::from),
        );
        Ok(names)
    }

    fn preflight(&self) -> Result<(), OsError> {
        let (_, audit) = self.run(&["dpkg", "--audit"])?;
        let packages = parse::dpkg_audit(&audit);
        if !packages.is_empty() || !audit.trim().is_empty() {
            return Err(OsError::Interrupted { packages, output: tail(&audit, 40) });
        }
        let (st, out) = self.run(&["apt-get", "check", "-q"])?;
        if !st.success() {
            return Err(OsError::Broken { output: tail(&out, 40) });
        }
        Ok(())
    }

    fn upgrade(
        &self,
        packages: &[String],
        opts: &UpgradeOptions,
        log: &mut dyn FnMut(&str),
    ) -> Result<UpgradeReport, OsError> {
        if packages.is_empty() {
            return Ok(UpgradeReport::default());
        }
        // `apt-get install` marks what it names as manually installed; remember which of
        // them were automatic to put that back.
        let auto: Vec<String> = parse::names(&self.ok("apt-mark showauto", &["apt-mark", "showauto"])?)
            .into_iter()
            .filter(|a| packages.contains(a))
            .collect();
        let lock = format!("DPkg::Lock::Timeout={}", opts.lock_timeout.as_secs());
        let mut argv = vec![
            "apt-get",
            "install",
            "--only-upgrade",
            "--no-install-recommends",
            "-y",
            "-q",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "-o",
            lock.as_str(),
        ];
        argv.extend(packages.iter().map(String::as_str));
        log(&format!("$ {}", argv.join(" ")));
        let (status, out) = self.run(&argv)?;
        out.lines().for_each(&mut *log);
        if !auto.is_empty() {
            let mut mark = vec!["apt-mark", "auto"];
            mark.extend(auto.iter().map(String::as_str));
            self.ok("apt-mark auto", &mark)?;
        }
        if !status.success() {
            return Err(OsError::Failed {
                what: "apt-get install".into(),
                status: status_text(status),
                output: tail(&out, 40),
            });
        }
        let mut upgraded: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("Unpacking "))
            .filter_map(|r| r.split([' ', ':']).next())
            .map(String::from)
            .collect();
        upgraded.dedup();
        // dpkg prints the conffile notice on stderr, apart from its "Setting up" line: ask
        // dpkg which package owns each file.
        let mut conffiles_kept = parse::conffile_conflicts(&out);
        for c in &mut conffiles_kept {
            if let Ok((st, owner)) = self.run(&["dpkg-query", "-S", &c.path]) {
                if st.success() {
                    if let Some((pkg, _)) = owner.lines().next().and_then(|l| l.split_once(": ")) {
                        c.package = pkg.split(':').next().unwrap_or(pkg).to_string();
                    }
                }
            }
        }
        Ok(UpgradeReport { upgraded, conffiles_kept })
    }
}
