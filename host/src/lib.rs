//! The TuNAS search host: search spaces as data, latency models, and the `tunas` commands.
//!
//! `space` defines the three TuNAS search spaces and resolves architectures into op keys;
//! `latency` turns an architecture into T(α) with the paper's Pixel 1 model or a measured table;
//! `tables` shows, compares and merges measured latency tables;
//! `data`, `supernet` and `search` are the TuNAS search on Candle (proxy data, the weight-sharing
//! supernet with its custom ops, the controller and the step loop);
//! `train` is stand-alone training and export; `study` the random-search baseline, the
//! TuNAS-vs-random comparison and the rank check; `report` the Markdown reports and SVG plots;
//! `run_loop` the resumable step loop the search and training share;
//! `cmd` holds one module per subcommand of the `tunas` binary.

pub mod allocator;
pub mod cli;
pub mod cmd;
pub mod data;
pub mod device;
pub mod latency;
pub mod profile;
pub mod report;
pub mod rng;
pub mod run_loop;
pub mod runs;
pub mod search;
pub mod space;
pub mod study;
pub mod supernet;
pub mod tables;
pub mod train;

pub use cli::{run, Cli};
