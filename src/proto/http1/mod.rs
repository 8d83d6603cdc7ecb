//! HTTP/1.1 wire format (RFC 9112): the gateway owns framing because it is
//! the security boundary.

pub mod chunked;
pub mod edits;
pub mod head_scan;
pub mod headers;
pub mod inline;
pub mod path;
pub mod request_head;
pub mod response_head;

/// How the request body is framed on the client side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    None,
    Length(u64),
    Chunked,
}

/// Hard ceiling for `limits.max_headers`: the parser's header array lives on the stack.
pub const MAX_HEADERS_CEILING: usize = 256;

/// `1*DIGIT`, no sign, no list, fits in u64.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// Formats `n` in decimal into `buf`, returning the digits.
pub fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}
