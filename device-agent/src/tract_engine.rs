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
        self.state.run(tvec![tensor.into_tvalue()])
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
                let values = view.as_slice().context("a non-contiguous output")?;
                Ok(latency_tables::onnx::value_range(values))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::Engine;
    use latency_tables::onnx::{self, SeededWeights};
    use latency_tables::{Network, OpKey, Precision};

    fn run(model: &[u8], input: &[f32]) -> Vec<f32> {
        TractEngine.prepare(model, None, 0).unwrap().infer(input).unwrap()
    }

    /// `layer` followed by pooling and a 10-class classifier; the float logits and the int8
    /// logits (default ranges, then ranges calibrated on `input` itself).
    fn logits(layer: &str, input: &[f32]) -> [Vec<f32>; 3] {
        let key: OpKey = layer.parse().unwrap();
        let (h, w, c) = key.output_shape();
        let net = Network::new(vec![key, OpKey::pool(h, w, c), OpKey::classifier(c, 10)]);
        let float = run(&onnx::network_bytes(&net, 3).unwrap(), input);
        let int8 = net.clone().with_precision(Precision::I8);
        let default = run(&onnx::network_bytes(&int8, 3).unwrap(), input);
        let cal = onnx::calibration_model(&net, &mut SeededWeights::new(3)).unwrap();
        let names: Vec<String> = cal.graph.output.iter().map(|o| o.name.clone()).collect();
        let mut r = TractEngine.prepare(&onnx::encode(&cal), None, 0).unwrap();
        let mut ranges: BTreeMap<String, (f32, f32)> =
            names.into_iter().zip(r.ranges(input).unwrap()).collect();
        ranges.insert(onnx::INPUT_NAME.into(), onnx::value_range(input));
        let mut source = SeededWeights::new(3).with_ranges(ranges);
        let calibrated =
            run(&onnx::encode(&onnx::network_model(&int8, &mut source).unwrap()), input);
        [float, default, calibrated]
    }

    fn relative_error(a: &[f32], b: &[f32]) -> f32 {
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "all-zero logits");
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn int8_layers_compute_what_their_float_layers_do() {
        for layer in [
            "stem/32x32x3/o16/k3/s2/relu",
            "stem/32x32x3/o16/k3/s2/hswish",
            "sep/16x16x16/o16/k3/s1/relu/res",
            "ib/16x16x16/o24/k5/s2/e48/se0/relu",
            "ib/8x8x24/o24/k3/s1/e72/se16/hswish/res",
            "ib/8x8x24/o24/k3/s1/e72/se16/relu",
            "head/8x8x24/o64/relu",
        ] {
            let key: OpKey = layer.parse().unwrap();
            let n = (key.h * key.w * key.cin) as usize;
            let input = SeededWeights::new(9).uniform(n, 1.0);
            let [float, default, calibrated] = logits(layer, &input);
            let (d, c) = (relative_error(&float, &default), relative_error(&float, &calibrated));
            eprintln!(
                "{layer}: int8 vs f32 logits, largest error {:.2}% (default ranges), {:.2}% (calibrated)",
                100.0 * d,
                100.0 * c
            );
            assert!(c < 0.05, "{layer}: calibrated int8 is {c} off (relative)");
            assert!(d < 0.25, "{layer}: int8 with default ranges is {d} off (relative)");
        }
    }
}
