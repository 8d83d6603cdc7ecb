//! The bus strategy: an HTTP request carried to a Kafka-based service as a
//! message, its answer carried back as a message on a reply topic (wire
//! format: `crate::kafka::bus`).
//!
//! The request is the one HTTP dispatch would send (after filters, with
//! protected and hop-by-hop headers gone): its head is read back from the
//! upstream head the pipeline wrote, its body is read whole, at most
//! `kafka.max_message_bytes` (`413` above). With a `reply_topic` the worker
//! waits for the reply (`504` after `timeout`); without one the client gets
//! `202 {"request_id": ...}` once the brokers confirmed. The reply goes
//! through the same response path as a service's HTTP answer: response
//! filters, protected and `X-Wasp-*` names removed, framing by the gateway.
//!
//! A request is produced once: a message that was not confirmed is not
//! produced again (`502 delivery_failed`; it may still land).

use super::kafka_route::delivery_error;
use super::{Dispatch, Exchange, Failed, Outcome};
use crate::deadline::Phase;
use crate::error::{ErrorKind, ProxyError};
use crate::io::flush_with;
use crate::kafka::bus::{self as wire, Reply};
use crate::kafka::SendError;
use crate::proto::http1::{itoa, RequestBody};
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

pub struct BusDispatch;

/// The requests of one worker waiting for their replies. The reply
/// consumer (control thread) finds the worker from the correlation id and
/// hands the reply over through the worker's inbox: this table is the
/// worker's own, never locked.
pub struct Waits {
    node: u8,
    worker: u16,
    next: Cell<u64>,
    waiting: RefCell<ahash::AHashMap<u64, oneshot::Sender<Reply>>>,
}

impl Waits {
    pub fn new(node: u8, worker: usize, seed: u64) -> Self {
        // A random start: a restarted worker's ids do not meet the replies
        // of its predecessor's requests.
        Waits { node, worker: worker as u16, next: Cell::new(seed << 24), waiting: Default::default() }
    }

    /// Hands a reply to the request waiting for it; `false` when none does.
    pub fn complete(&self, n: u64, reply: Reply) -> bool {
        match self.waiting.borrow_mut().remove(&n) {
            Some(tx) => tx.send(reply).is_ok(),
            None => false,
        }
    }

    fn register(&self) -> (String, Waiting<'_>) {
        let n = self.next.get().wrapping_add(1);
        self.next.set(n);
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().insert(n, tx);
        (wire::correlation_id(self.node, self.worker, n), Waiting { waits: self, n, rx })
    }

    /// Requests waiting now (metrics, tests).
    pub fn len(&self) -> usize {
        self.waiting.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One request's place in [`Waits`], taken out however the request ends.
struct Waiting<'a> {
    waits: &'a Waits,
    n: u64,
    rx: oneshot::Receiver<Reply>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.waits.waiting.borrow_mut().remove(&self.n);
    }
}

/// The request as HTTP dispatch would send it, read back from the head.
struct Head {
    /// Bytes after the head already in `out`: a body the pipeline read
    /// whole and transformed (the request then has no body left to read).
    len: usize,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
}

fn read_head(out: &[u8]) -> Result<Head, ProxyError> {
    let mut storage = [httparse::EMPTY_HEADER; crate::proto::http1::MAX_HEADERS_CEILING + 8];
    let mut req = httparse::Request::new(&mut storage);
    // The pipeline wrote this head itself: a failure here is our bug.
    let bad = || ProxyError::new(ErrorKind::BadGateway, "the request could not be put on the bus");
    let len = match req.parse(out) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err(bad()),
    };
    let target = req.path.ok_or_else(bad)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = req
        .headers
        .iter()
        .filter(|h| !h.name.is_empty())
        .filter(|h| !["content-length", "transfer-encoding", "expect"].iter().any(|n| h.name.eq_ignore_ascii_case(n)))
        .map(|h| (format!("{}{}", wire::HTTP_PREFIX, h.name.to_ascii_lowercase()), h.value.to_vec()))
        .collect();
    Ok(Head {
        len,
        method: req.method.ok_or_else(bad)?.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
    })
}

impl Dispatch for BusDispatch {
    async fn dispatch(&self, x: &mut Exchange<'_>) -> Result<Outcome, Failed> {
        let env = x.env;
        let stats = &env.kafka.stats;
        let Some(bus) = x.service.bus.as_ref() else {
            return Err(Failed::before(ProxyError::new(ErrorKind::BadGateway, "the service has no bus settings")));
        };
        let head = read_head(x.out).map_err(Failed::before)?;
        let max = env.kafka.config().max_message_bytes as u64;
        if let RequestBody::Length(n) = x.req.body {
            if n > max {
                stats.bus_too_large.fetch_add(1, Relaxed);
                return Err(Failed::before(ProxyError::new(
                    ErrorKind::BodyTooLarge,
                    "the request body is larger than kafka.max_message_bytes",
                )));
            }
        }
        if x.req.expect_continue && x.req.body != RequestBody::None {
            x.out.clear();
            x.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            write_client(x).await?;
        }
        let body = if x.req.body == RequestBody::None {
            // A transformed body is already here, after the head.
            x.out[head.len..].to_vec()
        } else {
            super::whole_body::read_whole(env, x.gateway, x.client, x.req.body, max).await.map_err(|e| {
                if e.kind == ErrorKind::BodyTooLarge {
                    stats.bus_too_large.fetch_add(1, Relaxed);
                }
                Failed::before(e)
            })?
        };
        if body.len() as u64 > max {
            stats.bus_too_large.fetch_add(1, Relaxed);
            return Err(Failed::before(ProxyError::new(
                ErrorKind::BodyTooLarge,
                "the request body is larger than kafka.max_message_bytes",
            )));
        }
        let started = Instant::now();
        if let Some(topic) = &bus.reply_topic {
            // A reply topic the consumer does not read yet (just added by an
            // apply, or its broker unreachable): producing now could lose
            // the reply. Wait, within the request's time.
            while !env.kafka.replies_ready(topic) {
                if started.elapsed() >= bus.timeout {
                    stats.bus_timeout.fetch_add(1, Relaxed);
                    return Err(Failed::before(ProxyError::new(
                        ErrorKind::UpstreamTimeout,
                        "the reply topic is not being read yet; the request was not sent",
                    )));
                }
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        if !env.kafka.has_producer() {
            super::kafka_route::producer_ready(env, bus.timeout.min(std::time::Duration::from_secs(2))).await;
        }
        let (correlation, waiting) = env.bus.register();
        let reply_to = bus.reply_topic.as_deref().map(|t| wire::reply_to(t, env.kafka.node()));
        let mut headers: Vec<(&str, &[u8])> = vec![
            (wire::CORRELATION_ID, correlation.as_bytes()),
            (wire::METHOD, head.method.as_bytes()),
            (wire::PATH, head.path.as_bytes()),
            (wire::QUERY, head.query.as_bytes()),
            (wire::REQUEST_ID, x.req.request_id.as_str().as_bytes()),
        ];
        if let Some(r) = &reply_to {
            headers.insert(1, (wire::REPLY_TO, r.as_bytes()));
        }
        headers.extend(head.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        let delivery = match env.kafka.send(&bus.topic, None, &body, &headers) {
            Ok(d) => d,
            Err(e) => {
                let err = match e {
                    SendError::TooLarge => {
                        stats.bus_too_large.fetch_add(1, Relaxed);
                        ProxyError::new(
                            ErrorKind::BodyTooLarge,
                            "the request body is larger than kafka.max_message_bytes",
                        )
                    }
                    SendError::QueueFull => {
                        stats.bus_failed.fetch_add(1, Relaxed);
                        ProxyError::new(ErrorKind::Overloaded, "the Kafka producer's queue is full; try again later")
                    }
                    SendError::Unavailable(m) => {
                        stats.bus_failed.fetch_add(1, Relaxed);
                        tracing::debug!(error = %m, "bus: request not taken");
                        delivery_error("Kafka is unavailable (no producer yet, or it refused the message)")
                    }
                };
                return Err(Failed::before(err));
            }
        };
        // The broker's confirmation first: a message that never landed gets
        // its answer now, not after the reply timeout.
        match monoio::time::timeout(bus.timeout, delivery).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                stats.bus_failed.fetch_add(1, Relaxed);
                tracing::debug!(error = %e, "bus: request not delivered");
                return Err(Failed::before(delivery_error("the brokers did not take the request")));
            }
            Err(_) => {
                stats.bus_timeout.fetch_add(1, Relaxed);
                return Err(Failed::before(ProxyError::new(
                    ErrorKind::UpstreamTimeout,
                    "the brokers did not confirm the request in time (it may still land)",
                )));
            }
        }
        let reply = if reply_to.is_none() {
            drop(waiting);
            stats.bus_accepted.fetch_add(1, Relaxed);
            let mut b = b"{\"request_id\":\"".to_vec();
            crate::error::json_escape_into(&mut b, x.req.request_id.as_str());
            b.extend_from_slice(b"\"}");
            Reply { status: 202, headers: vec![("content-type".into(), b"application/json".to_vec())], body: b }
        } else {
            let left = bus.timeout.saturating_sub(started.elapsed());
            match monoio::time::timeout(left, &mut { waiting }.rx).await {
                Ok(Ok(r)) => {
                    stats.bus_replied.fetch_add(1, Relaxed);
                    r
                }
                Ok(Err(_)) | Err(_) => {
                    stats.bus_timeout.fetch_add(1, Relaxed);
                    return Err(Failed::before(ProxyError::new(
                        ErrorKind::UpstreamTimeout,
                        "the service did not reply in time",
                    )));
                }
            }
        };
        answer(x, &reply).await
    }
}

/// Writes `x.out` to the client within `timeouts.write`.
async fn write_client(x: &mut Exchange<'_>) -> Result<(), Failed> {
    let cw = x.env.deadlines.watch();
    let fd = x.client.stream.as_raw_fd();
    cw.run(fd, Phase::ClientWrite, x.gateway.timeouts.write, flush_with(&mut x.client.stream, x.out, &|| cw.touch()))
        .await
        .map_err(|_| Failed {
            error: match cw.fired() {
                Some(p) => crate::upstream::timed_out(p),
                None => ProxyError::new(ErrorKind::ClientGone, "client closed the connection"),
            },
            answered: true,
            status: 0,
        })
}

/// The reply, as an answer of the service: through `parse_response` (the
/// response filters and header rules of HTTP dispatch), then its body.
async fn answer(x: &mut Exchange<'_>, reply: &Reply) -> Result<Outcome, Failed> {
    use super::http::response::{parse_response, Parsed};
    let mut raw = Vec::with_capacity(128 + reply.body.len());
    raw.extend_from_slice(b"HTTP/1.1 ");
    raw.extend_from_slice(itoa(u64::from(reply.status), &mut [0u8; 20]));
    raw.extend_from_slice(b" ");
    raw.extend_from_slice(crate::error::reason(reply.status).as_bytes());
    raw.extend_from_slice(b"\r\n");
    // Within the limits the response parser holds any answer to, with room
    // for what the gateway adds: a service's extra headers are dropped, its
    // answer still goes through.
    let limits = &x.gateway.limits;
    let mut room = limits.max_header_bytes.saturating_sub(1024);
    for (n, v) in reply.headers.iter().take(limits.max_headers.saturating_sub(8)) {
        let size = n.len() + v.len() + 4;
        if size > room {
            break;
        }
        room -= size;
        raw.extend_from_slice(n.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(v);
        raw.extend_from_slice(b"\r\n");
    }
    // 204 and 304 have no body (RFC 9110 §6.4.1): a reply's bytes there
    // would reach the client as the start of another response.
    let no_body = matches!(reply.status, 204 | 304);
    if !no_body {
        raw.extend_from_slice(b"content-length: ");
        raw.extend_from_slice(itoa(reply.body.len() as u64, &mut [0u8; 20]));
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    let keep = x.keep_client && !x.env.shutdown.is_triggered();
    let resp = match parse_response(&raw, &x.req, x.gateway, x.response_hook, keep, x.out) {
        Ok(Parsed::Final(r)) => r,
        Ok(_) => return Err(Failed::before(ProxyError::bad_gateway("the service's reply could not be framed"))),
        Err(e) => return Err(Failed::before(e)),
    };
    let mut bytes = if no_body { 0 } else { reply.body.len() as u64 };
    if resp.transform {
        // The response program runs on the whole body: the head is finished here.
        let program = x.response_hook.and_then(|h| h.body_program());
        let body = match program.map(|p| p.run(&reply.body, x.gateway.limits.max_body_bytes as usize)) {
            Some(Ok(b)) => {
                x.response_hook.inspect(|h| h.body_outcome("applied"));
                b
            }
            _ => {
                x.response_hook.inspect(|h| h.body_outcome("failed"));
                return Err(Failed::before(ProxyError::bad_gateway("the response transformation failed")));
            }
        };
        bytes = body.len() as u64;
        x.out.extend_from_slice(b"content-length: ");
        x.out.extend_from_slice(itoa(bytes, &mut [0u8; 20]));
        x.out.extend_from_slice(b"\r\n\r\n");
        x.out.extend_from_slice(&body);
    } else if !x.req.is_head && !no_body {
        x.out.extend_from_slice(&reply.body);
    }
    let status = resp.status;
    write_client(x).await.map_err(|f| Failed { status, ..f })?;
    Ok(Outcome { status, bytes, keep_alive: resp.client_keep_alive, upgraded: None, linger: false })
}
