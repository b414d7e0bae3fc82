//! One search run: configuration, the step loop, checkpoints, resume, final report.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::controller::{
    decision_infos, one_hot_selection, rl_learning_rate, warmup_probability, Baseline, Controller,
    Draw, RewardKind,
};
use super::report::{FinalReport, LayerKey, PolicySummary};
use crate::data::{self, Batcher, Dataset, ImageSet};
use crate::latency::LatencyModel;
use crate::report::plot::line_svg;
use crate::rng::Rng;
pub use crate::run_loop::Stop;
use crate::run_loop::{self, Position, Stepped};
use crate::runs::{
    create_run_dir, load_checkpoint, load_latency, read_lines, rng_for, save_checkpoint, set_vars,
    var_tensors, write_atomic, EpochOrder,
};
pub use crate::runs::{Interrupt, DEPLOYMENT_RESOLUTION};
use crate::space::{Architecture, SearchSpace};
use crate::supernet::{
    accuracy, cosine_lr, smoothed_cross_entropy, ComputeDevice, ProxyGeometry, RmsProp, Supernet,
};

/// Everything that defines a search; written to `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// Search space name.
    pub space: String,
    /// `pixel1` or a latency table file.
    pub latency: String,
    /// Latency target T0 (ms).
    pub target_ms: f64,
    /// Reward function.
    pub reward: RewardKind,
    /// Cost exponent β (negative).
    pub beta: f64,
    /// Total steps.
    pub steps: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Validation batch = this × the training batch (4 in the reference).
    pub validation_multiplier: usize,
    /// Channel multiplier of the proxy supernet.
    pub width_multiplier: f64,
    /// Seed of every random draw.
    pub seed: u64,
    /// `fashion-mnist` (embedded) or a data directory.
    pub data: String,
    /// Images held out of the training split for Q(α).
    pub validation_size: usize,
    /// Peak learning rate of the shared weights.
    pub lr: f64,
    /// RL learning rate at the end of the delay (grows ×10 to the end).
    pub rl_lr: f64,
    /// L2 weight decay on conv kernels.
    pub weight_decay: f64,
    /// Label smoothing.
    pub label_smoothing: f64,
    /// Fraction of steps of op/filter warmup and RL delay (0.25).
    pub warmup_fraction: f64,
    /// Fraction of steps of linear learning-rate warmup (0.025).
    pub lr_warmup_fraction: f64,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Architectures drawn per RL step (K): each is priced and gets its own Q(α) on the step's
    /// validation batch; the controller averages their REINFORCE gradients. The first also
    /// trains the supernet.
    #[serde(default = "one")]
    pub rl_archs: usize,
    /// Warmup and RL delay last at least this many steps (at most half the run), so the supernet
    /// leaves the ln 10 loss plateau before sampling takes over.
    #[serde(default)]
    pub min_delay_steps: usize,
    /// The REINFORCE baseline.
    #[serde(default = "ema")]
    pub baseline: Baseline,
    /// Where the supernet trains; absent (the CPU) in the files of CPU runs.
    #[serde(default, skip_serializing_if = "ComputeDevice::is_cpu")]
    pub device: ComputeDevice,
}

fn one() -> usize {
    1
}

fn ema() -> Baseline {
    Baseline::Ema
}

impl SearchConfig {
    /// The quick default: ProxylessNAS space, embedded Fashion-MNIST, Pixel 1 model, T0 = 84 ms.
    pub fn quick() -> SearchConfig {
        SearchConfig {
            space: "proxylessnas".into(),
            latency: "pixel1".into(),
            target_ms: 84.0,
            reward: RewardKind::Abs,
            beta: RewardKind::Abs.default_beta(),
            steps: QUICK_STEPS,
            batch_size: 32,
            validation_multiplier: 4,
            width_multiplier: 0.25,
            seed: 0,
            data: "fashion-mnist".into(),
            validation_size: 2_000,
            lr: default_lr(32),
            rl_lr: default_rl_lr(QUICK_STEPS, quick_delay(QUICK_STEPS)),
            weight_decay: 4e-5,
            label_smoothing: 0.1,
            warmup_fraction: 0.25,
            lr_warmup_fraction: 0.025,
            checkpoint_every: 50,
            rl_archs: 4,
            min_delay_steps: QUICK_MIN_DELAY,
            baseline: Baseline::LeaveOneOut,
            device: ComputeDevice::Cpu,
        }
    }

    /// Steps of warmup and RL delay: `warmup_fraction` of the run, at least `min_delay_steps`
    /// (but never more than half the run).
    pub fn delay(&self) -> usize {
        delay_steps(self.steps, self.warmup_fraction, self.min_delay_steps)
    }

    fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(anyhow::anyhow!("config: {what}"));
        if self.steps == 0 || self.batch_size == 0 || self.validation_multiplier == 0 {
            return bad("steps, batch_size and validation_multiplier must be positive");
        }
        if self.target_ms.is_nan() || self.target_ms <= 0.0 {
            return bad(&format!("target_ms must be positive, got {}", self.target_ms));
        }
        if !(self.width_multiplier > 0.0 && self.width_multiplier <= 4.0) {
            return bad(&format!(
                "width_multiplier must be in (0, 4], got {}",
                self.width_multiplier
            ));
        }
        if !(0.0..=1.0).contains(&self.warmup_fraction) {
            return bad(&format!(
                "warmup_fraction must be in [0, 1], got {}",
                self.warmup_fraction
            ));
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every must be positive");
        }
        if self.rl_archs == 0 || self.rl_archs > 64 {
            return bad(&format!("rl_archs must be in 1..=64, got {}", self.rl_archs));
        }
        let lr_ok = self.lr.is_finite() && self.lr > 0.0;
        let rl_ok = self.rl_lr.is_finite() && self.rl_lr >= 0.0;
        if !(lr_ok && rl_ok) {
            return bad(&format!(
                "lr must be positive and rl_lr non-negative, got {} and {}",
                self.lr, self.rl_lr
            ));
        }
        Ok(())
    }
}

/// What a search configuration builds before its first step; every caller that rebuilds a
/// search's supernet (the search itself, `tunas rank-check`) gets it from
/// [`SearchConfig::setup`].
#[derive(Debug)]
pub struct SearchSetup {
    /// The search space.
    pub space: SearchSpace,
    /// The training split (without the held-out validation images).
    pub train: ImageSet,
    /// The held-out validation images (Q(α)).
    pub val: ImageSet,
    /// Batches of either split.
    pub batcher: Batcher,
    /// The supernet with its initial weights (a pure function of the seed).
    pub net: Supernet,
}

impl SearchConfig {
    /// The space, data split, batcher and initial supernet of this configuration, on its device.
    pub fn setup(&self) -> Result<SearchSetup> {
        let device = self.device.open()?;
        let space = SearchSpace::by_name(&self.space)?;
        let splits = data::load(&self.data)?;
        let (train, val) = splits.train.split_tail(self.validation_size)?;
        let batcher = Batcher::new(train.shape, splits.mean_std);
        let geometry = ProxyGeometry {
            input_hw: batcher.size,
            in_channels: train.shape.0,
            classes: train.classes,
            width_multiplier: self.width_multiplier,
        };
        let mut init_rng = Rng::new(self.seed).fork("init");
        let net = Supernet::new(&space, geometry, &mut init_rng, &device)?;
        Ok(SearchSetup { space, train, val, batcher, net })
    }
}

/// Steps of the quick default.
pub const QUICK_STEPS: usize = 1000;

/// Minimum delay of the quick default (steps).
pub const QUICK_MIN_DELAY: usize = 250;

fn quick_delay(steps: usize) -> usize {
    delay_steps(steps, 0.25, QUICK_MIN_DELAY)
}

/// Warmup/RL delay of a run: `fraction` of its steps, at least `min_steps` (the minimum never
/// makes it longer than half the run).
pub fn delay_steps(steps: usize, fraction: f64, min_steps: usize) -> usize {
    let d = (fraction * steps as f64) as usize;
    if d >= min_steps {
        d
    } else {
        min_steps.min(steps / 2).max(d)
    }
}

/// Peak learning rate of the shared weights at batch `b`: 0.1 at batch 32, scaled with
/// √(b/32). The reference's linear rule (0.165·b/256 = 0.021 at 32) is tuned for 27k steps of
/// batch 4096; at a few thousand small steps a fixed network needs ~50 steps at that rate to
/// leave the ln 10 plateau, and the supernet, with paths changing every step, does not leave
/// it at all before sampling starts (issue 11). 0.1 trains a fixed ProxylessNAS-Mobile to 78%
/// in 400 steps and the supernet's uniformly sampled paths to Q ≈ 0.65 in 1000.
pub fn default_lr(batch: usize) -> f64 {
    0.1 * (batch as f64 / 32.0).sqrt()
}

/// Logit budget of the default RL rate: Σ lr(t) over the RL steps.
///
/// Adam (β1 = 0) moves a logit by about `lr · E[g]/rms(g)` per step along its signal and
/// `lr/√K` at random (K architectures per step, second moment from the mean square), so the
/// ratio of drift to random walk, `√K · SNR · Σ lr / √(Σ lr²)`, does not depend on the rate's
/// scale: the budget only sets how far the policy gets. A decision's signal-to-noise ratio per
/// architecture is small — it changes T(α) by 1–3% (0.001–0.003 of reward at β = −0.1) against
/// reward noise of ~0.03 — so `E[g]/rms(g)` ≈ 0.05–0.1, and settling a decision (a logit gap of
/// ~4–5, top probability ≥ 0.98) takes Σ lr ≈ 4.5/0.05–4.5/0.1. Measured on the quick default
/// (seeds 1, 2): Σ lr = 150 ends with 16–18 of 73 decisions below 0.9 and the policy's spread
/// at ±4% of T; a policy that wide sits below T0 when Q falls with T (measured slope
/// −0.01 … −0.03 per unit of ln T), and its argmax with it (−2.8%, −3.0%). 300 halves the spread.
pub const RL_LOGIT_BUDGET: f64 = 300.0;

/// The RL rate at the end of the delay such that Σ lr(t) over the `steps − delay` RL steps
/// (growing ×10, tunas-spec §3.5) is [`RL_LOGIT_BUDGET`].
pub fn default_rl_lr(steps: usize, delay: usize) -> f64 {
    let n = steps.saturating_sub(delay).max(1) as f64;
    // Σ_{t<n} 10^(t/n) ≈ n·9/ln 10.
    RL_LOGIT_BUDGET / (n * 9.0 / std::f64::consts::LN_10)
}

/// One line of `steps.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Global step.
    pub step: usize,
    /// Training loss (cross-entropy + L2).
    pub loss: f64,
    /// Q(α): top-1 accuracy on the validation batch.
    pub q: f64,
    /// T(α) in ms at deployment geometry.
    pub latency_ms: f64,
    /// Reward.
    pub reward: f64,
    /// Baseline after this step.
    pub baseline: f64,
    /// Policy entropy over active decisions.
    pub entropy: f64,
    /// RL learning rate.
    pub rl_lr: f64,
    /// Weight learning rate.
    pub lr: f64,
    /// Warmup probability p(t).
    pub warmup_p: f64,
    /// α as priced (indices; the first of the step's K architectures).
    pub arch: String,
    /// Wall seconds of the step.
    pub seconds: f64,
    /// Q(α) of each of the step's K architectures (`q` is their mean).
    #[serde(default)]
    pub qs: Vec<f64>,
    /// T(α) of each of the K (`latency_ms` is their mean).
    #[serde(default)]
    pub latencies_ms: Vec<f64>,
    /// T of the policy's argmax architecture after this step's update.
    #[serde(default)]
    pub argmax_ms: Option<f64>,
    /// `E[T]` under the policy (Monte Carlo), every [`EXPECTED_EVERY`] steps.
    #[serde(default)]
    pub expected_ms: Option<f64>,
    /// Entropy of the whole policy (every decision).
    #[serde(default)]
    pub policy_entropy: Option<f64>,
    /// Running estimate of Q's slope in ln T(α) from the K architectures of each RL step.
    #[serde(default)]
    pub q_slope: Option<f64>,
}

/// Steps between Monte Carlo estimates of `E[T]` in the log.
pub const EXPECTED_EVERY: usize = 10;

/// Q's slope in ln T(α), estimated within steps (the K architectures share one validation
/// batch, so the batch's difficulty cancels) and averaged with an EMA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SlopeStats {
    /// EMA of Σ (Q − Q̄)(ln T − mean ln T).
    pub sxy: f64,
    /// EMA of Σ (ln T − mean ln T)².
    pub sxx: f64,
}

impl SlopeStats {
    const MOMENTUM: f64 = 0.99;

    fn add(&mut self, qs: &[f64], ts: &[f64]) {
        let k = qs.len() as f64;
        if qs.len() < 2 {
            return;
        }
        let lt: Vec<f64> = ts.iter().map(|t| t.ln()).collect();
        let (mq, ml) = (qs.iter().sum::<f64>() / k, lt.iter().sum::<f64>() / k);
        let sxy: f64 = qs.iter().zip(&lt).map(|(q, l)| (q - mq) * (l - ml)).sum();
        let sxx: f64 = lt.iter().map(|l| (l - ml).powi(2)).sum();
        self.sxy = Self::MOMENTUM * self.sxy + (1.0 - Self::MOMENTUM) * sxy;
        self.sxx = Self::MOMENTUM * self.sxx + (1.0 - Self::MOMENTUM) * sxx;
    }

    /// dQ / d ln T, when there is data.
    pub fn slope(&self) -> Option<f64> {
        (self.sxx > 0.0).then(|| self.sxy / self.sxx)
    }
}

/// The result of [`start`] or [`resume`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Why it stopped.
    pub stop: Stop,
    /// Steps completed.
    pub steps_done: usize,
    /// The final report, when finished.
    pub final_report: Option<FinalReport>,
    /// The controller's logits at the stop.
    pub logits: Vec<Vec<f64>>,
}

/// The paths of a run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The directory.
    pub path: PathBuf,
}

impl RunDir {
    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    controller: Controller,
    #[serde(default)]
    slope: SlopeStats,
}

struct Session {
    cfg: SearchConfig,
    dir: RunDir,
    space: SearchSpace,
    model: Box<dyn LatencyModel>,
    train: ImageSet,
    val: ImageSet,
    batcher: Batcher,
    net: Supernet,
    opt: RmsProp,
    controller: Controller,
    step: usize,
    device: Device,
    order: EpochOrder,
    slope: SlopeStats,
    warned_slope: bool,
}

impl Stepped for Session {
    type Record = StepRecord;
    const COMMAND: &'static str = "search";

    fn dir(&self) -> &Path {
        &self.dir.path
    }
    fn position(&self) -> Position {
        Position::new(self.step, self.cfg.steps, self.cfg.checkpoint_every)
    }
    fn save(&self) -> Result<()> {
        let state = CheckpointState {
            step: self.step,
            controller: self.controller.clone(),
            slope: self.slope,
        };
        save_checkpoint(
            &self.dir.path,
            &var_tensors(self.net.vars())?,
            &self.opt.state(),
            &serde_json::to_string(&state)?,
        )
    }
    fn load(&mut self) -> Result<()> {
        let ck = load_checkpoint(&self.dir.path, &self.device)?;
        let state: CheckpointState = serde_json::from_str(&ck.state)
            .with_context(|| format!("parsing {}", ck.state_path.display()))?;
        set_vars(self.net.vars(), &ck.weights, &ck.weights_path)?;
        self.opt
            .load_state(&ck.optimizer)
            .with_context(|| format!("{}", ck.weights_path.display()))?;
        if state.controller.decisions != self.controller.decisions {
            bail!(
                "{}: the controller does not match the space {}",
                ck.state_path.display(),
                self.space.name
            );
        }
        self.controller = state.controller;
        self.step = state.step;
        self.slope = state.slope;
        Ok(())
    }
    /// One step; `Ok(None)` when the loss is not finite (nothing is updated).
    fn step(&mut self) -> Result<Option<StepRecord>> {
        let t0 = Instant::now();
        let cfg = &self.cfg;
        let step = self.step;
        let delay = cfg.delay();
        let p = warmup_probability(step, delay);
        // During the delay the controller does not move (RL rate 0): one architecture is enough
        // for the log, the baseline and Adam's second moment.
        let k = if step < delay { 1 } else { cfg.rl_archs.max(1) };
        let draws: Vec<Draw> = (0..k)
            .map(|j| {
                let purpose = if j == 0 { "policy".to_string() } else { format!("policy{j}") };
                self.controller.draw(&mut rng_for(cfg.seed, &purpose, step), p)
            })
            .collect();
        let latencies = draws.iter().map(|d| self.priced(d)).collect::<Result<Vec<f64>>>()?;

        // The supernet trains on the first architecture.
        let idx = self.order.indices(step, cfg.batch_size);
        let mut flip = rng_for(cfg.seed, "flip", step);
        let (x, y) = self.batcher.batch(&self.train, &idx, Some(&mut flip), &self.device)?;
        let out = self.net.forward(&x, &draws[0].weights)?;
        let ce = smoothed_cross_entropy(&out.logits, &y, cfg.label_smoothing)?;
        let loss = (ce + (out.l2 * (cfg.weight_decay / 2.0))?)?;
        let loss_value = f64::from(loss.to_scalar::<f32>()?);
        if !loss_value.is_finite() {
            return Ok(None);
        }
        let grads = loss.backward()?;

        // Q(α) of every architecture with the pre-update weights (tunas-spec §4.6), all on one
        // validation batch, forward only, batch statistics of that batch.
        let mut vr = rng_for(cfg.seed, "validation", step);
        let vidx: Vec<usize> = (0..cfg.batch_size * cfg.validation_multiplier)
            .map(|_| vr.below(self.val.len()))
            .collect();
        let (vx, vy) = self.batcher.batch(&self.val, &vidx, None, &self.device)?;
        let qs = draws
            .iter()
            .map(|d| Ok(accuracy(&self.net.forward_eval(&vx, &d.weights)?, &vy)?))
            .collect::<Result<Vec<f64>>>()?;

        let lr = cosine_lr(
            cfg.lr,
            step,
            (cfg.lr_warmup_fraction * cfg.steps as f64) as usize,
            cfg.steps,
        );
        self.opt.step(&grads, lr)?;
        drop(grads);
        let rewards: Vec<f64> = qs
            .iter()
            .zip(&latencies)
            .map(|(&q, &t)| cfg.reward.reward(q, t, cfg.target_ms, cfg.beta))
            .collect();
        let rl_lr = rl_learning_rate(cfg.rl_lr, step, delay, cfg.steps);
        let upd = self.controller.update_many(&draws, &rewards, rl_lr, cfg.baseline);
        if step >= delay {
            self.slope.add(&qs, &latencies);
        }
        let q_slope = self.slope.slope();
        if let Some(sl) = q_slope {
            if step >= delay + 100 && sl >= 0.8 * cfg.beta.abs() && !self.warned_slope {
                self.warned_slope = true;
                log::warn!(
                    "search: warning: Q(α) rises by {sl:.3} per unit of ln T(α), close to or above |β| = {:.3}: the reward's optimum moves above T0; a larger |β| (--beta) keeps it at T0",
                    cfg.beta.abs()
                );
            }
        }
        let argmax_ms = self.latency(&self.controller.argmax())?;
        let expected_ms = if (step + 1) % EXPECTED_EVERY == 0 {
            Some(self.expected_latency(64, &mut rng_for(cfg.seed, "expected", step))?.0)
        } else {
            None
        };
        let k = k as f64;
        self.step += 1;
        Ok(Some(StepRecord {
            step,
            loss: loss_value,
            q: qs.iter().sum::<f64>() / k,
            latency_ms: latencies.iter().sum::<f64>() / k,
            reward: rewards.iter().sum::<f64>() / k,
            baseline: upd.baseline,
            entropy: upd.entropy,
            rl_lr,
            lr,
            warmup_p: p,
            arch: self.arch(&draws[0].effective)?.to_string(),
            seconds: t0.elapsed().as_secs_f64(),
            qs,
            latencies_ms: latencies,
            argmax_ms: Some(argmax_ms),
            expected_ms,
            policy_entropy: Some(self.controller.total_entropy()),
            q_slope,
        }))
    }
    fn step_of(record: &StepRecord) -> usize {
        record.step
    }
    fn summary(rec: &StepRecord) -> String {
        format!(
            "loss {:.3} Q {:.3} T {:.1} ms argmax T {:.1} ms H {:.1}",
            rec.loss,
            rec.q,
            rec.latency_ms,
            rec.argmax_ms.unwrap_or(f64::NAN),
            rec.policy_entropy.unwrap_or(f64::NAN)
        )
    }
}

impl Session {
    fn new(cfg: SearchConfig, dir: RunDir) -> Result<Session> {
        cfg.check()?;
        let SearchSetup { space, train, val, batcher, net } = cfg.setup()?;
        let model = load_latency(&cfg.latency, &space)?;
        let device = net.device().clone();
        let opt = RmsProp::new(net.vars())?;
        let controller = Controller::new(decision_infos(&space));
        let order = EpochOrder::new(cfg.seed, train.len());
        Ok(Session {
            cfg,
            dir,
            space,
            model,
            train,
            val,
            batcher,
            net,
            opt,
            controller,
            step: 0,
            device,
            order,
            slope: SlopeStats::default(),
            warned_slope: false,
        })
    }

    fn arch(&self, indices: &[usize]) -> Result<Architecture> {
        Ok(self.space.check_arch(indices.to_vec())?)
    }

    fn latency(&self, indices: &[usize]) -> Result<f64> {
        Ok(self.model.latency_ms(&self.arch(indices)?)?)
    }

    /// T(α) of a draw: under op warmup the mask-weighted cost where the model prices fractional
    /// masks (the reference applies its linear model to the masks), else the effective choices.
    fn priced(&self, draw: &Draw) -> Result<f64> {
        if draw.replaced.iter().any(|&r| r) {
            let masks: Vec<Vec<f64>> =
                draw.weights.iter().map(|w| w.iter().map(|&v| f64::from(v)).collect()).collect();
            if let Some(t) = self.model.masked_ms(&masks) {
                return Ok(t);
            }
        }
        self.latency(&draw.effective)
    }

    /// Monte Carlo E[T] and its standard deviation under the current policy (no warmup).
    fn expected_latency(&self, samples: usize, rng: &mut Rng) -> Result<(f64, f64)> {
        let ts = (0..samples)
            .map(|_| self.latency(&self.controller.draw(rng, 0.0).sampled))
            .collect::<Result<Vec<f64>>>()?;
        let n = ts.len().max(1) as f64;
        let mean = ts.iter().sum::<f64>() / n;
        let var = ts.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Ok((mean, var.sqrt()))
    }

    fn run(&mut self, interrupt: &Interrupt) -> Result<Outcome> {
        match run_loop::drive(self, interrupt)? {
            Stop::Interrupted => Ok(self.outcome(Stop::Interrupted, None)),
            Stop::Finished => {
                let report = self.finish()?;
                Ok(self.outcome(Stop::Finished, Some(report)))
            }
        }
    }

    fn outcome(&self, stop: Stop, final_report: Option<FinalReport>) -> Outcome {
        Outcome {
            stop,
            steps_done: self.step,
            final_report,
            logits: self.controller.logits.clone(),
        }
    }

    fn finish(&mut self) -> Result<FinalReport> {
        let best = self.controller.argmax();
        let arch = self.arch(&best)?;
        let breakdown = self.model.breakdown(&arch)?;
        let weights = one_hot_selection(&best, &self.controller.decisions);
        let val_acc = evaluate_one_shot(
            &self.net,
            &self.val,
            &self.batcher,
            &weights,
            self.cfg.batch_size * self.cfg.validation_multiplier,
        )?;
        let resolved = self.space.resolve(&arch, DEPLOYMENT_RESOLUTION);
        let layers: Vec<LayerKey> = resolved
            .layers
            .iter()
            .map(|l| LayerKey { name: l.name.clone(), key: l.key.as_ref().map(|k| k.to_string()) })
            .collect();
        let t = breakdown.total_ms;
        let (expected, expected_sd) =
            self.expected_latency(1000, &mut rng_for(self.cfg.seed, "expected-final", self.step))?;
        let top = self.controller.top_probs();
        let n = top.len().max(1) as f64;
        let policy = PolicySummary {
            expected_latency_ms: expected,
            expected_latency_sd_ms: expected_sd,
            argmax_latency_ms: t,
            entropy: self.controller.total_entropy(),
            mean_top_probability: top.iter().sum::<f64>() / n,
            min_top_probability: top.iter().copied().fold(1.0, f64::min),
            decisions_below_0_9: top.iter().filter(|&&p| p < 0.9).count(),
            top_probabilities: top,
        };
        let report = FinalReport {
            space: self.space.name.into(),
            indices: arch.to_string(),
            architecture: self.space.arch_json(&arch),
            layers,
            latency_model: self.model.describe(),
            latency_ms: t,
            target_ms: self.cfg.target_ms,
            latency_error: t / self.cfg.target_ms - 1.0,
            one_shot_validation_accuracy: val_acc,
            validation_images: self.val.len(),
            steps: self.step,
            rl_archs: self.cfg.rl_archs,
            policy: Some(policy),
            q_slope_ln_t: self.slope.slope(),
            logits: self.controller.logits.clone(),
        };
        report.save(&self.dir.path)?;
        write_atomic(&self.dir.file("architecture.txt"), &format!("{arch}\n"))?;
        self.plots()?;
        Ok(report)
    }

    fn plots(&self) -> Result<()> {
        let recs = read_steps(&self.dir.file("steps.jsonl"))?;
        let series = |f: &dyn Fn(&StepRecord) -> f64| -> Vec<(f64, f64)> {
            recs.iter().map(|r| (r.step as f64, f(r))).collect()
        };
        let t0 = self.cfg.target_ms;
        let plots: [Plot; 4] = [
            (
                "latency.svg",
                "T(α) of the sampled architectures (target dashed)",
                "ms",
                vec![
                    ("T(α)", series(&|r| r.latency_ms)),
                    ("argmax T", opt_series(&recs, &|r| r.argmax_ms)),
                    ("E[T]", opt_series(&recs, &|r| r.expected_ms)),
                ],
                Some(t0),
            ),
            (
                "reward.svg",
                "reward and its baseline",
                "reward",
                vec![("reward", series(&|r| r.reward)), ("baseline", series(&|r| r.baseline))],
                None,
            ),
            (
                "entropy.svg",
                "policy entropy (active decisions of the sample; all decisions)",
                "nats",
                vec![
                    ("entropy", series(&|r| r.entropy)),
                    ("policy entropy", opt_series(&recs, &|r| r.policy_entropy)),
                ],
                None,
            ),
            (
                "quality.svg",
                "Q(α) on validation batches",
                "accuracy",
                vec![("Q", series(&|r| r.q))],
                None,
            ),
        ];
        for (name, title, y, lines, reference) in plots {
            write_atomic(&self.dir.file(name), &line_svg(title, y, &lines, reference))?;
        }
        Ok(())
    }
}

/// The points of an optional field (steps where it is absent are left out).
fn opt_series(recs: &[StepRecord], f: &dyn Fn(&StepRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    recs.iter().filter_map(|r| f(r).map(|v| (r.step as f64, v))).collect()
}

/// One plot: file name, title, y label, named series, optional reference line.
type Plot<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, Vec<(f64, f64)>)>, Option<f64>);

/// Top-1 accuracy of the supernet under a fixed selection on a whole split, in batches of
/// `batch` (stateless BN on each batch, as during the search).
pub fn evaluate_one_shot(
    net: &Supernet,
    set: &ImageSet,
    batcher: &Batcher,
    weights: &[Vec<f32>],
    batch: usize,
) -> Result<f64> {
    crate::supernet::evaluate_split(set, batcher, batch, net.device(), |x| {
        net.forward_eval(x, weights)
    })
}

/// Reads `steps.jsonl`; a malformed line is an error naming the file and line.
pub fn read_steps(path: &Path) -> Result<Vec<StepRecord>> {
    read_lines(path)
}

/// Starts a new run in `dir` (which must not exist or be empty).
pub fn start(cfg: SearchConfig, dir: &Path, interrupt: &Interrupt) -> Result<Outcome> {
    create_run_dir(dir, "tunas search --resume")?;
    let run = RunDir { path: dir.into() };
    let config = serde_json::to_string_pretty(&cfg)?;
    // A configuration that cannot start (data, device) leaves no config.json to resume.
    let mut session = Session::new(cfg, run)?;
    write_atomic(&session.dir.file("config.json"), &config)?;
    log::info!(
        "search: {} ({} decisions), supernet of {} weights at {}×{}×{}, width ×{}, {} steps of batch {} on {}",
        session.space.name,
        session.space.len(),
        session.net.num_weights(),
        session.batcher.size,
        session.batcher.size,
        session.train.shape.0,
        session.cfg.width_multiplier,
        session.cfg.steps,
        session.cfg.batch_size,
        session.cfg.device,
    );
    session.save()?;
    session.run(interrupt)
}

/// Continues the run in `dir` from its checkpoint. A finished run is reported again.
pub fn resume(dir: &Path, interrupt: &Interrupt) -> Result<Outcome> {
    let run = RunDir { path: dir.into() };
    let cpath = run.file("config.json");
    let text = fs::read_to_string(&cpath)
        .with_context(|| format!("{}: not a run directory (no config.json)", dir.display()))?;
    let cfg: SearchConfig =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", cpath.display()))?;
    let mut session = Session::new(cfg, run)?;
    run_loop::restore(&mut session)?;
    session.run(interrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(steps: usize) -> SearchConfig {
        SearchConfig {
            steps,
            batch_size: 8,
            validation_multiplier: 2,
            width_multiplier: 0.1,
            validation_size: 200,
            checkpoint_every: 3,
            rl_lr: 0.5,
            warmup_fraction: 0.25,
            min_delay_steps: 0,
            rl_archs: 2,
            seed: 11,
            ..SearchConfig::quick()
        }
    }

    fn without_seconds(path: &Path) -> Vec<StepRecord> {
        read_steps(path).unwrap().into_iter().map(|r| StepRecord { seconds: 0.0, ..r }).collect()
    }

    #[test]
    fn a_resumed_run_ends_exactly_like_an_uninterrupted_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let full = start(tiny(8), &a, &Interrupt::default()).unwrap();
        assert_eq!(full.stop, Stop::Finished);
        // Interrupted before step 5 (after a checkpoint at step 3 and two more steps).
        let cut = Interrupt { at_step: Some(5), ..Interrupt::default() };
        let part = start(tiny(8), &b, &cut).unwrap();
        assert_eq!((part.stop, part.steps_done), (Stop::Interrupted, 5));
        let rest = resume(&b, &Interrupt::default()).unwrap();
        assert_eq!(rest.stop, Stop::Finished);
        assert_eq!(rest.logits, full.logits, "final logits differ after resume");
        assert_ne!(full.logits, Controller::new(full_decisions()).logits, "the policy moved");
        assert_eq!(
            without_seconds(&a.join("steps.jsonl")),
            without_seconds(&b.join("steps.jsonl"))
        );
        let report = full.final_report.unwrap();
        assert_eq!(report, rest.final_report.unwrap());
        for f in [
            "config.json",
            "final.json",
            "architecture.txt",
            "latency.svg",
            "reward.svg",
            "entropy.svg",
        ] {
            assert!(a.join(f).exists(), "{f} missing");
        }
        assert!(a.join("checkpoint/weights.safetensors").exists());
        let t = report.latency_ms;
        assert_eq!(FinalReport::load(&a).unwrap(), report, "final.json reads back as written");
        assert!(t > 20.0 && t < 300.0, "T(α) = {t}");
        // A run directory that is not empty is refused.
        let e = start(tiny(8), &a, &Interrupt::default()).unwrap_err().to_string();
        assert!(e.contains("not empty") && e.contains("--resume"), "{e}");
    }

    fn full_decisions() -> Vec<crate::search::DecisionInfo> {
        decision_infos(&SearchSpace::by_name("proxylessnas").unwrap())
    }

    #[test]
    fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let cfg =
            SearchConfig { lr: 1e30, lr_warmup_fraction: 0.0, checkpoint_every: 1, ..tiny(6) };
        let e = start(cfg, &dir, &Interrupt::default()).unwrap_err().to_string();
        assert!(e.contains("not finite") && e.contains("last good checkpoint"), "{e}");
        let state: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.join("checkpoint/state.json")).unwrap())
                .unwrap();
        let saved = state["step"].as_u64().unwrap() as usize;
        let logged = read_steps(&dir.join("steps.jsonl")).unwrap();
        assert!(logged.iter().all(|r| r.loss.is_finite()));
        assert_eq!(saved, logged.len(), "the checkpoint is the last finite step");
    }

    #[test]
    fn bad_configurations_are_refused_with_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = SearchConfig { width_multiplier: 0.0, ..tiny(2) };
        let e = start(cfg, &tmp.path().join("x"), &Interrupt::default()).unwrap_err().to_string();
        assert!(e.contains("width_multiplier"), "{e}");
        let cfg = SearchConfig { data: "/nonexistent".into(), ..tiny(2) };
        let e = start(cfg, &tmp.path().join("y"), &Interrupt::default()).unwrap_err().to_string();
        assert!(e.contains("/nonexistent"), "{e}");
        let e = resume(&tmp.path().join("nothing"), &Interrupt::default()).unwrap_err();
        assert!(format!("{e:#}").contains("no config.json"), "{e:#}");
        if !cfg!(feature = "cuda") {
            let cfg = SearchConfig { device: ComputeDevice::Cuda(0), ..tiny(2) };
            let e = start(cfg, &tmp.path().join("z"), &Interrupt::default()).unwrap_err();
            assert!(format!("{e:#}").contains("built without CUDA"), "{e:#}");
            assert!(!tmp.path().join("z/config.json").exists(), "nothing to resume is left");
        }
    }

    #[test]
    fn the_device_is_in_config_json_only_when_it_is_not_the_cpu() {
        let cpu = serde_json::to_value(tiny(2)).unwrap();
        assert!(cpu.get("device").is_none(), "CPU runs keep the old config.json");
        let gpu = SearchConfig { device: ComputeDevice::Cuda(1), ..tiny(2) };
        let text = serde_json::to_string(&gpu).unwrap();
        assert!(text.contains(r#""device":"cuda:1""#), "{text}");
        assert_eq!(serde_json::from_str::<SearchConfig>(&text).unwrap(), gpu);
        let mut old = cpu.clone();
        old["device"] = "tpu".into();
        let e = serde_json::from_value::<SearchConfig>(old).unwrap_err().to_string();
        assert!(e.contains("\"tpu\""), "{e}");
    }
}
