//! `caretaker cert status [--json]` and `caretaker cert renew [--force]` (docs/certificates.md).
//! Status is read from the state directory; a renewal is asked of the running daemon's task
//! (it answers the challenges), or, in webroot mode without a daemon, done here.

use crate::cli::{CertCommand, Global};
use crate::context::{open_app, AppContext};
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_certs::manager::{self, CertStatus};
use caretaker_certs::Settings;
use caretaker_core::cert::Urgency;
use caretaker_core::config::Challenge;
use caretaker_core::job::{kind, Outcome};
use jiff::Timestamp;
use std::time::{Duration, Instant};

/// How long `cert renew` waits for the daemon's renewal.
const RENEW_WAIT: Duration = Duration::from_secs(300);

pub fn run(global: &Global, cmd: &CertCommand) -> Result<Code> {
    let app = open_app(global)?;
    let settings = settings(&app)?;
    match cmd {
        CertCommand::Status { json } => status(&app, &settings, *json),
        CertCommand::Renew { force } => renew(&app, &settings, *force),
    }
}

fn settings(app: &AppContext) -> Result<Settings> {
    app.config.tls.as_ref().and_then(Settings::from_config).ok_or_else(|| {
        Failure::new(Code::Config, "the config has no `tls.acme`: caretaker manages no certificate")
            .hint("see docs/certificates.md")
            .into()
    })
}

fn ago(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        None => "-".into(),
        Some(t) => {
            let d = t.duration_since(now);
            let (secs, word) = if d.is_negative() { (-d.as_secs(), "ago") } else { (d.as_secs(), "from now") };
            let human = if secs >= 2 * 86400 {
                format!("{}d", secs / 86400)
            } else if secs >= 2 * 3600 {
                format!("{}h", secs / 3600)
            } else if secs >= 120 {
                format!("{}m", secs / 60)
            } else {
                format!("{secs}s")
            };
            format!("{t} ({human} {word})")
        }
    }
}

fn status(app: &AppContext, settings: &Settings, json: bool) -> Result<Code> {
    let now = Timestamp::now();
    let st = manager::status(app.store.dir(), settings, now);
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(Code::Ok);
    }
    print_status(&st, now);
    Ok(Code::Ok)
}

fn print_status(st: &CertStatus, now: Timestamp) {
    println!("certificate  {}", st.names.join(", "));
    if st.self_signed {
        println!("serving      self-signed (no valid certificate from the CA yet)");
    }
    println!("issuer       {}", st.issuer.as_deref().unwrap_or("-"));
    println!("serial       {}", st.serial.as_deref().unwrap_or("-"));
    println!("not after    {}", ago(st.not_after, now));
    println!("next renewal {}", ago(st.next_renewal, now));
    if let Some((a, b)) = st.ari_window {
        println!("CA window    {a} – {b}");
    }
    println!("renewed      {}", ago(st.renewed_at, now));
    println!("orders       {} in the last hour", st.orders_last_hour);
    match &st.last_error {
        Some(e) => println!("last error   {} ({} failures in a row): {e}", ago(st.last_error_at, now), st.failures),
        None => println!("last error   -"),
    }
    if st.reload_pending {
        println!("reload       pending: the reload command has not succeeded since the last renewal");
    }
    if let Some(s) = st.stuck_seconds {
        println!("STUCK        due for {}h without a renewal", s / 3600);
    }
}

fn renew(app: &AppContext, settings: &Settings, force: bool) -> Result<Code> {
    let now = Timestamp::now();
    let st = manager::status(app.store.dir(), settings, now);
    if !force && !st.self_signed && st.next_renewal.is_some_and(|t| t > now) && st.failures == 0 {
        println!(
            "not due: the certificate ends {}; renewal is planned {}",
            ago(st.not_after, now),
            ago(st.next_renewal, now)
        );
        println!("(`caretaker cert renew --force` renews now)");
        return Ok(Code::Ok);
    }
    let urgency = if force { Urgency::Forced } else { Urgency::Requested };
    let state_dir = app.store.dir();
    let daemon = crate::control::lock_is_held(&crate::control::daemon_lock_path(state_dir));
    let before = app.store.jobs(Some(kind::CERTIFICATE), 1)?.first().map(|j| j.id).unwrap_or(0);
    if daemon {
        manager::request_renewal(state_dir, &settings.names[0], force)?;
        println!("asked the daemon to renew {}…", settings.names[0]);
        let deadline = Instant::now() + RENEW_WAIT;
        loop {
            if let Some(j) = app.store.jobs(Some(kind::CERTIFICATE), 1)?.into_iter().next().filter(|j| j.id > before) {
                if j.outcome != Outcome::Running {
                    return report(app, settings, &j);
                }
            } else if !manager::request_path(state_dir, &settings.names[0]).exists() {
                // Picked up, and no job after a moment: the task decided to wait.
                std::thread::sleep(Duration::from_secs(2));
                if app.store.jobs(Some(kind::CERTIFICATE), 1)?.first().is_none_or(|j| j.id <= before) {
                    let st = manager::status(state_dir, settings, Timestamp::now());
                    println!("no order placed now: next attempt {}", ago(st.next_renewal, Timestamp::now()));
                    println!(
                        "(at most {} orders per hour; `caretaker cert status` says more)",
                        settings.policy.max_orders_per_hour
                    );
                    return Ok(Code::Failure);
                }
            }
            if Instant::now() > deadline {
                return Err(Failure::new(Code::Unavailable, "the daemon did not renew within 5 minutes")
                    .hint("`caretaker cert status` and the daemon's log say more")
                    .into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let acme = app.config.tls.as_ref().and_then(|t| t.acme.as_ref()).expect("settings came from it");
    if acme.challenge != Challenge::Webroot {
        return Err(Failure::new(Code::Unavailable, "no daemon runs: the front door answers the ACME challenges")
            .hint("start it (`caretaker up`, or its systemd unit); it renews by itself, and `cert renew` asks it")
            .into());
    }
    // Webroot mode: the files are served by another web server; renew here.
    let mut m = crate::certs::manager(&app.config, state_dir, app.redactor.clone(), None)?.expect("tls.acme is set");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(m.tick(now, urgency, caretaker_core::job::Trigger::Cli));
    match app.store.jobs(Some(kind::CERTIFICATE), 1)?.into_iter().next().filter(|j| j.id > before) {
        Some(j) => report(app, settings, &j),
        None => {
            let st = manager::status(state_dir, settings, Timestamp::now());
            println!("no order placed now: next attempt {}", ago(st.next_renewal, Timestamp::now()));
            Ok(Code::Failure)
        }
    }
}

fn report(app: &AppContext, settings: &Settings, j: &caretaker_state::JobRecord) -> Result<Code> {
    let now = Timestamp::now();
    if j.outcome == Outcome::Succeeded {
        let st = manager::status(app.store.dir(), settings, now);
        println!(
            "renewed: serial {} valid until {} (job #{})",
            st.serial.as_deref().unwrap_or("-"),
            ago(st.not_after, now),
            j.id
        );
        Ok(Code::Ok)
    } else {
        Err(Failure::new(
            Code::Failure,
            format!("renewal failed (job #{}): {}", j.id, j.error.as_deref().unwrap_or("no reason recorded")),
        )
        .hint(format!("`caretaker jobs {}` shows its log", j.id))
        .into())
    }
}
