//! Pure reading of what the package tools print. No I/O; tested with captured output.

use caretaker_core::os::{PackageOrigin, Upgradable};
use jiff::civil::DateTime;

/// One `Inst` line of `apt-get -s`: `Inst name [old] (new Label:Version/archive[, ...] [arch])`.
/// A new package (no `[old]`) has `installed` empty.
pub fn apt_sim_installs(out: &str) -> Vec<Upgradable> {
    out.lines().filter_map(|l| inst_line(l.strip_prefix("Inst ")?)).collect()
}

fn inst_line(rest: &str) -> Option<Upgradable> {
    let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let name = name.split(':').next().unwrap_or(name).to_string();
    let mut rest = rest.trim_start();
    let mut installed = String::new();
    if let Some(r) = rest.strip_prefix('[') {
        let (old, r) = r.split_once(']')?;
        installed = old.to_string();
        rest = r.trim_start();
    }
    let inner = rest.strip_prefix('(')?;
    let inner = inner.rsplit_once(')').map(|(a, _)| a).unwrap_or(inner);
    let (candidate, sources) = inner.split_once(' ').unwrap_or((inner, ""));
    // Drop the trailing ` [arch]`.
    let sources = match sources.rfind(" [") {
        Some(i) => &sources[..i],
        None => sources.trim_start_matches('[').trim_end_matches(']'),
    };
    let origins = sources
        .split(", ")
        .filter(|s| !s.trim().is_empty() && !s.starts_with('['))
        .map(|s| {
            let s = s.trim();
            // Label:Version/archive, Label:archive, or archive alone.
            let (label, rest) = match s.split_once(':') {
                Some((l, r)) => (l.to_string(), r),
                None => (String::new(), s),
            };
            let archive = rest.rsplit_once('/').map(|(_, a)| a).unwrap_or(rest).to_string();
            PackageOrigin { origin: label, archive }
        })
        .collect();
    Some(Upgradable { name, installed, candidate: candidate.to_string(), origins })
}

/// The package names of the list that follows `heading` in apt's output (indented lines
/// until the next unindented one).
pub fn apt_section(out: &str, heading: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in out.lines() {
        if line.starts_with(heading) {
            inside = true;
            continue;
        }
        if inside {
            if line.starts_with("  ") {
                names.extend(line.split_whitespace().map(|n| n.split(':').next().unwrap_or(n).to_string()));
            } else {
                inside = false;
            }
        }
    }
    names
}

/// Packages apt keeps back in an `upgrade` (this includes held ones; callers subtract them).
pub fn apt_kept_back(out: &str) -> Vec<String> {
    apt_section(out, "The following packages have been kept back")
}

/// One name per line (`apt-mark showhold`, `reboot-required.pkgs`).
pub fn names(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    v.sort();
    v.dedup();
    v
}

/// The packages `dpkg --audit` complains about (each on a line indented by one space, name
/// first); empty when dpkg is in a consistent state.
pub fn dpkg_audit(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with(' ') && !l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split(':').next().unwrap_or(n).to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A conffile that dpkg kept because the admin had changed it while the package shipped a
/// new version (with `--force-confold`; the new one is saved as `<path>.dpkg-dist`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeptConffile {
    pub package: String,
    pub path: String,
}

/// Conffile conflicts in the output of an apt/dpkg run, with the package being set up.
pub fn conffile_conflicts(out: &str) -> Vec<KeptConffile> {
    let mut package = String::new();
    let mut pending: Option<String> = None;
    let mut found = Vec::new();
    for line in out.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("Setting up ") {
            package = rest.split([' ', ':']).next().unwrap_or("").to_string();
        } else if let Some(rest) = l.strip_prefix("Configuration file '") {
            pending = rest.strip_suffix('\'').map(String::from);
        } else if l.starts_with("==> Keeping old config file")
            || l.starts_with("==> Package distributor has shipped an updated version")
        {
            if let Some(path) = pending.take() {
                found.push(KeptConffile { package: package.clone(), path });
            }
        }
    }
    found
}

/// What `needrestart -b` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NeedRestart {
    /// Services running deleted libraries.
    pub services: Vec<String>,
    /// The kernel status: 0 unknown, 1 current, 2 ABI-compatible upgrade, 3 version upgrade.
    pub kernel_status: Option<u8>,
    pub kernel_expected: Option<String>,
}

pub fn needrestart_batch(out: &str) -> NeedRestart {
    let mut n = NeedRestart::default();
    for line in out.lines() {
        if let Some(s) = line.strip_prefix("NEEDRESTART-SVC:") {
            n.services.push(s.trim().to_string());
        } else if let Some(s) = line.strip_prefix("NEEDRESTART-KSTA:") {
            n.kernel_status = s.trim().parse().ok();
        } else if let Some(s) = line.strip_prefix("NEEDRESTART-KEXP:") {
            n.kernel_expected = Some(s.trim().to_string());
        }
    }
    n
}

/// The time of the last package upgrade or install in a dpkg log
/// (`2026-12-04 22:40:01 upgrade pkg:all 1.0 2.0`), local time.
pub fn dpkg_log_last_change(log: &str) -> Option<DateTime> {
    log.lines()
        .rev()
        .find_map(|l| {
            let mut w = l.splitn(4, ' ');
            let (date, time, action) = (w.next()?, w.next()?, w.next()?);
            matches!(action, "upgrade" | "install").then(|| format!("{date}T{time}"))
        })
        .and_then(|s| s.parse().ok())
}

/// The boot time (`btime`) of /proc/stat, seconds since the epoch.
pub fn proc_stat_btime(stat: &str) -> Option<i64> {
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|s| s.trim().parse().ok())
}

/// Kernel release names from /boot (`vmlinuz-6.1.0-13-amd64` → `6.1.0-13-amd64`).
pub fn installed_kernels<'a>(boot_files: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> =
        boot_files.into_iter().filter_map(|f| f.strip_prefix("vmlinuz-")).map(String::from).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIM: &str = "NOTE: This is only a simulation!
Reading package lists...
Building dependency tree...
Calculating upgrade...
The following packages have been kept back:
  ct-keptback ct-held
The following packages will be upgraded:
  ct-plain ct-sec
2 upgraded, 0 newly installed, 0 to remove and 2 not upgraded.
Inst ct-plain [1.0] (2.0 Caretaker-Test:1/stable [all])
Inst ct-sec [1.0] (2.0 Caretaker-Test-Security:1/stable-security, Other:stable [amd64])
Inst ct-newdep (1.0 Caretaker-Test:1/stable [all])
Inst libc6:amd64 [2.36-9+deb12u3] (2.36-9+deb12u4 Debian:12.5/stable, Debian-Security:12/stable-security [amd64]) []
Conf ct-plain (2.0 Caretaker-Test:1/stable [all])
";

    #[test]
    fn apt_simulation_lines() {
        let v = apt_sim_installs(SIM);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].name, "ct-plain");
        assert_eq!((v[0].installed.as_str(), v[0].candidate.as_str()), ("1.0", "2.0"));
        assert_eq!(v[0].origins, [PackageOrigin { origin: "Caretaker-Test".into(), archive: "stable".into() }]);
        assert!(!v[0].is_security());
        assert!(v[1].is_security());
        assert_eq!(v[1].origins[1], PackageOrigin { origin: "Other".into(), archive: "stable".into() });
        assert_eq!(v[2].installed, "", "a new package");
        assert_eq!(v[3].name, "libc6");
        assert_eq!(v[3].candidate, "2.36-9+deb12u4");
        assert!(v[3].is_security());
        assert_eq!(apt_kept_back(SIM), ["ct-keptback", "ct-held"]);
    }

    #[test]
    fn audit_conffiles_needrestart_logs() {
        let audit = "The following packages are only half configured, probably due to problems\nconfiguring them the first time.  The configuration should be retried using\ndpkg --configure <package> or the configure menu option in dselect:\n ct-broken            a test package\n ct-other:amd64       another\n";
        assert_eq!(dpkg_audit(audit), ["ct-broken", "ct-other"]);
        assert!(dpkg_audit("").is_empty());

        let out = "Setting up ct-plain (2.0) ...\nSetting up ct-conf (2.0) ...\n\nConfiguration file '/etc/ct-conf.conf'\n ==> Modified (by you or by a script) since installation.\n ==> Package distributor has shipped an updated version.\n ==> Keeping old config file as default.\n";
        assert_eq!(
            conffile_conflicts(out),
            [KeptConffile { package: "ct-conf".into(), path: "/etc/ct-conf.conf".into() }]
        );

        let nr = needrestart_batch("NEEDRESTART-VER: 3.6\nNEEDRESTART-KCUR: 6.1.0-9-amd64\nNEEDRESTART-KEXP: 6.1.0-13-amd64\nNEEDRESTART-KSTA: 3\nNEEDRESTART-SVC: nginx.service\nNEEDRESTART-SVC: cron.service\n");
        assert_eq!(nr.services, ["nginx.service", "cron.service"]);
        assert_eq!(nr.kernel_status, Some(3));
        assert_eq!(nr.kernel_expected.as_deref(), Some("6.1.0-13-amd64"));

        let log = "2026-12-01 10:00:00 startup archives unpack\n2026-12-01 10:00:01 upgrade ct-plain:all 1.0 2.0\n2026-12-01 10:00:02 status installed ct-plain:all 2.0\n2026-12-02 09:00:00 startup packages configure\n";
        assert_eq!(dpkg_log_last_change(log), Some("2026-12-01T10:00:01".parse().unwrap()));
        assert_eq!(dpkg_log_last_change(""), None);
        assert_eq!(proc_stat_btime("cpu 1\nbtime 1772366400\n"), Some(1772366400));
        assert_eq!(
            installed_kernels(["config-6.1", "vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-13-amd64"]),
            ["6.1.0-13-amd64", "6.1.0-9-amd64"]
        );
        assert_eq!(names("b\na\n\na\n"), ["a", "b"]);
    }
}
