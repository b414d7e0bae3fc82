//! Framing of protocol messages over a byte stream (pipe, serial line, TCP).
//!
//! A frame is `MAGIC (2 bytes) | length (u32 LE) | crc32 (u32 LE) | payload (length bytes)`, where
//! the payload is one JSON message and the CRC-32 (IEEE) covers the payload. The decoder:
//! - accepts frames split across reads and several frames in one read;
//! - skips garbage between frames by scanning for `MAGIC`;
//! - rejects a length above [`MAX_FRAME`] *before* allocating anything, and resynchronises;
//! - rejects a payload whose CRC does not match, and resynchronises after its magic.
//!
//! Every rejection is counted so the host can report (and re-request) what was lost.

use std::io::{self, Read, Write};

/// Start-of-frame marker.
pub const MAGIC: [u8; 2] = [0xA5, 0x5A];
/// Largest payload accepted (1 MiB); larger lengths are treated as corruption.
pub const MAX_FRAME: usize = 1 << 20;
const HEADER: usize = 10;

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        t
    });
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc ^ 0xFFFF_FFFF
}

/// Encodes one payload as a frame.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Writes one frame and flushes.
pub fn write_frame(w: &mut dyn Write, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode_frame(payload))?;
    w.flush()
}

/// What the decoder threw away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejected {
    /// Bytes skipped while looking for a frame start.
    pub garbage_bytes: u64,
    /// Headers with a length above [`MAX_FRAME`].
    pub oversized: u64,
    /// Frames whose CRC did not match.
    pub bad_crc: u64,
}

/// Incremental frame decoder: push bytes in, take whole payloads out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Counts of rejected input.
    pub rejected: Rejected,
}

impl Decoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole, valid payload, if one is buffered.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            // Find the magic.
            let start = self.buf.windows(2).position(|w| w == MAGIC);
            match start {
                None => {
                    // Keep a trailing first magic byte: the second may be in the next read.
                    let keep = usize::from(self.buf.last() == Some(&MAGIC[0]));
                    let drop = self.buf.len() - keep;
                    self.rejected.garbage_bytes += drop as u64;
                    self.buf.drain(..drop);
                    return None;
                }
                Some(s) if s > 0 => {
                    self.rejected.garbage_bytes += s as u64;
                    self.buf.drain(..s);
                }
                Some(_) => {}
            }
            if self.buf.len() < HEADER {
                return None;
            }
            let len =
                u32::from_le_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]) as usize;
            if len > MAX_FRAME {
                self.rejected.oversized += 1;
                self.buf.drain(..1);
                continue;
            }
            if self.buf.len() < HEADER + len {
                // Maybe the header is corrupt and claims a length that will never arrive:
                // if a whole valid frame starts later in the buffer, skip to it.
                if let Some(p) = self.later_valid_frame() {
                    self.rejected.garbage_bytes += p as u64;
                    self.buf.drain(..p);
                    continue;
                }
                return None;
            }
            let crc = u32::from_le_bytes([self.buf[6], self.buf[7], self.buf[8], self.buf[9]]);
            if crc32(&self.buf[HEADER..HEADER + len]) != crc {
                self.rejected.bad_crc += 1;
                self.buf.drain(..1);
                continue;
            }
            let payload = self.buf[HEADER..HEADER + len].to_vec();
            self.buf.drain(..HEADER + len);
            return Some(payload);
        }
    }
}

impl Decoder {
    /// The position (> 0) of the first complete frame with a valid CRC after the start.
    fn later_valid_frame(&self) -> Option<usize> {
        let mut from = 1;
        while let Some(off) = self.buf[from..].windows(2).position(|w| w == MAGIC) {
            let p = from + off;
            if self.buf.len() >= p + HEADER {
                let b = &self.buf[p..];
                let len = u32::from_le_bytes([b[2], b[3], b[4], b[5]]) as usize;
                let crc = u32::from_le_bytes([b[6], b[7], b[8], b[9]]);
                if len <= MAX_FRAME
                    && b.len() >= HEADER + len
                    && crc32(&b[HEADER..HEADER + len]) == crc
                {
                    return Some(p);
                }
            }
            from = p + 1;
        }
        None
    }
}

/// Reads frames from a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    decoder: Decoder,
    chunk: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> Self {
        FrameReader { inner, decoder: Decoder::new(), chunk: vec![0; 64 * 1024] }
    }

    /// The next valid payload; `Ok(None)` at end of stream.
    pub fn read_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(p) = self.decoder.next_frame() {
                return Ok(Some(p));
            }
            let n = match self.inner.read(&mut self.chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(None);
            }
            self.decoder.push(&self.chunk[..n]);
        }
    }

    /// What was rejected so far.
    pub fn rejected(&self) -> Rejected {
        self.decoder.rejected
    }

    /// The underlying reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn split_reads_and_several_frames_per_read() {
        let mut bytes = encode_frame(b"{\"a\":1}");
        bytes.extend(encode_frame(b"{\"b\":2}"));
        bytes.extend(encode_frame(b""));
        // One byte at a time.
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            while let Some(p) = d.next_frame() {
                got.push(p);
            }
        }
        assert_eq!(got, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec(), vec![]]);
        // All at once.
        let mut d = Decoder::new();
        d.push(&bytes);
        assert_eq!(d.next_frame().unwrap(), b"{\"a\":1}");
        assert_eq!(d.next_frame().unwrap(), b"{\"b\":2}");
        assert_eq!(d.next_frame().unwrap(), b"");
        assert!(d.next_frame().is_none());
        assert_eq!(d.rejected, Rejected::default());
    }

    #[test]
    fn garbage_between_frames_is_skipped() {
        let mut bytes = b"hello \xA5 world".to_vec();
        bytes.extend(encode_frame(b"one"));
        bytes.extend(b"\x00\xA5\xA5junk");
        bytes.extend(encode_frame(b"two"));
        let mut r = FrameReader::new(&bytes[..]);
        assert_eq!(r.read_frame().unwrap().unwrap(), b"one");
        assert_eq!(r.read_frame().unwrap().unwrap(), b"two");
        assert!(r.read_frame().unwrap().is_none());
        assert!(r.rejected().garbage_bytes > 0);
    }

    #[test]
    fn hostile_length_never_allocates_and_resyncs() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(u32::MAX.to_le_bytes());
        bytes.extend([0, 0, 0, 0]);
        bytes.extend(encode_frame(b"after"));
        let mut d = Decoder::new();
        d.push(&bytes);
        assert_eq!(d.next_frame().unwrap(), b"after");
        assert_eq!(d.rejected.oversized, 1);
        assert!(d.buf.capacity() < 1024, "the decoder must not reserve the hostile length");
    }

    #[test]
    fn a_corrupt_length_does_not_stall_the_stream() {
        // A header whose length was corrupted to a large (but allowed) value, then good frames.
        let mut bytes = MAGIC.to_vec();
        bytes.extend(60_000u32.to_le_bytes());
        bytes.extend([1, 2, 3, 4]);
        bytes.extend(b"partial payload");
        bytes.extend(encode_frame(b"next"));
        let mut d = Decoder::new();
        d.push(&bytes);
        assert_eq!(d.next_frame().unwrap(), b"next");
        assert!(d.rejected.garbage_bytes > 0);
    }

    #[test]
    fn corrupted_payload_is_rejected() {
        let mut bad = encode_frame(b"{\"x\":1}");
        let last = bad.len() - 2;
        bad[last] ^= 0x40;
        bad.extend(encode_frame(b"good"));
        let mut d = Decoder::new();
        d.push(&bad);
        assert_eq!(d.next_frame().unwrap(), b"good");
        assert_eq!(d.rejected.bad_crc, 1);
    }

    proptest! {
        #[test]
        fn frames_survive_random_chunking_and_noise(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..8),
            noise in prop::collection::vec(any::<u8>(), 0..50),
            cuts in prop::collection::vec(1usize..40, 1..20),
        ) {
            let mut stream = noise.iter().copied().filter(|&b| b != MAGIC[0]).collect::<Vec<u8>>();
            for p in &payloads {
                stream.extend(encode_frame(p));
            }
            let mut d = Decoder::new();
            let mut got = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < stream.len() {
                let end = (pos + cuts[i % cuts.len()]).min(stream.len());
                d.push(&stream[pos..end]);
                while let Some(p) = d.next_frame() { got.push(p); }
                pos = end;
                i += 1;
            }
            prop_assert_eq!(got, payloads);
        }
    }
}
