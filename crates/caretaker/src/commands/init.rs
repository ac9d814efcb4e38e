//! `caretaker init`: a commented starter config with fresh secrets, mode 0600, never
//! overwriting an existing file.

use crate::cli::{Global, InitArgs};
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_core::config::template::{render, InitSecrets};
use rand::distr::{Alphanumeric, SampleString};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// A random password from the OS CSPRNG: 32 alphanumerics ≈ 190 bits.
pub fn fresh_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

pub fn run(global: &Global, args: &InitArgs) -> Result<Code> {
    let path = global
        .config
        .clone()
        .or_else(|| std::env::var_os("CARETAKER_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("caretaker.yml"));
    let secrets = InitSecrets {
        backup_password: fresh_secret(),
        database_password: fresh_secret(),
        app_secret_key: fresh_secret(),
    };
    let text = render(&args.app, args.domain.as_deref(), &secrets);
    // Validate what we are about to write with the same loader every command uses.
    if let Err(d) = caretaker_core::config::load(&text, &path, None, &caretaker_core::config::NoSecrets) {
        let msg = d.errors().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
        return Err(Failure::new(Code::Usage, format!("cannot write a config for app \"{}\": {msg}", args.app)).into());
    }
    // create_new: refuse atomically if the file exists, even if it appears meanwhile.
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure::new(Code::Refused, format!("{} already exists; not overwriting it", path.display()))
                .hint("move it away first, or choose another file with --config")
                .into())
        }
        Err(e) => return Err(Failure::new(Code::Failure, format!("cannot create {}: {e}", path.display())).into()),
    };
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    println!("wrote {} (mode 0600) for app \"{}\" with fresh secrets", path.display(), args.app);
    println!("next: edit it, then run `caretaker config check`; the first run of an existing app, step by step:");
    println!("  config check -> backup init -> backup run -> update -> install-systemd (docs/adopt.md)");
    Ok(Code::Ok)
}
