//! OS maintenance through the binary (docs/os.md): `os status` / `os update` against a real
//! apt and dpkg in a throwaway Debian chroot with a local repository (testkit::debian), the
//! demo app running on the host and depending on one of the packages; `os reboot` and the
//! daemon's `os tick` with a fake reboot command and a faked boot id.

use crate::supervisor::{free_port, http_get};
use caretaker_testkit::debian::TestChroot;
use caretaker_testkit::{wait_until, Caretaker};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

struct Host {
    dir: tempfile::TempDir,
    ct: Caretaker,
    door: u16,
    chroot: PathBuf,
}

impl Host {
    /// The demo app with a front door; `os` is the config's `os:` section (indented).
    fn new(os: &str, chroot: Option<&Path>) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (port, door, http) = (free_port(), free_port(), free_port());
        std::fs::write(d.join("boot_id"), "boot-one\n").unwrap();
        std::fs::write(d.join("fake-reboot"), format!("#!/bin/sh\necho rebooted >> {}/reboots\n", d.display()))
            .unwrap();
        std::fs::set_permissions(d.join("fake-reboot"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let os = os.replace("{d}", &d.display().to_string());
        let config = format!(
            r#"version: 1
app:
  name: ostest
  working_dir: "{d}/app"
  env:
    DEMO_DATABASE_URL: "sqlite://{d}/demo.db"
    DEMO_FILES_DIR: "{d}/files"
    DEMO_LISTEN: "127.0.0.1:{port}"
services:
  web:
    command: ["/bin/sh", "-c", "test ! -e {d}/broken && {bin} demo-app migrate && exec {bin} demo-app serve"]
    health: {{ http: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s, start_period: 20s }}
    stop_timeout: 5s
    crash_loop: {{ restarts: 2, within: 60s }}
update:
  health_timeout: 30s
front_door: {{ listen: "127.0.0.1:{door}", upstream: "127.0.0.1:{port}", retry_after: 5s }}
http: {{ listen: "127.0.0.1:{http}" }}
# The came-back verdict counts critical checks; the test machine's own disk, memory and load
# must not decide it.
alerts:
  rules: {{ filesystem_free_percent: false, memory_used_percent: false, load_per_cpu: false }}
{os}"#,
            d = d.display(),
            bin = crate::BIN,
        );
        std::fs::create_dir_all(d.join("files")).unwrap();
        caretaker_demo_app::write_release(&d.join("app"), "v1").unwrap();
        let path = d.join("caretaker.yml");
        std::fs::write(&path, config).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let ct = Caretaker::new(crate::BIN, &path, &d.join("state"));
        // Without a Debian chroot the host's files are read under an empty root, so the test
        // machine's own reboot-required or kernels do not count.
        let chroot = chroot.map(Path::to_path_buf).unwrap_or_else(|| {
            std::fs::create_dir_all(d.join("root/run")).unwrap();
            d.join("root")
        });
        Host { dir, ct, door, chroot }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = self.ct.command(args);
        c.env("CARETAKER_OS_BOOT_ID_FILE", self.d().join("boot_id"));
        c.env("CARETAKER_OS_CHROOT", &self.chroot);
        c.output().unwrap()
    }

    fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "caretaker {args:?}\n{text}");
        text
    }

    fn up(&self) {
        self.expect(&["up"], 0);
    }

    fn serving(&self) -> bool {
        http_get(self.door, "/healthz").is_some_and(|(s, _)| s == 200)
    }

    fn jobs(&self, kind: &str) -> Vec<serde_json::Value> {
        let v = self.ct.json(&["jobs", "--json", "--kind", kind]);
        v.as_array().cloned().unwrap_or_default()
    }

    fn reboots(&self) -> usize {
        std::fs::read_to_string(self.d().join("reboots")).map(|s| s.lines().count()).unwrap_or(0)
    }

    /// The events of the state store: (kind, subject, message).
    fn events(&self) -> Vec<(String, String, String)> {
        let db = rusqlite::Connection::open(self.d().join("state/state.db")).unwrap();
        let mut st = db.prepare("SELECT kind, subject, message FROM events ORDER BY id").unwrap();
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        rows.map(Result::unwrap).collect()
    }

    fn set_boot_id(&self, id: &str) {
        std::fs::write(self.d().join("boot_id"), format!("{id}\n")).unwrap();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.ct.run(&["down", "--daemon"]);
    }
}

/// A window that is open now (this minute's hour, in UTC) or closed now (12 hours away).
fn window(open: bool) -> String {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let hour = if open { now.hour() } else { (now.hour() + 12) % 24 };
    format!("daily {hour:02}:00 UTC")
}

#[test]
fn os_update_upgrades_stops_the_app_around_its_package_and_fails_loudly() {
    let Some(c) = TestChroot::with_standard_packages() else { return };
    let h =
        Host::new("database: { kind: sqlite, path: \"{d}/demo.db\" }\nos:\n  depends_on: [ct-appdep]\n", Some(&c.root));
    h.up();
    assert!(h.serving());

    // Status: security marked, held and kept back listed.
    let st: serde_json::Value = serde_json::from_str(&h.expect(&["os", "status", "--json"], 0)).unwrap();
    let up = st["upgradable"].as_array().unwrap();
    let find = |n: &str| up.iter().find(|u| u["name"] == n).unwrap_or_else(|| panic!("{n} in {st}")).clone();
    assert_eq!(find("ct-sec")["security"], true);
    assert_eq!(find("ct-plain")["security"], false);
    assert_eq!(st["held"], serde_json::json!(["ct-held"]));
    assert_eq!(st["kept_back"], serde_json::json!(["ct-kept"]));
    assert_eq!(st["reboot"]["needed"], false);
    let text = h.expect(&["os", "status", "--no-refresh"], 0);
    assert!(text.contains("ct-sec 1.0 -> 2.0") && text.contains("[security]"), "{text}");

    // A dry run changes nothing and says the app would stop.
    let dry = h.expect(&["os", "update", "--dry-run"], 0);
    assert!(dry.contains("the app depends on ct-appdep"), "{dry}");
    assert_eq!(c.version("ct-plain"), "1.0");
    let sec = h.expect(&["os", "update", "--dry-run", "--security-only"], 0);
    assert!(sec.contains("1 to upgrade (security only): ct-sec"), "{sec}");
    assert!(sec.contains("the app keeps running"), "{sec}");

    // The admin edited a conffile that version 2 changes.
    std::fs::write(c.root.join("etc/ct-conf.conf"), "setting = mine\n").unwrap();
    let started = std::time::Instant::now();
    let visitor = crate::maintenance::Visitor::start(h.door);
    let out = h.expect(&["os", "update"], 1);
    let seen = visitor.finish();
    assert!(started.elapsed() < Duration::from_secs(300), "no prompt may hang it");
    assert!(out.contains("/etc/ct-conf.conf (ct-conf)"), "{out}");
    assert!(out.contains("kept back") && out.contains("ct-kept"), "{out}");
    for p in ["ct-plain", "ct-sec", "ct-conf", "ct-appdep", "ct-reboot"] {
        assert_eq!(c.version(p), "2.0", "{p}");
    }
    assert_eq!(c.version("ct-held"), "1.0");
    assert_eq!(c.version("ct-kept"), "1.0");
    assert_eq!(std::fs::read_to_string(c.root.join("etc/ct-conf.conf")).unwrap(), "setting = mine\n");

    // The job: failed, with typed figures; the app was stopped around ct-appdep and serves.
    let jobs = h.jobs("os_update");
    let job = &jobs[0];
    assert_eq!(job["outcome"], "failed", "{job}");
    let f = &job["figures"];
    assert_eq!(f["app_packages"], serde_json::json!(["ct-appdep"]));
    assert_eq!(f["app_stopped"], true);
    assert!(f["snapshot"].as_str().is_some_and(|s| !s.is_empty()), "a database snapshot before the upgrade: {f}");
    assert_eq!(f["kept_back"], serde_json::json!(["ct-kept"]));
    assert_eq!(f["conffiles_kept"], serde_json::json!([["ct-conf", "/etc/ct-conf.conf"]]));
    assert_eq!(f["security"], serde_json::json!(["ct-sec"]));
    assert_eq!(f["reboot_required"], true);
    let log = h.ct.expect(&["jobs", "show", &job["id"].to_string()], 0);
    assert!(log.contains("stopping the app") && log.contains("the app is healthy: maintenance off"), "{log}");
    assert!(h.serving(), "the app serves after the update");
    // Visitors saw the app, then the maintenance page while it was stopped, then the app.
    let runs = crate::maintenance::runs(&seen);
    assert_eq!(seen.first(), Some(&200), "{runs}");
    assert_eq!(seen.last(), Some(&200), "{runs}");
    assert!(seen.contains(&503), "{runs}");
    assert!(!seen.contains(&0) && !seen.contains(&502), "never an error: {runs}");
    let kinds: Vec<String> = h.events().into_iter().map(|e| e.0).collect();
    assert!(kinds.contains(&"maintenance_on".into()) && kinds.contains(&"maintenance_off".into()), "{kinds:?}");

    // The failure alerts through job_failed.
    let alerts = h.ct.expect(&["alerts", "evaluate"], 0);
    assert!(alerts.contains("os_update"), "{alerts}");

    // Reboot required, asked for by ct-reboot's postinst.
    let st: serde_json::Value =
        serde_json::from_str(&h.expect(&["os", "status", "--json", "--no-refresh"], 0)).unwrap();
    assert_eq!(st["reboot"]["needed"], true);
    assert_eq!(st["reboot"]["packages"], serde_json::json!(["ct-reboot"]));
    // Metrics show it.
    let m = h.ct.expect(&["metrics"], 0);
    assert!(m.contains("caretaker_os_reboot_required 1"), "{m}");
    assert!(m.contains("caretaker_os_updates_pending 2"), "{m}");
}

#[test]
fn reboots_happen_only_when_everything_allows_and_the_app_must_come_back() {
    // Outside the window: nothing happens.
    let closed = format!(
        "os:\n  reboot: {{ window: \"{}\", length: 1h, jitter: 0s, command: [\"{{d}}/fake-reboot\"], came_back_within: 15s }}\n",
        window(false)
    );
    let h = Host::new(&closed, None);
    h.up();
    let out = h.expect(&["os", "reboot"], 5);
    assert!(out.contains("outside the reboot window"), "{out}");
    h.expect(&["os", "tick"], 0);
    assert_eq!(h.reboots(), 0);
    // Needed (a package asked for it) but outside the window: still nothing; and a need that
    // has waited through more than `alert_after_windows` (3) windows alerts.
    std::fs::write(h.chroot.join("run/reboot-required"), "").unwrap();
    std::fs::write(h.chroot.join("run/reboot-required.pkgs"), "libc6\n").unwrap();
    h.expect(&["os", "tick"], 0);
    assert_eq!(h.reboots(), 0);
    assert!(h.jobs("os_reboot").is_empty(), "one day has not waited through 3 windows");
    let ten_days_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(240)).to_string();
    let db = rusqlite::Connection::open(h.d().join("state/state.db")).unwrap();
    db.execute("UPDATE facts SET value = ?1 WHERE key = 'os.reboot_needed_since'", [&ten_days_ago]).unwrap();
    h.expect(&["os", "tick"], 0);
    assert_eq!(h.reboots(), 0);
    let jobs = h.jobs("os_reboot");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["outcome"], "refused");
    assert!(jobs[0]["error"].as_str().unwrap_or_default().contains("waited through"), "{}", jobs[0]);
    h.expect(&["os", "tick"], 0);
    assert_eq!(h.jobs("os_reboot").len(), 1, "alerted once per window");
    let alerts = h.ct.expect(&["alerts", "evaluate"], 0);
    assert!(alerts.contains("os_reboot"), "{alerts}");
    drop(h);

    let open = format!(
        "os:\n  reboot: {{ window: \"{}\", length: 1h, jitter: 0s, command: [\"{{d}}/fake-reboot\"], came_back_within: 15s }}\n",
        window(true)
    );
    // Skipped when the minute of the test is the window's last (it would close under us).
    if jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).minute() >= 58 {
        std::thread::sleep(Duration::from_secs(150));
    }
    let h = Host::new(&open, None);
    h.up();
    // Service mode blocks it.
    h.ct.expect(&["maintenance", "on"], 0);
    h.ct.expect(&["maintenance", "off"], 0);
    std::fs::write(h.d().join("broken"), "").unwrap();
    h.ct.run(&["restart", "web"]);
    wait_until(Duration::from_secs(60), "service mode after the crash loop", || {
        let s = h.ct.run(&["status", "--json"]);
        String::from_utf8_lossy(&s.stdout).contains("service_mode\": \"").then_some(())
    });
    let out = h.expect(&["os", "reboot"], 5);
    assert!(out.contains("service mode"), "{out}");
    std::fs::remove_file(h.d().join("broken")).unwrap();
    h.expect(&["reset-failed"], 0);
    h.expect(&["up"], 0);
    assert_eq!(h.reboots(), 0);

    // Not needed: --if-needed does nothing.
    let out = h.expect(&["os", "reboot", "--if-needed"], 0);
    assert!(out.contains("no reboot needed"), "{out}");
    assert_eq!(h.reboots(), 0);

    // Reboot: maintenance on, app stopped, the command runs, the boot id is recorded.
    h.expect(&["os", "reboot"], 0);
    assert_eq!(h.reboots(), 1);
    assert!(!h.serving(), "the app was stopped before the reboot");
    // Same boot id: still waiting.
    h.expect(&["os", "tick"], 0);
    assert!(h.jobs("os_reboot_check").is_empty());
    // The machine "rebooted": the tick starts the app and judges it healthy.
    h.set_boot_id("boot-two");
    wait_until(Duration::from_secs(60), "the came-back verdict", || {
        h.expect(&["os", "tick"], 0);
        h.jobs("os_reboot_check").first().cloned()
    });
    let check = &h.jobs("os_reboot_check")[0];
    assert_eq!(check["outcome"], "succeeded", "{check}");
    assert_eq!(check["figures"]["verdict"], "healthy");
    assert_eq!(check["figures"]["boot_id_before"], "boot-one");
    assert_eq!(check["figures"]["boot_id_after"], "boot-two");
    wait_until(Duration::from_secs(30), "the app serving again", || h.serving().then_some(()));
    let events = h.events();
    assert!(events.iter().any(|(k, s, m)| k == "os_reboot" && s == "healthy" && m.contains("healthy")), "{events:?}");

    // A second reboot after which the app does not come back: alert and service mode.
    h.expect(&["os", "reboot"], 0);
    assert_eq!(h.reboots(), 2);
    std::fs::write(h.d().join("broken"), "").unwrap();
    h.set_boot_id("boot-three");
    let check = wait_until(Duration::from_secs(90), "the failed came-back verdict", || {
        h.expect(&["os", "tick"], 0);
        h.jobs("os_reboot_check").into_iter().find(|j| j["figures"]["boot_id_after"] == "boot-three")
    });
    assert_eq!(check["outcome"], "failed", "{check}");
    assert_eq!(check["figures"]["verdict"], "unhealthy");
    let alerts = h.ct.expect(&["alerts", "evaluate"], 0);
    assert!(alerts.contains("os_reboot_check"), "{alerts}");
}

#[test]
fn a_reboot_waits_for_a_fresh_backup_and_a_free_lock() {
    let open = format!(
        "os:\n  reboot: {{ window: \"{}\", length: 1h, jitter: 0s, max_backup_age: 1h, command: [\"{{d}}/fake-reboot\"] }}\nfiles: [\"{{d}}/files\"]\nbackup:\n  repository: \"{{d}}/repo\"\n  password: \"pw-for-tests\"\n",
        window(true)
    );
    let h = Host::new(&open, None);
    std::fs::write(h.d().join("files/a.txt"), "data").unwrap();
    // No backup yet: refused, even with --now.
    let out = h.expect(&["os", "reboot", "--now"], 5);
    assert!(out.contains("no successful backup"), "{out}");
    assert_eq!(h.reboots(), 0);
    h.ct.expect(&["backup", "init"], 0);
    h.ct.expect(&["backup", "run"], 0);
    // A job holding the app lock: refused.
    let holder = std::fs::File::open(h.d().join("state/locks/app.lock")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&holder);
    assert_eq!(unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let out = h.expect(&["os", "reboot", "--now"], 5);
    assert!(out.contains("no reboot") && out.contains("is running"), "{out}");
    assert_eq!(h.reboots(), 0);
    drop(holder);
    // Fresh backup, free lock: it reboots.
    h.expect(&["os", "reboot", "--now"], 0);
    assert_eq!(h.reboots(), 1);
    // The machine comes back and caretaker's daemon starts (as systemd would start it): its
    // own periodic check starts the app and judges it healthy.
    h.set_boot_id("boot-two");
    h.up();
    let check = wait_until(Duration::from_secs(90), "the daemon's came-back verdict", || {
        h.jobs("os_reboot_check").into_iter().next()
    });
    assert_eq!(check["outcome"], "succeeded", "{check}");
    assert_eq!(check["figures"]["boot_id_after"], "boot-two");
    assert!(h.serving());
    let m = h.ct.expect(&["metrics"], 0);
    assert!(m.contains("caretaker_os_last_reboot_outcome{outcome=\"healthy\"} 1"), "{m}");
    assert!(h.ct.expect(&["status"], 0).contains("web"));
}
