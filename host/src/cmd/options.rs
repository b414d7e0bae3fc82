//! Option groups shared by the training commands (`search`, `train`, `random-search`,
//! `compare`), declared once and flattened into each command's arguments.

use anyhow::{Context, Result};
use clap::Args;

use crate::search::SearchConfig;
use crate::space::{Architecture, SearchSpace};
use crate::supernet::ComputeDevice;
use crate::train::TrainConfig;

/// What a run trains and on what: the space, the latency model that prices it, the data and its
/// held-out split, the proxy network's geometry and the seed.
#[derive(Debug, Clone, Args)]
pub struct Training {
    /// Search space.
    #[arg(long, default_value = "proxylessnas")]
    pub space: String,
    /// Latency model: `pixel1` (the paper's), a fitted cost-model file (`tunas costmodel fit`)
    /// or a measured latency table file.
    #[arg(long, default_value = "pixel1", alias = "model")]
    pub latency: String,
    /// Data: `fashion-mnist` (embedded subset) or a directory of IDX or CIFAR-10 binary files.
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Images held out of the training split for validation.
    #[arg(long, default_value_t = 2000, value_parser = super::values::images())]
    pub validation_size: usize,
    /// Training batch size (a search's validation batch for Q is 4× this).
    #[arg(long, default_value_t = 32, value_parser = super::values::batch_size())]
    pub batch_size: usize,
    /// Channel multiplier of the proxy networks (T(α) is always for full width at 224×224).
    #[arg(long, default_value_t = 0.25, value_parser = super::values::WIDTH_MULTIPLIER)]
    pub width_multiplier: f64,
    /// Seed of every random draw (weights, data order, flips, sampled architectures); repeat r
    /// of a comparison uses seed + r.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the networks train: `cpu` (the custom ops) or `cuda`, `cuda:N` (Candle's kernels on
    /// GPU N; a build with `--features cuda`).
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda[:N]")]
    pub device: ComputeDevice,
}

impl Training {
    /// The named space.
    pub fn space(&self) -> Result<SearchSpace> {
        Ok(SearchSpace::by_name(&self.space)?)
    }

    /// Images in the training split once the validation images are held out.
    pub fn train_images(&self) -> Result<usize> {
        Ok(crate::data::Dataset::len(&crate::data::load(&self.data)?.train)
            .saturating_sub(self.validation_size))
    }

    /// Steps for `epochs` passes over the training split at this batch size (at least one).
    pub fn steps_for_epochs(&self, epochs: f64) -> Result<usize> {
        Ok(crate::train::steps_for_epochs(epochs, self.train_images()?, self.batch_size))
    }

    /// A search configuration of these settings (the quick defaults otherwise).
    pub fn search_config(&self) -> Result<SearchConfig> {
        let space = self.space()?;
        Ok(SearchConfig {
            space: space.name.into(),
            latency: self.latency.clone(),
            target_ms: space.default_target_ms,
            data: self.data.clone(),
            validation_size: self.validation_size,
            batch_size: self.batch_size,
            width_multiplier: self.width_multiplier,
            seed: self.seed,
            lr: crate::search::default_lr(self.batch_size),
            device: self.device,
            ..SearchConfig::quick()
        })
    }

    /// A stand-alone training configuration of `arch` with these settings (the reference
    /// learning rate at this batch size, the defaults otherwise).
    pub fn train_config(&self, arch: &str) -> Result<TrainConfig> {
        let space = self.space()?;
        Ok(TrainConfig {
            latency: self.latency.clone(),
            data: self.data.clone(),
            validation_size: self.validation_size,
            batch_size: self.batch_size,
            width_multiplier: self.width_multiplier,
            seed: self.seed,
            lr: crate::train::reference_lr(self.batch_size),
            device: self.device,
            ..TrainConfig::new(space.name, arch)
        })
    }
}

/// The latency target of a search or a random search.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Latency target T0 in ms [default: the paper's target for the space: 84, or 57 for
    /// mobilenet-v3-like].
    #[arg(long, value_parser = super::values::LATENCY_MS)]
    pub target_ms: Option<f64>,
}

impl Target {
    /// T0: the option, or `default` (the space's target).
    pub fn or(&self, default: f64) -> f64 {
        self.target_ms.unwrap_or(default)
    }
}

/// Reads `--arch` (one rule for every command): `@RUN_DIR` reads a search run's
/// `architecture.txt`; a path to a file reads the file; anything else is the text itself (an
/// index string, JSON, or a reference name).
pub fn arch_text(arg: &str) -> Result<String> {
    if let Some(dir) = arg.strip_prefix('@') {
        let path = std::path::PathBuf::from(dir).join("architecture.txt");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!("{}: {e} (is {dir} a finished search run?)", path.display())
        })?;
        return Ok(text.trim().to_string());
    }
    let path = std::path::Path::new(arg);
    if !arg.contains(':') && path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading architecture file {arg}"))?;
        return Ok(text.trim().to_string());
    }
    let looks_like_a_file = [".txt", ".json"].iter().any(|e| arg.ends_with(e)) || arg.contains('/');
    if !arg.contains(':') && !arg.starts_with(['[', '{']) && looks_like_a_file {
        anyhow::bail!("--arch {arg}: no such file");
    }
    Ok(arg.to_string())
}

/// The architecture of `space` that `--arch ARG` names (the one architecture source of every
/// command: a reference name, an index string, JSON, a file, or `@RUN_DIR`).
pub fn architecture(space: &SearchSpace, arg: &str) -> Result<Architecture> {
    Ok(space.parse_arch(&arch_text(arg)?)?)
}

/// Fixtures of the commands' tests.
#[cfg(test)]
pub mod testing {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use crate::space::SearchSpace;

    /// ProxylessNAS-Mobile's index string, written as an architecture file and as a search
    /// run's `architecture.txt` in `dir`: `(file, @run, indices)`.
    pub fn arch_sources(dir: &std::path::Path) -> (String, String, String) {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let indices = space.parse_arch("proxylessnas-mobile").unwrap().to_string();
        let file = dir.join("arch.txt");
        std::fs::write(&file, format!("{indices}\n")).unwrap();
        std::fs::write(dir.join("architecture.txt"), &indices).unwrap();
        (file.display().to_string(), format!("@{}", dir.display()), indices)
    }

    /// The parsed command of `tunas ARGS…`.
    pub fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("tunas").chain(args.iter().copied())).unwrap().command
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Line {
        #[command(flatten)]
        training: Training,
        #[command(flatten)]
        target: Target,
    }

    #[test]
    fn the_groups_fill_both_configurations_alike() {
        let line = Line::try_parse_from([
            "x",
            "--space",
            "mobilenet-v3-like",
            "--model",
            "t.json",
            "--batch-size",
            "64",
            "--width-multiplier",
            "0.5",
            "--seed",
            "7",
            "--validation-size",
            "100",
        ])
        .unwrap();
        let t = &line.training;
        assert_eq!(t.latency, "t.json", "--model is an alias of --latency");
        let s = t.search_config().unwrap();
        let r = t.train_config("").unwrap();
        assert_eq!(
            (s.space.as_str(), r.space.as_str()),
            ("mobilenet-v3-like", "mobilenet-v3-like")
        );
        assert_eq!((s.latency.as_str(), r.latency.as_str()), ("t.json", "t.json"));
        assert_eq!((s.batch_size, r.batch_size, s.seed, r.seed), (64, 64, 7, 7));
        assert_eq!((s.width_multiplier, r.width_multiplier), (0.5, 0.5));
        assert_eq!((s.validation_size, r.validation_size), (100, 100));
        assert_eq!(r.lr, crate::train::reference_lr(64));
        assert_eq!(s.lr, crate::search::default_lr(64));
        let space = t.space().unwrap();
        assert_eq!(line.target.or(space.default_target_ms), space.default_target_ms);
        assert_eq!(s.target_ms, space.default_target_ms);
    }

    #[test]
    fn epochs_become_steps_over_the_training_split() {
        let line = Line::try_parse_from(["x", "--validation-size", "2000"]).unwrap();
        let n = line.training.train_images().unwrap();
        assert!(n > 0);
        assert_eq!(
            line.training.steps_for_epochs(1.0).unwrap(),
            (n as f64 / 32.0).round() as usize
        );
    }

    #[test]
    fn every_form_of_arch_is_read_by_the_one_rule() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("arch.txt");
        std::fs::write(&file, "0:1:2\n").unwrap();
        assert_eq!(arch_text(&file.display().to_string()).unwrap(), "0:1:2");
        std::fs::write(dir.path().join("architecture.txt"), "3:4\n").unwrap();
        assert_eq!(arch_text(&format!("@{}", dir.path().display())).unwrap(), "3:4");
        let err = arch_text("@/no/such/run").unwrap_err().to_string();
        assert!(err.contains("architecture.txt") && err.contains("finished search run"), "{err}");
        assert_eq!(arch_text("proxylessnas-mobile").unwrap(), "proxylessnas-mobile");
        assert_eq!(arch_text("0:1:2").unwrap(), "0:1:2");
        assert_eq!(arch_text("[0, 1, 2]").unwrap(), "[0, 1, 2]");
        let err = arch_text("missing/arch.txt").unwrap_err().to_string();
        assert!(err.contains("missing/arch.txt: no such file"), "{err}");
    }
}
