//! `caretaker exec -- CMD...`: run a one-off command in the app's environment (env files,
//! `env:`, working directory, user), the way operators run `manage.py shell`. caretaker
//! replaces itself with the command, so it owns the terminal and its exit status is the
//! command's own. For a compose app the command runs in the container of `--service`
//! (default `compose.app_service`): `compose exec`, with a terminal when caretaker has one.

use crate::appenv::{app_env, working_dir};
use crate::cli::{ExecArgs, Global};
use crate::context::load_config;
use crate::exit::{Code, Failure};
use anyhow::Result;
use caretaker_supervisor::process::{lookup_user, INHERITED_VARS};
use std::os::unix::process::CommandExt;

pub fn run(global: &Global, args: &ExecArgs) -> Result<Code> {
    let (config_path, config) = load_config(global.config.as_deref(), global.allow_world_readable_config)?;
    if let Some(c) = &config.compose {
        let Some(service) = args.service.clone().or(c.app_service.clone()) else {
            return Err(Failure::new(Code::Usage, "which service's container should the command run in?")
                .hint("pass --service NAME, or set compose.app_service in the config")
                .into());
        };
        let redactor = caretaker_core::config::Redactor::new(config.secrets());
        let project = crate::compose::project(&config, &config_path, &redactor)?;
        let argv: Vec<String> = args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let tty = unsafe { libc::isatty(0) == 1 && libc::isatty(1) == 1 };
        let err = project.exec_command(&service, &argv, tty).exec();
        return Err(Failure::new(Code::Unavailable, format!("cannot run {}: {err}", project.cli.name())).into());
    }
    if args.service.is_some() {
        return Err(Failure::new(Code::Usage, "--service is for compose apps").into());
    }
    let cwd = working_dir(&config.app, &config_path);
    let env = app_env(&config.app, None, &cwd)?;
    let mut cmd = std::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..]).current_dir(&cwd).env_clear();
    for key in INHERITED_VARS {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    if let Some(name) = &config.app.user {
        if unsafe { libc::geteuid() } == 0 {
            let u = lookup_user(name).map_err(|e| Failure::new(Code::Config, e))?;
            cmd.uid(u.uid).gid(u.gid).env("USER", &u.name).env("LOGNAME", &u.name).env("HOME", &u.home);
        }
    }
    cmd.envs(env);
    // Only returns on failure.
    let err = cmd.exec();
    let code = if err.kind() == std::io::ErrorKind::NotFound { Code::Unavailable } else { Code::Failure };
    Err(Failure::new(code, format!("cannot run {}: {err}", args.command[0].to_string_lossy()))
        .hint(format!("the command runs in {}, with the app's PATH", cwd.display()))
        .into())
}
