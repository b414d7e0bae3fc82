//! `Network`: an ordered list of op keys, a whole model at its deployment shapes.

use serde::{Deserialize, Serialize};

use crate::error::BuildError;
use crate::op_key::{OpKey, Precision};

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
        let precision = self.layers[0].precision;
        for (index, key) in self.layers.iter().enumerate() {
            if key.precision != precision {
                return Err(BuildError::Precision {
                    index,
                    key: key.to_string(),
                    expected: precision.to_string(),
                    got: key.precision.to_string(),
                });
            }
            key.validate()?;
            key.check_bounds()?;
        }
        Ok(())
    }

    /// The precision of the network (of its first layer; [`Network::check_chain`] checks that
    /// every layer agrees). `F32` for an empty network.
    pub fn precision(&self) -> Precision {
        self.layers.first().map(|k| k.precision).unwrap_or_default()
    }

    /// The same network with every layer in `precision`.
    pub fn with_precision(self, precision: Precision) -> Self {
        Network::new(self.layers.into_iter().map(|k| k.with_precision(precision)).collect())
    }

    /// Total multiply-accumulates.
    pub fn macs(&self) -> u64 {
        self.layers.iter().map(OpKey::macs).sum()
    }
}
