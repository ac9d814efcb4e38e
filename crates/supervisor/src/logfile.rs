//! Captured service output: one file per service, `<state dir>/logs/<service>.log`, each line
//! prefixed with a UTC timestamp and the stream (`out`/`err`); rotated by size into
//! `<service>.log.1` … `.N` (newest first), keeping N old files.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The directory of captured logs inside the state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("logs")
}

/// The current log file of a service.
pub fn path(state_dir: &Path, service: &str) -> PathBuf {
    dir(state_dir).join(format!("{service}.log"))
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// A log file that rotates itself when the next line would make it larger than `max_size`.
pub struct RotatingLog {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: File,
    size: u64,
}

impl RotatingLog {
    pub fn open(path: &Path, max_size: u64, keep: u32) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog { path: path.to_path_buf(), max_size, keep, file, size })
    }

    /// Appends `line` (without its newline) from `stream` with the current time.
    pub fn write_line(&mut self, stream: &str, line: &str) -> std::io::Result<()> {
        let ts = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ");
        self.write_raw(&format!("{ts} {stream} {line}\n"))
    }

    fn write_raw(&mut self, text: &str) -> std::io::Result<()> {
        if self.size > 0 && self.size + text.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(text.as_bytes())?;
        self.size += text.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let _ = std::fs::remove_file(rotated(&self.path, self.keep));
        for n in (1..self.keep).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The last `n` lines of a service's log, reaching into rotated files when the current one
/// has fewer.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut k = 0;
    loop {
        let p = if k == 0 { path.to_path_buf() } else { rotated(path, k) };
        let Ok(f) = File::open(&p) else { break };
        let mut these: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        these.append(&mut lines);
        lines = these;
        if lines.len() >= n {
            break;
        }
        k += 1;
    }
    let skip = lines.len().saturating_sub(n);
    lines.split_off(skip)
}

/// Follows a log file across rotations (`logs -f`): each [`Follower::poll`] returns the
/// complete lines written since the last call.
pub struct Follower {
    path: PathBuf,
    inode: Option<u64>,
    offset: u64,
    partial: String,
}

impl Follower {
    /// Starts at the current end of the file.
    pub fn from_end(path: &Path) -> Self {
        let (inode, offset) = match std::fs::metadata(path) {
            Ok(m) => (Some(m.ino()), m.len()),
            Err(_) => (None, 0),
        };
        Follower { path: path.to_path_buf(), inode, offset, partial: String::new() }
    }

    pub fn poll(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(meta) = std::fs::metadata(&self.path) else { return out };
        if self.inode != Some(meta.ino()) || meta.len() < self.offset {
            // Rotated (or truncated): finish the old file first, then start the new one.
            if let Some(old) = self.inode {
                let prev = rotated(&self.path, 1);
                if std::fs::metadata(&prev).is_ok_and(|m| m.ino() == old) {
                    self.read_from(&prev, &mut out);
                }
            }
            self.inode = Some(meta.ino());
            self.offset = 0;
            self.partial.clear();
        }
        let path = self.path.clone();
        self.read_from(&path, &mut out);
        out
    }

    fn read_from(&mut self, path: &Path, out: &mut Vec<String>) {
        let Ok(mut f) = File::open(path) else { return };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = String::new();
        if let Ok(n) = f.read_to_string(&mut buf) {
            self.offset += n as u64;
        }
        self.partial.push_str(&buf);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            out.push(line.trim_end_matches('\n').to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.log");
        let mut log = RotatingLog::open(&p, 200, 2).unwrap();
        for i in 0..40 {
            log.write_line("out", &format!("line {i:03}")).unwrap();
        }
        let names: Vec<String> = {
            let mut v: Vec<String> =
                std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            v.sort();
            v
        };
        assert_eq!(names, ["web.log", "web.log.1", "web.log.2"]);
        for name in &names {
            assert!(std::fs::metadata(dir.path().join(name)).unwrap().len() <= 200);
        }
        let last = tail(&p, 8);
        assert_eq!(last.len(), 8);
        assert!(last[7].ends_with(" out line 039"), "{last:?}");
        assert!(last[0].ends_with(" out line 032"), "{last:?}");
    }

    #[test]
    fn follower_sees_lines_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.log");
        let mut log = RotatingLog::open(&p, 100, 3).unwrap();
        log.write_line("out", "before").unwrap();
        let mut f = Follower::from_end(&p);
        assert!(f.poll().is_empty());
        let mut seen = Vec::new();
        for i in 0..10 {
            log.write_line("err", &format!("n{i}")).unwrap();
            seen.extend(f.poll());
        }
        let texts: Vec<&str> = seen.iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
        assert_eq!(texts, ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"]);
    }
}
