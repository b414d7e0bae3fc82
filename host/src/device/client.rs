//! The host side of the protocol: hello (version check), measure, measure a network, with a
//! timeout on every message. The agent sends `Progress` heartbeats while it works, so the
//! timeout is the longest silence allowed, whatever the method and the canary grouping. A
//! reader thread decodes frames into a channel, so timeouts work the same over pipes, serial
//! lines, TCP and in-memory links; corrupted frames are dropped by the decoder and show up as a
//! missing response (a timeout, or a result missing at `Done`), which the caller answers by
//! re-requesting.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use latency_tables::driver::{Outcome, Report, WorkerError};
use latency_tables::frame::{write_frame, FrameReader};
use latency_tables::wire::{Request, Response, Subject, PROTOCOL_VERSION};
use latency_tables::{Fingerprint, Method, Network, OpKey};

use super::{Connection, Link};

/// One message from the reader thread.
enum Incoming {
    Frame(Vec<u8>),
    Closed(String),
}

/// A connected, greeted agent.
pub struct AgentClient {
    name: String,
    writer: Box<dyn std::io::Write + Send>,
    rx: Receiver<Incoming>,
    child: Option<std::process::Child>,
    closer: Option<Box<dyn FnOnce() + Send>>,
    next_id: u64,
    /// The agent's fingerprint from the handshake.
    pub fingerprint: Fingerprint,
    /// The agent's self-description.
    pub agent: String,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").field("link", &self.name).field("agent", &self.agent).finish()
    }
}

impl AgentClient {
    /// Connects and performs the handshake. A broken or silent link is
    /// [`WorkerError::Link`]; an agent of another protocol version (the error names both) or one
    /// that refuses the handshake is [`WorkerError::Refused`]: reconnecting will not change it.
    pub fn connect(link: &dyn Link, hello_timeout: Duration) -> Result<AgentClient, WorkerError> {
        let broken = |e: anyhow::Error| WorkerError::Link(format!("{e:#}"));
        let Connection { reader, writer, child, closer } = link.open().map_err(broken)?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut frames = FrameReader::new(reader);
            loop {
                match frames.read_frame() {
                    Ok(Some(p)) => {
                        if tx.send(Incoming::Frame(p)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = tx.send(Incoming::Closed("the agent closed the connection".into()));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Incoming::Closed(format!("reading from the agent: {e}")));
                        return;
                    }
                }
            }
        });
        let mut client = AgentClient {
            name: link.describe(),
            writer,
            rx,
            child,
            closer,
            // Ids differ between connections, so a late answer to a request of an earlier
            // connection (a serial line is not reset by reconnecting) is never taken for ours.
            next_id: (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()) as u64
                & 0xFFFF_FFFF)
                << 20,
            fingerprint: Fingerprint::default(),
            agent: String::new(),
        };
        client
            .send(&Request::Hello {
                protocol: PROTOCOL_VERSION,
                client: format!("tunas {}", env!("CARGO_PKG_VERSION")),
            })
            .map_err(broken)?;
        let answer = client
            .recv(hello_timeout)
            .with_context(|| format!("handshake with {}", link.describe()))
            .map_err(broken)?;
        match answer {
            Response::Hello { protocol, agent, fingerprint } if protocol == PROTOCOL_VERSION => {
                client.fingerprint = fingerprint;
                client.agent = agent;
                Ok(client)
            }
            Response::Hello { protocol, agent, .. } => Err(WorkerError::Refused(format!(
                "{agent} at {} speaks protocol version {protocol}, this host speaks version {PROTOCOL_VERSION}",
                link.describe()
            ))),
            Response::Error { message } => Err(WorkerError::Refused(format!(
                "{} refused the handshake: {message}",
                link.describe()
            ))),
            other => Err(WorkerError::Link(format!(
                "{} answered the handshake with {other:?}",
                link.describe()
            ))),
        }
    }

    fn send(&mut self, r: &Request) -> Result<()> {
        let bytes = serde_json::to_vec(r)?;
        write_frame(&mut self.writer, &bytes).with_context(|| format!("writing to {}", self.name))
    }

    /// The next valid response within `timeout`. Frames that are not valid responses are
    /// skipped (they count as lost).
    fn recv(&mut self, timeout: Duration) -> Result<Response> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Incoming::Frame(p)) => match serde_json::from_slice::<Response>(&p) {
                    Ok(r) => return Ok(r),
                    Err(_) => continue,
                },
                Ok(Incoming::Closed(why)) => bail!("{}: {why}", self.name),
                Err(RecvTimeoutError::Timeout) => {
                    bail!("{}: no response within {:.0} s", self.name, timeout.as_secs_f64())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("{}: connection lost", self.name)
                }
            }
        }
    }

    /// Measures `keys` for one pass; calls `report` as each result arrives. Fails with
    /// [`WorkerError::Link`] (after the results received so far were delivered) when the link
    /// fails or no message arrives within `timeout`, and with [`WorkerError::Refused`] when the
    /// agent refuses the request (a method it rejects, a canary it cannot build).
    pub fn measure(
        &mut self,
        pass: u32,
        keys: &[OpKey],
        method: &Method,
        timeout: Duration,
        report: &mut Report<'_>,
    ) -> Result<(), WorkerError> {
        let link = |e: anyhow::Error| WorkerError::Link(format!("{e:#}"));
        let id = self.next_id;
        self.next_id += 1;
        self.send(&Request::Measure { id, pass, keys: keys.to_vec(), method: method.clone() })
            .map_err(link)?;
        loop {
            match self.recv(timeout).map_err(link)? {
                Response::Measured { id: rid, subject: Subject::Key(key), timing, .. }
                    if rid == id =>
                {
                    report(&key, Outcome::Measured(timing))?
                }
                Response::Failed { id: rid, subject: Subject::Key(key), error } if rid == id => {
                    report(&key, Outcome::Failed(error))?
                }
                Response::Done { id: rid } if rid == id => return Ok(()),
                Response::Error { message } => {
                    return Err(WorkerError::Refused(format!("{}: {message}", self.name)))
                }
                // Heartbeats (they reset the timeout) and stale responses of an earlier request.
                _ => continue,
            }
        }
    }

    /// Builds and times a whole network on the device (all passes of `method`); returns samples.
    /// `timeout` is the longest silence allowed (the agent sends a heartbeat after every pass).
    pub fn measure_network(
        &mut self,
        network: &Network,
        method: &Method,
        timeout: Duration,
    ) -> Result<Vec<f64>> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&Request::MeasureNetwork {
            id,
            network: network.clone(),
            method: method.clone(),
        })?;
        let mut samples = None;
        loop {
            match self.recv(timeout)? {
                Response::Measured { id: rid, timing, .. } if rid == id => {
                    samples = Some(timing.samples_us)
                }
                Response::Failed { id: rid, error, .. } if rid == id => {
                    bail!("the agent could not run the network: {error}")
                }
                Response::Done { id: rid } if rid == id => {
                    return samples.context("the agent sent no measurement for the network");
                }
                Response::Error { message } => bail!("{}: {message}", self.name),
                _ => continue,
            }
        }
    }

    /// Says goodbye and waits for the agent process (if any) to exit.
    pub fn shutdown(mut self) {
        let _ = self.send(&Request::Shutdown);
        let _ = self.recv(Duration::from_secs(5));
        self.reap();
    }

    /// Kills the agent process, if this client spawned one.
    pub fn kill(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
        self.reap();
    }

    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for AgentClient {
    fn drop(&mut self) {
        if let Some(close) = self.closer.take() {
            close();
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
