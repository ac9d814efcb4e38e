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
    println!("cargo:rerun-if-env-changed=CARETAKER_COMMIT");
    // Rebuild when HEAD moves (new commit or checkout).
    for p in ["../../.git/HEAD", "../../.git/index"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
