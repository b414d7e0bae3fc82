//! The boundary to the inference engine: prepare an ONNX model once, then run it many times.
//!
//! [`crate::tract_engine::TractEngine`] is the real implementation; [`FakeEngine`] spins for a
//! time derived from the model's size, so the measurement method, the journal and the protocol
//! can be tested quickly and deterministically without an engine.

use anyhow::Result;

/// A model made runnable, with its input prepared outside the timed region.
pub trait Runnable {
    /// Runs once on the prepared input.
    fn run(&mut self) -> Result<()>;
    /// Runs on `input` (row-major f32 of the input shape) and returns the first output.
    fn infer(&mut self, input: &[f32]) -> Result<Vec<f32>>;
    /// Runs on `input`; the smallest and largest value of every output, in the model's output
    /// order (int8 calibration: see `latency_tables::onnx::calibration_model`). The default
    /// knows only the first output ([`Runnable::infer`]'s); engines of several outputs override.
    fn ranges(&mut self, input: &[f32]) -> Result<Vec<(f32, f32)>> {
        Ok(vec![latency_tables::onnx::value_range(&self.infer(input)?)])
    }
}

/// An inference engine.
pub trait Engine {
    /// Engine name and version.
    fn describe(&self) -> String;
    /// Loads ONNX bytes, fixes the input to `input_shape` (or the model's own shape when `None`),
    /// optimises, makes it runnable, and prepares a random input.
    fn prepare(
        &self,
        onnx: &[u8],
        input_shape: Option<&[usize]>,
        seed: u64,
    ) -> Result<Box<dyn Runnable>>;

    /// Lets the device cool down for `secs` (a plain sleep; fakes simulate the effect).
    fn cool_down(&self, secs: f64) {
        std::thread::sleep(std::time::Duration::from_secs_f64(secs.max(0.0)));
    }
}

/// A fake engine: "running" a model busy-waits for `ns_per_byte` × model size.
#[derive(Debug, Clone)]
pub struct FakeEngine {
    /// Busy-wait per byte of the ONNX model.
    pub ns_per_byte: f64,
    /// Models whose byte length is divisible by this fail to prepare (0 = never).
    pub fail_modulo: usize,
}

impl Default for FakeEngine {
    fn default() -> Self {
        FakeEngine { ns_per_byte: 0.01, fail_modulo: 0 }
    }
}

struct FakeRunnable {
    nanos: u64,
}

impl Runnable for FakeRunnable {
    fn run(&mut self) -> Result<()> {
        let start = std::time::Instant::now();
        while start.elapsed().as_nanos() < u128::from(self.nanos) {
            std::hint::spin_loop();
        }
        Ok(())
    }

    fn infer(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        self.run()?;
        Ok(input.to_vec())
    }
}

impl Engine for FakeEngine {
    fn describe(&self) -> String {
        "fake".into()
    }

    fn prepare(&self, onnx: &[u8], _: Option<&[usize]>, _: u64) -> Result<Box<dyn Runnable>> {
        if self.fail_modulo > 0 && onnx.len() % self.fail_modulo == 0 {
            anyhow::bail!("fake engine refuses a model of {} bytes", onnx.len());
        }
        Ok(Box::new(FakeRunnable { nanos: (onnx.len() as f64 * self.ns_per_byte) as u64 + 1_000 }))
    }
}
