//! The system OpenSSH client, driven the way `backup/src/sftp.rs` drives it: OpenSSH does the
//! connection, the keys and agent, and the host-key check; caretaker adds what makes it strict
//! and non-interactive — here through a generated `-F` config file ([`crate::sshconfig`]), so
//! the options reach jump hosts too.
//!
//! One master connection per host (`ControlMaster`/`ControlPersist`): [`Ssh::connect`] sets it
//! up (or finds it alive: a warm run), then every command of the run is a multiplexed session
//! on it. The connect step is separate so the run can cap how many connections are being set
//! up at once (sshd's `MaxStartups`), apart from how many servers are worked on at once.

use crate::hostkey::fingerprint_in_ssh_message;
use crate::inventory::{Inventory, Server};
use crate::sshconfig::{render, server_alias, Paths};
use crate::{Error, ErrorKind, Result};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A prepared ssh: the generated config and where the master sockets live.
#[derive(Clone, Debug)]
pub struct Ssh {
    pub config: PathBuf,
    pub known_hosts: PathBuf,
    pub control_dir: PathBuf,
    /// Where connect steps write ssh's messages (a detached master keeps its stderr open, so
    /// it cannot be a pipe).
    pub log_dir: PathBuf,
    pub connect_timeout: Duration,
}

/// What [`Ssh::exec`] saw.
#[derive(Debug)]
pub struct Exec {
    /// Exit code of the remote command (ssh's 255: ssh itself failed).
    pub code: Option<i32>,
    pub stderr: String,
}

/// The fleet's paths: fleet.yml's directory (relative paths), the state directory.
pub struct Layout<'a> {
    pub fleet_dir: &'a Path,
    pub state_dir: &'a Path,
}

impl Layout<'_> {
    pub fn resolve(&self, p: &str) -> PathBuf {
        if let Some(rest) = p.strip_prefix("~/") {
            if let Some(home) = std::env::var_os("HOME") {
                return PathBuf::from(home).join(rest);
            }
        }
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.fleet_dir.join(p)
        }
    }

    pub fn known_hosts(&self, inv: &Inventory) -> PathBuf {
        self.resolve(&inv.ssh.known_hosts)
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

/// A short private directory for the control sockets: a Unix socket path has at most 107
/// bytes, and `%C` takes 40 plus ssh's temporary suffix.
fn control_dir(state_dir: &Path) -> Result<PathBuf> {
    let preferred = state_dir.join("ctl");
    let dir = if preferred.as_os_str().len() <= 48 {
        preferred
    } else {
        use sha2::Digest as _;
        let h = sha2::Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
        let tag: String = h.iter().take(6).map(|b| format!("{b:02x}")).collect();
        std::env::temp_dir().join(format!("ct-fleet-{}-{tag}", unsafe { libc::geteuid() }))
    };
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(format!("cannot create {}", dir.display()))(e)),
    }
    // Never use a directory someone else made (or a symlink) for our sockets.
    let md = std::fs::symlink_metadata(&dir).map_err(io(format!("{}", dir.display())))?;
    use std::os::unix::fs::MetadataExt;
    if !md.is_dir() || md.uid() != unsafe { libc::geteuid() } {
        return Err(Error::new(
            ErrorKind::Io,
            format!("{} is not a directory of this user: refusing to put ssh sockets there", dir.display()),
        ));
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", dir.display())))?;
    Ok(dir)
}

/// Writes `text` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, text: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(format!("cannot write {}", tmp.display())))?;
    f.write_all(text).and_then(|_| f.sync_all()).map_err(io(format!("cannot write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("cannot rename {} into place", tmp.display())))?;
    Ok(())
}

impl Ssh {
    /// Writes the config for `servers` (0600) into the state directory.
    pub fn prepare(inv: &Inventory, servers: &[&Server], layout: &Layout<'_>) -> Result<Ssh> {
        std::fs::create_dir_all(layout.state_dir)
            .map_err(io(format!("cannot create {}", layout.state_dir.display())))?;
        let _ = std::fs::set_permissions(layout.state_dir, std::fs::Permissions::from_mode(0o700));
        let known_hosts = layout.known_hosts(inv);
        if !known_hosts.exists() {
            write_private(&known_hosts, b"")?;
        }
        let control_dir = control_dir(layout.state_dir)?;
        let log_dir = layout.state_dir.join("ssh-logs");
        std::fs::create_dir_all(&log_dir).map_err(io(format!("cannot create {}", log_dir.display())))?;
        let identity = inv.ssh.identity_file.as_deref().map(|p| layout.resolve(p));
        let user_config = inv.ssh.include_user_config.then(|| layout.resolve("~/.ssh/config")).filter(|p| p.exists());
        let paths = Paths {
            known_hosts: &known_hosts,
            control_dir: &control_dir,
            identity_file: identity.as_deref(),
            user_config: user_config.as_deref(),
        };
        let text = render(inv, servers, &paths, &|p| layout.resolve(p).display().to_string());
        let config = layout.state_dir.join("ssh_config");
        write_private(&config, text.as_bytes())?;
        Ok(Ssh { config, known_hosts, control_dir, log_dir, connect_timeout: inv.ssh.connect_timeout })
    }

    fn command(&self) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-F").arg(&self.config);
        c
    }

    /// Whether a master connection to `server` is alive (a warm run): its socket accepts a
    /// connection. Cheaper than `ssh -O check` (no process); a stale socket left by a killed
    /// master is removed, so the connect step can make a new one.
    pub fn master_alive(&self, server: &Server) -> bool {
        let path = crate::sshconfig::control_path(&self.control_dir, &server_alias(server));
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(_) => true,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    let _ = std::fs::remove_file(&path);
                }
                false
            }
        }
    }

    /// Sets up the master connection to `server` unless one is alive. Returns whether one was
    /// alive already. Fails with a classified error (host key, login, unreachable, timeout).
    pub fn connect(&self, server: &Server, timeout: Duration) -> Result<bool> {
        if self.master_alive(server) {
            return Ok(true);
        }
        let log = self.log_dir.join(format!("{}.connect.log", server.name));
        let err = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&log)
            .map_err(io(format!("cannot write {}", log.display())))?;
        let mut child = self
            .command()
            .args(["-f", "-N", "-o", "ControlMaster=yes"])
            .arg(server_alias(server))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(io("cannot run ssh (install openssh-client)".into()))?;
        let status = wait_deadline(&mut child, Instant::now() + timeout);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(false),
            Some(_) => Err(self.explain(server, &text, timeout)),
            None => Err(Error::new(
                ErrorKind::Timeout,
                format!("{}: no SSH connection within {}s", server.name, timeout.as_secs()),
            )
            .hint("check that the server is up and reachable (network, firewall, jump host)")),
        }
    }

    /// Runs `argv` on `server` (each word quoted for the remote shell), feeding `stdin` if
    /// given; each stdout line goes to `on_line` as it arrives. Kills the session after
    /// `timeout`. A dead controller takes its ssh sessions with it (`PR_SET_PDEATHSIG`).
    pub fn exec(
        &self,
        server: &Server,
        argv: &[String],
        stdin: Option<&Path>,
        timeout: Duration,
        mut on_line: impl FnMut(&str),
    ) -> Result<Exec> {
        let remote: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
        let mut cmd = self.command();
        cmd.args(["-T", "-o", "ControlMaster=no"]).arg(server_alias(server)).arg("--").arg(remote.join(" "));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        match stdin {
            Some(p) => {
                let f = std::fs::File::open(p).map_err(io(format!("cannot read {}", p.display())))?;
                cmd.stdin(f);
            }
            None => {
                cmd.stdin(Stdio::null());
            }
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(io("cannot run ssh (install openssh-client)".into()))?;
        let out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut err).take(256 * 1024).read_to_end(&mut buf);
            // Drain the rest so ssh never blocks on a full pipe.
            let _ = std::io::copy(&mut err, &mut std::io::sink());
            String::from_utf8_lossy(&buf).into_owned()
        });
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => on_line(&l),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    let _ = child.kill();
                    break;
                }
            }
        }
        let status = child.wait().map_err(io("waiting for ssh".into()))?;
        let _ = reader.join();
        let stderr = err_reader.join().unwrap_or_default();
        if timed_out {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{}: the remote command did not finish within {}s and was stopped",
                    server.name,
                    timeout.as_secs()
                ),
            )
            .hint("raise ssh.run_timeout in fleet.yml if the server's tasks need longer"));
        }
        if status.code() == Some(255) {
            return Err(self.explain(server, &stderr, self.connect_timeout * 2 + crate::run::HANDSHAKE_GRACE));
        }
        Ok(Exec { code: status.code(), stderr })
    }

    /// Classifies a failure. Through a jump host, with `ControlPersist` on, OpenSSH sends the
    /// jump hop's messages to /dev/null (a detached master must not hold the terminal), so a
    /// refused jump host key shows only as "connection closed": then one more connection
    /// without master or persistence shows what the jump hop says.
    fn explain(&self, server: &Server, stderr: &str, timeout: Duration) -> Error {
        let first = classify(server, stderr, &self.known_hosts);
        if server.jump.is_none() || first.kind != ErrorKind::Unreachable {
            return first;
        }
        let Ok(mut child) = self
            .command()
            .args(["-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "ControlPersist=no"])
            .arg(server_alias(server))
            .arg("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        else {
            return first;
        };
        let mut err = child.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let _ = wait_deadline(&mut child, Instant::now() + timeout);
        let text = reader.join().unwrap_or_default();
        let second = classify(server, &text, &self.known_hosts);
        if second.kind == ErrorKind::Unreachable {
            first
        } else {
            second
        }
    }

    /// Ends the master connection to `server`.
    pub fn exit_master(&self, server: &Server) {
        let _ = self
            .command()
            .args(["-O", "exit"])
            .arg(server_alias(server))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The plain ssh command line (after `ssh`) for a server, for messages and scripts.
    pub fn argv(&self, server: &Server) -> Vec<OsString> {
        vec!["-F".into(), self.config.clone().into(), server_alias(server).into()]
    }
}

/// Waits for `child` until `deadline`; kills it then and returns `None`.
fn wait_deadline(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A word for the remote POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '=' | ':' | ',' | '@'))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The host named in ssh's host-key message (`... known for [h]:p and ...`,
/// `Host key for h has changed ...`).
fn host_in_message(stderr: &str) -> Option<String> {
    for l in stderr.lines() {
        if let Some(r) = l.split("host key is known for ").nth(1) {
            return r.split_whitespace().next().map(str::to_string);
        }
        if let Some(r) = l.split("Host key for ").nth(1) {
            return r.split_whitespace().next().map(str::to_string);
        }
    }
    None
}

/// Why ssh failed for `server`, from what it printed (pure; unit-tested).
pub fn classify(server: &Server, stderr: &str, known_hosts: &Path) -> Error {
    let lower = stderr.to_lowercase();
    let file = known_hosts.display();
    let last = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('@'))
        .unwrap_or("ssh exited without a message")
        .to_string();
    let named = host_in_message(stderr);
    let jump = server.jump.as_ref().map(|j| j.known_hosts_name());
    let which = match (&named, &jump) {
        (Some(n), Some(j)) if n == j => format!("jump host {n} (of server {})", server.name),
        (Some(n), _) => format!("{n} (server {})", server.name),
        (None, _) => format!("server {} ({})", server.name, server.ssh.known_hosts_name()),
    };
    if lower.contains("remote host identification has changed")
        || (lower.contains("host key for") && lower.contains("has changed"))
    {
        let fp = fingerprint_in_ssh_message(stderr).map(|f| format!("; it now offers {f}")).unwrap_or_default();
        return Error::new(
            ErrorKind::HostKey,
            format!("the SSH host key of {which} has CHANGED since it was recorded in {file}: refusing to connect{fp}"),
        )
        .hint(format!(
            "this is what an attack looks like (it also happens when a server is reinstalled): compare with the \
             fingerprint its administrator gives you (`caretaker fleet hostkey {}`), and only then `caretaker fleet hostkey {} --accept --replace`",
            server.name, server.name
        ));
    }
    if lower.contains("host key verification failed") || lower.contains("host key is known for") {
        return Error::new(ErrorKind::HostKey, format!("the SSH host key of {which} is unknown (not in {file}): refusing to connect"))
            .hint(format!(
                "compare the fingerprints `caretaker fleet hostkey {}` prints with the ones the server's administrator gives you, then `caretaker fleet hostkey {} --accept`",
                server.name, server.name
            ));
    }
    if lower.contains("permission denied") || lower.contains("too many authentication failures") {
        return Error::new(ErrorKind::Login, format!("{which}: the SSH login was refused ({last})")).hint(
            "put the controller's public key in the server's authorized_keys, or set identity_file in fleet.yml",
        );
    }
    if lower.contains("load key") || lower.contains("bad configuration") || lower.contains("unprotected private key") {
        return Error::new(ErrorKind::Login, format!("{which}: ssh cannot use its key or config ({last})"));
    }
    let down = [
        "connection refused",
        "connection timed out",
        "no route to host",
        "network is unreachable",
        "could not resolve hostname",
        "name or service not known",
        "temporary failure in name resolution",
        "connection closed",
        "connection reset",
        "operation timed out",
        "broken pipe",
    ];
    if down.iter().any(|d| lower.contains(d)) {
        return Error::new(ErrorKind::Unreachable, format!("cannot reach {which} ({last})"));
    }
    Error::new(ErrorKind::Unreachable, format!("ssh to {which} failed: {last}"))
}

/// Host-key algorithms asked for one by one, so every key type the server has is shown.
const SCAN_ALGORITHMS: &[&str] =
    &["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512"];

impl Ssh {
    /// The host keys `server` offers, fetched the way a run connects — through its jump host,
    /// which must already be trusted (strictly checked against the fleet's known_hosts, as
    /// always). Only the server's own key goes to a scratch known_hosts file; no login is
    /// attempted, and nothing is trusted by this.
    pub fn scan_host_keys(&self, server: &Server, scratch: &Path) -> Result<Vec<crate::hostkey::HostKey>> {
        let mut keys: Vec<crate::hostkey::HostKey> = Vec::new();
        let mut last_err = None;
        for (i, alg) in SCAN_ALGORITHMS.iter().enumerate() {
            let file = scratch.join(format!("scan-{i}"));
            let _ = std::fs::remove_file(&file);
            // Command-line options come before the config file's, and reach this ssh only —
            // not the jump host's, which stays strict.
            let out = self
                .command()
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", file.display()))
                .args(["-o", "StrictHostKeyChecking=accept-new", "-o", "ControlMaster=no", "-o", "ControlPath=none"])
                .arg("-o")
                .arg(format!("HostKeyAlgorithms={alg}"))
                .args([
                    "-o",
                    "PubkeyAuthentication=no",
                    "-o",
                    "PasswordAuthentication=no",
                    "-o",
                    "KbdInteractiveAuthentication=no",
                ])
                .args(["-o", "GSSAPIAuthentication=no", "-o", "HostbasedAuthentication=no"])
                .arg(server_alias(server))
                .arg("true")
                .stdin(Stdio::null())
                .output()
                .map_err(io("cannot run ssh (install openssh-client)".into()))?;
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let found = crate::hostkey::parse_known_hosts(&text);
            if found.is_empty() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let lower = stderr.to_lowercase();
                if !lower.contains("no matching host key type") && !lower.contains("permission denied") {
                    last_err = Some(classify(server, &stderr, &self.known_hosts));
                }
            }
            for (_, k) in found {
                if !keys.iter().any(|x| x.base64 == k.base64) {
                    keys.push(k);
                }
            }
            let _ = std::fs::remove_file(&file);
        }
        if keys.is_empty() {
            return Err(last_err.unwrap_or_else(|| {
                Error::new(ErrorKind::Unreachable, format!("{} offered no host key", server.name))
            }));
        }
        Ok(keys)
    }
}

/// The keys recorded for `name` in `known_hosts` (hashed entries too), through
/// `ssh-keygen -F`, which knows every form OpenSSH writes.
pub fn recorded_keys(known_hosts: &Path, name: &str) -> Result<Vec<crate::hostkey::HostKey>> {
    if !known_hosts.exists() {
        return Ok(Vec::new());
    }
    let out = Command::new("ssh-keygen")
        .arg("-F")
        .arg(name)
        .arg("-f")
        .arg(known_hosts)
        .stdin(Stdio::null())
        .output()
        .map_err(io("cannot run ssh-keygen (install openssh-client)".into()))?;
    Ok(crate::hostkey::parse_known_hosts(&String::from_utf8_lossy(&out.stdout)).into_iter().map(|(_, k)| k).collect())
}

/// Removes every key recorded for `name` (`ssh-keygen -R`).
pub fn forget_keys(known_hosts: &Path, name: &str) -> Result<()> {
    let out = Command::new("ssh-keygen")
        .arg("-R")
        .arg(name)
        .arg("-f")
        .arg(known_hosts)
        .stdin(Stdio::null())
        .output()
        .map_err(io("cannot run ssh-keygen (install openssh-client)".into()))?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("ssh-keygen -R {name}: {}", String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    let _ = std::fs::remove_file(known_hosts.with_extension("old"));
    let _ = std::fs::remove_file(format!("{}.old", known_hosts.display()));
    Ok(())
}

/// Appends known_hosts lines atomically (the whole file rewritten, mode 0600).
pub fn append_known_hosts(known_hosts: &Path, lines: &[String]) -> Result<()> {
    let mut text = std::fs::read_to_string(known_hosts).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    write_private(known_hosts, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Endpoint;

    fn srv() -> Server {
        let mut s = Server::new("web1", Endpoint::parse("10.0.0.2:2222").unwrap());
        s.jump = Some(Endpoint::parse("admin@10.0.0.1:22").unwrap());
        s
    }

    #[test]
    fn classifies_host_key_failures_and_names_the_jump_host() {
        let kh = Path::new("/f/known_hosts");
        let e = classify(&srv(), "No ED25519 host key is known for [10.0.0.2]:2222 and you have requested strict checking.\nHost key verification failed.\n", kh);
        assert_eq!(e.kind, ErrorKind::HostKey);
        assert!(e.message.contains("of [10.0.0.2]:2222 (server web1) is unknown"), "{}", e.message);
        let changed = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nThe fingerprint for the ED25519 key sent by the remote host is\nSHA256:xyz.\nHost key for 10.0.0.1 has changed and you have requested strict checking.\nHost key verification failed.\n";
        let e = classify(&srv(), changed, kh);
        assert_eq!(e.kind, ErrorKind::HostKey);
        assert!(e.message.contains("of jump host 10.0.0.1 (of server web1) has CHANGED"), "{}", e.message);
        assert!(e.message.contains("SHA256:xyz. (ED25519)"), "{}", e.message);
        let e = classify(&srv(), "ssh: connect to host 10.0.0.2 port 2222: Connection refused\n", kh);
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert!(e.is_transient());
        let e = classify(&srv(), "u@h: Permission denied (publickey).\n", kh);
        assert_eq!(e.kind, ErrorKind::Login);
    }

    #[test]
    fn quotes_for_the_remote_shell() {
        assert_eq!(shell_quote("run-due"), "run-due");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
