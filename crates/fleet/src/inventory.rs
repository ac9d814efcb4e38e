//! The fleet's inventory: `fleet.yml` (docs/fleet.md), or an Ansible inventory (INI or YAML)
//! for operators who already keep one. Pure: text in, validated [`Inventory`] or every problem
//! with file:line:column out.
//!
//! ```yaml
//! version: 1
//! ssh:
//!   connect_timeout: 10s
//! servers:
//!   - name: web1
//!     host: 192.0.2.10
//!     user: root
//!     jump: admin@bastion.example.org:2222
//!     transient: false
//!     groups: [web, prod]
//! ```

use caretaker_core::config::{suggest, Diagnostic, Diagnostics, Location, Severity};
use caretaker_core::duration::parse_duration;
use marked_yaml::types::MarkedMappingNode;
use marked_yaml::{Node, Span};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where an SSH server listens and whom to log in as.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Endpoint {
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `[user@]host[:port]` (IPv6 as `[::1]:22`).
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty".into());
        }
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            Some(_) => return Err(format!("`{s}`: empty user name before `@`")),
            None => (None, s),
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, tail) = r.split_once(']').ok_or_else(|| format!("`{s}`: `[` without `]`"))?;
            match tail.strip_prefix(':') {
                Some(p) => (h.to_string(), Some(p)),
                None if tail.is_empty() => (h.to_string(), None),
                None => return Err(format!("`{s}`: unexpected `{tail}` after `]`")),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) if !p.contains(':') => (h.to_string(), Some(p)),
                Some(_) => return Err(format!("`{s}`: write an IPv6 address as [addr]:port")),
                None => (rest.to_string(), None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!("`{s}`: no host name"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("`{s}`: bad port `{p}`"))?,
            None => 22,
        };
        Ok(Endpoint { user, host, port })
    }

    /// `host` or `[host]:port`, the way OpenSSH names it in known_hosts.
    pub fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if self.port != 22 {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// One server of the fleet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Server {
    /// The fleet's name for it: unique, used in reports, state and `fleet hostkey NAME`.
    pub name: String,
    pub ssh: Endpoint,
    /// A jump host (`ProxyJump`), checked against the same known_hosts file.
    pub jump: Option<Endpoint>,
    /// Often off (a laptop, a test machine): not answering is noted quietly, not alerted.
    pub transient: bool,
    pub groups: Vec<String>,
    /// The `caretaker` program on the server (default: `caretaker` on the login PATH).
    pub caretaker_path: String,
    /// The server's caretaker config, passed as `--config` (default: the server's own lookup).
    pub config: Option<String>,
    /// Private key for this server (default: the fleet's, else ssh's defaults and agent).
    pub identity_file: Option<String>,
}

impl Server {
    pub fn new(name: &str, ssh: Endpoint) -> Server {
        Server {
            name: name.to_string(),
            ssh,
            jump: None,
            transient: false,
            groups: Vec::new(),
            caretaker_path: "caretaker".into(),
            config: None,
            identity_file: None,
        }
    }
}

/// How the controller talks SSH.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SshSettings {
    /// The fleet's own known_hosts file (relative to fleet.yml; default `known_hosts` beside it).
    pub known_hosts: String,
    pub identity_file: Option<String>,
    /// `Include ~/.ssh/config` in the generated config (after caretaker's strict options,
    /// which win because OpenSSH takes the first value it reads).
    pub include_user_config: bool,
    pub connect_timeout: Duration,
    /// How long one server's `tasks run-due` may take.
    pub run_timeout: Duration,
    /// How long master connections stay after a run (warm runs reuse them).
    pub control_persist: Duration,
    /// Servers worked on at once (`--parallel` overrides).
    pub parallel: usize,
    /// New connections being set up at once, over the whole fleet.
    pub max_startups: usize,
    /// New connections being set up at once through one jump host: below sshd's default
    /// `MaxStartups 10:30:100`, so the jump host never drops one.
    pub jump_startups: usize,
}

impl Default for SshSettings {
    fn default() -> SshSettings {
        SshSettings {
            known_hosts: "known_hosts".into(),
            identity_file: None,
            include_user_config: false,
            connect_timeout: Duration::from_secs(10),
            run_timeout: Duration::from_secs(4 * 3600),
            control_persist: Duration::from_secs(600),
            parallel: 32,
            max_startups: 64,
            jump_startups: 8,
        }
    }
}

/// Where the digest goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DigestSettings {
    pub email_to: Vec<String>,
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    /// `starttls`, `tls` or `none`.
    pub smtp_tls: String,
    pub smtp_from: Option<String>,
    pub smtp_username: Option<String>,
    /// Environment variable holding the SMTP password (never in fleet.yml).
    pub smtp_password_env: Option<String>,
    /// Environment variable holding the webhook URL (it usually carries a token).
    pub webhook_url_env: Option<String>,
}

/// The validated inventory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Inventory {
    pub ssh: SshSettings,
    pub servers: Vec<Server>,
    /// At most this many servers reboot at once (reboot tokens); `None`: reboots are not
    /// coordinated by the controller (no `tasks due` step before `run-due`).
    pub max_reboots: Option<u32>,
    pub digest: Option<DigestSettings>,
}

impl Inventory {
    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The server called `name`, or an error suggesting the closest name.
    pub fn require(&self, name: &str) -> Result<&Server, crate::Error> {
        self.server(name).ok_or_else(|| {
            let mut e = crate::Error::new(crate::ErrorKind::Inventory, format!("no server `{name}` in the fleet"));
            if let Some(s) = suggest(name, self.servers.iter().map(|s| s.name.as_str())) {
                e = e.hint(format!("did you mean `{s}`?"));
            } else {
                e = e.hint("`caretaker fleet list` shows the servers; `caretaker fleet add` adds one");
            }
            e
        })
    }

    /// Servers selected by name or group (`all` or nothing: every server).
    pub fn select(&self, names: &[String]) -> Result<Vec<&Server>, crate::Error> {
        if names.is_empty() || names.iter().any(|n| n == "all") {
            return Ok(self.servers.iter().collect());
        }
        let mut out: Vec<&Server> = Vec::new();
        for n in names {
            let in_group: Vec<&Server> = self.servers.iter().filter(|s| s.groups.iter().any(|g| g == n)).collect();
            if !in_group.is_empty() {
                out.extend(in_group);
            } else {
                out.push(self.require(n)?);
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|s| seen.insert(s.name.clone()));
        Ok(out)
    }
}

/// A valid server or group name: letters, digits, `-`, `_`, `.`.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !n.starts_with(['-', '.'])
}

struct Cx {
    file: String,
    d: Vec<Diagnostic>,
}

impl Cx {
    fn error(&mut self, span: &Span, path: &str, message: impl Into<String>, hint: Option<&str>) {
        self.d.push(Diagnostic {
            severity: Severity::Error,
            file: self.file.clone(),
            location: span.start().map(|m| Location { line: m.line(), column: m.column() }),
            path: path.to_string(),
            message: message.into(),
            hint: hint.map(str::to_string),
        });
    }
}

fn kind(n: &Node) -> &'static str {
    match n {
        Node::Scalar(_) => "a single value",
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
    }
}

/// Reads a mapping's keys, reporting unknown ones with a suggestion.
fn keys<'n>(cx: &mut Cx, m: &'n MarkedMappingNode, path: &str, known: &[&str]) -> BTreeMap<String, (&'n Node, Span)> {
    let mut out = BTreeMap::new();
    for (k, v) in m.iter() {
        let key = k.as_str();
        if known.contains(&key) {
            out.insert(key.to_string(), (v, *k.span()));
        } else {
            let hint = suggest(key, known.iter().copied()).map(|s| format!("did you mean `{s}`?"));
            let hint = hint.unwrap_or_else(|| format!("known keys: {}", known.join(", ")));
            cx.error(
                k.span(),
                path,
                format!("unknown key `{key}` in `{}`", if path.is_empty() { "fleet.yml" } else { path }),
                Some(&hint),
            );
        }
    }
    out
}

fn scalar(cx: &mut Cx, n: &Node, path: &str) -> Option<String> {
    match n {
        Node::Scalar(s) => Some(s.as_str().to_string()),
        other => {
            cx.error(other.span(), path, format!("`{path}` must be a single value, found {}", kind(other)), None);
            None
        }
    }
}

fn boolean(cx: &mut Cx, n: &Node, path: &str) -> Option<bool> {
    let s = scalar(cx, n, path)?;
    match s.as_str() {
        "true" | "yes" | "True" | "TRUE" | "Yes" => Some(true),
        "false" | "no" | "False" | "FALSE" | "No" => Some(false),
        _ => {
            cx.error(n.span(), path, format!("`{path}` must be true or false, found `{s}`"), None);
            None
        }
    }
}

fn number(cx: &mut Cx, n: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
    let s = scalar(cx, n, path)?;
    match s.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Some(v),
        _ => {
            cx.error(n.span(), path, format!("`{path}` must be a whole number from {min} to {max}, found `{s}`"), None);
            None
        }
    }
}

fn duration(cx: &mut Cx, n: &Node, path: &str) -> Option<Duration> {
    let s = scalar(cx, n, path)?;
    match parse_duration(&s) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            cx.error(n.span(), path, format!("`{path}` must be longer than zero"), None);
            None
        }
        Err(e) => {
            cx.error(n.span(), path, format!("`{path}`: {e}"), Some("a duration such as 10s, 5m, 2h"));
            None
        }
    }
}

fn string_list(cx: &mut Cx, n: &Node, path: &str) -> Vec<String> {
    match n {
        Node::Sequence(items) => items.iter().filter_map(|i| scalar(cx, i, path)).collect(),
        Node::Scalar(s) => vec![s.as_str().to_string()],
        other => {
            cx.error(other.span(), path, format!("`{path}` must be a list, found {}", kind(other)), None);
            Vec::new()
        }
    }
}

fn endpoint(cx: &mut Cx, n: &Node, path: &str) -> Option<Endpoint> {
    let s = scalar(cx, n, path)?;
    match Endpoint::parse(&s) {
        Ok(e) => Some(e),
        Err(e) => {
            cx.error(n.span(), path, format!("`{path}`: {e}"), Some("write [user@]host[:port]"));
            None
        }
    }
}

const TOP_KEYS: &[&str] = &["version", "ssh", "servers", "max_reboots", "digest"];
const SSH_KEYS: &[&str] = &[
    "known_hosts",
    "identity_file",
    "include_user_config",
    "connect_timeout",
    "run_timeout",
    "control_persist",
    "parallel",
    "max_startups",
    "jump_startups",
];
const SERVER_KEYS: &[&str] =
    &["name", "host", "port", "user", "jump", "transient", "groups", "caretaker_path", "config", "identity_file"];
const DIGEST_KEYS: &[&str] = &[
    "email_to",
    "smtp_host",
    "smtp_port",
    "smtp_tls",
    "smtp_from",
    "smtp_username",
    "smtp_password_env",
    "webhook_url_env",
];

/// Parses fleet.yml. `file` is the name shown in messages.
pub fn parse(text: &str, file: &str) -> Result<Inventory, Diagnostics> {
    let mut cx = Cx { file: file.to_string(), d: Vec::new() };
    let opts = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
    let root = match marked_yaml::parse_yaml_with_options(0, text, opts) {
        Ok(r) => r,
        Err(e) => {
            cx.d.push(Diagnostic {
                severity: Severity::Error,
                file: file.to_string(),
                location: None,
                path: String::new(),
                message: format!("not valid YAML: {e}"),
                hint: None,
            });
            return Err(Diagnostics(cx.d));
        }
    };
    let start = Span::new_start(marked_yaml::Marker::new(0, 0, 1, 1));
    let Node::Mapping(top) = &root else {
        cx.error(&start, "", "fleet.yml must be a mapping with `servers:`", None);
        return Err(Diagnostics(cx.d));
    };
    let k = keys(&mut cx, top, "", TOP_KEYS);
    if let Some((n, _)) = k.get("version") {
        if let Some(v) = scalar(&mut cx, n, "version") {
            if v != "1" {
                cx.error(
                    n.span(),
                    "version",
                    format!("fleet.yml version {v} is not known (this caretaker reads version 1)"),
                    None,
                );
            }
        }
    }
    let mut ssh = SshSettings::default();
    if let Some((n, _)) = k.get("ssh") {
        match n {
            Node::Mapping(m) => {
                let s = keys(&mut cx, m, "ssh", SSH_KEYS);
                for (key, (v, _)) in &s {
                    let p = format!("ssh.{key}");
                    match key.as_str() {
                        "known_hosts" => ssh.known_hosts = scalar(&mut cx, v, &p).unwrap_or(ssh.known_hosts.clone()),
                        "identity_file" => ssh.identity_file = scalar(&mut cx, v, &p),
                        "include_user_config" => ssh.include_user_config = boolean(&mut cx, v, &p).unwrap_or(false),
                        "connect_timeout" => {
                            ssh.connect_timeout = duration(&mut cx, v, &p).unwrap_or(ssh.connect_timeout)
                        }
                        "run_timeout" => ssh.run_timeout = duration(&mut cx, v, &p).unwrap_or(ssh.run_timeout),
                        "control_persist" => {
                            ssh.control_persist = duration(&mut cx, v, &p).unwrap_or(ssh.control_persist)
                        }
                        "parallel" => ssh.parallel = number(&mut cx, v, &p, 1, 1024).unwrap_or(32) as usize,
                        "max_startups" => ssh.max_startups = number(&mut cx, v, &p, 1, 1024).unwrap_or(64) as usize,
                        "jump_startups" => ssh.jump_startups = number(&mut cx, v, &p, 1, 1024).unwrap_or(8) as usize,
                        _ => {}
                    }
                }
            }
            other => cx.error(other.span(), "ssh", format!("`ssh` must be a mapping, found {}", kind(other)), None),
        }
    }
    let max_reboots =
        k.get("max_reboots").and_then(|(n, _)| number(&mut cx, n, "max_reboots", 1, 100_000)).map(|n| n as u32);
    let digest = k.get("digest").and_then(|(n, _)| digest(&mut cx, n));
    let mut servers = Vec::new();
    match k.get("servers") {
        None => {}
        Some((Node::Scalar(s), _)) if matches!(s.as_str(), "" | "~" | "null") => {}
        Some((Node::Sequence(items), _)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(s) = server(&mut cx, item, &format!("servers[{i}]")) {
                    servers.push((s, *item.span()));
                }
            }
        }
        Some((other, _)) => {
            cx.error(other.span(), "servers", format!("`servers` must be a list, found {}", kind(other)), None)
        }
    }
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    for (s, span) in &servers {
        if seen.insert(s.name.clone(), ()).is_some() {
            cx.error(
                span,
                "servers",
                format!("the server name `{}` is used twice", s.name),
                Some("names identify servers in the fleet's state: make them unique"),
            );
        }
    }
    if cx.d.is_empty() {
        Ok(Inventory { ssh, servers: servers.into_iter().map(|(s, _)| s).collect(), max_reboots, digest })
    } else {
        cx.d.sort_by_key(|d| d.location.map(|l| (l.line, l.column)).unwrap_or_default());
        Err(Diagnostics(cx.d))
    }
}

fn server(cx: &mut Cx, n: &Node, path: &str) -> Option<Server> {
    let Node::Mapping(m) = n else {
        cx.error(n.span(), path, format!("`{path}` must be a mapping (name:, host:, ...), found {}", kind(n)), None);
        return None;
    };
    let errors = cx.d.len();
    let k = keys(cx, m, path, SERVER_KEYS);
    let name = match k.get("name") {
        Some((v, _)) => scalar(cx, v, &format!("{path}.name")).filter(|nm| {
            let ok = valid_name(nm);
            if !ok {
                cx.error(
                    v.span(),
                    &format!("{path}.name"),
                    format!("`{nm}` is not a valid server name"),
                    Some("letters, digits, `-`, `_` and `.`"),
                );
            }
            ok
        }),
        None => {
            cx.error(m.span(), path, format!("`{path}` is missing the required key `name`"), None);
            None
        }
    };
    let host = match k.get("host") {
        Some((v, _)) => endpoint(cx, v, &format!("{path}.host")),
        None => {
            // The name is the host name unless given.
            name.as_ref().map(|n| Endpoint { user: None, host: n.clone(), port: 22 })
        }
    };
    let mut s = Server::new(
        name.as_deref().unwrap_or(""),
        host.clone().unwrap_or(Endpoint { user: None, host: String::new(), port: 22 }),
    );
    for (key, (v, _)) in &k {
        let p = format!("{path}.{key}");
        match key.as_str() {
            "port" => {
                if let Some(port) = number(cx, v, &p, 1, 65535) {
                    if host.as_ref().is_some_and(|h| h.port != 22 && h.port != port as u16) {
                        cx.error(v.span(), &p, format!("`{p}` says {port} but `host` names another port"), None);
                    }
                    s.ssh.port = port as u16;
                }
            }
            "user" => s.ssh.user = scalar(cx, v, &p),
            "jump" => s.jump = endpoint(cx, v, &p),
            "transient" => s.transient = boolean(cx, v, &p).unwrap_or(false),
            "groups" => {
                s.groups = string_list(cx, v, &p);
                for g in &s.groups {
                    if !valid_name(g) || g == "all" {
                        cx.error(
                            v.span(),
                            &p,
                            format!("`{g}` is not a valid group name"),
                            Some("letters, digits, `-`, `_` and `.`; `all` is every server"),
                        );
                    }
                }
            }
            "caretaker_path" => s.caretaker_path = scalar(cx, v, &p).unwrap_or_default(),
            "config" => s.config = scalar(cx, v, &p),
            "identity_file" => s.identity_file = scalar(cx, v, &p),
            _ => {}
        }
    }
    (cx.d.len() == errors).then_some(s)
}

fn digest(cx: &mut Cx, n: &Node) -> Option<DigestSettings> {
    let Node::Mapping(m) = n else {
        cx.error(n.span(), "digest", format!("`digest` must be a mapping, found {}", kind(n)), None);
        return None;
    };
    let k = keys(cx, m, "digest", DIGEST_KEYS);
    let mut d = DigestSettings { smtp_port: 25, smtp_tls: "starttls".into(), ..Default::default() };
    for (key, (v, _)) in &k {
        let p = format!("digest.{key}");
        match key.as_str() {
            "email_to" => d.email_to = string_list(cx, v, &p),
            "smtp_host" => d.smtp_host = scalar(cx, v, &p),
            "smtp_port" => d.smtp_port = number(cx, v, &p, 1, 65535).unwrap_or(25) as u16,
            "smtp_tls" => {
                let t = scalar(cx, v, &p).unwrap_or_default();
                if !matches!(t.as_str(), "starttls" | "tls" | "none") {
                    cx.error(v.span(), &p, format!("`{p}` must be starttls, tls or none, found `{t}`"), None);
                }
                d.smtp_tls = t;
            }
            "smtp_from" => d.smtp_from = scalar(cx, v, &p),
            "smtp_username" => d.smtp_username = scalar(cx, v, &p),
            "smtp_password_env" => d.smtp_password_env = scalar(cx, v, &p),
            "webhook_url_env" => d.webhook_url_env = scalar(cx, v, &p),
            _ => {}
        }
    }
    if !d.email_to.is_empty() && (d.smtp_host.is_none() || d.smtp_from.is_none()) {
        cx.error(m.span(), "digest", "`digest.email_to` needs `smtp_host` and `smtp_from`", None);
    }
    Some(d)
}

/// Reads an Ansible inventory (INI or YAML, told apart by its content) into servers.
/// Understood: `ansible_host`, `ansible_port`, `ansible_user`, group membership (also through
/// `:children`), group `vars`, `ansible_ssh_common_args`/`ansible_ssh_extra_args` with a
/// simple `-o ProxyJump=...` or `-J ...`, and `caretaker_transient`/`caretaker_path`.
pub fn parse_ansible(text: &str, file: &str) -> Result<Vec<Server>, crate::Error> {
    let trimmed = text.trim_start();
    let hosts = if trimmed.starts_with('[') || !looks_like_yaml(text) {
        ansible_ini(text, file)?
    } else {
        ansible_yaml(text, file)?
    };
    hosts.into_iter().map(|(name, h)| ansible_server(&name, h, file)).collect()
}

fn looks_like_yaml(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .is_some_and(|l| l == "---" || l.ends_with(':') || l.contains(": "))
}

#[derive(Default, Debug)]
struct AnsibleHost {
    vars: BTreeMap<String, String>,
    groups: Vec<String>,
}

fn ansible_ini(text: &str, file: &str) -> Result<BTreeMap<String, AnsibleHost>, crate::Error> {
    #[derive(PartialEq)]
    enum Sec {
        Hosts(String),
        Vars(String),
        Children(String),
    }
    let bad = |line: usize, m: String| crate::Error::new(crate::ErrorKind::Inventory, format!("{file}:{line}: {m}"));
    let mut hosts: BTreeMap<String, AnsibleHost> = BTreeMap::new();
    let mut group_vars: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sec = Sec::Hosts("ungrouped".into());
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(h) = line.strip_prefix('[') {
            let h =
                h.strip_suffix(']').ok_or_else(|| bad(i + 1, format!("`{line}`: a section header ends with `]`")))?;
            sec = match h.split_once(':') {
                Some((g, "vars")) => Sec::Vars(g.to_string()),
                Some((g, "children")) => Sec::Children(g.to_string()),
                Some((_, other)) => return Err(bad(i + 1, format!("unknown section kind `:{other}`"))),
                None => Sec::Hosts(h.to_string()),
            };
            continue;
        }
        let words = shell_words(line).map_err(|e| bad(i + 1, e))?;
        match &sec {
            Sec::Hosts(g) => {
                let (name, rest) = words.split_first().ok_or_else(|| bad(i + 1, "empty host line".into()))?;
                if name.contains('[') {
                    return Err(bad(
                        i + 1,
                        format!("host ranges such as `{name}` are not supported: list the hosts one by one"),
                    ));
                }
                let h = hosts.entry(name.clone()).or_default();
                if g != "ungrouped" && !h.groups.contains(g) {
                    h.groups.push(g.clone());
                }
                for w in rest {
                    let (k, v) = w.split_once('=').ok_or_else(|| bad(i + 1, format!("`{w}` is not key=value")))?;
                    h.vars.insert(k.to_string(), v.to_string());
                }
            }
            Sec::Vars(g) => {
                let (k, v) = line.split_once('=').ok_or_else(|| bad(i + 1, format!("`{line}` is not key=value")))?;
                group_vars.entry(g.clone()).or_default().insert(k.trim().to_string(), unquote(v.trim()));
            }
            Sec::Children(g) => children.entry(g.clone()).or_default().push(line.to_string()),
        }
    }
    resolve_groups(&mut hosts, &children, &group_vars);
    Ok(hosts)
}

/// Adds parent groups (`:children`) and group variables (host variables win).
fn resolve_groups(
    hosts: &mut BTreeMap<String, AnsibleHost>,
    children: &BTreeMap<String, Vec<String>>,
    group_vars: &BTreeMap<String, BTreeMap<String, String>>,
) {
    for h in hosts.values_mut() {
        let mut i = 0;
        while i < h.groups.len() {
            let g = h.groups[i].clone();
            for (parent, kids) in children {
                if kids.contains(&g) && !h.groups.contains(parent) {
                    h.groups.push(parent.clone());
                }
            }
            i += 1;
        }
        // Variables of `all` first, then groups; a host's own variables were set already.
        let mut order = vec!["all".to_string()];
        order.extend(h.groups.iter().cloned());
        for g in order {
            for (k, v) in group_vars.get(&g).into_iter().flatten() {
                h.vars.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

fn unquote(s: &str) -> String {
    shell_words(s).ok().filter(|w| w.len() == 1).map(|mut w| w.remove(0)).unwrap_or_else(|| s.to_string())
}

/// Splits a line like a shell does for quotes (no expansions).
fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => cur.extend(chars.next()),
                        Some(x) => cur.push(x),
                        None => return Err(format!("unclosed quote in `{s}`")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn ansible_yaml(text: &str, file: &str) -> Result<BTreeMap<String, AnsibleHost>, crate::Error> {
    let bad = |m: String| crate::Error::new(crate::ErrorKind::Inventory, format!("{file}: {m}"));
    let root = marked_yaml::parse_yaml(0, text).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    let Node::Mapping(top) = &root else {
        return Err(bad("an Ansible YAML inventory is a mapping of groups (`all:`)".into()));
    };
    let mut hosts: BTreeMap<String, AnsibleHost> = BTreeMap::new();
    let mut group_vars: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    fn walk(
        name: &str,
        g: &Node,
        hosts: &mut BTreeMap<String, AnsibleHost>,
        group_vars: &mut BTreeMap<String, BTreeMap<String, String>>,
        children: &mut BTreeMap<String, Vec<String>>,
    ) -> Result<(), String> {
        let Node::Mapping(m) = g else {
            if matches!(g, Node::Scalar(s) if s.as_str().is_empty() || s.as_str() == "~") {
                return Ok(());
            }
            return Err(format!("group `{name}` must be a mapping (hosts:, vars:, children:)"));
        };
        for (k, v) in m.iter() {
            match k.as_str() {
                "hosts" => {
                    let Node::Mapping(hm) = v else {
                        if matches!(v, Node::Scalar(_)) {
                            continue;
                        }
                        return Err(format!("`{name}.hosts` must be a mapping of host names"));
                    };
                    for (hn, hv) in hm.iter() {
                        let h = hosts.entry(hn.as_str().to_string()).or_default();
                        if name != "all" && name != "ungrouped" && !h.groups.iter().any(|x| x == name) {
                            h.groups.push(name.to_string());
                        }
                        if let Node::Mapping(vars) = hv {
                            for (vk, vv) in vars.iter() {
                                if let Node::Scalar(s) = vv {
                                    h.vars.insert(vk.as_str().to_string(), s.as_str().to_string());
                                }
                            }
                        }
                    }
                }
                "vars" => {
                    if let Node::Mapping(vars) = v {
                        for (vk, vv) in vars.iter() {
                            if let Node::Scalar(s) = vv {
                                group_vars
                                    .entry(name.to_string())
                                    .or_default()
                                    .insert(vk.as_str().to_string(), s.as_str().to_string());
                            }
                        }
                    }
                }
                "children" => {
                    if let Node::Mapping(c) = v {
                        for (cn, cv) in c.iter() {
                            children.entry(name.to_string()).or_default().push(cn.as_str().to_string());
                            walk(cn.as_str(), cv, hosts, group_vars, children)?;
                        }
                    }
                }
                other => return Err(format!("unknown key `{other}` in group `{name}` (hosts, vars, children)")),
            }
        }
        Ok(())
    }
    for (g, v) in top.iter() {
        walk(g.as_str(), v, &mut hosts, &mut group_vars, &mut children).map_err(bad)?;
    }
    resolve_groups(&mut hosts, &children, &group_vars);
    Ok(hosts)
}

fn ansible_server(name: &str, h: AnsibleHost, file: &str) -> Result<Server, crate::Error> {
    let bad = |m: String| crate::Error::new(crate::ErrorKind::Inventory, format!("{file}: host `{name}`: {m}"));
    let host = h.vars.get("ansible_host").cloned().unwrap_or_else(|| name.to_string());
    let port = match h.vars.get("ansible_port").or_else(|| h.vars.get("ansible_ssh_port")) {
        Some(p) => p.parse::<u16>().map_err(|_| bad(format!("ansible_port `{p}` is not a port")))?,
        None => 22,
    };
    let user = h.vars.get("ansible_user").or_else(|| h.vars.get("ansible_ssh_user")).cloned();
    let mut s = Server::new(&sanitize(name), Endpoint { user, host, port });
    s.groups = h.groups.iter().map(|g| sanitize(g)).filter(|g| g != "all").collect();
    for key in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
        if let Some(args) = h.vars.get(key) {
            if let Some(j) = proxy_jump(args).map_err(bad)? {
                s.jump = Some(Endpoint::parse(&j).map_err(|e| bad(format!("ProxyJump {e}")))?);
            }
        }
    }
    if let Some(k) = h.vars.get("ansible_ssh_private_key_file").or_else(|| h.vars.get("ansible_private_key_file")) {
        s.identity_file = Some(k.clone());
    }
    if let Some(t) = h.vars.get("caretaker_transient").or_else(|| h.vars.get("transient")) {
        s.transient = matches!(t.to_ascii_lowercase().as_str(), "true" | "yes" | "1");
    }
    if let Some(p) = h.vars.get("caretaker_path") {
        s.caretaker_path = p.clone();
    }
    Ok(s)
}

fn sanitize(n: &str) -> String {
    n.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

/// The jump host of `-o ProxyJump=X`, `-J X` or `-o ProxyCommand="ssh -W %h:%p X"`; an error
/// for chains and other proxy commands, which caretaker does not translate.
fn proxy_jump(args: &str) -> Result<Option<String>, String> {
    let words = shell_words(args)?;
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let opt = if w == "-o" {
            i += 1;
            words.get(i).cloned()
        } else {
            w.strip_prefix("-o").map(str::to_string)
        };
        if let Some(o) = opt {
            let (k, v) = o.split_once(['=', ' ']).unwrap_or((o.as_str(), ""));
            if k.eq_ignore_ascii_case("ProxyJump") {
                return single_jump(v.trim());
            }
            if k.eq_ignore_ascii_case("ProxyCommand") {
                let pc = shell_words(v)?;
                if pc.len() == 4 && pc[0] == "ssh" && pc[1] == "-W" && pc[2] == "%h:%p" {
                    return single_jump(&pc[3]);
                }
                return Err(format!(
                    "ProxyCommand `{v}` is not a simple `ssh -W %h:%p host`: set `jump:` in fleet.yml"
                ));
            }
        } else if w == "-J" {
            i += 1;
            return single_jump(words.get(i).map(String::as_str).unwrap_or(""));
        }
        i += 1;
    }
    Ok(None)
}

fn single_jump(v: &str) -> Result<Option<String>, String> {
    if v.contains(',') {
        return Err(format!("ProxyJump chain `{v}`: caretaker takes one jump host"));
    }
    Ok((!v.is_empty() && v != "none").then(|| v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> String {
        parse(text, "fleet.yml").unwrap_err().0.iter().map(|d| format!("{d}\n")).collect()
    }

    #[test]
    fn parses_servers_with_defaults_and_jump() {
        let inv = parse(
            "version: 1\n# comment\nssh:\n  connect_timeout: 5s\nservers:\n  - name: web1\n    host: root@192.0.2.1:2222\n    jump: admin@bastion:2200\n    groups: [web, prod]\n  - name: laptop\n    transient: yes\n    caretaker_path: /opt/caretaker\n",
            "fleet.yml",
        )
        .unwrap();
        assert_eq!(inv.ssh.connect_timeout, Duration::from_secs(5));
        let w = &inv.servers[0];
        assert_eq!(w.ssh, Endpoint { user: Some("root".into()), host: "192.0.2.1".into(), port: 2222 });
        assert_eq!(w.jump.as_ref().unwrap().to_string(), "admin@bastion:2200");
        assert_eq!(w.groups, ["web", "prod"]);
        let l = &inv.servers[1];
        assert!(l.transient);
        assert_eq!(l.ssh.host, "laptop");
        assert_eq!(l.caretaker_path, "/opt/caretaker");
        assert_eq!(inv.select(&["web".into()]).unwrap().len(), 1);
        assert_eq!(inv.select(&[]).unwrap().len(), 2);
        let e = inv.select(&["web2".into()]).unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `web1`?"));
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        expect_test::expect![[r#"
            fleet.yml:2:3: error: unknown key `conect_timeout` in `ssh` (hint: did you mean `connect_timeout`?)
            fleet.yml:5:11: error: `servers[0].host`: `a:b:c`: write an IPv6 address as [addr]:port (hint: write [user@]host[:port])
            fleet.yml:6:16: error: `servers[0].transient` must be true or false, found `maybe`
            fleet.yml:8:9: error: the server name `x` is used twice (hint: names identify servers in the fleet's state: make them unique)
        "#]]
        .assert_eq(&errors(
            "ssh:\n  conect_timeout: 5s\nservers:\n  - name: x\n    host: a:b:c\n    transient: maybe\n  - name: x\n  - name: x\n",
        ));
    }

    #[test]
    fn endpoint_forms() {
        assert_eq!(Endpoint::parse("h").unwrap().known_hosts_name(), "h");
        assert_eq!(Endpoint::parse("u@h:2222").unwrap().known_hosts_name(), "[h]:2222");
        assert_eq!(Endpoint::parse("[::1]:22").unwrap().host, "::1");
        assert!(Endpoint::parse("@h").is_err());
        assert!(Endpoint::parse("h:0").is_err());
        assert!(Endpoint::parse("h:x").is_err());
    }

    #[test]
    fn ansible_ini_inventory() {
        let text = "# fleet\nlaptop ansible_host=10.0.0.9 caretaker_transient=true\n\n[web]\nweb1 ansible_host=192.0.2.1 ansible_port=2222 ansible_user=root\nweb2 ansible_ssh_common_args='-o ProxyJump=admin@bastion:2200'\n\n[prod:children]\nweb\n\n[prod:vars]\nansible_user=deploy\n";
        let s = parse_ansible(text, "hosts").unwrap();
        let by = |n: &str| s.iter().find(|x| x.name == n).unwrap().clone();
        assert_eq!(by("web1").ssh.to_string(), "root@192.0.2.1:2222");
        assert_eq!(by("web1").groups, ["web", "prod"]);
        assert_eq!(by("web2").ssh.user.as_deref(), Some("deploy"));
        assert_eq!(by("web2").jump.unwrap().to_string(), "admin@bastion:2200");
        assert!(by("laptop").transient);
        assert!(by("laptop").groups.is_empty());
        let e = parse_ansible("[web]\nweb[1:3]\n", "hosts").unwrap_err();
        assert!(e.message.contains("hosts:2: host ranges"), "{}", e.message);
        let e = parse_ansible("[web]\nw ansible_ssh_common_args='-J a,b'\n", "hosts").unwrap_err();
        assert!(e.message.contains("chain"), "{}", e.message);
    }

    #[test]
    fn ansible_yaml_inventory() {
        let text = "all:\n  vars:\n    ansible_user: ops\n  hosts:\n    solo:\n      ansible_host: 10.1.1.1\n  children:\n    db:\n      hosts:\n        db1:\n          ansible_port: 2201\n          ansible_ssh_common_args: -o ProxyCommand=\"ssh -W %h:%p jump.example\"\n";
        let s = parse_ansible(text, "inv.yml").unwrap();
        let db1 = s.iter().find(|x| x.name == "db1").unwrap();
        assert_eq!(db1.ssh.to_string(), "ops@db1:2201");
        assert_eq!(db1.groups, ["db"]);
        assert_eq!(db1.jump.as_ref().unwrap().host, "jump.example");
        assert_eq!(s.iter().find(|x| x.name == "solo").unwrap().ssh.host, "10.1.1.1");
    }
}
