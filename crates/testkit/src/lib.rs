//! Test support shared by caretaker's crates: finding the real services the test script
//! started, polling instead of sleeping, unique names, and running the `caretaker` binary.
//!
//! Real-service tests call [`require_service`]: under CI a missing service is a failure, on a
//! developer machine it is a loud skip (run `scripts/test` to get the services).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The value of a service variable written by `scripts/services` (e.g. `CARETAKER_TEST_PG_URL`).
/// Returns `None` (and prints why) when it is unset outside CI; panics when CI is set, because
/// a skipped real-service test in CI would hide a broken install step.
pub fn require_service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{var} is not set: scripts/test starts the real services the tests need (scripts/services start)"
                );
            }
            eprintln!("SKIPPED: {var} not set; run scripts/test (or `scripts/services start` and source its env file)");
            None
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A name unique within this test run, usable as a database or directory name.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}

/// Runs the `caretaker` binary with a config and state dir, capturing output.
pub struct Caretaker {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub state_dir: PathBuf,
}

impl Caretaker {
    pub fn new(bin: impl Into<PathBuf>, config: &Path, state_dir: &Path) -> Self {
        Caretaker { bin: bin.into(), config: config.to_path_buf(), state_dir: state_dir.to_path_buf() }
    }

    /// A command with `--config` and `--state-dir` set and a clean environment for caretaker's
    /// own variables.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config").arg(&self.config).arg("--state-dir").arg(&self.state_dir).args(args);
        c.env_remove("CARETAKER_CONFIG").env_remove("CARETAKER_STATE_DIR");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run caretaker")
    }

    /// Runs and asserts the exit code, returning stdout.
    pub fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "caretaker {args:?}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs with `--json` output parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let s = self.expect(args, 0);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("caretaker {args:?}: not JSON ({e}): {s}"))
    }
}

/// The private sshd that `scripts/services` starts (SFTP backup repositories): loopback port,
/// the user to log in as, the client's private key and a known_hosts file with its host key.
#[derive(Clone, Debug)]
pub struct TestSshd {
    pub port: u16,
    pub user: String,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
}

impl TestSshd {
    /// From the `CARETAKER_TEST_SSHD_*` variables; `None` (a loud skip) outside CI when unset.
    pub fn from_env() -> Option<TestSshd> {
        let port = require_service("CARETAKER_TEST_SSHD_PORT")?;
        let get = |v: &str| std::env::var(v).unwrap_or_else(|_| panic!("{v} is not set (scripts/services writes it)"));
        Some(TestSshd {
            port: port.parse().expect("CARETAKER_TEST_SSHD_PORT is a port number"),
            user: get("CARETAKER_TEST_SSHD_USER"),
            key: get("CARETAKER_TEST_SSHD_KEY").into(),
            known_hosts: get("CARETAKER_TEST_SSHD_KNOWN_HOSTS").into(),
        })
    }

    /// `sftp://user@127.0.0.1:port//path` for a repository at the absolute `path`.
    pub fn url(&self, path: &Path) -> String {
        format!("sftp://{}@127.0.0.1:{}/{}", self.user, self.port, path.display())
    }

    /// The command stock restic runs to reach this server (`-o sftp.command=...`).
    pub fn restic_sftp_command(&self) -> String {
        format!(
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o IdentitiesOnly=yes -i {} -p {} {}@127.0.0.1 -s sftp",
            self.known_hosts.display(),
            self.key.display(),
            self.port,
            self.user
        )
    }
}
pub mod debian;
