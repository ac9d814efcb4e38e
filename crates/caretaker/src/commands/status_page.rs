//! `caretaker status-page --serve ADDR`: the status page without the daemon (the daemon
//! mounts the same router on its `http.listen` address); `caretaker status-page
//! hash-password`: reads a password from stdin and prints the argon2 hash for the config.

use crate::cli::{Global, StatusPageArgs, StatusPageCommand};
use crate::context::open_app;
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_statuspage::{read_token_file, StatusSource};
use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

pub fn run(global: &Global, args: &StatusPageArgs) -> Result<Code> {
    if let Some(StatusPageCommand::HashPassword) = &args.command {
        return hash_password();
    }
    let Some(addr) = &args.serve else {
        return Err(Failure::new(
            Code::Usage,
            "say what to do: `status-page --serve ADDR` or `status-page hash-password`",
        )
        .hint("e.g. caretaker status-page --serve 127.0.0.1:9721")
        .into());
    };
    let app = open_app(global)?;
    if app.config.status.is_none() {
        return Err(Failure::new(Code::Config, "the config has no `status` section, so nobody could log in")
            .hint("add `status: { users: { admin: { password_hash: ... } } }` (see `caretaker status-page hash-password`) or `token_file`")
            .into());
    }
    let token = read_token_file(&app.config).map_err(|e| {
        Failure::new(Code::Config, e.to_string()).hint("create the file with a long random token, mode 0600")
    })?;
    let state_dir = app.store.dir().to_path_buf();
    let source = StatusSource::new(app.config, app.store, token)
        .with_services(move || crate::control::status(&state_dir).ok().flatten());
    let source = Arc::new(source);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::new(Code::Unavailable, format!("cannot listen on {addr}: {e}"))
                .hint("choose a free host:port, e.g. --serve 127.0.0.1:9721")
        })?;
        eprintln!("serving the status page on http://{}/status (Ctrl-C stops)", listener.local_addr()?);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        caretaker_statuspage::serve(listener, source, shutdown).await?;
        Ok::<_, anyhow::Error>(Code::Ok)
    })
}

fn hash_password() -> Result<Code> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (echoed; pipe it in to keep it off the screen): ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(Failure::new(Code::Usage, "empty password on stdin")
            .hint("e.g. printf '%s' \"$PASSWORD\" | caretaker status-page hash-password")
            .into());
    }
    let hash = caretaker_statuspage::auth::hash_password(password).map_err(|e| Failure::new(Code::Failure, e))?;
    println!("{hash}");
    Ok(Code::Ok)
}
