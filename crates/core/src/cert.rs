//! Certificate renewal decisions (docs/certificates.md). Pure: the renewal task in the binary
//! reads the stored certificate, the CA's renewal information (ARI, RFC 9773) and the
//! persisted [`RenewalState`], asks [`decide`] what to do at `now`, carries it out and feeds
//! the outcome back through [`RenewalState::ordered`], [`RenewalState::succeeded`] and
//! [`RenewalState::failed`].
//!
//! The rules:
//! - a certificate is due when a third of its lifetime is left (or `renew_before` before its
//!   end, when that is configured and earlier), or when the CA's ARI window has started,
//!   whichever comes first; no certificate (or an unreadable one) is due at once;
//! - failures back off from 1 minute, doubling, to at most 6 hours; a `Retry-After` from the
//!   CA is honoured when it asks for longer;
//! - at most `max_orders_per_hour` new orders per certificate in any hour;
//! - a certificate that has been due for longer than `stuck_after` is stuck (an alert);
//! - a `replaces` conflict (409, or the CA refusing the field) is never retried with
//!   `replaces`: the next order, at once and once, is a fresh one.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The state-store fact holding each certificate's status (JSON list, written by the renewal
/// task, read by alerting, `/metrics` and the status page).
pub const STATUS_FACT: &str = "certificates";

/// What readers of [`STATUS_FACT`] need of each entry (the writer stores more).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    pub name: String,
    /// End of validity of the stored certificate, when one is stored.
    #[serde(default)]
    pub not_after: Option<Timestamp>,
    /// The stored certificate is a CA's (not the self-signed placeholder).
    #[serde(default)]
    pub acme_certificate: bool,
}

/// The certificates to watch for expiry, from the fact's JSON (unreadable: none).
pub fn watched(fact: Option<&str>, now: Timestamp) -> Vec<crate::alert::CertificateObs> {
    let entries: Vec<StatusEntry> = fact.and_then(|f| serde_json::from_str(f).ok()).unwrap_or_default();
    entries
        .into_iter()
        .filter(|e| e.acme_certificate)
        .filter_map(|e| {
            let not_after = e.not_after?;
            let seconds_left = not_after.duration_since(now).as_secs_f64();
            Some(crate::alert::CertificateObs { name: e.name, not_after, seconds_left })
        })
        .collect()
}

/// The first backoff after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(60);
/// The longest backoff between two attempts (unless the CA asks for longer).
pub const BACKOFF_MAX: Duration = Duration::from_secs(6 * 3600);

/// What the renewal policy needs from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Renew this long before the end of the certificate when that is earlier than the
    /// third of its lifetime.
    pub renew_before: Option<Duration>,
    /// New orders allowed per certificate in any hour.
    pub max_orders_per_hour: u32,
    /// Due for longer than this without a renewal: stuck.
    pub stuck_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { renew_before: None, max_orders_per_hour: 5, stuck_after: Duration::from_secs(24 * 3600) }
    }
}

/// The facts of the certificate in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// The CA's suggested renewal window (ARI) for the certificate in use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriWindow {
    pub start: Timestamp,
    pub end: Timestamp,
    /// The certificate it was fetched for (its ARI identifier).
    pub cert_id: String,
    /// When to ask the CA again.
    pub refresh_at: Timestamp,
}

/// What the renewal task remembers between attempts and restarts (stored as JSON beside the
/// certificate).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RenewalState {
    /// Times new orders were placed (the last hour's are kept).
    pub orders: Vec<Timestamp>,
    /// Failed attempts since the last success.
    pub failures: u32,
    /// No attempt before this (backoff, Retry-After).
    pub not_before: Option<Timestamp>,
    /// The last failure, for `cert status`.
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
    /// The certificate (ARI identifier) for which the CA refused `replaces`: orders replacing
    /// it go out without the field.
    pub replaces_refused: Option<String>,
    /// The last ARI window seen.
    pub ari: Option<AriWindow>,
    /// The last successful renewal.
    pub renewed_at: Option<Timestamp>,
}

/// What the renewal task does now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do before `until` (then decide again).
    Wait { until: Timestamp, why: WaitReason },
    /// Place a new order; `replaces`: with the ARI `replaces` field naming this certificate.
    Order { replaces: Option<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// The certificate is valid and not due yet.
    NotDue,
    /// A failure's backoff or the CA's Retry-After.
    Backoff,
    /// The per-hour order limit is reached.
    OrderLimit,
}

/// How an attempt failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// The CA's Retry-After, as a time.
    pub retry_after: Option<Timestamp>,
    /// The CA refused the `replaces` field (409 conflict or a malformed/unsupported answer).
    pub replaces_conflict: bool,
}

fn sd(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// When the certificate becomes due by its lifetime alone: a third of it left, or
/// `renew_before` before its end when that is earlier.
pub fn due_by_lifetime(v: &Validity, policy: &Policy) -> Timestamp {
    let life = v.not_after.duration_since(v.not_before);
    let third = v.not_after.checked_sub(life / 3).unwrap_or(v.not_before);
    match policy.renew_before {
        Some(b) => {
            let before = v.not_after.checked_sub(sd(b)).unwrap_or(v.not_before);
            third.min(before)
        }
        None => third,
    }
}

/// When the certificate is due: lifetime rule or the start of its ARI window, whichever is
/// first. `cert_id`: the ARI identifier of the certificate (a window for another one is
/// ignored). `None` validity (no certificate, unreadable): due now.
pub fn due_at(
    validity: Option<&Validity>,
    cert_id: Option<&str>,
    ari: Option<&AriWindow>,
    policy: &Policy,
    now: Timestamp,
) -> Timestamp {
    let Some(v) = validity else { return now };
    let mut due = due_by_lifetime(v, policy);
    if let (Some(a), Some(id)) = (ari, cert_id) {
        if a.cert_id == id {
            due = due.min(a.start);
        }
    }
    due
}

/// Orders placed within the hour before `now`.
pub fn orders_in_last_hour(state: &RenewalState, now: Timestamp) -> usize {
    let hour_ago = now - SignedDuration::from_hours(1);
    state.orders.iter().filter(|t| **t > hour_ago && **t <= now).count()
}

/// Who asks for a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// The renewal task on its own schedule.
    Scheduled,
    /// An operator's `cert renew`: renew if due, without waiting for a failure's backoff.
    Requested,
    /// `cert renew --force`: renew even if not due, without waiting for the backoff.
    Forced,
}

/// What to do at `now`. The per-hour order limit holds whoever asks (it protects the CA's
/// rate limits).
pub fn decide(
    validity: Option<&Validity>,
    cert_id: Option<&str>,
    state: &RenewalState,
    policy: &Policy,
    now: Timestamp,
    urgency: Urgency,
) -> Decision {
    let due = due_at(validity, cert_id, state.ari.as_ref(), policy, now);
    // An expired certificate is as good as none.
    let valid = validity.is_some_and(|v| v.not_after > now);
    if urgency != Urgency::Forced && valid && due > now {
        return Decision::Wait { until: due, why: WaitReason::NotDue };
    }
    if let Some(nb) = state.not_before.filter(|_| urgency == Urgency::Scheduled) {
        if nb > now {
            return Decision::Wait { until: nb, why: WaitReason::Backoff };
        }
    }
    let limit = policy.max_orders_per_hour.max(1) as usize;
    let hour_ago = now - SignedDuration::from_hours(1);
    let mut recent: Vec<Timestamp> = state.orders.iter().copied().filter(|t| *t > hour_ago && *t <= now).collect();
    if recent.len() >= limit {
        recent.sort();
        // Free again when the oldest order counted leaves the hour.
        let until = recent[recent.len() - limit] + SignedDuration::from_hours(1);
        return Decision::Wait { until, why: WaitReason::OrderLimit };
    }
    let replaces = match (valid, cert_id) {
        (true, Some(id)) if state.replaces_refused.as_deref() != Some(id) => Some(id.to_string()),
        _ => None,
    };
    Decision::Order { replaces }
}

/// The backoff after `failures` failed attempts in a row (1 or more).
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    BACKOFF_MIN.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

/// How long the certificate has been due without a renewal, if it is longer than
/// `stuck_after`: the stuck alert.
pub fn stuck_for(
    validity: Option<&Validity>,
    cert_id: Option<&str>,
    state: &RenewalState,
    policy: &Policy,
    now: Timestamp,
    first_attempt: Option<Timestamp>,
) -> Option<SignedDuration> {
    // With no certificate at all, "due since" is the first attempt (start-up).
    let since = match validity {
        Some(_) => due_at(validity, cert_id, state.ari.as_ref(), policy, now),
        None => first_attempt?,
    };
    let due_for = now.duration_since(since);
    (due_for > sd(policy.stuck_after)).then_some(due_for)
}

impl RenewalState {
    /// A new order is being placed at `now` (counted whatever its outcome).
    pub fn ordered(&mut self, now: Timestamp) {
        let hour_ago = now - SignedDuration::from_hours(1);
        self.orders.retain(|t| *t > hour_ago);
        self.orders.push(now);
    }

    /// The certificate was renewed at `now`.
    pub fn succeeded(&mut self, now: Timestamp) {
        self.failures = 0;
        self.not_before = None;
        self.last_error = None;
        self.last_error_at = None;
        self.replaces_refused = None;
        self.ari = None;
        self.renewed_at = Some(now);
    }

    /// An attempt failed at `now`. `replacing`: the certificate the order named in
    /// `replaces`, if it did. A `replaces` conflict is retried at once without the field
    /// (once: the refusal is remembered for this certificate); anything else backs off.
    pub fn failed(&mut self, now: Timestamp, failure: &Failure, replacing: Option<&str>) {
        self.last_error = Some(failure.message.clone());
        self.last_error_at = Some(now);
        if failure.replaces_conflict {
            if let Some(id) = replacing {
                if self.replaces_refused.as_deref() != Some(id) {
                    self.replaces_refused = Some(id.to_string());
                    // Not a failure of the renewal itself: the fresh order goes out now.
                    self.not_before = failure.retry_after.filter(|t| *t > now);
                    return;
                }
            }
        }
        self.failures = self.failures.saturating_add(1);
        let mut next = now + sd(backoff(self.failures));
        if let Some(ra) = failure.retry_after {
            next = next.max(ra);
        }
        self.not_before = Some(next);
    }
}

#[cfg(test)]
mod tests;
