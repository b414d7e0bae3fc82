//! `device-agent serve`: the host protocol over stdio, a serial port or TCP.

use anyhow::{bail, Result};
use clap::Args;

use crate::engine::Engine;
use crate::placement::{setup, PlacementArgs};
use crate::transport::{self, Transport};

/// `device-agent serve`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("transport").required(true).args(["stdio", "serial", "tcp"])))]
pub struct Cmd {
    /// Serve on stdin/stdout.
    #[arg(long)]
    pub stdio: bool,
    /// Serve on a serial port (e.g. /dev/ttyGS0, /dev/ttyUSB0).
    #[arg(long)]
    pub serial: Option<String>,
    /// Serial baud rate.
    #[arg(long, default_value_t = 115_200, value_parser = clap::value_parser!(u32).range(1..))]
    pub baud: u32,
    /// Serve on TCP at ADDR (host:port); loopback only unless --listen-any.
    #[arg(long)]
    pub tcp: Option<String>,
    /// Allow binding a TCP address that is not loopback.
    #[arg(long)]
    pub listen_any: bool,
    /// Serve one TCP connection or serial session, then exit.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub placement: PlacementArgs,
}

impl Cmd {
    /// The transport the flags choose.
    pub fn transport(&self) -> Result<Transport> {
        if self.stdio {
            return Ok(Transport::Stdio);
        }
        if let Some(path) = &self.serial {
            return Ok(Transport::Serial { path: path.clone(), baud: self.baud, once: self.once });
        }
        if let Some(addr) = &self.tcp {
            let addr = transport::check_bind(addr, self.listen_any)?;
            return Ok(Transport::Tcp { addr, once: self.once });
        }
        bail!("choose a transport: --stdio, --serial PATH or --tcp ADDR")
    }

    /// Serves until the transport ends.
    pub fn run(self, engine: &dyn Engine) -> Result<()> {
        let transport = self.transport()?;
        let (placement, fingerprint) = setup(&self.placement)?;
        transport::serve(engine, &transport, &placement, &fingerprint)
    }
}
