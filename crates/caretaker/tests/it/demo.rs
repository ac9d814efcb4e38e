use caretaker_testkit::wait_until;
use std::process::Command;
use std::time::Duration;

/// The README's demo command works end to end (here with `--exit-when-ready`).
#[test]
fn demo_runs_the_demo_app_and_records_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let demo = dir.path().join("demo");
    let run_demo = || {
        let out = Command::new(crate::BIN)
            .args(["demo", "--exit-when-ready", "--listen", &listen, "--dir"])
            .arg(&demo)
            .env_remove("CARETAKER_STATE_DIR")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        text
    };
    let text = run_demo();
    assert!(text.contains(&format!("http://{listen}/")), "{text}");
    assert!(text.contains("backup      snapshot "), "{text}");
    assert!(text.contains("status page http://127.0.0.1:"), "{text}");
    // The app was stopped again, and its port is free.
    wait_until(Duration::from_secs(10), "the demo app to release its port", || {
        std::net::TcpListener::bind(&listen).ok().map(|_| ())
    });
    // A second run reuses the directory (same secrets) and works again.
    run_demo();
    let jobs = Command::new(crate::BIN)
        .arg("--config")
        .arg(demo.join("caretaker.yml"))
        .args(["jobs", "--json"])
        .env_remove("CARETAKER_STATE_DIR")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap();
    let kinds: Vec<&str> = v.as_array().unwrap().iter().map(|j| j["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["backup", "demo", "migrate", "backup", "demo", "migrate"]);
    assert!(v.as_array().unwrap().iter().all(|j| j["outcome"] == "succeeded"), "{v}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
