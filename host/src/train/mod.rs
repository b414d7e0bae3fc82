//! Stand-alone training of one architecture, random search over architectures near a latency
//! target, export of a trained network as ONNX, the TuNAS-vs-random comparison, and the rank
//! check of a search's supernet against stand-alone training.

mod net;

pub use net::{bn_momentum, fold, Moving, StandaloneNet, BN_MOMENTUM};
pub mod run;

pub use run::{
    evaluate, geometry_of, load_network, read_lines, resume, run_or_resume, start, weights_file,
    TrainConfig, TrainOutcome, TrainResult, TrainStep,
};
pub mod compare;
pub mod export;
pub mod random;
pub mod rank;
