//! `caretaker config check` and `caretaker config show`.

use crate::cli::Global;
use crate::context::{find_config, load_config, read_config};
use crate::exit::Code;
use crate::output::yaml;
use anyhow::Result;

pub fn check(global: &Global, json: bool) -> Result<Code> {
    let path = find_config(global.config.as_deref())?;
    let file = read_config(&path, global.allow_world_readable_config)?;
    let (mut ok, diags, summary, machine) = match &file.result {
        Ok(l) => {
            // The release pointer depends on the state directory, which --state-dir overrides.
            let state_dir = crate::context::state_dir(global.state_dir.as_deref(), &l.config);
            let cwd = std::env::current_dir().unwrap_or_default();
            let pointer =
                caretaker_core::config::release_pointer_problems(&l.config, &file.text, &path, &state_dir, &cwd);
            let mut diags = l.warnings.clone();
            diags.0.extend(pointer.iter().cloned());
            let runtime = crate::runtime::for_config(&l.config, &path, &state_dir);
            // What the (pure) validation cannot see: this machine (a compose app's names
            // against its compose file; a service's working directory).
            let machine = runtime.check_machine();
            (pointer.is_empty(), diags, pointer.is_empty().then(|| summary(&l.config, &*runtime)), Some(machine))
        }
        Err(d) => (false, d.clone(), None, None),
    };
    if let Some(m) = &machine {
        ok &= m.ok;
    }
    let observed: &[String] = machine.as_ref().map(|m| m.observed.as_slice()).unwrap_or_default();
    if json {
        let out = serde_json::json!({
            "file": path.display().to_string(),
            "valid": ok,
            "errors": diags.errors().count(),
            "warnings": diags.warnings().count() + observed.len(),
            "problems": diags,
            "compose": machine.as_ref().and_then(|m| m.compose_json.as_ref()),
            "observed": observed,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if !diags.is_empty() {
            eprint!("{}", diags.render(&file.text));
        }
        for line in machine.iter().flat_map(|m| &m.lines) {
            eprintln!("{line}");
        }
        if let Some(s) = summary.filter(|_| ok) {
            println!("{}: ok — {s}", path.display());
        }
    }
    Ok(if ok { Code::Ok } else { Code::Config })
}

fn summary(cfg: &caretaker_core::config::Config, runtime: &dyn crate::runtime::AppRuntime) -> String {
    let mut parts = vec![format!("app {}", cfg.app.name), runtime.describe()];
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
