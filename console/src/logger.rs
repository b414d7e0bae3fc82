//! The binaries' logger: `log` records on stderr as they are written (each message names its
//! command and says when it is a warning: `search: warning: …`, `tunas: FAILED …`), at a level
//! set by `-q`/`-v`.

use std::io::Write;

use log::{LevelFilter, Metadata, Record};

/// The `-q`/`-v` flags both binaries flatten into their command line (global: before or after
/// the subcommand).
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Flags {
    /// Say only warnings and errors on stderr (no progress lines).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Say more on stderr (`-vv` for everything).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Flags {
    /// The verbosity they ask for.
    pub fn verbosity(&self) -> Verbosity {
        Verbosity::from_flags(self.quiet, self.verbose)
    }
}

/// How much the binaries say on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: warnings and errors only; no progress lines.
    Quiet,
    /// The default: what a run did and where, and progress lines.
    Normal,
    /// `-v`: also the details (`debug`).
    Verbose,
    /// `-vv`: everything (`trace`).
    Trace,
}

impl Verbosity {
    /// The verbosity of `-q` and a count of `-v`s (`-q` wins).
    pub fn from_flags(quiet: bool, verbose: u8) -> Verbosity {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, 1) => Verbosity::Verbose,
            (false, _) => Verbosity::Trace,
        }
    }

    /// The `log` level this verbosity lets through.
    pub fn level(self) -> LevelFilter {
        match self {
            Verbosity::Quiet => LevelFilter::Warn,
            Verbosity::Normal => LevelFilter::Info,
            Verbosity::Verbose => LevelFilter::Debug,
            Verbosity::Trace => LevelFilter::Trace,
        }
    }
}

#[derive(Debug)]
struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // A closed stderr has nowhere to report to.
        let _ = writeln!(std::io::stderr().lock(), "{}", record.args());
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Installs the stderr logger at `verbosity` (once per process; later calls only set the level).
pub fn init(verbosity: Verbosity) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(verbosity.level());
}

/// Whether progress lines are drawn (not under `-q`).
pub fn progress_shown() -> bool {
    log::max_level() >= LevelFilter::Info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_levels() {
        assert_eq!(Verbosity::from_flags(false, 0).level(), LevelFilter::Info);
        assert_eq!(Verbosity::from_flags(true, 2).level(), LevelFilter::Warn);
        assert_eq!(Verbosity::from_flags(false, 1).level(), LevelFilter::Debug);
        assert_eq!(Verbosity::from_flags(false, 5).level(), LevelFilter::Trace);
    }
}
