//! ARI (RFC 9773) against a small mock ACME directory (Pebble 2.4.0 predates ARI): the
//! renewal window makes a certificate due early, the new order names the old certificate in
//! `replaces`, a 409 conflict on `replaces` falls back to one fresh order and never loops, and
//! a missing stored file leads to a fresh order too.

mod common;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
use caretaker_certs::manager::Manager;
use caretaker_certs::{Settings, Solver};
use caretaker_core::cert::{Policy, Urgency};
use caretaker_core::config::Redactor;
use caretaker_core::job::Trigger;
use common::Front;
use jiff::{SignedDuration, Timestamp};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Ca {
    base: String,
    /// `replaces` of each new order (None: a fresh order).
    orders: Vec<Option<String>>,
    /// Answer orders carrying `replaces` with 409 alreadyReplaced.
    conflict: bool,
    /// The renewal window served for every certificate.
    window: Option<(Timestamp, Timestamp)>,
    ari_requests: Vec<String>,
    states: Vec<serde_json::Value>,
    certs: Vec<String>,
    names: Vec<String>,
    issuer: Option<(rcgen::CertificateParams, String)>,
}

type S = Arc<Mutex<Ca>>;

fn nonce() -> [(header::HeaderName, &'static str); 1] {
    [(header::HeaderName::from_static("replay-nonce"), "bm9uY2U")]
}

fn payload(body: &Bytes) -> serde_json::Value {
    let jws: serde_json::Value = serde_json::from_slice(body).unwrap();
    let p = jws["payload"].as_str().unwrap_or("");
    if p.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&BASE64_URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

async fn directory(State(s): State<S>) -> Response {
    let b = s.lock().unwrap().base.clone();
    axum::Json(serde_json::json!({
        "newNonce": format!("{b}/nonce"),
        "newAccount": format!("{b}/account"),
        "newOrder": format!("{b}/order"),
        "revokeCert": format!("{b}/revoke"),
        "keyChange": format!("{b}/key-change"),
        "renewalInfo": format!("{b}/renewal-info"),
    }))
    .into_response()
}

async fn new_nonce() -> Response {
    (StatusCode::OK, nonce()).into_response()
}

async fn new_account(State(s): State<S>) -> Response {
    let b = s.lock().unwrap().base.clone();
    (
        StatusCode::CREATED,
        nonce(),
        [(header::LOCATION, format!("{b}/acct/1"))],
        axum::Json(serde_json::json!({"status": "valid"})),
    )
        .into_response()
}

async fn new_order(State(s): State<S>, body: Bytes) -> Response {
    let p = payload(&body);
    let mut ca = s.lock().unwrap();
    let replaces = p["replaces"].as_str().map(str::to_string);
    ca.orders.push(replaces.clone());
    if replaces.is_some() && ca.conflict {
        let problem = serde_json::json!({
            "type": "urn:ietf:params:acme:error:alreadyReplaced",
            "detail": "the certificate has already been replaced",
            "status": 409
        });
        return (
            StatusCode::CONFLICT,
            nonce(),
            [(header::CONTENT_TYPE, "application/problem+json")],
            problem.to_string(),
        )
            .into_response();
    }
    let n = ca.states.len();
    let b = ca.base.clone();
    ca.names = p["identifiers"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap().to_string()).collect();
    let mut st = serde_json::json!({
        "status": "ready",
        "identifiers": p["identifiers"],
        "authorizations": [format!("{b}/authz/{n}")],
        "finalize": format!("{b}/finalize/{n}"),
    });
    if let Some(r) = replaces {
        st["replaces"] = r.into();
    }
    ca.states.push(st.clone());
    ca.certs.push(String::new());
    (StatusCode::CREATED, nonce(), [(header::LOCATION, format!("{b}/orders/{n}"))], axum::Json(st)).into_response()
}

async fn authz(State(s): State<S>) -> Response {
    let name = s.lock().unwrap().names[0].clone();
    (
        nonce(),
        axum::Json(
            serde_json::json!({"status": "valid", "identifier": {"type": "dns", "value": name}, "challenges": []}),
        ),
    )
        .into_response()
}

async fn order(State(s): State<S>, Path(n): Path<usize>) -> Response {
    (nonce(), axum::Json(s.lock().unwrap().states[n].clone())).into_response()
}

async fn finalize(State(s): State<S>, Path(n): Path<usize>, body: Bytes) -> Response {
    let p = payload(&body);
    let csr = BASE64_URL_SAFE_NO_PAD.decode(p["csr"].as_str().unwrap()).unwrap();
    let mut ca = s.lock().unwrap();
    let csr =
        rcgen::CertificateSigningRequestParams::from_der(&rustls::pki_types::CertificateSigningRequestDer::from(csr))
            .unwrap();
    let (ca_params, ca_key_pem) = ca.issuer.clone().unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).unwrap();
    let ca_cert = ca_params.clone().self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut csr = csr;
    let now = jiff::Timestamp::now().as_second();
    csr.params.not_before = time::OffsetDateTime::from_unix_timestamp(now - 60).unwrap();
    csr.params.not_after = time::OffsetDateTime::from_unix_timestamp(now + 90 * 86400).unwrap();
    csr.params.use_authority_key_identifier_extension = true;
    csr.params.serial_number = Some(rcgen::SerialNumber::from(vec![1, (n as u8) + 1, 7]));
    let cert = csr.signed_by(&issuer).unwrap();
    ca.certs[n] = format!("{}{}", cert.pem(), ca_cert.pem());
    let b = ca.base.clone();
    ca.states[n]["status"] = "valid".into();
    ca.states[n]["certificate"] = format!("{b}/cert/{n}").into();
    (nonce(), axum::Json(ca.states[n].clone())).into_response()
}

async fn cert(State(s): State<S>, Path(n): Path<usize>) -> Response {
    (nonce(), [(header::CONTENT_TYPE, "application/pem-certificate-chain")], s.lock().unwrap().certs[n].clone())
        .into_response()
}

async fn renewal_info(State(s): State<S>, Path(id): Path<String>, _h: HeaderMap) -> Response {
    let mut ca = s.lock().unwrap();
    ca.ari_requests.push(id);
    let Some((start, end)) = ca.window else { return StatusCode::NOT_FOUND.into_response() };
    (
        [(header::RETRY_AFTER, "21600")],
        axum::Json(serde_json::json!({"suggestedWindow": {"start": start.to_string(), "end": end.to_string()}})),
    )
        .into_response()
}

async fn mock_ca() -> (S, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "mock ARI CA");
    params.key_identifier_method = rcgen::KeyIdMethod::Sha256;
    let s: S = Arc::new(Mutex::new(Ca {
        base: base.clone(),
        issuer: Some((params, key.serialize_pem())),
        ..Default::default()
    }));
    let app = Router::new()
        .route("/dir", get(directory))
        .route("/nonce", get(new_nonce).head(new_nonce))
        .route("/account", post(new_account))
        .route("/order", post(new_order))
        .route("/authz/{n}", post(authz))
        .route("/orders/{n}", post(order))
        .route("/finalize/{n}", post(finalize))
        .route("/cert/{n}", post(cert))
        .route("/renewal-info/{id}", get(renewal_info))
        .with_state(s.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (s, format!("{base}/dir"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_window_replaces_and_conflict_fallback() {
    let (ca, directory) = mock_ca().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let front = Arc::new(Front::default());
    let settings = Settings {
        names: vec!["ari.caretaker.test".into()],
        directory,
        email: None,
        ca_file: None,
        eab: None,
        reload_command: None,
        policy: Policy { max_orders_per_hour: 10, ..Policy::default() },
    };
    let solver = Solver::Http01(Arc::new(front.tokens.clone()));
    let mut m = Manager::new(&state, settings.clone(), solver.clone(), front.clone(), Redactor::default()).unwrap();
    let now = Timestamp::now();
    m.serve_initial(now).unwrap();

    // First issuance: nothing to replace.
    let next = m.tick(now, Urgency::Scheduled, Trigger::Schedule).await;
    let st1 = m.status(now);
    assert_eq!(st1.last_error, None, "{st1:?}");
    let id1 = m.current().unwrap().info.ari_id.clone().expect("an ARI identifier");
    assert_eq!(ca.lock().unwrap().orders, [None]);
    // No window from the CA: due at the lifetime rule (60 days from now).
    assert!(next > now + SignedDuration::from_hours(24 * 59), "{next}");

    // The CA moves the window to now (e.g. a mass revocation): due at once, and the order
    // names the old certificate.
    ca.lock().unwrap().window = Some((now - SignedDuration::from_hours(1), now + SignedDuration::from_hours(1)));
    let t = now + SignedDuration::from_mins(1);
    m.tick(t, Urgency::Scheduled, Trigger::Schedule).await;
    assert_eq!(ca.lock().unwrap().ari_requests, std::slice::from_ref(&id1));
    assert_eq!(ca.lock().unwrap().orders, [None, Some(id1.clone())]);
    let st2 = m.status(t);
    assert_eq!(st2.last_error, None, "{st2:?}");
    assert_ne!(st2.serial, st1.serial);
    let id2 = m.current().unwrap().info.ari_id.clone().unwrap();

    // The CA answers `replaces` with 409: one fresh order right away, then quiet.
    ca.lock().unwrap().conflict = true;
    let t = t + SignedDuration::from_mins(1);
    let mut now = t;
    for _ in 0..10 {
        let next = m.tick(now, Urgency::Scheduled, Trigger::Schedule).await;
        if next > now + SignedDuration::from_hours(1) {
            break;
        }
        now = next.max(now);
    }
    let orders = ca.lock().unwrap().orders.clone();
    assert_eq!(orders, [None, Some(id1.clone()), Some(id2.clone()), None], "no loop on the conflict");
    let st3 = m.status(now);
    assert_eq!(st3.last_error, None, "{st3:?}");
    assert_ne!(st3.serial, st2.serial);

    // A missing stored file: a fresh order (no `replaces`: there is nothing to name), once.
    drop(m);
    std::fs::remove_file(state.join("certs/ari.caretaker.test/fullchain.pem")).unwrap();
    ca.lock().unwrap().conflict = false;
    ca.lock().unwrap().window = None;
    let mut m = Manager::new(&state, settings, solver, front.clone(), Redactor::default()).unwrap();
    m.serve_initial(now).unwrap();
    assert!(caretaker_certs::x509::info(&front.current().unwrap().cert[0]).unwrap().self_signed);
    let next = m.tick(now + SignedDuration::from_mins(1), Urgency::Scheduled, Trigger::Schedule).await;
    assert!(next > now + SignedDuration::from_hours(24 * 59));
    assert_eq!(ca.lock().unwrap().orders.len(), 5);
    assert_eq!(ca.lock().unwrap().orders[4], None);
    assert!(!caretaker_certs::x509::info(&front.current().unwrap().cert[0]).unwrap().self_signed);
}
