//! Phase "request head": parse, validate, route and rewrite a client head.
//!
//! All of it is synchronous and works on the bytes already read, so it is
//! benchmarked on its own (`benches/hot_path.rs`). The output is the head the
//! upstream will receive, written into `out`, and a small summary of what the
//! rest of the exchange needs to know (framing, keep-alive, upgrade, ...).

use super::error::{ErrorKind, ProxyError};
use super::headers::{folded_eq, has_underscore, is_gateway_header, is_hop_by_hop, is_name, list_items, trim};
use super::inline::{acceptable_request_id, IdGen, Method, RequestId};
use super::path::route_target;
use crate::config::{Underscores, MAX_HEADERS_CEILING};
use crate::snapshot::{Service, Snapshot};
use std::mem::MaybeUninit;
use std::sync::Arc;

pub use super::head_scan::HeadScan;

/// How the request body is framed on the client side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    None,
    Length(u64),
    Chunked,
}

/// Per-connection facts the head rewrite needs.
pub struct ClientInfo {
    /// The peer address as text, computed once per connection.
    pub peer_ip: String,
    /// Whether the peer is a trusted proxy whose X-Forwarded-* we extend.
    pub trusted: bool,
}

/// What the exchange needs from a validated, routed request.
pub struct Prepared {
    /// Bytes of the client buffer the head took.
    pub head_len: usize,
    pub service: Arc<Service>,
    pub body: RequestBody,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub upgrade: bool,
    pub is_head: bool,
    pub http10: bool,
    pub meta: Meta,
}

/// Identity of a request for logs and error bodies.
#[derive(Debug, Clone)]
pub struct Meta {
    pub method: Method,
    pub request_id: RequestId,
    /// The raw target, kept only when the access log is on.
    pub target: Option<String>,
    /// The routed service name, when routing got that far.
    pub service: Option<Arc<str>>,
}

/// A request for a WebSocket endpoint, handshake validated.
pub struct WsUpgrade {
    pub head_len: usize,
    pub endpoint: Arc<crate::ws::endpoint::Endpoint>,
    /// `Sec-WebSocket-Accept` for the 101.
    pub accept: String,
    pub path: String,
    pub query: String,
    /// The client's headers (hop-by-hop and protected ones removed), for `$connect`.
    pub headers: Vec<(String, String)>,
    pub meta: Meta,
}

/// Where a prepared request goes.
pub enum Routed {
    Http(Prepared),
    WebSocket(Box<WsUpgrade>),
}

/// A request refused before any upstream saw it.
pub struct Rejected {
    pub error: ProxyError,
    pub meta: Meta,
    /// The head's length when the connection can go on after the answer
    /// (a complete, bodiless, keep-alive request): otherwise it is closed.
    pub continue_after: Option<usize>,
}

#[derive(Default)]
struct Seen<'b> {
    host: Option<&'b [u8]>,
    hosts: u32,
    content_length: Option<&'b [u8]>,
    content_lengths: u32,
    transfer_encoding: bool,
    te_chunked_only: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    /// Header names listed in Connection: hop-by-hop for this message only.
    conn_named: Vec<&'b [u8]>,
    upgrade: Option<&'b [u8]>,
    expect_continue: bool,
    request_id: Option<&'b [u8]>,
    xff: Option<&'b [u8]>,
    xf_proto: Option<&'b [u8]>,
    xf_host: Option<&'b [u8]>,
    ws_key: Option<&'b [u8]>,
    ws_version: Option<&'b [u8]>,
    /// Some header name contains `_` (an alias for backends that read `_`
    /// as `-`): found once here so forwarding looks again only when set.
    underscored: bool,
}

/// Headers the gateway always sets itself; the client's copies are dropped,
/// and so are their aliases (`X_Forwarded_For`) when underscores are allowed.
fn is_regenerated(name: &[u8]) -> bool {
    const OWN: [&[u8]; 8] = [
        b"host",
        b"content-length",
        b"expect",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
    ];
    OWN.iter().any(|h| is_name(name, h))
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

/// Parses the head in `buf`. `Ok(None)`: not complete yet, read more.
pub fn prepare(
    buf: &[u8],
    snap: &Snapshot,
    client: &ClientInfo,
    ids: &IdGen,
    out: &mut Vec<u8>,
) -> Result<Option<Routed>, Box<Rejected>> {
    let limits = &snap.gateway.limits;
    let mut storage: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS_CEILING] =
        [MaybeUninit::uninit(); MAX_HEADERS_CEILING];
    let headers = &mut storage[..limits.max_headers];
    let mut req = httparse::Request::new(&mut []);
    let reject = |error: ProxyError, method: Option<&str>| {
        Box::new(Rejected {
            continue_after: None,
            error,
            meta: Meta {
                method: Method::new(method.unwrap_or("-").as_bytes()),
                request_id: ids.next(),
                target: None,
                service: None,
            },
        })
    };
    let head_len = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            // Still no end of head: refuse as soon as a limit is certainly broken.
            if buf.len() > limits.max_uri_bytes + 64 && !buf.contains(&b'\n') {
                return Err(reject(ProxyError::new(ErrorKind::UriTooLong, "request target too long"), None));
            }
            if buf.len() > limits.max_header_bytes {
                return Err(reject(ProxyError::new(ErrorKind::HeadersTooLarge, "request head too large"), None));
            }
            return Ok(None);
        }
        Err(e) => return Err(reject(parse_error(e), None)),
    };
    let method_s = req.method.unwrap_or("-");
    let target = req.path.unwrap_or("").as_bytes();
    if target.len() > limits.max_uri_bytes {
        return Err(reject(ProxyError::new(ErrorKind::UriTooLong, "request target too long"), Some(method_s)));
    }
    if head_len > limits.max_header_bytes {
        return Err(reject(ProxyError::new(ErrorKind::HeadersTooLarge, "request head too large"), Some(method_s)));
    }
    let http10 = req.version == Some(0);

    let mut seen = Seen::default();
    for h in req.headers.iter() {
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

    let request_id = match seen.request_id {
        Some(v) if acceptable_request_id(v) => RequestId::new(v),
        _ => ids.next(),
    };
    let mut meta = Meta {
        method: Method::new(method_s.as_bytes()),
        request_id,
        target: snap.gateway.access_log.then(|| String::from_utf8_lossy(target).into_owned()),
        service: None,
    };
    macro_rules! fail {
        ($err:expr) => {
            return Err(Box::new(Rejected { error: $err, meta, continue_after: None }))
        };
    }

    // Framing: the rules that keep a request from meaning two things (RFC 9112 §6.3).
    if !http10 && seen.hosts != 1 || seen.hosts > 1 {
        fail!(ProxyError::bad_request("exactly one Host header is required"));
    }
    if let Some(h) = seen.host {
        if h.is_empty() || !h.iter().all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(b)) {
            fail!(ProxyError::bad_request("invalid Host header"));
        }
    }
    if seen.transfer_encoding && seen.content_length.is_some() {
        fail!(ProxyError::bad_request("both Content-Length and Transfer-Encoding"));
    }
    if seen.transfer_encoding && http10 {
        fail!(ProxyError::bad_request("Transfer-Encoding in an HTTP/1.0 request"));
    }
    if seen.transfer_encoding && !seen.te_chunked_only {
        fail!(ProxyError::new(ErrorKind::UnsupportedTransferEncoding, "only Transfer-Encoding: chunked is supported"));
    }
    if seen.content_lengths > 1 {
        fail!(ProxyError::bad_request("duplicate Content-Length"));
    }
    let body = match (seen.transfer_encoding, seen.content_length) {
        (true, _) => RequestBody::Chunked,
        (false, Some(v)) => match parse_content_length(v) {
            Some(0) => RequestBody::None,
            Some(n) => RequestBody::Length(n),
            None => fail!(ProxyError::bad_request("invalid Content-Length")),
        },
        (false, None) => RequestBody::None,
    };
    if let RequestBody::Length(n) = body {
        if n > limits.max_body_bytes {
            fail!(ProxyError::new(ErrorKind::BodyTooLarge, "request body exceeds the size limit"));
        }
    }
    let upgrade = !http10 && seen.conn_upgrade && seen.upgrade.is_some() && method_s == "GET";
    if upgrade && body != RequestBody::None {
        fail!(ProxyError::bad_request("an upgrade request cannot carry a body"));
    }
    if seen.underscored && snap.gateway.underscores == Underscores::Reject {
        fail!(ProxyError::bad_request("a header name contains '_' (refused by headers.underscores = \"reject\")"));
    }

    // Route: normalize the path, then look the service up.
    let routed = match route_target(target, snap.gateway.encoded_slash) {
        Ok(r) => r,
        Err(e) => fail!(ProxyError::bad_request(e.message())),
    };
    if !snap.endpoint_paths.is_empty() {
        let (path_part, query) = routed.upstream_target.split_once('?').unwrap_or((&routed.upstream_target, ""));
        let full =
            if path_part == "/" { format!("/{}", routed.service) } else { format!("/{}{}", routed.service, path_part) };
        if let Some(ep) = snap.endpoint_paths.get(&full) {
            meta.service = Some(Arc::from(ep.name()));
            let websocket = seen.upgrade.is_some_and(|u| u.eq_ignore_ascii_case(b"websocket"));
            if !(upgrade && websocket) {
                fail!(ProxyError::new(ErrorKind::UpgradeRequired, "this path accepts only WebSocket upgrades"));
            }
            if seen.ws_version != Some(b"13") {
                fail!(ProxyError::bad_request("Sec-WebSocket-Version must be 13"));
            }
            let key = match seen.ws_key {
                Some(k) if crate::ws::handshake::valid_key(k) => k,
                _ => fail!(ProxyError::bad_request("Sec-WebSocket-Key must be the base64 of 16 bytes")),
            };
            let headers = req
                .headers
                .iter()
                .filter(|h| connect_header(h.name.as_bytes(), snap, seen.underscored))
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(trim(h.value)).into_owned()))
                .collect();
            return Ok(Some(Routed::WebSocket(Box::new(WsUpgrade {
                head_len,
                endpoint: ep.clone(),
                accept: crate::ws::handshake::accept_key(key),
                path: full,
                query: query.to_string(),
                headers,
                meta,
            }))));
        }
    }
    let Some(service) = snap.services.get(routed.service.as_str()) else {
        if !routed.service.is_empty() && routed.service.len() <= 64 {
            meta.service = Some(Arc::from(routed.service.as_str()));
        }
        let keep = body == RequestBody::None
            && !upgrade
            && if http10 { seen.conn_keep_alive && !seen.conn_close } else { !seen.conn_close };
        let error = ProxyError::new(ErrorKind::UnknownService, "no service is routed at this path");
        return Err(Box::new(Rejected { error, meta, continue_after: keep.then_some(head_len) }));
    };
    meta.service = Some(service.name.clone());

    let head = UpstreamHead { method: method_s, target: &routed.upstream_target, body, upgrade };
    write_upstream_head(out, &head, req.headers, &seen, snap, client, service, &meta.request_id);

    Ok(Some(Routed::Http(Prepared {
        head_len,
        service: service.clone(),
        body,
        keep_alive: if http10 { seen.conn_keep_alive && !seen.conn_close } else { !seen.conn_close },
        expect_continue: seen.expect_continue && !http10 && body != RequestBody::None,
        upgrade,
        is_head: method_s == "HEAD",
        http10,
        meta,
    })))
}

/// `1*DIGIT`, no sign, no list, fits in u64.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// The request line and framing of the head sent upstream.
struct UpstreamHead<'a> {
    method: &'a str,
    target: &'a str,
    body: RequestBody,
    upgrade: bool,
}

#[allow(clippy::too_many_arguments)]
fn write_upstream_head(
    out: &mut Vec<u8>,
    head: &UpstreamHead<'_>,
    headers: &[httparse::Header<'_>],
    seen: &Seen<'_>,
    snap: &Snapshot,
    client: &ClientInfo,
    service: &Service,
    request_id: &RequestId,
) {
    out.clear();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    let host = seen.host.unwrap_or(service.name.as_bytes());
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");
    for h in headers {
        let name = h.name.as_bytes();
        if forward_request_header(name, &seen.conn_named, snap, seen.underscored) {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(trim(h.value));
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if client.trusted {
        if let Some(prev) = seen.xff {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(client.peer_ip.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    match (client.trusted, seen.xf_proto) {
        (true, Some(p)) => out.extend_from_slice(p),
        _ => out.extend_from_slice(b"http"),
    }
    out.extend_from_slice(b"\r\nx-forwarded-host: ");
    match (client.trusted, seen.xf_host) {
        (true, Some(h)) => out.extend_from_slice(h),
        _ => out.extend_from_slice(host),
    }
    out.extend_from_slice(b"\r\nx-request-id: ");
    out.extend_from_slice(request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    match head.body {
        RequestBody::None => {}
        RequestBody::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(n, &mut [0u8; 20]));
            out.extend_from_slice(b"\r\n");
        }
        RequestBody::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if head.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        out.extend_from_slice(seen.upgrade.unwrap_or_default());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
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

/// Whether an underscored name goes no further: under "drop" (under
/// "reject" the request never gets this far). `underscored`: the head has one.
fn dropped_alias(name: &[u8], snap: &Snapshot, underscored: bool) -> bool {
    underscored && snap.gateway.underscores != Underscores::Allow && has_underscore(name)
}

/// Whether a client header is passed on to the upstream.
pub fn forward_request_header(name: &[u8], conn_named: &[&[u8]], snap: &Snapshot, underscored: bool) -> bool {
    !(is_hop_by_hop(name)
        || is_regenerated(name)
        || is_gateway_header(name)
        || conn_named.iter().any(|n| folded_eq(n, name))
        || snap.gateway.protected.matches(name)
        || dropped_alias(name, snap, underscored))
}

/// Whether a client header goes into the `$connect` call's JSON body: the
/// integration reads it as the client's, so protected and `X-Wasp-*` names
/// (which it could take as the gateway's word) are left out like for services.
fn connect_header(name: &[u8], snap: &Snapshot, underscored: bool) -> bool {
    !(is_hop_by_hop(name)
        || is_gateway_header(name)
        || snap.gateway.protected.matches(name)
        || is_name(name, b"sec-websocket-key")
        || dropped_alias(name, snap, underscored))
}
