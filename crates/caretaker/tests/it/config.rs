use crate::{stderr_of, Scratch, BIN};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// Every example config in the repository passes `config check`, given the secrets it reads
/// from the environment.
#[test]
fn every_example_config_parses() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        n += 1;
        let mut cmd = Command::new(BIN);
        cmd.args(["--config"]).arg(&path).args(["config", "check"]);
        for var in [
            "GUESTBOOK_SECRET_KEY",
            "GUESTBOOK_BACKUP_PASSWORD",
            "GUESTBOOK_SMTP_PASSWORD",
            "COURSYS_BACKUP_PASSWORD",
            "COURSYS_S3_KEY_ID",
            "COURSYS_S3_SECRET",
            "TOPOBANK_DB_PASSWORD",
            "TOPOBANK_BACKUP_PASSWORD",
        ] {
            cmd.env(var, "example-secret-value");
        }
        cmd.env("GUESTBOOK_WEBHOOK_URL", "https://ntfy.example.org/guestbook");
        cmd.env("GUESTBOOK_DATABASE_URL", "postgres://g:pw@127.0.0.1/guestbook");
        cmd.env("COURSYS_DATABASE_URL", "mysql://c:pw@127.0.0.1/coursys");
        cmd.env("TOPOBANK_DATABASE_URL", "postgres://topobank:pw@postgres:5432/topobank");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}: {}", path.display(), stderr_of(&out));
    }
    assert!(n >= 3, "expected example configs in {}", examples.display());
}

#[test]
fn check_reports_all_problems_and_exits_3() {
    let s = Scratch::new();
    let ct = s.write_config("version: 1\napp:\n  name: x\n  nmae: y\nservices:\n  w: { command: a, after: [web] }\n");
    let out = ct.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr_of(&out);
    assert!(err.contains("caretaker.yml:4:3"), "{err}");
    assert!(err.contains("did you mean `name`?"), "{err}");
    assert!(err.contains("starts after `web`, which is not defined"), "{err}");
    assert!(err.contains("2 errors"), "{err}");

    let json = ct.command(&["config", "check", "--json"]).output().unwrap();
    assert_eq!(json.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], 2);
    assert_eq!(v["problems"][0]["line"], 4);
    assert_eq!(v["problems"][0]["column"], 3);
    assert_eq!(v["problems"][0]["hint"], "did you mean `name`?");
}

#[test]
fn config_is_found_by_flag_then_env_then_current_directory() {
    let s = Scratch::new();
    s.write("caretaker.yml", "version: 1\napp:\n  name: from-cwd\n", 0o600);
    s.write("env.yml", "version: 1\napp:\n  name: from-env\n", 0o600);
    s.write("flag.yml", "version: 1\napp:\n  name: from-flag\n", 0o600);
    let show = |args: &[&str], env: Option<&str>| {
        let mut c = Command::new(BIN);
        c.current_dir(s.path()).args(args).args(["config", "show", "--json"]).env_remove("CARETAKER_CONFIG");
        if let Some(e) = env {
            c.env("CARETAKER_CONFIG", s.path().join(e));
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["app"]["name"].as_str().unwrap().to_string()
    };
    assert_eq!(show(&["--config", "flag.yml"], Some("env.yml")), "from-flag");
    assert_eq!(show(&[], Some("env.yml")), "from-env");
    assert_eq!(show(&[], None), "from-cwd");

    // An explicit file that does not exist is an error, not a silent fallback.
    let out =
        Command::new(BIN).current_dir(s.path()).args(["--config", "nope.yml", "config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr_of(&out).contains("nope.yml (--config)"), "{}", stderr_of(&out));
}

#[test]
fn world_readable_config_with_inline_secrets_is_refused_unless_allowed() {
    let s = Scratch::new();
    s.write(
        "caretaker.yml",
        "version: 1\napp:\n  name: x\n  env:\n    KEY: { secret: \"inline-secret-1234\" }\n",
        0o644,
    );
    let ct = s.caretaker();
    let out = ct.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr_of(&out).contains("readable by every user"), "{}", stderr_of(&out));
    let out = ct.run(&["--allow-world-readable-config", "config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("warning"), "{}", stderr_of(&out));
}

#[test]
fn init_writes_a_private_valid_config_and_never_overwrites() {
    let s = Scratch::new();
    let ct = s.caretaker();
    let out = ct.run(&["init", "--app", "guestbook", "--domain", "guestbook.example.org"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let mode = std::fs::metadata(s.config()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(s.config()).unwrap();
    assert!(text.contains("name: guestbook"));
    assert!(text.lines().filter(|l| l.trim_start().starts_with('#')).count() > 10, "the config is commented");
    ct.expect(&["config", "check"], 0);

    // Fresh secrets: two inits differ.
    let s2 = Scratch::new();
    s2.caretaker().expect(&["init", "--app", "guestbook"], 0);
    let other = std::fs::read_to_string(s2.config()).unwrap();
    let pw = |t: &str| t.lines().find(|l| l.trim_start().starts_with("password:")).unwrap().to_string();
    assert_ne!(pw(&text), pw(&other));

    // Refuses to overwrite, leaving the file untouched.
    let out = ct.run(&["init", "--app", "other"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr_of(&out).contains("already exists"), "{}", stderr_of(&out));
    assert_eq!(std::fs::read_to_string(s.config()).unwrap(), text);

    // A bad app name is a usage error and writes nothing.
    let s3 = Scratch::new();
    let out = s3.caretaker().run(&["init", "--app", "Bad Name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!s3.config().exists());
}

#[test]
fn version_names_the_commit() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with(&format!("caretaker {}", env!("CARGO_PKG_VERSION"))), "{v}");
    assert!(v.contains("(commit "), "{v}");
}

// ---- hardening (issue #16) --------------------------------------------------------------------

fn chmod(p: &std::path::Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Issue #16.4: the config names commands the daemon runs (as root under the generated unit),
/// so a config, secret file or token file that other users could change is refused, as
/// OpenSSH refuses such files; a token file other users could read is refused too.
#[test]
fn files_other_users_could_change_are_refused() {
    let s = Scratch::new();
    let ct = s.write_config("version: 1\napp:\n  name: x\n");
    ct.expect(&["config", "check"], 0);
    for (mode, who) in [(0o620, "its group"), (0o602, "every user")] {
        chmod(&s.config(), mode);
        let out = ct.run(&["config", "check"]);
        assert_eq!(out.status.code(), Some(3), "{mode:o}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains(&format!("is writable by {who}")), "{}", stderr_of(&out));
        // Every command that loads the config refuses it, the daemon included.
        assert_eq!(ct.run(&["jobs"]).status.code(), Some(3));
    }
    chmod(&s.config(), 0o600);
    // A directory above it that others may write: refused, unless sticky and owned by root
    // (like /tmp, which holds every scratch directory of these tests).
    chmod(s.path(), 0o777);
    let out = ct.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("it is in directory") && stderr_of(&out).contains("writable by every user"),
        "{}",
        stderr_of(&out)
    );
    chmod(s.path(), 0o1777);
    let sticky_ok = unsafe { libc::geteuid() } == 0;
    assert_eq!(ct.run(&["config", "check"]).status.code(), Some(if sticky_ok { 0 } else { 3 }));
    chmod(s.path(), 0o700);
    ct.expect(&["config", "check"], 0);

    // A secret file writable by others.
    let key = s.write("backup.key", "correct horse battery staple\n", 0o660);
    let ct = s.write_config(&format!(
        "version: 1\napp:\n  name: x\nfiles: [\"{d}\"]\nbackup:\n  repository: \"{d}/repo\"\n  password_file: \"{k}\"\n",
        d = s.path().display(),
        k = key.display()
    ));
    let out = ct.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("backup.key is writable by its group"), "{}", stderr_of(&out));
    chmod(&key, 0o600);
    ct.expect(&["config", "check"], 0);

    // The status token file: not writable by others, not readable by everyone.
    let token = s.write("status.token", "tok-0123456789abcdef\n", 0o644);
    let ct = s.write_config(&format!("version: 1\napp:\n  name: x\nstatus:\n  token_file: \"{}\"\n", token.display()));
    let out = ct.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("readable by every user"), "{}", stderr_of(&out));
    chmod(&token, 0o622);
    let out = ct.run(&["config", "check"]);
    assert!(stderr_of(&out).contains("status.token is writable by every user"), "{}", stderr_of(&out));
    chmod(&token, 0o600);
    ct.expect(&["config", "check"], 0);
}

/// Issue #16.9: only regular files of bounded size are read: `/dev/zero` does not grow
/// memory without end, a FIFO does not hang.
#[test]
fn config_and_secret_files_must_be_regular_and_small() {
    let s = Scratch::new();
    let fifo = s.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    chmod(&fifo, 0o600);
    let big = s.write("big.yml", &format!("version: 1\napp:\n  name: x\n#{}\n", "x".repeat(2 << 20)), 0o600);
    let run = |args: &[&str]| {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = caretaker_testkit::wait_until(std::time::Duration::from_secs(30), "caretaker to finish", || {
            child.try_wait().unwrap()
        });
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status.code(), err)
    };
    for (config, why) in [
        ("/dev/zero".to_string(), "not a regular file"),
        (fifo.display().to_string(), "not a regular file"),
        (big.display().to_string(), "larger than 1048576 bytes"),
    ] {
        let (code, err) = run(&["--config", &config, "config", "check"]);
        assert_eq!(code, Some(3), "{config}: {err}");
        assert!(err.contains(why), "{config}: {err}");
    }
    for secret in ["/dev/zero".to_string(), fifo.display().to_string()] {
        let cfg = s.write(
            "caretaker.yml",
            &format!(
                "version: 1\napp:\n  name: x\nfiles: [\"{d}\"]\nbackup:\n  repository: \"{d}/repo\"\n  password_file: \"{secret}\"\n",
                d = s.path().display()
            ),
            0o600,
        );
        let (code, err) = run(&["--config", &cfg.display().to_string(), "config", "check"]);
        assert_eq!(code, Some(3), "{secret}: {err}");
        assert!(err.contains("cannot read secret file") && err.contains("not a regular file"), "{secret}: {err}");
    }
}

/// Issue #16.7: with the config in the current directory and no `--config` (the default
/// `./caretaker.yml`), app commands run in that directory (it resolved to the empty path).
#[test]
fn commands_run_in_the_directory_of_a_config_given_without_one() {
    let s = Scratch::new();
    s.write(
        "caretaker.yml",
        "version: 1\napp:\n  name: x\njobs:\n  here: { command: \"pwd > here.txt\", schedule: daily }\n",
        0o600,
    );
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(s.path())
            .arg("--state-dir")
            .arg(s.path().join("state"))
            .args(args)
            .env_remove("CARETAKER_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
    };
    run(&["jobs", "run", "here"]);
    let here = std::fs::read_to_string(s.path().join("here.txt")).unwrap();
    assert_eq!(std::path::Path::new(here.trim()).canonicalize().unwrap(), s.path().canonicalize().unwrap());
    run(&["exec", "--", "/usr/bin/true"]);
    run(&["--config", "caretaker.yml", "exec", "--", "/usr/bin/true"]);
}

/// Issue #16.13: input that used to pass `config check` and fail later gets an error with a
/// location from the binary too: non-UTF-8 text and a second YAML document.
#[test]
fn non_utf8_and_second_documents_are_refused_with_a_location() {
    let s = Scratch::new();
    std::fs::write(s.config(), b"version: 1\napp:\n  name: caf\xe9\n").unwrap();
    chmod(&s.config(), 0o600);
    let out = s.caretaker().run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr_of(&out).contains("caretaker.yml:3:12") && stderr_of(&out).contains("not valid UTF-8"),
        "{}",
        stderr_of(&out)
    );
    let ct = s.write_config("version: 1\napp:\n  name: x\n---\nversion: 1\napp:\n  name: y\n");
    let out = ct.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr_of(&out).contains("caretaker.yml:4:1") && stderr_of(&out).contains("second YAML document"),
        "{}",
        stderr_of(&out)
    );
}

/// Issue #15: "every problem at once": an unknown key does not hide value errors elsewhere.
#[test]
fn unknown_keys_and_value_errors_are_reported_in_one_run() {
    let s = Scratch::new();
    let ct = s.write_config(
        "version: 1\napp:\n  name: x\n  nmae: y\nchecks:\n  home: { timeout: 5s }\nalerts:\n  notify: [ { emial: ops@example.org } ]\njobs:\n  j: { command: x, schedule: daily, timeout: 99999999999s }\n",
    );
    let out = ct.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr_of(&out);
    for want in [
        "unknown key `nmae`",
        "`checks.home` needs exactly one probe",
        "unknown key `emial`",
        "is too long",
        "4 errors",
    ] {
        assert!(err.contains(want), "{want} missing in:\n{err}");
    }
}
