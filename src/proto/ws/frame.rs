//! RFC 6455 frames, server side: client frames must be masked, no extensions
//! are negotiated (RSV bits must be 0), control frames are short and final.
//! Frames are parsed in place from the read buffer and unmasked there.

/// Close status codes we send (RFC 6455 §7.4.1).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const TRY_AGAIN: u16 = 1013;
}

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Why the connection must be failed, with the close code to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail {
    pub code: u16,
    pub reason: &'static str,
}

impl Fail {
    pub const fn new(code: u16, reason: &'static str) -> Self {
        Fail { code, reason }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    /// Payload length.
    pub len: usize,
    /// Bytes taken by the header itself.
    pub header_len: usize,
}

/// Parses a frame header at the start of `buf`. `Ok(None)`: need more bytes.
pub fn parse_header(buf: &[u8], max_frame: usize) -> Result<Option<Header>, Fail> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(Fail::new(close::PROTOCOL, "reserved bits set without an extension"));
    }
    let opcode = b0 & 0x0F;
    let control = opcode & 0x8 != 0;
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
        _ => return Err(Fail::new(close::PROTOCOL, "unknown opcode")),
    }
    if b1 & 0x80 == 0 {
        return Err(Fail::new(close::PROTOCOL, "client frames must be masked"));
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let l = u64::from_be_bytes(b);
            if l >> 63 != 0 {
                return Err(Fail::new(close::PROTOCOL, "frame length has its top bit set"));
            }
            (l, 10)
        }
        n => (u64::from(n), 2),
    };
    if control && (!fin || len > 125) {
        return Err(Fail::new(close::PROTOCOL, "control frames are final and at most 125 bytes"));
    }
    if len > max_frame as u64 {
        return Err(Fail::new(close::TOO_BIG, "frame too large"));
    }
    if buf.len() < at + 4 {
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[at..at + 4]);
    at += 4;
    Ok(Some(Header { fin, opcode, mask, len: len as usize, header_len: at }))
}

/// Unmasks `data` in place; `offset` is the payload position of `data[0]`.
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[(offset + i) & 3];
    }
}

/// Appends an unmasked server frame.
pub fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(n as u8);
    } else if n <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and a reason cut to fit 125 bytes.
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut r = reason.as_bytes();
    if r.len() > 123 {
        let mut cut = 123;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        r = &r[..cut];
    }
    let mut payload = Vec::with_capacity(2 + r.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(r);
    encode(OP_CLOSE, &payload, out);
}

/// Validates a received close payload; returns the code to echo.
pub fn check_close_payload(p: &[u8]) -> Result<u16, Fail> {
    match p.len() {
        0 => Ok(close::NORMAL),
        1 => Err(Fail::new(close::PROTOCOL, "close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([p[0], p[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(Fail::new(close::PROTOCOL, "invalid close code"));
            }
            if std::str::from_utf8(&p[2..]).is_err() {
                return Err(Fail::new(close::INVALID_DATA, "close reason is not UTF-8"));
            }
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![first];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n <= 65535 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn parses_and_unmasks() {
        let f = masked(0x81, b"Hello");
        let h = parse_header(&f, 1 << 20).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.len, h.header_len), (true, OP_TEXT, 5, 6));
        let mut p = f[6..].to_vec();
        unmask(&mut p, h.mask, 0);
        assert_eq!(&p, b"Hello");
        let big = vec![7u8; 70_000];
        let f = masked(0x82, &big);
        let h = parse_header(&f, 1 << 20).unwrap().unwrap();
        assert_eq!((h.len, h.header_len), (70_000, 14));
        let f = masked(0x82, &[0u8; 300]);
        assert_eq!(parse_header(&f, 1 << 20).unwrap().unwrap().header_len, 8);
        // Partial headers ask for more.
        assert_eq!(parse_header(&f[..3], 1 << 20), Ok(None));
        assert_eq!(parse_header(&f[..7], 1 << 20), Ok(None));
    }

    #[test]
    fn rejects() {
        let code = |b: &[u8]| parse_header(b, 1000).unwrap_err().code;
        assert_eq!(code(&[0x81, 0x05, b'H']), close::PROTOCOL, "unmasked");
        assert_eq!(code(&[0xC1, 0x80, 0, 0, 0, 0]), close::PROTOCOL, "RSV1");
        assert_eq!(code(&[0x83, 0x80, 0, 0, 0, 0]), close::PROTOCOL, "opcode 3");
        assert_eq!(code(&[0x09, 0x80, 0, 0, 0, 0]), close::PROTOCOL, "fragmented ping");
        assert_eq!(code(&[0x89, 0xFE, 0, 126, 0, 0, 0, 0]), close::PROTOCOL, "long ping");
        assert_eq!(code(&[0x82, 0xFE, 0x03, 0xE9, 0, 0, 0, 0]), close::TOO_BIG, "1001 > 1000");
        assert_eq!(code(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]), close::PROTOCOL, "top bit");
    }

    #[test]
    fn encodes_exact_bytes() {
        let mut out = Vec::new();
        encode(OP_TEXT, b"hi", &mut out);
        assert_eq!(out, [0x81, 0x02, b'h', b'i']);
        out.clear();
        encode(OP_BINARY, &[0u8; 200], &mut out);
        assert_eq!(&out[..4], &[0x82, 126, 0, 200]);
        out.clear();
        encode_close(1001, "bye", &mut out);
        assert_eq!(out, [0x88, 0x05, 0x03, 0xE9, b'b', b'y', b'e']);
    }

    #[test]
    fn close_payloads() {
        assert_eq!(check_close_payload(&[]), Ok(1000));
        assert_eq!(check_close_payload(&[0x03, 0xE8, b'o', b'k']), Ok(1000));
        assert_eq!(check_close_payload(&[0x03]).unwrap_err().code, close::PROTOCOL);
        for bad in [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert_eq!(check_close_payload(&bad.to_be_bytes()).unwrap_err().code, close::PROTOCOL, "{bad}");
        }
        assert_eq!(check_close_payload(&[0x03, 0xE8, 0xFF]).unwrap_err().code, close::INVALID_DATA);
    }
}
