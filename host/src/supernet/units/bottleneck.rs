//! The inverted bottleneck: a shared 1×1 expansion and projection (+ BN) across kernel sizes and
//! SE, one depthwise conv + BN per kernel size, one SE weight set; expansion ratios and output
//! filters are channel masks. Residual and skippable when the layer is optional.

use candle_core::{Result, Tensor, Var, D};
use latency_tables::Activation;
use serde_json::json;

use super::{
    add_weighted, kernel_choices, kernel_sizes, mask, mask_kernel, optional, presence, Bn, Init,
    Pass, Read, SuperUnit, Widths,
};
use crate::space::{Param, SearchSpace};
use crate::supernet::net::{ProxyChannels, Selection};
use crate::supernet::ops::{conv1x1, depthwise_conv2d};
use crate::supernet::PlainLayer;

#[derive(Debug)]
struct Se {
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

#[derive(Debug)]
pub(super) struct Bottleneck {
    expand: Var,
    expand_bn: Bn,
    kernels: Vec<(Var, Bn)>,
    kernel: usize,
    se: Option<(usize, Se)>,
    skip: Option<usize>,
    stride: usize,
    act: Activation,
    proj: Var,
    proj_bn: Bn,
}

impl Bottleneck {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        init: &mut Init<'_>,
        space: &SearchSpace,
        name: &str,
        kernel: usize,
        se: Option<usize>,
        skip: Option<usize>,
        stride: usize,
        act: Activation,
        max: &ProxyChannels,
    ) -> Result<Bottleneck> {
        let (cin, cout) = (max.input, max.output);
        let e = max.expanded.unwrap_or(cin);
        let (ks, _) = kernel_choices(space, Param::Decision(kernel));
        // The draw order (SE, expansion, depthwise kernels, projection) fixes the weights of a
        // seed.
        let se = match se {
            Some(d) => {
                let h = max.se_hidden.unwrap_or(1);
                let s = Se {
                    w1: init.he(format!("{name}.se.reduce.weight"), &[h, e], e)?,
                    b1: init.constant(format!("{name}.se.reduce.bias"), h, 0.0)?,
                    w2: init.he(format!("{name}.se.expand.weight"), &[e, h], h)?,
                    b2: init.constant(format!("{name}.se.expand.bias"), e, 0.0)?,
                };
                Some((d, s))
            }
            None => None,
        };
        Ok(Bottleneck {
            expand: init.he(format!("{name}.expand.weight"), &[e, cin], cin)?,
            expand_bn: init.bn(&format!("{name}.expand"), e)?,
            kernels: init.depthwise(name, &ks, e)?,
            kernel,
            se,
            skip,
            stride,
            act,
            proj: init.he(format!("{name}.project.weight"), &[cout, e], e)?,
            proj_bn: init.bn(&format!("{name}.project"), cout)?,
        })
    }

    fn body(
        &self,
        pass: &mut Pass<'_>,
        x: &Tensor,
        sel: &Selection,
        w: &Widths<'_>,
        present: f32,
    ) -> Result<Tensor> {
        let e_max = w.max.expanded.unwrap_or(w.max.input);
        let emask = mask(w.chosen.expanded.unwrap_or(e_max), e_max, pass.dev)?;
        let xm = mask_kernel(&pass.t(&self.expand), &emask, &w.imask)?;
        pass.l2_of(&xm, present)?;
        let h = pass.bn(&conv1x1(x, &xm)?, &self.expand_bn, &emask, self.act)?;
        let cmask = emask.reshape((e_max, 1, 1))?;
        let mut acc: Option<Tensor> = None;
        for ((k, b), &sw) in self.kernels.iter().zip(&sel[self.kernel]) {
            if sw == 0.0 {
                continue;
            }
            let km = pass.t(k).broadcast_mul(&cmask)?;
            pass.l2_of(&km, sw * present)?;
            let d = depthwise_conv2d(&h, &km, self.stride)?;
            let d = pass.bn(&d, b, &emask, self.act)?;
            acc = Some(add_weighted(acc, &d, sw)?);
        }
        let mut h = acc.ok_or_else(|| candle_core::Error::msg("ib: no kernel"))?;
        if let Some((d, s)) = &self.se {
            let (off, on) = (sel[*d][0], sel[*d][1]);
            let hmax = w.max.se_hidden.unwrap_or(1);
            let hmask = mask(w.chosen.se_hidden.unwrap_or(1), hmax, pass.dev)?;
            let mut out: Option<Tensor> = None;
            if off != 0.0 {
                out = Some(add_weighted(None, &h, off)?);
            }
            if on != 0.0 {
                let w1 = mask_kernel(&pass.t(&s.w1), &hmask, &emask)?;
                let w2 = mask_kernel(&pass.t(&s.w2), &emask, &hmask)?;
                pass.l2_of(&w1, on * present)?;
                pass.l2_of(&w2, on * present)?;
                let b1 = pass.t(&s.b1).mul(&hmask)?;
                let b2 = pass.t(&s.b2).mul(&emask)?;
                let pooled = h.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
                let z =
                    conv1x1(&pooled, &w1)?.broadcast_add(&b1.reshape((1, hmax, 1, 1))?)?.relu()?;
                let gate = candle_nn::ops::sigmoid(
                    &conv1x1(&z, &w2)?.broadcast_add(&b2.reshape((1, e_max, 1, 1))?)?,
                )?;
                let y = h.broadcast_mul(&gate)?;
                out = Some(add_weighted(out, &y, on)?);
            }
            h = out.ok_or_else(|| candle_core::Error::msg("se: no branch"))?;
        }
        let pm = mask_kernel(&pass.t(&self.proj), &w.omask, &emask)?;
        pass.l2_of(&pm, present)?;
        pass.bn(&conv1x1(&h, &pm)?, &self.proj_bn, &w.omask, Activation::None)
    }
}

impl SuperUnit for Bottleneck {
    fn forward(
        &self,
        pass: &mut Pass<'_>,
        x: &Tensor,
        sel: &Selection,
        w: &Widths<'_>,
    ) -> Result<Tensor> {
        optional(self.skip, sel, x, |present| self.body(pass, x, sel, w, present))
    }

    fn extract(&self, r: Read, indices: &[usize], c: &ProxyChannels) -> Result<PlainLayer> {
        let e = c.expanded.unwrap_or(c.input);
        let (k, b) = &self.kernels[indices[self.kernel]];
        let se = match &self.se {
            Some((d, s)) if indices[*d] == 1 => {
                let h = c.se_hidden.unwrap_or(1);
                Some((
                    r.narrow2(&s.w1, h, e)?,
                    r.narrow1(&s.b1, h)?,
                    r.narrow2(&s.w2, e, h)?,
                    r.narrow1(&s.b2, e)?,
                ))
            }
            _ => None,
        };
        Ok(PlainLayer::Bottleneck {
            expand: r.narrow2(&self.expand, e, c.input)?,
            expand_bn: r.bn(&self.expand_bn, e)?,
            depthwise: r.narrow1(k, e)?,
            dw_bn: r.bn(b, e)?,
            stride: self.stride,
            act: self.act,
            se,
            project: r.narrow2(&self.proj, c.output, e)?,
            proj_bn: r.bn(&self.proj_bn, c.output)?,
            residual: self.skip.is_some(),
        })
    }

    fn describe(&self) -> Result<serde_json::Value> {
        let (e, ci) = self.expand.as_tensor().dims2()?;
        let co = self.proj.as_tensor().dim(0)?;
        let h = match &self.se {
            Some((_, s)) => Some(s.b1.as_tensor().dim(0)?),
            None => None,
        };
        Ok(json!({"kind": "ib", "cin_max": ci, "e_max": e, "cout_max": co,
                  "kernels": kernel_sizes(&self.kernels)?, "se_hidden_max": h,
                  "stride": self.stride, "act": self.act.tag(),
                  "skippable": self.skip.is_some()}))
    }

    fn describe_selection(&self, sel: &Selection, c: &ProxyChannels, v: &mut serde_json::Value) {
        v["present"] = json!(presence(self.skip, sel));
        v["e_sel"] = json!(c.expanded);
        v["kernel_weights"] = json!(sel[self.kernel]);
        if let Some((d, _)) = &self.se {
            v["se_weights"] = json!(sel[*d]);
            v["h_sel"] = json!(c.se_hidden);
        }
    }
}
