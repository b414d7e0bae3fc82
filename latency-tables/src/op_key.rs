//! `OpKey`: one network layer with everything that decides its latency.
//!
//! An op key is plain data. Its canonical string form (see [`OpKey`]'s `Display`) is the key of a
//! latency table, travels over the wire protocol, and parses back to the same value. This module
//! knows nothing about engines; the ONNX builder (`crate::onnx`) turns a key into a graph.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::KeyError;

/// Largest input height or width of a key the builder accepts ([`OpKey::check_bounds`]).
pub const MAX_SPATIAL: u32 = 4096;
/// Largest channel count of a key: input, output, expanded and SE channels, and classes.
pub const MAX_CHANNELS: u32 = 16_384;
/// Largest kernel size of a key.
pub const MAX_KERNEL: u32 = 31;
/// Largest element count of any activation or weight tensor of a key (2^28 values, 1 GiB of
/// f32), so that a typo such as `stem/100000x100000x3/o32/k3/s2/relu` is refused instead of
/// making the builder allocate hundreds of gigabytes.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 28;

/// The kind of layer an [`OpKey`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OpKind {
    /// A full k×k convolution + (folded) batch norm + activation; the network's stem.
    StemConv,
    /// Depthwise k×k conv + BN + activation, then 1×1 conv + BN (no activation after it).
    SepConv,
    /// 1×1 expansion conv + BN + act, depthwise k×k + BN + act, optional SE, 1×1 projection + BN.
    Bottleneck,
    /// A 1×1 convolution (+ folded BN or bias) + activation at the end of the network.
    HeadConv,
    /// Global average pooling over H×W.
    GlobalPool,
    /// The classifier: a 1×1 convolution with bias to `out` classes on a 1×1 input, flattened.
    Classifier,
}

impl OpKind {
    /// The short tag used in the canonical string form.
    pub fn tag(self) -> &'static str {
        match self {
            OpKind::StemConv => "stem",
            OpKind::SepConv => "sep",
            OpKind::Bottleneck => "ib",
            OpKind::HeadConv => "head",
            OpKind::GlobalPool => "pool",
            OpKind::Classifier => "fc",
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [OpKind; 6] = [
        OpKind::StemConv,
        OpKind::SepConv,
        OpKind::Bottleneck,
        OpKind::HeadConv,
        OpKind::GlobalPool,
        OpKind::Classifier,
    ];

    fn from_tag(tag: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.tag() == tag)
    }
}

/// The non-linearity of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Activation {
    /// No activation (pooling and the classifier).
    None,
    /// `max(x, 0)`.
    Relu,
    /// `x · relu6(x + 3) / 6` (TuNAS's `swish6`; ONNX `HardSwish`).
    HSwish,
}

impl Activation {
    /// The tag used in the canonical string form.
    pub fn tag(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::HSwish => "hswish",
        }
    }

    fn from_tag(tag: &str) -> Option<Activation> {
        [Activation::None, Activation::Relu, Activation::HSwish]
            .into_iter()
            .find(|a| a.tag() == tag)
    }
}

/// The number format a layer runs in.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit float weights and activations (keys without a precision suffix).
    #[default]
    F32,
    /// int8: symmetric per-tensor int8 weights, uint8 activations with a per-tensor scale
    /// and zero point, int32 accumulation (ONNX `QLinearConv`; see [`crate::onnx`]).
    I8,
}

impl Precision {
    /// The tag of the canonical string form (`f32` is never written into a key).
    pub fn tag(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::I8 => "i8",
        }
    }

    /// Every precision.
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::I8];
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Precision::ALL
            .into_iter()
            .find(|p| p.tag() == s)
            .ok_or_else(|| format!("unknown precision {s:?} (expected f32 or i8)"))
    }
}

/// One network layer at its deployment shape.
///
/// Fields that do not apply to a kind hold a neutral value (`kernel = 1`, `stride = 1`,
/// `expanded = 0`, `se = 0`, `act = None`, `residual = false`), enforced by [`OpKey::validate`],
/// so that two equal layers always have one key.
///
/// Canonical strings, one per kind (fields separated by `/`):
///
/// ```text
/// stem/224x224x3/o32/k3/s2/relu
/// sep/112x112x32/o16/k3/s1/relu            (suffix /res for a residual layer)
/// ib/112x112x16/o32/k5/s2/e48/se0/relu     (suffix /res for a residual layer)
/// head/7x7x320/o1280/relu
/// pool/7x7x1280
/// fc/1x1x1280/o1001
/// ```
///
/// An int8 key ends in `/i8` (after `/res`): `ib/56x56x32/o32/k3/s1/e96/se0/relu/res/i8`.
/// Float keys carry no suffix, so every float key string is unchanged.
///
/// ```
/// use latency_tables::OpKey;
/// let key: OpKey = "ib/56x56x32/o32/k3/s1/e96/se0/relu/res".parse().unwrap();
/// assert_eq!(key.to_string(), "ib/56x56x32/o32/k3/s1/e96/se0/relu/res");
/// assert_eq!(key.output_hw(), (56, 56));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpKey {
    /// What kind of layer this is.
    pub kind: OpKind,
    /// Input height.
    pub h: u32,
    /// Input width.
    pub w: u32,
    /// Input channels.
    pub cin: u32,
    /// Output channels (classes for the classifier; `cin` for pooling).
    pub cout: u32,
    /// Spatial kernel size (1 where it does not apply).
    pub kernel: u32,
    /// Spatial stride (1 where it does not apply).
    pub stride: u32,
    /// Absolute expanded channels of a bottleneck (0 otherwise).
    pub expanded: u32,
    /// Hidden channels of the squeeze-and-excite block (0 = no SE).
    pub se: u32,
    /// Activation used inside the layer.
    pub act: Activation,
    /// Whether the layer's input is added to its output.
    pub residual: bool,
    /// The number format the layer runs in.
    pub precision: Precision,
}

impl OpKey {
    /// The stem convolution: `k×k`, stride `s`, `cin → cout`, followed by `act`.
    pub fn stem(
        h: u32,
        w: u32,
        cin: u32,
        cout: u32,
        kernel: u32,
        stride: u32,
        act: Activation,
    ) -> Self {
        OpKey {
            kind: OpKind::StemConv,
            h,
            w,
            cin,
            cout,
            kernel,
            stride,
            expanded: 0,
            se: 0,
            act,
            residual: false,
            precision: Precision::F32,
        }
    }

    /// A separable convolution.
    #[allow(clippy::too_many_arguments)]
    pub fn sep(
        h: u32,
        w: u32,
        cin: u32,
        cout: u32,
        kernel: u32,
        stride: u32,
        act: Activation,
        residual: bool,
    ) -> Self {
        OpKey {
            kind: OpKind::SepConv,
            h,
            w,
            cin,
            cout,
            kernel,
            stride,
            expanded: 0,
            se: 0,
            act,
            residual,
            precision: Precision::F32,
        }
    }

    /// An inverted bottleneck with `expanded` absolute channels and `se` SE hidden channels.
    #[allow(clippy::too_many_arguments)]
    pub fn bottleneck(
        h: u32,
        w: u32,
        cin: u32,
        cout: u32,
        kernel: u32,
        stride: u32,
        expanded: u32,
        se: u32,
        act: Activation,
        residual: bool,
    ) -> Self {
        OpKey {
            kind: OpKind::Bottleneck,
            h,
            w,
            cin,
            cout,
            kernel,
            stride,
            expanded,
            se,
            act,
            residual,
            precision: Precision::F32,
        }
    }

    /// A 1×1 head convolution followed by `act`.
    pub fn head(h: u32, w: u32, cin: u32, cout: u32, act: Activation) -> Self {
        OpKey {
            kind: OpKind::HeadConv,
            h,
            w,
            cin,
            cout,
            kernel: 1,
            stride: 1,
            expanded: 0,
            se: 0,
            act,
            residual: false,
            precision: Precision::F32,
        }
    }

    /// Global average pooling of an `h×w×c` tensor.
    pub fn pool(h: u32, w: u32, c: u32) -> Self {
        OpKey {
            kind: OpKind::GlobalPool,
            h,
            w,
            cin: c,
            cout: c,
            kernel: 1,
            stride: 1,
            expanded: 0,
            se: 0,
            act: Activation::None,
            residual: false,
            precision: Precision::F32,
        }
    }

    /// The classifier: `cin` features to `classes` logits.
    pub fn classifier(cin: u32, classes: u32) -> Self {
        OpKey {
            kind: OpKind::Classifier,
            h: 1,
            w: 1,
            cin,
            cout: classes,
            kernel: 1,
            stride: 1,
            expanded: 0,
            se: 0,
            act: Activation::None,
            residual: false,
            precision: Precision::F32,
        }
    }

    /// The same layer in `precision`.
    pub fn with_precision(self, precision: Precision) -> Self {
        OpKey { precision, ..self }
    }

    /// Output spatial size under TF "SAME" padding: `ceil(in / stride)`; pooling gives 1×1.
    pub fn output_hw(&self) -> (u32, u32) {
        match self.kind {
            OpKind::GlobalPool => (1, 1),
            _ => (self.h.div_ceil(self.stride), self.w.div_ceil(self.stride)),
        }
    }

    /// Output shape as (H, W, C).
    pub fn output_shape(&self) -> (u32, u32, u32) {
        let (h, w) = self.output_hw();
        (h, w, self.cout)
    }

    /// Multiply-accumulate count of the layer (a size hint for planning and sanity checks).
    pub fn macs(&self) -> u64 {
        let (oh, ow) = self.output_hw();
        let (oh, ow) = (u64::from(oh), u64::from(ow));
        let (h, w) = (u64::from(self.h), u64::from(self.w));
        let (cin, cout, k) = (u64::from(self.cin), u64::from(self.cout), u64::from(self.kernel));
        let (e, se) = (u64::from(self.expanded), u64::from(self.se));
        match self.kind {
            OpKind::StemConv => oh * ow * cout * cin * k * k,
            OpKind::SepConv => oh * ow * cin * k * k + oh * ow * cin * cout,
            OpKind::Bottleneck => {
                h * w * cin * e + oh * ow * e * k * k + 2 * e * se + oh * ow * e * cout
            }
            OpKind::HeadConv => h * w * cin * cout,
            OpKind::GlobalPool => h * w * cin,
            OpKind::Classifier => cin * cout,
        }
    }

    /// Checks that the key describes a buildable layer and that fields that do not apply to
    /// its kind hold their neutral values.
    pub fn validate(&self) -> Result<(), KeyError> {
        let bad = |what: String| Err(KeyError::Invalid { key: self.to_string(), reason: what });
        if self.h == 0 || self.w == 0 || self.cin == 0 || self.cout == 0 {
            return bad("sizes and channels must be positive".into());
        }
        let spatial = matches!(self.kind, OpKind::StemConv | OpKind::SepConv | OpKind::Bottleneck);
        if spatial {
            if self.kernel == 0 || self.kernel % 2 == 0 {
                return bad(format!("kernel must be odd and positive, got {}", self.kernel));
            }
            if self.stride == 0 || self.stride > self.kernel.max(2) {
                return bad(format!(
                    "stride {} is not allowed with kernel {}",
                    self.stride, self.kernel
                ));
            }
        } else if self.kernel != 1 || self.stride != 1 {
            return bad(format!("{} takes no kernel or stride", self.kind.tag()));
        }
        if self.kind == OpKind::Bottleneck {
            if self.expanded == 0 {
                return bad("a bottleneck needs expanded channels > 0".into());
            }
        } else if self.expanded != 0 || self.se != 0 {
            return bad(format!("{} takes no expansion or SE", self.kind.tag()));
        }
        match self.kind {
            OpKind::GlobalPool | OpKind::Classifier => {
                if self.act != Activation::None {
                    return bad(format!("{} takes no activation", self.kind.tag()));
                }
            }
            _ => {
                if self.act == Activation::None {
                    return bad(format!("{} needs an activation", self.kind.tag()));
                }
            }
        }
        if self.kind == OpKind::GlobalPool && self.cout != self.cin {
            return bad("pooling keeps its channels".into());
        }
        if self.kind == OpKind::Classifier && (self.h != 1 || self.w != 1) {
            return bad("the classifier takes a 1x1 input".into());
        }
        if self.residual {
            if !matches!(self.kind, OpKind::SepConv | OpKind::Bottleneck) {
                return bad(format!("{} cannot be residual", self.kind.tag()));
            }
            if self.stride != 1 || self.cin != self.cout {
                return bad(
                    "a residual layer needs stride 1 and equal input and output channels".into()
                );
            }
        }
        Ok(())
    }
}

impl OpKey {
    /// Checks the key against the size limits [`MAX_SPATIAL`], [`MAX_CHANNELS`], [`MAX_KERNEL`]
    /// and [`MAX_TENSOR_ELEMENTS`] (every activation and weight tensor of the layer). The error
    /// names the key, the field and the limit.
    ///
    /// Parsing does not check this (a key that is too large is still a key, which the agent
    /// answers with a per-key failure); building a model ([`crate::onnx`]) and loading a plan do.
    pub fn check_bounds(&self) -> Result<(), KeyError> {
        let out_of_bounds = |field: &str, value: u64, limit: u64| KeyError::OutOfBounds {
            key: self.to_string(),
            field: field.to_string(),
            value,
            limit,
        };
        let fields: [(&str, u32, u32); 8] = [
            ("height", self.h, MAX_SPATIAL),
            ("width", self.w, MAX_SPATIAL),
            ("input channels", self.cin, MAX_CHANNELS),
            ("output channels", self.cout, MAX_CHANNELS),
            ("expanded channels", self.expanded, MAX_CHANNELS),
            ("SE channels", self.se, MAX_CHANNELS),
            ("kernel", self.kernel, MAX_KERNEL),
            ("stride", self.stride, MAX_KERNEL),
        ];
        for (field, value, limit) in fields {
            if value > limit {
                return Err(out_of_bounds(field, u64::from(value), u64::from(limit)));
            }
        }
        // Within the limits above every product below is < 2^40: no overflow.
        for (tensor, elements) in self.tensor_sizes() {
            if elements > MAX_TENSOR_ELEMENTS {
                return Err(out_of_bounds(tensor, elements, MAX_TENSOR_ELEMENTS));
            }
        }
        Ok(())
    }

    /// Element counts of the layer's activation and weight tensors, by name. Only meaningful
    /// once the fields are within [`MAX_SPATIAL`], [`MAX_CHANNELS`] and [`MAX_KERNEL`].
    fn tensor_sizes(&self) -> Vec<(&'static str, u64)> {
        // Like `output_hw`, without dividing by a zero stride of a key that was never validated.
        let stride = self.stride.max(1);
        let (oh, ow) = match self.kind {
            OpKind::GlobalPool => (1, 1),
            _ => (self.h.div_ceil(stride), self.w.div_ceil(stride)),
        };
        let out_area = u64::from(oh) * u64::from(ow);
        let in_area = u64::from(self.h) * u64::from(self.w);
        let (cin, cout, k) = (u64::from(self.cin), u64::from(self.cout), u64::from(self.kernel));
        let (e, se) = (u64::from(self.expanded), u64::from(self.se));
        let mut sizes = vec![("input tensor", in_area * cin), ("output tensor", out_area * cout)];
        match self.kind {
            OpKind::StemConv => sizes.push(("weights", cout * cin * k * k)),
            OpKind::SepConv => {
                sizes.push(("depthwise output tensor", out_area * cin));
                sizes.push(("depthwise weights", cin * k * k));
                sizes.push(("pointwise weights", cout * cin));
            }
            OpKind::Bottleneck => {
                sizes.push(("expanded tensor", in_area * e));
                sizes.push(("depthwise output tensor", out_area * e));
                sizes.push(("expansion weights", e * cin));
                sizes.push(("depthwise weights", e * k * k));
                sizes.push(("SE weights", e * se));
                sizes.push(("projection weights", cout * e));
            }
            OpKind::HeadConv | OpKind::Classifier => sizes.push(("weights", cout * cin)),
            OpKind::GlobalPool => {}
        }
        sizes
    }
}

impl fmt::Display for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}x{}x{}", self.kind.tag(), self.h, self.w, self.cin)?;
        match self.kind {
            OpKind::StemConv => {
                write!(f, "/o{}/k{}/s{}/{}", self.cout, self.kernel, self.stride, self.act.tag())?
            }
            OpKind::SepConv => {
                write!(f, "/o{}/k{}/s{}/{}", self.cout, self.kernel, self.stride, self.act.tag())?
            }
            OpKind::Bottleneck => write!(
                f,
                "/o{}/k{}/s{}/e{}/se{}/{}",
                self.cout,
                self.kernel,
                self.stride,
                self.expanded,
                self.se,
                self.act.tag()
            )?,
            OpKind::HeadConv => write!(f, "/o{}/{}", self.cout, self.act.tag())?,
            OpKind::GlobalPool => {}
            OpKind::Classifier => write!(f, "/o{}", self.cout)?,
        }
        if self.residual {
            f.write_str("/res")?;
        }
        if self.precision != Precision::F32 {
            write!(f, "/{}", self.precision)?;
        }
        Ok(())
    }
}

impl FromStr for OpKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::Parse { input: s.to_string(), reason };
        let mut parts: Vec<&str> = s.split('/').collect();
        // The precision suffix; `f32` is never written (one key, one string).
        let precision = match parts.last() {
            Some(&"i8") => {
                parts.pop();
                Precision::I8
            }
            _ => Precision::F32,
        };
        let residual = parts.last() == Some(&"res");
        if residual {
            parts.pop();
        }
        let kind = OpKind::from_tag(parts[0]).ok_or_else(|| {
            err(format!(
                "unknown kind {:?} (expected one of stem, sep, ib, head, pool, fc)",
                parts[0]
            ))
        })?;
        let expected: &[&str] = match kind {
            OpKind::StemConv | OpKind::SepConv => &["HxWxC", "o", "k", "s", "act"],
            OpKind::Bottleneck => &["HxWxC", "o", "k", "s", "e", "se", "act"],
            OpKind::HeadConv => &["HxWxC", "o", "act"],
            OpKind::GlobalPool => &["HxWxC"],
            OpKind::Classifier => &["HxWxC", "o"],
        };
        if parts.len() != expected.len() + 1 {
            return Err(err(format!(
                "{} takes the fields {} (got {} fields)",
                kind.tag(),
                expected.join("/"),
                parts.len() - 1
            )));
        }
        let dims: Vec<&str> = parts[1].split('x').collect();
        if dims.len() != 3 {
            return Err(err(format!("input shape {:?} is not HxWxC", parts[1])));
        }
        let num = |text: &str, what: &str| -> Result<u32, KeyError> {
            // Canonical numbers: no sign, no leading zeros (except "0" itself).
            if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
                return Err(err(format!("{what} {text:?} is not a canonical number")));
            }
            text.parse::<u32>().map_err(|_| err(format!("{what} {text:?} is not a number")))
        };
        let field = |text: &str, prefix: &str| -> Result<u32, KeyError> {
            let rest = text
                .strip_prefix(prefix)
                .ok_or_else(|| err(format!("field {text:?} should start with {prefix:?}")))?;
            num(rest, prefix)
        };
        let act = |text: &str| {
            Activation::from_tag(text).filter(|a| *a != Activation::None).ok_or_else(|| {
                err(format!("unknown activation {text:?} (expected relu or hswish)"))
            })
        };
        let (h, w, cin) =
            (num(dims[0], "height")?, num(dims[1], "width")?, num(dims[2], "channels")?);
        let key = match kind {
            OpKind::StemConv => OpKey::stem(
                h,
                w,
                cin,
                field(parts[2], "o")?,
                field(parts[3], "k")?,
                field(parts[4], "s")?,
                act(parts[5])?,
            ),
            OpKind::SepConv => OpKey::sep(
                h,
                w,
                cin,
                field(parts[2], "o")?,
                field(parts[3], "k")?,
                field(parts[4], "s")?,
                act(parts[5])?,
                residual,
            ),
            OpKind::Bottleneck => {
                // "se" must be checked before "s" would swallow it.
                let se = field(parts[6], "se")?;
                OpKey::bottleneck(
                    h,
                    w,
                    cin,
                    field(parts[2], "o")?,
                    field(parts[3], "k")?,
                    field(parts[4], "s")?,
                    field(parts[5], "e")?,
                    se,
                    act(parts[7])?,
                    residual,
                )
            }
            OpKind::HeadConv => OpKey::head(h, w, cin, field(parts[2], "o")?, act(parts[3])?),
            OpKind::GlobalPool => OpKey::pool(h, w, cin),
            OpKind::Classifier => {
                if h != 1 || w != 1 {
                    return Err(err("the classifier takes a 1x1 input".into()));
                }
                OpKey::classifier(cin, field(parts[2], "o")?)
            }
        };
        let key = OpKey { residual, precision, ..key };
        key.validate().map_err(|e| err(e.to_string()))?;
        Ok(key)
    }
}

impl Serialize for OpKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OpKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// TF "SAME" padding for one spatial axis: `(before, after)`; the extra pixel goes after.
pub fn same_padding(input: u32, kernel: u32, stride: u32) -> (u32, u32) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_key() -> impl Strategy<Value = OpKey> {
        let precision = prop::sample::select(Precision::ALL.to_vec());
        (any_layer(), precision).prop_map(|(key, p)| key.with_precision(p))
    }

    fn any_layer() -> impl Strategy<Value = OpKey> {
        let hw = 1u32..300;
        let c = 1u32..3000;
        let k = prop::sample::select(vec![1u32, 3, 5, 7]);
        let act = prop::sample::select(vec![Activation::Relu, Activation::HSwish]);
        prop_oneof![
            (hw.clone(), hw.clone(), c.clone(), c.clone(), k.clone(), 1u32..3, act.clone())
                .prop_map(|(h, w, ci, co, k, s, a)| OpKey::stem(h, w, ci, co, k, s, a)),
            (hw.clone(), c.clone(), c.clone(), k.clone(), 1u32..3, act.clone(), any::<bool>())
                .prop_map(|(h, ci, co, k, s, a, r)| {
                    let co = if r { ci } else { co };
                    OpKey::sep(h, h, ci, co, k, if r { 1 } else { s }, a, r)
                }),
            (
                hw.clone(),
                c.clone(),
                c.clone(),
                k,
                1u32..3,
                c.clone(),
                0u32..800,
                act.clone(),
                any::<bool>()
            )
                .prop_map(|(h, ci, co, k, s, e, se, a, r)| {
                    let co = if r { ci } else { co };
                    OpKey::bottleneck(h, h, ci, co, k, if r { 1 } else { s }, e, se, a, r)
                }),
            (hw.clone(), c.clone(), c.clone(), act)
                .prop_map(|(h, ci, co, a)| OpKey::head(h, h, ci, co, a)),
            (hw, c.clone()).prop_map(|(h, ch)| OpKey::pool(h, h, ch)),
            (c.clone(), c).prop_map(|(ci, co)| OpKey::classifier(ci, co)),
        ]
    }

    proptest! {
        #[test]
        fn string_round_trip(key in any_key()) {
            prop_assert!(key.validate().is_ok(), "{key} should be valid");
            let text = key.to_string();
            let back: OpKey = text.parse().unwrap();
            prop_assert_eq!(&back, &key);
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn json_round_trip(key in any_key()) {
            let json = serde_json::to_string(&key).unwrap();
            let back: OpKey = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, key);
        }

        #[test]
        fn garbage_never_panics(s in "[a-z0-9/x]{0,40}") {
            let _ = s.parse::<OpKey>();
        }
    }

    #[test]
    fn examples_parse() {
        for text in [
            "stem/224x224x3/o32/k3/s2/relu",
            "sep/112x112x32/o16/k3/s1/relu",
            "sep/112x112x16/o16/k7/s1/relu/res",
            "ib/112x112x16/o32/k5/s2/e48/se0/relu",
            "ib/14x14x80/o80/k3/s1/e480/se120/hswish/res",
            "head/7x7x320/o1280/relu",
            "pool/7x7x1280",
            "fc/1x1x1280/o1001",
            "ib/14x14x80/o80/k3/s1/e480/se120/hswish/res/i8",
            "fc/1x1x1280/o1001/i8",
        ] {
            let key: OpKey = text.parse().unwrap();
            assert_eq!(key.to_string(), text);
        }
        let key: OpKey = "sep/112x112x16/o16/k7/s1/relu/res/i8".parse().unwrap();
        assert_eq!(key.precision, Precision::I8);
        assert!(key.residual);
        assert_eq!(
            key.clone().with_precision(Precision::F32).to_string(),
            "sep/112x112x16/o16/k7/s1/relu/res"
        );
    }

    #[test]
    fn bad_keys_are_clear_errors() {
        let cases = [
            ("conv/1x1x1/o1", "unknown kind"),
            ("ib/56x56x32/o32/k3/s1/e96/relu", "takes the fields"),
            ("ib/56x56x32/o32/k4/s1/e96/se0/relu", "kernel must be odd"),
            ("ib/56x56x32/o40/k3/s1/e96/se0/relu/res", "residual layer needs"),
            ("ib/56x56/o32/k3/s1/e96/se0/relu", "not HxWxC"),
            ("ib/56x56x32/o32/k3/s1/e096/se0/relu", "canonical number"),
            ("head/7x7x320/o1280/gelu", "unknown activation"),
            ("fc/7x7x1280/o1001", "1x1 input"),
            ("pool/7x7x1280/res", "cannot be residual"),
            ("head/7x7x320/o1280/relu/f32", "takes the fields"),
            ("head/7x7x320/o1280/relu/i8/res", "takes the fields"),
            ("head/7x7x320/o1280/relu/i4", "takes the fields"),
        ];
        for (text, needle) in cases {
            let err = text.parse::<OpKey>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.contains(text), "error should quote the input: {err}");
        }
    }

    #[test]
    fn oversized_keys_parse_but_fail_the_bounds_check() {
        let cases = [
            ("stem/100000x100000x3/o32/k3/s2/relu", "height is 100000", "4096"),
            ("head/7x7x320/o20000/relu", "output channels is 20000", "16384"),
            ("ib/56x56x32/o32/k33/s1/e96/se0/relu", "kernel is 33", "31"),
            ("ib/4096x4096x8/o8/k3/s1/e64/se0/relu", "expanded tensor", "268435456"),
            ("stem/4096x4096x32/o32/k3/s1/relu", "input tensor", "268435456"),
            ("stem/8x8x16384/o16384/k31/s1/relu", "weights", "268435456"),
            ("fc/1x1x16385/o1001", "input channels is 16385", "16384"),
        ];
        for (text, field, limit) in cases {
            let key: OpKey = text.parse().unwrap();
            let err = key.check_bounds().unwrap_err().to_string();
            assert!(err.contains(text) && err.contains(field) && err.contains(limit), "{err}");
        }
    }

    #[test]
    fn the_search_spaces_sizes_are_within_bounds() {
        for text in [
            "stem/224x224x3/o32/k3/s2/relu",
            "ib/112x112x16/o32/k7/s2/e96/se24/hswish",
            "head/7x7x320/o1280/relu",
            "pool/7x7x1280",
            "fc/1x1x1280/o1001",
            "stem/4096x4096x3/o32/k3/s2/relu",
            "fc/1x1x16384/o16384",
        ] {
            let key: OpKey = text.parse().unwrap();
            assert!(key.check_bounds().is_ok(), "{text}: {:?}", key.check_bounds());
        }
    }

    proptest! {
        #[test]
        fn bounds_check_never_panics(
            h in any::<u32>(), c in any::<u32>(), k in any::<u32>(), e in any::<u32>()
        ) {
            let key = OpKey::bottleneck(h, h, c, c, k, 0, e, e, Activation::Relu, false);
            let _ = key.check_bounds();
            let _ = OpKey { stride: 1, ..key }.check_bounds();
        }
    }

    #[test]
    fn same_padding_matches_tensorflow() {
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(112, 3, 1), (1, 1));
        assert_eq!(same_padding(112, 5, 2), (1, 2));
        assert_eq!(same_padding(7, 7, 1), (3, 3));
        assert_eq!(same_padding(7, 3, 2), (1, 1));
    }
}
