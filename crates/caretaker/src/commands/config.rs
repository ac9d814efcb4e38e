//! `caretaker config check` and `caretaker config show`.

use crate::cli::Global;
use crate::context::{find_config, load_config, read_config};
use crate::exit::Code;
use crate::output::yaml;
use anyhow::Result;

pub fn check(global: &Global, json: bool) -> Result<Code> {
    let path = find_config(global.config.as_deref())?;
    let file = read_config(&path, global.allow_world_readable_config)?;
    let (mut ok, diags, summary) = match &file.result {
        Ok(l) => {
            // The release pointer depends on the state directory, which --state-dir overrides.
            let state_dir = crate::context::state_dir(global.state_dir.as_deref(), &l.config);
            let cwd = std::env::current_dir().unwrap_or_default();
            let pointer =
                caretaker_core::config::release_pointer_problems(&l.config, &file.text, &path, &state_dir, &cwd);
            let mut diags = l.warnings.clone();
            diags.0.extend(pointer.iter().cloned());
            (pointer.is_empty(), diags, pointer.is_empty().then(|| summary(&l.config)))
        }
        Err(d) => (false, d.clone(), None),
    };
    // A compose app's names are checked against its compose file (docs/compose.md).
    let compose = match &file.result {
        Ok(l) if l.config.compose.is_some() => Some(crate::compose::check_names_report(&l.config, &path)),
        _ => None,
    };
    if let Some(c) = &compose {
        ok &= c.ok;
    }
    // What the (pure) validation cannot see: this machine.
    let observed = match &file.result {
        Ok(l) => observed_warnings(global, &path, &l.config),
        Err(_) => Vec::new(),
    };
    if json {
        let out = serde_json::json!({
            "file": path.display().to_string(),
            "valid": ok,
            "errors": diags.errors().count(),
            "warnings": diags.warnings().count() + observed.len(),
            "problems": diags,
            "compose": compose.as_ref().map(|c| &c.json),
            "observed": observed,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if !diags.is_empty() {
            eprint!("{}", diags.render(&file.text));
        }
        for line in compose.iter().flat_map(|c| &c.lines) {
            eprintln!("{line}");
        }
        for w in &observed {
            eprintln!("warning: {w}");
        }
        if let Some(s) = summary.filter(|_| ok) {
            println!("{}: ok — {s}", path.display());
        }
    }
    Ok(if ok { Code::Ok } else { Code::Config })
}

/// Warnings from looking at this machine after validation: a service's working directory
/// that does not exist (the supervisor cannot start it).
fn observed_warnings(global: &Global, path: &std::path::Path, cfg: &caretaker_core::config::Config) -> Vec<String> {
    if cfg.compose.is_some() {
        return Vec::new();
    }
    let state_dir = crate::context::state_dir(global.state_dir.as_deref(), cfg);
    let app_dir = crate::appenv::working_dir(&cfg.app, path);
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    for s in &cfg.services {
        let d = s.working_dir.clone().unwrap_or_else(|| app_dir.clone());
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs.into_iter()
        .filter(|d| !d.is_dir())
        .map(|d| format!("services cannot start: {}", crate::daemon::missing_working_dir(&d, &state_dir)))
        .collect()
}

fn summary(cfg: &caretaker_core::config::Config) -> String {
    let mut parts = vec![format!("app {}", cfg.app.name)];
    match &cfg.compose {
        Some(c) => parts.push(format!("compose project {}", c.project)),
        None => parts.push(format!("{} service{}", cfg.services.len(), if cfg.services.len() == 1 { "" } else { "s" })),
    }
    if let Some(db) = &cfg.database {
        parts.push(format!(
            "{} database",
            serde_json::to_value(db.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        ));
    }
    parts.push(format!("{} file tree{}", cfg.files.len(), if cfg.files.len() == 1 { "" } else { "s" }));
    match &cfg.backup {
        Some(b) => parts.push(format!("backup to {} ({})", b.repository, b.schedule)),
        None => parts.push("no backup configured".into()),
    }
    parts.join(", ")
}

pub fn show(global: &Global, json: bool) -> Result<Code> {
    let (_, cfg) = load_config(global.config.as_deref(), global.allow_world_readable_config)?;
    let value = serde_json::to_value(&cfg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", yaml(&value));
    }
    Ok(Code::Ok)
}
