//! Reading a request head that arrives in pieces without re-parsing it
//! from its first byte on every read.

/// The search for the end of one request head, kept across the reads of that
/// head so that a head arriving in pieces is read once, not once per read: a
/// client sending a byte per read would otherwise cost a full parse of all it
/// sent so far per byte (quadratic in the head's size).
///
/// [`HeadScan::due`] asks for the full parse on the first look (a head
/// that arrived whole costs what it always did), then only when the bytes read
/// since can change its answer from "read more": the empty line that ends the
/// head, a line the parser refuses, one header field more than
/// `limits.max_headers`, or a size limit passed. Lines are split where httparse
/// splits them (at LF, the CR before it optional, empty lines before the
/// request line skipped), and each line is checked once, by httparse itself,
/// when its LF arrives; so the answers are the full parse's own, except that a bad
/// byte in a line not ended yet is refused when that line ends (or the head
/// passes its size limit, or `header_read` runs out) rather than on arrival.
/// Work per head is linear: every byte is searched for LF once and checked
/// once, plus the two full parses. Start a new one for every head.
/// The request-head limits the scanner watches (`[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
}

#[derive(Debug, Default)]
pub struct HeadScan {
    /// Bytes searched for line ends.
    scanned: usize,
    /// Start of the line not ended yet.
    line_start: usize,
    /// A prefix the full parse read without a verdict: its lines are valid.
    parsed: usize,
    /// Whether the request line has ended (empty lines before it excluded).
    request_line: bool,
    /// Header lines ended so far.
    fields: usize,
    /// Whether any LF was seen (the URI limit applies to a head without one).
    any_lf: bool,
    /// Full parses run.
    parses: u32,
}

impl HeadScan {
    /// Whether a full parse of `buf` (all bytes of this head read so far)
    /// may answer something other than "read more". The first call always
    /// says yes; the caller then reports a "read more" answer with
    /// [`partial`](Self::partial).
    pub fn due(&mut self, buf: &[u8], limits: &ScanLimits) -> bool {
        let due = self.check(buf, limits);
        if due {
            self.parses = self.parses.saturating_add(1);
        }
        due
    }

    /// A full parse of the first `len` bytes said "read more": its lines are valid.
    pub fn partial(&mut self, len: usize) {
        self.parsed = len;
    }

    /// How many full parses this head cost so far.
    pub fn parses(&self) -> u32 {
        self.parses
    }

    /// Whether the bytes added since the last call can end the wait: looks at
    /// each byte once, resuming at the first one not searched yet.
    fn check(&mut self, buf: &[u8], limits: &ScanLimits) -> bool {
        if self.parses == 0 {
            return true;
        }
        while let Some(i) = buf[self.scanned..].iter().position(|b| *b == b'\n') {
            let end = self.scanned + i + 1;
            let line = &buf[self.line_start..end];
            // Lines inside the prefix the full parse read are known good.
            let checked = end <= self.parsed;
            self.scanned = end;
            self.line_start = end;
            self.any_lf = true;
            let empty = line == b"\n" || line == b"\r\n";
            if !self.request_line {
                if empty {
                    continue;
                }
                self.request_line = true;
                if !checked && !request_line_ok(&buf[..end]) {
                    return true;
                }
            } else if empty {
                return true;
            } else {
                self.fields += 1;
                if self.fields > limits.max_headers || !checked && !field_line_ok(line) {
                    return true;
                }
            }
        }
        self.scanned = buf.len();
        buf.len() > limits.max_header_bytes || !self.any_lf && buf.len() > limits.max_uri_bytes + 64
    }
}

/// Whether httparse accepts `head`, which ends with the request line's LF.
fn request_line_ok(head: &[u8]) -> bool {
    let mut req = httparse::Request::new(&mut []);
    matches!(req.parse(head), Ok(httparse::Status::Partial))
}

/// Whether httparse accepts `line` (one header field, with its line end).
fn field_line_ok(line: &[u8]) -> bool {
    let mut one = [httparse::EMPTY_HEADER; 1];
    matches!(httparse::parse_headers(line, &mut one), Ok(httparse::Status::Partial))
}
