//! One module per `tunas` subcommand. Data goes to stdout, messages to stderr.

pub mod latency;
pub mod plan;
pub mod profile;
pub mod search;
pub mod space;
pub mod tables;
