use super::*;
use expect_test::{expect, Expect};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A [`SecretSource`] over maps: files and environment without touching the machine.
#[derive(Default)]
struct FakeSource {
    files: HashMap<PathBuf, (String, u32)>,
    env: HashMap<String, String>,
}

impl SecretSource for FakeSource {
    fn read_file(&self, path: &Path) -> Result<String, String> {
        self.files.get(path).map(|(t, _)| t.clone()).ok_or_else(|| "No such file or directory".to_string())
    }
    fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn file_mode(&self, path: &Path) -> Option<u32> {
        self.files.get(path).map(|(_, m)| *m)
    }
    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }
}

fn load_str(text: &str) -> Result<Loaded, Diagnostics> {
    load(text, Path::new("/etc/caretaker/caretaker.yml"), Some(0o600), &FakeSource::default())
}

const MINIMAL: &str = "version: 1\napp:\n  name: guestbook\n";

#[test]
fn minimal_config_gets_defaults() {
    let cfg = load_str(MINIMAL).unwrap().config;
    assert_eq!(cfg.app.name, "guestbook");
    assert!(cfg.services.is_empty());
    assert_eq!(cfg.update.keep_releases, 5);
    assert_eq!(cfg.logs.keep, 5);
    assert!(cfg.alerts.rules.job_failed);
}

#[test]
fn design_brief_example_parses() {
    let text = r#"
version: 1
app:
  name: guestbook
  domain: guestbook.example.org
  source: { git: "https://example.org/guestbook.git", branch: main }
  build: ["pip install -r requirements.txt"]
  migrate: ["python manage.py migrate --noinput"]
  env: { DJANGO_SETTINGS_MODULE: config.settings.production }
  env_files: [".envs/.production/.django"]
services:
  web:    { command: "gunicorn config.wsgi -b 127.0.0.1:8001", health: { http: "http://127.0.0.1:8001/healthz" } }
  worker: { command: "celery -A config worker", after: [web] }
database: { kind: postgres, url_file: /etc/caretaker/database_url }
files: [ /srv/guestbook/media ]
backup:
  repository: "sftp:backup@backup.example.org:/srv/backups/guestbook"
  password_file: /etc/caretaker/backup.key
  schedule: "daily 00:30"
  keep: { daily: 7, weekly: 5, monthly: 4 }
update: { schedule: "daily 06:30", automatic: false }
alerts:
  smtp: { host: mail.example.org, from: caretaker@example.org }
  notify: [ { email: ops@example.org }, { webhook: "https://ntfy.example.org/guestbook" } ]
  rules: { filesystem_free_percent: { warning: 20, critical: 15 }, backup_max_age: 32h }
"#;
    let mut src = FakeSource::default();
    src.files.insert("/etc/caretaker/database_url".into(), ("postgres://g:pw@127.0.0.1/g\n".into(), 0o600));
    src.files.insert("/etc/caretaker/backup.key".into(), ("correct horse battery staple\n".into(), 0o600));
    let loaded = load(text, Path::new("/etc/caretaker/caretaker.yml"), Some(0o600), &src).unwrap();
    let cfg = loaded.config;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(cfg.services.len(), 2);
    assert_eq!(cfg.services[1].after, vec!["web".to_string()]);
    let b = cfg.backup.as_ref().unwrap();
    assert_eq!(b.password.expose(), "correct horse battery staple");
    assert_eq!(b.repository.to_string(), "sftp:backup@backup.example.org:/srv/backups/guestbook");
    assert_eq!(b.keep.monthly, Some(4));
    assert_eq!(cfg.alerts.rules.filesystem_free_percent.critical, 15.0);
    assert_eq!(cfg.app.env_files, vec![PathBuf::from(".envs/.production/.django")]);
}

fn check_errors(text: &str, expected: Expect) {
    let diags = load_str(text).expect_err("config should be rejected");
    expected.assert_eq(&diags.render(text));
}

#[test]
fn bad_configs_are_reported_with_location_and_hint() {
    // Table of bad configs; each rendered message is a snapshot.
    let cases: Vec<(&str, Expect)> = vec![
        (
            "version: 1\napp:\n  name: guestbook\nservices:\n  web:\n    command: [run, 3]\n    restart: sometimes\nfiles: /srv/media\n",
            expect![[r#"
                error: `services.web.restart` has an unknown value "sometimes"
                  --> /etc/caretaker/caretaker.yml:7:14
                  |
                7 |     restart: sometimes
                  |              ^
                   = hint: use one of: always, on-failure, never

                error: `files` must be a list, found a single value
                  --> /etc/caretaker/caretaker.yml:8:8
                  |
                8 | files: /srv/media
                  |        ^
                   = hint: write `[a, b]` or one `- item` per line

                2 errors, 0 warnings
            "#]],
        ),
        (
            "version: 1\napp:\n  name: guestbook\nbackup:\n  repository: /srv/backup\n  password: \"a long enough password\"\n  schedul: daily\n",
            expect![[r#"
                error: `backup` is configured but there is nothing to back up
                  --> /etc/caretaker/caretaker.yml:4:1
                  |
                4 | backup:
                  | ^
                   = hint: add `database:` and/or `files:` (or `compose.volumes`)

                error: unknown key `schedul` in `backup`
                  --> /etc/caretaker/caretaker.yml:7:3
                  |
                7 |   schedul: daily
                  |   ^
                   = hint: did you mean `schedule`?

                2 errors, 0 warnings
            "#]],
        ),
    ];
    for (text, expected) in cases {
        check_errors(text, expected);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"version: 1
app:
  name: Guest Book
  colour: blue
services:
  web:
    command: "serve"
    after: [wbe]
    stop_timeout: 10 minutes please
    health: { http: "http://127.0.0.1:8000/", interval: 10s, timeout: 30s }
  worker: { command: "work", after: [web] }
database:
  kind: postgress
  url_file: secrets/db_url
files:
  - /srv/media
backup:
  repository: /srv/backups
  password_file: /etc/caretaker/nonexistent.key
  schedule: "daily 25:00"
  keep: { daily: 7 }
update:
  schedule: "daily 06:30"
  automatic: yes
jobs:
  cleanup: { command: "x", schedule: "Sun 21:00", timeout: 90 }
"#;
    let diags = load_str(text).expect_err("many problems");
    let rendered = diags.render(text);
    let summary: Vec<String> = diags
        .0
        .iter()
        .map(|d| format!("{}:{} {}", d.location.unwrap().line, d.location.unwrap().column, d.path))
        .collect();
    expect![[r#"
        [
            "3:9 app.name",
            "4:3 app.colour",
            "8:13 services.web.after[0]",
            "9:19 services.web.stop_timeout",
            "10:5 services.web.health",
            "13:9 database.kind",
            "14:13 database.url_file",
            "19:18 backup.password_file",
            "20:13 backup.schedule",
            "24:14 update.automatic",
            "26:60 jobs.cleanup.timeout",
        ]
    "#]]
    .assert_debug_eq(&summary);
    assert!(rendered.contains("did you mean `web`?"), "{rendered}");
    assert!(rendered.contains("did you mean `postgres`?"), "{rendered}");
    assert!(rendered.contains("cannot read secret file /etc/caretaker/secrets/db_url"), "{rendered}");
    assert!(rendered.contains("write `true`"), "{rendered}");
    assert!(rendered.contains("11 errors"), "{rendered}");
}

#[test]
fn rendered_messages_for_each_kind_of_mistake() {
    // One line per kind of mistake the issue names: wrong type, unknown key with suggestion,
    // bad duration, bad schedule, missing secret file, unresolvable reference.
    let cases = [
        ("wrong type", "version: 1\napp:\n  name: [a, b]\n"),
        ("unknown key", "version: 1\napp:\n  name: x\n  domian: x.org\n"),
        ("bad duration", "version: 1\napp:\n  name: x\nupdate:\n  health_timeout: 2 fortnights\n"),
        ("bad schedule", "version: 1\napp:\n  name: x\nupdate:\n  schedule: \"Sunday 24:00\"\n"),
        (
            "missing secret file",
            "version: 1\napp:\n  name: x\nfiles: [/srv]\nbackup:\n  repository: /b\n  password_file: /nope/key\n",
        ),
        ("unresolvable reference", "version: 1\napp:\n  name: x\nservices:\n  worker: { command: w, after: [web] }\n"),
        ("bad yaml", "version: 1\napp:\n  name: x\n   bad: indent\n"),
        ("duplicate key", "version: 1\napp:\n  name: x\napp:\n  name: y\n"),
        ("missing section", "version: 1\n"),
        ("newer version", "version: 2\napp:\n  name: x\n"),
    ];
    let mut out = String::new();
    for (what, text) in cases {
        let diags = load_str(text).expect_err(what);
        for d in &diags.0 {
            out.push_str(&format!("{what}: {d}\n"));
        }
    }
    expect![[r#"
        wrong type: /etc/caretaker/caretaker.yml:3:9: error: `app.name` must be a string, found a list
        unknown key: /etc/caretaker/caretaker.yml:4:3: error: unknown key `domian` in `app` (hint: did you mean `domain`?)
        bad duration: /etc/caretaker/caretaker.yml:5:19: error: `update.health_timeout`: unknown unit "fortnights" in duration "2 fortnights" (hint: units are ms, s, m, h, d, w (long forms like `min`, `hours`, `days` work too), e.g. `90s`, `15m`, `1h30m`, `3d`)
        bad schedule: /etc/caretaker/caretaker.yml:5:13: error: `update.schedule`: expected a time like 00:30, got "24:00": hours go from 00 to 23 (hint: write times as HH:MM on a 24-hour clock, e.g. `00:30` or `21:00`; `*:15` is every hour at :15, `*:0/15` every 15 minutes)
        missing secret file: /etc/caretaker/caretaker.yml:7:18: error: cannot read secret file /nope/key: No such file or directory (hint: create the file (mode 0600) or point the key at the right file; relative paths are relative to the config file)
        unresolvable reference: /etc/caretaker/caretaker.yml:5:33: error: service `worker` starts after `web`, which is not defined (hint: services defined: worker)
        bad yaml: /etc/caretaker/caretaker.yml:4:7: error: this is not valid YAML: mapping values are not allowed in this context (hint: check indentation and quoting near this place)
        duplicate key: /etc/caretaker/caretaker.yml:4:1: error: key `app` appears twice in the same mapping (first at line 2) (hint: remove one of them)
        missing section: /etc/caretaker/caretaker.yml:1:1: error: `the config file` is missing the required key `app` (hint: every config names its app: `app: { name: myapp }`)
        newer version: /etc/caretaker/caretaker.yml:1:10: error: this caretaker reads config version 1, the file says version 2 (hint: the file was written for a newer caretaker; upgrade caretaker)
    "#]]
    .assert_eq(&out);
}

#[test]
fn service_cycle_is_reported() {
    let text =
        "version: 1\napp:\n  name: x\nservices:\n  a: { command: a, after: [b] }\n  b: { command: b, after: [a] }\n";
    let d = load_str(text).unwrap_err();
    assert!(d.0[0].message.contains("a → b → a"), "{:?}", d.0);
}

#[test]
fn secrets_from_env_and_world_readable_config() {
    let text = "version: 1\napp:\n  name: x\n  env:\n    KEY: { secret_env: APP_KEY }\n    TOKEN: { secret: \"inline-token-value\" }\n";
    let mut src = FakeSource::default();
    src.env.insert("APP_KEY".into(), "from-the-environment".into());
    let loaded = load(text, Path::new("/c/caretaker.yml"), Some(0o600), &src).unwrap();
    assert_eq!(loaded.config.app.env["KEY"].expose(), "from-the-environment");
    // World-readable with an inline secret: refused, then allowed on request.
    let mut d = load(text, Path::new("/c/caretaker.yml"), Some(0o644), &src).unwrap_err();
    assert!(d.has_errors());
    assert!(d.0[0].message.contains("readable by every user"), "{:?}", d.0);
    allow_world_readable(&mut d);
    assert!(!d.has_errors());
    // Missing env var: error naming it.
    let d = load(text, Path::new("/c/caretaker.yml"), Some(0o600), &FakeSource::default()).unwrap_err();
    assert!(d.0[0].message.contains("`APP_KEY` is not set"), "{:?}", d.0);
}

#[test]
fn secret_values_do_not_appear_in_serialized_config() {
    let s = template::InitSecrets {
        backup_password: "bk-0123456789abcdef".into(),
        database_password: "db-0123456789abcdef".into(),
        app_secret_key: "sk-0123456789abcdef".into(),
    };
    let text = template::render("guestbook", Some("guestbook.example.org"), &s);
    let cfg = load_str(&text).unwrap().config;
    let json = serde_json::to_string(&cfg).unwrap();
    let debug = format!("{cfg:?}");
    for secret in ["bk-0123456789abcdef", "db-0123456789abcdef", "sk-0123456789abcdef"] {
        assert!(!json.contains(secret), "{json}");
        assert!(!debug.contains(secret), "{debug}");
    }
    assert_eq!(cfg.secrets().len(), 4, "app secret key, DATABASE_URL, database url, backup password");
}

#[test]
fn repository_notations() {
    let cases = [
        ("/srv/b", "local:/srv/b"),
        ("local:/srv/b", "local:/srv/b"),
        ("sftp:backup@host.example:/srv/b", "sftp:backup@host.example:/srv/b"),
        ("sftp://backup@127.0.0.1:2222//srv/b", "sftp://backup@127.0.0.1:2222//srv/b"),
        ("s3:http://127.0.0.1:9000/bucket/app", "s3:http://127.0.0.1:9000/bucket/app"),
    ];
    for (input, shown) in cases {
        let text = format!("version: 1\napp:\n  name: x\nfiles: [/f]\nbackup:\n  repository: \"{input}\"\n  password: \"0123456789abcdef\"\n  s3: {{ access_key_id: a, secret_access_key: b }}\n");
        let cfg = load_str(&text).unwrap_or_else(|d| panic!("{input}: {}", d.render(&text))).config;
        assert_eq!(cfg.backup.unwrap().repository.to_string(), shown, "{input}");
    }
    let text = "version: 1\napp:\n  name: x\nfiles: [/f]\nbackup:\n  repository: \"ftp://host/x\"\n  password: \"0123456789abcdef\"\n";
    let d = load_str(text).unwrap_err();
    assert!(d.0[0].message.contains("unsupported repository type `ftp`"), "{:?}", d.0);
}

#[test]
fn observe_sections_http_checks_scheduler() {
    let text = "version: 1\napp: { name: a }\nhttp: { listen: \"0.0.0.0:9100\" }\nchecks:\n  home: { http: \"https://example.org/\", expect_status: 200, timeout: 5s }\n  redis: { tcp: \"127.0.0.1:6379\", critical: false }\n  queue: { command: \"./queue-ok\" }\nscheduler: { random_delay: 10m }\n";
    let cfg = load_str(text).unwrap().config;
    assert_eq!(cfg.http.listen, "0.0.0.0:9100");
    assert_eq!(cfg.checks.len(), 3);
    assert!(!cfg.checks[1].critical);
    assert_eq!(cfg.scheduler.random_delay, std::time::Duration::from_secs(600));
    let defaults = load_str(MINIMAL).unwrap().config;
    assert_eq!(defaults.http.listen, DEFAULT_HTTP_LISTEN);
    assert!(defaults.checks.is_empty());
}

#[test]
fn bad_observe_sections_are_reported() {
    check_errors(
        "version: 1\napp: { name: a }\nhttp: { listen: nowhere, port: 1 }\nchecks:\n  both: { tcp: \"127.0.0.1:1\", command: x }\n  status: { tcp: \"127.0.0.1:1\", expect_status: 200 }\nscheduler: { random_delay: soon }\n",
        expect![[r#"
            error: `http.listen` must be host:port, found "nowhere"
              --> /etc/caretaker/caretaker.yml:3:17
              |
            3 | http: { listen: nowhere, port: 1 }
              |                 ^
               = hint: e.g. `127.0.0.1:5432`

            error: unknown key `port` in `http`
              --> /etc/caretaker/caretaker.yml:3:26
              |
            3 | http: { listen: nowhere, port: 1 }
              |                          ^
               = hint: known keys here: header_timeout, listen, max_connections

            error: `checks.both` needs exactly one probe: `http`, `tcp` or `command`
              --> /etc/caretaker/caretaker.yml:5:3
              |
            5 |   both: { tcp: "127.0.0.1:1", command: x }
              |   ^
               = hint: e.g. `homepage: { http: "https://example.org/", expect_status: 200 }`

            error: `expect_status` and `expect_body` only apply to `http` probes
              --> /etc/caretaker/caretaker.yml:6:3
              |
            6 |   status: { tcp: "127.0.0.1:1", expect_status: 200 }
              |   ^

            error: `scheduler.random_delay`: expected a number in duration "soon", got "soon"
              --> /etc/caretaker/caretaker.yml:7:28
              |
            7 | scheduler: { random_delay: soon }
              |                            ^
               = hint: units are ms, s, m, h, d, w (long forms like `min`, `hours`, `days` work too), e.g. `90s`, `15m`, `1h30m`, `3d`

            5 errors, 0 warnings
        "#]],
    );
}

#[test]
fn expect_status_takes_codes_classes_ranges_and_lists() {
    /// (yaml value, ranges, display, accepted, refused)
    type Case = (&'static str, &'static [(u16, u16)], &'static str, &'static [u16], &'static [u16]);
    let cases: &[Case] = &[
        ("200", &[(200, 200)], "200", &[200], &[204, 302]),
        ("\"3xx\"", &[(300, 399)], "3xx", &[301, 308], &[200, 400]),
        ("\"200-302\"", &[(200, 302)], "200-302", &[204, 302], &[303, 500]),
        ("[\"2xx\", 302]", &[(200, 299), (302, 302)], "2xx, 302", &[200, 302], &[301, 404]),
    ];
    for (value, ranges, shown, ok, bad) in cases {
        let text = format!(
            "version: 1\napp: {{ name: a }}\nchecks:\n  home: {{ http: \"http://127.0.0.1:8000/\", expect_status: {value} }}\n"
        );
        let cfg = load_str(&text).unwrap_or_else(|d| panic!("{value}: {d:?}")).config;
        let Probe::Http(h) = &cfg.checks[0].probe else { panic!("{value}: not http") };
        assert_eq!(h.expect_status.0, *ranges, "{value}");
        assert_eq!(h.expect_status.to_string(), *shown, "{value}");
        assert!(ok.iter().all(|s| h.expect_status.accepts(*s)), "{value}");
        assert!(!bad.iter().any(|s| h.expect_status.accepts(*s)), "{value}");
    }
    let default = ExpectStatus::default();
    assert_eq!((default.to_string(), default.accepts(204), default.accepts(301)), ("2xx".into(), true, false));
}

#[test]
fn bad_expect_status_and_ca_file_are_reported() {
    check_errors(
        "version: 1\napp: { name: a }\nchecks:\n  a: { http: \"http://h/\", expect_status: [200, \"6xx\", \"302-301\"] }\n  b: { http: \"http://h/\", ca_file: ca.pem }\n",
        expect![[r#"
            error: `checks.a.expect_status[1]`: "6xx" is not an HTTP status class (1xx to 5xx)
              --> /etc/caretaker/caretaker.yml:4:48
              |
            4 |   a: { http: "http://h/", expect_status: [200, "6xx", "302-301"] }
              |                                                ^
               = hint: e.g. `200`, `"2xx"`, `"200-399"` or `[200, 302]`

            error: `checks.a.expect_status[2]`: "302-301" is an empty range
              --> /etc/caretaker/caretaker.yml:4:55
              |
            4 |   a: { http: "http://h/", expect_status: [200, "6xx", "302-301"] }
              |                                                       ^
               = hint: e.g. `200`, `"2xx"`, `"200-399"` or `[200, 302]`

            error: `ca_file` only applies to `https://` probes
              --> /etc/caretaker/caretaker.yml:5:3
              |
            5 |   b: { http: "http://h/", ca_file: ca.pem }
              |   ^

            3 errors, 0 warnings
        "#]],
    );
}

#[test]
fn service_backoff_defaults_and_limits() {
    use std::time::Duration;
    let base = "version: 1\napp:\n  name: guestbook\nservices:\n";
    let cfg =
        load_str(&format!("{base}  web: \"run\"\n  worker:\n    command: run\n    backoff: {{ initial: 100ms }}\n"))
            .unwrap()
            .config;
    assert_eq!(cfg.services[0].backoff, Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30) });
    assert_eq!(cfg.services[1].backoff.initial, Duration::from_millis(100));
    assert_eq!(cfg.services[1].backoff.max, Duration::from_secs(30));
    let text = format!("{base}  web:\n    command: run\n    backoff: {{ initial: 1m, max: 10s }}\n");
    let diags = load_str(&text).unwrap_err();
    assert!(diags.render(&text).contains("`services.web.backoff.max` is shorter than"), "{}", diags.render(&text));
}

#[test]
fn status_page_section() {
    let text = "version: 1\napp: { name: a }\nstatus:\n  users:\n    admin: { password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\" }\n  token_file: /etc/caretaker/status.token\n";
    let mut src = FakeSource::default();
    src.files.insert("/etc/caretaker/status.token".into(), ("tok-0123456789\n".into(), 0o600));
    let cfg = load(text, Path::new("/etc/caretaker/caretaker.yml"), Some(0o600), &src).unwrap().config;
    let status = cfg.status.unwrap();
    assert!(status.users["admin"].starts_with("$argon2id$"));
    assert_eq!(status.token_file.unwrap(), std::path::PathBuf::from("/etc/caretaker/status.token"));
    assert!(load_str(MINIMAL).unwrap().config.status.is_none());
}

#[test]
fn bad_status_page_sections_are_reported() {
    check_errors(
        "version: 1\napp: { name: a }\nstatus:\n  users:\n    admin: { password_hash: hunter2, password: x }\n    bob: {}\n  token: abc\n",
        expect![[r#"
            error: `status.users.admin.password_hash` must be an argon2 hash like "$argon2id$v=19$m=19456,t=2,p=1$...$...", not a password
              --> /etc/caretaker/caretaker.yml:5:29
              |
            5 |     admin: { password_hash: ***, password: *** }
              |                             ^
               = hint: make one with `caretaker status-page hash-password` (reads the password from stdin)

            error: unknown key `password` in `status.users.admin`
              --> /etc/caretaker/caretaker.yml:5:38
              |
            5 |     admin: { password_hash: ***, password: *** }
              |                                  ^
               = hint: did you mean `password_hash`?

            error: `status.users.bob` is missing the required key `password_hash`
              --> /etc/caretaker/caretaker.yml:6:5
              |
            6 |     bob: {}
              |     ^
               = hint: make one with `caretaker status-page hash-password` (reads the password from stdin)

            error: unknown key `token` in `status`
              --> /etc/caretaker/caretaker.yml:7:3
              |
            7 |   token: ***
              |   ^
               = hint: did you mean `token_file`?

            4 errors, 0 warnings
        "#]],
    );
    check_errors(
        "version: 1\napp: { name: a }\nstatus: {}\n",
        expect![[r#"
            error: `status` needs `users` or `token_file`, or nobody can read the status page
              --> /etc/caretaker/caretaker.yml:3:1
              |
            3 | status: {}
              | ^
               = hint: e.g. `status: { users: { admin: { password_hash: "$argon2id$..." } } }`

            1 error, 0 warnings
        "#]],
    );
}

#[test]
fn compose_section_defaults_and_settings() {
    let text = "version: 1\napp:\n  name: guestbook\n  migrate: [\"demo migrate\"]\ncompose:\n  files: [docker-compose.yml, prod.yml]\n  app_service: web\n  services:\n    web: { health: { http: \"http://127.0.0.1:8001/healthz\" }, crash_loop: { restarts: 3, within: 30s } }\n  volumes: [media, { name: static, allow_empty: true }]\n";
    let cfg = load_str(text).unwrap().config;
    let c = cfg.compose.as_ref().unwrap();
    assert_eq!(c.project, "guestbook", "the project is named after the app by default");
    assert_eq!(c.files, vec![PathBuf::from("docker-compose.yml"), PathBuf::from("prod.yml")]);
    assert_eq!(c.cli, ComposeCli::Auto);
    assert_eq!(c.images, ImageSource::Build);
    assert_eq!(c.stop_timeout, std::time::Duration::from_secs(10));
    let web = c.service("web").unwrap();
    assert!(web.health.is_some());
    assert_eq!(web.crash_loop.restarts, 3);
    assert_eq!(
        c.volumes.iter().map(|v| (v.name.as_str(), v.allow_empty)).collect::<Vec<_>>(),
        [("media", false), ("static", true)]
    );
    let minimal = load_str("version: 1\napp:\n  name: g\ncompose: { project: other, cli: docker-compose }\n").unwrap();
    let c = minimal.config.compose.unwrap();
    assert_eq!((c.project.as_str(), c.cli), ("other", ComposeCli::DockerDashCompose));
    assert!(c.files.is_empty());
}

#[test]
fn bad_compose_sections_are_reported() {
    check_errors(
        "version: 1\napp:\n  name: g\n  migrate: [x]\nservices:\n  web: run\ncompose:\n  project: Big\n  cli: podman\n  volumes: [\"a b\"]\n  services:\n    web: { health: { tcp: \"127.0.0.1:1\" }, restart: always }\n",
        expect![[r#"
            error: `services` and `compose` are two ways to run the app; use one
              --> /etc/caretaker/caretaker.yml:5:1
              |
            5 | services:
              | ^
               = hint: with `compose:`, the services are the compose file's; settings for them go under `compose.services`

            error: the app's migrations and jobs run in one-off containers, but `compose.app_service` does not say of which service
              --> /etc/caretaker/caretaker.yml:7:1
              |
            7 | compose:
              | ^
               = hint: e.g. `app_service: web` (the service whose image holds the app's code)

            error: compose project name "Big" is not accepted by docker compose
              --> /etc/caretaker/caretaker.yml:8:12
              |
            8 |   project: Big
              |            ^
               = hint: use lowercase letters, digits, `-` and `_`, starting with a letter or digit

            error: `compose.cli` has an unknown value "podman"
              --> /etc/caretaker/caretaker.yml:9:8
              |
            9 |   cli: podman
              |        ^
               = hint: use one of: auto, docker compose, docker-compose

            error: volume name "a b" must use only letters, digits, `-`, `_` and `.`
              --> /etc/caretaker/caretaker.yml:10:13
               |
            10 |   volumes: ["a b"]
               |             ^

            error: unknown key `restart` in `compose.services.web`
              --> /etc/caretaker/caretaker.yml:12:44
               |
            12 |     web: { health: { tcp: "127.0.0.1:1" }, restart: always }
               |                                            ^
               = hint: known keys here: crash_loop, critical, health

            6 errors, 0 warnings
        "#]],
    );
}

#[test]
fn database_compose_service_needs_a_compose_app_and_a_server() {
    check_errors(
        "version: 1\napp:\n  name: g\ndatabase: { kind: sqlite, path: /srv/g.db, compose_service: db }\n",
        expect![[r#"
            error: `compose_service` is for PostgreSQL and MariaDB servers in a container
              --> /etc/caretaker/caretaker.yml:4:1
              |
            4 | database: { kind: sqlite, path: /srv/g.db, compose_service: db }
              | ^
               = hint: a SQLite file in a volume is backed up with `compose.volumes`

            error: `database.compose_service` names a compose service, but the app has no `compose:` section
              --> /etc/caretaker/caretaker.yml:4:1
              |
            4 | database: { kind: sqlite, path: /srv/g.db, compose_service: db }
              | ^

            2 errors, 0 warnings
        "#]],
    );
    let ok = load_str("version: 1\napp:\n  name: g\ncompose: {}\ndatabase: { kind: postgres, url: \"postgres://a:b@db/g\", compose_service: db }\n");
    assert_eq!(ok.unwrap().config.database.unwrap().compose_service.as_deref(), Some("db"));
}

// ---- hardening (issue #16): what `config check` must refuse, and what it must not show -----

#[test]
fn durations_longer_than_100_years_are_refused() {
    check_errors(
        "version: 1\napp: { name: a }\njobs:\n  j: { command: x, schedule: daily, timeout: 18446744073709551615s }\n",
        expect![[r#"
            error: `jobs.j.timeout`: duration "18446744073709551615s" is too long
              --> /etc/caretaker/caretaker.yml:4:46
              |
            4 |   j: { command: x, schedule: daily, timeout: 18446744073709551615s }
              |                                              ^
               = hint: durations can be at most 100 years (`36500d`)

            1 error, 0 warnings
        "#]],
    );
}

#[test]
fn malformed_database_urls_and_tls_are_refused_at_check_time() {
    for (url, want) in [
        ("postgres://u:pw@db:notaport/app", "the port is not a number"),
        ("postgres://u:p%zzw@db/app", "invalid percent-encoding"),
        ("postgres://u:pw@[::1/app", "unclosed ["),
        ("postgres://u:pw@db/app?sslmode=require", "sslmode=require needs TLS"),
        ("postgres://u:pw@db/app?sslmode=verify-full", "sslmode=verify-full needs TLS"),
    ] {
        let text = format!("version: 1\napp: {{ name: a }}\ndatabase:\n  kind: postgres\n  url: \"{url}\"\n");
        let d = load_str(&text).expect_err(url);
        let shown = d.render(&text);
        assert!(shown.contains(want), "{url}: {shown}");
        assert!(shown.contains("caretaker.yml:5:3"), "{url}: {shown}");
        assert!(!shown.contains("pw") && !shown.contains("p%zzw"), "{url}: {shown}");
    }
    for ok in [
        "postgres://u:pw@db:5433/app?sslmode=disable",
        "postgres://u:pw@[::1]:5432/app",
        "postgres:///app?host=%2Frun%2Fpostgresql",
    ] {
        let text = format!("version: 1\napp: {{ name: a }}\ndatabase: {{ kind: postgres, url: \"{ok}\" }}\n");
        assert!(load_str(&text).is_ok(), "{ok}");
    }
    check_errors(
        "version: 1\napp: { name: a }\ndatabase:\n  kind: mariadb\n  url: \"mysql://u:secret-pw@db:notaport/app\"\n",
        expect![[r#"
            error: the database url: the port is not a number from 1 to 65535
              --> /etc/caretaker/caretaker.yml:5:3
              |
            5 |   url: ***
              |   ^
               = hint: the form is scheme://user:password@host:port/database; write special characters in the password as %XX (e.g. %40 for @)

            1 error, 0 warnings
        "#]],
    );
}

#[test]
fn missing_status_token_file_is_refused() {
    check_errors(
        "version: 1\napp: { name: a }\nstatus:\n  token_file: /etc/caretaker/status.token\n",
        expect![[r#"
            error: status token file /etc/caretaker/status.token: does not exist
              --> /etc/caretaker/caretaker.yml:4:15
              |
            4 |   token_file: /etc/caretaker/status.token
              |               ^
               = hint: create it with a long random token, owned by the user caretaker runs as, mode 0600

            1 error, 0 warnings
        "#]],
    );
}

#[test]
fn world_readable_status_token_file_is_refused() {
    let text = "version: 1\napp: { name: a }\nstatus:\n  token_file: status.token\n";
    let mut src = FakeSource::default();
    src.files.insert("/etc/caretaker/status.token".into(), ("tok-0123456789\n".into(), 0o644));
    let d = load(text, Path::new("/etc/caretaker/caretaker.yml"), Some(0o600), &src).unwrap_err();
    expect![[r#"
        error: status token file /etc/caretaker/status.token: is readable by every user on this machine
          --> /etc/caretaker/caretaker.yml:4:15
          |
        4 |   token_file: status.token
          |               ^
           = hint: create it with a long random token, owned by the user caretaker runs as, mode 0600

        1 error, 0 warnings
    "#]]
    .assert_eq(&d.render(text));
}

#[test]
fn random_delay_longer_than_a_schedule_period_is_refused() {
    check_errors(
        "version: 1\napp: { name: a }\nfiles: [/srv]\nbackup: { repository: /b, password: 0123456789abcdef, schedule: daily 00:30 }\nscheduler:\n  random_delay: 36500d\n",
        expect![[r#"
            error: `scheduler.random_delay` (36500d) is not shorter than the time between two runs of the `backup` task (1d): runs would be pushed past their next slot
              --> /etc/caretaker/caretaker.yml:6:3
              |
            6 |   random_delay: 36500d
              |   ^
               = hint: use a delay shorter than 1d, e.g. a few minutes

            1 error, 0 warnings
        "#]],
    );
    let ok = "version: 1\napp: { name: a }\nfiles: [/srv]\nbackup: { repository: /b, password: 0123456789abcdef, schedule: daily 00:30 }\nscheduler: { random_delay: 23h }\n";
    assert!(load_str(ok).is_ok());
}

#[test]
fn a_second_yaml_document_is_refused() {
    check_errors(
        "version: 1\napp: { name: a }\n---\nversion: 1\napp: { name: b }\n",
        expect![[r#"
        error: a second YAML document starts here; caretaker reads one document per config file
          --> /etc/caretaker/caretaker.yml:3:1
          |
        3 | ---
          | ^
           = hint: remove the `---` line and merge the two parts, or split them into two config files

        1 error, 0 warnings
    "#]],
    );
    // A leading `---` and an indented one inside a block scalar are fine.
    assert!(load_str("---\nversion: 1\napp:\n  name: a\n  migrate: |\n    echo\n    ---\n").is_ok());
}

#[test]
fn non_utf8_config_gets_a_location() {
    let bytes = b"version: 1\napp:\n  name: caf\xe9\n";
    let d = decode(bytes, Path::new("/etc/caretaker/caretaker.yml")).unwrap_err();
    expect![[r#"
        error: the config file is not valid UTF-8 (byte 0xe9 here)
          --> /etc/caretaker/caretaker.yml:3:12
          |
        3 |   name: caf�
          |            ^
           = hint: save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)

        1 error, 0 warnings
    "#]]
    .assert_eq(&d.render(&String::from_utf8_lossy(bytes)));
    assert_eq!(decode(b"version: 1\n", Path::new("x")).unwrap(), "version: 1\n");
}

#[test]
fn value_errors_are_reported_together_with_unknown_keys() {
    // An unknown key in one section does not hide a missing probe or notifier in another.
    check_errors(
        "version: 1\napp: { name: a, nmae: b }\nchecks:\n  home: { timeout: 5s }\nalerts:\n  notify: [ {} ]\n",
        expect![[r#"
            error: unknown key `nmae` in `app`
              --> /etc/caretaker/caretaker.yml:2:17
              |
            2 | app: { name: a, nmae: b }
              |                 ^
               = hint: did you mean `name`?

            error: `checks.home` needs exactly one probe: `http`, `tcp` or `command`
              --> /etc/caretaker/caretaker.yml:4:3
              |
            4 |   home: { timeout: 5s }
              |   ^
               = hint: e.g. `homepage: { http: "https://example.org/", expect_status: 200 }`

            error: `alerts.notify[0]` needs exactly one of `email`, `webhook` or `alertmanager`
              --> /etc/caretaker/caretaker.yml:6:13
              |
            6 |   notify: [ {} ]
              |             ^
               = hint: e.g. `- email: ops@example.org`, `- webhook: https://ntfy.example.org/app` or `- alertmanager: http://127.0.0.1:9093`

            3 errors, 0 warnings
        "#]],
    );
}

#[test]
fn diagnostics_never_quote_secret_values() {
    let cases = [
        // A typo of a secret key: the value is quoted as an unknown key.
        "version: 1\napp: { name: a }\nfiles: [/srv]\nbackup:\n  repository: /b\n  pasword: \"SECRET-typo-1\"\n",
        // A secret given twice.
        "version: 1\napp: { name: a }\nfiles: [/srv]\nbackup:\n  repository: /b\n  password: \"SECRET-twice-2\"\n  password_env: X\n",
        // A bad `kind:` on the line of a URL with a password.
        "version: 1\napp: { name: a }\ndatabase: { kind: postgrs, url: \"postgres://app:SECRET-url-3@db/app\" }\n",
        // The same key twice (a YAML error).
        "version: 1\napp: { name: a }\nfiles: [/srv]\nbackup:\n  repository: /b\n  password: \"SECRET-dup-4\"\n  password: \"SECRET-dup-4\"\n",
    ];
    for text in cases {
        let shown = load_str(text).expect_err(text).render(text);
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
}

#[test]
fn backup_retry_max_time_defaults_to_ten_minutes_and_can_be_set_or_turned_off() {
    let base =
        "version: 1\napp:\n  name: x\nfiles: [/f]\nbackup:\n  repository: /srv/b\n  password: \"0123456789abcdef\"\n";
    let cfg = load_str(base).unwrap().config;
    assert_eq!(cfg.backup.unwrap().retry.max_time, std::time::Duration::from_secs(600));
    for (value, secs) in [("30m", 1800), ("0s", 0)] {
        let text = format!("{base}  retry: {{ max_time: {value} }}\n");
        let cfg = load_str(&text).unwrap_or_else(|d| panic!("{value}: {}", d.render(&text))).config;
        assert_eq!(cfg.backup.unwrap().retry.max_time, std::time::Duration::from_secs(secs), "{value}");
    }
    let text = format!("{base}  retry: {{ max_time: soon }}\n");
    let d = load_str(&text).unwrap_err();
    assert!(d.0[0].message.contains("backup.retry.max_time"), "{:?}", d.0);
    let text = format!("{base}  retry: {{ attempts: 5 }}\n");
    assert!(load_str(&text).is_err(), "an unknown key under backup.retry is refused");
}
