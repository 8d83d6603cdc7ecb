//! HTTP integrations: an event is POSTed to each of a route's backends over
//! the worker's pooled keep-alive connections.

use crate::config::HttpTarget;
use crate::http::chunked::ChunkedDecoder;
use crate::http::error::{ErrorKind, ProxyError};
use crate::http::io::BufStream;
use crate::http::request::{itoa, parse_content_length};
use crate::worker::Worker;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::time::{Duration, Instant};

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
    match monoio::time::timeout(timeout, exchange(w, target, &mut req)).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::new(ErrorKind::UpstreamTimeout, "the integration did not answer in time")),
    }
}

async fn exchange(w: &Worker, target: &HttpTarget, req: &mut Vec<u8>) -> Result<Answer, ProxyError> {
    // A pooled connection may have been closed by the backend: one retry on a new one.
    for attempt in 0..2 {
        let pooled =
            if attempt == 0 { w.pool.take(target.addr, Duration::from_secs(30), Instant::now()) } else { None };
        let reused = pooled.is_some();
        let stream = match pooled {
            Some(s) => s,
            None => {
                let s = TcpStream::connect_addr(target.addr)
                    .await
                    .map_err(|_| ProxyError::new(ErrorKind::NoInstance, "the integration refused the connection"))?;
                let _ = s.set_nodelay(true);
                s
            }
        };
        let mut up = BufStream::new(stream, Vec::with_capacity(4096));
        // The request bytes come back from the write, kept for a retry.
        let (sent, back) = up.stream.write_all(std::mem::take(req)).await;
        *req = back;
        if sent.is_err() {
            if reused {
                continue;
            }
            return Err(ProxyError::bad_gateway("could not send the event to the integration"));
        }
        match read_answer(&mut up).await {
            Ok((answer, keep)) => {
                if keep && up.data().is_empty() {
                    let (s, _) = up.into_parts();
                    w.pool.put(target.addr, s, 64, Instant::now());
                }
                return Ok(answer);
            }
            Err(None) if reused => continue,
            Err(None) => {
                return Err(ProxyError::bad_gateway("the integration closed the connection without answering"))
            }
            Err(Some(e)) => return Err(e),
        }
    }
    Err(ProxyError::bad_gateway("the integration closed the connection without answering"))
}

/// `Err(None)`: closed before any byte (a stale pooled connection).
async fn read_answer(up: &mut BufStream) -> Result<(Answer, bool), Option<ProxyError>> {
    let bad = |m: &'static str| Some(ProxyError::bad_gateway(m));
    let mut got_any = false;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(up.data()) {
            Ok(httparse::Status::Complete(n)) => {
                let status = res.code.unwrap_or(0);
                if (100..200).contains(&status) {
                    up.consume(n);
                    continue;
                }
                let mut len = None;
                let mut chunked = false;
                let mut keep = res.version == Some(1);
                let mut groups = None;
                for h in res.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        len = Some(
                            parse_content_length(h.value)
                                .ok_or_else(|| bad("invalid Content-Length from the integration"))?,
                        );
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = true;
                    } else if h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close") {
                        keep = false;
                    } else if h.name.eq_ignore_ascii_case("x-wasp-groups") {
                        groups = Some(String::from_utf8_lossy(h.value).into_owned());
                    }
                }
                up.consume(n);
                let mut body = Vec::new();
                if status == 204 || status == 304 {
                } else if chunked {
                    let mut dec = ChunkedDecoder::new(MAX_ANSWER as u64);
                    loop {
                        let used = dec.decode(up.data(), &mut body, false).map_err(|e| bad(e.message()))?;
                        up.consume(used);
                        if dec.is_done() {
                            break;
                        }
                        fill(up).await?;
                    }
                } else if let Some(l) = len {
                    if l as usize > MAX_ANSWER {
                        return Err(bad("the integration's answer is too large"));
                    }
                    while up.data().len() < l as usize {
                        fill(up).await?;
                    }
                    body.extend_from_slice(&up.data()[..l as usize]);
                    up.consume(l as usize);
                } else {
                    keep = false;
                    loop {
                        body.extend_from_slice(up.data());
                        let k = up.data().len();
                        up.consume(k);
                        if body.len() > MAX_ANSWER {
                            return Err(bad("the integration's answer is too large"));
                        }
                        match up.fill().await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                }
                return Ok((Answer { status, groups, body }, keep));
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(bad("malformed answer from the integration")),
        }
        match up.fill().await {
            Ok(0) | Err(_) if !got_any => return Err(None),
            Ok(0) | Err(_) => return Err(bad("the integration closed the connection mid-answer")),
            Ok(_) => got_any = true,
        }
    }
}

async fn fill(up: &mut BufStream) -> Result<(), Option<ProxyError>> {
    match up.fill().await {
        Ok(0) | Err(_) => Err(Some(ProxyError::bad_gateway("the integration closed the connection mid-answer"))),
        Ok(_) => Ok(()),
    }
}
