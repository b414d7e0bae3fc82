//! `tunas export`: a trained network as ONNX, checked against Candle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::data::{Batcher, Dataset};
use crate::runs::{load_latency, read_json, write_atomic, DEPLOYMENT_RESOLUTION};
use crate::space::SearchSpace;
use crate::train::export::{
    calibration_onnx, compare_keys, export_onnx, export_onnx_i8, ExportCheck, ExportReport,
    TractCheck,
};
use crate::train::StandaloneNet;
use crate::train::{load_network, TrainConfig};
use latency_tables::Precision;

/// Arguments of `tunas export`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["run", "weights"])))]
pub struct Cmd {
    /// A training run directory (`tunas train`, or a random search's or comparison's).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Weights instead of a run: a `weights.safetensors`, a checkpoint or a run directory;
    /// needs --arch.
    #[arg(long, requires = "arch")]
    weights: Option<PathBuf>,
    /// The architecture of --weights (index string, JSON, file or reference name).
    #[arg(long)]
    arch: Option<String>,
    /// Search space of --arch.
    #[arg(long, default_value = "proxylessnas")]
    space: String,
    /// Data the weights were trained on (input shape, classes, normalisation) with --weights.
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    /// Channel multiplier the weights were trained at, with --weights.
    #[arg(long, default_value_t = 0.25, value_parser = super::values::WIDTH_MULTIPLIER)]
    width_multiplier: f64,
    /// Latency model whose op keys the exported network is checked against [default: the
    /// run's, or pixel1].
    #[arg(long)]
    latency: Option<String>,
    /// Where to write the ONNX model (a report goes next to it as .json, the check data in
    /// a .check/ folder).
    #[arg(long)]
    out: PathBuf,
    /// Test images to compare Candle's logits with tract's on (and onnxruntime's, by
    /// `scripts/check_export.py`).
    #[arg(long, default_value_t = 100, value_parser = super::values::images())]
    check_images: usize,
    /// The device agent that runs the tract check (and the int8 calibration) [default:
    /// `device-agent` next to `tunas`].
    #[arg(long)]
    agent: Option<PathBuf>,
    /// The exported model's number format: f32, or i8 (QLinearConv, activation ranges
    /// calibrated in tract on --calibration-images training images; its keys end in /i8).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Training images the int8 activation ranges are calibrated on.
    #[arg(long, default_value_t = 300, value_parser = super::values::images())]
    calibration_images: usize,
}

fn write_f32(path: &Path, v: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn read_f32(path: &Path) -> Result<Vec<f32>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Logits agree when max |Δ| ≤ this × [`logit_scale`].
pub const TOLERANCE: f64 = 1e-3;

/// `max(1, max |logit|)`: the tolerance is absolute for logits of ordinary size and relative for
/// the huge ones of an under-trained network, where f32 rounding grows with them.
pub fn logit_scale(logits: &[f32]) -> f64 {
    logits.iter().fold(1f64, |m, v| m.max(f64::from(v.abs())))
}

/// The index of a row's largest value (the first, on ties).
fn argmax(r: &[f32]) -> usize {
    r.iter().enumerate().fold(0, |best, (i, &v)| if v > r[best] { i } else { best })
}

/// Max |a − b| and the number of rows whose argmax differs.
pub fn agreement(a: &[f32], b: &[f32], classes: usize) -> (f64, usize) {
    let max = a.iter().zip(b).fold(0f64, |m, (x, y)| m.max(f64::from((x - y).abs())));
    let differ =
        a.chunks(classes).zip(b.chunks(classes)).filter(|(x, y)| argmax(x) != argmax(y)).count();
    (max, differ)
}

/// Runs `agent infer MODEL` on the `count` inputs in `input` (raw f32) into `output`; `ranges`:
/// each output's range (JSON) instead of the first output's values.
fn agent_infer(
    agent: &Path,
    model: &Path,
    input: &Path,
    count: usize,
    output: &Path,
    ranges: bool,
) -> Result<()> {
    let mut cmd = Command::new(agent);
    cmd.arg("infer").arg(model).arg("--input").arg(input).arg("--output").arg(output);
    cmd.arg("--count").arg(count.to_string());
    if ranges {
        cmd.arg("--ranges");
    }
    let o = cmd.output().with_context(|| format!("running {}", agent.display()))?;
    if !o.status.success() {
        bail!("{} infer failed: {}", agent.display(), String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

/// The activation ranges of `net` by float tensor name, over `images` (raw f32 in `dir`):
/// its calibration model run in tract, and the images' own range for the input.
fn calibrate(
    net: &StandaloneNet,
    agent: &Path,
    dir: &Path,
    images: &[f32],
    count: usize,
) -> Result<BTreeMap<String, (f32, f32)>> {
    let (bytes, names) = calibration_onnx(net)?;
    let model = dir.join("calibration.onnx");
    std::fs::write(&model, bytes).with_context(|| format!("writing {}", model.display()))?;
    let input = dir.join("calibration.f32");
    write_f32(&input, images)?;
    let out = dir.join("calibration.ranges.json");
    agent_infer(agent, &model, &input, count, &out, true)?;
    let ranges: Vec<(f32, f32)> = read_json(&out)?;
    if ranges.len() != names.len() {
        bail!("{}: {} ranges for {} outputs", out.display(), ranges.len(), names.len());
    }
    let mut by_name: BTreeMap<String, (f32, f32)> = names.into_iter().zip(ranges).collect();
    let input_range = latency_tables::onnx::value_range(images);
    by_name.insert(latency_tables::onnx::INPUT_NAME.to_string(), input_range);
    Ok(by_name)
}

/// The share of rows of `logits` whose argmax is the label.
fn top1_accuracy(logits: &[f32], labels: &[u32], classes: usize) -> f64 {
    let right =
        logits.chunks(classes).zip(labels).filter(|(r, &l)| argmax(r) == l as usize).count();
    right as f64 / labels.len().max(1) as f64
}

impl Cmd {
    fn source(&self) -> Result<(TrainConfig, PathBuf)> {
        match (&self.run, &self.weights) {
            (Some(run), _) => {
                let cfg: TrainConfig = read_json(&run.join("config.json")).with_context(|| {
                    format!(
                        "{}: not a training run (a search run's architecture is trained with `tunas train --arch @{}` first)",
                        run.display(),
                        run.display()
                    )
                })?;
                Ok((cfg, run.clone()))
            }
            (None, Some(w)) => {
                let space = SearchSpace::by_name(&self.space)?;
                let arch =
                    super::options::architecture(&space, self.arch.as_deref().unwrap_or_default())?;
                let mut cfg = TrainConfig::new(space.name, &arch.to_string());
                cfg.data = self.data.clone();
                cfg.width_multiplier = self.width_multiplier;
                Ok((cfg, w.clone()))
            }
            (None, None) => bail!("give --run or --weights"),
        }
    }

    /// Exports; prints the report (JSON) on stdout. Exit 1 when a check fails.
    pub fn run(self) -> Result<i32> {
        if self.check_images == 0 {
            bail!("--check-images must be at least 1");
        }
        let (cfg, weights) = self.source()?;
        let (net, splits, batcher) = load_network(&cfg, &weights)?;
        let check = self.out.with_extension("check");
        std::fs::create_dir_all(&check).with_context(|| format!("creating {}", check.display()))?;
        let agent = self.agent.clone().or_else(|| {
            let p = std::env::current_exe().ok()?.parent()?.join("device-agent");
            p.exists().then_some(p)
        });
        let (bytes, proxy, calibration_images) = match self.precision {
            Precision::F32 => {
                let (bytes, proxy) = export_onnx(&net)?;
                (bytes, proxy, None)
            }
            Precision::I8 => {
                let Some(agent) = &agent else {
                    bail!("--precision i8 calibrates in tract: build device-agent next to tunas, or give --agent")
                };
                let n = self.calibration_images.min(splits.train.len());
                let idx: Vec<usize> = (0..n).collect();
                let dev = candle_core::Device::Cpu;
                let (x, _) = Batcher::batch(&batcher, &splits.train, &idx, None, &dev)?;
                let images = x.flatten_all()?.to_vec1::<f32>()?;
                let ranges = calibrate(&net, agent, &check, &images, n)?;
                let (bytes, proxy) = export_onnx_i8(&net, ranges)?;
                (bytes, proxy, Some(n))
            }
        };
        std::fs::write(&self.out, &bytes)
            .with_context(|| format!("writing {}", self.out.display()))?;

        // Op keys: the exported network against the deployment network the latency model priced.
        let space = SearchSpace::by_name(&cfg.space)?;
        let arch = space.parse_arch(&cfg.arch)?;
        let latency = self.latency.clone().unwrap_or_else(|| cfg.latency.clone());
        let model = load_latency(&latency, &space)?;
        let deployment =
            space.resolve(&arch, DEPLOYMENT_RESOLUTION).with_precision(self.precision).network;
        let g = net.geometry().clone();
        let key_mismatches = compare_keys(&proxy, &deployment, &|c| g.channels(c));
        let mut failed = !key_mismatches.is_empty();

        // Candle's logits on the first test images.
        let n = self.check_images.min(splits.test.len());
        let idx: Vec<usize> = (0..n).collect();
        let (x, y) = Batcher::batch(&batcher, &splits.test, &idx, None, &candle_core::Device::Cpu)?;
        let logits = net.forward_eval(&x)?;
        let classes = logits.dim(1)?;
        write_f32(&check.join("input.f32"), &x.flatten_all()?.to_vec1::<f32>()?)?;
        let candle = logits.flatten_all()?.to_vec1::<f32>()?;
        write_f32(&check.join("candle.f32"), &candle)?;
        let labels = y.to_vec1::<u32>()?;
        let candle_acc = crate::supernet::accuracy(&logits, &y)?;

        // tract, through the device agent.
        let tract = match agent {
            Some(agent) => {
                let out = check.join("tract.f32");
                agent_infer(&agent, &self.out, &check.join("input.f32"), n, &out, false)?;
                let t = read_f32(&out)?;
                if t.len() != candle.len() {
                    bail!("tract gave {} values, Candle {}", t.len(), candle.len());
                }
                let (max, differ) = agreement(&t, &candle, classes);
                let scale = logit_scale(&candle);
                // An int8 model differs from the float one by design: its accuracy is reported
                // (and its agreement with onnxruntime checked by scripts/check_export.py).
                if self.precision == Precision::F32 {
                    failed |= max > TOLERANCE * scale || differ > 0;
                }
                Some(TractCheck {
                    max_abs_diff: max,
                    logit_scale: scale,
                    top1_differs: differ,
                    accuracy: top1_accuracy(&t, &labels, classes),
                    agent,
                })
            }
            None => {
                log::warn!("export: no device-agent next to tunas (build it, or give --agent); the tract check is skipped");
                None
            }
        };
        let report = ExportReport {
            model: self.out.clone(),
            space: cfg.space.clone(),
            arch: cfg.arch.clone(),
            input: [1, g.in_channels, g.input_hw, g.input_hw],
            classes,
            bytes: bytes.len(),
            latency_model: model.describe(),
            latency_ms: model.latency_ms(&arch)?,
            exported_keys: proxy.layers.iter().map(|k| k.to_string()).collect(),
            priced_keys: deployment.layers.iter().map(|k| k.to_string()).collect(),
            key_mismatches,
            check: ExportCheck {
                images: n,
                input: check.join("input.f32"),
                candle_logits: check.join("candle.f32"),
                labels,
                candle_accuracy: candle_acc,
                precision: self.precision,
                calibration_images,
                tract,
            },
        };
        let text = serde_json::to_string_pretty(&report)?;
        write_atomic(&self.out.with_extension("json"), &text)?;
        println!("{text}");
        log::info!("{}", report.summary());
        Ok(if failed { 1 } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::Command;
    use crate::cmd::options::testing::{arch_sources, parse};

    #[test]
    fn export_reads_arch_from_a_file_and_a_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (file, run, indices) = arch_sources(dir.path());
        for arg in [file.as_str(), run.as_str()] {
            let Command::Export(c) =
                parse(&["export", "--arch", arg, "--weights", "w.safetensors", "--out", "o.onnx"])
            else {
                panic!("not export")
            };
            let (cfg, weights) = c.source().unwrap();
            assert_eq!(
                (cfg.arch.as_str(), weights.to_str()),
                (indices.as_str(), Some("w.safetensors"))
            );
        }
    }
}
