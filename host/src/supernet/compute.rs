//! Where the networks train: the CPU (the custom ops of [`super::ops`]) or a CUDA GPU (Candle's
//! own kernels on that device; `--features cuda`). Chosen with `--device cpu|cuda[:N]` by the
//! training commands and recorded in a run's `config.json`.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The Candle device of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComputeDevice {
    /// The CPU, with the custom ops.
    #[default]
    Cpu,
    /// CUDA GPU number N (ordinal), with Candle's kernels.
    Cuda(usize),
}

/// A `--device` value that is neither `cpu` nor `cuda[:N]`.
#[derive(Debug, thiserror::Error)]
#[error("device {0:?}: expected cpu, cuda or cuda:N (N a GPU number)")]
pub struct ParseComputeDeviceError(String);

/// The device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// This binary has no CUDA backend.
    #[error(
        "--device {0}: this tunas was built without CUDA; rebuild it with \
         `cargo build --release -p host --features cuda` (needs the CUDA toolkit's nvcc)"
    )]
    NotCompiled(ComputeDevice),
    /// The CUDA backend failed to start (no driver, no such GPU, …).
    #[error("--device {device}: {source}")]
    Failed {
        /// The device asked for.
        device: ComputeDevice,
        /// Candle's error.
        source: candle_core::Error,
    },
}

impl ComputeDevice {
    /// Whether this is the CPU (the default, left out of `config.json`).
    pub fn is_cpu(&self) -> bool {
        matches!(self, ComputeDevice::Cpu)
    }

    /// The Candle device.
    pub fn open(&self) -> Result<Device, OpenError> {
        match *self {
            ComputeDevice::Cpu => Ok(Device::Cpu),
            ComputeDevice::Cuda(n) => match Device::new_cuda(n) {
                Ok(d) => Ok(d),
                Err(candle_core::Error::NotCompiledWithCudaSupport) => {
                    Err(OpenError::NotCompiled(*self))
                }
                Err(source) => Err(OpenError::Failed { device: *self, source }),
            },
        }
    }
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComputeDevice::Cpu => f.write_str("cpu"),
            ComputeDevice::Cuda(0) => f.write_str("cuda"),
            ComputeDevice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for ComputeDevice {
    type Err = ParseComputeDeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseComputeDeviceError(s.to_string());
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(ComputeDevice::Cpu),
            "cuda" | "gpu" => Ok(ComputeDevice::Cuda(0)),
            other => {
                let n = other.strip_prefix("cuda:").ok_or_else(bad)?;
                n.parse().map(ComputeDevice::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl Serialize for ComputeDevice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ComputeDevice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_round_trips() {
        for (text, want, shown) in [
            ("cpu", ComputeDevice::Cpu, "cpu"),
            ("CUDA", ComputeDevice::Cuda(0), "cuda"),
            ("cuda:0", ComputeDevice::Cuda(0), "cuda"),
            ("cuda:3", ComputeDevice::Cuda(3), "cuda:3"),
        ] {
            let d: ComputeDevice = text.parse().unwrap();
            assert_eq!(d, want, "{text}");
            assert_eq!(d.to_string(), shown);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<ComputeDevice>(&json).unwrap(), d);
        }
        for bad in ["gpu0", "cuda:", "cuda:x", "tpu", "cuda:-1", ""] {
            let err = bad.parse::<ComputeDevice>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")) && err.contains("cuda:N"), "{err}");
        }
        let err = serde_json::from_str::<ComputeDevice>("\"metal\"").unwrap_err().to_string();
        assert!(err.contains("\"metal\""), "{err}");
    }

    #[test]
    fn the_cpu_opens_and_cuda_says_how_to_get_it() {
        assert!(ComputeDevice::Cpu.open().unwrap().is_cpu());
        match (ComputeDevice::Cuda(0).open(), cfg!(feature = "cuda")) {
            // Built with `--features cuda` on a machine with a GPU.
            (Ok(d), true) => assert!(d.is_cuda()),
            (Err(e @ OpenError::NotCompiled(_)), false) => {
                let msg = e.to_string();
                assert!(msg.contains("--features cuda") && msg.contains("--device cuda"), "{msg}");
            }
            // Built with CUDA, no usable GPU here: Candle's reason, with the device named.
            (Err(e @ OpenError::Failed { .. }), true) => {
                assert!(e.to_string().starts_with("--device cuda: "), "{e}");
            }
            (other, cuda) => panic!("built with CUDA: {cuda}, opened {other:?}"),
        }
    }
}
