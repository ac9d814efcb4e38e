//! SFTP repositories: rustic_core's backend traits over the SFTP protocol (`russh-sftp`, a
//! client of the protocol only) spoken through the system's OpenSSH client, `ssh … -s sftp` —
//! the way stock restic does it. OpenSSH does the connection, the key authentication and the
//! host-key check, so `~/.ssh/config`, `ssh-agent` (for keys with a passphrase) and hashed
//! `known_hosts` files all work as operators know them; caretaker adds the options that make it
//! strict and non-interactive ([`ssh_args`]). The layout is restic's (`config`, `keys/<id>`,
//! `data/<xx>/<id>`, ...), so stock `restic -r sftp:…` reads the same repository.
//!
//! Files are written as `<name>-tmp-<pid>-<n>` and renamed into place, so a killed run never
//! leaves a truncated file under a valid name (restic and rustic ignore names that are not ids).
//!
//! A lost connection (ssh exited or the session broke) fails the request with a
//! [`Transient`] error, and the next request starts a new `ssh` process: the retry decorator
//! (`crate::retry`) turns a dropped connection mid-backup into a reconnect and a retry.

use crate::error::{Error, ErrorKind as Kind};
use crate::retry::Transient;
use bytes::Bytes;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use rustic_core::{BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// Where the repository is and how to log in. Nothing here is secret: a key with a passphrase
/// is used through `ssh-agent`, never through caretaker.
#[derive(Clone, Debug)]
pub struct SftpTarget<'a> {
    pub user: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
    /// Path of the repository on the server (relative paths start in the login directory).
    pub path: &'a str,
    /// Private key (`-i`); without one, ssh's defaults and agent are used.
    pub key_file: Option<&'a Path>,
    /// The only known_hosts file trusted; without one, ssh's defaults (`~/.ssh/known_hosts`,
    /// `/etc/ssh/ssh_known_hosts`).
    pub known_hosts_file: Option<&'a Path>,
}

impl SftpTarget<'_> {
    /// `host` or `[host]:port`, as ssh writes it in known_hosts.
    fn host_spec(&self) -> String {
        match self.port {
            Some(p) if p != 22 => format!("[{}]:{p}", self.host),
            _ => self.host.to_string(),
        }
    }

    fn location(&self) -> String {
        let user = self.user.map(|u| format!("{u}@")).unwrap_or_default();
        match self.port {
            Some(p) => format!("sftp://{user}{}:{p}/{}", self.host, self.path),
            None => format!("sftp:{user}{}:{}", self.host, self.path),
        }
    }
}

/// The `ssh` arguments (after the program name) that open the SFTP subsystem: no prompts
/// (`BatchMode`), strict host-key checking that the user's ssh config cannot weaken (command
/// line options win over config files), bounded connect and dead-peer times.
pub fn ssh_args(t: &SftpTarget<'_>) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut opt = |s: String| {
        a.push("-o".into());
        a.push(s.into());
    };
    opt("BatchMode=yes".into());
    opt("StrictHostKeyChecking=yes".into());
    opt("ConnectTimeout=20".into());
    opt("ServerAliveInterval=15".into());
    opt("ServerAliveCountMax=4".into());
    if let Some(k) = t.known_hosts_file {
        opt(format!("UserKnownHostsFile=\"{}\"", k.display()));
        opt("GlobalKnownHostsFile=/dev/null".into());
    }
    if let Some(k) = t.key_file {
        opt("IdentitiesOnly=yes".into());
        a.push("-i".into());
        a.push(k.as_os_str().to_owned());
    }
    if let Some(p) = t.port {
        a.push("-p".into());
        a.push(p.to_string().into());
    }
    if let Some(u) = t.user {
        a.push("-l".into());
        a.push(u.into());
    }
    a.push("-s".into());
    a.push("--".into());
    a.push(t.host.into());
    a.push("sftp".into());
    a
}

/// Whether what ssh printed (lowercase) says the server could not be reached — the one kind of
/// connection failure that waiting may fix (a refused key or host key never is).
fn is_down(lower: &str) -> bool {
    [
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
    ]
    .iter()
    .any(|s| lower.contains(s))
}

/// How [`classify_ssh_failure`] begins the message for a server that could not be reached.
const UNREACHABLE: &str = "cannot reach the SFTP server";

/// Why ssh could not open the session, from what it printed (pure; unit-tested).
pub fn classify_ssh_failure(t: &SftpTarget<'_>, stderr: &str) -> Error {
    let host = t.host_spec();
    let port = t.port.unwrap_or(22);
    let file = t.known_hosts_file.map_or_else(|| "~/.ssh/known_hosts".to_string(), |p| p.display().to_string());
    let text = stderr.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("@@@")).collect::<Vec<_>>();
    let last = text.last().copied().unwrap_or("ssh exited without a message");
    let lower = stderr.to_lowercase();
    if lower.contains("remote host identification has changed")
        || (lower.contains("host key for") && lower.contains("has changed"))
    {
        return Error::new(
            Kind::HostKey,
            format!(
                "the SSH host key of {host} has CHANGED since it was recorded in {file}: refusing to connect \
                 (this is what an attack looks like; it also happens when the server was reinstalled)"
            ),
        )
        .hint(format!(
            "ask the server's administrator for its host key fingerprint; only if the change is legitimate, remove \
             the old key with `ssh-keygen -R '{host}' -f {file}` and add the new one \
             (`ssh-keyscan -p {port} {} >> {file}`, then compare `ssh-keygen -lf {file}` with the fingerprint)",
            t.host
        ));
    }
    if lower.contains("host key verification failed") || lower.contains("host key is known for") {
        return Error::new(
            Kind::HostKey,
            format!(
                "the SSH host key of {host} is unknown (not in {file}): strict host-key checking refuses hosts it \
                 cannot verify"
            ),
        )
        .hint(format!(
            "get the server's host key fingerprint from its administrator, then add the key: \
             `ssh-keyscan -p {port} {} >> {file}` and check that `ssh-keygen -lf {file}` shows that fingerprint \
             (set backup.sftp.known_hosts_file to use another file)",
            t.host
        ));
    }
    let key = t.key_file.map_or_else(|| "ssh's default keys".to_string(), |k| k.display().to_string());
    if lower.contains("unprotected private key file") || lower.contains("bad permissions") {
        return Error::new(Kind::Unreachable, format!("ssh refuses the key {key}: other users can read it"))
            .hint(format!("make it private: `chmod 600 {key}` (owned by caretaker's user)"));
    }
    if lower.contains("identity file") && (lower.contains("not accessible") || lower.contains("no such file")) {
        return Error::new(Kind::Unreachable, format!("cannot read the SSH key {key} for {host} ({last})"))
            .hint("check backup.sftp.key_file: the private key, readable by caretaker's user, mode 0600");
    }
    if lower.contains("load key") {
        return Error::new(Kind::Unreachable, format!("ssh cannot use the key {key} ({last})")).hint(
            "check backup.sftp.key_file (an OpenSSH private key; one with a passphrase must be loaded in ssh-agent)",
        );
    }
    if lower.contains("permission denied") || lower.contains("too many authentication failures") {
        let user = t.user.unwrap_or("(your login name)");
        return Error::new(
            Kind::Unreachable,
            format!("the SFTP server {host} refused the login of user {user} with {key} ({last})"),
        )
        .hint(format!(
            "add the public key ({key}.pub) to ~{user}/.ssh/authorized_keys on the server, or set \
             backup.sftp.key_file to the right key (a key with a passphrase must be loaded in ssh-agent)"
        ));
    }
    if lower.contains("subsystem request failed") {
        return Error::new(Kind::Unreachable, format!("the SSH server {host} offers no SFTP subsystem ({last})"))
            .hint("enable `Subsystem sftp` in the server's sshd_config");
    }
    if is_down(&lower) {
        return Error::new(Kind::Unreachable, format!("{UNREACHABLE} {host} ({last})"))
            .hint("check that the server is up and reachable from this machine (network, firewall, host name), then run again");
    }
    Error::new(Kind::Unreachable, format!("cannot open an SFTP session on {host}: {last}"))
        .hint("try `ssh` with the same key and known_hosts file by hand to see what fails")
}

/// The SFTP client runs its requests on this runtime; rustic calls the backend from plain threads.
fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("caretaker-sftp")
            .enable_all()
            .build()
            .expect("the SFTP client's runtime")
    })
}

/// [`SftpTarget`] owned, to reconnect.
#[derive(Clone, Debug)]
struct OwnedTarget {
    user: Option<String>,
    host: String,
    port: Option<u16>,
    path: String,
    key_file: Option<PathBuf>,
    known_hosts_file: Option<PathBuf>,
}

impl OwnedTarget {
    fn new(t: &SftpTarget<'_>) -> Self {
        OwnedTarget {
            user: t.user.map(str::to_string),
            host: t.host.to_string(),
            port: t.port,
            path: t.path.to_string(),
            key_file: t.key_file.map(Path::to_path_buf),
            known_hosts_file: t.known_hosts_file.map(Path::to_path_buf),
        }
    }

    fn target(&self) -> SftpTarget<'_> {
        SftpTarget {
            user: self.user.as_deref(),
            host: &self.host,
            port: self.port,
            path: &self.path,
            key_file: self.key_file.as_deref(),
            known_hosts_file: self.known_hosts_file.as_deref(),
        }
    }
}

/// One `ssh` process and the SFTP session over it.
struct Conn {
    session: SftpSession,
    /// The `ssh` process (killed when the connection is dropped).
    child: Mutex<tokio::process::Child>,
    /// The last few KiB of what ssh printed, for error messages.
    stderr: Arc<Mutex<String>>,
    /// A request saw the connection fail: the next request reconnects.
    broken: std::sync::atomic::AtomicBool,
}

impl Conn {
    /// Whether ssh has exited or a request saw the session break.
    fn is_gone(&self) -> bool {
        if self.broken.load(Ordering::Relaxed) {
            return true;
        }
        let _rt = runtime().enter();
        self.child.lock().unwrap().try_wait().ok().flatten().is_some()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.broken.load(Ordering::Relaxed) {
            let _ =
                runtime().block_on(async { tokio::time::timeout(Duration::from_secs(5), self.session.close()).await });
        }
        if let Ok(mut c) = self.child.lock() {
            let _ = c.start_kill();
        }
    }
}

pub struct SftpBackend {
    target: OwnedTarget,
    /// The current connection; replaced when it is gone.
    conn: Mutex<Arc<Conn>>,
    root: String,
    location: String,
    tmp_counter: AtomicU64,
    /// How many times the connection was re-established.
    reconnects: AtomicU64,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpBackend").field("location", &self.location).finish_non_exhaustive()
    }
}

fn backend_err(what: String, err: impl std::error::Error + Send + Sync + 'static) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, what, err)
}

fn is_not_found(e: &russh_sftp::client::error::Error) -> bool {
    matches!(e, russh_sftp::client::error::Error::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

/// Whether the error says the session itself failed (not the server refusing one request):
/// no status from the server, a timeout, or the client's "connection lost" statuses.
fn is_connection_error(e: &russh_sftp::client::error::Error) -> bool {
    use russh_sftp::client::error::Error as E;
    match e {
        E::Status(s) => matches!(s.status_code, StatusCode::NoConnection | StatusCode::ConnectionLost),
        E::IO(_) | E::Timeout | E::UnexpectedPacket | E::UnexpectedBehavior(_) => true,
        E::Limited(_) => false,
    }
}

impl SftpBackend {
    /// Starts `ssh` and opens the SFTP session; a refused host key or login, or a server that
    /// cannot be reached, is an [`Error`] that says which and what to do.
    pub fn connect(t: &SftpTarget<'_>) -> Result<Self, Error> {
        let conn = open(t).map_err(|(e, _)| e)?;
        Ok(SftpBackend {
            target: OwnedTarget::new(t),
            conn: Mutex::new(Arc::new(conn)),
            root: t.path.trim_end_matches('/').to_string(),
            location: t.location(),
            tmp_counter: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        })
    }

    /// How many times the connection was re-established after it was lost.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// The connection to use: the current one, or a new one when it is gone (a failure to
    /// reconnect is [`Transient`] when the server could not be reached, permanent when it
    /// refused the key or host key).
    fn conn(&self) -> RusticResult<Arc<Conn>> {
        let mut cur = self.conn.lock().unwrap();
        if !cur.is_gone() {
            return Ok(cur.clone());
        }
        let t = self.target.target();
        match open(&t) {
            Ok(c) => {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(repository = %self.location, "the SSH connection was lost; reconnected");
                *cur = Arc::new(c);
                Ok(cur.clone())
            }
            Err((e, transient)) => {
                let what = format!("reconnecting to {}", self.location);
                Err(if transient { backend_err(what, Transient(Box::new(e))) } else { backend_err(what, e) })
            }
        }
    }
}

/// Starts `ssh` and opens the SFTP session; on failure the error and whether it is transient
/// (the server could not be reached, or did not answer).
fn open(t: &SftpTarget<'_>) -> Result<Conn, (Error, bool)> {
    {
        let location = t.location();
        let args = ssh_args(t);
        let stderr = Arc::new(Mutex::new(String::new()));
        let rt = runtime();
        let (child, session) = rt.block_on(async {
            let mut cmd = tokio::process::Command::new("ssh");
            cmd.args(&args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .env_remove("SSH_ASKPASS")
                .kill_on_drop(true);
            let mut child = cmd.spawn().map_err(|e| {
                let err = Error::new(Kind::Unreachable, format!("cannot run `ssh` for {location}: {e}"));
                if e.kind() == std::io::ErrorKind::NotFound {
                    (err.hint("install the OpenSSH client (Debian: apt-get install openssh-client)"), false)
                } else {
                    (err, true)
                }
            })?;
            let out = child.stdout.take().expect("piped stdout");
            let inp = child.stdin.take().expect("piped stdin");
            let mut err_pipe = child.stderr.take().expect("piped stderr");
            let sink = stderr.clone();
            let reader = tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err_pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut s = sink.lock().unwrap();
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if s.len() > 16 << 10 {
                        let cut = s.len() - (8 << 10);
                        let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
                        s.drain(..cut);
                    }
                }
            });
            let cfg = russh_sftp::client::Config { request_timeout_secs: 120, ..Default::default() };
            let opened = tokio::time::timeout(
                Duration::from_secs(90),
                SftpSession::new_with_config(tokio::io::join(out, inp), cfg),
            )
            .await;
            match opened {
                Ok(Ok(session)) => Ok((child, session)),
                failed => {
                    // ssh failed (it printed why) or hangs: collect its last words.
                    let exited = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                    if exited.is_err() {
                        let _ = child.kill().await;
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
                    let printed = stderr.lock().unwrap().clone();
                    if printed.trim().is_empty() {
                        let why = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "no answer in 90 s".to_string(),
                        };
                        return Err((
                            Error::new(Kind::Unreachable, format!("cannot open an SFTP session on {location}: {why}"))
                                .hint("check that the server is up and offers SFTP, then run again"),
                            true,
                        ));
                    }
                    {
                        // Transient only when the server could not be reached: ssh also prints
                        // "connection closed" after refusing a key or a host key.
                        let err = classify_ssh_failure(t, &printed);
                        let transient = err.kind == Kind::Unreachable && err.message.starts_with(UNREACHABLE);
                        Err((err, transient))
                    }
                }
            }
        })?;
        Ok(Conn { session, child: Mutex::new(child), stderr, broken: std::sync::atomic::AtomicBool::new(false) })
    }
}

impl SftpBackend {
    /// The repository in restic's notation.
    pub fn location_name(&self) -> String {
        self.location.clone()
    }

    fn path(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => format!("{}/config", self.root),
            FileType::Pack => format!("{}/data/{}/{}", self.root, &hex[0..2], &hex[..]),
            _ => format!("{}/{}/{}", self.root, tpe.dirname(), &hex[..]),
        }
    }

    /// `what` failed on `c`: a failure of the connection itself marks it for a reconnect and is
    /// [`Transient`] (with what ssh printed when it exited); the server's refusals are not.
    fn fail(&self, c: &Conn, what: String, err: russh_sftp::client::error::Error) -> Box<RusticError> {
        let exited = {
            let _rt = runtime().enter();
            c.child.lock().unwrap().try_wait().ok().flatten().is_some()
        };
        if exited || is_connection_error(&err) {
            c.broken.store(true, Ordering::Relaxed);
            let printed = c.stderr.lock().unwrap().clone();
            let last = printed.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
            let what = format!("{what}: the SSH connection to {} was lost (connection closed; {last})", self.location);
            return backend_err(what, Transient(Box::new(err)));
        }
        backend_err(format!("{what} of {}", self.location), err)
    }

    async fn mkdir_p(s: &SftpSession, dir: &str) -> Result<(), russh_sftp::client::error::Error> {
        let mut prefix = String::new();
        for part in dir.split('/') {
            if part.is_empty() {
                if prefix.is_empty() && dir.starts_with('/') {
                    prefix.push('/');
                }
                continue;
            }
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            prefix.push_str(part);
            match s.create_dir(prefix.as_str()).await {
                // Created here: restic's mode (the server's umask gave it 0755).
                Ok(()) => s.set_metadata(prefix.as_str(), mode(crate::local::DIR_MODE)).await?,
                // An existing directory gives a generic failure; only a real directory will do.
                Err(e) => match s.metadata(prefix.as_str()).await {
                    Ok(m) if m.is_dir() => {}
                    Err(e2) if is_connection_error(&e2) => return Err(e2),
                    _ => return Err(e),
                },
            }
        }
        Ok(())
    }

    async fn list_dir(
        s: &SftpSession,
        dir: &str,
        tpe: FileType,
    ) -> Result<Vec<(Id, u32)>, russh_sftp::client::error::Error> {
        let entries = match s.read_dir(dir).await {
            Ok(e) => e,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in entries {
            let meta = e.metadata();
            if !e.file_type().is_file() {
                continue;
            }
            let Some(id) = Id::parse_some(&e.file_name(), tpe) else { continue };
            out.push((id, meta.size.unwrap_or(0).try_into().unwrap_or(u32::MAX)));
        }
        Ok(out)
    }

    async fn write_file(
        &self,
        s: &SftpSession,
        path: &str,
        content: BytesList,
    ) -> Result<(), russh_sftp::client::error::Error> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = format!("{path}-tmp-{}-{n}", std::process::id());
        let mut f = s
            .open_with_flags_and_attributes(
                tmp.as_str(),
                OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                mode(crate::local::FILE_MODE),
            )
            .await?;
        for b in content.into_vec() {
            f.write_all(&b).await?;
        }
        f.flush().await?;
        // fsync@openssh.com when the server has it: the data is on disk before the rename.
        let _ = f.sync_all().await;
        f.shutdown().await?;
        drop(f);
        if let Err(e) = s.rename(tmp.as_str(), path).await {
            // SFTP v3 rename does not replace: only an existing target (a rewritten config or
            // a retried write) is removed first.
            if s.try_exists(path).await.unwrap_or(false) {
                s.remove_file(path).await?;
                s.rename(tmp.as_str(), path).await?;
            } else {
                let _ = s.remove_file(tmp.as_str()).await;
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Attributes that set only the permission bits: repository files and directories get
/// restic's modes (`crate::local`).
fn mode(bits: u32) -> FileAttributes {
    FileAttributes { permissions: Some(bits), ..FileAttributes::default() }
}

impl ReadBackend for SftpBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let c = self.conn()?;
        let s = &c.session;
        runtime().block_on(async {
            if tpe == FileType::Config {
                let path = format!("{}/config", self.root);
                return match s.metadata(path.as_str()).await {
                    Ok(m) => Ok(vec![(Id::default(), m.size.unwrap_or(0).try_into().unwrap_or(u32::MAX))]),
                    Err(e) if is_not_found(&e) => Ok(Vec::new()),
                    Err(e) => Err(self.fail(&c, "reading the config".into(), e)),
                };
            }
            let dir = format!("{}/{}", self.root, tpe.dirname());
            if tpe != FileType::Pack {
                return Self::list_dir(s, &dir, tpe).await.map_err(|e| self.fail(&c, format!("listing {dir}"), e));
            }
            let subdirs = match s.read_dir(dir.as_str()).await {
                Ok(e) => e,
                Err(e) if is_not_found(&e) => return Ok(Vec::new()),
                Err(e) => return Err(self.fail(&c, format!("listing {dir}"), e)),
            };
            let subs: Vec<String> =
                subdirs.filter(|e| e.file_type().is_dir()).map(|e| format!("{dir}/{}", e.file_name())).collect();
            // 256 directories: 16 listings in flight at a time, not one round trip after another.
            let mut out = Vec::new();
            for chunk in subs.chunks(16) {
                let listed = futures_join(chunk.iter().map(|sub| Self::list_dir(s, sub, tpe))).await;
                for (sub, r) in chunk.iter().zip(listed) {
                    out.extend(r.map_err(|e| self.fail(&c, format!("listing {sub}"), e))?);
                }
            }
            Ok(out)
        })
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = self.path(tpe, id);
        let c = self.conn()?;
        runtime()
            .block_on(c.session.read(path.as_str()))
            .map(Bytes::from)
            .map_err(|e| self.fail(&c, format!("reading {path}"), e))
    }

    fn read_partial(&self, tpe: FileType, id: &Id, _cacheable: bool, offset: u32, length: u32) -> RusticResult<Bytes> {
        let path = self.path(tpe, id);
        let c = self.conn()?;
        let (buf, got) = runtime()
            .block_on(async {
                let mut f = c.session.open(path.as_str()).await?;
                f.seek(std::io::SeekFrom::Start(u64::from(offset))).await?;
                let mut buf = vec![0u8; length as usize];
                let mut got = 0;
                while got < buf.len() {
                    let n = f.read(&mut buf[got..]).await?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                drop(f);
                Ok::<_, russh_sftp::client::error::Error>((buf, got))
            })
            .map_err(|e| self.fail(&c, format!("reading {path}"), e))?;
        if got < buf.len() {
            // The file is shorter than the range: the server said so (end of file), not the
            // connection; never retried.
            return Err(RusticError::new(
                ErrorKind::Backend,
                format!("reading {path} of {}: the file ends after {got} of {} bytes", self.location, buf.len()),
            ));
        }
        Ok(Bytes::from(buf))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(tpe, id)
    }
}

impl WriteBackend for SftpBackend {
    /// The repository's directories, as restic creates them (also `data/00` … `data/ff`).
    fn create(&self) -> RusticResult<()> {
        let c = self.conn()?;
        let s = &c.session;
        runtime().block_on(async {
            let mut dirs = vec![self.root.clone()];
            for tpe in [FileType::Key, FileType::Snapshot, FileType::Index, FileType::Pack] {
                dirs.push(format!("{}/{}", self.root, tpe.dirname()));
            }
            dirs.push(format!("{}/locks", self.root));
            for d in &dirs {
                Self::mkdir_p(s, d).await.map_err(|e| self.fail(&c, format!("creating {d}"), e))?;
            }
            let subdirs: Vec<String> = (0..=255u8).map(|i| format!("{}/data/{i:02x}", self.root)).collect();
            for chunk in subdirs.chunks(16) {
                let made = futures_join(chunk.iter().map(|d| Self::mkdir_p(s, d))).await;
                for (d, r) in chunk.iter().zip(made) {
                    r.map_err(|e| self.fail(&c, format!("creating {d}"), e))?;
                }
            }
            Ok(())
        })
    }

    fn write_bytes(&self, tpe: FileType, id: &Id, _cacheable: bool, content: BytesList) -> RusticResult<()> {
        let path = self.path(tpe, id);
        let c = self.conn()?;
        runtime()
            .block_on(self.write_file(&c.session, &path, content))
            .map_err(|e| self.fail(&c, format!("writing {path}"), e))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = self.path(tpe, id);
        let c = self.conn()?;
        match runtime().block_on(c.session.remove_file(path.as_str())) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.fail(&c, format!("removing {path}"), e)),
        }
    }
}

/// Awaits all futures concurrently (on one task: the requests are in flight together).
async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("every future finished")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(known: Option<&'a Path>, key: Option<&'a Path>) -> SftpTarget<'a> {
        SftpTarget {
            user: Some("backup"),
            host: "backup.example.org",
            port: Some(2222),
            path: "/srv/b",
            key_file: key,
            known_hosts_file: known,
        }
    }

    #[test]
    fn ssh_is_strict_and_never_prompts() {
        let kh = Path::new("/etc/caretaker/known_hosts");
        let key = Path::new("/etc/caretaker/id_ed25519");
        let args: Vec<String> =
            ssh_args(&target(Some(kh), Some(key))).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = args.join(" ");
        for want in [
            "-o BatchMode=yes",
            "-o StrictHostKeyChecking=yes",
            "-o UserKnownHostsFile=\"/etc/caretaker/known_hosts\"",
            "-o GlobalKnownHostsFile=/dev/null",
            "-o IdentitiesOnly=yes -i /etc/caretaker/id_ed25519",
            "-p 2222 -l backup -s -- backup.example.org sftp",
        ] {
            assert!(joined.contains(want), "{want:?} missing in {joined}");
        }
        assert!(joined.ends_with("-- backup.example.org sftp"), "{joined}");
    }

    #[test]
    fn ssh_failures_say_what_and_what_to_do() {
        let kh = Path::new("/k/known_hosts");
        let t = target(Some(kh), None);
        let unknown = classify_ssh_failure(
            &t,
            "No ED25519 host key is known for [backup.example.org]:2222 and you have requested strict checking.\r\nHost key verification failed.\r\n",
        );
        assert_eq!(unknown.kind, Kind::HostKey);
        assert!(unknown.message.contains("[backup.example.org]:2222") && unknown.message.contains("unknown"));
        assert!(unknown.hint.unwrap().contains("ssh-keyscan -p 2222 backup.example.org >> /k/known_hosts"));

        let changed = classify_ssh_failure(
            &t,
            "@@@@@@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n@@@@@@@\r\nHost key verification failed.\r\n",
        );
        assert_eq!(changed.kind, Kind::HostKey);
        assert!(changed.message.contains("CHANGED"), "{}", changed.message);
        assert!(changed.hint.unwrap().contains("ssh-keygen -R '[backup.example.org]:2222' -f /k/known_hosts"));

        let denied = classify_ssh_failure(&t, "backup@backup.example.org: Permission denied (publickey).\r\n");
        assert_eq!(denied.kind, Kind::Unreachable);
        assert!(denied.message.contains("refused the login of user backup"), "{}", denied.message);

        let with_key = target(Some(kh), Some(Path::new("/k/id")));
        let missing = classify_ssh_failure(
            &with_key,
            "Warning: Identity file /k/id not accessible: No such file or directory.\r\nbackup@backup.example.org: Permission denied (publickey).\r\n",
        );
        assert_eq!(missing.kind, Kind::Unreachable);
        assert!(missing.message.contains("cannot read the SSH key /k/id"), "{}", missing.message);
        let open = classify_ssh_failure(
            &with_key,
            "@@@@\r\n@         WARNING: UNPROTECTED PRIVATE KEY FILE!          @\r\nPermissions 0644 for '/k/id' are too open.\r\nLoad key \"/k/id\": bad permissions\r\nbackup@backup.example.org: Permission denied (publickey).\r\n",
        );
        assert_eq!(open.kind, Kind::Unreachable);
        assert!(open.hint.unwrap().contains("chmod 600 /k/id"));

        let down =
            classify_ssh_failure(&t, "ssh: connect to host backup.example.org port 2222: Connection refused\r\n");
        assert_eq!(down.kind, Kind::Unreachable);
        assert!(down.message.contains("cannot reach the SFTP server"), "{}", down.message);
    }
}
