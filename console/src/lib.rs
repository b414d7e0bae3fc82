//! What the binaries print for people, on stderr: [`Progress`], a progress line with rate and
//! ETA, and [`Log`], the profiling driver's observer, which draws that line and logs link
//! failures, retries and damaged journals; [`logger`], the `log` backend both binaries install,
//! at the level of their `-q`/`-v` flags.
//!
//! The contract crate's driver only reports events; everything terminal-shaped lives here.

mod log;
pub mod logger;
mod progress;

pub use log::Log;
pub use logger::Verbosity;
pub use progress::{human, Progress};
