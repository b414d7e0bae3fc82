//! Stand-alone training of one architecture at its selected widths and export of a trained
//! network as ONNX. The studies built on it (random search, the comparison, the rank check) are
//! in [`crate::study`].

mod net;

pub use net::{bn_momentum, fold, Moving, StandaloneNet, BN_MOMENTUM};
pub mod run;

pub use run::{
    evaluate, geometry_of, load_network, read_lines, reference_lr, resume, run_or_resume, start,
    steps_for_epochs, weights_file, TrainConfig, TrainOutcome, TrainResult, TrainStep,
};
pub mod export;
