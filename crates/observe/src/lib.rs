//! caretaker's watching and telling: the effects around the pure decisions in
//! `caretaker_core::{alert, metrics, scheduler}`.
//!
//! Entry points for the daemon (and the standalone CLI commands):
//! - [`evaluate_once`]: observe → evaluate alert rules → notify → persist; call it every
//!   [`EVALUATION_INTERVAL`] with the supervisor's service view;
//! - [`MetricsSource::render`] and [`http::router`]: `/metrics` for the daemon's HTTP listener;
//! - [`check::run_checks`]: the deployment checks of `caretaker check`;
//! - [`notify`]: SMTP and webhook delivery, `notify test`.
//!
//! Architecture invariant: decisions (which alert fires, which task is due, what the metrics
//! text says) are made in `caretaker-core`; this crate only reads the world and sends messages.

pub mod check;
pub mod deps;
pub mod gather;
pub mod host;
pub mod http;
pub mod notify;
pub mod probe;
pub mod scheduler;

use caretaker_core::alert::{evaluate, AlertState, Evaluation, ServiceObs};
use caretaker_core::config::Config;
use caretaker_core::metrics::render_metrics;
use caretaker_state::{StateError, Store};
use jiff::Timestamp;
use std::sync::Mutex;
use std::time::Duration;

/// How often the daemon should call [`evaluate_once`].
pub const EVALUATION_INTERVAL: Duration = Duration::from_secs(30);

/// One delivery that failed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeliveryFailure {
    pub alert: String,
    pub channel: String,
    pub error: String,
}

/// What one evaluation did.
#[derive(Clone, Debug)]
pub struct EvaluationReport {
    pub evaluation: Evaluation,
    pub delivered: usize,
    pub failures: Vec<DeliveryFailure>,
}

/// Observe, evaluate the rules, send notifications, persist the new alert states.
///
/// `services`: the supervisor's view (`None` = probe health checks directly). A notification
/// that reached no channel at all is not counted as sent: its alert keeps its previous
/// `last_notified`, so the next evaluation tries again.
pub fn evaluate_once(
    cfg: &Config,
    store: &mut Store,
    services: Option<Vec<ServiceObs>>,
    now: Timestamp,
) -> Result<EvaluationReport, StateError> {
    let sender = notify::Sender::new(&cfg.app.name);
    evaluate_once_with(cfg, store, services, now, &notify::Network(sender))
}

/// [`evaluate_once`] with the delivery adapter passed in (tests use a fake).
pub fn evaluate_once_with(
    cfg: &Config,
    store: &mut Store,
    services: Option<Vec<ServiceObs>>,
    now: Timestamp,
    delivery: &dyn notify::Deliver,
) -> Result<EvaluationReport, StateError> {
    let g = gather::gather(cfg, store, services, now)?;
    let previous = store.alert_states()?;
    let silences = store.silences(Some(now))?;
    let mut evaluation =
        evaluate(&cfg.alerts.rules, cfg.alerts.repeat_interval, &g.observations, &previous, &silences, now);
    let channels = notify::channels(&cfg.alerts);
    let mut failures = Vec::new();
    let mut delivered = 0;
    for n in &evaluation.notifications {
        let mut ok = channels.is_empty();
        for ch in &channels {
            match delivery.deliver(ch, n) {
                Ok(()) => {
                    ok = true;
                    delivered += 1;
                }
                Err(error) => {
                    tracing::warn!(alert = %n.alert.key(), channel = %ch.describe(), "notification failed: {error}");
                    failures.push(DeliveryFailure { alert: n.alert.key(), channel: ch.describe(), error });
                }
            }
        }
        if !ok {
            let prev: Option<&AlertState> =
                previous.iter().find(|p| p.rule == n.alert.rule && p.subject == n.alert.subject);
            if let Some(st) =
                evaluation.states.iter_mut().find(|s| s.rule == n.alert.rule && s.subject == n.alert.subject)
            {
                match prev {
                    // A resolve that reached no one: keep it firing, so it is resolved (and
                    // told) again next time.
                    Some(p) if n.kind == caretaker_core::alert::NotificationKind::Resolved => *st = p.clone(),
                    _ => {
                        st.last_notified = prev.and_then(|p| p.last_notified);
                        st.notified_severity = prev.and_then(|p| p.notified_severity);
                    }
                }
            }
        }
    }
    store.replace_alert_states(&evaluation.states)?;
    evaluation.states.sort_by(|a, b| (&a.rule, &a.subject).cmp(&(&b.rule, &b.subject)));
    Ok(EvaluationReport { evaluation, delivered, failures })
}

/// Renders `/metrics` from the config and the state store; shareable across threads.
pub struct MetricsSource {
    pub config: Config,
    pub store: Mutex<Store>,
    /// The supervisor's view of the services, when a daemon runs; `None` probes health checks.
    #[allow(clippy::type_complexity)]
    pub services: Box<dyn Fn() -> Option<Vec<ServiceObs>> + Send + Sync>,
}

impl MetricsSource {
    pub fn new(config: Config, store: Store) -> MetricsSource {
        MetricsSource { config, store: Mutex::new(store), services: Box::new(|| None) }
    }

    /// The metrics text, or an error comment when the state store cannot be read.
    pub fn render(&self) -> String {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        match gather::gather(&self.config, &store, (self.services)(), Timestamp::now()) {
            Ok(g) => render_metrics(&g.snapshot),
            Err(e) => format!("# caretaker: cannot read the state store: {e}\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caretaker_core::alert::{Notification, Status};
    use caretaker_core::config::Redactor;
    use std::cell::RefCell;

    /// Records deliveries; fails while `fail` is set.
    struct FakeDelivery {
        fail: std::cell::Cell<bool>,
        sent: RefCell<Vec<String>>,
    }

    impl notify::Deliver for FakeDelivery {
        fn deliver(&self, _: &notify::Channel, n: &Notification) -> Result<(), String> {
            if self.fail.get() {
                return Err("connection refused".into());
            }
            self.sent.borrow_mut().push(format!("{} {}", n.kind.as_str(), n.alert.key()));
            Ok(())
        }
    }

    fn config(warning: u32) -> Config {
        let text = format!(
            "version: 1\napp: {{ name: t }}\nalerts:\n  notify: [ {{ webhook: \"http://127.0.0.1:1/x\" }} ]\n  rules: {{ filesystem_free_percent: {{ warning: {warning}, critical: 0, for: 0s }}, memory_used_percent: false, load_per_cpu: false }}\n"
        );
        caretaker_core::config::load(&text, std::path::Path::new("/c.yml"), None, &caretaker_core::config::NoSecrets)
            .unwrap()
            .config
    }

    #[test]
    fn a_notification_that_reached_no_one_is_sent_again_next_round() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), Redactor::default()).unwrap();
        let fake = FakeDelivery { fail: true.into(), sent: RefCell::new(Vec::new()) };
        let now = Timestamp::now();
        let r = evaluate_once_with(&config(100), &mut store, Some(vec![]), now, &fake).unwrap();
        assert_eq!(r.failures.len(), 1);
        assert_eq!(store.alert_states().unwrap()[0].last_notified, None, "not counted as told");
        fake.fail.set(false);
        evaluate_once_with(&config(100), &mut store, Some(vec![]), now, &fake).unwrap();
        assert_eq!(*fake.sent.borrow(), ["firing filesystem_free_percent//"]);
        evaluate_once_with(&config(100), &mut store, Some(vec![]), now, &fake).unwrap();
        assert_eq!(fake.sent.borrow().len(), 1, "told once");
        // The resolve fails: the alert stays firing and the resolve is retried.
        fake.fail.set(true);
        evaluate_once_with(&config(1), &mut store, Some(vec![]), now, &fake).unwrap();
        assert_eq!(store.alert_states().unwrap()[0].status, Status::Firing);
        fake.fail.set(false);
        evaluate_once_with(&config(1), &mut store, Some(vec![]), now, &fake).unwrap();
        assert_eq!(*fake.sent.borrow(), ["firing filesystem_free_percent//", "resolved filesystem_free_percent//"]);
        assert_eq!(store.alert_states().unwrap()[0].status, Status::Resolved);
    }
}
