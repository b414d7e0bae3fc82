//! The head: a 1×1 convolution + BN (or a bias, MobileNetV3's last conv, tunas-spec §1.6) +
//! activation, with global average pooling after it when `pool`.

use candle_core::{Result, Tensor, Var, D};
use latency_tables::Activation;
use serde_json::json;

use super::{mask_kernel, Bn, Init, Pass, Read, SuperUnit, Widths};
use crate::supernet::net::{ProxyChannels, Selection};
use crate::supernet::ops::conv1x1;
use crate::supernet::{HeadNorm, PlainLayer};

/// BN after the conv, or the conv's bias.
#[derive(Debug)]
enum Norm {
    Bn(Bn),
    Bias(Var),
}

#[derive(Debug)]
pub(super) struct Head {
    conv: Var,
    norm: Norm,
    act: Activation,
    pool: bool,
}

impl Head {
    pub(super) fn new(
        init: &mut Init<'_>,
        name: &str,
        act: Activation,
        pool: bool,
        bn: bool,
        max: &ProxyChannels,
    ) -> Result<Head> {
        let (cin, cout) = (max.input, max.output);
        let conv = init.he(format!("{name}.conv.weight"), &[cout, cin], cin)?;
        let norm = if bn {
            Norm::Bn(init.bn(name, cout)?)
        } else {
            Norm::Bias(init.constant(format!("{name}.conv.bias"), cout, 0.0)?)
        };
        Ok(Head { conv, norm, act, pool })
    }
}

impl SuperUnit for Head {
    fn forward(
        &self,
        pass: &mut Pass<'_>,
        x: &Tensor,
        _sel: &Selection,
        w: &Widths<'_>,
    ) -> Result<Tensor> {
        let wm = mask_kernel(&pass.t(&self.conv), &w.omask, &w.imask)?;
        pass.l2(|| wm.sqr()?.sum_all())?;
        let h = match &self.norm {
            Norm::Bn(b) => pass.bn(&conv1x1(x, &wm)?, b, &w.omask, self.act)?,
            Norm::Bias(bias) => {
                let bias = pass.t(bias).mul(&w.omask)?.reshape((1, w.max.output, 1, 1))?;
                crate::supernet::plain::act(&conv1x1(x, &wm)?.broadcast_add(&bias)?, self.act)?
            }
        };
        if self.pool {
            h.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)
        } else {
            Ok(h)
        }
    }

    fn pools(&self) -> bool {
        self.pool
    }

    fn extract(&self, r: Read, _indices: &[usize], c: &ProxyChannels) -> Result<PlainLayer> {
        Ok(PlainLayer::Head {
            weight: r.narrow2(&self.conv, c.output, c.input)?,
            norm: match &self.norm {
                Norm::Bn(b) => HeadNorm::Bn(r.bn(b, c.output)?),
                Norm::Bias(bias) => HeadNorm::Bias(r.narrow1(bias, c.output)?),
            },
            act: self.act,
            pool: self.pool,
        })
    }

    fn describe(&self) -> Result<serde_json::Value> {
        let (co, ci) = self.conv.as_tensor().dims2()?;
        Ok(json!({"kind": "head", "cin_max": ci, "cout_max": co, "act": self.act.tag(),
                  "pool": self.pool, "bn": matches!(self.norm, Norm::Bn(_))}))
    }
}
