//! The in-memory link: an agent's protocol server running on a thread of this process, behind
//! a pair of in-memory pipes. Tests run the real server with the fake engine behind it, with
//! faults injected into its byte streams, deterministically and without binaries or `socat`
//! (probe-rs's memory transport is the model).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use anyhow::Result;

use super::{Connection, Link};

/// What serves one connection: bytes from the host in, bytes to the host out. It returns when
/// the session ends (or to simulate an agent that dies); the connection is closed then.
pub type Serve = dyn Fn(usize, &mut dyn Read, &mut dyn Write) + Send + Sync;

/// A link whose agent is a function on a thread of this process. Every `open` starts a new
/// session (a new thread), as spawning an agent does; the function gets the session's number.
pub struct MemoryLink {
    name: String,
    serve: Arc<Serve>,
    opened: Arc<AtomicUsize>,
}

impl std::fmt::Debug for MemoryLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLink").field("name", &self.name).finish()
    }
}

impl MemoryLink {
    /// A link named `name` (as in `memory:NAME`) whose sessions are served by `serve`.
    pub fn new(
        name: &str,
        serve: impl Fn(usize, &mut dyn Read, &mut dyn Write) + Send + Sync + 'static,
    ) -> Self {
        MemoryLink { name: name.into(), serve: Arc::new(serve), opened: Arc::default() }
    }

    /// Sessions opened so far.
    pub fn sessions(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }
}

impl Link for MemoryLink {
    fn describe(&self) -> String {
        format!("memory:{}", self.name)
    }

    fn open(&self) -> Result<Connection> {
        let (to_agent, agent_in) = pipe();
        let (agent_out, from_agent) = pipe();
        let closers = [to_agent.0.clone(), from_agent.0.clone()];
        let serve = self.serve.clone();
        let session = self.opened.fetch_add(1, Ordering::SeqCst);
        std::thread::Builder::new().name(format!("{}#{session}", self.describe())).spawn(
            move || {
                let (mut input, mut output) = (agent_in, agent_out);
                serve(session, &mut input, &mut output);
            },
        )?;
        Ok(Connection {
            reader: Box::new(from_agent),
            writer: Box::new(to_agent),
            child: None,
            closer: Some(Box::new(move || closers.iter().for_each(|p| p.close()))),
        })
    }
}

/// One direction of an in-memory byte stream.
#[derive(Debug, Default)]
struct Pipe {
    state: Mutex<PipeState>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct PipeState {
    bytes: VecDeque<u8>,
    closed: bool,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// The reading end: blocks until bytes arrive; end of stream once the pipe is closed and empty.
#[derive(Debug)]
pub struct PipeReader(Arc<Pipe>);

/// The writing end: fails with `BrokenPipe` once the pipe is closed.
#[derive(Debug)]
pub struct PipeWriter(Arc<Pipe>);

/// A new in-memory pipe.
pub fn pipe() -> (PipeWriter, PipeReader) {
    let p = Arc::new(Pipe::default());
    (PipeWriter(p.clone()), PipeReader(p))
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut s = self.0.lock();
        while s.bytes.is_empty() && !s.closed {
            s = self.0.ready.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let n = buf.len().min(s.bytes.len());
        for (slot, b) in buf.iter_mut().zip(s.bytes.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut s = self.0.lock();
        if s.closed {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        s.bytes.extend(buf);
        drop(s);
        self.0.ready.notify_all();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_carries_bytes_and_ends_when_either_side_goes() {
        let (mut w, mut r) = pipe();
        w.write_all(b"abc").unwrap();
        let t = std::thread::spawn(move || {
            let mut all = Vec::new();
            r.read_to_end(&mut all).unwrap();
            all
        });
        w.write_all(b"def").unwrap();
        drop(w);
        assert_eq!(t.join().unwrap(), b"abcdef");
        let (mut w, r) = pipe();
        drop(r);
        assert_eq!(w.write(b"x").unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn every_open_is_a_new_session_and_closing_ends_it() {
        let link = MemoryLink::new("echo", |_, input, output| {
            let _ = std::io::copy(input, output);
        });
        for _ in 0..2 {
            let mut c = link.open().unwrap();
            c.writer.write_all(b"ping").unwrap();
            let mut got = [0u8; 4];
            c.reader.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
            (c.closer.take().unwrap())();
            let mut rest = Vec::new();
            c.reader.read_to_end(&mut rest).unwrap(); // ends instead of blocking
        }
        assert_eq!(link.sessions(), 2);
    }
}
