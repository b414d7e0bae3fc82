//! A plain network at one architecture's selected widths (no masks, no switches), with its
//! forward pass built from Candle's native ops only: grouped `conv2d` for depthwise convolutions,
//! `conv2d` for 1×1 convolutions and batch norm from basic tensor ops. It is the independent
//! reference the supernet's masked path is checked against, and the network export starts from.

use candle_core::{Result, Tensor, D};
use latency_tables::{Activation, OpKey};

use super::ops::{hswish, pad_same};

/// What follows a head convolution.
#[derive(Debug, Clone)]
pub enum HeadNorm {
    /// A batch norm (γ, β).
    Bn((Tensor, Tensor)),
    /// The convolution's own bias `[Cout]` (no batch norm).
    Bias(Tensor),
}

/// One layer with concrete weights (`bn` = (γ, β)).
#[derive(Debug, Clone)]
pub enum PlainLayer {
    /// Full convolution + BN + activation.
    Conv {
        /// `[Cout, Cin, K, K]`.
        weight: Tensor,
        /// BN γ, β.
        bn: (Tensor, Tensor),
        /// Stride.
        stride: usize,
        /// Activation.
        act: Activation,
    },
    /// Depthwise + BN + act, 1×1 projection + BN (+ residual).
    Sep {
        /// `[C, K, K]`.
        depthwise: Tensor,
        /// BN after the depthwise conv.
        dw_bn: (Tensor, Tensor),
        /// Stride.
        stride: usize,
        /// Activation.
        act: Activation,
        /// `[Cout, C]`.
        project: Tensor,
        /// BN after the projection.
        proj_bn: (Tensor, Tensor),
        /// `x + layer(x)`.
        residual: bool,
    },
    /// Inverted bottleneck.
    Bottleneck {
        /// `[E, Cin]`.
        expand: Tensor,
        /// BN after the expansion.
        expand_bn: (Tensor, Tensor),
        /// `[E, K, K]`.
        depthwise: Tensor,
        /// BN after the depthwise conv.
        dw_bn: (Tensor, Tensor),
        /// Stride.
        stride: usize,
        /// Activation.
        act: Activation,
        /// SE: reduce weight `[H, E]`, bias, expand weight `[E, H]`, bias.
        se: Option<(Tensor, Tensor, Tensor, Tensor)>,
        /// `[Cout, E]`.
        project: Tensor,
        /// BN after the projection.
        proj_bn: (Tensor, Tensor),
        /// `x + layer(x)`.
        residual: bool,
    },
    /// 1×1 conv + BN (or bias) + act (+ global average pooling).
    Head {
        /// `[Cout, Cin]`.
        weight: Tensor,
        /// BN after the conv, or the conv's bias.
        norm: HeadNorm,
        /// Activation.
        act: Activation,
        /// Pool after.
        pool: bool,
    },
    /// The classifier on pooled features.
    Classifier {
        /// `[classes, C]`.
        weight: Tensor,
        /// `[classes]`.
        bias: Tensor,
    },
}

/// The convolutions and batch norms a plain network is made of. The convolutions default to the
/// fast custom CPU ops ([`super::ops`]); [`NativeOps`] is Candle's own ops with batch statistics
/// (the independent reference). The supernet's narrowed pass plugs in batch-statistics BN, the
/// stand-alone trainer stateful BN. Batch norms are called in [`PlainLayer::bn_parts`] order.
pub trait PlainOps {
    /// Full k×k convolution, TF SAME padding: w `[Cout, Cin, K, K]`.
    fn conv(&mut self, x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
        super::ops::conv2d_same(x, w, stride)
    }
    /// Depthwise convolution, TF SAME padding: w `[C, K, K]`.
    fn depthwise(&mut self, x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
        super::ops::depthwise_conv2d(x, w, stride)
    }
    /// 1×1 convolution: w `[Cout, Cin]`.
    fn pointwise(&mut self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        super::ops::conv1x1(x, w)
    }
    /// Batch norm with (γ, β).
    fn bn(&mut self, x: &Tensor, bn: &(Tensor, Tensor)) -> Result<Tensor>;
    /// Batch norm, then the activation `a` (ops that fuse the two override this).
    fn bn_act(&mut self, x: &Tensor, bn: &(Tensor, Tensor), a: Activation) -> Result<Tensor> {
        act(&self.bn(x, bn)?, a)
    }
}

/// Candle's native ops: grouped `conv2d` for depthwise, `conv2d` for 1×1, BN from basic tensor
/// ops with the batch's statistics.
#[derive(Debug, Clone, Copy)]
pub struct NativeOps {
    /// BN ε.
    pub eps: f64,
}

impl PlainOps for NativeOps {
    fn conv(&mut self, x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
        let k = w.dim(2)?;
        pad_same(x, k, stride)?.conv2d(w, 0, stride, 1, 1)
    }

    fn depthwise(&mut self, x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
        let (c, k, _) = w.dims3()?;
        pad_same(x, k, stride)?.conv2d(&w.reshape((c, 1, k, k))?, 0, stride, 1, c)
    }

    fn pointwise(&mut self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let (co, ci) = w.dims2()?;
        x.conv2d(&w.reshape((co, ci, 1, 1))?, 0, 1, 1, 1)
    }

    fn bn(&mut self, x: &Tensor, (g, b): &(Tensor, Tensor)) -> Result<Tensor> {
        let c = x.dim(1)?;
        let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
        xc.broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&g.reshape((1, c, 1, 1))?)?
            .broadcast_add(&b.reshape((1, c, 1, 1))?)
    }
}

/// `a(x)` with Candle's ops (ReLU, h-swish or none).
pub(super) fn act(x: &Tensor, a: Activation) -> Result<Tensor> {
    match a {
        Activation::Relu => x.relu(),
        Activation::HSwish => hswish(x),
        Activation::None => Ok(x.clone()),
    }
}

fn pool(x: &Tensor) -> Result<Tensor> {
    x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)
}

/// Forward pass with Candle's native ops and batch statistics in every BN: logits `[N, classes]`.
pub fn plain_forward(layers: &[PlainLayer], x: &Tensor, eps: f64) -> Result<Tensor> {
    forward_with(layers, x, &mut NativeOps { eps })
}

/// Forward pass with the given ops: logits `[N, classes]`.
pub fn forward_with(layers: &[PlainLayer], x: &Tensor, ops: &mut dyn PlainOps) -> Result<Tensor> {
    let mut x = x.clone();
    let mut pooled = false;
    for layer in layers {
        x = match layer {
            PlainLayer::Conv { weight, bn, stride, act: a } => {
                let y = ops.conv(&x, weight, *stride)?;
                ops.bn_act(&y, bn, *a)?
            }
            PlainLayer::Sep {
                depthwise: dw,
                dw_bn,
                stride,
                act: a,
                project,
                proj_bn,
                residual,
            } => {
                let h = ops.depthwise(&x, dw, *stride)?;
                let h = ops.bn_act(&h, dw_bn, *a)?;
                let y = ops.pointwise(&h, project)?;
                let y = ops.bn(&y, proj_bn)?;
                if *residual {
                    (&x + y)?
                } else {
                    y
                }
            }
            PlainLayer::Bottleneck {
                expand,
                expand_bn,
                depthwise: dw,
                dw_bn,
                stride,
                act: a,
                se,
                project,
                proj_bn,
                residual,
            } => {
                let h = ops.pointwise(&x, expand)?;
                let h = ops.bn_act(&h, expand_bn, *a)?;
                let h = ops.depthwise(&h, dw, *stride)?;
                let mut h = ops.bn_act(&h, dw_bn, *a)?;
                if let Some((w1, b1, w2, b2)) = se {
                    let (hc, ec) = w1.dims2()?;
                    let z = ops
                        .pointwise(&pool(&h)?, w1)?
                        .broadcast_add(&b1.reshape((1, hc, 1, 1))?)?;
                    let gate = ops
                        .pointwise(&z.relu()?, w2)?
                        .broadcast_add(&b2.reshape((1, ec, 1, 1))?)?;
                    h = h.broadcast_mul(&candle_nn::ops::sigmoid(&gate)?)?;
                }
                let y = ops.pointwise(&h, project)?;
                let y = ops.bn(&y, proj_bn)?;
                if *residual {
                    (&x + y)?
                } else {
                    y
                }
            }
            PlainLayer::Head { weight, norm, act: a, pool: p } => {
                let y = ops.pointwise(&x, weight)?;
                let y = match norm {
                    HeadNorm::Bn(bn) => ops.bn_act(&y, bn, *a)?,
                    HeadNorm::Bias(b) => {
                        act(&y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?, *a)?
                    }
                };
                if *p {
                    pooled = true;
                    pool(&y)?
                } else {
                    y
                }
            }
            PlainLayer::Classifier { weight, bias } => {
                let feats = if pooled { x.flatten_from(1)? } else { pool(&x)?.flatten_from(1)? };
                return feats.matmul(&weight.t()?)?.broadcast_add(bias);
            }
        };
    }
    candle_core::bail!("plain network without a classifier")
}

type TensorFn<'a> = dyn FnMut(&str, &Tensor) -> Result<Tensor> + 'a;

fn map_bn(f: &mut TensorFn, part: &str, (g, b): &(Tensor, Tensor)) -> Result<(Tensor, Tensor)> {
    Ok((f(&format!("{part}.bn.gamma"), g)?, f(&format!("{part}.bn.beta"), b)?))
}

impl PlainLayer {
    /// The op keys of this layer at input `hw`×`hw` with `cin` input channels (its own weights
    /// give the rest; a head with pooling adds a pool key), the output size and channels.
    pub fn op_keys(&self, hw: u32, cin: u32) -> anyhow::Result<(Vec<OpKey>, u32, u32)> {
        let u = |v: usize| v as u32;
        Ok(match self {
            PlainLayer::Conv { weight, stride, act, .. } => {
                let (co, ci, k, _) = weight.dims4()?;
                let key = OpKey::stem(hw, hw, u(ci), u(co), u(k), u(*stride), *act);
                (vec![key], hw.div_ceil(u(*stride)), u(co))
            }
            PlainLayer::Sep { depthwise, stride, act, project, residual, .. } => {
                let (_, k, _) = depthwise.dims3()?;
                let (co, _) = project.dims2()?;
                let key = OpKey::sep(hw, hw, cin, u(co), u(k), u(*stride), *act, *residual);
                (vec![key], hw.div_ceil(u(*stride)), u(co))
            }
            PlainLayer::Bottleneck {
                expand,
                depthwise,
                stride,
                act,
                se,
                project,
                residual,
                ..
            } => {
                let (e, _) = expand.dims2()?;
                let (_, k, _) = depthwise.dims3()?;
                let (co, _) = project.dims2()?;
                let se = match se {
                    Some((w1, ..)) => u(w1.dims2()?.0),
                    None => 0,
                };
                let key = OpKey::bottleneck(
                    hw,
                    hw,
                    cin,
                    u(co),
                    u(k),
                    u(*stride),
                    u(e),
                    se,
                    *act,
                    *residual,
                );
                (vec![key], hw.div_ceil(u(*stride)), u(co))
            }
            PlainLayer::Head { weight, act, pool, .. } => {
                let (co, _) = weight.dims2()?;
                let mut keys = vec![OpKey::head(hw, hw, cin, u(co), *act)];
                if *pool {
                    keys.push(OpKey::pool(hw, hw, u(co)));
                }
                (keys, if *pool { 1 } else { hw }, u(co))
            }
            PlainLayer::Classifier { weight, .. } => {
                if hw != 1 {
                    anyhow::bail!("the classifier needs pooled features");
                }
                (vec![OpKey::classifier(cin, u(weight.dims2()?.0))], 1, u(weight.dims2()?.0))
            }
        })
    }

    /// The same layer with every tensor replaced by `f(name, tensor)`; names are the layer's
    /// parts: `conv.weight`, `dw.weight`, `dw.bn.gamma`, `se_reduce.bias`, `fc.weight`, …
    /// (the ONNX builder's part names), visited in a fixed order.
    pub fn map(&self, f: &mut TensorFn) -> Result<PlainLayer> {
        Ok(match self {
            PlainLayer::Conv { weight, bn, stride, act } => PlainLayer::Conv {
                weight: f("conv.weight", weight)?,
                bn: map_bn(f, "conv", bn)?,
                stride: *stride,
                act: *act,
            },
            PlainLayer::Sep { depthwise, dw_bn, stride, act, project, proj_bn, residual } => {
                PlainLayer::Sep {
                    depthwise: f("dw.weight", depthwise)?,
                    dw_bn: map_bn(f, "dw", dw_bn)?,
                    stride: *stride,
                    act: *act,
                    project: f("pw.weight", project)?,
                    proj_bn: map_bn(f, "pw", proj_bn)?,
                    residual: *residual,
                }
            }
            PlainLayer::Bottleneck {
                expand,
                expand_bn,
                depthwise,
                dw_bn,
                stride,
                act,
                se,
                project,
                proj_bn,
                residual,
            } => PlainLayer::Bottleneck {
                expand: f("expand.weight", expand)?,
                expand_bn: map_bn(f, "expand", expand_bn)?,
                depthwise: f("dw.weight", depthwise)?,
                dw_bn: map_bn(f, "dw", dw_bn)?,
                stride: *stride,
                act: *act,
                se: match se {
                    Some((w1, b1, w2, b2)) => Some((
                        f("se_reduce.weight", w1)?,
                        f("se_reduce.bias", b1)?,
                        f("se_expand.weight", w2)?,
                        f("se_expand.bias", b2)?,
                    )),
                    None => None,
                },
                project: f("project.weight", project)?,
                proj_bn: map_bn(f, "project", proj_bn)?,
                residual: *residual,
            },
            PlainLayer::Head { weight, norm, act, pool } => PlainLayer::Head {
                weight: f("conv.weight", weight)?,
                norm: match norm {
                    HeadNorm::Bn(bn) => HeadNorm::Bn(map_bn(f, "conv", bn)?),
                    HeadNorm::Bias(b) => HeadNorm::Bias(f("conv.bias", b)?),
                },
                act: *act,
                pool: *pool,
            },
            PlainLayer::Classifier { weight, bias } => PlainLayer::Classifier {
                weight: f("fc.weight", weight)?,
                bias: f("fc.bias", bias)?,
            },
        })
    }

    /// Every tensor with its part name, in [`PlainLayer::map`] order.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        self.map(&mut |name, t| {
            out.push((name.to_string(), t.clone()));
            Ok(t.clone())
        })?;
        Ok(out)
    }

    /// The convolution kernels the L2 penalty covers (not BN, biases or the classifier).
    pub fn kernels(&self) -> Vec<&Tensor> {
        match self {
            PlainLayer::Conv { weight, .. } => vec![weight],
            PlainLayer::Sep { depthwise, project, .. } => vec![depthwise, project],
            PlainLayer::Bottleneck { expand, depthwise, se, project, .. } => {
                let mut v = vec![expand, depthwise];
                if let Some((w1, _, w2, _)) = se {
                    v.extend([w1, w2]);
                }
                v.push(project);
                v
            }
            PlainLayer::Head { weight, .. } => vec![weight],
            PlainLayer::Classifier { .. } => vec![],
        }
    }

    /// The parts that end in a batch norm, in the order a forward pass calls them.
    pub fn bn_parts(&self) -> &'static [&'static str] {
        match self {
            PlainLayer::Conv { .. } | PlainLayer::Head { norm: HeadNorm::Bn(_), .. } => &["conv"],
            PlainLayer::Head { norm: HeadNorm::Bias(_), .. } => &[],
            PlainLayer::Sep { .. } => &["dw", "pw"],
            PlainLayer::Bottleneck { .. } => &["expand", "dw", "project"],
            PlainLayer::Classifier { .. } => &[],
        }
    }
}
