//! `caretaker config sheet`, `config from-qr` and `config cloud-init`: the config's paper
//! backup and first-boot seed (docs/recovery-sheet.md). Encoding, PDF and ISO live in
//! `caretaker-sheet`; this is the glue: reading the config, writing private files, messages.

use crate::cli::{CloudInitArgs, FromQrArgs, Global, SheetArgs};
use crate::context::{find_config, read_config};
use crate::exit::{Code, Failure};
use anyhow::{Context, Result};
use caretaker_sheet::{chunk, pdf, scan, seed};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The config file's exact bytes with its validated app name and domain.
fn config_bytes(global: &Global) -> Result<(std::path::PathBuf, Vec<u8>, String, Option<String>)> {
    let path = find_config(global.config.as_deref())?;
    let file = read_config(&path, global.allow_world_readable_config)?;
    match file.result {
        Ok(loaded) => {
            let app = loaded.config.app.name.clone();
            let domain = loaded.config.app.domain.clone();
            Ok((path, file.text.into_bytes(), app, domain))
        }
        Err(diags) => {
            eprint!("{}", diags.render(&file.text));
            Err(Failure::new(Code::Config, format!("{} is not valid", path.display()))
                .hint("fix the config first: a recovery copy of a broken config would not recover anything")
                .into())
        }
    }
}

/// Writes `bytes` to `path` readable by its owner only: a 0600 temporary file next to it, then
/// linked into place (refused if `path` exists) or, with `force`, renamed over it.
fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    if !force && path.exists() {
        return Err(Failure::new(Code::Refused, format!("{} exists", path.display()))
            .hint("pass --force to overwrite it, or choose another file")
            .into());
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.caretaker-tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if force {
            std::fs::rename(&tmp, path)
        } else {
            std::fs::hard_link(&tmp, path)?;
            std::fs::remove_file(&tmp)
        }
    };
    let result = write();
    let _ = std::fs::remove_file(&tmp);
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Failure::new(Code::Refused, format!("{} exists", path.display()))
                .hint("pass --force to overwrite it, or choose another file")
                .into())
        }
        r => r.with_context(|| format!("writing {}", path.display())),
    }
}

pub fn sheet(global: &Global, args: &SheetArgs) -> Result<Code> {
    let (path, config, app, domain) = config_bytes(global)?;
    let config_path = std::path::absolute(&path).unwrap_or(path.clone()).display().to_string();
    let refs = caretaker_sheet::refs::external_references(&String::from_utf8_lossy(&config));
    let mut notes = Vec::new();
    if !refs.is_empty() {
        let list: Vec<String> = refs.iter().map(|(n, k)| format!("line {n}: {k}")).collect();
        notes.push(format!(
            "Not on this sheet: the config reads {} secret(s) from files or the environment ({}). Keep those with the sheet.",
            refs.len(),
            list.join(", ")
        ));
        eprintln!(
            "warning: the config reads {} secret(s) from files or the environment, which the sheet does not hold ({}); \
             keep those with the sheet, or put the values in the config",
            refs.len(),
            list.join(", ")
        );
    }
    let now = jiff::Timestamp::now();
    let info = pdf::SheetInfo {
        app: app.clone(),
        domain,
        date: now.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        config_path,
        notes,
    };
    let bytes = pdf::render(&info, &config).map_err(|e| Failure::new(Code::Failure, e.to_string()))?;
    write_private(&args.out, &bytes, args.force)?;
    let codes = chunk::encode(&config, chunk::DEFAULT_CHUNK).len();
    println!(
        "{}: recovery sheet of {app}: the config ({} bytes, SHA-256 {}) as text and as {codes} QR codes",
        args.out.display(),
        config.len(),
        chunk::sha256_hex(&config)
    );
    eprintln!(
        "warning: {} holds every secret of {app}, the backup repository password included. Print it, \
         keep the paper locked away, and delete the file (it is readable by you only).",
        args.out.display()
    );
    Ok(Code::Ok)
}

pub fn from_qr(args: &FromQrArgs) -> Result<Code> {
    let mut codes = Vec::new();
    let mut problems = Vec::new();
    for f in &args.files {
        let r = scan::read_file(f).map_err(|e| Failure::new(Code::Failure, e.to_string()))?;
        let mut idx: Vec<u32> = r.codes.iter().map(|c| c.index).collect();
        idx.sort();
        idx.dedup();
        if idx.is_empty() {
            eprintln!("{}: no caretaker code found", f.display());
        } else {
            eprintln!("{}: code{} {}", f.display(), if idx.len() == 1 { "" } else { "s" }, chunk::list(&idx));
        }
        for u in r.unreadable {
            eprintln!("{}: unreadable: {u}", f.display());
            problems.push(format!("{}: {u}", f.display()));
        }
        codes.extend(r.codes);
    }
    let assembled = match chunk::assemble(&codes) {
        Ok(a) => a,
        Err(e) => {
            let hint = match &e {
                chunk::AssembleError::TooManyMissing { .. } | chunk::AssembleError::NoCodes if !problems.is_empty() => {
                    format!(
                        "{} QR code(s) were found but unreadable: scan those codes again, sharper and flat",
                        problems.len()
                    )
                }
                chunk::AssembleError::TooManyMissing { .. } | chunk::AssembleError::NoCodes => {
                    "scan the missing codes and pass every scan; or type the config from the sheet's text".into()
                }
                _ => "pass scans of one sheet only".into(),
            };
            return Err(Failure::new(Code::Failure, e.to_string()).hint(hint).into());
        }
    };
    if let Some(m) = assembled.rebuilt {
        eprintln!("code {m} of {} was missing: rebuilt from the parity code", assembled.total);
    }
    write_private(&args.out, &assembled.config, args.force)?;
    println!(
        "{}: config rebuilt from {} codes ({} bytes, SHA-256 {} checked)",
        args.out.display(),
        assembled.total,
        assembled.config.len(),
        assembled.sha256
    );
    Ok(Code::Ok)
}

pub fn cloud_init(global: &Global, args: &CloudInitArgs) -> Result<Code> {
    let (_, config, app, _) = config_bytes(global)?;
    let binary = match (&args.binary_url, &args.binary) {
        (Some(url), _) => {
            if let Some(h) = &args.binary_sha256 {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Failure::new(Code::Usage, "--binary-sha256 must be 64 hex digits").into());
                }
            }
            seed::Binary::Url { url: url.clone(), sha256: args.binary_sha256.clone() }
        }
        (None, Some(file)) => {
            seed::Binary::File(std::fs::read(file).with_context(|| format!("reading the binary {}", file.display()))?)
        }
        (None, None) => return Err(Failure::new(Code::Usage, "give --binary-url or --binary").into()),
    };
    let s = seed::Seed {
        app: app.clone(),
        config,
        config_path: args.config_path.clone(),
        binary,
        recover: args.recover,
        hostname: args.hostname.clone(),
    };
    let targets: Vec<std::path::PathBuf> = match (&args.out, &args.user_data) {
        (Some(out), _) => vec![out.clone()],
        (None, Some(dir)) => vec![dir.join("user-data"), dir.join("meta-data")],
        (None, None) => Vec::new(),
    };
    if let Some(t) = targets.iter().find(|t| t.exists()).filter(|_| !args.force) {
        return Err(Failure::new(Code::Refused, format!("{} exists", t.display()))
            .hint("pass --force to overwrite it, or choose another path")
            .into());
    }
    let written = if let Some(out) = &args.out {
        let tool = seed::write_iso(&s, out, args.force).map_err(|e| match e {
            seed::SeedError::NoIsoTool => Failure::new(Code::Unavailable, e.to_string()).hint(
                "install xorriso (apt-get install xorriso), or pass --user-data DIR and build the image yourself",
            ),
            e => Failure::new(Code::Failure, e.to_string()),
        })?;
        format!("{} (ISO 9660, volume cidata, written with {tool})", out.display())
    } else {
        let dir = args.user_data.as_ref().expect("clap requires --out or --user-data");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        seed::write_dir(&s, dir, args.force).map_err(|e| {
            let refused = matches!(&e, seed::SeedError::Write { reason, .. } if reason.contains("exists"));
            let f = Failure::new(if refused { Code::Refused } else { Code::Failure }, e.to_string());
            if refused {
                f.hint("pass --force to overwrite it")
            } else {
                f
            }
        })?;
        format!("{} (user-data, meta-data)", dir.display())
    };
    println!(
        "{written}: cloud-init seed for {app}{}",
        if args.recover { ", recovering from the latest backup" } else { "" }
    );
    eprintln!("warning: the seed holds every secret of {app}: keep it private and delete it after the first boot");
    Ok(Code::Ok)
}
