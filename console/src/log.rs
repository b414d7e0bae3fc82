//! The profiling driver's observer for people: a progress line and log lines on stderr.

use latency_tables::driver::{Event, Observer};

use crate::Progress;

/// Draws the driver's progress line and logs its problems, each line prefixed with the
/// program's name (`tunas: …`, `device-agent: …`).
#[derive(Debug)]
pub struct Log {
    program: &'static str,
    label: &'static str,
    progress: Option<Progress>,
}

impl Log {
    /// An observer for `program` whose progress line is labelled `label`.
    pub fn new(program: &'static str, label: &'static str) -> Self {
        Log { program, label, progress: None }
    }

    fn line(&self, message: &str) {
        ::log::warn!("{}: {message}", self.program);
    }

    fn note(&self, message: &str) {
        ::log::info!("{}: {message}", self.program);
    }
}

impl Observer for Log {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Resumed { path, done, total } => self.note(&format!(
                "resuming {}: {done} of {total} (key, pass) results already measured",
                path.display()
            )),
            Event::Damaged { path, lines, backup } => {
                let which: Vec<String> = lines.iter().map(|d| d.line.to_string()).collect();
                self.line(&format!(
                    "{}: {} damaged line(s) dropped (line {}; the first: {}); their keys are measured again{}",
                    path.display(),
                    lines.len(),
                    which.join(", "),
                    lines.first().map_or("", |d| d.message.as_str()),
                    backup.map_or(String::new(), |b| format!("; the damaged file is kept as {}", b.display()))
                ))
            }
            Event::Started { done, total } => {
                self.progress = Some(Progress::new(self.label, total, done));
            }
            Event::Measured { key, .. } => {
                if let Some(p) = self.progress.as_mut() {
                    p.advance(1, &key.to_string());
                }
            }
            Event::KeyFailed { key, error } => {
                self.line(&format!("{key}: {error}"));
                if let Some(p) = self.progress.as_mut() {
                    p.advance(1, &key.to_string());
                }
            }
            Event::Converged { key, skipped } => {
                // The passes it no longer needs count as done.
                if let Some(p) = self.progress.as_mut() {
                    p.advance(skipped as u64, &format!("{key} converged"));
                }
            }
            Event::LinkFailed { device, error, requeued } => {
                self.line(&format!("{device}: {error}; re-requesting {requeued} items"))
            }
            Event::GaveUp { key, attempts, error } => {
                self.line(&format!("{key}: giving up after {attempts} attempts: {error}"))
            }
            Event::Gone { device, error: Some(e) } => {
                self.line(&format!("{device}: giving up on this device: {e}"))
            }
            Event::Gone { error: None, .. } => {}
        }
    }
}
