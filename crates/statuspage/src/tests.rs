use super::*;
use axum::body::Body;
use axum::http::Request as HttpRequest;
use base64::Engine;
use caretaker_core::alert::{AlertState, Severity, Status};
use caretaker_core::config::{Redactor, SecretSource};
use caretaker_core::mode::{Maintenance, FACT_MAINTENANCE};
use tower::ServiceExt;

struct NoSecrets;
impl SecretSource for NoSecrets {
    fn read_file(&self, _: &std::path::Path) -> Result<String, String> {
        Err("none".into())
    }
    fn env_var(&self, _: &str) -> Option<String> {
        None
    }
    fn file_mode(&self, _: &std::path::Path) -> Option<u32> {
        None
    }
    fn exists(&self, _: &std::path::Path) -> bool {
        true
    }
}

fn config(hash: &str) -> Config {
    let text = format!(
        "version: 1\napp: {{ name: shop }}\nservices:\n  web: {{ command: \"true\" }}\nfiles: [/srv/shop]\nbackup:\n  repository: /srv/backups\n  password: \"a long enough password\"\n  schedule: daily\nstatus:\n  users:\n    admin: {{ password_hash: \"{hash}\" }}\n"
    );
    caretaker_core::config::load(&text, std::path::Path::new("/c.yml"), None, &NoSecrets).unwrap().config
}

fn seeded(dir: &std::path::Path) -> Store {
    let mut store = Store::open(dir, Redactor::new(Vec::new())).unwrap();
    let mut j = store.start_job(kind::BACKUP, Trigger::Schedule, false).unwrap();
    j.log("backing up <everything>");
    j.finish(
        Outcome::Succeeded,
        serde_json::json!({"snapshot_id": "0123456789abcdef", "bytes_read": 5000, "bytes_added": 3000, "files": 3}),
        None,
    )
    .unwrap();
    let j = store.start_job(kind::BACKUP, Trigger::Cli, false).unwrap();
    j.finish(Outcome::Succeeded, serde_json::json!({"bytes_read": 6000, "bytes_added": 1000}), None).unwrap();
    let j = store.start_job(kind::UPDATE, Trigger::Cli, false).unwrap();
    j.finish(Outcome::RolledBack, serde_json::json!({}), Some("migration <failed>")).unwrap();
    store
        .set_fact(
            FACT_MAINTENANCE,
            &serde_json::to_string(&Maintenance {
                message: "back at <5>".into(),
                since: Timestamp::UNIX_EPOCH,
                by: "operator".into(),
            })
            .unwrap(),
        )
        .unwrap();
    store
        .replace_alert_states(&[AlertState {
            rule: "backup_age".into(),
            subject: String::new(),
            severity: Severity::Critical,
            status: Status::Firing,
            summary: "no backup for 3 days".into(),
            value: Some(3.0),
            active_since: Timestamp::UNIX_EPOCH,
            fired_at: Some(Timestamp::UNIX_EPOCH),
            resolved_at: None,
            last_notified: None,
            notified_severity: None,
        }])
        .unwrap();
    store
}

#[test]
fn gather_collects_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let cfg = config(&auth::hash_password("pw").unwrap());
    let now = Timestamp::now();
    let d = gather(&cfg, &store, None, now).unwrap();
    assert_eq!(d.app, "shop");
    assert_eq!(d.mode.name(), "maintenance");
    assert!(!d.services.live);
    assert_eq!(d.services.rows[0].name, "web");
    assert_eq!(d.services.rows[0].state, "unknown");
    assert_eq!(d.jobs.len(), 3);
    assert_eq!(d.jobs[0].kind, "update", "newest first");
    assert_eq!(d.jobs[0].log_url, format!("/status/jobs/{}/log", d.jobs[0].id));
    let b = d.backups.as_ref().unwrap();
    assert_eq!(b.count, 2);
    assert_eq!(b.newest_size_bytes, Some(6000));
    assert_eq!(b.repository_size_bytes, None, "rows without a measured size give none, no guess");
    assert!(b.age_seconds.unwrap() < 60);
    assert!(d.charts.repository_size.is_empty());
    assert_eq!(d.charts.job_durations.len(), 3);
    assert_eq!(d.charts.job_durations[0].kind, "backup", "oldest first");
    assert_eq!(d.alerts[0].status, "firing");
    assert_eq!(d.alerts[0].severity, "critical");
    let tasks: Vec<&str> = d.schedule.iter().map(|s| s.task.as_str()).collect();
    assert_eq!(tasks, ["backup", "check"]);
    assert!(d.schedule.iter().all(|s| s.next_run.is_some()));

    let live = StatusReport {
        app: "shop".into(),
        daemon_pid: 42,
        service_mode: None,
        services: vec![caretaker_supervisor::protocol::ServiceStatus {
            name: "web".into(),
            state: caretaker_supervisor::machine::Phase::Running,
            pid: Some(7),
            uptime_seconds: Some(90),
            restarts: 1,
            health: caretaker_supervisor::machine::Health::Healthy,
            last_exit: None,
            reason: None,
            waiting: false,
        }],
    };
    let d = gather(&cfg, &store, Some(live), now).unwrap();
    assert!(d.services.live);
    assert_eq!(d.services.rows[0].state, "running");
    assert_eq!(d.services.rows[0].health, "healthy");
}

#[test]
fn repository_size_is_the_measured_one_and_shrinks_after_a_prune() {
    use caretaker_core::job::figures::{BackupFigures, PruneFigures, RepositoryFigures};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Redactor::new(Vec::new())).unwrap();
    let repo = |snapshots, bytes| RepositoryFigures { snapshots: Some(snapshots), repository_size_bytes: Some(bytes) };
    let backup = |snapshots, bytes| {
        let j = store.start_job(kind::BACKUP, Trigger::Schedule, false).unwrap();
        let f = BackupFigures {
            bytes_read: Some(700),
            bytes_added: Some(300),
            repository: repo(snapshots, bytes),
            ..Default::default()
        };
        j.finish(Outcome::Succeeded, f.to_json(), None).unwrap();
    };
    backup(1, 1000);
    backup(2, 1300);
    let j = store.start_job(kind::PRUNE, Trigger::Schedule, false).unwrap();
    let f = PruneFigures { removed_snapshots: vec!["a".into()], repository: repo(1, 600), ..Default::default() };
    j.finish(Outcome::Succeeded, f.to_json(), None).unwrap();
    let cfg = config(&auth::hash_password("pw").unwrap());
    let d = gather(&cfg, &store, None, Timestamp::now()).unwrap();
    assert_eq!(d.backups.as_ref().unwrap().repository_size_bytes, Some(600), "after the prune");
    assert_eq!(d.charts.repository_size.iter().map(|p| p.bytes).collect::<Vec<_>>(), vec![1000, 1300, 600]);
    backup(2, 900);
    let d = gather(&cfg, &store, None, Timestamp::now()).unwrap();
    assert_eq!(d.backups.as_ref().unwrap().repository_size_bytes, Some(900));
    assert_eq!(d.backups.as_ref().unwrap().newest_size_bytes, Some(700));
}

#[test]
fn html_escapes_and_has_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let cfg = config(&auth::hash_password("pw").unwrap());
    let d = gather(&cfg, &store, None, Timestamp::now()).unwrap();
    let page = html::render(&d, "");
    for id in ["mode", "services", "backups", "alerts", "schedule", "chart-repository", "chart-durations", "jobs"] {
        assert!(page.contains(&format!("id=\"{id}\"")), "missing {id}");
    }
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(page.contains("back at &lt;5&gt;"));
    assert!(page.contains("migration &lt;failed&gt;"));
    assert!(!page.contains("<failed>") && !page.contains("<5>"));
    assert!(!page.contains("<script"));
    let page = html::render(&d, "?token=a%26b");
    assert!(page.contains("/log?token=a%26b\""));
}

fn source(dir: &std::path::Path) -> Arc<StatusSource> {
    let store = seeded(dir);
    let cfg = config(&auth::hash_password("secret pw").unwrap());
    Arc::new(StatusSource::new(cfg, store, Some("tok-1".into())))
}

async fn get(app: &Router, uri: &str, auth: Option<String>) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = HttpRequest::builder().uri(uri);
    if let Some(a) = auth {
        req = req.header(AUTHORIZATION, a);
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

#[tokio::test]
async fn routes_require_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(source(dir.path()));
    let (st, h, body) = get(&app, "/status", Some(basic("admin", "secret pw"))).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(h[CACHE_CONTROL], "no-store");
    assert!(body.contains("id=\"jobs\""));

    let mut failures = 0;
    for uri in ["/status", "/status/api", "/status/jobs/1/log"] {
        let (st, h, body) = get(&app, uri, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(h[WWW_AUTHENTICATE].to_str().unwrap().starts_with("Basic realm="), "{uri}");
        assert!(!body.contains("shop"));
        for wrong in [basic("admin", "wrong"), "Bearer nope".into()] {
            let (st, h, _) = get(&app, uri, Some(wrong)).await;
            failures += 1;
            if failures <= auth::FREE_FAILURES {
                assert_eq!(st, StatusCode::UNAUTHORIZED, "{uri}");
            } else {
                // Too many failures from one address: slowed down, no verification.
                assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{uri}");
                assert!(h[RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);
            }
        }
    }
    // Remembered credentials and the token still get in from the blocked address.
    let (st, _, _) = get(&app, "/status", Some(basic("admin", "secret pw"))).await;
    assert_eq!(st, StatusCode::OK);

    let (st, h, body) = get(&app, "/status/api", Some("Bearer tok-1".into())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h[CONTENT_TYPE], "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["app"], "shop");
    assert_eq!(v["mode"]["mode"], "maintenance");
    assert_eq!(v["backups"]["count"], 2);
    assert_eq!(v["jobs"].as_array().unwrap().len(), 3);

    let (st, _, body) = get(&app, "/status/jobs/1/log?token=tok-1", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("backing up <everything>"), "{body}");
    let (st, _, _) = get(&app, "/status/jobs/999/log?token=tok-1", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, body) = get(&app, "/status?token=tok-1", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("/log?token=tok-1\""));
}

#[tokio::test]
async fn without_credentials_configured_everything_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let text = "version: 1\napp: { name: shop }\n";
    let cfg = caretaker_core::config::load(text, std::path::Path::new("/c.yml"), None, &NoSecrets).unwrap().config;
    let app = router(Arc::new(StatusSource::new(cfg, store, None)));
    let (st, _, _) = get(&app, "/status?token=", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[test]
fn query_token_is_decoded() {
    assert_eq!(query_token(Some("a=1&token=x%2By%20z+w")), Some("x+y z w".into()));
    assert_eq!(query_token(Some("token=%zz%4")), Some("%zz%4".into()));
    assert_eq!(query_token(None), None);
    assert_eq!(percent_encode("a&b c"), "a%26b%20c");
}

#[tokio::test]
async fn protect_puts_other_routes_behind_the_same_auth() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let metrics = Router::new().route("/metrics", axum::routing::get(|| async { "caretaker_up 1\n" }));
    let app = protect(metrics, &src);
    let (st, h, body) = get(&app, "/metrics", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(h.contains_key(WWW_AUTHENTICATE));
    assert!(!body.contains("caretaker_up"));
    let (st, _, body) = get(&app, "/metrics", Some("Bearer tok-1".into())).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("caretaker_up 1"));
    let (st, _, _) = get(&app, "/metrics", Some(basic("admin", "secret pw"))).await;
    assert_eq!(st, StatusCode::OK);
}

#[test]
fn the_dependency_report_shows_findings_with_every_id_outdated_packages_and_the_last_failure() {
    use caretaker_core::job::figures::{DepsFigures, DepsFinding, OutdatedPackage};
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let hash = auth::hash_password("pw").unwrap();
    // Not scheduled and never run: no section.
    let d = gather(&config(&hash), &store, None, Timestamp::now()).unwrap();
    assert!(d.dependencies.is_none());
    assert!(!html::render(&d, "").contains("id=\"dependencies\""));

    let failed = store.start_job(kind::DEPS, Trigger::Schedule, false).unwrap();
    let failed_id = failed.id();
    failed.finish(Outcome::Failed, serde_json::json!({}), Some("cannot read <uv.lock>: no such file")).unwrap();
    let figures = DepsFigures {
        packages: Some(42),
        vulnerable: Some(1),
        vulnerabilities: Some(2),
        vulnerable_packages: vec!["django".into()],
        outdated: Some(1),
        database_date: Some("2026-11-30T08:00:00Z".into()),
        findings: vec![
            DepsFinding {
                package: "django".into(),
                version: "4.2.1".into(),
                ids: vec!["CVE-2023-36053".into(), "GHSA-jh3w-4vvf-mjgr".into(), "PYSEC-2023-100".into()],
                summary: Some("ReDoS in <EmailValidator> & URLValidator".into()),
                fixed_in: vec!["4.2.3".into()],
            },
            DepsFinding {
                package: "django".into(),
                version: "4.2.1".into(),
                ids: vec!["GHSA-xxxx-<script>".into()],
                summary: None,
                fixed_in: vec![],
            },
        ],
        outdated_packages: vec![OutdatedPackage {
            package: "django".into(),
            version: "4.2.1".into(),
            compared_with: Some("4.2.16".into()),
            latest: Some("5.1.3".into()),
            line: "4.2 LTS".into(),
        }],
        ..Default::default()
    };
    let ok = store.start_job(kind::DEPS, Trigger::Schedule, false).unwrap();
    let ok_id = ok.id();
    ok.finish(Outcome::Succeeded, figures.to_json(), None).unwrap();

    let d = gather(&config(&hash), &store, None, Timestamp::now()).unwrap();
    let deps = d.dependencies.as_ref().expect("a deps job ran");
    assert_eq!(deps.schedule, None);
    assert_eq!(
        (deps.last_run.as_ref().unwrap().job, deps.last_run.as_ref().unwrap().outcome),
        (ok_id, Outcome::Succeeded)
    );
    let f = deps.last_failure.as_ref().unwrap();
    assert_eq!(f.job, failed_id);
    let r = deps.report.as_ref().unwrap();
    assert_eq!((r.job, r.packages, r.vulnerable, r.outdated), (ok_id, Some(42), Some(1), Some(1)));
    assert_eq!(r.findings[0].ids.len(), 3);

    let page = html::render(&d, "?token=t");
    let section = &page[page.find("id=\"dependencies\"").expect("the section")..];
    let section = &section[..section.find("</section>").unwrap()];
    for id in ["CVE-2023-36053", "GHSA-jh3w-4vvf-mjgr", "PYSEC-2023-100"] {
        assert!(section.contains(&format!("<code>{id}</code>")), "{id} missing: {section}");
    }
    assert!(section.contains("2026-11-30T08:00:00Z"), "the database's date: {section}");
    assert!(section.contains("4.2.16") && section.contains("4.2 LTS") && section.contains("5.1.3"), "{section}");
    assert!(section.contains("ReDoS in &lt;EmailValidator&gt; &amp; URLValidator"), "{section}");
    assert!(section.contains("GHSA-xxxx-&lt;script&gt;") && section.contains("no fix yet"), "{section}");
    assert!(section.contains("cannot read &lt;uv.lock&gt;: no such file"), "the last failure: {section}");
    assert!(section.contains(&format!("/status/jobs/{failed_id}/log?token=t")), "{section}");
    assert!(!page.contains("<script") && !page.contains("<uv.lock>") && !page.contains("<EmailValidator>"));

    // The JSON API carries the same.
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["dependencies"]["report"]["findings"][0]["ids"][2], "PYSEC-2023-100");
    assert_eq!(v["dependencies"]["report"]["outdated_packages"][0]["compared_with"], "4.2.16");
    assert_eq!(v["dependencies"]["last_failure"]["job"], failed_id);
}

#[test]
fn the_os_section_shows_what_os_maintenance_recorded() {
    use caretaker_core::os::{facts, LastReboot, OsSummary};
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let cfg = config(&auth::hash_password("pw").unwrap());
    let page = html::render(&gather(&cfg, &store, None, Timestamp::now()).unwrap(), "");
    assert!(!page.contains("id=\"os\""), "nothing recorded: no section");
    let summary = OsSummary {
        updates_pending: 4,
        security_updates_pending: 1,
        held: vec!["linux-<image>".into()],
        reboot_required: true,
        reboot_required_packages: vec!["libc6".into()],
        ..Default::default()
    };
    store.set_fact(facts::SUMMARY, &serde_json::to_string(&summary).unwrap()).unwrap();
    let last = LastReboot { outcome: "unhealthy".into(), judged_at: Some(Timestamp::now()), ..Default::default() };
    store.set_fact(facts::LAST_REBOOT, &serde_json::to_string(&last).unwrap()).unwrap();
    let d = gather(&cfg, &store, None, Timestamp::now()).unwrap();
    let page = html::render(&d, "");
    assert!(page.contains("id=\"os\""));
    assert!(page.contains("4 (1 security)"), "{page}");
    assert!(page.contains("needed (libc6)"));
    assert!(page.contains("linux-&lt;image&gt;") && !page.contains("linux-<image>"));
    assert!(page.contains("unhealthy"));
}

#[test]
fn clones_show_with_their_time_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let cfg = config(&auth::hash_password("pw").unwrap());
    let now: Timestamp = "2025-03-14T09:00:00Z".parse().unwrap();
    let clone_dir = caretaker_state::Layout::new(store.dir()).clone_dir("try-1");
    std::fs::create_dir_all(&clone_dir).unwrap();
    let rec = caretaker_core::clone::CloneRecord {
        name: "try-1".into(),
        phase: caretaker_core::clone::Phase::Running,
        source: "live".into(),
        created_at: now,
        expires_at: "2025-03-14T11:00:00Z".parse().unwrap(),
        ports: Default::default(),
        database: None,
        files: vec![],
        release: None,
        disk_bytes: 0,
        creator: None,
        daemon: None,
    };
    std::fs::write(clone_dir.join("clone.json"), serde_json::to_vec(&rec).unwrap()).unwrap();
    let d = gather(&cfg, &store, None, now).unwrap();
    assert_eq!(d.clones.len(), 1);
    assert_eq!((d.clones[0].name.as_str(), d.clones[0].time_left_seconds), ("try-1", 7200));
    let page = html::render(&d, "");
    assert!(page.contains("id=\"clones\""), "{page}");
    assert!(page.contains("<td>try-1</td><td>running</td>"), "{page}");
    assert!(page.contains("2 h 0 min"), "the time left is shown: {page}");
}
