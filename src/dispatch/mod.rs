//! Phase "dispatch": hand a routed request to its service and relay the answer.
//!
//! The strategy is chosen per service ([`Strategy`]); routing and the
//! connection loop do not know which one runs. HTTP is the first strategy; a
//! message-bus strategy implements [`Dispatch`] and adds a `Strategy` variant.

mod http;

pub use http::HttpDispatch;

use crate::http::error::ProxyError;
use crate::http::io::BufStream;
use crate::http::request::Prepared;
use crate::snapshot::{Snapshot, Strategy};
use crate::worker::Worker;

/// Everything one request's dispatch may touch.
pub struct Exchange<'a> {
    pub worker: &'a Worker,
    pub snap: &'a Snapshot,
    pub req: &'a Prepared,
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

/// Runs the strategy of the request's service.
pub async fn dispatch(x: &mut Exchange<'_>) -> Result<Outcome, Failed> {
    match x.req.service.strategy {
        Strategy::Http => HttpDispatch.dispatch(x).await,
    }
}
