//! Phase "dispatch": where a routed request or event goes.
//!
//! Two seams, one file per implementation:
//!
//! - [`Dispatch`]: how an HTTP request reaches its service and how the answer
//!   comes back ([`http::HttpDispatch`] today). The strategy is chosen per
//!   service ([`Strategy`]); the request loop does not know which one runs.
//!   A service with `dispatch = { kafka = ... }` uses [`bus::BusDispatch`].
//! - [`RouteTarget`]: where a WebSocket event of a route goes
//!   ([`http_route::HttpRoute`], [`kafka_route::KafkaRoute`]).
//!
//! Targets see the worker only through [`Env`] and the request only through
//! [`RequestFacts`]: they sit below the router, the filters and the pipeline.

pub mod body_rate;
pub mod bus;
pub mod http;
pub mod http_route;
pub mod kafka_route;
pub mod whole_body;

pub use bus::BusDispatch;
pub use http::HttpDispatch;
pub use http_route::{Delivered, EventInfo, HttpRoute, RouteTarget};
pub use kafka_route::KafkaRoute;

use crate::config::{GatewayConfig, ServiceConfig};
use crate::deadline::Deadlines;
use crate::error::ProxyError;
use crate::io::BufStream;
use crate::metrics::WorkerStats;
use crate::proto::http1::edits::HeaderEdits;
use crate::proto::http1::inline::{Method, RequestId};
use crate::proto::http1::RequestBody;
use crate::shutdown::Shutdown;

/// How a service's requests leave the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Http,
    /// Over Kafka: a request message, a reply message.
    Bus,
}

/// The parts of a worker a target uses.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    /// The one upstream client: pool, balance, retry budgets.
    pub upstream: &'a crate::upstream::Client,
    /// Deadlines on every read and write of the exchange.
    pub deadlines: &'a Deadlines,
    pub stats: &'a WorkerStats,
    /// Read at the answer: a drain that began meanwhile closes connections.
    pub shutdown: &'a Shutdown,
    /// The process's Kafka producer (shared by every worker).
    pub kafka: &'a crate::kafka::Kafka,
    /// This worker's bus requests waiting for replies.
    pub bus: &'a bus::Waits,
}

/// What a target needs to know of the client's request (the head itself
/// was already written for the upstream by the pipeline).
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub request_id: &'a RequestId,
    pub body: RequestBody,
    pub expect_continue: bool,
    pub upgrade: bool,
    pub is_head: bool,
    pub http10: bool,
}

/// The answer's head as response filters see it.
pub struct ResponseView<'a> {
    /// The service's status, or the gateway's own for its answers.
    pub status: u16,
    /// The service's header fields (none for the gateway's own answers).
    pub headers: &'a [httparse::Header<'a>],
}

impl ResponseView<'_> {
    /// The first header named `name` (any case), trimmed.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| crate::proto::http1::headers::trim(h.value))
    }
}

/// Response filters: a look at the response head before it is written to
/// the client (`response_headers`, `cors`, `record`), and a program for a
/// JSON response body (`transform`).
pub trait ResponseHook {
    fn response(&self, resp: &ResponseView<'_>, edits: &mut HeaderEdits);

    /// The program a JSON response body goes through, when there is one.
    fn body_program(&self) -> Option<&crate::proto::jq::Program> {
        None
    }

    /// Counts what became of a response body (`applied`, `skipped`, `failed`).
    fn body_outcome(&self, _outcome: &'static str) {}
}

/// Everything one request's dispatch may touch.
pub struct Exchange<'a> {
    pub env: Env<'a>,
    pub gateway: &'a GatewayConfig,
    pub service: &'a ServiceConfig,
    /// The service's name, shared (keys per-worker state that outlives versions).
    pub service_name: &'a std::sync::Arc<str>,
    /// The service's instances now: its static list, or what discovery found.
    pub instances: &'a [std::net::SocketAddr],
    /// (snapshot version, service position): keys the per-worker round-robin
    /// cursor and retry budget of this service in this version.
    pub balance: (u64, usize),
    /// How the first instance is chosen (the hash key worked out already).
    pub pick: crate::upstream::Pick,
    /// The service's instances' outlier state.
    pub health: &'a crate::upstream::outlier::ServiceHealth,
    pub req: RequestFacts<'a>,
    /// Response filters, when any asked to see the answer.
    pub response_hook: Option<&'a dyn ResponseHook>,
    pub client: &'a mut BufStream,
    /// On entry: the upstream head. Reused for every write of the exchange.
    pub out: &'a mut Vec<u8>,
    /// A read buffer lent to whichever upstream connection serves the request.
    pub upstream_buf: &'a mut Vec<u8>,
    /// Whether the client connection may stay open after this request.
    pub keep_client: bool,
}

/// A request that was answered.
pub struct Outcome {
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    pub keep_alive: bool,
    /// Set after a `101`: the upstream side of the tunnel to run.
    pub upgraded: Option<BufStream>,
    /// The client's request body was not all read (an early answer): close
    /// with a lingering read so the client sees the answer, not a reset.
    pub linger: bool,
}

/// A request that failed.
pub struct Failed {
    pub error: ProxyError,
    /// Response bytes already reached the client: no error answer is possible.
    pub answered: bool,
    /// Status already sent when `answered`.
    pub status: u16,
}

impl Failed {
    pub fn before(error: ProxyError) -> Self {
        Failed { error, answered: false, status: 0 }
    }
}

/// A way of delivering requests to a service.
///
/// Workers are single-threaded, so futures here are not `Send` on purpose.
#[allow(async_fn_in_trait)]
pub trait Dispatch {
    async fn dispatch(&self, x: &mut Exchange<'_>) -> Result<Outcome, Failed>;
}

/// Runs the strategy of the request's service. Static dispatch: the hot
/// path pays no allocation for the choice.
pub async fn dispatch(strategy: Strategy, x: &mut Exchange<'_>) -> Result<Outcome, Failed> {
    match strategy {
        Strategy::Http => HttpDispatch.dispatch(x).await,
        Strategy::Bus => BusDispatch.dispatch(x).await,
    }
}
