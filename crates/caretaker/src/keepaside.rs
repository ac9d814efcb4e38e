//! Keeping live files aside before they are replaced: a file tree or file is renamed to
//! `<path>.caretaker-old-<time>` next to itself (same filesystem, so instant and never a
//! copy), never deleted. Used by `recover --force` and `backup restore --force`; `caretaker
//! backup kept-aside` lists (and, when asked, removes) what they left.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The marker between a path and the time it was kept aside.
pub const MARKER: &str = ".caretaker-old-";

/// The time part of names kept aside now (local time, to the second).
pub fn stamp() -> String {
    jiff::Zoned::now().strftime("%Y%m%d-%H%M%S").to_string()
}

/// `<path>.caretaker-old-<stamp>`.
pub fn aside_path(path: &Path, stamp: &str) -> PathBuf {
    PathBuf::from(format!("{}{MARKER}{stamp}", path.display()))
}

/// Renames `path` to `<path>.caretaker-old-<stamp>` (with `-2`, `-3`... when that name is
/// taken: a rename never replaces anything) and returns the new name.
pub fn move_aside(path: &Path, stamp: &str) -> Result<PathBuf> {
    let base = aside_path(path, stamp);
    for n in 1..1000 {
        let aside = if n == 1 { base.clone() } else { PathBuf::from(format!("{}-{n}", base.display())) };
        match rename_noreplace(path, &aside) {
            Ok(()) => return Ok(aside),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                let why = if e.raw_os_error() == Some(libc::EBUSY) {
                    " (it is a mount point: unmount it first, or restore with --target DIR and copy from there)"
                } else {
                    ""
                };
                return Err(e).with_context(|| format!("moving {} aside to {}{why}", path.display(), aside.display()));
            }
        }
    }
    anyhow::bail!("moving {} aside: every name {}-N is taken", path.display(), base.display())
}

/// `rename(2)` that fails with `AlreadyExists` instead of replacing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths, relative to the working directory.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    // A filesystem without RENAME_NOREPLACE: check, then rename (the app lock keeps other
    // caretaker processes out; nothing else creates these names).
    if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOSYS) {
        if std::fs::symlink_metadata(to).is_ok() {
            return Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists));
        }
        return std::fs::rename(from, to);
    }
    Err(e)
}

/// Live data at a path: a directory holding anything, or anything that is not a directory.
pub fn holds_data(p: &Path) -> Result<bool> {
    match std::fs::read_dir(p) {
        Ok(mut d) => Ok(d.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// One path kept aside: where it came from and its stamp.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeptAside {
    pub origin: PathBuf,
    pub path: PathBuf,
    pub stamp: String,
}

/// The copies of `origin` kept aside next to it, oldest first.
pub fn list(origin: &Path) -> Result<Vec<KeptAside>> {
    let (Some(dir), Some(name)) = (origin.parent(), origin.file_name()) else { return Ok(Vec::new()) };
    let prefix = format!("{}{MARKER}", name.to_string_lossy());
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out: Vec<KeptAside> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let stamp = n.strip_prefix(&prefix)?.to_string();
            let ok = stamp.len() >= 15 && stamp.as_bytes()[..8].iter().all(u8::is_ascii_digit);
            ok.then(|| KeptAside { origin: origin.to_path_buf(), path: e.path(), stamp })
        })
        .collect();
    out.sort_by(|a, b| a.stamp.cmp(&b.stamp));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_aside_never_replaces_an_earlier_copy() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("media");
        let mut kept = Vec::new();
        for i in 0..3 {
            std::fs::create_dir_all(&tree).unwrap();
            std::fs::write(tree.join("f"), i.to_string()).unwrap();
            kept.push(move_aside(&tree, "20261204-120000").unwrap());
            assert!(!tree.exists());
        }
        assert_eq!(
            kept.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect::<Vec<_>>(),
            [
                "media.caretaker-old-20261204-120000",
                "media.caretaker-old-20261204-120000-2",
                "media.caretaker-old-20261204-120000-3"
            ]
        );
        for (i, p) in kept.iter().enumerate() {
            assert_eq!(std::fs::read_to_string(p.join("f")).unwrap(), i.to_string());
        }
        assert_eq!(list(&tree).unwrap().len(), 3);
        assert!(list(&d.path().join("other")).unwrap().is_empty());
    }
}
