//! The tract engine: the only file of the agent that talks to tract.

use anyhow::{Context, Result};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::engine::{Engine, Runnable as AgentRunnable};

/// tract-onnx, single model at a time, optimised (`into_optimized`) and made runnable once.
#[derive(Debug, Clone, Default)]
pub struct TractEngine;

/// The version of tract compiled in.
pub const TRACT_VERSION: &str = "0.23.9";

struct TractRunnable {
    state: TypedSimpleState,
    input: TValue,
}

impl TractRunnable {
    /// Every output of one run on `input` (f32 values, cast to the model's input type).
    fn outputs(&mut self, input: &[f32]) -> Result<TVec<TValue>> {
        let shape: Vec<usize> = self.input.shape().to_vec();
        let tensor = Tensor::from_shape(&shape, input)
            .context("input does not fit the model's input shape")?
            .cast_to_dt(self.input.datum_type())?
            .into_owned();
        Ok(self.state.run(tvec![tensor.into_tvalue()])?)
    }
}

impl AgentRunnable for TractRunnable {
    fn run(&mut self) -> Result<()> {
        let out = self.state.run(tvec![self.input.clone()])?;
        std::hint::black_box(out);
        Ok(())
    }

    fn infer(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        let out = self.outputs(input)?;
        let out = out[0].cast_to::<f32>()?;
        let view = out.to_plain_array_view::<f32>()?;
        Ok(view.iter().copied().collect())
    }

    fn ranges(&mut self, input: &[f32]) -> Result<Vec<(f32, f32)>> {
        self.outputs(input)?
            .iter()
            .map(|o| {
                let o = o.cast_to::<f32>()?;
                let view = o.to_plain_array_view::<f32>()?;
                Ok(view.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                }))
            })
            .collect()
    }
}

impl Engine for TractEngine {
    fn describe(&self) -> String {
        format!("tract {TRACT_VERSION}")
    }

    fn prepare(
        &self,
        onnx: &[u8],
        input_shape: Option<&[usize]>,
        seed: u64,
    ) -> Result<Box<dyn AgentRunnable>> {
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &*onnx)
            .context("tract could not load the ONNX model")?;
        if let Some(shape) = input_shape {
            // Keep the model's own element type (uint8 for int8 op keys); float when unset.
            let dt = model.input_fact(0)?.datum_type.concretize().unwrap_or(f32::datum_type());
            model = model.with_input_fact(0, InferenceFact::dt_shape(dt, shape))?;
        }
        let model = model.into_optimized().context("tract could not optimise the model")?;
        let fact = model.input_fact(0)?.clone();
        let shape: Vec<usize> = fact
            .shape
            .as_concrete()
            .context("the model's input shape is not fixed; give it explicitly")?
            .to_vec();
        let plan = model.into_runnable()?;
        let state = plan.spawn()?;
        let n: usize = shape.iter().product();
        let mut rng = latency_tables::onnx::SeededWeights::new(seed ^ 0x5EED);
        let input = if fact.datum_type == u8::datum_type() {
            // An int8 op key's quantised input: uniform over the whole uint8 range.
            let values: Vec<u8> = (0..n).map(|_| (rng.next_u64() >> 56) as u8).collect();
            Tensor::from_shape(&shape, &values)?
        } else {
            let values = rng.uniform(n, 1.0);
            Tensor::from_shape(&shape, &values)?.cast_to_dt(fact.datum_type)?.into_owned()
        };
        let input = input.into_tvalue();
        Ok(Box::new(TractRunnable { state, input }))
    }
}
