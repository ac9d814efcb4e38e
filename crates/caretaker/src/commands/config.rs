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
    if json {
        let out = serde_json::json!({
            "file": path.display().to_string(),
            "valid": ok,
            "errors": diags.errors().count(),
            "warnings": diags.warnings().count(),
            "problems": diags,
            "compose": compose.as_ref().map(|c| &c.json),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if !diags.is_empty() {
            eprint!("{}", diags.render(&file.text));
        }
        for line in compose.iter().flat_map(|c| &c.lines) {
            eprintln!("{line}");
        }
        if let Some(s) = summary.filter(|_| ok) {
            println!("{}: ok — {s}", path.display());
        }
    }
    Ok(if ok { Code::Ok } else { Code::Config })
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
