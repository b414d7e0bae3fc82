//! The device agent: measures op keys and networks on this device with tract.
//!
//! - [`engine`]: the engine boundary (tract for real, a fake for tests);
//! - [`measure`]: the method (warm-up, batched samples, canary, throttling, rotation);
//! - [`sysinfo`]: fingerprint, CPU placement, frequency/thermal sampling;
//! - [`bench`](mod@bench): standalone profiling of a plan with a resumable journal;
//! - [`serve`]: the protocol server; [`transport`]: stdio, serial and TCP.

pub mod bench;
pub mod cli;
pub mod engine;
pub mod measure;
pub mod serve;
pub mod sysinfo;
pub mod tract_engine;
pub mod transport;

pub use cli::{run, Cli};
