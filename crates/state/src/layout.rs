//! The state directory's layout: every path caretaker keeps in it, named once (docs/state.md).
//! Code that needs a path asks a [`Layout`] instead of joining names itself.

use std::path::{Path, PathBuf};

/// The paths inside one state directory. A staging clone has its own state directory and so
/// its own `Layout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// The state directory itself (mode 0700).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite database (WAL: `-wal` and `-shm` files next to it).
    pub fn database(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// One log per job: `jobs/<id>.log`, mode 0600.
    pub fn jobs(&self) -> PathBuf {
        self.root.join("jobs")
    }

    pub fn job_log(&self, id: i64) -> PathBuf {
        self.jobs().join(format!("{id}.log"))
    }

    /// `locks/`: the app lock and the daemon lock.
    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// flock()ed while a mutating job runs.
    pub fn app_lock(&self) -> PathBuf {
        self.locks().join("app.lock")
    }

    /// flock()ed by the one daemon of the app.
    pub fn daemon_lock(&self) -> PathBuf {
        self.locks().join("daemon.lock")
    }

    /// The daemon's control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("daemon.sock")
    }

    /// The output of a daemon started in the background by the CLI.
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }

    /// The services' captured output: `logs/<service>.log` (rotated `.1`, `.2`...).
    pub fn service_logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The services the daemon has running right now (pid + start time), for its successor.
    pub fn service_records(&self) -> PathBuf {
        self.root.join("services.json")
    }

    /// The releases `caretaker update` deployed: `releases/<n>-<commit>`.
    pub fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }

    /// The symlink to the current release, which `app.working_dir` names.
    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }

    /// Where the `current` symlink is made before it is renamed over the old one.
    pub fn current_tmp(&self) -> PathBuf {
        self.root.join(".current.tmp")
    }

    /// Fetched sources (the git cache of updates).
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// The dependency report's advisory database.
    pub fn deps(&self) -> PathBuf {
        self.root.join("deps")
    }

    /// `clones/`: one directory per staging clone (docs/clones.md).
    pub fn clones(&self) -> PathBuf {
        self.root.join("clones")
    }

    /// `clones/<name>/`: the clone's record (`clone.json`), its own state directory
    /// (`state/`, with its own `Layout`), its file trees (`files/`) and its daemon's log.
    pub fn clone_dir(&self, name: &str) -> PathBuf {
        self.clones().join(name)
    }

    /// `clones/.lock`: held while a clone is created, destroyed or swept.
    pub fn clones_lock(&self) -> PathBuf {
        self.clones().join(".lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_inside_the_state_directory_and_none_is_named_twice() {
        let l = Layout::new("/var/lib/caretaker/gb");
        let all = [
            l.database(),
            l.jobs(),
            l.job_log(7),
            l.locks(),
            l.app_lock(),
            l.daemon_lock(),
            l.socket(),
            l.daemon_log(),
            l.service_logs(),
            l.service_records(),
            l.releases(),
            l.current(),
            l.current_tmp(),
            l.cache(),
            l.deps(),
        ];
        for p in &all {
            assert!(p.starts_with(l.root()) && p != l.root(), "{}", p.display());
        }
        let mut names: Vec<_> = all.iter().collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert_eq!(l.job_log(7), PathBuf::from("/var/lib/caretaker/gb/jobs/7.log"));
    }
}
