//! A fleet run: for each server, connect (one master connection), run
//! `caretaker tasks run-due --json`, store each task's result as it is read, retry tasks that
//! failed before once their backoff has passed, record the contact.
//!
//! Bounded: at most `parallel` servers at once; at most `max_startups` connections being set up
//! at once over the fleet, and `jump_startups` through any one jump host, so no sshd's
//! `MaxStartups` drops a connection. A server that cannot be reached costs its connect timeout
//! and nothing else; the others' results are untouched.
//!
//! Crash safety: results go to the store one transaction per task the moment they are read;
//! the contact (which marks the server done in this run) comes last. A controller killed
//! mid-run leaves its run unfinished; the next `fleet run` resumes it and works only on the
//! servers not done yet.

use crate::inventory::{Endpoint, Inventory, Server};
use crate::results::{read_all, read_line, reboot_due, Line, Outcome, TaskResult};
use crate::ssh::Ssh;
use crate::store::{Contact, FleetStore, Run};
use crate::{Error, ErrorKind, Result};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long key exchange and login may take on top of the connect timeout.
pub const HANDSHAKE_GRACE: Duration = Duration::from_secs(60);

/// A counting semaphore (connection starts).
pub struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots { free: Mutex::new(n.max(1)), cv: Condvar::new() }
    }

    pub fn take(&self) -> SlotGuard<'_> {
        let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *f == 0 {
            f = self.cv.wait(f).unwrap_or_else(|e| e.into_inner());
        }
        *f -= 1;
        SlotGuard(self)
    }
}

pub struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

pub struct Options {
    pub parallel: usize,
    pub max_startups: usize,
    pub jump_startups: usize,
    /// This controller's name in leases and runs.
    pub controller: String,
    /// The clock (unix seconds): an argument, so tests can move it.
    pub now: fn() -> i64,
    /// Ask `tasks due` first and take a reboot token before a server's reboot task runs.
    pub reboot_tokens: bool,
}

/// What happened on one server.
#[derive(Clone, Debug, Serialize)]
pub struct HostReport {
    pub server: String,
    pub transient: bool,
    /// `ok`, `unreachable`, `host_key`, `login`, `timeout`, `remote_error`, `leased` (another
    /// controller works on it), `done` (done earlier in this resumed run), `deferred` (waits
    /// for a reboot token).
    pub contact: String,
    pub message: Option<String>,
    pub hint: Option<String>,
    pub tasks: Vec<TaskResult>,
    /// The master connection was alive already.
    pub warm: bool,
    pub seconds: f64,
    /// Whether this needs a human ([`HostReport::alerts`]).
    pub alert: bool,
}

impl HostReport {
    /// Whether a human should hear about it: any failure, except a transient server that did
    /// not answer (noted quietly).
    pub fn alerts(&self) -> bool {
        let failed_contact = !matches!(self.contact.as_str(), "ok" | "done" | "leased" | "deferred");
        let quiet = self.transient && matches!(self.contact.as_str(), "unreachable" | "timeout");
        (failed_contact && !quiet)
            || self.tasks.iter().any(|t| {
                matches!(t.outcome, Outcome::Failed | Outcome::Interrupted)
                    || t.needs_human
                    || t.vulnerable_deps().is_some()
            })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub run: Run,
    pub hosts: Vec<HostReport>,
    pub seconds: f64,
}

/// The remote command for a server.
pub fn remote_argv(s: &Server, args: &[&str]) -> Vec<String> {
    let mut v = vec![s.caretaker_path.clone()];
    if let Some(c) = &s.config {
        v.push("--config".into());
        v.push(c.clone());
    }
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

/// The command that runs one task by hand on the server (a retry after its backoff); `None`
/// for kinds caretaker does not know how to run alone.
pub fn retry_argv(task: &str) -> Option<Vec<&str>> {
    Some(match task {
        "backup" => vec!["backup", "run"],
        "prune" => vec!["backup", "prune"],
        "backup_check" => vec!["backup", "check"],
        "check" => vec!["check"],
        "deps" => vec!["deps"],
        "update" => vec!["update", "--scheduled"],
        t => vec!["jobs", "run", t.strip_prefix("job:")?],
    })
}

fn contact_name(e: &Error) -> &'static str {
    match e.kind {
        ErrorKind::HostKey => "host_key",
        ErrorKind::Login => "login",
        ErrorKind::Unreachable => "unreachable",
        ErrorKind::Timeout => "timeout",
        _ => "remote_error",
    }
}

/// Runs the fleet. Returns when every server is done; errors only for the store.
pub fn run(
    inv: &Inventory,
    servers: &[&Server],
    ssh: &Ssh,
    store: &Mutex<Box<dyn FleetStore>>,
    opts: &Options,
) -> Result<RunReport> {
    let started = Instant::now();
    // A round lasts at most as long as a server may take, and a little more.
    let resume_within = (inv.ssh.run_timeout.as_secs() as i64 * 2).max(6 * 3600);
    let run =
        store.lock().unwrap_or_else(|e| e.into_inner()).begin_run(&opts.controller, (opts.now)(), resume_within)?;
    let queue: Mutex<VecDeque<&Server>> = Mutex::new(servers.iter().copied().collect());
    let startups = Slots::new(opts.max_startups);
    let mut jump_slots: HashMap<Endpoint, Slots> = HashMap::new();
    for s in servers {
        if let Some(j) = &s.jump {
            jump_slots.entry(j.clone()).or_insert_with(|| Slots::new(opts.jump_startups));
        }
    }
    let reports: Mutex<Vec<HostReport>> = Mutex::new(Vec::new());
    let store_error: Mutex<Option<Error>> = Mutex::new(None);
    let workers = opts.parallel.clamp(1, servers.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let Some(server) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else {
                    return;
                };
                match one_server(inv, server, ssh, store, opts, run.id, &startups, &jump_slots) {
                    Ok(r) => reports.lock().unwrap_or_else(|e| e.into_inner()).push(r),
                    Err(e) => {
                        store_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = store_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    store.lock().unwrap_or_else(|e| e.into_inner()).finish_run(run.id, (opts.now)())?;
    let mut hosts = reports.into_inner().unwrap_or_else(|e| e.into_inner());
    hosts.sort_by(|a, b| a.server.cmp(&b.server));
    Ok(RunReport { run, hosts, seconds: started.elapsed().as_secs_f64() })
}

#[allow(clippy::too_many_arguments)]
fn one_server(
    inv: &Inventory,
    server: &Server,
    ssh: &Ssh,
    store: &Mutex<Box<dyn FleetStore>>,
    opts: &Options,
    run: i64,
    startups: &Slots,
    jump_slots: &HashMap<Endpoint, Slots>,
) -> Result<HostReport> {
    let t0 = Instant::now();
    let st = || store.lock().unwrap_or_else(|e| e.into_inner());
    let mut rep = HostReport {
        server: server.name.clone(),
        transient: server.transient,
        contact: "ok".into(),
        message: None,
        hint: None,
        tasks: Vec::new(),
        warm: false,
        seconds: 0.0,
        alert: false,
    };
    if st().server_done(run, &server.name)? {
        rep.contact = "done".into();
        return Ok(rep);
    }
    let lease_ttl = (inv.ssh.run_timeout + inv.ssh.connect_timeout * 3).as_secs() as i64 + 60;
    if !st().lease(&server.name, &opts.controller, (opts.now)(), lease_ttl)? {
        rep.contact = "leased".into();
        rep.message = Some("another controller is working on this server".into());
        return Ok(rep);
    }
    // Another controller may have finished it between the first look and the lease.
    if st().server_done(run, &server.name)? {
        st().release(&server.name, &opts.controller)?;
        rep.contact = "done".into();
        return Ok(rep);
    }
    let result = work(inv, server, ssh, store, opts, run, startups, jump_slots, &mut rep);
    if let Err(e) = &result {
        if e.kind == ErrorKind::Store {
            return Err(e.clone());
        }
    }
    let contact = match &result {
        Ok(()) => Contact {
            outcome: rep.contact.clone(),
            message: rep.message.clone(),
            transient: server.transient,
            reboot_pending: rep.tasks.iter().any(|t| t.reboot_pending),
        },
        Err(e) => {
            rep.contact = contact_name(e).into();
            rep.message = Some(e.message.clone());
            rep.hint = e.hint.clone();
            Contact {
                outcome: rep.contact.clone(),
                message: rep.message.clone(),
                transient: server.transient,
                reboot_pending: false,
            }
        }
    };
    if rep.contact != "deferred" {
        st().record_contact(run, &server.name, &contact, (opts.now)())?;
    }
    st().release(&server.name, &opts.controller)?;
    rep.seconds = t0.elapsed().as_secs_f64();
    rep.alert = rep.alerts();
    Ok(rep)
}

/// Connect, run-due, retries. Errors are the server's (they become its contact outcome),
/// except those of kind `Store`, which end the run.
#[allow(clippy::too_many_arguments)]
fn work(
    inv: &Inventory,
    server: &Server,
    ssh: &Ssh,
    store: &Mutex<Box<dyn FleetStore>>,
    opts: &Options,
    run: i64,
    startups: &Slots,
    jump_slots: &HashMap<Endpoint, Slots>,
    rep: &mut HostReport,
) -> Result<()> {
    let st = || store.lock().unwrap_or_else(|e| e.into_inner());
    // The connect timeout is ssh's ConnectTimeout: the TCP connect and the banner, per hop —
    // what a server that is off or blackholed costs. Key exchange and login have no timeout
    // of their own in ssh; this deadline is only a safety net against a hung handshake, and
    // generous: 50 handshakes at once on a busy machine take many seconds (bench/fleet).
    let hops = 1 + u32::from(server.jump.is_some());
    let connect_deadline = inv.ssh.connect_timeout * hops + HANDSHAKE_GRACE;
    {
        let _jump = server.jump.as_ref().and_then(|j| jump_slots.get(j)).map(Slots::take);
        let _slot = startups.take();
        rep.warm = ssh.connect(server, connect_deadline)?;
    }
    if opts.reboot_tokens {
        let mut due = String::new();
        let e = ssh.exec(
            server,
            &remote_argv(server, &["tasks", "due", "--json"]),
            None,
            inv.ssh.connect_timeout * 3,
            |l| {
                due.push_str(l);
                due.push('\n');
            },
        )?;
        if e.code == Some(0) && reboot_due(&due) {
            let k = inv.max_reboots.unwrap_or(1);
            let ok = st().reboot_token(&server.name, k, (opts.now)(), 3600)?;
            if !ok {
                rep.contact = "deferred".into();
                rep.message = Some(format!("a reboot is due, and {k} server(s) hold the reboot tokens already"));
                return Ok(());
            }
        }
    }
    let mut stored: Vec<String> = Vec::new();
    let mut buffered = String::new();
    let mut cb_err: Option<Error> = None;
    let exec =
        ssh.exec(server, &remote_argv(server, &["tasks", "run-due", "--json"]), None, inv.ssh.run_timeout, |line| {
            buffered.push_str(line);
            buffered.push('\n');
            // A task streamed on its own line is stored at once.
            if let Line::Task(t) = read_line(line) {
                if let Err(e) = keep(store, opts, run, server, t, rep, &mut stored) {
                    cb_err.get_or_insert(e);
                }
            }
        })?;
    if let Some(e) = cb_err {
        return Err(e);
    }
    let mut report_seen = false;
    for l in read_all(&buffered) {
        match l {
            Line::Report { tasks, reboot_pending, .. } => {
                report_seen = true;
                for mut t in tasks {
                    t.reboot_pending |= reboot_pending;
                    keep(store, opts, run, server, t, rep, &mut stored)?;
                }
            }
            Line::Task(t) => keep(store, opts, run, server, t, rep, &mut stored)?,
            Line::Other => {}
        }
    }
    if !report_seen {
        let last = exec.stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").to_string();
        let missing =
            exec.code == Some(127) || exec.stderr.contains("command not found") || exec.stderr.contains("No such file");
        let mut e = Error::new(
            ErrorKind::Remote,
            format!(
                "{}: `{} tasks run-due --json` exited with {} and printed no report{}",
                server.name,
                server.caretaker_path,
                exec.code.map_or("a signal".to_string(), |c| format!("code {c}")),
                if last.is_empty() { String::new() } else { format!(" ({last})") }
            ),
        );
        if missing {
            e = e.hint(format!("caretaker is not installed there: `caretaker fleet install {}`", server.name));
        }
        return Err(e);
    }
    // Tasks that failed before and whose backoff has passed, and that run-due did not run now
    // (a failed task waits for its next slot on the server): run them alone.
    let now = (opts.now)();
    let retry: Vec<String> = st()
        .status()?
        .into_iter()
        .filter(|s| s.server == server.name)
        .flat_map(|s| s.tasks)
        .filter(|t| (t.outcome == "failed" || t.outcome == "interrupted") && t.retry_after.is_some_and(|r| r <= now))
        .map(|t| t.task)
        .filter(|t| !stored.contains(t))
        .collect();
    for task in retry {
        let Some(args) = retry_argv(&task) else { continue };
        let mut err = String::new();
        let e = ssh.exec(server, &remote_argv(server, &args), None, inv.ssh.run_timeout, |_| {})?;
        if e.code != Some(0) {
            err = e.stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").to_string();
        }
        let t = TaskResult {
            task: task.clone(),
            kind: None,
            outcome: if e.code == Some(0) { Outcome::Ok } else { Outcome::Failed },
            message: (e.code != Some(0)).then(|| format!("retry after backoff: exit {:?} {err}", e.code)),
            figures: serde_json::json!({ "retry": true }),
            needs_human: false,
            reboot_pending: false,
        };
        keep(store, opts, run, server, t, rep, &mut stored)?;
    }
    if !rep.tasks.iter().any(|t| t.reboot_pending) {
        st().release_reboot_token(&server.name)?;
    }
    Ok(())
}

/// Stores one task's result (its own transaction) unless stored already in this contact.
fn keep(
    store: &Mutex<Box<dyn FleetStore>>,
    opts: &Options,
    run: i64,
    server: &Server,
    t: TaskResult,
    rep: &mut HostReport,
    stored: &mut Vec<String>,
) -> Result<()> {
    if stored.contains(&t.task) {
        return Ok(());
    }
    store.lock().unwrap_or_else(|e| e.into_inner()).record_task(run, &server.name, &t, (opts.now)())?;
    stored.push(t.task.clone());
    rep.tasks.push(t);
    Ok(())
}
