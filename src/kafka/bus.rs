//! The bus's wire format: HTTP requests carried over Kafka and their
//! replies. A public contract (services in any language speak it):
//!
//! Request message (to the service's `topic`):
//! - value: the request body's bytes (de-chunked);
//! - headers: `wasp-correlation-id`, `wasp-reply-to` (`TOPIC;node=N`, only
//!   when the service has a `reply_topic`), `wasp-method`, `wasp-path`,
//!   `wasp-query` (without `?`; empty when none), `wasp-request-id`, and
//!   `http-<name>` for each request header the service would get over HTTP
//!   (after filters; protected and hop-by-hop headers are never among them).
//!
//! Reply message (to the `reply_topic`): value = the answer's body; headers
//! `wasp-correlation-id` (copied), `wasp-status` (200-599) and `http-<name>`
//! for the answer's headers. Framing and hop-by-hop names are dropped, and
//! a header that could not be an HTTP field is dropped too.

use crate::proto::http1::headers::{is_hop_by_hop, is_tchar};

pub const CORRELATION_ID: &str = "wasp-correlation-id";
pub const REPLY_TO: &str = "wasp-reply-to";
pub const METHOD: &str = "wasp-method";
pub const PATH: &str = "wasp-path";
pub const QUERY: &str = "wasp-query";
pub const REQUEST_ID: &str = "wasp-request-id";
pub const STATUS: &str = "wasp-status";
/// Prefix of a carried HTTP header.
pub const HTTP_PREFIX: &str = "http-";

/// Correlation ids are 22 hex digits: node (2), worker (4), then 64 bits
/// unique to the worker's run (a random start, counted up). The reply
/// consumer reads the owner from the id itself: no table shared between
/// workers, and another node's replies are told apart without a lookup.
pub fn correlation_id(node: u8, worker: u16, n: u64) -> String {
    format!("{node:02x}{worker:04x}{n:016x}")
}

/// `(node, worker, n)` of a correlation id; `None` when it is not one of ours.
pub fn parse_correlation(id: &[u8]) -> Option<(u8, u16, u64)> {
    if id.len() != 22 || !id.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let s = std::str::from_utf8(id).ok()?;
    Some((
        u8::from_str_radix(&s[..2], 16).ok()?,
        u16::from_str_radix(&s[2..6], 16).ok()?,
        u64::from_str_radix(&s[6..], 16).ok()?,
    ))
}

/// `wasp-reply-to`: the topic, then the node whose consumer reads the reply.
pub fn reply_to(topic: &str, node: u8) -> String {
    format!("{topic};node={node}")
}

/// An answer that came back over the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// `(lower-case name, value)`, validated as HTTP fields.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Names a reply may not set: the gateway frames the answer itself.
fn framing(name: &[u8]) -> bool {
    is_hop_by_hop(name)
        || name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
}

/// Reads a reply message: its correlation id and the answer, or why it is
/// not a reply (then it is counted and dropped; no client waits on it
/// that could be told more than a 504).
pub fn parse_reply<'a>(
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    body: Vec<u8>,
) -> Result<(Vec<u8>, Reply), &'static str> {
    let mut id = None;
    let mut status = None;
    let mut out = Vec::new();
    let mut connection = Vec::new();
    for (name, value) in headers {
        let value = value.unwrap_or_default();
        if name.eq_ignore_ascii_case(CORRELATION_ID) {
            id = Some(value.to_vec());
        } else if name.eq_ignore_ascii_case(STATUS) {
            status = std::str::from_utf8(value).ok().and_then(|s| s.trim().parse::<u16>().ok());
        } else if name.len() > HTTP_PREFIX.len()
            && name.as_bytes()[HTTP_PREFIX.len()..].eq_ignore_ascii_case(b"connection")
            && name.as_bytes()[..HTTP_PREFIX.len()].eq_ignore_ascii_case(HTTP_PREFIX.as_bytes())
        {
            connection.extend_from_slice(value);
            connection.push(b',');
        } else if name.len() > HTTP_PREFIX.len()
            && name.as_bytes()[..HTTP_PREFIX.len()].eq_ignore_ascii_case(HTTP_PREFIX.as_bytes())
        {
            // Bytes, not str slices: a name from Kafka may be any UTF-8.
            let field = &name.as_bytes()[HTTP_PREFIX.len()..];
            let name_ok = field.len() <= 256 && field.iter().all(|b| is_tchar(*b)) && !framing(field);
            let value_ok = value.len() <= 8192 && value.iter().all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f));
            if name_ok && value_ok && out.len() < 100 {
                out.push((String::from_utf8_lossy(field).to_ascii_lowercase(), value.to_vec()));
            }
        }
    }
    // Names a `Connection` header lists are hop-by-hop too (RFC 9110 §7.6.1).
    let named: Vec<Vec<u8>> =
        connection.split(|b| *b == b',').map(|t| t.trim_ascii().to_vec()).filter(|t| !t.is_empty()).collect();
    out.retain(|(n, _)| !named.iter().any(|c| c.eq_ignore_ascii_case(n.as_bytes())));
    let id = id.ok_or("no wasp-correlation-id header")?;
    let status = match status {
        Some(s @ 200..=599) => s,
        _ => return Err("no wasp-status between 200 and 599"),
    };
    Ok((id, Reply { status, headers: out, body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_round_trip_and_refuse_others() {
        let id = correlation_id(7, 513, 0xdead_beef_0000_0001);
        assert_eq!(id.len(), 22);
        assert_eq!(parse_correlation(id.as_bytes()), Some((7, 513, 0xdead_beef_0000_0001)));
        assert_eq!(parse_correlation(b"07020"), None);
        assert_eq!(parse_correlation("zz0201deadbeef00000001".as_bytes()), None);
        assert_eq!(parse_correlation("+7020100000000000000001".as_bytes()), None);
    }

    #[test]
    fn replies_keep_only_fields_http_allows() {
        let h = [
            ("wasp-correlation-id", Some(&b"abc"[..])),
            ("wasp-status", Some(&b"201"[..])),
            ("http-Content-Type", Some(&b"application/json"[..])),
            ("http-content-length", Some(&b"999"[..])),
            ("http-transfer-encoding", Some(&b"chunked"[..])),
            ("http-connection", Some(&b"close"[..])),
            ("http-x-evil", Some(&b"a\r\nset-cookie: x"[..])),
            ("http-bad name", Some(&b"v"[..])),
            ("httpé-x", Some(&b"v"[..])),
            ("http-é", Some(&b"v"[..])),
            ("other", Some(&b"v"[..])),
            ("http-connection", Some(&b"x-keep, close"[..])),
            ("http-x-keep", Some(&b"1"[..])),
        ];
        let (id, r) = parse_reply(h.into_iter(), b"{}".to_vec()).expect("a reply");
        assert_eq!(id, b"abc");
        assert_eq!(r.status, 201);
        assert_eq!(r.headers, vec![("content-type".to_string(), b"application/json".to_vec())]);
    }

    #[test]
    fn a_reply_needs_an_id_and_a_final_status() {
        let with = |status: &'static [u8]| {
            parse_reply([("wasp-correlation-id", Some(&b"x"[..])), ("wasp-status", Some(status))].into_iter(), vec![])
        };
        assert!(with(b"200").is_ok());
        assert!(with(b"101").is_err(), "no protocol switch over the bus");
        assert!(with(b"600").is_err());
        assert!(with(b"abc").is_err());
        assert!(parse_reply([("wasp-status", Some(&b"200"[..]))].into_iter(), vec![]).is_err());
    }
}
