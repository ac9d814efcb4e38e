//! One file per subcommand. Each exposes `run(...) -> anyhow::Result<Code>`.

pub mod config;
pub mod db;
pub mod demo;
pub mod init;
pub mod jobs;
pub mod maintenance;
