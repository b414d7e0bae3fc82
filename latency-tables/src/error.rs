//! Typed errors of the contract crate. Every variant names the offending file, key or value.

use std::path::PathBuf;

/// An op key that does not parse or does not describe a buildable layer.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not a canonical op key.
    #[error("bad op key {input:?}: {reason}")]
    Parse {
        /// The text that was parsed.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key parses but its fields are inconsistent.
    #[error("invalid op key {key}: {reason}")]
    Invalid {
        /// The key, in canonical form.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is well-formed but larger than the builder accepts (the limits are the
    /// `MAX_*` constants of [`crate::op_key`]).
    #[error("op key {key} is out of bounds: {field} is {value}, the limit is {limit}")]
    OutOfBounds {
        /// The key, in canonical form.
        key: String,
        /// The field or tensor that is too large (`height`, `expanded channels`, `weights`, …).
        field: String,
        /// Its value (a size, or a tensor's element count).
        value: u64,
        /// The limit it exceeds.
        limit: u64,
    },
}

/// A measurement method with a value outside its documented range (see [`crate::Method`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{flag} must be {allowed}, got {value}")]
pub struct MethodError {
    /// The field, spelled as its command-line flag (`--pass-secs`).
    pub flag: &'static str,
    /// The allowed values (`a finite number in [0, 3600]`, `in 1..=100`).
    pub allowed: String,
    /// The value that was given.
    pub value: String,
}

/// Errors of loading, validating or saving a latency table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or does not have the table's structure.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser said (names the missing or unknown field).
        message: String,
    },
    /// The file declares a schema version this build does not read.
    #[error("{path}: unknown schema_version {found} (this build reads version {expected})")]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: String,
        /// The version this build reads.
        expected: u32,
    },
    /// The file's content is well-formed JSON but semantically wrong.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key and field.
        message: String,
    },
}

/// Errors of the ONNX builder.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The op key is not buildable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A network's layers do not chain (one layer's output is not the next one's input).
    #[error("layer {index} ({key}) expects input {expected} but the previous layer gives {got}")]
    Chain {
        /// Index of the layer in the network.
        index: usize,
        /// The layer's key.
        key: String,
        /// The input shape the layer expects (HxWxC).
        expected: String,
        /// The shape the previous layer produces (HxWxC).
        got: String,
    },
    /// A network mixes precisions (every layer of one model runs in one number format).
    #[error("layer {index} ({key}) is {got}, the network's first layer is {expected}")]
    Precision {
        /// Index of the layer in the network.
        index: usize,
        /// The layer's key.
        key: String,
        /// The first layer's precision.
        expected: String,
        /// This layer's precision.
        got: String,
    },
    /// Given weights are missing a tensor or have the wrong size.
    #[error("weights for {name}: {reason}")]
    Weights {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The network has no layers.
    #[error("a network needs at least one layer")]
    Empty,
}
