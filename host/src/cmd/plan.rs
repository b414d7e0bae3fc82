//! `tunas plan`: every distinct op key any architecture of a space can contain.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use latency_tables::{OpKind, Plan, Precision};

use crate::space::SearchSpace;

/// `tunas plan --space NAME [--resolution 224] [--precision f32|i8] [--out plan.json]`
#[derive(Debug, Args)]
pub struct Cmd {
    /// The search space.
    #[arg(long)]
    pub space: String,
    /// Deployment resolution.
    #[arg(long, default_value_t = 224, value_parser = super::values::resolution())]
    pub resolution: u32,
    /// The number format of the keys: f32 (keys as they always were) or i8 (keys ending in /i8,
    /// built as int8 QLinearConv models).
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Write the plan here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl Cmd {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<i32> {
        use std::io::Write;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let space = SearchSpace::by_name(&self.space)?;
        let keys =
            space.plan(self.resolution).into_iter().map(|k| k.with_precision(self.precision));
        let plan = Plan::new(Some(space.name.to_string()), Some(self.resolution), keys);
        let mut by_kind = String::new();
        for kind in OpKind::ALL {
            let n = plan.keys.iter().filter(|k| k.kind == kind).count();
            by_kind.push_str(&format!(" {}={n}", kind.tag()));
        }
        log::info!(
            "{}: {} distinct op keys at {}x{}, {} ({})",
            space.name,
            plan.count,
            self.resolution,
            self.resolution,
            self.precision,
            by_kind.trim()
        );
        match &self.out {
            Some(path) => std::fs::write(path, plan.to_json())
                .with_context(|| format!("writing {}", path.display()))?,
            None => write!(out, "{}", plan.to_json())?,
        }
        Ok(0)
    }
}
