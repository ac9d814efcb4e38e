//! One file per subcommand. Each exposes `run(...) -> anyhow::Result<Code>`.

pub mod alerts;
pub mod backup;
pub mod check;
pub mod config;
pub mod daemon;
pub mod db;
pub mod demo;
pub mod deps;
pub mod down;
pub mod exec;
pub mod init;
pub mod install_systemd;
pub mod jobs;
pub mod logs;
pub mod maintenance;
pub mod metrics;
pub mod notify;
pub mod recover;
pub mod restart;
pub mod schedule;
pub mod silence;
pub mod status;
pub mod status_page;
pub mod up;
pub mod update;
