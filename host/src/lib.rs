//! The TuNAS search host: search spaces as data, latency models, and the `tunas` commands.
//!
//! `space` defines the three TuNAS search spaces and resolves architectures into op keys;
//! `latency` turns an architecture into T(α) with the paper's Pixel 1 model or a measured table;
//! `tables` shows, compares and merges measured latency tables;
//! `cmd` holds one module per subcommand of the `tunas` binary.

pub mod cli;
pub mod cmd;
pub mod device;
pub mod latency;
pub mod profile;
pub mod space;
pub mod tables;

pub use cli::{run, Cli};
