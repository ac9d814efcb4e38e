//! Telling whether a process that wrote a record is still the same process and alive.
//!
//! A pid alone is not enough: pids are reused. The kernel's start time of the process
//! (field 22 of /proc/<pid>/stat, in clock ticks since boot) together with the boot id makes
//! the identity unique.

use std::fs;

/// A process, identified so that a reused pid is not mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// Start time in clock ticks after boot; `None` where /proc is unavailable.
    pub start_ticks: Option<u64>,
}

impl ProcessIdentity {
    pub fn current() -> Self {
        let pid = std::process::id();
        ProcessIdentity { pid, start_ticks: start_ticks(pid) }
    }

    /// Whether this process still runs (and is not a different process with the same pid).
    pub fn is_alive(&self) -> bool {
        match (start_ticks(self.pid), self.start_ticks) {
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces; fields after the
    // last ')' are space-separated. starttime is field 22, i.e. the 20th after the ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // A zombie is dead for our purposes: it runs no code and holds no locks.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_a_dead_one_is_not() {
        let me = ProcessIdentity::current();
        assert!(me.is_alive());
        assert!(me.start_ticks.is_some());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessIdentity { pid: child.id(), start_ticks: start_ticks(child.id()) };
        child.wait().unwrap();
        assert!(!id.is_alive());
        let reused = ProcessIdentity { pid: me.pid, start_ticks: me.start_ticks.map(|t| t + 1) };
        assert!(!reused.is_alive(), "same pid, different start time is a different process");
    }
}
