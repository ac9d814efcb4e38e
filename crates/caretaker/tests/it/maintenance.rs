//! Maintenance mode through the CLI, and the documented nginx snippet against real nginx.

use crate::{stderr_of, Scratch};
use caretaker_testkit::{require_service, wait_until};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A tiny app on loopback that answers every request with 200 "app".
fn tiny_app() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\napp");
        }
    });
    port
}

fn get(port: u16) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /some/page HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0);
    (status, out)
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL would orphan them on the port.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[test]
fn maintenance_mode_switches_the_nginx_page_on_and_off() {
    let Some(nginx) = require_service("CARETAKER_TEST_NGINX") else { return };
    let s = Scratch::new();
    let www = s.path().join("www");
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: site\nmaintenance:\n  page_dir: \"{}\"\n  message: \"Back soon <3\"\n",
        www.display()
    ));
    let app_port = tiny_app();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let snippet = include_str!("../../../../docs/nginx/caretaker-maintenance.conf")
        .replace("/var/lib/caretaker/www", &www.display().to_string());
    let dir = s.path();
    std::fs::write(dir.join("snippet.conf"), snippet).unwrap();
    let user = if unsafe { libc::geteuid() } == 0 { "user root;" } else { "" };
    let conf = format!(
        "{user}\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  server {{\n    listen 127.0.0.1:{port};\n    include {d}/snippet.conf;\n    location / {{ proxy_pass http://127.0.0.1:{app_port}; }}\n  }}\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let _nginx = Nginx(
        Command::new(&nginx)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(dir)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(10), "nginx to listen", || TcpStream::connect(("127.0.0.1", port)).ok());

    assert_eq!(get(port).0, 200);
    let out = ct.expect(&["maintenance", "on"], 0);
    assert!(out.contains("mode: maintenance"), "{out}");
    let (status, resp) = get(port);
    assert_eq!(status, 503, "{resp}");
    assert!(resp.contains("Retry-After: 30"), "{resp}");
    assert!(resp.contains("Back soon &lt;3"), "{resp}");

    let status_json = ct.json(&["maintenance", "status", "--json"]);
    assert_eq!(status_json["mode"], "maintenance");
    assert_eq!(status_json["by"], "operator");

    let out = ct.run(&["maintenance", "off"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(get(port).0, 200);
    assert!(!www.join("maintenance.html").exists());

    // Every switch is an event in the state store.
    ct.expect(&["maintenance", "on", "--message", "second"], 0);
    assert!(get(port).1.contains("second"));
    ct.expect(&["maintenance", "off"], 0);
}
