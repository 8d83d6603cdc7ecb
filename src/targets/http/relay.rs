//! Relaying an answer to the client: streamed as it comes (framed for the
//! client, large bodies in big reads, every write under its deadline), or
//! read whole and run through the response filters' program.

use super::response::{ClientFraming, Response, ResponseBody};
use super::{client_write_error, BIG_READS, COPY_LIMIT};
use crate::deadline::{Phase, Watch};
use crate::error::ProxyError;
use crate::io::{flush_with, BufStream};
use crate::proto::http1::chunked::{encode_chunk, ChunkedDecoder};
use crate::targets::{Exchange, Failed};
use crate::upstream::fill_body;
use monoio::io::AsyncReadRent;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;

/// Sends the head in `x.out` and the body, framed for the client. Every
/// client write must progress within `timeouts.write`; every service read
/// within the service's timeout.
pub(super) async fn relay<S: AsyncReadRent>(
    x: &mut Exchange<'_>,
    up: &mut BufStream<S>,
    up_fd: RawFd,
    resp: &Response,
    cw: &Watch<'_>,
    uw: &Watch<'_>,
) -> Result<u64, Failed> {
    if resp.transform {
        return relay_transformed(x, up, up_fd, resp, cw, uw).await;
    }
    let t_write = x.gateway.timeouts.write;
    let t_up = x.service.timeout;
    let client_fd = x.client.stream.as_raw_fd();
    let client = &mut x.client.stream;
    let out = &mut *x.out;
    let mut sent: u64 = 0;
    // A client that keeps reading, however slowly, is never cut.
    let progress: &dyn Fn() = &|| cw.touch();
    let fail = |e: ProxyError, sent_head: bool| {
        if e.side == crate::error::Side::Upstream {
            x.env.stats.upstream_errors.fetch_add(1, Relaxed);
        }
        if sent_head {
            Failed { error: e, answered: true, status: resp.status }
        } else {
            Failed::before(e)
        }
    };
    macro_rules! to_client {
        ($op:expr) => {
            cw.run(client_fd, Phase::ClientWrite, t_write, $op).await.map_err(|_| fail(client_write_error(cw), true))
        };
    }
    macro_rules! more {
        ($until_close:expr) => {
            fill_body(up, up_fd, uw, t_up, $until_close).await.map_err(|e| fail(e, true))
        };
    }
    match (resp.body, resp.client_framing) {
        (ResponseBody::None, _) => to_client!(flush_with(client, out, progress))?,
        (ResponseBody::Length(n), _) => {
            let avail = (n.min(up.data().len() as u64)) as usize;
            if avail <= COPY_LIMIT {
                // Head and body in one write: the common small response.
                out.extend_from_slice(&up.data()[..avail]);
                up.consume(avail);
                to_client!(flush_with(client, out, progress))?;
            } else {
                to_client!(flush_with(client, out, progress))?;
                to_client!(up.forward_to_with(client, avail, progress))?;
            }
            let mut left = n - avail as u64;
            sent += avail as u64;
            if left > BIG_READS as u64 {
                up.reserve_reads(BIG_READS);
            }
            while left > 0 {
                more!(false)?;
                let k = (left.min(up.data().len() as u64)) as usize;
                to_client!(up.forward_to_with(client, k, progress))?;
                left -= k as u64;
                sent += k as u64;
            }
        }
        (ResponseBody::Chunked, framing) => {
            let mut dec = ChunkedDecoder::new(u64::MAX);
            let encode = framing == ClientFraming::Chunked;
            loop {
                let used =
                    dec.decode(up.data(), out, encode).map_err(|e| fail(ProxyError::bad_gateway(e.message()), true))?;
                up.consume(used);
                sent = dec.total();
                to_client!(flush_with(client, out, progress))?;
                if dec.is_done() {
                    break;
                }
                more!(false)?;
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
            to_client!(flush_with(client, out, progress))?;
            if !more!(true)? {
                if framing == ClientFraming::Chunked {
                    out.extend_from_slice(b"0\r\n\r\n");
                    to_client!(flush_with(client, out, progress))?;
                }
                break;
            }
        },
    }
    Ok(sent)
}

/// A JSON answer that goes through the response filters' program: read
/// whole (at most `limits.max_body_bytes`), transformed, then sent with its
/// new length after the head `parse_response` left open in `x.out`.
async fn relay_transformed<S: AsyncReadRent>(
    x: &mut Exchange<'_>,
    up: &mut BufStream<S>,
    up_fd: RawFd,
    resp: &Response,
    cw: &Watch<'_>,
    uw: &Watch<'_>,
) -> Result<u64, Failed> {
    let max = x.gateway.limits.max_body_bytes;
    let t_up = x.service.timeout;
    let over = || Failed::before(ProxyError::bad_gateway("the answer is over the size limit for a transformation"));
    let upstream = |e: ProxyError| {
        x.env.stats.upstream_errors.fetch_add(1, Relaxed);
        Failed::before(e)
    };
    let mut body = Vec::new();
    match resp.body {
        ResponseBody::None => {}
        ResponseBody::Length(n) => {
            if n > max {
                return Err(over());
            }
            let n = n as usize;
            up.reserve_reads(n.min(1 << 20));
            while up.data().len() < n {
                fill_body(up, up_fd, uw, t_up, false).await.map_err(upstream)?;
            }
            body.extend_from_slice(&up.data()[..n]);
            up.consume(n);
        }
        ResponseBody::Chunked => {
            let mut dec = ChunkedDecoder::new(max);
            loop {
                let used = dec.decode(up.data(), &mut body, false).map_err(|e| match e {
                    crate::proto::http1::chunked::ChunkError::TooLarge => over(),
                    _ => upstream(ProxyError::bad_gateway(e.message())),
                })?;
                up.consume(used);
                if dec.is_done() {
                    break;
                }
                fill_body(up, up_fd, uw, t_up, false).await.map_err(upstream)?;
            }
        }
        ResponseBody::UntilClose => loop {
            body.extend_from_slice(up.data());
            let n = up.data().len();
            up.consume(n);
            if body.len() as u64 > max {
                return Err(over());
            }
            if !fill_body(up, up_fd, uw, t_up, true).await.map_err(upstream)? {
                break;
            }
        },
    }
    let Some(hook) = x.response_hook else {
        return Err(Failed::before(ProxyError::bad_gateway("the transformation is not available")));
    };
    let Some(program) = hook.body_program() else {
        return Err(Failed::before(ProxyError::bad_gateway("the transformation is not available")));
    };
    // An empty body (a 201 with nothing) is no document: passed as it is.
    let result = if body.is_empty() {
        hook.body_outcome("skipped");
        Ok(Vec::new())
    } else {
        program.run(&body, usize::try_from(max).unwrap_or(usize::MAX)).inspect(|_| hook.body_outcome("applied"))
    };
    let output = match result {
        Ok(o) => o,
        Err(e) => {
            hook.body_outcome("failed");
            return Err(Failed::before(e.to_error()));
        }
    };
    let out = &mut *x.out;
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(crate::proto::http1::itoa(output.len() as u64, &mut [0u8; 20]));
    out.extend_from_slice(b"\r\n\r\n");
    if !x.req.is_head {
        out.extend_from_slice(&output);
    }
    let client_fd = x.client.stream.as_raw_fd();
    let progress: &dyn Fn() = &|| cw.touch();
    cw.run(client_fd, Phase::ClientWrite, x.gateway.timeouts.write, flush_with(&mut x.client.stream, out, progress))
        .await
        .map_err(|_| Failed { error: client_write_error(cw), answered: true, status: resp.status })?;
    Ok(output.len() as u64)
}
