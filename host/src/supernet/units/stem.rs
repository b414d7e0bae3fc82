//! The stem: a full convolution + BN + activation, one kernel per kernel choice.

use candle_core::{Result, Tensor, Var};
use latency_tables::Activation;
use serde_json::json;

use super::{
    add_weighted, kernel_choices, kernel_sizes, mask_kernel, switch, Bn, Init, Pass, Read,
    SuperUnit, Widths,
};
use crate::space::{Param, SearchSpace};
use crate::supernet::net::{ProxyChannels, Selection};
use crate::supernet::ops::conv2d_same;
use crate::supernet::PlainLayer;

#[derive(Debug)]
pub(super) struct Stem {
    kernels: Vec<(Var, Bn)>,
    kernel: Option<usize>,
    stride: usize,
    act: Activation,
}

impl Stem {
    pub(super) fn new(
        init: &mut Init<'_>,
        space: &SearchSpace,
        name: &str,
        kernel: Param,
        stride: usize,
        act: Activation,
        max: &ProxyChannels,
    ) -> Result<Stem> {
        let (cin, cout) = (max.input, max.output);
        let (ks, decision) = kernel_choices(space, kernel);
        let kernels = ks
            .iter()
            .map(|&k| {
                let k = k as usize;
                let w =
                    init.he(format!("{name}.conv{k}.weight"), &[cout, cin, k, k], k * k * cin)?;
                Ok((w, init.bn(&format!("{name}.conv{k}"), cout)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Stem { kernels, kernel: decision, stride, act })
    }
}

impl SuperUnit for Stem {
    fn forward(
        &self,
        pass: &mut Pass<'_>,
        x: &Tensor,
        sel: &Selection,
        w: &Widths<'_>,
    ) -> Result<Tensor> {
        let mut acc: Option<Tensor> = None;
        for ((k, b), &sw) in self.kernels.iter().zip(&switch(self.kernel, sel)) {
            if sw == 0.0 {
                continue;
            }
            let km = mask_kernel(&pass.t(k), &w.omask, &w.imask)?;
            pass.l2_of(&km, sw)?;
            let h = pass.bn(&conv2d_same(x, &km, self.stride)?, b, &w.omask, self.act)?;
            acc = Some(add_weighted(acc, &h, sw)?);
        }
        acc.ok_or_else(|| candle_core::Error::msg("stem: no kernel enabled"))
    }

    fn extract(&self, r: Read, indices: &[usize], c: &ProxyChannels) -> Result<PlainLayer> {
        let (w, b) = &self.kernels[self.kernel.map_or(0, |d| indices[d])];
        Ok(PlainLayer::Conv {
            weight: r.narrow2(w, c.output, c.input)?,
            bn: r.bn(b, c.output)?,
            stride: self.stride,
            act: self.act,
        })
    }

    fn describe(&self) -> Result<serde_json::Value> {
        let (co, ci, _, _) = self.kernels[0].0.as_tensor().dims4()?;
        Ok(json!({"kind": "stem", "cin_max": ci, "cout_max": co,
                  "kernels": kernel_sizes(&self.kernels)?, "stride": self.stride,
                  "act": self.act.tag()}))
    }

    fn describe_selection(&self, sel: &Selection, _c: &ProxyChannels, v: &mut serde_json::Value) {
        v["kernel_weights"] = json!(switch(self.kernel, sel));
    }
}
