//! How bytes reach a device agent: a [`Link`] opens a [`Connection`] (a byte stream, plus the
//! child process when there is one). [`TransportSpec`] is the real link (`local`, `exec:CMD`,
//! `serial:PATH?baud=N`, `tcp:HOST:PORT`); [`memory::MemoryLink`] serves an agent from a
//! thread of this process, for tests. [`client::AgentClient`] speaks the protocol over any
//! link with per-message timeouts, and [`worker::AgentWorker`] makes it a profiling worker.

pub mod client;
pub mod memory;
pub mod networks;
pub mod placement;
pub mod worker;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Something that opens byte streams to an agent.
pub trait Link: Send + Sync + std::fmt::Debug {
    /// A short description for messages (`local:/path`, `tcp:host:port`, `memory:name`).
    fn describe(&self) -> String;
    /// Opens a new connection (spawning the agent where the link does that).
    fn open(&self) -> Result<Connection>;
}

impl Link for TransportSpec {
    fn describe(&self) -> String {
        TransportSpec::describe(self)
    }

    fn open(&self) -> Result<Connection> {
        self.connect()
    }
}

/// Where an agent is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSpec {
    /// Spawn the agent binary over stdio.
    Local {
        /// The agent binary.
        agent: PathBuf,
        /// Flags after `serve --stdio` (its placement: `--threads N`, `--cluster NAME`).
        flags: Vec<String>,
    },
    /// Any command whose stdin/stdout reach an agent serving `--stdio` (`adb shell …`, `ssh …`).
    Exec {
        /// The shell command line.
        command: String,
    },
    /// A serial port.
    Serial {
        /// The device path.
        path: String,
        /// Baud rate.
        baud: u32,
    },
    /// A TCP address.
    Tcp {
        /// `host:port`.
        addr: String,
    },
}

impl TransportSpec {
    /// Parses `local`, `exec:COMMAND`, `serial:PATH[?baud=N]` or `tcp:HOST:PORT`.
    /// `local` uses `agent` (default: `device-agent` next to the running `tunas`).
    pub fn parse(text: &str, agent: Option<&PathBuf>) -> Result<TransportSpec> {
        if text == "local" {
            let agent = match agent {
                Some(a) => a.clone(),
                None => default_agent()?,
            };
            return Ok(TransportSpec::Local { agent, flags: Vec::new() });
        }
        if let Some(command) = text.strip_prefix("exec:") {
            if command.trim().is_empty() {
                bail!("transport {text:?}: exec: needs a command");
            }
            return Ok(TransportSpec::Exec { command: command.to_string() });
        }
        if let Some(rest) = text.strip_prefix("serial:") {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let mut baud = 115_200;
            for kv in query.split('&').filter(|s| !s.is_empty()) {
                match kv.split_once('=') {
                    Some(("baud", v)) => {
                        baud = v.parse().with_context(|| {
                            format!("transport {text:?}: baud {v:?} is not a number")
                        })?
                    }
                    _ => bail!("transport {text:?}: unknown option {kv:?} (only baud=N)"),
                }
            }
            if path.is_empty() {
                bail!("transport {text:?}: serial: needs a device path");
            }
            return Ok(TransportSpec::Serial { path: path.to_string(), baud });
        }
        if let Some(addr) = text.strip_prefix("tcp:") {
            if !addr.contains(':') {
                bail!("transport {text:?}: tcp: needs HOST:PORT");
            }
            return Ok(TransportSpec::Tcp { addr: addr.to_string() });
        }
        bail!("unknown transport {text:?} (expected local, exec:COMMAND, serial:PATH[?baud=N] or tcp:HOST:PORT)")
    }

    /// The same link with the agent started in `placement` (its flags after `serve --stdio`;
    /// for `exec:`, appended to the command). An agent that already runs (`serial:`, `tcp:`)
    /// cannot be placed from here: the error says what to run instead.
    pub fn placed(&self, placement: &placement::Placement) -> Result<TransportSpec> {
        let flags = placement.agent_flags();
        if flags.is_empty() {
            return Ok(self.clone());
        }
        match self {
            TransportSpec::Local { agent, .. } => {
                Ok(TransportSpec::Local { agent: agent.clone(), flags })
            }
            TransportSpec::Exec { command } => {
                Ok(TransportSpec::Exec { command: format!("{command} {}", flags.join(" ")) })
            }
            TransportSpec::Serial { .. } | TransportSpec::Tcp { .. } => bail!(
                "{}: the agent already runs, so the host cannot give it configuration {}; start \
                 one agent per configuration (`device-agent serve … {}`) and profile each, or \
                 use local or exec:COMMAND",
                self.describe(),
                placement.tag(),
                flags.join(" ")
            ),
        }
    }

    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            TransportSpec::Local { agent, flags } if flags.is_empty() => {
                format!("local:{}", agent.display())
            }
            TransportSpec::Local { agent, flags } => {
                format!("local:{} {}", agent.display(), flags.join(" "))
            }
            TransportSpec::Exec { command } => format!("exec:{command}"),
            TransportSpec::Serial { path, baud } => format!("serial:{path}?baud={baud}"),
            TransportSpec::Tcp { addr } => format!("tcp:{addr}"),
        }
    }

    /// Opens a connection (spawning the agent for `local` and `exec`).
    pub fn connect(&self) -> Result<Connection> {
        match self {
            TransportSpec::Local { agent, flags } => {
                let mut cmd = Command::new(agent);
                cmd.args(["serve", "--stdio"]).args(flags);
                spawn(cmd, &self.describe())
            }
            TransportSpec::Exec { command } => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(command);
                spawn(cmd, &self.describe())
            }
            TransportSpec::Serial { path, baud } => {
                let port = serialport::new(path, *baud)
                    .timeout(Duration::from_millis(200))
                    .open()
                    .with_context(|| format!("opening serial port {path} at {baud} baud"))?;
                let reader = port.try_clone().context("cloning the serial port handle")?;
                let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let flag = closed.clone();
                Ok(Connection {
                    reader: Box::new(SerialReader { port: reader, closed }),
                    writer: Box::new(port),
                    child: None,
                    closer: Some(Box::new(move || {
                        flag.store(true, std::sync::atomic::Ordering::SeqCst)
                    })),
                })
            }
            TransportSpec::Tcp { addr } => {
                let stream =
                    TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
                stream.set_nodelay(true).ok();
                let reader = stream.try_clone()?;
                let closer = stream.try_clone()?;
                Ok(Connection {
                    reader: Box::new(reader),
                    writer: Box::new(stream),
                    child: None,
                    closer: Some(Box::new(move || {
                        let _ = closer.shutdown(std::net::Shutdown::Both);
                    })),
                })
            }
        }
    }
}

/// The `device-agent` binary next to the running executable.
pub fn default_agent() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let path = exe.with_file_name(format!("device-agent{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        bail!("no device-agent next to {} (build it with `cargo build -p device-agent`, or pass --agent PATH)", exe.display());
    }
    Ok(path)
}

fn spawn(mut cmd: Command, what: &str) -> Result<Connection> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let reader = child.stdout.take().context("no stdout")?;
    let writer = child.stdin.take().context("no stdin")?;
    Ok(Connection {
        reader: Box::new(reader),
        writer: Box::new(writer),
        child: Some(child),
        closer: None,
    })
}

/// Reads a serial port until the connection is closed: read timeouts mean "no data yet",
/// and once `closed` is set the reader reports end of stream, so the reader thread of an
/// abandoned connection stops instead of stealing bytes from the next connection.
struct SerialReader {
    port: Box<dyn serialport::SerialPort>,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Read for SerialReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(0);
            }
            match self.port.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                other => return other,
            }
        }
    }
}

/// An open byte stream to an agent.
pub struct Connection {
    /// Bytes from the agent.
    pub reader: Box<dyn Read + Send>,
    /// Bytes to the agent.
    pub writer: Box<dyn Write + Send>,
    /// The agent process, for `local` and `exec`.
    pub child: Option<Child>,
    /// Stops the reader of a serial or TCP connection when the connection is abandoned.
    pub closer: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("child", &self.child.as_ref().map(Child::id)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_specs_parse() {
        let agent = PathBuf::from("/opt/device-agent");
        assert_eq!(
            TransportSpec::parse("local", Some(&agent)).unwrap(),
            TransportSpec::Local { agent: agent.clone(), flags: vec![] }
        );
        assert_eq!(
            TransportSpec::parse("exec:adb shell /data/local/tmp/device-agent serve --stdio", None)
                .unwrap(),
            TransportSpec::Exec {
                command: "adb shell /data/local/tmp/device-agent serve --stdio".into()
            }
        );
        assert_eq!(
            TransportSpec::parse("serial:/dev/ttyUSB0?baud=921600", None).unwrap(),
            TransportSpec::Serial { path: "/dev/ttyUSB0".into(), baud: 921_600 }
        );
        assert_eq!(
            TransportSpec::parse("serial:/dev/ttyUSB0", None).unwrap(),
            TransportSpec::Serial { path: "/dev/ttyUSB0".into(), baud: 115_200 }
        );
        assert_eq!(
            TransportSpec::parse("tcp:127.0.0.1:7000", None).unwrap(),
            TransportSpec::Tcp { addr: "127.0.0.1:7000".into() }
        );
        for bad in [
            "usb:1",
            "exec:",
            "serial:",
            "serial:/dev/x?speed=9",
            "serial:/dev/x?baud=fast",
            "tcp:localhost",
        ] {
            let err = TransportSpec::parse(bad, Some(&agent)).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn placements_reach_the_agent_command_or_are_refused() {
        use placement::configurations;
        let c = &configurations(&[2], &["big".into()], &[]).unwrap()[0];
        let agent = PathBuf::from("/opt/device-agent");
        let local = TransportSpec::parse("local", Some(&agent)).unwrap().placed(c).unwrap();
        assert_eq!(local.describe(), "local:/opt/device-agent --threads 2 --cluster big");
        let exec = TransportSpec::parse("exec:adb shell /d/device-agent serve --stdio", None)
            .unwrap()
            .placed(c)
            .unwrap();
        assert_eq!(
            exec.describe(),
            "exec:adb shell /d/device-agent serve --stdio --threads 2 --cluster big"
        );
        let err = TransportSpec::parse("tcp:127.0.0.1:7000", None)
            .unwrap()
            .placed(c)
            .unwrap_err()
            .to_string();
        assert!(err.contains("t2-big") && err.contains("--threads 2 --cluster big"), "{err}");
    }
}
