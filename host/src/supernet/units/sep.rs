//! The separable conv: one complete separable conv per kernel choice (depthwise + BN + act,
//! pointwise + BN), switched as a whole (tunas-spec §4.3: it is not collapsed); residual and
//! skippable when the layer is optional.

use candle_core::{Result, Tensor, Var};
use latency_tables::Activation;
use serde_json::json;

use super::{
    add_weighted, kernel_choices, mask_kernel, optional, presence, switch, Bn, Init, Pass, Read,
    SuperUnit, Widths,
};
use crate::space::{Param, SearchSpace};
use crate::supernet::net::{ProxyChannels, Selection};
use crate::supernet::ops::{conv1x1, depthwise_conv2d};
use crate::supernet::PlainLayer;

#[derive(Debug)]
struct Branch {
    dw: Var,
    dw_bn: Bn,
    proj: Var,
    proj_bn: Bn,
}

#[derive(Debug)]
pub(super) struct Sep {
    branches: Vec<Branch>,
    kernel: Option<usize>,
    skip: Option<usize>,
    stride: usize,
    act: Activation,
}

impl Sep {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        init: &mut Init<'_>,
        space: &SearchSpace,
        name: &str,
        kernel: Param,
        skip: Option<usize>,
        stride: usize,
        act: Activation,
        max: &ProxyChannels,
    ) -> Result<Sep> {
        let (cin, cout) = (max.input, max.output);
        let (ks, decision) = kernel_choices(space, kernel);
        let branches = init
            .depthwise(name, &ks, cin)?
            .into_iter()
            .zip(&ks)
            .map(|((dw, dw_bn), k)| {
                let pname = format!("{name}.dw{k}.project");
                Ok(Branch {
                    dw,
                    dw_bn,
                    proj: init.he(format!("{pname}.weight"), &[cout, cin], cin)?,
                    proj_bn: init.bn(&pname, cout)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Sep { branches, kernel: decision, skip, stride, act })
    }

    fn body(
        &self,
        pass: &mut Pass<'_>,
        x: &Tensor,
        sel: &Selection,
        w: &Widths<'_>,
        present: f32,
    ) -> Result<Tensor> {
        let cmask = w.imask.reshape((w.max.input, 1, 1))?;
        let mut acc: Option<Tensor> = None;
        for (b, &sw) in self.branches.iter().zip(&switch(self.kernel, sel)) {
            if sw == 0.0 {
                continue;
            }
            let dm = pass.t(&b.dw).broadcast_mul(&cmask)?;
            pass.l2_of(&dm, sw * present)?;
            let h = depthwise_conv2d(x, &dm, self.stride)?;
            let h = pass.bn(&h, &b.dw_bn, &w.imask, self.act)?;
            let pm = mask_kernel(&pass.t(&b.proj), &w.omask, &w.imask)?;
            pass.l2_of(&pm, sw * present)?;
            let h = pass.bn(&conv1x1(&h, &pm)?, &b.proj_bn, &w.omask, Activation::None)?;
            acc = Some(add_weighted(acc, &h, sw)?);
        }
        acc.ok_or_else(|| candle_core::Error::msg("sep: no kernel"))
    }
}

impl SuperUnit for Sep {
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
        let b = &self.branches[self.kernel.map_or(0, |d| indices[d])];
        Ok(PlainLayer::Sep {
            depthwise: r.narrow1(&b.dw, c.input)?,
            dw_bn: r.bn(&b.dw_bn, c.input)?,
            stride: self.stride,
            act: self.act,
            project: r.narrow2(&b.proj, c.output, c.input)?,
            proj_bn: r.bn(&b.proj_bn, c.output)?,
            residual: self.skip.is_some(),
        })
    }

    fn describe(&self) -> Result<serde_json::Value> {
        let (co, ci) = self.branches[0].proj.as_tensor().dims2()?;
        let ks: Vec<usize> =
            self.branches.iter().map(|b| b.dw.as_tensor().dim(1)).collect::<Result<_>>()?;
        Ok(json!({"kind": "sep", "cin_max": ci, "cout_max": co, "kernels": ks,
                  "stride": self.stride, "act": self.act.tag(),
                  "skippable": self.skip.is_some()}))
    }

    fn describe_selection(&self, sel: &Selection, _c: &ProxyChannels, v: &mut serde_json::Value) {
        v["kernel_weights"] = json!(switch(self.kernel, sel));
        v["present"] = json!(presence(self.skip, sel));
    }
}
