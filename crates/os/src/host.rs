//! The host's facts around reboots: boot id and boot time, whether a reboot is required (and
//! by which packages), the running kernel against the installed ones, services running
//! deleted libraries (`needrestart -b`), and when packages last changed.

use crate::{in_root, parse, run, NeedRestart};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where the facts are read. [`System::from_env`] is the real machine unless the test-only
/// variables of the crate docs point elsewhere.
#[derive(Clone, Debug)]
pub struct System {
    /// Run package tools in `chroot <root>` and read package files under it (tests only).
    pub root: Option<PathBuf>,
    pub boot_id_file: PathBuf,
    pub proc_stat: PathBuf,
}

impl Default for System {
    fn default() -> System {
        System {
            root: None,
            boot_id_file: PathBuf::from("/proc/sys/kernel/random/boot_id"),
            proc_stat: PathBuf::from("/proc/stat"),
        }
    }
}

/// What the host says about reboots.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostFacts {
    pub boot_id: Option<String>,
    pub boot_time: Option<Timestamp>,
    /// `/var/run/reboot-required` exists.
    pub reboot_required: bool,
    /// `/var/run/reboot-required.pkgs`: the packages that asked for it.
    pub reboot_required_packages: Vec<String>,
    pub running_kernel: Option<String>,
    /// A newer kernel than the running one is installed.
    pub newer_kernel: Option<String>,
    /// `None`: needrestart is not installed.
    pub needrestart: Option<NeedRestart>,
    /// When dpkg last upgraded or installed a package.
    pub last_package_change: Option<Timestamp>,
}

impl HostFacts {
    /// A reboot is needed: asked for by a package, or a newer kernel waits.
    pub fn reboot_needed(&self) -> bool {
        self.reboot_required
            || self.newer_kernel.is_some()
            || self.needrestart.as_ref().is_some_and(|n| n.kernel_status.is_some_and(|k| k >= 2))
    }
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

impl System {
    /// The real machine, unless `CARETAKER_OS_CHROOT` / `CARETAKER_OS_BOOT_ID_FILE` (test
    /// only) say otherwise.
    pub fn from_env() -> System {
        let mut s = System::default();
        if let Some(d) = std::env::var_os("CARETAKER_OS_CHROOT").filter(|v| !v.is_empty()) {
            s.root = Some(PathBuf::from(d));
        }
        if let Some(f) = std::env::var_os("CARETAKER_OS_BOOT_ID_FILE").filter(|v| !v.is_empty()) {
            s.boot_id_file = PathBuf::from(f);
        }
        s
    }

    /// A path of the managed system (inside the test chroot, if any).
    pub fn path(&self, p: &str) -> PathBuf {
        in_root(self.root.as_deref(), p)
    }

    pub fn boot_id(&self) -> Option<String> {
        read(&self.boot_id_file).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
    }

    pub fn boot_time(&self) -> Option<Timestamp> {
        parse::proc_stat_btime(&read(&self.proc_stat)?).and_then(|s| Timestamp::from_second(s).ok())
    }

    /// A stable identity of this host for its reboot slot: `/etc/machine-id`, else the
    /// host name.
    pub fn host_id(&self) -> String {
        read(Path::new("/etc/machine-id"))
            .filter(|s| !s.trim().is_empty())
            .or_else(|| read(Path::new("/proc/sys/kernel/hostname")))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Every fact, `needrestart -b` included (it scans every process: seconds).
    pub fn facts(&self) -> HostFacts {
        self.read_facts(true)
    }

    /// The facts without `needrestart` (for the daemon's frequent check).
    pub fn quick_facts(&self) -> HostFacts {
        self.read_facts(false)
    }

    fn read_facts(&self, with_needrestart: bool) -> HostFacts {
        // /var/run is /run on current systems; older ones have them apart.
        let run_file = |name: &str| {
            [format!("/run/{name}"), format!("/var/run/{name}")].into_iter().map(|p| self.path(&p)).find(|p| p.exists())
        };
        let reboot_required = run_file("reboot-required").is_some();
        let reboot_required_packages =
            run_file("reboot-required.pkgs").and_then(|p| read(&p)).map(|s| parse::names(&s)).unwrap_or_default();
        let running_kernel = read(Path::new("/proc/sys/kernel/osrelease")).map(|s| s.trim().to_string());
        let boot_files: Vec<String> = std::fs::read_dir(self.path("/boot"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let kernels = parse::installed_kernels(boot_files.iter().map(String::as_str));
        let newer_kernel =
            running_kernel.as_deref().and_then(|r| caretaker_core::os::kernel_reboot_needed(r, &kernels));
        let needrestart = if with_needrestart && self.path("/usr/sbin/needrestart").exists() {
            run(self.root.as_deref(), &["needrestart", "-b"], &[("NEEDRESTART_MODE", "l")])
                .ok()
                .map(|(_, out)| parse::needrestart_batch(&out))
        } else {
            None
        };
        let tz = TimeZone::system();
        let last_package_change = read(&self.path("/var/log/dpkg.log"))
            .and_then(|l| parse::dpkg_log_last_change(&l))
            .and_then(|dt| tz.to_ambiguous_timestamp(dt).compatible().ok());
        HostFacts {
            boot_id: self.boot_id(),
            boot_time: self.boot_time(),
            reboot_required,
            reboot_required_packages,
            running_kernel,
            newer_kernel,
            needrestart,
            last_package_change,
        }
    }
}
