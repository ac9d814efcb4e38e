//! The Debian package (scripts/package, docs/install.md), installed the way an operator
//! installs it: `apt-get install ./caretaker_*.deb` in a clean Debian container that the test
//! makes from scripts/debian-rootfs, without a network. Then the man page, bash completion and
//! the demo from the installed files, an upgrade that keeps an edited conffile, and a purge that
//! leaves the file system as it found it (apart from the operator's own files, which it names
//! and keeps).
//!
//! The package holds the debug binary this test run built: a release build of the whole binary
//! costs minutes on two cores, and what the test checks is the packaging, not the optimiser.
//! `scripts/package` without `--dev` builds the release package for real use.

use caretaker_testkit::{require_service, unique_name};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A container that is removed when the test ends, however it ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

impl Container {
    /// Runs `script` with bash in the container.
    fn sh(&self, script: &str) -> Output {
        Command::new("docker")
            .args(["exec", "-e", "DEBIAN_FRONTEND=noninteractive", &self.0, "bash", "-euo", "pipefail", "-c", script])
            .output()
            .unwrap()
    }

    /// Runs `script`, fails the test unless it succeeds; returns its standard output.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "`{script}` failed ({}):\n{stdout}\n{stderr}", out.status);
        stdout.into_owned()
    }

    /// Every path of the container's file system except the kernel's, apt's and dpkg's
    /// bookkeeping, caches, logs and /tmp (where the test keeps its own files).
    fn files(&self) -> Vec<String> {
        let list = self.ok("find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
             -o -path /var/cache -o -path /var/lib/apt -o -path /var/lib/dpkg -o -path /var/log \\) -prune \
             -o -print | sort");
        list.lines().map(String::from).collect()
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `scripts/package --dev` on the binary this test run built; returns the .deb's path.
fn package(out: &Path, version: &str) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_caretaker"));
    let target_dir = exe.parent().and_then(Path::parent).unwrap();
    let run = Command::new(repo_root().join("scripts/package"))
        .args(["--dev", "--no-build", "--deb-version", version, "--out"])
        .arg(out)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "scripts/package failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default());
    assert!(deb.is_file(), "scripts/package named no .deb: {stdout}");
    deb
}

/// man-db and bash-completion (not in a minimal Debian) for the `man -w` and completion
/// checks, downloaded once on the host with apt (the container has no network) and cached.
fn tool_debs() -> PathBuf {
    let cache = std::env::var_os("CARETAKER_ROOTFS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/caretaker-rootfs"))
        .join("package-test-debs");
    let script = r#"
set -euo pipefail
mkdir -p "$1" && cd "$1"
exec 9>.lock && flock 9
[[ -e done ]] && exit 0
rm -f ./*.deb
pkgs=(man-db groff-base libgdbm6 libpipeline1 libuchardet0 bsdextrautils bash-completion)
apt-get download -qq "${pkgs[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get download -qq "${pkgs[@]}"; }
touch done
"#;
    let out = Command::new("bash").args(["-c", script, "tool-debs"]).arg(&cache).output().unwrap();
    assert!(
        out.status.success(),
        "downloading man-db and bash-completion failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cache
}

#[test]
fn the_deb_installs_upgrades_and_purges_cleanly_on_a_clean_debian() {
    if require_service("CARETAKER_TEST_DOCKER").is_none() {
        return;
    }
    let started = std::time::Instant::now();
    let step = |what: &str| eprintln!("package test: {what} after {:.1?}", started.elapsed());
    let work = tempfile::tempdir().unwrap();
    let debs = work.path().join("debs");
    let v1 = package(&debs, "0.1.0-1+test1");
    let v2 = package(&debs, "0.1.0-1+test2");
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let (v1, v2) = (name(&v1), name(&v2));
    step("packaged twice");

    let image = Command::new(repo_root().join("scripts/debian-rootfs")).arg("--image").output().unwrap();
    assert!(image.status.success(), "scripts/debian-rootfs --image: {}", String::from_utf8_lossy(&image.stderr));
    let image = String::from_utf8_lossy(&image.stdout).trim().to_string();
    let tools = tool_debs();

    let c = Container(unique_name("caretaker-package").replace('_', "-"));
    let run = Command::new("docker")
        .args(["run", "-d", "--network", "none", "--name", &c.0, "-v"])
        .arg(format!("{}:/debs:ro", debs.display()))
        .arg("-v")
        .arg(format!("{}:/tools:ro", tools.display()))
        .args([&image, "sleep", "infinity"])
        .output()
        .unwrap();
    assert!(run.status.success(), "docker run: {}", String::from_utf8_lossy(&run.stderr));

    // The tools the checks use, installed before the "before" picture is taken.
    c.ok("cp /tools/*.deb /tmp/ && apt-get install -y -qq /tmp/*.deb >/dev/null && rm /tmp/*.deb");
    let before = c.files();
    step("container ready");

    // Install, as an operator does; the package's dependencies are in a minimal Debian.
    c.ok(&format!("cp /debs/{v1} /tmp/ && apt-get install -y /tmp/{v1}"));
    // As paths on this file system: /lib is a link to /usr/lib on a merged-/usr Debian.
    let owned = c.ok("dpkg-query -L caretaker | while read -r p; do readlink -m \"$p\"; done");
    let owned: Vec<&str> = owned.lines().collect();
    let installed = c.files();
    let unowned: Vec<&String> =
        installed.iter().filter(|f| !before.contains(f) && !owned.contains(&f.as_str())).collect();
    assert!(unowned.is_empty(), "installing made files dpkg does not know of: {unowned:?}");
    for path in [
        "/usr/bin/caretaker",
        "/usr/share/man/man1/caretaker.1.gz",
        "/usr/share/man/man1/caretaker-backup-run.1.gz",
        "/usr/share/bash-completion/completions/caretaker",
        "/usr/share/zsh/vendor-completions/_caretaker",
        "/usr/share/fish/vendor_completions.d/caretaker.fish",
        "/usr/lib/systemd/system/caretaker@.service",
        "/etc/caretaker/caretaker.env",
        "/usr/share/doc/caretaker/copyright",
        "/usr/share/doc/caretaker/changelog.gz",
        "/usr/share/doc/caretaker/docs/daemon.md",
    ] {
        assert!(owned.contains(&path), "the package lacks {path}: {owned:?}");
    }
    assert_eq!(c.ok("stat -c %a /etc/caretaker/caretaker.env").trim(), "600", "the conffile may hold secrets");
    assert!(c.ok("cat /var/lib/dpkg/info/caretaker.conffiles").contains("/etc/caretaker/caretaker.env"));
    assert!(c.ok("cat /usr/share/doc/caretaker/copyright").contains(" rustic_core "), "copyright lists linked crates");

    // --version names the commit and the build.
    let version = c.ok("caretaker --version");
    assert!(
        version.contains("(commit ") && version.contains("\nfeatures: ") && version.contains("\nbuild: "),
        "{version}"
    );

    // The man page resolves and renders.
    assert_eq!(c.ok("man -w caretaker").trim(), "/usr/share/man/man1/caretaker.1.gz");
    assert_eq!(c.ok("man -w caretaker-backup").trim(), "/usr/share/man/man1/caretaker-backup.1.gz");
    let page = c.ok("MANWIDTH=250 man -P cat caretaker 2>/dev/null");
    assert!(page.contains("self-maintaining appliance") && page.contains("caretaker-backup(1)"), "{page}");

    // bash completes `caretaker bac<TAB>` the way an interactive shell would: bash-completion
    // loads the package's completion file on demand and calls its function.
    let completed = c.ok(r#"source /usr/share/bash-completion/bash_completion
__load_completion caretaker
func=$(complete -p caretaker | sed -E 's/.* -F ([^ ]+) .*/\1/')
COMP_WORDS=(caretaker bac); COMP_CWORD=1; COMP_LINE="caretaker bac"; COMP_POINT=${#COMP_LINE}
"$func" caretaker bac caretaker
printf '%s\n' "${COMPREPLY[@]}""#);
    assert_eq!(completed.trim(), "backup", "completions of `caretaker bac`");

    step("installed and checked");
    // The demo runs from the installed package: migrate, supervised app, backup, stop.
    let demo = c.ok("cd /tmp && timeout 300 caretaker demo --exit-when-ready --dir /tmp/demo");
    assert!(demo.contains("backup      snapshot") && demo.contains("stopped the demo app"), "{demo}");

    step("demo ran");
    // Upgrade: the operator's edit of the conffile survives, and nothing is left beside it.
    c.ok("echo CARETAKER_LOG=debug >> /etc/caretaker/caretaker.env");
    c.ok(&format!("cp /debs/{v2} /tmp/ && apt-get install -y /tmp/{v2}"));
    assert_eq!(c.ok("dpkg-query -W -f '${Version}' caretaker"), "0.1.0-1+test2");
    assert!(c.ok("cat /etc/caretaker/caretaker.env").contains("\nCARETAKER_LOG=debug\n"), "the upgrade lost the edit");
    assert_eq!(c.ok("ls -A /etc/caretaker").trim(), "caretaker.env", "no .dpkg-* files beside the conffile");

    // Purge: the package's files go; the operator's app config and state are kept and named.
    c.ok("printf 'version: 1\\n' > /etc/caretaker/myapp.yml && mkdir -p /var/lib/caretaker/myapp");
    let purge = c.ok("apt-get purge -y caretaker 2>&1");
    assert!(purge.contains("kept /etc/caretaker") && purge.contains("kept /var/lib/caretaker"), "{purge}");
    c.ok("test -f /etc/caretaker/myapp.yml && test -d /var/lib/caretaker/myapp && ! test -e /etc/caretaker/caretaker.env");
    c.ok("rm -r /etc/caretaker /var/lib/caretaker");
    assert!(c.ok("ls /var/lib/dpkg/info/ | grep '^caretaker' || true").is_empty(), "dpkg forgot the package");
    let after = c.files();
    let added: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
    let removed: Vec<&String> = before.iter().filter(|f| !after.contains(f)).collect();
    assert!(added.is_empty() && removed.is_empty(), "after purge: stray {added:?}, missing {removed:?}");
}

/// `--version` names the commit, the cargo features and the build; `-V` stays one line.
#[test]
fn version_names_the_commit_features_and_build() {
    let bin = env!("CARGO_BIN_EXE_caretaker");
    let long = String::from_utf8(Command::new(bin).arg("--version").output().unwrap().stdout).unwrap();
    let lines: Vec<&str> = long.lines().collect();
    assert!(lines.len() == 3 && lines[0].contains("(commit "), "{long}");
    assert!(lines[1].starts_with("features: ") && lines[2].starts_with("build: debug profile"), "{long}");
    let short = String::from_utf8(Command::new(bin).arg("-V").output().unwrap().stdout).unwrap();
    assert_eq!(short.trim(), lines[0]);
}

/// `caretaker completions SHELL` prints a script each shell accepts; bash's completes
/// subcommands and options on its own (the package test checks it through bash-completion).
#[test]
fn completion_scripts_complete_commands_and_options() {
    let bin = env!("CARGO_BIN_EXE_caretaker");
    let script = |shell: &str| {
        let out = Command::new(bin).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "completions {shell}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(script("zsh").starts_with("#compdef caretaker"));
    assert!(script("fish").contains("complete -c caretaker"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("caretaker.bash");
    std::fs::write(&file, script("bash")).unwrap();
    let complete = |words: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                r#"source "$0"; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
COMP_LINE="{words}"; COMP_POINT=${{#COMP_LINE}}; _caretaker caretaker "${{COMP_WORDS[-1]}}" "${{COMP_WORDS[-2]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#
            ))
            .arg(&file)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(complete("caretaker bac").trim(), "backup");
    let backup = complete("caretaker backup r");
    assert!(backup.lines().any(|l| l == "run") && backup.lines().any(|l| l == "restore"), "{backup}");
}
