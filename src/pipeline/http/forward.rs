//! Phase "upstream head": the head the service receives, written once the
//! request filters ran. What passes, what is regenerated, what never goes.

use crate::config::Underscores;
use crate::pipeline::snapshot::{Service, Snapshot};
use crate::proto::http1::edits::HeaderEdits;
use crate::proto::http1::headers::{
    folded_eq, has_underscore, is_gateway_header, is_hop_by_hop, is_name, is_regenerated, trim,
};
use crate::proto::http1::inline::RequestId;
use crate::proto::http1::request_head::{Framing, RequestHead};
use crate::proto::http1::{itoa, RequestBody};

use super::request::ClientInfo;

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
pub fn connect_header(name: &[u8], snap: &Snapshot, underscored: bool) -> bool {
    !(is_hop_by_hop(name)
        || is_gateway_header(name)
        || snap.gateway.protected.matches(name)
        || is_name(name, b"sec-websocket-key")
        || dropped_alias(name, snap, underscored))
}

/// What the upstream head is made of besides the client's head.
pub struct Upstream<'a> {
    /// `/{path}?{query}` as the service receives it (after any rewrite).
    pub target: &'a str,
    pub framing: Framing,
    pub service: &'a Service,
    pub request_id: &'a RequestId,
    /// The request filters' edits.
    pub edits: &'a HeaderEdits,
    /// Leave out the body framing and the empty line: the body is
    /// transformed first and its length written after it is known.
    pub defer_framing: bool,
}

/// Writes the head the service receives into `out`.
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    head: &RequestHead<'_>,
    up: &Upstream<'_>,
    snap: &Snapshot,
    client: &ClientInfo,
) {
    let seen = &head.seen;
    let edited = !up.edits.is_empty();
    out.clear();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(up.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    let host = seen.host.unwrap_or(up.service.name.as_bytes());
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");
    for h in head.headers {
        let name = h.name.as_bytes();
        if forward_request_header(name, &seen.conn_named, snap, seen.underscored) && !(edited && up.edits.removes(name))
        {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(trim(h.value));
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(up.edits.added());
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
    out.extend_from_slice(up.request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    if up.defer_framing {
        return;
    }
    match up.framing.body {
        RequestBody::None => {}
        RequestBody::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(n, &mut [0u8; 20]));
            out.extend_from_slice(b"\r\n");
        }
        RequestBody::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if up.framing.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        out.extend_from_slice(seen.upgrade.unwrap_or_default());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
