//! A progress line on stderr with done/total, rate, ETA and the current item. On a terminal it
//! redraws one line; otherwise it prints a line at most every 10 s (for logs and CI).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress of a job of `total` units.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    start: Instant,
    started_at: u64,
    last_print: Option<Instant>,
    tty: bool,
}

/// `1h02m`, `3m05s`, `12s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Progress {
    /// Starts a progress line; `done` units are already finished (a resumed job).
    pub fn new(label: &str, total: u64, done: u64) -> Self {
        Progress {
            label: label.into(),
            total,
            done,
            start: Instant::now(),
            started_at: done,
            last_print: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Marks `n` more units finished, currently working on `current`.
    pub fn advance(&mut self, n: u64, current: &str) {
        self.done += n;
        let now = Instant::now();
        let due = match self.last_print {
            None => true,
            Some(t) => {
                now - t
                    >= if self.tty { Duration::from_millis(100) } else { Duration::from_secs(10) }
            }
        };
        if (due || self.done == self.total) && crate::logger::progress_shown() {
            self.last_print = Some(now);
            self.print(current);
        }
    }

    fn print(&self, current: &str) {
        let width = 30usize;
        let frac = if self.total == 0 { 1.0 } else { self.done as f64 / self.total as f64 };
        let filled = (frac * width as f64) as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled.min(width));
        let rate_done = self.done - self.started_at;
        let eta = if rate_done > 0 {
            let per = self.start.elapsed().as_secs_f64() / rate_done as f64;
            human(Duration::from_secs_f64(per * (self.total - self.done.min(self.total)) as f64))
        } else {
            "?".into()
        };
        let line = format!(
            "{} [{bar}] {}/{} elapsed {} ETA {eta}  {current}",
            self.label,
            self.done,
            self.total,
            human(self.start.elapsed())
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            if self.done >= self.total {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}
