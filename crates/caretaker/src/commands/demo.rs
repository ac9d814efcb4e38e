//! `caretaker demo`: the bundled demo app under caretaker, on an embedded default config, in a
//! local directory. Shows what caretaker does without touching the rest of the machine.

use crate::appenv::{app_env, working_dir};
use crate::cli::{DemoArgs, Global};
use crate::context::open_app;
use crate::control::{request, start_background_daemon, stop_daemon, wait_until_up};
use crate::exit::{Code, Failure};
use crate::output::table;
use crate::runner::run_logged;
use anyhow::{Context, Result};
use caretaker_core::job::figures::{BackupFigures, Figures};
use caretaker_core::job::{kind, Outcome, Trigger};
use caretaker_supervisor::protocol::Request;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn run(global: &Global, args: &DemoArgs) -> Result<Code> {
    let dir = std::path::absolute(&args.dir)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let release = dir.join("app");
    if !release.join("VERSION").exists() {
        caretaker_demo_app::write_default_release(&release)
            .with_context(|| format!("writing the demo app to {}", release.display()))?;
    }
    std::fs::create_dir_all(dir.join("data/files"))?;
    let key = dir.join("backup.key");
    if !key.exists() {
        write_private(&key, &format!("{}\n", super::init::fresh_secret()))?;
    }
    // The status page's token: read from a 0600 file, never printed.
    let token = dir.join("status.token");
    if !token.exists() {
        write_private(&token, &format!("{}\n", super::init::fresh_secret()))?;
    }
    let exe = std::env::current_exe().context("finding caretaker's own executable")?;
    let config_path = dir.join("caretaker.yml");
    // Rewritten on every run so it follows the binary's location; secrets stay in backup.key.
    // The daemon's own HTTP listener (/metrics) takes any free loopback port, so the demo
    // never collides with a caretaker daemon already running on this machine.
    let http_listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .context("finding a free port for the daemon's HTTP listener")?;
    write_private(&config_path, &demo_config(&dir, &exe, &args.listen, &http_listen))?;

    let global = Global { config: Some(config_path.clone()), ..global.clone() };
    let app = open_app(&global)?;
    println!("caretaker demo in {}", dir.display());
    println!("  config      {}", config_path.display());
    println!("  state       {}", app.store.dir().display());

    let cwd = working_dir(&app.config.app, &app.config_path);
    let env = app_env(&app.config.app, None, &cwd)?;
    let redactor = app.redactor.clone();

    // 1. Migrate the database, as a recorded job.
    let mut job = app.store.start_job("migrate", Trigger::Cli, true)?;
    let mut failed = None;
    for cmd in &app.config.app.migrate {
        job.log(&format!("$ {cmd}"));
        let ended = run_logged(cmd, &env, &cwd, Duration::from_secs(600), &mut job, &|s| redactor.redact(s), false)?;
        if !ended.success() {
            failed = Some(format!("`{cmd}` {}", ended.describe()));
            break;
        }
    }
    let migrate_id = job.id();
    job.finish(
        if failed.is_some() { Outcome::Failed } else { Outcome::Succeeded },
        serde_json::json!({}),
        failed.as_deref(),
    )?;
    if let Some(f) = failed {
        return Err(Failure::new(Code::Failure, format!("demo migration failed: {f}"))
            .hint(format!("see `caretaker --config {} jobs show {migrate_id}`", config_path.display()))
            .into());
    }
    println!("  migrated    job {migrate_id}");

    // 2. Start the app under the supervisor (a background daemon) and wait until every
    //    service's health check passes.
    let mut demo_job = app.store.start_job(kind::DEMO, Trigger::Cli, false)?;
    let state_dir = app.store.dir().to_path_buf();
    let started = Instant::now();
    let up = (|| -> Result<()> {
        if request(&state_dir, &Request::Up, Duration::from_secs(10))?.is_none() {
            start_background_daemon(&global, &config_path, &state_dir)?;
        }
        wait_until_up(&state_dir, None, Duration::from_secs(60)).map(|_| ())
    })();
    let startup = started.elapsed().as_secs_f64();
    if let Err(e) = up {
        demo_job.finish(Outcome::Failed, serde_json::json!({}), Some(&format!("{e:#}")))?;
        let _ = stop_daemon(&state_dir, Duration::from_secs(60));
        return Err(e);
    }
    demo_job.log(&format!("all services healthy after {startup:.2}s"));
    let demo_id = demo_job.id();
    demo_job.finish(
        Outcome::Succeeded,
        serde_json::json!({"url": format!("http://{}/", args.listen), "startup_seconds": startup}),
        None,
    )?;
    println!("  app         http://{}/  (healthy after {startup:.1}s, job {demo_id})", args.listen);

    // 3. Take an encrypted backup of the app (database, files, config) into the local
    //    repository, initialising it on the first run: the real commands, as an operator runs them.
    let backup = |cmd: &[&str]| -> Result<std::process::Output> {
        Ok(std::process::Command::new(&exe)
            .arg("--config")
            .arg(&config_path)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(cmd)
            .stdin(std::process::Stdio::null())
            .output()?)
    };
    if !dir.join("backups").join("config").exists() {
        let out = backup(&["backup", "init"])?;
        if !out.status.success() {
            let _ = stop_daemon(&state_dir, Duration::from_secs(60));
            return Err(Failure::new(Code::Failure, "initialising the demo's backup repository failed")
                .hint(String::from_utf8_lossy(&out.stderr).trim().to_string())
                .into());
        }
    }
    let out = backup(&["backup", "run", "--json"])?;
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if !out.status.success() {
        let _ = stop_daemon(&state_dir, Duration::from_secs(60));
        return Err(Failure::new(Code::Failure, "the demo's backup failed")
            .hint(String::from_utf8_lossy(&out.stderr).trim().to_string())
            .into());
    }
    println!(
        "  backup      snapshot {} in {} (job {})",
        BackupFigures::from_json(&summary["figures"])
            .snapshot_id
            .map(|s| s.chars().take(8).collect::<String>())
            .unwrap_or_else(|| "?".into()),
        dir.join("backups").display(),
        summary.get("job").map(|v| v.to_string()).unwrap_or_else(|| "?".into())
    );
    println!("  metrics     http://{}/metrics", app.config.http.listen);
    println!(
        "  status page http://{}/status?token=$(cat {})",
        app.config.http.listen,
        dir.join("status.token").display()
    );
    println!();
    let jobs = app.store.jobs(None, 5)?;
    let mut rows = vec![vec!["JOB".to_string(), "KIND".into(), "OUTCOME".into()]];
    rows.extend(jobs.iter().map(|j| vec![j.id.to_string(), j.kind.clone(), j.outcome.to_string()]));
    print!("{}", table(&rows));
    println!();
    println!("Try: caretaker --config {} status", config_path.display());
    println!("     caretaker --config {} logs web", config_path.display());
    println!("     caretaker --config {} jobs", config_path.display());
    println!("     caretaker --config {} backup list", config_path.display());
    let _ = std::io::stdout().flush();

    if !args.exit_when_ready {
        println!("Press Ctrl-C to stop the demo.");
        wait_for_signal();
    }
    stop_daemon(&state_dir, Duration::from_secs(60))?;
    println!("stopped the demo app and its daemon");
    Ok(Code::Ok)
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn demo_config(dir: &Path, exe: &Path, listen: &str, http_listen: &str) -> String {
    let d = dir.display();
    let exe: PathBuf = exe.to_path_buf();
    let exe = exe.display();
    format!(
        r#"# Written by `caretaker demo`: the bundled demo app on caretaker's embedded default.
version: 1
app:
  name: demo
  working_dir: "{d}/app"
  migrate:
    - ["{exe}", "demo-app", "migrate"]
  env:
    DEMO_DATABASE_URL: "sqlite://{d}/data/demo.db"
    DEMO_FILES_DIR: "{d}/data/files"
    DEMO_LISTEN: "{listen}"
services:
  web:
    command: ["{exe}", "demo-app", "serve"]
    health: {{ http: "http://{listen}/healthz", interval: 2s, timeout: 1s, start_period: 10s }}
database:
  kind: sqlite
  path: "{d}/data/demo.db"
files:
  - {{ path: "{d}/data/files", allow_empty: true }}
backup:
  repository: "{d}/backups"
  password_file: "{d}/backup.key"
  schedule: "daily 00:30"
  keep: {{ daily: 7, weekly: 4 }}
jobs:
  status: {{ command: ["{exe}", "demo-app", "status"], schedule: "hourly" }}
state_dir: "{d}/state"
http:
  listen: "{http_listen}"
status:
  token_file: "{d}/status.token"
"#
    )
}
