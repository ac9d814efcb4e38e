//! The daemon's front door with `tls:` (docs/tls.md): HTTPS with the operator's certificate
//! checked by a client that trusts only the test's CA, the redirect, HSTS, the maintenance
//! page over TLS, a renewed certificate file served without a reload, and the self-signed
//! certificate when there is none. The client is curl (`--cacert`), certificates come from
//! the openssl command.

use crate::supervisor::{demo_web, free_port, http_get, App};
use caretaker_testkit::wait_until;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl (the test makes its certificates with it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`ca.pem`) and a leaf for `localhost` signed by it, written as `cert.pem` (leaf, then
/// CA) and `key.pem`; `serial` tells leaves apart.
fn issue(dir: &Path, serial: &str) {
    let p = |f: &str| dir.join(f).display().to_string();
    if !dir.join("ca.pem").exists() {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=caretaker test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ]);
    }
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &p("new.key"),
        "-out",
        &p("new.csr"),
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("new.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-set_serial",
        serial,
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("leaf.pem"),
    ]);
    let chain =
        std::fs::read_to_string(dir.join("leaf.pem")).unwrap() + &std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    // As a renewal tool would: new files renamed into place.
    std::fs::write(dir.join("cert.tmp"), chain).unwrap();
    std::fs::rename(dir.join("new.key"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("cert.tmp"), dir.join("cert.pem")).unwrap();
}

/// curl over HTTPS to `localhost:port`, trusting `ca` only (`None`: trusting nothing, `-k`):
/// (status, headers, body, the served certificate's serial) or curl's error.
fn curl(port: u16, path: &str, ca: Option<&Path>) -> Result<(u16, String, String), String> {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10", "-D", "-", "--resolve", &format!("localhost:{port}:127.0.0.1")]);
    match ca {
        Some(ca) => c.arg("--cacert").arg(ca),
        None => c.arg("-k"),
    };
    let out = c.arg(format!("https://localhost:{port}{path}")).output().expect("curl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, head.to_ascii_lowercase(), body.to_string()))
}

/// The serial number of the certificate served on `port`.
fn served_serial(port: u16) -> Option<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    s.strip_prefix("serial=").map(str::to_string)
}

#[test]
fn https_with_the_operators_certificate_redirect_hsts_maintenance_and_a_renewed_file() {
    let (app_port, door, https) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    issue(&certs, "0x1001");
    let app = App::new(
        &demo_web(dir.path(), app_port),
        &format!(
            r#"front_door: {{ listen: "127.0.0.1:{door}", upstream: "127.0.0.1:{app_port}", retry_after: 5s }}
tls:
  names: [localhost]
  listen: "127.0.0.1:{https}"
  hsts: {{ max_age: 30d }}
  certificate: {{ cert_file: "{c}/cert.pem", key_file: "{c}/key.pem" }}"#,
            c = certs.display()
        ),
    );
    let _d = app.daemon();
    let ca = certs.join("ca.pem");
    let (status, head, _) = wait_until(Duration::from_secs(30), "the app over HTTPS", || {
        curl(https, "/healthz", Some(&ca)).ok().filter(|r| r.0 == 200)
    });
    assert_eq!(status, 200);
    assert!(head.contains("strict-transport-security: max-age=2592000"), "{head}");
    assert_eq!(served_serial(https).as_deref(), Some("1001"));

    // Plain HTTP: redirected, with the HTTPS port.
    let (status, _) = http_get(door, "/healthz?x=1").unwrap();
    assert_eq!(status, 308);
    let raw = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", door)).unwrap();
        write!(s, "GET /shop HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf.to_ascii_lowercase()
    };
    assert!(raw.contains(&format!("location: https://localhost:{https}/shop\r\n")), "{raw}");

    // The maintenance page over TLS, switched on by another process.
    app.ct.expect(&["maintenance", "on", "--message", "Back at noon"], 0);
    let (status, head, body) = curl(https, "/", Some(&ca)).unwrap();
    assert_eq!(status, 503, "{head}");
    assert!(body.contains("Back at noon"), "{body}");
    assert!(head.contains("strict-transport-security"), "{head}");
    app.ct.expect(&["maintenance", "off"], 0);

    // Renewed files are served without a reload or restart.
    issue(&certs, "0x1002");
    wait_until(Duration::from_secs(60), "the renewed certificate to be served", || {
        (served_serial(https).as_deref() == Some("1002")).then_some(())
    });
    assert_eq!(curl(https, "/healthz", Some(&ca)).unwrap().0, 200);
}

#[test]
fn without_a_certificate_https_answers_at_once_with_a_self_signed_one() {
    let (app_port, door, https) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(
        &demo_web(dir.path(), app_port),
        &format!(
            r#"front_door: {{ listen: "127.0.0.1:{door}", upstream: "127.0.0.1:{app_port}" }}
tls: {{ names: [localhost, www.localhost], listen: "127.0.0.1:{https}", redirect_http: false }}"#
        ),
    );
    let _d = app.daemon();
    wait_until(Duration::from_secs(30), "the app over HTTPS (self-signed)", || {
        curl(https, "/healthz", None).ok().filter(|r| r.0 == 200)
    });
    // Not trusted by a verifying client; plain HTTP is not redirected here.
    let certs = tempfile::tempdir().unwrap();
    issue(certs.path(), "0x2001");
    let e = curl(https, "/healthz", Some(&certs.path().join("ca.pem"))).unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    assert_eq!(http_get(door, "/healthz").map(|r| r.0), Some(200));

    // A reload with HSTS: the front door restarts with it, the socket and the certificate
    // (same names) stay.
    let before = served_serial(https).expect("a certificate");
    let config = app.path("caretaker.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("redirect_http: false }", "redirect_http: false, hsts: { max_age: 1d } }"))
        .unwrap();
    app.ct.expect(&["reload"], 0);
    let (_, head, _) = wait_until(Duration::from_secs(30), "HSTS after the reload", || {
        curl(https, "/healthz", None).ok().filter(|r| r.1.contains("strict-transport-security: max-age=86400"))
    });
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(served_serial(https), Some(before), "the reload made a new certificate");
}
