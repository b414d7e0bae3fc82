//! The device agent: measures op keys and networks on this device with tract.
//!
//! - [`engine`]: the engine boundary (tract for real, a fake for tests);
//! - [`measure`]: the method (warm-up, batched samples, canary, throttling, rotation);
//! - [`sysinfo`]: fingerprint, CPU placement, frequency/thermal sampling;
//! - [`bench`](mod@bench): standalone profiling of a plan with a resumable journal;
//! - [`serve`]: the protocol server; [`transport`]: stdio, serial and TCP;
//! - [`placement`]: CPU pinning, threads and the fingerprint; [`cmd`]: one module per subcommand,
//!   dispatched by [`cli`].

pub mod bench;
pub mod cli;
pub mod cmd;
pub mod engine;
pub mod measure;
pub mod placement;
pub mod serve;
pub mod sysinfo;
pub mod tract_engine;
pub mod transport;

pub use cli::{run, Cli};
