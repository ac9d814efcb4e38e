//! The host as the kernel reports it: filesystems (statvfs), memory (/proc/meminfo), load
//! (/proc/loadavg), boot time (/proc/stat), CPUs. Linux only; a source that cannot be read is
//! left out (`None`), never guessed.

use caretaker_core::alert::FilesystemObs;
use caretaker_core::metrics::HostStats;
use jiff::Timestamp;
use std::path::{Path, PathBuf};

/// A mounted filesystem from /proc/self/mounts.
#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: PathBuf,
    pub fstype: String,
}

/// Pseudo filesystems that hold no data worth watching.
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "mqueue",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "nsfs",
    "rpc_pipefs",
    "squashfs",
    "efivarfs",
    "selinuxfs",
    "ramfs",
];

pub fn mounts() -> Vec<Mount> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    parse_mounts(&text)
}

fn unescape(s: &str) -> String {
    // /proc/mounts escapes space, tab, newline and backslash as octal.
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (device, mountpoint, fstype) = (f.next()?, f.next()?, f.next()?);
            Some(Mount {
                device: unescape(device),
                mountpoint: PathBuf::from(unescape(mountpoint)),
                fstype: fstype.into(),
            })
        })
        .filter(|m| !PSEUDO.contains(&m.fstype.as_str()))
        .collect()
}

/// The mount holding `path`: the longest mountpoint that is a prefix of it (the last one
/// mounted wins on ties, as in the kernel).
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(&m.mountpoint)
            && best.is_none_or(|b| m.mountpoint.as_os_str().len() >= b.mountpoint.as_os_str().len())
        {
            best = Some(m);
        }
    }
    best
}

/// Space on one filesystem.
pub fn filesystem(m: &Mount) -> Option<FilesystemObs> {
    let st = rustix::fs::statvfs(&m.mountpoint).ok()?;
    let frsize = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize };
    Some(FilesystemObs {
        mountpoint: m.mountpoint.display().to_string(),
        device: m.device.clone(),
        fstype: m.fstype.clone(),
        size_bytes: st.f_blocks.saturating_mul(frsize),
        avail_bytes: st.f_bavail.saturating_mul(frsize),
        free_bytes: st.f_bfree.saturating_mul(frsize),
    })
}

/// The filesystems holding `paths` (each once), `/` always included.
pub fn filesystems_for(paths: &[PathBuf]) -> Vec<FilesystemObs> {
    let all = mounts();
    let mut chosen: Vec<&Mount> = Vec::new();
    for p in std::iter::once(Path::new("/")).chain(paths.iter().map(PathBuf::as_path)) {
        // A path that does not exist yet is judged by its nearest existing ancestor.
        let mut probe = p;
        while !probe.exists() {
            match probe.parent() {
                Some(parent) => probe = parent,
                None => break,
            }
        }
        if let Some(m) = mount_of(&all, probe) {
            if !chosen.iter().any(|c| c.mountpoint == m.mountpoint) {
                chosen.push(m);
            }
        }
    }
    chosen.into_iter().filter_map(filesystem).collect()
}

/// Values of /proc/meminfo in bytes.
pub fn parse_meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut f = rest.split_whitespace();
        let v: u64 = f.next()?.parse().ok()?;
        Some(if f.next() == Some("kB") { v * 1024 } else { v })
    })
}

pub fn parse_loadavg(text: &str) -> Option<(f64, f64, f64)> {
    let mut f = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some((f.next()??, f.next()??, f.next()??))
}

pub fn parse_boot_time(stat: &str) -> Option<Timestamp> {
    let secs: i64 = stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    Timestamp::from_second(secs).ok()
}

fn online_cpus() -> Option<u32> {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (n > 0).then_some(n as u32)
}

/// Everything about the host, for the filesystems holding `paths` (and `/`).
pub fn host_stats(paths: &[PathBuf]) -> HostStats {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").ok().and_then(|t| parse_loadavg(&t));
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    HostStats {
        filesystems: filesystems_for(paths),
        memory_total_bytes: parse_meminfo(&meminfo, "MemTotal"),
        memory_available_bytes: parse_meminfo(&meminfo, "MemAvailable"),
        swap_total_bytes: parse_meminfo(&meminfo, "SwapTotal"),
        swap_free_bytes: parse_meminfo(&meminfo, "SwapFree"),
        load1: load.map(|l| l.0),
        load5: load.map(|l| l.1),
        load15: load.map(|l| l.2),
        cpus: online_cpus(),
        boot_time: parse_boot_time(&stat),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let mounts = parse_mounts(
            "overlay / overlay rw 0 0\nproc /proc proc rw 0 0\n/dev/sdb1 /srv/my\\040data ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n",
        );
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[1].mountpoint, PathBuf::from("/srv/my data"));
        assert_eq!(mount_of(&mounts, Path::new("/srv/my data/x/y")).unwrap().device, "/dev/sdb1");
        assert_eq!(mount_of(&mounts, Path::new("/srv/my")).unwrap().device, "overlay");
        assert_eq!(
            parse_meminfo("MemTotal:       16384 kB\nMemAvailable:    8192 kB\n", "MemAvailable"),
            Some(8192 * 1024)
        );
        assert_eq!(parse_loadavg("0.50 0.25 0.10 1/100 42\n"), Some((0.5, 0.25, 0.1)));
        assert_eq!(parse_boot_time("cpu 1 2\nbtime 1772366400\n"), Some("2026-03-01T12:00:00Z".parse().unwrap()));
    }

    #[test]
    fn this_host_is_observable() {
        let h = host_stats(&[std::env::temp_dir()]);
        assert!(!h.filesystems.is_empty());
        assert!(h.filesystems[0].size_bytes > 0);
        assert!(h.memory_total_bytes.unwrap() > 0);
        assert!(h.cpus.unwrap() >= 1);
        assert!(h.boot_time.is_some());
        assert!(h.memory_used_percent().is_some() && h.load_per_cpu().is_some());
    }
}
