//! Running `docker` and compose commands: with a time limit, output captured (or handed line by
//! line to the caller, e.g. into a job log), the tail of stderr kept for the error message and
//! passed through the redactor. Secrets reach these commands only through their environment.

use crate::error::{Error, ErrorKind, Result};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Turns text that may hold secrets into text that does not.
pub type Redact = std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A redactor that changes nothing (for callers without secrets).
pub fn no_redact() -> Redact {
    std::sync::Arc::new(|s: &str| s.to_string())
}

/// How a command ended.
#[derive(Debug)]
pub struct Ended {
    pub status: ExitStatus,
    /// As printed, *not* redacted (it is parsed: `compose config`, `docker inspect` hold the
    /// containers' environment). Never log or show it as it is.
    pub stdout: String,
    /// The last lines of stderr, redacted.
    pub stderr: String,
}

impl Ended {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

enum Line {
    Out(String),
    Err(String),
}

/// Runs `cmd` (stdin closed) for at most `limit`; every output line goes to `each_line`
/// (redacted) as it comes, stdout is also returned (raw) when `keep_stdout`. Killed at the limit.
pub fn run(
    mut cmd: Command,
    what: &str,
    limit: Duration,
    redact: &Redact,
    keep_stdout: bool,
    each_line: &mut dyn FnMut(&str),
) -> Result<Ended> {
    let program = what;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let dir = cmd.get_current_dir().map(std::path::Path::to_path_buf);
    let mut child = cmd.spawn().map_err(|e| spawn_error(program, dir.as_deref(), e))?;
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    let t1 = std::thread::spawn(move || pump(out, &tx, Line::Out));
    let t2 = std::thread::spawn(move || pump(err, &tx2, Line::Err));
    let deadline = Instant::now() + limit;
    let mut stdout = String::new();
    let mut stderr: Vec<String> = Vec::new();
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Line::Out(l)) => {
                each_line(&redact(&l));
                if keep_stdout {
                    stdout.push_str(&l);
                    stdout.push('\n');
                }
            }
            Ok(Line::Err(l)) => {
                let l = redact(&l);
                each_line(&l);
                stderr.push(l);
                if stderr.len() > 40 {
                    stderr.remove(0);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline && !timed_out {
            timed_out = true;
            let _ = child.kill();
        }
    }
    let _ = t1.join();
    let _ = t2.join();
    let status = child.wait().map_err(|e| Error::new(ErrorKind::Io, program, format!("waiting for it: {e}")))?;
    if timed_out {
        return Err(Error::new(ErrorKind::Failed, program, format!("did not finish within {}s", limit.as_secs()))
            .hint("the docker engine may be stuck or overloaded; `docker info` tells"));
    }
    Ok(Ended { status, stdout, stderr: stderr.join("\n") })
}

/// Like [`run`] without a line callback; fails with the stderr tail when the command fails.
/// The output is raw (see [`Ended::stdout`]).
pub fn output(cmd: Command, what: &str, limit: Duration, redact: &Redact) -> Result<String> {
    let ended = run(cmd, what, limit, redact, true, &mut |_| {})?;
    if !ended.success() {
        return Err(failure(what, &ended));
    }
    Ok(ended.stdout)
}

/// The error for a command that ran and failed, with what docker said.
pub fn failure(program: &str, ended: &Ended) -> Error {
    let said = ended.stderr.trim();
    let kind = if said.contains("Cannot connect to the Docker daemon")
        || said.contains("permission denied while trying to connect")
    {
        ErrorKind::Unreachable
    } else if said.contains("No such") || said.contains("no such") {
        ErrorKind::NotFound
    } else {
        ErrorKind::Failed
    };
    let msg = if said.is_empty() {
        format!("failed ({})", ended.status)
    } else {
        format!("failed ({}): {said}", ended.status)
    };
    let e = Error::new(kind, program, msg);
    match kind {
        ErrorKind::Unreachable => {
            e.hint("start the docker engine (`systemctl start docker`) and make sure caretaker may use its socket")
        }
        _ => e,
    }
}

fn spawn_error(program: &str, dir: Option<&std::path::Path>, e: std::io::Error) -> Error {
    // Spawning reports a missing working directory as `NotFound` too: that is no missing tool.
    if let Some(dir) = dir.filter(|d| !d.is_dir()) {
        return Error::new(ErrorKind::NotFound, program, format!("its directory {} does not exist", dir.display()));
    }
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::new(ErrorKind::ToolMissing, program, "not installed")
            .hint("install docker (Debian: `apt install docker.io docker-compose`)")
    } else {
        Error::new(ErrorKind::Io, program, format!("cannot start it: {e}"))
    }
}

fn pump(stream: impl Read, tx: &mpsc::Sender<Line>, wrap: fn(String) -> Line) {
    let mut r = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let l = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                if tx.send(wrap(l)).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_working_directory_is_not_reported_as_a_missing_tool() {
        let mut cmd = Command::new("true");
        cmd.current_dir("/nonexistent/caretaker/current");
        let e = run(cmd, "docker-compose up", Duration::from_secs(5), &no_redact(), false, &mut |_| {}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("directory /nonexistent/caretaker/current does not exist"), "{e}");
        assert!(e.what_to_do().is_none_or(|h| !h.contains("install")), "{e}");
        let e = run(
            Command::new("/nonexistent/docker-compose"),
            "docker-compose",
            Duration::from_secs(5),
            &no_redact(),
            false,
            &mut |_| {},
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ToolMissing, "{e}");
    }
}
