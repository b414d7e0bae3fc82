//! The ONNX builder: an op key or a whole network → an ONNX `ModelProto` (opset 14, NCHW, batch 1).
//!
//! The same code builds one op and a whole network, so a table's Σ T(key) and the measured whole
//! network describe exactly the same graph. Batch norm is always folded into the preceding
//! convolution (inference form: conv weight + bias). Weights come from a [`WeightSource`]: seeded
//! random values for measurement ([`SeededWeights`], never zeros) or given tensors for export
//! ([`GivenWeights`]). Tensor names are stable (`l{layer}.{part}.weight|bias`) and are the
//! contract for exporting trained weights.
//!
//! Int8 keys ([`Precision::I8`]) build the same layers in ONNX's integer form ([`int8`]):
//! `QLinearConv` with per-tensor int8 weights, uint8 activations, fused ReLU, and
//! float islands (`DequantizeLinear` → op → `QuantizeLinear`) for what ONNX has no integer op for.

use std::collections::BTreeMap;

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::error::BuildError;
use crate::network::Network;
use crate::op_key::{same_padding, Activation, OpKey, OpKind, Precision};

pub mod int8;

pub use int8::{calibration_model, value_range, QParams};

/// The ONNX opset of every model we build (`HardSwish` needs ≥ 14).
pub const OPSET: i64 = 14;
/// The ONNX IR version written into models (IR 7 is the one that goes with opset 14).
pub const IR_VERSION: i64 = 7;
/// Name of the graph input.
pub const INPUT_NAME: &str = "input";
/// Name of the graph output.
pub const OUTPUT_NAME: &str = "output";

/// What a weight tensor is for; decides how seeded values are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A convolution kernel with this fan-in (input channels per group × kernel area).
    Kernel {
        /// Inputs feeding one output value.
        fan_in: usize,
    },
    /// A bias (or folded batch-norm shift).
    Bias,
}

/// Where the builder gets weight tensors from.
pub trait WeightSource {
    /// Returns the values of tensor `name` with `shape` (row-major, ONNX layout).
    fn tensor(&mut self, name: &str, shape: &[usize], role: Role) -> Result<Vec<f32>, BuildError>;

    /// The calibrated range `(min, max)` of activation tensor `name` of the float graph, for
    /// int8 models; `None` takes the builder's default range for that kind of tensor.
    fn activation_range(&mut self, _name: &str) -> Option<(f32, f32)> {
        None
    }
}

/// Deterministic pseudo-random weights from a seed: He-uniform kernels, small non-zero biases.
///
/// Values are never all zero (zeros would let an engine skip work and time something else).
#[derive(Debug, Clone)]
pub struct SeededWeights {
    state: u64,
    ranges: BTreeMap<String, (f32, f32)>,
}

impl SeededWeights {
    /// A weight source for `seed`.
    pub fn new(seed: u64) -> Self {
        SeededWeights { state: seed ^ 0x9E37_79B9_7F4A_7C15, ranges: BTreeMap::new() }
    }

    /// With calibrated activation ranges by float tensor name (see [`calibration_model`]).
    pub fn with_ranges(self, ranges: BTreeMap<String, (f32, f32)>) -> Self {
        SeededWeights { ranges, ..self }
    }

    /// The next raw value of the stream (SplitMix64); tests use it as their seeded generator.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn next_symmetric(&mut self) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * unit - 1.0
    }

    /// `n` values uniform in [-bound, bound).
    pub fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_symmetric() * bound).collect()
    }
}

impl WeightSource for SeededWeights {
    fn tensor(&mut self, _name: &str, shape: &[usize], role: Role) -> Result<Vec<f32>, BuildError> {
        let n = shape.iter().product();
        let bound = match role {
            Role::Kernel { fan_in } => (6.0 / fan_in.max(1) as f32).sqrt(),
            Role::Bias => 0.1,
        };
        Ok(self.uniform(n, bound))
    }

    fn activation_range(&mut self, name: &str) -> Option<(f32, f32)> {
        self.ranges.get(name).copied()
    }
}

/// Given tensors by name (for exporting trained weights). Each is used once, with its size checked.
#[derive(Debug, Clone, Default)]
pub struct GivenWeights {
    tensors: BTreeMap<String, Vec<f32>>,
    ranges: BTreeMap<String, (f32, f32)>,
}

impl GivenWeights {
    /// Weights from a name → values map.
    pub fn new(tensors: BTreeMap<String, Vec<f32>>) -> Self {
        GivenWeights { tensors, ranges: BTreeMap::new() }
    }

    /// With calibrated activation ranges by float tensor name (see [`calibration_model`]).
    pub fn with_ranges(self, ranges: BTreeMap<String, (f32, f32)>) -> Self {
        GivenWeights { ranges, ..self }
    }

    /// Names that were given but not used by the graph (a sign of a mismatched architecture).
    pub fn unused(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }
}

impl WeightSource for GivenWeights {
    fn tensor(&mut self, name: &str, shape: &[usize], _role: Role) -> Result<Vec<f32>, BuildError> {
        let values = self
            .tensors
            .remove(name)
            .ok_or_else(|| BuildError::Weights { name: name.into(), reason: "missing".into() })?;
        let n: usize = shape.iter().product();
        if values.len() != n {
            return Err(BuildError::Weights {
                name: name.into(),
                reason: format!(
                    "has {} values, the graph needs {n} (shape {shape:?})",
                    values.len()
                ),
            });
        }
        Ok(values)
    }

    fn activation_range(&mut self, name: &str) -> Option<(f32, f32)> {
        self.ranges.get(name).copied()
    }
}

/// Builds the ONNX model of one op key, with input `[1, cin, h, w]`.
///
/// An int8 key takes and gives uint8 tensors (the classifier gives float logits), so that a
/// table's Σ T(key) adds up the same graph as the int8 network, whose float input is quantised
/// once at its start.
pub fn op_model(key: &OpKey, weights: &mut dyn WeightSource) -> Result<ModelProto, BuildError> {
    build(&Network::new(vec![key.clone()]), weights, false)
}

/// Builds the ONNX model of a whole network, with input `[1, C, H, W]` of its first layer.
///
/// Every key must be within the size limits of [`OpKey::check_bounds`] (checked before any
/// tensor is allocated; the error names the key).
pub fn network_model(
    net: &Network,
    weights: &mut dyn WeightSource,
) -> Result<ModelProto, BuildError> {
    build(net, weights, true)
}

/// The graph of `net`; `float_input`: an int8 network takes float input and quantises it.
fn build(
    net: &Network,
    weights: &mut dyn WeightSource,
    float_input: bool,
) -> Result<ModelProto, BuildError> {
    net.check_chain()?;
    let mut g = GraphBuilder { weights, graph: GraphProto::new(), counter: 0 };
    g.graph.name = "latency_tables".into();
    let (h, w, c) = net.input_shape().ok_or(BuildError::Empty)?;
    let in_dims = [1, i64::from(c), i64::from(h), i64::from(w)];
    let last = net.layers.len() - 1;
    let out_type = match net.precision() {
        Precision::F32 => {
            g.graph.input.push(value_info(INPUT_NAME, &in_dims, DataType::FLOAT));
            let mut x = INPUT_NAME.to_string();
            for (i, key) in net.layers.iter().enumerate() {
                let out = if i == last { Some(OUTPUT_NAME) } else { None };
                x = g.layer(&format!("l{i}"), key, &x, out)?;
            }
            DataType::FLOAT
        }
        Precision::I8 => g.network_i8(net, &in_dims, float_input)?,
    };
    let last_key = &net.layers[last];
    let (oh, ow, oc) = last_key.output_shape();
    let out_dims: Vec<i64> = if last_key.kind == OpKind::Classifier {
        vec![1, i64::from(oc)]
    } else {
        vec![1, i64::from(oc), i64::from(oh), i64::from(ow)]
    };
    g.graph.output.push(value_info(OUTPUT_NAME, &out_dims, out_type));
    let mut model = ModelProto::new();
    model.ir_version = IR_VERSION;
    model.producer_name = "latency-tables".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    let mut opset = OperatorSetIdProto::new();
    opset.domain = String::new();
    opset.version = OPSET;
    model.opset_import.push(opset);
    model.graph = Some(g.graph).into();
    Ok(model)
}

/// Serialises a model to ONNX protobuf bytes.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    // Writing a message into a Vec cannot fail for well-formed messages built by this module.
    model.write_to_bytes().unwrap_or_default()
}

/// Builds and serialises the model of one key with seeded weights (what the agent measures).
/// A key beyond the size limits of [`OpKey::check_bounds`] is a [`BuildError`] naming it.
pub fn op_bytes(key: &OpKey, seed: u64) -> Result<Vec<u8>, BuildError> {
    Ok(encode(&op_model(key, &mut SeededWeights::new(seed))?))
}

/// Builds and serialises a whole network with seeded weights. A key beyond the size limits of
/// [`OpKey::check_bounds`] is a [`BuildError`] naming it.
pub fn network_bytes(net: &Network, seed: u64) -> Result<Vec<u8>, BuildError> {
    Ok(encode(&network_model(net, &mut SeededWeights::new(seed))?))
}

fn value_info(name: &str, dims: &[i64], elem: DataType) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in dims {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = Some(tensor_shape_proto::dimension::Value::DimValue(d));
        shape.dim.push(dim);
    }
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = elem as i32;
    tensor.shape = Some(shape).into();
    let mut tp = TypeProto::new();
    tp.value = Some(type_proto::Value::TensorType(tensor));
    let mut vi = ValueInfoProto::new();
    vi.name = name.into();
    vi.type_ = Some(tp).into();
    vi
}

/// A graph output of float type without a shape (the engine infers it).
fn untyped_output(name: &str) -> ValueInfoProto {
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = DataType::FLOAT as i32;
    let mut tp = TypeProto::new();
    tp.value = Some(type_proto::Value::TensorType(tensor));
    let mut vi = ValueInfoProto::new();
    vi.name = name.into();
    vi.type_ = Some(tp).into();
    vi
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = values.to_vec();
    a
}

fn int(name: &str, value: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = value;
    a
}

/// A convolution's float weights from the weight source.
struct ConvWeights {
    /// The kernel's shape `[cout, cin / group, k, k]`.
    shape: Vec<usize>,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// One convolution's geometry: input size, channels, kernel, stride and groups.
#[derive(Debug, Clone, Copy)]
struct ConvShape {
    hw: (u32, u32),
    cin: u32,
    cout: u32,
    kernel: u32,
    stride: u32,
    group: u32,
}

impl ConvShape {
    /// The stem's full k×k convolution.
    fn stem(key: &OpKey) -> Self {
        let (hw, cin, cout) = ((key.h, key.w), key.cin, key.cout);
        ConvShape { hw, cin, cout, kernel: key.kernel, stride: key.stride, group: 1 }
    }

    /// The depthwise k×k convolution over `c` channels at the key's input size.
    fn depthwise(key: &OpKey, c: u32) -> Self {
        let hw = (key.h, key.w);
        ConvShape { hw, cin: c, cout: c, kernel: key.kernel, stride: key.stride, group: c }
    }

    /// The bottleneck's 1×1 expansion at the key's input size.
    fn expand(key: &OpKey) -> Self {
        ConvShape::one_by_one((key.h, key.w), key.cin, key.expanded)
    }

    /// The 1×1 projection from `c` channels at the key's output size.
    fn project(key: &OpKey, c: u32) -> Self {
        ConvShape::one_by_one(key.output_hw(), c, key.cout)
    }

    /// The head's 1×1 convolution at the key's input size.
    fn pointwise(key: &OpKey) -> Self {
        ConvShape::one_by_one((key.h, key.w), key.cin, key.cout)
    }

    /// A 1×1 convolution on a 1×1 input (SE, classifier).
    fn dense(cin: u32, cout: u32) -> Self {
        ConvShape::one_by_one((1, 1), cin, cout)
    }

    fn one_by_one(hw: (u32, u32), cin: u32, cout: u32) -> Self {
        ConvShape { hw, cin, cout, kernel: 1, stride: 1, group: 1 }
    }

    /// The ONNX attributes (`Conv` and `QLinearConv` share them), TF "SAME" padding.
    fn attributes(&self) -> Vec<AttributeProto> {
        let (h, w) = self.hw;
        let (pt, pb) = same_padding(h, self.kernel, self.stride);
        let (pl, pr) = same_padding(w, self.kernel, self.stride);
        let mut attrs = vec![
            ints("kernel_shape", &[self.kernel.into(), self.kernel.into()]),
            ints("strides", &[self.stride.into(), self.stride.into()]),
            ints("pads", &[pt.into(), pl.into(), pb.into(), pr.into()]),
        ];
        if self.group != 1 {
            attrs.push(int("group", self.group.into()));
        }
        attrs
    }
}

struct GraphBuilder<'a> {
    weights: &'a mut dyn WeightSource,
    graph: GraphProto,
    counter: usize,
}

impl GraphBuilder<'_> {
    fn fresh(&mut self, prefix: &str, what: &str) -> String {
        self.counter += 1;
        format!("{prefix}.{what}_{}", self.counter)
    }

    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: String,
        attrs: Vec<AttributeProto>,
    ) -> String {
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = format!("{op}_{}", self.graph.node.len());
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![output.clone()];
        n.attribute = attrs;
        self.graph.node.push(n);
        output
    }

    /// A float initializer.
    fn initializer(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw_initializer(name, shape, DataType::FLOAT, raw)
    }

    /// An initializer of any element type from its little-endian bytes.
    fn raw_initializer(
        &mut self,
        name: &str,
        shape: &[usize],
        elem: DataType,
        raw: Vec<u8>,
    ) -> String {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.data_type = elem as i32;
        t.dims = shape.iter().map(|&d| d as i64).collect();
        t.raw_data = raw;
        self.graph.initializer.push(t);
        name.to_string()
    }

    /// A convolution's weight and bias (folded BN) from the weight source: the kernel
    /// `[cout, cin / group, k, k]` and the bias `[cout]`.
    fn conv_weights(&mut self, name: &str, c: &ConvShape) -> Result<ConvWeights, BuildError> {
        let (cin, cout, k, group) =
            (c.cin as usize, c.cout as usize, c.kernel as usize, c.group as usize);
        let wshape = vec![cout, cin / group, k, k];
        let weight = self.weights.tensor(
            &format!("{name}.weight"),
            &wshape,
            Role::Kernel { fan_in: cin / group * k * k },
        )?;
        let bias = self.weights.tensor(&format!("{name}.bias"), &[cout], Role::Bias)?;
        Ok(ConvWeights { shape: wshape, weight, bias })
    }

    /// A convolution with folded BN (weight + bias), TF "SAME" padding.
    fn conv(&mut self, name: &str, x: &str, c: ConvShape) -> Result<String, BuildError> {
        let w = self.conv_weights(name, &c)?;
        let weight = self.initializer(&format!("{name}.weight"), &w.shape, w.weight);
        let bias = self.initializer(&format!("{name}.bias"), &[c.cout as usize], w.bias);
        let out = format!("{name}.out");
        Ok(self.node("Conv", &[x, &weight, &bias], out, c.attributes()))
    }

    fn act(&mut self, prefix: &str, x: &str, act: Activation) -> String {
        match act {
            Activation::None => x.to_string(),
            Activation::Relu => {
                let out = self.fresh(prefix, "relu");
                self.node("Relu", &[x], out, vec![])
            }
            Activation::HSwish => {
                let out = self.fresh(prefix, "hswish");
                self.node("HardSwish", &[x], out, vec![])
            }
        }
    }

    /// Renames the last node's output to `out` when this layer is the graph's last.
    fn finish(&mut self, y: String, out: Option<&str>) -> String {
        match out {
            Some(name) => {
                if let Some(node) = self.graph.node.last_mut() {
                    node.output = vec![name.to_string()];
                }
                name.to_string()
            }
            None => y,
        }
    }

    fn layer(
        &mut self,
        p: &str,
        key: &OpKey,
        x: &str,
        out: Option<&str>,
    ) -> Result<String, BuildError> {
        let y = match key.kind {
            OpKind::StemConv => {
                let y = self.conv(&format!("{p}.conv"), x, ConvShape::stem(key))?;
                self.act(p, &y, key.act)
            }
            OpKind::SepConv => {
                let d = self.conv(&format!("{p}.dw"), x, ConvShape::depthwise(key, key.cin))?;
                let d = self.act(p, &d, key.act);
                let y = self.conv(&format!("{p}.pw"), &d, ConvShape::project(key, key.cin))?;
                self.residual(p, x, y, key.residual)
            }
            OpKind::Bottleneck => {
                let e = key.expanded;
                let y = self.conv(&format!("{p}.expand"), x, ConvShape::expand(key))?;
                let y = self.act(p, &y, key.act);
                let y = self.conv(&format!("{p}.dw"), &y, ConvShape::depthwise(key, e))?;
                let mut y = self.act(p, &y, key.act);
                if key.se > 0 {
                    let s = self.fresh(p, "se_pool");
                    let s = self.node("GlobalAveragePool", &[&y], s, vec![]);
                    let s =
                        self.conv(&format!("{p}.se_reduce"), &s, ConvShape::dense(e, key.se))?;
                    let s = self.act(p, &s, Activation::Relu);
                    let s =
                        self.conv(&format!("{p}.se_expand"), &s, ConvShape::dense(key.se, e))?;
                    let gate = self.fresh(p, "se_gate");
                    let gate = self.node("Sigmoid", &[&s], gate, vec![]);
                    let scaled = self.fresh(p, "se_mul");
                    y = self.node("Mul", &[&y, &gate], scaled, vec![]);
                }
                let y = self.conv(&format!("{p}.project"), &y, ConvShape::project(key, e))?;
                self.residual(p, x, y, key.residual)
            }
            OpKind::HeadConv => {
                let y = self.conv(&format!("{p}.conv"), x, ConvShape::pointwise(key))?;
                self.act(p, &y, key.act)
            }
            OpKind::GlobalPool => {
                let y = self.fresh(p, "pool");
                self.node("GlobalAveragePool", &[x], y, vec![])
            }
            OpKind::Classifier => {
                let y = self.conv(&format!("{p}.fc"), x, ConvShape::dense(key.cin, key.cout))?;
                let flat = self.fresh(p, "flatten");
                self.node("Flatten", &[&y], flat, vec![int("axis", 1)])
            }
        };
        Ok(self.finish(y, out))
    }

    fn residual(&mut self, p: &str, x: &str, y: String, residual: bool) -> String {
        if residual {
            let sum = self.fresh(p, "add");
            self.node("Add", &[x, &y], sum, vec![])
        } else {
            y
        }
    }
}

/// Names and shapes of every weight tensor the builder asks for, in order (for exporters).
pub fn weight_manifest(net: &Network) -> Result<Vec<(String, Vec<usize>)>, BuildError> {
    #[derive(Default)]
    struct Recorder(Vec<(String, Vec<usize>)>);
    impl WeightSource for Recorder {
        fn tensor(&mut self, name: &str, shape: &[usize], _: Role) -> Result<Vec<f32>, BuildError> {
            self.0.push((name.to_string(), shape.to_vec()));
            Ok(vec![0.0; shape.iter().product()])
        }
    }
    let mut rec = Recorder::default();
    network_model(net, &mut rec)?;
    Ok(rec.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(key: &str) -> GraphProto {
        let key: OpKey = key.parse().unwrap();
        let model = op_model(&key, &mut SeededWeights::new(7)).unwrap();
        model.graph.into_option().unwrap()
    }

    fn ops(g: &GraphProto) -> Vec<&str> {
        g.node.iter().map(|n| n.op_type.as_str()).collect()
    }

    #[test]
    fn bottleneck_with_se_and_residual_has_the_tunas_structure() {
        let g = graph("ib/14x14x80/o80/k5/s1/e480/se120/hswish/res");
        assert_eq!(
            ops(&g),
            [
                "Conv",
                "HardSwish",
                "Conv",
                "HardSwish",
                "GlobalAveragePool",
                "Conv",
                "Relu",
                "Conv",
                "Sigmoid",
                "Mul",
                "Conv",
                "Add"
            ]
        );
        assert_eq!(g.node.last().unwrap().output, vec![OUTPUT_NAME.to_string()]);
        let dw = g.node.iter().find(|n| n.name == "Conv_2").unwrap();
        let group = dw.attribute.iter().find(|a| a.name == "group").unwrap();
        assert_eq!(group.i, 480);
    }

    #[test]
    fn stride_two_pads_like_tensorflow_same() {
        let g = graph("stem/224x224x3/o32/k3/s2/relu");
        let pads = g.node[0].attribute.iter().find(|a| a.name == "pads").unwrap();
        assert_eq!(pads.ints, vec![0, 0, 1, 1]);
    }

    #[test]
    fn seeded_weights_are_deterministic_and_never_zero() {
        let key: OpKey = "sep/112x112x32/o16/k3/s1/relu".parse().unwrap();
        let a = op_bytes(&key, 1).unwrap();
        assert_eq!(a, op_bytes(&key, 1).unwrap());
        assert_ne!(a, op_bytes(&key, 2).unwrap());
        let g = graph("sep/112x112x32/o16/k3/s1/relu");
        for t in &g.initializer {
            assert!(t.raw_data.chunks(4).any(|b| b != [0, 0, 0, 0]), "{} is all zeros", t.name);
        }
    }

    #[test]
    fn given_weights_are_checked() {
        let key: OpKey = "head/7x7x8/o16/relu".parse().unwrap();
        let net = Network::new(vec![key.clone()]);
        let manifest = weight_manifest(&net).unwrap();
        assert_eq!(
            manifest,
            vec![
                ("l0.conv.weight".to_string(), vec![16, 8, 1, 1]),
                ("l0.conv.bias".into(), vec![16])
            ]
        );
        let mut given =
            GivenWeights::new(BTreeMap::from([("l0.conv.weight".to_string(), vec![1.0; 128])]));
        let err = op_model(&key, &mut given).unwrap_err().to_string();
        assert!(err.contains("l0.conv.bias") && err.contains("missing"), "{err}");
        let mut given = GivenWeights::new(BTreeMap::from([
            ("l0.conv.weight".to_string(), vec![1.0; 127]),
            ("l0.conv.bias".to_string(), vec![1.0; 16]),
        ]));
        let err = op_model(&key, &mut given).unwrap_err().to_string();
        assert!(err.contains("127"), "{err}");
    }

    #[test]
    fn networks_must_chain() {
        let net = Network::new(vec![
            "stem/224x224x3/o32/k3/s2/relu".parse().unwrap(),
            "sep/56x56x32/o16/k3/s1/relu".parse().unwrap(),
        ]);
        let err = network_model(&net, &mut SeededWeights::new(0)).unwrap_err().to_string();
        assert!(
            err.contains("expects input 56x56x32") && err.contains("gives 112x112x32"),
            "{err}"
        );
    }

    #[test]
    fn oversized_keys_are_refused_before_allocating() {
        let huge = "stem/100000x100000x3/o32/k3/s2/relu";
        let key: OpKey = huge.parse().unwrap();
        let err = op_bytes(&key, 0).unwrap_err().to_string();
        assert!(err.contains(huge) && err.contains("height") && err.contains("4096"), "{err}");
        let wide = "head/7x7x320/o20000/relu";
        let net =
            Network::new(vec!["pool/7x7x320".parse().unwrap(), "fc/1x1x320/o10".parse().unwrap()]);
        assert!(network_bytes(&net, 0).is_ok());
        let net = Network::new(vec![wide.parse().unwrap()]);
        let err = network_bytes(&net, 0).unwrap_err().to_string();
        assert!(err.contains(wide) && err.contains("output channels"), "{err}");
    }
}
