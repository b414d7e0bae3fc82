//! One module per `tunas` subcommand. Data goes to stdout, messages to stderr.

pub mod compare;
pub mod costmodel;
pub mod export;
pub mod latency;
pub mod options;
pub mod plan;
pub mod profile;
pub mod random;
pub mod rank_check;
pub mod report;
pub mod search;
pub mod space;
pub mod tables;
pub mod train;
pub mod values;
pub mod verify;

use std::sync::atomic::Ordering;

use anyhow::{Context, Result};

use crate::runs::Interrupt;

/// An interrupt set by Ctrl-C (a second Ctrl-C exits at once with 130), stopping before
/// `stop_at` when given.
pub fn interrupt(what: &'static str, stop_at: Option<usize>) -> Result<Interrupt> {
    let interrupt = Interrupt { at_step: stop_at, ..Interrupt::default() };
    let flag = interrupt.flag.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        log::warn!("\n{what}: Ctrl-C — checkpointing after this step (again to quit now)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(interrupt)
}
