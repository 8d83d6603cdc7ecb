//! HTTP integrations: an event is POSTed to each of a route's backends
//! through the one upstream client (pooled keep-alive connections, the same
//! response parser and limits as HTTP dispatch, deadlines). An event is
//! never POSTed twice: a backend that closes without answering is an error.

use crate::config::HttpTarget;
use crate::http::error::{ErrorKind, ProxyError};
use crate::http::request::itoa;
use crate::upstream::{self, head::HeadLimits, CallRequest};
use crate::worker::Worker;
use std::time::Duration;

/// Largest backend answer accepted.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// What the gateway tells a backend about the event.
pub struct CallInfo<'a> {
    pub connection_id: &'a str,
    pub endpoint: &'a str,
    pub route: &'a str,
    pub request_id: &'a str,
}

pub struct Answer {
    pub status: u16,
    /// `X-Wasp-Groups` when the backend sent it.
    pub groups: Option<String>,
    pub body: Vec<u8>,
}

/// POSTs `body` to `target` within `timeout`.
pub async fn call(
    w: &Worker,
    target: &HttpTarget,
    info: &CallInfo<'_>,
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, ProxyError> {
    let mut req = Vec::with_capacity(256 + body.len());
    req.extend_from_slice(b"POST ");
    req.extend_from_slice(target.path.as_bytes());
    req.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    req.extend_from_slice(target.host.as_bytes());
    req.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    req.extend_from_slice(itoa(body.len() as u64, &mut [0u8; 20]));
    for (name, value) in [
        ("x-wasp-connection-id", info.connection_id),
        ("x-wasp-endpoint", info.endpoint),
        ("x-wasp-route", info.route),
        ("x-request-id", info.request_id),
    ] {
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value.as_bytes());
    }
    req.extend_from_slice(b"\r\n\r\n");
    req.extend_from_slice(body);
    let snap = w.snapshot.load();
    let g = &snap.gateway;
    let request = CallRequest {
        addr: target.addr,
        bytes: req,
        keep_headers: &["x-wasp-groups"],
        max_answer: MAX_ANSWER,
        limits: HeadLimits { max_bytes: g.limits.max_header_bytes, max_headers: g.limits.max_headers },
        connect_timeout: g.timeouts.connect.min(timeout),
        write_timeout: g.timeouts.write.min(timeout),
        read_timeout: timeout,
        pool_idle: g.timeouts.pool_idle,
        pool_cap: g.limits.pool_idle_per_instance,
        max_conns: g.limits.backend_connections,
    };
    drop(snap);
    // The route's timeout bounds the whole exchange; the deadlines inside
    // bound each read and write.
    match monoio::time::timeout(timeout, upstream::call(&w.upstream, &w.deadlines, &w.stats, request)).await {
        Ok(Ok(a)) => {
            let groups = a.headers.into_iter().find(|(n, _)| *n == "x-wasp-groups").map(|(_, v)| v);
            Ok(Answer { status: a.status, groups, body: a.body })
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ProxyError::new(ErrorKind::UpstreamTimeout, "the integration did not answer in time")),
    }
}
