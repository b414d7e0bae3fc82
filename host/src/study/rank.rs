//! The rank check (the TuNAS paper's Fig. 7): is a search's supernet worth trusting? N distinct
//! architectures near the run's latency target T0 are ranked twice — by their one-shot validation
//! accuracy in the trained supernet and by their validation accuracy after stand-alone training
//! from scratch — and the two rankings are compared with Kendall's τ-b and Spearman's ρ.
//!
//! Output directory (default `RUN/rank-check`): `config.json` (a [`RankConfig`]),
//! `candidates.json` (the architectures, their T(α) and one-shot accuracies), `candidates/NN/`
//! (one stand-alone training run each, resumable on its own), then `rank-check.json`,
//! `rank-check.md` and `rank-check.svg`. Running the same check again continues where it stopped.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::window::{draw_within, Window};
use crate::data::{self, Batcher, Dataset, ImageSet};
use crate::latency::LatencyModel;
use crate::report::plot::scatter_svg;
use crate::rng::Rng;
use crate::run_loop::Stop;
use crate::runs::{load_checkpoint, load_latency, read_json, set_vars, write_atomic, Interrupt};
use crate::search::{
    decision_infos, evaluate_one_shot, one_hot_selection, DecisionInfo, SearchConfig, SearchSetup,
};
use crate::space::{Architecture, SearchSpace};
use crate::supernet::Supernet;
use crate::train::{run_or_resume, TrainConfig, TrainResult};

/// Draws of the rejection sampler before a window is declared (practically) empty.
pub const MAX_DRAWS: usize = 1_000_000;

/// Everything that defines a rank check; written to `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankConfig {
    /// The finished search run whose supernet is checked.
    pub run: PathBuf,
    /// Architectures within the window (the search's own result counts when it falls inside).
    pub n: usize,
    /// Accept architectures with |T(α) − T0| ≤ this (ms).
    pub tolerance_ms: f64,
    /// Give up after this many draws.
    pub max_draws: usize,
    /// Seed of the draws and of every stand-alone training.
    pub seed: u64,
    /// Training length asked for, in epochs of the training split (`train.steps` is the result).
    pub epochs: f64,
    /// The stand-alone training of every architecture (its `arch` is replaced): the search's
    /// space, latency model, data, validation split, width, batch size and learning rate.
    pub train: TrainConfig,
}

impl RankConfig {
    /// The check of the search run `run` (configuration `search`): `n` architectures within
    /// `tolerance_ms` of its target, each trained for `epochs` like the search's proxy.
    pub fn for_run(
        run: &Path,
        search: &SearchConfig,
        n: usize,
        tolerance_ms: f64,
        epochs: f64,
        seed: u64,
    ) -> Result<RankConfig> {
        if !(epochs.is_finite() && epochs > 0.0) {
            bail!("--epochs must be positive, got {epochs}");
        }
        let mut train = super::train_like(search);
        train.seed = seed;
        let n_train = data::load(&search.data)?.train.len().saturating_sub(search.validation_size);
        train.steps = train.steps_for_epochs(epochs, n_train);
        let cfg = RankConfig {
            run: run.into(),
            n,
            tolerance_ms,
            max_draws: MAX_DRAWS,
            seed,
            epochs,
            train,
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        if self.n == 0 {
            bail!("--n must be positive (architectures to rank)");
        }
        if !(self.tolerance_ms.is_finite() && self.tolerance_ms > 0.0) {
            bail!("--tolerance-ms must be positive, got {}", self.tolerance_ms);
        }
        if self.max_draws == 0 {
            bail!("--max-draws must be positive");
        }
        Ok(())
    }
}

/// What a finished search run offers the check.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRun {
    /// Its directory.
    pub dir: PathBuf,
    /// Its `config.json`.
    pub config: SearchConfig,
    /// The architecture it found (`final.json` `indices`).
    pub arch: String,
}

/// Reads a finished search run: its configuration and the architecture in `final.json`. A
/// missing directory, a directory that is not a search run and an unfinished search are errors
/// naming the path.
pub fn search_run(dir: &Path) -> Result<SearchRun> {
    if !dir.is_dir() {
        bail!("{}: no such search run directory", dir.display());
    }
    let cpath = dir.join("config.json");
    if !cpath.exists() {
        bail!("{}: not a search run directory (no config.json)", dir.display());
    }
    let config: SearchConfig = read_json(&cpath)
        .with_context(|| format!("{}: not a search run directory", dir.display()))?;
    let fpath = dir.join("final.json");
    if !fpath.exists() {
        bail!(
            "{}: the search has not finished (no final.json); finish it with `tunas search --resume {}`",
            dir.display(),
            dir.display()
        );
    }
    let arch = crate::search::FinalReport::load(dir)?.indices;
    Ok(SearchRun { dir: dir.into(), config, arch })
}

/// The trained supernet of a search run, rebuilt exactly as the search built it (same space,
/// data split, geometry and initialisation) with the weights of its last checkpoint.
pub struct OneShot {
    space: SearchSpace,
    infos: Vec<DecisionInfo>,
    net: Supernet,
    val: ImageSet,
    batcher: Batcher,
    batch: usize,
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneShot")
            .field("space", &self.space.name)
            .field("net", &self.net)
            .field("validation_images", &self.val.len())
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl OneShot {
    /// Loads the supernet of the search run `dir` with configuration `cfg`.
    pub fn load(dir: &Path, cfg: &SearchConfig) -> Result<OneShot> {
        let SearchSetup { space, val, batcher, net, .. } = cfg.setup()?;
        let device = net.device().clone();
        let ck = load_checkpoint(dir, &device)
            .with_context(|| format!("{}: loading the supernet", dir.display()))?;
        set_vars(net.vars(), &ck.weights, &ck.weights_path).with_context(|| {
            format!(
                "{}: the checkpoint does not fit this build's supernet (a run made by another version of tunas?)",
                dir.display()
            )
        })?;
        if ck.weights.len() != net.vars().all_vars().len() {
            bail!(
                "{}: the checkpoint holds {} weights, this build's supernet {} (a run made by another version of tunas?)",
                ck.weights_path.display(),
                ck.weights.len(),
                net.vars().all_vars().len()
            );
        }
        let infos = decision_infos(&space);
        Ok(OneShot {
            space,
            infos,
            net,
            val,
            batcher,
            batch: cfg.batch_size * cfg.validation_multiplier,
        })
    }

    /// The space of the supernet.
    pub fn space(&self) -> &SearchSpace {
        &self.space
    }

    /// One-shot top-1 accuracy of `arch` on the whole validation split (one-hot selection,
    /// batches as the search's Q(α) batches).
    pub fn accuracy(&self, arch: &Architecture) -> Result<f64> {
        let sel = one_hot_selection(&arch.indices, &self.infos);
        evaluate_one_shot(&self.net, &self.val, &self.batcher, &sel, self.batch)
    }
}

/// Where an architecture of the check comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Drawn uniformly within the window.
    Random,
    /// The search's result, within the window (one of the N).
    Search,
    /// The search's result, outside the window: an extra point, not in τ and ρ.
    SearchOutsideWindow,
}

impl Origin {
    /// Whether the architecture counts in τ and ρ.
    pub fn ranked(self) -> bool {
        self != Origin::SearchOutsideWindow
    }

    fn note(self) -> &'static str {
        match self {
            Origin::Random => "",
            Origin::Search => "search result",
            Origin::SearchOutsideWindow => "search result, outside the window (not ranked)",
        }
    }
}

/// One architecture of the check, before training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankCandidate {
    /// Index string.
    pub indices: String,
    /// T(α) in ms.
    pub latency_ms: f64,
    /// Where it comes from.
    pub origin: Origin,
    /// Top-1 of the supernet with this path on the validation split.
    pub one_shot_accuracy: f64,
}

/// `candidates.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankCandidates {
    /// Uniform draws made.
    pub draws: usize,
    /// Random architectures accepted / drawn (absent when nothing was drawn).
    pub acceptance_rate: Option<f64>,
    /// The architectures, the search's result first.
    pub candidates: Vec<RankCandidate>,
}

/// An architecture drawn by [`sample`].
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    /// The architecture.
    pub arch: Architecture,
    /// T(α) in ms.
    pub latency_ms: f64,
    /// Where it comes from.
    pub origin: Origin,
}

/// `cfg.n` distinct architectures with |T(α) − `target_ms`| ≤ `cfg.tolerance_ms`: the search's
/// result `found` first when it is inside (marked [`Origin::Search`]), the rest drawn uniformly
/// by rejection (seeded by `cfg.seed`); when `found` is outside it follows the n as an extra
/// [`Origin::SearchOutsideWindow`] point. Returns them and the number of draws; fewer than n
/// after `cfg.max_draws` draws is an error naming `--tolerance-ms`.
pub fn sample(
    space: &SearchSpace,
    model: &dyn LatencyModel,
    found: &Architecture,
    target_ms: f64,
    cfg: &RankConfig,
) -> Result<(Vec<Drawn>, usize)> {
    let (tolerance_ms, n, max_draws) = (cfg.tolerance_ms, cfg.n, cfg.max_draws);
    let window = Window { target_ms, tolerance_ms };
    let t_found = model.latency_ms(found)?;
    let mut out: Vec<Drawn> = Vec::new();
    if window.holds(t_found) {
        out.push(Drawn { arch: found.clone(), latency_ms: t_found, origin: Origin::Search });
    }
    let mut rng = Rng::new(cfg.seed).fork("rank-check");
    let taken: Vec<Architecture> = out.iter().map(|d| d.arch.clone()).collect();
    let drawn = draw_within(space, model, &mut rng, window, n - out.len(), max_draws, &taken)?;
    let draws = drawn.draws;
    if out.len() + drawn.accepted.len() < n {
        bail!(
            "rank check: only {} of {n} architectures within {target_ms} ± {tolerance_ms} ms after {draws} draws; widen --tolerance-ms or lower --n",
            out.len() + drawn.accepted.len()
        );
    }
    out.extend(drawn.accepted.into_iter().map(|a| Drawn {
        arch: a.arch,
        latency_ms: a.latency_ms,
        origin: Origin::Random,
    }));
    if !window.holds(t_found) {
        out.push(Drawn {
            arch: found.clone(),
            latency_ms: t_found,
            origin: Origin::SearchOutsideWindow,
        });
    }
    Ok((out, draws))
}

/// One architecture of `rank-check.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankEntry {
    /// Index string.
    pub indices: String,
    /// T(α) in ms.
    pub latency_ms: f64,
    /// Where it comes from.
    pub origin: Origin,
    /// One-shot top-1 on the validation split.
    pub one_shot_accuracy: f64,
    /// Stand-alone top-1 on the validation split.
    pub standalone_validation_accuracy: f64,
    /// Stand-alone top-1 on the test split.
    pub standalone_test_accuracy: f64,
    /// Its training run directory, relative to the check's.
    pub dir: String,
}

/// `rank-check.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankResult {
    /// The search run.
    pub run: PathBuf,
    /// Space.
    pub space: String,
    /// What priced T(α).
    pub latency_model: String,
    /// T0 of the search.
    pub target_ms: f64,
    /// Window half-width.
    pub tolerance_ms: f64,
    /// Stand-alone training steps of each architecture.
    pub train_steps: usize,
    /// Batch size of the trainings.
    pub batch_size: usize,
    /// Uniform draws made.
    pub draws: usize,
    /// Random architectures accepted / drawn.
    pub acceptance_rate: Option<f64>,
    /// Architectures ranked (those inside the window).
    pub n: usize,
    /// Kendall τ-b between one-shot and stand-alone validation accuracy (absent when undefined:
    /// fewer than two architectures, or one side all tied).
    pub kendall_tau: Option<f64>,
    /// Spearman ρ between the same (absent when undefined).
    pub spearman_rho: Option<f64>,
    /// Every architecture, the search's result first.
    pub architectures: Vec<RankEntry>,
}

/// The outcome of [`run`].
#[derive(Debug, Clone)]
pub struct RankOutcome {
    /// Why it stopped.
    pub stop: Stop,
    /// The result when finished.
    pub result: Option<RankResult>,
}

/// Kendall's τ-b of paired samples (ties in either handled): `(C − D) / √((n0 − n1)(n0 − n2))`
/// over all pairs, with C/D the concordant/discordant pairs, n0 = n(n−1)/2 and n1, n2 the pairs
/// tied in `x`, in `y`. `None` with fewer than two pairs or when either side is all tied. Pairs
/// up to the shorter slice.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    let (mut c, mut d, mut tx, mut ty) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..n {
        for j in i + 1..n {
            let (sx, sy) = (sign(x[i], x[j]), sign(y[i], y[j]));
            tx += u64::from(sx == 0);
            ty += u64::from(sy == 0);
            match sx * sy {
                1 => c += 1,
                -1 => d += 1,
                _ => {}
            }
        }
    }
    let n0 = (n * n.saturating_sub(1) / 2) as u64;
    let denom = ((n0 - tx) as f64 * (n0 - ty) as f64).sqrt();
    (denom > 0.0).then(|| (c as f64 - d as f64) / denom)
}

/// −1, 0 or 1 as `a` is below, equal to (or unordered with) or above `b`.
fn sign(a: f64, b: f64) -> i32 {
    match a.partial_cmp(&b) {
        Some(std::cmp::Ordering::Less) => -1,
        Some(std::cmp::Ordering::Greater) => 1,
        _ => 0,
    }
}

/// Ranks 1..=n of `v`, ties given their average rank.
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's ρ of paired samples: the Pearson correlation of their average ranks (so ties are
/// handled). `None` with fewer than two pairs or when either side is all tied. Pairs up to the
/// shorter slice.
pub fn spearman_rho(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 2 {
        return None;
    }
    let (rx, ry) = (average_ranks(&x[..n]), average_ranks(&y[..n]));
    let mean = (n as f64 + 1.0) / 2.0;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mean) * (b - mean);
        sxx += (a - mean).powi(2);
        syy += (b - mean).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

fn candidate_dir(i: usize) -> String {
    format!("candidates/{i:02}")
}

/// Checks that `out` is absent, empty, or holds this very check (so it can be continued).
fn check_dir(cfg: &RankConfig, out: &Path) -> Result<()> {
    let path = out.join("config.json");
    if path.exists() {
        let have: RankConfig = read_json(&path)?;
        if &have != cfg {
            bail!(
                "{}: holds a rank check with other settings (see its config.json); remove it or choose another --out",
                out.display()
            );
        }
        return Ok(());
    }
    if out.exists()
        && fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?.next().is_some()
    {
        bail!("{}: not empty and not a rank check; choose another --out", out.display());
    }
    Ok(())
}

/// The architectures of the check with their one-shot accuracies: read from
/// `candidates.json`, or drawn and evaluated in the supernet and written there with
/// `config.json` (`None` when interrupted before all are evaluated; nothing is written then).
fn candidates(
    cfg: &RankConfig,
    search: &SearchRun,
    out: &Path,
    interrupt: &Interrupt,
) -> Result<Option<RankCandidates>> {
    let path = out.join("candidates.json");
    if path.exists() {
        return read_json(&path).map(Some);
    }
    let s = &search.config;
    let space = SearchSpace::by_name(&s.space)?;
    let model = load_latency(&s.latency, &space)?;
    let found = space.parse_arch(&search.arch).with_context(|| {
        format!("{}: final.json: architecture {:?}", search.dir.display(), search.arch)
    })?;
    let (drawn, draws) = sample(&space, model.as_ref(), &found, s.target_ms, cfg)?;
    let random = drawn.iter().filter(|d| d.origin == Origin::Random).count();
    let acceptance_rate = (draws > 0).then(|| random as f64 / draws as f64);
    log::info!(
        "rank check: {} architectures within {} ± {} ms ({} drawn uniformly in {draws} draws); one-shot accuracies from {}",
        drawn.iter().filter(|d| d.origin.ranked()).count(),
        s.target_ms,
        cfg.tolerance_ms,
        random,
        search.dir.display()
    );
    let one_shot = OneShot::load(&search.dir, s)?;
    let mut list = Vec::with_capacity(drawn.len());
    for d in drawn {
        if interrupt.flag.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let acc = one_shot.accuracy(&d.arch)?;
        log::info!(
            "rank check: {} T(α) = {:.2} ms, one-shot {:.2}%{}",
            d.arch,
            d.latency_ms,
            100.0 * acc,
            match d.origin {
                Origin::Random => String::new(),
                o => format!(" ({})", o.note()),
            }
        );
        list.push(RankCandidate {
            indices: d.arch.to_string(),
            latency_ms: d.latency_ms,
            origin: d.origin,
            one_shot_accuracy: acc,
        });
    }
    let c = RankCandidates { draws, acceptance_rate, candidates: list };
    // The directory is made only now, so that a run whose supernet cannot be read leaves none.
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(&out.join("config.json"), &serde_json::to_string_pretty(cfg)?)?;
    write_atomic(&path, &serde_json::to_string_pretty(&c)?)?;
    Ok(Some(c))
}

/// Runs (or continues) the rank check `cfg` of the search run `search` in `out`: draws the
/// architectures and their one-shot accuracies, trains each stand-alone in `candidates/NN/`,
/// then writes `rank-check.json`, `.md` and `.svg`. Stops with [`Stop::Interrupted`] (the
/// finished trainings and a checkpoint of the current one kept) when `interrupt` fires.
pub fn run(
    cfg: &RankConfig,
    search: &SearchRun,
    out: &Path,
    interrupt: &Interrupt,
) -> Result<RankOutcome> {
    cfg.check()?;
    if cfg.train.space != search.config.space {
        bail!(
            "rank check: trains {} architectures but the search run {} is over {}",
            cfg.train.space,
            search.dir.display(),
            search.config.space
        );
    }
    check_dir(cfg, out)?;
    let Some(cands) = candidates(cfg, search, out, interrupt)? else {
        return Ok(RankOutcome { stop: Stop::Interrupted, result: None });
    };
    let total = cands.candidates.len();
    let mut entries = Vec::with_capacity(total);
    let mut latency_model = String::new();
    for (i, c) in cands.candidates.iter().enumerate() {
        if interrupt.flag.load(Ordering::SeqCst) {
            return Ok(RankOutcome { stop: Stop::Interrupted, result: None });
        }
        let sub = candidate_dir(i);
        let train = TrainConfig { arch: c.indices.clone(), ..cfg.train.clone() };
        log::info!("rank check: training {}/{total} {} in {}", i + 1, c.indices, sub);
        let outcome = run_or_resume(&train, &out.join(&sub), interrupt)
            .with_context(|| format!("architecture {i} ({})", out.join(&sub).display()))?;
        let Some(r): Option<TrainResult> = outcome.result else {
            return Ok(RankOutcome { stop: Stop::Interrupted, result: None });
        };
        latency_model = r.latency_model.clone();
        entries.push(RankEntry {
            indices: c.indices.clone(),
            latency_ms: c.latency_ms,
            origin: c.origin,
            one_shot_accuracy: c.one_shot_accuracy,
            standalone_validation_accuracy: r.validation_accuracy,
            standalone_test_accuracy: r.test_accuracy,
            dir: sub,
        });
    }
    let ranked: Vec<&RankEntry> = entries.iter().filter(|e| e.origin.ranked()).collect();
    let xs: Vec<f64> = ranked.iter().map(|e| e.one_shot_accuracy).collect();
    let ys: Vec<f64> = ranked.iter().map(|e| e.standalone_validation_accuracy).collect();
    let result = RankResult {
        run: search.dir.clone(),
        space: search.config.space.clone(),
        latency_model,
        target_ms: search.config.target_ms,
        tolerance_ms: cfg.tolerance_ms,
        train_steps: cfg.train.steps,
        batch_size: cfg.train.batch_size,
        draws: cands.draws,
        acceptance_rate: cands.acceptance_rate,
        n: ranked.len(),
        kendall_tau: kendall_tau_b(&xs, &ys),
        spearman_rho: spearman_rho(&xs, &ys),
        architectures: entries,
    };
    write_atomic(&out.join("rank-check.json"), &serde_json::to_string_pretty(&result)?)?;
    write_atomic(&out.join("rank-check.md"), &markdown(&result))?;
    write_atomic(&out.join("rank-check.svg"), &svg(&result))?;
    Ok(RankOutcome { stop: Stop::Finished, result: Some(result) })
}

/// A coefficient to two decimals, or `n/a`.
pub fn coefficient(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.2}"))
}

/// The result as a Markdown report with one table row per architecture.
pub fn markdown(r: &RankResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Rank check: {}\n", r.run.display());
    let _ = writeln!(
        out,
        "Does the supernet rank architectures like stand-alone training? {} architectures of `{}` with |T(α) − {} ms| ≤ {} ms on `{}` ({} uniform draws), each evaluated one-shot in the supernet and trained from scratch for {} steps of batch {}; accuracies on the held-out validation split (test accuracy for reference).\n",
        r.n,
        r.space,
        r.target_ms,
        r.tolerance_ms,
        r.latency_model,
        r.draws,
        r.train_steps,
        r.batch_size
    );
    let _ = writeln!(
        out,
        "**Kendall τ = {}, Spearman ρ = {}** over n = {} (1: the same order, 0: unrelated, −1: reversed).\n",
        coefficient(r.kendall_tau),
        coefficient(r.spearman_rho),
        r.n
    );
    let _ = writeln!(
        out,
        "| # | Architecture | T(α) (ms) | One-shot val (%) | Stand-alone val (%) | Stand-alone test (%) | Note |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for (i, e) in r.architectures.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {i} | `{}` | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            e.indices,
            e.latency_ms,
            100.0 * e.one_shot_accuracy,
            100.0 * e.standalone_validation_accuracy,
            100.0 * e.standalone_test_accuracy,
            e.origin.note()
        );
    }
    out
}

/// The scatter plot of stand-alone against one-shot validation accuracy.
pub fn svg(r: &RankResult) -> String {
    let points = |o: Origin| -> Vec<(f64, f64)> {
        r.architectures
            .iter()
            .filter(|e| e.origin == o)
            .map(|e| (e.one_shot_accuracy, e.standalone_validation_accuracy))
            .collect()
    };
    let mut series = vec![("random", points(Origin::Random))];
    for o in [Origin::Search, Origin::SearchOutsideWindow] {
        let p = points(o);
        if !p.is_empty() {
            series.push((o.note(), p));
        }
    }
    let title = format!(
        "stand-alone vs one-shot validation accuracy: Kendall τ = {}, Spearman ρ = {}, n = {}",
        coefficient(r.kendall_tau),
        coefficient(r.spearman_rho),
        r.n
    );
    scatter_svg(&title, "one-shot accuracy", "stand-alone accuracy", &series, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn rank_kendall_tau_b_on_known_examples() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!(close(kendall_tau_b(&x, &x), 1.0));
        let rev = [5.0, 4.0, 3.0, 2.0, 1.0];
        assert!(close(kendall_tau_b(&x, &rev), -1.0));
        // 6 concordant, 4 discordant pairs.
        assert!(close(kendall_tau_b(&x, &[3.0, 4.0, 1.0, 2.0, 5.0]), 0.2));
        // Ties: 4 concordant, one pair tied in x, one in y: 4 / √(5·5).
        assert!(close(kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 3.0]), 0.8));
        // SciPy's documented example (ties in both, one pair tied in both): −4 / √(8·9).
        let t = kendall_tau_b(&[12.0, 2.0, 1.0, 12.0, 2.0], &[1.0, 4.0, 7.0, 1.0, 0.0]);
        assert!(close(t, -0.471_404_520_791_031_7), "{t:?}");
        // A pair tied on both sides leaves identical orders at 1.
        assert!(close(kendall_tau_b(&[1.0, 1.0, 2.0], &[1.0, 1.0, 2.0]), 1.0));
        // Undefined: too few points, or one side all tied.
        assert_eq!(kendall_tau_b(&[1.0], &[2.0]), None);
        assert_eq!(kendall_tau_b(&[], &[]), None);
        assert_eq!(kendall_tau_b(&[1.0, 2.0, 3.0], &[0.5, 0.5, 0.5]), None);
    }

    #[test]
    fn rank_spearman_rho_on_known_examples() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!(close(spearman_rho(&x, &[10.0, 20.0, 30.0, 40.0, 50.0]), 1.0));
        assert!(close(spearman_rho(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]), -1.0));
        // 1 − 6·Σd²/(n(n²−1)) = 1 − 6·16/120.
        assert!(close(spearman_rho(&x, &[3.0, 4.0, 1.0, 2.0, 5.0]), 0.2));
        // Ties get average ranks: [1, 2.5, 2.5, 4] and [1, 2, 3.5, 3.5]: 3.75 / 4.5.
        let r = spearman_rho(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 3.0]);
        assert!(close(r, 3.75 / 4.5), "{r:?}");
        assert_eq!(average_ranks(&[0.3, 0.1, 0.3, 0.2]), vec![3.5, 1.0, 3.5, 2.0]);
        assert_eq!(spearman_rho(&[1.0], &[1.0]), None);
        assert_eq!(spearman_rho(&[1.0, 2.0], &[3.0, 3.0]), None);
    }

    #[test]
    fn rank_sampling_puts_the_search_result_first_or_last() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let model = load_latency("pixel1", &space).unwrap();
        let found = space.parse_arch("proxylessnas-mobile").unwrap();
        let t = model.latency_ms(&found).unwrap();
        let cfg = |tolerance_ms: f64, n: usize, max_draws: usize| RankConfig {
            run: PathBuf::new(),
            n,
            tolerance_ms,
            max_draws,
            seed: 5,
            epochs: 1.0,
            train: TrainConfig::new("proxylessnas", ""),
        };
        let (inside, draws) =
            sample(&space, model.as_ref(), &found, t, &cfg(2.0, 4, MAX_DRAWS)).unwrap();
        assert_eq!(inside.len(), 4);
        assert_eq!((inside[0].arch.clone(), inside[0].origin), (found.clone(), Origin::Search));
        assert!(draws >= 3);
        for (i, d) in inside.iter().enumerate() {
            assert!((d.latency_ms - t).abs() <= 2.0);
            assert!(inside[..i].iter().all(|e| e.arch != d.arch), "distinct");
        }
        let far = t + 10.0;
        let (outside, _) =
            sample(&space, model.as_ref(), &found, far, &cfg(2.0, 3, MAX_DRAWS)).unwrap();
        assert_eq!(outside.len(), 4);
        assert!(outside[..3].iter().all(|d| d.origin == Origin::Random));
        assert_eq!(outside[3].origin, Origin::SearchOutsideWindow);
        let e = sample(&space, model.as_ref(), &found, 5.0, &cfg(0.5, 2, 1000)).unwrap_err();
        assert!(e.to_string().contains("--tolerance-ms"), "{e}");
    }

    #[test]
    fn rank_check_of_a_tiny_search_writes_its_report_and_resumes() {
        let tmp = tempfile::tempdir().unwrap();
        let run_dir = tmp.path().join("run");
        let scfg = SearchConfig {
            steps: 8,
            batch_size: 8,
            validation_multiplier: 2,
            width_multiplier: 0.1,
            validation_size: 200,
            checkpoint_every: 4,
            min_delay_steps: 0,
            rl_archs: 2,
            seed: 11,
            ..SearchConfig::quick()
        };
        let done = crate::search::start(scfg, &run_dir, &Interrupt::default()).unwrap();
        assert_eq!(done.stop, Stop::Finished);
        let search = search_run(&run_dir).unwrap();
        let mut cfg = RankConfig::for_run(&run_dir, &search.config, 3, 1000.0, 0.01, 0).unwrap();
        cfg.train.eval_batch = 500;
        assert!(cfg.train.steps >= 1 && cfg.train.steps < 20, "{}", cfg.train.steps);
        let out = tmp.path().join("rank");
        let r = run(&cfg, &search, &out, &Interrupt::default()).unwrap().result.unwrap();
        for f in
            ["config.json", "candidates.json", "rank-check.json", "rank-check.md", "rank-check.svg"]
        {
            assert!(out.join(f).exists(), "{f} missing");
        }
        assert_eq!((r.n, r.architectures.len()), (3, 3));
        assert_eq!(r.architectures[0].origin, Origin::Search);
        assert_eq!(r.architectures[0].indices, search.arch);
        assert!(out.join("candidates/02/result.json").exists());
        for v in [r.kendall_tau, r.spearman_rho].into_iter().flatten() {
            assert!((-1.0..=1.0).contains(&v), "{v}");
        }
        let md = fs::read_to_string(out.join("rank-check.md")).unwrap();
        assert!(md.contains("Kendall τ") && md.contains(&search.arch), "{md}");
        // Running it again reports the same result from the finished trainings.
        let again = run(&cfg, &search, &out, &Interrupt::default()).unwrap().result.unwrap();
        assert_eq!(again, r);
        // Other settings in the same directory are refused.
        let other = RankConfig { n: 2, ..cfg.clone() };
        let e = run(&other, &search, &out, &Interrupt::default()).unwrap_err().to_string();
        assert!(e.contains("other settings"), "{e}");
        // Bad input names the path or flag.
        let e = RankConfig::for_run(&run_dir, &search.config, 0, 2.0, 1.0, 0).unwrap_err();
        assert!(e.to_string().contains("--n"), "{e}");
        let e = search_run(&tmp.path().join("nothing")).unwrap_err().to_string();
        assert!(e.contains("nothing") && e.contains("no such"), "{e}");
        // A checkpoint that does not fit the rebuilt supernet is refused before any output.
        let wider = SearchConfig { width_multiplier: 0.2, ..search.config.clone() };
        write_atomic(&run_dir.join("config.json"), &serde_json::to_string(&wider).unwrap())
            .unwrap();
        let bad = tmp.path().join("bad");
        let e = run(&cfg, &search_run(&run_dir).unwrap(), &bad, &Interrupt::default()).unwrap_err();
        assert!(format!("{e:#}").contains("does not fit"), "{e:#}");
        assert!(!bad.exists());
        fs::remove_file(run_dir.join("final.json")).unwrap();
        let e = search_run(&run_dir).unwrap_err().to_string();
        assert!(e.contains("final.json") && e.contains("not finished"), "{e}");
    }
}
