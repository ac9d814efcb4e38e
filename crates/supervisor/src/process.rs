//! Processes of the app's services: spawning one in its own process group with the app's
//! environment, working directory and (when caretaker runs as root) user; signalling the
//! group; and the on-disk record of running services.
//!
//! The record (`<state dir>/services.json`: service, pid = pgid, kernel start time) is what
//! makes the daemon SIGKILL-safe: a new daemon reads it, finds the processes its predecessor
//! left running (a pid alone could have been reused; pid + start time cannot), stops their
//! whole process groups and then starts the services afresh. So there is never a second
//! instance and never an orphan holding the service's port.

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A user to run as: looked up before forking (getpwnam is not async-signal-safe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

pub fn lookup_user(name: &str) -> Result<User, String> {
    let cname = std::ffi::CString::new(name).map_err(|_| format!("bad user name {name:?}"))?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; `result` points into `pwd`/`buf` on success.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return Err(format!("no such user: {name}"));
    }
    let home = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) }.to_string_lossy().into_owned();
    Ok(User { name: name.to_string(), uid: pwd.pw_uid, gid: pwd.pw_gid, home: PathBuf::from(home) })
}

/// What to run: the program, its environment and where.
#[derive(Clone, Debug)]
pub struct Launch {
    pub argv: Vec<String>,
    /// The app's variables (env files and `env:`), added to caretaker's basic ones.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Switch to this user (only when caretaker runs as root; otherwise ignored).
    pub user: Option<User>,
}

/// The variables of caretaker's own environment that every app process inherits; everything
/// else comes from the config, so a service runs the same under systemd and from a shell.
pub const INHERITED_VARS: [&str; 8] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TERM"];

/// A command for `launch`: clean environment, own process group, user switch when root.
/// The caller sets stdio.
pub fn command(launch: &Launch) -> std::process::Command {
    let mut c = std::process::Command::new(&launch.argv[0]);
    c.args(&launch.argv[1..]).current_dir(&launch.cwd).env_clear();
    for key in INHERITED_VARS {
        if let Some(v) = std::env::var_os(key) {
            c.env(key, v);
        }
    }
    if let Some(u) = &launch.user {
        if unsafe { libc::geteuid() } == 0 {
            c.uid(u.uid).gid(u.gid);
            c.env("USER", &u.name).env("LOGNAME", &u.name).env("HOME", OsString::from(&u.home));
        }
    }
    c.envs(launch.env.iter().map(|(k, v)| (k, v)));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Undo signal dispositions a parent might have set (tokio leaves SIGPIPE ignored
            // for Rust programs; an app expects the default).
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            Ok(())
        });
    }
    c
}

/// Sends `sig` to every process in group `pgid`. Returns false when the group is gone.
pub fn signal_group(pgid: u32, sig: i32) -> bool {
    if pgid <= 1 {
        return false; // never signal "every process" (-1) or init's group by accident
    }
    unsafe { libc::kill(-(pgid as i32), sig) == 0 }
}

/// Whether any process of group `pgid` is left (zombies excluded).
pub fn group_alive(pgid: u32) -> bool {
    !group_members(pgid, 0).is_empty()
}

/// Live processes of group `pgid` that started at or after `since_ticks` (zombies excluded).
pub fn group_members(pgid: u32, since_ticks: u64) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Some(st) = stat(pid) {
            if st.pgid == pgid && st.state != 'Z' && st.start_ticks >= since_ticks {
                out.push(pid);
            }
        }
    }
    out
}

/// Fields of /proc/<pid>/stat this module needs.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub state: char,
    pub pgid: u32,
    pub start_ticks: u64,
}

pub fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything; the fields
    // after the last ')' are: state(3) ppid(4) pgrp(5) ... starttime(22).
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        pgid: f.get(2)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// One running service as recorded on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub service: String,
    /// The group leader; its pid is also the process group id.
    pub pid: u32,
    pub start_ticks: u64,
}

/// `<state dir>/services.json`: the services the daemon has running right now.
pub struct Records {
    path: PathBuf,
}

impl Records {
    pub fn new(state_dir: &Path) -> Self {
        Records { path: state_dir.join("services.json") }
    }

    pub fn load(&self) -> Vec<Record> {
        std::fs::read(&self.path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Replaces the record atomically (write, fsync, rename): a crash leaves the old or the
    /// new list, never half of one.
    pub fn save(&self, records: &[Record]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(records).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// Stops what a previous daemon left running: for each record, the processes of its group
/// that started no earlier than its leader (so a reused pgid is left alone) get SIGTERM, and
/// SIGKILL after `grace`. Returns one line per service that was still running.
pub fn stop_leftovers(records: &[Record], grace: Duration) -> Vec<String> {
    let mut found = Vec::new();
    for r in records {
        let members = group_members(r.pid, r.start_ticks);
        if members.is_empty() {
            continue;
        }
        found.push(format!("{} (pid {}, {} process(es))", r.service, r.pid, members.len()));
        for pid in &members {
            unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
        }
    }
    let until = Instant::now() + grace;
    loop {
        let left: Vec<u32> = records.iter().flat_map(|r| group_members(r.pid, r.start_ticks)).collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() >= until {
            for pid in left {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawned_command_leads_its_own_group_with_only_the_app_env() {
        let launch = Launch {
            argv: vec!["sh".into(), "-c".into(), "echo $APP_VAR:${SECRET_OF_CARETAKER:-unset}; sleep 30".into()],
            env: vec![("APP_VAR".into(), "hello".into())],
            cwd: std::env::temp_dir(),
            user: None,
        };
        std::env::set_var("SECRET_OF_CARETAKER", "leak");
        let mut c = command(&launch);
        c.stdout(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let pid = child.id();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "hello:unset");
        let st = stat(pid).unwrap();
        assert_eq!(st.pgid, pid);
        assert!(group_alive(pid));
        let found =
            stop_leftovers(&[Record { service: "x".into(), pid, start_ticks: st.start_ticks }], Duration::from_secs(5));
        assert_eq!(found.len(), 1);
        child.wait().unwrap();
        // A SIGKILLed member can take a moment to be gone (on a loaded machine): poll.
        let gone_by = Instant::now() + Duration::from_secs(10);
        while group_alive(pid) && Instant::now() < gone_by {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!group_alive(pid));
    }

    #[test]
    fn a_record_with_a_later_start_time_is_not_ours() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let st = stat(pid).unwrap();
        // Same pid, but "started later": a reused pid must be left alone.
        let found =
            stop_leftovers(&[Record { service: "x".into(), pid, start_ticks: st.start_ticks + 1 }], Duration::ZERO);
        assert!(found.is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn unknown_user_is_reported() {
        assert_eq!(lookup_user("root").unwrap().uid, 0);
        assert!(lookup_user("no-such-user-here").unwrap_err().contains("no such user"));
    }
}
