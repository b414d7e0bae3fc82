//! The int8 form of the builder's layers, in the integer ops tract runs natively.
//!
//! Every convolution is a `QLinearConv`: uint8 input and output with a per-tensor scale and
//! zero point, int8 weights with one symmetric scale ([`quantize_kernel`]), an int32 bias, int32
//! accumulation. A ReLU after a convolution is fused into it (its output range starts at 0, so
//! the zero point is 0 and the uint8 clamp is the ReLU, as TFLite does). ONNX has no integer
//! form of the rest — HardSwish, global pooling, the SE gate (Sigmoid, Mul) and the residual Add
//! — so those run as float islands: `DequantizeLinear` → op → `QuantizeLinear`.
//!
//! Quantised tensors are named after the float tensor they stand for, as the float graph of the
//! same network names it (`l3.relu_5` → `l3.relu_5.q`), so activation ranges recorded on the
//! float graph ([`calibration_model`]) find their tensors here through
//! [`WeightSource::activation_range`]. Without calibration, each tensor gets a default range for
//! its kind (seeded weights and inputs in [-1, 1] stay well inside them).

use onnx_protobuf::{tensor_proto::DataType, ModelProto};

use super::{
    int, network_model, value_info, ConvShape, ConvWeights, GraphBuilder, WeightSource, INPUT_NAME,
    OUTPUT_NAME,
};
use crate::error::BuildError;
use crate::network::Network;
use crate::op_key::{Activation, OpKey, OpKind};

/// Scale and zero point of a uint8 tensor: `real = scale · (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    /// Real value of one step.
    pub scale: f32,
    /// The uint8 value that stands for real 0.
    pub zero_point: u8,
}

impl QParams {
    /// Asymmetric uint8 parameters covering `[min, max]`, widened to contain 0 (so that 0 is
    /// exact, as padding needs). A range of zero width gets scale 1/255.
    pub fn from_range(min: f32, max: f32) -> QParams {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let span = max - min;
        let scale = if span > 0.0 && span.is_finite() { span / 255.0 } else { 1.0 / 255.0 };
        let zero_point = (-min / scale).round().clamp(0.0, 255.0) as u8;
        QParams { scale, zero_point }
    }
}

/// The smallest and largest of `values` (`(+∞, −∞)` when empty): an activation's calibrated
/// range, as the agent records it and the host reads the input's.
pub fn value_range(values: &[f32]) -> (f32, f32) {
    values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// Default ranges of the tensors an int8 graph quantises, by what produces them.
const RANGE_INPUT: (f32, f32) = (-1.0, 1.0);
const RANGE_LINEAR: (f32, f32) = (-4.0, 4.0);
const RANGE_RELU: (f32, f32) = (0.0, 4.0);
const RANGE_HSWISH: (f32, f32) = (-0.375, 4.0);

/// Symmetric per-tensor int8 quantisation of a kernel: the values and the one scale
/// (`max |w| / 127`; 1 for an all-zero kernel).
///
/// Per tensor, not per output channel: tract 0.23.9 runs a `QLinearConv` with per-channel
/// weight scales 6.5–14× slower than with one scale (measured on x86-64: a 1×1 convolution
/// 7×7×160 → 640 took 803 µs against 102 µs, 56×56×32 → 96 took 5,495 against 378 µs), so the
/// per-channel form would time tract's slow path, not the int8 kernels a phone runs.
pub fn quantize_kernel(weight: &[f32]) -> (Vec<i8>, f32) {
    let max = weight.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    (weight.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8).collect(), scale)
}

/// A uint8 tensor of the graph: its name, the float tensor it stands for, and its parameters'
/// initializers.
#[derive(Debug, Clone)]
struct QTensor {
    name: String,
    float: String,
    scale: String,
    zero: String,
    params: QParams,
}

/// What a layer of an int8 graph hands on: uint8 (every layer but the classifier) or float.
enum Flow {
    Quant(QTensor),
    Float(String),
}

impl GraphBuilder<'_> {
    /// The layers of an int8 network; returns the element type of the graph's output. With
    /// `float_input` the graph takes float input and quantises it; otherwise it takes uint8.
    pub(super) fn network_i8(
        &mut self,
        net: &Network,
        in_dims: &[i64],
        float_input: bool,
    ) -> Result<DataType, BuildError> {
        let mut x = if float_input {
            self.graph.input.push(value_info(INPUT_NAME, in_dims, DataType::FLOAT));
            self.quantize(INPUT_NAME, RANGE_INPUT)
        } else {
            self.graph.input.push(value_info(INPUT_NAME, in_dims, DataType::UINT8));
            let (scale, zero, params) = self.qparams(INPUT_NAME, RANGE_LINEAR);
            QTensor { name: INPUT_NAME.into(), float: INPUT_NAME.into(), scale, zero, params }
        };
        let last = net.layers.len() - 1;
        for (i, key) in net.layers.iter().enumerate() {
            let out = if i == last { Some(OUTPUT_NAME) } else { None };
            match self.layer_i8(&format!("l{i}"), key, &x)? {
                Flow::Quant(q) => {
                    if i == last {
                        self.finish(q.name, out);
                        return Ok(DataType::UINT8);
                    }
                    x = q;
                }
                Flow::Float(f) => {
                    if i != last {
                        // Only the classifier ends in float, and it is always last.
                        return Err(BuildError::Chain {
                            index: i + 1,
                            key: net.layers[i + 1].to_string(),
                            expected: "a quantised input".into(),
                            got: format!("the float output of {key}"),
                        });
                    }
                    self.finish(f, out);
                }
            }
        }
        Ok(DataType::FLOAT)
    }

    /// The scale and zero-point initializers for float tensor `float`: its calibrated range,
    /// or `default`.
    fn qparams(&mut self, float: &str, default: (f32, f32)) -> (String, String, QParams) {
        let (min, max) = self.weights.activation_range(float).unwrap_or(default);
        let p = QParams::from_range(min, max);
        let scale = self.raw_initializer(
            &format!("{float}.q_scale"),
            &[],
            DataType::FLOAT,
            p.scale.to_le_bytes().to_vec(),
        );
        let zero = self.raw_initializer(
            &format!("{float}.q_zero"),
            &[],
            DataType::UINT8,
            vec![p.zero_point],
        );
        (scale, zero, p)
    }

    /// `QuantizeLinear` of float tensor `float`.
    fn quantize(&mut self, float: &str, default: (f32, f32)) -> QTensor {
        let (scale, zero, params) = self.qparams(float, default);
        let name = format!("{float}.q");
        self.node("QuantizeLinear", &[float, &scale, &zero], name.clone(), vec![]);
        QTensor { name, float: float.to_string(), scale, zero, params }
    }

    /// `DequantizeLinear` of `x`, back to its float tensor's values.
    fn dequantize(&mut self, x: &QTensor) -> String {
        let out = format!("{}.dq", x.float);
        self.node("DequantizeLinear", &[&x.name, &x.scale, &x.zero], out, vec![])
    }

    /// A `QLinearConv` with `act` after it: ReLU fused, HardSwish as a float island.
    fn qconv(
        &mut self,
        prefix: &str,
        name: &str,
        x: &QTensor,
        c: ConvShape,
        act: Activation,
    ) -> Result<QTensor, BuildError> {
        let ConvWeights { shape: wshape, weight, bias } = self.conv_weights(name, &c)?;
        let cout = c.cout as usize;
        let (wq, wscale) = quantize_kernel(&weight);
        let acc_scale = f64::from(x.params.scale) * f64::from(wscale);
        let bias_q: Vec<u8> = bias
            .iter()
            .flat_map(|b| {
                let q = (f64::from(*b) / acc_scale).round();
                (q.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32).to_le_bytes()
            })
            .collect();
        let w = self.raw_initializer(
            &format!("{name}.weight_q"),
            &wshape,
            DataType::INT8,
            wq.iter().map(|v| *v as u8).collect(),
        );
        let wscale = self.initializer(&format!("{name}.weight_scale"), &[], vec![wscale]);
        let wzero =
            self.raw_initializer(&format!("{name}.weight_zero"), &[], DataType::INT8, vec![0]);
        let b = self.raw_initializer(&format!("{name}.bias_q"), &[cout], DataType::INT32, bias_q);
        // The float tensor the output stands for: the ReLU's (fused) or the convolution's.
        let (float, default) = match act {
            Activation::Relu => (self.fresh(prefix, "relu"), RANGE_RELU),
            _ => (format!("{name}.out"), RANGE_LINEAR),
        };
        let (scale, zero, params) = self.qparams(&float, default);
        let out = format!("{float}.q");
        let inputs = [&x.name, &x.scale, &x.zero, &w, &wscale, &wzero, &scale, &zero, &b];
        let inputs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
        self.node("QLinearConv", &inputs, out.clone(), c.attributes());
        let y = QTensor { name: out, float, scale, zero, params };
        Ok(match act {
            Activation::HSwish => {
                let f = self.dequantize(&y);
                let h = self.fresh(prefix, "hswish");
                let h = self.node("HardSwish", &[&f], h, vec![]);
                self.quantize(&h, RANGE_HSWISH)
            }
            _ => y,
        })
    }

    fn layer_i8(&mut self, p: &str, key: &OpKey, x: &QTensor) -> Result<Flow, BuildError> {
        let (act, x) = (key.act, x.clone());
        let y = match key.kind {
            OpKind::StemConv => {
                self.qconv(p, &format!("{p}.conv"), &x, ConvShape::stem(key), act)?
            }
            OpKind::SepConv => {
                let dw = ConvShape::depthwise(key, key.cin);
                let d = self.qconv(p, &format!("{p}.dw"), &x, dw, act)?;
                let pw = ConvShape::project(key, key.cin);
                let y = self.qconv(p, &format!("{p}.pw"), &d, pw, Activation::None)?;
                self.residual_i8(p, &x, y, key.residual)
            }
            OpKind::Bottleneck => {
                let e = key.expanded;
                let y = self.qconv(p, &format!("{p}.expand"), &x, ConvShape::expand(key), act)?;
                let mut y =
                    self.qconv(p, &format!("{p}.dw"), &y, ConvShape::depthwise(key, e), act)?;
                if key.se > 0 {
                    let yf = self.dequantize(&y);
                    let s = self.fresh(p, "se_pool");
                    let s = self.node("GlobalAveragePool", &[&yf], s, vec![]);
                    let s = self.quantize(&s, RANGE_LINEAR);
                    let reduce = ConvShape::dense(e, key.se);
                    let s =
                        self.qconv(p, &format!("{p}.se_reduce"), &s, reduce, Activation::Relu)?;
                    let expand = ConvShape::dense(key.se, e);
                    let s =
                        self.qconv(p, &format!("{p}.se_expand"), &s, expand, Activation::None)?;
                    let s = self.dequantize(&s);
                    let gate = self.fresh(p, "se_gate");
                    let gate = self.node("Sigmoid", &[&s], gate, vec![]);
                    let scaled = self.fresh(p, "se_mul");
                    let scaled = self.node("Mul", &[&yf, &gate], scaled, vec![]);
                    y = self.quantize(&scaled, RANGE_LINEAR);
                }
                let y = self.qconv(
                    p,
                    &format!("{p}.project"),
                    &y,
                    ConvShape::project(key, e),
                    Activation::None,
                )?;
                self.residual_i8(p, &x, y, key.residual)
            }
            OpKind::HeadConv => {
                self.qconv(p, &format!("{p}.conv"), &x, ConvShape::pointwise(key), act)?
            }
            OpKind::GlobalPool => {
                let f = self.dequantize(&x);
                let pooled = self.fresh(p, "pool");
                let pooled = self.node("GlobalAveragePool", &[&f], pooled, vec![]);
                self.quantize(&pooled, RANGE_LINEAR)
            }
            OpKind::Classifier => {
                let fc = ConvShape::dense(key.cin, key.cout);
                let y = self.qconv(p, &format!("{p}.fc"), &x, fc, Activation::None)?;
                let f = self.dequantize(&y);
                let flat = self.fresh(p, "flatten");
                return Ok(Flow::Float(self.node("Flatten", &[&f], flat, vec![int("axis", 1)])));
            }
        };
        Ok(Flow::Quant(y))
    }

    /// The residual Add as a float island.
    fn residual_i8(&mut self, p: &str, x: &QTensor, y: QTensor, residual: bool) -> QTensor {
        if !residual {
            return y;
        }
        let xf = self.dequantize(x);
        let yf = self.dequantize(&y);
        let sum = self.fresh(p, "add");
        let sum = self.node("Add", &[&xf, &yf], sum, vec![]);
        self.quantize(&sum, RANGE_LINEAR)
    }
}

/// The float model of `net` (every layer taken as f32) with every activation tensor also a
/// graph output, named as the int8 graph of `net` asks for ranges: run it on calibration inputs,
/// record each output's min and max, and give them to the int8 build through
/// [`super::GivenWeights::with_ranges`].
pub fn calibration_model(
    net: &Network,
    weights: &mut dyn WeightSource,
) -> Result<ModelProto, BuildError> {
    let float = net.clone().with_precision(crate::op_key::Precision::F32);
    let mut model = network_model(&float, weights)?;
    if let Some(graph) = model.graph.as_mut() {
        let names: Vec<String> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().cloned())
            .filter(|o| o != OUTPUT_NAME)
            .collect();
        for name in names {
            graph.output.push(super::untyped_output(&name));
        }
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::onnx::{op_model, Role, SeededWeights};
    use crate::op_key::Precision;

    fn i8_key(text: &str) -> OpKey {
        text.parse::<OpKey>().unwrap().with_precision(Precision::I8)
    }

    #[test]
    fn ranges_always_hold_zero_exactly() {
        assert_eq!(QParams::from_range(0.0, 6.0), QParams { scale: 6.0 / 255.0, zero_point: 0 });
        let p = QParams::from_range(-1.0, 1.0);
        assert!((127..=128).contains(&p.zero_point), "{p:?}");
        assert!((p.scale - 2.0 / 255.0).abs() < 1e-9);
        // A range above zero is widened down to it; an empty one gets a unit step.
        assert_eq!(QParams::from_range(2.0, 4.0).zero_point, 0);
        assert_eq!(QParams::from_range(0.0, 0.0), QParams { scale: 1.0 / 255.0, zero_point: 0 });
        assert_eq!(QParams::from_range(-3.0, -1.0).zero_point, 255);
    }

    #[test]
    fn kernels_quantise_within_half_a_step() {
        let w = SeededWeights::new(4).uniform(300, 0.7);
        let (q, scale) = quantize_kernel(&w);
        assert!(q.iter().any(|&v| v.abs() == 127), "the largest weight uses the full range");
        for (v, q) in w.iter().zip(&q) {
            assert!((v - f32::from(*q) * scale).abs() <= scale / 2.0 + 1e-7);
        }
        assert_eq!(quantize_kernel(&[0.0, 0.0]), (vec![0, 0], 1.0));
    }

    #[test]
    fn an_int8_bottleneck_is_integer_convolutions_with_float_islands() {
        let model = op_model(
            &i8_key("ib/14x14x80/o80/k5/s1/e480/se120/hswish/res"),
            &mut SeededWeights::new(1),
        )
        .unwrap();
        let g = model.graph.as_ref().unwrap();
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "QLinearConv",
                "DequantizeLinear",
                "HardSwish",
                "QuantizeLinear", // expand
                "QLinearConv",
                "DequantizeLinear",
                "HardSwish",
                "QuantizeLinear", // depthwise
                "DequantizeLinear",
                "GlobalAveragePool",
                "QuantizeLinear", // SE squeeze
                "QLinearConv",
                "QLinearConv",
                "DequantizeLinear",
                "Sigmoid",
                "Mul", // SE gate
                "QuantizeLinear",
                "QLinearConv", // projection
                "DequantizeLinear",
                "DequantizeLinear",
                "Add",
                "QuantizeLinear", // residual
            ]
        );
        let elem = |v: &onnx_protobuf::ValueInfoProto| match &v.type_.value {
            Some(onnx_protobuf::type_proto::Value::TensorType(t)) => t.elem_type,
            _ => -1,
        };
        // An op key takes and gives uint8; the depthwise convolution keeps its groups.
        assert_eq!(elem(&g.input[0]), DataType::UINT8 as i32);
        assert_eq!(elem(&g.output[0]), DataType::UINT8 as i32);
        let dw = g.node.iter().filter(|n| n.op_type == "QLinearConv").nth(1).unwrap();
        assert_eq!(dw.attribute.iter().find(|a| a.name == "group").unwrap().i, 480);
        // The weights are int8 with one scale, the biases int32.
        let w = g.initializer.iter().find(|t| t.name == "l0.dw.weight_q").unwrap();
        assert_eq!((w.data_type, w.dims.clone()), (DataType::INT8 as i32, vec![480, 1, 5, 5]));
        let s = g.initializer.iter().find(|t| t.name == "l0.dw.weight_scale").unwrap();
        assert!(s.dims.is_empty());
        let b = g.initializer.iter().find(|t| t.name == "l0.dw.bias_q").unwrap();
        assert_eq!(b.data_type, DataType::INT32 as i32);
    }

    #[test]
    fn a_relu_is_fused_and_a_network_takes_float_and_gives_float_logits() {
        let net = Network::new(vec![
            i8_key("stem/32x32x3/o16/k3/s2/relu"),
            i8_key("pool/16x16x16"),
            i8_key("fc/1x1x16/o10"),
        ]);
        let model = network_model(&net, &mut SeededWeights::new(2)).unwrap();
        let g = model.graph.as_ref().unwrap();
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "QuantizeLinear",
                "QLinearConv", // the input, the stem with its ReLU
                "DequantizeLinear",
                "GlobalAveragePool",
                "QuantizeLinear",
                "QLinearConv",
                "DequantizeLinear",
                "Flatten",
            ]
        );
        let zero = g.initializer.iter().find(|t| t.name == "l0.relu_1.q_zero").unwrap();
        assert_eq!(
            zero.raw_data,
            vec![0],
            "a ReLU output's zero point is 0: the clamp is the ReLU"
        );
        assert_eq!(g.output[0].name, OUTPUT_NAME);
    }

    #[test]
    fn a_network_mixing_precisions_is_refused_by_layer() {
        let net = Network::new(vec![
            "stem/32x32x3/o16/k3/s2/relu".parse().unwrap(),
            i8_key("pool/16x16x16"),
        ]);
        let err = network_model(&net, &mut SeededWeights::new(0)).unwrap_err().to_string();
        assert!(err.contains("layer 1 (pool/16x16x16/i8) is i8") && err.contains("f32"), "{err}");
    }

    /// Records the tensor names whose range an int8 build asks for.
    struct Asked(BTreeSet<String>, SeededWeights);

    impl WeightSource for Asked {
        fn tensor(
            &mut self,
            name: &str,
            shape: &[usize],
            role: Role,
        ) -> Result<Vec<f32>, BuildError> {
            self.1.tensor(name, shape, role)
        }

        fn activation_range(&mut self, name: &str) -> Option<(f32, f32)> {
            self.0.insert(name.to_string());
            None
        }
    }

    #[test]
    fn the_calibration_model_outputs_every_tensor_the_int8_build_asks_a_range_for() {
        let net = Network::new(vec![
            i8_key("stem/32x32x3/o16/k3/s2/hswish"),
            i8_key("sep/16x16x16/o16/k3/s1/relu/res"),
            i8_key("ib/16x16x16/o24/k5/s2/e72/se16/hswish"),
            i8_key("head/8x8x24/o64/relu"),
            i8_key("pool/8x8x64"),
            i8_key("fc/1x1x64/o10"),
        ]);
        let mut asked = Asked(BTreeSet::new(), SeededWeights::new(0));
        network_model(&net, &mut asked).unwrap();
        let cal = calibration_model(&net, &mut SeededWeights::new(0)).unwrap();
        let g = cal.graph.as_ref().unwrap();
        assert!(
            g.node.iter().all(|n| !n.op_type.starts_with("Q")),
            "the calibration model is float"
        );
        let outputs: BTreeSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
        let missing: Vec<&String> =
            asked.0.iter().filter(|n| *n != INPUT_NAME && !outputs.contains(*n)).collect();
        assert!(missing.is_empty(), "ranges asked for but not calibrated: {missing:?}");
        assert!(asked.0.len() > 10, "{:?}", asked.0);
    }
}
