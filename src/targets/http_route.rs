//! The `http` route target: an event is POSTed to a backend through the
//! one upstream client (pooled keep-alive connections, the same response
//! parser and limits as HTTP dispatch, deadlines). An event is never POSTed
//! twice: a backend that closes without answering is an error.

use super::Env;
use crate::config::{GatewayConfig, HttpTarget};
use crate::error::{ErrorKind, ProxyError};
use crate::proto::http1::itoa;
use crate::proto::http1::response_head::HeadLimits;
use crate::upstream::{self, CallRequest};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where a WebSocket event of a route goes. Built once per snapshot (so
/// `Send + Sync`); `deliver` runs on a worker (its future is not `Send`).
pub trait RouteTarget: Send + Sync + std::fmt::Debug {
    /// Names the target in error events and logs (`http://host:port/path`).
    fn name(&self) -> &str;

    /// A Kafka topic: its failures are reported as `delivery_failed`.
    fn is_kafka(&self) -> bool {
        false
    }

    /// Delivers one event within `timeout`; the answer, for targets that have one.
    fn deliver<'a>(
        &'a self,
        env: Env<'a>,
        info: &'a EventInfo<'a>,
        body: &'a [u8],
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Delivered, ProxyError>> + 'a>>;
}

/// Largest backend answer accepted.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// What the gateway tells a target about the event.
pub struct EventInfo<'a> {
    /// The event as the client sent it (keys and headers are read from it).
    pub event: &'a [u8],
    /// Headers the route takes from the event (`headers`), validated.
    pub headers: &'a [(String, String)],
    pub connection_id: &'a str,
    pub endpoint: &'a str,
    pub route: &'a str,
    pub request_id: &'a str,
    /// Who the connection authenticated as, if anyone.
    pub identity: Option<&'a crate::auth::Identity>,
}

/// What a target answered.
pub struct Delivered {
    pub status: u16,
    /// `X-Wasp-Groups` when the backend sent it.
    pub groups: Option<String>,
    pub body: Vec<u8>,
}

/// Where an `http` target's calls go.
#[derive(Debug)]
enum Instances {
    /// `http://host:port/path`: resolved once at load.
    Fixed,
    /// `service:NAME/path` of a service with a static list.
    Static(Vec<SocketAddr>),
    /// ... of a service whose instances are discovered.
    Live(Arc<crate::discovery::Live>),
}

/// An `http` target with the gateway limits of the snapshot it was built in.
#[derive(Debug)]
pub struct HttpRoute {
    target: HttpTarget,
    instances: Instances,
    /// Round-robin over a service's instances (shared by workers).
    next: AtomicUsize,
    limits: HeadLimits,
    connect_timeout: Duration,
    write_timeout: Duration,
    pool_idle: Duration,
    pool_cap: usize,
    max_conns: usize,
}

impl HttpRoute {
    pub fn new(target: HttpTarget, g: &GatewayConfig) -> Self {
        let instances = match target.service.as_deref().and_then(|n| g.services.iter().find(|s| s.name == n)) {
            None => Instances::Fixed,
            Some(s) if s.discovery.is_some() => Instances::Live(crate::discovery::live(&s.name)),
            Some(s) => Instances::Static(s.instances.clone()),
        };
        HttpRoute {
            target,
            instances,
            next: AtomicUsize::new(0),
            limits: HeadLimits { max_bytes: g.limits.max_header_bytes, max_headers: g.limits.max_headers },
            connect_timeout: g.timeouts.connect,
            write_timeout: g.timeouts.write,
            pool_idle: g.timeouts.pool_idle,
            pool_cap: g.limits.pool_idle_per_instance,
            max_conns: g.limits.backend_connections,
        }
    }
}

impl HttpRoute {
    /// The address for the next call: fixed, or the service's next instance.
    fn pick(&self) -> Option<SocketAddr> {
        let take = |list: &[SocketAddr]| {
            (!list.is_empty()).then(|| list[self.next.fetch_add(1, Ordering::Relaxed) % list.len()])
        };
        match &self.instances {
            Instances::Fixed => Some(self.target.addr),
            Instances::Static(list) => take(list),
            Instances::Live(live) => take(&live.addrs()),
        }
    }
}

impl RouteTarget for HttpRoute {
    fn name(&self) -> &str {
        &self.target.url
    }

    fn deliver<'a>(
        &'a self,
        env: Env<'a>,
        info: &'a EventInfo<'a>,
        body: &'a [u8],
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Delivered, ProxyError>> + 'a>> {
        Box::pin(self.post(env, info, body, timeout))
    }
}

impl HttpRoute {
    /// POSTs `body` within `timeout`.
    async fn post(
        &self,
        env: Env<'_>,
        info: &EventInfo<'_>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Delivered, ProxyError> {
        let target = &self.target;
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
        // X-Wasp-Consumer, X-Wasp-Subject, X-Wasp-Claim-*.
        for (name, value) in info.identity.iter().flat_map(|i| i.headers()) {
            req.extend_from_slice(b"\r\n");
            req.extend_from_slice(name.as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(value.as_bytes());
        }
        for (name, value) in info.headers {
            req.extend_from_slice(b"\r\n");
            req.extend_from_slice(name.as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(value.as_bytes());
        }
        req.extend_from_slice(b"\r\n\r\n");
        req.extend_from_slice(body);
        let addr = self.pick().ok_or(ProxyError::new(ErrorKind::NoInstance, "no instance of the target service"))?;
        let request = CallRequest {
            addr,
            bytes: req,
            keep_headers: &["x-wasp-groups"],
            max_answer: MAX_ANSWER,
            limits: self.limits,
            connect_timeout: self.connect_timeout.min(timeout),
            write_timeout: self.write_timeout.min(timeout),
            read_timeout: timeout,
            pool_idle: self.pool_idle,
            pool_cap: self.pool_cap,
            max_conns: self.max_conns,
        };
        // The route's timeout bounds the whole exchange; the deadlines inside
        // bound each read and write.
        match monoio::time::timeout(timeout, upstream::call(env.upstream, env.deadlines, env.stats, request)).await {
            Ok(Ok(a)) => {
                let groups = a.headers.into_iter().find(|(n, _)| *n == "x-wasp-groups").map(|(_, v)| v);
                Ok(Delivered { status: a.status, groups, body: a.body })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ProxyError::new(ErrorKind::UpstreamTimeout, "the integration did not answer in time")),
        }
    }
}
