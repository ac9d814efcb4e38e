//! Running the client tools (`pg_dump`, `pg_restore`, `mariadb-dump`, `mariadb`) as child
//! processes: streaming their stdout to a writer or a reader to their stdin, piping one into
//! another, and keeping the tail of stderr for the error message. Secrets go to children only
//! through their environment or a 0600 file ([`SecretFile`]), never through argv.

use caretaker_core::config::Redactor;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

/// Looks a program up on `PATH`, trying each name in order.
pub(crate) fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// `docker exec -i [-e NAME]... CONTAINER PROGRAM`: a client tool inside the database server's
/// container. Each variable in `env_names` is passed by name only; the caller sets its value on
/// the returned command (docker's own environment), so no value is ever on a command line.
pub(crate) fn in_container(container: &str, program: &str, env_names: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(["exec", "-i"]);
    for name in env_names {
        c.args(["-e", name]);
    }
    c.arg(container).arg(program);
    c
}

/// A temporary file readable only by us (mode 0600), removed when dropped: a MariaDB option
/// file or a pgpass file.
pub(crate) struct SecretFile {
    file: tempfile::NamedTempFile,
}

impl SecretFile {
    pub(crate) fn new(contents: &str) -> std::io::Result<Self> {
        // tempfile creates files with mode 0600 on Unix.
        let mut file = tempfile::Builder::new().prefix("caretaker-db-").tempfile()?;
        file.write_all(contents.as_bytes())?;
        file.flush()?;
        Ok(SecretFile { file })
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }
}

/// How a child process ended when it did not succeed.
#[derive(Debug)]
pub(crate) struct ToolFailure {
    pub program: String,
    /// `None` when the program could not be started at all.
    pub status: Option<ExitStatus>,
    /// The last lines of stderr, with secrets redacted.
    pub stderr: String,
    pub io_error: Option<std::io::Error>,
}

impl ToolFailure {
    pub(crate) fn describe(&self) -> String {
        let mut s = match (&self.status, &self.io_error) {
            (_, Some(e)) => format!("{}: {e}", self.program),
            (Some(st), None) => format!("{} failed ({st})", self.program),
            (None, None) => format!("{} failed", self.program),
        };
        let tail = self.stderr.trim();
        if !tail.is_empty() {
            s.push_str(": ");
            s.push_str(tail);
        }
        s
    }
}

fn program_name(cmd: &Command) -> String {
    Path::new(cmd.get_program()).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn spawn(cmd: &mut Command) -> Result<Child, ToolFailure> {
    cmd.spawn().map_err(|e| ToolFailure {
        program: program_name(cmd),
        status: None,
        stderr: String::new(),
        io_error: Some(e),
    })
}

/// Collects the last 16 KiB of a child's stderr on a thread.
fn collect_stderr(stderr: ChildStderr) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut stderr = stderr;
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        let keep = buf.len().saturating_sub(16 * 1024);
        String::from_utf8_lossy(&buf[keep..]).into_owned()
    })
}

fn finish(
    program: String,
    mut child: Child,
    stderr: JoinHandle<String>,
    io_error: Option<std::io::Error>,
    redactor: &Redactor,
) -> Result<(), ToolFailure> {
    let status = child.wait();
    let stderr = redactor.redact(&stderr.join().unwrap_or_default());
    match status {
        Ok(st) if st.success() && io_error.is_none() => Ok(()),
        Ok(st) => Err(ToolFailure { program, status: Some(st), stderr, io_error }),
        Err(e) => Err(ToolFailure { program, status: None, stderr, io_error: Some(e) }),
    }
}

/// Runs `cmd`, feeding `input` (if any) to its stdin, and returns its stdout.
pub(crate) fn capture(mut cmd: Command, input: Option<&[u8]>, redactor: &Redactor) -> Result<String, ToolFailure> {
    let program = program_name(&cmd);
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut cmd)?;
    let stderr = collect_stderr(child.stderr.take().expect("piped"));
    let mut stdout_pipe = child.stdout.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout_pipe.read_to_end(&mut buf);
        buf
    });
    let mut io_error = None;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        if let Err(e) = stdin.write_all(data) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                io_error = Some(e);
            }
        }
    }
    let out = out.join().unwrap_or_default();
    finish(program, child, stderr, io_error, redactor)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Runs `cmd` and copies its stdout into `out` as it comes; returns the bytes copied.
pub(crate) fn stream_out(mut cmd: Command, out: &mut dyn Write, redactor: &Redactor) -> Result<u64, ToolFailure> {
    let program = program_name(&cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn(&mut cmd)?;
    let stderr = collect_stderr(child.stderr.take().expect("piped"));
    let mut stdout = child.stdout.take().expect("piped");
    let copied = std::io::copy(&mut stdout, out).and_then(|n| out.flush().map(|_| n));
    let (n, io_error) = match copied {
        Ok(n) => (n, None),
        Err(e) => {
            // The reader of our output failed: stop the tool rather than let it block.
            let _ = child.kill();
            (0, Some(e))
        }
    };
    drop(stdout);
    finish(program, child, stderr, io_error, redactor)?;
    Ok(n)
}

/// Runs `cmd` with `input` copied to its stdin; returns the bytes copied. Its stdout is
/// discarded: the tools used here report errors on stderr.
pub(crate) fn stream_in(mut cmd: Command, input: &mut dyn Read, redactor: &Redactor) -> Result<u64, ToolFailure> {
    let program = program_name(&cmd);
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = spawn(&mut cmd)?;
    let stderr = collect_stderr(child.stderr.take().expect("piped"));
    let mut stdin = child.stdin.take().expect("piped");
    let (n, io_error) = match std::io::copy(input, &mut stdin) {
        Ok(n) => (n, None),
        // The tool stopped reading: it failed, and its stderr says why.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => (0, None),
        Err(e) => {
            let _ = child.kill();
            (0, Some(e))
        }
    };
    drop(stdin);
    finish(program, child, stderr, io_error, redactor)?;
    Ok(n)
}

/// Pipes the stdout of `producer` into the stdin of `consumer` (no copy through us).
pub(crate) fn pipe(mut producer: Command, mut consumer: Command, redactor: &Redactor) -> Result<(), ToolFailure> {
    let p_name = program_name(&producer);
    let c_name = program_name(&consumer);
    producer.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut p = spawn(&mut producer)?;
    let p_err = collect_stderr(p.stderr.take().expect("piped"));
    let p_out = p.stdout.take().expect("piped");
    consumer.stdin(Stdio::from(p_out)).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut c = match spawn(&mut consumer) {
        Ok(c) => c,
        Err(e) => {
            let _ = p.kill();
            let _ = p.wait();
            return Err(e);
        }
    };
    let c_err = collect_stderr(c.stderr.take().expect("piped"));
    // When the consumer dies, the producer gets SIGPIPE on its next write and ends too.
    let consumed = finish(c_name, c, c_err, None, redactor);
    let produced = finish(p_name, p, p_err, None, redactor);
    match (produced, consumed) {
        // Killed by SIGPIPE: the consumer's failure is the cause.
        (Err(p), Err(c)) if p.status.and_then(|s| s.signal()) == Some(13) => Err(c),
        // Otherwise the producer's (the consumer only saw a cut stream).
        (Err(p), _) => Err(p),
        (Ok(()), c) => c,
    }
}
