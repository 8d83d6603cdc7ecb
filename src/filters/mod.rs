//! Filters: small pieces of policy that run between routing and dispatch.
//!
//! A service's filters are built once per snapshot from its validated
//! config ([`Chain::build`]), so a reload or an API apply swaps them with the
//! routes, atomically; a built filter is immutable (`Send + Sync`) and
//! whatever one request needs to remember lives in its [`Ctx`], which stays
//! on the worker (not `Send`).
//!
//! In the request phase a filter looks at the [`Request`] (method,
//! service-relative path, query, headers, client address) and returns an
//! [`Action`]: go on, go on having changed something (request headers in
//! `ctx.headers`, the upstream path in `ctx.path`), answer directly, or
//! refuse with a [`ProxyError`] (which decides the status, as everywhere).
//! A filter that returns `true` from [`Filter::wants_response`] is called
//! again with the status just before the client's head is written, the
//! service's answer or the gateway's own error answer alike, and may add
//! and remove response headers.
//!
//! Filters run in the order written, except that `cors` filters run first:
//! a browser's preflight is answered before any filter that could refuse it
//! (an auth or a limit), and a refusal still carries the CORS headers the
//! browser needs to read it.
//!
//! Response phases run in the reverse order (the first filter sees the
//! answer last, as in an onion): `cors`, first on the way in, has the last
//! word on the way out, so its `Vary: Origin` survives any later edit.
//!
//! Writing one: implement [`Filter`] in a file of this folder, add its
//! config variant in `config/filters.rs` and its arm in [`build`] (see
//! ARCHITECTURE.md, "Writing a filter").

pub mod access;
pub mod api_key;
pub mod bearer;
pub mod cors;
pub mod headers;
pub mod mock;
pub mod rate_limit;
pub mod record;
pub mod rewrite;
pub mod route;
pub mod split;
pub mod transform;

use crate::config::{FilterConfig, GatewayConfig, ServiceConfig};
use crate::error::ProxyError;
use crate::metrics::Registry;
use crate::proto::http1::edits::HeaderEdits;
use crate::proto::jq::Program;
use crate::targets::{ResponseHook, ResponseView};
use std::any::{Any, TypeId};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// A built filter.
pub trait Filter: Send + Sync + std::fmt::Debug {
    /// The `kind` it was configured with: the `filter` label of its metrics.
    fn kind(&self) -> &'static str;

    /// The request phase: after routing, before the upstream head is written.
    fn request(&self, req: &Request<'_>, ctx: &mut Ctx) -> Action;

    /// Before the request phase (`auth` filters only): what the request
    /// must wait for before [`request`](Self::request) can decide without
    /// waiting (a key set fetch, an introspection call). The request path
    /// awaits it; the wait is bounded by `crate::auth::bearer`.
    fn prepare(&self, _req: &Request<'_>) -> Option<crate::auth::bearer::Pending> {
        None
    }

    /// Whether [`response`](Self::response) should be called.
    fn wants_response(&self) -> bool {
        false
    }

    /// The response phase: the service's status and headers, or the
    /// gateway's own status for its answers; `edits` are applied to the
    /// client's head.
    fn response(&self, _resp: &ResponseView<'_>, _ctx: &Ctx, _edits: &mut HeaderEdits) {}

    /// The routing phase, before any request filter: `Some(service)` hands
    /// the request to that service, whose own filters then run instead of
    /// this one's (`route`, `split`). Only filters that say [`routes`](Self::routes).
    fn route(&self, _req: &Request<'_>) -> Option<&str> {
        None
    }

    /// Whether this is a routing filter (it runs in the routing phase only).
    fn routes(&self) -> bool {
        false
    }

    /// A jq program for JSON request bodies (`transform`).
    fn request_program(&self) -> Option<&Program> {
        None
    }

    /// A jq program for JSON response bodies (`transform`).
    fn response_program(&self) -> Option<&Program> {
        None
    }

    /// Counts what became of a body this filter transforms.
    fn body_outcome(&self, _side: Side, _outcome: &'static str) {}

    /// Whether [`log`](Self::log) should be called.
    fn logs(&self) -> bool {
        false
    }

    /// The log phase: after the answer went out (or failed).
    fn log(&self, _ctx: &Ctx, _done: &Done) {}
}

/// Which body a transformation worked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// How a request ended, for the log phase.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// From the head's arrival to the last byte.
    pub micros: u64,
}

/// What a filter decided about a request.
pub enum Action {
    /// Nothing to do for this request.
    Pass,
    /// Changed the request (or asked to change its answer): go on.
    Changed,
    /// Answer with this, without calling the service.
    Respond(Answer),
    /// Refuse: the error decides the status and the JSON body.
    Reject(ProxyError),
}

impl Action {
    /// The `action` label of `wasp_filter_actions_total`.
    fn index(&self) -> usize {
        match self {
            Action::Pass => 0,
            Action::Changed => 1,
            Action::Respond(_) => 2,
            Action::Reject(_) => 3,
        }
    }
}

const ACTIONS: [&str; 4] = ["pass", "changed", "answered", "refused"];

/// An answer a filter gives itself (a CORS preflight).
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    /// Headers besides framing and `x-request-id`, which the gateway writes.
    pub headers: HeaderEdits,
    pub body: Vec<u8>,
    /// Written after this long (a mock standing in for a slow service);
    /// the worker is not held meanwhile.
    pub delay: std::time::Duration,
}

/// The request as filters see it. Borrows the client's read buffer: nothing
/// is copied for a filter that only looks.
pub struct Request<'a> {
    pub method: &'a str,
    pub service: &'a str,
    /// The service-relative path, normalised as it will be forwarded (dot
    /// segments resolved, percent-encodings kept), before any rewrite.
    pub path: &'a str,
    /// The query string without `?` (empty when none).
    pub query: &'a str,
    pub headers: &'a [httparse::Header<'a>],
    /// Body bytes that arrived with the head (a prefix of the body, or all of it).
    pub body_prefix: &'a [u8],
    /// The client's address: the peer's, or, when the peer is one of
    /// `server.trusted_proxies`, the one they forwarded for (never a raw
    /// `X-Forwarded-For` from an untrusted peer). `None`: a trusted proxy
    /// forwarded something that is not an address; filters fail closed.
    pub client_ip: Option<IpAddr>,
    /// The client connection (unique in the process).
    pub connection: u64,
}

impl<'a> Request<'a> {
    /// The value of the first header named `name` (any case), trimmed.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| crate::proto::http1::headers::trim(h.value))
    }
}

/// Per-request state of the filters. Empty (and allocation-free) until a
/// filter writes to it.
#[derive(Default)]
pub struct Ctx {
    /// Edits to the head sent to the service.
    pub headers: HeaderEdits,
    /// The service-relative path sent instead of the client's (the query
    /// string is kept as sent).
    pub path: Option<String>,
    /// The query string sent (and logged) instead of the client's, without
    /// `?` (empty: none): a credential taken out of it.
    pub query: Option<String>,
    /// Whatever a filter keeps between its request and response phases,
    /// one value per type.
    state: Vec<(TypeId, Box<dyn Any>)>,
}

impl Ctx {
    /// Keeps `value` for this request, replacing an earlier one of its type.
    pub fn insert<T: 'static>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        self.state.retain(|(t, _)| *t != id);
        self.state.push((id, Box::new(value)));
    }

    pub fn get<T: 'static>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.state.iter().find(|(t, _)| *t == id).and_then(|(_, v)| v.downcast_ref())
    }
}

/// What the request phase of a chain ended with.
pub enum Flow {
    Continue,
    Respond(Answer),
    Reject(ProxyError),
}

/// A filter with its counters.
#[derive(Debug)]
struct Counted {
    filter: Box<dyn Filter>,
    /// By `Action::index`.
    counters: [Arc<AtomicU64>; 4],
}

/// A service's filters, in run order.
#[derive(Debug, Default)]
pub struct Chain {
    filters: Vec<Counted>,
    /// Some filter wants the response phase.
    responds: bool,
    /// Some filter routes (`route`, `split`).
    routing: bool,
    /// Some filter logs (`record`).
    logging: bool,
}

impl Chain {
    /// Builds the filters of `service` (validated config: cannot fail).
    pub fn build(service: &ServiceConfig, gateway: &GatewayConfig, registry: &Registry) -> Chain {
        let mut built: Vec<Box<dyn Filter>> =
            service.filters.iter().map(|f| build(f, &service.name, gateway, registry)).collect();
        // Stable: `cors` first, the rest in the order written.
        built.sort_by_key(|f| f.kind() != "cors");
        // Who is calling, right after CORS: before any filter that routes,
        // records or answers for the service.
        let auth: Option<Box<dyn Filter>> = match &service.auth {
            crate::config::auth::Auth::None => None,
            crate::config::auth::Auth::ApiKey(a) => Some(Box::new(api_key::ApiKey::new(a, &gateway.consumers))),
            crate::config::auth::Auth::Bearer(b) => Some(Box::new(bearer::Bearer::new(b))),
        };
        // Limits right after: they need the caller (per consumer), and a
        // request refused for its credential spends no budget.
        let limit = rate_limit::RateLimit::build(service, gateway).map(|l| Box::new(l) as Box<dyn Filter>);
        let at = built.iter().take_while(|f| f.kind() == "cors").count();
        for f in [limit, auth].into_iter().flatten() {
            built.insert(at, f);
        }
        // A mock answers last, after every filter the real service would have.
        if let Some(m) = service
            .mock
            .as_ref()
            .filter(|_| service.instances.is_empty() && service.discovery.is_none() && service.bus.is_none())
        {
            built.push(Box::new(mock::Mock::new(&service.name, &m.routes)));
        }
        Chain::from_filters(&service.name, built, registry)
    }

    /// A chain of filters built elsewhere (tests, embedders).
    pub fn from_filters(service: &str, filters: Vec<Box<dyn Filter>>, registry: &Registry) -> Chain {
        let filters: Vec<Counted> = filters
            .into_iter()
            .map(|filter| {
                let kind = filter.kind();
                let counters = ACTIONS.map(|a| registry.filter_action(service, kind, a));
                Counted { filter, counters }
            })
            .collect();
        let responds = filters.iter().any(|c| c.filter.wants_response() || c.filter.response_program().is_some());
        let routing = filters.iter().any(|c| c.filter.routes());
        let logging = filters.iter().any(|c| c.filter.logs());
        Chain { filters, responds, routing, logging }
    }

    /// Whether the routing phase has anything to do.
    pub fn routes(&self) -> bool {
        self.routing
    }

    /// The routing phase: the first routing filter that hands the request on.
    pub fn route<'s>(&'s self, req: &Request<'_>) -> Option<&'s str> {
        for c in self.filters.iter().filter(|c| c.filter.routes()) {
            match c.filter.route(req) {
                Some(to) => {
                    c.counters[Action::Changed.index()].fetch_add(1, Relaxed);
                    return Some(to);
                }
                None => {
                    c.counters[Action::Pass.index()].fetch_add(1, Relaxed);
                }
            }
        }
        None
    }

    /// The chain's `auth` filter, if any: a routing filter must not hand a
    /// request on before it (the request phase runs after routing).
    pub fn auth(&self) -> Option<&dyn Filter> {
        self.filters.iter().map(|c| c.filter.as_ref()).find(|f| f.kind() == "auth")
    }

    /// The service's rate limits, if any.
    pub fn rate_limit(&self) -> Option<&dyn Filter> {
        self.filters.iter().map(|c| c.filter.as_ref()).find(|f| f.kind() == "rate_limit")
    }

    /// The filter whose program transforms JSON request bodies, if any.
    pub fn request_transform(&self) -> Option<&dyn Filter> {
        self.filters.iter().map(|c| c.filter.as_ref()).find(|f| f.request_program().is_some())
    }

    /// The log phase.
    pub fn log(&self, ctx: &Ctx, done: &Done) {
        if self.logging {
            for c in self.filters.iter().filter(|c| c.filter.logs()) {
                c.filter.log(ctx, done);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The request phase: every filter in order, until one answers or refuses.
    pub fn request(&self, req: &Request<'_>, ctx: &mut Ctx) -> Flow {
        for c in self.filters.iter().filter(|c| !c.filter.routes()) {
            let action = c.filter.request(req, ctx);
            c.counters[action.index()].fetch_add(1, Relaxed);
            match action {
                Action::Pass | Action::Changed => {}
                Action::Respond(a) => return Flow::Respond(a),
                Action::Reject(e) => return Flow::Reject(e),
            }
        }
        Flow::Continue
    }

    /// The response phase of this request's filters, when any wants it.
    pub fn response_hook<'a>(&'a self, ctx: &'a Ctx) -> Option<ResponseFilters<'a>> {
        self.responds.then_some(ResponseFilters { chain: self, ctx })
    }
}

/// The response phase of one request: given to the target, which calls it
/// when it writes the client's head.
pub struct ResponseFilters<'a> {
    chain: &'a Chain,
    ctx: &'a Ctx,
}

impl ResponseHook for ResponseFilters<'_> {
    fn response(&self, resp: &ResponseView<'_>, edits: &mut HeaderEdits) {
        for c in self.chain.filters.iter().rev().filter(|c| c.filter.wants_response()) {
            c.filter.response(resp, self.ctx, edits);
        }
    }

    fn body_program(&self) -> Option<&Program> {
        self.chain.filters.iter().find_map(|c| c.filter.response_program())
    }

    fn body_outcome(&self, outcome: &'static str) {
        if let Some(c) = self.chain.filters.iter().find(|c| c.filter.response_program().is_some()) {
            c.filter.body_outcome(Side::Response, outcome);
        }
    }
}

/// Builds one filter of service `service` from its validated config.
pub fn build(config: &FilterConfig, service: &str, gateway: &GatewayConfig, registry: &Registry) -> Box<dyn Filter> {
    match config {
        FilterConfig::Route(r) => Box::new(route::Route::new(r)),
        FilterConfig::Split(c) => Box::new(split::Split::new(c, service)),
        FilterConfig::Record(c) => Box::new(record::Record::new(c, service, gateway, registry)),
        FilterConfig::Transform(c) => Box::new(transform::Transform::new(c, service, registry)),
        FilterConfig::Headers(rules) => Box::new(headers::RequestHeaders::new(rules)),
        FilterConfig::ResponseHeaders(rules) => Box::new(headers::ResponseHeaders::new(rules)),
        FilterConfig::Cors(c) => Box::new(cors::Cors::new(c)),
        FilterConfig::Block(c) => Box::new(access::Access::block(c)),
        FilterConfig::Allow(c) => Box::new(access::Access::allow(c)),
        FilterConfig::Rewrite(r) => Box::new(rewrite::Rewrite::new(r)),
    }
}
