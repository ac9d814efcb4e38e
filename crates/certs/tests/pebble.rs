//! The certificates module against a real Pebble (ACME test CA) on loopback: issuance through
//! HTTP-01 and TLS-ALPN-01, a client verifying the chain against Pebble's root, restart
//! without a new order, renewal with the new certificate swapped in, the self-signed fallback
//! while the CA is down, and a challenge that always fails.

mod common;

use caretaker_certs::manager::{self, Manager};
use caretaker_certs::{Settings, Solver};
use caretaker_core::cert::{Policy, Urgency};
use caretaker_core::config::Redactor;
use caretaker_core::job::{kind, Outcome, Trigger};
use caretaker_state::Store;
use common::*;
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;
use std::time::Duration;

fn settings(p: &Pebble, names: &[&str]) -> Settings {
    Settings {
        names: names.iter().map(|s| s.to_string()).collect(),
        directory: p.directory(),
        email: Some("ops@caretaker.test".into()),
        ca_file: Some(p.ca_file.clone()),
        eab: None,
        reload_command: None,
        policy: Policy::default(),
    }
}

fn jobs(state: &std::path::Path) -> Vec<caretaker_state::JobRecord> {
    let s = Store::open(state, Redactor::default()).unwrap();
    let mut j = s.jobs(Some(kind::CERTIFICATE), 1000).unwrap();
    j.reverse();
    j
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issuance_restart_without_new_order_and_renewal() {
    let Some(bins) = pebble_bins() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (http_port, tls_port) = (free_port(), free_port());
    let front = Arc::new(Front::default());
    front.serve(http_port, tls_port);
    let mut pebble = Pebble::prepare(&tmp.path().join("pebble"), http_port, tls_port);
    pebble.start(&bins);
    let root = pebble.root().await;
    let state = tmp.path().join("state");
    let names = ["app.caretaker.test", "www.caretaker.test"];
    let solver = Solver::Http01(Arc::new(front.tokens.clone()));

    let mut m =
        Manager::new(&state, settings(&pebble, &names), solver.clone(), front.clone(), Redactor::default()).unwrap();
    let now = Timestamp::now();
    m.serve_initial(now).unwrap();
    // Before the first order: self-signed, which Pebble's root does not verify.
    assert!(caretaker_certs::x509::info(&front.current().unwrap().cert[0]).unwrap().self_signed);
    let err = verified_handshake(tls_port, names[0], &root).await.unwrap_err();
    assert!(err.contains("UnknownIssuer") || err.contains("invalid peer certificate"), "{err}");

    let next = m.tick(now, Urgency::Scheduled, Trigger::Schedule).await;
    let st = m.status(Timestamp::now());
    assert_eq!(st.last_error, None, "{st:?}\n{}", pebble.log());
    assert!(!st.self_signed);
    assert!(st.issuer.as_deref().unwrap().contains("Pebble"), "{st:?}");
    // Renewal is planned for a third of the lifetime before the end.
    let life = st.not_after.unwrap().duration_since(st.not_before.unwrap());
    assert_eq!(next, st.not_after.unwrap() - life / 3);
    assert!(front.tokens.is_empty(), "challenge answers are taken down");
    // The front door serves it, and a client that trusts only Pebble's root accepts it for
    // both names.
    let served = verified_handshake(tls_port, names[0], &root).await.unwrap();
    assert_eq!(caretaker_certs::x509::info(&served).unwrap().serial, st.serial.clone().unwrap());
    verified_handshake(tls_port, names[1], &root).await.unwrap();
    assert_eq!(pebble.orders(), 1, "{}", pebble.log());
    let j = jobs(&state);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].outcome, Outcome::Succeeded);
    // Key and account are 0600.
    use std::os::unix::fs::PermissionsExt;
    for f in std::fs::read_dir(state.join("certs"))
        .unwrap()
        .chain(std::fs::read_dir(state.join("certs/app.caretaker.test")).unwrap())
    {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{:?}", f.path());
        }
    }
    let account = std::fs::read(caretaker_certs::files::account_path(&state, &pebble.directory())).unwrap();
    drop(m);

    // Restart: the stored certificate is served at once, no account and no order is made.
    let installs = *front.installs.lock().unwrap();
    let mut m =
        Manager::new(&state, settings(&pebble, &names), solver.clone(), front.clone(), Redactor::default()).unwrap();
    m.serve_initial(Timestamp::now()).unwrap();
    assert_eq!(*front.installs.lock().unwrap(), installs + 1);
    assert_eq!(serial_of(&front.current().unwrap()), st.serial.clone().unwrap());
    let next2 = m.tick(Timestamp::now(), Urgency::Scheduled, Trigger::Schedule).await;
    assert_eq!(next2, next);
    assert_eq!(pebble.orders(), 1, "a restart must not order");
    assert_eq!(jobs(&state).len(), 1);
    assert_eq!(std::fs::read(caretaker_certs::files::account_path(&state, &pebble.directory())).unwrap(), account);

    // Renewal: at the due time (the clock is an argument) a new certificate is ordered with
    // the same account and swapped in without a restart.
    let due = next + SignedDuration::from_mins(1);
    let after = m.tick(due, Urgency::Scheduled, Trigger::Schedule).await;
    let st2 = m.status(Timestamp::now());
    assert_eq!(st2.last_error, None, "{st2:?}");
    assert_ne!(st2.serial, st.serial, "a new certificate");
    // (The clock jumped 60 days ahead, the new certificate starts today: it is due again at
    // once on the fake clock; on the real clock in 60 days.)
    assert!(after >= due);
    assert!(st2.next_renewal.unwrap() > Timestamp::now() + SignedDuration::from_hours(59 * 24), "{st2:?}");
    assert_eq!(pebble.orders(), 2);
    let served = verified_handshake(tls_port, names[0], &root).await.unwrap();
    assert_eq!(caretaker_certs::x509::info(&served).unwrap().serial, st2.serial.clone().unwrap());
    assert_eq!(std::fs::read(caretaker_certs::files::account_path(&state, &pebble.directory())).unwrap(), account);
    let j = jobs(&state);
    assert_eq!(j.iter().map(|j| j.outcome).collect::<Vec<_>>(), [Outcome::Succeeded, Outcome::Succeeded]);
    assert!(!pebble.log().contains("newAccount") || pebble.log().matches("There are now 1 accounts").count() <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issuance() {
    let Some(bins) = pebble_bins() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (http_port, tls_port) = (free_port(), free_port());
    let front = Arc::new(Front::default());
    front.serve(http_port, tls_port);
    let mut pebble = Pebble::prepare(&tmp.path().join("pebble"), http_port, tls_port);
    pebble.start(&bins);
    let root = pebble.root().await;
    let state = tmp.path().join("state");
    let names = ["alpn.caretaker.test"];
    let mut m = Manager::new(
        &state,
        settings(&pebble, &names),
        Solver::TlsAlpn01(front.clone()),
        front.clone(),
        Redactor::default(),
    )
    .unwrap();
    m.serve_initial(Timestamp::now()).unwrap();
    m.tick(Timestamp::now(), Urgency::Scheduled, Trigger::Schedule).await;
    let st = m.status(Timestamp::now());
    assert_eq!(st.last_error, None, "{st:?}\n{}", pebble.log());
    assert!(*front.alpn_sets.lock().unwrap() >= 1);
    assert!(front.tokens.is_empty(), "no HTTP-01 answer was used");
    let served = verified_handshake(tls_port, names[0], &root).await.unwrap();
    assert_eq!(caretaker_certs::x509::info(&served).unwrap().serial, st.serial.unwrap());
    let j = jobs(&state);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].outcome, Outcome::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_while_the_ca_is_down_then_the_real_certificate_without_restart() {
    let Some(bins) = pebble_bins() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (http_port, tls_port) = (free_port(), free_port());
    let front = Arc::new(Front::default());
    front.serve(http_port, tls_port);
    let mut pebble = Pebble::prepare(&tmp.path().join("pebble"), http_port, tls_port);
    let state = tmp.path().join("state");
    let names = ["down.caretaker.test"];
    let m = Manager::new(
        &state,
        settings(&pebble, &names),
        Solver::Http01(Arc::new(front.tokens.clone())),
        front.clone(),
        Redactor::default(),
    )
    .unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(manager::run(m, stop));
    // TLS is served at once, self-signed.
    let first = wait_for("a self-signed certificate", async || front.current()).await;
    assert!(caretaker_certs::x509::info(&first.cert[0]).unwrap().self_signed);
    // The CA is down: the attempt fails and is recorded.
    let st = wait_for("the failed attempt", async || {
        let s = caretaker_certs::manager::status(&state, &settings(&pebble, &names), Timestamp::now());
        s.last_error.is_some().then_some(s)
    })
    .await;
    assert!(st.self_signed);
    assert_eq!(st.failures, 1);
    // It backs off: no second attempt within the minute.
    assert!(st.next_renewal.unwrap() > Timestamp::now() + SignedDuration::from_secs(30), "{st:?}");
    // TLS still works with the fallback.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    drop(tcp);

    // The CA comes back; the operator asks for a renewal (`caretaker cert renew`): the real
    // certificate is swapped in by the running task.
    pebble.start(&bins);
    let root = pebble.root().await;
    manager::request_renewal(&state, names[0], false).unwrap();
    let served =
        wait_for("the Pebble certificate", async || verified_handshake(tls_port, names[0], &root).await.ok()).await;
    assert!(!caretaker_certs::x509::info(&served).unwrap().self_signed);
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    let j = jobs(&state);
    assert_eq!(j.iter().map(|j| j.outcome).collect::<Vec<_>>(), [Outcome::Failed, Outcome::Succeeded]);
    assert_eq!(j[1].trigger, Trigger::Cli);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_that_always_fails_places_bounded_orders_and_alerts() {
    let Some(bins) = pebble_bins() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (http_port, tls_port) = (free_port(), free_port());
    let front = Arc::new(Front::default());
    front.serve(http_port, tls_port);
    let mut pebble = Pebble::prepare(&tmp.path().join("pebble"), http_port, tls_port);
    pebble.start(&bins);
    let state = tmp.path().join("state");
    let names = ["fail.caretaker.test"];
    // Answers go to a token map nobody serves: every validation fails (404).
    let nowhere = caretaker_certs::TokenMap::default();
    let mut s = settings(&pebble, &names);
    s.policy = Policy { max_orders_per_hour: 3, stuck_after: Duration::from_secs(3600), renew_before: None };
    let mut m = Manager::new(&state, s, Solver::Http01(Arc::new(nowhere)), front.clone(), Redactor::default()).unwrap();
    // Three hours on a fake clock: every wake-up the task asks for is honoured at once.
    let start = Timestamp::now();
    let end = start + SignedDuration::from_hours(3);
    let mut now = start;
    let mut ticks = 0;
    while now < end {
        let next = m.tick(now, Urgency::Scheduled, Trigger::Schedule).await;
        assert!(next > now, "the task must not spin: {next} after {now}");
        now = next;
        ticks += 1;
        assert!(ticks < 100);
    }
    let orders = pebble.orders();
    let failed: Vec<_> = jobs(&state).into_iter().filter(|j| j.outcome == Outcome::Failed).collect();
    // At most 3 per hour over 3 hours, spaced by the backoff (1, 2, 4, ... minutes): orders at
    // minutes 0, 1, 3, 60, 68, 84 and 120 (as in core::cert's unit test), counted by Pebble.
    assert_eq!(orders, 7, "{orders} orders in 3 hours");
    let st = m.status(now);
    assert!(st.last_error.as_deref().unwrap().contains("validation"), "{st:?}");
    // Every order is a failed job (each fires `job_failed`), plus one stuck report (due for
    // more than 1 h; reported again only after 6 h).
    let stuck: Vec<_> = failed.iter().filter(|j| j.error.as_deref().unwrap_or("").contains("stuck")).collect();
    assert_eq!(failed.len() - stuck.len(), orders);
    assert_eq!(stuck.len(), 1, "{failed:?}");
    assert!(st.stuck_seconds.unwrap() >= 3600, "{st:?}");
    // The alert rule sees the failed job: `job_failed` fires for the certificate kind.
    let last = failed.last().unwrap();
    let obs = caretaker_core::alert::Observations {
        last_jobs: vec![caretaker_core::alert::JobObs {
            kind: kind::CERTIFICATE.into(),
            id: last.id,
            succeeded: false,
            ended_at: last.ended_at,
            error: last.error.clone(),
        }],
        ..Default::default()
    };
    let rules = caretaker_core::config::alerts_defaults().rules;
    let ev = caretaker_core::alert::evaluate(&rules, Duration::from_secs(3600), &obs, &[], &[], Timestamp::now());
    let fired: Vec<_> = ev.states.iter().filter(|a| a.rule == "job_failed" && a.subject == kind::CERTIFICATE).collect();
    assert_eq!(fired.len(), 1, "{:?}", ev.states);
    assert_eq!(fired[0].status, caretaker_core::alert::Status::Firing);
}
