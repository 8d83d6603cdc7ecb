//! A TCP stream with the bytes read but not yet used.
//!
//! monoio's I/O takes buffers by value (the kernel owns them while io_uring
//! works), so relays move the `Vec` into a write and take it back after.
//! If a future is dropped mid-operation the buffer goes with it; every caller
//! closes the connection in that case, so the empty buffer is never read.

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use std::io;

/// Spare room asked for before each read; small enough that an idle keep-alive
/// connection stays cheap, large enough for a typical request in one read.
pub const READ_CHUNK: usize = 8 * 1024;

/// `S` is a whole socket, or the read half of one while its write half
/// streams a request body (see `dispatch::http`).
pub struct BufStream<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S> BufStream<S> {
    pub fn new(stream: S, buf: Vec<u8>) -> Self {
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

    /// Gives back a buffer grown past twice `n` (for a large body) once
    /// what it holds fits in `n`: a kept-alive connection waits for its
    /// next request with the usual small buffer.
    pub fn shrink_to(&mut self, n: usize) {
        if self.buf.capacity() > 2 * n && self.buf.len() - self.pos <= n {
            self.buf.drain(..self.pos);
            self.pos = 0;
            self.buf.shrink_to(n);
        }
    }

    /// Makes room for reads of up to `n` bytes at a time: a large body is
    /// relayed in fewer, bigger reads and writes (an idle connection keeps
    /// the small default).
    pub fn reserve_reads(&mut self, n: usize) {
        let spare = self.buf.capacity() - self.buf.len();
        if spare < n {
            self.buf.reserve(n);
        }
    }

    /// The stream and the bytes read but not consumed.
    pub fn into_leftover(mut self) -> (S, Vec<u8>) {
        self.buf.drain(..self.pos);
        (self.stream, self.buf)
    }

    /// Gives back the stream and the (empty) buffer for reuse.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        let mut buf = self.buf;
        buf.clear();
        (self.stream, buf)
    }

    /// The stream and the buffer with its unconsumed bytes and position, to
    /// be put together again with [`BufStream::from_raw`].
    pub fn into_raw(self) -> (S, Vec<u8>, usize) {
        (self.stream, self.buf, self.pos)
    }

    pub fn from_raw(stream: S, buf: Vec<u8>, pos: usize) -> Self {
        let pos = pos.min(buf.len());
        BufStream { stream, buf, pos }
    }
}

impl<S: AsyncReadRent> BufStream<S> {
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
    pub async fn forward_to<D: AsyncWriteRent>(&mut self, dst: &mut D, n: usize) -> io::Result<()> {
        self.forward_to_with(dst, n, &|| ()).await
    }

    /// [`BufStream::forward_to`], calling `progress` after every write that
    /// moved bytes: a deadline then measures progress, not the whole copy.
    pub async fn forward_to_with<D: AsyncWriteRent>(
        &mut self,
        dst: &mut D,
        n: usize,
        progress: &dyn Fn(),
    ) -> io::Result<()> {
        let n = n.min(self.data().len());
        let (mut start, end) = (self.pos, self.pos + n);
        while start < end {
            let buf = std::mem::take(&mut self.buf);
            let (res, slice) = dst.write(buf.slice(start..end)).await;
            self.buf = slice.into_inner();
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    start += k;
                    progress();
                }
                Err(e) => return Err(e),
            }
        }
        self.consume(n);
        Ok(())
    }
}

/// Writes all of `out` to `dst` and leaves `out` empty (capacity kept).
pub async fn flush<D: AsyncWriteRent>(dst: &mut D, out: &mut Vec<u8>) -> io::Result<()> {
    flush_with(dst, out, &|| ()).await
}

/// [`flush`], calling `progress` after every write that moved bytes.
pub async fn flush_with<D: AsyncWriteRent>(dst: &mut D, out: &mut Vec<u8>, progress: &dyn Fn()) -> io::Result<()> {
    let (res, mut buf) = write_all_with(dst, std::mem::take(out), progress).await;
    buf.clear();
    *out = buf;
    res
}

/// Writes all of `buf`, calling `progress` after every write that moved
/// bytes, and gives `buf` back unchanged (a request kept for a retry).
pub async fn write_all_with<D: AsyncWriteRent>(
    dst: &mut D,
    mut buf: Vec<u8>,
    progress: &dyn Fn(),
) -> (io::Result<()>, Vec<u8>) {
    let mut done = 0;
    while done < buf.len() {
        let (res, slice) = dst.write(buf.slice(done..)).await;
        buf = slice.into_inner();
        match res {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(k) => {
                done += k;
                progress();
            }
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

#[cfg(test)]
mod tests {
    use super::BufStream;

    #[test]
    fn a_grown_buffer_is_given_back_once_it_fits() {
        let mut b = BufStream::new((), Vec::with_capacity(8 * 1024));
        b.reserve_reads(1 << 20);
        b.buf.extend_from_slice(&[b'x'; 100]);
        b.consume(40);
        b.shrink_to(8 * 1024);
        assert!(b.buf.capacity() < 16 * 1024, "{}", b.buf.capacity());
        assert_eq!(b.data(), &[b'x'; 60][..], "unconsumed bytes are kept");
        // Still holding more than fits: kept as it is.
        let mut big = BufStream::new((), Vec::with_capacity(1 << 20));
        big.buf.extend_from_slice(&vec![b'y'; 20_000]);
        big.shrink_to(8 * 1024);
        assert!(big.buf.capacity() >= 1 << 20);
        assert_eq!(big.data().len(), 20_000);
    }
}
