//! Driver for `bench/backup` (a benchmark, not a test): runs caretaker's backup engine the way
//! `caretaker backup run` / `restore` do, on a local repository.
//!
//!     bench init    REPO
//!     bench backup  REPO TREE        # stdin is the stream `database`
//!     bench restore REPO TARGET
//!
//! The password is read from the file named by `CARETAKER_BENCH_PASSWORD_FILE` (never argv).

use caretaker_backup::{location, BackupEngine, BackupRequest, RestoreRequest, RestoreWhat, StreamSource, TreeSpec};
use std::io::Write;
use std::path::PathBuf;

struct Stdin;

impl StreamSource for Stdin {
    fn name(&self) -> &str {
        "database"
    }
    fn write_to(&mut self, out: &mut dyn Write) -> std::io::Result<u64> {
        std::io::copy(&mut std::io::stdin().lock(), out)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench init REPO | backup REPO TREE | restore REPO TARGET";
    let (cmd, repo) = match (args.first(), args.get(1)) {
        (Some(c), Some(r)) => (c.as_str(), PathBuf::from(r)),
        _ => fail(usage),
    };
    let pw_file = std::env::var_os("CARETAKER_BENCH_PASSWORD_FILE")
        .unwrap_or_else(|| fail("CARETAKER_BENCH_PASSWORD_FILE is not set"));
    let password =
        std::fs::read_to_string(&pw_file).unwrap_or_else(|e| fail(&format!("reading the password file: {e}")));
    let engine = location::local(&repo, password.trim_end_matches('\n')).unwrap_or_else(|e| fail(&e.to_string()));
    match (cmd, args.get(2)) {
        ("init", None) => engine.init().unwrap_or_else(|e| fail(&e.to_string())),
        ("backup", Some(tree)) => {
            let req = BackupRequest {
                trees: vec![TreeSpec { path: PathBuf::from(tree), exclude: vec![] }],
                host: Some("bench".into()),
                ..Default::default()
            };
            let r = engine.backup(&req, vec![Box::new(Stdin)]).unwrap_or_else(|e| fail(&e.to_string()));
            if !r.complete {
                fail(&format!("partial backup: {:?}", r.read_errors));
            }
            eprintln!(
                "caretaker: snapshot {} read {} bytes, added {} bytes",
                r.snapshot_id, r.bytes_read, r.bytes_added
            );
        }
        ("restore", Some(target)) => {
            let req = RestoreRequest {
                snapshot: None,
                what: RestoreWhat::All,
                target: Some(PathBuf::from(target)),
                skip: vec![],
            };
            let r = engine.restore(&req).unwrap_or_else(|e| fail(&e.to_string()));
            if !r.errors.is_empty() {
                fail(&format!("restore errors: {:?}", r.errors));
            }
        }
        _ => fail(usage),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(2)
}
