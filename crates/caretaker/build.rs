//! Records the git commit the binary was built from, for `caretaker --version`.
use std::process::Command;

fn main() {
    let commit = std::env::var("CARETAKER_COMMIT").ok().or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    let commit = match commit {
        Some(c) if dirty => format!("{c}-modified"),
        Some(c) => c,
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=CARETAKER_COMMIT={commit}");
    build_info();
    println!("cargo:rerun-if-env-changed=CARETAKER_COMMIT");
    // Rebuild when HEAD moves (new commit or checkout).
    for p in ["../../.git/HEAD", "../../.git/index"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

/// For `caretaker --version`: the cargo features this binary was built with and its build
/// (profile, optimisation, target, compiler), so a bug report names exactly what ran.
fn build_info() {
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase().replace('_', "-")))
        .collect();
    features.sort();
    let features = if features.is_empty() {
        "none (every backend, database adapter and runtime is built in)".to_string()
    } else {
        features.join(", ")
    };
    println!("cargo:rustc-env=CARETAKER_FEATURES={features}");
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "?".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "rustc ?".into());
    let assertions = if std::env::var_os("CARGO_CFG_DEBUG_ASSERTIONS").is_some() { "on" } else { "off" };
    println!(
        "cargo:rustc-env=CARETAKER_BUILD={} profile (opt-level {}, debug assertions {assertions}), {}, {rustc}",
        env("PROFILE"),
        env("OPT_LEVEL"),
        env("TARGET"),
    );
}
