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
    #[command(flatten)]
    #[allow(missing_docs)]
    pub log: console::logger::Flags,
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
    /// Measure the architecture a search found, whole, on a device: predicted vs measured.
    Verify(Box<cmd::verify::Cmd>),
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
    /// Learn a device's cost model from whole networks measured on it, and check it on new ones.
    #[command(subcommand)]
    Costmodel(cmd::costmodel::Cmd),
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Space(c) => c.run(),
        Command::Latency(c) => c.run(),
        Command::Plan(c) => c.run(),
        Command::Tables(c) => c.run(),
        Command::Costmodel(c) => c.run(),
        Command::Profile(c) => c.run(),
        Command::Search(c) => c.run(),
        Command::Verify(c) => c.run(),
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
    use clap::Parser;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    fn argv(line: &str) -> Vec<&str> {
        std::iter::once("tunas").chain(line.split_whitespace()).collect()
    }

    #[test]
    fn the_defaults_still_parse() {
        for line in [
            "search",
            "search --beta -0.07 --lr 0.2 --rl-lr 0 --epochs 0.5",
            "train --arch x",
            "random-search",
            "compare",
            "rank-check runs/s",
            "export --run r --out o.onnx",
            "latency --space s --arch a",
            "plan --space s",
            "profile --space s --device local --out t.json",
            "tables validate t.json --space s --device local",
            "tables diff a.json b.json",
        ] {
            if let Err(e) = Cli::try_parse_from(argv(line)) {
                panic!("{line}: {e}");
            }
        }
    }

    #[test]
    fn bad_numbers_are_usage_errors_naming_the_option() {
        let validate = "tables validate t.json --space s --device local";
        let profile = "profile --space s --device local --out t.json";
        let cases = [
            (format!("{validate} --timeout inf"), "--timeout", "(0, 86400]"),
            (format!("{validate} --timeout 0"), "--timeout", "(0, 86400]"),
            (format!("{validate} --samples 0"), "--samples", "1..=100000"),
            (format!("{validate} --pass-secs NaN"), "--pass-secs", "[0, 3600]"),
            (format!("{profile} --key-timeout inf"), "--key-timeout", "(0, 86400]"),
            (format!("{profile} --key-timeout NaN"), "--key-timeout", "(0, 86400]"),
            (format!("{profile} --passes 1000"), "--passes", "1..=100"),
            (format!("{profile} --runs 0"), "--runs", "1..=1000000"),
            (format!("{profile} --max-attempts 0"), "--max-attempts", "1..=1000"),
            (format!("{profile} --resolution 100000"), "--resolution", "1..=4096"),
            ("search --lr=-1".into(), "--lr", "(0, 1000000]"),
            ("search --beta nan".into(), "--beta", "[-10, 10]"),
            ("search --batch-size 0".into(), "--batch-size", "1..=65536"),
            ("search --width-multiplier 0".into(), "--width-multiplier", "(0, 4]"),
            ("search --epochs inf".into(), "--epochs", "(0, 10000]"),
            ("search --target-ms 0".into(), "--target-ms", "(0, 100000]"),
            ("search --rl-archs 65".into(), "--rl-archs", "1..=64"),
            ("search --checkpoint-every 0".into(), "--checkpoint-every", "1..="),
            ("train --arch x --epochs NaN".into(), "--epochs", "(0, 10000]"),
            ("train --arch x --lr 0".into(), "--lr", "(0, 1000000]"),
            ("random-search --tolerance-ms inf".into(), "--tolerance-ms", "(0, 100000]"),
            ("random-search --n 0".into(), "--n", "1..="),
            ("compare --k 0".into(), "--k", "1..="),
            ("compare --final-epochs=-1".into(), "--final-epochs", "(0, 10000]"),
            ("compare --jobs 0".into(), "--jobs", "1..=1024"),
            ("rank-check r --n 0".into(), "--n", "1..="),
            ("export --run r --out o --check-images 0".into(), "--check-images", "1..="),
            ("latency --space s --arch a --resolution 0".into(), "--resolution", "1..=4096"),
        ];
        for (line, option, range) in &cases {
            let err = match Cli::try_parse_from(argv(line)) {
                Ok(_) => panic!("{line}: accepted"),
                Err(e) => e,
            };
            assert_eq!(err.exit_code(), 2, "{line}");
            let text = err.to_string();
            assert!(text.contains(option) && text.contains(range), "{line}: {text}");
        }
    }
}
