//! A whole exchange with a buffered request and a buffered answer: what a
//! WebSocket integration (and later a health check) needs.

use super::{connect, fill_body, read_head, timed_out, Client, HeadError, Step, Target};
use crate::deadline::{Deadlines, Phase};
use crate::error::ProxyError;
use crate::io::{write_all_with, BufStream};
use crate::metrics::WorkerStats;
use crate::proto::http1::chunked::ChunkedDecoder;
use crate::proto::http1::response_head::{self as head, Asked, HeadLimits, Parsed, ResponseBody};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub struct CallRequest<'a> {
    pub addr: SocketAddr,
    /// The whole request, head and body.
    pub bytes: Vec<u8>,
    /// Answer headers the caller wants back (lower case).
    pub keep_headers: &'a [&'static str],
    pub max_answer: usize,
    pub limits: HeadLimits,
    pub connect_timeout: Duration,
    /// Each write must make progress within this.
    pub write_timeout: Duration,
    /// Silence allowed between reads of the answer.
    pub read_timeout: Duration,
    pub pool_idle: Duration,
    pub pool_cap: usize,
    /// `limits.backend_connections` (see [`Target::max_conns`]).
    pub max_conns: usize,
}

pub struct Answer {
    pub status: u16,
    /// The `keep_headers` the service sent, in order.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Sends the request once and reads the whole answer.
///
/// Never sent twice: the request is only written on a new connection or on
/// a pooled one just checked to be open (see [`super::connect()`]); a
/// service that closes without answering gets the caller a `502`.
pub async fn call(c: &Client, d: &Deadlines, stats: &WorkerStats, req: CallRequest<'_>) -> Result<Answer, ProxyError> {
    let target = Target {
        instances: std::slice::from_ref(&req.addr),
        balance: None,
        pick: super::Pick::RoundRobin,
        failover: true,
        health: None,
        outlier: None,
        connect_timeout: req.connect_timeout,
        pool_idle: req.pool_idle,
        max_conns: req.max_conns,
    };
    let conn = connect(c, stats, &target, false, None).await?;
    // Held until this exchange ends, however it ends.
    let _lease = conn.lease;
    let fd = conn.stream.as_raw_fd();
    let watch = d.watch();
    let mut up = BufStream::new(conn.stream, Vec::with_capacity(4096));
    let progress: &dyn Fn() = &|| watch.touch();
    let (sent, _) = watch
        .run(fd, Phase::UpstreamWrite, req.write_timeout, write_all_with(&mut up.stream, req.bytes, progress))
        .await;
    if sent.is_err() {
        return Err(match watch.fired() {
            Some(p) => timed_out(p),
            None => ProxyError::bad_gateway("could not send the request to the service"),
        });
    }
    let limits = req.limits;
    let (status, framing, reusable, headers) = read_head(&mut up, fd, &watch, req.read_timeout, |buf| {
        let mut st = head::storage();
        match head::parse(buf, &mut st, limits, Asked::default()).map_err(ProxyError::bad_gateway)? {
            Parsed::Partial => Ok(Step::Partial),
            Parsed::Interim(n) => Ok(Step::Interim(n)),
            Parsed::Final(h) => {
                let kept = req
                    .keep_headers
                    .iter()
                    .filter_map(|name| h.header(name).map(|v| (*name, String::from_utf8_lossy(v).into_owned())))
                    .collect::<Vec<_>>();
                Ok(Step::Done((h.status, h.body, h.reusable(), (h.head_len, kept))))
            }
        }
    })
    .await
    .map_err(|e| match e {
        HeadError::Stale => ProxyError::bad_gateway("the service closed the connection without answering"),
        HeadError::Fatal(e) => e,
    })?;
    let (head_len, headers) = headers;
    up.consume(head_len);

    let too_large = || ProxyError::bad_gateway("the service's answer is too large");
    let mut body = Vec::new();
    match framing {
        ResponseBody::None => {}
        ResponseBody::Length(n) => {
            let n = usize::try_from(n).ok().filter(|n| *n <= req.max_answer).ok_or_else(too_large)?;
            while up.data().len() < n {
                fill_body(&mut up, fd, &watch, req.read_timeout, false).await?;
            }
            body.extend_from_slice(&up.data()[..n]);
            up.consume(n);
        }
        ResponseBody::Chunked => {
            let mut dec = ChunkedDecoder::new(req.max_answer as u64);
            loop {
                let used = dec.decode(up.data(), &mut body, false).map_err(|e| ProxyError::bad_gateway(e.message()))?;
                up.consume(used);
                if dec.is_done() {
                    break;
                }
                fill_body(&mut up, fd, &watch, req.read_timeout, false).await?;
            }
        }
        ResponseBody::UntilClose => loop {
            let k = up.data().len();
            if body.len() + k > req.max_answer {
                return Err(too_large());
            }
            body.extend_from_slice(up.data());
            up.consume(k);
            if !fill_body(&mut up, fd, &watch, req.read_timeout, true).await? {
                break;
            }
        },
    }
    drop(watch);
    if reusable && up.data().is_empty() {
        let (s, _) = up.into_parts();
        c.pool.put(req.addr, s, req.pool_cap, Instant::now());
    }
    Ok(Answer { status, headers, body })
}
