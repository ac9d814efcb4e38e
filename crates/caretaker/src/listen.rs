//! Listening sockets handed to the daemon instead of bound by it: systemd socket activation
//! (docs/daemon.md). `install-systemd` writes a `.socket` unit that holds the daemon's TCP
//! ports (`http.listen`, `front_door.listen`); systemd passes them to every daemon it starts as
//! file descriptors 3, 4, ... (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, as
//! `sd_listen_fds(3)` describes). The sockets live in systemd, not in the daemon, so while
//! the daemon is down (a crash before the restart, an upgrade of caretaker, a restart to apply
//! a config) the kernel queues visitors' connections instead of refusing them, and the next
//! daemon answers them.
//!
//! Each inherited socket is matched to its config key by its name (`http`, `front-door`, from
//! `FileDescriptorName=`) or else by its address (systemd names every socket of a unit without
//! `FileDescriptorName=` after the unit, as `install-systemd`'s unit does); one that matches nothing is closed with a
//! warning (the config changed since `install-systemd` ran) and the address is bound as usual.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Mutex;

/// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// A socket handed over by the process that started this one.
struct Inherited {
    listener: TcpListener,
    name: Option<String>,
    addr: Option<SocketAddr>,
}

static INHERITED: Mutex<Vec<Inherited>> = Mutex::new(Vec::new());
/// The descriptors handed out by [`inherited`]: their sockets outlive this process.
static HANDED_OUT: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Whether the listening socket `fd` came from systemd (and so keeps listening after exit).
pub fn was_inherited(fd: RawFd) -> bool {
    HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner()).contains(&fd)
}

/// `dup` is a duplicate of the socket `original` (a live reload hands one on): it counts as
/// passed by systemd when the original does.
pub fn note_duplicate(original: RawFd, dup: RawFd) {
    let mut fds = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    if fds.contains(&original) && !fds.contains(&dup) {
        fds.push(dup);
    }
}

/// The name a `.socket` unit gives the socket of a config key (`FileDescriptorName=`).
pub fn fd_name(key: &str) -> &'static str {
    match key {
        "front_door.listen" => "front-door",
        _ => "http",
    }
}

/// Takes the sockets passed in `LISTEN_FDS` when `LISTEN_PID` is this process, marks them
/// close-on-exec (the app's services and scheduled tasks must not hold them) and removes the
/// variables from the environment (children must not believe them). Call once, early, before
/// other threads start. Returns how many were taken.
pub fn take_from_environment() -> usize {
    let pid_ok = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<i32>().ok()).unwrap_or(0);
    let names: Vec<String> =
        std::env::var("LISTEN_FDNAMES").map(|n| n.split(':').map(str::to_string).collect()).unwrap_or_default();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    if !pid_ok || count <= 0 {
        return 0;
    }
    let mut taken = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..count {
        let fd = FIRST_FD + i;
        // SAFETY: plain fcntl calls on a descriptor number; nothing is dereferenced.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            tracing::warn!("LISTEN_FDS names file descriptor {fd}, which is not open");
            continue;
        }
        unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
        // SAFETY: the descriptor is open and was handed to this process to own.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        if let Err(e) = listener.set_nonblocking(true) {
            tracing::warn!("inherited file descriptor {fd}: {e}");
            continue;
        }
        let addr = listener.local_addr().ok();
        let name = names.get(i as usize).filter(|n| !n.is_empty() && *n != "unknown").cloned();
        tracing::info!(
            "inherited listening socket {fd} ({}{})",
            addr.map(|a| a.to_string()).unwrap_or_else(|| "not a TCP socket".into()),
            name.as_deref().map(|n| format!(", name {n}")).unwrap_or_default()
        );
        taken.push(Inherited { listener, name, addr });
    }
    taken.len()
}

/// The inherited socket for the config key `key` listening on `addr`, if one was passed:
/// by name first, then by address (whatever its name).
pub fn inherited(addr: &str, key: &str) -> Option<TcpListener> {
    let mut taken = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
    if taken.is_empty() {
        return None;
    }
    let wanted: Vec<SocketAddr> = addr.to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
    let i = taken
        .iter()
        .position(|s| s.name.as_deref() == Some(fd_name(key)))
        .or_else(|| taken.iter().position(|s| s.addr.is_some_and(|a| wanted.contains(&a))))?;
    let s = taken.remove(i);
    HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner()).push(std::os::fd::AsRawFd::as_raw_fd(&s.listener));
    tracing::info!("{key}: using the socket passed by systemd ({})", s.addr.map(|a| a.to_string()).unwrap_or_default());
    Some(s.listener)
}

/// Closes inherited sockets no config key asked for, with a warning.
pub fn close_unused() {
    let mut taken = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
    for s in taken.drain(..) {
        tracing::warn!(
            "the socket passed by systemd for {} is not in the config: rerun `caretaker install-systemd`",
            s.addr.map(|a| a.to_string()).unwrap_or_else(|| "?".into())
        );
    }
}

/// The `ListenStream=` value for a config address, when it is an IP address and port (a
/// host name is resolved by the daemon when it binds it itself).
pub fn listen_stream(addr: &str) -> Option<String> {
    addr.parse::<SocketAddr>().ok().map(|a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_sockets_are_matched_by_name_then_by_address_and_each_is_used_once() {
        let bind = || TcpListener::bind("127.0.0.1:0").unwrap();
        let (named, by_addr, other) = (bind(), bind(), bind());
        let addr = by_addr.local_addr().unwrap();
        {
            let mut taken = INHERITED.lock().unwrap();
            // systemd's default name is the socket unit's.
            for (l, name) in [(named, Some("front-door")), (by_addr, Some("caretaker-x.socket")), (other, None)] {
                taken.push(Inherited { addr: l.local_addr().ok(), listener: l, name: name.map(str::to_string) });
            }
        }
        // The name wins over the address the config names.
        let door = inherited("127.0.0.1:1", "front_door.listen").unwrap();
        assert!(was_inherited(std::os::fd::AsRawFd::as_raw_fd(&door)));
        let http = inherited(&addr.to_string(), "http.listen").unwrap();
        assert_eq!(http.local_addr().unwrap(), addr);
        assert!(inherited(&addr.to_string(), "http.listen").is_none(), "used once");
        close_unused();
        assert!(INHERITED.lock().unwrap().is_empty());
    }

    #[test]
    fn listen_stream_takes_ip_addresses_only() {
        assert_eq!(listen_stream("127.0.0.1:9720").as_deref(), Some("127.0.0.1:9720"));
        assert_eq!(listen_stream("[::]:80").as_deref(), Some("[::]:80"));
        assert_eq!(listen_stream("localhost:8080"), None);
    }
}
