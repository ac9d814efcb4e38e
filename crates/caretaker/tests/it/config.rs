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
