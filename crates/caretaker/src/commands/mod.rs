//! One file per subcommand. Each exposes `run(...) -> anyhow::Result<Code>`.

pub mod alerts;
pub mod check;
pub mod config;
pub mod db;
pub mod demo;
pub mod init;
pub mod jobs;
pub mod maintenance;
pub mod metrics;
pub mod notify;
pub mod schedule;
pub mod silence;
