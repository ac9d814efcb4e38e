//! `caretaker exec -- CMD...`: run a one-off command in the app's environment (env files,
//! `env:`, working directory, user), the way operators run `manage.py shell`. caretaker
//! replaces itself with the command, so it owns the terminal and its exit status is the
//! command's own. For a compose app the command runs in the container of `--service`
//! (default `compose.app_service`): `compose exec`, with a terminal when caretaker has one.

use crate::cli::{ExecArgs, Global};
use crate::context::{load_config, state_dir};
use crate::exit::{Code, Failure};
use anyhow::Result;
use std::os::unix::process::CommandExt;

pub fn run(global: &Global, args: &ExecArgs) -> Result<Code> {
    let (config_path, config) = load_config(global.config.as_deref(), global.allow_world_readable_config)?;
    let runtime = crate::runtime::for_config(&config, &config_path, &state_dir(global.state_dir.as_deref(), &config));
    let (mut cmd, program, hint) = runtime.exec_command(args.service.as_deref(), &args.command)?;
    // Only returns on failure.
    let err = cmd.exec();
    let code = if err.kind() == std::io::ErrorKind::NotFound { Code::Unavailable } else { Code::Failure };
    let mut failure = Failure::new(code, format!("cannot run {program}: {err}"));
    if let Some(hint) = hint {
        failure = failure.hint(hint);
    }
    Err(failure.into())
}
