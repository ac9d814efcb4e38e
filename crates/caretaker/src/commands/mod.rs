//! One file per subcommand. Each exposes `run(...) -> anyhow::Result<Code>`.

pub mod config;
pub mod daemon;
pub mod demo;
pub mod down;
pub mod exec;
pub mod init;
pub mod install_systemd;
pub mod jobs;
pub mod logs;
pub mod restart;
pub mod status;
pub mod up;
