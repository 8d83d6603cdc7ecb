//! Strict chunked transfer-coding (RFC 9112 §7.1), decoded and re-encoded.
//!
//! The gateway never passes chunk framing through as opaque bytes: it parses
//! every size line and re-emits its own framing, so the peer behind us always
//! sees one unambiguous message boundary. Bare LF, missing CRLF after data,
//! signs, `0x`, over-long sizes and control bytes in extensions are errors.
//! Extensions and trailers are dropped.

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    BadSize,
    BadLineEnd,
    LineTooLong,
    TooLarge,
}

impl ChunkError {
    pub fn message(self) -> &'static str {
        match self {
            ChunkError::BadSize => "invalid chunk size",
            ChunkError::BadLineEnd => "chunk framing must use CRLF",
            ChunkError::LineTooLong => "chunk size line or trailer too long",
            ChunkError::TooLarge => "chunked body exceeds the size limit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// Longest chunk-size line (with extensions) or trailer section we accept.
const MAX_LINE: usize = 4096;

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Payload bytes decoded so far.
    total: u64,
    /// Sum of the chunk sizes announced so far: checked against `limit` as
    /// soon as a size line arrives, before its data.
    announced: u64,
    limit: u64,
    trailer_bytes: usize,
}

impl ChunkedDecoder {
    pub fn new(limit: u64) -> Self {
        ChunkedDecoder { state: State::Size, total: 0, announced: 0, limit, trailer_bytes: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes decoded so far (not the sizes announced: a body cut
    /// off inside a chunk counts only what arrived).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Consumes as much of `input` as forms complete framing, appending the
    /// payload to `out` (as chunks again when `encode`, raw otherwise).
    /// Returns how many input bytes were used; fewer than given means more
    /// input is needed (or the body is done).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>, encode: bool) -> Result<usize, ChunkError> {
        let mut i = 0;
        loop {
            let rest = &input[i..];
            match self.state {
                State::Done => return Ok(i),
                State::Size => {
                    let Some(lf) = rest.iter().position(|b| *b == b'\n') else {
                        if rest.len() > MAX_LINE {
                            return Err(ChunkError::LineTooLong);
                        }
                        return Ok(i);
                    };
                    // The same bound whether the line came in one read or
                    // many (without its LF, more than MAX_LINE is refused above).
                    if lf > MAX_LINE {
                        return Err(ChunkError::LineTooLong);
                    }
                    if lf == 0 || rest[lf - 1] != b'\r' {
                        return Err(ChunkError::BadLineEnd);
                    }
                    let size = parse_size_line(&rest[..lf - 1])?;
                    i += lf + 1;
                    if size == 0 {
                        self.state = State::Trailer;
                        continue;
                    }
                    self.announced = self.announced.checked_add(size).ok_or(ChunkError::TooLarge)?;
                    if self.announced > self.limit {
                        return Err(ChunkError::TooLarge);
                    }
                    if encode {
                        out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
                    }
                    self.state = State::Data(size);
                }
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(i);
                    }
                    let n = (left.min(rest.len() as u64)) as usize;
                    out.extend_from_slice(&rest[..n]);
                    self.total += n as u64;
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
                }
                State::DataEnd => {
                    if rest.len() < 2 {
                        if rest.first().is_some_and(|b| *b != b'\r') {
                            return Err(ChunkError::BadLineEnd);
                        }
                        return Ok(i);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ChunkError::BadLineEnd);
                    }
                    if encode {
                        out.extend_from_slice(b"\r\n");
                    }
                    i += 2;
                    self.state = State::Size;
                }
                State::Trailer => {
                    let Some(lf) = rest.iter().position(|b| *b == b'\n') else {
                        if self.trailer_bytes + rest.len() > MAX_LINE {
                            return Err(ChunkError::LineTooLong);
                        }
                        return Ok(i);
                    };
                    if lf == 0 || rest[lf - 1] != b'\r' {
                        return Err(ChunkError::BadLineEnd);
                    }
                    self.trailer_bytes += lf + 1;
                    if self.trailer_bytes > MAX_LINE {
                        return Err(ChunkError::LineTooLong);
                    }
                    let line = &rest[..lf - 1];
                    if line.iter().any(|b| *b < 0x20 && *b != b'\t' || *b == 0x7f) {
                        return Err(ChunkError::BadLineEnd);
                    }
                    i += lf + 1;
                    if line.is_empty() {
                        if encode {
                            out.extend_from_slice(b"0\r\n\r\n");
                        }
                        self.state = State::Done;
                    }
                }
            }
        }
    }
}

/// `1*HEXDIG [ BWS ";" ext ]` — at most 16 hex digits (fits u64).
fn parse_size_line(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(ChunkError::BadSize);
    }
    let mut size: u64 = 0;
    for b in &line[..digits] {
        let v = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        size = size << 4 | u64::from(v);
    }
    let rest = &line[digits..];
    let ext = rest.iter().position(|b| *b != b' ' && *b != b'\t').map(|p| &rest[p..]).unwrap_or_default();
    if !ext.is_empty() && (ext[0] != b';' || ext.iter().any(|b| *b < 0x20 && *b != b'\t' || *b == 0x7f)) {
        return Err(ChunkError::BadSize);
    }
    Ok(size)
}

/// Frames `data` as one chunk (nothing for empty data: that would end the body).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], encode: bool) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        let n = d.decode(input, &mut out, encode)?;
        Ok((out, n, d.is_done()))
    }

    #[test]
    fn decodes_and_reencodes() {
        let input = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (out, n, done) = run(input, true).unwrap();
        assert_eq!(out, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        assert_eq!(&input[n..], b"NEXT");
        assert!(done);
        let (out, _, _) = run(input, false).unwrap();
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn byte_at_a_time() {
        let input = b"A\r\n0123456789\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new(100);
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for b in input {
            pending.push(*b);
            let n = d.decode(&pending, &mut out, false).unwrap();
            pending.drain(..n);
        }
        assert!(d.is_done());
        assert_eq!(out, b"0123456789");
    }

    /// Found by the `chunked` fuzz target: `total()` counted a chunk's
    /// announced size before its data arrived, so a body cut off inside a
    /// chunk reported bytes never received (dispatch logs it as bytes sent).
    #[test]
    fn total_counts_payload_received_not_announced() {
        let mut d = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        let n = d.decode(b"FFFFF\r\nabc", &mut out, false).unwrap();
        assert_eq!((n, out.as_slice(), d.total()), (10, &b"abc"[..], 3));
        // The limit still applies to the announced size, at once.
        let mut d = ChunkedDecoder::new(100);
        assert_eq!(d.decode(b"65\r\n", &mut out, false), Err(ChunkError::TooLarge));
    }

    /// Found by the `chunked` fuzz target's pieces-against-whole check: a
    /// size line longer than `MAX_LINE` was refused when it came in several
    /// reads but accepted when its LF came in the same read.
    #[test]
    fn a_long_size_line_is_refused_however_it_arrives() {
        let mut input = b"1;".to_vec();
        input.extend(std::iter::repeat_n(b'e', MAX_LINE));
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(run(&input, false), Err(ChunkError::LineTooLong));
        let mut d = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let mut got = Ok(0);
        for piece in input.chunks(64) {
            pending.extend_from_slice(piece);
            got = d.decode(&pending, &mut out, false);
            match got {
                Ok(n) => drop(pending.drain(..n)),
                Err(_) => break,
            }
        }
        assert_eq!(got, Err(ChunkError::LineTooLong));
        // At the bound, accepted either way.
        let mut input = b"1;".to_vec();
        input.extend(std::iter::repeat_n(b'e', MAX_LINE - 3));
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(run(&input, false).map(|(out, _, done)| (out, done)), Ok((b"x".to_vec(), true)));
    }

    #[test]
    fn rejects() {
        assert_eq!(run(b"5\nhello\r\n", true), Err(ChunkError::BadLineEnd));
        assert_eq!(run(b"5\r\nhelloXY0\r\n\r\n", true), Err(ChunkError::BadLineEnd));
        assert_eq!(run(b"-5\r\n", true), Err(ChunkError::BadSize));
        assert_eq!(run(b"0x5\r\n", true), Err(ChunkError::BadSize));
        assert_eq!(run(b" 5\r\n", true), Err(ChunkError::BadSize));
        assert_eq!(run(b"\r\n", true), Err(ChunkError::BadSize));
        assert_eq!(run(b"11111111111111111\r\n", true), Err(ChunkError::BadSize));
        assert_eq!(run(b"5 x\r\n", true), Err(ChunkError::BadSize));
        assert_eq!(run(b"FFFFFFFF\r\n", true), Err(ChunkError::TooLarge));
        assert_eq!(run(b"0\r\nX: 1\n\r\n", true), Err(ChunkError::BadLineEnd));
    }
}
