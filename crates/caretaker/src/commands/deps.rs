//! `caretaker deps`: which of the app's Python dependencies are vulnerable (a local copy of
//! the OSV PyPI database) or outdated (a package index, when one answers). The run is a `deps`
//! job whose figures feed `caretaker_dependencies_*` and the `dependencies_vulnerable` rule.
//! `deps update-db` / `deps import-db` fill the database (docs/deps.md).
//!
//! The matching is `caretaker_deps` (pure); reading files, running `pip freeze`, opening the
//! zip and asking the index happen here.

use crate::appenv::{app_env, working_dir};
use crate::cli::{DepsArgs, DepsCommand, Global};
use crate::context::{open_app, AppContext};
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_core::job::figures::{DepsFigures, DepsFinding, Figures, OutdatedPackage};
use caretaker_core::job::{kind, Outcome};
use caretaker_deps::osv::{findings, Database, Finding};
use caretaker_deps::outdated::{judge, Verdict};
use caretaker_deps::read::{read, Format, Read};
use serde_json::json;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DB_FILE: &str = "osv-pypi.zip";
const META_FILE: &str = "osv-pypi.json";

pub fn run(global: &Global, args: &DepsArgs) -> Result<Code> {
    let app = open_app(global)?;
    match &args.command {
        Some(DepsCommand::ImportDb { file }) => import_db(&app, file, &file.display().to_string()),
        Some(DepsCommand::UpdateDb { url }) => update_db(&app, url.as_deref()),
        None => report(&app, args),
    }
}

fn db_dir(app: &AppContext) -> PathBuf {
    app.store.layout().deps()
}

/// Reads every JSON record of an OSV zip export into a [`Database`].
pub fn load_zip(path: &Path) -> Result<Database, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| format!("{} is not a zip: {e}", path.display()))?;
    let mut db = Database::default();
    let mut buf = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| format!("{}: entry {i}: {e}", path.display()))?;
        let name = entry.name().map(|n| n.to_string()).unwrap_or_default();
        if !name.ends_with(".json") {
            continue;
        }
        buf.clear();
        entry.read_to_end(&mut buf).map_err(|e| format!("{}: {name}: {e}", path.display()))?;
        db.add_json(&buf).map_err(|e| format!("{}: {name}: {e}", path.display()))?;
    }
    if db.records == 0 {
        return Err(format!("{} holds no OSV records (*.json)", path.display()));
    }
    Ok(db)
}

/// Checks `file` is an OSV export and puts it in the state directory (copy, fsync, rename:
/// the previous database stays whole until the new one is).
fn import_db(app: &AppContext, file: &Path, source: &str) -> Result<Code> {
    let db = load_zip(file).map_err(|e| {
        Failure::new(Code::Refused, format!("not imported: {e}"))
            .hint("import the OSV PyPI export `all.zip` (docs/deps.md says where to get it)")
    })?;
    let dir = db_dir(app);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::new(Code::State, format!("cannot create {}: {e}", dir.display())))?;
    let tmp = dir.join(format!("{DB_FILE}.new"));
    std::fs::copy(file, &tmp).map_err(|e| Failure::new(Code::State, format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all())?;
    let meta = json!({
        "source": source,
        "imported_at": jiff::Timestamp::now().to_string(),
        "date": db.newest_modified,
        "records": db.records,
        "withdrawn": db.withdrawn,
        "advisories": db.advisories(),
    });
    std::fs::rename(&tmp, dir.join(DB_FILE))?;
    std::fs::write(dir.join(META_FILE), serde_json::to_vec_pretty(&meta)?)?;
    println!(
        "OSV database imported from {source}: {} advisories ({} withdrawn, skipped), dated {}",
        db.advisories(),
        db.withdrawn,
        db.newest_modified.as_deref().unwrap_or("unknown")
    );
    Ok(Code::Ok)
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into()
}

fn update_db(app: &AppContext, url: Option<&str>) -> Result<Code> {
    let url = url.unwrap_or(&app.config.deps.db_url).to_string();
    let unreachable = |e: String| {
        Failure::new(Code::Unavailable, format!("cannot download the OSV database from {url}: {e}")).hint(
            "without internet access, download all.zip on another machine and run `caretaker deps import-db all.zip`",
        )
    };
    let resp = agent(Duration::from_secs(300)).get(&url).call().map_err(|e| unreachable(e.to_string()))?;
    if resp.status() != 200 {
        return Err(unreachable(format!("the server answered {}", resp.status())).into());
    }
    let dir = db_dir(app);
    std::fs::create_dir_all(&dir)?;
    let download = dir.join(format!("{DB_FILE}.download"));
    let mut out = std::fs::File::create(&download)?;
    std::io::copy(&mut resp.into_body().into_reader(), &mut out).map_err(|e| unreachable(e.to_string()))?;
    out.sync_all()?;
    drop(out);
    let r = import_db(app, &download, &url);
    let _ = std::fs::remove_file(&download);
    r
}

/// Where the dependencies come from, said in the report.
#[derive(serde::Serialize)]
struct SourceInfo {
    kind: &'static str,
    path: Option<String>,
    command: Option<String>,
    format: Format,
}

fn read_dependencies(app: &AppContext, lockfile: Option<&Path>) -> Result<(SourceInfo, Read), String> {
    let wd = working_dir(&app.config.app, &app.config_path);
    let lockfile = lockfile.map(Path::to_path_buf).or_else(|| app.config.deps.lockfile.as_ref().map(|l| wd.join(l)));
    if let Some(path) = lockfile {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let format = Format::from_file_name(name);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read the lockfile {}: {e}", path.display()))?;
        let r = read(format, &text).map_err(|e| format!("{}: {e}", path.display()))?;
        let info = SourceInfo { kind: "lockfile", path: Some(path.display().to_string()), command: None, format };
        return Ok((info, r));
    }
    let cmd = &app.config.deps.freeze_command;
    let argv = cmd.argv();
    let env = app_env(&app.config.app, None, &wd).map_err(|e| format!("{e:#}"))?;
    let mut c = std::process::Command::new(&argv[0]);
    c.args(&argv[1..]).current_dir(&wd).stdin(std::process::Stdio::null()).env_clear();
    for key in ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME"] {
        if let Some(v) = std::env::var_os(key) {
            c.env(key, v);
        }
    }
    c.envs(env);
    let shown = argv.join(" ");
    let out = output_within(c, FREEZE_TIMEOUT).map_err(|e| format!("cannot run `{shown}` in {}: {e}", wd.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        return Err(app.redactor.redact(&format!("`{shown}` {} in {}: {last}", out.status, wd.display())));
    }
    let r = read(Format::Requirements, &String::from_utf8_lossy(&out.stdout)).map_err(|e| e.to_string())?;
    Ok((SourceInfo { kind: "freeze", path: None, command: Some(shown), format: Format::Requirements }, r))
}

/// How long the freeze command may take (a hung interpreter must not hang the task).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `c` to completion, its output collected; killed after `timeout`.
fn output_within(mut c: std::process::Command, timeout: Duration) -> std::io::Result<std::process::Output> {
    use std::process::Stdio;
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let (mut so, mut se) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(format!("it did not finish within {}s", timeout.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

/// Versions of `name` on the index: a PyPI-style JSON API (`.../pypi/<name>/json`, yanked
/// releases left out) or a PEP 691 simple index (`.../simple/<name>/`, its PEP 700 `versions`).
/// `Ok(None)`: the index does not know the package (a private one).
fn index_versions(agent: &ureq::Agent, index: &str, name: &str) -> Result<Option<Vec<String>>, String> {
    let simple = index.ends_with("/simple");
    let url = if simple { format!("{index}/{name}/") } else { format!("{index}/{name}/json") };
    let mut resp = agent
        .get(&url)
        .header("Accept", if simple { "application/vnd.pypi.simple.v1+json" } else { "application/json" })
        .call()
        .map_err(|e| e.to_string())?;
    match resp.status().as_u16() {
        200 => {}
        404 => return Ok(None),
        s => return Err(format!("{url} answered {s}")),
    }
    let v: serde_json::Value = resp.body_mut().read_json().map_err(|e| format!("{url}: {e}"))?;
    if simple {
        let versions = v.get("versions").and_then(|x| x.as_array()).ok_or(format!("{url}: no `versions` (PEP 700)"))?;
        return Ok(Some(versions.iter().filter_map(|x| x.as_str().map(String::from)).collect()));
    }
    let releases = v.get("releases").and_then(|r| r.as_object()).ok_or(format!("{url}: no `releases`"))?;
    Ok(Some(
        releases
            .iter()
            .filter(|(_, files)| {
                let files = files.as_array().map(Vec::as_slice).unwrap_or_default();
                files.is_empty() || !files.iter().all(|f| f.get("yanked").and_then(|y| y.as_bool()) == Some(true))
            })
            .map(|(k, _)| k.clone())
            .collect(),
    ))
}

/// The outdated check: `Ok(verdicts)` or `Err(why not checked)`. The first failure to reach
/// the index stops it (offline servers answer quickly, not 200 times slowly).
fn outdated(app: &AppContext, args: &DepsArgs, r: &Read) -> Result<Vec<Verdict>, String> {
    if args.offline {
        return Err("--offline".into());
    }
    let Some(index) = &app.config.deps.index_url else { return Err("`deps.index_url: off`".into()) };
    let agent = agent(Duration::from_secs(10));
    let mut out = Vec::new();
    for p in &r.packages {
        match index_versions(&agent, index, &p.normalized) {
            Ok(Some(versions)) => out.extend(judge(&p.normalized, &p.version, &versions)),
            Ok(None) => {}
            Err(e) => return Err(format!("the package index {index} is not reachable: {e}")),
        }
    }
    Ok(out)
}

fn report(app: &AppContext, args: &DepsArgs) -> Result<Code> {
    let mut job = app.store.start_job(kind::DEPS, crate::context::trigger(), false)?;
    let (source, deps) = match read_dependencies(app, args.lockfile.as_deref()) {
        Ok(x) => x,
        Err(e) => {
            job.log(&e);
            let _ = job.finish(Outcome::Failed, json!({}), Some(&e));
            return Err(Failure::new(Code::Failure, format!("cannot read the app's dependencies: {e}"))
                .hint("set `deps.lockfile` to the app's lockfile, or `deps.freeze_command` to what lists its packages")
                .into());
        }
    };
    job.log(&format!(
        "{} packages from {}",
        deps.packages.len(),
        source.path.as_deref().or(source.command.as_deref()).unwrap_or("")
    ));
    let dir = db_dir(app);
    let meta: Option<serde_json::Value> =
        std::fs::read(dir.join(META_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let vulns: Result<Vec<Finding>, String> = if dir.join(DB_FILE).exists() {
        load_zip(&dir.join(DB_FILE)).map(|db| findings(&db, &deps.packages))
    } else {
        Err("no OSV database yet: run `caretaker deps update-db`, or `caretaker deps import-db all.zip` offline".into())
    };
    let outdated = outdated(app, args, &deps);
    let mut vulnerable_packages: Vec<String> =
        vulns.as_ref().map(|f| f.iter().map(|x| x.package.clone()).collect()).unwrap_or_default();
    vulnerable_packages.dedup();
    let outdated_list: Option<Vec<&Verdict>> =
        outdated.as_ref().ok().map(|v| v.iter().filter(|x| x.outdated).collect());
    // The counts feed /metrics and the alert rule; the lists the status page (docs/deps.md).
    let figures = DepsFigures {
        packages: Some(deps.packages.len() as u64),
        vulnerable: vulns.as_ref().ok().map(|_| vulnerable_packages.len() as u64),
        vulnerabilities: vulns.as_ref().ok().map(|v| v.len() as u64),
        vulnerable_packages: vulnerable_packages.clone(),
        outdated: outdated_list.as_ref().map(|v| v.len() as u64),
        database_date: meta.as_ref().and_then(|m| m.get("date")).and_then(|d| d.as_str()).map(str::to_string),
        findings: vulns
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|f| DepsFinding {
                package: f.package.clone(),
                version: f.version.clone(),
                ids: f.ids.clone(),
                summary: f.summary.clone(),
                fixed_in: f.fixed_in.clone(),
            })
            .collect(),
        outdated_packages: outdated_list
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|v| OutdatedPackage {
                package: v.package.clone(),
                version: v.version.clone(),
                compared_with: v.compared_with.clone(),
                latest: v.latest.clone(),
                line: v.line.clone(),
            })
            .collect(),
        vulnerabilities_not_checked: vulns.as_ref().err().cloned(),
        outdated_not_checked: outdated.as_ref().err().cloned(),
    }
    .to_json();
    let doc = json!({
        "source": source,
        "packages": deps.packages,
        "skipped": deps.skipped,
        "database": meta,
        "vulnerabilities": match &vulns {
            Ok(f) => json!({"checked": true, "findings": f}),
            Err(e) => json!({"checked": false, "reason": e, "findings": []}),
        },
        "outdated": match &outdated {
            Ok(_) => json!({"checked": true, "index": app.config.deps.index_url, "packages": outdated_list}),
            Err(e) => json!({"checked": false, "reason": e, "packages": []}),
        },
    });
    for f in vulns.as_deref().unwrap_or_default() {
        job.log(&format!("vulnerable: {} {}: {}", f.package, f.version, f.ids.join(", ")));
    }
    if let Err(e) = &vulns {
        job.log(&format!("vulnerabilities not checked: {e}"));
    }
    if let Err(e) = &outdated {
        job.log(&format!("outdated packages not checked: {e}"));
    }
    job.finish(Outcome::Succeeded, figures, None)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(Code::Ok);
    }
    let from = source.path.as_deref().or(source.command.as_deref()).unwrap_or_default();
    println!("{} packages from {} ({})", deps.packages.len(), from, source.kind);
    for s in &deps.skipped {
        println!("  skipped {s}");
    }
    match &vulns {
        Ok(f) => {
            let date = meta.as_ref().and_then(|m| m.get("date")).and_then(|d| d.as_str()).unwrap_or("unknown");
            println!(
                "\nVulnerable: {} packages, {} vulnerabilities (OSV database dated {date})",
                vulnerable_packages.len(),
                f.len()
            );
            for x in f {
                let fix = if x.fixed_in.is_empty() {
                    "no fix yet".to_string()
                } else {
                    format!("fixed in {}", x.fixed_in.join(", "))
                };
                println!("  {} {}  {}  ({fix})", x.package, x.version, x.ids.join(" "));
                if let Some(s) = &x.summary {
                    println!("      {s}");
                }
            }
        }
        Err(e) => println!("\nVulnerable: NOT CHECKED — {e}"),
    }
    match &outdated_list {
        Some(list) => {
            println!("\nOutdated: {} packages", list.len());
            for v in list {
                println!(
                    "  {} {} → {} (line {}: newest {}; newest overall {})",
                    v.package,
                    v.version,
                    v.compared_with.as_deref().unwrap_or("?"),
                    v.line,
                    v.latest_in_line.as_deref().unwrap_or("?"),
                    v.latest.as_deref().unwrap_or("?")
                );
            }
        }
        None => println!("\nOutdated: NOT CHECKED — {}", outdated.as_ref().err().map(String::as_str).unwrap_or("")),
    }
    Ok(Code::Ok)
}
