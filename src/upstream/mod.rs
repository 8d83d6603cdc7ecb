//! The one HTTP/1 client towards services: HTTP dispatch and WebSocket
//! integrations (and later health checks) reach services only through here.
//!
//! | piece | file |
//! |---|---|
//! | pick an instance, take a pooled connection or open one | [`connect`] |
//! | idle connections, reaped in the background | [`pool`] |
//! | round robin per service, retry budget | [`balance`] |
//! | the one response-head parser, with the client side's limits | [`head`] |
//! | read a head under a deadline, telling a stale connection apart | [`read_head`] |
//! | a whole request/answer exchange with a buffered body | [`call`] |
//!
//! Replay rule, for every caller: a request goes out again only when its
//! bytes provably never reached the service (the connect failed, or the
//! pooled connection was found closed *before* the write), or when it is
//! idempotent with its whole body buffered (see `dispatch::http`). A request
//! that went out whole is never sent a second time otherwise: a service that
//! closed without answering may have acted on it.

pub mod balance;
mod call;
pub mod connect;
pub mod health;
pub mod outlier;
pub mod pool;

pub use call::{call, Answer, CallRequest};
pub use connect::{connect, Conn, Pick, Target};

use crate::deadline::{Phase, Watch};
use crate::error::{ErrorKind, ProxyError};
use crate::io::BufStream;
use monoio::io::AsyncReadRent;
use std::os::fd::RawFd;
use std::time::Duration;

/// A worker's upstream state: its idle connections and per-service balancing.
pub struct Client {
    pub pool: pool::Pool,
    pub balance: balance::Balance,
}

impl Client {
    pub fn new(seed: usize) -> Self {
        Client { pool: pool::Pool::default(), balance: balance::Balance::new(seed) }
    }
}

/// What one step of head parsing found.
pub enum Step<T> {
    Partial,
    /// An interim (1xx) answer of this many bytes: skip it.
    Interim(usize),
    Done(T),
}

/// Why no response head was read.
#[derive(Debug)]
pub enum HeadError {
    /// Closed before a single byte: a stale pooled connection, or a service
    /// that dropped the request. May be retried only under the replay rule.
    Stale,
    /// Anything else; never retried.
    Fatal(ProxyError),
}

/// Reads from `up` until `parse` finds a final head, with `timeout` of
/// silence allowed between reads (the socket is cut by the worker's
/// deadline sweeper when it passes).
pub async fn read_head<S: AsyncReadRent, T>(
    up: &mut BufStream<S>,
    fd: RawFd,
    watch: &Watch<'_>,
    timeout: Duration,
    mut parse: impl FnMut(&[u8]) -> Result<Step<T>, ProxyError>,
) -> Result<T, HeadError> {
    let mut got_any = false;
    loop {
        if !up.data().is_empty() {
            got_any = true;
            match parse(up.data()).map_err(HeadError::Fatal)? {
                Step::Done(t) => return Ok(t),
                Step::Interim(n) => {
                    up.consume(n);
                    continue;
                }
                Step::Partial => {}
            }
        }
        match watch.run(fd, Phase::UpstreamHead, timeout, up.fill()).await {
            Ok(n) if n > 0 => {}
            _ if watch.fired().is_some() => return Err(HeadError::Fatal(timed_out(Phase::UpstreamHead))),
            _ if !got_any => return Err(HeadError::Stale),
            _ => return Err(HeadError::Fatal(ProxyError::bad_gateway("the service closed the connection mid-answer"))),
        }
    }
}

/// Reads more of an answer's body under the body deadline. `until_close`:
/// the end of the stream is the end of the body (`Ok(false)`), not an error.
pub async fn fill_body<S: AsyncReadRent>(
    up: &mut BufStream<S>,
    fd: RawFd,
    watch: &Watch<'_>,
    timeout: Duration,
    until_close: bool,
) -> Result<bool, ProxyError> {
    match watch.run(fd, Phase::UpstreamBody, timeout, up.fill()).await {
        Ok(n) if n > 0 => Ok(true),
        _ if watch.fired().is_some() => Err(timed_out(Phase::UpstreamBody)),
        _ if until_close => Ok(false),
        _ => Err(ProxyError::bad_gateway("the service closed the connection mid-body")),
    }
}

/// The error a fired deadline stands for.
pub fn timed_out(phase: Phase) -> ProxyError {
    match phase {
        Phase::UpstreamHead => ProxyError::new(ErrorKind::UpstreamTimeout, "the service did not answer in time"),
        Phase::UpstreamBody => ProxyError::new(ErrorKind::UpstreamTimeout, "the service stalled mid-body"),
        Phase::UpstreamWrite => ProxyError::new(ErrorKind::UpstreamTimeout, "the service stopped reading the request"),
        Phase::ClientBody => ProxyError::new(ErrorKind::HeaderTimeout, "request body not received in time"),
        Phase::ClientWrite | Phase::TunnelWrite => {
            ProxyError::new(ErrorKind::ClientGone, "the client stopped reading the answer")
        }
    }
}
