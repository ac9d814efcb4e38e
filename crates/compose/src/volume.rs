//! Named volumes in and out as tar streams, through docker alone (no access to docker's data
//! directory, no tool inside any image): a helper container that mounts the volume is created
//! — never started — from an empty image caretaker imports once per project, and `docker cp`
//! reads the mount as a tar archive or unpacks one into it (`-a`: owners and modes kept).
//!
//! The archive's entries are `caretaker-volume/...`; it is a plain tar, so a volume's stream in
//! a backup can be read with `tar -t` too.

use crate::docker::{Docker, VolumeInfo, LABEL_CARETAKER};
use crate::error::{Error, ErrorKind, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Stdio;

/// Where the helper container mounts the volume (absent from the empty image, so docker copies
/// nothing into an empty volume).
pub const MOUNT: &str = "/caretaker-volume";
const ROLE_LABEL: &str = "org.caretaker.role";

/// The labels compose puts on volumes it creates: a volume caretaker makes for a project gets
/// them too, so compose uses it as its own.
pub fn compose_labels(project: &str, key: &str, compose_version: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("com.docker.compose.project".to_string(), project.to_string());
    l.insert("com.docker.compose.volume".to_string(), key.to_string());
    l.insert("com.docker.compose.version".to_string(), compose_version.to_string());
    l
}

/// Streams volumes of one project in and out.
pub struct Volumes<'a> {
    pub docker: &'a Docker,
    pub project: &'a str,
}

impl Volumes<'_> {
    /// The empty image helper containers are made from ([`crate::images::helper_image`]).
    pub fn helper_image(&self) -> String {
        crate::images::helper_image(self.project)
    }

    fn ensure_helper_image(&self) -> Result<String> {
        let image = self.helper_image();
        if self.docker.image_id(&image)?.is_some() {
            return Ok(image);
        }
        let label = format!("LABEL {LABEL_CARETAKER}={}", self.project);
        let mut child = self
            .docker
            .command(&["import", "--change", "CMD [\"/none\"]", "--change", &label, "-", &image])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::new(ErrorKind::ToolMissing, "docker import", e.to_string()))?;
        // An empty tar archive: two zero blocks.
        let _ = child.stdin.take().expect("piped").write_all(&[0u8; 1024]);
        let out = child.wait_with_output().map_err(|e| Error::new(ErrorKind::Io, "docker import", e.to_string()))?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::Failed,
                "docker import",
                format!("cannot make the helper image: {}", String::from_utf8_lossy(&out.stderr).trim()),
            ));
        }
        Ok(image)
    }

    /// Removes helper containers a killed caretaker left behind.
    pub fn remove_leftover_helpers(&self) -> Result<()> {
        let out = self.docker.command(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label={LABEL_CARETAKER}={}", self.project),
            "--filter",
            &format!("label={ROLE_LABEL}=volume-helper"),
        ]);
        let ids = crate::run::output(out, "docker ps", std::time::Duration::from_secs(60), &crate::run::no_redact())?;
        let ids: Vec<String> = ids.lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
        self.docker.remove_containers(&ids)
    }

    /// A stopped container mounting `volume` (read-only unless `write`); removed on drop.
    fn helper(&self, volume: &str, write: bool) -> Result<Helper<'_>> {
        let image = self.ensure_helper_image()?;
        let name = format!("caretaker-{}-volume-{}-{}", self.project, std::process::id(), unique());
        let mount = format!("{volume}:{MOUNT}{}", if write { "" } else { ":ro" });
        let project_label = format!("{LABEL_CARETAKER}={}", self.project);
        let role = format!("{ROLE_LABEL}=volume-helper");
        let args = ["create", "--name", &name, "--label", &project_label, "--label", &role, "-v", &mount, &image];
        let cmd = self.docker.command(&args);
        crate::run::output(cmd, "docker create", std::time::Duration::from_secs(60), &crate::run::no_redact())?;
        Ok(Helper { docker: self.docker, name })
    }

    /// Writes the volume's contents as a tar archive to `out`; returns the bytes written.
    pub fn export(&self, volume: &str, out: &mut dyn Write) -> Result<u64> {
        let h = self.helper(volume, false)?;
        let src = format!("{}:{MOUNT}", h.name);
        let mut child = self
            .docker
            .command(&["cp", &src, "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::new(ErrorKind::ToolMissing, "docker cp", e.to_string()))?;
        let mut stdout = child.stdout.take().expect("piped");
        let copied = std::io::copy(&mut stdout, out).and_then(|n| out.flush().map(|_| n));
        if copied.is_err() {
            let _ = child.kill();
        }
        drop(stdout);
        let done = child.wait_with_output().map_err(|e| Error::new(ErrorKind::Io, "docker cp", e.to_string()))?;
        let n = copied
            .map_err(|e| Error::new(ErrorKind::Io, format!("volume {volume}"), format!("writing its archive: {e}")))?;
        if !done.status.success() {
            return Err(Error::new(
                ErrorKind::Failed,
                format!("volume {volume}"),
                format!("docker cp failed: {}", String::from_utf8_lossy(&done.stderr).trim()),
            ));
        }
        Ok(n)
    }

    /// Unpacks a tar archive made by [`Volumes::export`] into the volume; returns the bytes read.
    pub fn import(&self, volume: &str, input: &mut dyn Read) -> Result<u64> {
        let h = self.helper(volume, true)?;
        let dst = format!("{}:/", h.name);
        let mut child = self
            .docker
            .command(&["cp", "-a", "-", &dst])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::new(ErrorKind::ToolMissing, "docker cp", e.to_string()))?;
        let mut stdin = child.stdin.take().expect("piped");
        let copied = std::io::copy(input, &mut stdin);
        drop(stdin);
        let done = child.wait_with_output().map_err(|e| Error::new(ErrorKind::Io, "docker cp", e.to_string()))?;
        if !done.status.success() {
            return Err(Error::new(
                ErrorKind::Failed,
                format!("volume {volume}"),
                format!("docker cp failed: {}", String::from_utf8_lossy(&done.stderr).trim()),
            ));
        }
        copied.map_err(|e| Error::new(ErrorKind::Io, format!("volume {volume}"), format!("reading the archive: {e}")))
    }

    /// Whether the volume holds no file (missing counts as empty).
    pub fn is_empty(&self, volume: &str) -> Result<bool> {
        if self.docker.volume(volume)?.is_none() {
            return Ok(true);
        }
        let mut head = HeadOnly { buf: Vec::new(), limit: 4096 };
        match self.export(volume, &mut head) {
            Ok(_) => {}
            // Enough was read: the reader stopped early on purpose.
            Err(e) if e.kind() == ErrorKind::Io && head.buf.len() >= head.limit => {}
            Err(e) => return Err(e),
        }
        Ok(tar_entries(&head.buf) <= 1)
    }

    /// Copies `from`'s contents into a new volume `to` (labelled as caretaker's).
    pub fn copy(&self, from: &str, to: &str) -> Result<u64> {
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_CARETAKER.to_string(), self.project.to_string());
        self.docker.create_volume(to, None, &labels)?;
        let (mut r, mut w) = std::io::pipe().map_err(|e| Error::new(ErrorKind::Io, "pipe", e.to_string()))?;
        std::thread::scope(|s| {
            let reader = s.spawn(move || self.import(to, &mut r));
            let exported = self.export(from, &mut w);
            drop(w);
            let imported = reader.join().unwrap_or_else(|_| Err(Error::new(ErrorKind::Io, to, "copy thread panicked")));
            exported.and(imported)
        })
    }

    /// Replaces `volume` by a new empty one with the same driver, options and labels. Every
    /// container that mounts it must be stopped; they are removed (compose recreates them).
    pub fn recreate_empty(&self, volume: &str, info: &VolumeInfo) -> Result<()> {
        let users = self.docker.containers_using_volume(volume)?;
        if let Some(c) = users.iter().find(|c| c.state.status == "running") {
            return Err(Error::new(
                ErrorKind::Failed,
                format!("volume {volume}"),
                format!("container {} still runs with it", c.name.trim_start_matches('/')),
            )
            .hint("stop the app first (`caretaker down`)"));
        }
        self.docker.remove_containers(&users.iter().map(|c| c.id.clone()).collect::<Vec<_>>())?;
        self.docker.remove_volume(volume)?;
        self.docker.create_volume(volume, Some(info), &BTreeMap::new())
    }
}

/// Removes the helper container when dropped.
struct Helper<'a> {
    docker: &'a Docker,
    name: String,
}

impl Drop for Helper<'_> {
    fn drop(&mut self) {
        let _ = self.docker.remove_containers(std::slice::from_ref(&self.name));
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    (t as u64) << 16 | N.fetch_add(1, Ordering::Relaxed)
}

/// A writer that keeps the first `limit` bytes and then fails (ending the copy early).
struct HeadOnly {
    buf: Vec<u8>,
    limit: usize,
}

impl Write for HeadOnly {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() >= self.limit {
            return Err(std::io::Error::other("enough"));
        }
        let n = data.len().min(self.limit - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How many entries the start of a tar archive shows (stops at the end marker or the end of
/// `data`; pure). The archive of an empty volume has one: the mount directory itself.
pub fn tar_entries(data: &[u8]) -> usize {
    let mut n = 0;
    let mut at = 0;
    while at + 512 <= data.len() {
        let header = &data[at..at + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        n += 1;
        let size_field =
            std::str::from_utf8(&header[124..136]).unwrap_or("").trim_matches(|c: char| c == '\0' || c == ' ');
        let size = u64::from_str_radix(size_field, 8).unwrap_or(0);
        at += 512 + (size.div_ceil(512) * 512) as usize;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let s = format!("{size:011o}\0");
        h[124..136].copy_from_slice(s.as_bytes());
        h
    }

    #[test]
    fn counts_tar_entries() {
        let mut t = header("caretaker-volume/", 0);
        assert_eq!(tar_entries(&t), 1);
        t.extend(header("caretaker-volume/a.txt", 700));
        t.extend(vec![7u8; 1024]);
        t.extend(header("caretaker-volume/b", 0));
        t.extend(vec![0u8; 1024]);
        assert_eq!(tar_entries(&t), 3);
        assert_eq!(tar_entries(&t[..1024]), 2, "a cut archive counts what it shows");
        assert_eq!(tar_entries(&[]), 0);
    }
}
