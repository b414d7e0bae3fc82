//! Export of a trained stand-alone network as ONNX through the `latency-tables` builder: the
//! network's op keys at its own (proxy) geometry, BN folded into each convolution with the
//! moving statistics, weights handed over by the builder's names (`l{i}.{part}.weight|bias`).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use latency_tables::onnx::{calibration_model, encode, network_model, GivenWeights};
use latency_tables::{Network, OpKind, Precision};

use super::net::{fold, StandaloneNet};
use crate::supernet::PlainLayer;

/// The op keys of a plain network at input `hw`×`hw` (one per layer; a head with pooling adds a
/// pool key), and for each plain layer the index of its key in the network.
pub fn plain_network(layers: &[PlainLayer], hw: usize) -> Result<(Network, Vec<usize>)> {
    let mut keys = Vec::new();
    let mut index = Vec::new();
    let (mut hw, mut cin) = (hw as u32, 0u32);
    for (i, layer) in layers.iter().enumerate() {
        index.push(keys.len());
        let (layer_keys, out_hw, cout) =
            layer.op_keys(hw, cin).with_context(|| format!("layer {i}"))?;
        keys.extend(layer_keys);
        (hw, cin) = (out_hw, cout);
    }
    let net = Network::new(keys);
    net.check_chain()?;
    Ok((net, index))
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// The ONNX weights of `net`: every convolution with its BN folded in (moving statistics),
/// named `l{key index}.{part}.weight|bias`.
pub fn onnx_weights(net: &StandaloneNet, index: &[usize]) -> Result<BTreeMap<String, Vec<f32>>> {
    let mut out = BTreeMap::new();
    let mut moving = net.moving().iter();
    for (layer, &j) in net.layers().iter().zip(index) {
        let tensors: BTreeMap<String, Tensor> = layer.tensors()?.into_iter().collect();
        for part in layer.bn_parts() {
            let (_, mv) = moving.next().context("fewer moving statistics than batch norms")?;
            let w = &tensors[&format!("{part}.weight")];
            let (scale, shift) = fold(
                &tensors[&format!("{part}.bn.gamma")],
                &tensors[&format!("{part}.bn.beta")],
                mv,
            )?;
            let mut shape = vec![scale.elem_count()];
            shape.resize(w.rank(), 1);
            let folded = w.broadcast_mul(&scale.reshape(shape)?)?;
            out.insert(format!("l{j}.{part}.weight"), values(&folded)?);
            out.insert(format!("l{j}.{part}.bias"), values(&shift)?);
        }
        for (name, t) in &tensors {
            // Everything not folded above (SE, classifier, a head conv with its own bias).
            let part = name.split('.').next().unwrap_or_default();
            if !layer.bn_parts().contains(&part) {
                out.insert(format!("l{j}.{name}"), values(t)?);
            }
        }
    }
    Ok(out)
}

/// The ONNX model (encoded) of a trained network and its op keys.
pub fn export_onnx(net: &StandaloneNet) -> Result<(Vec<u8>, Network)> {
    export_with(net, Precision::F32, BTreeMap::new())
}

/// The int8 model (encoded) of a trained network and its (`/i8`) op keys, its activations
/// quantised over `ranges` (by float tensor name, from [`calibration_onnx`]).
pub fn export_onnx_i8(
    net: &StandaloneNet,
    ranges: BTreeMap<String, (f32, f32)>,
) -> Result<(Vec<u8>, Network)> {
    export_with(net, Precision::I8, ranges)
}

/// The calibration model of a trained network (its float graph with every activation also an
/// output: [`calibration_model`]) and the names of its outputs, in order.
pub fn calibration_onnx(net: &StandaloneNet) -> Result<(Vec<u8>, Vec<String>)> {
    let (network, index) = plain_network(net.layers(), net.geometry().input_hw)?;
    let model = calibration_model(&network, &mut GivenWeights::new(onnx_weights(net, &index)?))?;
    let names = model.graph.as_ref().map(|g| g.output.iter().map(|o| o.name.clone()).collect());
    Ok((encode(&model), names.unwrap_or_default()))
}

fn export_with(
    net: &StandaloneNet,
    precision: Precision,
    ranges: BTreeMap<String, (f32, f32)>,
) -> Result<(Vec<u8>, Network)> {
    let (network, index) = plain_network(net.layers(), net.geometry().input_hw)?;
    let network = network.with_precision(precision);
    let mut given = GivenWeights::new(onnx_weights(net, &index)?).with_ranges(ranges);
    let model = network_model(&network, &mut given)?;
    let unused = given.unused();
    if !unused.is_empty() {
        bail!("export: weights not used by the graph: {}", unused.join(", "));
    }
    Ok((encode(&model), network))
}

/// Checks that the exported keys are the deployment keys at proxy geometry: the same layers in
/// the same order with the same kind, kernel, activation, SE presence and residual, and every
/// channel count the proxy of the deployment one (except the dataset's input channels and
/// classes; spatial sizes and the proxy's stride-1 stem layers differ by design). Returns one
/// line per mismatch.
pub fn compare_keys(
    proxy: &Network,
    deployment: &Network,
    channels: &dyn Fn(u32) -> usize,
) -> Vec<String> {
    let mut bad = Vec::new();
    if proxy.layers.len() != deployment.layers.len() {
        bad.push(format!(
            "{} exported layers, {} priced by the latency model",
            proxy.layers.len(),
            deployment.layers.len()
        ));
        return bad;
    }
    for (i, (p, d)) in proxy.layers.iter().zip(&deployment.layers).enumerate() {
        let ch = |v: u32| channels(v) as u32;
        let classifier = d.kind == OpKind::Classifier;
        let same = p.kind == d.kind
            && p.kernel == d.kernel
            && p.act == d.act
            && p.residual == d.residual
            && (p.se == 0) == (d.se == 0)
            && (p.se == 0 || p.se == ch(d.se))
            && (i == 0 || p.cin == ch(d.cin))
            && (classifier || p.cout == ch(d.cout))
            && (d.kind != OpKind::Bottleneck || p.expanded == ch(d.expanded));
        if !same {
            bad.push(format!("layer {i}: exported {p} does not correspond to priced {d}"));
        }
    }
    bad
}

/// What `tunas export` writes next to the model (`MODEL.json`) and prints.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportReport {
    /// The ONNX file.
    pub model: std::path::PathBuf,
    /// The search space.
    pub space: String,
    /// The architecture's index string.
    pub arch: String,
    /// The input shape `[1, C, H, W]`.
    pub input: [usize; 4],
    /// Output classes.
    pub classes: usize,
    /// Size of the ONNX file.
    pub bytes: usize,
    /// The latency model that priced the architecture.
    pub latency_model: String,
    /// Its T(α) (ms).
    pub latency_ms: f64,
    /// The exported network's op keys (proxy geometry).
    pub exported_keys: Vec<String>,
    /// The keys the latency model priced (deployment geometry).
    pub priced_keys: Vec<String>,
    /// Layers whose keys do not correspond ([`compare_keys`]); empty when they all do.
    pub key_mismatches: Vec<String>,
    /// Candle's logits against tract's.
    pub check: ExportCheck,
}

/// The logits check of an export.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportCheck {
    /// Test images run.
    pub images: usize,
    /// Their raw f32 input.
    pub input: std::path::PathBuf,
    /// Candle's raw f32 logits.
    pub candle_logits: std::path::PathBuf,
    /// Their labels.
    pub labels: Vec<u32>,
    /// Candle's top-1 accuracy on them (the float network).
    pub candle_accuracy: f64,
    /// The exported model's number format (`f32`, or `i8`: compared with Candle's float
    /// logits for its accuracy, not within a tolerance).
    #[serde(default)]
    pub precision: Precision,
    /// With `i8`: training images the activation ranges were calibrated on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_images: Option<usize>,
    /// tract's agreement, when a device agent ran it.
    pub tract: Option<TractCheck>,
}

/// tract's logits against Candle's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TractCheck {
    /// Largest |Δ| of a logit.
    pub max_abs_diff: f64,
    /// max(1, max |logit|): the tolerance's scale.
    pub logit_scale: f64,
    /// Images whose top-1 differs.
    pub top1_differs: usize,
    /// tract's top-1 accuracy on the check images (an int8 model's own accuracy).
    #[serde(default)]
    pub accuracy: f64,
    /// The agent that ran tract.
    pub agent: std::path::PathBuf,
}

impl ExportReport {
    /// The one-line summary for people.
    pub fn summary(&self) -> String {
        format!(
            "export: {} ({} {} layers, {} bytes); op keys {}; tract {}",
            self.model.display(),
            self.check.precision,
            self.exported_keys.len(),
            self.bytes,
            if self.key_mismatches.is_empty() {
                "match the latency model's"
            } else {
                "DO NOT match (see key_mismatches)"
            },
            match &self.check.tract {
                None => "not checked".to_string(),
                Some(t) => format!(
                    "max |Δ| {:.2e} from Candle's float logits, top-1 differs on {} of {} (accuracy {:.1}%, Candle's {:.1}%)",
                    t.max_abs_diff,
                    t.top1_differs,
                    self.check.images,
                    100.0 * t.accuracy,
                    100.0 * self.check.candle_accuracy
                ),
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_report_reads_back_and_a_missing_field_is_named() {
        let report = ExportReport {
            model: "m.onnx".into(),
            space: "proxylessnas".into(),
            arch: "0:1".into(),
            input: [1, 1, 32, 32],
            classes: 10,
            bytes: 100,
            latency_model: "pixel1".into(),
            latency_ms: 84.0,
            exported_keys: vec!["a".into()],
            priced_keys: vec!["b".into()],
            key_mismatches: vec![],
            check: ExportCheck {
                images: 2,
                input: "i.f32".into(),
                candle_logits: "c.f32".into(),
                labels: vec![1, 2],
                candle_accuracy: 0.5,
                precision: Precision::F32,
                calibration_images: None,
                tract: Some(TractCheck {
                    max_abs_diff: 1e-6,
                    logit_scale: 3.0,
                    top1_differs: 0,
                    accuracy: 0.5,
                    agent: "device-agent".into(),
                }),
            },
        };
        let text = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<ExportReport>(&text).unwrap(), report);
        assert!(report.summary().contains("match the latency model's"), "{}", report.summary());
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v.as_object_mut().unwrap().remove("latency_ms");
        let err = serde_json::from_value::<ExportReport>(v).unwrap_err().to_string();
        assert!(err.contains("latency_ms"), "{err}");
    }
    use crate::rng::Rng;
    use crate::space::{space_names, SearchSpace};
    use crate::supernet::ProxyGeometry;
    use candle_core::Device;

    #[test]
    fn exported_keys_correspond_to_the_priced_keys_in_every_space() {
        let g = ProxyGeometry { input_hw: 32, in_channels: 1, classes: 10, width_multiplier: 0.25 };
        for name in space_names() {
            let space = SearchSpace::by_name(name).unwrap();
            let mut rng = Rng::new(4);
            for _ in 0..3 {
                let arch = space.random_architecture(&mut rng);
                let net =
                    StandaloneNet::new(&space, &arch, g.clone(), &mut Rng::new(1), &Device::Cpu)
                        .unwrap();
                let (bytes, proxy) = export_onnx(&net).unwrap();
                assert!(bytes.len() > 1000);
                let priced = space.resolve(&arch, 224).network;
                let bad = compare_keys(&proxy, &priced, &|c| g.channels(c));
                assert!(bad.is_empty(), "{name} {arch}: {bad:?}");
                // Another architecture's keys do not pass.
                let other = space
                    .check_arch(space.decisions.iter().map(|d| d.num_choices() - 1).collect())
                    .unwrap();
                let wrong = space.resolve(&other, 224).network;
                if wrong != priced {
                    assert!(!compare_keys(&proxy, &wrong, &|c| g.channels(c)).is_empty());
                }
            }
        }
    }

    #[test]
    fn folded_weights_are_named_as_the_builder_asks() {
        let g = ProxyGeometry { input_hw: 32, in_channels: 1, classes: 10, width_multiplier: 0.25 };
        let space = SearchSpace::by_name("mobilenet-v3-like").unwrap();
        let arch = space
            .check_arch(space.decisions.iter().map(|d| d.num_choices() - 1).collect())
            .unwrap();
        let net = StandaloneNet::new(&space, &arch, g, &mut Rng::new(1), &Device::Cpu).unwrap();
        let (network, index) = plain_network(net.layers(), 32).unwrap();
        let given = onnx_weights(&net, &index).unwrap();
        let manifest = latency_tables::onnx::weight_manifest(&network).unwrap();
        let names: Vec<&String> = given.keys().collect();
        let mut wanted: Vec<&String> = manifest.iter().map(|(n, _)| n).collect();
        wanted.sort();
        assert_eq!(names, wanted);
        for (n, shape) in &manifest {
            assert_eq!(given[n].len(), shape.iter().product::<usize>(), "{n}");
        }
    }
}
