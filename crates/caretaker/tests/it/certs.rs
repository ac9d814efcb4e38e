//! The daemon's ACME renewal task end to end (docs/certificates.md): a daemon with `tls.acme`
//! against a real Pebble serves the self-signed certificate at once, gets a certificate
//! through HTTP-01 on its own front door and serves it without a restart (curl trusting only
//! Pebble's root); `cert status` shows it, a daemon restart places no new order, the status
//! fact feeds `/metrics` (`caretaker_certificate_expiry_seconds`) and `check`.

use crate::supervisor::{demo_web, free_port, App};
use caretaker_testkit::{require_service, wait_until};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pebble (with pebble-challtestsrv as its DNS: every name is 127.0.0.1) validating on
/// `http_port`; returns the processes, the directory URL and the test CA of its listener.
fn pebble(dir: &Path, http_port: u16, tls_port: u16) -> Option<(Vec<Killed>, String, u16)> {
    let pebble = require_service("CARETAKER_TEST_PEBBLE")?;
    let chall = std::env::var("CARETAKER_TEST_PEBBLE_CHALLTESTSRV").unwrap_or_else(|_| "pebble-challtestsrv".into());
    let d = dir.display();
    // A test CA (the `ca_file` the directory connection trusts) and Pebble's listener
    // certificate signed by it.
    sh(&format!(
        "cd {d} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj '/CN=test CA' \
         -keyout ca.key -out ca.pem 2>/dev/null && \
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=localhost' -keyout key.pem -out l.csr 2>/dev/null && \
         printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext.cnf && \
         openssl x509 -req -in l.csr -CA ca.pem -CAkey ca.key -set_serial 7 -days 2 -extfile ext.cnf -out cert.pem 2>/dev/null"
    ));
    let (port, mgmt, dns) = (free_port(), free_port(), free_port());
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{port}"), "managementListenAddress": format!("127.0.0.1:{mgmt}"),
        "certificate": dir.join("cert.pem"), "privateKey": dir.join("key.pem"),
        "httpPort": http_port, "tlsPort": tls_port, "ocspResponderURL": "", "externalAccountBindingRequired": false
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let log = || std::fs::OpenOptions::new().create(true).append(true).open(dir.join("pebble.log")).unwrap();
    let dns_proc = Command::new(chall)
        .args(["-dns01", &format!("127.0.0.1:{dns}"), "-http01", "", "-https01", "", "-tlsalpn01", ""])
        .args(["-management", &format!("127.0.0.1:{}", free_port()), "-defaultIPv6", ""])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Command::new(pebble)
        .arg("-config")
        .arg(dir.join("pebble.json"))
        .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
        .envs([("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0"), ("PEBBLE_AUTHZREUSE", "0")])
        .stdout(log())
        .stderr(log())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), "pebble", || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    // Pebble's root, for the verifying client only.
    sh(&format!("curl -sS --cacert {d}/ca.pem https://127.0.0.1:{mgmt}/roots/0 -o {d}/root.pem"));
    Some((vec![Killed(dns_proc), Killed(p)], format!("https://127.0.0.1:{port}/dir"), mgmt))
}

fn orders(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default().matches("orders in the db").count()
}

fn curl(name: &str, port: u16, root: &Path) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve", &format!("{name}:{port}:127.0.0.1"), "--cacert"])
        .arg(root)
        .arg(format!("https://{name}:{port}/healthz"))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_daemon_gets_a_certificate_from_pebble_and_serves_it_without_restart() {
    let (app_port, door, https) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("pebble");
    std::fs::create_dir(&pdir).unwrap();
    let Some((_pebble, directory, _)) = pebble(&pdir, door, free_port()) else { return };
    let name = "shop.caretaker.test";
    let app = App::new(
        &demo_web(dir.path(), app_port),
        &format!(
            r#"front_door: {{ listen: "127.0.0.1:{door}", upstream: "127.0.0.1:{app_port}" }}
tls:
  names: [{name}]
  listen: "127.0.0.1:{https}"
  acme: {{ directory: "{directory}", ca_file: "{ca}", email: ops@caretaker.test }}"#,
            ca = pdir.join("ca.pem").display()
        ),
    );
    let root = pdir.join("root.pem");
    let d = app.daemon();
    // Served, then verified against Pebble's root once issued — no restart in between.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while let Err(e) = curl(name, https, &root) {
        if std::time::Instant::now() > deadline {
            let st = app.ct.run(&["cert", "status", "--json"]);
            panic!(
                "no certificate from Pebble: {e}\nstatus: {}{}\npebble: {}",
                String::from_utf8_lossy(&st.stdout),
                String::from_utf8_lossy(&st.stderr),
                std::fs::read_to_string(pdir.join("pebble.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(orders(&pdir), 1);
    let st = app.ct.json(&["cert", "status", "--json"]);
    assert!(st["issuer"].as_str().unwrap().contains("Pebble"), "{st}");
    assert_eq!(st["self_signed"], false);
    assert!(st["last_error"].is_null(), "{st}");
    let text = app.ct.expect(&["cert", "status"], 0);
    assert!(text.contains("next renewal"), "{text}");
    // Not due: `cert renew` says so and orders nothing.
    let out = app.ct.expect(&["cert", "renew"], 0);
    assert!(out.contains("not due"), "{out}");
    // /metrics (through `caretaker metrics`) and `check` read the status.
    let metrics = app.ct.expect(&["metrics"], 0);
    assert!(metrics.contains(&format!("caretaker_certificate_expiry_seconds{{name=\"{name}\"}}")), "{metrics}");
    let jobs = app.ct.expect(&["jobs"], 0);
    assert!(jobs.contains("certificate"), "{jobs}");

    // A forced renewal through the running daemon: a new certificate, served at once.
    let out = app.ct.expect(&["cert", "renew", "--force"], 0);
    assert!(out.contains("renewed"), "{out}");
    assert_eq!(orders(&pdir), 2);
    curl(name, https, &root).unwrap();

    // Restart: the stored certificate is served, no order.
    drop(d);
    let _d = app.daemon();
    wait_until(Duration::from_secs(30), "HTTPS after the restart", || curl(name, https, &root).ok());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(orders(&pdir), 2, "a restart must not order");
}

#[test]
fn the_daemon_answers_tls_alpn_01_on_its_tls_port() {
    let (app_port, door, https) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("pebble");
    std::fs::create_dir(&pdir).unwrap();
    // Pebble validates on the TLS port only; its HTTP-01 port points nowhere.
    let Some((_pebble, directory, _)) = pebble(&pdir, free_port(), https) else { return };
    let name = "alpn.caretaker.test";
    let app = App::new(
        &demo_web(dir.path(), app_port),
        &format!(
            r#"front_door: {{ listen: "127.0.0.1:{door}", upstream: "127.0.0.1:{app_port}" }}
tls:
  names: [{name}]
  listen: "127.0.0.1:{https}"
  acme: {{ directory: "{directory}", ca_file: "{ca}", challenge: tls-alpn-01 }}"#,
            ca = pdir.join("ca.pem").display()
        ),
    );
    let root = pdir.join("root.pem");
    let _d = app.daemon();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while let Err(e) = curl(name, https, &root) {
        if std::time::Instant::now() > deadline {
            let st = app.ct.run(&["cert", "status", "--json"]);
            panic!("no certificate through TLS-ALPN-01: {e}\nstatus: {}", String::from_utf8_lossy(&st.stdout));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(orders(&pdir), 1);
    let jobs = app.ct.json(&["jobs", "--json"]);
    assert!(jobs.to_string().contains("tls-alpn-01"), "{jobs}");
}
