//! The HTTP strategy: pick an instance, send the request over a pooled
//! keep-alive connection, stream the answer back.
//!
//! Retry rule: a request is sent again only when it went out whole in one
//! write on a *reused* connection and the service closed that connection
//! before answering a single byte (it was stale in the pool). Nothing else is
//! retried, so a request is never run twice by a service that saw it.

use super::{Dispatch, Exchange, Failed, Outcome};
use crate::http::chunked::{encode_chunk, ChunkedDecoder};
use crate::http::error::{ErrorKind, ProxyError};
use crate::http::io::{flush, BufStream};
use crate::http::request::RequestBody;
use crate::http::response::{parse_response, ClientFraming, Parsed, Response, ResponseBody};
use crate::worker::Worker;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

pub struct HttpDispatch;

/// A body above this is written straight from the read buffer, not copied.
const COPY_LIMIT: usize = 16 * 1024;

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

    /// Moves body bytes already read from the client into `out`.
    fn take_buffered(&mut self, client: &mut BufStream, out: &mut Vec<u8>) -> Result<(), ProxyError> {
        match self {
            BodyLeft::Done => {}
            BodyLeft::Length(left) => {
                let n = (*left).min(client.data().len() as u64) as usize;
                out.extend_from_slice(&client.data()[..n]);
                client.consume(n);
                *left -= n as u64;
                if *left == 0 {
                    *self = BodyLeft::Done;
                }
            }
            BodyLeft::Chunked(dec) => {
                let used = dec.decode(client.data(), out, true).map_err(|e| match e {
                    crate::http::chunked::ChunkError::TooLarge => ProxyError::new(ErrorKind::BodyTooLarge, e.message()),
                    _ => ProxyError::bad_request(e.message()),
                })?;
                client.consume(used);
                if dec.is_done() {
                    *self = BodyLeft::Done;
                }
            }
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        matches!(self, BodyLeft::Done)
    }
}

fn gone() -> ProxyError {
    ProxyError::new(ErrorKind::ClientGone, "client closed the connection")
}

/// Why reading the response head failed; `Stale` may be retried.
enum HeadError {
    Stale,
    Fatal(ProxyError),
}

impl Dispatch for HttpDispatch {
    async fn dispatch(&self, x: &mut Exchange<'_>) -> Result<Outcome, Failed> {
        let svc = &x.req.service.config;
        let timeouts = &x.snap.gateway.timeouts;
        let mut body = BodyLeft::new(x.req.body, x.snap.gateway.limits.max_body_bytes);
        body.take_buffered(x.client, x.out).map_err(Failed::before)?;
        // Only a request that fits in the first write can be sent again.
        let replayable = body.is_done();
        let mut sent_continue = false;
        let mut force_fresh = false;
        let mut attempts = 0;
        let (mut up, addr, resp) = loop {
            attempts += 1;
            let (addr, stream, reused) = connect(x.worker, svc, x.snap, force_fresh).await.map_err(Failed::before)?;
            if x.req.expect_continue && !body.is_done() && !sent_continue {
                // The service is reachable: now let the client send its body.
                let mut cont = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
                flush(&mut x.client.stream, &mut cont).await.map_err(|_| Failed::before(gone()))?;
                sent_continue = true;
            }
            let mut up = BufStream::new(stream, std::mem::take(x.upstream_buf));
            let buf = std::mem::take(x.out);
            let (res, buf) = up.stream.write_all(buf).await;
            *x.out = buf;
            if res.is_err() {
                let (_, b) = up.into_parts();
                *x.upstream_buf = b;
                if reused && replayable && attempts < 4 {
                    force_fresh = true;
                    continue;
                }
                x.worker.stats.upstream_errors.fetch_add(1, Relaxed);
                return Err(Failed::before(ProxyError::bad_gateway("could not send the request to the service")));
            }
            if !body.is_done() {
                x.out.clear();
                stream_request_body(x, &mut up.stream, &mut body, timeouts.header_read).await?;
            }
            match read_response_head(x, &mut up, svc.timeout).await {
                Ok(resp) => break (up, addr, resp),
                Err(HeadError::Stale) if reused && replayable && attempts < 4 => {
                    let (_, b) = up.into_parts();
                    *x.upstream_buf = b;
                    force_fresh = true;
                }
                Err(HeadError::Stale) => {
                    x.worker.stats.upstream_errors.fetch_add(1, Relaxed);
                    return Err(Failed::before(ProxyError::bad_gateway(
                        "the service closed the connection without answering",
                    )));
                }
                Err(HeadError::Fatal(e)) => {
                    x.worker.stats.upstream_errors.fetch_add(1, Relaxed);
                    return Err(Failed::before(e));
                }
            }
        };
        up.consume(resp.head_len);

        if resp.switching {
            flush(&mut x.client.stream, x.out).await.map_err(|_| Failed::before(gone()))?;
            return Ok(Outcome { status: 101, bytes: 0, keep_alive: false, upgraded: Some(up) });
        }
        let relayed = relay_response(x, &mut up, &resp, svc.timeout).await;
        let bytes = match relayed {
            Ok(b) => b,
            Err(e) => {
                if e.side == crate::http::error::Side::Upstream {
                    x.worker.stats.upstream_errors.fetch_add(1, Relaxed);
                }
                return Err(Failed { error: e, answered: true, status: resp.status });
            }
        };
        let reusable = resp.upstream_reusable && up.data().is_empty() && !x.worker.shutdown.is_triggered();
        let (stream, buf) = up.into_parts();
        *x.upstream_buf = buf;
        if reusable {
            x.worker.pool.put(addr, stream, x.snap.gateway.limits.pool_idle_per_instance, Instant::now());
        }
        Ok(Outcome { status: resp.status, bytes, keep_alive: resp.client_keep_alive, upgraded: None })
    }
}

/// Picks an instance round-robin and returns a pooled or new connection.
/// Instances that refused recently are tried last; each is tried once.
async fn connect(
    w: &Worker,
    svc: &crate::config::ServiceConfig,
    snap: &crate::snapshot::Snapshot,
    fresh: bool,
) -> Result<(SocketAddr, TcpStream, bool), ProxyError> {
    let n = svc.instances.len();
    if n == 0 {
        return Err(ProxyError::new(ErrorKind::NoInstance, "the service has no instances"));
    }
    let now = Instant::now();
    let start = w.next_rr();
    // Two passes in round-robin order, no allocation: instances not marked
    // down first, then the ones that are (a recovered one is found at once).
    let candidates = (0..2 * n).filter_map(|k| {
        let addr = svc.instances[(start + k) % n];
        (w.pool.is_down(addr, now) == (k >= n)).then_some(addr)
    });
    for addr in candidates {
        if !fresh {
            if let Some(s) = w.pool.take(addr, snap.gateway.timeouts.pool_idle, now) {
                return Ok((addr, s, true));
            }
        }
        match monoio::time::timeout(svc.connect_timeout, TcpStream::connect_addr(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                w.stats.upstream_connects.fetch_add(1, Relaxed);
                w.pool.mark_up(addr);
                return Ok((addr, s, false));
            }
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "connect failed");
                w.stats.upstream_errors.fetch_add(1, Relaxed);
                w.pool.mark_down(addr, now);
            }
            Err(_) => {
                tracing::debug!(%addr, "connect timed out");
                w.stats.upstream_errors.fetch_add(1, Relaxed);
                w.pool.mark_down(addr, now);
            }
        }
    }
    Err(ProxyError::new(ErrorKind::NoInstance, "no reachable instance of the service"))
}

/// Streams the rest of the request body from the client to the service.
async fn stream_request_body(
    x: &mut Exchange<'_>,
    upstream: &mut TcpStream,
    body: &mut BodyLeft,
    read_timeout: Duration,
) -> Result<(), Failed> {
    let up_err = |_| Failed::before(ProxyError::bad_gateway("the service stopped reading the request body"));
    while !body.is_done() {
        if x.client.data().is_empty() {
            match monoio::time::timeout(read_timeout, x.client.fill()).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(Failed::before(gone())),
                Ok(Ok(_)) => {}
                Err(_) => {
                    return Err(Failed::before(ProxyError::new(
                        ErrorKind::HeaderTimeout,
                        "request body not received in time",
                    )))
                }
            }
        }
        match body {
            BodyLeft::Length(left) => {
                let n = (*left).min(x.client.data().len() as u64) as usize;
                x.client.forward_to(upstream, n).await.map_err(up_err)?;
                *left -= n as u64;
                if *left == 0 {
                    *body = BodyLeft::Done;
                }
            }
            _ => {
                body.take_buffered(x.client, x.out).map_err(Failed::before)?;
                flush(upstream, x.out).await.map_err(up_err)?;
            }
        }
    }
    Ok(())
}

/// Reads until a final response head is parsed; its client head is left in `x.out`.
async fn read_response_head(
    x: &mut Exchange<'_>,
    up: &mut BufStream,
    timeout: Duration,
) -> Result<Response, HeadError> {
    let mut got_any = false;
    loop {
        if !up.data().is_empty() {
            // Decided now, not at the request's start: a drain that began
            // meanwhile closes this connection after the answer.
            let keep = x.keep_client && !x.worker.shutdown.is_triggered();
            match parse_response(up.data(), x.req, x.snap, keep, x.out) {
                Ok(Parsed::Final(r)) => return Ok(r),
                Ok(Parsed::Interim(n)) => {
                    up.consume(n);
                    continue;
                }
                Ok(Parsed::Partial) => {}
                Err(e) => return Err(HeadError::Fatal(e)),
            }
        }
        match monoio::time::timeout(timeout, up.fill()).await {
            Ok(Ok(0)) | Ok(Err(_)) if !got_any => return Err(HeadError::Stale),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(HeadError::Fatal(ProxyError::bad_gateway("the service closed the connection mid-answer")))
            }
            Ok(Ok(_)) => got_any = true,
            Err(_) => {
                return Err(HeadError::Fatal(ProxyError::new(
                    ErrorKind::UpstreamTimeout,
                    "the service did not answer in time",
                )))
            }
        }
    }
}

/// Sends the head in `x.out` and the body, framed for the client.
async fn relay_response(
    x: &mut Exchange<'_>,
    up: &mut BufStream,
    resp: &Response,
    timeout: Duration,
) -> Result<u64, ProxyError> {
    let client = &mut x.client.stream;
    let out = &mut *x.out;
    let mut sent: u64 = 0;
    match (resp.body, resp.client_framing) {
        (ResponseBody::None, _) => flush(client, out).await.map_err(|_| gone())?,
        (ResponseBody::Length(n), _) => {
            let avail = (n.min(up.data().len() as u64)) as usize;
            if avail <= COPY_LIMIT {
                // Head and body in one write: the common small response.
                out.extend_from_slice(&up.data()[..avail]);
                up.consume(avail);
                flush(client, out).await.map_err(|_| gone())?;
            } else {
                flush(client, out).await.map_err(|_| gone())?;
                up.forward_to(client, avail).await.map_err(|_| gone())?;
            }
            let mut left = n - avail as u64;
            sent += avail as u64;
            while left > 0 {
                fill_body(up, timeout).await?;
                let k = (left.min(up.data().len() as u64)) as usize;
                up.forward_to(client, k).await.map_err(|_| gone())?;
                left -= k as u64;
                sent += k as u64;
            }
        }
        (ResponseBody::Chunked, framing) => {
            let mut dec = ChunkedDecoder::new(u64::MAX);
            let encode = framing == ClientFraming::Chunked;
            loop {
                let used = dec.decode(up.data(), out, encode).map_err(|e| ProxyError::bad_gateway(e.message()))?;
                up.consume(used);
                sent = dec.total();
                flush(client, out).await.map_err(|_| gone())?;
                if dec.is_done() {
                    break;
                }
                fill_body(up, timeout).await?;
            }
        }
        (ResponseBody::UntilClose, framing) => loop {
            let data = up.data();
            sent += data.len() as u64;
            if framing == ClientFraming::Chunked {
                encode_chunk(data, out);
            } else {
                out.extend_from_slice(data);
            }
            let n = data.len();
            up.consume(n);
            flush(client, out).await.map_err(|_| gone())?;
            match monoio::time::timeout(timeout, up.fill()).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    if framing == ClientFraming::Chunked {
                        out.extend_from_slice(b"0\r\n\r\n");
                        flush(client, out).await.map_err(|_| gone())?;
                    }
                    break;
                }
                Ok(Ok(_)) => {}
                Err(_) => return Err(ProxyError::new(ErrorKind::UpstreamTimeout, "the service stalled mid-body")),
            }
        },
    }
    Ok(sent)
}

/// Reads more of a response body; the body is not over, so EOF is an error.
async fn fill_body(up: &mut BufStream, timeout: Duration) -> Result<usize, ProxyError> {
    match monoio::time::timeout(timeout, up.fill()).await {
        Ok(Ok(0)) | Ok(Err(_)) => Err(ProxyError::bad_gateway("the service closed the connection mid-body")),
        Ok(Ok(n)) => Ok(n),
        Err(_) => Err(ProxyError::new(ErrorKind::UpstreamTimeout, "the service stalled mid-body")),
    }
}
