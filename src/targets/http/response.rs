//! Phase "response head": parse what the service answered, decide the framing
//! towards the client, and write the client's head into `out`.

use crate::config::GatewayConfig;
use crate::error::ProxyError;
use crate::proto::http1::edits::HeaderEdits;
use crate::proto::http1::headers::{folded_eq, is_gateway_header, is_hop_by_hop, is_name, list_items, trim};
use crate::proto::http1::itoa;
use crate::proto::http1::response_head::{self as head, Asked, HeadLimits};
use crate::proto::jq::transformable;
use crate::targets::{RequestFacts, ResponseHook, ResponseView};

pub use crate::proto::http1::response_head::ResponseBody;

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
    /// The body goes through the response hook's program: `out` holds the
    /// head without framing and empty line, which the relay writes.
    pub transform: bool,
}

/// Parses the service's head and writes the client's head into `out`.
/// `keep_client`: whether the client connection may stay open (request side).
pub fn parse_response(
    buf: &[u8],
    req: &RequestFacts<'_>,
    gateway: &GatewayConfig,
    hook: Option<&dyn ResponseHook>,
    keep_client: bool,
    out: &mut Vec<u8>,
) -> Result<Parsed, ProxyError> {
    let mut storage = head::storage();
    let limits = HeadLimits { max_bytes: gateway.limits.max_header_bytes, max_headers: gateway.limits.max_headers };
    let asked = Asked { head: req.is_head, upgrade: req.upgrade };
    let h = match head::parse(buf, &mut storage, limits, asked).map_err(ProxyError::bad_gateway)? {
        head::Parsed::Partial => return Ok(Parsed::Partial),
        head::Parsed::Interim(n) => return Ok(Parsed::Interim(n)),
        head::Parsed::Final(h) => h,
    };
    let (status, body, switching) = (h.status, h.body, h.switching());
    let no_body = body == ResponseBody::None;
    // Headers the service named in `Connection` are hop-by-hop too.
    let mut conn_named: [&[u8]; 16] = [&[]; 16];
    let mut named = 0;
    if h.connection_names {
        for v in h.headers.iter().filter(|x| x.name.eq_ignore_ascii_case("connection")) {
            for item in list_items(v.value) {
                if named < conn_named.len()
                    && !item.eq_ignore_ascii_case(b"close")
                    && !item.eq_ignore_ascii_case(b"keep-alive")
                {
                    conn_named[named] = item;
                    named += 1;
                }
            }
        }
    }
    let conn_named = &conn_named[..named];
    let client_framing = match body {
        ResponseBody::None => ClientFraming::None,
        ResponseBody::Length(n) => ClientFraming::Length(n),
        ResponseBody::Chunked | ResponseBody::UntilClose if req.http10 => ClientFraming::Close,
        ResponseBody::Chunked | ResponseBody::UntilClose => ClientFraming::Chunked,
    };
    let client_keep_alive = keep_client && client_framing != ClientFraming::Close && !switching;
    let upstream_reusable = h.reusable();

    // The client's head.
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa(u64::from(status), &mut [0u8; 20]));
    out.push(b' ');
    out.extend_from_slice(h.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    // Removed: hop-by-hop and Connection-named headers, what we frame or set
    // ourselves, protected names and the gateway's own `X-Wasp-*` (never
    // from a service: a client could take them as the gateway's word). Names
    // are folded, so `X_Wasp_Route` goes too; only Content-Length is matched
    // by its exact name, as framing is.
    let protected = &gateway.protected;
    // Response filters see the status and say what to add and remove.
    let mut edits = HeaderEdits::default();
    if let Some(hook) = hook {
        hook.response(&ResponseView { status, headers: h.headers }, &mut edits);
    }
    let edited = !edits.is_empty();
    // A response transform needs the whole JSON body before the length is
    // known: the head is finished by the relay.
    // A HEAD answer is not transformed (it has no body), but its length
    // would be the untransformed one: it is left out.
    let head_of_transformed = req.is_head
        && hook.is_some_and(|h| h.body_program().is_some())
        && transformable(h.header("content-type"), h.header("content-encoding"));
    let transform = match hook {
        Some(hook) if hook.body_program().is_some() && body != ResponseBody::None && !switching && !req.is_head => {
            let json = transformable(h.header("content-type"), h.header("content-encoding"));
            if !json {
                hook.body_outcome("skipped");
            }
            json
        }
        _ => false,
    };
    // Decided once, not per header.
    let may_keep_length = no_body && !switching && status != 204 && !head_of_transformed;
    // Validators of the service's bytes do not describe transformed ones.
    let strip_digests = transform || head_of_transformed;
    for hd in h.headers.iter() {
        let name = hd.name.as_bytes();
        let keep_length = may_keep_length && name.eq_ignore_ascii_case(b"content-length");
        if strip_digests && is_representation_digest(name) {
            continue;
        }
        if !keep_length
            && (is_hop_by_hop(name)
                || name.eq_ignore_ascii_case(b"content-length")
                || is_name(name, b"x-request-id")
                || is_gateway_header(name)
                || conn_named.iter().any(|n| folded_eq(n, name))
                || protected.matches(name)
                || edited && edits.removes(name))
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(trim(hd.value));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(edits.added());
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(req.request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    match client_framing {
        _ if transform => {}
        ClientFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(n, &mut [0u8; 20]));
            out.extend_from_slice(b"\r\n");
        }
        ClientFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        ClientFraming::None | ClientFraming::Close => {}
    }
    if switching {
        let upgrade = h.header("upgrade").unwrap_or(b"websocket");
        out.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        out.extend_from_slice(upgrade);
        out.extend_from_slice(b"\r\n");
    } else if !client_keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if req.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    if !transform {
        out.extend_from_slice(b"\r\n");
    }
    Ok(Parsed::Final(Response {
        head_len: h.head_len,
        status,
        body,
        client_framing,
        upstream_reusable,
        client_keep_alive,
        switching,
        transform,
    }))
}

/// Headers that name the exact bytes of a body (a strong `ETag`, digests).
fn is_representation_digest(name: &[u8]) -> bool {
    [&b"etag"[..], b"content-md5", b"digest", b"content-digest", b"repr-digest"].iter().any(|n| is_name(name, n))
}
