//! Phase "response head": parse what the service answered, decide the framing
//! towards the client, and write the client's head into `out`.

use super::error::ProxyError;
use super::headers::{is_hop_by_hop, list_items, trim};
use super::request::{itoa, parse_content_length, Prepared};
use crate::config::MAX_HEADERS_CEILING;
use crate::snapshot::Snapshot;
use std::mem::MaybeUninit;

/// Largest response head accepted from a service.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How the service frames its response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    None,
    Length(u64),
    Chunked,
    /// No length: the body ends when the service closes the connection.
    UntilClose,
}

/// How the client receives the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    None,
    Length(u64),
    /// Re-chunked by us (HTTP/1.1 clients).
    Chunked,
    /// Raw bytes, then close (HTTP/1.0 clients with no length known).
    Close,
}

pub enum Parsed {
    /// Not a complete head yet.
    Partial,
    /// A 1xx other than 101: skip `usize` bytes and read the real answer.
    Interim(usize),
    Final(Response),
}

pub struct Response {
    pub head_len: usize,
    pub status: u16,
    pub body: ResponseBody,
    pub client_framing: ClientFraming,
    /// The upstream connection can serve another request afterwards.
    pub upstream_reusable: bool,
    /// The client connection stays open afterwards.
    pub client_keep_alive: bool,
    pub switching: bool,
}

/// Parses the service's head and writes the client's head into `out`.
/// `keep_client`: whether the client connection may stay open (request side).
pub fn parse_response(
    buf: &[u8],
    req: &Prepared,
    snap: &Snapshot,
    keep_client: bool,
    out: &mut Vec<u8>,
) -> Result<Parsed, ProxyError> {
    let mut storage: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS_CEILING] =
        [MaybeUninit::uninit(); MAX_HEADERS_CEILING];
    let mut res = httparse::Response::new(&mut []);
    let head_len =
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, &mut storage) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
                return Err(ProxyError::bad_gateway("response head too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
            Err(_) => return Err(ProxyError::bad_gateway("malformed response head from the service")),
        };
    let status = res.code.unwrap_or(0);
    if !(100..=599).contains(&status) {
        return Err(ProxyError::bad_gateway("invalid status code from the service"));
    }
    let switching = status == 101;
    if (100..200).contains(&status) && !switching {
        return Ok(Parsed::Interim(head_len));
    }
    if switching && !req.upgrade {
        return Err(ProxyError::bad_gateway("the service switched protocols without being asked"));
    }
    let http10 = res.version == Some(0);

    let mut content_length = None;
    let mut lengths = 0;
    let mut chunked = false;
    let mut te = false;
    let mut close = http10;
    let mut conn_named: Vec<&[u8]> = Vec::new();
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim(h.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = !te && value.eq_ignore_ascii_case(b"chunked");
            te = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for item in list_items(value) {
                if item.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if item.eq_ignore_ascii_case(b"keep-alive") {
                    close = close && !http10;
                } else if conn_named.len() < 16 {
                    conn_named.push(item);
                }
            }
        }
    }
    if http10
        && !res.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && list_items(h.value).any(|i| i.eq_ignore_ascii_case(b"keep-alive"))
        })
    {
        close = true;
    }
    let no_body = req.is_head || status == 204 || status == 304 || switching;
    let body = if no_body {
        ResponseBody::None
    } else if te && content_length.is_some() {
        return Err(ProxyError::bad_gateway("response has both Content-Length and Transfer-Encoding"));
    } else if te && !chunked {
        return Err(ProxyError::bad_gateway("unsupported Transfer-Encoding from the service"));
    } else if te {
        ResponseBody::Chunked
    } else if lengths > 1 {
        return Err(ProxyError::bad_gateway("duplicate Content-Length from the service"));
    } else if let Some(v) = content_length {
        match parse_content_length(v) {
            Some(n) => ResponseBody::Length(n),
            None => return Err(ProxyError::bad_gateway("invalid Content-Length from the service")),
        }
    } else {
        ResponseBody::UntilClose
    };
    let client_framing = match body {
        ResponseBody::None => ClientFraming::None,
        ResponseBody::Length(n) => ClientFraming::Length(n),
        ResponseBody::Chunked | ResponseBody::UntilClose if req.http10 => ClientFraming::Close,
        ResponseBody::Chunked | ResponseBody::UntilClose => ClientFraming::Chunked,
    };
    let client_keep_alive = keep_client && client_framing != ClientFraming::Close && !switching;
    let upstream_reusable = !close && body != ResponseBody::UntilClose && !switching;

    // The client's head.
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa(u64::from(status), &mut [0u8; 20]));
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let protected = &snap.gateway.protected;
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        let keep_length = no_body && !switching && status != 204 && name.eq_ignore_ascii_case(b"content-length");
        if !keep_length
            && (is_hop_by_hop(name)
                || name.eq_ignore_ascii_case(b"content-length")
                || name.eq_ignore_ascii_case(b"x-request-id")
                || conn_named.iter().any(|n| n.eq_ignore_ascii_case(name))
                || protected.matches(name))
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(trim(h.value));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(req.meta.request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    match client_framing {
        ClientFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(n, &mut [0u8; 20]));
            out.extend_from_slice(b"\r\n");
        }
        ClientFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        ClientFraming::None | ClientFraming::Close => {}
    }
    if switching {
        let upgrade = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("upgrade"))
            .map(|h| trim(h.value))
            .unwrap_or(b"websocket");
        out.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        out.extend_from_slice(upgrade);
        out.extend_from_slice(b"\r\n");
    } else if !client_keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if req.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Parsed::Final(Response {
        head_len,
        status,
        body,
        client_framing,
        upstream_reusable,
        client_keep_alive,
        switching,
    }))
}
