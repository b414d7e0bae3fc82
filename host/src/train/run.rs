//! One stand-alone training run: configuration, the step loop, checkpoints, resume, evaluation
//! on the held-out validation split and on the test split.
//!
//! Run directory: `config.json`, `steps.jsonl`, `checkpoint/` (weights + moving BN statistics,
//! RMSProp slots, step), `result.json`, `loss.svg`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::StandaloneNet;
use crate::data::{self, Batcher, Dataset, ImageSet};
use crate::report::plot::line_svg;
use crate::rng::Rng;
use crate::run_loop::{self, Position, Stepped, Stop};
pub use crate::runs::read_lines;
use crate::runs::{
    create_run_dir, load_checkpoint, load_latency, read_json, rng_for, save_checkpoint,
    write_atomic, EpochOrder, Interrupt,
};
use crate::space::{Architecture, SearchSpace};
use crate::supernet::{
    accuracy, cosine_lr, smoothed_cross_entropy, ComputeDevice, ProxyGeometry, RmsProp,
};

/// Everything that defines a stand-alone training; written to `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Search space name.
    pub space: String,
    /// The architecture (index string).
    pub arch: String,
    /// `pixel1` or a latency table: only to report T(α).
    pub latency: String,
    /// `fashion-mnist` (embedded) or a data directory.
    pub data: String,
    /// Images held out of the training split for validation (the same split as the search).
    pub validation_size: usize,
    /// Channel multiplier (as in the search's proxy).
    pub width_multiplier: f64,
    /// Training steps.
    pub steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Peak learning rate (RMSProp, TF1 semantics).
    pub lr: f64,
    /// Fraction of steps of linear learning-rate warmup.
    pub lr_warmup_fraction: f64,
    /// L2 weight decay on conv kernels.
    pub weight_decay: f64,
    /// Label smoothing.
    pub label_smoothing: f64,
    /// Seed of the initial weights, the epoch order and the flips.
    pub seed: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Evaluation batch size.
    pub eval_batch: usize,
    /// Where the network trains; absent (the CPU) in the files of CPU runs.
    #[serde(default, skip_serializing_if = "ComputeDevice::is_cpu")]
    pub device: ComputeDevice,
}

/// The reference's stand-alone learning rate at batch size `batch`: 0.165 · batch / 256.
pub fn reference_lr(batch: usize) -> f64 {
    0.165 * batch as f64 / 256.0
}

/// Steps for `epochs` passes over `train_images` at batch size `batch` (rounded, at least one).
pub fn steps_for_epochs(epochs: f64, train_images: usize, batch: usize) -> usize {
    ((epochs * train_images as f64 / batch as f64).round() as usize).max(1)
}

impl TrainConfig {
    /// The defaults for `arch` of `space`: embedded Fashion-MNIST, 2,000 held out, width ×0.25,
    /// 3 epochs of batch 32 over 8,000 images, the reference learning rate scaled to the batch.
    pub fn new(space: &str, arch: &str) -> TrainConfig {
        TrainConfig {
            space: space.into(),
            arch: arch.into(),
            latency: "pixel1".into(),
            data: "fashion-mnist".into(),
            validation_size: 2_000,
            width_multiplier: 0.25,
            steps: 750,
            batch_size: 32,
            lr: reference_lr(32),
            lr_warmup_fraction: 0.025,
            weight_decay: 4e-5,
            label_smoothing: 0.1,
            seed: 0,
            checkpoint_every: 100,
            eval_batch: 256,
            device: ComputeDevice::Cpu,
        }
    }

    /// Steps for `epochs` passes over `train_images` at this batch size (at least one).
    pub fn steps_for_epochs(&self, epochs: f64, train_images: usize) -> usize {
        steps_for_epochs(epochs, train_images, self.batch_size)
    }

    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(anyhow::anyhow!("config: {what}"));
        if self.steps == 0 || self.batch_size == 0 || self.eval_batch == 0 {
            return bad("steps, batch_size and eval_batch must be positive".into());
        }
        if !(self.width_multiplier > 0.0 && self.width_multiplier <= 4.0) {
            return bad(format!(
                "width_multiplier must be in (0, 4], got {}",
                self.width_multiplier
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every must be positive".into());
        }
        Ok(())
    }
}

/// One line of `steps.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainStep {
    /// Step.
    pub step: usize,
    /// Cross-entropy + L2.
    pub loss: f64,
    /// Training-batch accuracy.
    pub accuracy: f64,
    /// Learning rate.
    pub lr: f64,
    /// Wall seconds of the step.
    pub seconds: f64,
}

/// `result.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainResult {
    /// Space.
    pub space: String,
    /// Architecture (index string).
    pub arch: String,
    /// T(α) in ms at deployment geometry.
    pub latency_ms: f64,
    /// What priced T(α).
    pub latency_model: String,
    /// Top-1 on the held-out validation split (moving BN statistics).
    pub validation_accuracy: f64,
    /// Top-1 on the test split.
    pub test_accuracy: f64,
    /// Images in each.
    pub validation_images: usize,
    /// Test images.
    pub test_images: usize,
    /// Steps trained.
    pub steps: usize,
    /// Training images processed (steps × batch).
    pub train_images: usize,
    /// Sum of the step times (seconds).
    pub train_seconds: f64,
    /// Trainable scalars.
    pub weights: usize,
    /// Mean training loss over the last 10% of steps.
    pub final_loss: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    step: usize,
}

/// A training session.
pub struct Trainer {
    cfg: TrainConfig,
    dir: PathBuf,
    space: SearchSpace,
    arch: Architecture,
    train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    batcher: Batcher,
    net: StandaloneNet,
    opt: RmsProp,
    step: usize,
    device: Device,
    order: EpochOrder,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer").field("dir", &self.dir).field("step", &self.step).finish()
    }
}

/// The proxy geometry of a dataset split at a width multiplier.
pub fn geometry_of(train: &ImageSet, batcher: &Batcher, width_multiplier: f64) -> ProxyGeometry {
    ProxyGeometry {
        input_hw: batcher.size,
        in_channels: train.shape.0,
        classes: train.classes,
        width_multiplier,
    }
}

impl Stepped for Trainer {
    type Record = TrainStep;
    const COMMAND: &'static str = "train";

    fn dir(&self) -> &Path {
        &self.dir
    }
    fn position(&self) -> Position {
        Position::new(self.step, self.cfg.steps, self.cfg.checkpoint_every)
    }
    fn save(&self) -> Result<()> {
        save_checkpoint(
            &self.dir,
            &self.net.state()?,
            &self.opt.state(),
            &serde_json::to_string(&State { step: self.step })?,
        )
    }
    fn load(&mut self) -> Result<()> {
        let ck = load_checkpoint(&self.dir, &self.device)?;
        let state: State = serde_json::from_str(&ck.state)
            .with_context(|| format!("parsing {}", ck.state_path.display()))?;
        self.net.load_state(&ck.weights, &ck.weights_path)?;
        self.opt
            .load_state(&ck.optimizer)
            .with_context(|| ck.weights_path.display().to_string())?;
        self.step = state.step;
        Ok(())
    }
    fn step(&mut self) -> Result<Option<TrainStep>> {
        let t0 = Instant::now();
        let cfg = &self.cfg;
        let idx = self.order.indices(self.step, cfg.batch_size);
        let mut flip = rng_for(cfg.seed, "flip", self.step);
        let (x, y) = self.batcher.batch(&self.train, &idx, Some(&mut flip), &self.device)?;
        let (logits, l2, stats) = self.net.forward_train(&x)?;
        let ce = smoothed_cross_entropy(&logits, &y, cfg.label_smoothing)?;
        let loss = (ce + (l2 * (cfg.weight_decay / 2.0))?)?;
        let loss_value = f64::from(loss.to_scalar::<f32>()?);
        if !loss_value.is_finite() {
            return Ok(None);
        }
        let acc = accuracy(&logits, &y)?;
        let grads = loss.backward()?;
        let warm = (cfg.lr_warmup_fraction * cfg.steps as f64) as usize;
        let lr = cosine_lr(cfg.lr, self.step, warm, cfg.steps);
        self.opt.step(&grads, lr)?;
        self.net.update_moving(&stats, self.step)?;
        let rec = TrainStep {
            step: self.step,
            loss: loss_value,
            accuracy: acc,
            lr,
            seconds: t0.elapsed().as_secs_f64(),
        };
        self.step += 1;
        Ok(Some(rec))
    }
    fn step_of(record: &TrainStep) -> usize {
        record.step
    }
    fn summary(rec: &TrainStep) -> String {
        format!("loss {:.3} acc {:.3}", rec.loss, rec.accuracy)
    }
    fn label(&self) -> String {
        format!("train {}", self.dir.file_name().map_or("", |s| s.to_str().unwrap_or("")))
    }
}

impl Trainer {
    fn new(cfg: TrainConfig, dir: &Path) -> Result<Trainer> {
        cfg.check()?;
        let space = SearchSpace::by_name(&cfg.space)?;
        let arch =
            space.parse_arch(&cfg.arch).with_context(|| format!("architecture {:?}", cfg.arch))?;
        let splits = data::load(&cfg.data)?;
        let (train, val) = splits.train.split_tail(cfg.validation_size)?;
        let batcher = Batcher::new(train.shape, splits.mean_std);
        let device = cfg.device.open()?;
        let geometry = geometry_of(&train, &batcher, cfg.width_multiplier);
        let mut rng = Rng::new(cfg.seed).fork("standalone-init");
        let net = StandaloneNet::new(&space, &arch, geometry, &mut rng, &device)?;
        let opt = RmsProp::new(net.vars())?;
        let order = EpochOrder::new(cfg.seed, train.len());
        Ok(Trainer {
            cfg,
            dir: dir.into(),
            space,
            arch,
            train,
            val,
            test: splits.test,
            batcher,
            net,
            opt,
            step: 0,
            device,
            order,
        })
    }

    /// The network.
    pub fn net(&self) -> &StandaloneNet {
        &self.net
    }

    /// Top-1 accuracy with the moving statistics on a whole split.
    pub fn evaluate(&self, set: &ImageSet) -> Result<f64> {
        evaluate(&self.net, set, &self.batcher, self.cfg.eval_batch)
    }

    fn run(&mut self, interrupt: &Interrupt) -> Result<(Stop, Option<TrainResult>)> {
        match run_loop::drive(self, interrupt)? {
            Stop::Interrupted => Ok((Stop::Interrupted, None)),
            Stop::Finished => Ok((Stop::Finished, Some(self.finish()?))),
        }
    }

    fn finish(&self) -> Result<TrainResult> {
        let steps: Vec<TrainStep> = read_lines(&self.dir.join("steps.jsonl"))?;
        let tail = (steps.len() / 10).max(1);
        let final_loss = steps.iter().rev().take(tail).map(|s| s.loss).sum::<f64>()
            / tail.min(steps.len()).max(1) as f64;
        let model = load_latency(&self.cfg.latency, &self.space)?;
        let result = TrainResult {
            space: self.space.name.to_string(),
            arch: self.arch.to_string(),
            latency_ms: model.latency_ms(&self.arch)?,
            latency_model: model.describe(),
            validation_accuracy: self.evaluate(&self.val)?,
            test_accuracy: self.evaluate(&self.test)?,
            validation_images: self.val.len(),
            test_images: self.test.len(),
            steps: self.step,
            train_images: self.step * self.cfg.batch_size,
            train_seconds: steps.iter().map(|s| s.seconds).sum(),
            weights: self.net.num_weights(),
            final_loss,
        };
        write_atomic(&self.dir.join("result.json"), &serde_json::to_string_pretty(&result)?)?;
        let loss: Vec<(f64, f64)> = steps.iter().map(|s| (s.step as f64, s.loss)).collect();
        let acc: Vec<(f64, f64)> = steps.iter().map(|s| (s.step as f64, s.accuracy)).collect();
        write_atomic(
            &self.dir.join("loss.svg"),
            &line_svg("training loss", "loss", &[("loss", loss)], None),
        )?;
        write_atomic(
            &self.dir.join("accuracy.svg"),
            &line_svg("training-batch accuracy", "accuracy", &[("accuracy", acc)], None),
        )?;
        Ok(result)
    }
}

/// Top-1 accuracy of `net` (moving statistics) on a whole split in batches of `batch`.
pub fn evaluate(
    net: &StandaloneNet,
    set: &ImageSet,
    batcher: &Batcher,
    batch: usize,
) -> Result<f64> {
    crate::supernet::evaluate_split(set, batcher, batch, net.device(), |x| net.forward_eval(x))
}

/// The outcome of a training run.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Why it stopped.
    pub stop: Stop,
    /// Steps done.
    pub steps_done: usize,
    /// The result, when finished.
    pub result: Option<TrainResult>,
}

/// Starts a training run in `dir` (absent or empty).
pub fn start(cfg: TrainConfig, dir: &Path, interrupt: &Interrupt) -> Result<TrainOutcome> {
    create_run_dir(dir, "tunas train --resume")?;
    let mut t = Trainer::new(cfg.clone(), dir)?;
    write_atomic(&dir.join("config.json"), &serde_json::to_string_pretty(&cfg)?)?;
    log::info!(
        "train: {} {} — {} weights at {}×{}×{}, width ×{}, {} steps of batch {}",
        t.space.name,
        t.arch,
        t.net.num_weights(),
        t.batcher.size,
        t.batcher.size,
        t.train.shape.0,
        cfg.width_multiplier,
        cfg.steps,
        cfg.batch_size
    );
    t.save()?;
    let (stop, result) = t.run(interrupt)?;
    Ok(TrainOutcome { stop, steps_done: t.step, result })
}

/// Continues the training in `dir`; a finished run is reported again from `result.json`.
pub fn resume(dir: &Path, interrupt: &Interrupt) -> Result<TrainOutcome> {
    let cfg: TrainConfig = read_json(&dir.join("config.json"))
        .with_context(|| format!("{}: not a training run directory", dir.display()))?;
    let result_path = dir.join("result.json");
    if result_path.exists() {
        let result: TrainResult = read_json(&result_path)?;
        return Ok(TrainOutcome {
            stop: Stop::Finished,
            steps_done: result.steps,
            result: Some(result),
        });
    }
    let mut t = Trainer::new(cfg, dir)?;
    run_loop::restore(&mut t)?;
    let (stop, result) = t.run(interrupt)?;
    Ok(TrainOutcome { stop, steps_done: t.step, result })
}

/// Runs `dir` to the end: resumes it when it has a configuration, starts it with `cfg`
/// otherwise (the unit of work of random search and comparisons).
pub fn run_or_resume(cfg: &TrainConfig, dir: &Path, interrupt: &Interrupt) -> Result<TrainOutcome> {
    if dir.join("config.json").exists() {
        let have: TrainConfig = read_json(&dir.join("config.json"))?;
        if &have != cfg {
            bail!(
                "{}: holds a training with another configuration; remove it or use another run directory",
                dir.display()
            );
        }
        resume(dir, interrupt)
    } else {
        start(cfg.clone(), dir, interrupt)
    }
}

/// The weights file behind `path`: a `weights.safetensors` file, a checkpoint directory, or a
/// training run directory (its `checkpoint/`, or `checkpoint.old/` after a cut save).
pub fn weights_file(path: &Path) -> PathBuf {
    if path.is_file() {
        return path.into();
    }
    for sub in [
        "weights.safetensors",
        "checkpoint/weights.safetensors",
        "checkpoint.old/weights.safetensors",
    ] {
        if path.join(sub).exists() {
            return path.join(sub);
        }
    }
    path.join("checkpoint/weights.safetensors")
}

/// The network of `cfg` (architecture, data geometry, width) with the weights and moving
/// statistics of `weights` (see [`weights_file`]), and the data splits it was trained on.
pub fn load_network(
    cfg: &TrainConfig,
    weights: &Path,
) -> Result<(StandaloneNet, data::Splits, Batcher)> {
    let space = SearchSpace::by_name(&cfg.space)?;
    let arch =
        space.parse_arch(&cfg.arch).with_context(|| format!("architecture {:?}", cfg.arch))?;
    let splits = data::load(&cfg.data)?;
    let batcher = Batcher::new(splits.train.shape, splits.mean_std);
    let geometry = geometry_of(&splits.train, &batcher, cfg.width_multiplier);
    let mut net = StandaloneNet::new(&space, &arch, geometry, &mut Rng::new(0), &Device::Cpu)?;
    let file = weights_file(weights);
    let state = candle_core::safetensors::load(&file, &Device::Cpu)
        .with_context(|| format!("reading {}", file.display()))?;
    net.load_state(&state, &file)?;
    Ok((net, splits, batcher))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(steps: usize) -> TrainConfig {
        let mut cfg = TrainConfig::new("proxylessnas", "proxylessnas-mobile");
        cfg.arch = SearchSpace::by_name("proxylessnas")
            .unwrap()
            .parse_arch("proxylessnas-mobile")
            .unwrap()
            .to_string();
        cfg.steps = steps;
        cfg.batch_size = 16;
        cfg.width_multiplier = 0.125;
        cfg.checkpoint_every = 4;
        cfg.eval_batch = 500;
        cfg
    }

    fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
        let ck = load_checkpoint(dir, &Device::Cpu).unwrap();
        let mut v: Vec<(String, Vec<f32>)> = ck
            .weights
            .iter()
            .map(|(k, t)| (k.clone(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn a_resumed_training_ends_exactly_like_an_uninterrupted_one() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        let whole = start(tiny(10), &a, &Interrupt::default()).unwrap();
        assert_eq!(whole.stop, Stop::Finished);
        let cut = Interrupt { at_step: Some(6), ..Interrupt::default() };
        let first = start(tiny(10), &b, &cut).unwrap();
        assert_eq!((first.stop, first.steps_done), (Stop::Interrupted, 6));
        assert!(!b.join("result.json").exists());
        let second = resume(&b, &Interrupt::default()).unwrap();
        assert_eq!(second.stop, Stop::Finished);
        assert_eq!(weights(&a), weights(&b), "weights and moving statistics");
        let (ra, rb) = (whole.result.unwrap(), second.result.unwrap());
        assert_eq!(ra.validation_accuracy, rb.validation_accuracy);
        assert_eq!(ra.test_accuracy, rb.test_accuracy);
        assert_eq!(ra.final_loss, rb.final_loss);
        let steps: Vec<TrainStep> = read_lines(&b.join("steps.jsonl")).unwrap();
        assert_eq!(steps.iter().map(|s| s.step).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        // A finished run is reported again; a different configuration is refused.
        assert_eq!(run_or_resume(&tiny(10), &b, &Interrupt::default()).unwrap().result, Some(rb));
        let err = run_or_resume(&tiny(11), &b, &Interrupt::default()).unwrap_err();
        assert!(err.to_string().contains("another configuration"), "{err}");
    }

    #[test]
    fn a_non_finite_loss_stops_with_the_last_good_checkpoint() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = tiny(6);
        cfg.lr = 1e30;
        cfg.lr_warmup_fraction = 0.0;
        let err = start(cfg, &root.path().join("nan"), &Interrupt::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not finite") && text.contains("checkpoint"), "{text}");
    }

    #[test]
    fn bad_configurations_and_architectures_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = tiny(4);
        cfg.width_multiplier = 0.0;
        let err = start(cfg, &root.path().join("w"), &Interrupt::default()).unwrap_err();
        assert!(err.to_string().contains("width_multiplier"), "{err}");
        let mut cfg = tiny(4);
        cfg.arch = "0:1:2".into();
        let err = start(cfg, &root.path().join("arch"), &Interrupt::default()).unwrap_err();
        assert!(format!("{err:#}").contains("0:1:2"), "{err:#}");
    }
}
