//! The fleet controller against real OpenSSH servers, each in its own network namespace made
//! by the test (docs/fleet.md): host-key matrix (unknown, changed, changed on the jump host,
//! hashed known_hosts), hosts going down mid-run (transient: quiet; other: alert), a SIGKILL of
//! the controller mid-run, the digest e-mail at a real SMTP sink, `fleet install`, and two
//! controllers on one PostgreSQL.
//!
//! The servers' `caretaker` is a small script per host (`caretaker_path`), so each test decides
//! what the server reports and when; the server side of `tasks run-due` has its own tests.

use crate::BIN;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Whether this machine lets the test make network namespaces (root, `ip`, sshd).
fn netns_available() -> bool {
    let ok = Path::new("/usr/sbin/sshd").exists()
        && Command::new("ip")
            .args(["netns", "list"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        && unsafe { libc::geteuid() } == 0;
    if !ok {
        // Fails under CI, skips loudly elsewhere.
        caretaker_testkit::require_service("CARETAKER_TEST_NETNS_UNAVAILABLE_ROOT_IP_AND_SSHD_NEEDED");
    }
    ok
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A block of addresses and names no other test (or test process) uses: taken by creating the
/// namespace `ctf<n>`, which fails when it exists.
fn take_slot() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() * 131 + N.fetch_add(1, Ordering::Relaxed) * 7) % 60000;
    for i in 0..60000 {
        let n = (start + i) % 60000;
        if Command::new("ip")
            .args(["netns", "add", &format!("ctf{n}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return n;
        }
    }
    panic!("no free network namespace name");
}

/// 10.240.0.0/12 split in /30 blocks: `.1` the outer side, `.2` the namespace.
fn addr(n: u32, last: u32) -> String {
    let base = (10u32 << 24) | (240 << 16);
    let a = base + n * 4 + last;
    format!("{}.{}.{}.{}", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255)
}

/// One server: a namespace with its own sshd and host key.
pub struct Host {
    pub ns: String,
    pub ip: String,
    pub dir: PathBuf,
    sshd: Option<Child>,
}

impl Host {
    pub fn host_key_pub(&self) -> PathBuf {
        self.dir.join("host_ed25519.pub")
    }

    /// A new host key (the server was "reinstalled"); restart sshd to use it.
    pub fn new_host_key(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("host_ed25519"));
        let _ = std::fs::remove_file(self.dir.join("host_ed25519.pub"));
        keygen(&self.dir.join("host_ed25519"));
        self.restart_sshd();
    }

    pub fn stop_sshd(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Sessions of this sshd too (a master connection's server side).
        let out = Command::new("ip").args(["netns", "pids", &self.ns]).output().unwrap();
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }

    pub fn restart_sshd(&mut self) {
        self.stop_sshd();
        self.start_sshd();
    }

    fn start_sshd(&mut self) {
        let log = self.dir.join("sshd.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "/usr/sbin/sshd", "-D", "-f"])
            .arg(self.dir.join("sshd_config"))
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.sshd = Some(child);
        let ip = self.ip.clone();
        let ns = self.ns.clone();
        // Listening? (asked inside the namespace: the jump host's targets are not reachable
        // from outside).
        caretaker_testkit::wait_until(Duration::from_secs(30), "sshd to listen", || {
            let out = Command::new("ip").args(["netns", "exec", &ns, "ss", "-Hltn"]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).contains(&format!("{ip}:22")).then_some(())
        });
    }

    /// The script that stands for caretaker on this server.
    pub fn fake(&self) -> PathBuf {
        self.dir.join("caretaker")
    }

    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("calls")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// What `tasks run-due --json` prints on this server (and its exit code).
    pub fn report(&self, json: &str, code: i32) {
        std::fs::write(self.dir.join("report.json"), json).unwrap();
        std::fs::write(self.dir.join("exit"), code.to_string()).unwrap();
    }

    /// `run-due` waits (after printing `first_line`, if any) until [`Host::unblock`].
    pub fn block(&self, first_line: &str) {
        std::fs::write(self.dir.join("first"), first_line).unwrap();
        std::fs::write(self.dir.join("block"), "").unwrap();
    }

    pub fn unblock(&self) {
        let _ = std::fs::remove_file(self.dir.join("block"));
    }
}

fn keygen(path: &Path) {
    sh(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-test", "-f", path.to_str().unwrap()]);
}

/// Namespaces, sshds and the fleet dir of one test; everything is torn down on drop, also when
/// the test fails.
pub struct Net {
    pub dir: tempfile::TempDir,
    pub hosts: Vec<Host>,
    namespaces: Vec<String>,
    links: Vec<String>,
}

pub fn report_json(tasks: &[(&str, &str)]) -> String {
    let results: Vec<serde_json::Value> =
        tasks.iter().map(|(n, o)| serde_json::json!({"kind": "command", "name": n, "job_kind": "command", "outcome": o, "reason": "slot"})).collect();
    serde_json::json!({"schema": 1, "caretaker_version": "0.1.0", "app": "t", "results": results}).to_string()
}

impl Net {
    pub fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        keygen(&dir.path().join("client"));
        std::fs::create_dir_all("/run/sshd").unwrap();
        Net { dir, hosts: Vec::new(), namespaces: Vec::new(), links: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn host_dir(&self, i: usize) -> PathBuf {
        let d = self.path().join(format!("host{i}"));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn setup_host(&mut self, ns: String, ip: String) -> usize {
        let i = self.hosts.len();
        let dir = self.host_dir(i);
        keygen(&dir.join("host_ed25519"));
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress {ip}:22\nHostKey {d}/host_ed25519\nPidFile none\nAuthorizedKeysFile {c}\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 MaxStartups 100:30:200\nMaxSessions 100\nAllowTcpForwarding yes\n",
                d = dir.display(),
                c = self.path().join("client.pub").display()
            ),
        )
        .unwrap();
        let d = dir.display();
        let script = format!(
            "#!/bin/sh\nd={d}\necho \"$*\" >> $d/calls\ncase \"$*\" in\n  *'tasks run-due --json'*)\n    [ -e $d/delay ] && sleep $(cat $d/delay)\n    if [ -e $d/block ]; then cat $d/first; echo; while [ -e $d/block ]; do sleep 0.05; done; fi\n\
             cat $d/report.json 2>/dev/null; exit $(cat $d/exit 2>/dev/null || echo 0);;\n  *'jobs run'*) exit $(cat $d/retry_exit 2>/dev/null || echo 0);;\n  *) echo \"unknown $*\" >&2; exit 2;;\nesac\n"
        );
        std::fs::write(dir.join("caretaker"), script).unwrap();
        std::fs::set_permissions(dir.join("caretaker"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("report.json"), report_json(&[])).unwrap();
        let mut h = Host { ns, ip, dir, sshd: None };
        h.start_sshd();
        self.hosts.push(h);
        i
    }

    /// A server reachable from the controller.
    pub fn add_host(&mut self) -> usize {
        let n = take_slot();
        let ns = format!("ctf{n}");
        self.namespaces.push(ns.clone());
        let (a, b) = (format!("ctf{n}a"), format!("ctf{n}b"));
        sh(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        self.links.push(a.clone());
        sh(&["ip", "link", "set", &b, "netns", &ns]);
        sh(&["ip", "addr", "add", &format!("{}/30", addr(n, 1)), "dev", &a]);
        sh(&["ip", "link", "set", &a, "up"]);
        sh(&["ip", "-n", &ns, "addr", "add", &format!("{}/30", addr(n, 2)), "dev", &b]);
        sh(&["ip", "-n", &ns, "link", "set", &b, "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        self.setup_host(ns, addr(n, 2))
    }

    /// A server reachable only through host `jump` (its own namespace, linked to the jump host's).
    pub fn add_host_behind(&mut self, jump: usize) -> usize {
        let n = take_slot();
        let ns = format!("ctf{n}");
        self.namespaces.push(ns.clone());
        let jns = self.hosts[jump].ns.clone();
        let (a, b) = (format!("ctf{n}a"), format!("ctf{n}b"));
        sh(&["ip", "link", "add", &a, "netns", &jns, "type", "veth", "peer", "name", &b, "netns", &ns]);
        sh(&["ip", "-n", &jns, "addr", "add", &format!("{}/30", addr(n, 1)), "dev", &a]);
        sh(&["ip", "-n", &jns, "link", "set", &a, "up"]);
        sh(&["ip", "-n", &ns, "addr", "add", &format!("{}/30", addr(n, 2)), "dev", &b]);
        sh(&["ip", "-n", &ns, "link", "set", &b, "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        self.setup_host(ns, addr(n, 2))
    }

    /// fleet.yml with every host (names h0, h1, ...), `extra` YAML lines per host index.
    pub fn write_fleet(&self, top: &str, per_host: &dyn Fn(usize) -> String) -> PathBuf {
        let mut t = format!(
            "version: 1\nssh:\n  identity_file: {}\n  connect_timeout: 5s\n  run_timeout: 120s\n  control_persist: 60s\n{top}servers:\n",
            self.path().join("client").display()
        );
        for (i, h) in self.hosts.iter().enumerate() {
            t += &format!(
                "  - name: h{i}\n    host: root@{}\n    caretaker_path: {}\n{}",
                h.ip,
                h.fake().display(),
                per_host(i)
            );
        }
        let p = self.path().join("fleet.yml");
        std::fs::write(&p, t).unwrap();
        p
    }

    pub fn caretaker(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("fleet").arg("--fleet").arg(self.path().join("fleet.yml")).args(args);
        c.env_remove("CARETAKER_FLEET").env_remove("CARETAKER_FLEET_STATE").env_remove("CARETAKER_FLEET_DATABASE_URL");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.caretaker(args).output().unwrap()
    }

    /// Records every host's key as `fleet hostkey --accept` does.
    pub fn accept_all(&self) {
        for i in 0..self.hosts.len() {
            let out = self.run(&["hostkey", &format!("h{i}"), "--accept"]);
            assert!(out.status.success(), "{}", text(&out));
        }
    }

    pub fn run_json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut a = vec!["run", "--json"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
        (out.status.code().unwrap_or(-1), v)
    }

    pub fn host_report<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["server"] == name)
            .unwrap_or_else(|| panic!("{name} not in {v}"))
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Drop for Net {
    fn drop(&mut self) {
        // Master connections first (they live on after the runs), of every state directory.
        let configs: Vec<PathBuf> = std::fs::read_dir(self.path())
            .map(|rd| rd.flatten().map(|e| e.path().join("ssh_config")).filter(|p| p.exists()).collect())
            .unwrap_or_default();
        for cfg in configs {
            for i in 0..self.hosts.len() {
                let _ = Command::new("ssh")
                    .arg("-F")
                    .arg(&cfg)
                    .args(["-O", "exit", &format!("ct-h{i}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for h in &mut self.hosts {
            h.stop_sshd();
        }
        for l in &self.links {
            let _ = Command::new("ip").args(["link", "del", l]).stderr(Stdio::null()).status();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn fingerprints_by_ssh_keygen(pubkey: &Path) -> (String, String) {
    let get = |md5: bool| {
        let mut c = Command::new("ssh-keygen");
        if md5 {
            c.args(["-E", "md5"]);
        }
        let out = c.arg("-l").arg("-f").arg(pubkey).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
    };
    (get(false), get(true))
}

#[test]
fn fleet_host_key_matrix_unknown_changed_and_hashed() {
    if !netns_available() {
        return;
    }
    let mut net = Net::new();
    net.add_host();
    net.write_fleet("", &|_| String::new());
    // Unknown: refused, nothing ran.
    let (code, v) = net.run_json(&[]);
    assert_eq!(code, 1, "{v}");
    let h = Net::host_report(&v, "h0");
    assert_eq!(h["contact"], "host_key", "{v}");
    assert!(h["message"].as_str().unwrap().contains("unknown"), "{v}");
    assert!(net.hosts[0].calls().is_empty(), "nothing may run on a host whose key is unknown");
    // The operator compares fingerprints: the same as ssh-keygen prints on the server.
    let out = net.run(&["hostkey", "h0"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let (sha, md5) = fingerprints_by_ssh_keygen(&net.hosts[0].host_key_pub());
    assert!(shown.contains(&sha) && shown.contains(&md5), "{shown}\nexpected {sha} and {md5}");
    assert!(shown.contains("unknown"), "{shown}");
    let out = net.run(&["hostkey", "h0", "--accept"]);
    assert!(out.status.success(), "{}", text(&out));
    let (code, v) = net.run_json(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(Net::host_report(&v, "h0")["contact"], "ok");
    assert_eq!(net.hosts[0].calls(), ["tasks run-due --json"]);

    // Changed (the server was reinstalled, or someone sits in between): refused with the new
    // fingerprint printed.
    // The first run left its master connection: the next one reuses it.
    let (_, v) = net.run_json(&[]);
    assert_eq!(Net::host_report(&v, "h0")["warm"], true, "{v}");
    // End it, so the next run connects anew.
    let cfg = net.path().join("fleet-state/ssh_config");
    Command::new("ssh").arg("-F").arg(&cfg).args(["-O", "exit", "ct-h0"]).stderr(Stdio::null()).status().unwrap();
    net.hosts[0].new_host_key();
    let calls_before = net.hosts[0].calls().len();
    let (code, v) = net.run_json(&[]);
    assert_eq!(code, 1, "{v}");
    let h = Net::host_report(&v, "h0");
    assert_eq!(h["contact"], "host_key", "{v}");
    let (new_sha, _) = fingerprints_by_ssh_keygen(&net.hosts[0].host_key_pub());
    let msg = h["message"].as_str().unwrap();
    assert!(msg.contains("CHANGED") && msg.contains(&new_sha), "{msg}\nexpected {new_sha}");
    assert_eq!(net.hosts[0].calls().len(), calls_before);
    let out = net.run(&["hostkey", "h0"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CHANGED"));
    let out = net.run(&["hostkey", "h0", "--accept"]);
    assert_eq!(out.status.code(), Some(5), "accepting a changed key needs --replace: {}", text(&out));
    let out = net.run(&["hostkey", "h0", "--accept", "--replace"]);
    assert!(out.status.success(), "{}", text(&out));
    let (code, v) = net.run_json(&[]);
    assert_eq!(code, 0, "{v}");
    Command::new("ssh").arg("-F").arg(&cfg).args(["-O", "exit", "ct-h0"]).stderr(Stdio::null()).status().unwrap();

    // Hashed known_hosts (ssh-keygen -H), as many operators keep them: accepted.
    let kh = net.path().join("known_hosts");
    sh(&["ssh-keygen", "-H", "-f", kh.to_str().unwrap()]);
    let hashed = std::fs::read_to_string(&kh).unwrap();
    assert!(hashed.starts_with("|1|") && !hashed.contains(&net.hosts[0].ip), "{hashed}");
    let (code, v) = net.run_json(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(Net::host_report(&v, "h0")["contact"], "ok");
    assert!(String::from_utf8_lossy(&net.run(&["hostkey", "h0"]).stdout).contains("recorded"));
}

#[test]
fn fleet_jump_host_key_is_checked_too() {
    if !netns_available() {
        return;
    }
    let mut net = Net::new();
    let j = net.add_host();
    let t = net.add_host_behind(j);
    let jump_ip = net.hosts[j].ip.clone();
    net.write_fleet("", &|i| if i == t { format!("    jump: root@{jump_ip}\n") } else { String::new() });
    // The jump host unknown: the server behind it is refused, naming the jump host.
    let (code, v) = net.run_json(&["h1"]);
    assert_eq!(code, 1, "{v}");
    let h = Net::host_report(&v, "h1");
    assert_eq!(h["contact"], "host_key", "{v}");
    assert!(h["message"].as_str().unwrap().contains(&format!("jump host {jump_ip}")), "{v}");
    // hostkey of a server behind an unknown jump host: refused too (no scan through it).
    assert!(!net.run(&["hostkey", "h1"]).status.success());
    let out = net.run(&["hostkey", "h1", "--jump", "--accept"]);
    assert!(out.status.success(), "{}", text(&out));
    // Jump known, server unknown: refused naming the server.
    let (_, v) = net.run_json(&["h1"]);
    let h = Net::host_report(&v, "h1");
    assert_eq!(h["contact"], "host_key", "{v}");
    assert!(
        h["message"].as_str().unwrap().contains("unknown") && h["message"].as_str().unwrap().contains("(server h1)"),
        "{v}"
    );
    let out = net.run(&["hostkey", "h1"]);
    let (sha, _) = fingerprints_by_ssh_keygen(&net.hosts[t].host_key_pub());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&sha), "{}", text(&out));
    assert!(net.run(&["hostkey", "h1", "--accept"]).status.success());
    let (code, v) = net.run_json(&["h1"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(net.hosts[t].calls(), ["tasks run-due --json"]);
    // The jump host's key changes: refused, naming the jump host, although the server's own
    // key is unchanged.
    let cfg = net.path().join("fleet-state/ssh_config");
    Command::new("ssh").arg("-F").arg(&cfg).args(["-O", "exit", "ct-h1"]).stderr(Stdio::null()).status().unwrap();
    net.hosts[j].new_host_key();
    let (code, v) = net.run_json(&["h1"]);
    assert_eq!(code, 1, "{v}");
    let h = Net::host_report(&v, "h1");
    assert_eq!(h["contact"], "host_key", "{v}");
    let msg = h["message"].as_str().unwrap();
    assert!(msg.contains("CHANGED") && msg.contains(&format!("jump host {jump_ip}")), "{msg}");
    assert_eq!(net.hosts[t].calls().len(), 1, "nothing ran through the changed jump host");
}

#[test]
fn fleet_host_down_mid_run_transient_is_quiet_other_alerts() {
    if !netns_available() {
        return;
    }
    let mut net = Net::new();
    for _ in 0..3 {
        net.add_host();
    }
    // h1 is transient (a laptop), h2 is not.
    net.write_fleet("", &|i| if i == 1 { "    transient: true\n".into() } else { String::new() });
    net.accept_all();
    for h in &net.hosts {
        h.report(&report_json(&[("job:a", "succeeded")]), 0);
    }
    // One server at a time, in order; h0's run-due waits until h1 and h2 went down.
    net.hosts[0].block("");
    let child = net
        .caretaker(&["run", "--json", "--parallel", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    caretaker_testkit::wait_until(Duration::from_secs(60), "h0's run-due to start", || {
        (!net.hosts[0].calls().is_empty()).then_some(())
    });
    net.hosts[1].stop_sshd();
    net.hosts[2].stop_sshd();
    net.hosts[0].unblock();
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!(out.status.code(), Some(1), "a non-transient server down alerts: {v}");
    let (h0, h1, h2) = (Net::host_report(&v, "h0"), Net::host_report(&v, "h1"), Net::host_report(&v, "h2"));
    assert_eq!((h0["contact"].as_str(), h0["alert"].as_bool()), (Some("ok"), Some(false)), "{v}");
    assert_eq!(h0["tasks"][0]["outcome"], "ok");
    assert_eq!((h1["contact"].as_str(), h1["alert"].as_bool()), (Some("unreachable"), Some(false)), "{v}");
    assert_eq!((h2["contact"].as_str(), h2["alert"].as_bool()), (Some("unreachable"), Some(true)), "{v}");
    // Only the transient one down: the run is quiet (exit 0).
    net.hosts[2].start_sshd();
    let (code, v) = net.run_json(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(Net::host_report(&v, "h1")["contact"], "unreachable");
    // And status remembers h0's success.
    let st: serde_json::Value = serde_json::from_slice(&net.run(&["status", "--json"]).stdout).unwrap();
    let h0 = st.as_array().unwrap().iter().find(|s| s["server"] == "h0").unwrap();
    assert!(h0["tasks"][0]["last_success"].as_i64().is_some(), "{st}");
}

#[test]
fn fleet_sigkill_mid_run_loses_no_completed_result_and_resumes() {
    if !netns_available() {
        return;
    }
    let mut net = Net::new();
    for _ in 0..3 {
        net.add_host();
    }
    net.write_fleet("", &|_| String::new());
    net.accept_all();
    net.hosts[0].report(&report_json(&[("job:a", "succeeded"), ("job:b", "failed")]), 1);
    net.hosts[2].report(&report_json(&[("job:c", "succeeded")]), 0);
    // h1 streams its first task's result, then hangs.
    net.hosts[1].block(r#"{"kind":"command","name":"job:first","outcome":"succeeded","reason":"slot"}"#);
    net.hosts[1].report(&report_json(&[("job:first", "succeeded"), ("job:second", "succeeded")]), 0);
    let mut child =
        net.caretaker(&["run", "--parallel", "3"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let status =
        || -> serde_json::Value { serde_json::from_slice(&net.run(&["status", "--json"]).stdout).unwrap_or_default() };
    let task_outcome = |st: &serde_json::Value, server: &str, task: &str| -> Option<String> {
        st.as_array()?.iter().find(|s| s["server"] == server)?["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["task"] == task)
            .map(|t| t["outcome"].as_str().unwrap_or("").to_string())
    };
    caretaker_testkit::wait_until(Duration::from_secs(60), "h0, h2 and h1's first task stored", || {
        let st = status();
        (task_outcome(&st, "h0", "job:b").is_some()
            && task_outcome(&st, "h2", "job:c").is_some()
            && task_outcome(&st, "h1", "job:first").is_some())
        .then_some(())
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let st = status();
    assert_eq!(task_outcome(&st, "h0", "job:a").as_deref(), Some("ok"), "{st}");
    assert_eq!(task_outcome(&st, "h0", "job:b").as_deref(), Some("failed"), "{st}");
    assert_eq!(task_outcome(&st, "h2", "job:c").as_deref(), Some("ok"), "{st}");
    assert_eq!(
        task_outcome(&st, "h1", "job:first").as_deref(),
        Some("ok"),
        "the streamed task was stored at once: {st}"
    );
    assert_eq!(task_outcome(&st, "h1", "job:second"), None, "{st}");
    // The re-run resumes the killed run: only h1 is worked on.
    net.hosts[1].unblock();
    let _ = std::fs::remove_file(net.hosts[1].dir.join("first"));
    let (_, v) = net.run_json(&[]);
    assert_eq!(v["run"]["resumed"], true, "{v}");
    assert_eq!(Net::host_report(&v, "h0")["contact"], "done", "{v}");
    assert_eq!(Net::host_report(&v, "h2")["contact"], "done", "{v}");
    assert_eq!(Net::host_report(&v, "h1")["contact"], "ok", "{v}");
    assert_eq!(net.hosts[0].calls().len(), 1);
    assert_eq!(net.hosts[2].calls().len(), 1);
    let st = status();
    assert_eq!(task_outcome(&st, "h1", "job:second").as_deref(), Some("ok"), "{st}");
    // The next run is a new one; h0's failed task waits for its backoff (not retried yet).
    let (_, v) = net.run_json(&["h0"]);
    assert_eq!(v["run"]["resumed"], false, "{v}");
    assert!(!net.hosts[0].calls().iter().any(|c| c.contains("jobs run")), "{:?}", net.hosts[0].calls());
}

/// Python with aiosmtpd (python3-aiosmtpd).
fn python_with_aiosmtpd() -> Option<String> {
    ["/usr/bin/python3", "python3"].into_iter().map(String::from).find(|py| {
        Command::new(py).args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    })
}

#[test]
fn fleet_digest_email_arrives_at_a_real_smtp_sink_and_the_webhook() {
    if !netns_available() {
        return;
    }
    let Some(py) = python_with_aiosmtpd() else {
        caretaker_testkit::require_service("CARETAKER_TEST_AIOSMTPD_MISSING_INSTALL_PYTHON3_AIOSMTPD");
        return;
    };
    let mut net = Net::new();
    net.add_host();
    net.add_host();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let maildir = net.path().join("maildir");
    let sink = Command::new(&py)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _sink = Kill(sink);
    caretaker_testkit::wait_until(Duration::from_secs(20), "the SMTP sink", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    });
    // A webhook receiver next to the SMTP sink: answers 200, hands over the body.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/hook?token=s3cret", hook.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::{BufRead, Read, Write};
        if let Some(stream) = hook.incoming().flatten().next() {
            let mut r = std::io::BufReader::new(stream);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let _ = r.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    net.write_fleet(
        &format!("digest:\n  email_to: [ops@example.org]\n  smtp_host: 127.0.0.1\n  smtp_port: {port}\n  smtp_tls: none\n  smtp_from: fleet@example.org\n  webhook_url_env: FLEET_TEST_HOOK\n"),
        &|_| String::new(),
    );
    net.accept_all();
    net.hosts[0].report(&report_json(&[("job:backup", "succeeded")]), 0);
    net.hosts[1].report(&report_json(&[("job:report", "failed")]), 1);
    let out = net.caretaker(&["run", "--digest"]).env("FLEET_TEST_HOOK", &hook_url).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!text(&out).contains("s3cret"), "the webhook URL (a secret) is never printed");
    let body: serde_json::Value = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(body["alert"], true, "{body}");
    assert!(body["subject"].as_str().unwrap().starts_with("ALERT: caretaker fleet"), "{body}");
    assert_eq!(body["report"]["hosts"].as_array().unwrap().len(), 2, "{body}");
    let mail = caretaker_testkit::wait_until(Duration::from_secs(30), "the digest e-mail", || {
        let rd = std::fs::read_dir(maildir.join("new")).ok()?;
        rd.flatten().next().map(|e| std::fs::read_to_string(e.path()).unwrap())
    });
    assert!(mail.contains("Subject: ALERT: caretaker fleet: 2 server(s)"), "{mail}");
    assert!(mail.contains("- h1 / job:report: failed"), "{mail}");
    assert!(mail.contains("- h0: job:backup ok"), "{mail}");
}

#[test]
fn fleet_install_onto_a_host_without_caretaker() {
    if !netns_available() {
        return;
    }
    let mut net = Net::new();
    net.add_host();
    net.write_fleet("", &|_| String::new());
    net.accept_all();
    let dest = net.path().join("remote-bin/caretaker");
    let units = net.path().join("remote-units");
    // Before: the server has no caretaker at that path.
    let out = net.run(&["install", "h0", "--dest", dest.to_str().unwrap(), "--unit-dir", units.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("installed"), "{said}");
    let local = std::fs::read(BIN).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), local, "the copied binary is the same");
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o755);
    let unit = std::fs::read_to_string(units.join("caretaker.service")).unwrap();
    assert!(unit.contains(&format!("ExecStart={} --config", dest.display())), "{unit}");
    // Again: nothing to copy.
    let out = net.run(&["install", "h0", "--dest", dest.to_str().unwrap(), "--no-unit"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already has"), "{}", text(&out));
    // Wrong architecture: refused before copying anything.
    let dest2 = net.path().join("remote-bin/other");
    let out = net.run(&[
        "install",
        "h0",
        "--dest",
        dest2.to_str().unwrap(),
        "--arch",
        "riscv64",
        "--binary",
        BIN,
        "--no-unit",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("riscv64"), "{}", text(&out));
    assert!(!dest2.exists());
}

#[test]
fn fleet_add_remove_list_keep_the_file_valid() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.yml");
    std::fs::write(&fleet, "# our servers\nversion: 1\nservers:\n  # the shop\n  - name: shop\n    host: 192.0.2.1\n")
        .unwrap();
    let cmd = |args: &[&str]| {
        Command::new(BIN)
            .arg("fleet")
            .arg("--fleet")
            .arg(&fleet)
            .args(args)
            .env_remove("CARETAKER_FLEET")
            .output()
            .unwrap()
    };
    let out = cmd(&["add", "web1", "--host", "root@192.0.2.2:2222", "--group", "web", "--transient"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cmd(&["add", "web1"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = cmd(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[1]["name"], "web1");
    assert_eq!(v[1]["ssh"]["port"], 2222);
    assert_eq!(v[1]["transient"], true);
    assert!(cmd(&["remove", "shop"]).status.success());
    let text_now = std::fs::read_to_string(&fleet).unwrap();
    assert!(text_now.starts_with("# our servers\n") && !text_now.contains("shop"), "{text_now}");
    // An Ansible inventory.
    let inv = dir.path().join("hosts.ini");
    std::fs::write(&inv, "[db]\ndb1 ansible_host=192.0.2.9 ansible_user=admin\n").unwrap();
    assert!(cmd(&["import", inv.to_str().unwrap()]).status.success());
    let out = cmd(&["list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin@192.0.2.9"), "{}", text(&out));
    // A broken file: every problem with its line.
    std::fs::write(&fleet, "servers:\n  - name: a\n    hots: x\n").unwrap();
    let out = cmd(&["list"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `hots`"), "{}", text(&out));
}

#[test]
fn fleet_two_controllers_on_one_postgresql_never_run_a_server_twice() {
    if !netns_available() {
        return;
    }
    let Some(admin) = caretaker_testkit::require_service("CARETAKER_TEST_PG_URL") else { return };
    let db = caretaker_testkit::unique_name("fleet_race");
    let out = Command::new("psql").arg(&admin).args(["-qc", &format!("CREATE DATABASE {db}")]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    let mut net = Net::new();
    for _ in 0..6 {
        net.add_host();
    }
    net.write_fleet("", &|_| String::new());
    net.accept_all();
    for h in &net.hosts {
        h.report(&report_json(&[("job:backup", "succeeded")]), 0);
        std::fs::write(h.dir.join("delay"), "0.3").unwrap();
    }
    // Two controllers at once, each with its own state directory: only the database is shared.
    let start = |name: &str| {
        net.caretaker(&[
            "--fleet-state",
            net.path().join(name).to_str().unwrap(),
            "run",
            "--json",
            "--parallel",
            "2",
            "--controller",
            name,
        ])
        .env("CARETAKER_FLEET_DATABASE_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    // h0 holds its controller until both have started, so neither can finish the round alone.
    net.hosts[0].block("");
    let (a, b) = (start("ctl-a"), start("ctl-b"));
    caretaker_testkit::wait_until(Duration::from_secs(60), "both controllers to start", || {
        (net.path().join("ctl-a/ssh_config").exists() && net.path().join("ctl-b/ssh_config").exists()).then_some(())
    });
    net.hosts[0].unblock();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ra: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap_or_else(|_| panic!("{}", text(&a)));
    let rb: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap_or_else(|_| panic!("{}", text(&b)));
    for (i, h) in net.hosts.iter().enumerate() {
        assert_eq!(h.calls().len(), 1, "h{i} ran {:?}\n{ra}\n{rb}", h.calls());
        let ok = [&ra, &rb].iter().filter(|r| Net::host_report(r, &format!("h{i}"))["contact"] == "ok").count();
        assert_eq!(ok, 1, "h{i} worked on by exactly one controller\n{ra}\n{rb}");
    }
    assert_eq!(ra["run"]["id"], rb["run"]["id"], "both joined one round");
}

/// End to end with the real server side: the host's `caretaker` is this build (the test's
/// namespaces share the file system), its app config has a `jobs:` command and a `deps`
/// report (a local OSV export the test writes, a vulnerable pin) that are due.
/// `fleet run` runs them through `tasks run-due --json`, `fleet status --json` shows what the
/// server reported (kind, outcome, figures), the digest lists the vulnerable dependency with
/// all its IDs, and a second run performs nothing new.
#[test]
fn fleet_run_with_the_real_server_side_runs_what_is_due_once() {
    if !netns_available() {
        return;
    }
    let mut net = Net::new();
    net.add_host();
    let app = net.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let ran = app.join("ran.txt");
    let state = app.join("state");
    let config = app.join("caretaker.yml");
    std::fs::write(
        &config,
        format!(
            "version: 1\napp:\n  name: fleete2e\nstate_dir: {}\njobs:\n  hello: {{ command: \"echo hello >> {}\", schedule: hourly }}\n\
             deps:\n  schedule: hourly\n  lockfile: requirements.txt\n  index_url: off\n",
            state.display(),
            ran.display()
        ),
    )
    .unwrap();
    std::fs::write(app.join("requirements.txt"), "demo-pkg==1.0\nother==3.0\n").unwrap();
    // A one-advisory OSV export (one JSON record per file, as OSV ships it), imported.
    let zip_path = app.join("all.zip");
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let record = serde_json::json!({"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001", "GHSA-dddd-dddd-dddd"],
            "modified": "2026-11-30T10:00:00Z", "summary": "remote code execution",
            "affected": [{"package": {"ecosystem": "PyPI", "name": "Demo_Pkg"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2"}]}]}]});
        z.start_file("PYSEC-2099-1.json", zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(record.to_string().as_bytes()).unwrap();
        z.finish().unwrap();
    }
    let out =
        Command::new(BIN).arg("--config").arg(&config).args(["deps", "import-db"]).arg(&zip_path).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The server's scheduler memory: the job's slot has long come; the built-in hourly check
    // ran a moment ago (not due for the next ~50 minutes, so a slot cannot come between the
    // two runs).
    away_from_the_hour();
    {
        let store = caretaker_state::Store::open(&state, caretaker_core::config::Redactor::default()).unwrap();
        let now = jiff::Timestamp::now();
        let (due, not_due) = (now - jiff::SignedDuration::from_hours(3), now + jiff::SignedDuration::from_mins(10));
        for (task, at) in [("job:hello", due), ("deps", due), ("check", not_due)] {
            store.task_seen(task, at).unwrap();
            store.task_ran(task, at).unwrap();
        }
    }
    let fleet = net.write_fleet("digest:\n  webhook_url_env: FLEET_TEST_HOOK\n", &|_| {
        format!("    config: {}\n", config.display())
    });
    let text_of = std::fs::read_to_string(&fleet).unwrap().replace(&net.hosts[0].fake().display().to_string(), BIN);
    std::fs::write(&fleet, text_of).unwrap();
    net.accept_all();

    let (hook_url, hook) = webhook_once();
    let out = net.caretaker(&["run", "--json", "--digest"]).env("FLEET_TEST_HOOK", &hook_url).output().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    assert_eq!(out.status.code(), Some(1), "a vulnerable dependency needs a human: {v}");
    let h0 = Net::host_report(&v, "h0");
    assert_eq!(h0["contact"], "ok", "{v}");
    let task = |tasks: &serde_json::Value, name: &str| -> serde_json::Value {
        tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {tasks}"))
    };
    let hello = task(&h0["tasks"], "job:hello");
    assert_eq!((hello["kind"].as_str(), hello["outcome"].as_str()), (Some("command"), Some("ok")), "{v}");
    assert_eq!(hello["figures"]["name"], "hello", "{v}");
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "hello\n");
    let deps = task(&h0["tasks"], "deps");
    assert_eq!((deps["kind"].as_str(), deps["outcome"].as_str()), (Some("deps"), Some("ok")), "{v}");
    assert_eq!(
        (deps["figures"]["packages"].as_u64(), deps["figures"]["vulnerable"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    assert_eq!(h0["alert"], true, "{v}");
    // The digest: the vulnerable dependency under "needs a human", counted in the subject.
    let body: serde_json::Value = serde_json::from_str(&hook.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(body["alert"], true, "{body}");
    let subject = body["subject"].as_str().unwrap();
    assert!(subject.starts_with("ALERT: ") && subject.contains(", 1 vulnerable package(s)"), "{subject}");
    let digest = body["text"].as_str().unwrap();
    assert!(digest.contains("NEEDS A HUMAN\n- h0 / deps: 1 vulnerable package(s)"), "{digest}");
    assert!(
        digest.contains("    demo-pkg 1.0: CVE-2099-0001, GHSA-dddd-dddd-dddd, PYSEC-2099-1 (fixed in 1.2)"),
        "{digest}"
    );

    let st: serde_json::Value = serde_json::from_slice(&net.run(&["status", "--json"]).stdout).unwrap();
    let s0 = st.as_array().unwrap().iter().find(|s| s["server"] == "h0").unwrap_or_else(|| panic!("{st}"));
    let hello = task(&s0["tasks"], "job:hello");
    assert_eq!((hello["kind"].as_str(), hello["outcome"].as_str()), (Some("command"), Some("ok")), "{st}");
    let deps = task(&s0["tasks"], "deps");
    assert_eq!(
        (deps["kind"].as_str(), deps["figures"]["findings"][0]["package"].as_str()),
        (Some("deps"), Some("demo-pkg")),
        "{st}"
    );
    assert_eq!(hello["figures"]["name"], "hello", "{st}");
    assert!(hello["last_success"].as_i64().is_some(), "{st}");

    // Nothing is due any more: the second run performs nothing and keeps the first's result.
    let (code, v) = net.run_json(&[]);
    assert_eq!(code, 0, "{v}");
    let h0 = Net::host_report(&v, "h0");
    assert_eq!(h0["contact"], "ok", "{v}");
    assert!(h0["tasks"].as_array().unwrap().iter().all(|t| t["outcome"] == "not_due"), "{v}");
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "hello\n", "the job ran once");
    let st: serde_json::Value = serde_json::from_slice(&net.run(&["status", "--json"]).stdout).unwrap();
    let s0 = st.as_array().unwrap().iter().find(|s| s["server"] == "h0").unwrap();
    assert_eq!(task(&s0["tasks"], "job:hello")["outcome"], "ok", "{st}");
}

/// A webhook receiver on loopback that answers one POST with 200 and hands over its body.
fn webhook_once() -> (String, std::sync::mpsc::Receiver<String>) {
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", hook.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::{BufRead, Read, Write};
        if let Some(stream) = hook.incoming().flatten().next() {
            let mut r = std::io::BufReader::new(stream);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let _ = r.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    (url, rx)
}

/// Waits (polling) while the wall clock is in the minute before an hourly slot.
fn away_from_the_hour() {
    caretaker_testkit::wait_until(Duration::from_secs(120), "the clock to leave the minute before the hour", || {
        (jiff::Zoned::now().minute() != 59).then_some(())
    });
}
