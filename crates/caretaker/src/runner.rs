//! Running one app command to completion as part of a job: output captured line by line into
//! the job log (secrets redacted), a timeout, and no stray processes left behind.
//!
//! The child gets its own process group, so a timeout can stop everything it started, and
//! PR_SET_PDEATHSIG, so it receives SIGTERM if caretaker itself is killed.

use caretaker_core::config::Command as AppCommand;
use caretaker_state::JobHandle;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signalled(i32),
    TimedOut,
}

impl Ended {
    pub fn success(&self) -> bool {
        *self == Ended::Exited(0)
    }

    pub fn describe(&self) -> String {
        match self {
            Ended::Exited(c) => format!("exited with status {c}"),
            Ended::Signalled(s) => format!("was killed by signal {s}"),
            Ended::TimedOut => "timed out".to_string(),
        }
    }
}

/// Runs `cmd` with exactly `env` (plus PATH/HOME/LANG from caretaker's own environment) in
/// `cwd`. Each output line goes to the job log and, when `echo`, to stdout (both redacted).
pub fn run_logged(
    cmd: &AppCommand,
    env: &[(String, String)],
    cwd: &Path,
    timeout: Duration,
    job: &mut JobHandle<'_>,
    redact: &dyn Fn(&str) -> String,
    echo: bool,
) -> std::io::Result<Ended> {
    run_lines(cmd, env, cwd, timeout, redact, &mut |line| {
        if echo {
            println!("{line}");
        }
        job.log(line);
    })
}

/// [`run_logged`] with each output line (redacted) and caretaker's notes about the command
/// (its time limit) going to `each_line`.
pub fn run_lines(
    cmd: &AppCommand,
    env: &[(String, String)],
    cwd: &Path,
    timeout: Duration,
    redact: &dyn Fn(&str) -> String,
    each_line: &mut dyn FnMut(&str),
) -> std::io::Result<Ended> {
    let argv = cmd.argv();
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]).current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.env_clear();
    for key in ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME"] {
        if let Some(v) = std::env::var_os(key) {
            c.env(key, v);
        }
    }
    c.envs(env.iter().map(|(k, v)| (k, v)));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = c.spawn()?;
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    for (stream, tag) in [
        (child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), "out"),
        (child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), "err"),
    ] {
        if let Some(s) = stream {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(s).lines() {
                    match line {
                        Ok(l) => {
                            if tx.send(format!("[{tag}] {l}")).is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }));
        }
    }
    drop(tx);
    // `None`: the timeout is beyond what the clock can represent, so it never comes.
    let deadline = Instant::now().checked_add(timeout);
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                each_line(&redact(&line));
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if child.try_wait()?.is_some() && rx.try_recv().is_err() {
            // Exited; drain what the readers still deliver below.
            break;
        }
        if !timed_out && deadline.is_some_and(|d| Instant::now() > d) {
            timed_out = true;
            each_line(&format!("timed out after {}s; stopping the command", timeout.as_secs()));
            stop_group(pid, Duration::from_secs(10), || matches!(child.try_wait(), Ok(Some(_))));
        }
    }
    let status = child.wait()?;
    // Kill whatever the command left running in its group (daemonized grandchildren).
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    for r in readers {
        let _ = r.join();
    }
    for line in rx.try_iter() {
        each_line(&redact(&line));
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(if timed_out {
        Ended::TimedOut
    } else if let Some(code) = status.code() {
        Ended::Exited(code)
    } else {
        Ended::Signalled(status.signal().unwrap_or(0))
    })
}

/// SIGTERM to the process group, then SIGKILL if it is still there after `grace`.
/// `reap_leader` waits for the group leader without blocking and says whether it is gone:
/// an unreaped leader is a zombie that still counts as a group member.
pub fn stop_group(pgid: i32, grace: Duration, mut reap_leader: impl FnMut() -> bool) {
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let until = Instant::now().checked_add(grace).unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
    while Instant::now() < until {
        // kill(-pgid, 0) fails with ESRCH when no process of the group is left.
        if reap_leader() && unsafe { libc::kill(-pgid, 0) } != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}
