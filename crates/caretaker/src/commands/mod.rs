//! One file per subcommand. Each exposes `run(...) -> anyhow::Result<Code>`.

pub mod backup;
pub mod config;
pub mod demo;
pub mod init;
pub mod jobs;
