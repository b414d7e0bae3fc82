//! An agent behind a [`Link`] as a profiling [`Worker`]: connect and greet, measure groups of
//! keys with a per-message timeout, kill the agent after a failure and reconnect.

use std::sync::Arc;
use std::time::Duration;

use latency_tables::driver::{Hello, Report, Worker, WorkerError};
use latency_tables::{Method, OpKey};

use super::client::AgentClient;
use super::Link;

/// One device of a profile.
#[derive(Debug)]
pub struct AgentWorker {
    link: Arc<dyn Link>,
    client: Option<AgentClient>,
    /// The longest silence allowed while the agent works.
    pub timeout: Duration,
    /// The longest wait for the handshake.
    pub hello_timeout: Duration,
}

impl AgentWorker {
    /// A worker over `link`, allowing `timeout` of silence while the agent measures.
    pub fn new(link: Arc<dyn Link>, timeout: Duration) -> Self {
        AgentWorker { link, client: None, timeout, hello_timeout: Duration::from_secs(60) }
    }
}

impl Worker for AgentWorker {
    fn describe(&self) -> String {
        self.link.describe()
    }

    fn connect(&mut self) -> Result<Hello, WorkerError> {
        if let Some(c) = self.client.take() {
            c.kill();
        }
        let client = AgentClient::connect(self.link.as_ref(), self.hello_timeout)?;
        let hello = Hello { fingerprint: client.fingerprint.clone(), agent: client.agent.clone() };
        self.client = Some(client);
        Ok(hello)
    }

    fn measure(
        &mut self,
        pass: u32,
        keys: &[OpKey],
        method: &Method,
        report: &mut Report<'_>,
    ) -> Result<(), WorkerError> {
        let Some(client) = self.client.as_mut() else {
            return Err(WorkerError::Link("not connected".into()));
        };
        client.measure(pass, keys, method, self.timeout, report)
    }

    fn disconnect(&mut self, broken: bool) {
        match (self.client.take(), broken) {
            (Some(c), false) => c.shutdown(),
            (Some(c), true) => c.kill(),
            (None, _) => {}
        }
    }
}
