//! Staging clones, the pure part (docs/clones.md): validated names, lifetimes, limits, which
//! ports a clone moves and to where, and the clone's config — the app's config with its own
//! ports, database, file trees, state directory and environment overlay, and nothing that
//! reaches outside (no backups, no scheduled updates or jobs, no notifications).
//!
//! The effects (copying the database and the files, running the clone's daemon, destroying
//! it) are in the binary's `commands/clone.rs`; this module decides, from the config, the
//! clone records and a time given as an argument.

use crate::config::{Command, Config, EnvValue, Probe, Secret, MAIL_SINK_HOST, MAIL_SINK_PORT};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The variable every process of a clone gets, holding the clone's name.
pub const CLONE_ENV: &str = "CARETAKER_CLONE";

/// Where a clone is in its life. Written before each step, so a crash in any step is found
/// and finished by the next sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Being made by `clone create` (the `creator` process); copies may be half done.
    Creating,
    /// Made and started.
    Running,
    /// Being destroyed; whatever is left goes.
    Destroying,
}

/// A process, as the effects identify it (pid + kernel start time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pid {
    pub pid: u32,
    pub start_ticks: Option<u64>,
}

/// One clone, as recorded in `<state dir>/clones/<name>/clone.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneRecord {
    pub name: String,
    pub phase: Phase,
    /// `live` (the production database and files at creation time).
    pub source: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The app's port → the clone's.
    pub ports: BTreeMap<u16, u16>,
    /// The database the clone uses: a copy of the app's, named as a clone copy (db::naming).
    pub database: Option<String>,
    /// The app's file tree → the clone's copy.
    pub files: Vec<(PathBuf, PathBuf)>,
    /// The release pointer (`<state dir>/current`) → the release directory the clone runs
    /// (its target at creation time), so a later update does not change the clone's code.
    pub release: Option<(PathBuf, PathBuf)>,
    /// Bytes the clone's copies take (apparent size; a reflink copy shares blocks).
    pub disk_bytes: u64,
    /// The `clone create` that makes it (phase `Creating`).
    pub creator: Option<Pid>,
    /// The clone's caretaker daemon, which supervises its services.
    pub daemon: Option<Pid>,
}

impl CloneRecord {
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// Time left before the daemon destroys the clone (zero once expired).
    pub fn time_left(&self, now: Timestamp) -> Duration {
        let left = self.expires_at.duration_since(now);
        if left.is_negative() {
            Duration::ZERO
        } else {
            left.unsigned_abs()
        }
    }

    /// The clone's web port: the one the app's front door (or first health probe) moves to.
    pub fn web_port(&self, cfg: &Config) -> Option<u16> {
        let door = cfg.front_door.as_ref().and_then(|f| port_of(&f.listen));
        let probe = cfg.services.iter().find_map(|s| match s.health.as_ref().map(|h| &h.probe) {
            Some(Probe::Http(h)) => port_of(url_authority(&h.url)),
            Some(Probe::Tcp { address }) => port_of(address),
            _ => None,
        });
        door.or(probe).and_then(|p| self.ports.get(&p).copied())
    }
}

/// What the sweep does with a recorded clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SweepAction {
    Keep,
    Destroy(&'static str),
}

/// The sweep's decision: expired clones go, and so do half-made ones whose creator died and
/// half-destroyed ones. `creator_alive`: whether the record's creator process still runs.
pub fn sweep_action(record: &CloneRecord, now: Timestamp, creator_alive: bool) -> SweepAction {
    match record.phase {
        Phase::Destroying => SweepAction::Destroy("its destruction was interrupted"),
        Phase::Creating if !creator_alive => SweepAction::Destroy("its creation was interrupted"),
        Phase::Creating => SweepAction::Keep,
        Phase::Running if record.expired(now) => SweepAction::Destroy("its time is up"),
        Phase::Running => SweepAction::Keep,
    }
}

/// A clone's name: 1 to 24 of `a-z`, `0-9` and `-`, starting with a letter and not ending
/// with `-` (it becomes part of a database name, a directory and a host name).
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 24
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("clone name `{name}`: use 1 to 24 of a-z, 0-9 and -, starting with a letter and not ending with -"))
    }
}

/// The name for a clone created without one: `clone-N`, the smallest N not taken.
pub fn next_name(existing: &[String]) -> String {
    (1..).map(|n| format!("clone-{n}")).find(|n| !existing.contains(n)).expect("an unused number")
}

/// The clone's lifetime: the requested one or `clones.default_ttl`, refused beyond
/// `clones.max_ttl`.
pub fn choose_ttl(cfg: &Config, requested: Option<Duration>) -> Result<Duration, String> {
    let fmt = crate::duration::format_duration;
    match requested {
        None => Ok(cfg.clones.default_ttl),
        Some(d) if d.is_zero() => Err("a clone's TTL must be longer than 0s".into()),
        Some(d) if d > cfg.clones.max_ttl => Err(format!(
            "the TTL {} is longer than clones.max_ttl ({max}): ask for at most {max}, or raise clones.max_ttl in the config",
            fmt(d),
            max = fmt(cfg.clones.max_ttl)
        )),
        Some(d) => Ok(d),
    }
}

/// Whether one more clone of `estimate` bytes fits the limits, next to `existing`.
pub fn check_limits(cfg: &Config, existing: &[CloneRecord], estimate: u64) -> Result<(), String> {
    let c = &cfg.clones;
    if existing.len() as u64 >= u64::from(c.max_count) {
        let names: Vec<&str> = existing.iter().map(|r| r.name.as_str()).collect();
        return Err(format!(
            "{} clone(s) exist ({}), the most clones.max_count allows ({}): destroy one first with `caretaker clone destroy NAME`, or raise clones.max_count",
            existing.len(),
            if names.is_empty() { "none".to_string() } else { names.join(", ") },
            c.max_count
        ));
    }
    if let Some(max) = c.max_disk {
        let used: u64 = existing.iter().map(|r| r.disk_bytes).sum();
        if used.saturating_add(estimate) > max {
            return Err(format!(
                "the clone needs about {} (database and files) and the clones use {} already: more than clones.max_disk ({}); destroy a clone or raise clones.max_disk",
                human_bytes(estimate),
                human_bytes(used),
                human_bytes(max)
            ));
        }
    }
    Ok(())
}

/// `1.5 GiB`, `300 KiB`, `12 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The port of `host:port` (also `[::1]:port`).
fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// `host:port` of an `http://host:port/path` URL.
fn url_authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    auth.rsplit_once('@').map_or(auth, |(_, a)| a)
}

/// Whether a variable of this name holds a port the app listens on: `PORT`, or a name with
/// `LISTEN` or `BIND` in it. (A `DB_PORT` or `SMTP_PORT` names a server the app talks to.)
fn listen_var(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n == "PORT" || n.contains("LISTEN") || n.contains("BIND")
}

/// The ports the app listens on, which a clone moves: the HTTP listener of caretaker, the
/// front door and its upstream, the services' health probes, and the variables
/// [`listen_var`] names (a port number or `host:port`).
pub fn app_ports(cfg: &Config) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    ports.extend(port_of(&cfg.http.listen));
    if let Some(f) = &cfg.front_door {
        ports.extend(port_of(&f.listen));
        ports.extend(port_of(&f.upstream));
    }
    for s in &cfg.services {
        match s.health.as_ref().map(|h| &h.probe) {
            Some(Probe::Http(h)) => ports.extend(port_of(url_authority(&h.url))),
            Some(Probe::Tcp { address }) => ports.extend(port_of(address)),
            _ => {}
        }
    }
    let envs = std::iter::once(&cfg.app.env).chain(cfg.services.iter().map(|s| &s.env));
    for env in envs {
        for (k, v) in env {
            if listen_var(k) {
                let v = v.expose().trim();
                ports.extend(v.parse::<u16>().ok().or_else(|| port_of(v)));
            }
        }
    }
    ports.remove(&0);
    ports
}

/// Clone ports for `wanted` (the app's ports, in order) from `clones.port_range`, skipping
/// `taken` (other clones' ports, ports found in use).
pub fn assign_ports(cfg: &Config, wanted: &BTreeSet<u16>, taken: &BTreeSet<u16>) -> Result<BTreeMap<u16, u16>, String> {
    let (lo, hi) = cfg.clones.port_range;
    let mut free = (lo..=hi).filter(|p| !taken.contains(p) && !wanted.contains(p));
    let mut out = BTreeMap::new();
    for w in wanted {
        match free.next() {
            Some(p) => {
                out.insert(*w, p);
            }
            None => {
                return Err(format!(
                    "clones.port_range {lo}-{hi} has no free port left for the clone's {} port(s): widen the range or destroy a clone",
                    wanted.len()
                ))
            }
        }
    }
    Ok(out)
}

/// The variables a clone's processes get over the app's own: outgoing mail to a sink that
/// accepts nothing (the usual names, and any `smtp://` URL the app has), then `clones.env`,
/// then [`CLONE_ENV`].
pub fn env_overlay(cfg: &Config, name: &str) -> BTreeMap<String, EnvValue> {
    let mut out = BTreeMap::new();
    let plain = |s: &str| EnvValue::Plain(s.to_string());
    for host in ["EMAIL_HOST", "SMTP_HOST", "MAIL_HOST"] {
        out.insert(host.to_string(), plain(MAIL_SINK_HOST));
    }
    for port in ["EMAIL_PORT", "SMTP_PORT", "MAIL_PORT"] {
        out.insert(port.to_string(), plain(&MAIL_SINK_PORT.to_string()));
    }
    let sink_url = format!("smtp://{MAIL_SINK_HOST}:{MAIL_SINK_PORT}");
    let envs = std::iter::once(&cfg.app.env).chain(cfg.services.iter().map(|s| &s.env));
    for env in envs {
        for (k, v) in env {
            let v = v.expose().to_ascii_lowercase();
            if v.starts_with("smtp://") || v.starts_with("smtps://") || v.starts_with("submission://") {
                out.insert(k.clone(), plain(&sink_url));
            }
        }
    }
    for (k, v) in &cfg.clones.env {
        out.insert(k.clone(), v.clone());
    }
    out.insert(CLONE_ENV.to_string(), plain(name));
    out
}

/// What a clone is made of, decided before anything is copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClonePlan {
    pub name: String,
    /// `<state dir>/clones/<name>/state`.
    pub state_dir: PathBuf,
    pub ports: BTreeMap<u16, u16>,
    /// The clone's database: for PostgreSQL and MariaDB its name on the same server, for
    /// SQLite its file.
    pub database: Option<String>,
    /// The app's file tree → the clone's copy.
    pub files: Vec<(PathBuf, PathBuf)>,
    /// The release pointer (`<state dir>/current`) → the release it points at.
    pub release: Option<(PathBuf, PathBuf)>,
}

/// The clone's config: `cfg` with every port, database, file tree and release path of the
/// plan rewritten — in the services' commands, environments and health probes, the front
/// door, caretaker's HTTP listener — the environment overlay on every process, its own state
/// directory, and nothing that reaches outside: no backups, no scheduled updates, jobs or
/// dependency reports, no notifications, no status page, no clones of the clone.
pub fn clone_config(cfg: &Config, plan: &ClonePlan) -> Config {
    let rw = Rewriter::new(cfg, plan);
    let mut c = cfg.clone();
    c.state_dir = Some(plan.state_dir.clone());
    c.backup = None;
    c.update.schedule = None;
    c.update.automatic = false;
    c.jobs.clear();
    c.deps.schedule = None;
    c.alerts.notify.clear();
    c.alerts.smtp = None;
    c.status = None;
    c.clones.max_count = 0;
    c.http.listen = rw.text(&c.http.listen);
    if let Some(f) = &mut c.front_door {
        f.listen = rw.text(&f.listen);
        f.upstream = rw.text(&f.upstream);
    }
    if let Some(db) = &mut c.database {
        if let (Some(url), Some(new)) = (&db.url, &plan.database) {
            db.url = Some(Secret::new(rw.db_url(url.expose(), new), url.origin().clone()));
        }
        if let (Some(_), Some(new)) = (&db.path, &plan.database) {
            db.path = Some(PathBuf::from(new));
        }
    }
    c.files = cfg
        .files
        .iter()
        .map(|t| {
            let mut t = t.clone();
            t.path = PathBuf::from(rw.text(&t.path.to_string_lossy()));
            t
        })
        .collect();
    c.app.working_dir = c.app.working_dir.as_ref().map(|p| PathBuf::from(rw.text(&p.to_string_lossy())));
    c.app.env = rw.env(&c.app.env);
    let overlay = env_overlay(cfg, &plan.name);
    c.app.env.extend(overlay.clone());
    c.app.build = c.app.build.iter().map(|cmd| rw.command(cmd)).collect();
    c.app.migrate = c.app.migrate.iter().map(|cmd| rw.command(cmd)).collect();
    for s in &mut c.services {
        s.command = rw.command(&s.command);
        s.env = rw.env(&s.env);
        // The service's own env wins over the app's: the overlay must win over both.
        for (k, v) in &overlay {
            if s.env.contains_key(k) {
                s.env.insert(k.clone(), v.clone());
            }
        }
        s.working_dir = s.working_dir.as_ref().map(|p| PathBuf::from(rw.text(&p.to_string_lossy())));
        if let Some(h) = &mut s.health {
            match &mut h.probe {
                Probe::Http(p) => p.url = rw.text(&p.url),
                Probe::Tcp { address } => *address = rw.text(address),
                Probe::Command { command } => *command = rw.command(command),
            }
        }
    }
    for check in &mut c.checks {
        if let Probe::Http(p) = &mut check.probe {
            p.url = rw.text(&p.url);
        }
    }
    c
}

/// Rewrites text of the app's config into the clone's: paths (longest first, whole path
/// components only) and `:port` (not followed by another digit).
struct Rewriter {
    /// (from, to, is a port)
    rules: Vec<(String, String, bool)>,
    ports: BTreeMap<u16, u16>,
    /// The app's database name (PostgreSQL, MariaDB) and the clone's.
    db_name: Option<(String, String)>,
}

impl Rewriter {
    fn new(cfg: &Config, plan: &ClonePlan) -> Rewriter {
        let mut rules: Vec<(String, String, bool)> = Vec::new();
        let path = |p: &Path| p.to_string_lossy().trim_end_matches('/').to_string();
        for (from, to) in &plan.files {
            rules.push((path(from), path(to), false));
        }
        if let Some((from, to)) = &plan.release {
            rules.push((path(from), path(to), false));
        }
        let mut db_name = None;
        if let (Some(db), Some(new)) = (&cfg.database, &plan.database) {
            if let Some(p) = &db.path {
                rules.push((path(p), new.clone(), false));
            }
            if let Some(url) = &db.url {
                db_name = url_db_name(url.expose()).map(|d| (d.to_string(), new.clone()));
            }
        }
        for (from, to) in &plan.ports {
            rules.push((format!(":{from}"), format!(":{to}"), true));
        }
        rules.retain(|(f, _, _)| f.len() > 1);
        rules.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Rewriter { rules, ports: plan.ports.clone(), db_name }
    }

    fn text(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        'scan: while i < s.len() {
            for (from, to, port) in &self.rules {
                if s[i..].starts_with(from.as_str()) {
                    let next = s[i + from.len()..].chars().next();
                    let boundary = match next {
                        None => true,
                        Some(c) if *port => !c.is_ascii_digit(),
                        Some(c) => !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'),
                    };
                    if boundary {
                        out.push_str(to);
                        i += from.len();
                        continue 'scan;
                    }
                }
            }
            let c = s[i..].chars().next().expect("inside the string");
            out.push(c);
            i += c.len_utf8();
        }
        if let Some((from, to)) = &self.db_name {
            if out.contains("://") {
                return replace_url_db(&out, from, to);
            }
        }
        out
    }

    fn value(&self, name: &str, v: &str) -> String {
        if listen_var(name) {
            if let Some(p) = v.trim().parse::<u16>().ok().and_then(|p| self.ports.get(&p)) {
                return p.to_string();
            }
        }
        if let Some((from, to)) = &self.db_name {
            let n = name.to_ascii_uppercase();
            if v == from && (n.contains("DATABASE") || n.ends_with("DB") || n.ends_with("DB_NAME")) {
                return to.clone();
            }
        }
        self.text(v)
    }

    fn env(&self, env: &BTreeMap<String, EnvValue>) -> BTreeMap<String, EnvValue> {
        env.iter()
            .map(|(k, v)| {
                let nv = match v {
                    EnvValue::Plain(s) => EnvValue::Plain(self.value(k, s)),
                    EnvValue::Secret(s) => EnvValue::Secret(Secret::new(self.value(k, s.expose()), s.origin().clone())),
                };
                (k.clone(), nv)
            })
            .collect()
    }

    fn command(&self, c: &Command) -> Command {
        match c {
            Command::Shell(s) => Command::Shell(self.text(s)),
            Command::Argv(v) => Command::Argv(v.iter().map(|a| self.text(a)).collect()),
        }
    }

    fn db_url(&self, url: &str, new: &str) -> String {
        match url_db_name(url) {
            Some(old) => replace_url_db(url, old, new),
            None => url.to_string(),
        }
    }
}

/// The database name in `scheme://user:pass@host:port/NAME?query`.
fn url_db_name(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let path = &rest[rest.find('/')? + 1..];
    let name = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// Replaces the database name of every URL in `s` whose path is exactly `/from`.
fn replace_url_db(s: &str, from: &str, to: &str) -> String {
    if url_db_name(s) == Some(from) {
        let (scheme, rest) = s.split_once("://").expect("a URL");
        let slash = rest.find('/').expect("a path");
        let after = &rest[slash + 1 + from.len()..];
        return format!("{scheme}://{}/{to}{after}", &rest[..slash]);
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, NoSecrets};

    fn cfg(extra: &str) -> Config {
        let text = format!("version: 1\napp:\n  name: shop\n{extra}");
        match load(&text, Path::new("/etc/caretaker/caretaker.yml"), Some(0o600), &NoSecrets) {
            Ok(l) => l.config,
            Err(d) => panic!("{}", d.render(&text)),
        }
    }

    const APP: &str = r#"
services:
  web:
    command: ["/srv/shop/current/bin/serve", "--bind", "127.0.0.1:8000"]
    working_dir: /srv/shop/current
    env:
      DATABASE_URL: "postgres://shop:pw@127.0.0.1:5432/shop?sslmode=disable"
      PGDATABASE: shop
      MEDIA_ROOT: /srv/shop/media
      MEDIA_ROOT_2: /srv/shop/media2
      PUBLIC_URL: "http://127.0.0.1:8000/"
      DB_PORT: "5432"
      EMAIL_HOST: smtp.example.com
      EMAIL_URL: "smtp://user@smtp.example.com:587"
    health: { http: "http://127.0.0.1:8000/healthz" }
  worker:
    command: "exec worker --listen 127.0.0.1:8001"
    env: { PORT: "8001" }
database:
  kind: postgresql
  url: "postgres://shop:pw@127.0.0.1:5432/shop"
files:
  - path: /srv/shop/media
front_door: { listen: "0.0.0.0:80", upstream: "127.0.0.1:8000" }
http: { listen: "127.0.0.1:9100" }
backup:
  repository: /backups/shop
  password: pw
jobs:
  report: { command: "echo", schedule: hourly }
clones:
  env: { BANNER: "staging clone" }
  port_range: 42000-42009
"#;

    fn plan(cfg: &Config) -> ClonePlan {
        let ports = assign_ports(cfg, &app_ports(cfg), &BTreeSet::new()).unwrap();
        ClonePlan {
            name: "try-1".into(),
            state_dir: "/var/lib/caretaker/shop/clones/try-1/state".into(),
            ports,
            database: Some("shop__clone_20250314_093000_123_try-1".into()),
            files: vec![("/srv/shop/media".into(), "/var/lib/caretaker/shop/clones/try-1/files/media".into())],
            release: Some(("/srv/shop/current".into(), "/srv/shop/releases/20250314-1".into())),
        }
    }

    #[test]
    fn names_are_validated_and_generated() {
        for ok in ["a", "try-1", "staging", "x0123456789012345678901a"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "1abc", "Upper", "has space", "end-", "a_b", "x01234567890123456789012a"] {
            let e = validate_name(bad).unwrap_err();
            assert!(e.contains("use 1 to 24 of a-z, 0-9 and -"), "{bad}: {e}");
        }
        assert_eq!(next_name(&[]), "clone-1");
        assert_eq!(next_name(&["clone-1".into(), "clone-3".into()]), "clone-2");
    }

    #[test]
    fn ttl_defaults_and_is_bounded() {
        let c = cfg("clones: { max_ttl: 2d, default_ttl: 1d }\n");
        assert_eq!(choose_ttl(&c, None).unwrap().as_secs(), 86400);
        assert_eq!(choose_ttl(&c, Some(Duration::from_secs(60))).unwrap().as_secs(), 60);
        let e = choose_ttl(&c, Some(Duration::from_secs(3 * 86400))).unwrap_err();
        assert_eq!(
            e,
            "the TTL 3d is longer than clones.max_ttl (2d): ask for at most 2d, or raise clones.max_ttl in the config"
        );
        assert!(choose_ttl(&c, Some(Duration::ZERO)).is_err());
    }

    fn record(name: &str, phase: Phase, expires: &str, disk: u64) -> CloneRecord {
        CloneRecord {
            name: name.into(),
            phase,
            source: "live".into(),
            created_at: "2025-03-14T09:00:00Z".parse().unwrap(),
            expires_at: expires.parse().unwrap(),
            ports: BTreeMap::new(),
            database: None,
            files: vec![],
            release: None,
            disk_bytes: disk,
            creator: None,
            daemon: None,
        }
    }

    #[test]
    fn limits_refuse_with_the_numbers() {
        let c = cfg("clones: { max_count: 2, max_disk: 1GiB }\n");
        let one = vec![record("a", Phase::Running, "2025-03-15T00:00:00Z", 600 << 20)];
        check_limits(&c, &one, 100 << 20).unwrap();
        let e = check_limits(&c, &one, 500 << 20).unwrap_err();
        assert_eq!(e, "the clone needs about 500.0 MiB (database and files) and the clones use 600.0 MiB already: more than clones.max_disk (1.0 GiB); destroy a clone or raise clones.max_disk");
        let two = vec![one[0].clone(), record("b", Phase::Running, "2025-03-15T00:00:00Z", 0)];
        let e = check_limits(&c, &two, 0).unwrap_err();
        assert!(e.starts_with("2 clone(s) exist (a, b), the most clones.max_count allows (2)"), "{e}");
    }

    #[test]
    fn sweep_destroys_expired_and_half_done_clones() {
        let now: Timestamp = "2025-03-15T00:00:00Z".parse().unwrap();
        let r = |phase, exp| record("a", phase, exp, 0);
        assert_eq!(sweep_action(&r(Phase::Running, "2025-03-15T00:00:01Z"), now, false), SweepAction::Keep);
        assert_eq!(
            sweep_action(&r(Phase::Running, "2025-03-15T00:00:00Z"), now, false),
            SweepAction::Destroy("its time is up")
        );
        assert_eq!(sweep_action(&r(Phase::Creating, "2025-03-16T00:00:00Z"), now, true), SweepAction::Keep);
        assert!(matches!(
            sweep_action(&r(Phase::Creating, "2025-03-16T00:00:00Z"), now, false),
            SweepAction::Destroy(_)
        ));
        assert!(matches!(
            sweep_action(&r(Phase::Destroying, "2025-03-16T00:00:00Z"), now, true),
            SweepAction::Destroy(_)
        ));
        let rec = r(Phase::Running, "2025-03-15T01:00:00Z");
        assert_eq!(rec.time_left(now).as_secs(), 3600);
        assert_eq!(rec.time_left("2025-03-16T00:00:00Z".parse().unwrap()), Duration::ZERO);
    }

    #[test]
    fn ports_are_found_and_assigned_from_the_range() {
        let c = cfg(APP);
        // 5432 (DB_PORT, the database URL) is a server the app talks to, not a port it serves.
        assert_eq!(app_ports(&c).into_iter().collect::<Vec<_>>(), vec![80, 8000, 8001, 9100]);
        let taken: BTreeSet<u16> = [42000, 42002].into();
        let p = assign_ports(&c, &app_ports(&c), &taken).unwrap();
        assert_eq!(p.into_iter().collect::<Vec<_>>(), vec![(80, 42001), (8000, 42003), (8001, 42004), (9100, 42005)]);
        let full: BTreeSet<u16> = (42000..=42007).collect();
        let e = assign_ports(&c, &app_ports(&c), &full).unwrap_err();
        assert!(e.contains("clones.port_range 42000-42009 has no free port left"), "{e}");
    }

    #[test]
    fn clone_config_moves_ports_database_files_and_mail() {
        let c = cfg(APP);
        let p = plan(&c);
        let k = clone_config(&c, &p);
        let web = &k.services[0];
        let env = |k: &str| web.env[k].expose().to_string();
        assert_eq!(
            web.command,
            Command::Argv(vec![
                "/srv/shop/releases/20250314-1/bin/serve".into(),
                "--bind".into(),
                "127.0.0.1:42001".into()
            ])
        );
        assert_eq!(web.working_dir.as_deref(), Some(Path::new("/srv/shop/releases/20250314-1")));
        assert_eq!(
            env("DATABASE_URL"),
            "postgres://shop:pw@127.0.0.1:5432/shop__clone_20250314_093000_123_try-1?sslmode=disable"
        );
        assert_eq!(env("PGDATABASE"), "shop__clone_20250314_093000_123_try-1");
        assert_eq!(env("MEDIA_ROOT"), "/var/lib/caretaker/shop/clones/try-1/files/media");
        assert_eq!(env("MEDIA_ROOT_2"), "/srv/shop/media2", "a path sharing a prefix is another path");
        assert_eq!(env("PUBLIC_URL"), "http://127.0.0.1:42001/");
        assert_eq!(env("DB_PORT"), "5432");
        // Mail: the service's own EMAIL_HOST loses to the overlay; the smtp URL goes to the sink.
        assert_eq!(env("EMAIL_HOST"), "127.0.0.1");
        assert_eq!(env("EMAIL_URL"), "smtp://127.0.0.1:1");
        assert_eq!(k.app.env["EMAIL_PORT"].expose(), "1");
        assert_eq!(k.app.env["BANNER"].expose(), "staging clone");
        assert_eq!(k.app.env[CLONE_ENV].expose(), "try-1");
        let worker = &k.services[1];
        assert_eq!(worker.command, Command::Shell("exec worker --listen 127.0.0.1:42002".into()));
        assert_eq!(worker.env["PORT"].expose(), "42002");
        match &web.health.as_ref().unwrap().probe {
            Probe::Http(h) => assert_eq!(h.url, "http://127.0.0.1:42001/healthz"),
            other => panic!("{other:?}"),
        }
        let fd = k.front_door.as_ref().unwrap();
        assert_eq!((fd.listen.as_str(), fd.upstream.as_str()), ("0.0.0.0:42000", "127.0.0.1:42001"));
        assert_eq!(k.http.listen, "127.0.0.1:42003");
        assert_eq!(
            k.database.as_ref().unwrap().url.as_ref().unwrap().expose(),
            "postgres://shop:pw@127.0.0.1:5432/shop__clone_20250314_093000_123_try-1"
        );
        assert_eq!(k.files[0].path, Path::new("/var/lib/caretaker/shop/clones/try-1/files/media"));
        assert_eq!(k.state_dir.as_deref(), Some(Path::new("/var/lib/caretaker/shop/clones/try-1/state")));
        assert!(k.backup.is_none() && k.jobs.is_empty() && k.clones.max_count == 0);
        let rec = CloneRecord { ports: p.ports.clone(), ..record("try-1", Phase::Running, "2025-03-15T00:00:00Z", 0) };
        assert_eq!(rec.web_port(&c), Some(42000));
        // The production config is untouched.
        assert_eq!(c.services[0].env["EMAIL_HOST"].expose(), "smtp.example.com");
    }

    #[test]
    fn sqlite_path_is_rewritten() {
        let c = cfg("services:\n  web:\n    command: serve\n    env: { DEMO_DATABASE_URL: \"sqlite:///srv/d/demo.db\", DEMO_FILES_DIR: /srv/d }\ndatabase: { kind: sqlite, path: /srv/d/demo.db }\nfiles: [ { path: /srv/d } ]\n");
        let p = ClonePlan {
            name: "s".into(),
            state_dir: "/st/clones/s/state".into(),
            ports: BTreeMap::new(),
            database: Some("/srv/d/demo.db__clone_20250314_093000_123_s".into()),
            files: vec![("/srv/d".into(), "/st/clones/s/files/d".into())],
            release: None,
        };
        let k = clone_config(&c, &p);
        let env = &k.services[0].env;
        assert_eq!(env["DEMO_DATABASE_URL"].expose(), "sqlite:///srv/d/demo.db__clone_20250314_093000_123_s");
        assert_eq!(env["DEMO_FILES_DIR"].expose(), "/st/clones/s/files/d");
        assert_eq!(k.database.unwrap().path.unwrap(), Path::new("/srv/d/demo.db__clone_20250314_093000_123_s"));
    }
}
