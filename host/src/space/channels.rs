//! The plan of a layer: its channels for one architecture (or the largest over all of them),
//! computed once from the space's data, and the op keys it resolves to. Op-key resolution, the
//! supernet's tensor sizes, its masks and the plain and stand-alone networks all read it; a
//! new kind of layer adds its arms here.

use latency_tables::OpKey;

use super::{scale_filters, se_hidden, DecisionKind, LayerSpec, Param, SearchSpace};

/// The deployment channels of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerChannels {
    /// Input channels.
    pub input: u32,
    /// Output channels (the block's filters).
    pub output: u32,
    /// A bottleneck's expanded channels (its expansion ratio applied to `input`).
    pub expanded: Option<u32>,
    /// A bottleneck's squeeze-and-excite hidden channels, when it has an SE slot (searched
    /// or not, on or off).
    pub se_hidden: Option<u32>,
    /// Whether that SE is on.
    pub se_on: bool,
    /// False when the layer is skipped (an identity).
    pub present: bool,
}

/// The channels of a layer `spec` with `input` → `output` channels, the choice of every
/// decision `d` being `pick(d)`.
pub fn layer_channels(
    space: &SearchSpace,
    spec: &LayerSpec,
    input: u32,
    output: u32,
    pick: &dyn Fn(usize) -> usize,
) -> LayerChannels {
    let mut c = LayerChannels {
        input,
        output,
        expanded: None,
        se_hidden: None,
        se_on: false,
        present: spec.skip().is_none_or(|d| pick(d) != 1),
    };
    if let LayerSpec::Bottleneck { expansion, se, .. } = *spec {
        let ratio = space.decisions[expansion].value(pick(expansion));
        let expanded = scale_filters(f64::from(input), f64::from(ratio));
        c.expanded = Some(expanded);
        c.se_hidden = se.map(|_| se_hidden(expanded));
        c.se_on = se.is_some_and(|d| pick(d) == 1);
    }
    c
}

impl SearchSpace {
    /// Every layer's channels, in order, of the architecture whose choice of decision `d` is
    /// `pick(d)`. The stem's input is the image's 3 channels.
    pub fn channel_plan(&self, pick: &dyn Fn(usize) -> usize) -> Vec<LayerChannels> {
        let mut input = 3;
        let mut out = Vec::new();
        for block in &self.blocks {
            let output = self.decisions[block.filters].value(pick(block.filters));
            for spec in &block.layers {
                out.push(layer_channels(self, spec, input, output, pick));
                input = output;
            }
        }
        out
    }

    /// Every layer's largest channels over all architectures (the supernet's tensor sizes):
    /// the largest filters and expansion, SE on, every layer present. Choices are ascending, so
    /// this is the plan of the last choice of each decision (the first of a skip).
    pub fn max_channel_plan(&self) -> Vec<LayerChannels> {
        self.channel_plan(&|d| match self.decisions[d].kind {
            DecisionKind::Skip => 0,
            _ => self.decisions[d].num_choices() - 1,
        })
    }
}

/// Keys of one layer spec given its input shape, channels and a way to read decisions.
/// Returns the keys (empty when skipped; two for a head with pooling) and the output size.
pub(super) fn layer_keys(
    space: &SearchSpace,
    spec: &LayerSpec,
    (h, w): (u32, u32),
    cin: u32,
    cout: u32,
    pick: &dyn Fn(usize) -> usize,
) -> (Vec<OpKey>, (u32, u32)) {
    let value = |d: usize| space.decisions[d].value(pick(d));
    let param = |p: Param| match p {
        Param::Fixed(v) => v,
        Param::Decision(d) => value(d),
    };
    let down = |s: u32| (h.div_ceil(s), w.div_ceil(s));
    let c = layer_channels(space, spec, cin, cout, pick);
    if !c.present {
        return (vec![], (h, w));
    }
    match *spec {
        LayerSpec::Conv { kernel, stride, act } => {
            (vec![OpKey::stem(h, w, cin, cout, param(kernel), stride, act)], down(stride))
        }
        LayerSpec::SepConv { kernel, skip, stride, act } => (
            vec![OpKey::sep(h, w, cin, cout, param(kernel), stride, act, skip.is_some())],
            down(stride),
        ),
        LayerSpec::Bottleneck { kernel, skip, stride, act, .. } => {
            let key = OpKey::bottleneck(
                h,
                w,
                cin,
                cout,
                value(kernel),
                stride,
                c.expanded.unwrap_or(cin),
                c.se_hidden.filter(|_| c.se_on).unwrap_or(0),
                act,
                skip.is_some(),
            );
            (vec![key], down(stride))
        }
        LayerSpec::Head { act, pool, .. } => {
            let mut keys = vec![OpKey::head(h, w, cin, cout, act)];
            if pool {
                keys.push(OpKey::pool(h, w, cout));
                (keys, (1, 1))
            } else {
                (keys, (h, w))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn the_largest_plan_bounds_every_architecture() {
        for name in ["proxylessnas", "proxylessnas-enlarged", "mobilenet-v3-like"] {
            let space = SearchSpace::by_name(name).unwrap();
            let max = space.max_channel_plan();
            let mut rng = Rng::new(5);
            for _ in 0..50 {
                let arch = space.random_architecture(&mut rng);
                let plan = space.channel_plan(&|d| arch.indices[d]);
                assert_eq!(plan.len(), max.len());
                for (c, m) in plan.iter().zip(&max) {
                    assert!(c.input <= m.input && c.output <= m.output, "{name}: {c:?} > {m:?}");
                    assert!(c.expanded.unwrap_or(0) <= m.expanded.unwrap_or(0));
                    assert!(c.se_hidden.unwrap_or(0) <= m.se_hidden.unwrap_or(0));
                    assert!(m.present && m.se_on == m.se_hidden.is_some());
                }
            }
        }
    }

    #[test]
    fn proxylessnas_mobile_has_the_published_channels() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let arch = space.parse_arch("proxylessnas-mobile").unwrap();
        let plan = space.channel_plan(&|d| arch.indices[d]);
        // Stem 3 → 32, the separable conv 32 → 16, then the first bottleneck 16 → 32 (×3: 48).
        assert_eq!((plan[0].input, plan[0].output), (3, 32));
        assert_eq!((plan[1].input, plan[1].output), (32, 16));
        assert_eq!((plan[2].input, plan[2].output, plan[2].expanded), (16, 32, Some(48)));
        assert!(plan.iter().all(|c| c.se_hidden.is_none() && !c.se_on));
    }
}
