//! A TCP stream with the bytes read but not yet used.
//!
//! monoio's I/O takes buffers by value (the kernel owns them while io_uring
//! works), so relays move the `Vec` into a write and take it back after.
//! If a future is dropped mid-operation the buffer goes with it; every caller
//! closes the connection in that case, so the empty buffer is never read.

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::io;

/// Spare room asked for before each read; small enough that an idle keep-alive
/// connection stays cheap, large enough for a typical request in one read.
const READ_CHUNK: usize = 8 * 1024;

pub struct BufStream {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl BufStream {
    pub fn new(stream: TcpStream, buf: Vec<u8>) -> Self {
        BufStream { stream, buf, pos: 0 }
    }

    /// Bytes read from the socket and not consumed yet.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more bytes after what is there. `Ok(0)` is end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 && self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        // monoio reads a `Vec` from offset 0; a slice of the spare capacity
        // appends instead, keeping a partial head already buffered.
        let (len, cap) = (self.buf.len(), self.buf.capacity());
        let buf = std::mem::take(&mut self.buf);
        let (res, slice) = self.stream.read(buf.slice_mut(len..cap)).await;
        self.buf = slice.into_inner();
        res
    }

    /// Writes `n` not-yet-consumed bytes straight from the read buffer to `dst`
    /// (no copy), then consumes them.
    pub async fn forward_to(&mut self, dst: &mut TcpStream, n: usize) -> io::Result<()> {
        let n = n.min(self.data().len());
        let (start, end) = (self.pos, self.pos + n);
        let buf = std::mem::take(&mut self.buf);
        let (res, slice) = dst.write_all(buf.slice(start..end)).await;
        self.buf = slice.into_inner();
        res?;
        self.consume(n);
        Ok(())
    }

    /// The stream and the bytes read but not consumed.
    pub fn into_leftover(mut self) -> (TcpStream, Vec<u8>) {
        self.buf.drain(..self.pos);
        (self.stream, self.buf)
    }

    /// Gives back the stream and the (empty) buffer for reuse.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        let mut buf = self.buf;
        buf.clear();
        (self.stream, buf)
    }
}

/// Writes all of `out` to `dst` and leaves `out` empty (capacity kept).
pub async fn flush(dst: &mut TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let buf = std::mem::take(out);
    let (res, mut buf) = dst.write_all(buf).await;
    buf.clear();
    *out = buf;
    res.map(|_| ())
}
