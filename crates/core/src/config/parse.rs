//! The walk from a YAML node tree to the validated [`Config`], collecting every problem.
//!
//! One function per section. Defaults live here, next to the key they belong to.

use super::model::*;
use super::reader::{
    self, boolean, bounded, choice, duration, entries, list, nonempty, number, schedule, string, unsigned, Cx,
};
use super::secret::SecretOrigin;
use marked_yaml::Node;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const SECS: u64 = 1;
const MINS: u64 = 60 * SECS;
const HOURS: u64 = 60 * MINS;
const DAYS: u64 = 24 * HOURS;

pub fn config(cx: &mut Cx, root: &Node) -> Option<Config> {
    let mut m = cx.map(root, "")?;
    let version = m.req(cx, "version", "add `version: 1` at the top of the file", |cx, n, p| {
        let v = unsigned(cx, n, p)?;
        if v != CONFIG_VERSION as u64 {
            cx.error(
                n.span(),
                p,
                format!("this caretaker reads config version {CONFIG_VERSION}, the file says version {v}"),
                Some(if v > CONFIG_VERSION as u64 {
                    "the file was written for a newer caretaker; upgrade caretaker".into()
                } else {
                    "set `version: 1`".into()
                }),
            );
            return None;
        }
        Some(v as u32)
    });
    let app = m.req(cx, "app", "every config names its app: `app: { name: myapp }`", app);
    let services = m.opt(cx, "services", services).unwrap_or_default();
    let mut compose = m.opt(cx, "compose", compose);
    let database = m.opt(cx, "database", database);
    let files = m.opt(cx, "files", |cx, n, p| list(cx, n, p, file_tree)).unwrap_or_default();
    let backup = m.opt(cx, "backup", backup);
    let update = match m.get("update") {
        Some(n) => update(cx, n, "update"),
        None => Some(update_defaults(None)),
    };
    let alerts = match m.get("alerts") {
        Some(n) => alerts(cx, n, "alerts"),
        None => Some(alerts_defaults()),
    };
    let jobs = m.opt(cx, "jobs", jobs).unwrap_or_default();
    let logs = match m.get("logs") {
        Some(n) => logs(cx, n, "logs"),
        None => Some(Logs { max_size_bytes: 10 << 20, keep: 5 }),
    };
    let front_door = m.opt(cx, "front_door", front_door);
    let tls = m.opt(cx, "tls", super::tls::read);
    let maintenance = match m.get("maintenance") {
        Some(n) => maintenance(cx, n, "maintenance"),
        None => Some(maintenance_defaults()),
    };
    let timezone = m.opt(cx, "timezone", |cx, n, p| {
        let tz = string(cx, n, p)?;
        match jiff::tz::TimeZone::get(&tz) {
            Ok(_) => Some(tz),
            Err(_) => {
                cx.error(
                    n.span(),
                    p,
                    format!("unknown time zone \"{tz}\""),
                    Some("use an IANA name such as `Europe/Vienna` or `UTC`".into()),
                );
                None
            }
        }
    });
    let state_dir = m.opt(cx, "state_dir", |cx, n, p| nonempty(cx, n, p).map(|s| cx.resolve_path(&s)));
    let http = m.opt(cx, "http", http).unwrap_or_else(http_defaults);
    let checks = m.opt(cx, "checks", checks).unwrap_or_default();
    let scheduler = m.opt(cx, "scheduler", scheduler).unwrap_or(Scheduler { random_delay: Duration::ZERO });
    let status = m.opt(cx, "status", status_page);
    let deps = match m.get("deps") {
        Some(n) => deps(cx, n, "deps"),
        None => Some(deps_defaults()),
    };
    let os = m.opt(cx, "os", super::os::parse).unwrap_or_default();
    let clones = m.opt(cx, "clones", super::clones::clones).unwrap_or_else(super::clones::defaults);
    m.finish(cx);
    if let (Some(c), Some(a)) = (&mut compose, &app) {
        if c.project.is_empty() {
            c.project = a.name.clone();
        }
    }

    let cfg = Config {
        version: version?,
        app: app?,
        services,
        compose,
        database,
        files,
        backup,
        update: update?,
        alerts: alerts?,
        jobs,
        logs: logs?,
        front_door,
        tls,
        maintenance: maintenance?,
        timezone,
        state_dir,
        http,
        checks,
        scheduler,
        status,
        deps: deps?,
        os,
        clones,
    };
    Some(cfg)
}

/// App names become directory, database and unit names, so they are kept simple.
fn app_name(cx: &mut Cx, n: &Node, p: &str) -> Option<String> {
    let name = nonempty(cx, n, p)?;
    let ok = name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        cx.error(
            n.span(),
            p,
            format!("app name \"{name}\" is not usable as a directory and database name"),
            Some(
                "use lowercase letters, digits, `-` and `_`, starting with a letter or digit, at most 63 characters"
                    .into(),
            ),
        );
        return None;
    }
    Some(name)
}

fn app(cx: &mut Cx, node: &Node, path: &str) -> Option<App> {
    let mut m = cx.map(node, path)?;
    let name = m.req(cx, "name", "", app_name);
    let domain = m.opt(cx, "domain", nonempty);
    let source = m.opt(cx, "source", source);
    let build = m.opt(cx, "build", commands).unwrap_or_default();
    let migrate = m.opt(cx, "migrate", commands).unwrap_or_default();
    let env = m.opt(cx, "env", env).unwrap_or_default();
    let env_files = m
        .opt(cx, "env_files", |cx, n, p| list(cx, n, p, |cx, n, p| nonempty(cx, n, p).map(PathBuf::from)))
        .unwrap_or_default();
    let working_dir = m.opt(cx, "working_dir", |cx, n, p| nonempty(cx, n, p).map(|s| cx.resolve_path(&s)));
    let user = m.opt(cx, "user", nonempty);
    m.finish(cx);
    Some(App { name: name?, domain, source, build, migrate, env, env_files, working_dir, user })
}

fn source(cx: &mut Cx, node: &Node, path: &str) -> Option<Source> {
    let mut m = cx.map(node, path)?;
    let git = m.req(cx, "git", "give the repository URL or local path: `git: https://...`", nonempty);
    let branch = m.opt(cx, "branch", nonempty);
    let tag = m.opt(cx, "tag", nonempty);
    let commit = m.opt(cx, "commit", |cx, n, p| {
        let c = nonempty(cx, n, p)?;
        if c.len() < 7 || !c.chars().all(|ch| ch.is_ascii_hexdigit()) {
            cx.error(n.span(), p, format!("`{p}` must be a commit hash (7 to 40 hex digits), found \"{c}\""), None);
            return None;
        }
        Some(c)
    });
    let given = [branch.is_some(), tag.is_some(), commit.is_some()].iter().filter(|b| **b).count();
    if given > 1 {
        cx.error(
            m.span(),
            path,
            format!("`{path}` sets more than one of `branch`, `tag` and `commit`"),
            Some("keep exactly one".into()),
        );
    }
    m.finish(cx);
    let reference = match (branch, tag, commit) {
        (_, _, Some(c)) => GitRef::Commit(c),
        (_, Some(t), _) => GitRef::Tag(t),
        (Some(b), _, _) => GitRef::Branch(b),
        _ => GitRef::Branch("main".into()),
    };
    Some(Source { git: git?, reference })
}

/// A command: a shell line, or a list of arguments.
pub fn command(cx: &mut Cx, node: &Node, path: &str) -> Option<Command> {
    match node {
        Node::Sequence(_) => {
            let argv = list(cx, node, path, nonempty)?;
            if argv.is_empty() {
                cx.error(node.span(), path, format!("`{path}` must not be an empty list"), None);
                return None;
            }
            Some(Command::Argv(argv))
        }
        _ => nonempty(cx, node, path).map(Command::Shell),
    }
}

/// One command or a list of commands (each a shell line or an argument list).
fn commands(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<Command>> {
    match node {
        Node::Sequence(_) => list(cx, node, path, command),
        _ => command(cx, node, path).map(|c| vec![c]),
    }
}

pub(super) fn env(cx: &mut Cx, node: &Node, path: &str) -> Option<BTreeMap<String, EnvValue>> {
    let pairs = entries(cx, node, path, |cx, k, v, p| {
        let name = k.as_str();
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            cx.error(
                k.span(),
                p,
                format!("\"{name}\" is not a valid environment variable name"),
                Some("use letters, digits and `_`, not starting with a digit".into()),
            );
            return None;
        }
        let value = match v {
            Node::Mapping(_) => {
                let before = cx.error_count();
                let mut m = cx.map(v, p)?;
                let s = m.secret(cx, "secret", "secret_file", "secret_env");
                if s.is_none() && cx.error_count() == before {
                    cx.error(
                        v.span(),
                        p,
                        format!("`{p}` must be a value or one of `secret`, `secret_file`, `secret_env`"),
                        None,
                    );
                }
                m.finish(cx);
                EnvValue::Secret(s?)
            }
            _ => EnvValue::Plain(string(cx, v, p)?),
        };
        Some((name.to_string(), value))
    })?;
    Some(pairs.into_iter().collect())
}

fn services(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<Service>> {
    let services = entries(cx, node, path, |cx, k, v, p| {
        let name = k.as_str();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            cx.error(k.span(), p, format!("service name \"{name}\" must use only letters, digits, `-` and `_`"), None);
        }
        service(cx, name, v, p)
    })?;
    // Cross-references: every `after:` names a service, and there is no cycle.
    let names: Vec<&str> = services.iter().map(|s| s.1.name.as_str()).collect();
    let mut ok = true;
    for (spans, s) in &services {
        for (i, dep) in s.after.iter().enumerate() {
            if !names.contains(&dep.as_str()) {
                ok = false;
                let hint = match super::diagnostic::suggest(dep, names.iter().copied()) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None => format!("services defined: {}", names.join(", ")),
                };
                cx.error(
                    &spans[i],
                    &format!("{path}.{}.after[{i}]", s.name),
                    format!("service `{}` starts after `{dep}`, which is not defined", s.name),
                    Some(hint),
                );
            } else if dep == &s.name {
                ok = false;
                cx.error(
                    &spans[i],
                    &format!("{path}.{}.after[{i}]", s.name),
                    format!("service `{}` cannot start after itself", s.name),
                    None,
                );
            }
        }
    }
    if ok {
        if let Some(cycle) = find_cycle(&services.iter().map(|(_, s)| s).collect::<Vec<_>>()) {
            cx.error(
                node.span(),
                path,
                format!("services wait for each other in a circle: {}", cycle.join(" → ")),
                Some("remove one of the `after:` entries".into()),
            );
        }
    }
    Some(services.into_iter().map(|(_, s)| s).collect())
}

fn find_cycle(services: &[&Service]) -> Option<Vec<String>> {
    fn visit<'a>(
        s: &'a str,
        all: &[&'a Service],
        stack: &mut Vec<&'a str>,
        done: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|x| *x == s) {
            let mut c: Vec<String> = stack[pos..].iter().map(|x| x.to_string()).collect();
            c.push(s.to_string());
            return Some(c);
        }
        if done.contains(&s) {
            return None;
        }
        stack.push(s);
        let svc = all.iter().find(|x| x.name == s)?;
        for d in &svc.after {
            if let Some(c) = visit(d, all, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.push(s);
        None
    }
    let mut done = Vec::new();
    services.iter().find_map(|s| visit(&s.name, services, &mut Vec::new(), &mut done))
}

fn service(cx: &mut Cx, name: &str, node: &Node, path: &str) -> Option<(Vec<marked_yaml::Span>, Service)> {
    // `web: "gunicorn ..."` is shorthand for `web: { command: "gunicorn ..." }`.
    if let Node::Scalar(_) = node {
        let command = command(cx, node, path)?;
        return Some((Vec::new(), service_defaults(name, command)));
    }
    let mut m = cx.map(node, path)?;
    let command = m.req(cx, "command", "e.g. `command: \"gunicorn config.wsgi -b 127.0.0.1:8001\"`", command);
    let mut after_spans = Vec::new();
    let after = m
        .opt(cx, "after", |cx, n, p| {
            let items: Vec<&Node> = match n {
                Node::Sequence(s) => s.iter().collect(),
                other => vec![other],
            };
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                after_spans.push(*item.span());
                out.push(nonempty(cx, item, &format!("{p}[{i}]"))?);
            }
            Some(out)
        })
        .unwrap_or_default();
    let restart = m
        .opt(cx, "restart", |cx, n, p| {
            choice(
                cx,
                n,
                p,
                &[
                    ("always", RestartPolicy::Always),
                    ("on-failure", RestartPolicy::OnFailure),
                    ("never", RestartPolicy::Never),
                ],
            )
        })
        .unwrap_or(RestartPolicy::Always);
    let health = m.opt(cx, "health", health);
    let stop_timeout = m.opt(cx, "stop_timeout", duration).unwrap_or(Duration::from_secs(10));
    let env = m.opt(cx, "env", env).unwrap_or_default();
    let working_dir = m.opt(cx, "working_dir", |cx, n, p| nonempty(cx, n, p).map(|s| cx.resolve_path(&s)));
    let user = m.opt(cx, "user", nonempty);
    let crash_loop =
        m.opt(cx, "crash_loop", crash_loop).unwrap_or(CrashLoop { restarts: 5, within: Duration::from_secs(60) });
    let backoff = m.opt(cx, "backoff", backoff).unwrap_or_default();
    let critical = m.opt(cx, "critical", boolean).unwrap_or(true);
    // supervisord's `startsecs`: seconds a service without a health check must stay up.
    let start_seconds = m.opt(cx, "start_seconds", |cx, n, p| {
        let secs = number(cx, n, p)?;
        if !(0.0..=3600.0).contains(&secs) {
            cx.error(n.span(), p, format!("`{p}` must be between 0 and 3600 seconds, found {secs}"), None);
            return None;
        }
        Some(Duration::from_secs_f64(secs))
    });
    m.finish(cx);
    let mut s = service_defaults(name, command?);
    s.after = after;
    s.restart = restart;
    s.health = health;
    s.stop_timeout = stop_timeout;
    s.env = env;
    s.working_dir = working_dir;
    s.user = user;
    s.crash_loop = crash_loop;
    s.backoff = backoff;
    s.critical = critical;
    if let Some(t) = start_seconds {
        s.start_seconds = t;
    }
    Some((after_spans, s))
}

fn service_defaults(name: &str, command: Command) -> Service {
    Service {
        name: name.to_string(),
        command,
        after: Vec::new(),
        restart: RestartPolicy::Always,
        health: None,
        stop_timeout: Duration::from_secs(10),
        env: BTreeMap::new(),
        working_dir: None,
        user: None,
        crash_loop: CrashLoop { restarts: 5, within: Duration::from_secs(60) },
        backoff: Backoff::default(),
        critical: true,
        start_seconds: Duration::from_secs(1),
    }
}

/// Names of compose services, volumes and projects: what compose itself accepts.
fn compose_name(cx: &mut Cx, n: &Node, p: &str, what: &str) -> Option<String> {
    let name = nonempty(cx, n, p)?;
    valid_compose_name(cx, &name, n.span(), p, what).then_some(name)
}

fn valid_compose_name(cx: &mut Cx, name: &str, span: &marked_yaml::Span, p: &str, what: &str) -> bool {
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        cx.error(span, p, format!("{what} \"{name}\" must use only letters, digits, `-`, `_` and `.`"), None);
    }
    ok
}

fn compose(cx: &mut Cx, node: &Node, path: &str) -> Option<Compose> {
    let mut m = cx.map(node, path)?;
    let files = m
        .opt(cx, "files", |cx, n, p| match n {
            Node::Sequence(_) => list(cx, n, p, |cx, n, p| nonempty(cx, n, p).map(PathBuf::from)),
            _ => nonempty(cx, n, p).map(|f| vec![PathBuf::from(f)]),
        })
        .unwrap_or_default();
    let project = m.opt(cx, "project", |cx, n, p| {
        let name = nonempty(cx, n, p)?;
        let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            cx.error(
                n.span(),
                p,
                format!("compose project name \"{name}\" is not accepted by docker compose"),
                Some("use lowercase letters, digits, `-` and `_`, starting with a letter or digit".into()),
            );
            return None;
        }
        Some(name)
    });
    let project_dir = m.opt(cx, "project_dir", |cx, n, p| nonempty(cx, n, p).map(|s| cx.resolve_path(&s)));
    let cli = m
        .opt(cx, "cli", |cx, n, p| {
            choice(
                cx,
                n,
                p,
                &[
                    ("auto", ComposeCli::Auto),
                    ("docker compose", ComposeCli::DockerCompose),
                    ("docker-compose", ComposeCli::DockerDashCompose),
                ],
            )
        })
        .unwrap_or(ComposeCli::Auto);
    let app_service = m.opt(cx, "app_service", |cx, n, p| compose_name(cx, n, p, "service name"));
    let services = m
        .opt(cx, "services", |cx, n, p| {
            entries(cx, n, p, |cx, k, v, p| {
                let name_ok = valid_compose_name(cx, k.as_str(), k.span(), p, "service name");
                let mut m = cx.map(v, p)?;
                let health = m.opt(cx, "health", health);
                let crash_loop = m
                    .opt(cx, "crash_loop", crash_loop)
                    .unwrap_or(CrashLoop { restarts: 5, within: Duration::from_secs(60) });
                let critical = m.opt(cx, "critical", boolean).unwrap_or(true);
                m.finish(cx);
                name_ok.then(|| ComposeService { name: k.as_str().to_string(), health, crash_loop, critical })
            })
        })
        .unwrap_or_default();
    let stop_timeout = m.opt(cx, "stop_timeout", duration).unwrap_or(Duration::from_secs(10));
    let volumes = m
        .opt(cx, "volumes", |cx, n, p| {
            list(cx, n, p, |cx, n, p| {
                if let Node::Scalar(_) = n {
                    return compose_name(cx, n, p, "volume name")
                        .map(|name| ComposeVolume { name, allow_empty: false });
                }
                let mut m = cx.map(n, p)?;
                let name = m.req(cx, "name", "the volume's key in the compose file", |cx, n, p| {
                    compose_name(cx, n, p, "volume name")
                });
                let allow_empty = m.opt(cx, "allow_empty", boolean).unwrap_or(false);
                m.finish(cx);
                Some(ComposeVolume { name: name?, allow_empty })
            })
        })
        .unwrap_or_default();
    let images = m
        .opt(cx, "images", |cx, n, p| choice(cx, n, p, &[("build", ImageSource::Build), ("pull", ImageSource::Pull)]))
        .unwrap_or(ImageSource::Build);
    let keep_running = m
        .opt(cx, "keep_running", |cx, n, p| list(cx, n, p, |cx, n, p| compose_name(cx, n, p, "service name")))
        .unwrap_or_default();
    let outside_files = m.opt(cx, "outside_files", |cx, n, p| list(cx, n, p, outside_file)).unwrap_or_default();
    m.finish(cx);
    Some(Compose {
        files,
        // Filled in from the app's name by `cross_checks` when not given.
        project: project.unwrap_or_default(),
        project_dir,
        cli,
        app_service,
        services,
        stop_timeout,
        volumes,
        images,
        keep_running,
        outside_files,
    })
}

/// `- .envs/.production` (kept at the same path next to the config) or
/// `- { path: .envs/.production, from: /etc/topobank/envs }`.
fn outside_file(cx: &mut Cx, n: &Node, p: &str) -> Option<OutsideFile> {
    let (path, from, span) = if let Node::Scalar(_) = n {
        let path = nonempty(cx, n, p)?;
        (path.clone(), path, *n.span())
    } else {
        let mut m = cx.map(n, p)?;
        let path = m.req(cx, "path", "where the compose file expects it, relative to the project directory", nonempty);
        let from = m.req(cx, "from", "where it is kept: relative to this file, or absolute", nonempty);
        let span = *m.span();
        m.finish(cx);
        (path?, from?, span)
    };
    let rel = PathBuf::from(&path);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        cx.error(
            &span,
            p,
            format!("`{path}` must be a path inside the project directory"),
            Some("write it relative to the project directory, without `..` (e.g. `.envs/.production`)".into()),
        );
        return None;
    }
    Some(OutsideFile { path: rel, from: cx.resolve_path(&from) })
}

fn backoff(cx: &mut Cx, node: &Node, path: &str) -> Option<Backoff> {
    let mut m = cx.map(node, path)?;
    let d = Backoff::default();
    let initial = m.opt(cx, "initial", duration).unwrap_or(d.initial);
    let max = m.opt(cx, "max", duration).unwrap_or(d.max.max(initial));
    let span = *m.span();
    m.finish(cx);
    if max < initial {
        cx.error(&span, path, format!("`{path}.max` is shorter than `{path}.initial`"), None);
        return None;
    }
    Some(Backoff { initial, max })
}

fn crash_loop(cx: &mut Cx, node: &Node, path: &str) -> Option<CrashLoop> {
    let mut m = cx.map(node, path)?;
    let restarts = m.req(cx, "restarts", "", |cx, n, p| bounded(cx, n, p, 1, 1000));
    let within = m.req(cx, "within", "", duration);
    m.finish(cx);
    Some(CrashLoop { restarts: restarts? as u32, within: within? })
}

/// The probe keys shared by health checks and custom checks: exactly one of `http` (with
/// `expect_status` / `expect_body`), `tcp` or `command`. Reads them from `m`; the caller
/// finishes `m` and then calls [`ProbeKeys::into_probe`].
struct ProbeKeys {
    /// Errors recorded before the keys were read (see [`Cx::error_count`]).
    errors_before: usize,
    http: Option<String>,
    tcp: Option<String>,
    command: Option<Command>,
    expect_status: Option<ExpectStatus>,
    expect_body: Option<String>,
    ca_file: Option<PathBuf>,
}

impl ProbeKeys {
    fn read(cx: &mut Cx, m: &mut reader::Map) -> ProbeKeys {
        ProbeKeys {
            errors_before: cx.error_count(),
            http: m.opt(cx, "http", |cx, n, p| {
                let url = nonempty(cx, n, p)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    cx.error(n.span(), p, format!("`{p}` must be an http:// or https:// URL, found \"{url}\""), None);
                    return None;
                }
                Some(url)
            }),
            tcp: m.opt(cx, "tcp", host_port),
            command: m.opt(cx, "command", command),
            expect_status: m.opt(cx, "expect_status", expect_status),
            expect_body: m.opt(cx, "expect_body", string),
            ca_file: m.opt(cx, "ca_file", |cx, n, p| nonempty(cx, n, p).map(|s| cx.resolve_path(&s))),
        }
    }

    /// The probe, or `None` with the problem recorded at `span`; `example` shows a valid one.
    fn into_probe(self, cx: &mut Cx, span: &marked_yaml::Span, path: &str, example: &str) -> Option<Probe> {
        let kinds = [self.http.is_some(), self.tcp.is_some(), self.command.is_some()].iter().filter(|b| **b).count();
        if kinds != 1 {
            // None given may be the echo of an invalid value already reported.
            if cx.error_count() == self.errors_before || kinds > 1 {
                cx.error(
                    span,
                    path,
                    format!("`{path}` needs exactly one probe: `http`, `tcp` or `command`"),
                    Some(format!("e.g. `{example}`")),
                );
            }
            return None;
        }
        if (self.expect_status.is_some() || self.expect_body.is_some()) && self.http.is_none() {
            cx.error(span, path, "`expect_status` and `expect_body` only apply to `http` probes".to_string(), None);
        }
        if self.ca_file.is_some() && !self.http.as_deref().is_some_and(|u| u.starts_with("https://")) {
            cx.error(span, path, "`ca_file` only applies to `https://` probes".to_string(), None);
        }
        Some(match (self.http, self.tcp, self.command) {
            (Some(url), _, _) => Probe::Http(HttpProbe {
                url,
                expect_status: self.expect_status.unwrap_or_default(),
                expect_body: self.expect_body,
                ca_file: self.ca_file,
            }),
            (_, Some(address), _) => Probe::Tcp { address },
            (_, _, Some(command)) => Probe::Command { command },
            _ => unreachable!("exactly one probe kind"),
        })
    }
}

/// `expect_status`: one status (`200`), a class (`"3xx"`), a range (`"200-399"`) or a list of
/// those.
fn expect_status(cx: &mut Cx, node: &Node, path: &str) -> Option<ExpectStatus> {
    let item = |cx: &mut Cx, n: &Node, p: &str| {
        let s = string(cx, n, p)?;
        match ExpectStatus::parse_item(&s) {
            Ok(r) => Some(r),
            Err(e) => {
                cx.error(
                    n.span(),
                    p,
                    format!("`{p}`: {e}"),
                    Some("e.g. `200`, `\"2xx\"`, `\"200-399\"` or `[200, 302]`".into()),
                );
                None
            }
        }
    };
    match node {
        Node::Sequence(_) => list(cx, node, path, item).map(ExpectStatus),
        _ => item(cx, node, path).map(|r| ExpectStatus(vec![r])),
    }
}

fn health(cx: &mut Cx, node: &Node, path: &str) -> Option<HealthCheck> {
    let mut m = cx.map(node, path)?;
    let keys = ProbeKeys::read(cx, &mut m);
    let interval = m.opt(cx, "interval", duration).unwrap_or(Duration::from_secs(10));
    let timeout = m.opt(cx, "timeout", duration).unwrap_or(Duration::from_secs(5));
    let retries = m.opt(cx, "retries", |cx, n, p| bounded(cx, n, p, 1, 100)).unwrap_or(3) as u32;
    let start_period = m.opt(cx, "start_period", duration).unwrap_or(Duration::from_secs(30));
    let span = *m.span();
    m.finish(cx);
    let probe = keys.into_probe(cx, &span, path, "health: { http: \"http://127.0.0.1:8001/healthz\" }")?;
    if timeout > interval {
        cx.error(
            &span,
            path,
            format!("`{path}.timeout` is longer than `{path}.interval`"),
            Some("a probe must finish before the next one starts".into()),
        );
    }
    Some(HealthCheck { probe, interval, timeout, retries, start_period })
}

pub(super) fn host_port(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let s = nonempty(cx, node, path)?;
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => Some(s),
        _ => {
            cx.error(
                node.span(),
                path,
                format!("`{path}` must be host:port, found \"{s}\""),
                Some("e.g. `127.0.0.1:5432`".into()),
            );
            None
        }
    }
}

fn database(cx: &mut Cx, node: &Node, path: &str) -> Option<Database> {
    let mut m = cx.map(node, path)?;
    let kind = m.req(cx, "kind", "one of postgres, mariadb, sqlite", |cx, n, p| {
        choice(
            cx,
            n,
            p,
            &[
                ("postgres", DbKind::Postgres),
                ("postgresql", DbKind::Postgres),
                ("mariadb", DbKind::Mariadb),
                ("mysql", DbKind::Mariadb),
                ("sqlite", DbKind::Sqlite),
            ],
        )
    });
    let url = m.secret(cx, "url", "url_file", "url_env");
    let url_span = m.first_key_span(&["url", "url_file", "url_env"]);
    let admin_url = m.secret(cx, "admin_url", "admin_url_file", "admin_url_env");
    let admin_url_span = m.first_key_span(&["admin_url", "admin_url_file", "admin_url_env"]);
    let path_ = m.opt(cx, "path", |cx, n, p| nonempty(cx, n, p).map(|s| cx.resolve_path(&s)));
    let min_rows = m
        .opt(cx, "min_rows", |cx, n, p| {
            entries(cx, n, p, |cx, k, v, p| Some((k.as_str().to_string(), unsigned(cx, v, p)?)))
                .map(|v| v.into_iter().collect())
        })
        .unwrap_or_default();
    let compose_service = m.opt(cx, "compose_service", |cx, n, p| compose_name(cx, n, p, "service name"));
    let dump_routines = m.opt(cx, "dump_routines", boolean).unwrap_or(true);
    let span = *m.span();
    m.finish(cx);
    let kind = kind?;
    if compose_service.is_some() && kind == DbKind::Sqlite {
        cx.error(
            &span,
            path,
            "`compose_service` is for PostgreSQL and MariaDB servers in a container".to_string(),
            Some("a SQLite file in a volume is backed up with `compose.volumes`".into()),
        );
    }
    match kind {
        DbKind::Postgres | DbKind::Mariadb => {
            if url.is_none() && path_.is_none() {
                cx.error(&span, path, format!("a {} database needs a connection URL", if kind == DbKind::Postgres { "PostgreSQL" } else { "MariaDB" }), Some("set `url_file: /etc/caretaker/database_url` (a file holding e.g. postgres://user:password@127.0.0.1/app)".into()));
            }
            if path_.is_some() {
                cx.error(
                    &span,
                    path,
                    "`path` is for SQLite databases; PostgreSQL and MariaDB use `url`".to_string(),
                    None,
                );
            }
            if let Some(u) = &url {
                let scheme_ok = match kind {
                    DbKind::Postgres => {
                        u.expose().starts_with("postgres://") || u.expose().starts_with("postgresql://")
                    }
                    _ => u.expose().starts_with("mysql://") || u.expose().starts_with("mariadb://"),
                };
                if !scheme_ok {
                    cx.error(
                        &span,
                        &format!("{path}.url"),
                        format!(
                            "the database URL does not match `kind: {}`",
                            if kind == DbKind::Postgres { "postgres" } else { "mariadb" }
                        ),
                        Some(if kind == DbKind::Postgres {
                            "it must start with postgres://".into()
                        } else {
                            "it must start with mysql:// or mariadb://".into()
                        }),
                    );
                }
            }
        }
        DbKind::Sqlite => {
            if path_.is_none() {
                cx.error(&span, path, "a SQLite database needs `path:` (the database file)".to_string(), None);
            }
            if url.is_some() {
                cx.error(&span, path, "SQLite databases use `path`, not `url`".to_string(), None);
            }
        }
    }
    if kind != DbKind::Sqlite {
        for (secret, key_span, key) in [(&url, url_span, "url"), (&admin_url, admin_url_span, "admin_url")] {
            let (Some(secret), Some(key_span)) = (secret, key_span) else { continue };
            if let Some((message, hint)) = db_url_problem(secret.expose(), kind) {
                cx.error(&key_span, &format!("{path}.{key}"), format!("the database {key}: {message}"), Some(hint));
            }
        }
    }
    if admin_url.is_some() && kind != DbKind::Postgres {
        cx.error(
            &span,
            path,
            "`admin_url` is supported for PostgreSQL only (for now)".to_string(),
            Some("remove it, and create the MariaDB user and database once by hand".into()),
        );
    }
    Some(Database { kind, url, admin_url, path: path_, min_rows, compose_service, dump_routines })
}

/// What is wrong with a PostgreSQL or MariaDB connection URL, the way the database adapters
/// read it (`caretaker_db::url`): a bad port, a bad `%XX`, an unclosed `[`, or a TLS mode the
/// PostgreSQL client cannot do. The message never repeats the URL (it holds a password).
fn db_url_problem(url: &str, kind: DbKind) -> Option<(String, String)> {
    let form = "the form is scheme://user:password@host:port/database; write special characters in the password as %XX (e.g. %40 for @)";
    let bad = |why: &str| Some((why.to_string(), form.to_string()));
    let Some((_, rest)) = url.split_once("://") else { return bad("it is not a URL (scheme://host/database)") };
    let (rest, query) = rest.split_once('?').map_or((rest, None), |(r, q)| (r, Some(q)));
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let (userinfo, hostport) = authority.rsplit_once('@').map_or((None, authority), |(u, h)| (Some(u), h));
    let percent_ok = |s: &str| {
        let b = s.as_bytes();
        let mut decoded = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                match b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => decoded.push(v),
                    None => return false,
                }
                i += 3;
            } else {
                decoded.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(decoded).is_ok()
    };
    if !percent_ok(rest) || !query.is_none_or(percent_ok) || !userinfo.is_none_or(percent_ok) {
        return bad("it holds an invalid percent-encoding (a % not followed by two hex digits)");
    }
    let port_ok = |p: &str| p.parse::<u16>().is_ok_and(|p| p > 0);
    if let Some(h) = hostport.strip_prefix('[') {
        let Some((_, after)) = h.split_once(']') else { return bad("the host has an unclosed [") };
        if let Some(p) = after.strip_prefix(':') {
            if !port_ok(p) {
                return bad("the port is not a number from 1 to 65535");
            }
        } else if !after.is_empty() {
            return bad("unexpected text after ] in the host");
        }
    } else if let Some((_, p)) = hostport.rsplit_once(':') {
        if !port_ok(p) {
            return bad("the port is not a number from 1 to 65535");
        }
    }
    if kind == DbKind::Postgres {
        let sslmode = query.unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("sslmode="));
        if let Some(mode) = sslmode.filter(|m| !matches!(*m, "disable" | "allow" | "prefer")) {
            return Some((
                format!("sslmode={mode} needs TLS, which caretaker's PostgreSQL client does not support yet"),
                "connect over a Unix socket, the loopback interface or a private network with sslmode=disable (or prefer)"
                    .to_string(),
            ));
        }
    }
    None
}

fn file_tree(cx: &mut Cx, node: &Node, path: &str) -> Option<FileTree> {
    if let Node::Scalar(_) = node {
        let p = nonempty(cx, node, path)?;
        return Some(FileTree { path: cx.resolve_path(&p), allow_empty: false, exclude: Vec::new() });
    }
    let mut m = cx.map(node, path)?;
    let p = m.req(cx, "path", "", nonempty);
    let allow_empty = m.opt(cx, "allow_empty", boolean).unwrap_or(false);
    let exclude = m.opt(cx, "exclude", |cx, n, p| list(cx, n, p, nonempty)).unwrap_or_default();
    m.finish(cx);
    Some(FileTree { path: cx.resolve_path(&p?), allow_empty, exclude })
}

/// Parses a repository location in restic's notation (`/path`, `local:/path`,
/// `sftp:user@host:/path`, `sftp://user@host:port//path`, `s3:https://host/bucket/prefix`).
pub fn repository(cx: &mut Cx, node: &Node, path: &str) -> Option<Repository> {
    let s = nonempty(cx, node, path)?;
    let hint = "use a local path (`/srv/backups/app`), `sftp:user@host:/path` or `s3:https://host/bucket/prefix`";
    let bad = |cx: &mut Cx, why: &str| {
        cx.error(node.span(), path, format!("cannot read repository \"{s}\": {why}"), Some(hint.into()));
        None
    };
    if let Some(rest) = s.strip_prefix("local:") {
        return Some(Repository::Local(cx.resolve_path(rest)));
    }
    if let Some(rest) = s.strip_prefix("sftp://") {
        let (userhost, p) = match rest.split_once('/') {
            Some((a, b)) => (a, b),
            None => return bad(cx, "missing the path on the server"),
        };
        let (user, hostport) = match userhost.split_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, userhost),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(port) => (h.to_string(), Some(port)),
                Err(_) => return bad(cx, "the port is not a number"),
            },
            None => (hostport.to_string(), None),
        };
        if host.is_empty() || p.is_empty() {
            return bad(cx, "missing host or path");
        }
        return Some(Repository::Sftp { user, host, port, path: format!("/{}", p.trim_start_matches('/')) });
    }
    if let Some(rest) = s.strip_prefix("sftp:") {
        let (userhost, p) = match rest.split_once(':') {
            Some(x) => x,
            None => return bad(cx, "expected sftp:user@host:/path"),
        };
        let (user, host) = match userhost.split_once('@') {
            Some((u, h)) => (Some(u.to_string()), h.to_string()),
            None => (None, userhost.to_string()),
        };
        if host.is_empty() || p.is_empty() {
            return bad(cx, "missing host or path");
        }
        return Some(Repository::Sftp { user, host, port: None, path: p.to_string() });
    }
    if let Some(rest) = s.strip_prefix("s3:") {
        let (scheme, rest) = if let Some(r) = rest.strip_prefix("https://") {
            ("https://", r)
        } else if let Some(r) = rest.strip_prefix("http://") {
            ("http://", r)
        } else {
            return bad(cx, "expected s3:https://host/bucket[/prefix]");
        };
        let mut parts = rest.splitn(3, '/');
        let host = parts.next().unwrap_or("");
        let bucket = parts.next().unwrap_or("");
        let prefix = parts.next().unwrap_or("").trim_matches('/');
        if host.is_empty() || bucket.is_empty() {
            return bad(cx, "missing host or bucket");
        }
        return Some(Repository::S3 {
            endpoint: format!("{scheme}{host}"),
            bucket: bucket.into(),
            prefix: prefix.into(),
        });
    }
    if s.starts_with('/') || s.starts_with("./") || s.starts_with("../") || !s.contains(':') {
        return Some(Repository::Local(cx.resolve_path(&s)));
    }
    let scheme = s.split(':').next().unwrap_or("");
    bad(cx, &format!("unsupported repository type `{scheme}`"))
}

fn backup(cx: &mut Cx, node: &Node, path: &str) -> Option<Backup> {
    let mut m = cx.map(node, path)?;
    let repository =
        m.req(cx, "repository", "e.g. `repository: sftp:backup@backup.example.org:/srv/backups/app`", repository);
    let password = m.secret(cx, "password", "password_file", "password_env");
    if password.is_none()
        && !m.node.contains_key("password")
        && !m.node.contains_key("password_file")
        && !m.node.contains_key("password_env")
    {
        cx.error(
            m.span(),
            path,
            "backups are encrypted, so `backup` needs a password".to_string(),
            Some("set `password_file: /etc/caretaker/backup.key` (mode 0600); `caretaker init` generates one".into()),
        );
    }
    let schedule_ = m.opt(cx, "schedule", schedule);
    let prune_schedule = m.opt(cx, "prune_schedule", schedule);
    let check_schedule = m.opt(cx, "check_schedule", schedule);
    let keep = m.opt(cx, "keep", keep).unwrap_or(Keep {
        daily: Some(7),
        weekly: Some(5),
        monthly: Some(12),
        ..Keep::default()
    });
    let max_shrink_percent = m.opt(cx, "max_shrink_percent", |cx, n, p| bounded(cx, n, p, 0, 100)).unwrap_or(50) as u8;
    let sftp = m.opt(cx, "sftp", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let key_file = m.opt(cx, "key_file", |cx, n, p| nonempty(cx, n, p).map(|s| cx.resolve_path(&s)));
        let known_hosts_file =
            m.opt(cx, "known_hosts_file", |cx, n, p| nonempty(cx, n, p).map(|s| cx.resolve_path(&s)));
        m.finish(cx);
        Some(SftpOptions { key_file, known_hosts_file })
    });
    let s3 = m.opt(cx, "s3", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let id = m.secret(cx, "access_key_id", "access_key_id_file", "access_key_id_env");
        let key = m.secret(cx, "secret_access_key", "secret_access_key_file", "secret_access_key_env");
        let region = m.opt(cx, "region", nonempty);
        let span = *m.span();
        m.finish(cx);
        if id.is_none() || key.is_none() {
            cx.error(
                &span,
                p,
                "S3 needs `access_key_id` and `secret_access_key` (inline, `_file` or `_env`)".to_string(),
                None,
            );
            return None;
        }
        Some(S3Options { access_key_id: id?, secret_access_key: key?, region })
    });
    let retry = m
        .opt(cx, "retry", |cx, n, p| {
            let mut m = cx.map(n, p)?;
            let max_time = m.opt(cx, "max_time", duration).unwrap_or(Retry::default().max_time);
            m.finish(cx);
            Some(Retry { max_time })
        })
        .unwrap_or_default();
    let span = *m.span();
    m.finish(cx);
    let repository = repository?;
    if matches!(repository, Repository::S3 { .. }) && s3.is_none() {
        cx.error(
            &span,
            path,
            "an S3 repository needs credentials in `backup.s3`".to_string(),
            Some("add `s3: { access_key_id_file: ..., secret_access_key_file: ... }`".into()),
        );
    }
    let default_schedule = crate::schedule::parse_schedule("daily 00:30").expect("built-in schedule parses");
    Some(Backup {
        repository,
        password: password?,
        schedule: schedule_.unwrap_or(default_schedule),
        prune_schedule,
        check_schedule,
        keep,
        max_shrink_percent,
        sftp,
        s3,
        retry,
    })
}

fn keep(cx: &mut Cx, node: &Node, path: &str) -> Option<Keep> {
    let mut m = cx.map(node, path)?;
    let count = |cx: &mut Cx, n: &Node, p: &str| bounded(cx, n, p, 0, 100_000).map(|v| v as u32);
    let k = Keep {
        last: m.opt(cx, "last", count),
        hourly: m.opt(cx, "hourly", count),
        daily: m.opt(cx, "daily", count),
        weekly: m.opt(cx, "weekly", count),
        monthly: m.opt(cx, "monthly", count),
        yearly: m.opt(cx, "yearly", count),
        within: m.opt(cx, "within", duration),
    };
    let span = *m.span();
    m.finish(cx);
    if k == Keep::default() {
        cx.error(
            &span,
            path,
            format!("`{path}` keeps nothing, so every backup but the newest would be deleted"),
            Some("e.g. `keep: { daily: 7, weekly: 5, monthly: 12 }`".into()),
        );
        return None;
    }
    Some(k)
}

fn update_defaults(schedule: Option<crate::schedule::Schedule>) -> Update {
    Update {
        schedule,
        automatic: false,
        keep_releases: 5,
        health_timeout: Duration::from_secs(120),
        migrations: MigrationDetect::Paths(vec!["**/migrations".into()]),
        snapshot_keep: Duration::from_secs(7 * DAYS),
    }
}

fn update(cx: &mut Cx, node: &Node, path: &str) -> Option<Update> {
    let mut m = cx.map(node, path)?;
    let mut u = update_defaults(m.opt(cx, "schedule", schedule));
    if let Some(a) = m.opt(cx, "automatic", boolean) {
        u.automatic = a;
    }
    if let Some(k) = m.opt(cx, "keep_releases", |cx, n, p| bounded(cx, n, p, 1, 100)) {
        u.keep_releases = k as u32;
    }
    if let Some(t) = m.opt(cx, "health_timeout", duration) {
        u.health_timeout = t;
    }
    if let Some(t) = m.opt(cx, "snapshot_keep", duration) {
        u.snapshot_keep = t;
    }
    if let Some(md) = m.opt(cx, "migrations", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let paths = m.opt(cx, "paths", |cx, n, p| list(cx, n, p, nonempty));
        let cmd = m.opt(cx, "command", command);
        let span = *m.span();
        m.finish(cx);
        match (paths, cmd) {
            (Some(p), None) => Some(MigrationDetect::Paths(p)),
            (None, Some(c)) => Some(MigrationDetect::Command(c)),
            _ => {
                cx.error(&span, p, format!("`{p}` needs exactly one of `paths` or `command`"), None);
                None
            }
        }
    }) {
        u.migrations = md;
    }
    let span = *m.span();
    m.finish(cx);
    if u.automatic && u.schedule.is_none() {
        cx.error(
            &span,
            path,
            "automatic updates need `update.schedule`".to_string(),
            Some("e.g. `schedule: \"daily 06:30\"`".into()),
        );
    }
    Some(u)
}

/// The alerts section when the config has none (also the base of a partial one).
pub fn alerts_defaults() -> Alerts {
    Alerts { notify: Vec::new(), smtp: None, repeat_interval: Duration::from_secs(4 * HOURS), rules: rules_defaults() }
}

fn rules_defaults() -> Rules {
    Rules {
        filesystem_free_percent: Threshold {
            enabled: true,
            warning: 20.0,
            critical: 10.0,
            hold: Duration::from_secs(5 * MINS),
        },
        memory_used_percent: Threshold {
            enabled: true,
            warning: 90.0,
            critical: 95.0,
            hold: Duration::from_secs(15 * MINS),
        },
        load_per_cpu: Threshold { enabled: true, warning: 2.0, critical: 4.0, hold: Duration::from_secs(15 * MINS) },
        backup_max_age: Some(Duration::from_secs(32 * HOURS)),
        update_max_age: Some(Duration::from_secs(8 * DAYS)),
        certificate_expiry: DurationThreshold {
            enabled: true,
            warning: Duration::from_secs(21 * DAYS),
            critical: Duration::from_secs(7 * DAYS),
        },
        reboots_max: 3,
        reboots_within: Duration::from_secs(DAYS),
        service_down_for: Some(Duration::from_secs(5 * MINS)),
        job_failed: true,
        service_mode: true,
        job_skipped: true,
        dependencies_vulnerable: true,
    }
}

fn alerts(cx: &mut Cx, node: &Node, path: &str) -> Option<Alerts> {
    let mut m = cx.map(node, path)?;
    let mut a = alerts_defaults();
    a.notify = m.opt(cx, "notify", |cx, n, p| list(cx, n, p, notifier)).unwrap_or_default();
    a.smtp = m.opt(cx, "smtp", smtp);
    if let Some(d) = m.opt(cx, "repeat_interval", duration) {
        a.repeat_interval = d;
    }
    if let Some(r) = m.opt(cx, "rules", rules) {
        a.rules = r;
    }
    let span = *m.span();
    m.finish(cx);
    if a.notify.iter().any(|n| matches!(n, Notifier::Email(_))) && a.smtp.is_none() {
        cx.error(
            &span,
            path,
            "email notifications need an SMTP server in `alerts.smtp`".to_string(),
            Some("add `smtp: { host: mail.example.org, from: caretaker@example.org }`".into()),
        );
    }
    Some(a)
}

fn notifier(cx: &mut Cx, node: &Node, path: &str) -> Option<Notifier> {
    let before = cx.error_count();
    let mut m = cx.map(node, path)?;
    let email = m.opt(cx, "email", |cx, n, p| {
        let addr = nonempty(cx, n, p)?;
        if !addr.contains('@') || addr.starts_with('@') || addr.ends_with('@') {
            cx.error(n.span(), p, format!("\"{addr}\" is not an email address"), None);
            return None;
        }
        Some(addr)
    });
    let webhook = m.secret(cx, "webhook", "webhook_file", "webhook_env");
    let alertmanager = m.opt(cx, "alertmanager", |cx, n, p| {
        let url = nonempty(cx, n, p)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            cx.error(n.span(), p, format!("`{p}` must be an http:// or https:// URL, found \"{url}\""), None);
            return None;
        }
        Some(url.trim_end_matches('/').to_string())
    });
    let span = *m.span();
    m.finish(cx);
    match (email, webhook, alertmanager) {
        (None, None, Some(url)) => Some(Notifier::Alertmanager(url)),
        (Some(e), None, None) => Some(Notifier::Email(e)),
        (None, Some(url), None) => {
            let u = url.expose();
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                cx.error(&span, path, "a webhook must be an http:// or https:// URL".to_string(), None);
                return None;
            }
            Some(Notifier::Webhook { url })
        }
        (None, None, None) if cx.error_count() > before => None,
        _ => {
            cx.error(
                &span,
                path,
                format!("`{path}` needs exactly one of `email`, `webhook` or `alertmanager`"),
                Some("e.g. `- email: ops@example.org`, `- webhook: https://ntfy.example.org/app` or `- alertmanager: http://127.0.0.1:9093`".into()),
            );
            None
        }
    }
}

fn smtp(cx: &mut Cx, node: &Node, path: &str) -> Option<Smtp> {
    let mut m = cx.map(node, path)?;
    let host = m.req(cx, "host", "", nonempty);
    let tls = m
        .opt(cx, "tls", |cx, n, p| {
            choice(cx, n, p, &[("starttls", SmtpTls::Starttls), ("tls", SmtpTls::Tls), ("none", SmtpTls::None)])
        })
        .unwrap_or(SmtpTls::Starttls);
    let port = m.opt(cx, "port", |cx, n, p| bounded(cx, n, p, 1, 65535).map(|v| v as u16)).unwrap_or(match tls {
        SmtpTls::Tls => 465,
        SmtpTls::Starttls => 587,
        SmtpTls::None => 25,
    });
    let username = m.opt(cx, "username", nonempty);
    let password = m.secret(cx, "password", "password_file", "password_env");
    let from = m.req(cx, "from", "the sender address of alert emails, e.g. `from: caretaker@example.org`", nonempty);
    m.finish(cx);
    Some(Smtp { host: host?, port, tls, username, password, from: from? })
}

fn threshold(cx: &mut Cx, node: &Node, path: &str, default: Threshold, higher_is_worse: bool) -> Option<Threshold> {
    if let Node::Scalar(_) = node {
        // `rule: false` switches a rule off.
        return boolean(cx, node, path).map(|enabled| Threshold { enabled, ..default });
    }
    let mut m = cx.map(node, path)?;
    let mut t = default;
    if let Some(w) = m.opt(cx, "warning", number) {
        t.warning = w;
    }
    if let Some(c) = m.opt(cx, "critical", number) {
        t.critical = c;
    }
    if let Some(h) = m.opt(cx, "for", duration) {
        t.hold = h;
    }
    if let Some(e) = m.opt(cx, "enabled", boolean) {
        t.enabled = e;
    }
    let span = *m.span();
    m.finish(cx);
    let ordered = if higher_is_worse { t.warning <= t.critical } else { t.warning >= t.critical };
    if !ordered {
        cx.error(
            &span,
            path,
            format!("`{path}`: warning ({}) is worse than critical ({})", t.warning, t.critical),
            Some(if higher_is_worse {
                "warning must be at most critical".into()
            } else {
                "warning must be at least critical (free space: lower is worse)".into()
            }),
        );
    }
    Some(t)
}

/// An optional duration rule: a duration, or `false` to switch it off.
fn opt_duration_rule(cx: &mut Cx, node: &Node, path: &str) -> Option<Option<Duration>> {
    if let Node::Scalar(s) = node {
        if s.as_bool() == Some(false) {
            return Some(None);
        }
    }
    duration(cx, node, path).map(Some)
}

fn rules(cx: &mut Cx, node: &Node, path: &str) -> Option<Rules> {
    let mut m = cx.map(node, path)?;
    let d = rules_defaults();
    let mut r = d.clone();
    if let Some(t) =
        m.opt(cx, "filesystem_free_percent", |cx, n, p| threshold(cx, n, p, d.filesystem_free_percent, false))
    {
        r.filesystem_free_percent = t;
    }
    if let Some(t) = m.opt(cx, "memory_used_percent", |cx, n, p| threshold(cx, n, p, d.memory_used_percent, true)) {
        r.memory_used_percent = t;
    }
    if let Some(t) = m.opt(cx, "load_per_cpu", |cx, n, p| threshold(cx, n, p, d.load_per_cpu, true)) {
        r.load_per_cpu = t;
    }
    if let Some(v) = m.opt(cx, "backup_max_age", opt_duration_rule) {
        r.backup_max_age = v;
    }
    if let Some(v) = m.opt(cx, "update_max_age", opt_duration_rule) {
        r.update_max_age = v;
    }
    if let Some(v) = m.opt(cx, "service_down_for", opt_duration_rule) {
        r.service_down_for = v;
    }
    if let Some(v) = m.opt(cx, "certificate_expiry", |cx, n, p| {
        if let Node::Scalar(_) = n {
            return boolean(cx, n, p).map(|enabled| DurationThreshold { enabled, ..d.certificate_expiry });
        }
        let mut m = cx.map(n, p)?;
        let mut t = d.certificate_expiry;
        if let Some(w) = m.opt(cx, "warning", duration) {
            t.warning = w;
        }
        if let Some(c) = m.opt(cx, "critical", duration) {
            t.critical = c;
        }
        if let Some(e) = m.opt(cx, "enabled", boolean) {
            t.enabled = e;
        }
        let span = *m.span();
        m.finish(cx);
        if t.warning < t.critical {
            cx.error(&span, p, format!("`{p}`: warning must be at least critical (time left: less is worse)"), None);
        }
        Some(t)
    }) {
        r.certificate_expiry = v;
    }
    if let Some((max, within)) = m.opt(cx, "reboots", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let max = m.req(cx, "max", "", |cx, n, p| bounded(cx, n, p, 1, 1000));
        let within = m.req(cx, "within", "", duration);
        m.finish(cx);
        Some((max? as u32, within?))
    }) {
        r.reboots_max = max;
        r.reboots_within = within;
    }
    if let Some(v) = m.opt(cx, "job_failed", boolean) {
        r.job_failed = v;
    }
    if let Some(v) = m.opt(cx, "dependencies_vulnerable", boolean) {
        r.dependencies_vulnerable = v;
    }
    if let Some(v) = m.opt(cx, "service_mode", boolean) {
        r.service_mode = v;
    }
    if let Some(v) = m.opt(cx, "job_skipped", boolean) {
        r.job_skipped = v;
    }
    m.finish(cx);
    Some(r)
}

fn jobs(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<ScheduledJob>> {
    entries(cx, node, path, |cx, k, v, p| {
        let mut m = cx.map(v, p)?;
        let command = m.req(cx, "command", "", command);
        let schedule = m.req(cx, "schedule", "e.g. `schedule: \"daily 03:00\"`", schedule);
        let timeout = m.opt(cx, "timeout", duration).unwrap_or(Duration::from_secs(HOURS));
        m.finish(cx);
        Some(ScheduledJob { name: k.as_str().to_string(), command: command?, schedule: schedule?, timeout })
    })
}

fn logs(cx: &mut Cx, node: &Node, path: &str) -> Option<Logs> {
    let mut m = cx.map(node, path)?;
    let max_size_bytes = m.opt(cx, "max_size", size).unwrap_or(10 << 20);
    let keep = m.opt(cx, "keep", |cx, n, p| bounded(cx, n, p, 1, 1000)).unwrap_or(5) as u32;
    m.finish(cx);
    Some(Logs { max_size_bytes, keep })
}

fn front_door(cx: &mut Cx, node: &Node, path: &str) -> Option<FrontDoor> {
    let mut m = cx.map(node, path)?;
    let listen = m.req(cx, "listen", "e.g. `listen: \"0.0.0.0:80\"`", host_port);
    let upstream = m.req(cx, "upstream", "the app's web service, e.g. `upstream: \"127.0.0.1:8001\"`", host_port);
    let max_body_bytes = m.opt(cx, "max_body_size", size).unwrap_or(100 << 20);
    let upstream_timeout = m.opt(cx, "upstream_timeout", duration).unwrap_or(Duration::from_secs(60));
    let retry_after = m.opt(cx, "retry_after", duration).unwrap_or(Duration::from_secs(30));
    m.finish(cx);
    Some(FrontDoor { listen: listen?, upstream: upstream?, max_body_bytes, upstream_timeout, retry_after })
}

fn maintenance_defaults() -> Maintenance {
    Maintenance {
        page_dir: None,
        default_message: "We are updating the site and will be back in a few minutes.".into(),
    }
}

fn maintenance(cx: &mut Cx, node: &Node, path: &str) -> Option<Maintenance> {
    let mut m = cx.map(node, path)?;
    let mut out = maintenance_defaults();
    out.page_dir = m.opt(cx, "page_dir", |cx, n, p| nonempty(cx, n, p).map(|s| cx.resolve_path(&s)));
    if let Some(msg) = m.opt(cx, "message", nonempty) {
        out.default_message = msg;
    }
    m.finish(cx);
    Some(out)
}

/// A size like `10MiB`, `500k`, `1G` (binary units).
pub(super) fn size(cx: &mut Cx, node: &Node, path: &str) -> Option<u64> {
    let s = string(cx, node, path)?;
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let mult: Option<u64> = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => Some(1),
        "k" | "kb" | "kib" => Some(1 << 10),
        "m" | "mb" | "mib" => Some(1 << 20),
        "g" | "gb" | "gib" => Some(1 << 30),
        _ => None,
    };
    match (num.parse::<u64>(), mult) {
        (Ok(n), Some(m)) if n > 0 => Some(n.saturating_mul(m)),
        _ => {
            cx.error(node.span(), path, format!("`{path}` must be a size like 10MiB or 500KiB, found \"{s}\""), None);
            None
        }
    }
}

/// Checks that need the whole config: things one section says about another.
pub fn cross_checks(cx: &mut Cx, cfg: &Config, root: &Node) {
    let Node::Mapping(root_map) = root else { return };
    let span_of =
        |key: &str| root_map.iter().find(|(k, _)| k.as_str() == key).map(|(k, _)| *k.span()).unwrap_or(*root.span());
    let volumes = cfg.compose.as_ref().is_some_and(|c| !c.volumes.is_empty());
    if cfg.backup.is_some() && cfg.database.is_none() && cfg.files.is_empty() && !volumes {
        cx.error(
            &span_of("backup"),
            "backup",
            "`backup` is configured but there is nothing to back up".to_string(),
            Some("add `database:` and/or `files:` (or `compose.volumes`)".into()),
        );
    }
    if cfg.compose.is_none() && cfg.database.as_ref().is_some_and(|d| d.compose_service.is_some()) {
        cx.error(
            &span_of("database"),
            "database.compose_service",
            "`database.compose_service` names a compose service, but the app has no `compose:` section".to_string(),
            None,
        );
    }
    if let Some(c) = &cfg.compose {
        if !cfg.services.is_empty() {
            cx.error(
                &span_of("services"),
                "services",
                "`services` and `compose` are two ways to run the app; use one".to_string(),
                Some("with `compose:`, the services are the compose file's; settings for them go under `compose.services`".into()),
            );
        }
        let one_off = !cfg.app.migrate.is_empty()
            || !cfg.jobs.is_empty()
            || matches!(cfg.update.migrations, MigrationDetect::Command(_));
        if one_off && c.app_service.is_none() {
            cx.error(
                &span_of("compose"),
                "compose.app_service",
                "the app's migrations and jobs run in one-off containers, but `compose.app_service` does not say of which service".to_string(),
                Some("e.g. `app_service: web` (the service whose image holds the app's code)".into()),
            );
        }
    }
    random_delay_fits(cx, cfg, root);
    super::tls::cross_checks(cx, cfg, &span_of("tls"));
    if let Some(b) = &cfg.backup {
        if matches!(b.password.origin(), SecretOrigin::Inline) && b.password.expose().len() < 12 {
            cx.warning(
                &span_of("backup"),
                "backup.password",
                "the backup password is shorter than 12 characters".to_string(),
                Some("`caretaker init` generates strong passwords".into()),
            );
        }
    }
}

/// `scheduler.random_delay` must be shorter than the time between two runs of every configured
/// schedule (the built-in hourly check aside): a run delayed past its next slot runs less often
/// than written, and a delay of years never runs at all.
fn random_delay_fits(cx: &mut Cx, cfg: &Config, root: &Node) {
    let delay = cfg.scheduler.random_delay;
    if delay.is_zero() {
        return;
    }
    let tz = cfg.timezone.as_deref().and_then(|z| jiff::tz::TimeZone::get(z).ok()).unwrap_or(jiff::tz::TimeZone::UTC);
    // Gaps over a year's worth of slots from a fixed start, so the answer does not depend on
    // when `config check` runs.
    let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("a valid timestamp");
    let mut shortest: Option<(Duration, String)> = None;
    for task in crate::scheduler::tasks_from_config(cfg) {
        if task.name == "check" {
            continue;
        }
        let mut t = start;
        for _ in 0..400 {
            let Some(next) = task.schedule.next_after(t, &tz) else { break };
            if t != start {
                let gap = Duration::try_from(next.duration_since(t)).unwrap_or(Duration::ZERO);
                if shortest.as_ref().is_none_or(|(g, _)| gap < *g) {
                    shortest = Some((gap, task.name.clone()));
                }
            }
            if next.duration_since(start).as_secs() > 366 * 86_400 {
                break;
            }
            t = next;
        }
    }
    let Some((gap, task)) = shortest else { return };
    if delay >= gap {
        let span = match root {
            Node::Mapping(m) => m
                .iter()
                .find(|(k, _)| k.as_str() == "scheduler")
                .map(|(k, v)| match v {
                    Node::Mapping(s) => {
                        s.iter().find(|(k, _)| k.as_str() == "random_delay").map_or(*k.span(), |(k, _)| *k.span())
                    }
                    _ => *k.span(),
                })
                .unwrap_or(*root.span()),
            _ => *root.span(),
        };
        let fmt = crate::duration::format_duration;
        cx.error(
            &span,
            "scheduler.random_delay",
            format!(
                "`scheduler.random_delay` ({}) is not shorter than the time between two runs of the `{task}` task ({}): runs would be pushed past their next slot",
                fmt(delay),
                fmt(gap)
            ),
            Some(format!("use a delay shorter than {}, e.g. a few minutes", fmt(gap))),
        );
    }
}

/// Port 9720: next to node_exporter's 9100 range, unassigned in Prometheus' port list.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9720";

/// Connections the daemon's HTTP listener serves at once: a browser or two, a Prometheus,
/// with room to spare; each costs a few KiB.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 128;
/// Time to send a request's headers to the daemon's HTTP listener.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

fn http_defaults() -> Http {
    Http {
        listen: DEFAULT_HTTP_LISTEN.to_string(),
        max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
        header_timeout: DEFAULT_HTTP_HEADER_TIMEOUT,
    }
}

fn http(cx: &mut Cx, node: &Node, path: &str) -> Option<Http> {
    let mut m = cx.map(node, path)?;
    let listen = m.opt(cx, "listen", host_port).unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_string());
    let max_connections = m
        .opt(cx, "max_connections", |cx, n, p| bounded(cx, n, p, 1, 10_000))
        .map_or(DEFAULT_HTTP_MAX_CONNECTIONS, |v| v as usize);
    let header_timeout = m
        .opt(cx, "header_timeout", |cx, n, p| {
            let d = duration(cx, n, p)?;
            if d < Duration::from_millis(100) || d > Duration::from_secs(HOURS) {
                cx.error(n.span(), p, format!("`{p}` must be between 100ms and 1h"), None);
                return None;
            }
            Some(d)
        })
        .unwrap_or(DEFAULT_HTTP_HEADER_TIMEOUT);
    m.finish(cx);
    Some(Http { listen, max_connections, header_timeout })
}

fn status_page(cx: &mut Cx, node: &Node, path: &str) -> Option<StatusPage> {
    let mut m = cx.map(node, path)?;
    let span = *m.span();
    let has_users = m.get("users").is_some();
    let users = m
        .opt(cx, "users", |cx, n, p| {
            entries(cx, n, p, |cx, k, v, p| {
                let mut u = cx.map(v, p)?;
                let hash = u.req(
                    cx,
                    "password_hash",
                    "make one with `caretaker status-page hash-password` (reads the password from stdin)",
                    password_hash,
                );
                u.finish(cx);
                Some((k.as_str().to_string(), hash?))
            })
        })
        .map(|v| v.into_iter().collect::<BTreeMap<_, _>>())
        .unwrap_or_default();
    let token_file = m.opt(cx, "token_file", |cx, n, p| {
        let raw = nonempty(cx, n, p)?;
        let file = cx.resolve_path(&raw);
        let hint = "create it with a long random token, owned by the user caretaker runs as, mode 0600";
        let problem = if !cx.source.exists(&file) {
            Some("does not exist".to_string())
        } else if let Some(why) = cx.source.insecure(&file) {
            Some(why)
        } else if cx.source.file_mode(&file).is_some_and(|mode| mode & 0o004 != 0) {
            Some("is readable by every user on this machine".to_string())
        } else {
            None
        };
        match problem {
            Some(why) => {
                cx.error(n.span(), p, format!("status token file {}: {why}", file.display()), Some(hint.into()));
                None
            }
            None => Some(file),
        }
    });
    let given_token_file = m.get("token_file").is_some();
    let protect_metrics = m.opt(cx, "protect_metrics", boolean).unwrap_or(false);
    m.finish(cx);
    if !has_users && !given_token_file {
        cx.error(
            &span,
            path,
            format!("`{path}` needs `users` or `token_file`, or nobody can read the status page"),
            Some("e.g. `status: { users: { admin: { password_hash: \"$argon2id$...\" } } }`".into()),
        );
    }
    Some(StatusPage { users, token_file, protect_metrics })
}

/// An argon2 hash in PHC string format. Plain passwords are refused: the config is read by
/// more people and tools than the page is.
fn password_hash(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let s = nonempty(cx, node, path)?;
    let fields: Vec<&str> = s.split('$').collect();
    let ok = fields.len() == 6
        && fields[0].is_empty()
        && matches!(fields[1], "argon2id" | "argon2i" | "argon2d")
        && fields[2].starts_with("v=")
        && fields[3].contains("m=")
        && fields[4..]
            .iter()
            .all(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'));
    if !ok {
        cx.error(
            node.span(),
            path,
            format!("`{path}` must be an argon2 hash like \"$argon2id$v=19$m=19456,t=2,p=1$...$...\", not a password"),
            Some("make one with `caretaker status-page hash-password` (reads the password from stdin)".into()),
        );
        return None;
    }
    Some(s)
}

/// The deps section when the config has none (also the base of a partial one).
pub fn deps_defaults() -> Deps {
    Deps {
        schedule: None,
        db_url: "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip".into(),
        index_url: Some("https://pypi.org/pypi".into()),
        lockfile: None,
        freeze_command: Command::Argv(vec!["python3".into(), "-m".into(), "pip".into(), "freeze".into()]),
    }
}

fn deps(cx: &mut Cx, node: &Node, path: &str) -> Option<Deps> {
    let mut m = cx.map(node, path)?;
    let mut d = deps_defaults();
    d.schedule = m.opt(cx, "schedule", schedule);
    if let Some(u) = m.opt(cx, "db_url", nonempty) {
        d.db_url = u;
    }
    if let Some(u) = m.opt(cx, "index_url", nonempty) {
        d.index_url = if u == "off" { None } else { Some(u.trim_end_matches('/').to_string()) };
    }
    d.lockfile = m.opt(cx, "lockfile", nonempty).map(PathBuf::from);
    if let Some(c) = m.opt(cx, "freeze_command", command) {
        d.freeze_command = c;
    }
    m.finish(cx);
    Some(d)
}

fn scheduler(cx: &mut Cx, node: &Node, path: &str) -> Option<Scheduler> {
    let mut m = cx.map(node, path)?;
    let random_delay = m.opt(cx, "random_delay", duration).unwrap_or(Duration::ZERO);
    m.finish(cx);
    Some(Scheduler { random_delay })
}

fn checks(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<CustomCheck>> {
    entries(cx, node, path, |cx, k, v, p| {
        let mut m = cx.map(v, p)?;
        let keys = ProbeKeys::read(cx, &mut m);
        let timeout = m.opt(cx, "timeout", duration).unwrap_or(Duration::from_secs(10));
        let critical = m.opt(cx, "critical", boolean).unwrap_or(true);
        let span = *m.span();
        m.finish(cx);
        let probe =
            keys.into_probe(cx, &span, p, "homepage: { http: \"https://example.org/\", expect_status: 200 }")?;
        Some(CustomCheck { name: k.as_str().to_string(), probe, timeout, critical })
    })
}

/// The release pointer cross-check (issue 15): with `app.source`, `caretaker update` deploys
/// each release into `<state dir>/releases/` and points `<state dir>/current` at it, so the app's
/// processes must run there — `app.working_dir` (and a service's own `working_dir`, and
/// `compose.project_dir`, when set) must be `<state dir>/current` or a directory inside it.
/// Otherwise an update migrates the database for the new code while the old code keeps
/// serving. The state directory is an argument because `--state-dir` may override the
/// config's; `text` (the file's text) only locates the key; relative paths (a relative config
/// path or `--state-dir`) are taken against `cwd`, as the processes will. Errors say the exact
/// line to write.
pub fn release_pointer_problems(
    cfg: &Config,
    text: &str,
    file: &std::path::Path,
    state_dir: &std::path::Path,
    cwd: &std::path::Path,
) -> Vec<super::Diagnostic> {
    use super::{Diagnostic, Severity};
    if cfg.app.source.is_none() {
        return Vec::new();
    }
    let abs = |p: &std::path::Path| if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    let state_dir = &abs(state_dir);
    let pointer = state_dir.join("current");
    let root = marked_yaml::parse_yaml(0, text).ok();
    let locate = |keys: &[&str]| -> Option<super::Location> {
        let mut node = root.as_ref()?;
        let mut span = None;
        for k in keys {
            let Node::Mapping(m) = node else { return None };
            let (key, value) = m.iter().find(|(key, _)| key.as_str() == *k)?;
            span = Some(*key.span());
            node = value;
        }
        reader::location(&span?)
    };
    let problem = |keys: &[&str], message: String, hint: String| Diagnostic {
        severity: Severity::Error,
        file: file.display().to_string(),
        location: locate(keys).or_else(|| locate(&keys[..1])),
        path: keys.join("."),
        message,
        hint: Some(hint),
    };
    let line = format!("working_dir: \"{}\"", pointer.display());
    let mut out = Vec::new();
    match &cfg.app.working_dir {
        None => out.push(problem(
            &["app", "working_dir"],
            format!(
                "`app.source` is set, so `caretaker update` deploys releases to {}, but `app.working_dir` is not set: the app would keep running the code in the config's directory",
                pointer.display()
            ),
            format!("add `{line}` under `app:`"),
        )),
        Some(dir) if !abs(dir).starts_with(&pointer) => out.push(problem(
            &["app", "working_dir"],
            format!(
                "`app.working_dir` is {}, but `caretaker update` deploys releases to {}: an update would migrate the database while the old code keeps serving",
                dir.display(),
                pointer.display()
            ),
            format!("write `{line}` under `app:` (the state directory is {})", state_dir.display()),
        )),
        Some(_) => {}
    }
    for s in &cfg.services {
        if let Some(dir) = s.working_dir.as_ref().filter(|d| !abs(d).starts_with(&pointer)) {
            out.push(problem(
                &["services", &s.name, "working_dir"],
                format!(
                    "service `{}` runs in {}, outside the release pointer {}: updates would not change its code",
                    s.name,
                    dir.display(),
                    pointer.display()
                ),
                format!(
                    "remove its `working_dir` (it then runs in `app.working_dir`) or point it inside {}",
                    pointer.display()
                ),
            ));
        }
    }
    if let Some(dir) =
        cfg.compose.as_ref().and_then(|c| c.project_dir.as_ref()).filter(|d| !abs(d).starts_with(&pointer))
    {
        out.push(problem(
            &["compose", "project_dir"],
            format!(
                "`compose.project_dir` is {}, outside the release pointer {}: updates would not change the compose project",
                dir.display(),
                pointer.display()
            ),
            "remove `project_dir`: it then is `app.working_dir`, the current release".to_string(),
        ));
    }
    out
}

#[cfg(test)]
mod release_pointer_tests {
    use super::release_pointer_problems;
    use crate::config::{load, NoSecrets};
    use std::path::Path;

    fn problems(app_extra: &str, rest: &str) -> Vec<String> {
        let text = format!(
            "version: 1\napp:\n  name: shop\n  source: {{ git: \"/src/shop\", branch: main }}\n{app_extra}services:\n  web: {{ command: \"run\"{rest} }}\n"
        );
        let cfg = load(&text, Path::new("/etc/c.yml"), None, &NoSecrets).unwrap().config;
        release_pointer_problems(
            &cfg,
            &text,
            Path::new("/etc/c.yml"),
            Path::new("/var/lib/caretaker/shop"),
            Path::new("/"),
        )
        .iter()
        .map(|d| d.to_string())
        .collect()
    }

    #[test]
    fn working_dir_must_be_the_release_pointer_when_updates_deploy() {
        // What `caretaker init` used to write.
        let p = problems("  working_dir: /srv/shop/current\n", "");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("/etc/c.yml:5:3: error: `app.working_dir` is /srv/shop/current"), "{p:?}");
        assert!(p[0].contains("write `working_dir: \"/var/lib/caretaker/shop/current\"` under `app:`"), "{p:?}");
        let p = problems("", "");
        assert!(p.len() == 1 && p[0].contains("`app.working_dir` is not set"), "{p:?}");
        assert!(problems("  working_dir: /var/lib/caretaker/shop/current\n", "").is_empty());
        assert!(problems("  working_dir: /var/lib/caretaker/shop/current/\n", "").is_empty());
        let p = problems("  working_dir: /var/lib/caretaker/shop/current\n", ", working_dir: /srv/old");
        assert!(p.len() == 1 && p[0].contains("service `web` runs in /srv/old"), "{p:?}");
        assert!(problems(
            "  working_dir: /var/lib/caretaker/shop/current\n",
            ", working_dir: /var/lib/caretaker/shop/current/src"
        )
        .is_empty());
    }

    #[test]
    fn without_a_source_the_working_dir_is_free() {
        let text = "version: 1\napp: { name: shop, working_dir: /srv/shop }\n";
        let cfg = load(text, Path::new("/c.yml"), None, &NoSecrets).unwrap().config;
        assert!(release_pointer_problems(
            &cfg,
            text,
            Path::new("/c.yml"),
            Path::new("/var/lib/caretaker/shop"),
            Path::new("/")
        )
        .is_empty());
    }

    /// A relative config path and `--state-dir` are both taken against the working directory.
    #[test]
    fn relative_paths_are_compared_from_the_working_directory() {
        let text =
            "version: 1\napp:\n  name: shop\n  source: { git: /src, branch: main }\n  working_dir: ./state/current\n";
        let cfg = load(text, Path::new("c.yml"), None, &NoSecrets).unwrap().config;
        let check = |state: &str| {
            release_pointer_problems(&cfg, text, Path::new("c.yml"), Path::new(state), Path::new("/srv/x"))
        };
        assert!(check("state").is_empty());
        assert!(check("/srv/x/state").is_empty());
        let p = check("other");
        assert!(p.len() == 1 && p[0].to_string().contains("working_dir: \"/srv/x/other/current\""), "{p:?}");
    }
}
