//! Integration tests of the `caretaker` binary: one test binary, one module per area.

mod adopt;
mod backup;
mod backup_failures;
mod backup_metrics;
mod backup_targets;
mod certs;
mod clone;
mod compose;
mod compose_mariadb;
mod compose_oneoff;
mod compose_prod;
mod compose_pull;
mod compose_recover;
mod config;
mod daemon;
mod db;
mod demo;
mod deps;
mod fleet;
mod jobs;
mod maintenance;
mod observe;
mod os;
mod package;
mod probe;
mod prod;
mod recover;
mod recover_code;
mod reload;
mod restore_filetypes;
mod scheduler;
mod secrets;
mod sheet;
mod status_page;
mod supervisor;
mod tasks;
mod tls;
mod update;
mod update_django;

use caretaker_testkit::Caretaker;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const BIN: &str = env!("CARGO_BIN_EXE_caretaker");

/// A scratch directory with a config file (mode 0600) and a state dir.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch { dir: tempfile::tempdir().unwrap() }
    }
}

impl Scratch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("caretaker.yml")
    }

    pub fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    pub fn write_config(&self, text: &str) -> Caretaker {
        self.write("caretaker.yml", text, 0o600);
        self.caretaker()
    }

    pub fn caretaker(&self) -> Caretaker {
        Caretaker::new(BIN, &self.config(), &self.path().join("state"))
    }
}

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
