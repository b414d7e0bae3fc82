//! The `tunas` command line: one `Command` variant per subcommand, each wrapping `cmd::X::Cmd`.

use clap::{Parser, Subcommand};

use crate::cmd;

/// TuNAS search host: search spaces, latency models and tables, architecture search.
#[derive(Debug, Parser)]
#[command(name = "tunas", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List or show the search spaces.
    #[command(subcommand)]
    Space(cmd::space::Cmd),
    /// Predict the latency T(α) of an architecture with the Pixel 1 model or a measured table.
    Latency(cmd::latency::Cmd),
    /// Every distinct op key a space can contain: the list of keys to profile on a device.
    Plan(cmd::plan::Cmd),
    /// Measure op keys on devices through their agents into a latency table (resumable).
    Profile(Box<cmd::profile::Cmd>),
    /// TuNAS search: weight-sharing supernet + REINFORCE controller with the absolute reward.
    /// No arguments: a quick search (proxylessnas, embedded Fashion-MNIST, pixel1, T0 = 84 ms).
    Search(Box<cmd::search::Cmd>),
    /// Stand-alone training of one architecture at its selected widths (stateful BN), evaluated
    /// on the held-out validation split and the test split.
    Train(Box<cmd::train::Cmd>),
    /// Random search: architectures drawn uniformly within T0 ± tolerance, each trained
    /// stand-alone; the best by validation accuracy.
    RandomSearch(Box<cmd::random::Cmd>),
    /// TuNAS vs random search: K searches of each at equal search compute, every result trained
    /// stand-alone; a Markdown/JSON/SVG report in the form of the paper's Table 4.
    Compare(Box<cmd::compare::Cmd>),
    /// Is a search's supernet worth trusting? N architectures near its T0 ranked by one-shot
    /// accuracy and by stand-alone training; Kendall τ and Spearman ρ (the paper's Fig. 7).
    RankCheck(Box<cmd::rank_check::Cmd>),
    /// Render a run directory (search, training, random search or comparison) as Markdown.
    Report(cmd::report::Cmd),
    /// A trained network as ONNX (BN folded), checked against tract and the latency model's keys.
    Export(Box<cmd::export::Cmd>),
    /// Inspect, compare and combine latency tables.
    #[command(subcommand)]
    Tables(cmd::tables::Cmd),
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Space(c) => c.run(),
        Command::Latency(c) => c.run(),
        Command::Plan(c) => c.run(),
        Command::Tables(c) => c.run(),
        Command::Profile(c) => c.run(),
        Command::Search(c) => c.run(),
        Command::Train(c) => c.run(),
        Command::RandomSearch(c) => c.run(),
        Command::Export(c) => c.run(),
        Command::Compare(c) => c.run(),
        Command::RankCheck(c) => c.run(),
        Command::Report(c) => c.run(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
