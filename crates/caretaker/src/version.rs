//! The version caretaker names itself by: the package version and the commit it was built
//! from (build.rs). Its own module so that commands need not import the CLI for it.

pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CARETAKER_COMMIT"), ")");
