//! The three TuNAS search spaces, exactly as `mobile_search_space_v3.py` builds them
//! (tunas-spec §1.4–1.6), with decisions pushed in the reference post-order, and the reference
//! architectures of `mobile_model_archive.py` in the collapsed index encoding.

use latency_tables::Activation::{self, HSwish, Relu};

use super::{Block, Decision, DecisionKind, LayerSpec, Param, SearchSpace};

/// The filter multipliers of the Enlarged and V3-Like spaces.
const MULTIPLIERS: [f64; 7] = [0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0];

/// Our names of the spaces, in the order `space list` shows them.
pub fn space_names() -> Vec<&'static str> {
    vec!["proxylessnas", "proxylessnas-enlarged", "mobilenet-v3-like"]
}

pub(super) fn by_name(name: &str) -> Option<SearchSpace> {
    match name {
        "proxylessnas" | "proxylessnas_search" => Some(proxylessnas(false)),
        "proxylessnas-enlarged" | "proxylessnas_enlarged_search" => Some(proxylessnas(true)),
        "mobilenet-v3-like" | "mobilenet_v3_like_search" => Some(mobilenet_v3_like()),
        _ => None,
    }
}

/// A named architecture of a space.
#[derive(Debug, Clone, Copy)]
pub struct RefArch {
    /// Name, accepted by `--arch`.
    pub name: &'static str,
    /// The index string.
    pub indices: &'static str,
    /// Where it comes from.
    pub note: &'static str,
}

/// The reference architectures that can be written in `space`.
pub fn reference_architectures(space: &str) -> Vec<RefArch> {
    match space {
        "proxylessnas" => vec![RefArch {
            name: "proxylessnas-mobile",
            indices: "0:0:0:1:0:0:0:0:0:0:0:1:0:0:1:0:2:0:0:0:0:0:1:0:0:1:0:0:0:2:1:0:1:0:0:1:0:0:1:0:0:0:1:1:0:1:0:0:1:0:0:1:0:0:0:2:1:0:2:1:0:2:0:0:2:0:0:0:2:1:0:0:0",
            note: "ProxylessNAS-Mobile (mobile_model_archive.py); paper Table 3: 84.4 ms",
        }],
        "proxylessnas-enlarged" => vec![
            RefArch {
                name: "proxylessnas-mobile",
                indices: "3:0:1:1:0:0:0:0:0:0:0:1:0:0:1:3:2:0:0:0:0:0:1:0:0:1:0:0:3:2:1:0:1:0:0:1:0:0:1:0:0:4:1:1:0:1:0:0:1:0:0:1:0:0:2:2:1:0:2:1:0:2:0:0:2:0:0:2:2:1:0:1:4",
                note: "ProxylessNAS-Mobile (mobile_model_archive.py); paper Table 3: 84.4 ms",
            },
            RefArch {
                name: "mobilenet-v2",
                indices: "3:0:1:0:1:0:0:1:0:0:0:1:0:0:1:2:0:1:0:0:1:0:0:1:0:0:0:1:2:0:1:0:0:1:0:0:1:0:0:1:0:3:0:1:0:0:1:0:0:1:0:0:0:1:2:0:1:0:0:1:0:0:1:0:0:0:1:1:0:1:0:1:4",
                note: "MobileNetV2 (mobile_model_archive.py); paper Table 3: 77.2 ms",
            },
            RefArch {
                name: "mnasnet-b1",
                indices: "3:0:1:0:0:0:0:0:0:0:0:0:0:0:1:2:1:0:0:1:0:0:1:0:0:0:0:1:3:1:1:0:1:1:0:1:1:0:0:0:1:4:0:1:0:0:1:0:0:0:1:0:0:1:2:1:1:0:1:1:0:1:1:0:1:1:0:2:0:1:0:1:4",
                note: "MnasNet-B1 (mobile_model_archive.py); paper Table 3: 84.5 ms",
            },
        ],
        _ => vec![],
    }
}

/// Pushes decisions in index order while the blocks are described.
struct Builder {
    decisions: Vec<Decision>,
    blocks: Vec<Block>,
}

impl Builder {
    fn new() -> Self {
        Builder { decisions: Vec::new(), blocks: Vec::new() }
    }

    fn add(&mut self, name: String, kind: DecisionKind) -> usize {
        self.decisions.push(Decision { name, kind });
        self.decisions.len() - 1
    }

    fn block(&mut self, name: &str, layers: Vec<LayerSpec>, filters: Vec<u32>) {
        let filters = self.add(format!("{name}/filters"), DecisionKind::Filters(filters));
        self.blocks.push(Block { name: name.to_string(), layers, filters });
    }

    /// One bottleneck layer: kernel, expansion, [SE], then skip (or the single-choice op).
    #[allow(clippy::too_many_arguments)]
    fn bottleneck(
        &mut self,
        block: &str,
        layer: usize,
        expansions: &[u32],
        search_se: bool,
        skippable: bool,
        stride: u32,
        act: Activation,
    ) -> LayerSpec {
        let p = format!("{block}/layer{layer}");
        let kernel = self.add(format!("{p}/kernel"), DecisionKind::Kernel(vec![3, 5, 7]));
        let expansion =
            self.add(format!("{p}/expansion"), DecisionKind::Expansion(expansions.to_vec()));
        let se = search_se.then(|| self.add(format!("{p}/se"), DecisionKind::Se));
        let skip = if skippable {
            Some(self.add(format!("{p}/skip"), DecisionKind::Skip))
        } else {
            if !search_se {
                // The ProxylessNAS layer 1 of a block is a OneOf with a single option.
                self.add(format!("{p}/op"), DecisionKind::Fixed("inverted_bottleneck"));
            }
            None
        };
        LayerSpec::Bottleneck { kernel, expansion, se, skip, stride, act }
    }

    /// A block of `n` bottlenecks; the first has `stride`, the others are skippable and residual.
    #[allow(clippy::too_many_arguments)]
    fn bottleneck_block(
        &mut self,
        name: &str,
        n: usize,
        stride: u32,
        expansions: &[u32],
        search_se: bool,
        act: Activation,
        filters: Vec<u32>,
    ) {
        let layers = (0..n)
            .map(|i| {
                self.bottleneck(
                    name,
                    i,
                    expansions,
                    search_se,
                    i > 0,
                    if i == 0 { stride } else { 1 },
                    act,
                )
            })
            .collect();
        self.block(name, layers, filters);
    }
}

fn choices(base: u32, searched: bool) -> Vec<u32> {
    if !searched {
        return vec![base];
    }
    let mut v: Vec<u32> =
        MULTIPLIERS.iter().map(|&m| super::scale_filters(f64::from(base), m)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `proxylessnas_search` (fixed widths) or `proxylessnas_enlarged_search` (searched widths).
fn proxylessnas(enlarged: bool) -> SearchSpace {
    let base: [u32; 9] = if enlarged {
        [16, 16, 16, 32, 64, 128, 256, 512, 1024]
    } else {
        [32, 16, 32, 40, 80, 96, 192, 320, 1280]
    };
    let mut b = Builder::new();
    b.block(
        "stem",
        vec![LayerSpec::Conv { kernel: Param::Fixed(3), stride: 2, act: Relu }],
        choices(base[0], enlarged),
    );
    let k =
        b.add("block1_sepconv/layer0/sepconv_kernel".into(), DecisionKind::Kernel(vec![3, 5, 7]));
    b.block(
        "block1_sepconv",
        vec![LayerSpec::SepConv { kernel: Param::Decision(k), skip: None, stride: 1, act: Relu }],
        choices(base[1], enlarged),
    );
    let stages = [(4, 2), (4, 2), (4, 2), (4, 1), (4, 2), (1, 1)];
    for (i, &(n, stride)) in stages.iter().enumerate() {
        b.bottleneck_block(
            &format!("block{}", i + 2),
            n,
            stride,
            &[3, 6],
            false,
            Relu,
            choices(base[i + 2], enlarged),
        );
    }
    b.block(
        "head",
        vec![LayerSpec::Head { act: Relu, pool: true, bn: true }],
        choices(base[8], enlarged),
    );
    SearchSpace {
        name: if enlarged { "proxylessnas-enlarged" } else { "proxylessnas" },
        reference_name: if enlarged {
            "proxylessnas_enlarged_search"
        } else {
            "proxylessnas_search"
        },
        paper_name: if enlarged { "ProxylessNAS-Enlarged" } else { "ProxylessNAS" },
        decisions: b.decisions,
        blocks: b.blocks,
        classes: 1001,
        default_target_ms: 84.0,
    }
}

/// `mobilenet_v3_like_search`.
fn mobilenet_v3_like() -> SearchSpace {
    let base: [u32; 8] = [16, 16, 32, 64, 128, 256, 512, 1024];
    let mut b = Builder::new();
    let stem_k = b.add("stem/layer0/kernel".into(), DecisionKind::Kernel(vec![3, 5]));
    let sep_k = b.add("stem/layer2/kernel".into(), DecisionKind::Kernel(vec![3, 5, 7]));
    let sep_skip = b.add("stem/layer2/skip".into(), DecisionKind::Skip);
    b.block(
        "stem",
        vec![
            LayerSpec::Conv { kernel: Param::Decision(stem_k), stride: 2, act: HSwish },
            LayerSpec::SepConv {
                kernel: Param::Decision(sep_k),
                skip: Some(sep_skip),
                stride: 1,
                act: Relu,
            },
        ],
        choices(base[0], true),
    );
    let stages = [(2, Relu), (2, Relu), (2, HSwish), (1, HSwish), (2, HSwish)];
    for (i, &(stride, act)) in stages.iter().enumerate() {
        b.bottleneck_block(
            &format!("block{}", i + 1),
            4,
            stride,
            &[1, 2, 3, 4, 5, 6],
            true,
            act,
            choices(base[i + 1], true),
        );
    }
    b.block(
        "head1",
        vec![LayerSpec::Head { act: HSwish, pool: true, bn: true }],
        choices(base[6], true),
    );
    b.block(
        "head2",
        vec![LayerSpec::Head { act: HSwish, pool: false, bn: false }],
        choices(base[7], true),
    );
    SearchSpace {
        name: "mobilenet-v3-like",
        reference_name: "mobilenet_v3_like_search",
        paper_name: "MobileNetV3-Like",
        decisions: b.decisions,
        blocks: b.blocks,
        classes: 1001,
        default_target_ms: 57.0,
    }
}
