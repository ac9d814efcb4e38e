//! `caretaker fleet`: one caretaker maintains many servers over SSH (docs/fleet.md). The
//! inventory, SSH, state store and the run itself are `caretaker_fleet`; this file reads the
//! command line, opens the inventory and the store, prints and picks the exit code.

use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_fleet::inventory::{self, Endpoint, Inventory, Server};
use caretaker_fleet::ssh::{Layout, Ssh};
use caretaker_fleet::store::{FleetStore, PgStore, SqliteStore};
use caretaker_fleet::{digest, edit, hostkey, install, run};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Args, Debug)]
pub struct FleetArgs {
    /// The fleet's inventory (default: $CARETAKER_FLEET, ./fleet.yml, /etc/caretaker/fleet.yml)
    #[arg(long, value_name = "FILE", env = "CARETAKER_FLEET", global = true)]
    pub fleet: Option<PathBuf>,
    /// The controller's state directory: state database, known_hosts default, ssh config
    /// (default: $CARETAKER_FLEET_STATE, else /var/lib/caretaker/fleet for /etc/caretaker/fleet.yml,
    /// else fleet-state/ beside fleet.yml)
    #[arg(long, value_name = "DIR", env = "CARETAKER_FLEET_STATE", global = true)]
    pub fleet_state: Option<PathBuf>,
    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// List the servers of the inventory
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a server to fleet.yml (comments and layout are kept)
    Add(AddArgs),
    /// Remove a server from fleet.yml (comments and layout are kept)
    Remove { name: String },
    /// Add the servers of an Ansible inventory (INI or YAML) to fleet.yml
    Import {
        file: PathBuf,
        /// Only show what would be added
        #[arg(long)]
        dry_run: bool,
    },
    /// Show a server's SSH host key fingerprints (SHA256 and MD5) to compare; --accept records them
    Hostkey(HostkeyArgs),
    /// Run `caretaker tasks run-due --json` on every server (or the named servers/groups)
    Run(RunArgs),
    /// Per server and task: last contact, last attempt, last success, outcome
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Prometheus metrics of the fleet (per server and task)
    Metrics,
    /// Install caretaker (binary and systemd unit) on a server
    Install(InstallArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    pub name: String,
    /// [user@]host[:port] (default: the name)
    #[arg(long)]
    pub host: Option<String>,
    /// Jump host, [user@]host[:port]
    #[arg(long)]
    pub jump: Option<String>,
    /// Often off: not answering is noted quietly
    #[arg(long)]
    pub transient: bool,
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// The caretaker program on the server
    #[arg(long)]
    pub caretaker_path: Option<String>,
    /// The server's caretaker config file
    #[arg(long)]
    pub server_config: Option<String>,
}

#[derive(Args, Debug)]
pub struct HostkeyArgs {
    pub name: String,
    /// The server's jump host instead of the server
    #[arg(long)]
    pub jump: bool,
    /// Record the keys shown in the fleet's known_hosts
    #[arg(long)]
    pub accept: bool,
    /// With --accept: replace keys recorded before (after a reinstall)
    #[arg(long, requires = "accept")]
    pub replace: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Servers or groups (default: all)
    pub servers: Vec<String>,
    /// Servers worked on at once (default: ssh.parallel of fleet.yml)
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Connections being set up at once (default: ssh.max_startups)
    #[arg(long)]
    pub max_startups: Option<usize>,
    /// Send the digest (e-mail and/or webhook of fleet.yml's `digest:`)
    #[arg(long)]
    pub digest: bool,
    /// This controller's name in leases (default: the host name)
    #[arg(long)]
    pub controller: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    pub name: String,
    /// The binary to copy (default: this caretaker)
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Its architecture as `uname -m` prints it (default: this machine's)
    #[arg(long)]
    pub arch: Option<String>,
    /// Where to put it on the server
    #[arg(long, default_value = "/usr/local/bin/caretaker")]
    pub dest: String,
    /// Directory for the systemd unit on the server
    #[arg(long, default_value = "/etc/systemd/system")]
    pub unit_dir: String,
    /// Do not install a systemd unit
    #[arg(long)]
    pub no_unit: bool,
}

struct Fleet {
    file: PathBuf,
    text: String,
    inv: Inventory,
    state_dir: PathBuf,
}

impl Fleet {
    fn layout(&self) -> Layout<'_> {
        Layout { fleet_dir: self.file.parent().unwrap_or(Path::new(".")), state_dir: &self.state_dir }
    }
}

fn fleet_file(args: &FleetArgs) -> PathBuf {
    if let Some(f) = &args.fleet {
        return f.clone();
    }
    let local = PathBuf::from("fleet.yml");
    if local.exists() {
        return local;
    }
    let etc = PathBuf::from("/etc/caretaker/fleet.yml");
    if etc.exists() {
        etc
    } else {
        local
    }
}

fn state_dir(args: &FleetArgs, file: &Path) -> PathBuf {
    if let Some(d) = &args.fleet_state {
        return d.clone();
    }
    if file.starts_with("/etc") {
        return PathBuf::from("/var/lib/caretaker/fleet");
    }
    file.parent().unwrap_or(Path::new(".")).join("fleet-state")
}

fn open(args: &FleetArgs) -> Result<Fleet> {
    let file = fleet_file(args);
    let file = std::path::absolute(&file).unwrap_or(file);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        Failure::new(Code::Config, format!("cannot read the fleet inventory {}: {e}", file.display()))
            .hint("create it with `caretaker fleet add NAME --host HOST` or point --fleet at it")
    })?;
    let inv = inventory::parse(&text, &file.display().to_string()).map_err(|d| {
        Failure::new(Code::Config, format!("the fleet inventory is not valid:\n{}", d.render(&text).trim_end()))
    })?;
    let state_dir = state_dir(args, &file);
    Ok(Fleet { file, text, inv, state_dir })
}

fn fail(e: caretaker_fleet::Error) -> anyhow::Error {
    use caretaker_fleet::ErrorKind as K;
    let code = match e.kind {
        K::Inventory => Code::Config,
        K::HostKey => Code::Refused,
        K::Unreachable | K::Timeout | K::Login => Code::Unavailable,
        K::Remote => Code::Failure,
        K::Store => Code::State,
        K::Io => Code::Failure,
    };
    let mut f = Failure::new(code, e.message);
    if let Some(h) = e.hint {
        f = f.hint(h);
    }
    f.into()
}

/// The store: PostgreSQL when `CARETAKER_FLEET_DATABASE_URL` is set (several controllers),
/// else `fleet.db` in the state directory.
fn open_store(state_dir: &Path) -> Result<Box<dyn FleetStore>> {
    if let Ok(url) = std::env::var("CARETAKER_FLEET_DATABASE_URL") {
        if !url.is_empty() {
            return Ok(Box::new(PgStore::connect(&url).map_err(fail)?));
        }
    }
    std::fs::create_dir_all(state_dir)
        .map_err(|e| Failure::new(Code::State, format!("cannot create {}: {e}", state_dir.display())))?;
    Ok(Box::new(SqliteStore::open(&state_dir.join("fleet.db")).map_err(fail)?))
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

pub fn run(args: &FleetArgs) -> Result<Code> {
    match &args.command {
        FleetCommand::List { json } => list(args, *json),
        FleetCommand::Add(a) => add(args, a),
        FleetCommand::Remove { name } => remove(args, name),
        FleetCommand::Import { file, dry_run } => import(args, file, *dry_run),
        FleetCommand::Hostkey(a) => hostkey_cmd(args, a),
        FleetCommand::Run(a) => run_cmd(args, a),
        FleetCommand::Status { json } => status(args, *json),
        FleetCommand::Metrics => metrics(args),
        FleetCommand::Install(a) => install_cmd(args, a),
    }
}

fn list(args: &FleetArgs, json: bool) -> Result<Code> {
    let f = open(args)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&f.inv.servers)?);
        return Ok(Code::Ok);
    }
    for s in &f.inv.servers {
        let mut extra = Vec::new();
        if let Some(j) = &s.jump {
            extra.push(format!("via {j}"));
        }
        if s.transient {
            extra.push("transient".into());
        }
        if !s.groups.is_empty() {
            extra.push(format!("groups {}", s.groups.join(",")));
        }
        println!("{:<20} {:<32} {}", s.name, s.ssh.to_string(), extra.join("  "));
    }
    Ok(Code::Ok)
}

fn write_fleet(file: &Path, text: &str) -> Result<()> {
    let mode = std::fs::metadata(file)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap_or(0o644);
    let tmp = file.with_extension(format!("yml.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)
        .map_err(|e| Failure::new(Code::Failure, format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, file)
        .map_err(|e| Failure::new(Code::Failure, format!("cannot replace {}: {e}", file.display())))?;
    Ok(())
}

fn add(args: &FleetArgs, a: &AddArgs) -> Result<Code> {
    let file = fleet_file(args);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => edit::new_file(),
        Err(e) => return Err(Failure::new(Code::Config, format!("cannot read {}: {e}", file.display())).into()),
    };
    if !inventory::valid_name(&a.name) {
        return Err(Failure::new(
            Code::Usage,
            format!("`{}` is not a valid server name (letters, digits, -, _, .)", a.name),
        )
        .into());
    }
    let ep = |s: &str, what: &str| {
        Endpoint::parse(s).map_err(|e| anyhow::Error::from(Failure::new(Code::Usage, format!("--{what}: {e}"))))
    };
    let mut s = Server::new(&a.name, ep(a.host.as_deref().unwrap_or(&a.name), "host")?);
    s.jump = a.jump.as_deref().map(|j| ep(j, "jump")).transpose()?;
    s.transient = a.transient;
    s.groups = a.groups.clone();
    if let Some(p) = &a.caretaker_path {
        s.caretaker_path = p.clone();
    }
    s.config = a.server_config.clone();
    let new = edit::add(&text, &s, &file.display().to_string()).map_err(fail)?;
    write_fleet(&file, &new)?;
    println!("added {} ({}) to {}", s.name, s.ssh, file.display());
    println!("next: compare its host key fingerprints: caretaker fleet hostkey {}", s.name);
    Ok(Code::Ok)
}

fn remove(args: &FleetArgs, name: &str) -> Result<Code> {
    let f = open(args)?;
    let new = edit::remove(&f.text, name, &f.file.display().to_string()).map_err(fail)?;
    write_fleet(&f.file, &new)?;
    println!("removed {name} from {} (its state and known_hosts entries stay)", f.file.display());
    Ok(Code::Ok)
}

fn import(args: &FleetArgs, file: &Path, dry_run: bool) -> Result<Code> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::new(Code::Config, format!("cannot read {}: {e}", file.display())))?;
    let servers = inventory::parse_ansible(&text, &file.display().to_string()).map_err(fail)?;
    let target = fleet_file(args);
    let mut fleet = std::fs::read_to_string(&target).unwrap_or_else(|_| edit::new_file());
    let existing = inventory::parse(&fleet, "fleet.yml").map(|i| i.servers).unwrap_or_default();
    let mut added = 0;
    for s in &servers {
        if existing.iter().any(|e| e.name == s.name) {
            println!("skipped {} (already in {})", s.name, target.display());
            continue;
        }
        fleet = edit::add(&fleet, s, &target.display().to_string()).map_err(fail)?;
        println!("{} {} ({})", if dry_run { "would add" } else { "added" }, s.name, s.ssh);
        added += 1;
    }
    if !dry_run && added > 0 {
        write_fleet(&target, &fleet)?;
    }
    Ok(Code::Ok)
}

fn hostkey_cmd(args: &FleetArgs, a: &HostkeyArgs) -> Result<Code> {
    let f = open(args)?;
    let srv = f.inv.require(&a.name).map_err(fail)?.clone();
    let target = if a.jump {
        let j = srv.jump.clone().ok_or_else(|| Failure::new(Code::Usage, format!("{} has no jump host", srv.name)))?;
        Server::new(&format!("{}-jump", srv.name), j)
    } else {
        srv.clone()
    };
    let ssh = Ssh::prepare(&f.inv, &[&target], &f.layout()).map_err(fail)?;
    let scratch = tempdir_in(&f.state_dir)?;
    let keys = ssh.scan_host_keys(&target, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let keys = keys.map_err(fail)?;
    let name = target.ssh.known_hosts_name();
    let recorded = caretaker_fleet::ssh::recorded_keys(&ssh.known_hosts, &name).map_err(fail)?;
    let state = |k: &hostkey::HostKey| {
        if recorded.iter().any(|r| r.base64 == k.base64) {
            "recorded"
        } else if recorded.iter().any(|r| r.short_type() == k.short_type()) {
            "CHANGED"
        } else if recorded.is_empty() {
            "unknown"
        } else {
            "new type"
        }
    };
    if a.json {
        let v: Vec<_> = keys.iter().map(|k| serde_json::json!({"key": k, "state": state(k)})).collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"host": name, "keys": v}))?);
    } else {
        println!("Host keys of {} ({name}) — compare with what its administrator gives you", target.name);
        println!("(on the server: for i in /etc/ssh/ssh_host_*key.pub; do ssh-keygen -l -f $i; ssh-keygen -E md5 -l -f $i; done)\n");
        for k in &keys {
            let [sha, md5] = k.fingerprint_lines(&name);
            println!("{sha}\n{md5}\n  {}\n", state(k));
        }
    }
    let changed = keys.iter().any(|k| state(k) == "CHANGED");
    if !a.accept {
        if changed {
            eprintln!("The host key of {name} CHANGED since it was recorded: runs refuse this server.");
            return Ok(Code::Refused);
        }
        if keys.iter().any(|k| state(k) != "recorded") {
            println!(
                "To trust them: caretaker fleet hostkey {}{} --accept",
                a.name,
                if a.jump { " --jump" } else { "" }
            );
        }
        return Ok(Code::Ok);
    }
    if changed && !a.replace {
        return Err(Failure::new(
            Code::Refused,
            format!("the host key of {name} CHANGED since it was recorded: not accepted"),
        )
        .hint("only after comparing the new fingerprints with the server's administrator: add --replace")
        .into());
    }
    if changed {
        caretaker_fleet::ssh::forget_keys(&ssh.known_hosts, &name).map_err(fail)?;
    }
    let lines: Vec<String> =
        keys.iter().filter(|k| changed || state(k) != "recorded").map(|k| k.known_hosts_line(&name)).collect();
    caretaker_fleet::ssh::append_known_hosts(&ssh.known_hosts, &lines).map_err(fail)?;
    println!("recorded {} key(s) of {name} in {}", lines.len(), ssh.known_hosts.display());
    Ok(Code::Ok)
}

fn tempdir_in(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let p = dir.join(format!("scan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir(&p)?;
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(p)
}

fn controller_name(given: Option<&str>) -> String {
    given.map(str::to_string).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "controller".into())
    })
}

fn run_cmd(args: &FleetArgs, a: &RunArgs) -> Result<Code> {
    let f = open(args)?;
    let servers = f.inv.select(&a.servers).map_err(fail)?;
    let ssh = Ssh::prepare(&f.inv, &servers, &f.layout()).map_err(fail)?;
    let store: Mutex<Box<dyn FleetStore>> = Mutex::new(open_store(&f.state_dir)?);
    let controller = controller_name(a.controller.as_deref());
    let opts = run::Options {
        parallel: a.parallel.unwrap_or(f.inv.ssh.parallel),
        max_startups: a.max_startups.unwrap_or(f.inv.ssh.max_startups),
        jump_startups: f.inv.ssh.jump_startups,
        controller: controller.clone(),
        now,
        reboot_tokens: f.inv.max_reboots.is_some(),
    };
    let report = run::run(&f.inv, &servers, &ssh, &store, &opts).map_err(fail)?;
    let d = digest::render(&report, &controller);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for h in &report.hosts {
            let tasks: Vec<String> = h
                .tasks
                .iter()
                .filter(|t| t.outcome != caretaker_fleet::results::Outcome::NotDue)
                .map(|t| format!("{} {}", t.task, t.outcome.as_str()))
                .collect();
            let what = match h.contact.as_str() {
                "ok" if tasks.is_empty() => "nothing due".to_string(),
                "ok" => tasks.join(", "),
                _ => h.message.clone().unwrap_or_default(),
            };
            let quiet = if h.transient && !h.alerts() && h.contact != "ok" { " (transient: not alerted)" } else { "" };
            println!("{:<20} {:<12} {:>6.2}s  {what}{quiet}", h.server, h.contact, h.seconds);
            if let Some(hint) = &h.hint {
                println!("{:<20} hint: {hint}", "");
            }
        }
        println!("\n{} ({:.2}s)", d.subject, report.seconds);
    }
    if a.digest {
        send_digest(&f.inv, &report, &d)?;
    }
    Ok(if d.alert { Code::Failure } else { Code::Ok })
}

fn send_digest(inv: &Inventory, report: &run::RunReport, d: &digest::Digest) -> Result<()> {
    let Some(cfg) = &inv.digest else {
        return Err(Failure::new(Code::Config, "--digest: fleet.yml has no `digest:` section").into());
    };
    let mut errors = Vec::new();
    if !cfg.email_to.is_empty() {
        use caretaker_core::config::{Secret, SecretOrigin, SmtpTls};
        let password = match &cfg.smtp_password_env {
            Some(v) => Some(Secret::new(
                std::env::var(v)
                    .map_err(|_| Failure::new(Code::Config, format!("digest.smtp_password_env: ${v} is not set")))?,
                SecretOrigin::Env(v.clone()),
            )),
            None => None,
        };
        let smtp = caretaker_core::config::Smtp {
            host: cfg.smtp_host.clone().unwrap_or_default(),
            port: cfg.smtp_port,
            tls: match cfg.smtp_tls.as_str() {
                "tls" => SmtpTls::Tls,
                "none" => SmtpTls::None,
                _ => SmtpTls::Starttls,
            },
            username: cfg.smtp_username.clone(),
            password,
            from: cfg.smtp_from.clone().unwrap_or_default(),
        };
        for to in &cfg.email_to {
            if let Err(e) = caretaker_observe::notify::send_email(&smtp, to, &d.subject, &d.body) {
                errors.push(format!("e-mail to {to}: {e}"));
            }
        }
    }
    if let Some(var) = &cfg.webhook_url_env {
        match std::env::var(var) {
            Ok(url) => {
                if let Err(e) = caretaker_observe::notify::post_json(&url, &digest::webhook_payload(report, d)) {
                    errors.push(e);
                }
            }
            Err(_) => errors.push(format!("digest.webhook_url_env: ${var} is not set")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(Code::Unavailable, format!("the digest was not delivered: {}", errors.join("; "))).into())
    }
}

fn status(args: &FleetArgs, json: bool) -> Result<Code> {
    let f = open(args)?;
    let mut store = open_store(&f.state_dir)?;
    let st = store.status().map_err(fail)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(Code::Ok);
    }
    let now = now();
    let ago = |t: Option<i64>| {
        t.map_or("never".to_string(), |t| {
            format!(
                "{} ago",
                caretaker_core::duration::format_duration(std::time::Duration::from_secs((now - t).max(0) as u64))
            )
        })
    };
    for s in &f.inv.servers {
        let Some(x) = st.iter().find(|x| x.server == s.name) else {
            println!("{:<20} never contacted", s.name);
            continue;
        };
        println!(
            "{:<20} {:<12} last contact {}{}",
            s.name,
            x.contact.as_deref().unwrap_or("-"),
            ago(x.last_contact),
            if x.reboot_pending { ", reboot pending" } else { "" }
        );
        for t in &x.tasks {
            println!(
                "  {:<18} {:<10} last success {}{}",
                t.task,
                t.outcome,
                ago(t.last_success),
                if t.failures > 0 { format!(", {} failure(s) in a row", t.failures) } else { String::new() }
            );
        }
    }
    Ok(Code::Ok)
}

fn metrics(args: &FleetArgs) -> Result<Code> {
    let f = open(args)?;
    let mut store = open_store(&f.state_dir)?;
    let st = store.status().map_err(fail)?;
    print!("{}", caretaker_fleet::metrics::render(&f.inv, &st));
    Ok(Code::Ok)
}

fn install_cmd(args: &FleetArgs, a: &InstallArgs) -> Result<Code> {
    let f = open(args)?;
    let srv = f.inv.require(&a.name).map_err(fail)?.clone();
    let ssh = Ssh::prepare(&f.inv, &[&srv], &f.layout()).map_err(fail)?;
    let binary = match &a.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    let arch = a.arch.clone().unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let version = format!("caretaker {}", crate::version::LONG_VERSION);
    let o = install::InstallOptions {
        binary: &binary,
        binary_arch: &arch,
        dest: &a.dest,
        unit_dir: (!a.no_unit).then_some(a.unit_dir.as_str()),
        version: if a.binary.is_some() { "caretaker " } else { &version },
    };
    let r = install::install(&ssh, &srv, &o).map_err(fail)?;
    println!(
        "{}: {} {} ({}, sha256 {}){}",
        r.server,
        if r.unchanged { "already has" } else { "installed" },
        r.dest,
        r.arch,
        r.sha256,
        r.unit.as_ref().map(|u| format!(", unit {u}")).unwrap_or_default()
    );
    println!("{}: {}", r.server, r.version);
    if srv.caretaker_path != r.dest {
        println!(
            "note: fleet.yml runs `{}` on {}; set caretaker_path: {} if that is not on its PATH",
            srv.caretaker_path, r.server, r.dest
        );
    }
    Ok(Code::Ok)
}
