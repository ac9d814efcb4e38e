//! caretaker's docker compose runtime (docs/compose.md).
//!
//! The decisions are pure: [`watch`] (supervising the project's containers: health, crashes,
//! crash loops), [`model`] (reading `docker inspect` and `compose config` output) and
//! [`images`] (release image names, the pin file, what a cleanup removes). The
//! effects are thin: [`cli`] runs the compose command line (v2 `docker compose` or v1
//! `docker-compose`) on one project, [`docker`] the docker command line for observing
//! containers, images and volumes, [`volume`] named volumes in and out as tar streams.
//!
//! Architecture invariant: secrets reach compose and docker only through their environment
//! (compose interpolates them into the containers' environment); every line of their output
//! passes the redactor before it is logged or shown.

pub mod cli;
pub mod docker;
pub mod error;
pub mod images;
pub mod model;
pub mod run;
pub mod volume;
pub mod watch;

pub use cli::{Cli, Flavour, Project};
pub use docker::Docker;
pub use error::{Error, ErrorKind, Result};
