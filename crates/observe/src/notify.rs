//! Delivering notifications: email over SMTP (lettre, rustls) and webhooks (JSON POST, ureq).
//!
//! One [`Channel`] per configured notifier. Delivery is synchronous with short timeouts: the
//! evaluation loop sends a handful of messages at most per round.

use caretaker_core::alert::{email_body, email_subject, webhook_payload, Notification};
use caretaker_core::config::{Alerts, Notifier, Smtp, SmtpTls};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::Body;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Where a notification goes.
#[derive(Clone, Debug)]
pub enum Channel {
    Email {
        to: String,
        smtp: Smtp,
    },
    Webhook {
        url: String,
    },
    /// Alertmanager base URL; alerts go to `/api/v2/alerts`.
    Alertmanager {
        url: String,
        repeat_interval: Duration,
    },
}

impl Channel {
    /// How the channel is named in output (webhook URLs may hold tokens: host only).
    pub fn describe(&self) -> String {
        match self {
            Channel::Email { to, smtp } => format!("email to {to} via {}:{}", smtp.host, smtp.port),
            Channel::Webhook { url } => {
                let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or("?");
                format!("webhook to {host}")
            }
            Channel::Alertmanager { url, .. } => format!("alertmanager at {url}"),
        }
    }
}

/// The channels the config names.
pub fn channels(alerts: &Alerts) -> Vec<Channel> {
    alerts
        .notify
        .iter()
        .filter_map(|n| match n {
            Notifier::Email(to) => Some(Channel::Email { to: to.clone(), smtp: alerts.smtp.clone()? }),
            Notifier::Webhook { url } => Some(Channel::Webhook { url: url.expose().to_string() }),
            Notifier::Alertmanager(url) => {
                Some(Channel::Alertmanager { url: url.clone(), repeat_interval: alerts.repeat_interval })
            }
        })
        .collect()
}

/// Who is sending: the app's name and this machine's name, shown in every message.
#[derive(Clone, Debug)]
pub struct Sender {
    pub app: String,
    pub host: String,
}

impl Sender {
    pub fn new(app: &str) -> Sender {
        let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
        Sender { app: app.to_string(), host }
    }
}

pub fn send_email(smtp: &Smtp, to: &str, subject: &str, body: &str) -> Result<(), String> {
    let msg = Message::builder()
        .from(smtp.from.parse().map_err(|e| format!("sender address {}: {e}", smtp.from))?)
        .to(to.parse().map_err(|e| format!("recipient address {to}: {e}"))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        // Plain 7-bit text when possible: readable as-is in any mail client and in `mail`
        // on the server, unlike quoted-printable.
        .body(
            Body::new_with_encoding(body.replace('\n', "\r\n"), ContentTransferEncoding::SevenBit)
                .unwrap_or_else(Body::new),
        )
        .map_err(|e| e.to_string())?;
    let builder = match smtp.tls {
        SmtpTls::Starttls => SmtpTransport::starttls_relay(&smtp.host).map_err(|e| e.to_string())?,
        SmtpTls::Tls => SmtpTransport::relay(&smtp.host).map_err(|e| e.to_string())?,
        SmtpTls::None => SmtpTransport::builder_dangerous(&smtp.host),
    };
    let mut builder = builder.port(smtp.port).timeout(Some(TIMEOUT));
    if let (Some(user), Some(pw)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(user.clone(), pw.expose().to_string()));
    }
    builder.build().send(&msg).map_err(|e| format!("SMTP {}:{}: {e}", smtp.host, smtp.port))?;
    Ok(())
}

pub fn post_json(url: &str, body: &serde_json::Value) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(TIMEOUT)).build().into();
    agent.post(url).header("User-Agent", "caretaker").send_json(body).map_err(|e| {
        // Never print the URL itself: it may carry a token.
        let e = e.to_string().replace(url, "<webhook>");
        format!("webhook POST failed: {e}")
    })?;
    Ok(())
}

/// Delivery of notifications: the edge between alerting and the network.
pub trait Deliver {
    fn deliver(&self, channel: &Channel, n: &Notification) -> Result<(), String>;
}

/// Delivery over the network (SMTP, HTTP).
pub struct Network(pub Sender);

impl Deliver for Network {
    fn deliver(&self, channel: &Channel, n: &Notification) -> Result<(), String> {
        deliver(channel, &self.0, n)
    }
}

/// Sends a notification through one channel.
pub fn deliver(channel: &Channel, sender: &Sender, n: &Notification) -> Result<(), String> {
    match channel {
        Channel::Email { to, smtp } => {
            send_email(smtp, to, &email_subject(&sender.app, n), &email_body(&sender.app, &sender.host, n))
        }
        Channel::Webhook { url } => post_json(url, &webhook_payload(&sender.app, &sender.host, n)),
        Channel::Alertmanager { url, repeat_interval } => post_json(
            &format!("{url}/api/v2/alerts"),
            &alertmanager_payload(sender, n, *repeat_interval, jiff::Timestamp::now()),
        ),
    }
}

/// The body of an Alertmanager `POST /api/v2/alerts`: one alert, labelled like the exported
/// Prometheus rules. caretaker re-sends a firing alert only every `repeat_interval`, so
/// `endsAt` lies beyond the next re-send (Alertmanager would otherwise resolve it after its
/// `resolve_timeout`); a resolved alert ends now.
pub fn alertmanager_payload(
    sender: &Sender,
    n: &Notification,
    repeat_interval: Duration,
    now: jiff::Timestamp,
) -> serde_json::Value {
    let a = &n.alert;
    let ends = match n.kind {
        caretaker_core::alert::NotificationKind::Resolved => a.resolved_at.unwrap_or(now),
        _ => now
            .checked_add(
                jiff::SignedDuration::try_from(repeat_interval * 2).unwrap_or(jiff::SignedDuration::from_hours(8)),
            )
            .unwrap_or(now),
    };
    let mut labels = serde_json::json!({
        "alertname": caretaker_core::alert::export::alert_name(&a.rule),
        "rule": a.rule, "severity": a.severity.as_str(), "app": sender.app, "instance": sender.host,
    });
    if !a.subject.is_empty() {
        labels["subject"] = serde_json::Value::String(a.subject.clone());
    }
    serde_json::json!([{
        "labels": labels,
        "annotations": { "summary": a.summary },
        "startsAt": a.fired_at.unwrap_or(a.active_since).to_string(),
        "endsAt": ends.to_string(),
    }])
}

/// `caretaker notify test`: a plain test message through one channel.
pub fn send_test(channel: &Channel, sender: &Sender) -> Result<(), String> {
    let subject = format!("[{}] TEST: caretaker notification test", sender.app);
    let body = format!(
        "This is a test message from caretaker for {} on {}.\nIf you read this, alerts reach you through this channel.\n",
        sender.app, sender.host
    );
    match channel {
        Channel::Email { to, smtp } => send_email(smtp, to, &subject, &body),
        Channel::Alertmanager { url, .. } => post_json(
            &format!("{url}/api/v2/alerts"),
            &serde_json::json!([{
                "labels": {"alertname": "CaretakerNotificationTest", "app": sender.app, "instance": sender.host, "severity": "none"},
                "annotations": {"summary": subject},
                "endsAt": jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_mins(5)).unwrap_or(jiff::Timestamp::now()).to_string(),
            }]),
        ),
        Channel::Webhook { url } => post_json(
            url,
            &serde_json::json!({"version": 1, "app": sender.app, "host": sender.host, "kind": "test", "title": subject, "message": body}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ascii_bodies_stay_seven_bit() {
        let text = "Alert x is firing on app (vm).\n\nfilesystem / has 28.2% free (threshold 100.0%)\n\nSilence it for two hours: caretaker silence add filesystem_free_percent// --for 2h\n".replace("hours: ", "hours:\n  ");
        let b = Body::new_with_encoding(text.replace('\n', "\r\n"), ContentTransferEncoding::SevenBit);
        assert!(b.is_ok(), "{b:?}");
    }
}
