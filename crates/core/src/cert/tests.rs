use super::*;

/// The fake clock: minutes after a fixed start.
fn at(min: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap() + SignedDuration::from_mins(min)
}
fn days(d: i64) -> i64 {
    d * 24 * 60
}
fn ninety_days() -> Validity {
    Validity { not_before: at(0), not_after: at(days(90)) }
}

#[test]
fn due_when_a_third_of_the_lifetime_is_left() {
    let p = Policy::default();
    assert_eq!(due_by_lifetime(&ninety_days(), &p), at(days(60)));
    // A 6-day certificate: due with 2 days left.
    let short = Validity { not_before: at(0), not_after: at(days(6)) };
    assert_eq!(due_by_lifetime(&short, &p), at(days(4)));
    // renew_before wins only when earlier.
    let p40 = Policy { renew_before: Some(Duration::from_secs(40 * 86400)), ..p.clone() };
    assert_eq!(due_by_lifetime(&ninety_days(), &p40), at(days(50)));
    let p10 = Policy { renew_before: Some(Duration::from_secs(10 * 86400)), ..p };
    assert_eq!(due_by_lifetime(&ninety_days(), &p10), at(days(60)));
}

#[test]
fn waits_until_due_then_orders() {
    let p = Policy::default();
    let v = ninety_days();
    let s = RenewalState::default();
    assert_eq!(
        decide(Some(&v), Some("id1"), &s, &p, at(days(59)), Urgency::Scheduled),
        Decision::Wait { until: at(days(60)), why: WaitReason::NotDue }
    );
    assert_eq!(
        decide(Some(&v), Some("id1"), &s, &p, at(days(60)), Urgency::Scheduled),
        Decision::Order { replaces: Some("id1".into()) }
    );
    // Requested: still waits while not due; forced: orders now.
    assert_eq!(
        decide(Some(&v), Some("id1"), &s, &p, at(days(1)), Urgency::Requested),
        Decision::Wait { until: at(days(60)), why: WaitReason::NotDue }
    );
    assert_eq!(
        decide(Some(&v), Some("id1"), &s, &p, at(days(1)), Urgency::Forced),
        Decision::Order { replaces: Some("id1".into()) }
    );
}

#[test]
fn no_certificate_or_an_expired_one_is_due_now_without_replaces() {
    let p = Policy::default();
    let s = RenewalState::default();
    assert_eq!(decide(None, None, &s, &p, at(5), Urgency::Scheduled), Decision::Order { replaces: None });
    let v = ninety_days();
    assert_eq!(
        decide(Some(&v), Some("old"), &s, &p, at(days(91)), Urgency::Scheduled),
        Decision::Order { replaces: None }
    );
}

#[test]
fn ari_window_makes_it_due_earlier_but_never_later() {
    let p = Policy::default();
    let v = ninety_days();
    let mut s = RenewalState {
        ari: Some(AriWindow { start: at(days(20)), end: at(days(21)), cert_id: "id1".into(), refresh_at: at(days(1)) }),
        ..Default::default()
    };
    assert_eq!(due_at(Some(&v), Some("id1"), s.ari.as_ref(), &p, at(0)), at(days(20)));
    assert_eq!(
        decide(Some(&v), Some("id1"), &s, &p, at(days(20) + 1), Urgency::Scheduled),
        Decision::Order { replaces: Some("id1".into()) }
    );
    // A window after the lifetime point does not delay renewal.
    s.ari.as_mut().unwrap().start = at(days(80));
    assert_eq!(due_at(Some(&v), Some("id1"), s.ari.as_ref(), &p, at(0)), at(days(60)));
    // A window for another certificate is ignored.
    s.ari = Some(AriWindow { start: at(days(1)), end: at(days(2)), cert_id: "other".into(), refresh_at: at(0) });
    assert_eq!(due_at(Some(&v), Some("id1"), s.ari.as_ref(), &p, at(0)), at(days(60)));
}

#[test]
fn backoff_doubles_from_one_minute_to_six_hours() {
    let secs: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(secs, [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600, 21600]);
    assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
}

#[test]
fn failures_back_off_and_honour_retry_after() {
    let p = Policy { max_orders_per_hour: 100, ..Policy::default() };
    let mut s = RenewalState::default();
    let fail = Failure { message: "connection refused".into(), ..Default::default() };
    s.ordered(at(0));
    s.failed(at(0), &fail, None);
    assert_eq!(s.failures, 1);
    assert_eq!(
        decide(None, None, &s, &p, at(0), Urgency::Scheduled),
        Decision::Wait { until: at(1), why: WaitReason::Backoff }
    );
    assert_eq!(decide(None, None, &s, &p, at(1), Urgency::Scheduled), Decision::Order { replaces: None });
    s.ordered(at(1));
    s.failed(at(1), &fail, None);
    assert_eq!(s.not_before, Some(at(3)));
    // An operator's renewal does not wait for the backoff.
    assert_eq!(decide(None, None, &s, &p, at(2), Urgency::Requested), Decision::Order { replaces: None });
    assert_eq!(decide(None, None, &s, &p, at(2), Urgency::Forced), Decision::Order { replaces: None });
    // Retry-After longer than the backoff wins (even past the 6 h cap: it is the CA's word).
    let ra = Failure { message: "rateLimited".into(), retry_after: Some(at(days(2))), ..Default::default() };
    s.failed(at(3), &ra, None);
    assert_eq!(s.not_before, Some(at(days(2))));
    // Shorter Retry-After: the backoff wins.
    let ra = Failure { message: "x".into(), retry_after: Some(at(days(2))), ..Default::default() };
    let mut s2 = RenewalState { failures: 9, ..Default::default() };
    s2.failed(at(days(2) - 5), &ra, None);
    assert_eq!(s2.not_before, Some(at(days(2) - 5 + 360)));
    assert_eq!(s.last_error.as_deref(), Some("rateLimited"));
    // Success clears it all.
    s.succeeded(at(days(3)));
    assert_eq!((s.failures, s.not_before, s.last_error.clone()), (0, None, None));
}

#[test]
fn at_most_n_orders_per_hour() {
    let p = Policy { max_orders_per_hour: 3, ..Policy::default() };
    let mut s = RenewalState::default();
    // A fake clock run of a challenge that always fails, for 3 hours: count the orders.
    let mut now = at(0);
    let mut placed = vec![];
    let end = at(180);
    while now < end {
        match decide(None, None, &s, &p, now, Urgency::Scheduled) {
            Decision::Order { .. } => {
                s.ordered(now);
                placed.push(now);
                s.failed(now, &Failure { message: "invalid challenge".into(), ..Default::default() }, None);
            }
            Decision::Wait { until, .. } => {
                assert!(until > now, "a wait must move the clock");
                now = until;
            }
        }
    }
    // Backoff 1, 2, 4, 8, 16, 32, 64 min, and never more than 3 in any hour: the fourth
    // waits for the first to leave the hour.
    for (i, t) in placed.iter().enumerate() {
        let within = placed[i..].iter().filter(|u| **u < *t + SignedDuration::from_hours(1)).count();
        assert!(within <= 3, "more than 3 orders in the hour from {t}: {placed:?}");
    }
    assert_eq!(placed, [at(0), at(1), at(3), at(60), at(68), at(84), at(120)]);
}

#[test]
fn order_limit_reopens_when_the_oldest_leaves_the_hour() {
    let p = Policy { max_orders_per_hour: 2, ..Policy::default() };
    let mut s = RenewalState::default();
    s.ordered(at(0));
    s.ordered(at(10));
    assert_eq!(
        decide(None, None, &s, &p, at(20), Urgency::Forced),
        Decision::Wait { until: at(60), why: WaitReason::OrderLimit }
    );
    assert_eq!(decide(None, None, &s, &p, at(60), Urgency::Forced), Decision::Order { replaces: None });
    assert_eq!(orders_in_last_hour(&s, at(60)), 1);
}

#[test]
fn replaces_conflict_falls_back_to_one_fresh_order_and_never_loops() {
    let p = Policy { max_orders_per_hour: 10, ..Policy::default() };
    let v = ninety_days();
    let mut s = RenewalState::default();
    let now = at(days(61));
    assert_eq!(
        decide(Some(&v), Some("id1"), &s, &p, now, Urgency::Scheduled),
        Decision::Order { replaces: Some("id1".into()) }
    );
    s.ordered(now);
    let conflict = Failure { message: "409 conflict".into(), replaces_conflict: true, ..Default::default() };
    s.failed(now, &conflict, Some("id1"));
    // At once, without replaces, not counted as a failure.
    assert_eq!(s.failures, 0);
    assert_eq!(decide(Some(&v), Some("id1"), &s, &p, now, Urgency::Scheduled), Decision::Order { replaces: None });
    // If the fresh order also reports a conflict, it is an ordinary failure: backoff.
    s.ordered(now);
    s.failed(now, &conflict, None);
    assert_eq!(s.failures, 1);
    assert_eq!(
        decide(Some(&v), Some("id1"), &s, &p, now, Urgency::Scheduled),
        Decision::Wait { until: now + SignedDuration::from_mins(1), why: WaitReason::Backoff }
    );
    // And a second conflict for the same certificate with replaces (should not happen) backs off too.
    let mut s2 = RenewalState { replaces_refused: Some("id1".into()), ..Default::default() };
    s2.failed(now, &conflict, Some("id1"));
    assert_eq!(s2.failures, 1);
    // A new certificate may use replaces again.
    assert_eq!(
        decide(Some(&v), Some("id2"), &s2, &p, now + SignedDuration::from_hours(1), Urgency::Scheduled),
        Decision::Order { replaces: Some("id2".into()) }
    );
}

#[test]
fn stuck_after_being_due_too_long() {
    let p = Policy { stuck_after: Duration::from_secs(24 * 3600), ..Policy::default() };
    let v = ninety_days();
    let s = RenewalState::default();
    assert_eq!(stuck_for(Some(&v), Some("id"), &s, &p, at(days(60) + 60), None), None);
    assert_eq!(
        stuck_for(Some(&v), Some("id"), &s, &p, at(days(61) + 1), None),
        Some(SignedDuration::from_mins(days(1) + 1))
    );
    // No certificate ever: counted from the first attempt.
    assert_eq!(stuck_for(None, None, &s, &p, at(days(2)), None), None);
    assert_eq!(stuck_for(None, None, &s, &p, at(days(2)), Some(at(0))), Some(SignedDuration::from_mins(days(2))));
}

#[test]
fn watched_certificates_come_from_the_fact() {
    let fact = serde_json::json!([
        {"name": "a.example", "not_after": at(60).to_string(), "acme_certificate": true, "issuer": "x"},
        {"name": "b.example", "not_after": at(60).to_string(), "acme_certificate": false},
        {"name": "c.example"}
    ])
    .to_string();
    let w = watched(Some(&fact), at(0));
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].name, "a.example");
    assert_eq!(w[0].seconds_left, 3600.0);
    assert!(watched(Some("not json"), at(0)).is_empty());
    assert!(watched(None, at(0)).is_empty());
}
