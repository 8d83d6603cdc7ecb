//! The one parser of response heads that services send us.
//!
//! HTTP dispatch, WebSocket integrations and the admin CLI all read answers
//! through [`parse`], with the limits the client side has (header bytes and
//! count from `[limits]`), so a service cannot send what a client may not,
//! and the framing rules (one Content-Length, chunked only, no both) are
//! decided once.

use super::parse_content_length;
use crate::proto::http1::headers::{list_items, trim};
use std::mem::MaybeUninit;

/// How the service frames its response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    None,
    Length(u64),
    Chunked,
    /// No length: the body ends when the service closes the connection.
    UntilClose,
}

/// Bounds on a response head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_bytes: usize,
    pub max_headers: usize,
}

/// What the request asked for, which changes how the answer is framed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked {
    /// A `HEAD` request: the answer has no body whatever it says.
    pub head: bool,
    /// The request asked to switch protocols: a `101` is allowed.
    pub upgrade: bool,
}

/// A complete final response head.
pub struct Head<'b, 'h> {
    pub head_len: usize,
    pub status: u16,
    pub http10: bool,
    pub reason: &'b str,
    pub headers: &'h [httparse::Header<'b>],
    pub body: ResponseBody,
    /// The service will close the connection after this answer.
    pub close: bool,
    /// A `Connection` header names other headers (hop-by-hop for this
    /// answer): rare, so callers look for them only when this is set.
    pub connection_names: bool,
}

impl Head<'_, '_> {
    pub fn switching(&self) -> bool {
        self.status == 101
    }

    /// The connection can carry another request once the body is read.
    pub fn reusable(&self) -> bool {
        !self.close && self.body != ResponseBody::UntilClose && !self.switching()
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| trim(h.value))
    }
}

pub enum Parsed<'b, 'h> {
    /// Not a complete head yet.
    Partial,
    /// A 1xx other than 101: skip this many bytes and read the real answer.
    Interim(usize),
    Final(Head<'b, 'h>),
}

/// Storage for a head's headers, on the caller's stack.
pub type HeaderStorage<'b> = [MaybeUninit<httparse::Header<'b>>; super::MAX_HEADERS_CEILING];

pub fn storage<'b>() -> HeaderStorage<'b> {
    [MaybeUninit::uninit(); super::MAX_HEADERS_CEILING]
}

/// Parses a response head at the start of `buf`. Errors are messages for a
/// `502`: the service broke HTTP/1.1.
pub fn parse<'b, 'h>(
    buf: &'b [u8],
    storage: &'h mut HeaderStorage<'b>,
    limits: HeadLimits,
    asked: Asked,
) -> Result<Parsed<'b, 'h>, &'static str> {
    let max_headers = limits.max_headers.clamp(1, storage.len());
    let mut res = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut storage[..max_headers],
    ) {
        Ok(httparse::Status::Complete(n)) if n > limits.max_bytes => return Err("response head too large"),
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_bytes => return Err("response head too large"),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err("too many headers in the response"),
        Err(_) => return Err("malformed response head from the service"),
    };
    let status = res.code.unwrap_or(0);
    if !(100..=599).contains(&status) {
        return Err("invalid status code from the service");
    }
    let switching = status == 101;
    if (100..200).contains(&status) && !switching {
        return Ok(Parsed::Interim(head_len));
    }
    if switching && !asked.upgrade {
        return Err("the service switched protocols without being asked");
    }
    let http10 = res.version == Some(0);
    let headers: &'h [httparse::Header<'b>] = res.headers;

    let mut content_length = None;
    let mut lengths = 0usize;
    let mut chunked = false;
    let mut te = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut connection_names = false;
    for h in headers {
        let name = h.name.as_bytes();
        let value = trim(h.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths = lengths.saturating_add(1);
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only a lone "chunked" is understood; anything else is refused below.
            chunked = !te && value.eq_ignore_ascii_case(b"chunked");
            te = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for item in list_items(value) {
                if item.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if item.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                } else {
                    connection_names = true;
                }
            }
        }
    }
    // HTTP/1.0 closes unless it says keep-alive; HTTP/1.1 keeps unless it says close.
    let close = close || (http10 && !keep_alive);
    let no_body = asked.head || status == 204 || status == 304 || switching;
    let body = if no_body {
        ResponseBody::None
    } else if te && content_length.is_some() {
        return Err("response has both Content-Length and Transfer-Encoding");
    } else if te && !chunked {
        return Err("unsupported Transfer-Encoding from the service");
    } else if te {
        ResponseBody::Chunked
    } else if lengths > 1 {
        return Err("duplicate Content-Length from the service");
    } else if let Some(v) = content_length {
        match parse_content_length(v) {
            Some(n) => ResponseBody::Length(n),
            None => return Err("invalid Content-Length from the service"),
        }
    } else {
        ResponseBody::UntilClose
    };
    Ok(Parsed::Final(Head {
        head_len,
        status,
        http10,
        reason: res.reason.unwrap_or(""),
        headers,
        body,
        close,
        connection_names,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits { max_bytes: 16 * 1024, max_headers: 100 };

    fn final_of(raw: &[u8], asked: Asked) -> Result<(u16, ResponseBody, bool, usize), &'static str> {
        let mut st = storage();
        match parse(raw, &mut st, LIMITS, asked)? {
            Parsed::Final(h) => Ok((h.status, h.body, h.reusable(), h.head_len)),
            Parsed::Partial => Err("partial"),
            Parsed::Interim(_) => Err("interim"),
        }
    }

    #[test]
    fn framing() {
        let a = Asked::default();
        assert_eq!(
            final_of(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", a),
            Ok((200, ResponseBody::Length(5), true, 38))
        );
        assert_eq!(
            final_of(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", a).map(|r| r.1),
            Ok(ResponseBody::Chunked)
        );
        assert_eq!(final_of(b"HTTP/1.1 200 OK\r\n\r\n", a).map(|r| (r.1, r.2)), Ok((ResponseBody::UntilClose, false)));
        assert_eq!(final_of(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", a).map(|r| r.2), Ok(false));
        assert_eq!(
            final_of(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n", a).map(|r| r.2),
            Ok(true)
        );
        assert_eq!(
            final_of(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", a).map(|r| r.2),
            Ok(false)
        );
        assert_eq!(final_of(b"HTTP/1.1 204 No\r\n\r\n", a).map(|r| r.1), Ok(ResponseBody::None));
        let head = Asked { head: true, upgrade: false };
        assert_eq!(
            final_of(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", head).map(|r| r.1),
            Ok(ResponseBody::None)
        );
    }

    #[test]
    fn refusals() {
        let a = Asked::default();
        assert!(final_of(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n", a).is_err());
        assert!(final_of(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n", a).is_err());
        assert!(final_of(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", a).is_err());
        assert!(final_of(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", a).is_err());
        assert!(final_of(b"HTTP/1.1 101 Switching\r\n\r\n", a).is_err());
        assert!(final_of(b"HTTP/1.1 999 What\r\n\r\n", a).is_err());
        assert!(final_of(b"nonsense\r\n\r\n", a).is_err());
    }

    #[test]
    fn the_client_side_limits_hold() {
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..101 {
            many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"content-length: 0\r\n\r\n");
        assert_eq!(final_of(&many, Asked::default()), Err("too many headers in the response"));
        let mut big = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 17 * 1024));
        let mut st = storage();
        assert!(matches!(parse(&big, &mut st, LIMITS, Asked::default()), Err("response head too large")));
    }

    #[test]
    fn interim_answers_are_skipped() {
        let mut st = storage();
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        assert!(matches!(parse(raw, &mut st, LIMITS, Asked::default()), Ok(Parsed::Interim(25))));
    }
}
