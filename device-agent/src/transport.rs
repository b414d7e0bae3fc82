//! The byte streams the agent serves on: stdio, a serial port, TCP.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use latency_tables::Fingerprint;

use crate::engine::Engine;
use crate::measure::{log_line, warn_line, Placement};
use crate::serve::serve as serve_stream;

/// A serial port's reads time out often; treat a timeout as "no data yet".
struct Patient<R>(R);

impl<R: std::io::Read> std::io::Read for Patient<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
    }
}

/// Checks that `addr` is loopback unless `listen_any`.
pub fn check_bind(addr: &str, listen_any: bool) -> Result<SocketAddr> {
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("--tcp {addr:?} is not a host:port address"))?
        .next()
        .with_context(|| format!("--tcp {addr:?} resolves to nothing"))?;
    if !listen_any && !sock.ip().is_loopback() {
        bail!("--tcp {addr} is not a loopback address; pass --listen-any to serve on the network");
    }
    Ok(sock)
}

/// A byte stream to serve on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// stdin/stdout.
    Stdio,
    /// A serial port; session after session unless `once`.
    Serial {
        /// The device path.
        path: String,
        /// Baud rate.
        baud: u32,
        /// Serve one session, then return.
        once: bool,
    },
    /// TCP; connection after connection unless `once`.
    Tcp {
        /// The address to bind (checked by [`check_bind`]).
        addr: SocketAddr,
        /// Serve one connection, then return.
        once: bool,
    },
}

/// Serves the protocol on `transport` with this placement and fingerprint.
pub fn serve(
    engine: &dyn Engine,
    transport: &Transport,
    placement: &Placement,
    fingerprint: &Fingerprint,
) -> Result<()> {
    match transport {
        Transport::Stdio => {
            let mut input = std::io::stdin().lock();
            let mut output = std::io::stdout().lock();
            serve_stream(engine, fingerprint, placement, &mut input, &mut output)?;
            Ok(())
        }
        Transport::Serial { path, baud, once } => {
            let port = serialport::new(path, *baud)
                .timeout(Duration::from_secs(3600))
                .open()
                .with_context(|| format!("opening serial port {path} at {baud} baud"))?;
            let mut input = Patient(port.try_clone().context("cloning the serial port handle")?);
            let mut output = port;
            log_line(&format!("serving on {path} at {baud} baud"));
            // A board on a UART keeps serving session after session (a host that said goodbye
            // or went away), unless --once.
            loop {
                serve_stream(engine, fingerprint, placement, &mut input, &mut output)?;
                if *once {
                    return Ok(());
                }
            }
        }
        Transport::Tcp { addr, once } => {
            let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
            log_line(&format!("serving on tcp {}", listener.local_addr()?));
            for stream in listener.incoming() {
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        warn_line(&format!("accept failed: {e}"));
                        continue;
                    }
                };
                let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                log_line(&format!("connection from {peer}"));
                let mut input = stream.try_clone()?;
                let mut output = stream;
                if let Err(e) =
                    serve_stream(engine, fingerprint, placement, &mut input, &mut output)
                {
                    warn_line(&format!("connection from {peer} ended: {e:#}"));
                }
                if *once {
                    break;
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_binds_loopback_unless_told_otherwise() {
        assert!(check_bind("127.0.0.1:0", false).is_ok());
        assert!(check_bind("[::1]:0", false).is_ok());
        let err = check_bind("0.0.0.0:7000", false).unwrap_err().to_string();
        assert!(err.contains("--listen-any"), "{err}");
        assert!(check_bind("0.0.0.0:7000", true).is_ok());
        assert!(check_bind("nonsense", false).is_err());
    }
}
