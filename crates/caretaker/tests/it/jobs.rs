use crate::{stderr_of, Scratch};
use caretaker_testkit::wait_until;
use std::time::Duration;

const CONFIG: &str = r#"version: 1
app:
  name: jobsapp
  env:
    GREETING: hello
jobs:
  quick: { command: "echo $GREETING from quick", schedule: daily }
  failing: { command: "echo about to fail >&2; exit 3", schedule: daily }
  sleeper: { command: "echo $$ > sleeper.pid; exec sleep 60", schedule: daily }
  slow: { command: "sleep 30", schedule: daily, timeout: 1s }
"#;

#[test]
fn jobs_are_recorded_with_outcome_log_and_figures() {
    let s = Scratch::new();
    let ct = s.write_config(CONFIG);
    let out = ct.expect(&["jobs", "run", "quick"], 0);
    assert!(out.contains("hello from quick"), "{out}");
    let out = ct.run(&["jobs", "run", "failing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("exited with status 3"), "{}", stderr_of(&out));

    let jobs = ct.json(&["jobs", "--json"]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["outcome"], "failed");
    assert_eq!(jobs[0]["figures"]["name"], "failing");
    assert_eq!(jobs[1]["outcome"], "succeeded");
    let id = jobs[1]["id"].as_i64().unwrap().to_string();
    let shown = ct.json(&["jobs", "show", &id, "--json"]);
    assert!(shown["log"].as_str().unwrap().contains("[out] hello from quick"), "{shown}");
    let table = ct.expect(&["jobs"], 0);
    assert!(table.contains("command quick") && table.contains("succeeded"), "{table}");

    // Unknown names get a suggestion; a job that overruns its timeout is stopped and failed.
    let out = ct.run(&["jobs", "run", "quik"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("did you mean `quick`?"), "{}", stderr_of(&out));
    let out = ct.run(&["jobs", "run", "slow"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("timed out"), "{}", stderr_of(&out));
}

/// SIGKILL caretaker in the middle of a job: the next invocation marks it `interrupted`, takes
/// the lock, and no earlier record is lost.
#[test]
fn sigkill_mid_job_is_marked_interrupted_and_the_lock_is_taken_over() {
    let s = Scratch::new();
    let ct = s.write_config(CONFIG);
    ct.expect(&["jobs", "run", "quick"], 0);
    ct.expect(&["jobs", "run", "quick"], 0);

    let mut victim = ct.command(&["jobs", "run", "sleeper"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    // Wait until the job is recorded as running and its command has started.
    let pidfile = s.path().join("sleeper.pid");
    wait_until(Duration::from_secs(20), "the sleeper job to start", || {
        let sleeper_pid = std::fs::read_to_string(&pidfile).ok()?.trim().parse::<i32>().ok()?;
        Some(sleeper_pid)
    });
    let sleeper_pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // While it runs, another mutating job is refused as busy (exit 4), naming the holder.
    let busy = ct.run(&["jobs", "run", "quick"]);
    assert_eq!(busy.status.code(), Some(4), "{}", stderr_of(&busy));
    assert!(stderr_of(&busy).contains("command"), "{}", stderr_of(&busy));

    unsafe { libc::kill(victim.id() as i32, libc::SIGKILL) };
    victim.wait().unwrap();

    // The job's command dies with caretaker (it must not run on unsupervised).
    wait_until(Duration::from_secs(10), "the orphaned command to exit", || {
        (unsafe { libc::kill(sleeper_pid, 0) } != 0).then_some(())
    });

    let jobs = ct.json(&["jobs", "--json"]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 3, "two earlier jobs and the killed one; the refused attempt is not a job: {jobs:?}");
    let killed = &jobs[0];
    assert_eq!(killed["outcome"], "interrupted", "{killed}");
    assert_eq!(killed["figures"], serde_json::json!({}));
    assert!(killed["error"].as_str().unwrap().contains("died"), "{killed}");
    assert!(jobs[1..].iter().all(|j| j["outcome"] == "succeeded"), "{jobs:?}");

    // The lock is free again.
    ct.expect(&["jobs", "run", "quick"], 0);
    let after = ct.json(&["jobs", "--json"]);
    assert_eq!(after.as_array().unwrap().len(), 4);
}
