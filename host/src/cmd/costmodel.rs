//! `tunas costmodel fit|eval`: learn a device's latency cost model from whole networks measured
//! on it — the paper's own method — and check it on architectures it has not seen.
//!
//! `fit` measures the space's reference architectures and N sampled ones (stratified over the
//! latency range by a cheap predictor: the table's Σ, or the Pixel 1 model), fits the space's
//! coupled-feature linear model by ridge regression (λ by k-fold cross-validation; with
//! `--table`, shrunk towards the table's Σ projected onto the features and scaled to the
//! device), reports the k-fold held-out figures next to the table's Σ and its affine correction
//! on the same networks, and writes a cost-model file that `--latency`/`--model` accept. `eval`
//! measures M new architectures and reports the honest held-out figures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use latency_tables::{LatencyTable, Method};
use serde::Serialize;

use crate::device::networks::measure_architectures;
use crate::device::TransportSpec;
use crate::latency::fit::{self, Accuracy};
use crate::latency::{CostModel, LatencyModel, MeasuredTable};
use crate::space::{reference_architectures, Architecture, SearchSpace};
use crate::tables::validate::{fit_affine, sample_architectures};

/// `tunas costmodel …`
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Fit the space's coupled-feature linear model to whole networks measured on a device.
    Fit(Box<FitCmd>),
    /// Measure new architectures on the device and report how well a fitted model predicts them.
    Eval(Box<EvalCmd>),
}

impl Cmd {
    /// Runs the command.
    pub fn run(self) -> Result<i32> {
        match self {
            Cmd::Fit(c) => c.run(),
            Cmd::Eval(c) => c.run(),
        }
    }
}

/// Where and how networks are measured (shared by `fit` and `eval`).
#[derive(Debug, Args)]
pub struct Measuring {
    /// The search space.
    #[arg(long, default_value = "proxylessnas")]
    pub space: String,
    /// Where the agent is (local, exec:COMMAND, serial:PATH, tcp:HOST:PORT).
    #[arg(long)]
    pub device: String,
    /// The agent binary for `local`.
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Deployment resolution.
    #[arg(long, default_value_t = 224, value_parser = super::values::resolution())]
    pub resolution: u32,
    /// A measured table of the same device: Σ of its medians is the prior of the fit and the
    /// baseline the report compares with.
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// Longest silence in seconds while a network is measured.
    #[arg(long, default_value_t = 600.0, value_parser = super::values::SECONDS)]
    pub timeout: f64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub method: Method,
}

/// `tunas costmodel fit --space S --device D --samples N --out model.json [--table T.json]`
#[derive(Debug, Args)]
pub struct FitCmd {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub measuring: Measuring,
    /// Sampled architectures to measure (the space's reference architectures come on top).
    #[arg(long, default_value_t = 150, value_parser = super::values::count())]
    pub samples: usize,
    /// Seed of the architecture sampling.
    #[arg(long, default_value_t = 0)]
    pub sample_seed: u64,
    /// Cross-validation folds (λ is chosen by them, and they give the held-out figures).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=100))]
    pub folds: u64,
    /// The cost-model file to write; measurements are journaled in OUT.journal.
    #[arg(long)]
    pub out: PathBuf,
}

/// `tunas costmodel eval MODEL --space S --device D --samples M --sample-seed X`
#[derive(Debug, Args)]
pub struct EvalCmd {
    /// The cost-model file (from `costmodel fit`).
    pub model: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub measuring: Measuring,
    /// New architectures to measure.
    #[arg(long, default_value_t = 50, value_parser = super::values::count())]
    pub samples: usize,
    /// Seed of the sampling (use another than the fit's: the default differs from fit's 0).
    #[arg(long, default_value_t = 1)]
    pub sample_seed: u64,
}

/// The table baseline of a report: Σ of medians, raw and with an affine correction.
#[derive(Debug, Clone, Serialize)]
pub struct TableBaseline {
    /// The table.
    pub table: String,
    /// Σ of medians without any correction.
    pub sum: Accuracy,
    /// Σ with an affine correction: fitted on these networks for `fit` (in-sample, so
    /// flattering), the table's own stored correction for `eval` (absent without one).
    pub affine: Option<Accuracy>,
}

/// What `costmodel fit` reports (and stores in the model file as `fit`).
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    /// The space.
    pub space: String,
    /// The deployment resolution.
    pub resolution: u32,
    /// The device link.
    pub device: String,
    /// Networks measured (reference architectures included).
    pub networks: usize,
    /// Features (weights) of the model.
    pub features: usize,
    /// Sampling seed.
    pub sample_seed: u64,
    /// Cross-validation folds.
    pub folds: usize,
    /// The ridge strength chosen.
    pub lambda: f64,
    /// The prior: `none`, or the table whose Σ the weights were shrunk towards.
    pub prior: String,
    /// k-fold held-out figures of the fitted model (every network predicted by a model that did
    /// not see it).
    pub held_out: Accuracy,
    /// The table's figures on the same networks.
    pub table: Option<TableBaseline>,
    /// The method the networks were measured with.
    pub method: Method,
    /// Seconds the command took (measuring included).
    pub seconds: f64,
}

/// What `costmodel eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The model file.
    pub model: String,
    /// The space.
    pub space: String,
    /// New networks measured.
    pub networks: usize,
    /// Sampling seed.
    pub sample_seed: u64,
    /// The model's figures on them.
    pub held_out: Accuracy,
    /// The share within ±10% (%), as its own field for scripts.
    pub within_10: f64,
    /// The table's figures on the same networks.
    pub table: Option<TableBaseline>,
    /// Seconds the command took.
    pub seconds: f64,
}

impl Measuring {
    fn space(&self) -> Result<SearchSpace> {
        Ok(SearchSpace::by_name(&self.space)?)
    }

    fn table(&self, space: &SearchSpace) -> Result<Option<(LatencyTable, MeasuredTable)>> {
        let Some(path) = &self.table else { return Ok(None) };
        let table = LatencyTable::load(path)
            .with_context(|| format!("loading the table {}", path.display()))?;
        let mut raw = table.clone();
        raw.correction = None;
        let name = path.display().to_string();
        Ok(Some((table, MeasuredTable::new(raw, &name, space.clone(), self.resolution))))
    }

    fn measure(
        &self,
        space: &SearchSpace,
        archs: &[Architecture],
        journal: &Path,
        label: &str,
    ) -> Result<(Vec<f64>, Option<latency_tables::Fingerprint>)> {
        self.method.check()?;
        let link = TransportSpec::parse(&self.device, self.agent.as_ref())?;
        let (us, fp) = measure_architectures(
            space,
            archs,
            self.resolution,
            latency_tables::Precision::F32,
            &link,
            &self.method,
            Duration::from_secs_f64(self.timeout),
            journal,
            &mut |i, _, us, fresh| {
                if fresh {
                    log::info!("{label} {}/{}: {:.3} ms", i + 1, archs.len(), us / 1e3);
                }
            },
        )?;
        Ok((us.iter().map(|u| u / 1e3).collect(), fp))
    }
}

/// Σ of the table's medians (ms) for every architecture.
fn table_sums(model: &MeasuredTable, archs: &[Architecture]) -> Result<Vec<f64>> {
    archs.iter().map(|a| Ok(model.latency_ms(a)?)).collect()
}

/// The table's Σ projected onto the model's features: a ridge fit (small λ) of Σ over `n`
/// architectures sampled with `seed` (no measuring: the table is evaluated).
fn table_prior(
    template: &CostModel,
    table: &MeasuredTable,
    space: &SearchSpace,
    n: usize,
    seed: u64,
) -> Result<fit::Ridge> {
    let archs = sample_architectures(space, n, seed);
    let rows: Vec<_> = archs.iter().map(|a| template.features(a)).collect();
    let y = table_sums(table, &archs)?;
    fit::ridge(&rows, &y, template.num_weights(), None, 1e-3)
        .context("projecting the table onto the model's features")
}

/// The reference architectures of the space, then `n` sampled ones spread evenly over the
/// latency range that `predict` gives a pool of 20·n uniform samples.
fn stratified(
    space: &SearchSpace,
    n: usize,
    seed: u64,
    predict: &dyn Fn(&Architecture) -> Result<f64>,
) -> Result<Vec<Architecture>> {
    let mut out = Vec::new();
    for r in reference_architectures(space.name) {
        out.push(space.parse_arch(r.indices)?);
    }
    let pool = sample_architectures(space, 20 * n, seed);
    let mut scored = pool
        .into_iter()
        .map(|a| Ok((predict(&a)?, a)))
        .collect::<Result<Vec<(f64, Architecture)>>>()?;
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let len = scored.len();
    for k in 0..n {
        let i = ((k as f64 + 0.5) * len as f64 / n as f64) as usize;
        out.push(scored[i.min(len - 1)].1.clone());
    }
    Ok(out)
}

fn journal_next_to(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl FitCmd {
    /// Runs the command.
    pub fn run(self) -> Result<i32> {
        let start = Instant::now();
        let m = &self.measuring;
        let space = m.space()?;
        let template = CostModel::pixel1(&space)?;
        let table = m.table(&space)?;
        // Stratify by the table's Σ, or by the Pixel 1 model (any monotone proxy of latency).
        let archs =
            match &table {
                Some((_, t)) => {
                    stratified(&space, self.samples, self.sample_seed, &|a| Ok(t.latency_ms(a)?))?
                }
                None => stratified(&space, self.samples, self.sample_seed, &|a| {
                    Ok(template.latency_ms(a)?)
                })?,
            };
        log::info!(
            "tunas: measuring {} networks of {} at {}×{} on {}",
            archs.len(),
            space.name,
            m.resolution,
            m.resolution,
            m.device
        );
        let (y, fingerprint) =
            m.measure(&space, &archs, &journal_next_to(&self.out, ".journal"), "costmodel fit")?;
        let rows: Vec<_> = archs.iter().map(|a| template.features(a)).collect();
        let (prior, baseline) = match &table {
            Some((_, t)) => {
                let sums = table_sums(t, &archs)?;
                let projected =
                    table_prior(&template, t, &space, 2000, self.sample_seed ^ 0x7AB1E)?;
                // The table's scale on this device (its Σ misses the whole-network overheads).
                let scale =
                    fit_affine(&sums, &y).map_or(1.0, |(s, _)| if s > 0.0 { s } else { 1.0 });
                let prior: Vec<f64> = projected.weights.iter().map(|w| w * scale).collect();
                let affine = fit_affine(&sums, &y).map(|(s, o)| {
                    let corrected: Vec<f64> = sums.iter().map(|x| s * x + o).collect();
                    Accuracy::of(&corrected, &y)
                });
                let base = TableBaseline {
                    table: m.table.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    sum: Accuracy::of(&sums, &y),
                    affine,
                };
                (Some(prior), Some(base))
            }
            None => (None, None),
        };
        let cv = fit::cross_validated(
            &rows,
            &y,
            template.num_weights(),
            prior.as_deref(),
            self.folds as usize,
        )
        .context("the fit failed (too few networks?)")?;
        let report = FitReport {
            space: space.name.to_string(),
            resolution: m.resolution,
            device: m.device.clone(),
            networks: archs.len(),
            features: template.num_weights(),
            sample_seed: self.sample_seed,
            folds: cv.folds,
            lambda: cv.lambda,
            prior: m.table.as_ref().map_or("none".into(), |p| format!("Σ of {}", p.display())),
            held_out: Accuracy::of(&cv.held_out, &y),
            table: baseline,
            method: m.method.clone(),
            seconds: start.elapsed().as_secs_f64(),
        };
        let model = template.with_weights(
            cv.model.bias,
            cv.model.weights,
            format!("{} (cost model fitted on {})", self.out.display(), m.device),
            fingerprint,
            serde_json::to_value(&report)?,
        );
        model.save(&self.out)?;
        if m.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "{} networks of {} on {} ({} features, λ = {:.3e}, prior {})",
                report.networks,
                report.space,
                report.device,
                report.features,
                report.lambda,
                report.prior
            );
            println!("{}", row("fitted model (k-fold held out)", &report.held_out));
            if let Some(b) = &report.table {
                println!("{}", row("table Σ", &b.sum));
                if let Some(a) = &b.affine {
                    println!("{}", row("table Σ, affine (in-sample)", a));
                }
            }
            println!("wrote {}", self.out.display());
        }
        Ok(0)
    }
}

fn row(name: &str, a: &Accuracy) -> String {
    format!(
        "{name:<32} RMSPE {:6.2}%   median |err| {:5.2}%   within ±5% {:5.1}%   within ±10% {:5.1}%   Kendall τ {:.3}",
        a.rmspe, a.median_abs_error, a.within_5, a.within_10, a.kendall_tau
    )
}

impl EvalCmd {
    /// Runs the command.
    pub fn run(self) -> Result<i32> {
        let start = Instant::now();
        let m = &self.measuring;
        let space = m.space()?;
        let model = CostModel::load(&self.model, &space)?;
        let r = model.resolution();
        if r != m.resolution {
            bail!(
                "{} was fitted at {r}×{r}, not {res}×{res} (pass --resolution {r})",
                self.model.display(),
                res = m.resolution
            );
        }
        let archs = sample_architectures(&space, self.samples, self.sample_seed);
        let (y, _) = m.measure(
            &space,
            &archs,
            &journal_next_to(&self.model, ".eval.journal"),
            "costmodel eval",
        )?;
        let predicted =
            archs.iter().map(|a| Ok(model.latency_ms(a)?)).collect::<Result<Vec<_>>>()?;
        let baseline = match m.table(&space)? {
            Some((table, raw)) => {
                let sums = table_sums(&raw, &archs)?;
                let affine = table.correction.as_ref().map(|c| {
                    let corrected: Vec<f64> = sums.iter().map(|s| c.apply(s * 1e3) / 1e3).collect();
                    Accuracy::of(&corrected, &y)
                });
                Some(TableBaseline {
                    table: m.table.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    sum: Accuracy::of(&sums, &y),
                    affine,
                })
            }
            None => None,
        };
        let held_out = Accuracy::of(&predicted, &y);
        let report = EvalReport {
            model: self.model.display().to_string(),
            space: space.name.to_string(),
            networks: archs.len(),
            sample_seed: self.sample_seed,
            within_10: held_out.within_10,
            held_out,
            table: baseline,
            seconds: start.elapsed().as_secs_f64(),
        };
        if m.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "{} new networks of {} (sample seed {}) on {}",
                report.networks, report.space, report.sample_seed, m.device
            );
            println!("{}", row("cost model", &report.held_out));
            if let Some(b) = &report.table {
                println!("{}", row("table Σ", &b.sum));
                if let Some(a) = &b.affine {
                    println!("{}", row("table Σ with its correction", a));
                }
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latency_tables::{Entry, Fingerprint, LatencyStats};

    /// A table of every key of the space with a median that depends on the key's size.
    fn table(space: &SearchSpace) -> MeasuredTable {
        let mut t = LatencyTable::new(Fingerprint::default(), Method::default());
        for key in space.plan(224) {
            let us = 50.0 + key.to_string().len() as f64 * 3.0 + f64::from(key.cout) * 0.7;
            t.insert(Entry::new(key, LatencyStats::from_samples(&[us]).unwrap(), 0.0, false));
        }
        MeasuredTable::new(t, "t.json", space.clone(), 224)
    }

    #[test]
    fn the_table_projects_onto_the_coupled_features() {
        // Σ of a table is a sum of per-layer terms, each fixed by that layer's choices: the
        // coupled features can express it, so the projection predicts unseen networks closely.
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let template = CostModel::pixel1(&space).unwrap();
        let t = table(&space);
        let prior = table_prior(&template, &t, &space, 600, 1).unwrap();
        let unseen = sample_architectures(&space, 50, 99);
        let worst = unseen
            .iter()
            .map(|a| {
                let sum = t.latency_ms(a).unwrap();
                ((prior.predict(&template.features(a)) - sum) / sum).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 0.01, "worst relative error {worst}");
    }

    #[test]
    fn stratified_samples_cover_the_latency_range_and_start_with_the_references() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let template = CostModel::pixel1(&space).unwrap();
        let predict = |a: &Architecture| Ok(template.latency_ms(a)?);
        let archs = stratified(&space, 20, 0, &predict).unwrap();
        let refs = reference_architectures(space.name).len();
        assert_eq!(archs.len(), refs + 20);
        let t: Vec<f64> = archs[refs..].iter().map(|a| predict(a).unwrap()).collect();
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "sorted by predicted latency");
        // Uniform samples crowd the middle; the stratified ones reach both tails of a pool.
        let uniform: Vec<f64> =
            sample_architectures(&space, 20, 0).iter().map(|a| predict(a).unwrap()).collect();
        let spread = |v: &[f64]| {
            v.iter().copied().fold(f64::MIN, f64::max) - v.iter().copied().fold(f64::MAX, f64::min)
        };
        assert!(spread(&t) > spread(&uniform), "{} vs {}", spread(&t), spread(&uniform));
    }
}
