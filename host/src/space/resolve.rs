//! (space, architecture, resolution) → op keys; space → every op key it can contain (the plan).

use std::collections::BTreeSet;

use latency_tables::{Network, OpKey, Precision};

use super::channels::layer_keys;
use super::{Architecture, DecisionKind, LayerSpec, SearchSpace};

/// One layer of a resolved architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedLayer {
    /// `block/layerN`, `head/pool` or `classifier`.
    pub name: String,
    /// The op key, or `None` when the layer is skipped (identity).
    pub key: Option<OpKey>,
}

/// A resolved architecture: every layer (skips included) and the network of the present ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// All layers in order.
    pub layers: Vec<ResolvedLayer>,
    /// The present layers as a network.
    pub network: Network,
}

impl Resolved {
    /// The same layers in `precision` (a table's, [`latency_tables::LatencyTable::precision`]).
    pub fn with_precision(self, precision: Precision) -> Self {
        let layers = self
            .layers
            .into_iter()
            .map(|l| ResolvedLayer { key: l.key.map(|k| k.with_precision(precision)), ..l })
            .collect();
        Resolved { layers, network: self.network.with_precision(precision) }
    }
}

/// The decisions a layer reads besides its block's filters (skip, kernel, expansion, SE).
fn local_decisions(spec: &LayerSpec) -> Vec<usize> {
    spec.skip().into_iter().chain(spec.op_decisions()).collect()
}

fn filters_of(space: &SearchSpace, d: usize) -> &[u32] {
    match &space.decisions[d].kind {
        DecisionKind::Filters(v) => v,
        _ => &[],
    }
}

impl SearchSpace {
    /// Resolves an architecture at an input resolution into op keys.
    pub fn resolve(&self, arch: &Architecture, resolution: u32) -> Resolved {
        let pick = |d: usize| arch.indices[d];
        let mut hw = (resolution, resolution);
        let mut cin = 3;
        let mut layers = Vec::new();
        for block in &self.blocks {
            let cout = self.decisions[block.filters].value(pick(block.filters));
            for (i, spec) in block.layers.iter().enumerate() {
                let (keys, out) = layer_keys(self, spec, hw, cin, cout, &pick);
                let name = format!("{}/layer{i}", block.name);
                if keys.is_empty() {
                    layers.push(ResolvedLayer { name: name.clone(), key: None });
                }
                for (j, key) in keys.into_iter().enumerate() {
                    let name = if j == 0 { name.clone() } else { format!("{}/pool", block.name) };
                    layers.push(ResolvedLayer { name, key: Some(key) });
                }
                hw = out;
                cin = cout;
            }
        }
        layers.push(ResolvedLayer {
            name: "classifier".into(),
            key: Some(OpKey::classifier(cin, self.classes)),
        });
        let network = Network::new(layers.iter().filter_map(|l| l.key.clone()).collect());
        Resolved { layers, network }
    }

    /// Every distinct op key that any architecture of the space can contain at `resolution`.
    pub fn plan(&self, resolution: u32) -> BTreeSet<OpKey> {
        let mut keys = BTreeSet::new();
        let mut hw = (resolution, resolution);
        let mut prev: Vec<u32> = vec![3];
        for block in &self.blocks {
            let outs = filters_of(self, block.filters).to_vec();
            for (i, spec) in block.layers.iter().enumerate() {
                let locals = local_decisions(spec);
                let radices: Vec<usize> =
                    locals.iter().map(|&d| self.decisions[d].num_choices()).collect();
                let combos: usize = radices.iter().product();
                let mut out_hw = hw;
                for &cout in &outs {
                    let cins: Vec<u32> = if i == 0 { prev.clone() } else { vec![cout] };
                    for cin in cins {
                        for combo in 0..combos {
                            let mut digits = vec![0usize; locals.len()];
                            let mut rest = combo;
                            for (slot, &r) in radices.iter().enumerate() {
                                digits[slot] = rest % r;
                                rest /= r;
                            }
                            let pick = |d: usize| {
                                locals.iter().position(|&x| x == d).map_or(0, |p| digits[p])
                            };
                            let (layer, out) = layer_keys(self, spec, hw, cin, cout, &pick);
                            keys.extend(layer);
                            out_hw = out;
                        }
                    }
                }
                hw = out_hw;
            }
            prev = outs;
        }
        for &cin in &prev {
            keys.insert(OpKey::classifier(cin, self.classes));
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxylessnas_mobile_resolves_to_the_published_network() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let arch = space.parse_arch("proxylessnas-mobile").unwrap();
        let r = space.resolve(&arch, 224);
        r.network.check_chain().unwrap();
        let keys: Vec<String> = r.network.layers.iter().map(|k| k.to_string()).collect();
        assert_eq!(keys[0], "stem/224x224x3/o32/k3/s2/relu");
        assert_eq!(keys[1], "sep/112x112x32/o16/k3/s1/relu");
        // block2 layer0: kernel 5, x3 of 16 inputs = 48.
        assert_eq!(keys[2], "ib/112x112x16/o32/k5/s2/e48/se0/relu");
        assert_eq!(keys[keys.len() - 3], "head/7x7x320/o1280/relu");
        assert_eq!(keys[keys.len() - 2], "pool/7x7x1280");
        assert_eq!(keys[keys.len() - 1], "fc/1x1x1280/o1001");
        // ProxylessNAS-Mobile has 21 bottleneck slots, 2 of them skipped (ops 6 in block 2);
        // 19 present + stem, sepconv, head, pool, classifier.
        assert_eq!(r.layers.iter().filter(|l| l.key.is_none()).count(), 2);
        assert_eq!(keys.len(), 19 + 5);
    }

    #[test]
    fn v3_like_expansion_and_se_follow_the_reference_rounding() {
        let space = SearchSpace::by_name("mobilenet-v3-like").unwrap();
        // All max: 32-channel stem, block1 layer0 ×6 of 32 = 192, SE hidden make_divisible(48) = 48.
        let max = "1:2:0:3:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:3:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:5:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:6:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:6:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:6:6:6";
        let r = space.resolve(&space.parse_arch(max).unwrap(), 224);
        r.network.check_chain().unwrap();
        let keys: Vec<String> = r.network.layers.iter().map(|k| k.to_string()).collect();
        assert_eq!(keys[0], "stem/224x224x3/o32/k5/s2/hswish");
        assert_eq!(keys[1], "sep/112x112x32/o32/k7/s1/relu/res");
        assert_eq!(keys[2], "ib/112x112x32/o32/k7/s2/e192/se48/relu");
        assert_eq!(keys[keys.len() - 4], "head/7x7x512/o1024/hswish");
        assert_eq!(keys[keys.len() - 2], "head/1x1x1024/o2048/hswish");
        assert_eq!(keys[keys.len() - 1], "fc/1x1x2048/o1001");
        // 24 x5 = 120 (the spec's example).
        assert_eq!(crate::space::scale_filters(24.0, 5.0), 120);
    }

    #[test]
    fn every_resolved_key_is_in_the_plan() {
        for name in crate::space::space_names() {
            let space = SearchSpace::by_name(name).unwrap();
            let plan = space.plan(224);
            let mut seed = 12345u64;
            for _ in 0..200 {
                let indices = space
                    .decisions
                    .iter()
                    .map(|d| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((seed >> 33) as usize) % d.num_choices()
                    })
                    .collect();
                let arch = space.check_arch(indices).unwrap();
                let r = space.resolve(&arch, 224);
                r.network.check_chain().unwrap();
                for key in &r.network.layers {
                    assert!(plan.contains(key), "{name}: {key} missing from the plan");
                }
            }
        }
    }
}
