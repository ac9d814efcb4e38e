//! caretaker's built-in supervisor: runs an app's services the way operators expect from
//! systemd or supervisord.
//!
//! Code map:
//! - [`machine`]: the *decisions* — one state machine per service and the app-level
//!   [`machine::Supervisor`] that orders them (`after:`). Pure: `on_event(now, event) ->
//!   actions`, no I/O, tested with a fake clock.
//! - [`process`]: the *effects* on processes — spawning in an own process group with env, cwd
//!   and user; signalling the group; the record of running services that makes a SIGKILLed
//!   daemon's successor find (and replace) what it left behind.
//! - [`logfile`]: service output captured with timestamps into size-rotated files, and reading
//!   them back (`logs -n`, `logs -f`).
//! - [`probe`]: health probes (http, tcp, command).
//! - [`protocol`]: the control socket's JSON requests and responses, shared by daemon and CLI.
//!
//! Architecture invariant: the daemon feeds observations into the machines and executes the
//! actions they return; it never decides on its own whether to restart, stop or give up.
//! See docs/supervisor.md.

pub mod logfile;
pub mod machine;
pub mod probe;
pub mod process;
pub mod protocol;
