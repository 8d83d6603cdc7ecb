//! The HTTP strategy: pick an instance, send the request over a pooled
//! keep-alive connection, stream the answer back — all through the one
//! upstream client (`crate::upstream`).
//!
//! Replay rule: a request is sent again only when its bytes provably never
//! reached the service (the connect failed, or a pooled connection was found
//! closed before the write), or when it is idempotent (`GET`, `HEAD`,
//! `OPTIONS`, `PUT`, `DELETE`, `TRACE`) with no body or a body that arrived
//! whole with its head and is at most `limits.retry_body_bytes`. Such a retry
//! follows a failed write or a connection closed before any answer byte,
//! and is capped by `[services.X.retry]` (attempts, budget). Anything else
//! that fails gets `502`: a `POST` is never sent twice.
//!
//! A request body that did not arrive with the head is streamed to the
//! service *while* its answer is read: a service that answers early (`413`,
//! `401`) without reading the body has that answer relayed, the rest of the
//! client's body is discarded (bounded, by the lingering close) and neither
//! connection is reused.

mod relay;
pub mod response;

use super::body_rate::{read_more, BodyRate, BUFFER_FIRST};
use super::{Dispatch, Exchange, Failed, Outcome};
use crate::deadline::{Phase, Watch};
use crate::error::{ErrorKind, ProxyError};
use crate::io::{flush, flush_with, write_all_with, BufStream};
use crate::proto::http1::chunked::ChunkedDecoder;
use crate::proto::http1::RequestBody;
use crate::upstream::{self, read_head, timed_out, HeadError, Step, Target};
use futures_util::future::{select, Either};
use monoio::io::{OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use relay::relay;
use response::{parse_response, Parsed, Response};
use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

pub struct HttpDispatch;

/// A body above this is written straight from the read buffer, not copied.
const COPY_LIMIT: usize = 16 * 1024;

/// Read size for the rest of a large response body: 8 times fewer reads and
/// writes per megabyte than the default 8 KiB (a slow reader's kernel
/// buffers are filled at a fraction of the CPU). Held only while relaying.
const BIG_READS: usize = 64 * 1024;

/// How much of the request body is still to be sent upstream.
enum BodyLeft {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl BodyLeft {
    fn new(body: RequestBody, limit: u64) -> Self {
        match body {
            RequestBody::None => BodyLeft::Done,
            RequestBody::Length(n) => BodyLeft::Length(n),
            RequestBody::Chunked => BodyLeft::Chunked(ChunkedDecoder::new(limit)),
        }
    }

    /// Moves what is buffered of the body to `out`; the payload bytes moved
    /// (chunk framing not counted).
    fn take_buffered(&mut self, client: &mut BufStream, out: &mut Vec<u8>) -> Result<u64, ProxyError> {
        match self {
            BodyLeft::Done => Ok(0),
            BodyLeft::Length(left) => {
                let n = (*left).min(client.data().len() as u64) as usize;
                out.extend_from_slice(&client.data()[..n]);
                client.consume(n);
                *left -= n as u64;
                if *left == 0 {
                    *self = BodyLeft::Done;
                }
                Ok(n as u64)
            }
            BodyLeft::Chunked(dec) => {
                let before = dec.total();
                let used = dec.decode(client.data(), out, true).map_err(|e| match e {
                    crate::proto::http1::chunked::ChunkError::TooLarge => {
                        ProxyError::new(ErrorKind::BodyTooLarge, e.message())
                    }
                    _ => ProxyError::bad_request(e.message()),
                })?;
                client.consume(used);
                let payload = dec.total() - before;
                if dec.is_done() {
                    *self = BodyLeft::Done;
                }
                Ok(payload)
            }
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, BodyLeft::Done)
    }
}

fn gone() -> ProxyError {
    ProxyError::new(ErrorKind::ClientGone, "client closed the connection")
}

/// A failed client write: gone, or cut for not reading.
fn client_write_error(cw: &Watch<'_>) -> ProxyError {
    match cw.fired() {
        Some(p) => timed_out(p),
        None => gone(),
    }
}

/// The read buffer a kept-alive client connection holds between requests:
/// one grown for a large body is not kept.
fn keep_small(buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() > 2 * COPY_LIMIT {
        Vec::new()
    } else {
        buf
    }
}

/// Methods that may be sent twice (RFC 9110 §9.2.2).
fn idempotent(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE")
}

/// What the first phase of an exchange ended with.
enum Sent {
    /// The whole request went out; its answer's head is parsed.
    Whole(BufStream, Response),
    /// The head went out, the body is still to come from the client.
    Streaming(BufStream),
}

impl Dispatch for HttpDispatch {
    async fn dispatch(&self, x: &mut Exchange<'_>) -> Result<Outcome, Failed> {
        let w = x.env;
        let svc = x.service;
        let g = x.gateway;
        let head_bytes = x.out.len();
        let mut body = BodyLeft::new(x.req.body, g.limits.max_body_bytes);
        let mut rate = BodyRate::default();
        rate.credit(body.take_buffered(x.client, x.out).map_err(Failed::before)?);
        let client_fd = x.client.stream.as_raw_fd();
        let mut sent_continue = false;
        if let BodyLeft::Length(left) = body {
            if (x.out.len() - head_bytes) as u64 + left <= BUFFER_FIRST {
                // Small and sized: read whole before a connection to the
                // service is taken, so a trickle holds nothing upstream.
                let cw = w.deadlines.watch();
                if x.req.expect_continue {
                    let mut cont = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
                    cw.run(client_fd, Phase::ClientWrite, g.timeouts.write, flush(&mut x.client.stream, &mut cont))
                        .await
                        .map_err(|_| Failed::before(client_write_error(&cw)))?;
                    sent_continue = true;
                }
                while !body.is_done() {
                    let (waited, n) = read_more(&cw, x.client, g).await.map_err(Failed::before)?;
                    let payload = body.take_buffered(x.client, x.out).map_err(Failed::before)?;
                    rate.read(g, waited, n, payload).map_err(Failed::before)?;
                }
            }
        }
        let replayable = body.is_done()
            && x.out.len() - head_bytes <= g.limits.retry_body_bytes
            && idempotent(x.req.method.as_bytes());
        let key = x.balance;
        let target = Target {
            instances: x.instances,
            balance: Some(key),
            pick: x.pick,
            failover: svc.retry.on_connect_failure,
            health: Some(x.health),
            outlier: Some(&svc.outlier),
            connect_timeout: svc.connect_timeout,
            pool_idle: g.timeouts.pool_idle,
            max_conns: g.limits.backend_connections,
        };
        // The circuit: a place among the service's requests in flight on
        // this worker, or a short wait for one, or `503 overloaded` at once.
        let admitted =
            match w.upstream.balance.admit(key.0, key.1, x.service_name, svc.retry.budget_percent, &svc.circuit) {
                Ok(slot) => Some(slot),
                Err(Some(wait)) => wait.place(svc.connect_timeout).await,
                Err(None) => None,
            };
        let Some(_slot) = admitted else {
            x.health.circuit_refused.fetch_add(1, Relaxed);
            return Err(Failed::before(ProxyError::new(
                ErrorKind::Overloaded,
                "the service has as many requests in flight as its circuit allows (services.NAME.circuit)",
            )));
        };
        // One deadline slot serves the whole exchange while its reads and
        // writes follow one another (each `run` names its socket and
        // phase); the streaming path adds its own for concurrent ones.
        let uw = w.deadlines.watch();
        let mut retries = 0u32;
        let mut fresh = false;
        // The instance that just failed this request, for its retry.
        let mut avoid = None;
        // May a request that failed after its write go out again? A retry
        // after a *pooled* connection failed is the stale keep-alive case
        // (the service closed it while idle): it goes out on a new
        // connection and is not charged to the budget. Any other is.
        let may_retry = |retries: &mut u32, reused: bool| {
            if !replayable {
                return false;
            }
            if *retries < svc.retry.attempts && (reused || w.upstream.balance.spend(key.0, key.1)) {
                *retries += 1;
                w.stats.retries.fetch_add(1, Relaxed);
                true
            } else {
                w.stats.retries_refused.fetch_add(1, Relaxed);
                false
            }
        };
        // The lease counts the connection against `limits.backend_connections`
        // until this exchange ends (a tunnel after a 101 is not counted).
        let (sent, addr, _lease) = loop {
            // A pooled connection is looked at before use: one the service
            // closed or wrote to unasked (late bytes after a HEAD answer, an
            // idle-timeout 408) is never written on, so no request goes out
            // on a dead connection and no client reads another's bytes.
            let conn = upstream::connect(w.upstream, w.stats, &target, fresh, avoid).await.map_err(Failed::before)?;
            if x.req.expect_continue && !body.is_done() && !sent_continue {
                // The service is reachable: now let the client send its body.
                let mut cont = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
                uw.run(client_fd, Phase::ClientWrite, g.timeouts.write, flush(&mut x.client.stream, &mut cont))
                    .await
                    .map_err(|_| Failed::before(client_write_error(&uw)))?;
                sent_continue = true;
            }
            let (addr, reused) = (conn.addr, conn.reused);
            // Timed only for `p2c` (a clock read per request otherwise).
            let sent_at = (x.pick == upstream::Pick::P2c).then(Instant::now);
            let fd = conn.stream.as_raw_fd();
            let mut up = BufStream::new(conn.stream, std::mem::take(x.upstream_buf));
            let request = std::mem::take(x.out);
            // The request bytes come back from the write, kept for a retry.
            let (res, request) = uw
                .run(
                    fd,
                    Phase::UpstreamWrite,
                    g.timeouts.write,
                    write_all_with(&mut up.stream, request, &|| uw.touch()),
                )
                .await;
            *x.out = request;
            if res.is_err() {
                *x.upstream_buf = up.into_parts().1;
                if !reused {
                    upstream::connect::fail(w.upstream, &target, addr);
                    avoid = Some(addr);
                }
                if uw.fired().is_none() && may_retry(&mut retries, reused) {
                    fresh = true;
                    continue;
                }
                w.stats.upstream_errors.fetch_add(1, Relaxed);
                return Err(Failed::before(match uw.fired() {
                    Some(p) => timed_out(p),
                    None => ProxyError::bad_gateway("could not send the request to the service"),
                }));
            }
            if !body.is_done() {
                break (Sent::Streaming(up), addr, conn.lease);
            }
            let keep = x.keep_client;
            // `retry.on = ["503"]`: a 503 to a replayable request is seen
            // before its head is written for the client, so the request
            // (still in `x.out`) can go to another instance.
            let check_503 = Cell::new(svc.retry.on_503 && replayable);
            let mut parse = |buf: &[u8]| {
                if check_503.get() && is_503(buf) {
                    return Ok(Step::Done(None));
                }
                // Decided now, not at the request's start: a drain that began
                // meanwhile closes this connection after the answer.
                let keep = keep && !w.shutdown.is_triggered();
                Ok(match parse_response(buf, &x.req, x.gateway, x.response_hook, keep, x.out)? {
                    Parsed::Final(r) => Step::Done(Some(r)),
                    Parsed::Interim(n) => Step::Interim(n),
                    Parsed::Partial => Step::Partial,
                })
            };
            let mut head = read_head(&mut up, fd, &uw, svc.timeout, &mut parse).await;
            if let Ok(None) = head {
                if may_retry(&mut retries, false) {
                    observe(w, &target, addr, reused, sent_at, Ok(503));
                    // Its body unread: the connection goes, not to the pool;
                    // the retry goes to another instance.
                    *x.upstream_buf = up.into_parts().1;
                    fresh = true;
                    avoid = Some(addr);
                    continue;
                }
                // No retry left: the 503 is the answer.
                check_503.set(false);
                head = read_head(&mut up, fd, &uw, svc.timeout, &mut parse).await;
            }
            // No copy of the answer's head on the way: matched where it lies.
            observe(w, &target, addr, reused, sent_at, head.as_ref().map(|r| r.as_ref().map_or(503, |r| r.status)));
            match head {
                Ok(Some(resp)) => break (Sent::Whole(up, resp), addr, conn.lease),
                // Only with the 503 check on, which the second read turns off.
                Ok(None) => {
                    w.stats.upstream_errors.fetch_add(1, Relaxed);
                    return Err(Failed::before(ProxyError::bad_gateway("the service's answer could not be read")));
                }
                Err(HeadError::Stale) if may_retry(&mut retries, reused) => {
                    *x.upstream_buf = up.into_parts().1;
                    fresh = true;
                    // `x.out` was not touched by a parse that saw no byte.
                }
                Err(HeadError::Stale) => {
                    w.stats.upstream_errors.fetch_add(1, Relaxed);
                    return Err(Failed::before(ProxyError::bad_gateway(
                        "the service closed the connection without answering",
                    )));
                }
                Err(HeadError::Fatal(e)) => {
                    w.stats.upstream_errors.fetch_add(1, Relaxed);
                    return Err(Failed::before(e));
                }
            }
        };
        match sent {
            Sent::Whole(mut up, resp) => {
                up.consume(resp.head_len);
                if resp.switching {
                    uw.run(client_fd, Phase::ClientWrite, g.timeouts.write, flush(&mut x.client.stream, x.out))
                        .await
                        .map_err(|_| Failed::before(client_write_error(&uw)))?;
                    return Ok(Outcome { status: 101, bytes: 0, keep_alive: false, upgraded: Some(up), linger: false });
                }
                let up_fd = up.stream.as_raw_fd();
                let bytes = relay(x, &mut up, up_fd, &resp, &uw, &uw).await?;
                let reusable = resp.upstream_reusable && up.data().is_empty() && !w.shutdown.is_triggered();
                let (stream, buf) = up.into_parts();
                *x.upstream_buf = keep_small(buf);
                if reusable {
                    w.upstream.pool.put(addr, stream, g.limits.pool_idle_per_instance, Instant::now());
                }
                Ok(Outcome {
                    status: resp.status,
                    bytes,
                    keep_alive: resp.client_keep_alive,
                    upgraded: None,
                    linger: false,
                })
            }
            Sent::Streaming(up) => stream_body(x, up, addr, &target, &mut body, &mut rate, &uw).await,
        }
    }
}

/// Whether `buf` starts with a `503` status line.
fn is_503(buf: &[u8]) -> bool {
    buf.len() > 12
        && (buf.starts_with(b"HTTP/1.1 503") || buf.starts_with(b"HTTP/1.0 503"))
        && matches!(buf[12], b' ' | b'\r')
}

/// The latency a failed exchange counts as for `p2c`.
const FAILURE_COST: std::time::Duration = std::time::Duration::from_millis(250);

/// What the answer's head says of the instance, for `p2c` (time to the
/// head) and outlier detection (a `5xx`, a reset or a timeout is a
/// failure; a stale pooled connection says nothing of the instance).
fn observe(
    w: super::Env<'_>,
    target: &Target<'_>,
    addr: std::net::SocketAddr,
    reused: bool,
    sent_at: Option<Instant>,
    head: Result<u16, &HeadError>,
) {
    let ok = match head {
        Err(HeadError::Stale) if reused => return,
        Ok(status) => status < 500,
        Err(_) => false,
    };
    if ok {
        upstream::connect::succeed(w.upstream, target, addr);
    } else {
        upstream::connect::fail(w.upstream, target, addr);
    }
    if let Some(at) = sent_at {
        let now = Instant::now();
        // A failure costs `p2c` as a slow answer would: an instance that
        // fails fast must not win every comparison.
        let took = if ok { now - at } else { (now - at).max(FAILURE_COST) };
        w.upstream.balance.observe_latency(addr, took, now);
    }
}

/// Sends the rest of the request body while reading the answer; relays the
/// answer whichever comes first.
async fn stream_body(
    x: &mut Exchange<'_>,
    up: BufStream,
    addr: std::net::SocketAddr,
    target: &Target<'_>,
    body: &mut BodyLeft,
    rate: &mut BodyRate,
    uw: &Watch<'_>,
) -> Result<Outcome, Failed> {
    let w = x.env;
    let started = Instant::now();
    // Client reads and service writes (the pump) and the answer's reads run
    // at the same time: a slot each.
    let cw = &w.deadlines.watch();
    let g = x.gateway;
    let svc = x.service;
    let up_fd = up.stream.as_raw_fd();
    let (stream, buf, pos) = up.into_raw();
    let (rh, mut wh) = stream.into_split();
    let mut rd = BufStream::from_raw(rh, buf, pos);
    // The head reader's own deadline: the body pump restarts it on progress.
    let hw = w.deadlines.watch();
    let body_done = Cell::new(false);
    let mut scratch = Vec::new();
    let (head, early) = {
        let Exchange { client, out, req, gateway, response_hook, keep_client, .. } = x;
        let pump =
            std::pin::pin!(pump_body(client, &mut wh, up_fd, body, rate, &mut scratch, cw, uw, &hw, &body_done, g));
        let keep = *keep_client;
        let head = std::pin::pin!(read_head(&mut rd, up_fd, &hw, svc.timeout, |buf| {
            // An answer before the whole body went out closes the client
            // connection: the rest of its body is never read.
            let keep = keep && body_done.get() && !w.shutdown.is_triggered();
            Ok(match parse_response(buf, req, gateway, *response_hook, keep, out)? {
                Parsed::Final(r) => Step::Done(r),
                Parsed::Interim(n) => Step::Interim(n),
                Parsed::Partial => Step::Partial,
            })
        }));
        match select(pump, head).await {
            Either::Left((Ok(()), head)) => (head.await, false),
            Either::Left((Err(Pump::Client(e)), _)) => return Err(Failed::before(e)),
            Either::Left((Err(Pump::Upstream), _)) if uw.fired().is_some() => {
                w.stats.upstream_errors.fetch_add(1, Relaxed);
                return Err(Failed::before(timed_out(Phase::UpstreamWrite)));
            }
            // The service stopped taking the body: it may have answered.
            Either::Left((Err(Pump::Upstream), head)) => (head.await, true),
            // An early *success* that keeps the connection (a service that
            // streams its answer while it reads, or one that answers before
            // reading a small body): the body still goes out whole, then
            // the answer is relayed. A stall there still ends with the
            // answer, on closed connections.
            Either::Right((Ok(r), pump)) if r.status < 400 && r.upstream_reusable && !body_done.get() => {
                match pump.await {
                    Ok(()) => (Ok(r), false),
                    Err(Pump::Client(e)) => return Err(Failed::before(e)),
                    Err(Pump::Upstream) => (Ok(r), true),
                }
            }
            // An early refusal (413, 401, ...) or an answer that closes: the
            // rest of the body is not sent.
            Either::Right((head, _)) => (head, !body_done.get()),
        }
    };
    observe(
        w,
        target,
        addr,
        false,
        (target.pick == upstream::Pick::P2c).then_some(started),
        head.as_ref().map(|r| r.status),
    );
    let resp = match head {
        Ok(r) => r,
        Err(e) => {
            w.stats.upstream_errors.fetch_add(1, Relaxed);
            return Err(Failed::before(match e {
                HeadError::Stale if early => {
                    ProxyError::bad_gateway("the service closed the connection before taking the whole request")
                }
                HeadError::Stale => ProxyError::bad_gateway("the service closed the connection without answering"),
                HeadError::Fatal(e) => e,
            }));
        }
    };
    rd.consume(resp.head_len);
    if resp.switching {
        return Err(Failed::before(ProxyError::bad_gateway("the service switched protocols on a request with a body")));
    }
    let bytes = relay(x, &mut rd, up_fd, &resp, cw, &hw).await?;
    if early {
        // Neither connection is in sync: the client's body was not all read,
        // the service did not read all of it.
        return Ok(Outcome { status: resp.status, bytes, keep_alive: false, upgraded: None, linger: true });
    }
    let reusable = resp.upstream_reusable && rd.data().is_empty() && !w.shutdown.is_triggered();
    let (rh, buf) = rd.into_parts();
    *x.upstream_buf = keep_small(buf);
    if reusable {
        if let Ok(stream) = rh.reunite(wh) {
            w.upstream.pool.put(addr, stream, g.limits.pool_idle_per_instance, Instant::now());
        }
    }
    Ok(Outcome { status: resp.status, bytes, keep_alive: resp.client_keep_alive, upgraded: None, linger: false })
}

/// Why the body pump stopped.
enum Pump {
    /// The client went away, stalled or sent a bad body: nothing to relay.
    Client(ProxyError),
    /// A write to the service failed or was cut.
    Upstream,
}

/// Copies the rest of the request body from the client to the service.
#[allow(clippy::too_many_arguments)]
async fn pump_body(
    client: &mut BufStream,
    up: &mut OwnedWriteHalf<TcpStream>,
    up_fd: RawFd,
    body: &mut BodyLeft,
    rate: &mut BodyRate,
    scratch: &mut Vec<u8>,
    cw: &Watch<'_>,
    uw: &Watch<'_>,
    hw: &Watch<'_>,
    done: &Cell<bool>,
    g: &crate::config::GatewayConfig,
) -> Result<(), Pump> {
    // While the body flows, the service is not waited on for an answer: the
    // pump's own deadlines (client reads, service writes) bound this phase.
    let _paused = hw.pause();
    // A large body is read in big pieces: 8 times fewer reads and writes
    // per megabyte (the attack on a gateway's CPU is an upload, too). The
    // buffer goes back to its usual size when the exchange ends.
    if matches!(body, BodyLeft::Length(left) if *left > BIG_READS as u64) {
        client.reserve_reads(BIG_READS);
    }
    // A chunked body may leave a partial size line or CRLF in the buffer:
    // then more must be read, or this loop would spin without yielding.
    let mut need_more = false;
    while !body.is_done() {
        // The last read and how long it waited, judged once its payload is known.
        let mut read = None;
        if client.data().is_empty() || need_more {
            need_more = false;
            read = Some(read_more(cw, client, g).await.map_err(Pump::Client)?);
        }
        match body {
            BodyLeft::Length(left) => {
                let n = (*left).min(client.data().len() as u64) as usize;
                if let Some((waited, got)) = read {
                    rate.read(g, waited, got, n as u64).map_err(Pump::Client)?;
                }
                uw.run(up_fd, Phase::UpstreamWrite, g.timeouts.write, client.forward_to_with(up, n, &|| uw.touch()))
                    .await
                    .map_err(|_| Pump::Upstream)?;
                *left -= n as u64;
                if *left == 0 {
                    *body = BodyLeft::Done;
                }
            }
            _ => {
                let before = client.data().len();
                let payload = body.take_buffered(client, scratch).map_err(Pump::Client)?;
                if let Some((waited, got)) = read {
                    rate.read(g, waited, got, payload).map_err(Pump::Client)?;
                }
                need_more = client.data().len() == before && !body.is_done();
                uw.run(up_fd, Phase::UpstreamWrite, g.timeouts.write, flush_with(up, scratch, &|| uw.touch()))
                    .await
                    .map_err(|_| Pump::Upstream)?;
            }
        }
    }
    done.set(true);
    Ok(())
}
