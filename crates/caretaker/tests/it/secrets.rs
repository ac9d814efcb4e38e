//! Secrets never appear in any output, log or record, whatever command runs.

use crate::Scratch;
use std::path::Path;

const INLINE: &str = "inline-SECRET-7f3a9c";
const FROM_FILE: &str = "file-SECRET-2b8d41";
const FROM_ENV: &str = "env-SECRET-c04e77";
const DB_PASSWORD: &str = "dbpw-SECRET-91ee0a";

fn config(dir: &Path) -> String {
    format!(
        r#"version: 1
app:
  name: secretive
  env:
    API_TOKEN: {{ secret: "{INLINE}" }}
    FROM_ENV: {{ secret_env: SECRETIVE_TOKEN }}
database:
  kind: postgres
  url: "postgres://app:{DB_PASSWORD}@127.0.0.1:1/app"
files: ["{dir}/files"]
backup:
  repository: "{dir}/backups"
  password_file: backup.key
alerts:
  smtp: {{ host: 127.0.0.1, from: ct@example.org, username: ct, password: "{INLINE}" }}
  notify: [ {{ email: ops@example.org }}, {{ webhook: "https://hooks.example.org/{FROM_ENV}" }} ]
jobs:
  leak: {{ command: "echo token=$API_TOKEN env=$FROM_ENV; echo $API_TOKEN >&2", schedule: daily }}
  fail: {{ command: "echo failing with $API_TOKEN; exit 1", schedule: daily }}
"#,
        dir = dir.display()
    )
}

#[test]
fn no_secret_in_any_output_log_or_record() {
    let s = Scratch::new();
    s.write("backup.key", &format!("{FROM_FILE}\n"), 0o600);
    let ct = s.write_config(&config(s.path()));
    let runs: &[(&[&str], i32)] = &[
        (&["config", "check"], 0),
        (&["config", "check", "--json"], 0),
        (&["config", "show"], 0),
        (&["config", "show", "--json"], 0),
        (&["jobs", "run", "leak"], 0),
        (&["jobs", "run", "leak", "--json"], 0),
        (&["jobs", "run", "fail"], 1),
        (&["jobs"], 0),
        (&["jobs", "--json"], 0),
        (&["jobs", "show", "1"], 0),
        (&["jobs", "show", "3", "--json"], 0),
        // The database is unreachable (port 1): its errors must not show the URL's password.
        (&["backup", "init"], 0),
        (&["backup", "run"], 6),
        (&["backup", "run", "--json"], 6),
        (&["backup", "restore", "--db-only"], 6),
        (&["recover"], 6),
        (&["recover", "--json"], 6),
    ];
    let mut seen = String::new();
    for (args, code) in runs {
        let out = ct.command(args).env("SECRETIVE_TOKEN", FROM_ENV).env("CARETAKER_LOG", "trace").output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {text}");
        seen.push_str(&text);
        for secret in [INLINE, FROM_FILE, FROM_ENV, DB_PASSWORD] {
            assert!(!text.contains(secret), "caretaker {args:?} printed a secret:\n{text}");
        }
    }
    // The commands did run and did see their secrets: the log shows the redaction marker.
    assert!(seen.contains("token=*** env=***"), "{seen}");
    // Nothing in the state directory (database, WAL, job logs) holds a secret.
    let mut files = 0;
    for entry in walk(&s.path().join("state")) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        files += 1;
        for secret in [INLINE, FROM_FILE, FROM_ENV, DB_PASSWORD] {
            assert!(!text.contains(secret), "{} holds a secret", entry.display());
        }
    }
    assert!(files >= 4, "state.db and job logs were written");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Issue #16.3: diagnostics quote the offending line of the config; secret values on it are
/// masked — also under a misspelled key, a secret given twice, and the password inside a URL
/// on a line with another problem — in every command that loads the config.
#[test]
fn no_secret_in_config_diagnostics() {
    let cases = [
        format!("version: 1\napp: {{ name: a }}\nfiles: [/srv]\nbackup:\n  repository: /b\n  pasword: \"{INLINE}\"\n"),
        format!("version: 1\napp: {{ name: a }}\nfiles: [/srv]\nbackup:\n  repository: /b\n  password: \"{INLINE}\"\n  password_env: SECRETIVE_TOKEN\n"),
        format!("version: 1\napp: {{ name: a }}\ndatabase: {{ kind: postgrs, url: \"postgres://app:{DB_PASSWORD}@127.0.0.1/app\" }}\n"),
        format!("version: 1\napp:\n  name: a\n  env:\n    API_TOKEN: {{ secret: \"{INLINE}\", secrt: \"{FROM_ENV}\" }}\n"),
        format!("version: 1\napp: {{ name: a }}\nfiles: [/srv]\nbackup:\n  repository: /b\n  password: \"{INLINE}\"\n  password: \"{FROM_FILE}\"\n"),
    ];
    for text in cases {
        let s = Scratch::new();
        let ct = s.write_config(&text);
        for args in
            [&["config", "check"][..], &["config", "check", "--json"], &["config", "show"], &["jobs"], &["daemon"]]
        {
            let out = ct.command(args).env("SECRETIVE_TOKEN", FROM_ENV).output().unwrap();
            let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert_eq!(out.status.code(), Some(3), "{args:?}: {shown}");
            for secret in [INLINE, FROM_FILE, FROM_ENV, DB_PASSWORD] {
                assert!(!shown.contains(secret), "caretaker {args:?} showed a secret:\n{shown}");
            }
            if args == ["config", "check"] {
                assert!(shown.contains("***"), "the line is quoted, masked:\n{shown}");
            }
        }
    }
}
