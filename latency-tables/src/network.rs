//! `Network`: an ordered list of op keys, a whole model at its deployment shapes.

use serde::{Deserialize, Serialize};

use crate::error::BuildError;
use crate::op_key::OpKey;

/// A whole model: its layers in execution order. The output of each layer is the input of the
/// next ([`Network::check_chain`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The layers, first to last.
    pub layers: Vec<OpKey>,
}

impl Network {
    /// A network from its layers.
    pub fn new(layers: Vec<OpKey>) -> Self {
        Network { layers }
    }

    /// Input shape (H, W, C) of the first layer.
    pub fn input_shape(&self) -> Option<(u32, u32, u32)> {
        self.layers.first().map(|k| (k.h, k.w, k.cin))
    }

    /// Checks every key (structure and the size limits of [`OpKey::check_bounds`]) and that
    /// consecutive layers fit together.
    pub fn check_chain(&self) -> Result<(), BuildError> {
        if self.layers.is_empty() {
            return Err(BuildError::Empty);
        }
        for (index, pair) in self.layers.windows(2).enumerate() {
            let got = pair[0].output_shape();
            let next = &pair[1];
            if (next.h, next.w, next.cin) != got {
                return Err(BuildError::Chain {
                    index: index + 1,
                    key: next.to_string(),
                    expected: format!("{}x{}x{}", next.h, next.w, next.cin),
                    got: format!("{}x{}x{}", got.0, got.1, got.2),
                });
            }
        }
        for key in &self.layers {
            key.validate()?;
            key.check_bounds()?;
        }
        Ok(())
    }

    /// Total multiply-accumulates.
    pub fn macs(&self) -> u64 {
        self.layers.iter().map(OpKey::macs).sum()
    }
}
