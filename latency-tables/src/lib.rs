//! The contract between the device agent and the TuNAS host.
//!
//! - [`OpKey`]: one network layer with everything that decides its latency, with a canonical
//!   string form used as the table key; [`Network`]: an ordered list of keys.
//! - [`onnx`]: the builder that turns a key or a network into an ONNX model.
//! - [`LatencyTable`]: the table file (schema version, units, fingerprint, method, statistics).
//! - [`wire`]: the messages of the host ↔ agent protocol.
//! - [`driver`]: plan → workers → journal → table, the one profiling loop both binaries run;
//!   [`journal`]: the resumable JSON Lines journal every measurement goes through.
//!
//! This crate never depends on an engine (tract, candle): it is safe on any target.

#![warn(missing_docs)]

pub mod atomic;
pub mod driver;
pub mod error;
pub mod frame;
pub mod journal;
pub mod meta;
pub mod network;
pub mod onnx;
pub mod op_key;
pub mod plan;
pub mod range;
pub mod stats;
pub mod table;
pub mod timing;
pub mod wire;

/// `skip_serializing_if` for counts that are absent when zero (older files read them as 0).
pub(crate) fn is_zero(v: &u32) -> bool {
    *v == 0
}

pub use error::{BuildError, KeyError, MethodError, TableError};
pub use meta::{Cluster, CpuInfo, Fingerprint, Method};
pub use network::Network;
pub use op_key::{Activation, OpKey, OpKind, Precision};
pub use plan::Plan;
pub use range::F64Range;
pub use stats::LatencyStats;
pub use table::{
    Correction, Entry, Failure, KindFit, LatencyTable, PredictionFit, Stopped, SCHEMA_VERSION,
    UNITS,
};
pub use timing::Timing;
pub use wire::{Request, Response, PROTOCOL_VERSION};
