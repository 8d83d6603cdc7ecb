//! A request head, parsed once, in place.
//!
//! [`parse`] reads the request line and header fields with httparse and
//! notes, in the same single pass over the fields, everything later phases
//! ask about (framing, connection options, forwarding headers, the
//! WebSocket handshake fields). Nothing is copied: the [`RequestHead`]
//! borrows the read buffer and a header array on the caller's stack.
//! [`RequestHead::framing`] then applies the rules that keep a request from
//! meaning two things (RFC 9112 §6.3) and decides how its body is framed.

use super::headers::{has_underscore, list_items, trim};
use super::{parse_content_length, RequestBody};
use crate::error::{ErrorKind, ProxyError};
use std::mem::MaybeUninit;

/// Size limits on a request head (`[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    /// Not checked here: see [`RequestHead::framing`].
    pub max_body_bytes: u64,
}

/// Header fields the gateway reads, noted during the one pass over them.
#[derive(Default)]
pub struct Seen<'b> {
    pub host: Option<&'b [u8]>,
    pub hosts: u32,
    pub content_length: Option<&'b [u8]>,
    pub content_lengths: u32,
    pub transfer_encoding: bool,
    pub te_chunked_only: bool,
    pub conn_close: bool,
    pub conn_keep_alive: bool,
    pub conn_upgrade: bool,
    /// Header names listed in Connection: hop-by-hop for this message only.
    pub conn_named: Vec<&'b [u8]>,
    pub upgrade: Option<&'b [u8]>,
    pub expect_continue: bool,
    pub request_id: Option<&'b [u8]>,
    pub xff: Option<&'b [u8]>,
    pub xf_proto: Option<&'b [u8]>,
    pub xf_host: Option<&'b [u8]>,
    pub ws_key: Option<&'b [u8]>,
    pub ws_version: Option<&'b [u8]>,
    /// Some header name contains `_` (an alias for backends that read `_`
    /// as `-`): found once here so forwarding looks again only when set.
    pub underscored: bool,
}

/// A parsed request head. Every field borrows the read buffer.
pub struct RequestHead<'b> {
    /// Bytes of the buffer the head took.
    pub len: usize,
    pub method: &'b str,
    /// The raw request-target, as sent.
    pub target: &'b [u8],
    pub http10: bool,
    pub headers: &'b [httparse::Header<'b>],
    pub seen: Seen<'b>,
}

/// How the message is framed and what it asks of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub body: RequestBody,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// A valid `Connection: upgrade` GET.
    pub upgrade: bool,
    /// ... asking for `websocket`.
    pub websocket: bool,
}

/// Header storage for [`parse`]: on the stack, sized for the largest
/// `limits.max_headers` accepted.
pub type HeaderStorage<'b> = [MaybeUninit<httparse::Header<'b>>; super::MAX_HEADERS_CEILING];

pub fn storage<'b>() -> HeaderStorage<'b> {
    [MaybeUninit::uninit(); super::MAX_HEADERS_CEILING]
}

/// A head refused before it was whole or valid, with the method when the
/// request line was read.
pub struct Refused<'b> {
    pub error: ProxyError,
    pub method: Option<&'b str>,
}

fn parse_error(e: httparse::Error) -> ProxyError {
    match e {
        httparse::Error::TooManyHeaders => ProxyError::new(ErrorKind::HeadersTooLarge, "too many header fields"),
        httparse::Error::HeaderName => {
            ProxyError::bad_request("invalid byte in a header name (or obsolete line folding)")
        }
        httparse::Error::HeaderValue => ProxyError::bad_request("invalid byte in a header value"),
        httparse::Error::NewLine => ProxyError::bad_request("invalid line ending"),
        httparse::Error::Version => ProxyError::bad_request("unsupported HTTP version"),
        httparse::Error::Token => ProxyError::bad_request("invalid method or request target"),
        _ => ProxyError::bad_request("malformed request head"),
    }
}

/// Parses the head at the start of `buf`. `Ok(None)`: not complete yet.
pub fn parse<'b>(
    buf: &'b [u8],
    storage: &'b mut HeaderStorage<'b>,
    limits: &RequestLimits,
) -> Result<Option<RequestHead<'b>>, Refused<'b>> {
    let refuse = |error: ProxyError, method: Option<&'b str>| Refused { error, method };
    let headers = &mut storage[..limits.max_headers.min(super::MAX_HEADERS_CEILING)];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            // Still no end of head: refuse as soon as a limit is certainly broken.
            if buf.len() > limits.max_uri_bytes + 64 && !buf.contains(&b'\n') {
                return Err(refuse(ProxyError::new(ErrorKind::UriTooLong, "request target too long"), None));
            }
            if buf.len() > limits.max_header_bytes {
                return Err(refuse(ProxyError::new(ErrorKind::HeadersTooLarge, "request head too large"), None));
            }
            return Ok(None);
        }
        Err(e) => return Err(refuse(parse_error(e), None)),
    };
    let method = req.method.unwrap_or("-");
    let target = req.path.unwrap_or("").as_bytes();
    if target.len() > limits.max_uri_bytes {
        return Err(refuse(ProxyError::new(ErrorKind::UriTooLong, "request target too long"), Some(method)));
    }
    if len > limits.max_header_bytes {
        return Err(refuse(ProxyError::new(ErrorKind::HeadersTooLarge, "request head too large"), Some(method)));
    }
    let http10 = req.version == Some(0);
    let headers: &'b [httparse::Header<'b>] = req.headers;
    let seen = scan(headers);
    Ok(Some(RequestHead { len, method, target, http10, headers, seen }))
}

/// The one pass over the header fields.
fn scan<'b>(headers: &'b [httparse::Header<'b>]) -> Seen<'b> {
    let mut seen = Seen::default();
    for h in headers {
        let name = h.name.as_bytes();
        let value = trim(h.value);
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                seen.hosts = seen.hosts.saturating_add(1);
                seen.host = Some(value);
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                seen.content_lengths = seen.content_lengths.saturating_add(1);
                seen.content_length = Some(value);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // Only a lone "chunked" is accepted, across all TE fields.
                seen.te_chunked_only = !seen.transfer_encoding && value.eq_ignore_ascii_case(b"chunked");
                seen.transfer_encoding = true;
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for item in list_items(value) {
                    if item.eq_ignore_ascii_case(b"close") {
                        seen.conn_close = true;
                    } else if item.eq_ignore_ascii_case(b"keep-alive") {
                        seen.conn_keep_alive = true;
                    } else if item.eq_ignore_ascii_case(b"upgrade") {
                        seen.conn_upgrade = true;
                    } else if seen.conn_named.len() < 16 {
                        seen.conn_named.push(item);
                    }
                }
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => seen.upgrade = Some(value),
            6 if name.eq_ignore_ascii_case(b"expect") => {
                seen.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
            }
            12 if name.eq_ignore_ascii_case(b"x-request-id") => seen.request_id = Some(value),
            15 if name.eq_ignore_ascii_case(b"x-forwarded-for") => seen.xff = Some(value),
            17 if name.eq_ignore_ascii_case(b"x-forwarded-proto") => seen.xf_proto = Some(value),
            16 if name.eq_ignore_ascii_case(b"x-forwarded-host") => seen.xf_host = Some(value),
            17 if name.eq_ignore_ascii_case(b"sec-websocket-key") => seen.ws_key = Some(value),
            21 if name.eq_ignore_ascii_case(b"sec-websocket-version") => seen.ws_version = Some(value),
            // The names above have no '_', so only the others are scanned.
            _ => seen.underscored |= has_underscore(name),
        }
    }
    seen
}

impl RequestHead<'_> {
    /// Whether the connection may serve another request after this one
    /// (as far as the client's head says).
    pub fn keep_alive(&self) -> bool {
        let s = &self.seen;
        if self.http10 {
            s.conn_keep_alive && !s.conn_close
        } else {
            !s.conn_close
        }
    }

    /// The framing rules that keep a request from meaning two things.
    /// (`limits.max_body_bytes` is a policy, not a framing rule: the caller
    /// applies it after routing, so a service's response filters decorate
    /// the 413.)
    pub fn framing(&self) -> Result<Framing, ProxyError> {
        let s = &self.seen;
        let http10 = self.http10;
        if !http10 && s.hosts != 1 || s.hosts > 1 {
            return Err(ProxyError::bad_request("exactly one Host header is required"));
        }
        if let Some(h) = s.host {
            if h.is_empty() || !h.iter().all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(b)) {
                return Err(ProxyError::bad_request("invalid Host header"));
            }
        }
        if s.transfer_encoding && s.content_length.is_some() {
            return Err(ProxyError::bad_request("both Content-Length and Transfer-Encoding"));
        }
        if s.transfer_encoding && http10 {
            return Err(ProxyError::bad_request("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if s.transfer_encoding && !s.te_chunked_only {
            return Err(ProxyError::new(
                ErrorKind::UnsupportedTransferEncoding,
                "only Transfer-Encoding: chunked is supported",
            ));
        }
        if s.content_lengths > 1 {
            return Err(ProxyError::bad_request("duplicate Content-Length"));
        }
        let body = match (s.transfer_encoding, s.content_length) {
            (true, _) => RequestBody::Chunked,
            (false, Some(v)) => match parse_content_length(v) {
                Some(0) => RequestBody::None,
                Some(n) => RequestBody::Length(n),
                None => return Err(ProxyError::bad_request("invalid Content-Length")),
            },
            (false, None) => RequestBody::None,
        };
        // h2c is HTTP in another framing: tunnelled after a 101, its requests
        // would pass every filter unseen. It is not offered to services; the
        // request goes on as a plain HTTP/1.1 request.
        let h2c = s.upgrade.is_some_and(|u| list_items(u).any(|t| t.eq_ignore_ascii_case(b"h2c")));
        let upgrade = !http10 && s.conn_upgrade && s.upgrade.is_some() && !h2c && self.method == "GET";
        if upgrade && body != RequestBody::None {
            return Err(ProxyError::bad_request("an upgrade request cannot carry a body"));
        }
        Ok(Framing {
            body,
            keep_alive: self.keep_alive(),
            expect_continue: s.expect_continue && !http10 && body != RequestBody::None,
            upgrade,
            websocket: upgrade && s.upgrade.is_some_and(|u| u.eq_ignore_ascii_case(b"websocket")),
        })
    }
}
