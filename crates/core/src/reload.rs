//! Live reload's decision: what changes when a running daemon takes a new config
//! (`caretaker reload`, SIGHUP; docs/daemon.md, "Reload").
//!
//! [`plan`] compares the running config with the new one, both already validated. A service
//! is *changed* when anything that goes into its process changed: its own definition, or the
//! app's `env`, `env_files`, `working_dir` or `user` (every service inherits them). Secrets are
//! compared by value, so a changed password restarts the services that read it; the values
//! never leave this module. The contents of env files are not part of the config: a changed
//! env file is seen by `caretaker restart`, not by a reload.
//!
//! A service whose dependency restarts is not restarted with it (as with docker compose):
//! only changed services are.

use crate::config::{App, Config, EnvValue, Service};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a reload does. Service lists are in start (dependency) order of the config they
/// belong to: `restart` and `start` in the new config's, `stop` in reverse of the old one's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadPlan {
    /// Defined in both, with a different definition: stopped and started again.
    pub restart: Vec<String>,
    /// New in the config: started (if the app is up).
    pub start: Vec<String>,
    /// Gone from the config: stopped.
    pub stop: Vec<String>,
    /// Defined in both, the same: left alone.
    pub unchanged: Vec<String>,
    /// `http.listen` or `front_door.listen` changed: those listeners are bound anew (the new
    /// address before the old one is let go).
    pub rebind: bool,
    /// The other config sections that changed (`alerts`, `jobs`, `status`, `http`...): the
    /// daemon's HTTP listener, front door, alert evaluation and scheduler follow them.
    pub sections: Vec<String>,
}

impl ReloadPlan {
    /// Nothing at all differs.
    pub fn is_empty(&self) -> bool {
        self.restart.is_empty() && self.start.is_empty() && self.stop.is_empty() && self.sections.is_empty()
    }
}

/// Compares the running config `old` with the validated `new` one.
pub fn plan(old: &Config, new: &Config) -> ReloadPlan {
    let app_changed = app_key(&old.app) != app_key(&new.app);
    let olds: BTreeMap<&str, &Service> = old.services.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut p = ReloadPlan::default();
    for s in start_order(&new.services) {
        match olds.get(s.name.as_str()) {
            None => p.start.push(s.name.clone()),
            Some(o) if app_changed || service_key(o) != service_key(s) => p.restart.push(s.name.clone()),
            Some(_) => p.unchanged.push(s.name.clone()),
        }
    }
    let mut gone: Vec<String> = start_order(&old.services)
        .into_iter()
        .filter(|o| !new.services.iter().any(|s| s.name == o.name))
        .map(|o| o.name.clone())
        .collect();
    gone.reverse();
    p.stop = gone;

    p.rebind = old.http.listen != new.http.listen
        || old.front_door.as_ref().map(|f| &f.listen) != new.front_door.as_ref().map(|f| &f.listen)
        || old.tls.as_ref().map(|t| &t.listen) != new.tls.as_ref().map(|t| &t.listen);
    let sections: [Section; 17] = [
        ("http", |c| json(&c.http)),
        ("front_door", |c| json(&c.front_door)),
        ("tls", |c| json(&c.tls)),
        ("alerts", |c| json(&c.alerts)),
        ("jobs", |c| json(&c.jobs)),
        ("scheduler", |c| json(&c.scheduler)),
        ("status", |c| json(&c.status)),
        ("backup", |c| json(&c.backup)),
        ("update", |c| json(&c.update)),
        ("checks", |c| json(&c.checks)),
        ("timezone", |c| json(&c.timezone)),
        ("maintenance", |c| json(&c.maintenance)),
        ("compose", |c| json(&c.compose)),
        ("database", |c| json(&c.database)),
        ("files", |c| json(&c.files)),
        ("logs", |c| json(&c.logs)),
        ("app", |c| json(&c.app)),
    ];
    for (name, get) in sections {
        if get(old) != get(new) {
            p.sections.push(name.to_string());
        }
    }
    // A changed secret anywhere (SMTP password, webhook URL...) serializes as `***` both
    // times; compare the values themselves.
    let secrets = |c: &Config| c.secrets().into_iter().map(|s| s.expose().to_string()).collect::<Vec<_>>();
    if secrets(old) != secrets(new) {
        p.sections.push("secrets".to_string());
    }
    p
}

/// A config section by name, and how to read it for comparison.
type Section = (&'static str, fn(&Config) -> serde_json::Value);

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Secret values exposed next to the serialized form (which shows them as `***`).
fn env_key(env: &BTreeMap<String, EnvValue>) -> Vec<(String, String)> {
    env.iter().map(|(k, v)| (k.clone(), v.expose().to_string())).collect()
}

/// What of the `app:` section goes into every service's process.
fn app_key(a: &App) -> (Vec<(String, String)>, serde_json::Value, serde_json::Value, serde_json::Value) {
    (env_key(&a.env), json(&a.env_files), json(&a.working_dir), json(&a.user))
}

fn service_key(s: &Service) -> (serde_json::Value, Vec<(String, String)>) {
    (json(s), env_key(&s.env))
}

/// The services in start order: each after the ones it names in `after:`, otherwise as
/// written. `after:` names that are not services are ignored; a cycle (refused by validation)
/// falls back to the written order.
pub fn start_order(services: &[Service]) -> Vec<&Service> {
    let mut out: Vec<&Service> = Vec::with_capacity(services.len());
    let mut left: Vec<&Service> = services.iter().collect();
    while !left.is_empty() {
        let ready = left.iter().position(|s| {
            s.after.iter().all(|a| out.iter().any(|o| &o.name == a) || !services.iter().any(|x| &x.name == a))
        });
        let i = ready.unwrap_or(0);
        out.push(left.remove(i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, NoSecrets};

    fn cfg(services: &str, extra: &str) -> Config {
        let text = format!("version: 1\napp:\n  name: t\nservices:\n{services}\n{extra}\n");
        match load(&text, std::path::Path::new("caretaker.yml"), Some(0o600), &NoSecrets) {
            Ok(l) => l.config,
            Err(d) => panic!("{}", d.render(&text)),
        }
    }

    const TWO: &str = "  db: \"exec sleep 1\"\n  web: { command: \"exec sleep 2\", after: [db] }";

    #[test]
    fn the_same_config_changes_nothing() {
        let p = plan(&cfg(TWO, ""), &cfg(TWO, ""));
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.unchanged, ["db", "web"]);
        assert!(!p.rebind);
    }

    #[test]
    fn a_changed_command_restarts_that_service_only() {
        let new = "  db: \"exec sleep 1\"\n  web: { command: \"exec sleep 3\", after: [db] }";
        let p = plan(&cfg(TWO, ""), &cfg(new, ""));
        assert_eq!(p.restart, ["web"]);
        assert_eq!(p.unchanged, ["db"]);
        assert!(p.start.is_empty() && p.stop.is_empty() && p.sections.is_empty(), "{p:?}");
    }

    #[test]
    fn restarts_come_in_dependency_order_even_when_written_backwards() {
        let old = "  web: { command: \"exec sleep 2\", after: [db] }\n  db: \"exec sleep 1\"";
        let new = "  web: { command: \"exec sleep 3\", after: [db] }\n  db: \"exec sleep 4\"";
        assert_eq!(plan(&cfg(old, ""), &cfg(new, "")).restart, ["db", "web"]);
    }

    #[test]
    fn added_and_removed_services_are_started_and_stopped() {
        let old = "  db: \"exec sleep 1\"\n  a: { command: \"exec sleep 2\", after: [db] }\n  b: { command: \"exec sleep 2\", after: [a] }";
        let new = "  db: \"exec sleep 1\"\n  worker: { command: \"exec sleep 5\", after: [db] }";
        let p = plan(&cfg(old, ""), &cfg(new, ""));
        assert_eq!(p.start, ["worker"]);
        // Reverse start order: dependants first.
        assert_eq!(p.stop, ["b", "a"]);
        assert_eq!(p.unchanged, ["db"]);
    }

    #[test]
    fn app_env_restarts_every_service_and_restart_settings_count_too() {
        let mut new = cfg(TWO, "");
        new.app.env.insert("DEBUG".into(), EnvValue::Plain("1".into()));
        assert_eq!(plan(&cfg(TWO, ""), &new).restart, ["db", "web"]);
        let mut new = cfg(TWO, "");
        new.services[0].stop_timeout = std::time::Duration::from_secs(99);
        assert_eq!(plan(&cfg(TWO, ""), &new).restart, ["db"]);
    }

    #[test]
    fn listeners_schedules_and_alerts_are_named() {
        let old = cfg(TWO, "http: { listen: \"127.0.0.1:9001\" }");
        let new = cfg(TWO, "http: { listen: \"127.0.0.1:9002\" }\njobs:\n  r: { command: \"true\", schedule: hourly }");
        let p = plan(&old, &new);
        assert!(p.rebind);
        assert_eq!(p.sections, ["http", "jobs"]);
        assert!(p.restart.is_empty(), "{p:?}");
        let limits = cfg(TWO, "http: { listen: \"127.0.0.1:9001\", max_connections: 7 }");
        let p = plan(&old, &limits);
        assert!(!p.rebind, "same address: the socket is kept");
        assert_eq!(p.sections, ["http"]);
        // TLS settings (the front door is restarted with them; its slot and socket stay).
        let door = "front_door: { listen: \"127.0.0.1:80\", upstream: \"127.0.0.1:81\" }\n";
        let tls =
            |extra: &str| cfg(TWO, &format!("{door}tls: {{ names: [example.org], listen: \"127.0.0.1:443\"{extra} }}"));
        let p = plan(&tls(""), &tls(", hsts: { max_age: 1d }"));
        assert!(!p.rebind);
        assert_eq!(p.sections, ["tls"]);
        assert!(
            plan(&tls(""), &cfg(TWO, &format!("{door}tls: {{ names: [example.org], listen: \"127.0.0.1:8443\" }}")))
                .rebind
        );
    }
}
