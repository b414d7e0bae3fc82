//! A plain network at one architecture's selected widths (no masks, no switches), with its
//! forward pass built from Candle's native ops only: grouped `conv2d` for depthwise convolutions,
//! `conv2d` for 1×1 convolutions and batch norm from basic tensor ops. It is the independent
//! reference the supernet's masked path is checked against, and the network export starts from.

use candle_core::{Result, Tensor, D};
use latency_tables::Activation;

use super::ops::{hswish, pad_same};

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
    /// 1×1 conv + BN + act (+ global average pooling).
    Head {
        /// `[Cout, Cin]`.
        weight: Tensor,
        /// BN.
        bn: (Tensor, Tensor),
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

fn batch_norm(x: &Tensor, (g, b): &(Tensor, Tensor), eps: f64) -> Result<Tensor> {
    let c = x.dim(1)?;
    let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
    xc.broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(&g.reshape((1, c, 1, 1))?)?
        .broadcast_add(&b.reshape((1, c, 1, 1))?)
}

fn act(x: &Tensor, a: Activation) -> Result<Tensor> {
    match a {
        Activation::Relu => x.relu(),
        Activation::HSwish => hswish(x),
        Activation::None => Ok(x.clone()),
    }
}

fn pointwise(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (co, ci) = w.dims2()?;
    x.conv2d(&w.reshape((co, ci, 1, 1))?, 0, 1, 1, 1)
}

fn depthwise(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (c, k, _) = w.dims3()?;
    pad_same(x, k, stride)?.conv2d(&w.reshape((c, 1, k, k))?, 0, stride, 1, c)
}

fn pool(x: &Tensor) -> Result<Tensor> {
    x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)
}

/// Forward pass with Candle's native ops and batch statistics in every BN: logits `[N, classes]`.
pub fn plain_forward(layers: &[PlainLayer], x: &Tensor, eps: f64) -> Result<Tensor> {
    let mut x = x.clone();
    let mut pooled = false;
    for layer in layers {
        x = match layer {
            PlainLayer::Conv { weight, bn, stride, act: a } => {
                let k = weight.dim(2)?;
                let y = pad_same(&x, k, *stride)?.conv2d(weight, 0, *stride, 1, 1)?;
                act(&batch_norm(&y, bn, eps)?, *a)?
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
                let h = act(&batch_norm(&depthwise(&x, dw, *stride)?, dw_bn, eps)?, *a)?;
                let y = batch_norm(&pointwise(&h, project)?, proj_bn, eps)?;
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
                let h = act(&batch_norm(&pointwise(&x, expand)?, expand_bn, eps)?, *a)?;
                let mut h = act(&batch_norm(&depthwise(&h, dw, *stride)?, dw_bn, eps)?, *a)?;
                if let Some((w1, b1, w2, b2)) = se {
                    let (hc, ec) = w1.dims2()?;
                    let z =
                        pointwise(&pool(&h)?, w1)?.broadcast_add(&b1.reshape((1, hc, 1, 1))?)?;
                    let gate =
                        pointwise(&z.relu()?, w2)?.broadcast_add(&b2.reshape((1, ec, 1, 1))?)?;
                    h = h.broadcast_mul(&candle_nn::ops::sigmoid(&gate)?)?;
                }
                let y = batch_norm(&pointwise(&h, project)?, proj_bn, eps)?;
                if *residual {
                    (&x + y)?
                } else {
                    y
                }
            }
            PlainLayer::Head { weight, bn, act: a, pool: p } => {
                let y = act(&batch_norm(&pointwise(&x, weight)?, bn, eps)?, *a)?;
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
