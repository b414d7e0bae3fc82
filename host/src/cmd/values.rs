//! Value parsers of `tunas`'s numeric options.
//!
//! Each option is declared with `value_parser = …` from here, so NaN, ±∞, negative and
//! out-of-range values are refused while the command line is parsed: clap prints the option, the
//! value and the allowed range and exits with code 2, before any work (and before a
//! `Duration::from_secs_f64` could panic on them). The `Method` flags (`--pass-secs`, …) have
//! their own parsers in `latency_tables::meta`.

use clap::builder::{RangedI64ValueParser, RangedU64ValueParser};
use latency_tables::op_key::MAX_SPATIAL;
use latency_tables::F64Range;

/// Largest timeout: one day.
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;
/// Timeouts in seconds (`--key-timeout`, `--timeout`): `(0, MAX_TIMEOUT_SECS]`.
pub const SECONDS: F64Range = F64Range::above(0.0, MAX_TIMEOUT_SECS);

/// Largest latency target or tolerance in ms (100 s).
pub const MAX_LATENCY_MS: f64 = 100_000.0;
/// Latency targets and tolerances in ms (`--target-ms`, `--tolerance-ms`): `(0, MAX_LATENCY_MS]`.
pub const LATENCY_MS: F64Range = F64Range::above(0.0, MAX_LATENCY_MS);

/// The cost exponent β (`--beta`): `[-10, 10]` (the paper's −0.07 to −0.10; ours −0.5).
pub const BETA: F64Range = F64Range::closed(-10.0, 10.0);

/// Largest training length in epochs.
pub const MAX_EPOCHS: f64 = 10_000.0;
/// Training lengths in epochs (`--epochs`, `--final-epochs`): `(0, MAX_EPOCHS]`.
pub const EPOCHS: F64Range = F64Range::above(0.0, MAX_EPOCHS);

/// Channel multipliers (`--width-multiplier`): `(0, 4]`, as the search and training configs.
pub const WIDTH_MULTIPLIER: F64Range = F64Range::above(0.0, 4.0);

/// Largest learning rate.
pub const MAX_LEARNING_RATE: f64 = 1e6;
/// Learning rates of weights (`--lr`): `(0, MAX_LEARNING_RATE]`.
pub const LEARNING_RATE: F64Range = F64Range::above(0.0, MAX_LEARNING_RATE);
/// The RL learning rate (`--rl-lr`): `[0, MAX_LEARNING_RATE]` (0 freezes the controller).
pub const RL_LEARNING_RATE: F64Range = F64Range::closed(0.0, MAX_LEARNING_RATE);

/// Largest batch size (`--batch-size`).
pub const MAX_BATCH_SIZE: u64 = 65_536;
/// Largest step count (`--steps`, `--search-steps`, `--candidate-steps`, `--checkpoint-every`).
pub const MAX_STEPS: u64 = 1_000_000_000;
/// Largest image count (`--validation-size`, `--check-images`).
pub const MAX_IMAGES: u64 = 100_000_000;
/// Largest number of architectures or repeats (`--n`, `--k`, `--samples`).
pub const MAX_COUNT: u64 = 100_000;
/// Largest number of parallel jobs (`--jobs`).
pub const MAX_JOBS: u64 = 1024;
/// Largest number of architectures per RL step (`--rl-archs`), as the search config.
pub const MAX_RL_ARCHS: u64 = 64;
/// Largest number of attempts per key (`--max-attempts`).
pub const MAX_ATTEMPTS: u32 = 1000;

/// A `usize` in `1..=max`.
fn at_most(max: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..=max)
}

/// Step counts: `1..=MAX_STEPS`.
pub fn steps() -> RangedU64ValueParser<usize> {
    at_most(MAX_STEPS)
}

/// Batch sizes: `1..=MAX_BATCH_SIZE`.
pub fn batch_size() -> RangedU64ValueParser<usize> {
    at_most(MAX_BATCH_SIZE)
}

/// Image counts: `1..=MAX_IMAGES`.
pub fn images() -> RangedU64ValueParser<usize> {
    at_most(MAX_IMAGES)
}

/// Numbers of architectures or repeats: `1..=MAX_COUNT`.
pub fn count() -> RangedU64ValueParser<usize> {
    at_most(MAX_COUNT)
}

/// Parallel jobs: `1..=MAX_JOBS`.
pub fn jobs() -> RangedU64ValueParser<usize> {
    at_most(MAX_JOBS)
}

/// Architectures per RL step: `1..=MAX_RL_ARCHS`.
pub fn rl_archs() -> RangedU64ValueParser<usize> {
    at_most(MAX_RL_ARCHS)
}

/// Any positive `usize` (`--max-draws`).
pub fn positive() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..)
}

/// A deployment resolution (`--resolution`): `1..=MAX_SPATIAL`, the op keys' spatial limit.
pub fn resolution() -> RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=i64::from(MAX_SPATIAL))
}

/// Attempts per key (`--max-attempts`): `1..=MAX_ATTEMPTS`.
pub fn attempts() -> RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=i64::from(MAX_ATTEMPTS))
}
